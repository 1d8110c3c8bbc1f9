/*
 * snapshot.c - builds the runtime pools and servers from a conf (see snapshot.h).
 */
#include "snapshot.h"

#include <stdlib.h>
#include <string.h>

#include "lb.h"

static struct server *find_server(const struct snapshot *prev, const char *pool, const char *name,
                                  const struct net_addr *addr)
{
    if (!prev)
        return NULL;
    struct pool *p = snapshot_find_pool(prev, pool);
    if (!p)
        return NULL;
    for (unsigned i = 0; i < p->nservers; i++) {
        struct server *s = p->servers[i];
        if (strcmp(s->name, name) == 0 && net_addr_equal(&s->addr, addr))
            return s;
    }
    return NULL;
}

static bool removed(const struct snapshot_overlay *ov, const char *pool, const char *name)
{
    for (unsigned i = 0; ov && i < ov->nremove; i++)
        if (strcmp(ov->remove[i].pool, pool) == 0 && strcmp(ov->remove[i].name, name) == 0)
            return true;
    return false;
}

/* The server called name in pool: shared with prev if unchanged, otherwise new. */
static struct server *get_server(const struct snapshot *prev, const char *pool, const char *name,
                                 const struct net_addr *addr, unsigned weight, bool runtime)
{
    struct server *s = find_server(prev, pool, name, addr);
    if (s) {
        server_ref(s);
        if (!s->weight_pinned)
            atomic_store(&s->weight, weight);
        return s;
    }
    s = server_new(pool, name, addr, weight);
    if (s)
        s->runtime = runtime;
    return s;
}

struct conf_box {
    struct conf *conf;
    _Atomic unsigned refs;
};

static unsigned nworkers = 1;

void snapshot_set_workers(unsigned n)
{
    nworkers = n ? n : 1;
}

static void free_pools(struct pool *pools, unsigned npools)
{
    for (unsigned i = 0; i < npools; i++) {
        struct pool *p = &pools[i];
        for (unsigned w = 0; p->lb_state && w < nworkers; w++)
            if (p->lb_state[w])
                p->lb->state_free(p->lb_state[w]);
        free(p->lb_state);
        for (unsigned k = 0; k < p->nservers; k++)
            server_unref(p->servers[k]);
        free(p->servers);
    }
    free(pools);
}

static const struct lb_ops *balance_ops(enum conf_balance balance)
{
    switch (balance) {
    case CONF_BALANCE_ROUND_ROBIN:
    default:
        return &lb_round_robin;
    }
}

static struct snapshot *build(struct conf *conf, const struct snapshot *prev,
                              const struct snapshot_overlay *overlay)
{
    struct snapshot *snap = calloc(1, sizeof(*snap));
    if (!snap)
        return NULL;
    snap->pools = calloc(conf->npools, sizeof(*snap->pools));
    snap->listeners = calloc(conf->nlisteners, sizeof(*snap->listeners));
    if (!snap->pools || !snap->listeners)
        goto fail;
    for (unsigned i = 0; i < conf->npools; i++) {
        const struct conf_pool *cp = &conf->pools[i];
        struct pool *p = &snap->pools[i];
        unsigned extra = 0;
        for (unsigned k = 0; overlay && k < overlay->nadd; k++)
            extra += strcmp(overlay->add[k].pool, cp->name) == 0;
        p->name = cp->name; /* owned by conf, which the snapshot owns */
        p->conf = cp;
        p->lb = balance_ops(cp->balance);
        p->slot = pool_slot_for(cp->name);
        p->servers = calloc(cp->nservers + extra ? cp->nservers + extra : 1, sizeof(*p->servers));
        p->lb_state = calloc(nworkers, sizeof(*p->lb_state));
        if (!p->servers || !p->lb_state)
            goto fail;
        for (unsigned k = 0; k < cp->nservers; k++) {
            const struct conf_server *cs = &cp->servers[k];
            if (removed(overlay, cp->name, cs->name))
                continue;
            struct server *s = get_server(prev, cp->name, cs->name, &cs->addr, cs->weight, false);
            if (!s)
                goto fail;
            p->servers[p->nservers++] = s;
        }
        for (unsigned k = 0; overlay && k < overlay->nadd; k++) {
            const struct snapshot_change *a = &overlay->add[k];
            if (strcmp(a->pool, cp->name) != 0 || removed(overlay, a->pool, a->name))
                continue;
            struct server *s = get_server(prev, a->pool, a->name, &a->addr, a->weight, true);
            if (!s)
                goto fail;
            p->servers[p->nservers++] = s;
        }
        /* after the servers: the state is sized for them, and a thread's seed moves it a few
         * picks along the cycle */
        for (unsigned w = 0; w < nworkers; w++)
            if (!(p->lb_state[w] = p->lb->state_new(p, w)))
                goto fail;
        snap->npools++;
    }
    for (unsigned i = 0; i < conf->nlisteners; i++) {
        snap->listeners[i].conf = &conf->listeners[i];
        snap->listeners[i].pool = &snap->pools[conf->listeners[i].pool];
    }
    snap->nlisteners = conf->nlisteners;
    snap->conf = conf;
    atomic_init(&snap->refs, 1);
    return snap;
fail:
    /* pools are zeroed, so the ones not reached yet free nothing */
    free_pools(snap->pools, snap->pools ? conf->npools : 0);
    free(snap->listeners);
    free(snap);
    return NULL;
}

struct snapshot *snapshot_new(struct conf *conf, const struct snapshot *prev,
                              const struct snapshot_overlay *overlay)
{
    struct conf_box *box = malloc(sizeof(*box));
    if (!box)
        return NULL;
    struct snapshot *snap = build(conf, prev, overlay);
    if (!snap) {
        free(box);
        return NULL;
    }
    box->conf = conf;
    atomic_init(&box->refs, 1);
    snap->box = box;
    return snap;
}

struct snapshot *snapshot_rebuild(const struct snapshot *cur,
                                  const struct snapshot_overlay *overlay)
{
    struct snapshot *snap = build(cur->conf, cur, overlay);
    if (!snap)
        return NULL;
    atomic_fetch_add(&cur->box->refs, 1);
    snap->box = cur->box;
    return snap;
}

void snapshot_ref(struct snapshot *snap)
{
    atomic_fetch_add(&snap->refs, 1);
}

void snapshot_unref(struct snapshot *snap)
{
    if (!snap || atomic_fetch_sub(&snap->refs, 1) != 1)
        return;
    free_pools(snap->pools, snap->npools);
    free(snap->listeners);
    if (atomic_fetch_sub(&snap->box->refs, 1) == 1) {
        conf_free(snap->box->conf);
        free(snap->box);
    }
    free(snap);
}

struct pool *snapshot_find_pool(const struct snapshot *snap, const char *name)
{
    for (unsigned i = 0; i < snap->npools; i++)
        if (strcmp(snap->pools[i].name, name) == 0)
            return &snap->pools[i];
    return NULL;
}
