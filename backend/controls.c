/*
 * controls.c - what fulcrum-backend answers, decided without any I/O.
 *
 * A request names a route (hello, /healthcheck..., /stats) and may carry test controls, each as a
 * query parameter (?status=503) or a request header (X-Test-Status: 503). be_plan_request()
 * collects the raw values, headers first and then the query so that the query wins, and validates
 * them into a struct be_plan. The connection code in backend.c then only follows the plan.
 *
 * Also here: the CRC-32 used for X-Body-Crc32, the generated body pattern, and --help.
 */
#include "backend.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- test controls ---- */

enum ctl {
    CTL_STATUS,
    CTL_DELAY,
    CTL_SIZE,
    CTL_CHUNKED,
    CTL_CHUNK,
    CTL_TRAILERS,
    CTL_FRAMING,
    CTL_DRIP,
    CTL_ECHO,
    CTL_INTERIM,
    CTL_CLOSE,
    CTL_RESET,
    CTL_RESET_AFTER,
    CTL_GARBAGE,
    CTL_HANG,
    CTL_COUNT,
};

static const char *const ctl_names[CTL_COUNT] = {
    "status", "delay",   "size",  "chunked", "chunk",       "trailers", "framing", "drip",
    "echo",   "interim", "close", "reset",   "reset_after", "garbage",  "hang",
};

/* Delays longer than an hour are typos, not tests. */
#define MAX_WAIT_MS 3600000u
#define MAX_CHUNK   (1u << 30)

struct ctl_value {
    const char *p;
    uint32_t len;
    bool set;
};

static char ascii_lower(char c)
{
    return (c >= 'A' && c <= 'Z') ? (char)(c + 32) : c;
}

/* Query keys are matched exactly: "reset_after". */
static int ctl_from_query_key(const char *k, size_t len)
{
    for (int i = 0; i < CTL_COUNT; i++)
        if (strlen(ctl_names[i]) == len && memcmp(ctl_names[i], k, len) == 0)
            return i;
    return -1;
}

/* Header names are matched without case, '-' standing for '_': X-Test-Reset-After. */
static int ctl_from_header_suffix(const char *k, size_t len)
{
    for (int i = 0; i < CTL_COUNT; i++) {
        const char *n = ctl_names[i];
        if (strlen(n) != len)
            continue;
        size_t j = 0;
        for (; j < len; j++) {
            char c = ascii_lower(k[j]);
            if (c == '-')
                c = '_';
            if (c != n[j])
                break;
        }
        if (j == len)
            return i;
    }
    return -1;
}

static void plan_error(struct be_plan *plan, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void plan_error(struct be_plan *plan, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(plan->error, sizeof(plan->error), fmt, ap);
    va_end(ap);
    plan->bad = true;
}

/* Decimal digits only: no sign, no spaces, no hex, so a typo never turns into a surprise. */
static bool parse_u64(const struct ctl_value *v, uint64_t *out)
{
    if (v->len == 0 || v->len > 15)
        return false;
    uint64_t n = 0;
    for (uint32_t i = 0; i < v->len; i++) {
        if (v->p[i] < '0' || v->p[i] > '9')
            return false;
        n = n * 10 + (uint64_t)(v->p[i] - '0');
    }
    *out = n;
    return true;
}

static bool value_is(const struct ctl_value *v, const char *lower)
{
    return http1_token_eq(v->p, v->len, lower);
}

/* A bare "?echo" means yes, like "?echo=1". */
static bool parse_bool(const struct ctl_value *v, bool *out)
{
    if (v->len == 0 || value_is(v, "1") || value_is(v, "true") || value_is(v, "yes") ||
        value_is(v, "on")) {
        *out = true;
        return true;
    }
    if (value_is(v, "0") || value_is(v, "false") || value_is(v, "no") || value_is(v, "off")) {
        *out = false;
        return true;
    }
    return false;
}

static bool number_in(struct be_plan *plan, int id, const struct ctl_value *v, uint64_t min,
                      uint64_t max, uint64_t *out)
{
    if (parse_u64(v, out) && *out >= min && *out <= max)
        return true;
    plan_error(plan, "invalid %s '%.*s': expected a number from %llu to %llu", ctl_names[id],
               (int)(v->len > 64 ? 64 : v->len), v->p, (unsigned long long)min,
               (unsigned long long)max);
    return false;
}

static bool flag(struct be_plan *plan, int id, const struct ctl_value *v, bool *out)
{
    if (parse_bool(v, out))
        return true;
    plan_error(plan, "invalid %s '%.*s': expected 1 or 0", ctl_names[id],
               (int)(v->len > 64 ? 64 : v->len), v->p);
    return false;
}

/* Validates the collected values into plan; stops at the first invalid one. */
static void apply_controls(struct be_plan *plan, const struct ctl_value *vals)
{
    uint64_t n = 0;
    bool b = false;

    for (int id = 0; id < CTL_COUNT && !plan->bad; id++) {
        const struct ctl_value *v = &vals[id];
        if (!v->set)
            continue;
        switch (id) {
        case CTL_STATUS:
            if (number_in(plan, id, v, 200, 599, &n)) {
                plan->has_status = true;
                plan->status = (uint16_t)n;
            }
            break;
        case CTL_DELAY:
            if (number_in(plan, id, v, 0, MAX_WAIT_MS, &n))
                plan->delay_ms = n;
            break;
        case CTL_SIZE:
            if (number_in(plan, id, v, 0, BE_MAX_SIZE, &n)) {
                plan->has_size = true;
                plan->size = n;
            }
            break;
        case CTL_CHUNKED:
            if (flag(plan, id, v, &b) && b)
                plan->framing = BE_FRAME_CHUNKED;
            break;
        case CTL_CHUNK:
            if (number_in(plan, id, v, 1, MAX_CHUNK, &n))
                plan->chunk = n;
            break;
        case CTL_TRAILERS:
            if (flag(plan, id, v, &b))
                plan->trailers = b;
            break;
        case CTL_FRAMING:
            /* Given after chunked in the table, so framing=... overrides chunked=1. */
            if (value_is(v, "close"))
                plan->framing = BE_FRAME_CLOSE;
            else if (value_is(v, "chunked"))
                plan->framing = BE_FRAME_CHUNKED;
            else if (value_is(v, "length"))
                plan->framing = BE_FRAME_LENGTH;
            else
                plan_error(plan, "invalid framing '%.*s': expected close, chunked or length",
                           (int)(v->len > 64 ? 64 : v->len), v->p);
            break;
        case CTL_DRIP:
            if (number_in(plan, id, v, 0, MAX_WAIT_MS, &n))
                plan->drip_ms = n;
            break;
        case CTL_ECHO:
            if (flag(plan, id, v, &b))
                plan->echo = b;
            break;
        case CTL_INTERIM:
            if (number_in(plan, id, v, 100, 199, &n)) {
                if (n == 101)
                    plan_error(plan, "invalid interim '101': 101 switches protocols");
                else
                    plan->interim = (uint16_t)n;
            }
            break;
        case CTL_CLOSE:
            if (flag(plan, id, v, &b))
                plan->close = b;
            break;
        case CTL_RESET:
            if (flag(plan, id, v, &b) && b)
                plan->action = BE_RESET;
            break;
        case CTL_RESET_AFTER:
            if (number_in(plan, id, v, 0, BE_MAX_SIZE, &n)) {
                plan->has_reset_after = true;
                plan->reset_after = n;
            }
            break;
        case CTL_GARBAGE:
            if (flag(plan, id, v, &b) && b && plan->action == BE_RESPOND)
                plan->action = BE_GARBAGE;
            break;
        case CTL_HANG:
            if (flag(plan, id, v, &b) && b && plan->action == BE_RESPOND)
                plan->action = BE_HANG;
            break;
        }
    }
}

static bool path_is(const char *p, size_t len, const char *want)
{
    return strlen(want) == len && memcmp(p, want, len) == 0;
}

void be_plan_request(struct be_plan *plan, const struct http1_msg *msg, const char *buf)
{
    struct ctl_value vals[CTL_COUNT];

    memset(plan, 0, sizeof(*plan));
    memset(vals, 0, sizeof(vals));
    plan->chunk = BE_DEFAULT_CHUNK;

    /* Headers first: a query parameter given too overwrites the value. */
    for (uint32_t i = 0; i < msg->nfields; i++) {
        const struct http1_field *f = &msg->fields[i];
        if (f->name_len <= 7 || !http1_token_eq(buf + f->name_off, 7, "x-test-"))
            continue;
        int id = ctl_from_header_suffix(buf + f->name_off + 7, f->name_len - 7u);
        if (id >= 0)
            vals[id] = (struct ctl_value){buf + f->value_off, f->value_len, true};
    }

    /* An empty absolute-form path ("http://h?x") is "/" for routing. */
    const char *path = buf + msg->path_off;
    const char *end = path + msg->path_len;
    const char *q = memchr(path, '?', msg->path_len);
    size_t route_len = (size_t)((q ? q : end) - path);

    if (q) {
        const char *p = q + 1;
        while (p < end) {
            const char *amp = memchr(p, '&', (size_t)(end - p));
            const char *stop = amp ? amp : end;
            const char *eq = memchr(p, '=', (size_t)(stop - p));
            const char *kend = eq ? eq : stop;
            int id = ctl_from_query_key(p, (size_t)(kend - p));
            if (id >= 0) {
                const char *v = eq ? eq + 1 : stop;
                vals[id] = (struct ctl_value){v, (uint32_t)(stop - v), true};
            }
            p = stop + 1;
        }
    }

    uint8_t m = msg->method;
    bool get = m == HTTP1_METHOD_GET || m == HTTP1_METHOD_HEAD;
    if (get && path_is(path, route_len, "/healthcheck"))
        plan->route = BE_ROUTE_HEALTH;
    else if (m == HTTP1_METHOD_POST && path_is(path, route_len, "/healthcheck/fail"))
        plan->route = BE_ROUTE_HEALTH_FAIL;
    else if (m == HTTP1_METHOD_POST && path_is(path, route_len, "/healthcheck/ok"))
        plan->route = BE_ROUTE_HEALTH_OK;
    else if (get && path_is(path, route_len, "/stats"))
        plan->route = BE_ROUTE_STATS;
    else if (m == HTTP1_METHOD_POST && path_is(path, route_len, "/slow"))
        plan->route = BE_ROUTE_SLOW;
    else
        plan->route = BE_ROUTE_HELLO;

    apply_controls(plan, vals);
    if (plan->bad) {
        /* Nothing of an invalid request's controls applies: a plain 400 answers it. */
        uint8_t route = plan->route;
        char error[BE_ERROR_TEXT];
        memcpy(error, plan->error, sizeof(error));
        memset(plan, 0, sizeof(*plan));
        plan->route = route;
        plan->bad = true;
        plan->chunk = BE_DEFAULT_CHUNK;
        memcpy(plan->error, error, sizeof(error));
    }
}

/* ---- reason phrases ---- */

/* Codes fulcrum itself never produces, so http1_reason() does not list them. */
static const struct {
    uint16_t code;
    const char *text;
} extra_reasons[] = {
    {102, "Processing"},
    {203, "Non-Authoritative Information"},
    {205, "Reset Content"},
    {207, "Multi-Status"},
    {300, "Multiple Choices"},
    {303, "See Other"},
    {307, "Temporary Redirect"},
    {308, "Permanent Redirect"},
    {402, "Payment Required"},
    {406, "Not Acceptable"},
    {407, "Proxy Authentication Required"},
    {409, "Conflict"},
    {410, "Gone"},
    {411, "Length Required"},
    {412, "Precondition Failed"},
    {415, "Unsupported Media Type"},
    {416, "Range Not Satisfiable"},
    {418, "I'm a teapot"},
    {421, "Misdirected Request"},
    {422, "Unprocessable Content"},
    {425, "Too Early"},
    {426, "Upgrade Required"},
    {428, "Precondition Required"},
    {429, "Too Many Requests"},
    {451, "Unavailable For Legal Reasons"},
    {506, "Variant Also Negotiates"},
    {507, "Insufficient Storage"},
    {508, "Loop Detected"},
    {511, "Network Authentication Required"},
};

const char *be_reason(unsigned status)
{
    const char *r = http1_reason(status);
    if (*r)
        return r;
    for (size_t i = 0; i < sizeof(extra_reasons) / sizeof(extra_reasons[0]); i++)
        if (extra_reasons[i].code == status)
            return extra_reasons[i].text;
    return "";
}

/* ---- CRC-32 ---- */

/*
 * Slicing-by-8: table[k][b] is the CRC of byte b followed by k zero bytes, so eight input bytes
 * are folded with eight lookups instead of eight dependent steps. Uploads run through this at
 * memory speed, which keeps the backend from being the bottleneck of a 1 GiB test.
 */
static uint32_t crc_table[8][256];

void be_crc32_init(void)
{
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++)
            c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
        crc_table[0][i] = c;
    }
    for (uint32_t i = 0; i < 256; i++)
        for (int t = 1; t < 8; t++)
            crc_table[t][i] = (crc_table[t - 1][i] >> 8) ^ crc_table[0][crc_table[t - 1][i] & 0xff];
}

uint32_t be_crc32_update(uint32_t crc, const void *data, size_t len)
{
    const unsigned char *p = data;
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    while (len >= 8) {
        uint32_t lo, hi;
        memcpy(&lo, p, 4);
        memcpy(&hi, p + 4, 4);
        lo ^= crc;
        crc = crc_table[7][lo & 0xff] ^ crc_table[6][(lo >> 8) & 0xff] ^
              crc_table[5][(lo >> 16) & 0xff] ^ crc_table[4][lo >> 24] ^ crc_table[3][hi & 0xff] ^
              crc_table[2][(hi >> 8) & 0xff] ^ crc_table[1][(hi >> 16) & 0xff] ^
              crc_table[0][hi >> 24];
        p += 8;
        len -= 8;
    }
#endif
    while (len--)
        crc = crc_table[0][(crc ^ *p++) & 0xff] ^ (crc >> 8);
    return crc;
}

/* ---- body pattern ---- */

static char *pattern;
static size_t pattern_piece;

int be_pattern_init(size_t max_piece)
{
    pattern = malloc(max_piece + 26);
    if (!pattern)
        return -1;
    for (size_t i = 0; i < max_piece + 26; i++)
        pattern[i] = (char)('a' + i % 26);
    pattern_piece = max_piece;
    return 0;
}

void be_pattern_free(void)
{
    free(pattern);
    pattern = NULL;
}

void be_pattern_fill(char *dst, uint64_t offset, size_t len)
{
    while (len > 0) {
        size_t n = len < pattern_piece ? len : pattern_piece;
        memcpy(dst, pattern + offset % 26, n);
        dst += n;
        offset += n;
        len -= n;
    }
}

/* ---- --help ---- */

const char be_help_text[] =
    "Usage: fulcrum-backend --listen ADDR [--name NAME] [--quiet]\n"
    "                       [--register URL [--register-address IP:PORT] [--register-ttl S]\n"
    "                        [--register-weight W]]\n"
    "       fulcrum-backend --help | --version\n"
    "\n"
    "A small, fast HTTP/1.1 server, written in C on the same event loop as fulcrum. It is the\n"
    "demo backend of `make run` and the peer of fulcrum's end-to-end tests: every response can\n"
    "be shaped (status, size, framing, timing, failures) by test controls in the request.\n"
    "\n"
    "Options:\n"
    "  --listen ADDR   where to listen: 127.0.0.1:9001, [::1]:9001, or :9001 for every address\n"
    "  --name NAME     the name shown in X-Backend, the default body and /stats (default: ADDR);\n"
    "                  1 to 128 visible ASCII characters\n"
    "  --quiet         print errors only (no start-up line, no notes about bad requests)\n"
    "  --register URL  put this backend into an etcd registry (etcd's v3 JSON API), for\n"
    "                  fulcrum's discovery.etcd: URL is http://HOST:PORT/PREFIX, such as\n"
    "                  http://127.0.0.1:2379/services/api/. The key PREFIX + NAME (NAME: --name,\n"
    "                  or the registered address) gets the value {\"address\": \"IP:PORT\",\n"
    "                  \"name\": \"NAME\", \"weight\": W} under a lease that is kept alive every\n"
    "                  TTL/3 s, and granted again if it expired. SIGTERM and SIGINT revoke it, so\n"
    "                  the key goes at once; after SIGKILL it goes when the lease expires. While\n"
    "                  etcd is unreachable it retries every second.\n"
    "  --register-address IP:PORT\n"
    "                  the address registered (default: the address listened on, which must\n"
    "                  not be 0.0.0.0 or [::] then)\n"
    "  --register-ttl S    the lease's TTL, 1-3600 seconds (default 5)\n"
    "  --register-weight W the weight registered, 0-256 (default 1)\n"
    "  --help          this text\n"
    "  --version       the version\n"
    "\n"
    "At start it prints \"fulcrum-backend NAME listening on ADDR\" to stderr. SIGTERM or SIGINT\n"
    "stops it with exit status 0.\n"
    "\n"
    "Protocol:\n"
    "  HTTP/1.1 and HTTP/1.0. Connections are kept alive (HTTP/1.1 by default, HTTP/1.0 with\n"
    "  \"Connection: keep-alive\"); \"Connection: close\" is answered with Connection: close and\n"
    "  the connection is closed. Pipelined requests are answered in order. Request bodies may use\n"
    "  Content-Length or chunked transfer coding; they are counted and checksummed as they\n"
    "  stream, never stored (except for echo=1). \"Expect: 100-continue\" is answered with\n"
    "  \"HTTP/1.1 100 Continue\" before the body is read. A malformed request gets 400 (or 414,\n"
    "  431, 501, 505) with Connection: close. Connections idle for 60 s are closed.\n"
    "\n"
    "Every response has:\n"
    "  X-Backend: NAME\n"
    "  Content-Type: text/plain            (application/json for /stats)\n"
    "  Content-Length: N                   (Transfer-Encoding: chunked with chunked=1, neither\n"
    "                                       with framing=close, neither for 204 and 304)\n"
    "  X-Body-Bytes: N                     when the request had a body (Content-Length > 0 or\n"
    "  X-Body-Crc32: xxxxxxxx              chunked): its decoded size and CRC-32 (the zlib one,\n"
    "                                       8 lowercase hex digits)\n"
    "  Connection: close                   when the connection closes after the response\n"
    "  Connection: keep-alive              to an HTTP/1.0 client that asked for it\n"
    "\n"
    "Paths:\n"
    "  GET  /healthcheck       200 \"ok\", or 503 \"failing\" after POST /healthcheck/fail\n"
    "  POST /healthcheck/fail  make /healthcheck fail (for the whole process); 200\n"
    "  POST /healthcheck/ok    make /healthcheck succeed again; 200\n"
    "  POST /slow?delay=MS     from now on answer every other request MS later (a slow\n"
    "                          server for the balancers; delay=0 ends it); 200\n"
    "  GET  /stats             200 JSON: {\"name\":\"NAME\",\"connections\":N,\n"
    "                          \"active_connections\":N,\"requests\":N,\"held_requests\":N,\n"
    "                          \"healthy\":true}\n"
    "                          connections: accepted since start; active_connections: open now;\n"
    "                          held_requests: read and held by delay= or hang=, not answered;\n"
    "                          requests: responses sent since start, this one included\n"
    "  anything else           200 \"Hello from NAME\" (any method; HEAD gets the headers only)\n"
    "\n"
    "Test controls:\n"
    "  Each control is a query parameter (/any/path?status=503&size=10) or a request header\n"
    "  X-Test-<Name> (X-Test-Status: 503; X-Test-Reset-After: 1000 for reset_after). The query\n"
    "  wins when both are given. Unknown parameters are ignored; an invalid value is answered\n"
    "  with 400 and a message. Controls apply to every path. Flags take 1 or 0 (true/false,\n"
    "  yes/no, on/off; a bare ?echo means 1). Numbers are plain decimal.\n"
    "\n"
    "  status=N        final status, 200-599 (default 200; 204 and 304 carry no body)\n"
    "  delay=MS        wait MS milliseconds (0-3600000) before the response head\n"
    "  size=N          a body of exactly N bytes (0 to 2^40), byte i being 'a' + i % 26\n"
    "                  (\"abcdefghijklmnopqrstuvwxyzabc...\"), generated as it is sent\n"
    "  chunked=1       Transfer-Encoding: chunked instead of Content-Length (HTTP/1.0 clients\n"
    "                  get a close-delimited body instead)\n"
    "  chunk=N         chunk size for chunked=1 and piece size for drip (default 16384)\n"
    "  trailers=1      with chunked=1: the trailer field \"X-Trailer: done\" after the last chunk\n"
    "  framing=close   no Content-Length or Transfer-Encoding: Connection: close, and the body\n"
    "                  ends when the backend closes (framing=chunked and framing=length exist\n"
    "                  too)\n"
    "  drip=MS         send the body in pieces of chunk bytes, pausing MS ms between pieces\n"
    "  echo=1          the body is the request as received: request line, header lines and\n"
    "                  the empty line byte for byte, then the decoded body (bodies over 1 MiB\n"
    "                  get 413); size is ignored\n"
    "  interim=CODE    send \"HTTP/1.1 CODE <reason>\" with X-Interim: 1 (CODE 100-199, not 101)\n"
    "                  before the final response; HTTP/1.1 clients only\n"
    "  close=1         Connection: close, and close after the response\n"
    "  reset=1         read the request, then reset the connection (RST) without answering\n"
    "  reset_after=N   send the head and N bytes of the body as they go on the wire (chunk\n"
    "                  framing counts), then reset; use with size for a truncated response\n"
    "  garbage=1       answer \"HTTP/1.1 2000 Nope\" with Content-Length: 0, then close\n"
    "  hang=1          read the request and never answer; the connection stays open until\n"
    "                  the client closes it (no idle timeout)\n"
    "\n"
    "  Order of events: the request body is read completely (with 100 Continue first if asked\n"
    "  for), then an interim response is sent, then the delay runs, then reset, garbage, hang\n"
    "  or the response happens. /healthcheck/fail and /healthcheck/ok take effect then too.\n"
    "\n"
    "Examples:\n"
    "  fulcrum-backend --listen 127.0.0.1:9001 --name backend-1\n"
    "  fulcrum-backend --listen 127.0.0.1:9001 --name api-1 \\\n"
    "      --register http://127.0.0.1:2379/services/api/\n"
    "  curl -i http://127.0.0.1:9001/\n"
    "  curl -i 'http://127.0.0.1:9001/?status=503'\n"
    "  curl -i -H 'X-Test-Status: 418' http://127.0.0.1:9001/teapot\n"
    "  curl -s 'http://127.0.0.1:9001/?size=1073741824' | wc -c\n"
    "  curl -s --raw 'http://127.0.0.1:9001/?size=100&chunked=1&chunk=40&trailers=1'\n"
    "  curl -N 'http://127.0.0.1:9001/?size=260&chunk=26&drip=500'\n"
    "  curl -s --data-binary @file 'http://127.0.0.1:9001/upload?echo=1'\n"
    "  curl -si -H 'Expect: 100-continue' --data-binary @file http://127.0.0.1:9001/up\n"
    "  curl -i 'http://127.0.0.1:9001/?interim=103&delay=1000'\n"
    "  curl -s 'http://127.0.0.1:9001/?size=100000&reset_after=1000' | wc -c\n"
    "  curl -s -X POST http://127.0.0.1:9001/healthcheck/fail\n"
    "  curl -s http://127.0.0.1:9001/stats\n";
