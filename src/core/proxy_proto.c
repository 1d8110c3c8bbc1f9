/*
 * proxy_proto.c - PROXY protocol v1/v2 header parser and writer (see proxy_proto.h).
 *
 * The parser keeps no state between calls: each call reads the header again from its first byte.
 * A header is at most PP_MAX bytes and nearly always arrives in one read, so re-reading is cheaper
 * than a per-connection state machine, and "the same bytes give the same answer" holds by
 * construction. Every step checks the bytes it has against what a valid header could still be, so
 * a wrong byte is refused when it arrives rather than when the line or block is complete; the only
 * waiting left is for bytes that could still make the header valid.
 */
#include "core/proxy_proto.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdint.h>
#include <string.h>

static const char v1_prefix[6] = {'P', 'R', 'O', 'X', 'Y', ' '};
static const unsigned char v2_sig[12] = {0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d,
                                         0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a};

/* v2 byte 12: version in the high nibble, command in the low one. */
#define V2_VERSION   0x20
#define V2_CMD_LOCAL 0x0
#define V2_CMD_PROXY 0x1
/* v2 byte 13: address family in the high nibble, transport in the low one. */
#define V2_UNSPEC      0x00
#define V2_TCP4        0x11
#define V2_UDP4        0x12
#define V2_TCP6        0x21
#define V2_UDP6        0x22
#define V2_UNIX_STREAM 0x31
#define V2_UNIX_DGRAM  0x32
/* Address block sizes: two addresses and, for IP, two ports. */
#define V2_ADDR4     12
#define V2_ADDR6     36
#define V2_ADDR_UNIX 216
#define V2_FIXED     16

static enum pp_status fail(struct pp_result *r, const char *why)
{
    r->error = why;
    return PP_ERROR;
}

/* ---- version 1 ---- */

enum v1_kind { V1_PROTO, V1_ADDR4, V1_ADDR6, V1_PORT };

/* Longest text of each field: "UNKNOWN", INET_ADDRSTRLEN - 1, INET6_ADDRSTRLEN - 1 (an IPv6
 * address with a dotted IPv4 tail), "65535". */
static const size_t v1_max[] = {7, 15, 45, 5};

static bool is_prefix_of(const char *s, size_t n, const char *word)
{
    return n <= strlen(word) && memcmp(s, word, n) == 0;
}

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

static bool is_hex(char c)
{
    return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

/*
 * Whether the first n bytes of a field can still begin a valid value. Only necessary conditions
 * are tested here, never more than the complete field must meet: a prefix of a valid header must
 * never be refused.
 */
static bool v1_can_begin(enum v1_kind kind, const char *s, size_t n)
{
    if (n > v1_max[kind])
        return false;
    switch (kind) {
    case V1_PROTO:
        return is_prefix_of(s, n, "TCP4") || is_prefix_of(s, n, "TCP6") ||
               is_prefix_of(s, n, "UNKNOWN");
    case V1_ADDR4:
        for (size_t i = 0; i < n; i++) {
            if (!is_digit(s[i]) && s[i] != '.')
                return false;
        }
        return true;
    case V1_ADDR6:
        for (size_t i = 0; i < n; i++) {
            if (!is_hex(s[i]) && s[i] != ':' && s[i] != '.')
                return false;
        }
        return true;
    case V1_PORT: {
        if (n > 1 && s[0] == '0')
            return false; /* leading zero: one port, one spelling */
        unsigned v = 0;
        for (size_t i = 0; i < n; i++) {
            if (!is_digit(s[i]))
                return false;
            v = v * 10 + (unsigned)(s[i] - '0');
        }
        return v <= 65535;
    }
    }
    return false;
}

struct v1_field {
    const char *s;
    size_t n;
    char sep; /* the byte that ended it: ' ', '\r' or '\n' */
};

/*
 * Reads the field starting at *pos in buf[0, avail). PP_DONE: f is complete and *pos is past its
 * separator. PP_AGAIN: the bytes ran out inside it, and what there is can still become valid.
 */
static enum pp_status v1_take(const char *buf, size_t avail, size_t *pos, enum v1_kind kind,
                              const char *why, struct v1_field *f, struct pp_result *r)
{
    size_t i = *pos;
    while (i < avail && buf[i] != ' ' && buf[i] != '\r' && buf[i] != '\n')
        i++;
    f->s = buf + *pos;
    f->n = i - *pos;
    if (!v1_can_begin(kind, f->s, f->n))
        return fail(r, why);
    if (i == avail)
        return PP_AGAIN;
    if (f->n == 0)
        return fail(r, buf[i] == ' ' ? "v1 bad spacing" : "v1 wrong field count");
    f->sep = buf[i];
    *pos = i + 1;
    return PP_DONE;
}

/* The separator after a field that another field must follow. */
static enum pp_status v1_need_space(const struct v1_field *f, struct pp_result *r)
{
    return f->sep == ' ' ? PP_DONE : fail(r, "v1 wrong field count");
}

static bool v1_addr(const struct v1_field *f, int family, struct sockaddr_storage *ss,
                    socklen_t *len)
{
    char text[INET6_ADDRSTRLEN];
    memcpy(text, f->s, f->n); /* n <= 45 (v1_can_begin): inet_pton needs a C string */
    text[f->n] = '\0';
    if (family == AF_INET) {
        struct sockaddr_in *sin = (struct sockaddr_in *)ss;
        sin->sin_family = AF_INET;
        *len = sizeof(*sin);
        return inet_pton(AF_INET, text, &sin->sin_addr) == 1;
    }
    struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;
    sin6->sin6_family = AF_INET6;
    *len = sizeof(*sin6);
    return inet_pton(AF_INET6, text, &sin6->sin6_addr) == 1;
}

static void v1_port(const struct v1_field *f, struct sockaddr_storage *ss)
{
    unsigned v = 0;
    for (size_t i = 0; i < f->n; i++)
        v = v * 10 + (unsigned)(f->s[i] - '0'); /* digits and <= 65535: v1_can_begin */
    uint16_t port = htons((uint16_t)v);
    if (ss->ss_family == AF_INET)
        ((struct sockaddr_in *)ss)->sin_port = port;
    else
        ((struct sockaddr_in6 *)ss)->sin6_port = port;
}

/* Bytes past the line limit are never looked at: running out of bytes before the CRLF means
 * "wait" while the limit leaves room for more, and "too long" once it does not. */
static enum pp_status v1_out_of_bytes(size_t len, struct pp_result *r)
{
    return len < PP_MAX_V1 ? PP_AGAIN : fail(r, "v1 line too long");
}

/* Called with buf starting with the 6 bytes "PROXY ". */
static enum pp_status parse_v1(const char *buf, size_t len, struct pp_result *r)
{
    size_t avail = len < PP_MAX_V1 ? len : PP_MAX_V1;
    size_t pos = sizeof(v1_prefix);
    struct v1_field f;
    enum pp_status s;

#define TAKE(kind, why)                                                                            \
    do {                                                                                           \
        s = v1_take(buf, avail, &pos, kind, why, &f, r);                                           \
        if (s != PP_DONE)                                                                          \
            return s == PP_AGAIN ? v1_out_of_bytes(len, r) : s;                                    \
    } while (0)

    TAKE(V1_PROTO, "v1 bad protocol");
    bool unknown = f.n == 7; /* the only 7-byte field v1_can_begin lets through */
    if (!unknown && !(f.n == 4 && memcmp(f.s, "TCP", 3) == 0))
        return fail(r, "v1 bad protocol"); /* a prefix such as "TCP" or "UNKN", ended early */
    if (unknown) {
        /* The spec has the receiver skip whatever follows UNKNOWN up to the CRLF. */
        if (f.sep == ' ') {
            while (pos < avail && buf[pos] != '\r') {
                unsigned char c = (unsigned char)buf[pos++];
                if (c < 0x20 || c == 0x7f)
                    return fail(r, "v1 control byte");
            }
            if (pos == avail)
                return v1_out_of_bytes(len, r);
            pos++;
        } else if (f.sep != '\r') {
            return fail(r, "v1 missing crlf");
        }
        r->local = true;
    } else {
        int family = f.s[3] == '4' ? AF_INET : AF_INET6;
        enum v1_kind addr = family == AF_INET ? V1_ADDR4 : V1_ADDR6;
        if (v1_need_space(&f, r) != PP_DONE)
            return PP_ERROR;

        TAKE(addr, "v1 bad source address");
        if (v1_need_space(&f, r) != PP_DONE)
            return PP_ERROR;
        if (!v1_addr(&f, family, &r->src, &r->src_len))
            return fail(r, "v1 bad source address");

        TAKE(addr, "v1 bad destination address");
        if (v1_need_space(&f, r) != PP_DONE)
            return PP_ERROR;
        if (!v1_addr(&f, family, &r->dst, &r->dst_len))
            return fail(r, "v1 bad destination address");

        TAKE(V1_PORT, "v1 bad source port");
        if (v1_need_space(&f, r) != PP_DONE)
            return PP_ERROR;
        v1_port(&f, &r->src);

        TAKE(V1_PORT, "v1 bad destination port");
        if (f.sep == ' ')
            return fail(r, "v1 wrong field count");
        if (f.sep != '\r')
            return fail(r, "v1 missing crlf");
        v1_port(&f, &r->dst);
    }
#undef TAKE

    /* pos is just past the CR. */
    if (pos == avail)
        return v1_out_of_bytes(len, r);
    if (buf[pos] != '\n')
        return fail(r, "v1 missing crlf");
    r->header_len = pos + 1;
    return PP_DONE;
}

/* ---- version 2 ---- */

static size_t be16(const unsigned char *p)
{
    return (size_t)p[0] << 8 | p[1];
}

/* Called with buf starting with the whole 12-byte signature. */
static enum pp_status parse_v2(const unsigned char *b, size_t len, struct pp_result *r)
{
    if (len < 13)
        return PP_AGAIN;
    if ((b[12] & 0xf0) != V2_VERSION)
        return fail(r, "v2 bad version");
    unsigned cmd = b[12] & 0x0f;
    if (cmd != V2_CMD_LOCAL && cmd != V2_CMD_PROXY)
        return fail(r, "v2 bad command");
    if (len < 14)
        return PP_AGAIN;

    /* addr_len: the address block the family defines; walk: whether TLVs follow it at a known
     * place (UNSPEC leaves the block's layout open, and LOCAL discards it unread). */
    size_t addr_len = 0;
    bool walk = false;
    r->local = true;
    if (cmd == V2_CMD_PROXY) {
        switch (b[13]) {
        case V2_UNSPEC:
            break;
        case V2_TCP4:
        case V2_TCP6:
            addr_len = b[13] == V2_TCP4 ? V2_ADDR4 : V2_ADDR6;
            walk = true;
            r->local = false;
            break;
        case V2_UNIX_STREAM:
        case V2_UNIX_DGRAM:
            addr_len = V2_ADDR_UNIX;
            walk = true;
            break;
        case V2_UDP4:
        case V2_UDP6:
            return fail(r, "v2 udp on a stream connection");
        default:
            return fail(r, "v2 bad family");
        }
    }
    if (len < V2_FIXED)
        return PP_AGAIN;

    size_t block = be16(b + 14);
    if (block > PP_MAX_V2 - V2_FIXED)
        return fail(r, "v2 header too long");
    if (block < addr_len)
        return fail(r, "v2 address block too short");
    size_t total = V2_FIXED + block;
    r->header_len = total;

    /* TLVs: type, 16-bit length, value. Each TLV header that has arrived is checked now, so a
     * length that overruns the block is refused without waiting for the rest of it. */
    for (size_t pos = V2_FIXED + addr_len; walk && pos < total;) {
        if (total - pos < 3)
            return fail(r, "v2 truncated tlv");
        if (len < pos + 3)
            break;
        size_t tlv = be16(b + pos + 1);
        if (tlv > total - pos - 3)
            return fail(r, "v2 tlv overflows header");
        pos += 3 + tlv;
    }
    if (len < total)
        return PP_AGAIN;

    if (!r->local && b[13] == V2_TCP4) {
        struct sockaddr_in *s = (struct sockaddr_in *)&r->src, *d = (struct sockaddr_in *)&r->dst;
        s->sin_family = d->sin_family = AF_INET;
        memcpy(&s->sin_addr, b + 16, 4);
        memcpy(&d->sin_addr, b + 20, 4);
        memcpy(&s->sin_port, b + 24, 2); /* both sides are in network order */
        memcpy(&d->sin_port, b + 26, 2);
        r->src_len = r->dst_len = sizeof(struct sockaddr_in);
    } else if (!r->local) {
        struct sockaddr_in6 *s = (struct sockaddr_in6 *)&r->src,
                            *d = (struct sockaddr_in6 *)&r->dst;
        s->sin6_family = d->sin6_family = AF_INET6;
        memcpy(&s->sin6_addr, b + 16, 16);
        memcpy(&d->sin6_addr, b + 32, 16);
        memcpy(&s->sin6_port, b + 48, 2);
        memcpy(&d->sin6_port, b + 50, 2);
        r->src_len = r->dst_len = sizeof(struct sockaddr_in6);
    }
    return PP_DONE;
}

enum pp_status pp_parse(const char *buf, size_t len, struct pp_result *r)
{
    memset(r, 0, sizeof(*r));
    if (len == 0)
        return PP_AGAIN;
    /* The two signatures differ in their first byte, so it picks the version. */
    if (buf[0] == v1_prefix[0]) {
        size_t n = len < sizeof(v1_prefix) ? len : sizeof(v1_prefix);
        if (memcmp(buf, v1_prefix, n) != 0)
            return fail(r, "not a proxy protocol header");
        r->version = 1;
        return n < sizeof(v1_prefix) ? PP_AGAIN : parse_v1(buf, len, r);
    }
    size_t n = len < sizeof(v2_sig) ? len : sizeof(v2_sig);
    if (memcmp(buf, v2_sig, n) != 0)
        return fail(r, "not a proxy protocol header");
    r->version = 2;
    return n < sizeof(v2_sig) ? PP_AGAIN : parse_v2((const unsigned char *)buf, len, r);
}

/* ---- writer ---- */

/* A bounded append: once a piece does not fit, the writer stays failed (see also core/wbuf.h,
 * which this module does without so that it depends on nothing). */
struct out {
    char *p, *end;
    bool full;
};

static void put(struct out *o, const void *s, size_t n)
{
    if (o->full || (size_t)(o->end - o->p) < n) {
        o->full = true;
        return;
    }
    memcpy(o->p, s, n);
    o->p += n;
}

static void put_port(struct out *o, uint16_t net_port)
{
    char digits[5];
    size_t n = sizeof(digits);
    unsigned v = ntohs(net_port);
    do {
        digits[--n] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    put(o, digits + n, sizeof(digits) - n);
}

static void put_ip(struct out *o, const struct sockaddr *sa)
{
    char text[INET6_ADDRSTRLEN];
    const void *ip = sa->sa_family == AF_INET
                         ? (const void *)&((const struct sockaddr_in *)sa)->sin_addr
                         : (const void *)&((const struct sockaddr_in6 *)sa)->sin6_addr;
    if (!inet_ntop(sa->sa_family, ip, text, sizeof(text))) {
        o->full = true; /* cannot happen with a buffer of INET6_ADDRSTRLEN */
        return;
    }
    put(o, text, strlen(text));
}

static uint16_t port_of(const struct sockaddr *sa)
{
    return sa->sa_family == AF_INET ? ((const struct sockaddr_in *)sa)->sin_port
                                    : ((const struct sockaddr_in6 *)sa)->sin6_port;
}

size_t pp_write(int version, const struct sockaddr *src, const struct sockaddr *dst, char *out,
                size_t cap)
{
    if (version != 1 && version != 2)
        return 0;
    struct out o = {out, out + cap, false};
    bool ip = src && dst && src->sa_family == dst->sa_family &&
              (src->sa_family == AF_INET || src->sa_family == AF_INET6);
    bool v4 = ip && src->sa_family == AF_INET;

    if (version == 1) {
        put(&o, v1_prefix, sizeof(v1_prefix));
        if (!ip) {
            put(&o, "UNKNOWN\r\n", 9);
        } else {
            put(&o, v4 ? "TCP4 " : "TCP6 ", 5);
            put_ip(&o, src);
            put(&o, " ", 1);
            put_ip(&o, dst);
            put(&o, " ", 1);
            put_port(&o, port_of(src));
            put(&o, " ", 1);
            put_port(&o, port_of(dst));
            put(&o, "\r\n", 2);
        }
    } else {
        unsigned char head[4] = {V2_VERSION | V2_CMD_LOCAL, V2_UNSPEC, 0, 0};
        if (ip) {
            head[0] = V2_VERSION | V2_CMD_PROXY;
            head[1] = v4 ? V2_TCP4 : V2_TCP6;
            head[3] = v4 ? V2_ADDR4 : V2_ADDR6;
        }
        put(&o, v2_sig, sizeof(v2_sig));
        put(&o, head, sizeof(head));
        if (ip && v4) {
            put(&o, &((const struct sockaddr_in *)src)->sin_addr, 4);
            put(&o, &((const struct sockaddr_in *)dst)->sin_addr, 4);
        } else if (ip) {
            put(&o, &((const struct sockaddr_in6 *)src)->sin6_addr, 16);
            put(&o, &((const struct sockaddr_in6 *)dst)->sin6_addr, 16);
        }
        if (ip) {
            uint16_t sport = port_of(src), dport = port_of(dst); /* network order already */
            put(&o, &sport, 2);
            put(&o, &dport, 2);
        }
    }
    return o.full ? 0 : (size_t)(o.p - out);
}
