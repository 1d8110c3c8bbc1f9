/*
 * test_http1.c - unit tests for the HTTP/1.1 head parser and the chunked decoder.
 *
 * Every input is placed so that its last byte is followed by an unreadable page: a parser that
 * reads one byte too far crashes the test instead of passing by luck. Heads are fed whole, byte
 * by byte, and in random splits, and the three must agree.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cmocka.h>

#include "http/http1.h"

/* ---- guarded input ---- */

struct guarded {
    char *map;
    size_t map_len;
    char *data; /* data[len] is the first byte of a PROT_NONE page */
};

static struct guarded guard(const char *bytes, size_t len)
{
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    size_t data_pages = (len + page - 1) / page;
    struct guarded g;
    g.map_len = (data_pages + 1) * page;
    g.map = mmap(NULL, g.map_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    assert_true(g.map != MAP_FAILED);
    assert_int_equal(mprotect(g.map + data_pages * page, page, PROT_NONE), 0);
    g.data = g.map + data_pages * page - len;
    memcpy(g.data, bytes, len);
    return g;
}

static void unguard(struct guarded *g)
{
    munmap(g->map, g->map_len);
}

/* ---- request helpers ---- */

static const struct http1_limits limits = {.max_head_bytes = 8192, .max_fields = 64};
/* What feed() parses requests with; the underscore tests point it elsewhere for a while. */
static const struct http1_limits *feed_limits = &limits;
static struct http1_field fields[64];

struct outcome {
    int result;      /* HTTP1_DONE, HTTP1_AGAIN, HTTP1_ERROR */
    uint16_t status; /* on error */
    struct http1_msg msg;
};

/*
 * Scans raw as if it arrived in pieces of the given sizes (0-terminated list; NULL = all at
 * once), then parses it. Each call sees exactly the bytes received so far, guarded.
 */
static struct outcome feed(const char *raw, size_t len, const size_t *pieces, bool request,
                           uint8_t method)
{
    struct outcome o = {0};
    struct http1_scan scan = {0};
    size_t have = 0;
    const char *why = NULL;
    int r = HTTP1_AGAIN;

    while (r == HTTP1_AGAIN && have < len) {
        size_t step = pieces && *pieces ? *pieces++ : len - have;
        if (step > len - have)
            step = len - have;
        have += step;
        struct guarded g = guard(raw, have);
        r = http1_scan_head(&scan, g.data, have, feed_limits, request, &o.status, &why);
        if (r == HTTP1_DONE) {
            o.msg.fields = fields;
            r = request ? http1_parse_request(&scan, g.data, feed_limits, &o.msg)
                        : http1_parse_response(&scan, g.data, feed_limits, method, &o.msg);
            if (r == HTTP1_ERROR)
                o.status = o.msg.error_status;
        }
        unguard(&g);
    }
    o.result = r;
    return o;
}

static struct outcome req(const char *raw)
{
    return feed(raw, strlen(raw), NULL, true, 0);
}

static struct outcome resp(const char *raw, uint8_t method)
{
    return feed(raw, strlen(raw), NULL, false, method);
}

static void assert_same(const struct outcome *a, const struct outcome *b)
{
    assert_int_equal(a->result, b->result);
    assert_int_equal(a->status, b->status);
    if (a->result != HTTP1_DONE)
        return;
    assert_int_equal(a->msg.head_end, b->msg.head_end);
    assert_int_equal(a->msg.body, b->msg.body);
    assert_int_equal(a->msg.content_length, b->msg.content_length);
    assert_int_equal(a->msg.flags, b->msg.flags);
    assert_int_equal(a->msg.nfields, b->msg.nfields);
    assert_int_equal(a->msg.method, b->msg.method);
    assert_int_equal(a->msg.status, b->msg.status);
}

/* Whole, byte by byte, and 50 random splits must all give the same outcome. */
static struct outcome req_all_ways(const char *raw, bool request)
{
    size_t len = strlen(raw);
    struct outcome whole = feed(raw, len, NULL, request, HTTP1_METHOD_GET);
    size_t *ones = malloc((len + 1) * sizeof(*ones));
    for (size_t i = 0; i < len; i++)
        ones[i] = 1;
    ones[len] = 0;
    struct outcome bytewise = feed(raw, len, ones, request, HTTP1_METHOD_GET);
    assert_same(&whole, &bytewise);
    for (int round = 0; round < 50; round++) {
        size_t n = 0, total = 0;
        while (total < len) {
            size_t piece = 1 + (size_t)rand() % (len / 3 + 1);
            ones[n++] = piece;
            total += piece;
        }
        ones[n] = 0;
        struct outcome split = feed(raw, len, ones, request, HTTP1_METHOD_GET);
        assert_same(&whole, &split);
    }
    free(ones);
    return whole;
}

static const struct http1_field *field(const struct outcome *o, const char *raw, const char *name)
{
    for (uint32_t i = 0; i < o->msg.nfields; i++) {
        const struct http1_field *f = &o->msg.fields[i];
        if (http1_token_eq(raw + f->name_off, f->name_len, name))
            return f;
    }
    return NULL;
}

static void assert_rejected(const char *raw, uint16_t status)
{
    struct outcome o = req_all_ways(raw, true);
    assert_int_equal(o.result, HTTP1_ERROR);
    assert_int_equal(o.status, status);
}

/* ---- requests ---- */

static void test_simple_get(void **state)
{
    const char *raw = "GET /path?q=1 HTTP/1.1\r\nHost: example.com\r\nUser-Agent: t\r\n"
                      "Accept:   */*  \r\n\r\n";
    struct outcome o = req_all_ways(raw, true);
    assert_int_equal(o.result, HTTP1_DONE);
    assert_int_equal(o.msg.method, HTTP1_METHOD_GET);
    assert_int_equal(o.msg.version, 11);
    assert_int_equal(o.msg.head_end, strlen(raw));
    assert_int_equal(o.msg.body, HTTP1_BODY_NONE);
    assert_int_equal(o.msg.nfields, 3);
    assert_memory_equal(raw + o.msg.target_off, "/path?q=1", 9);
    assert_int_equal(o.msg.target_len, 9);
    const struct http1_field *accept = field(&o, raw, "accept");
    assert_non_null(accept);
    /* surrounding whitespace is not part of the value */
    assert_int_equal(accept->value_len, 3);
    assert_memory_equal(raw + accept->value_off, "*/*", 3);
    assert_true(o.msg.flags & HTTP1_F_HAS_HOST);
    assert_int_equal(o.msg.host_field, 0);
}

static void test_incomplete_head_waits(void **state)
{
    struct outcome o = req("GET / HTTP/1.1\r\nHost: a\r\n");
    assert_int_equal(o.result, HTTP1_AGAIN);
    o = req("GET / HTTP/1.1\r\nHost: a\r\n\r");
    assert_int_equal(o.result, HTTP1_AGAIN);
}

static void test_leading_empty_line_skipped(void **state)
{
    const char *raw = "\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n";
    struct outcome o = req_all_ways(raw, true);
    assert_int_equal(o.result, HTTP1_DONE);
    assert_int_equal(o.msg.head_start, 2);
    assert_int_equal(o.msg.method_off, 2);
}

static void test_content_length_body(void **state)
{
    struct outcome o =
        req_all_ways("POST /u HTTP/1.1\r\nHost: a\r\nContent-Length: 12\r\n\r\n", true);
    assert_int_equal(o.result, HTTP1_DONE);
    assert_int_equal(o.msg.body, HTTP1_BODY_LENGTH);
    assert_int_equal(o.msg.content_length, 12);
    assert_true(o.msg.flags & HTTP1_F_HAS_LENGTH);

    o = req("POST /u HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n");
    assert_int_equal(o.msg.body, HTTP1_BODY_NONE);
    assert_true(o.msg.flags & HTTP1_F_HAS_LENGTH);

    /* identical repeated values are one value */
    o = req("POST /u HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n");
    assert_int_equal(o.result, HTTP1_DONE);
    assert_int_equal(o.msg.content_length, 5);
    o = req("POST /u HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 5\r\n\r\n");
    assert_int_equal(o.result, HTTP1_DONE);
    assert_int_equal(o.msg.content_length, 5);
}

static void test_chunked_request(void **state)
{
    const char *ok[] = {
        "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: CHUNKED\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:  Chunked \r\n\r\n",
        "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:\tchunked\t\r\n\r\n",
    };
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        struct outcome o = req_all_ways(ok[i], true);
        if (o.result != HTTP1_DONE)
            fail_msg("rejected chunked request %zu: %s", i, ok[i]);
        assert_int_equal(o.msg.body, HTTP1_BODY_CHUNKED);
        /* the client's line is never forwarded: the rewriter writes a canonical one */
        assert_true(field(&o, ok[i], "transfer-encoding")->drop);
    }
}

/* Exactly one coding, chunked, over all Transfer-Encoding lines: anything else is refused. */
static void test_te_variants_rejected(void **state)
{
    static const struct {
        const char *te; /* the Transfer-Encoding field lines */
        uint16_t status;
    } cases[] = {
        /* empty list elements: a recipient that skips them and one that does not disagree */
        {"Transfer-Encoding: ,chunked\r\n", 400},
        {"Transfer-Encoding: , chunked\r\n", 400},
        {"Transfer-Encoding: chunked,\r\n", 400},
        {"Transfer-Encoding: chunked ,\r\n", 400},
        {"Transfer-Encoding: chunked,,\r\n", 400},
        {"Transfer-Encoding: ,\r\n", 400},
        {"Transfer-Encoding: ,\r\nTransfer-Encoding: chunked\r\n", 400},
        {"Transfer-Encoding: chunked\r\nTransfer-Encoding: ,\r\n", 400},
        {"Transfer-Encoding:\r\nTransfer-Encoding: chunked\r\n", 400},
        {"Transfer-Encoding: chunked\r\nTransfer-Encoding: \r\n", 400},
        /* chunked twice, or not last */
        {"Transfer-Encoding: chunked, chunked\r\n", 400},
        {"Transfer-Encoding: chunked, gzip\r\n", 400},
        /* any other coding, alone or before chunked */
        {"Transfer-Encoding: gzip, chunked\r\n", 501},
        {"Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n", 501},
        {"Transfer-Encoding: deflate,chunked\r\n", 501},
        {"Transfer-Encoding: gzip\r\n", 501},
        {"Transfer-Encoding: deflate\r\n", 501},
        {"Transfer-Encoding: identity\r\n", 501},
        {"Transfer-Encoding: identity, chunked\r\n", 501},
        {"Transfer-Encoding: x-gzip\r\n", 501},
        {"Transfer-Encoding: chunkedx\r\n", 501},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char raw[256];
        snprintf(raw, sizeof(raw), "POST / HTTP/1.1\r\nHost: a\r\n%s\r\n", cases[i].te);
        struct outcome o = req_all_ways(raw, true);
        if (o.result != HTTP1_ERROR || o.status != cases[i].status)
            fail_msg("case %zu (%s): result %d status %u, expected %u", i, cases[i].te, o.result,
                     o.status, cases[i].status);
    }
}

static void test_framing_attacks_rejected(void **state)
{
    /* CL.TE and TE.CL */
    assert_rejected("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nTransfer-Encoding: chunked"
                    "\r\n\r\n",
                    400);
    assert_rejected("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 4"
                    "\r\n\r\n",
                    400);
    /* unknown coding: 501; chunked not last, or twice: 400 */
    assert_rejected("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: xchunked\r\n\r\n", 501);
    assert_rejected("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", 400);
    assert_rejected("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n"
                    "Transfer-Encoding: chunked\r\n\r\n",
                    400);
    assert_rejected("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n"
                    "Transfer-Encoding: x\r\n\r\n",
                    501);
    assert_rejected("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: \r\n\r\n", 400);
    assert_rejected("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked;q=1\r\n\r\n", 400);
    assert_rejected("POST / HTTP/1.0\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n", 400);
    /* Content-Length values */
    assert_rejected("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\nContent-Length: 43\r\n\r\n",
                    400);
    assert_rejected("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +5\r\n\r\n", 400);
    assert_rejected("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0x10\r\n\r\n", 400);
    assert_rejected("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n", 400);
    assert_rejected("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1 2\r\n\r\n", 400);
    assert_rejected("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: \r\n\r\n", 400);
    assert_rejected("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 9999999999999999999\r\n\r\n",
                    400);
    assert_rejected("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 6\r\n\r\n", 400);
}

static void test_field_syntax_rejected(void **state)
{
    assert_rejected("GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding : chunked\r\n\r\n", 400);
    assert_rejected("GET / HTTP/1.1\r\n Transfer-Encoding: chunked\r\nHost: a\r\n\r\n", 400);
    assert_rejected("GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n b\r\n\r\n", 400);
    assert_rejected("GET / HTTP/1.1\r\nHost: a\r\nX: X\nY: z\r\n\r\n", 400);
    assert_rejected("GET / HTTP/1.1\r\nHost: a\r\nX: a\rTransfer-Encoding: chunked\r\n\r\n", 400);
    assert_rejected("GET / HTTP/1.1\r\nHost: a\r\nNoColonHere\r\n\r\n", 400);
    assert_rejected("GET / HTTP/1.1\r\nHost: a\r\n: empty-name\r\n\r\n", 400);
    assert_rejected("GET / HTTP/1.1\r\nHost: a\r\nX(y): z\r\n\r\n", 400);
    assert_rejected("GET / HTTP/1.1\r\nHost: a\r\nX: \x7f\r\n\r\n", 400);
    assert_rejected("GET / HTTP/1.1\nHost: a\r\n\r\n", 400);
    assert_rejected("GET / HTTP/1.1\r\nHost: a\r\n\n", 400);

    /* NUL inside a value: needs an explicit length */
    static const char nul[] = "GET / HTTP/1.1\r\nHost: a\r\nX-Test: a\0b\r\n\r\n";
    struct outcome o = feed(nul, sizeof(nul) - 1, NULL, true, 0);
    assert_int_equal(o.result, HTTP1_ERROR);
    assert_int_equal(o.status, 400);

    /* obs-text and tabs are fine in values */
    o = req("GET / HTTP/1.1\r\nHost: a\r\nX: caf\xc3\xa9\tbar\r\n\r\n");
    assert_int_equal(o.result, HTTP1_DONE);
}

static void test_request_line_rejected(void **state)
{
    assert_rejected("G(ET / HTTP/1.1\r\nHost: a\r\n\r\n", 400);
    assert_rejected("GET /a b HTTP/1.1\r\nHost: a\r\n\r\n", 400);
    assert_rejected("GET  /ms  HTTP/1.1\r\nHost: a\r\n\r\n", 400);
    assert_rejected("GET /ts HTTP/1.1 \r\nHost: a\r\n\r\n", 400);
    assert_rejected("GET / http/1.1\r\nHost: a\r\n\r\n", 400);
    assert_rejected("GET / HTTP/1.1x\r\nHost: a\r\n\r\n", 400);
    assert_rejected("GET /\r\nHost: a\r\n\r\n", 400);
    assert_rejected(" GET / HTTP/1.1\r\nHost: a\r\n\r\n", 400);
    assert_rejected("GET / HTTP/2.0\r\nHost: a\r\n\r\n", 505);
    assert_rejected("GET / HTTP/0.9\r\nHost: a\r\n\r\n", 505);
    assert_rejected("GET foo HTTP/1.1\r\nHost: a\r\n\r\n", 400);
    assert_rejected("GET * HTTP/1.1\r\nHost: a\r\n\r\n", 400);
    assert_rejected("GET ftp://a/b HTTP/1.1\r\nHost: a\r\n\r\n", 400);
    assert_rejected("GET http://user@a/b HTTP/1.1\r\nHost: a\r\n\r\n", 400);
    assert_rejected("CONNECT a:443 HTTP/1.1\r\nHost: a\r\n\r\n", 405);
    assert_rejected("GET /caf\xc3\xa9 HTTP/1.1\r\nHost: a\r\n\r\n", 400);

    struct outcome o = req("OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n");
    assert_int_equal(o.result, HTTP1_DONE);
    assert_int_equal(o.msg.method, HTTP1_METHOD_OPTIONS);
    /* HTTP/1.x with a higher minor is handled as 1.1 */
    o = req("GET / HTTP/1.7\r\nHost: a\r\n\r\n");
    assert_int_equal(o.result, HTTP1_DONE);
    assert_int_equal(o.msg.version, 11);
    /* unknown methods are fine: any token */
    o = req("PURGE /x HTTP/1.1\r\nHost: a\r\n\r\n");
    assert_int_equal(o.result, HTTP1_DONE);
    assert_int_equal(o.msg.method, HTTP1_METHOD_OTHER);
}

static void test_host_rules(void **state)
{
    assert_rejected("GET / HTTP/1.1\r\n\r\n", 400);
    assert_rejected("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400);
    assert_rejected("GET / HTTP/1.1\r\nHost: a\r\nhost: a\r\n\r\n", 400);
    assert_rejected("GET / HTTP/1.1\r\nHost: a/b\r\n\r\n", 400);
    assert_rejected("GET / HTTP/1.1\r\nHost: a b\r\n\r\n", 400);
    assert_rejected("GET / HTTP/1.1\r\nHost: user@a\r\n\r\n", 400);
    struct outcome o = req("GET / HTTP/1.0\r\n\r\n");
    assert_int_equal(o.result, HTTP1_DONE);
    assert_int_equal(o.msg.host_field, -1);
    o = req("GET / HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n");
    assert_int_equal(o.result, HTTP1_DONE);
    o = req("GET / HTTP/1.1\r\nHost: \r\n\r\n");
    assert_int_equal(o.result, HTTP1_DONE);
}

static void test_absolute_form(void **state)
{
    const char *raw = "GET http://t.example/abs?x=1 HTTP/1.1\r\nHost: t.example\r\n\r\n";
    struct outcome o = req_all_ways(raw, true);
    assert_int_equal(o.result, HTTP1_DONE);
    assert_true(o.msg.flags & HTTP1_F_ABSOLUTE_FORM);
    assert_false(o.msg.flags & HTTP1_F_TARGET_NO_SLASH);
    assert_int_equal(o.msg.path_len, 8);
    assert_memory_equal(raw + o.msg.path_off, "/abs?x=1", 8);
    assert_int_equal(o.msg.authority_len, 9);
    assert_memory_equal(raw + o.msg.authority_off, "t.example", 9);

    raw = "GET HTTP://h:81 HTTP/1.1\r\nHost: h\r\n\r\n";
    o = req(raw);
    assert_int_equal(o.result, HTTP1_DONE);
    assert_true(o.msg.flags & HTTP1_F_TARGET_NO_SLASH);
    assert_int_equal(o.msg.path_len, 0);
    assert_memory_equal(raw + o.msg.authority_off, "h:81", 4);
}

static void test_connection_options(void **state)
{
    const char *raw = "GET / HTTP/1.1\r\nHost: a\r\nConnection: close, X-Secret\r\nX-Secret: 1\r\n"
                      "Keep-Alive: 5\r\nTE: trailers\r\nUpgrade: websocket\r\nX-Kept: 2\r\n"
                      "Proxy-Connection: x\r\nTrailer: y\r\n\r\n";
    struct outcome o = req_all_ways(raw, true);
    assert_int_equal(o.result, HTTP1_DONE);
    assert_true(o.msg.flags & HTTP1_F_CONN_CLOSE);
    assert_true(o.msg.flags & HTTP1_F_UPGRADE);
    for (uint32_t i = 0; i < o.msg.nfields; i++) {
        const struct http1_field *f = &o.msg.fields[i];
        bool kept = http1_token_eq(raw + f->name_off, f->name_len, "x-kept") ||
                    http1_token_eq(raw + f->name_off, f->name_len, "host");
        assert_int_equal(f->drop, !kept);
    }
    /* a Connection option cannot make us drop framing or routing fields */
    raw = "POST / HTTP/1.1\r\nHost: a\r\nConnection: host, content-length\r\nContent-Length: 1"
          "\r\n\r\n";
    o = req(raw);
    assert_int_equal(o.result, HTTP1_DONE);
    assert_false(o.msg.fields[o.msg.host_field].drop);
    assert_int_equal(o.msg.body, HTTP1_BODY_LENGTH);

    o = req("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n");
    assert_true(o.msg.flags & HTTP1_F_CONN_KEEP_ALIVE);
}

/* A WebSocket handshake: Connection names upgrade and Upgrade is websocket alone, in one field. */
static void test_websocket_upgrade_flags(void **state)
{
    const unsigned both = HTTP1_F_CONN_UPGRADE | HTTP1_F_UPGRADE_WEBSOCKET;
    struct outcome o = req_all_ways("GET /chat HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, "
                                    "Upgrade\r\nUpgrade: WebSocket\r\n\r\n",
                                    true);
    assert_int_equal(o.result, HTTP1_DONE);
    assert_int_equal(o.msg.flags & both, both);
    static const char *const not_websocket[] = {
        "GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket, h2c\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
        "Upgrade: h2c\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n"
        "Upgrade: websocket\r\n\r\n",
    };
    for (size_t i = 0; i < sizeof(not_websocket) / sizeof(not_websocket[0]); i++) {
        o = req(not_websocket[i]);
        assert_int_equal(o.result, HTTP1_DONE);
        assert_false(o.msg.flags & HTTP1_F_UPGRADE_WEBSOCKET);
        assert_true(o.msg.flags & HTTP1_F_CONN_UPGRADE);
    }
    o = req("GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n\r\n"); /* no Connection */
    assert_int_equal(o.msg.flags & both, HTTP1_F_UPGRADE_WEBSOCKET);
}

static void test_expect(void **state)
{
    struct outcome o = req("POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-Continue\r\nContent-Length: 3"
                           "\r\n\r\n");
    assert_true(o.msg.flags & HTTP1_F_EXPECT_CONTINUE);
    /* HTTP/1.0 cannot take part in 100-continue: ignored and not forwarded */
    const char *raw = "POST / HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n";
    o = req(raw);
    assert_false(o.msg.flags & HTTP1_F_EXPECT_CONTINUE);
    assert_true(field(&o, raw, "expect")->drop);
}

/* ---- field names with '_' ---- */

static const char underscore_req[] =
    "POST / HTTP/1.1\r\nHost: a\r\nTransfer_Encoding: chunked\r\nContent-Length: 5\r\n"
    "Content_Length: 48\r\nX-Forwarded_For: 203.0.113.9\r\nX-Value: a_b\r\n\r\n";

/* Parses raw once with the given underscore rule; *counter receives the drops it counted. */
static struct outcome req_with(const char *raw, uint8_t rule, _Atomic uint64_t *counter)
{
    struct http1_limits l = limits;
    l.underscores = rule;
    l.underscore_drops = counter;
    feed_limits = &l;
    struct outcome o = req(raw);
    feed_limits = &limits;
    return o;
}

static void test_underscore_dropped_by_default(void **state)
{
    /* the rule does not depend on how the head arrived */
    struct outcome o = req_all_ways(underscore_req, true);
    assert_int_equal(o.result, HTTP1_DONE);

    _Atomic uint64_t dropped = 0;
    o = req_with(underscore_req, HTTP1_UNDERSCORES_DROP, &dropped);
    assert_int_equal(o.result, HTTP1_DONE);
    assert_int_equal(dropped, 3);
    /* a name with '_' is nothing to the parser: the framing comes from Content-Length alone */
    assert_int_equal(o.msg.body, HTTP1_BODY_LENGTH);
    assert_int_equal(o.msg.content_length, 5);
    assert_true(field(&o, underscore_req, "transfer_encoding")->drop);
    assert_true(field(&o, underscore_req, "content_length")->drop);
    assert_true(field(&o, underscore_req, "x-forwarded_for")->drop);
    assert_int_equal(field(&o, underscore_req, "transfer_encoding")->id, HTTP1_FIELD_OTHER);
    /* an underscore in a value is fine */
    assert_false(field(&o, underscore_req, "x-value")->drop);
    assert_false(field(&o, underscore_req, "host")->drop);

    /* counted per accepted request, so a rejected one adds nothing */
    o = req_with("GET / HTTP/1.1\r\nHost: a\r\nX_Y: 1\r\nContent-Length: x\r\n\r\n",
                 HTTP1_UNDERSCORES_DROP, &dropped);
    assert_int_equal(o.result, HTTP1_ERROR);
    assert_int_equal(dropped, 3);
    o = req_with("GET / HTTP/1.1\r\nHost: a\r\n_: 1\r\n\r\n", HTTP1_UNDERSCORES_DROP, &dropped);
    assert_int_equal(o.result, HTTP1_DONE);
    assert_int_equal(dropped, 4);
    /* no counter is fine */
    o = req_with(underscore_req, HTTP1_UNDERSCORES_DROP, NULL);
    assert_int_equal(o.result, HTTP1_DONE);
}

static void test_underscore_allow_and_reject(void **state)
{
    _Atomic uint64_t dropped = 0;
    struct outcome o = req_with(underscore_req, HTTP1_UNDERSCORES_ALLOW, &dropped);
    assert_int_equal(o.result, HTTP1_DONE);
    assert_false(field(&o, underscore_req, "transfer_encoding")->drop);
    assert_false(field(&o, underscore_req, "content_length")->drop);
    assert_false(field(&o, underscore_req, "x-forwarded_for")->drop);
    assert_int_equal(o.msg.content_length, 5);
    assert_int_equal(dropped, 0);

    o = req_with(underscore_req, HTTP1_UNDERSCORES_REJECT, &dropped);
    assert_int_equal(o.result, HTTP1_ERROR);
    assert_int_equal(o.status, 400);
    assert_int_equal(dropped, 0);
    o = req_with("GET / HTTP/1.1\r\nHost: a\r\nX-Value: a_b\r\n\r\n", HTTP1_UNDERSCORES_REJECT,
                 &dropped);
    assert_int_equal(o.result, HTTP1_DONE);

    /* responses are not affected, whatever the rule */
    struct http1_limits l = limits;
    l.underscores = HTTP1_UNDERSCORES_REJECT;
    l.underscore_drops = &dropped;
    feed_limits = &l;
    const char *raw = "HTTP/1.1 200 OK\r\nX_Backend: 1\r\nContent-Length: 0\r\n\r\n";
    o = resp(raw, HTTP1_METHOD_GET);
    feed_limits = &limits;
    assert_int_equal(o.result, HTTP1_DONE);
    assert_false(field(&o, raw, "x_backend")->drop);
    assert_int_equal(dropped, 0);
}

static void test_limits(void **state)
{
    /* a request line that does not end within the head limit: 414 */
    size_t n = limits.max_head_bytes + 100;
    static char raw[8192 + 200];
    strcpy(raw, "GET /");
    memset(raw + 5, 'a', n);
    raw[5 + n] = '\0';
    struct outcome o = feed(raw, strlen(raw), NULL, true, 0);
    assert_int_equal(o.result, HTTP1_ERROR);
    assert_int_equal(o.status, 414);
    /* a big field: 431 */
    strcpy(raw, "GET / HTTP/1.1\r\nHost: a\r\nX-Big: ");
    size_t k = strlen(raw);
    memset(raw + k, 'b', n - k);
    raw[n] = '\0';
    o = feed(raw, strlen(raw), NULL, true, 0);
    assert_int_equal(o.result, HTTP1_ERROR);
    assert_int_equal(o.status, 431);

    /* too many fields: 431 */
    char many[4096] = "GET / HTTP/1.1\r\nHost: a\r\n";
    for (int i = 0; i < 70; i++)
        snprintf(many + strlen(many), sizeof(many) - strlen(many), "X-%d: v\r\n", i);
    strcat(many, "\r\n");
    o = req(many);
    assert_int_equal(o.result, HTTP1_ERROR);
    assert_int_equal(o.status, 431);

    /* many empty lines before a request are not a way to fill memory */
    o = req("\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n");
    assert_int_equal(o.result, HTTP1_ERROR);
    assert_int_equal(o.status, 400);
}

/* ---- responses ---- */

static void test_response_framing(void **state)
{
    struct outcome o = req_all_ways("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", false);
    assert_int_equal(o.result, HTTP1_DONE);
    assert_int_equal(o.msg.status, 200);
    assert_int_equal(o.msg.body, HTTP1_BODY_LENGTH);

    o = resp("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", HTTP1_METHOD_GET);
    assert_int_equal(o.msg.body, HTTP1_BODY_CHUNKED);
    o = resp("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", HTTP1_METHOD_GET);
    assert_int_equal(o.msg.body, HTTP1_BODY_CLOSE);
    /* a response may carry another coding before chunked; it is relayed as it is */
    const char *gz = "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n";
    o = req_all_ways(gz, false);
    assert_int_equal(o.result, HTTP1_DONE);
    assert_int_equal(o.msg.body, HTTP1_BODY_CHUNKED);
    assert_false(field(&o, gz, "transfer-encoding")->drop);
    o = resp("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n",
             HTTP1_METHOD_GET);
    assert_int_equal(o.msg.body, HTTP1_BODY_CHUNKED);
    o = resp("HTTP/1.1 200 OK\r\n\r\n", HTTP1_METHOD_GET);
    assert_int_equal(o.msg.body, HTTP1_BODY_CLOSE);
    o = resp("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", HTTP1_METHOD_HEAD);
    assert_int_equal(o.msg.body, HTTP1_BODY_NONE);
    assert_true(o.msg.flags & HTTP1_F_HAS_LENGTH);
    o = resp("HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n", HTTP1_METHOD_GET);
    assert_int_equal(o.msg.body, HTTP1_BODY_NONE);
    assert_false(o.msg.flags & HTTP1_F_HAS_LENGTH);
    o = resp("HTTP/1.1 304 Not Modified\r\nContent-Length: 5\r\n\r\n", HTTP1_METHOD_GET);
    assert_int_equal(o.msg.body, HTTP1_BODY_NONE);
    assert_true(o.msg.flags & HTTP1_F_HAS_LENGTH);
    o = resp("HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n", HTTP1_METHOD_GET);
    assert_int_equal(o.msg.status, 103);
    assert_int_equal(o.msg.body, HTTP1_BODY_NONE);
    /* missing reason phrase, and an empty one */
    o = resp("HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n", HTTP1_METHOD_GET);
    assert_int_equal(o.result, HTTP1_DONE);
    o = resp("HTTP/1.1 200 \r\nContent-Length: 0\r\n\r\n", HTTP1_METHOD_GET);
    assert_int_equal(o.result, HTTP1_DONE);
    o = resp("HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n",
             HTTP1_METHOD_GET);
    assert_int_equal(o.msg.version, 10);
    assert_true(o.msg.flags & HTTP1_F_CONN_KEEP_ALIVE);
}

static void test_response_rejected(void **state)
{
    const char *bad[] = {
        "HTTP/1.1 200 OK\r\nContent-Length: 58\r\nTransfer-Encoding: chunked\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 58\r\n\r\n",
        "HTTP/1.1 2000 OK\r\nContent-Length: 0\r\n\r\n",
        "HTTP/1.1 20 OK\r\n\r\n",
        "HTTP/1.1 600 OK\r\n\r\n",
        "HTTP/1.1 099 OK\r\n\r\n",
        "HTTP/1.1 200 OK\r\nX-Foo: a\r\n b\r\nContent-Length: 2\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length : 5\r\n\r\n",
        "HTTP/2 200 OK\r\n\r\n",
        "HTTP/2.0 200 OK\r\n\r\n",
        "http/1.1 200 OK\r\n\r\n",
        "HTTP/1.1  200 OK\r\n\r\n",
        "HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, chunked\r\n\r\n",
        "\r\nHTTP/1.1 200 OK\r\n\r\n",
        "HTTP/1.1 200 OK\r\nX: a\rb\r\n\r\n",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n\r\n",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: xyz\r\n\r\n",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
        /* empty list elements */
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: ,chunked\r\n\r\n",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked,\r\n\r\n",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip,,chunked\r\n\r\n",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: ,\r\n\r\n",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding:\r\n\r\n",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct outcome o = req_all_ways(bad[i], false);
        if (o.result != HTTP1_ERROR)
            fail_msg("accepted bad response %zu: %s", i, bad[i]);
        assert_int_equal(o.status, 502);
    }
}

/* ---- chunked ---- */

/* Feeds body to a fresh decoder in pieces of `piece` bytes (0 = all at once). */
static int chunked_run(const char *body, size_t len, bool decode, size_t piece, char *out,
                       size_t *out_len, size_t *consumed)
{
    struct http1_chunked c = {0};
    char *work = malloc(len + 1);
    size_t pos = 0, total_out = 0;
    int r = HTTP1_AGAIN;
    while (pos < len && r == HTTP1_AGAIN) {
        size_t n = piece ? piece : len - pos;
        if (n > len - pos)
            n = len - pos;
        struct guarded g = guard(body + pos, n);
        size_t used, produced;
        r = http1_chunked_parse(&c, g.data, n, decode, &used, &produced);
        assert_true(used <= n);
        assert_true(produced <= used);
        if (r == HTTP1_AGAIN)
            assert_int_equal(used, n);
        memcpy(work + total_out, g.data, produced);
        total_out += produced;
        pos += used;
        unguard(&g);
    }
    memcpy(out, work, total_out);
    *out_len = total_out;
    *consumed = pos;
    free(work);
    return r;
}

static void check_chunked(const char *body, const char *payload, size_t message_len)
{
    size_t len = strlen(body);
    char out[4096];
    size_t out_len, consumed;
    for (size_t piece = 0; piece <= 7; piece++) {
        int r = chunked_run(body, len, true, piece, out, &out_len, &consumed);
        assert_int_equal(r, HTTP1_DONE);
        assert_int_equal(consumed, message_len);
        assert_int_equal(out_len, strlen(payload));
        assert_memory_equal(out, payload, out_len);
        r = chunked_run(body, len, false, piece, out, &out_len, &consumed);
        assert_int_equal(r, HTTP1_DONE);
        assert_int_equal(out_len, message_len);
        assert_memory_equal(out, body, message_len);
    }
}

static void test_chunked_valid(void **state)
{
    check_chunked("5\r\nhello\r\n0\r\n\r\n", "hello", 15);
    check_chunked("A;foo=bar\r\n0123456789\r\n0\r\n\r\n", "0123456789", 28);
    check_chunked("a\r\n0123456789\r\n0\r\n\r\n", "0123456789", 20);
    check_chunked("000005\r\nhello\r\n0\r\n\r\n", "hello", 20);
    check_chunked("5 ; ext = \"q\\\"x\" ; b\r\nhello\r\n0\r\n\r\n", "hello", 34);
    check_chunked("5\r\nhello\r\n0\r\nX-Trailer: 1\r\nY: two\r\n\r\n", "hello", 37);
    /* bytes after the message are left alone */
    check_chunked("3\r\nabc\r\n0\r\n\r\nGET / HTTP/1.1\r\n", "abc", 13);
    check_chunked("0\r\n\r\n", "", 5);
}

/* body is refused whole, byte by byte and in pieces of 2 and 3, passed through and decoded. */
static void assert_chunked_rejected(const char *body)
{
    char out[256];
    size_t out_len, consumed;
    for (size_t piece = 0; piece <= 3; piece++) {
        int r = chunked_run(body, strlen(body), piece & 1, piece, out, &out_len, &consumed);
        if (r != HTTP1_ERROR)
            fail_msg("accepted bad chunked body (piece %zu): %s", piece, body);
    }
}

static void test_chunked_invalid(void **state)
{
    const char *bad[] = {
        "0x5\r\nhello\r\n0\r\n\r\n",      " 5\r\nhello\r\n0\r\n\r\n", "5\r\nhello\n0\r\n\r\n",
        "5\r\nhelloX\r\n0\r\n\r\n",       "zz\r\nhello\r\n0\r\n\r\n", "5\nhello\r\n0\r\n\r\n",
        "0;a=\"\r\n\r\nGET /x\"\r\n\r\n", "5;\r\nhello\r\n0\r\n\r\n", "5;a=\r\nhello\r\n0\r\n\r\n",
        "-5\r\nhello\r\n0\r\n\r\n",       "0\r\n X: folded\r\n\r\n",  "0\r\nX : y\r\n\r\n",
        "0\r\nX: a\nY: b\r\n\r\n",        "11111111111111111\r\n",    "\r\n",
        "5\r\nhello\r\n0\r\n\n",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_chunked_rejected(bad[i]);
    /* an endless chunk extension is cut off */
    static char ext[5016], ext_out[5016];
    memcpy(ext, "5;", 2);
    memset(ext + 2, 'x', 5000);
    memcpy(ext + 5002, "\r\n", 3);
    size_t out_len, consumed;
    assert_int_equal(chunked_run(ext, strlen(ext), false, 0, ext_out, &out_len, &consumed),
                     HTTP1_ERROR);
    /* and so is an endless trailer section */
    struct http1_chunked c = {.max_trailer = 64};
    char trailer[512] = "0\r\n";
    for (int i = 0; i < 20; i++)
        strcat(trailer, "X-T: vvvvvvv\r\n");
    size_t used, produced;
    assert_int_equal(http1_chunked_parse(&c, trailer, strlen(trailer), false, &used, &produced),
                     HTTP1_ERROR);
}

/* Whitespace in a chunk-size line is BWS: only around the ';' and '=' of an extension (RFC 9112
 * section 7.1.1). "5 \r\n" is read as 5 by some servers and refused by others. */
static void test_chunk_size_whitespace(void **state)
{
    check_chunked("5 ;ext\r\nhello\r\n0\r\n\r\n", "hello", 20);
    check_chunked("5\t;ext\r\nhello\r\n0\r\n\r\n", "hello", 20);
    check_chunked("5; ext=1\r\nhello\r\n0\r\n\r\n", "hello", 22);
    check_chunked("5;a=\"x\"\r\nhello\r\n0\r\n\r\n", "hello", 21);
    check_chunked("5;a=\"x\";b\r\nhello\r\n0\r\n\r\n", "hello", 23);
    check_chunked("5;a=\"x\" ;b\r\nhello\r\n0\r\n\r\n", "hello", 24);

    static const char *const bad[] = {
        "5 \r\nhello\r\n0\r\n\r\n",         "5\t\r\nhello\r\n0\r\n\r\n",
        "5  \r\nhello\r\n0\r\n\r\n",        " 5\r\nhello\r\n0\r\n\r\n",
        "5 5\r\nhello\r\n0\r\n\r\n",        "5\r\nhello\r\n0 \r\n\r\n",
        "5;a \r\nhello\r\n0\r\n\r\n",       "5;a=1 \r\nhello\r\n0\r\n\r\n",
        "5;a=\"x\" \r\nhello\r\n0\r\n\r\n", "5;a=\"x\"b\r\nhello\r\n0\r\n\r\n",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_chunked_rejected(bad[i]);
}

static void test_chunked_large_sizes(void **state)
{
    /* a big chunk is skipped in O(1) per call and counted */
    struct http1_chunked c = {0};
    char head[] = "FFFFFFFF\r\n";
    size_t used, produced;
    assert_int_equal(http1_chunked_parse(&c, head, strlen(head), false, &used, &produced),
                     HTTP1_AGAIN);
    assert_int_equal(c.remaining, 0xFFFFFFFFull);
    static char data[65536];
    assert_int_equal(http1_chunked_parse(&c, data, sizeof(data), false, &used, &produced),
                     HTTP1_AGAIN);
    assert_int_equal(used, sizeof(data));
    assert_int_equal(c.remaining, 0xFFFFFFFFull - sizeof(data));
    assert_int_equal(c.payload, sizeof(data));
}

int main(void)
{
    srand(12345);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_simple_get),
        cmocka_unit_test(test_incomplete_head_waits),
        cmocka_unit_test(test_leading_empty_line_skipped),
        cmocka_unit_test(test_content_length_body),
        cmocka_unit_test(test_chunked_request),
        cmocka_unit_test(test_te_variants_rejected),
        cmocka_unit_test(test_framing_attacks_rejected),
        cmocka_unit_test(test_field_syntax_rejected),
        cmocka_unit_test(test_request_line_rejected),
        cmocka_unit_test(test_host_rules),
        cmocka_unit_test(test_absolute_form),
        cmocka_unit_test(test_connection_options),
        cmocka_unit_test(test_websocket_upgrade_flags),
        cmocka_unit_test(test_expect),
        cmocka_unit_test(test_underscore_dropped_by_default),
        cmocka_unit_test(test_underscore_allow_and_reject),
        cmocka_unit_test(test_limits),
        cmocka_unit_test(test_response_framing),
        cmocka_unit_test(test_response_rejected),
        cmocka_unit_test(test_chunked_valid),
        cmocka_unit_test(test_chunked_invalid),
        cmocka_unit_test(test_chunk_size_whitespace),
        cmocka_unit_test(test_chunked_large_sizes),
    };
    return cmocka_run_group_tests_name("http1", tests, NULL, NULL);
}
