/*
 * stats.h - request and TCP connection counters and latency histograms, kept per worker thread
 * and summed when read.
 *
 * Each worker owns a struct stats and is the only thread that writes it, so a count is a plain
 * load and store (relaxed atomics, no locked instruction, no shared cache line on the request
 * path). The control thread reads every worker's counters and adds them up when metrics or the
 * admin API are asked for.
 *
 * Counters are kept by server slot and by pool slot (see pool.h), in tables of fixed-size chunks
 * that are allocated on first use and never moved or freed while the process runs, so a reader
 * never sees memory that is being reallocated.
 */
#ifndef FULCRUM_STATS_H
#define FULCRUM_STATS_H

#include <stdatomic.h>
#include <stdint.h>

/* Upper bounds of the latency buckets, in seconds ("le" in Prometheus). */
#define STATS_BUCKETS 16
extern const double stats_bucket_bounds[STATS_BUCKETS];

/* Requests by class of the status sent to the client: 0 = none (aborted), 1..5 = 1xx..5xx. */
#define STATS_CLASSES 6

struct stats_latency {
    _Atomic uint64_t bucket[STATS_BUCKETS]; /* per bucket (not cumulative); over the last: count */
    _Atomic uint64_t count;
    _Atomic uint64_t sum_us;
};

struct stats_server {
    _Atomic uint64_t requests[STATS_CLASSES];
    struct stats_latency latency;
    _Atomic uint64_t active; /* requests (and TCP mode connections) in flight to the server */
    _Atomic uint64_t idle;   /* idle pooled connections to it */
};

struct stats_pool {
    _Atomic uint64_t requests[STATS_CLASSES];
    struct stats_latency latency;
    _Atomic uint64_t retries;
    _Atomic uint64_t spilled; /* hash with bounded load: past the key's own server */
    /* TCP mode (tcp.c): connections handed to the pool, those open now, and the bytes relayed
     * (in: client to server, out: server to client), added as they move */
    _Atomic uint64_t tcp_connections;
    _Atomic uint64_t tcp_active;
    _Atomic uint64_t tcp_bytes_in, tcp_bytes_out;
};

/* Client connections by what they are doing. */
enum stats_client_state {
    STATS_CLIENT_IDLE = 0, /* keep-alive, between requests */
    STATS_CLIENT_READING,  /* receiving a request head */
    STATS_CLIENT_ACTIVE,   /* a request in progress */
    STATS_CLIENT_CLOSING,  /* lingering close */
    STATS_CLIENT_TUNNEL,   /* a WebSocket tunnel (after a 101) */
    STATS_CLIENT_HTTP2,    /* an HTTP/2 connection, whatever its streams do (they are not
                            * connections of their own, and are not counted here) */
    STATS_CLIENT_STATES,
};

/* TLS handshakes that failed, by why (core/tls_conn.h's labels, plus "timeout"). */
#define STATS_TLS_FAILURES 10
extern const char *const stats_tls_failure_names[STATS_TLS_FAILURES];
/* The index of a failure label; unknown labels count as "other". */
unsigned stats_tls_failure_index(const char *label);

#define STATS_CHUNK      64
#define STATS_MAX_CHUNKS 4096

struct stats {
    _Atomic(struct stats_server *) servers[STATS_MAX_CHUNKS]; /* chunks of STATS_CHUNK slots */
    _Atomic(struct stats_pool *) pools[STATS_MAX_CHUNKS];
    _Atomic(struct stats_pool *) routes[STATS_MAX_CHUNKS]; /* by route slot (pool.h) */
    _Atomic int64_t clients[STATS_CLIENT_STATES];
    _Atomic uint64_t accepted;
    _Atomic uint64_t tunnels;        /* WebSocket tunnels opened (a 101 passed on) */
    _Atomic uint64_t h2_connections; /* client connections that spoke HTTP/2 (h2front.c) */
    _Atomic uint64_t h2_streams;     /* HTTP/2 streams that became requests */
    /* HTTP/2 streams that ended (client reset, connection end, stream_idle_timeout) while
     * their request was with a server: that server request was cancelled (proxy.c) */
    _Atomic uint64_t h2_streams_cancelled;
    _Atomic uint64_t bad_requests; /* answered by fulcrum before any pool was involved */
    /* request fields not forwarded because their name has '_' (http.underscores_in_headers);
     * the parser adds to it through http1_limits.underscore_drops */
    _Atomic uint64_t underscore_fields_dropped;
    _Atomic uint64_t tls_handshakes[2]; /* completed: [0] full, [1] resumed */
    _Atomic uint64_t tls_versions[2];   /* completed: [0] TLS 1.2, [1] TLS 1.3 */
    _Atomic uint64_t tls_failures[STATS_TLS_FAILURES];
};

struct stats *stats_new(void);
void stats_free(struct stats *st);

/* The counters of a slot, for the owning thread; never NULL (a shared dummy past the limits or
 * when memory runs out, so counting can never fail). */
struct stats_server *stats_server(struct stats *st, unsigned slot);
struct stats_pool *stats_pool(struct stats *st, unsigned slot);
/* A route's counters: requests by class and latency, as a pool's (retries stay 0). */
struct stats_pool *stats_route(struct stats *st, unsigned slot);

/* Owner-thread updates. */
static inline void stats_add(_Atomic uint64_t *c, uint64_t n)
{
    atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + n,
                          memory_order_relaxed);
}

static inline void stats_sub(_Atomic uint64_t *c, uint64_t n)
{
    atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) - n,
                          memory_order_relaxed);
}

static inline void stats_client_move(struct stats *st, int from, int to)
{
    if (from >= 0)
        atomic_store_explicit(&st->clients[from],
                              atomic_load_explicit(&st->clients[from], memory_order_relaxed) - 1,
                              memory_order_relaxed);
    if (to >= 0)
        atomic_store_explicit(&st->clients[to],
                              atomic_load_explicit(&st->clients[to], memory_order_relaxed) + 1,
                              memory_order_relaxed);
}

void stats_observe(struct stats_latency *l, uint64_t us);

/* ---- reading: sums over every worker's struct stats ---- */

struct stats_latency_sum {
    uint64_t bucket[STATS_BUCKETS];
    uint64_t count;
    uint64_t sum_us;
};

struct stats_server_sum {
    uint64_t requests[STATS_CLASSES];
    struct stats_latency_sum latency;
    uint64_t active, idle;
};

struct stats_pool_sum {
    uint64_t requests[STATS_CLASSES];
    struct stats_latency_sum latency;
    uint64_t retries, spilled;
    uint64_t tcp_connections, tcp_active, tcp_bytes_in, tcp_bytes_out;
};

struct stats_global_sum {
    int64_t clients[STATS_CLIENT_STATES];
    uint64_t accepted, bad_requests, tunnels, h2_connections, h2_streams, h2_streams_cancelled;
    uint64_t underscore_fields_dropped;
    uint64_t tls_handshakes[2], tls_versions[2], tls_failures[STATS_TLS_FAILURES];
};

void stats_sum_server(struct stats *const *all, unsigned n, unsigned slot,
                      struct stats_server_sum *out);
void stats_sum_pool(struct stats *const *all, unsigned n, unsigned slot,
                    struct stats_pool_sum *out);
void stats_sum_route(struct stats *const *all, unsigned n, unsigned slot,
                     struct stats_pool_sum *out);
void stats_sum_global(struct stats *const *all, unsigned n, struct stats_global_sum *out);

#endif
