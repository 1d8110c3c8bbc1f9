/*
 * http1.c - strict HTTP/1.1 head parser and chunked decoder (see http1.h for the contract).
 *
 * Grammar references are to RFC 9112 (message syntax) and RFC 9110 (semantics). Where the RFCs
 * allow a recipient either to reject or to repair, this file rejects: a proxy that repairs input
 * differently from the server behind it is how request smuggling happens.
 */
#include "http/http1.h"

#include <string.h>

/* ---- character classes ---- */

enum {
    C_TCHAR = 1 << 0,  /* token characters (RFC 9110 section 5.6.2) */
    C_VALUE = 1 << 1,  /* field-value bytes: HTAB, SP, VCHAR, obs-text */
    C_TARGET = 1 << 2, /* request-target bytes we accept: VCHAR */
    C_HOST = 1 << 3,   /* Host value: reg-name, IP literal and port characters */
    C_HEX = 1 << 4,
};

static unsigned char char_class[256];

static void init_char_class(void)
{
    static const char tchar_extra[] = "!#$%&'*+-.^_`|~";
    static const char host_extra[] = "-._~%!$&'()*+,;=:[]";
    for (int c = 0; c < 256; c++) {
        unsigned char k = 0;
        bool alnum = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
        if (alnum || (c && strchr(tchar_extra, c)))
            k |= C_TCHAR;
        if (c == '\t' || (c >= 0x20 && c != 0x7f))
            k |= C_VALUE;
        if (c > 0x20 && c < 0x7f)
            k |= C_TARGET;
        if (alnum || (c && strchr(host_extra, c)))
            k |= C_HOST;
        if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'))
            k |= C_HEX;
        char_class[c] = k;
    }
}

static inline bool is_class(unsigned char c, unsigned char k)
{
    return char_class[c] & k;
}

/* The table is built before main() runs, so threads only ever read it. */
__attribute__((constructor)) static void build_char_class(void)
{
    init_char_class();
}

static inline char lower(char c)
{
    return (c >= 'A' && c <= 'Z') ? (char)(c + 32) : c;
}

bool http1_token_eq(const char *p, size_t len, const char *lower_name)
{
    /* Most comparisons fail on the first byte: decide those without entering the loop. */
    if (len && lower(p[0]) != lower_name[0])
        return false;
    size_t i = 0;
    for (; i < len; i++) {
        if (!lower_name[i] || lower(p[i]) != lower_name[i])
            return false;
    }
    return lower_name[i] == '\0';
}

static inline bool is_ows(char c)
{
    return c == ' ' || c == '\t';
}

/* ---- end-of-head search ---- */

/* How many bytes of empty lines a client may send before a request line (RFC 9112 section 2.2). */
#define MAX_LEADING_EMPTY_LINES_BYTES 16

static int scan_error(uint16_t *status, const char **error, uint16_t code, const char *why)
{
    *status = code;
    *error = why;
    return HTTP1_ERROR;
}

int http1_scan_head(struct http1_scan *scan, const char *buf, size_t len,
                    const struct http1_limits *limits, bool is_request, uint16_t *error_status,
                    const char **error)
{
    uint16_t too_large = is_request ? 431 : 502;
    size_t pos = scan->pos;

    while (pos < len) {
        const char *lf = memchr(buf + pos, '\n', len - pos);
        if (!lf) {
            pos = len;
            break;
        }
        uint32_t i = (uint32_t)(lf - buf);
        if (i == scan->line_start || buf[i - 1] != '\r')
            return scan_error(error_status, error, is_request ? 400 : 502, "bare LF");
        uint32_t line_len = i - 1 - scan->line_start;
        if (line_len == 0) {
            if (scan->first_line_done) {
                scan->head_end = i + 1;
                scan->pos = i + 1;
                if (scan->head_end - scan->head_start > limits->max_head_bytes)
                    return scan_error(error_status, error, too_large, "head too large");
                return HTTP1_DONE;
            }
            if (!is_request)
                return scan_error(error_status, error, 502, "empty line before status line");
            scan->head_start = i + 1;
            if (scan->head_start > MAX_LEADING_EMPTY_LINES_BYTES)
                return scan_error(error_status, error, 400, "too many empty lines");
        } else if (!scan->first_line_done) {
            scan->first_line_done = true;
            if (line_len > limits->max_head_bytes)
                return scan_error(error_status, error, is_request ? 414 : 502,
                                  is_request ? "request line too long" : "status line too long");
        }
        scan->line_start = i + 1;
        pos = i + 1;
    }
    scan->pos = (uint32_t)pos;
    if (len - scan->head_start > limits->max_head_bytes) {
        if (!scan->first_line_done)
            return scan_error(error_status, error, is_request ? 414 : 502,
                              is_request ? "request line too long" : "status line too long");
        return scan_error(error_status, error, too_large, "head too large");
    }
    return HTTP1_AGAIN;
}

/* ---- field lines ---- */

static int fail(struct http1_msg *msg, uint16_t status, const char *why)
{
    msg->error_status = status;
    msg->error = why;
    return HTTP1_ERROR;
}

static uint8_t field_id(const char *name, size_t len)
{
    switch (len) {
    case 2:
        return http1_token_eq(name, len, "te") ? HTTP1_FIELD_TE : HTTP1_FIELD_OTHER;
    case 4:
        return http1_token_eq(name, len, "host") ? HTTP1_FIELD_HOST : HTTP1_FIELD_OTHER;
    case 6:
        return http1_token_eq(name, len, "expect") ? HTTP1_FIELD_EXPECT : HTTP1_FIELD_OTHER;
    case 7:
        if (http1_token_eq(name, len, "trailer"))
            return HTTP1_FIELD_TRAILER;
        if (http1_token_eq(name, len, "upgrade"))
            return HTTP1_FIELD_UPGRADE;
        return HTTP1_FIELD_OTHER;
    case 10:
        if (http1_token_eq(name, len, "connection"))
            return HTTP1_FIELD_CONNECTION;
        if (http1_token_eq(name, len, "keep-alive"))
            return HTTP1_FIELD_KEEP_ALIVE;
        return HTTP1_FIELD_OTHER;
    case 14:
        return http1_token_eq(name, len, "content-length") ? HTTP1_FIELD_CONTENT_LENGTH
                                                           : HTTP1_FIELD_OTHER;
    case 15:
        return http1_token_eq(name, len, "x-forwarded-for") ? HTTP1_FIELD_X_FORWARDED_FOR
                                                            : HTTP1_FIELD_OTHER;
    case 16:
        if (http1_token_eq(name, len, "proxy-connection"))
            return HTTP1_FIELD_PROXY_CONNECTION;
        if (http1_token_eq(name, len, "x-forwarded-host"))
            return HTTP1_FIELD_X_FORWARDED_HOST;
        return HTTP1_FIELD_OTHER;
    case 17:
        if (http1_token_eq(name, len, "transfer-encoding"))
            return HTTP1_FIELD_TRANSFER_ENCODING;
        if (http1_token_eq(name, len, "x-forwarded-proto"))
            return HTTP1_FIELD_X_FORWARDED_PROTO;
        return HTTP1_FIELD_OTHER;
    default:
        return HTTP1_FIELD_OTHER;
    }
}

/*
 * Parses the field lines in buf[pos, end), where end is the start of the final empty line's CRLF.
 * Every line is known to end in CRLF (the scan checked each LF).
 */
static int parse_fields(const char *buf, uint32_t pos, uint32_t end,
                        const struct http1_limits *limits, struct http1_msg *msg, uint16_t bad)
{
    msg->nfields = 0;
    while (pos < end) {
        const char *lf = memchr(buf + pos, '\n', end + 2 - pos);
        uint32_t eol = (uint32_t)(lf - buf) - 1; /* the CR */
        const unsigned char *p = (const unsigned char *)buf;

        if (is_ows((char)p[pos]))
            return fail(msg, bad, "whitespace at start of field line (obs-fold)");
        uint32_t i = pos;
        while (i < eol && is_class(p[i], C_TCHAR))
            i++;
        if (i == pos || i == eol || p[i] != ':')
            return fail(msg, bad,
                        (i < eol && is_ows((char)p[i])) ? "whitespace before colon"
                                                        : "invalid field name");
        uint32_t name_len = i - pos;
        i++;
        while (i < eol && is_ows((char)p[i]))
            i++;
        uint32_t value_start = i, value_end = i;
        for (; i < eol; i++) {
            unsigned char c = p[i];
            /* visible ASCII and obs-text first: nearly every byte takes this branch */
            if (c > 0x20 && c != 0x7f) {
                value_end = i + 1;
                continue;
            }
            if (!is_ows((char)c))
                return fail(msg, bad,
                            c == '\r' ? "bare CR in field value"
                                      : "control character in field value");
        }
        if (msg->nfields == limits->max_fields)
            return fail(msg, bad == 400 ? 431 : bad, "too many header fields");
        if (name_len > UINT16_MAX)
            return fail(msg, bad == 400 ? 431 : bad, "field name too long");
        struct http1_field *f = &msg->fields[msg->nfields++];
        f->name_off = pos;
        f->name_len = (uint16_t)name_len;
        f->value_off = value_start;
        f->value_len = value_end - value_start;
        f->id = field_id(buf + pos, name_len);
        f->drop = 0;
        pos = eol + 2;
    }
    return HTTP1_DONE;
}

/* Content-Length = 1*DIGIT; a list of identical values is accepted (RFC 9110 section 8.6). */
static bool parse_content_length(const char *v, uint32_t len, uint64_t *out)
{
    uint32_t i = 0;
    bool have = false;
    uint64_t value = 0;

    for (;;) {
        while (i < len && is_ows(v[i]))
            i++;
        uint32_t digits = 0;
        uint64_t n = 0;
        while (i < len && v[i] >= '0' && v[i] <= '9') {
            if (++digits > 18) /* keeps n far from overflow; 10^18 bytes is not a real body */
                return false;
            n = n * 10 + (uint64_t)(v[i] - '0');
            i++;
        }
        if (digits == 0)
            return false;
        if (have && n != value)
            return false;
        value = n;
        have = true;
        while (i < len && is_ows(v[i]))
            i++;
        if (i == len)
            break;
        if (v[i] != ',')
            return false;
        i++;
    }
    *out = value;
    return true;
}

/* Walks a comma-separated list (RFC 9110 section 5.6.1), calling fn on each non-empty element. */
typedef bool (*list_fn)(const char *elem, uint32_t len, void *arg);

static bool for_each_list_element(const char *v, uint32_t len, list_fn fn, void *arg)
{
    uint32_t i = 0;
    while (i < len) {
        while (i < len && (is_ows(v[i]) || v[i] == ','))
            i++;
        uint32_t start = i;
        while (i < len && v[i] != ',')
            i++;
        uint32_t end = i;
        while (end > start && is_ows(v[end - 1]))
            end--;
        if (end > start && !fn(v + start, end - start, arg))
            return false;
    }
    return true;
}

/*
 * Calls fn on every member of a comma-separated list, empty ones included (len 0): for fields where
 * an empty element is not noise but a sign that two parsers may read the list differently. An
 * empty value is one empty member.
 */
static void for_each_list_member(const char *v, uint32_t len, list_fn fn, void *arg)
{
    uint32_t i = 0;
    for (;;) {
        uint32_t start = i;
        while (i < len && v[i] != ',')
            i++;
        uint32_t end = i;
        while (start < end && is_ows(v[start]))
            start++;
        while (end > start && is_ows(v[end - 1]))
            end--;
        if (!fn(v + start, end - start, arg) || i == len)
            return;
        i++; /* past the comma */
    }
}

struct te_state {
    unsigned count;     /* codings, over every Transfer-Encoding line */
    bool empty;         /* an empty list element (",chunked", "chunked,", an empty value) */
    bool any;           /* at least one coding */
    bool chunked_seen;  /* chunked appeared */
    bool chunked_last;  /* the last coding so far is chunked */
    bool chunked_twice; /* chunked appeared more than once */
    bool unknown;       /* a coding we do not know */
    bool malformed;     /* not a token (parameters included) */
};

static bool te_element(const char *e, uint32_t len, void *arg)
{
    struct te_state *te = arg;
    if (len == 0) {
        te->empty = true;
        return true;
    }
    te->count++;
    for (uint32_t i = 0; i < len; i++)
        if (!is_class((unsigned char)e[i], C_TCHAR)) {
            te->malformed = true;
            return true;
        }
    te->any = true;
    if (http1_token_eq(e, len, "chunked")) {
        if (te->chunked_seen)
            te->chunked_twice = true;
        te->chunked_seen = true;
        te->chunked_last = true;
        return true;
    }
    te->chunked_last = false;
    if (!http1_token_eq(e, len, "gzip") && !http1_token_eq(e, len, "x-gzip") &&
        !http1_token_eq(e, len, "deflate") && !http1_token_eq(e, len, "compress") &&
        !http1_token_eq(e, len, "x-compress"))
        te->unknown = true;
    return true;
}

struct connection_state {
    const char *buf;
    struct http1_msg *msg;
};

/* One Connection option: close, keep-alive, or the name of a field that is hop-by-hop. */
static bool connection_element(const char *e, uint32_t len, void *arg)
{
    struct connection_state *cs = arg;
    struct http1_msg *msg = cs->msg;
    if (http1_token_eq(e, len, "close")) {
        msg->flags |= HTTP1_F_CONN_CLOSE;
        return true;
    }
    if (http1_token_eq(e, len, "keep-alive")) {
        msg->flags |= HTTP1_F_CONN_KEEP_ALIVE;
        return true;
    }
    if (http1_token_eq(e, len, "upgrade")) /* names the Upgrade field, which is dropped anyway */
        msg->flags |= HTTP1_F_CONN_UPGRADE;
    for (uint32_t i = 0; i < msg->nfields; i++) {
        struct http1_field *f = &msg->fields[i];
        /* Framing and routing fields are regenerated or checked by us; a client must not be able
         * to make us drop them by naming them here. */
        if (f->id == HTTP1_FIELD_HOST || f->id == HTTP1_FIELD_CONTENT_LENGTH ||
            f->id == HTTP1_FIELD_TRANSFER_ENCODING)
            continue;
        if (f->name_len == len) {
            bool same = true;
            for (uint32_t k = 0; k < len && same; k++)
                same = lower(cs->buf[f->name_off + k]) == lower(e[k]);
            if (same)
                f->drop = 1;
        }
    }
    return true;
}

/* Semantics common to requests and responses: framing fields and hop-by-hop fields. */
struct framing {
    bool cl_seen, cl_invalid, te_seen, host_dup, host_invalid;
    uint64_t cl;
    struct te_state te;
};

static void classify_fields(const char *buf, struct http1_msg *msg, struct framing *fr)
{
    memset(fr, 0, sizeof(*fr));
    msg->host_field = -1;
    for (uint32_t i = 0; i < msg->nfields; i++) {
        struct http1_field *f = &msg->fields[i];
        const char *v = buf + f->value_off;
        switch (f->id) {
        case HTTP1_FIELD_HOST:
            if (msg->host_field >= 0)
                fr->host_dup = true;
            msg->host_field = (int32_t)i;
            msg->flags |= HTTP1_F_HAS_HOST;
            for (uint32_t k = 0; k < f->value_len; k++)
                if (!is_class((unsigned char)v[k], C_HOST))
                    fr->host_invalid = true;
            break;
        case HTTP1_FIELD_CONTENT_LENGTH: {
            uint64_t n = 0;
            f->drop = 1; /* re-emitted once, in canonical form */
            if (!parse_content_length(v, f->value_len, &n) || (fr->cl_seen && n != fr->cl))
                fr->cl_invalid = true;
            else
                fr->cl = n;
            fr->cl_seen = true;
            break;
        }
        case HTTP1_FIELD_TRANSFER_ENCODING:
            fr->te_seen = true;
            for_each_list_member(v, f->value_len, te_element, &fr->te);
            break;
        case HTTP1_FIELD_CONNECTION:
        case HTTP1_FIELD_KEEP_ALIVE:
        case HTTP1_FIELD_PROXY_CONNECTION:
        case HTTP1_FIELD_TE:
        case HTTP1_FIELD_TRAILER:
        case HTTP1_FIELD_X_FORWARDED_FOR:
        case HTTP1_FIELD_X_FORWARDED_PROTO:
        case HTTP1_FIELD_X_FORWARDED_HOST:
            f->drop = 1;
            break;
        case HTTP1_FIELD_UPGRADE:
            f->drop = 1;
            /* WebSocket only when it is the one protocol named, in one field: "websocket, h2c"
             * or a second Upgrade line is not a handshake fulcrum tunnels */
            if (!(msg->flags & HTTP1_F_UPGRADE) && http1_token_eq(v, f->value_len, "websocket"))
                msg->flags |= HTTP1_F_UPGRADE_WEBSOCKET;
            else
                msg->flags &= ~(uint32_t)HTTP1_F_UPGRADE_WEBSOCKET;
            msg->flags |= HTTP1_F_UPGRADE;
            break;
        case HTTP1_FIELD_EXPECT:
            if (http1_token_eq(v, f->value_len, "100-continue"))
                msg->flags |= HTTP1_F_EXPECT_CONTINUE;
            break;
        default:
            break;
        }
    }
    /* Connection options name further hop-by-hop fields; done after all ids are known. */
    struct connection_state cs = {buf, msg};
    for (uint32_t i = 0; i < msg->nfields; i++) {
        struct http1_field *f = &msg->fields[i];
        if (f->id == HTTP1_FIELD_CONNECTION)
            for_each_list_element(buf + f->value_off, f->value_len, connection_element, &cs);
    }
}

/* ---- request line ---- */

static uint8_t method_id(const char *m, uint32_t len)
{
    switch (len) {
    case 3:
        if (memcmp(m, "GET", 3) == 0)
            return HTTP1_METHOD_GET;
        if (memcmp(m, "PUT", 3) == 0)
            return HTTP1_METHOD_PUT;
        break;
    case 4:
        if (memcmp(m, "HEAD", 4) == 0)
            return HTTP1_METHOD_HEAD;
        if (memcmp(m, "POST", 4) == 0)
            return HTTP1_METHOD_POST;
        break;
    case 5:
        if (memcmp(m, "TRACE", 5) == 0)
            return HTTP1_METHOD_TRACE;
        if (memcmp(m, "PATCH", 5) == 0)
            return HTTP1_METHOD_PATCH;
        break;
    case 6:
        if (memcmp(m, "DELETE", 6) == 0)
            return HTTP1_METHOD_DELETE;
        break;
    case 7:
        if (memcmp(m, "OPTIONS", 7) == 0)
            return HTTP1_METHOD_OPTIONS;
        if (memcmp(m, "CONNECT", 7) == 0)
            return HTTP1_METHOD_CONNECT;
        break;
    }
    return HTTP1_METHOD_OTHER;
}

/* Parses "HTTP/x.y" at p; returns 10 or 11, 0 if malformed, or -1 for an unsupported major. */
static int parse_version(const char *p)
{
    if (memcmp(p, "HTTP/", 5) != 0 || p[6] != '.' || p[5] < '0' || p[5] > '9' || p[7] < '0' ||
        p[7] > '9')
        return 0;
    if (p[5] != '1')
        return -1;
    return p[7] == '0' ? 10 : 11; /* 1.x for x > 1 is handled as 1.1 (RFC 9110 section 2.5) */
}

/* Splits an absolute-form target "scheme://authority[path]" (RFC 9112 section 3.2.2). */
static int parse_absolute_form(const char *buf, struct http1_msg *msg)
{
    const char *t = buf + msg->target_off;
    uint32_t len = msg->target_len, skip;

    if (len >= 7 && http1_token_eq(t, 7, "http://"))
        skip = 7;
    else if (len >= 8 && http1_token_eq(t, 8, "https://"))
        skip = 8;
    else
        return fail(msg, 400, "invalid request target");
    uint32_t a = skip;
    while (a < len && t[a] != '/' && t[a] != '?')
        a++;
    if (a == skip)
        return fail(msg, 400, "absolute-form target without authority");
    for (uint32_t k = skip; k < a; k++)
        if (!is_class((unsigned char)t[k], C_HOST))
            return fail(msg, 400, "invalid authority in request target");
    msg->flags |= HTTP1_F_ABSOLUTE_FORM;
    msg->authority_off = msg->target_off + skip;
    msg->authority_len = a - skip;
    msg->path_off = msg->target_off + a;
    msg->path_len = len - a;
    if (msg->path_len == 0 || t[a] == '?')
        msg->flags |= HTTP1_F_TARGET_NO_SLASH;
    return HTTP1_DONE;
}

/* Marks every field with this id as not to be forwarded. */
static void drop_fields(struct http1_msg *msg, uint8_t id)
{
    for (uint32_t i = 0; i < msg->nfields; i++)
        if (msg->fields[i].id == id)
            msg->fields[i].drop = 1;
}

/*
 * A request's transfer codings must be exactly "chunked": fulcrum decodes no other, and passing
 * one on would leave the backend to frame a body that fulcrum framed differently (RFC 9112 section
 * 6.1 lets a server answer 501 to a coding it does not implement). A list that is not clean is a
 * 400: ",chunked" read as chunked here may not be read so by the server behind us.
 */
static int check_request_te(const struct te_state *te, struct http1_msg *msg)
{
    if (te->malformed || te->empty || !te->any)
        return fail(msg, 400, "invalid Transfer-Encoding");
    if (te->chunked_twice)
        return fail(msg, 400, "chunked applied more than once");
    if (te->unknown)
        return fail(msg, 501, "unknown transfer coding");
    if (te->chunked_seen && !te->chunked_last)
        return fail(msg, 400, "chunked is not the final transfer coding");
    if (te->count != 1 || !te->chunked_seen)
        return fail(msg, 501, "transfer coding other than chunked");
    return HTTP1_DONE;
}

static bool name_has_underscore(const char *buf, const struct http1_field *f)
{
    return memchr(buf + f->name_off, '_', f->name_len) != NULL;
}

/*
 * Applies limits->underscores to the request fields whose name contains '_'. Called last, so that
 * only the drops of a request that is forwarded are counted.
 */
static int apply_underscore_rule(const char *buf, const struct http1_limits *limits,
                                 struct http1_msg *msg)
{
    if (limits->underscores == HTTP1_UNDERSCORES_ALLOW)
        return HTTP1_DONE;
    uint64_t dropped = 0;
    for (uint32_t i = 0; i < msg->nfields; i++) {
        struct http1_field *f = &msg->fields[i];
        if (!name_has_underscore(buf, f))
            continue;
        if (limits->underscores == HTTP1_UNDERSCORES_REJECT)
            return fail(msg, 400, "underscore in a field name");
        f->drop = 1;
        dropped++;
    }
    _Atomic uint64_t *counter = limits->underscore_drops;
    if (dropped && counter) /* one writer (the caller's thread): no locked add needed */
        atomic_store_explicit(counter,
                              atomic_load_explicit(counter, memory_order_relaxed) + dropped,
                              memory_order_relaxed);
    return HTTP1_DONE;
}

int http1_parse_request(const struct http1_scan *scan, const char *buf,
                        const struct http1_limits *limits, struct http1_msg *msg)
{
    struct http1_field *fields = msg->fields;
    memset(msg, 0, sizeof(*msg));
    msg->fields = fields;
    msg->head_start = scan->head_start;
    msg->head_end = scan->head_end;

    const unsigned char *p = (const unsigned char *)buf;
    uint32_t i = scan->head_start;
    uint32_t eol = (uint32_t)((const char *)memchr(buf + i, '\n', scan->head_end - i) - buf) - 1;

    /* method SP request-target SP HTTP-version CRLF, with exactly one SP between elements */
    msg->method_off = i;
    while (i < eol && is_class(p[i], C_TCHAR))
        i++;
    msg->method_len = i - msg->method_off;
    if (msg->method_len == 0 || i == eol || p[i] != ' ')
        return fail(msg, 400, "invalid method");
    msg->method = method_id(buf + msg->method_off, msg->method_len);
    i++;
    msg->target_off = i;
    while (i < eol && is_class(p[i], C_TARGET))
        i++;
    msg->target_len = i - msg->target_off;
    if (msg->target_len == 0 || i == eol || p[i] != ' ')
        return fail(msg, 400, "invalid request target");
    i++;
    if (eol - i != 8)
        return fail(msg, 400, "invalid HTTP version");
    int version = parse_version(buf + i);
    if (version == 0)
        return fail(msg, 400, "invalid HTTP version");
    if (version < 0)
        return fail(msg, 505, "unsupported HTTP version");
    msg->version = (uint8_t)version;

    /* request-target forms (RFC 9112 section 3.2) */
    const char *t = buf + msg->target_off;
    if (msg->method == HTTP1_METHOD_CONNECT)
        return fail(msg, 405, "CONNECT is not allowed: fulcrum is not a forward proxy");
    if (t[0] == '/') {
        msg->path_off = msg->target_off;
        msg->path_len = msg->target_len;
    } else if (msg->target_len == 1 && t[0] == '*') {
        if (msg->method != HTTP1_METHOD_OPTIONS)
            return fail(msg, 400, "asterisk-form target outside OPTIONS");
        msg->path_off = msg->target_off;
        msg->path_len = 1;
    } else if (parse_absolute_form(buf, msg) != HTTP1_DONE) {
        return HTTP1_ERROR;
    }

    if (parse_fields(buf, eol + 2, scan->head_end - 2, limits, msg, 400) != HTTP1_DONE)
        return HTTP1_ERROR;

    struct framing fr;
    classify_fields(buf, msg, &fr);
    if (fr.host_dup)
        return fail(msg, 400, "more than one Host field");
    if (fr.host_invalid)
        return fail(msg, 400, "invalid Host field");
    if (msg->version == 11 && msg->host_field < 0)
        return fail(msg, 400, "missing Host field");
    if (fr.cl_invalid)
        return fail(msg, 400, "invalid Content-Length");
    if (fr.te_seen) {
        if (msg->version == 10)
            return fail(msg, 400, "Transfer-Encoding in an HTTP/1.0 request");
        if (fr.cl_seen)
            return fail(msg, 400, "both Content-Length and Transfer-Encoding");
        if (check_request_te(&fr.te, msg) != HTTP1_DONE)
            return HTTP1_ERROR;
        msg->body = HTTP1_BODY_CHUNKED;
        /* re-emitted once, in canonical form, whatever the client wrote */
        drop_fields(msg, HTTP1_FIELD_TRANSFER_ENCODING);
    } else if (fr.cl_seen) {
        msg->flags |= HTTP1_F_HAS_LENGTH;
        msg->content_length = fr.cl;
        msg->body = fr.cl ? HTTP1_BODY_LENGTH : HTTP1_BODY_NONE;
    } else {
        msg->body = HTTP1_BODY_NONE;
    }
    /* An HTTP/1.0 client cannot take part in 100-continue (RFC 9110 section 10.1.1). */
    if (msg->version == 10) {
        msg->flags &= ~HTTP1_F_EXPECT_CONTINUE;
        drop_fields(msg, HTTP1_FIELD_EXPECT);
    }
    return apply_underscore_rule(buf, limits, msg);
}

/* ---- status line ---- */

int http1_parse_response(const struct http1_scan *scan, const char *buf,
                         const struct http1_limits *limits, uint8_t request_method,
                         struct http1_msg *msg)
{
    struct http1_field *fields = msg->fields;
    memset(msg, 0, sizeof(*msg));
    msg->fields = fields;
    msg->head_start = scan->head_start;
    msg->head_end = scan->head_end;

    const unsigned char *p = (const unsigned char *)buf;
    uint32_t i = scan->head_start;
    uint32_t eol = (uint32_t)((const char *)memchr(buf + i, '\n', scan->head_end - i) - buf) - 1;

    /* HTTP-version SP 3DIGIT [SP reason-phrase] CRLF; a missing SP before an empty reason is
     * tolerated, as every client does. */
    if (eol - i < 12 || p[i + 8] != ' ')
        return fail(msg, 502, "invalid status line");
    int version = parse_version(buf + i);
    if (version <= 0)
        return fail(msg, 502, "invalid HTTP version in status line");
    msg->version = (uint8_t)version;
    i += 9;
    for (int k = 0; k < 3; k++)
        if (p[i + k] < '0' || p[i + k] > '9')
            return fail(msg, 502, "invalid status code");
    msg->status = (uint16_t)((p[i] - '0') * 100 + (p[i + 1] - '0') * 10 + (p[i + 2] - '0'));
    if (msg->status < 100 || msg->status > 599)
        return fail(msg, 502, "status code out of range");
    i += 3;
    if (i < eol) {
        if (p[i] != ' ')
            return fail(msg, 502, "invalid status line");
        i++;
        msg->reason_off = i;
        for (; i < eol; i++)
            if (!is_class(p[i], C_VALUE))
                return fail(msg, 502, "invalid reason phrase");
        msg->reason_len = eol - msg->reason_off;
    } else {
        msg->reason_off = eol;
    }

    if (parse_fields(buf, eol + 2, scan->head_end - 2, limits, msg, 502) != HTTP1_DONE)
        return HTTP1_ERROR;

    struct framing fr;
    classify_fields(buf, msg, &fr);
    if (fr.cl_invalid)
        return fail(msg, 502, "invalid Content-Length in response");
    if (fr.te_seen && fr.cl_seen)
        return fail(msg, 502, "both Content-Length and Transfer-Encoding in response");
    if (fr.te_seen && (fr.te.malformed || fr.te.empty || fr.te.chunked_twice || !fr.te.any))
        return fail(msg, 502, "invalid Transfer-Encoding in response");
    /* A coding we cannot name, or chunked followed by another one, leaves the client to guess
     * where the body ends: refuse it rather than pass the guess on. */
    if (fr.te_seen && (fr.te.unknown || (fr.te.chunked_seen && !fr.te.chunked_last)))
        return fail(msg, 502, "unsupported Transfer-Encoding in response");
    if (fr.te_seen && msg->version == 10)
        return fail(msg, 502, "Transfer-Encoding in an HTTP/1.0 response");
    if (fr.cl_seen) {
        msg->flags |= HTTP1_F_HAS_LENGTH;
        msg->content_length = fr.cl;
    }

    if (msg->status < 200 || msg->status == 204 || msg->status == 304 ||
        request_method == HTTP1_METHOD_HEAD) {
        msg->body = HTTP1_BODY_NONE;
        if (msg->status == 204) /* a 204 has no content, whatever its header says */
            msg->flags &= ~HTTP1_F_HAS_LENGTH;
    } else if (fr.te_seen) {
        msg->body = fr.te.chunked_last ? HTTP1_BODY_CHUNKED : HTTP1_BODY_CLOSE;
    } else if (fr.cl_seen) {
        msg->body = fr.cl ? HTTP1_BODY_LENGTH : HTTP1_BODY_NONE;
    } else {
        msg->body = HTTP1_BODY_CLOSE;
    }
    return HTTP1_DONE;
}

/* ---- chunked framing (RFC 9112 section 7.1) ---- */

enum chunk_state {
    CS_SIZE_FIRST = 0, /* first hex digit of chunk-size */
    CS_SIZE,           /* further hex digits */
    CS_EXT_BWS,        /* whitespace after the size or a value: only ';' may end it */
    CS_EXT_NAME_START, /* after ';': BWS, then the first tchar of a name */
    CS_EXT_NAME,       /* inside a name */
    CS_EXT_AFTER_NAME, /* whitespace after a name: only '=' or ';' may end it */
    CS_EXT_VAL_START,  /* after '=': BWS, then a token or a quoted string */
    CS_EXT_VAL_TOKEN,
    CS_EXT_VAL_QUOTED,
    CS_EXT_VAL_QPAIR, /* after a backslash in a quoted string */
    CS_EXT_VAL_END,   /* after a quoted string: ';', CR or whitespace */
    CS_SIZE_LF,       /* CR seen at end of the size line */
    CS_DATA,
    CS_DATA_CR,
    CS_DATA_LF,
    CS_TRAILER_START, /* start of a trailer line, or of the final CRLF */
    CS_TRAILER_NAME,
    CS_TRAILER_VALUE,
    CS_TRAILER_LF,
    CS_FINAL_LF,
    CS_DONE,
};

/* Longest chunk extension we accept in one chunk header; longer ones are an attack, not data. */
#define MAX_CHUNK_EXT 1024

int http1_chunked_parse(struct http1_chunked *c, char *buf, size_t len, bool decode,
                        size_t *in_used, size_t *out_len)
{
    uint32_t max_trailer = c->max_trailer ? c->max_trailer : 16384;
    size_t i = 0, out = 0;
    int result = HTTP1_AGAIN;

    while (i < len) {
        unsigned char ch = (unsigned char)buf[i];

        if (c->state == CS_DATA) {
            size_t n = len - i;
            if (n > c->remaining)
                n = (size_t)c->remaining;
            if (decode) {
                if (out != i)
                    memmove(buf + out, buf + i, n);
                out += n;
            }
            i += n;
            c->remaining -= n;
            c->payload += n;
            if (c->remaining == 0)
                c->state = CS_DATA_CR;
            continue;
        }
        if (c->state >= CS_EXT_BWS && c->state <= CS_EXT_VAL_END && ++c->ext_len > MAX_CHUNK_EXT)
            goto invalid;
        if (c->state >= CS_TRAILER_START && c->state <= CS_FINAL_LF &&
            ++c->trailer_len > max_trailer)
            goto invalid;
        i++;

        switch (c->state) {
        case CS_SIZE_FIRST:
        case CS_SIZE:
            if (is_class(ch, C_HEX)) {
                if (c->size > (UINT64_MAX >> 4))
                    goto invalid;
                c->size =
                    (c->size << 4) | (uint64_t)(ch <= '9' ? ch - '0' : (ch | 0x20) - 'a' + 10);
                c->state = CS_SIZE;
            } else if (c->state == CS_SIZE_FIRST) {
                goto invalid;
            } else if (ch == '\r') {
                c->state = CS_SIZE_LF;
            } else if (ch == ';') {
                c->ext_len = 1;
                c->state = CS_EXT_NAME_START;
            } else if (is_ows((char)ch)) {
                c->ext_len = 1;
                c->state = CS_EXT_BWS;
            } else {
                goto invalid;
            }
            break;
        case CS_EXT_BWS:
            /* chunk-ext = *( BWS ";" BWS name [ BWS "=" BWS value ] ) (RFC 9112 section 7.1.1):
             * whitespace may only come before a ';'. "5 \r\n" is read as 5 by some servers and
             * refused by others, so it is refused here. */
            if (ch == ';')
                c->state = CS_EXT_NAME_START;
            else if (!is_ows((char)ch))
                goto invalid;
            break;
        case CS_EXT_NAME_START:
            if (is_class(ch, C_TCHAR))
                c->state = CS_EXT_NAME;
            else if (!is_ows((char)ch))
                goto invalid;
            break;
        case CS_EXT_NAME:
        case CS_EXT_AFTER_NAME:
            if (c->state == CS_EXT_NAME && is_class(ch, C_TCHAR))
                break;
            if (ch == '=')
                c->state = CS_EXT_VAL_START;
            else if (ch == ';')
                c->state = CS_EXT_NAME_START;
            else if (ch == '\r' && c->state == CS_EXT_NAME) /* not after whitespace */
                c->state = CS_SIZE_LF;
            else if (is_ows((char)ch))
                c->state = CS_EXT_AFTER_NAME;
            else
                goto invalid;
            break;
        case CS_EXT_VAL_START:
            if (ch == '"')
                c->state = CS_EXT_VAL_QUOTED;
            else if (is_class(ch, C_TCHAR))
                c->state = CS_EXT_VAL_TOKEN;
            else if (!is_ows((char)ch))
                goto invalid;
            break;
        case CS_EXT_VAL_TOKEN:
            if (is_class(ch, C_TCHAR))
                break;
            if (ch == ';')
                c->state = CS_EXT_NAME_START;
            else if (ch == '\r')
                c->state = CS_SIZE_LF;
            else if (is_ows((char)ch))
                c->state = CS_EXT_BWS;
            else
                goto invalid;
            break;
        case CS_EXT_VAL_QUOTED:
            if (ch == '"')
                c->state = CS_EXT_VAL_END;
            else if (ch == '\\')
                c->state = CS_EXT_VAL_QPAIR;
            else if (!is_class(ch, C_VALUE)) /* CR, LF and other controls end nothing here */
                goto invalid;
            break;
        case CS_EXT_VAL_QPAIR:
            if (!is_class(ch, C_VALUE))
                goto invalid;
            c->state = CS_EXT_VAL_QUOTED;
            break;
        case CS_EXT_VAL_END:
            if (ch == ';')
                c->state = CS_EXT_NAME_START;
            else if (ch == '\r')
                c->state = CS_SIZE_LF;
            else if (is_ows((char)ch))
                c->state = CS_EXT_BWS;
            else
                goto invalid;
            break;
        case CS_SIZE_LF:
            if (ch != '\n')
                goto invalid;
            c->ext_len = 0;
            if (c->size == 0) {
                c->state = CS_TRAILER_START;
                c->trailer_len = 0;
            } else {
                c->remaining = c->size;
                c->size = 0;
                c->state = CS_DATA;
            }
            break;
        case CS_DATA_CR:
            if (ch != '\r')
                goto invalid;
            c->state = CS_DATA_LF;
            break;
        case CS_DATA_LF:
            if (ch != '\n')
                goto invalid;
            c->state = CS_SIZE_FIRST;
            break;
        case CS_TRAILER_START:
            if (ch == '\r')
                c->state = CS_FINAL_LF;
            else if (is_class(ch, C_TCHAR))
                c->state = CS_TRAILER_NAME;
            else
                goto invalid; /* includes obs-fold and whitespace before a name */
            break;
        case CS_TRAILER_NAME:
            if (ch == ':')
                c->state = CS_TRAILER_VALUE;
            else if (!is_class(ch, C_TCHAR))
                goto invalid;
            break;
        case CS_TRAILER_VALUE:
            if (ch == '\r')
                c->state = CS_TRAILER_LF;
            else if (!is_class(ch, C_VALUE))
                goto invalid;
            break;
        case CS_TRAILER_LF:
            if (ch != '\n')
                goto invalid;
            c->state = CS_TRAILER_START;
            break;
        case CS_FINAL_LF:
            if (ch != '\n')
                goto invalid;
            c->state = CS_DONE;
            result = HTTP1_DONE;
            goto out;
        default: /* CS_DONE: the caller fed bytes past the end of the message */
            i--;
            result = HTTP1_DONE;
            goto out;
        }
    }
out:
    *in_used = i;
    *out_len = decode ? out : i;
    return result;
invalid:
    *in_used = i;
    *out_len = decode ? out : i;
    return HTTP1_ERROR;
}

/* ---- reason phrases ---- */

static const struct {
    uint16_t status;
    const char *reason;
} reasons[] = {
    {100, "Continue"},
    {101, "Switching Protocols"},
    {103, "Early Hints"},
    {200, "OK"},
    {201, "Created"},
    {202, "Accepted"},
    {204, "No Content"},
    {206, "Partial Content"},
    {301, "Moved Permanently"},
    {302, "Found"},
    {303, "See Other"},
    {304, "Not Modified"},
    {307, "Temporary Redirect"},
    {308, "Permanent Redirect"},
    {400, "Bad Request"},
    {401, "Unauthorized"},
    {403, "Forbidden"},
    {404, "Not Found"},
    {405, "Method Not Allowed"},
    {408, "Request Timeout"},
    {409, "Conflict"},
    {410, "Gone"},
    {411, "Length Required"},
    {413, "Content Too Large"},
    {414, "URI Too Long"},
    {415, "Unsupported Media Type"},
    {417, "Expectation Failed"},
    {421, "Misdirected Request"},
    {429, "Too Many Requests"},
    {431, "Request Header Fields Too Large"},
    {500, "Internal Server Error"},
    {501, "Not Implemented"},
    {502, "Bad Gateway"},
    {503, "Service Unavailable"},
    {504, "Gateway Timeout"},
    {505, "HTTP Version Not Supported"},
    {507, "Insufficient Storage"},
};

const char *http1_reason(unsigned status)
{
    for (size_t i = 0; i < sizeof(reasons) / sizeof(reasons[0]); i++)
        if (reasons[i].status == status)
            return reasons[i].reason;
    return "";
}
