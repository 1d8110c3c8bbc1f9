/*
 * stats.c - per-thread counters and their sums (see stats.h).
 */
#include "proxy/stats.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

const double stats_bucket_bounds[STATS_BUCKETS] = {
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60};

const char *const stats_tls_failure_names[STATS_TLS_FAILURES] = {
    "http_request",   "protocol_version", "no_shared_cipher", "unknown_name", "bad_certificate",
    "no_certificate", "bad_message",      "timeout",          "closed",       "other"};

unsigned stats_tls_failure_index(const char *label)
{
    for (unsigned i = 0; i < STATS_TLS_FAILURES - 1; i++)
        if (strcmp(label, stats_tls_failure_names[i]) == 0)
            return i;
    return STATS_TLS_FAILURES - 1;
}

/* Where counts go when a slot cannot have its own (beyond the tables, or out of memory). Several
 * threads may write it: the numbers are then approximate, which is all a lost slot can offer. */
static struct stats_server dummy_server;
static struct stats_pool dummy_pool;

struct stats *stats_new(void)
{
    return calloc(1, sizeof(struct stats));
}

void stats_free(struct stats *st)
{
    if (!st)
        return;
    for (unsigned i = 0; i < STATS_MAX_CHUNKS; i++) {
        free(atomic_load(&st->servers[i]));
        free(atomic_load(&st->pools[i]));
        free(atomic_load(&st->routes[i]));
    }
    free(st);
}

struct stats_server *stats_server(struct stats *st, unsigned slot)
{
    unsigned chunk = slot / STATS_CHUNK;
    if (chunk >= STATS_MAX_CHUNKS)
        return &dummy_server;
    struct stats_server *c = atomic_load_explicit(&st->servers[chunk], memory_order_acquire);
    if (!c) {
        c = calloc(STATS_CHUNK, sizeof(*c));
        if (!c)
            return &dummy_server;
        /* release: a reader that sees the pointer sees zeroed counters behind it */
        atomic_store_explicit(&st->servers[chunk], c, memory_order_release);
    }
    return &c[slot % STATS_CHUNK];
}

/* Pools and routes keep the same counters, each in its own table. */
static struct stats_pool *pool_counters(_Atomic(struct stats_pool *) *table, unsigned slot)
{
    unsigned chunk = slot / STATS_CHUNK;
    if (chunk >= STATS_MAX_CHUNKS)
        return &dummy_pool;
    struct stats_pool *c = atomic_load_explicit(&table[chunk], memory_order_acquire);
    if (!c) {
        c = calloc(STATS_CHUNK, sizeof(*c));
        if (!c)
            return &dummy_pool;
        atomic_store_explicit(&table[chunk], c, memory_order_release);
    }
    return &c[slot % STATS_CHUNK];
}

struct stats_pool *stats_pool(struct stats *st, unsigned slot)
{
    return pool_counters(st->pools, slot);
}

struct stats_pool *stats_route(struct stats *st, unsigned slot)
{
    return pool_counters(st->routes, slot);
}

void stats_observe(struct stats_latency *l, uint64_t us)
{
    double seconds = (double)us / 1e6;
    unsigned i = 0;
    while (i < STATS_BUCKETS && seconds > stats_bucket_bounds[i])
        i++;
    if (i < STATS_BUCKETS)
        stats_add(&l->bucket[i], 1);
    stats_add(&l->count, 1);
    stats_add(&l->sum_us, us);
}

static uint64_t load(_Atomic uint64_t *c)
{
    return atomic_load_explicit(c, memory_order_relaxed);
}

static void add_latency(struct stats_latency_sum *out, struct stats_latency *l)
{
    for (unsigned b = 0; b < STATS_BUCKETS; b++)
        out->bucket[b] += load(&l->bucket[b]);
    out->count += load(&l->count);
    out->sum_us += load(&l->sum_us);
}

void stats_sum_server(struct stats *const *all, unsigned n, unsigned slot,
                      struct stats_server_sum *out)
{
    memset(out, 0, sizeof(*out));
    unsigned chunk = slot / STATS_CHUNK;
    if (chunk >= STATS_MAX_CHUNKS)
        return;
    for (unsigned w = 0; w < n; w++) {
        struct stats_server *c =
            atomic_load_explicit(&all[w]->servers[chunk], memory_order_acquire);
        if (!c)
            continue;
        struct stats_server *s = &c[slot % STATS_CHUNK];
        for (unsigned k = 0; k < STATS_CLASSES; k++)
            out->requests[k] += load(&s->requests[k]);
        add_latency(&out->latency, &s->latency);
        out->active += load(&s->active);
        out->idle += load(&s->idle);
    }
}

static void sum_pool_counters(struct stats *const *all, unsigned n, bool routes, unsigned slot,
                              struct stats_pool_sum *out)
{
    memset(out, 0, sizeof(*out));
    unsigned chunk = slot / STATS_CHUNK;
    if (chunk >= STATS_MAX_CHUNKS)
        return;
    for (unsigned w = 0; w < n; w++) {
        struct stats_pool *c = atomic_load_explicit(
            routes ? &all[w]->routes[chunk] : &all[w]->pools[chunk], memory_order_acquire);
        if (!c)
            continue;
        struct stats_pool *p = &c[slot % STATS_CHUNK];
        for (unsigned k = 0; k < STATS_CLASSES; k++)
            out->requests[k] += load(&p->requests[k]);
        add_latency(&out->latency, &p->latency);
        out->retries += load(&p->retries);
        out->spilled += load(&p->spilled);
        out->tcp_connections += load(&p->tcp_connections);
        out->tcp_active += load(&p->tcp_active);
        out->tcp_bytes_in += load(&p->tcp_bytes_in);
        out->tcp_bytes_out += load(&p->tcp_bytes_out);
    }
}

void stats_sum_pool(struct stats *const *all, unsigned n, unsigned slot, struct stats_pool_sum *out)
{
    sum_pool_counters(all, n, false, slot, out);
}

void stats_sum_route(struct stats *const *all, unsigned n, unsigned slot,
                     struct stats_pool_sum *out)
{
    sum_pool_counters(all, n, true, slot, out);
}

void stats_sum_global(struct stats *const *all, unsigned n, struct stats_global_sum *out)
{
    memset(out, 0, sizeof(*out));
    for (unsigned w = 0; w < n; w++) {
        for (unsigned k = 0; k < STATS_CLIENT_STATES; k++)
            out->clients[k] += atomic_load_explicit(&all[w]->clients[k], memory_order_relaxed);
        out->accepted += load(&all[w]->accepted);
        out->tunnels += load(&all[w]->tunnels);
        out->h2_connections += load(&all[w]->h2_connections);
        out->h2_streams += load(&all[w]->h2_streams);
        out->h2_streams_cancelled += load(&all[w]->h2_streams_cancelled);
        out->bad_requests += load(&all[w]->bad_requests);
        out->underscore_fields_dropped += load(&all[w]->underscore_fields_dropped);
        for (unsigned k = 0; k < 2; k++) {
            out->tls_handshakes[k] += load(&all[w]->tls_handshakes[k]);
            out->tls_versions[k] += load(&all[w]->tls_versions[k]);
        }
        for (unsigned k = 0; k < STATS_TLS_FAILURES; k++)
            out->tls_failures[k] += load(&all[w]->tls_failures[k]);
    }
}
