/*
 * control.c - the control thread (see control.h): health checks, ejections and reloads.
 *
 * A reload:
 *   1. reads and validates the file (conf_load_file); any error leaves everything as it was;
 *   2. checks what a running process cannot change (buffer sizes) and that every new listen
 *      address is free;
 *   3. builds a snapshot, sharing the servers that did not change (same pool, name and
 *      address), so they keep their health state, ejections and counters;
 *   4. offers it to every worker (each adopts it between two events of its own loop) and points
 *      the health checks at it;
 *   5. drops its reference to the old snapshot, which is freed when the last connection that
 *      started on it is gone.
 */
#include "ctl/control.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conf/conf.h"
#include "core/log.h"
#include "core/loop.h"
#include "core/notify.h"
#include "ctl/admin.h"
#include "ctl/check.h"
#include "ctl/discovery.h"
#include "lb/lb.h"
#include "lb/snapshot.h"
#include "proxy/accesslog.h"
#include "proxy/stats.h"
#include "proxy/worker.h"
#include "tls/set.h"
#include "servers/pool.h"

static struct {
    struct loop *loop;
    pthread_t thread;
    bool running;
    struct snapshot *snap; /* the running snapshot; the control thread holds one reference */
    struct checker *checker;
    struct worker **workers;
    unsigned nworkers;
    struct control_options opts;
    _Atomic bool stop, reload_wanted, eject_wanted;
    _Atomic uint64_t reloads_ok, reloads_failed, last_reload_ms;
    uint64_t started_ms;
    struct stats **stats;            /* every worker's counters */
    struct snapshot_overlay overlay; /* servers added/removed through the API */
    struct loop_task refresh;        /* balancers rebuild after state or weight changes */
    struct loop_timer ramp;          /* ... and a few times a second while a slow start lasts */
    struct discovery *discovery;     /* DNS and etcd sources (ctl/discovery.h) */
    struct loop_task membership;     /* a source's set changed: one new snapshot per iteration */
} ctl;

static char *format(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static char *format(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *s = NULL;
    if (vasprintf(&s, fmt, ap) < 0)
        s = NULL;
    va_end(ap);
    return s;
}

/* New listen addresses must be free; the ones we already listen on are ours. */
static int check_new_listeners(const struct conf *conf, char **errors)
{
    for (unsigned i = 0; i < conf->nlisteners; i++) {
        const struct conf_listener *l = &conf->listeners[i];
        bool ours = false;
        for (unsigned k = 0; k < ctl.snap->nlisteners && !ours; k++)
            ours = net_addr_equal(&ctl.snap->listeners[k].conf->addr, &l->addr);
        if (!ours && net_bind_probe(&l->addr) < 0) {
            *errors =
                format("listener %s: cannot listen on %s: %s", l->name, l->bind, strerror(errno));
            return -1;
        }
    }
    return 0;
}

static void count_servers(const struct snapshot *snap, unsigned *servers)
{
    *servers = 0;
    for (unsigned i = 0; i < snap->npools; i++)
        *servers += snap->pools[i].nservers;
}

/* Makes snap the running snapshot everywhere. Takes over the caller's reference. */
/* How often a balancer whose shared data holds slow-start weights (round-robin's rotation,
 * random's draws) is rebuilt while the ramp lasts: the weight grows in steps of this. */
#define RAMP_REFRESH_MS 250

static void balancers_may_rebuild(void);

static void on_ramp(struct loop *loop, struct loop_timer *timer)
{
    balancers_may_rebuild();
}

/* After a publish: a pool built during a ramp is rebuilt again in a moment. */
static void follow_ramps(void)
{
    for (unsigned i = 0; i < ctl.snap->npools; i++)
        if (lb_ramping(&ctl.snap->pools[i])) {
            if (!loop_timer_armed(&ctl.ramp))
                loop_timer_set(ctl.loop, &ctl.ramp, RAMP_REFRESH_MS);
            return;
        }
}

static void publish(struct snapshot *snap)
{
    worker_set_max_connections(snap->conf->limits.max_connections);
    if (ctl.opts.log_level_override < 0)
        log_max_level = snap->conf->log_level;
    if (snap->conf != ctl.snap->conf) { /* a new file: its logging and admin settings apply */
        accesslog_configure(&snap->conf->access_log);
        admin_configure(&snap->conf->admin);
    }
    for (unsigned i = 0; i < ctl.nworkers; i++)
        worker_offer(ctl.workers[i], snap);
    checker_sync(ctl.checker, snap);
    struct snapshot *old = ctl.snap;
    ctl.snap = snap;
    snapshot_unref(old);
    follow_ramps();
}

static int reload_failed(char *errors)
{
    atomic_fetch_add(&ctl.reloads_failed, 1);
    log_error("reload failed; the running configuration stays:");
    for (char *line = errors, *next; line && *line; line = next) {
        next = strchr(line, '\n');
        if (next)
            *next++ = '\0';
        log_error("  %s", line);
        if (next)
            next[-1] = '\n';
    }
    return -1;
}

static void change_free(struct snapshot_change *c)
{
    free(c->pool);
    free(c->name);
}

static void overlay_clear(void)
{
    for (unsigned i = 0; i < ctl.overlay.nadd; i++)
        change_free(&ctl.overlay.add[i]);
    for (unsigned i = 0; i < ctl.overlay.nremove; i++)
        change_free(&ctl.overlay.remove[i]);
    free(ctl.overlay.add);
    free(ctl.overlay.remove);
    memset(&ctl.overlay, 0, sizeof(ctl.overlay));
}

/* Appends a change to one of the overlay's lists. */
static int overlay_push(struct snapshot_change **list, unsigned *n, const char *pool,
                        const char *name, const struct net_addr *addr, unsigned weight)
{
    struct snapshot_change *grown = realloc(*list, (*n + 1) * sizeof(*grown));
    if (!grown)
        return -1;
    *list = grown;
    struct snapshot_change *c = &grown[*n];
    memset(c, 0, sizeof(*c));
    c->pool = strdup(pool);
    c->name = strdup(name);
    if (!c->pool || !c->name) {
        change_free(c);
        return -1;
    }
    if (addr)
        c->addr = *addr;
    c->weight = weight;
    (*n)++;
    return 0;
}

static void overlay_drop(struct snapshot_change *list, unsigned *n, unsigned i)
{
    change_free(&list[i]);
    memmove(&list[i], &list[i + 1], (*n - i - 1) * sizeof(*list));
    (*n)--;
}

static int find_change(const struct snapshot_change *list, unsigned n, const char *pool,
                       const char *name)
{
    for (unsigned i = 0; i < n; i++)
        if (strcmp(list[i].pool, pool) == 0 && strcmp(list[i].name, name) == 0)
            return (int)i;
    return -1;
}

static struct server *find_server(const char *pool, const char *name, struct pool **pool_out)
{
    struct pool *p = snapshot_find_pool(ctl.snap, pool);
    if (pool_out)
        *pool_out = p;
    for (unsigned i = 0; p && i < p->nservers; i++)
        if (strcmp(p->servers[i]->name, name) == 0)
            return p->servers[i];
    return NULL;
}

/* The overlay with what discovery found for the pools of conf. */
static struct snapshot_overlay *current_overlay(const struct conf *conf)
{
    ctl.overlay.discovered = discovery_servers(ctl.discovery, conf, &ctl.overlay.ndiscovered);
    return &ctl.overlay;
}

/* Builds and publishes a snapshot for the current overlay; undoes nothing on failure. */
static int apply_overlay(char **error)
{
    struct snapshot *snap = snapshot_rebuild(ctl.snap, current_overlay(ctl.snap->conf));
    if (!snap) {
        *error = format("out of memory");
        return 500;
    }
    publish(snap);
    return 0;
}

/* Balancers with shared data (lb/lb.h rebuild) follow states and weights: one refresh per loop
 * iteration, however many servers changed in it, and none for pools that do not rebuild. */
static void refresh_balancers(struct loop *loop, struct loop_task *task)
{
    struct snapshot *next = snapshot_refresh(ctl.snap);
    if (next && next != ctl.snap)
        publish(next);
}

static void balancers_may_rebuild(void)
{
    for (unsigned i = 0; i < ctl.snap->npools; i++)
        if (lb_rebuilds(&ctl.snap->pools[i])) {
            loop_defer(ctl.loop, &ctl.refresh);
            return;
        }
}

/* A discovery source's set changed: one new snapshot per loop iteration, however many changed. */
static void apply_membership(struct loop *loop, struct loop_task *task)
{
    char *error = NULL;
    if (apply_overlay(&error) != 0) {
        log_error("discovery: cannot apply the new servers: %s", error ? error : "out of memory");
        free(error);
    }
}

static void on_discovery_changed(void *arg)
{
    loop_defer(ctl.loop, &ctl.membership);
}

static unsigned control_discovery(const char *pool, struct discovery_view *out, unsigned max)
{
    return discovery_views(ctl.discovery, pool, out, max);
}

static void on_server_state(struct server *s)
{
    balancers_may_rebuild();
}

static int control_set_server(const char *pool, const char *name, int admin, int weight,
                              char **error)
{
    struct pool *p;
    struct server *s = find_server(pool, name, &p);
    if (!s) {
        *error = p ? format("pool %s has no server %s", pool, name)
                   : format("there is no pool %s", pool);
        return 404;
    }
    if (weight >= 0) {
        atomic_store(&s->weight, (unsigned)weight);
        s->weight_pinned = true;
        log_info("pool %s server %s: weight set to %d through the admin API", pool, name, weight);
        balancers_may_rebuild();
    }
    if (admin >= 0 && s->h.admin != (enum server_admin)admin) {
        static const char *const names[] = {"ready", "drain", "maint"};
        char reason[64];
        s->h.admin = (enum server_admin)admin;
        snprintf(reason, sizeof(reason), "admin API: %s", names[admin]);
        server_update_state(s, loop_now_ms(ctl.loop), reason);
    }
    /* The answer says the change is made: the balancers follow it before the reply rather than
     * after this event, so that a request sent once the reply came sees the new weight. */
    if (ctl.refresh.queued) {
        loop_cancel(ctl.loop, &ctl.refresh);
        refresh_balancers(ctl.loop, &ctl.refresh);
    }
    return 0;
}

static int control_add_server(const char *pool, const char *name, const char *address,
                              unsigned weight, char **error)
{
    struct pool *p;
    if (find_server(pool, name, &p)) {
        *error = format("pool %s already has a server %s", pool, name);
        return 409;
    }
    if (!p) {
        *error = format("there is no pool %s", pool);
        return 404;
    }
    struct net_addr addr;
    const char *why;
    if (net_parse_addr(address, &addr, &why) < 0) {
        *error = format("address \"%s\": %s", address, why);
        return 400;
    }
    int r = find_change(ctl.overlay.remove, ctl.overlay.nremove, pool, name);
    if (r >= 0) /* a file server removed earlier comes back under its name */
        overlay_drop(ctl.overlay.remove, &ctl.overlay.nremove, (unsigned)r);
    if (overlay_push(&ctl.overlay.add, &ctl.overlay.nadd, pool, name, &addr, weight) < 0) {
        *error = format("out of memory");
        return 500;
    }
    log_info("pool %s: server %s (%s) added through the admin API", pool, name, address);
    return apply_overlay(error);
}

static int control_remove_server(const char *pool, const char *name, char **error)
{
    struct pool *p;
    struct server *s = find_server(pool, name, &p);
    if (!s) {
        *error = p ? format("pool %s has no server %s", pool, name)
                   : format("there is no pool %s", pool);
        return 404;
    }
    if (s->source == SERVER_FROM_DNS || s->source == SERVER_FROM_ETCD) {
        *error =
            format("server %s of pool %s was found by %s discovery, which would bring it back: "
                   "remove it there, or set it to maint",
                   name, pool, server_source_label(s->source));
        return 409;
    }
    int a = find_change(ctl.overlay.add, ctl.overlay.nadd, pool, name);
    if (a >= 0)
        overlay_drop(ctl.overlay.add, &ctl.overlay.nadd, (unsigned)a);
    else if (overlay_push(&ctl.overlay.remove, &ctl.overlay.nremove, pool, name, NULL, 0) < 0) {
        *error = format("out of memory");
        return 500;
    }
    log_info("pool %s: server %s removed through the admin API (in-flight requests finish)", pool,
             name);
    return apply_overlay(error);
}

static struct snapshot *control_snapshot(void)
{
    return ctl.snap;
}

static struct stats *const *control_worker_stats(unsigned *n)
{
    *n = ctl.nworkers;
    return ctl.stats;
}

static uint64_t control_started_ms(void)
{
    return ctl.started_ms;
}

static const struct control_options *control_options(void)
{
    return &ctl.opts;
}

static int control_reload(char **errors)
{
    *errors = NULL;
    if (!ctl.opts.config_path) {
        *errors = format("fulcrum was started from command-line flags: there is no file to "
                         "reload");
        return reload_failed(*errors);
    }
    struct conf *conf = conf_load_file(ctl.opts.config_path, errors);
    if (!conf)
        return reload_failed(*errors);
    char why[256];
    if (!worker_can_adopt(ctl.workers[0], conf, why, sizeof(why))) {
        *errors = format("%s", why);
        conf_free(conf);
        return reload_failed(*errors);
    }
    if (check_new_listeners(conf, errors) < 0) {
        conf_free(conf);
        return reload_failed(*errors);
    }
    if (conf->threads && conf->threads != ctl.nworkers)
        log_warn("reload: threads %u takes effect at the next restart; %u are running",
                 conf->threads, ctl.nworkers);
    /* Certificates and keys are read again; any problem keeps the running ones serving. */
    struct tls_set *tls = tls_set_new(conf, errors);
    if (!tls) {
        conf_free(conf);
        return reload_failed(*errors);
    }
    /* The file wins over runtime additions and removals, but discovered servers stay: the
     * sources the new file keeps go on, the ones it changes start from their last set. */
    discovery_sync(ctl.discovery, conf, tls);
    struct snapshot_overlay discovered = {0};
    discovered.discovered = discovery_servers(ctl.discovery, conf, &discovered.ndiscovered);
    struct snapshot *snap = snapshot_new(conf, tls, ctl.snap, &discovered);
    if (!snap) {
        tls_set_free(tls);
        conf_free(conf);
        *errors = format("out of memory");
        return reload_failed(*errors);
    }
    unsigned before, after;
    count_servers(ctl.snap, &before);
    count_servers(snap, &after);
    overlay_clear();
    publish(snap);
    atomic_fetch_add(&ctl.reloads_ok, 1);
    atomic_store(&ctl.last_reload_ms, loop_now_ms(ctl.loop));
    log_info("configuration reloaded from %s: %u listener%s, %u pool%s, %u server%s (was %u)",
             ctl.opts.config_path, snap->nlisteners, snap->nlisteners == 1 ? "" : "s", snap->npools,
             snap->npools == 1 ? "" : "s", after, after == 1 ? "" : "s", before);
    return 0;
}

static void on_wake(struct loop *loop, void *arg)
{
    if (atomic_load(&ctl.stop)) {
        loop_stop(loop);
        return;
    }
    if (atomic_exchange(&ctl.eject_wanted, false))
        checker_eject_requests(ctl.checker);
    if (atomic_exchange(&ctl.reload_wanted, false)) {
        char *errors = NULL;
        notify_send("RELOADING=1");
        control_reload(&errors);
        notify_send("READY=1");
        free(errors);
    }
}

static void *control_main(void *arg)
{
    pthread_setname_np(pthread_self(), "fulcrum-ctl");
    loop_run(ctl.loop);
    return NULL;
}

static void control_get_stats(struct control_stats *out);

/* What the admin listener and the metrics page may use (ctl/plane.h). */
static const struct control_plane plane = {
    .snapshot = control_snapshot,
    .worker_stats = control_worker_stats,
    .started_ms = control_started_ms,
    .reload_stats = control_get_stats,
    .options = control_options,
    .reload = control_reload,
    .set_server = control_set_server,
    .add_server = control_add_server,
    .remove_server = control_remove_server,
    .discovery = control_discovery,
};

/* The eject hook (servers/pool.h): a worker's report made a server want ejecting. */
static void wake_for_ejections(void)
{
    atomic_store(&ctl.eject_wanted, true);
    if (ctl.running)
        loop_wake(ctl.loop);
}

int control_start(struct snapshot *snap, struct worker **workers, unsigned nworkers,
                  const struct control_options *opts)
{
    ctl.opts = *opts;
    ctl.workers = workers;
    ctl.nworkers = nworkers;
    ctl.loop = loop_new();
    ctl.checker = ctl.loop ? checker_new(ctl.loop) : NULL;
    ctl.discovery = ctl.loop ? discovery_new(ctl.loop, on_discovery_changed, NULL) : NULL;
    if (!ctl.loop || !ctl.checker || !ctl.discovery) {
        log_error("control thread: out of memory");
        goto fail;
    }
    ctl.snap = snap;
    snapshot_ref(snap);
    ctl.started_ms = loop_now_ms(ctl.loop);
    ctl.stats = calloc(nworkers, sizeof(*ctl.stats));
    if (!ctl.stats) {
        log_error("control thread: out of memory");
        goto fail;
    }
    for (unsigned i = 0; i < nworkers; i++)
        ctl.stats[i] = workers[i]->stats;
    if (checker_sync(ctl.checker, snap) < 0 ||
        admin_start(ctl.loop, &snap->conf->admin, &plane) < 0)
        goto fail;
    loop_set_wake_handler(ctl.loop, on_wake, NULL);
    ctl.refresh.fn = refresh_balancers;
    ctl.membership.fn = apply_membership;
    /* sources start answering once the loop runs */
    discovery_sync(ctl.discovery, snap->conf, snapshot_tls(snap));
    ctl.ramp.fn = on_ramp;
    server_set_state_hook(on_server_state); /* before the thread that calls it starts */
    int rc = pthread_create(&ctl.thread, NULL, control_main, NULL);
    if (rc != 0) {
        log_error("control thread: pthread_create: %s", strerror(rc));
        goto fail;
    }
    ctl.running = true;
    server_set_eject_hook(wake_for_ejections);
    return 0;
fail:
    control_stop();
    return -1;
}

void control_stop(void)
{
    server_set_eject_hook(NULL);
    if (ctl.running) {
        atomic_store(&ctl.stop, true);
        loop_wake(ctl.loop);
        pthread_join(ctl.thread, NULL);
        ctl.running = false;
    }
    server_set_state_hook(NULL); /* the control thread, its only caller, is gone */
    if (ctl.loop) {
        loop_cancel(ctl.loop, &ctl.refresh);
        loop_cancel(ctl.loop, &ctl.membership);
        loop_timer_stop(ctl.loop, &ctl.ramp);
    }
    admin_stop();
    checker_free(ctl.checker);
    ctl.checker = NULL;
    discovery_free(ctl.discovery); /* before the loop its sources run on */
    ctl.discovery = NULL;
    overlay_clear();
    free(ctl.stats);
    ctl.stats = NULL;
    if (ctl.snap)
        snapshot_unref(ctl.snap);
    ctl.snap = NULL;
    loop_free(ctl.loop);
    ctl.loop = NULL;
}

void control_request_reload(void)
{
    atomic_store(&ctl.reload_wanted, true);
    if (ctl.running)
        loop_wake(ctl.loop);
}

static void control_get_stats(struct control_stats *out)
{
    out->reloads_ok = atomic_load(&ctl.reloads_ok);
    out->reloads_failed = atomic_load(&ctl.reloads_failed);
    out->last_reload_ms = atomic_load(&ctl.last_reload_ms);
}
