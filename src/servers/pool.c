/*
 * pool.c - servers: creation, reference counting, failure reports, and the one function that
 * changes their state.
 *
 * A slot belongs to a server's identity (pool, name and address) for the life of the process: a
 * thread may still hold per-slot state of a removed server for a moment after a reload, and a
 * slot handed to another server would give it to a stranger. A server that leaves and comes back
 * (discovery flapping, a reload undone) gets its old slot, and that state is rightly its own, so
 * per-thread arrays grow with the number of distinct servers ever seen, never with churn or
 * traffic.
 */
#include "servers/pool.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/hash.h"
#include "core/log.h"

static _Atomic unsigned next_server_slot;
static _Atomic(server_eject_hook *) eject_hook;
static server_state_hook *state_hook; /* control thread only, like server_update_state() */

/* The one table of state names: log lines use the first, the admin API and metrics the second
 * (server_state_label). */
static const struct {
    const char *name, *label;
} state_names[SERVER_STATES] = {
    [SERVER_UP] = {"UP", "up"},
    [SERVER_DOWN] = {"DOWN", "down"},
    [SERVER_EJECTED] = {"EJECTED", "ejected"},
    [SERVER_DRAINING] = {"DRAINING", "draining"},
    [SERVER_MAINT] = {"MAINT", "maint"},
};

static const char *server_state_name(enum server_state state)
{
    return (unsigned)state < SERVER_STATES ? state_names[state].name : "?";
}

const char *server_state_label(enum server_state state)
{
    return (unsigned)state < SERVER_STATES ? state_names[state].label : "?";
}

/* Slots by identity ("pool" NUL "name|address"): open addressing, grown at half full. Only the
 * thread that builds snapshots uses it. */
static struct {
    struct slot_entry {
        char *identity; /* NULL: empty */
        size_t len;
        unsigned slot;
    } * v;
    size_t cap, n;
} slots_by_identity;

static bool slot_table_grow(void)
{
    size_t cap = slots_by_identity.cap ? slots_by_identity.cap * 2 : 256;
    struct slot_entry *v = calloc(cap, sizeof(*v));
    if (!v)
        return false;
    for (size_t i = 0; i < slots_by_identity.cap; i++) {
        struct slot_entry *e = &slots_by_identity.v[i];
        if (!e->identity)
            continue;
        size_t k = hash_bytes(e->identity, e->len, 0) & (cap - 1);
        while (v[k].identity)
            k = (k + 1) & (cap - 1);
        v[k] = *e;
    }
    free(slots_by_identity.v);
    slots_by_identity.v = v;
    slots_by_identity.cap = cap;
    return true;
}

/* The slot of the server with this identity in pool: its old one, or a new one. */
static unsigned server_slot_for(const char *pool, const char *identity, size_t identity_len)
{
    size_t pool_len = strlen(pool), len = pool_len + 1 + identity_len;
    char *key = malloc(len);
    if (!key) /* no memory to remember it: a fresh slot still keeps strangers apart */
        return atomic_fetch_add(&next_server_slot, 1);
    memcpy(key, pool, pool_len + 1);
    memcpy(key + pool_len + 1, identity, identity_len);
    if (slots_by_identity.n * 2 >= slots_by_identity.cap && !slot_table_grow()) {
        free(key);
        return atomic_fetch_add(&next_server_slot, 1);
    }
    size_t mask = slots_by_identity.cap - 1, k = hash_bytes(key, len, 0) & mask;
    for (; slots_by_identity.v[k].identity; k = (k + 1) & mask) {
        struct slot_entry *e = &slots_by_identity.v[k];
        if (e->len == len && memcmp(e->identity, key, len) == 0) {
            free(key);
            return e->slot;
        }
    }
    struct slot_entry *e = &slots_by_identity.v[k];
    e->identity = key;
    e->len = len;
    e->slot = atomic_fetch_add(&next_server_slot, 1);
    slots_by_identity.n++;
    return e->slot;
}

struct server *server_new(const char *pool_name, const char *name, const struct net_addr *addr,
                          unsigned weight)
{
    /* aligned: the load counters' cache line must be one of their own */
    struct server *s = aligned_alloc(_Alignof(struct server), sizeof(*s));
    if (!s)
        return NULL;
    memset(s, 0, sizeof(*s));
    s->name = strdup(name);
    s->pool_name = strdup(pool_name);
    if (!s->name || !s->pool_name) {
        free(s->name);
        free(s->pool_name);
        free(s);
        return NULL;
    }
    s->addr = *addr;
    net_addr_format((const struct sockaddr *)&addr->ss, s->addr_text, sizeof(s->addr_text));
    net_ip_format((const struct sockaddr *)&addr->ss, s->host, sizeof(s->host));
    char identity[sizeof(s->addr_text) + 256];
    int n = snprintf(identity, sizeof(identity), "%s|%s", name, s->addr_text);
    size_t identity_len = n < 0 ? 0 : (size_t)n < sizeof(identity) ? (size_t)n : sizeof(identity);
    snprintf(s->sticky_id, sizeof(s->sticky_id), "%016llx",
             (unsigned long long)hash_bytes(identity, identity_len, 0x5e55));
    s->slot = server_slot_for(pool_name, identity, identity_len);
    atomic_init(&s->state, SERVER_UP); /* up until a check says otherwise */
    atomic_init(&s->weight, weight);
    atomic_init(&s->refs, 1);
    return s;
}

const char *server_source_label(enum server_source source)
{
    static const char *const labels[] = {[SERVER_FROM_FILE] = "file",
                                         [SERVER_FROM_API] = "api",
                                         [SERVER_FROM_DNS] = "dns",
                                         [SERVER_FROM_ETCD] = "etcd"};
    return (unsigned)source < sizeof(labels) / sizeof(labels[0]) ? labels[source] : "?";
}

void server_await_first_check(struct server *s)
{
    s->h.check_down = true;
    snprintf(s->h.last_result, sizeof(s->h.last_result), "awaiting its first health check");
    atomic_store(&s->state, SERVER_DOWN);
}

void server_set_host(struct server *s, const char *address)
{
    if (!address)
        return;
    const char *start = address, *end;
    if (*start == '[') {
        start++;
        end = strchr(start, ']');
    } else {
        end = strrchr(start, ':');
    }
    size_t len = end ? (size_t)(end - start) : strlen(start);
    if (len == 0 || len >= sizeof(s->host))
        return;
    memcpy(s->host, start, len);
    s->host[len] = '\0';
}

void server_ref(struct server *s)
{
    atomic_fetch_add(&s->refs, 1);
}

void server_unref(struct server *s)
{
    if (!s || atomic_fetch_sub(&s->refs, 1) != 1)
        return;
    free(s->name);
    free(s->pool_name);
    free(s);
}

static enum server_state derive(const struct server_inputs *h)
{
    if (h->admin == SERVER_ADMIN_MAINT)
        return SERVER_MAINT;
    if (h->admin == SERVER_ADMIN_DRAIN)
        return SERVER_DRAINING;
    if (h->check_down)
        return SERVER_DOWN;
    if (h->ejected)
        return SERVER_EJECTED;
    return SERVER_UP;
}

void server_update_state(struct server *s, uint64_t now_ms, const char *reason)
{
    enum server_state state = derive(&s->h);
    unsigned old = atomic_load(&s->state);
    if (old == (unsigned)state)
        return;
    /* A server coming back into rotation ramps up (when the pool has slow_start); the ramp
     * starts before the state is published so no thread sees it up at full weight first. */
    if (state == SERVER_UP)
        atomic_store(&s->up_since_ms, now_ms ? now_ms : 1);
    atomic_store(&s->state, (unsigned)state);
    log_warn("pool %s server %s: %s -> %s (%s)", s->pool_name, s->name,
             server_state_name((enum server_state)old), server_state_name(state), reason);
    if (state_hook)
        state_hook(s);
}

void server_set_state_hook(server_state_hook *hook)
{
    state_hook = hook;
}

const char *server_failure_text(unsigned failure, char *buf, size_t size)
{
    static const char *const kinds[] = {
        [SERVER_FAIL_CONNECT] = "connect failure",
        [SERVER_FAIL_CLOSED] = "closed before response",
        [SERVER_FAIL_TIMEOUT] = "response timeout",
        [SERVER_FAIL_INVALID] = "invalid response",
        [SERVER_FAIL_CUT_SHORT] = "response cut short",
    };
    if (failure >= 100)
        snprintf(buf, size, "status %u", failure);
    else if (failure < sizeof(kinds) / sizeof(kinds[0]) && kinds[failure])
        snprintf(buf, size, "%s", kinds[failure]);
    else
        snprintf(buf, size, "failure");
    return buf;
}

bool server_report_failure(struct server *s, unsigned threshold, unsigned failure)
{
    atomic_store_explicit(&s->last_failure, failure, memory_order_relaxed);
    unsigned n = atomic_fetch_add_explicit(&s->consecutive_failures, 1, memory_order_relaxed) + 1;
    if (!threshold || n != threshold)
        return false;
    atomic_store(&s->eject_wanted, true);
    server_eject_hook *hook = atomic_load(&eject_hook);
    if (hook)
        hook();
    return true;
}

void server_set_eject_hook(server_eject_hook *hook)
{
    atomic_store(&eject_hook, hook);
}

unsigned server_slot_limit(void)
{
    return atomic_load(&next_server_slot);
}

/* Names seen so far, by slot: one table for pools, one for routes. Only the thread that builds
 * snapshots uses them. */
struct slot_names {
    char **names;
    unsigned n;
};
static struct slot_names pool_names, route_names;

static unsigned slot_for(struct slot_names *t, const char *name)
{
    for (unsigned i = 0; i < t->n; i++)
        if (strcmp(t->names[i], name) == 0)
            return i;
    char **grown = realloc(t->names, (t->n + 1) * sizeof(*grown));
    char *copy = strdup(name);
    if (!grown || !copy) {
        /* Without memory the name shares slot 0's counters: wrong numbers, but no crash. */
        free(copy);
        if (grown)
            t->names = grown;
        return 0;
    }
    t->names = grown;
    t->names[t->n] = copy;
    return t->n++;
}

unsigned pool_slot_for(const char *name)
{
    return slot_for(&pool_names, name);
}

unsigned route_slot_for(const char *listener, const char *route)
{
    /* The listener's name comes with its length, so "a/b" + "c" and "a" + "b/c" differ. */
    char key[512];
    snprintf(key, sizeof(key), "%zu:%s/%s", strlen(listener), listener, route);
    return slot_for(&route_names, key);
}
