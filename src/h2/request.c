/*
 * request.c - HTTP/2 header blocks as HTTP/1.1 heads (request.h has the rules): a client's
 * request (the server role), a trailer section, and a server's response (the client role).
 */
#include "h2/request.h"

#include <stdio.h>
#include <string.h>

#include "http/http1.h"

static int fail(struct h2_request *r, uint16_t status, const char *why)
{
    if (!r->error_status) {
        r->error_status = status;
        r->error = why;
    }
    return -1;
}

/* Appends the pieces to head, or fails with 431 when they do not fit. */
static int put(struct h2_request *r, const char *p, size_t n)
{
    if (r->error_status)
        return -1;
    if (n > r->cap - r->len)
        return r->reply ? fail(r, 502, "response header fields too large")
                        : fail(r, 431, "request header fields too large");
    memcpy(r->head + r->len, p, n);
    r->len += (uint32_t)n;
    return 0;
}

static int put_line(struct h2_request *r, const char *name, size_t name_len, const char *value,
                    size_t value_len)
{
    if (put(r, name, name_len) < 0 || put(r, ": ", 2) < 0 || put(r, value, value_len) < 0)
        return -1;
    return put(r, "\r\n", 2);
}

/* Keeps value in scratch; *off gets where. */
static int keep(struct h2_request *r, const char *value, size_t len, uint32_t *off)
{
    if (len > r->scratch_cap - r->scratch_len)
        return fail(r, 431, "request header fields too large");
    memcpy(r->scratch + r->scratch_len, value, len);
    *off = r->scratch_len;
    r->scratch_len += (uint32_t)len;
    return 0;
}

static uint8_t method_id(const char *m, size_t len)
{
    static const struct {
        const char *name;
        uint8_t id;
    } known[] = {
        {"GET", HTTP1_METHOD_GET},       {"HEAD", HTTP1_METHOD_HEAD},
        {"POST", HTTP1_METHOD_POST},     {"PUT", HTTP1_METHOD_PUT},
        {"DELETE", HTTP1_METHOD_DELETE}, {"OPTIONS", HTTP1_METHOD_OPTIONS},
        {"TRACE", HTTP1_METHOD_TRACE},   {"CONNECT", HTTP1_METHOD_CONNECT},
        {"PATCH", HTTP1_METHOD_PATCH},
    };
    for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++)
        if (strlen(known[i].name) == len && memcmp(known[i].name, m, len) == 0)
            return known[i].id;
    return HTTP1_METHOD_OTHER;
}

void h2_request_init(struct h2_request *r, char *head, uint32_t cap, char *scratch,
                     uint32_t scratch_cap)
{
    memset(r, 0, sizeof(*r));
    r->head = head;
    r->cap = cap;
    r->scratch = scratch;
    r->scratch_cap = scratch_cap;
}

/* "METHOD TARGET HTTP/1.1" and Host, from the pseudo-header fields kept so far. CONNECT names
 * its authority as the target; every other method needs :path (nghttp2 checked both). */
static int write_request_line(struct h2_request *r)
{
    if (r->line_written)
        return 0;
    r->line_written = true;
    if (!r->method_len)
        return fail(r, 400, "no :method");
    const char *target = r->scratch + (r->has_path ? r->path_off : r->authority_off);
    size_t target_len = r->has_path ? r->path_len : r->authority_len;
    if (!r->has_path && !(r->method == HTTP1_METHOD_CONNECT && r->has_authority))
        return fail(r, 400, "no :path");
    if (put(r, r->scratch + r->method_off, r->method_len) < 0 || put(r, " ", 1) < 0 ||
        put(r, target, target_len) < 0 || put(r, " HTTP/1.1\r\n", 11) < 0)
        return -1;
    if (r->has_authority &&
        put_line(r, "Host", 4, r->scratch + r->authority_off, r->authority_len) < 0)
        return -1;
    /* the crumbs to come may take the scratch over: only the authority is still needed there
     * (a Host field is compared with it), and it stays in place */
    r->scratch_len = r->has_authority ? r->authority_off + r->authority_len : 0;
    return 0;
}

static bool names(const char *name, size_t len, const char *lower)
{
    return strlen(lower) == len && memcmp(name, lower, len) == 0;
}

/* Host names compare without regard to ASCII case. */
static bool same_host(const char *a, size_t alen, const char *b, size_t blen)
{
    if (alen != blen)
        return false;
    for (size_t i = 0; i < alen; i++) {
        unsigned char x = (unsigned char)a[i], y = (unsigned char)b[i];
        if (x >= 'A' && x <= 'Z')
            x += 'a' - 'A';
        if (y >= 'A' && y <= 'Z')
            y += 'a' - 'A';
        if (x != y)
            return false;
    }
    return true;
}

static int pseudo_field(struct h2_request *r, const char *name, size_t name_len, const char *value,
                        size_t value_len)
{
    if (r->line_written)
        return fail(r, 400, "pseudo-header field after a regular field");
    if (names(name, name_len, ":method")) {
        r->method = method_id(value, value_len);
        r->method_len = (uint32_t)value_len;
        return keep(r, value, value_len, &r->method_off);
    }
    if (names(name, name_len, ":path")) {
        r->has_path = true;
        r->path_len = (uint32_t)value_len;
        return keep(r, value, value_len, &r->path_off);
    }
    if (names(name, name_len, ":authority")) {
        r->has_authority = true;
        r->authority_len = (uint32_t)value_len;
        return keep(r, value, value_len, &r->authority_off);
    }
    if (names(name, name_len, ":scheme"))
        return 0; /* the listener says whether the client came over TLS (X-Forwarded-Proto) */
    return fail(r, 400, "unknown pseudo-header field");
}

int h2_request_field(struct h2_request *r, const char *name, size_t name_len, const char *value,
                     size_t value_len)
{
    if (r->error_status)
        return -1;
    if (name_len && name[0] == ':')
        return pseudo_field(r, name, name_len, value, value_len);
    if (write_request_line(r) < 0)
        return -1;
    if (names(name, name_len, "cookie")) {
        uint32_t off;
        if (r->has_cookie && keep(r, "; ", 2, &off) < 0)
            return -1;
        if (keep(r, value, value_len, &off) < 0)
            return -1;
        if (!r->has_cookie)
            r->cookie_off = off;
        r->has_cookie = true;
        return 0;
    }
    if (names(name, name_len, "host")) {
        if (r->has_authority) {
            if (!same_host(value, value_len, r->scratch + r->authority_off, r->authority_len))
                return fail(r, 400, "Host differs from :authority");
            return 0; /* already written from :authority */
        }
        if (r->has_host)
            return fail(r, 400, "more than one Host field");
        r->has_host = true;
    }
    if (names(name, name_len, "content-length"))
        r->has_length = true;
    return put_line(r, name, name_len, value, value_len);
}

uint32_t h2_request_finish(struct h2_request *r, bool end_stream)
{
    if (write_request_line(r) < 0)
        return 0;
    if (r->has_cookie &&
        put_line(r, "cookie", 6, r->scratch + r->cookie_off, r->scratch_len - r->cookie_off) < 0)
        return 0;
    if (!end_stream && !r->has_length) {
        if (put_line(r, "Transfer-Encoding", 17, "chunked", 7) < 0)
            return 0;
        r->chunked = true;
    }
    if (put_line(r, "Connection", 10, "close", 5) < 0 || put(r, "\r\n", 2) < 0)
        return 0;
    return r->len;
}

void h2_trailers_init(struct h2_request *r, char *buf, uint32_t cap)
{
    h2_request_init(r, buf, cap, NULL, 0);
    r->line_written = true;
    put(r, "0\r\n", 3);
}

int h2_trailers_field(struct h2_request *r, const char *name, size_t name_len, const char *value,
                      size_t value_len)
{
    if (name_len && name[0] == ':')
        return fail(r, 400, "pseudo-header field in trailers");
    return put_line(r, name, name_len, value, value_len);
}

uint32_t h2_trailers_finish(struct h2_request *r)
{
    return put(r, "\r\n", 2) < 0 ? 0 : r->len;
}

void h2_reply_init(struct h2_request *r, char *head, uint32_t cap, uint8_t method)
{
    h2_request_init(r, head, cap, NULL, 0);
    r->method = method;
    r->reply = true;
}

static int reply_status(struct h2_request *r, const char *value, size_t len)
{
    if (r->line_written || len != 3)
        return fail(r, 502, "bad :status");
    unsigned status = 0;
    for (size_t i = 0; i < 3; i++) {
        if (value[i] < '0' || value[i] > '9')
            return fail(r, 502, "bad :status");
        status = status * 10 + (unsigned)(value[i] - '0');
    }
    if (status < 100)
        return fail(r, 502, "bad :status");
    r->status = (uint16_t)status;
    r->line_written = true;
    char line[80];
    int n = snprintf(line, sizeof(line), "HTTP/1.1 %03u %s\r\n", status, http1_reason(status));
    if (n <= 0 || (size_t)n >= sizeof(line))
        return fail(r, 502, "bad :status");
    return put(r, line, (size_t)n);
}

int h2_reply_field(struct h2_request *r, const char *name, size_t name_len, const char *value,
                   size_t value_len)
{
    if (name_len && name[0] == ':') {
        if (!names(name, name_len, ":status"))
            return fail(r, 502, "unknown pseudo-header field in a response");
        return reply_status(r, value, value_len);
    }
    if (!r->line_written)
        return fail(r, 502, "no :status");
    if (names(name, name_len, "content-length"))
        r->has_length = true;
    return put_line(r, name, name_len, value, value_len);
}

uint32_t h2_reply_finish(struct h2_request *r, bool end_stream, bool *chunked)
{
    *chunked = false;
    if (!r->line_written)
        fail(r, 502, "no :status");
    bool bodiless =
        r->status < 200 || r->status == 204 || r->status == 304 || r->method == HTTP1_METHOD_HEAD;
    if (!bodiless && !r->has_length) {
        if (end_stream) {
            put_line(r, "content-length", 14, "0", 1);
        } else {
            put_line(r, "transfer-encoding", 17, "chunked", 7);
            *chunked = true;
        }
    }
    return put(r, "\r\n", 2) < 0 ? 0 : r->len;
}
