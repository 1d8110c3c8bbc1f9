/*
 * snapshot.c - builds the runtime pools and servers from a conf (see snapshot.h).
 */
#include "lb/snapshot.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/hash.h"
#include "core/loop.h"
#include "lb/lb.h"
#include "lb/routing.h"
#include "tls/set.h"

/* The clock of up_since_ms, for slow-start weights. */
static uint64_t now_ms(void)
{
    return loop_clock_us() / 1000u;
}

/*
 * Servers by name: an open-addressing table built per pool while a snapshot is built, so that a
 * pool of 1,000 discovered servers is matched with its predecessor in 1,000 steps rather than a
 * million (every membership change rebuilds the pool).
 */
struct name_index {
    struct server **slot; /* NULL: empty */
    size_t mask;
};

static size_t name_slot(const struct name_index *ix, const char *name)
{
    return hash_bytes(name, strlen(name), 0x6e616d65) & ix->mask;
}

/* Room for n servers; 0, or -1 if memory ran out. */
static int index_init(struct name_index *ix, unsigned n)
{
    size_t cap = 16;
    while (cap < (size_t)n * 2)
        cap *= 2;
    ix->slot = calloc(cap, sizeof(*ix->slot));
    ix->mask = cap - 1;
    return ix->slot ? 0 : -1;
}

static void index_add(struct name_index *ix, struct server *s)
{
    size_t k = name_slot(ix, s->name);
    while (ix->slot[k])
        k = (k + 1) & ix->mask;
    ix->slot[k] = s;
}

/* The server called name (with this address, if addr is not NULL), or NULL. */
static struct server *index_find(const struct name_index *ix, const char *name,
                                 const struct net_addr *addr)
{
    if (!ix->slot)
        return NULL;
    for (size_t k = name_slot(ix, name); ix->slot[k]; k = (k + 1) & ix->mask) {
        struct server *s = ix->slot[k];
        if (strcmp(s->name, name) == 0 && (!addr || net_addr_equal(&s->addr, addr)))
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

/* Where a server comes from, and how its host part for TLS is known. */
struct origin {
    enum server_source source;
    const char *address; /* as written in the file ("name:port"): its host part */
    const char *host;    /* the host part itself (discovery) */
};

/* The server called name in pool: shared with the previous snapshot's pool (indexed in was) if
 * unchanged, otherwise new. */
static struct server *get_server(const struct snapshot *prev, const struct name_index *was,
                                 const struct conf_pool *cp, const char *name,
                                 const struct net_addr *addr, unsigned weight, struct origin from)
{
    struct server *s = index_find(was, name, addr);
    if (s) {
        server_ref(s);
        if (!s->weight_pinned)
            atomic_store(&s->weight, weight);
        return s;
    }
    s = server_new(cp->name, name, addr, weight);
    if (!s)
        return NULL;
    s->runtime = from.source != SERVER_FROM_FILE;
    s->source = from.source;
    server_set_host(s, from.address);
    if (from.host && *from.host)
        snprintf(s->host, sizeof(s->host), "%s", from.host);
    /* while running, a newcomer proves itself first (snapshot.h) */
    if (prev && cp->check.enabled)
        server_await_first_check(s);
    return s;
}

struct conf_box {
    struct conf *conf;
    struct tls_set *tls;              /* the listeners' TLS contexts, built from conf */
    struct listener_routing *routing; /* per listener */
    _Atomic unsigned refs;
};

/* Listeners and pools point at the TLS contexts and routing their configuration's box holds (a
 * snapshot's listeners and pools are in the configuration's order). */
static void attach_box(struct snapshot *snap)
{
    const struct tls_set *set = snap->box->tls;
    for (unsigned i = 0; i < snap->nlisteners; i++) {
        snap->listeners[i].tls = set && i < set->nservers ? set->servers[i] : NULL;
        snap->listeners[i].routing = &snap->box->routing[i];
    }
    for (unsigned i = 0; i < snap->npools; i++)
        snap->pools[i].tls = set && i < set->nclients ? set->clients[i] : NULL;
}

static unsigned nworkers = 1;

void snapshot_set_workers(unsigned n)
{
    nworkers = n ? n : 1;
}

/*
 * One pool's balancer states, one per worker thread. A snapshot that snapshot_refresh() derives
 * from another has the same servers in the same places, so it shares them: a thread keeps
 * following its requests (taken, released) in one state, whichever of the two snapshots a
 * request started on. Freed with the last snapshot that holds them.
 */
struct lb_states {
    _Atomic unsigned refs;
    const struct lb_ops *ops; /* that made them */
    void *state[];            /* by worker id */
};

static struct lb_states *states_new(const struct pool *p)
{
    struct lb_states *st = calloc(1, sizeof(*st) + nworkers * sizeof(st->state[0]));
    if (!st)
        return NULL;
    atomic_init(&st->refs, 1);
    st->ops = p->lb;
    /* a thread's seed moves its state a few picks along the cycle */
    for (unsigned w = 0; w < nworkers; w++) {
        if (!(st->state[w] = p->lb->state_new(p, w))) {
            while (w--)
                p->lb->state_free(st->state[w]);
            free(st);
            return NULL;
        }
    }
    return st;
}

static void states_unref(struct lb_states *st)
{
    if (!st || atomic_fetch_sub(&st->refs, 1) != 1)
        return;
    for (unsigned w = 0; w < nworkers; w++)
        st->ops->state_free(st->state[w]);
    free(st);
}

/* Frees the first n pools of snap; pools never filled in are zeroed and free nothing. */
static void free_pools(struct snapshot *snap, unsigned n)
{
    for (unsigned i = 0; snap->pools && i < n; i++) {
        struct pool *p = &snap->pools[i];
        states_unref(snap->lb_states ? snap->lb_states[i] : NULL);
        if (p->lb_shared)
            p->lb->shared_free(p->lb_shared);
        for (unsigned k = 0; k < p->nservers; k++)
            server_unref(p->servers[k]);
        free(p->servers);
    }
    free(snap->pools);
    free(snap->lb_states);
}

/* The shared balancer data of the pool called p->name in prev, if the same algorithm made it. */
static const void *prev_shared(const struct snapshot *prev, const struct pool *p)
{
    const struct pool *old = prev ? snapshot_find_pool(prev, p->name) : NULL;
    return old && old->lb == p->lb ? old->lb_shared : NULL;
}

/* Was s (this very server, shared) in the pool called pool in prev? */
static bool in_prev(const struct snapshot *prev, const char *pool, const struct server *s)
{
    const struct pool *old = prev ? snapshot_find_pool(prev, pool) : NULL;
    for (unsigned k = 0; old && k < old->nservers; k++)
        if (old->servers[k] == s)
            return true;
    return false;
}

/*
 * The balancer of pool i, whose servers are in place: its shared data first (rebuild, then
 * server_added for the servers the admin API just added), then the per-thread states, which may
 * read it. The control thread, before any worker sees the snapshot.
 */
static int setup_balancer(struct snapshot *snap, unsigned i, const struct snapshot *prev)
{
    struct pool *p = &snap->pools[i];
    if (p->lb->rebuild && !(p->lb_shared = p->lb->rebuild(p, prev_shared(prev, p), now_ms())))
        return -1;
    for (unsigned k = 0; p->lb->server_added && k < p->nservers; k++)
        if (p->servers[k]->runtime && !in_prev(prev, p->name, p->servers[k]))
            p->lb->server_added(p, p->lb_shared, p->servers[k]);
    if (!(snap->lb_states[i] = states_new(p)))
        return -1;
    p->lb_state = snap->lb_states[i]->state;
    return 0;
}

/*
 * Pool p's servers: the file's (less the API's removals), the API's additions, then the
 * discovered ones whose name the pool does not have yet. Each is shared with the pool of the
 * same name in prev when its name and address are the same there. p->servers has room for all.
 */
static int fill_servers(struct pool *p, const struct conf_pool *cp, const struct snapshot *prev,
                        const struct snapshot_overlay *overlay, unsigned room)
{
    const struct pool *old = prev ? snapshot_find_pool(prev, cp->name) : NULL;
    struct name_index was = {0}, now = {0};
    int rc = -1;
    if ((old && index_init(&was, old->nservers) < 0) || index_init(&now, room) < 0)
        goto out;
    for (unsigned k = 0; old && k < old->nservers; k++)
        index_add(&was, old->servers[k]);
    for (unsigned k = 0; k < cp->nservers; k++) {
        const struct conf_server *cs = &cp->servers[k];
        if (removed(overlay, cp->name, cs->name))
            continue;
        struct server *s = get_server(prev, &was, cp, cs->name, &cs->addr, cs->weight,
                                      (struct origin){SERVER_FROM_FILE, cs->address, NULL});
        if (!s)
            goto out;
        p->servers[p->nservers++] = s;
        index_add(&now, s);
    }
    for (unsigned k = 0; overlay && k < overlay->nadd; k++) {
        const struct snapshot_change *a = &overlay->add[k];
        if (strcmp(a->pool, cp->name) != 0 || removed(overlay, a->pool, a->name))
            continue;
        struct server *s = get_server(prev, &was, cp, a->name, &a->addr, a->weight,
                                      (struct origin){SERVER_FROM_API, NULL, a->host});
        if (!s)
            goto out;
        p->servers[p->nservers++] = s;
        index_add(&now, s);
    }
    for (unsigned k = 0; overlay && k < overlay->ndiscovered; k++) {
        const struct snapshot_change *d = &overlay->discovered[k];
        if (strcmp(d->pool, cp->name) != 0 || index_find(&now, d->name, NULL))
            continue;
        struct server *s = get_server(prev, &was, cp, d->name, &d->addr, d->weight,
                                      (struct origin){d->source, NULL, d->host});
        if (!s)
            goto out;
        p->servers[p->nservers++] = s;
        index_add(&now, s);
    }
    rc = 0;
out:
    free(was.slot);
    free(now.slot);
    return rc;
}

static struct snapshot *build(struct conf *conf, const struct snapshot *prev,
                              const struct snapshot_overlay *overlay)
{
    struct snapshot *snap = calloc(1, sizeof(*snap));
    if (!snap)
        return NULL;
    snap->pools = calloc(conf->npools, sizeof(*snap->pools));
    snap->lb_states = calloc(conf->npools, sizeof(*snap->lb_states));
    snap->listeners = calloc(conf->nlisteners, sizeof(*snap->listeners));
    if (!snap->pools || !snap->lb_states || !snap->listeners)
        goto fail;
    for (unsigned i = 0; i < conf->npools; i++) {
        const struct conf_pool *cp = &conf->pools[i];
        struct pool *p = &snap->pools[i];
        unsigned extra = 0;
        for (unsigned k = 0; overlay && k < overlay->nadd; k++)
            extra += strcmp(overlay->add[k].pool, cp->name) == 0;
        for (unsigned k = 0; overlay && k < overlay->ndiscovered; k++)
            extra += strcmp(overlay->discovered[k].pool, cp->name) == 0;
        p->name = cp->name; /* owned by conf, which the snapshot owns */
        p->conf = cp;
        p->lb = lb_get(cp->balance); /* conf accepted the name: the registry has it (test_lb) */
        p->slot = pool_slot_for(cp->name);
        p->servers = calloc(cp->nservers + extra ? cp->nservers + extra : 1, sizeof(*p->servers));
        if (!p->lb || !p->servers)
            goto fail;
        if (fill_servers(p, cp, prev, overlay, cp->nservers + extra) < 0)
            goto fail;
        /* after the servers: the balancer's data is built from them */
        if (setup_balancer(snap, i, prev) < 0)
            goto fail;
        snap->npools++;
    }
    for (unsigned i = 0; i < conf->nlisteners; i++) {
        snap->listeners[i].conf = &conf->listeners[i];
        unsigned pool = conf->listeners[i].pool;
        snap->listeners[i].pool = pool == CONF_NO_POOL ? NULL : &snap->pools[pool];
    }
    snap->nlisteners = conf->nlisteners;
    snap->conf = conf;
    atomic_init(&snap->refs, 1);
    return snap;
fail:
    free_pools(snap, conf->npools);
    free(snap->listeners);
    free(snap);
    return NULL;
}

const struct tls_set *snapshot_tls(const struct snapshot *snap)
{
    return snap->box->tls;
}

struct snapshot *snapshot_new(struct conf *conf, struct tls_set *tls, const struct snapshot *prev,
                              const struct snapshot_overlay *overlay)
{
    struct conf_box *box = malloc(sizeof(*box));
    if (!box)
        return NULL;
    if (!(box->routing = routing_new(conf))) {
        free(box);
        return NULL;
    }
    struct snapshot *snap = build(conf, prev, overlay);
    if (!snap) {
        routing_free(box->routing, conf->nlisteners);
        free(box);
        return NULL;
    }
    box->conf = conf;
    box->tls = tls;
    atomic_init(&box->refs, 1);
    snap->box = box;
    attach_box(snap);
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
    attach_box(snap);
    return snap;
}

struct snapshot *snapshot_refresh(const struct snapshot *cur)
{
    struct snapshot *snap = calloc(1, sizeof(*snap));
    if (!snap)
        return NULL;
    snap->pools = calloc(cur->npools, sizeof(*snap->pools));
    snap->lb_states = calloc(cur->npools, sizeof(*snap->lb_states));
    snap->listeners = calloc(cur->nlisteners, sizeof(*snap->listeners));
    if (!snap->pools || !snap->lb_states || !snap->listeners)
        goto fail;
    for (unsigned i = 0; i < cur->npools; i++) {
        const struct pool *from = &cur->pools[i];
        struct pool *p = &snap->pools[i];
        *p = *from; /* the same conf, algorithm and slot */
        p->lb_shared = NULL;
        p->nservers = 0;
        p->servers = calloc(from->nservers ? from->nservers : 1, sizeof(*p->servers));
        if (!p->servers)
            goto fail;
        for (unsigned k = 0; k < from->nservers; k++) {
            server_ref(from->servers[k]);
            p->servers[p->nservers++] = from->servers[k];
        }
        snap->lb_states[i] = cur->lb_states[i]; /* the same servers in the same places */
        atomic_fetch_add(&snap->lb_states[i]->refs, 1);
        if (p->lb->rebuild && !(p->lb_shared = p->lb->rebuild(p, from->lb_shared, now_ms())))
            goto fail;
    }
    snap->npools = cur->npools;
    for (unsigned i = 0; i < cur->nlisteners; i++) {
        snap->listeners[i].conf = cur->listeners[i].conf;
        snap->listeners[i].pool =
            cur->listeners[i].pool ? &snap->pools[cur->listeners[i].pool - cur->pools] : NULL;
    }
    snap->nlisteners = cur->nlisteners;
    snap->conf = cur->conf;
    atomic_init(&snap->refs, 1);
    atomic_fetch_add(&cur->box->refs, 1);
    snap->box = cur->box;
    attach_box(snap);
    return snap;
fail:
    free_pools(snap, cur->npools); /* pools not reached are zeroed */
    free(snap->listeners);
    free(snap);
    return NULL;
}

void snapshot_ref(struct snapshot *snap)
{
    atomic_fetch_add(&snap->refs, 1);
}

void snapshot_unref(struct snapshot *snap)
{
    if (!snap || atomic_fetch_sub(&snap->refs, 1) != 1)
        return;
    free_pools(snap, snap->npools);
    free(snap->listeners);
    if (atomic_fetch_sub(&snap->box->refs, 1) == 1) {
        tls_set_free(snap->box->tls);
        routing_free(snap->box->routing, snap->box->conf->nlisteners);
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
