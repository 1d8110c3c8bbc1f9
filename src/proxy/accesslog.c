/*
 * accesslog.c - access log formatting, per-worker buffers and the writer thread (accesslog.h).
 *
 *   worker: accesslog_add() formats into its chunk --full or flush--> queue (mutex)
 *   writer thread: takes chunks off the queue, write()s them, keeps up to MAX_FREE as spares
 *
 * The mutex is taken once per chunk (64 KiB of lines), never per request.
 */
#include "proxy/accesslog.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/freelist.h"
#include "core/log.h"
#include "core/net.h"
#include "core/wbuf.h"

#define CHUNK_SIZE     (64 * 1024)
#define LINE_MAX_BYTES 8192 /* targets and agents are cut before, see proxy.c */
#define CHUNK_HANDOFF  (CHUNK_SIZE - LINE_MAX_BYTES) /* hand a chunk off once it is this full */
#define MAX_FREE       32 /* spare chunks kept for reuse; more are freed */

struct chunk {
    struct chunk *next;         /* in the queue */
    struct freelist_node spare; /* in al.spares */
    size_t len;
    unsigned lines;
    char data[CHUNK_SIZE];
};

struct accesslog_buf {
    struct chunk *cur;
};

static struct {
    pthread_mutex_t lock;
    pthread_cond_t wake;
    pthread_t thread;
    bool running, stop, reopen;
    struct chunk *head, *tail; /* queue, oldest first */
    unsigned queued;
    unsigned max_queued;    /* access_log.max_backlog in chunks: beyond it, lines are dropped */
    struct freelist spares; /* written chunks, kept for reuse (under lock) */
    char *path;             /* owned; "stdout"/"stderr" name the standard streams */
    int fd;
    _Atomic bool enabled;
    _Atomic uint64_t dropped;
} al = {.lock = PTHREAD_MUTEX_INITIALIZER,
        .wake = PTHREAD_COND_INITIALIZER,
        .spares = FREELIST_INIT(MAX_FREE),
        .fd = -1};

/* ---- formatting ---- */

static void putf(struct wbuf *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void putf(struct wbuf *o, const char *fmt, ...)
{
    if (o->overflow)
        return;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(o->p, (size_t)(o->end - o->p), fmt, ap);
    va_end(ap);
    if (n < 0 || n >= o->end - o->p)
        o->overflow = true;
    else
        o->p += n;
}

/* A JSON string; bytes outside printable ASCII are escaped, so any input gives valid JSON. */
static void put_json_string(struct wbuf *o, const char *s, size_t n)
{
    if (!s) {
        wbuf_puts(o, "null");
        return;
    }
    wbuf_put(o, "\"", 1);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\') {
            char esc[2] = {'\\', (char)c};
            wbuf_put(o, esc, 2);
        } else if (c < 0x20 || c >= 0x7f) {
            putf(o, "\\u%04x", c);
        } else {
            wbuf_put(o, (const char *)&c, 1);
        }
    }
    wbuf_put(o, "\"", 1);
}

/* Text inside a quoted field of the combined format: quotes and controls become escapes. */
static void put_quoted_text(struct wbuf *o, const char *s, size_t n)
{
    if (!s || !n) {
        wbuf_put(o, "-", 1);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\' || c < 0x20 || c >= 0x7f)
            putf(o, "\\x%02X", c);
        else
            wbuf_put(o, (const char *)&c, 1);
    }
}

static void put_ms(struct wbuf *o, const char *key, double ms)
{
    if (ms < 0)
        putf(o, ",\"%s\":null", key);
    else
        putf(o, ",\"%s\":%.3f", key, ms);
}

/* Formats one line into buf; returns its length, newline included, or 0 if the line does not
 * fit in cap. */
static size_t accesslog_format(char *buf, size_t cap, const struct accesslog_entry *e,
                               enum conf_log_format format)
{
    struct wbuf o = wbuf_init(buf, cap);
    char client[NET_ADDR_TEXT];
    time_t sec = (time_t)(e->start_wall_us / 1000000);
    struct tm tm;
    gmtime_r(&sec, &tm);
    if (e->client)
        net_ip_format(e->client, client, sizeof(client));
    else
        snprintf(client, sizeof(client), "-");
    const char *proto = e->version == 0    ? "TCP"
                        : e->version == 10 ? "HTTP/1.0"
                        : e->version == 20 ? "HTTP/2.0"
                                           : "HTTP/1.1";

    if (format == CONF_LOG_COMBINED) {
        static const char *const months[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                             "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
        putf(&o, "%s - - [%02d/%s/%04d:%02d:%02d:%02d +0000] \"", client, tm.tm_mday,
             months[tm.tm_mon], tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
        put_quoted_text(&o, e->method, e->method_len);
        wbuf_put(&o, " ", 1);
        put_quoted_text(&o, e->target, e->target_len);
        putf(&o, " %s\" %u ", proto, e->status);
        if (e->bytes_out)
            putf(&o, "%llu", (unsigned long long)e->bytes_out);
        else
            wbuf_put(&o, "-", 1);
        wbuf_puts(&o, " \"");
        put_quoted_text(&o, e->referer, e->referer_len);
        wbuf_puts(&o, "\" \"");
        put_quoted_text(&o, e->user_agent, e->user_agent_len);
        wbuf_puts(&o, "\"\n");
    } else {
        putf(&o, "{\"time\":\"%04d-%02d-%02dT%02d:%02d:%02d.%03uZ\",\"client\":", tm.tm_year + 1900,
             tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
             (unsigned)(e->start_wall_us / 1000 % 1000));
        put_json_string(&o, client, strlen(client));
        wbuf_puts(&o, ",\"method\":");
        put_json_string(&o, e->method, e->method_len);
        wbuf_puts(&o, ",\"target\":");
        put_json_string(&o, e->target, e->target_len);
        putf(&o, ",\"protocol\":\"%s\",\"status\":%u,\"bytes_in\":%llu,\"bytes_out\":%llu", proto,
             e->status, (unsigned long long)e->bytes_in, (unsigned long long)e->bytes_out);
        wbuf_puts(&o, ",\"route\":");
        put_json_string(&o, e->route, e->route ? strlen(e->route) : 0);
        wbuf_puts(&o, ",\"pool\":");
        put_json_string(&o, e->pool, e->pool ? strlen(e->pool) : 0);
        wbuf_puts(&o, ",\"server\":");
        put_json_string(&o, e->server, e->server ? strlen(e->server) : 0);
        wbuf_puts(&o, ",\"balance\":");
        put_json_string(&o, e->balance, e->balance ? strlen(e->balance) : 0);
        if (e->spilled)
            wbuf_puts(&o, ",\"spilled\":true");
        put_ms(&o, "queue_ms", e->queue_ms);
        put_ms(&o, "connect_ms", e->connect_ms);
        put_ms(&o, "response_ms", e->response_ms);
        put_ms(&o, "total_ms", e->total_ms);
        putf(&o, ",\"retries\":%u,\"termination\":", e->retries);
        put_json_string(&o, e->termination, strlen(e->termination));
        wbuf_puts(&o, "}\n");
    }
    return wbuf_len(&o);
}

/* ---- the writer thread ---- */

static int open_target(const char *path)
{
    if (strcmp(path, "stdout") == 0)
        return dup(1);
    if (strcmp(path, "stderr") == 0)
        return dup(2);
    return open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
}

static void write_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            /* Lines are lost; say so once in a while, not once per chunk. */
            static time_t last;
            time_t now = time(NULL);
            if (now != last)
                log_error("access log %s: write: %s", al.path, strerror(errno));
            last = now;
            return;
        }
        p += w;
        n -= (size_t)w;
    }
}

static void reopen_locked(void)
{
    int fd = open_target(al.path);
    if (fd < 0) {
        log_error("access log %s: cannot open: %s (still writing to the old file)", al.path,
                  strerror(errno));
        return;
    }
    if (al.fd >= 0)
        close(al.fd);
    al.fd = fd;
}

static void *writer_main(void *arg)
{
    pthread_setname_np(pthread_self(), "fulcrum-log");
    pthread_mutex_lock(&al.lock);
    for (;;) {
        while (!al.head && !al.stop && !al.reopen)
            pthread_cond_wait(&al.wake, &al.lock);
        if (al.reopen) {
            al.reopen = false;
            reopen_locked();
        }
        struct chunk *c = al.head;
        if (!c) {
            if (al.stop)
                break;
            continue;
        }
        al.head = c->next;
        if (!al.head)
            al.tail = NULL;
        al.queued--;
        int fd = al.fd;
        pthread_mutex_unlock(&al.lock);
        if (fd >= 0)
            write_all(fd, c->data, c->len);
        pthread_mutex_lock(&al.lock);
        if (!freelist_put(&al.spares, &c->spare))
            free(c);
    }
    pthread_mutex_unlock(&al.lock);
    return NULL;
}

static unsigned backlog_chunks(const struct conf_access_log *conf)
{
    unsigned n = conf->max_backlog / CHUNK_SIZE;
    return n ? n : 1;
}

int accesslog_start(const struct conf_access_log *conf)
{
    if (!conf->enabled)
        return 0;
    al.max_queued = backlog_chunks(conf);
    al.path = strdup(conf->path);
    if (!al.path) {
        log_error("access log: out of memory");
        return -1;
    }
    al.fd = open_target(al.path);
    if (al.fd < 0) {
        log_error("access log %s: cannot open: %s", al.path, strerror(errno));
        return -1;
    }
    int rc = pthread_create(&al.thread, NULL, writer_main, NULL);
    if (rc != 0) {
        log_error("access log: pthread_create: %s", strerror(rc));
        return -1;
    }
    al.running = true;
    atomic_store(&al.enabled, true);
    return 0;
}

void accesslog_configure(const struct conf_access_log *conf)
{
    if (!conf->enabled) {
        atomic_store(&al.enabled, false);
        return;
    }
    if (!al.running) {
        if (accesslog_start(conf) < 0)
            log_error("access log: not started; requests are not logged");
        return;
    }
    pthread_mutex_lock(&al.lock);
    al.max_queued = backlog_chunks(conf);
    if (!al.path || strcmp(al.path, conf->path) != 0) {
        char *path = strdup(conf->path);
        if (path) {
            free(al.path);
            al.path = path;
            al.reopen = true;
            pthread_cond_signal(&al.wake);
        }
    }
    pthread_mutex_unlock(&al.lock);
    atomic_store(&al.enabled, true);
}

void accesslog_reopen(void)
{
    if (!al.running)
        return;
    pthread_mutex_lock(&al.lock);
    al.reopen = true;
    pthread_cond_signal(&al.wake);
    pthread_mutex_unlock(&al.lock);
}

void accesslog_stop(void)
{
    if (al.running) {
        pthread_mutex_lock(&al.lock);
        al.stop = true;
        pthread_cond_signal(&al.wake);
        pthread_mutex_unlock(&al.lock);
        pthread_join(al.thread, NULL);
        al.running = false;
    }
    atomic_store(&al.enabled, false);
    struct chunk *c;
    while ((c = freelist_take_entry(&al.spares, struct chunk, spare)))
        free(c);
    if (al.fd >= 0)
        close(al.fd);
    al.fd = -1;
    free(al.path);
    al.path = NULL;
}

bool accesslog_enabled(void)
{
    return atomic_load_explicit(&al.enabled, memory_order_relaxed);
}

uint64_t accesslog_dropped(void)
{
    return atomic_load(&al.dropped);
}

/* ---- per-worker buffers ---- */

struct accesslog_buf *accesslog_buf_new(void)
{
    return calloc(1, sizeof(struct accesslog_buf));
}

void accesslog_buf_free(struct accesslog_buf *b)
{
    if (!b)
        return;
    free(b->cur);
    free(b);
}

/* A recycled chunk comes back empty: its old lines were written already. */
static struct chunk *take_chunk_locked(void)
{
    struct chunk *c = freelist_take_entry(&al.spares, struct chunk, spare);
    if (c) {
        c->len = 0;
        c->lines = 0;
    }
    return c;
}

void accesslog_flush(struct accesslog_buf *b)
{
    struct chunk *c = b->cur;
    if (!c || !c->len || !al.running)
        return;
    pthread_mutex_lock(&al.lock);
    if (al.queued >= al.max_queued) {
        /* the writer is stuck: keep the buffer, lose its lines */
        atomic_fetch_add(&al.dropped, c->lines);
        c->len = 0;
        c->lines = 0;
        pthread_mutex_unlock(&al.lock);
        return;
    }
    c->next = NULL;
    if (al.tail)
        al.tail->next = c;
    else
        al.head = c;
    al.tail = c;
    al.queued++;
    b->cur = take_chunk_locked();
    pthread_cond_signal(&al.wake);
    pthread_mutex_unlock(&al.lock);
}

void accesslog_add(struct accesslog_buf *b, const struct accesslog_entry *e,
                   enum conf_log_format format)
{
    if (!b->cur) {
        b->cur = malloc(sizeof(struct chunk));
        if (!b->cur) {
            atomic_fetch_add(&al.dropped, 1);
            return;
        }
        b->cur->len = 0;
        b->cur->lines = 0;
    }
    struct chunk *c = b->cur;
    size_t room = CHUNK_SIZE - c->len;
    size_t n = accesslog_format(c->data + c->len, room < LINE_MAX_BYTES ? room : LINE_MAX_BYTES, e,
                                format);
    if (!n) { /* a line longer than LINE_MAX_BYTES: should not happen, targets are cut first */
        atomic_fetch_add(&al.dropped, 1);
        return;
    }
    c->len += n;
    c->lines++;
    if (c->len >= CHUNK_HANDOFF)
        accesslog_flush(b);
}
