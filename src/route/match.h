/*
 * match.h - inside the route layer: a route in its compiled form (struct route_entry), a request's
 * keys in the form they are compared in (struct route_keys), and the test of one route against
 * one request.
 *
 * table.c builds the entries and narrows a request down to a few candidates through its index;
 * match.c decides whether a candidate's every condition holds. The index only ever leaves routes
 * out, and route_entry_holds() has the last word on every route it keeps, so a request gets the
 * same route with the index as by a scan of the whole list (route_check()).
 */
#ifndef FULCRUM_ROUTE_MATCH_H
#define FULCRUM_ROUTE_MATCH_H

#include <regex.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "route/route.h"

/* A route's host or server name in the form it is compared in: lowercase (conf made it so), no
 * trailing dot, and for "*.example.com" only the suffix "example.com", with wild set. */
struct route_name {
    const char *s; /* into the conf's string; not NUL-terminated */
    uint32_t len;  /* 0: a pattern that matches no name ("." or "*..") */
    bool wild;
};

struct route_entry {
    struct route pub;                      /* what route_table_get() and route_match() hand out */
    const struct route_name *hosts, *snis; /* into the table's array of names */
    unsigned nhosts, nsnis;
    uint32_t path_len, prefix_len; /* of conf->match.path and path_prefix */
    regex_t regex;
    bool has_regex;
};

/* A request's keys, worked out once per lookup. */
struct route_keys {
    const struct route_request *req;
    const char *host; /* without port and trailing dot, case as received; NULL: no Host */
    size_t host_len;
    const char *sni; /* without trailing dot; NULL: no server name */
    size_t sni_len;
    const char *path; /* never NULL ("" when the request gave none) */
    size_t path_len;
    char *zbuf; /* the caller's room for the NUL-terminated path that regexec() needs */
    size_t zcap;
    const char *zpath; /* that path, made on the first path_regex; NULL until then */
    char *zheap;       /* its memory when it did not fit zbuf */
    bool zfailed;      /* it could not be made: no path_regex matches */
};

/* The compared form of a route's host or sni pattern (as conf checked and lowercased it). */
struct route_name route_name_of(const char *pattern);

/* Does pattern n cover name (a request's host or server name, already without port and trailing
 * dot)? Equality ignoring ASCII case; a wildcard wants one non-empty label, a dot, its suffix. */
bool route_name_covers(const struct route_name *n, const char *name, size_t len);

/* Equality of a and b ignoring ASCII case, both len bytes. */
bool route_fold_eq(const char *a, const char *b, size_t len);

/* Fills k from req. buf (cap bytes) is where a NUL-terminated copy of the path goes if some
 * path_regex asks for one; route_keys_done() frees what a longer path needed. */
void route_keys_init(struct route_keys *k, const struct route_request *req, char *buf, size_t cap);
void route_keys_done(struct route_keys *k);

/* Does every condition of e hold for the request? */
bool route_entry_holds(const struct route_entry *e, struct route_keys *k);

#endif
