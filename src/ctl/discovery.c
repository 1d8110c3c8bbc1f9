/*
 * discovery.c - the control thread's discovery sources (see discovery.h).
 *
 * Each source is identified by its pool and kind, and carries a fingerprint of its settings: a
 * reload that leaves the fingerprint alone keeps the running source (and its connections, timers
 * and set) untouched; one that changes it starts a new source from the old one's set. Sets are
 * copied out of the sources' callbacks, so a source's own memory is never read outside them.
 */
#include "ctl/discovery.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conf/conf.h"
#include "core/container.h"
#include "core/log.h"
#include "core/loop.h"
#include "discovery/dns.h"
#include "discovery/etcd.h"
#include "servers/pool.h"
#include "tls/client.h"
#include "tls/set.h"

struct source {
    struct source *next;
    struct loop_grave grave; /* dropped by a reload: freed after the batch */
    struct discovery *owner;
    char *pool;
    enum server_source kind; /* SERVER_FROM_DNS or SERVER_FROM_ETCD */
    char *fingerprint;       /* the settings it was started with */
    char *target;            /* the DNS name or the etcd prefix */
    struct dns_source *dns;
    struct etcd_source *etcd;
    struct member_set set; /* the last set it reported */
    bool seen;             /* discovery_sync: still configured */
};

struct discovery {
    struct loop *loop;
    void (*changed)(void *arg);
    void *arg;
    struct source *sources;
    struct snapshot_change *list; /* discovery_servers()'s answer */
    unsigned nlist, caplist;
    struct member_log merge_log; /* names and addresses skipped while merging */
    struct member_set taken;     /* while merging a pool: the names and addresses it has */
};

struct discovery *discovery_new(struct loop *loop, void (*changed)(void *arg), void *arg)
{
    struct discovery *d = calloc(1, sizeof(*d));
    if (!d)
        return NULL;
    d->loop = loop;
    d->changed = changed;
    d->arg = arg;
    return d;
}

static const char *kind_label(enum server_source kind)
{
    return server_source_label(kind);
}

static void source_free(struct source *s)
{
    dns_source_free(s->dns);
    etcd_source_free(s->etcd);
    members_free(&s->set);
    free(s->pool);
    free(s->fingerprint);
    free(s->target);
    free(s);
}

static void bury_source(struct loop_grave *grave)
{
    source_free(container_of(grave, struct source, grave));
}

/*
 * A source the configuration dropped: out of the list now, freed after the batch. A reload runs
 * inside an event (the admin API, the wake-up), and a later event of the same batch may point at
 * the source's connection; until then it may still answer, which changes nothing (it is no
 * longer in the list the snapshot is built from).
 */
static void retire_source(struct discovery *d, struct source *s)
{
    s->grave.bury = bury_source;
    loop_bury(d->loop, &s->grave);
}

void discovery_free(struct discovery *d)
{
    if (!d)
        return;
    while (d->sources) {
        struct source *s = d->sources;
        d->sources = s->next;
        source_free(s);
    }
    free(d->list);
    members_log_free(&d->merge_log);
    members_free(&d->taken);
    free(d);
}

/* Is member m of a missing from b (changed: there under its name, but with another address,
 * weight or host)? */
static bool missing(const struct member_set *b, const struct member *m, bool changed)
{
    int k = members_find(b, m->name);
    if (k < 0)
        return !changed;
    const struct member *o = &b->v[k];
    bool same = net_addr_equal(&o->addr, &m->addr) && o->weight == m->weight &&
                strcmp(o->host, m->host) == 0;
    return changed && !same;
}

/* "a, b, c and 4 more" for log lines: the first few names of the members of a missing from b
 * (or changed in b), and how many there are. */
static unsigned names_missing(const struct member_set *a, const struct member_set *b, bool changed,
                              char *out, size_t size)
{
    unsigned n = 0, shown = 0;
    size_t o = 0;
    out[0] = '\0';
    for (unsigned i = 0; i < a->n; i++) {
        if (!missing(b, &a->v[i], changed))
            continue;
        n++;
        if (shown < 5 && o < size) {
            int w = snprintf(out + o, size - o, "%s%s", shown ? ", " : "", a->v[i].name);
            if (w > 0)
                o += (size_t)w;
            shown++;
        }
    }
    if (n > shown && o < size)
        snprintf(out + o, size - o, " and %u more", n - shown);
    return n;
}

/* A source's update callback: keep a copy, log who came and went, and tell the control thread. */
static void on_update(void *arg, const struct member_set *set)
{
    struct source *s = arg;
    char joined[400], left[400], changed[400];
    unsigned nj = names_missing(set, &s->set, false, joined, sizeof(joined));
    unsigned nl = names_missing(&s->set, set, false, left, sizeof(left));
    unsigned nc = names_missing(set, &s->set, true, changed, sizeof(changed));
    if (members_copy(&s->set, set) < 0) {
        log_error("pool %s: %s %s: out of memory for %u servers; keeping the previous set", s->pool,
                  kind_label(s->kind), s->target, set->n);
        return;
    }
    log_info("pool %s: %s %s: %u joined%s%s%s, %u left%s%s%s, %u changed%s%s%s; %u discovered",
             s->pool, kind_label(s->kind), s->target, nj, nj ? " (" : "", joined, nj ? ")" : "", nl,
             nl ? " (" : "", left, nl ? ")" : "", nc, nc ? " (" : "", changed, nc ? ")" : "",
             set->n);
    s->owner->changed(s->owner->arg);
}

/* An etcd registry's TLS, through the TLS layer's client contexts (tls/client.h). */
static struct ssl_st *etcd_tls_connect(void *ctx, const char *host)
{
    return tls_client_connect(ctx, host, NULL);
}

static void etcd_tls_release(void *ctx)
{
    tls_client_free(ctx);
}

static const struct etcd_tls etcd_tls = {
    .connect = etcd_tls_connect,
    .verify_error = tls_client_verify_error,
    .release = etcd_tls_release,
};

/* A reference to pool number pi's etcd TLS context in tls, for a source to own; NULL: none. */
static struct tls_client *etcd_tls_ref(const struct tls_set *tls, unsigned pi)
{
    return tls && tls->etcd && pi < tls->nclients ? tls_client_ref(tls->etcd[pi]) : NULL;
}

/* The settings that make a source what it is, as text: equal text, same source. */
static char *dns_fingerprint(const struct conf_pool *p)
{
    const struct conf_dns_discovery *c = &p->discovery.dns;
    char resolvers[512] = "";
    size_t o = 0;
    for (unsigned i = 0; i < c->nresolvers && o < sizeof(resolvers); i++) {
        char text[NET_ADDR_TEXT];
        net_addr_format((const struct sockaddr *)&c->resolvers[i].ss, text, sizeof(text));
        int w = snprintf(resolvers + o, sizeof(resolvers) - o, "%s,", text);
        if (w > 0)
            o += (size_t)w;
    }
    char *fp = NULL;
    if (asprintf(&fp, "dns|%s|%d|%u|%s|%u|%u|%u|%u|%u", c->name, (int)c->type, c->port, resolvers,
                 c->interval_ms, c->hold_on_error_ms, c->timeout_ms, p->max_servers,
                 p->nservers) < 0)
        return NULL;
    return fp;
}

static char *etcd_fingerprint(const struct conf_pool *p)
{
    const struct conf_etcd_discovery *c = &p->discovery.etcd;
    char endpoints[1024] = "";
    size_t o = 0;
    for (unsigned i = 0; i < c->nendpoints && o < sizeof(endpoints); i++) {
        int w = snprintf(endpoints + o, sizeof(endpoints) - o, "%s,", c->endpoints[i]);
        if (w > 0)
            o += (size_t)w;
    }
    char *fp = NULL;
    const struct conf_pool_tls *t = &c->tls;
    if (asprintf(&fp, "etcd|%s|%s|%u|%u|%u|%u|%d|%d|%s|%s|%s|%s", endpoints, c->prefix,
                 c->timeout_ms, c->hold_on_error_ms, p->max_servers, p->nservers, c->https,
                 t->verify, t->ca ? t->ca : "", t->sni ? t->sni : "", t->cert ? t->cert : "",
                 t->key ? t->key : "") < 0)
        return NULL;
    return fp;
}

static struct source *find_source(struct discovery *d, const char *pool, enum server_source kind)
{
    for (struct source *s = d->sources; s; s = s->next)
        if (s->kind == kind && strcmp(s->pool, pool) == 0)
            return s;
    return NULL;
}

/* How many discovered servers pool p may take: max_servers less its written servers. */
static unsigned room_for(const struct conf_pool *p)
{
    return p->max_servers > p->nservers ? p->max_servers - p->nservers : 0;
}

/* Starts the source of kind for pool p, from old's set if there was one (replacing old). */
static int start_source(struct discovery *d, const struct conf_pool *p, unsigned pi,
                        const struct tls_set *tls, enum server_source kind, char *fingerprint,
                        struct source *old)
{
    struct source *s = calloc(1, sizeof(*s));
    if (!s || !(s->pool = strdup(p->name)) ||
        !(s->target =
              strdup(kind == SERVER_FROM_DNS ? p->discovery.dns.name : p->discovery.etcd.prefix))) {
        free(fingerprint);
        if (s)
            source_free(s);
        log_error("pool %s: out of memory for %s discovery", p->name, kind_label(kind));
        return -1;
    }
    s->owner = d;
    s->kind = kind;
    s->fingerprint = fingerprint;
    members_init(&s->set, room_for(p));
    if (old && members_copy(&s->set, &old->set) < 0)
        members_clear(&s->set);
    const struct member_set *initial = old ? &s->set : NULL;
    if (kind == SERVER_FROM_DNS)
        s->dns =
            dns_source_new(d->loop, p->name, &p->discovery.dns, room_for(p), initial, on_update, s);
    else
        s->etcd = etcd_source_new(d->loop, p->name, &p->discovery.etcd, room_for(p), initial,
                                  &etcd_tls, etcd_tls_ref(tls, pi), on_update, s);
    if (!s->dns && !s->etcd) {
        source_free(s);
        return -1; /* logged by the source */
    }
    s->seen = true;
    s->next = d->sources;
    d->sources = s;
    if (old)
        log_info("pool %s: %s discovery settings changed: restarted, keeping its %u servers until "
                 "it answers",
                 p->name, kind_label(kind), s->set.n);
    return 0;
}

/* Keeps, replaces or starts pool p's source of kind; fingerprint is NULL when out of memory. */
static int sync_one(struct discovery *d, const struct conf_pool *p, unsigned pi,
                    const struct tls_set *tls, enum server_source kind, char *fingerprint)
{
    if (!fingerprint) {
        log_error("pool %s: out of memory for %s discovery", p->name, kind_label(kind));
        return -1;
    }
    struct source *old = find_source(d, p->name, kind);
    if (old && strcmp(old->fingerprint, fingerprint) == 0) {
        old->seen = true;
        free(fingerprint);
        if (old->etcd) /* the certificates were read again: the next connection uses them */
            etcd_source_set_tls(old->etcd, etcd_tls_ref(tls, pi));
        return 0;
    }
    int rc = start_source(d, p, pi, tls, kind, fingerprint, old);
    if (old) { /* replaced (or kept, if the new one could not start: it has the servers) */
        if (rc == 0) {
            for (struct source **pp = &d->sources; *pp; pp = &(*pp)->next)
                if (*pp == old) {
                    *pp = old->next;
                    break;
                }
            retire_source(d, old);
        } else {
            old->seen = true;
        }
    }
    return rc;
}

int discovery_sync(struct discovery *d, const struct conf *conf, const struct tls_set *tls)
{
    int rc = 0;
    for (struct source *s = d->sources; s; s = s->next)
        s->seen = false;
    for (unsigned i = 0; i < conf->npools; i++) {
        const struct conf_pool *p = &conf->pools[i];
        if (p->discovery.dns.enabled &&
            sync_one(d, p, i, tls, SERVER_FROM_DNS, dns_fingerprint(p)) < 0)
            rc = -1;
        if (p->discovery.etcd.enabled &&
            sync_one(d, p, i, tls, SERVER_FROM_ETCD, etcd_fingerprint(p)) < 0)
            rc = -1;
    }
    for (struct source **pp = &d->sources; *pp;) {
        struct source *s = *pp;
        if (s->seen) {
            pp = &s->next;
            continue;
        }
        log_info("pool %s: %s discovery removed from the configuration: its %u servers leave",
                 s->pool, kind_label(s->kind), s->set.n);
        *pp = s->next;
        retire_source(d, s);
    }
    return rc;
}

static int list_push(struct discovery *d, struct source *s, const struct member *m)
{
    if (d->nlist == d->caplist) {
        unsigned cap = d->caplist ? d->caplist * 2 : 64;
        struct snapshot_change *grown = realloc(d->list, cap * sizeof(*grown));
        if (!grown)
            return -1;
        d->list = grown;
        d->caplist = cap;
    }
    d->list[d->nlist++] = (struct snapshot_change){
        .pool = s->pool,
        .name = (char *)m->name,
        .addr = m->addr,
        .weight = m->weight,
        .host = m->host,
        .source = s->kind,
    };
    return 0;
}

const struct snapshot_change *discovery_servers(struct discovery *d, const struct conf *conf,
                                                unsigned *n)
{
    d->nlist = 0;
    for (unsigned i = 0; i < conf->npools; i++) {
        const struct conf_pool *p = &conf->pools[i];
        unsigned first = d->nlist, room = room_for(p);
        /* the file's servers first: a discovered one may not take their names or addresses */
        members_clear(&d->taken);
        d->taken.max = UINT_MAX;
        for (unsigned k = 0; k < p->nservers; k++)
            members_add(&d->taken, p->servers[k].name, NULL, &p->servers[k].addr, 0);
        /* DNS first, then etcd: a fixed order, so that every instance skips the same servers */
        for (int kind = SERVER_FROM_DNS; kind <= SERVER_FROM_ETCD; kind++) {
            struct source *s = find_source(d, p->name, (enum server_source)kind);
            for (unsigned k = 0; s && k < s->set.n; k++) {
                const struct member *m = &s->set.v[k];
                enum members_add_result r =
                    d->nlist - first >= room ? MEMBERS_FULL
                                             : members_add(&d->taken, m->name, NULL, &m->addr, 0);
                const char *why = r == MEMBERS_DUPLICATE_NAME
                                      ? "the pool already has a server of this name"
                                  : r == MEMBERS_DUPLICATE_ADDRESS
                                      ? "the pool already has a server at this address"
                                  : r != MEMBERS_ADDED ? members_add_text(r)
                                                       : NULL;
                if (why) {
                    char addr[NET_ADDR_TEXT]; /* only for the log line */
                    net_addr_format((const struct sockaddr *)&m->addr.ss, addr, sizeof(addr));
                    members_reject(&d->merge_log, p->name, kind_label(s->kind), "%s (%s): %s",
                                   m->name, addr, why);
                } else if (list_push(d, s, m) < 0)
                    log_error("pool %s: out of memory for discovered server %s", p->name, m->name);
            }
        }
    }
    members_log_answer_done(&d->merge_log);
    *n = d->nlist;
    return d->list;
}

unsigned discovery_views(const struct discovery *d, const char *pool, struct discovery_view *out,
                         unsigned max)
{
    unsigned n = 0;
    /* DNS before etcd, whatever order they started in */
    for (int kind = SERVER_FROM_DNS; kind <= SERVER_FROM_ETCD; kind++)
        for (const struct source *s = d ? d->sources : NULL; s && n < max; s = s->next) {
            if (s->kind != (enum server_source)kind || strcmp(s->pool, pool) != 0)
                continue;
            out[n++] = (struct discovery_view){
                .type = kind_label(s->kind),
                .target = s->target,
                .status = s->dns ? dns_source_status(s->dns) : etcd_source_status(s->etcd),
            };
        }
    return n;
}
