/*
 * routing.c - a configuration's listener routing (see routing.h).
 */
#include "lb/routing.h"

#include <stdlib.h>

#include "core/log.h"
#include "route/route.h"
#include "route/rules.h"
#include "servers/pool.h"

static int build_listener(const struct conf_listener *l, struct listener_routing *r)
{
    if (route_rules_build(&l->request_headers, &r->request_rules) < 0 ||
        route_rules_build(&l->response_headers, &r->response_rules) < 0)
        return -1;
    r->normalize = l->forward_normalized_path;
    if (!l->nroutes)
        return 0;
    char why[256];
    if (!(r->table = route_table_new(l, why, sizeof(why)))) {
        log_error("listener %s: cannot build its routes: %s", l->name, why);
        return -1;
    }
    r->slots = calloc(l->nroutes, sizeof(*r->slots));
    r->route_request = calloc(l->nroutes, sizeof(*r->route_request));
    r->route_response = calloc(l->nroutes, sizeof(*r->route_response));
    if (!r->slots || !r->route_request || !r->route_response)
        return -1;
    for (unsigned i = 0; i < l->nroutes; i++) {
        const struct conf_route *cr = &l->routes[i];
        r->slots[i] = route_slot_for(l->name, cr->name);
        if (route_rules_build(&cr->request_headers, &r->route_request[i]) < 0 ||
            route_rules_build(&cr->response_headers, &r->route_response[i]) < 0)
            return -1;
    }
    r->normalize = true; /* a path that climbs above the root is refused wherever routes are */
    return 0;
}

struct listener_routing *routing_new(const struct conf *conf)
{
    struct listener_routing *all = calloc(conf->nlisteners ? conf->nlisteners : 1, sizeof(*all));
    if (!all)
        return NULL;
    for (unsigned i = 0; i < conf->nlisteners; i++) {
        if (build_listener(&conf->listeners[i], &all[i]) < 0) {
            routing_free(all, conf->nlisteners);
            return NULL;
        }
    }
    return all;
}

void routing_free(struct listener_routing *all, unsigned nlisteners)
{
    if (!all)
        return;
    for (unsigned i = 0; i < nlisteners; i++) {
        struct listener_routing *r = &all[i];
        unsigned n = r->table ? route_table_count(r->table) : 0;
        for (unsigned k = 0; k < n; k++) {
            if (r->route_request)
                route_rules_free(&r->route_request[k]);
            if (r->route_response)
                route_rules_free(&r->route_response[k]);
        }
        route_table_free(r->table);
        free(r->slots);
        free(r->route_request);
        free(r->route_response);
        route_rules_free(&r->request_rules);
        route_rules_free(&r->response_rules);
    }
    free(all);
}
