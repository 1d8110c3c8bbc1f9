/*
 * route.h - a listener's routes, compiled once per configuration snapshot into an immutable
 * table, and the lookup that gives a request its route: the first, in the listener's order,
 * whose every condition holds.
 *
 * What each condition of a route's match (conf.h, struct conf_route_match) compares:
 *   - host: the Host field, without its port (":digits" at the end; an IPv6 literal keeps its
 *     brackets) and without a trailing dot, equals one of the route's hosts, ignoring ASCII case.
 *     "*.example.com" covers exactly one more label: "a.example.com", not "example.com" nor
 *     "a.b.example.com". A request without a Host matches no host condition.
 *   - sni: the same rules for the TLS server name (which has no port); a connection without one
 *     matches no sni condition.
 *   - path: the normalised path (http/path.h) equals it, byte for byte.
 *   - path_prefix: the normalised path starts with it, byte for byte (so "/api" also covers
 *     "/apis"; write "/api/" for a directory).
 *   - path_regex: a POSIX extended regular expression finds a match in the normalised path
 *     (anchor it with ^ and $ for a whole-path match). A path holding a NUL byte never matches.
 *   - method: equals one of the route's methods, case-sensitive (RFC 9110 section 9.1).
 *   - header: a field of that name (any case) is present, and if a value is given, some field of
 *     that name has exactly that value, after the parser's trimming of surrounding whitespace.
 *     A field is not split at commas.
 *   - query: the query (the part after '?') has a parameter of exactly that name, and if a value
 *     is given, one of that name with exactly that value. Parameters are split at '&' and are
 *     "name=value" or "name" (no value: it meets only a condition without one); nothing is
 *     percent-decoded, so write the name and value as clients send them.
 * Route paths and prefixes are compared as written in the configuration: one that is not itself
 * in normal form ("/a/../b", "%7e") can never match.
 *
 * The table borrows the listener's conf (the strings, and what route->conf points to): it must
 * outlive the table, as a snapshot's conf does. A finished table is only read, by any number of
 * threads at once. Matching allocates nothing, except for a path_regex on a path over
 * ROUTE_REGEX_STACK bytes (a copy with a terminating NUL; if that allocation fails, the
 * path_regex does not match).
 */
#ifndef FULCRUM_ROUTE_H
#define FULCRUM_ROUTE_H

#include <stdbool.h>
#include <stddef.h>

struct conf_listener;
struct conf_route;
struct http1_msg;

/* A path up to this long is made NUL-terminated for regexec() on the stack. */
#define ROUTE_REGEX_STACK 8192

struct route_table;

/* One compiled route; public read-only fields. */
struct route {
    const struct conf_route *conf; /* name, action, pool index, redirect, respond, header rules */
    unsigned index;                /* position in the listener's list, from 0 */
};

/* What a request offers to match against. All lengths are explicit; nothing is NUL-terminated. */
struct route_request {
    const char *host; /* Host field value as received (may carry :port, any case, may be an */
    size_t host_len;  /* IPv6 literal "[..]:port"); NULL if absent */
    const char *sni;  /* TLS server name; NULL if none */
    size_t sni_len;
    const char *method; /* as received, case-sensitive */
    size_t method_len;
    const char *path; /* already normalised (http/path.h path_normalize), without the query */
    size_t path_len;
    const char *query; /* what follows '?'; NULL if there is no '?' */
    size_t query_len;
    const char *head;            /* the request head buffer, for header lookups */
    const struct http1_msg *msg; /* its parsed head (http/http1.h); NULL: no fields */
};

/*
 * Builds the table for a listener's routes (none is fine: nothing ever matches). Returns NULL if
 * memory ran out or a path_regex does not compile, with the reason written to why (why_size
 * bytes, NUL-terminated; why may be NULL if why_size is 0).
 */
struct route_table *route_table_new(const struct conf_listener *l, char *why, size_t why_size);
void route_table_free(struct route_table *t);

unsigned route_table_count(const struct route_table *t);
/* Route i (0 <= i < count), or NULL. */
const struct route *route_table_get(const struct route_table *t, unsigned i);

/* The first route whose every condition holds, or NULL. */
const struct route *route_match(const struct route_table *t, const struct route_request *req);

/* Does this one route's every condition hold? route_match() without its index, one route at a
 * time: the linear scan that the index must agree with (the tests and the fuzzer compare them). */
bool route_check(const struct route *r, const struct route_request *req);

#endif
