/*
 * admin_guard.c - the admin listener's checks against cross-site requests and DNS rebinding
 * (see admin_guard.h for what each check stops).
 *
 * Host and Origin are taken apart into a host part and a port; the host part is then either an
 * IP literal (dotted IPv4, or IPv6 in brackets) or a name, compared without regard to case.
 */
#include "ctl/admin_guard.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>
#include <strings.h>

/* host[:port] split; host keeps IPv6 brackets off. */
struct authority {
    const char *host;
    size_t host_len;
    const char *port; /* NULL if absent */
    size_t port_len;
    bool bracketed;
};

static bool all_digits(const char *s, size_t len)
{
    if (len == 0 || len > 5)
        return false;
    for (size_t i = 0; i < len; i++)
        if (s[i] < '0' || s[i] > '9')
            return false;
    return true;
}

/* Splits an RFC 9110 authority (uri-host [":" port]); false if it is not one. */
static bool split_authority(const char *s, size_t len, struct authority *a)
{
    *a = (struct authority){0};
    const char *end = s + len;
    const char *after;
    if (len && s[0] == '[') {
        const char *close = memchr(s, ']', len);
        if (!close)
            return false;
        a->host = s + 1;
        a->host_len = (size_t)(close - s - 1);
        a->bracketed = true;
        after = close + 1;
    } else {
        const char *colon = memchr(s, ':', len);
        a->host = s;
        a->host_len = colon ? (size_t)(colon - s) : len;
        after = s + a->host_len;
    }
    if (a->host_len == 0)
        return false;
    if (after < end) {
        if (*after != ':' || !all_digits(after + 1, (size_t)(end - after - 1)))
            return false;
        a->port = after + 1;
        a->port_len = (size_t)(end - after - 1);
    }
    return true;
}

/* The host part as an address, if it is an IP literal. */
static bool ip_literal(const struct authority *a, struct sockaddr_storage *ss)
{
    char text[INET6_ADDRSTRLEN + 1];
    if (a->host_len >= sizeof(text))
        return false;
    memcpy(text, a->host, a->host_len);
    text[a->host_len] = '\0';
    memset(ss, 0, sizeof(*ss));
    if (a->bracketed) {
        struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;
        in6->sin6_family = AF_INET6;
        return inet_pton(AF_INET6, text, &in6->sin6_addr) == 1;
    }
    struct sockaddr_in *in = (struct sockaddr_in *)ss;
    in->sin_family = AF_INET;
    return inet_pton(AF_INET, text, &in->sin_addr) == 1;
}

static bool is_loopback(const struct sockaddr_storage *ss)
{
    if (ss->ss_family == AF_INET)
        return (ntohl(((const struct sockaddr_in *)ss)->sin_addr.s_addr) >> 24) == 127;
    const struct in6_addr *a = &((const struct sockaddr_in6 *)ss)->sin6_addr;
    if (IN6_IS_ADDR_LOOPBACK(a))
        return true;
    return IN6_IS_ADDR_V4MAPPED(a) && a->s6_addr[12] == 127;
}

static bool same_text(const char *a, size_t a_len, const char *b)
{
    return strlen(b) == a_len && strncasecmp(a, b, a_len) == 0;
}

/* Is the authority's host one this listener answers for? */
static bool host_allowed(const struct admin_guard_policy *policy, const struct authority *a)
{
    size_t len = a->host_len;
    if (!a->bracketed && len > 1 && a->host[len - 1] == '.')
        len--; /* "localhost." is the same name, fully qualified */
    struct sockaddr_storage ss;
    if (ip_literal(a, &ss)) {
        if (is_loopback(&ss) ||
            (policy->is_local_ip && policy->is_local_ip((struct sockaddr *)&ss)))
            return true;
    } else if (a->bracketed) {
        return false; /* brackets hold only an IPv6 literal */
    } else if (same_text(a->host, len, "localhost")) {
        return true;
    }
    const char *written = a->bracketed ? a->host - 1 : a->host; /* "[v6]" as configured */
    if (a->bracketed)
        len += 2;
    for (unsigned i = 0; i < policy->nallowed_hosts; i++)
        if (same_text(written, len, policy->allowed_hosts[i]))
            return true;
    return false;
}

/* Origin: scheme "://" authority, nothing after it (RFC 6454); the opaque origin "null" and
 * anything else malformed fail. */
static bool split_origin(const struct admin_field *origin, struct authority *a, bool *https)
{
    static const char http[] = "http://", secure[] = "https://";
    size_t skip;
    if (origin->len > sizeof(http) - 1 && strncasecmp(origin->ptr, http, sizeof(http) - 1) == 0)
        skip = sizeof(http) - 1, *https = false;
    else if (origin->len > sizeof(secure) - 1 &&
             strncasecmp(origin->ptr, secure, sizeof(secure) - 1) == 0)
        skip = sizeof(secure) - 1, *https = true;
    else
        return false;
    return split_authority(origin->ptr + skip, origin->len - skip, a);
}

/* Do the two name the same host and port? A missing port is the origin scheme's default. */
static bool same_authority(const struct authority *origin, const struct authority *host, bool https)
{
    const char *dflt = https ? "443" : "80";
    const char *op = origin->port ? origin->port : dflt, *hp = host->port ? host->port : dflt;
    size_t ol = origin->port ? origin->port_len : strlen(dflt);
    size_t hl = host->port ? host->port_len : strlen(dflt);
    return origin->host_len == host->host_len &&
           strncasecmp(origin->host, host->host, host->host_len) == 0 && ol == hl &&
           memcmp(op, hp, ol) == 0;
}

/* The media type of a Content-Type value: the part before parameters, without whitespace. */
static bool is_json(const struct admin_field *type)
{
    if (!type->ptr)
        return false;
    const char *s = type->ptr, *end = s + type->len;
    const char *semi = memchr(s, ';', type->len);
    if (semi)
        end = semi;
    while (s < end && (*s == ' ' || *s == '\t'))
        s++;
    while (end > s && (end[-1] == ' ' || end[-1] == '\t'))
        end--;
    return same_text(s, (size_t)(end - s), "application/json");
}

unsigned admin_guard_check(const struct admin_guard_policy *policy,
                           const struct admin_guard_request *req, const char **why)
{
    struct authority host = {0};
    if (req->host.ptr) {
        if (!split_authority(req->host.ptr, req->host.len, &host) || !host_allowed(policy, &host)) {
            *why = "this admin listener does not answer for that Host name: use localhost, an IP "
                   "address of the machine, or a name in admin.allowed_hosts";
            return 421;
        }
    }
    if (req->origin.ptr) {
        struct authority origin;
        bool https;
        if (!req->host.ptr || !split_origin(&req->origin, &origin, &https) ||
            !same_authority(&origin, &host, https)) {
            *why = "cross-origin requests are refused: the admin API answers only its own pages "
                   "and clients that send no Origin";
            return 403;
        }
    } else if (req->fetch_site.ptr &&
               same_text(req->fetch_site.ptr, req->fetch_site.len, "cross-site")) {
        bool navigation = !req->changes && req->fetch_mode.ptr &&
                          same_text(req->fetch_mode.ptr, req->fetch_mode.len, "navigate");
        if (!navigation) {
            *why = "cross-site requests are refused (Sec-Fetch-Site: cross-site)";
            return 403;
        }
    }
    if (req->changes && !is_json(&req->content_type)) {
        *why = "a request that changes anything must have Content-Type: application/json";
        return 415;
    }
    return 0;
}
