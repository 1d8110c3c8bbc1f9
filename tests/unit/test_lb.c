/*
 * test_lb.c - the balancer interface: the registry of algorithms (and that it agrees with what
 * the configuration accepts), the hooks (a fake algorithm counts the calls that snapshot building
 * and the request path's helpers make), and smooth weighted round-robin: proportions,
 * interleaving, and skipping servers that are not usable.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "conf/conf.h"
#include "lb/lb.h"
#include "lb/snapshot.h"

#define MAXS 8
#include "lb_fixture.h"

static void rebuild(struct fixture *f)
{
    rebuild_at(f, 0);
}

static void make_pool(struct fixture *f, const unsigned *weights, unsigned n, unsigned seed)
{
    struct net_addr addr = {0};
    memset(f, 0, sizeof(*f));
    for (unsigned i = 0; i < n; i++) {
        char name[8] = {'s', (char)('1' + i), 0};
        f->servers[i] = server_new("p", name, &addr, weights[i]);
        assert_non_null(f->servers[i]);
    }
    f->pool.name = "p";
    f->pool.lb = lb_find("round-robin");
    assert_non_null(f->pool.lb);
    f->pool.servers = f->servers;
    f->pool.nservers = n;
    rebuild(f);
    f->state = f->pool.lb->state_new(&f->pool, seed);
    assert_non_null(f->state);
}

static int pick_index(struct fixture *f, struct server *avoid)
{
    struct server *avoids[1] = {avoid};
    struct lb_pick ctx = {.avoid = avoids, .navoid = avoid ? 1 : 0};
    return index_of(f, f->pool.lb->pick(&f->pool, f->state, &ctx));
}

static void test_equal_weights_exact(void **state)
{
    unsigned w[] = {1, 1, 1};
    for (unsigned seed = 0; seed < 4; seed++) {
        struct fixture f;
        make_pool(&f, w, 3, seed);
        int count[3] = {0};
        for (int i = 0; i < 3 * 100; i++)
            count[pick_index(&f, NULL)]++;
        for (int i = 0; i < 3; i++)
            assert_int_equal(count[i], 100);
        free_pool(&f);
    }
}

/* For weights 1, 1, 2 every window of 4 consecutive picks holds s1, s2 once and s3 twice. */
static void test_smooth_windows(void **state)
{
    unsigned w[] = {1, 1, 2};
    struct fixture f;
    make_pool(&f, w, 3, 0);
    int seq[400];
    for (int i = 0; i < 400; i++)
        seq[i] = pick_index(&f, NULL);
    assert_each_window(seq, 400, 4, (const int[]){1, 1, 2}, 3);
    free_pool(&f);
}

/* Weights 5, 1, 1 interleave as a a b a c a a, not a a a a a b c. */
static void test_nginx_sequence(void **state)
{
    unsigned w[] = {5, 1, 1};
    struct fixture f;
    make_pool(&f, w, 3, 0);
    const int expect[] = {0, 0, 1, 0, 2, 0, 0};
    for (int round = 0; round < 3; round++)
        for (int i = 0; i < 7; i++)
            assert_int_equal(pick_index(&f, NULL), expect[i]);
    free_pool(&f);
}

static void test_proportions(void **state)
{
    unsigned w[] = {5, 1, 1, 3};
    struct fixture f;
    make_pool(&f, w, 4, 1);
    int count[4] = {0};
    for (int i = 0; i < 10 * 50; i++)
        count[pick_index(&f, NULL)]++;
    assert_int_equal(count[0], 250);
    assert_int_equal(count[1], 50);
    assert_int_equal(count[2], 50);
    assert_int_equal(count[3], 150);
    free_pool(&f);
}

static void test_skips_unusable_and_zero_weight(void **state)
{
    unsigned w[] = {1, 1, 1, 0};
    struct fixture f;
    make_pool(&f, w, 4, 0);
    set_state(f.servers[1], SERVER_DOWN);
    set_state(f.servers[2], SERVER_DRAINING);
    /* before the rotation is rebuilt, and after */
    for (int round = 0; round < 2; round++, rebuild(&f))
        for (int i = 0; i < 20; i++)
            assert_int_equal(pick_index(&f, NULL), 0);
    /* avoid excludes the only candidate: nothing */
    assert_int_equal(pick_index(&f, f.servers[0]), -1);
    set_state(f.servers[0], SERVER_MAINT);
    assert_int_equal(pick_index(&f, NULL), -1);
    rebuild(&f);
    assert_int_equal(pick_index(&f, NULL), -1);
    /* back up: shares even out again */
    set_state(f.servers[0], SERVER_UP);
    set_state(f.servers[1], SERVER_UP);
    rebuild(&f);
    int count[4] = {0};
    for (int i = 0; i < 100; i++)
        count[pick_index(&f, NULL)]++;
    assert_int_equal(count[0], 50);
    assert_int_equal(count[1], 50);
    free_pool(&f);
}

static void test_panic_mode(void **state)
{
    unsigned w[] = {1, 1, 1};
    struct fixture f;
    make_pool(&f, w, 3, 0);
    set_state(f.servers[0], SERVER_DOWN);
    set_state(f.servers[1], SERVER_EJECTED);
    set_state(f.servers[2], SERVER_MAINT);
    rebuild(&f);
    struct lb_pick normal = {0}, panic = {.panic = true};
    assert_null(f.pool.lb->pick(&f.pool, f.state, &normal));
    /* panic: down and ejected servers share the load; maintenance stays out */
    int count[3] = {0};
    for (int i = 0; i < 10; i++) {
        struct server *s = f.pool.lb->pick(&f.pool, f.state, &panic);
        assert_non_null(s);
        count[s == f.servers[0] ? 0 : s == f.servers[1] ? 1 : 2]++;
    }
    assert_int_equal(count[0], 5);
    assert_int_equal(count[1], 5);
    assert_int_equal(count[2], 0);
    free_pool(&f);
}

/* A server in slow start gets a share that grows with time. */
static void test_slow_start_share(void **state)
{
    unsigned w[] = {1, 1};
    struct fixture f;
    make_pool(&f, w, 2, 0);
    struct conf_pool pc = {.slow_start_ms = 10000};
    f.pool.conf = &pc;
    atomic_store(&f.servers[1]->up_since_ms, 100000); /* came back at t = 100 s */
    int prev = -1;
    for (uint64_t t = 100000; t <= 112000; t += 2000) {
        rebuild_at(&f, t); /* the control thread rebuilds while a ramp lasts */
        assert_true(f.pool.lb->ramping(f.pool.lb_shared) == (t < 110000));
        struct lb_pick ctx = {.now_ms = t};
        int got = 0;
        for (int i = 0; i < 1000; i++)
            got += f.pool.lb->pick(&f.pool, f.state, &ctx) == f.servers[1];
        assert_true(got >= prev); /* never shrinks */
        prev = got;
        if (t == 100000)
            assert_true(got <= 2); /* about nothing at first */
        if (t == 104000)
            assert_in_range(got, 260, 310); /* weight 0.4 against 1: 2/7 of the picks */
        if (t >= 110000)
            assert_int_equal(got, 500); /* full weight: an even share */
    }
    free_pool(&f);
}

static void test_avoid(void **state)
{
    unsigned w[] = {1, 1};
    struct fixture f;
    make_pool(&f, w, 2, 0);
    for (int i = 0; i < 10; i++)
        assert_int_equal(pick_index(&f, f.servers[0]), 1);
    free_pool(&f);
}

/* Two threads (two states) taking turns follow one rotation: 1, 2, 3, 1, 2, 3, as one would. */
static void test_one_rotation_for_all_threads(void **state)
{
    unsigned w[] = {1, 1, 1};
    struct fixture f;
    make_pool(&f, w, 3, 0);
    void *other = f.pool.lb->state_new(&f.pool, 1);
    assert_non_null(other);
    for (int i = 0; i < 30; i++) {
        struct lb_pick ctx = {0};
        struct server *s = f.pool.lb->pick(&f.pool, i % 2 ? other : f.state, &ctx);
        assert_ptr_equal(s, f.servers[i % 3]);
    }
    /* a rebuild (a state change elsewhere) continues the count rather than starting over */
    rebuild(&f);
    assert_int_equal(pick_index(&f, NULL), 0);
    assert_int_equal(pick_index(&f, NULL), 1);
    f.pool.lb->state_free(other);
    free_pool(&f);
}

/* The fallback scan (no turn qualifies) starts threads apart. */
static void test_seeds_start_apart(void **state)
{
    unsigned w[] = {1, 1, 1};
    struct fixture a, b;
    make_pool(&a, w, 3, 0);
    make_pool(&b, w, 3, 1);
    struct lb_pick panic = {.panic = true};
    for (int i = 0; i < 3; i++) {
        set_state(a.servers[i], SERVER_DOWN);
        set_state(b.servers[i], SERVER_DOWN);
    }
    rebuild(&a);
    rebuild(&b);
    /* panic finds the down servers through the scan */
    assert_non_null(a.pool.lb->pick(&a.pool, a.state, &panic));
    struct fixture *fs[2] = {&a, &b};
    int first[2];
    for (int k = 0; k < 2; k++) {
        void *st = fs[k]->pool.lb->state_new(&fs[k]->pool, (unsigned)k);
        struct server *s = fs[k]->pool.lb->pick(&fs[k]->pool, st, &panic);
        first[k] = s == fs[k]->servers[0] ? 0 : s == fs[k]->servers[1] ? 1 : 2;
        fs[k]->pool.lb->state_free(st);
    }
    assert_int_not_equal(first[0], first[1]);
    free_pool(&a);
    free_pool(&b);
}

/* A rotation over a large pool with uneven weights (the stride order) keeps exact proportions. */
/* 1,000 servers of weight 1 and one of weight 256 (a pool that takes the stride order): the heavy
 * one's turns are spread through the rotation, not bunched at its ends around one long run of
 * the light ones (which a shared phase gave: 1,000 turns in a row without it). */
static void test_stride_rotation_interleaves(void **state)
{
    enum { N = 1001 };
    struct net_addr addr = {0};
    struct server **servers = calloc(N, sizeof(*servers));
    struct pool pool = {.name = "p", .lb = &lb_round_robin, .servers = servers, .nservers = N};
    for (unsigned i = 0; i < N; i++) {
        char name[16];
        snprintf(name, sizeof(name), "i%u", i);
        servers[i] = server_new("p", name, &addr, i == N / 2 ? 256 : 1);
    }
    void *shared = lb_round_robin.rebuild(&pool, NULL, 0);
    assert_non_null(shared);
    pool.lb_shared = shared;
    void *st = lb_round_robin.state_new(&pool, 0);
    const unsigned len = (N - 1) + 256;
    unsigned last = 0, longest = 0, heavy = 0;
    for (unsigned k = 0; k < 2 * len; k++) {
        struct lb_pick ctx = {0};
        if (lb_round_robin.pick(&pool, st, &ctx) != servers[N / 2])
            continue;
        if (heavy++)
            longest = k - last > longest ? k - last : longest;
        last = k;
    }
    assert_int_equal(heavy, 2 * 256);
    /* evenly: a turn every len / 256 (about 5); allow twice that */
    assert_true(longest <= 2 * len / 256);
    lb_round_robin.state_free(st);
    lb_round_robin.shared_free(shared);
    for (unsigned i = 0; i < N; i++)
        server_unref(servers[i]);
    free(servers);
}

static void test_large_rotation_proportions(void **state)
{
    enum { N = 300 };
    struct net_addr addr = {0};
    struct server *servers[N];
    struct pool pool = {.name = "p", .lb = &lb_round_robin, .servers = servers, .nservers = N};
    uint64_t expect_total = 0;
    for (unsigned i = 0; i < N; i++) {
        char name[16];
        snprintf(name, sizeof(name), "s%u", i);
        servers[i] = server_new("p", name, &addr, 1 + i % 256);
        expect_total += 1 + i % 256;
    }
    void *shared = lb_round_robin.rebuild(&pool, NULL, 0);
    assert_non_null(shared);
    pool.lb_shared = shared;
    void *st = lb_round_robin.state_new(&pool, 0);
    unsigned *count = calloc(N, sizeof(*count));
    for (uint64_t k = 0; k < expect_total; k++) {
        struct lb_pick ctx = {0};
        struct server *s = lb_round_robin.pick(&pool, st, &ctx);
        unsigned i = 0; /* slots belong to identities, which earlier tests may have used */
        while (i < N && servers[i] != s)
            i++;
        assert_true(i < N);
        count[i]++;
    }
    for (unsigned i = 0; i < N; i++)
        assert_int_equal(count[i], 1 + i % 256);
    free(count);
    lb_round_robin.state_free(st);
    lb_round_robin.shared_free(shared);
    for (unsigned i = 0; i < N; i++)
        server_unref(servers[i]);
}

/* ---- the registry ---- */

#define LISTENER "listeners:\n  - bind: 127.0.0.1:8080\n    pool: app\n"

static struct conf *load_conf(const char *yaml)
{
    char *errors = NULL;
    struct conf *c = conf_load_string(yaml, strlen(yaml), "t.yaml", &errors);
    if (!c)
        fail_msg("unexpected errors:\n%s", errors ? errors : "(none)");
    return c;
}

static void one_pool_yaml(char *buf, size_t size, const char *balance)
{
    snprintf(buf, size,
             LISTENER "pools:\n  - name: app\n    balance: %s\n"
                      "    servers: [{address: 127.0.0.1:9001}]\n",
             balance);
}

/* Every name the configuration accepts has an implementation, found by name and by value. */
static void test_registry_every_name(void **state)
{
    for (unsigned i = 0; i < CONF_BALANCE_COUNT; i++) {
        const char *name = conf_balance_name((enum conf_balance)i);
        assert_non_null(name);
        assert_non_null(lb_get((enum conf_balance)i));
        assert_ptr_equal(lb_find(name), lb_get((enum conf_balance)i));
        char yaml[256];
        one_pool_yaml(yaml, sizeof(yaml), name);
        struct conf *c = load_conf(yaml);
        assert_int_equal(c->pools[0].balance, i);
        conf_free(c);
    }
    assert_ptr_equal(lb_find("round-robin"), &lb_round_robin);
    assert_ptr_equal(lb_get(CONF_BALANCE_ROUND_ROBIN), &lb_round_robin);
}

/* A name the registry does not know, the configuration rejects with its position, listing the
 * registry's names and only them. */
static void test_registry_unknown_name(void **state)
{
    assert_null(lb_find("fastest"));
    assert_null(lb_find(""));
    assert_null(lb_find("Round-Robin"));
    assert_null(conf_balance_name(CONF_BALANCE_COUNT));
    assert_null(lb_get(CONF_BALANCE_COUNT));

    char expected[256] = "t.yaml:6:14: pools[0].balance: expected one of: ";
    for (unsigned i = 0; i < CONF_BALANCE_COUNT; i++) {
        if (i)
            strcat(expected, ", ");
        strcat(expected, conf_balance_name((enum conf_balance)i));
    }
    strcat(expected, ", found \"fastest\"");
    char yaml[256], *errors = NULL;
    one_pool_yaml(yaml, sizeof(yaml), "fastest");
    assert_null(conf_load_string(yaml, strlen(yaml), "t.yaml", &errors));
    assert_non_null(errors);
    assert_string_equal(errors, expected);
    free(errors);
}

/* Round-robin follows no requests (the helpers skip taken and released), and rebuilds its
 * rotation. */
static void test_round_robin_has_no_hooks(void **state)
{
    assert_null(lb_round_robin.taken);
    assert_null(lb_round_robin.released);
    assert_non_null(lb_round_robin.rebuild);
    assert_non_null(lb_round_robin.shared_free);
    assert_null(lb_round_robin.server_added);

    unsigned w[] = {1, 1};
    struct fixture f;
    make_pool(&f, w, 2, 0);
    assert_false(lb_follows_requests(&f.pool));
    assert_true(lb_rebuilds(&f.pool));
    for (int i = 0; i < 4; i++) {
        int got = pick_index(&f, NULL);
        assert_int_equal(got, i % 2);
        lb_taken(&f.pool, f.state, f.servers[got]);
        lb_released(&f.pool, f.state, f.servers[got], 100, i ? LB_OK : LB_FAILED);
    }
    /* a hash key changes nothing for it */
    struct lb_pick keyed = {.key = "client", .key_len = 6};
    assert_ptr_equal(f.pool.lb->pick(&f.pool, f.state, &keyed), f.servers[0]);
    free_pool(&f);
}

/* ---- a fake algorithm: counts every call and records its arguments ---- */

struct fake_shared {
    const void *prev;  /* what rebuild was given */
    unsigned nservers; /* what it saw */
    unsigned usable;
};

struct fake_state {
    unsigned seed;
    unsigned taken, released, failed;
    uint64_t latency_us;
};

static struct {
    unsigned state_new, state_free, pick, taken, released, rebuild, shared_free, server_added;
    const struct pool *pool; /* of the last taken or released */
    void *state;
    struct server *server;
    uint64_t latency_us;
    enum lb_outcome outcome;
    struct server *added;
    void *added_shared;
} calls;

static void *fake_state_new(const struct pool *pool, unsigned seed)
{
    calls.state_new++;
    assert_non_null(pool->lb_shared); /* rebuild ran first */
    struct fake_state *st = calloc(1, sizeof(*st));
    assert_non_null(st);
    st->seed = seed;
    return st;
}

static void fake_state_free(void *state)
{
    calls.state_free++;
    free(state);
}

/* A toy hash: the key's length picks the server. */
static struct server *fake_pick(const struct pool *pool, void *state, struct lb_pick *ctx)
{
    const struct fake_shared *sh = pool->lb_shared;
    calls.pick++;
    assert_int_equal(sh->nservers, pool->nservers);
    if (!pool->nservers)
        return NULL;
    return pool->servers[ctx->key ? ctx->key_len % pool->nservers : 0];
}

static void fake_taken(const struct pool *pool, void *state, struct server *s)
{
    struct fake_state *st = state;
    calls.taken++;
    calls.pool = pool;
    calls.state = state;
    calls.server = s;
    st->taken++;
}

static void fake_released(const struct pool *pool, void *state, struct server *s,
                          uint64_t latency_us, enum lb_outcome outcome)
{
    struct fake_state *st = state;
    calls.released++;
    calls.pool = pool;
    calls.state = state;
    calls.server = s;
    calls.latency_us = latency_us;
    calls.outcome = outcome;
    st->released++;
    st->failed += outcome == LB_FAILED;
    st->latency_us += latency_us;
}

static void *fake_rebuild(const struct pool *pool, const void *prev, uint64_t now_ms)
{
    calls.rebuild++;
    struct fake_shared *sh = calloc(1, sizeof(*sh));
    assert_non_null(sh);
    sh->prev = prev;
    sh->nservers = pool->nservers;
    for (unsigned k = 0; k < pool->nservers; k++)
        sh->usable += server_usable(pool->servers[k], false);
    return sh;
}

static void fake_shared_free(void *shared)
{
    calls.shared_free++;
    free(shared);
}

static void fake_server_added(const struct pool *pool, void *shared, struct server *s)
{
    calls.server_added++;
    calls.added = s;
    calls.added_shared = shared;
}

static const struct lb_ops fake = {
    .state_new = fake_state_new,
    .state_free = fake_state_free,
    .pick = fake_pick,
    .taken = fake_taken,
    .released = fake_released,
    .rebuild = fake_rebuild,
    .shared_free = fake_shared_free,
    .server_added = fake_server_added,
};

/* Pools that say round-robin get the fake, until restore_registry(). */
static int use_fake(void **state)
{
    assert_ptr_equal(lb_register(CONF_BALANCE_ROUND_ROBIN, &fake), &lb_round_robin);
    memset(&calls, 0, sizeof(calls));
    return 0;
}

static int restore_registry(void **state)
{
    lb_register(CONF_BALANCE_ROUND_ROBIN, &lb_round_robin);
    snapshot_set_workers(1);
    return 0;
}

#define TWO_POOLS                                                                                  \
    LISTENER "pools:\n  - name: app\n    servers:\n"                                               \
             "      - {name: a, address: 127.0.0.1:9001}\n"                                        \
             "      - {name: b, address: 127.0.0.1:9002}\n"                                        \
             "  - name: other\n    servers: [{name: c, address: 127.0.0.1:9003}]\n"

static const struct fake_shared *shared_of(const struct snapshot *snap, const char *pool)
{
    const struct pool *p = snapshot_find_pool(snap, pool);
    assert_non_null(p);
    assert_non_null(p->lb_shared);
    return p->lb_shared;
}

/*
 * Snapshot building runs rebuild once per pool (start, and each admin API change), names a server
 * added through the API once, and makes one state per thread and pool; a refresh (health or
 * weight change) runs rebuild alone and keeps the states. Everything is freed once.
 */
static void test_hooks_through_snapshots(void **state)
{
    snapshot_set_workers(3);
    struct snapshot *s1 = snapshot_new(load_conf(TWO_POOLS), NULL, NULL, NULL);
    assert_non_null(s1);
    assert_int_equal(calls.rebuild, 2);
    assert_int_equal(calls.state_new, 2 * 3);
    assert_int_equal(calls.server_added, 0);
    const struct pool *app1 = snapshot_find_pool(s1, "app");
    assert_ptr_equal(app1->lb, &fake);
    assert_null(shared_of(s1, "app")->prev);
    assert_int_equal(shared_of(s1, "app")->nservers, 2);
    assert_int_equal(shared_of(s1, "other")->nservers, 1);
    for (unsigned w = 0; w < 3; w++)
        assert_int_equal(((struct fake_state *)app1->lb_state[w])->seed, w);

    /* A server added through the admin API: control.c builds a new snapshot for it. */
    char pool_name[] = "app", name[] = "d";
    struct snapshot_change add = {.pool = pool_name, .name = name, .weight = 1};
    const char *why;
    assert_int_equal(net_parse_addr("127.0.0.1:9004", &add.addr, &why), 0);
    const struct snapshot_overlay overlay = {.add = &add, .nadd = 1};
    struct snapshot *s2 = snapshot_rebuild(s1, &overlay);
    assert_non_null(s2);
    assert_int_equal(calls.rebuild, 4);
    assert_int_equal(calls.state_new, 4 * 3);
    assert_int_equal(calls.server_added, 1);
    const struct pool *app2 = snapshot_find_pool(s2, "app");
    assert_int_equal(app2->nservers, 3);
    assert_ptr_equal(calls.added, app2->servers[2]);
    assert_string_equal(calls.added->name, "d");
    assert_ptr_equal(calls.added_shared, app2->lb_shared);
    assert_ptr_equal(shared_of(s2, "app")->prev, app1->lb_shared);
    assert_ptr_equal(shared_of(s2, "other")->prev, shared_of(s1, "other"));
    assert_int_equal(shared_of(s2, "app")->nservers, 3);

    /* Built again for another reason: d is no newcomer any more. */
    struct snapshot *s3 = snapshot_rebuild(s2, &overlay);
    assert_non_null(s3);
    assert_int_equal(calls.rebuild, 6);
    assert_int_equal(calls.state_new, 6 * 3);
    assert_int_equal(calls.server_added, 1);
    const struct pool *app3 = snapshot_find_pool(s3, "app");

    /* A health change: only the shared data is rebuilt; servers and states stay. */
    set_state(app3->servers[0], SERVER_DOWN);
    struct snapshot *s4 = snapshot_refresh(s3);
    assert_non_null(s4);
    assert_int_equal(calls.rebuild, 8);
    assert_int_equal(calls.state_new, 6 * 3);
    assert_int_equal(calls.server_added, 1);
    const struct pool *app4 = snapshot_find_pool(s4, "app");
    assert_ptr_not_equal(app4, app3);
    assert_ptr_equal(s4->listeners[0].pool, app4);
    assert_ptr_equal(s4->conf, s3->conf);
    assert_int_equal(app4->nservers, 3);
    for (unsigned k = 0; k < 3; k++)
        assert_ptr_equal(app4->servers[k], app3->servers[k]);
    for (unsigned w = 0; w < 3; w++)
        assert_ptr_equal(app4->lb_state[w], app3->lb_state[w]);
    assert_ptr_equal(shared_of(s4, "app")->prev, app3->lb_shared);
    assert_int_equal(shared_of(s4, "app")->usable, 2);
    assert_int_equal(shared_of(s3, "app")->usable, 3);

    /* Each snapshot frees its shared data; states go with the last snapshot holding them. */
    snapshot_unref(s1);
    assert_int_equal(calls.shared_free, 2);
    assert_int_equal(calls.state_free, 2 * 3);
    snapshot_unref(s2);
    assert_int_equal(calls.shared_free, 4);
    assert_int_equal(calls.state_free, 4 * 3);
    snapshot_unref(s3);
    assert_int_equal(calls.shared_free, 6);
    assert_int_equal(calls.state_free, 4 * 3); /* s4 still uses s3's */
    snapshot_unref(s4);
    assert_int_equal(calls.shared_free, 8);
    assert_int_equal(calls.state_free, 6 * 3);
    assert_int_equal(calls.taken + calls.released, 0);
}

/* taken and released reach the algorithm with the pool, its thread's state and the request's
 * server, latency and outcome; pick gets the hash key. */
static void test_taken_released(void **state)
{
    snapshot_set_workers(2);
    struct snapshot *snap = snapshot_new(load_conf(TWO_POOLS), NULL, NULL, NULL);
    assert_non_null(snap);
    const struct pool *p = snapshot_find_pool(snap, "app");
    assert_true(lb_follows_requests(p));
    assert_true(lb_rebuilds(p));
    void *st = p->lb_state[1];
    struct fake_state *fs = st, *other = p->lb_state[0];

    struct lb_pick keyed = {.key = "abc", .key_len = 3}, plain = {0};
    struct server *srv = p->lb->pick(p, st, &keyed);
    assert_ptr_equal(srv, p->servers[1]);
    assert_ptr_equal(p->lb->pick(p, st, &plain), p->servers[0]);

    lb_taken(p, st, srv);
    assert_int_equal(calls.taken, 1);
    assert_int_equal(calls.released, 0);
    assert_ptr_equal(calls.pool, p);
    assert_ptr_equal(calls.state, st);
    assert_ptr_equal(calls.server, srv);
    lb_released(p, st, srv, 1500, LB_OK);
    assert_int_equal(calls.taken, 1);
    assert_int_equal(calls.released, 1);
    assert_ptr_equal(calls.server, srv);
    assert_int_equal(calls.latency_us, 1500);
    assert_int_equal(calls.outcome, LB_OK);

    /* A retry: the first server fails the request, the second takes it and answers. */
    lb_taken(p, st, p->servers[0]);
    lb_released(p, st, p->servers[0], 20, LB_FAILED);
    assert_ptr_equal(calls.server, p->servers[0]);
    assert_int_equal(calls.outcome, LB_FAILED);
    lb_taken(p, st, p->servers[1]);
    lb_released(p, st, p->servers[1], 30, LB_OK);
    assert_int_equal(calls.taken, 3);
    assert_int_equal(calls.released, 3);
    assert_int_equal(fs->taken, 3);
    assert_int_equal(fs->released, 3);
    assert_int_equal(fs->failed, 1);
    assert_int_equal(fs->latency_us, 1550);
    assert_int_equal(other->taken + other->released, 0); /* another thread's state */
    snapshot_unref(snap);
    assert_int_equal(calls.state_free, 2 * 2);
}

static void test_register_returns_previous(void **state)
{
    assert_null(lb_register(CONF_BALANCE_COUNT, &fake));
    assert_null(lb_get(CONF_BALANCE_COUNT));
    assert_ptr_equal(lb_register(CONF_BALANCE_ROUND_ROBIN, &fake), &lb_round_robin);
    assert_ptr_equal(lb_find("round-robin"), &fake);
    assert_ptr_equal(lb_register(CONF_BALANCE_ROUND_ROBIN, &lb_round_robin), &fake);
    assert_ptr_equal(lb_find("round-robin"), &lb_round_robin);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_equal_weights_exact),
        cmocka_unit_test(test_smooth_windows),
        cmocka_unit_test(test_nginx_sequence),
        cmocka_unit_test(test_proportions),
        cmocka_unit_test(test_skips_unusable_and_zero_weight),
        cmocka_unit_test(test_avoid),
        cmocka_unit_test(test_panic_mode),
        cmocka_unit_test(test_slow_start_share),
        cmocka_unit_test(test_seeds_start_apart),
        cmocka_unit_test(test_one_rotation_for_all_threads),
        cmocka_unit_test(test_large_rotation_proportions),
        cmocka_unit_test(test_stride_rotation_interleaves),
        cmocka_unit_test(test_registry_every_name),
        cmocka_unit_test(test_registry_unknown_name),
        cmocka_unit_test(test_round_robin_has_no_hooks),
        cmocka_unit_test_setup_teardown(test_hooks_through_snapshots, use_fake, restore_registry),
        cmocka_unit_test_setup_teardown(test_taken_released, use_fake, restore_registry),
        cmocka_unit_test_teardown(test_register_returns_previous, restore_registry),
    };
    return cmocka_run_group_tests_name("lb", tests, NULL, NULL);
}
