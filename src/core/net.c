/*
 * net.c - addresses and sockets (see net.h).
 */
#include "core/net.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int parse_port(const char *s, unsigned *port)
{
    if (!*s)
        return -1;
    unsigned long v = 0;
    for (const char *p = s; *p; p++) {
        if (*p < '0' || *p > '9')
            return -1;
        v = v * 10 + (unsigned long)(*p - '0');
        if (v > 65535)
            return -1;
    }
    *port = (unsigned)v;
    return 0;
}

int net_parse_cidr(const char *text, struct net_cidr *out, const char **error)
{
    char host[INET6_ADDRSTRLEN + 1];
    const char *slash = strchr(text, '/');
    size_t n = slash ? (size_t)(slash - text) : strlen(text);
    memset(out, 0, sizeof(*out));
    if (n == 0 || n >= sizeof(host)) {
        *error = "expected an address or a range such as 10.0.0.0/8";
        return -1;
    }
    memcpy(host, text, n);
    host[n] = '\0';
    if (inet_pton(AF_INET, host, out->addr) == 1) {
        out->family = AF_INET;
        out->bits = 32;
    } else if (inet_pton(AF_INET6, host, out->addr) == 1) {
        out->family = AF_INET6;
        out->bits = 128;
    } else {
        *error = "expected an IPv4 or IPv6 address, or a range such as 10.0.0.0/8";
        return -1;
    }
    if (slash) {
        unsigned max = out->bits, bits = 0;
        const char *p = slash + 1;
        if (!*p || strlen(p) > 3)
            goto bad_prefix;
        for (; *p; p++) {
            if (*p < '0' || *p > '9')
                goto bad_prefix;
            bits = bits * 10 + (unsigned)(*p - '0');
        }
        if (bits > max)
            goto bad_prefix;
        out->bits = bits;
    }
    for (unsigned b = out->bits; b < (out->family == AF_INET ? 32u : 128u); b++)
        if (out->addr[b / 8] & (0x80u >> (b % 8))) {
            *error = "the address has bits set past the prefix length (e.g. write 10.0.0.0/8)";
            return -1;
        }
    return 0;
bad_prefix:
    *error = "invalid prefix length";
    return -1;
}

bool net_cidr_match(const struct net_cidr *range, const struct sockaddr *sa)
{
    const unsigned char *a;
    if (sa->sa_family == AF_INET) {
        if (range->family != AF_INET)
            return false;
        a = (const unsigned char *)&((const struct sockaddr_in *)sa)->sin_addr;
    } else if (sa->sa_family == AF_INET6) {
        const struct in6_addr *in6 = &((const struct sockaddr_in6 *)sa)->sin6_addr;
        if (range->family == AF_INET && IN6_IS_ADDR_V4MAPPED(in6))
            a = in6->s6_addr + 12;
        else if (range->family == AF_INET6)
            a = in6->s6_addr;
        else
            return false;
    } else {
        return false;
    }
    unsigned full = range->bits / 8, rest = range->bits % 8;
    if (memcmp(a, range->addr, full) != 0)
        return false;
    if (!rest)
        return true;
    unsigned char mask = (unsigned char)(0xffu << (8 - rest));
    return (a[full] & mask) == (range->addr[full] & mask);
}

int net_parse_addr(const char *text, struct net_addr *out, const char **error)
{
    char host[256];
    const char *port_text;
    unsigned port;

    memset(out, 0, sizeof(*out));
    if (text[0] == '[') {
        const char *close = strchr(text, ']');
        if (!close || close[1] != ':') {
            *error = "expected [IPv6 address]:port";
            return -1;
        }
        size_t n = (size_t)(close - text - 1);
        if (n == 0 || n >= sizeof(host)) {
            *error = "invalid IPv6 address";
            return -1;
        }
        memcpy(host, text + 1, n);
        host[n] = '\0';
        port_text = close + 2;
        struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&out->ss;
        if (parse_port(port_text, &port) < 0) {
            *error = "invalid port (expected 0-65535)";
            return -1;
        }
        if (inet_pton(AF_INET6, host, &sin6->sin6_addr) != 1) {
            *error = "invalid IPv6 address";
            return -1;
        }
        sin6->sin6_family = AF_INET6;
        sin6->sin6_port = htons((uint16_t)port);
        out->len = sizeof(*sin6);
        return 0;
    }

    const char *colon = strrchr(text, ':');
    if (!colon) {
        *error = "expected host:port";
        return -1;
    }
    if (strchr(text, ':') != colon) {
        *error = "an IPv6 address must be written in brackets: [::1]:8080";
        return -1;
    }
    size_t n = (size_t)(colon - text);
    if (n >= sizeof(host)) {
        *error = "host name too long";
        return -1;
    }
    memcpy(host, text, n);
    host[n] = '\0';
    port_text = colon + 1;
    if (parse_port(port_text, &port) < 0) {
        *error = "invalid port (expected 0-65535)";
        return -1;
    }

    if (n == 0 || strcmp(host, "*") == 0) {
        /* All addresses: an IPv6 socket that also takes IPv4, with an IPv4 fallback (see
         * net_listen) for machines where IPv6 is off. */
        struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&out->ss;
        sin6->sin6_family = AF_INET6;
        sin6->sin6_addr = in6addr_any;
        sin6->sin6_port = htons((uint16_t)port);
        out->len = sizeof(*sin6);
        out->any = true;
        return 0;
    }

    struct sockaddr_in *sin = (struct sockaddr_in *)&out->ss;
    if (inet_pton(AF_INET, host, &sin->sin_addr) == 1) {
        sin->sin_family = AF_INET;
        sin->sin_port = htons((uint16_t)port);
        out->len = sizeof(*sin);
        return 0;
    }

#ifdef FULCRUM_NO_DNS
    /* fuzzing builds: host names must not turn into network lookups */
    *error = "cannot resolve host name";
    return -1;
#endif
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    struct addrinfo *res = NULL;
    int rc = getaddrinfo(host, NULL, &hints, &res);
    if (rc != 0 || !res) {
        *error = "cannot resolve host name";
        return -1;
    }
    memcpy(&out->ss, res->ai_addr, res->ai_addrlen);
    out->len = res->ai_addrlen;
    if (out->ss.ss_family == AF_INET)
        ((struct sockaddr_in *)&out->ss)->sin_port = htons((uint16_t)port);
    else
        ((struct sockaddr_in6 *)&out->ss)->sin6_port = htons((uint16_t)port);
    freeaddrinfo(res);
    return 0;
}

/* inet_ntop() goes through sprintf; this runs once per forwarded request, for X-Forwarded-For. */
static size_t ipv4_format(const unsigned char *ip, char *out, size_t size)
{
    char tmp[16];
    size_t n = 0;
    for (int i = 0; i < 4; i++) {
        unsigned v = ip[i];
        if (v >= 100)
            tmp[n++] = (char)('0' + v / 100);
        if (v >= 10)
            tmp[n++] = (char)('0' + v / 10 % 10);
        tmp[n++] = (char)('0' + v % 10);
        tmp[n++] = '.';
    }
    n--; /* the last dot */
    if (n >= size)
        n = size - 1;
    memcpy(out, tmp, n);
    out[n] = '\0';
    return n;
}

size_t net_ip_format(const struct sockaddr *sa, char *out, size_t size)
{
    const void *ip;
    if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)sa;
        /* Show IPv4 clients of a dual-stack listener as plain IPv4. */
        if (IN6_IS_ADDR_V4MAPPED(&sin6->sin6_addr))
            return ipv4_format(&sin6->sin6_addr.s6_addr[12], out, size);
        ip = &sin6->sin6_addr;
    } else if (sa->sa_family == AF_INET) {
        return ipv4_format((const unsigned char *)&((const struct sockaddr_in *)sa)->sin_addr, out,
                           size);
    } else {
        snprintf(out, size, "unknown");
        return strlen(out);
    }
    if (!inet_ntop(sa->sa_family, ip, out, (socklen_t)size))
        out[0] = '\0';
    return strlen(out);
}

void net_addr_format(const struct sockaddr *sa, char *out, size_t size)
{
    char ip[INET6_ADDRSTRLEN];
    net_ip_format(sa, ip, sizeof(ip));
    unsigned port = 0;
    if (sa->sa_family == AF_INET)
        port = ntohs(((const struct sockaddr_in *)sa)->sin_port);
    else if (sa->sa_family == AF_INET6)
        port = ntohs(((const struct sockaddr_in6 *)sa)->sin6_port);
    if (sa->sa_family == AF_INET6 && !strchr(ip, '.'))
        snprintf(out, size, "[%s]:%u", ip, port);
    else
        snprintf(out, size, "%s:%u", ip, port);
}

bool net_addr_equal(const struct net_addr *a, const struct net_addr *b)
{
    return a->len == b->len && a->any == b->any && memcmp(&a->ss, &b->ss, a->len) == 0;
}

static int listen_on(const struct sockaddr *sa, socklen_t len, int backlog, bool reuseport,
                     bool dual_stack)
{
    int fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    int one = 1, zero = 0;
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
        (reuseport && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) < 0) ||
        (dual_stack && setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof(zero)) < 0) ||
        /* Accepted sockets inherit TCP_NODELAY: responses go out in one write, never held back
         * by Nagle while an earlier segment waits for its ACK. */
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) < 0 || bind(fd, sa, len) < 0 ||
        listen(fd, backlog) < 0) {
        int saved = errno;
        close(fd);
        errno = saved;
        return -1;
    }
    return fd;
}

static int bind_probe(const struct sockaddr *sa, socklen_t len, bool dual_stack)
{
    int fd = socket(sa->sa_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    int one = 1, zero = 0, rc;
    rc = setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (rc == 0 && dual_stack)
        rc = setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof(zero));
    if (rc == 0)
        rc = bind(fd, sa, len);
    int saved = errno;
    close(fd);
    errno = saved;
    return rc;
}

int net_bind_probe(const struct net_addr *addr)
{
    int rc = bind_probe((const struct sockaddr *)&addr->ss, addr->len, addr->any);
    if (rc < 0 && addr->any && (errno == EAFNOSUPPORT || errno == EADDRNOTAVAIL)) {
        /* the same IPv4 fallback as net_listen */
        struct sockaddr_in sin = {.sin_family = AF_INET,
                                  .sin_port = ((const struct sockaddr_in6 *)&addr->ss)->sin6_port,
                                  .sin_addr.s_addr = htonl(INADDR_ANY)};
        rc = bind_probe((const struct sockaddr *)&sin, sizeof(sin), false);
    }
    return rc;
}

int net_listen(const struct net_addr *addr, int backlog, bool reuseport)
{
    int fd =
        listen_on((const struct sockaddr *)&addr->ss, addr->len, backlog, reuseport, addr->any);
    if (fd < 0 && addr->any && (errno == EAFNOSUPPORT || errno == EADDRNOTAVAIL)) {
        struct sockaddr_in sin = {.sin_family = AF_INET,
                                  .sin_port = ((const struct sockaddr_in6 *)&addr->ss)->sin6_port,
                                  .sin_addr.s_addr = htonl(INADDR_ANY)};
        fd = listen_on((const struct sockaddr *)&sin, sizeof(sin), backlog, reuseport, false);
    }
    return fd;
}

int net_connect(const struct net_addr *addr, bool *in_progress)
{
    int fd = socket(addr->ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    int one = 1;
    if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) < 0) {
        int saved = errno;
        close(fd);
        errno = saved;
        return -1;
    }
    if (connect(fd, (const struct sockaddr *)&addr->ss, addr->len) == 0) {
        *in_progress = false;
        return fd;
    }
    if (errno == EINPROGRESS) {
        *in_progress = true;
        return fd;
    }
    int saved = errno;
    close(fd);
    errno = saved;
    return -1;
}

int net_socket_error(int fd)
{
    int err = 0;
    socklen_t len = sizeof(err);
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
        return errno;
    return err;
}

void net_close_reset(int fd)
{
    struct linger lg = {.l_onoff = 1, .l_linger = 0};
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
    close(fd);
}
