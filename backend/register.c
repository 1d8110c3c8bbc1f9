/*
 * register.c - `fulcrum-backend --register URL` (register.h): one thread that keeps the backend
 * in an etcd registry, over etcd's v3 JSON API, with blocking calls (the server's loop never
 * waits for etcd).
 *
 *   ENROLL   POST /v3/lease/grant {"TTL": ttl}, then POST /v3/kv/put of PREFIX+NAME with the
 *      |     value {"address": ..., "name": ..., "weight": ...} and the lease
 *      v
 *   KEEP     POST /v3/lease/keepalive {"ID": id} every TTL/3
 *      |       - etcd unreachable or a bad answer: try again every second (the lease may
 *      |         survive: it lasts TTL after the last keep-alive etcd saw)
 *      |       - the lease is gone (TTL 0, or "lease not found"): ENROLL again at once
 *      v
 *   STOP     (be_register_stop: SIGTERM, SIGINT) POST /v3/lease/revoke {"ID": id}: etcd deletes
 *            the key with its lease, so a graceful stop leaves the registry at once; a killed
 *            backend leaves it when the lease expires, TTL seconds after its last keep-alive.
 *
 * The same with etcdctl, for any service (ETCDCTL_API=3):
 *   etcdctl lease grant 10                                    -> lease 694d7c3f9f4a2b11 granted
 *   etcdctl put --lease=694d7c3f9f4a2b11 /services/api/api-5 '{"address": "10.0.0.5:8080"}'
 *   etcdctl lease keep-alive 694d7c3f9f4a2b11                 (runs until stopped)
 *
 * Each request is one connection ("Connection: close"), bounded by REQUEST_TIMEOUT_MS in total.
 * Failures are reported once when they start and once when they end, not at every retry.
 */
#include "register.h"

#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "core/log.h"
#include "core/net.h"
#include "discovery/etcd_json.h"
#include "http/http1.h"

#define REQUEST_TIMEOUT_MS 2000
#define RETRY_MS           1000
#define MAX_ANSWER         65536
#define ETCD_DEFAULT_PORT  "2379"

struct be_register {
    pthread_t thread;
    int stop_fd; /* eventfd, written by be_register_stop() */
    struct net_addr etcd;
    char *host; /* HOST:PORT of the URL, for the Host field and messages */
    char *key;  /* PREFIX + NAME */
    char *key_b64, *value_b64;
    unsigned ttl_s;
    int64_t lease; /* 0: none */
};

/* ---- one request ---- */

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* Waits until fd is ready for events or the deadline passed. 0, or -1 with why. */
static int wait_fd(int fd, short events, uint64_t deadline, char *why, size_t whylen)
{
    for (;;) {
        uint64_t now = now_ms();
        if (now >= deadline) {
            snprintf(why, whylen, "timeout");
            return -1;
        }
        struct pollfd p = {.fd = fd, .events = events};
        int n = poll(&p, 1, (int)(deadline - now));
        if (n > 0)
            return 0;
        if (n < 0 && errno != EINTR) {
            snprintf(why, whylen, "poll: %s", strerror(errno));
            return -1;
        }
    }
}

/* Sends all of text[0, len) on the non-blocking socket fd. 0, or -1 with why. */
static int send_all(int fd, const char *text, size_t len, uint64_t deadline, char *why,
                    size_t whylen)
{
    while (len > 0) {
        ssize_t n = send(fd, text, len, MSG_NOSIGNAL);
        if (n > 0) {
            text += n;
            len -= (size_t)n;
        } else if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
            if (wait_fd(fd, POLLOUT, deadline, why, whylen) < 0)
                return -1;
        } else {
            snprintf(why, whylen, "send: %s", strerror(errno));
            return -1;
        }
    }
    return 0;
}

/* Reads until the peer closes (the request said Connection: close). Returns the length read into
 * buf (NUL-terminated), or -1 with why. */
static ssize_t read_all(int fd, char *buf, size_t room, uint64_t deadline, char *why, size_t whylen)
{
    size_t got = 0;
    for (;;) {
        if (got + 1 >= room) {
            snprintf(why, whylen, "answer over %zu bytes", room - 1);
            return -1;
        }
        ssize_t n = recv(fd, buf + got, room - 1 - got, 0);
        if (n > 0) {
            got += (size_t)n;
        } else if (n == 0) {
            buf[got] = '\0';
            return (ssize_t)got;
        } else if (errno == EAGAIN || errno == EINTR) {
            if (wait_fd(fd, POLLIN, deadline, why, whylen) < 0)
                return -1;
        } else {
            snprintf(why, whylen, "recv: %s", strerror(errno));
            return -1;
        }
    }
}

/*
 * The body of a whole answer in buf[0, len), decoded in place: *body points into buf. Returns the
 * status, or -1 with why.
 */
static int parse_answer(char *buf, size_t len, char **body, size_t *body_len, char *why,
                        size_t whylen)
{
    const struct http1_limits limits = {.max_head_bytes = MAX_ANSWER, .max_fields = 64};
    struct http1_field fields[64];
    struct http1_scan scan = {0};
    uint16_t error_status;
    const char *error = "incomplete head";
    struct http1_msg msg = {.fields = fields};
    int r = http1_scan_head(&scan, buf, len, &limits, false, &error_status, &error);
    if (r != HTTP1_DONE ||
        http1_parse_response(&scan, buf, &limits, HTTP1_METHOD_POST, &msg) != HTTP1_DONE) {
        snprintf(why, whylen, "invalid HTTP answer: %s", r == HTTP1_DONE ? msg.error : error);
        return -1;
    }
    *body = buf + msg.head_end;
    size_t have = len - msg.head_end;
    if (msg.body == HTTP1_BODY_LENGTH) {
        if (have < msg.content_length) {
            snprintf(why, whylen, "answer cut short");
            return -1;
        }
        have = (size_t)msg.content_length;
    } else if (msg.body == HTTP1_BODY_CHUNKED) {
        struct http1_chunked ch = {0};
        size_t used, produced;
        if (http1_chunked_parse(&ch, *body, have, true, &used, &produced) != HTTP1_DONE) {
            snprintf(why, whylen, "bad or unfinished chunked answer");
            return -1;
        }
        have = produced;
    } else if (msg.body == HTTP1_BODY_NONE) {
        have = 0;
    }
    (*body)[have] = '\0'; /* room: the buffer is NUL-terminated past len, and have <= len */
    *body_len = have;
    return msg.status;
}

/*
 * POSTs a JSON body to path on etcd. Returns the answer's status with its body in answer (a
 * buffer of MAX_ANSWER bytes; *body points into it), or -1 with why (etcd not reached, or no
 * valid answer).
 */
static int post(struct be_register *r, const char *path, const char *json, char *answer,
                char **body, size_t *body_len, char *why, size_t whylen)
{
    uint64_t deadline = now_ms() + REQUEST_TIMEOUT_MS;
    char *request = NULL;
    int status = -1;
    bool in_progress;
    int fd = net_connect(&r->etcd, &in_progress);
    if (fd < 0) {
        snprintf(why, whylen, "connect: %s", strerror(errno));
        return -1;
    }
    if (in_progress) {
        if (wait_fd(fd, POLLOUT, deadline, why, whylen) < 0)
            goto done;
        int err = net_socket_error(fd);
        if (err) {
            snprintf(why, whylen, "connect: %s", strerror(err));
            goto done;
        }
    }
    int n = asprintf(&request,
                     "POST %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: fulcrum-backend\r\n"
                     "Content-Type: application/json\r\nContent-Length: %zu\r\n"
                     "Connection: close\r\n\r\n%s",
                     path, r->host, strlen(json), json);
    if (n < 0) {
        request = NULL;
        snprintf(why, whylen, "out of memory");
        goto done;
    }
    if (send_all(fd, request, (size_t)n, deadline, why, whylen) < 0)
        goto done;
    ssize_t got = read_all(fd, answer, MAX_ANSWER, deadline, why, whylen);
    if (got < 0)
        goto done;
    status = parse_answer(answer, (size_t)got, body, body_len, why, whylen);
done:
    free(request);
    close(fd);
    return status;
}

/* The message of a non-200 answer. */
static void answer_error(int status, const char *body, size_t len, char *why, size_t whylen)
{
    char text[200];
    if (!etcd_parse_error(body, len, text, sizeof(text)))
        snprintf(text, sizeof(text), "no error message");
    snprintf(why, whylen, "status %d, %s", status, text);
}

/* ---- the registration ---- */

/* Grants a lease and puts the key with it. 0, or -1 with why. */
static int enroll(struct be_register *r, char *why, size_t whylen)
{
    char *answer = malloc(MAX_ANSWER), *body, json[512];
    size_t len;
    int64_t id, ttl;
    int rc = -1;
    if (!answer) {
        snprintf(why, whylen, "out of memory");
        return -1;
    }
    snprintf(json, sizeof(json), "{\"TTL\": %u}", r->ttl_s);
    int status = post(r, "/v3/lease/grant", json, answer, &body, &len, why, whylen);
    if (status < 0)
        goto done;
    if (status != 200) {
        answer_error(status, body, len, why, whylen);
        goto done;
    }
    if (etcd_parse_lease(body, len, &id, &ttl, why, whylen) < 0)
        goto done;
    if (id == 0 || ttl <= 0) {
        snprintf(why, whylen, "lease grant answered without a lease");
        goto done;
    }
    char *put = NULL;
    if (asprintf(&put, "{\"key\": \"%s\", \"value\": \"%s\", \"lease\": \"%" PRId64 "\"}",
                 r->key_b64, r->value_b64, id) < 0) {
        snprintf(why, whylen, "out of memory");
        goto done;
    }
    status = post(r, "/v3/kv/put", put, answer, &body, &len, why, whylen);
    free(put);
    if (status < 0)
        goto done; /* the lease, unused, expires by itself */
    if (status != 200) {
        answer_error(status, body, len, why, whylen);
        goto done;
    }
    r->lease = id;
    log_info("fulcrum-backend: registered in etcd %s as %s (lease %" PRIx64 ", TTL %" PRId64 " s)",
             r->host, r->key, (uint64_t)id, ttl);
    rc = 0;
done:
    free(answer);
    return rc;
}

/* Renews the lease. 0, 1 if the lease is gone (enroll again), -1 with why if etcd failed. */
static int keep_alive(struct be_register *r, char *why, size_t whylen)
{
    char *answer = malloc(MAX_ANSWER), *body, json[64];
    size_t len;
    int64_t id, ttl;
    if (!answer) {
        snprintf(why, whylen, "out of memory");
        return -1;
    }
    snprintf(json, sizeof(json), "{\"ID\": \"%" PRId64 "\"}", r->lease);
    int rc = -1;
    int status = post(r, "/v3/lease/keepalive", json, answer, &body, &len, why, whylen);
    if (status < 0)
        goto done;
    if (status != 200) {
        /* etcd answered, and refused: the lease is not there (NotFound) */
        answer_error(status, body, len, why, whylen);
        rc = status == 404 ? 1 : -1;
        goto done;
    }
    if (etcd_parse_lease(body, len, &id, &ttl, why, whylen) < 0) {
        /* an error inside the stream: "requested lease not found" is the one that means gone */
        rc = strstr(why, "not found") ? 1 : -1;
        goto done;
    }
    rc = ttl > 0 ? 0 : 1;
    if (rc)
        snprintf(why, whylen, "lease %" PRIx64 " expired", (uint64_t)r->lease);
done:
    free(answer);
    return rc;
}

static void revoke_lease(struct be_register *r)
{
    char *answer = malloc(MAX_ANSWER), *body, json[64], why[256];
    size_t len;
    if (!answer)
        return;
    snprintf(json, sizeof(json), "{\"ID\": \"%" PRId64 "\"}", r->lease);
    int status = post(r, "/v3/lease/revoke", json, answer, &body, &len, why, sizeof(why));
    if (status == 200)
        log_info("fulcrum-backend: left etcd %s (lease %" PRIx64 " revoked)", r->host,
                 (uint64_t)r->lease);
    else if (status > 0)
        answer_error(status, body, len, why, sizeof(why));
    if (status != 200)
        log_warn("fulcrum-backend: could not revoke lease %" PRIx64 " at %s: %s; %s leaves when "
                 "it expires",
                 (uint64_t)r->lease, r->host, why, r->key);
    free(answer);
}

/* Sleeps ms, or less if told to stop: true when told. */
static bool wait_stop(struct be_register *r, uint64_t ms)
{
    uint64_t deadline = now_ms() + ms;
    for (;;) {
        struct pollfd p = {.fd = r->stop_fd, .events = POLLIN};
        uint64_t now = now_ms();
        int n = poll(&p, 1, now >= deadline ? 0 : (int)(deadline - now));
        if (n > 0)
            return true;
        if (n == 0)
            return false;
        if (errno != EINTR)
            return false;
    }
}

static void *run(void *arg)
{
    struct be_register *r = arg;
    bool failing = false;
    uint64_t pause = 0;
    while (!wait_stop(r, pause)) {
        char why[256];
        int rc = r->lease ? keep_alive(r, why, sizeof(why)) : enroll(r, why, sizeof(why));
        if (rc > 0) { /* the lease is gone: the key went with it; register again at once */
            log_warn("fulcrum-backend: %s at %s: registering again", why, r->host);
            r->lease = 0;
            pause = 0;
            continue;
        }
        if (rc < 0) {
            if (!failing)
                log_warn("fulcrum-backend: etcd %s: %s; retrying every %d ms", r->host, why,
                         RETRY_MS);
            failing = true;
            pause = RETRY_MS;
            continue;
        }
        if (failing)
            log_info("fulcrum-backend: etcd %s answers again", r->host);
        failing = false;
        pause = r->ttl_s * 1000u / 3;
    }
    if (r->lease)
        revoke_lease(r);
    return NULL;
}

/* ---- start and stop ---- */

static void register_free(struct be_register *r)
{
    if (r->stop_fd >= 0)
        close(r->stop_fd);
    free(r->host);
    free(r->key);
    free(r->key_b64);
    free(r->value_b64);
    free(r);
}

/* base64 of text, malloc'd. */
static char *b64_of(const char *text)
{
    size_t n = strlen(text);
    char *out = malloc(etcd_b64_encoded_size(n));
    if (out)
        etcd_b64_encode(text, n, out);
    return out;
}

/* Splits http://HOST[:PORT]/PREFIX into r->host, r->etcd and *prefix. 0, or -1 with why. */
static int parse_url(struct be_register *r, const char *url, const char **prefix, char *err,
                     size_t errlen)
{
    static const char scheme[] = "http://";
    if (strncmp(url, scheme, sizeof(scheme) - 1) != 0) {
        snprintf(err, errlen, "--register: expected http://HOST:PORT/PREFIX, got '%s'", url);
        return -1;
    }
    const char *host = url + sizeof(scheme) - 1, *slash = strchr(host, '/');
    if (!slash || slash == host) {
        snprintf(err, errlen,
                 "--register: expected http://HOST:PORT/PREFIX (the key prefix, "
                 "such as /services/api/), got '%s'",
                 url);
        return -1;
    }
    size_t n = (size_t)(slash - host);
    const char *close_bracket = memchr(host, ']', n);
    const char *colon = memrchr(host, ':', n);
    bool has_port = colon && (!close_bracket || colon > close_bracket);
    if (asprintf(&r->host, "%.*s%s", (int)n, host, has_port ? "" : ":" ETCD_DEFAULT_PORT) < 0) {
        r->host = NULL;
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    const char *why;
    if (net_parse_addr(r->host, &r->etcd, &why) < 0 || r->etcd.any) {
        snprintf(err, errlen, "--register: etcd address '%s': %s", r->host,
                 r->etcd.any ? "a host is needed" : why);
        return -1;
    }
    *prefix = slash;
    return 0;
}

struct be_register *be_register_start(const struct be_register_conf *c, char *err, size_t errlen)
{
    struct be_register *r = calloc(1, sizeof(*r));
    const char *prefix;
    if (!r) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    r->stop_fd = -1;
    r->ttl_s = c->ttl_s;
    if (parse_url(r, c->url, &prefix, err, errlen) < 0)
        goto fail;
    if (c->ttl_s < 1 || c->ttl_s > 3600) {
        snprintf(err, errlen, "--register-ttl: 1 to 3600 seconds");
        goto fail;
    }
    if (c->weight > 256) {
        snprintf(err, errlen, "--register-weight: 0 to 256");
        goto fail;
    }
    /* The address must be one a fulcrum elsewhere can connect to: an IP with a port. */
    struct net_addr check;
    const char *why;
    const struct sockaddr *sa = (const struct sockaddr *)&check.ss;
    if (net_parse_addr(c->address, &check, &why) < 0 || check.any ||
        (sa->sa_family == AF_INET &&
         ((const struct sockaddr_in *)sa)->sin_addr.s_addr == htonl(INADDR_ANY)) ||
        (sa->sa_family == AF_INET6 &&
         IN6_IS_ADDR_UNSPECIFIED(&((const struct sockaddr_in6 *)sa)->sin6_addr))) {
        snprintf(err, errlen,
                 "cannot register the address '%s': give the one clients reach with "
                 "--register-address IP:PORT",
                 c->address);
        goto fail;
    }
    json_t *value = json_pack("{s:s, s:s, s:i}", "address", c->address, "name", c->name, "weight",
                              (int)c->weight);
    char *value_text = value ? json_dumps(value, JSON_COMPACT) : NULL;
    json_decref(value);
    if (asprintf(&r->key, "%s%s", prefix, c->name) < 0)
        r->key = NULL;
    r->key_b64 = r->key ? b64_of(r->key) : NULL;
    r->value_b64 = value_text ? b64_of(value_text) : NULL;
    free(value_text);
    if (!r->key_b64 || !r->value_b64) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    r->stop_fd = eventfd(0, EFD_CLOEXEC);
    if (r->stop_fd < 0) {
        snprintf(err, errlen, "eventfd: %s", strerror(errno));
        goto fail;
    }
    int rc = pthread_create(&r->thread, NULL, run, r);
    if (rc != 0) {
        snprintf(err, errlen, "cannot start the registration thread: %s", strerror(rc));
        goto fail;
    }
    return r;
fail:
    register_free(r);
    return NULL;
}

void be_register_stop(struct be_register *r)
{
    if (!r)
        return;
    uint64_t one = 1;
    if (write(r->stop_fd, &one, sizeof(one)) != (ssize_t)sizeof(one)) {
        /* cannot happen with an eventfd at 0; the thread still uses r, so r stays */
        log_error("fulcrum-backend: cannot stop the registration thread: %s", strerror(errno));
        return;
    }
    pthread_join(r->thread, NULL);
    register_free(r);
}
