/*
 * routing.h - what each listener of a configuration needs to route requests, built once per
 * configuration and shared by every snapshot made from it (snapshot.c keeps it in the
 * configuration's box): the route table (route/route.h), each route's counter slot, and the
 * listener's and routes' header rules in the rewriter's form (route/rules.h).
 *
 * A route's pool is an index into the configuration's pools, which is also its place in every
 * snapshot's pools array, so nothing here points into a snapshot.
 */
#ifndef FULCRUM_LB_ROUTING_H
#define FULCRUM_LB_ROUTING_H

#include "conf/conf.h"
#include "http/rewrite.h"

struct route_table;

struct listener_routing {
    struct route_table *table; /* NULL: the listener has no routes */
    unsigned *slots;           /* per route: its counters (proxy/stats.h stats_route) */
    struct rewrite_rules request_rules, response_rules;   /* the listener's own */
    struct rewrite_rules *route_request, *route_response; /* per route */
    bool normalize; /* the listener has routes, or forwards the normalised path */
};

/* One per listener of conf, in its order; NULL if memory ran out. */
struct listener_routing *routing_new(const struct conf *conf);
void routing_free(struct listener_routing *r, unsigned nlisteners);

#endif
