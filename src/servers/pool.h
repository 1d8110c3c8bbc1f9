/*
 * pool.h - backend pools and servers as every worker thread sees them.
 *
 * A struct server is shared by all threads. Its name and address never change. What the
 * balancers read (state, weight, the start of a slow-start ramp) is published through atomics,
 * so no lock is ever taken on the request path.
 *
 * Who writes what:
 *   - Worker threads only report: a failed or successful request (consecutive_failures,
 *     last_failure, eject_wanted, and the eject hook). They never change a state.
 *   - The control thread owns `h`, the inputs a state is derived from: what active checks say and
 *     whether passive detection ejected the server (its checker, ctl/check.c), and the operator's
 *     choice (ready, drain, maintenance, from the admin API). After changing an input it calls
 *     server_update_state(), the single place where a state changes; that function also logs the
 *     change, once.
 *
 * A struct pool is part of an immutable snapshot (snapshot.h): a name, its configuration, a
 * balancing algorithm and an array of servers. Each worker keeps its own balancer state per pool
 * (lb.h).
 *
 * Each server has a slot: a small integer, unique while the process runs, that indexes per-thread
 * arrays (idle connection pools, counters). A pool's slot belongs to its name, so that a reload
 * that rebuilds the pool keeps counting in the same place.
 */
#ifndef FULCRUM_POOL_H
#define FULCRUM_POOL_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/net.h"
#include "servers/health.h"

struct lb_ops;
struct conf_pool;

enum server_state {
    SERVER_UP = 0,   /* in rotation */
    SERVER_DOWN,     /* active checks failing */
    SERVER_EJECTED,  /* passive detection took it out for a while */
    SERVER_DRAINING, /* no new requests; in-flight ones finish */
    SERVER_MAINT,    /* out of rotation, checks stopped */
    SERVER_STATES,   /* how many states there are */
};

/* Where a server came from: the configuration file, the admin API, or a discovery source. */
enum server_source {
    SERVER_FROM_FILE = 0,
    SERVER_FROM_API,
    SERVER_FROM_DNS,
    SERVER_FROM_ETCD,
};

/* "file", "api", "dns", "etcd". */
const char *server_source_label(enum server_source source);

enum server_admin {
    SERVER_ADMIN_READY = 0,
    SERVER_ADMIN_DRAIN,
    SERVER_ADMIN_MAINT,
};

/* The inputs of a server's state; written by the control thread only. */
struct server_inputs {
    bool check_down;                /* active checks count the server as down */
    struct health checks;           /* consecutive check results */
    bool ejected;                   /* passive detection took it out */
    unsigned ejections;             /* times ejected: multiplies the ejection time */
    uint64_t ejected_at_ms;         /* start of the current ejection */
    uint64_t ejected_until_ms;      /* end of the current ejection */
    unsigned passes_since_ejection; /* passing checks in a row that began after it */
    uint64_t last_ejection_ms;      /* end of the last ejection, to forget old ones */
    enum server_admin admin;
    char last_result[64]; /* last check's outcome, e.g. "connection refused" */
    uint64_t checks_passed, checks_failed, ejections_total; /* since the server was created */
};

struct server {
    char *name;
    char *pool_name; /* for log lines */
    struct net_addr addr;
    char addr_text[NET_ADDR_TEXT];
    char host[256]; /* the host part of the address as configured: a name, or the IP (for TLS) */
    unsigned slot;
    /* The value of a sticky session cookie that names this server: a hash of its name and
     * address in hex, the same in every fulcrum instance, and not the address itself. */
    char sticky_id[17];

    /* published to every thread */
    _Atomic unsigned state;       /* enum server_state */
    _Atomic unsigned weight;      /* configured weight, 0-256 */
    _Atomic uint64_t up_since_ms; /* when it came back up (slow start); 0: at full weight */
    _Atomic unsigned refs;        /* snapshots holding it */
    /* the last TLS handshake failure (a static text), so each new one is logged once; NULL after
     * a handshake succeeds */
    _Atomic(const char *) tls_failure;

    bool runtime; /* added while running (admin API, discovery), not from the file */
    enum server_source source;
    bool weight_pinned; /* weight set through the admin API: a reload keeps it */

    /* reported by worker threads */
    _Atomic unsigned consecutive_failures;
    _Atomic unsigned last_failure; /* enum server_failure, or the failing status (>= 100) */
    _Atomic bool eject_wanted;

    /* owned by the control thread */
    struct server_inputs h;
    void *watch; /* the health checker's record of this server (ctl/check.c); NULL: none yet */

    /* What the load-aware balancers (lb/load.h) share across threads: every worker writes these,
     * so they sit on a cache line of their own, away from the read-mostly fields above. */
    struct server_load {
        _Atomic unsigned inflight;      /* requests given to the server and not yet released */
        _Atomic uint64_t ewma_ns;       /* peak-EWMA latency estimate; 0: none yet */
        _Atomic uint64_t ewma_stamp_us; /* when the estimate last changed (loop clock) */
    } load __attribute__((aligned(64)));
};

struct tls_client;

struct pool {
    char *name;
    const struct conf_pool *conf;
    const struct lb_ops *lb;
    void **lb_state; /* the balancer's state, one per worker thread (indexed by worker id) */
    struct server **servers;
    unsigned nservers;
    unsigned slot; /* per-thread counters; the same for every pool of that name, across reloads */
    /* the balancer's rebuild() result, immutable once published (lb.h); NULL for round-robin */
    void *lb_shared;
    const struct tls_client *tls; /* TLS to the servers (tls/client.h); NULL: plain */
};

struct server *server_new(const char *pool_name, const char *name, const struct net_addr *addr,
                          unsigned weight);
/* Records the host part of address ("name:port", "[v6]:port") as s->host; NULL or no room
 * leaves the IP address there. */
void server_set_host(struct server *s, const char *address);
/*
 * A server that appears while fulcrum runs, in a pool with active checks, takes no traffic until
 * its first check passed: it starts DOWN ("awaiting its first health check"), and the checker's
 * first check, which runs at once, decides (docs/discovery.md). Called on a new server, before any
 * snapshot holds it.
 */
void server_await_first_check(struct server *s);
void server_ref(struct server *s);
void server_unref(struct server *s);

/*
 * Derives the state from s->h and publishes it; if it changed, logs
 * "pool P server S: OLD -> NEW (reason)". The only place a server's state changes; called by the
 * control thread only. now_ms starts a slow-start ramp when the server comes back up.
 */
void server_update_state(struct server *s, uint64_t now_ms, const char *reason);

static inline enum server_state server_state(const struct server *s)
{
    return (enum server_state)atomic_load_explicit(&s->state, memory_order_relaxed);
}

/* May the balancer give this server a new request? In panic mode (every server down, and the
 * pool says use-all), servers that are only failing also qualify. */
static inline bool server_usable(const struct server *s, bool panic)
{
    enum server_state st = server_state(s);
    return st == SERVER_UP || (panic && (st == SERVER_DOWN || st == SERVER_EJECTED));
}

static inline unsigned server_weight(const struct server *s)
{
    return atomic_load_explicit(&s->weight, memory_order_relaxed);
}

/* Why a request counted against its server (passive detection). A status in the pool's
 * failure_status is reported as the status itself, so every value below 100 is a kind. */
enum server_failure {
    SERVER_FAIL_CONNECT = 1, /* the connection could not be opened */
    SERVER_FAIL_CLOSED,      /* closed or reset before any response byte */
    SERVER_FAIL_TIMEOUT,     /* no response head in time, or a body that went silent */
    SERVER_FAIL_INVALID,     /* a response that breaks HTTP/1.1 (head or framing) */
    SERVER_FAIL_CUT_SHORT,   /* closed or reset before the end of the response body */
};

/* "connect failure", "response timeout", "status 503", ... for log lines. */
const char *server_failure_text(unsigned failure, char *buf, size_t size);

/* Passive detection, from worker threads. A failure returns true when it made the server's
 * consecutive failures reach threshold; it has then set eject_wanted and called the eject hook.
 * failure is an enum server_failure or a status. */
bool server_report_failure(struct server *s, unsigned threshold, unsigned failure);

/* What the request path calls when a server wants ejecting: set by the control plane, so that
 * the request path wakes it without naming it. Any thread; NULL: none. */
typedef void server_eject_hook(void);
void server_set_eject_hook(server_eject_hook *hook);

/* What server_update_state() calls after a server's state changed: set by the control plane,
 * whose balancers may rebuild from the new states (lb/snapshot.h snapshot_refresh). Control
 * thread only; NULL: none. */
typedef void server_state_hook(struct server *s);
void server_set_state_hook(server_state_hook *hook);
static inline void server_report_success(struct server *s)
{
    /* Read first: a healthy server's counter stays 0 and its cache line stays shared. */
    if (atomic_load_explicit(&s->consecutive_failures, memory_order_relaxed))
        atomic_store_explicit(&s->consecutive_failures, 0, memory_order_relaxed);
}

/* A state's name for the admin API and metrics: "up", "down", "ejected", "draining", "maint";
 * "?" for a value that is not a state. Log lines use the same names in upper case. */
const char *server_state_label(enum server_state state);

/* Highest slot handed out so far + 1: the size per-thread arrays must have. */
unsigned server_slot_limit(void);
/* The slot of the pool called name (a new one the first time); control thread only. */
unsigned pool_slot_for(const char *name);
/* The slot of route `route` of listener `listener` (its counters: stats_route()), the same across
 * reloads while both names stay; control thread only. */
unsigned route_slot_for(const char *listener, const char *route);

#endif
