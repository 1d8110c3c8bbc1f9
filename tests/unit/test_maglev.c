/*
 * test_maglev.c - `balance: hash`: the Maglev table on its own (maglev.h: sizes, shares of slots
 * by weight, keys moved when a server leaves or joins the configuration, independence from the
 * servers' order, build time and memory for 1,000 servers), and the balancer over it (lb_hash.c:
 * a down server moves only its own keys, bounded load is never exceeded and a hot key spills,
 * the no-key fallback, avoid, panic, weight 0, slow start).
 *
 * Every key and weight comes from fixed seeds; the only timing assert is a generous bound on the
 * build time. The measured figures are printed (keys moved, deviations, build time, pick cost).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "conf/conf.h"
#include "lb/hash.h"
#include "lb/lb.h"
#include "lb/load.h"
#include "lb/maglev.h"

#define NKEYS 100000u

/* ---- helpers ---- */

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* The names and addresses of up to 1,000 made-up servers. */
static char names[1000][16], addrs[1000][24];

static void make_names(void)
{
    for (unsigned i = 0; i < 1000; i++) {
        snprintf(names[i], sizeof(names[i]), "srv-%03u", i);
        snprintf(addrs[i], sizeof(addrs[i]), "10.0.%u.%u:8080", i / 250, i % 250 + 1);
    }
}

/* Members 0..n-1 of the made-up servers, with weights w (NULL: all 1). */
static struct maglev_member *members_of(unsigned n, const unsigned *w)
{
    struct maglev_member *m = calloc(n, sizeof(*m));
    assert_non_null(m);
    for (unsigned i = 0; i < n; i++)
        m[i] = (struct maglev_member){names[i], addrs[i], w ? w[i] : 1};
    return m;
}

static size_t key_text(char *buf, size_t size, unsigned k)
{
    return (size_t)snprintf(buf, size, "client-%u", k);
}

/* The member that owns key k (index into the builder's list). */
static uint32_t owner(const struct maglev *t, unsigned k)
{
    char key[32];
    size_t len = key_text(key, sizeof(key), k);
    struct maglev_seq q = maglev_seq_start(t, maglev_digest(key, len));
    return maglev_seq_owner(t, &q);
}

static void build(struct maglev *t, const struct maglev_member *m, unsigned n, uint32_t size)
{
    assert_int_equal(maglev_build(t, m, n, size, NULL), 0);
}

/* Each member's share of slots against its share of weight; returns the largest relative gap. */
static double worst_share_gap(const struct maglev *t, const struct maglev_member *m, unsigned n)
{
    unsigned *count = calloc(n, sizeof(*count));
    uint64_t wsum = 0;
    for (unsigned i = 0; i < n; i++)
        wsum += m[i].weight;
    for (uint32_t s = 0; s < t->size; s++) {
        uint32_t o = maglev_owner(t, s);
        assert_true(o < n);
        count[o]++;
    }
    double worst = 0;
    for (unsigned i = 0; i < n; i++) {
        if (!m[i].weight) {
            assert_int_equal(count[i], 0);
            continue;
        }
        double expect = (double)t->size * m[i].weight / (double)wsum;
        double gap = (count[i] - expect) / expect;
        if (gap < 0)
            gap = -gap;
        if (gap > worst)
            worst = gap;
    }
    free(count);
    return worst;
}

/* ---- the table ---- */

static void test_sizes(void **state)
{
    assert_int_equal(maglev_next_prime(0), 2);
    assert_int_equal(maglev_next_prime(2), 2);
    assert_int_equal(maglev_next_prime(14), 17);
    assert_int_equal(maglev_next_prime(100), 101);
    assert_int_equal(maglev_next_prime(65536), 65537);
    assert_int_equal(maglev_next_prime(65537), 65537);
    assert_int_equal(maglev_next_prime(100000), 100003);
    assert_int_equal(maglev_next_prime(16777200), CONF_HASH_TABLE_MAX);
    /* the configured size, doubled (to the next prime) as often as 100 slots per member need */
    assert_int_equal(maglev_table_size(0, 3), CONF_HASH_TABLE_DEFAULT);
    assert_int_equal(maglev_table_size(101, 1), 101);
    assert_int_equal(maglev_table_size(101, 2), 211);
    assert_int_equal(maglev_table_size(101, 3), 431); /* 101 -> 211 -> 431 */
    assert_int_equal(maglev_table_size(655373, 1000), 655373);
    assert_int_equal(maglev_table_size(0, 1000), 131101);
    /* a server more or less rarely changes the size (that would move almost every key) */
    for (unsigned n = 656; n <= 1310; n++)
        assert_int_equal(maglev_table_size(0, n), 131101);
    assert_int_equal(maglev_table_size(0, 200000), CONF_HASH_TABLE_MAX);
    assert_int_equal(maglev_table_size(CONF_HASH_TABLE_MAX, 5), CONF_HASH_TABLE_MAX);
}

static void test_balance_equal_weights(void **state)
{
    const unsigned ns[] = {3, 5, 10, 50, 300};
    for (unsigned k = 0; k < sizeof(ns) / sizeof(ns[0]); k++) {
        struct maglev_member *m = members_of(ns[k], NULL);
        struct maglev t;
        build(&t, m, ns[k], 0);
        double gap = worst_share_gap(&t, m, ns[k]);
        printf("    equal weights, %3u servers, %u slots: worst share %.3f%% off its weight's\n",
               ns[k], t.size, gap * 100);
        assert_true(gap < 0.02);
        maglev_free(&t);
        free(m);
    }
}

static void test_balance_mixed_weights(void **state)
{
    const unsigned fixed[] = {1, 2, 3, 5, 8, 13, 100, 256, 0, 7};
    struct maglev_member *m = members_of(10, fixed);
    struct maglev t;
    build(&t, m, 10, 0);
    double gap = worst_share_gap(&t, m, 10);
    printf("    weights 1..256 (and a 0), 10 servers: worst share %.3f%% off its weight's\n",
           gap * 100);
    assert_true(gap < 0.03);
    maglev_free(&t);
    free(m);

    unsigned w[50];
    uint64_t rng = 42;
    for (unsigned i = 0; i < 50; i++)
        w[i] = 1 + lb_rand_below(&rng, 256);
    m = members_of(50, w);
    build(&t, m, 50, 0);
    gap = worst_share_gap(&t, m, 50);
    printf("    random weights 1..256, 50 servers: worst share %.3f%% off its weight's\n",
           gap * 100);
    assert_true(gap < 0.05);
    maglev_free(&t);
    free(m);
}

/* The keys whose server (by name) differs between two tables. */
static double moved(const struct maglev *a, const struct maglev_member *ma, const struct maglev *b,
                    const struct maglev_member *mb)
{
    unsigned n = 0;
    for (unsigned k = 0; k < NKEYS; k++)
        n += strcmp(ma[owner(a, k)].name, mb[owner(b, k)].name) != 0;
    return (double)n / NKEYS;
}

/* Removing one of N servers from the configuration moves about 1/N of the keys: its own, and few
 * others. Adding one moves about 1/(N + 1): those it takes. */
static void test_keys_moved(void **state)
{
    const unsigned ns[] = {5, 10, 50};
    for (unsigned k = 0; k < 3; k++) {
        unsigned n = ns[k];
        struct maglev_member *all = members_of(n + 1, NULL);
        struct maglev full, less, more;
        build(&full, all, n, 0);
        /* without member n/2: the list closes up, so indexes change too */
        struct maglev_member *rest = calloc(n - 1, sizeof(*rest));
        for (unsigned i = 0, j = 0; i < n; i++)
            if (i != n / 2)
                rest[j++] = all[i];
        build(&less, rest, n - 1, 0);
        build(&more, all, n + 1, 0);

        double removed = moved(&full, all, &less, rest);
        double added = moved(&full, all, &more, all);
        printf("    %2u servers: one removed moves %.4f of the keys (1/N = %.4f), one added "
               "%.4f (1/(N+1) = %.4f)\n",
               n, removed, 1.0 / n, added, 1.0 / (n + 1));
        assert_true(removed >= 1.0 / n - 0.01);
        assert_true(removed <= 1.0 / n * 1.1 + 0.01);
        assert_true(added <= 1.0 / (n + 1) * 1.1 + 0.01);
        maglev_free(&full);
        maglev_free(&less);
        maglev_free(&more);
        free(rest);
        free(all);
    }
}

/* The same set of servers, listed in another order, makes the same table. */
static void test_order_independent(void **state)
{
    enum { N = 20 };
    unsigned w[N], perm[N];
    uint64_t rng = 7;
    for (unsigned i = 0; i < N; i++) {
        w[i] = 1 + lb_rand_below(&rng, 10);
        perm[i] = i;
    }
    for (unsigned i = N - 1; i > 0; i--) { /* Fisher-Yates */
        unsigned j = lb_rand_below(&rng, i + 1), x = perm[i];
        perm[i] = perm[j];
        perm[j] = x;
    }
    struct maglev_member *a = members_of(N, w), *b = calloc(N, sizeof(*b));
    for (unsigned i = 0; i < N; i++)
        b[i] = a[perm[i]];
    struct maglev ta, tb;
    build(&ta, a, N, 0);
    build(&tb, b, N, 0);
    assert_int_equal(ta.size, tb.size);
    for (uint32_t s = 0; s < ta.size; s++)
        assert_string_equal(a[maglev_owner(&ta, s)].name, b[maglev_owner(&tb, s)].name);
    for (unsigned k = 0; k < 10000; k++)
        assert_string_equal(a[owner(&ta, k)].name, b[owner(&tb, k)].name);
    maglev_free(&ta);
    maglev_free(&tb);
    free(a);
    free(b);
}

/* A previous table is copied when the inputs are the same, and not otherwise. */
static void test_reuse(void **state)
{
    unsigned w[5] = {1, 2, 3, 4, 5};
    struct maglev_member *m = members_of(5, w);
    struct maglev a, b, c;
    build(&a, m, 5, 0);
    assert_int_equal(maglev_build(&b, m, 5, 0, &a), 0);
    assert_int_equal(a.size, b.size);
    assert_memory_equal(a.narrow, b.narrow, maglev_bytes(&a));
    m[2].weight = 9; /* another weight: a table of its own */
    assert_int_equal(maglev_build(&c, m, 5, 0, &a), 0);
    assert_int_not_equal(a.inputs, c.inputs);
    assert_true(memcmp(a.narrow, c.narrow, maglev_bytes(&a)) != 0);
    maglev_free(&b);
    build(&b, m, 5, 0);
    assert_memory_equal(b.narrow, c.narrow, maglev_bytes(&b));
    maglev_free(&a);
    maglev_free(&b);
    maglev_free(&c);
    free(m);
}

static void test_no_weight_no_table(void **state)
{
    unsigned w[3] = {0, 0, 0};
    struct maglev_member *m = members_of(3, w);
    struct maglev t;
    build(&t, m, 3, 0);
    assert_int_equal(t.size, 0);
    assert_int_equal(maglev_bytes(&t), 0);
    maglev_free(&t);
    build(&t, m, 0, 0);
    assert_int_equal(t.size, 0);
    maglev_free(&t);
    free(m);
}

/* From 65535 members on, entries are 32 bits wide (weight-0 members count: indexes name them). */
static void test_wide_entries(void **state)
{
    enum { N = 65535 };
    struct maglev_member *m = calloc(N, sizeof(*m));
    assert_non_null(m);
    for (unsigned i = 0; i < N; i++)
        m[i] = (struct maglev_member){i < 1000 ? names[i] : "", i < 1000 ? addrs[i] : "", 0};
    m[N - 1] = (struct maglev_member){"last", "10.9.9.9:80", 1};
    m[7].weight = 1;
    struct maglev t;
    build(&t, m, N, 0);
    assert_null(t.narrow);
    assert_non_null(t.wide);
    assert_int_equal(t.size, maglev_table_size(0, N));
    assert_true(t.size >= N * 100);
    assert_int_equal(maglev_bytes(&t), (size_t)t.size * 4);
    unsigned count[2] = {0};
    for (uint32_t s = 0; s < t.size; s++) {
        uint32_t o = maglev_owner(&t, s);
        assert_true(o == 7 || o == N - 1);
        count[o == 7]++;
    }
    assert_in_range(count[0], t.size / 2, t.size / 2 + 1);
    maglev_free(&t);
    free(m);
}

static double build_ms(struct maglev *t, const struct maglev_member *m, unsigned n,
                       const struct maglev *prev)
{
    double start = now_s();
    assert_int_equal(maglev_build(t, m, n, 0, prev), 0);
    return (now_s() - start) * 1e3;
}

/* 1,000 servers: at least 100,003 slots, built well within a rebuild's budget. */
static void test_build_time(void **state)
{
    enum { N = 1000 };
    unsigned w[N];
    uint64_t rng = 1;
    for (unsigned i = 0; i < N; i++)
        w[i] = 1 + lb_rand_below(&rng, 256);
    struct maglev_member *m = members_of(N, w);
    struct maglev t, copy;
    double ms = build_ms(&t, m, N, NULL);
    assert_true(t.size >= 100003);
    printf("    1000 servers, weights 1..256: %u slots, %zu bytes, built in %.2f ms\n", t.size,
           maglev_bytes(&t), ms);
    assert_true(ms < 500);
    double copy_ms = build_ms(&copy, m, N, &t);
    printf("    the same, copied from the previous table: %.3f ms\n", copy_ms);
    maglev_free(&copy);
    maglev_free(&t);

    for (unsigned i = 0; i < N; i++)
        m[i].weight = 1;
    ms = build_ms(&t, m, N, NULL);
    printf("    1000 servers, equal weights: built in %.2f ms\n", ms);
    assert_true(ms < 500);
    maglev_free(&t);

    m[0].weight = 256; /* the most rounds: one heavy server, the rest light */
    ms = build_ms(&t, m, N, NULL);
    printf("    1000 servers, one of weight 256 and 999 of weight 1: built in %.2f ms\n", ms);
    assert_true(ms < 500);
    maglev_free(&t);

    ms = build_ms(&t, m, 3, NULL);
    printf("    3 servers, default size: %u slots, %zu bytes, built in %.2f ms\n", t.size,
           maglev_bytes(&t), ms);
    maglev_free(&t);
    free(m);
}

/* ---- the balancer ---- */

struct hpool {
    struct pool pool;
    struct conf_pool conf;
    struct server **servers;
    void *state;
};

/* A pool of n made-up servers (server i is made-up server perm[i]; perm NULL: i), weights w
 * (NULL: all 1), balanced by hash. */
static void hp_make(struct hpool *h, unsigned n, const unsigned *w, const unsigned *perm)
{
    memset(h, 0, sizeof(*h));
    h->servers = calloc(n, sizeof(*h->servers));
    assert_non_null(h->servers);
    for (unsigned i = 0; i < n; i++) {
        unsigned id = perm ? perm[i] : i;
        struct net_addr addr;
        const char *error;
        assert_int_equal(net_parse_addr(addrs[id], &addr, &error), 0);
        h->servers[i] = server_new("p", names[id], &addr, w ? w[i] : 1);
        assert_non_null(h->servers[i]);
    }
    h->conf.hash_table_size = CONF_HASH_TABLE_DEFAULT;
    h->pool.name = "p";
    h->pool.conf = &h->conf;
    h->pool.lb = lb_find("hash");
    assert_ptr_equal(h->pool.lb, &lb_hash);
    h->pool.servers = h->servers;
    h->pool.nservers = n;
    h->pool.lb_shared = lb_hash.rebuild(&h->pool, NULL, 0);
    assert_non_null(h->pool.lb_shared);
    h->state = lb_hash.state_new(&h->pool, 0);
    assert_non_null(h->state);
}

static void hp_rebuild(struct hpool *h, uint64_t now_ms)
{
    void *next = lb_hash.rebuild(&h->pool, h->pool.lb_shared, now_ms);
    assert_non_null(next);
    lb_hash.shared_free(h->pool.lb_shared);
    h->pool.lb_shared = next;
}

static void hp_free(struct hpool *h)
{
    lb_hash.state_free(h->state);
    lb_hash.shared_free(h->pool.lb_shared);
    for (unsigned i = 0; i < h->pool.nservers; i++)
        server_unref(h->servers[i]);
    free(h->servers);
}

static int index_of(const struct hpool *h, const struct server *s)
{
    if (!s)
        return -1;
    for (unsigned i = 0; i < h->pool.nservers; i++)
        if (h->servers[i] == s)
            return (int)i;
    fail_msg("picked a server outside the pool");
    return -1;
}

/* The server key k goes to (index in the pool; -1: none). */
static int pick_key(struct hpool *h, unsigned k, uint64_t now_ms, struct server *avoid,
                    bool *spilled)
{
    char key[32];
    struct server *avoids[1] = {avoid};
    struct lb_pick ctx = {.avoid = avoids, .navoid = avoid ? 1 : 0, .now_ms = now_ms};
    ctx.key_len = key_text(key, sizeof(key), k);
    ctx.key = key;
    struct server *s = lb_hash.pick(&h->pool, h->state, &ctx);
    if (spilled)
        *spilled = ctx.spilled;
    return index_of(h, s);
}

static void set_state(struct server *s, enum server_state st)
{
    s->h.admin = st == SERVER_MAINT ? SERVER_ADMIN_MAINT : SERVER_ADMIN_READY;
    s->h.check_down = st == SERVER_DOWN;
    s->h.ejected = st == SERVER_EJECTED;
    server_update_state(s, 0, "test");
    assert_int_equal(server_state(s), st);
}

/* The same keys reach the same servers (by name) through two pools listing them in other
 * orders. */
static void test_pool_order_independent(void **state)
{
    enum { N = 12 };
    unsigned perm[N], w[N];
    for (unsigned i = 0; i < N; i++)
        perm[i] = (i * 5 + 3) % N; /* 5 is prime to 12: a permutation */
    unsigned wa[N];
    for (unsigned i = 0; i < N; i++)
        wa[i] = 1 + i % 4;
    for (unsigned i = 0; i < N; i++)
        w[i] = wa[perm[i]]; /* each server keeps its weight */
    struct hpool a, b;
    hp_make(&a, N, wa, NULL);
    hp_make(&b, N, w, perm);
    for (unsigned k = 0; k < 10000; k++) {
        int ia = pick_key(&a, k, 0, NULL, NULL), ib = pick_key(&b, k, 0, NULL, NULL);
        assert_string_equal(a.servers[ia]->name, b.servers[ib]->name);
    }
    hp_free(&a);
    hp_free(&b);
}

/* A server going down moves its keys, spread over the others by weight, and no other key;
 * they come back when it does. */
static void test_down_moves_only_its_keys(void **state)
{
    enum { N = 10, K = 20000, DOWN = 3 };
    struct hpool h;
    hp_make(&h, N, NULL, NULL);
    int *before = calloc(K, sizeof(*before));
    unsigned got[N] = {0}, own = 0;
    for (unsigned k = 0; k < K; k++) {
        before[k] = pick_key(&h, k, 0, NULL, NULL);
        own += before[k] == DOWN;
    }
    set_state(h.servers[DOWN], SERVER_DOWN);
    for (int round = 0; round < 2; round++, hp_rebuild(&h, 0)) { /* before and after a rebuild */
        memset(got, 0, sizeof(got));
        for (unsigned k = 0; k < K; k++) {
            int now = pick_key(&h, k, 0, NULL, NULL);
            assert_int_not_equal(now, DOWN);
            if (before[k] != DOWN)
                assert_int_equal(now, before[k]);
            else
                got[now]++;
        }
    }
    double share = own / (double)(N - 1);
    for (unsigned i = 0; i < N; i++)
        if (i != DOWN) /* each takes about 1/9 of them */
            assert_in_range(got[i], (unsigned)(share * 0.7), (unsigned)(share * 1.3));
    set_state(h.servers[DOWN], SERVER_UP);
    hp_rebuild(&h, 0);
    for (unsigned k = 0; k < K; k++)
        assert_int_equal(pick_key(&h, k, 0, NULL, NULL), before[k]);
    free(before);
    hp_free(&h);
}

/* Every server's load within ceil(c/100 x T x w / W), T being the total in flight. */
static void assert_within_bound(const struct hpool *h, unsigned c)
{
    uint64_t t = 0, wsum = 0;
    for (unsigned i = 0; i < h->pool.nservers; i++) {
        t += lb_inflight(h->servers[i]);
        wsum += server_weight(h->servers[i]);
    }
    for (unsigned i = 0; i < h->pool.nservers; i++) {
        uint64_t num = (uint64_t)c * t * server_weight(h->servers[i]), den = 100 * wsum;
        uint64_t bound = num / den + (num % den != 0);
        if (lb_inflight(h->servers[i]) > bound)
            fail_msg("server %u: %u in flight, bound %llu (T = %llu)", i,
                     lb_inflight(h->servers[i]), (unsigned long long)bound, (unsigned long long)t);
    }
}

static void release_all(struct hpool *h)
{
    for (unsigned i = 0; i < h->pool.nservers; i++)
        while (lb_inflight(h->servers[i]))
            lb_hash.released(&h->pool, h->state, h->servers[i], 0, LB_OK);
}

/* One key sent again and again (never released): its server takes its bounded share, then the
 * key spills to the next servers of its sequence, and no server ever goes over the bound. */
static void test_bounded_hot_key(void **state)
{
    const unsigned mixed[8] = {1, 2, 3, 4, 1, 2, 3, 4};
    const unsigned factors[] = {125, 150, 101};
    for (unsigned f = 0; f < 3; f++) {
        for (int weighted = 0; weighted < 2; weighted++) {
            struct hpool h;
            hp_make(&h, 8, weighted ? mixed : NULL, NULL);
            h.conf.hash_balance_factor = factors[f];
            int home = pick_key(&h, 77, 0, NULL, NULL);
            unsigned first_spill = 0;
            for (unsigned r = 1; r <= 2000; r++) {
                bool spilled;
                int i = pick_key(&h, 77, 0, NULL, &spilled);
                assert_true(i >= 0);
                assert_true(spilled == (i != home));
                if (spilled && !first_spill)
                    first_spill = r;
                lb_hash.taken(&h.pool, h.state, h.servers[i]);
                assert_within_bound(&h, factors[f]);
            }
            /* spilled at its second request: T = 1, so ceil(c/100 x 2 x w / W) is 1 */
            assert_int_equal(first_spill, 2);
            /* and the home server stays full: it holds its bound, less at most one */
            uint64_t wsum = 0;
            for (unsigned i = 0; i < 8; i++)
                wsum += server_weight(h.servers[i]);
            uint64_t num = (uint64_t)factors[f] * 2000 * server_weight(h.servers[home]);
            uint64_t bound = num / (100 * wsum) + (num % (100 * wsum) != 0);
            assert_in_range(lb_inflight(h.servers[home]), bound - 1, bound);
            release_all(&h);
            hp_free(&h);
        }
    }
}

static void test_bounded_random_keys(void **state)
{
    const unsigned w[16] = {1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8};
    const unsigned factors[] = {101, 125, 200};
    for (unsigned f = 0; f < 3; f++) {
        struct hpool h;
        hp_make(&h, 16, w, NULL);
        h.conf.hash_balance_factor = factors[f];
        uint64_t rng = 99;
        unsigned spills = 0;
        for (unsigned r = 0; r < 5000; r++) {
            bool spilled;
            int i = pick_key(&h, (unsigned)lb_rand_next(&rng), 0, NULL, &spilled);
            assert_true(i >= 0);
            spills += spilled;
            lb_hash.taken(&h.pool, h.state, h.servers[i]);
            assert_within_bound(&h, factors[f]);
        }
        printf("    factor %u%%, 5000 random keys in flight: %u spilled\n", factors[f], spills);
        release_all(&h);
        hp_free(&h);
    }
}

/* Without bounded load, nothing spills and the hot key stays home. */
static void test_unbounded_hot_key(void **state)
{
    struct hpool h;
    hp_make(&h, 4, NULL, NULL);
    int home = pick_key(&h, 5, 0, NULL, NULL);
    for (unsigned r = 0; r < 100; r++) {
        bool spilled;
        assert_int_equal(pick_key(&h, 5, 0, NULL, &spilled), home);
        assert_false(spilled);
        lb_hash.taken(&h.pool, h.state, h.servers[home]);
    }
    assert_int_equal(lb_inflight(h.servers[home]), 100);
    release_all(&h);
    assert_int_equal(lb_inflight(h.servers[home]), 0);
    hp_free(&h);
}

/* A request without a key takes turns: round-robin by weight. */
static void test_no_key_round_robin(void **state)
{
    unsigned w[3] = {1, 1, 2};
    struct hpool h;
    hp_make(&h, 3, w, NULL);
    unsigned count[3] = {0};
    for (unsigned r = 0; r < 400; r++) {
        struct lb_pick ctx = {0};
        struct server *s = lb_hash.pick(&h.pool, h.state, &ctx);
        count[index_of(&h, s)]++;
    }
    assert_int_equal(count[0], 100);
    assert_int_equal(count[1], 100);
    assert_int_equal(count[2], 200);
    /* down servers are skipped */
    set_state(h.servers[2], SERVER_DOWN);
    for (unsigned r = 0; r < 10; r++) {
        struct lb_pick ctx = {0};
        assert_int_not_equal(index_of(&h, lb_hash.pick(&h.pool, h.state, &ctx)), 2);
    }
    hp_free(&h);
}

/* A server that failed the request is avoided: the key goes to the next server of its sequence,
 * the same every time. */
static void test_avoid(void **state)
{
    struct hpool h;
    hp_make(&h, 5, NULL, NULL);
    for (unsigned k = 0; k < 1000; k++) {
        int home = pick_key(&h, k, 0, NULL, NULL);
        int next = pick_key(&h, k, 0, h.servers[home], NULL);
        assert_true(next >= 0);
        assert_int_not_equal(next, home);
        assert_int_equal(pick_key(&h, k, 0, h.servers[home], NULL), next);
    }
    hp_free(&h);
}

/* Every server down: nobody, unless in panic mode, where keys hash as if all were up. */
static void test_panic(void **state)
{
    struct hpool h;
    hp_make(&h, 4, NULL, NULL);
    int *home = calloc(1000, sizeof(*home));
    for (unsigned k = 0; k < 1000; k++)
        home[k] = pick_key(&h, k, 0, NULL, NULL);
    for (unsigned i = 0; i < 4; i++)
        set_state(h.servers[i], i == 3 ? SERVER_MAINT : SERVER_DOWN);
    hp_rebuild(&h, 0);
    assert_int_equal(pick_key(&h, 1, 0, NULL, NULL), -1);
    for (unsigned k = 0; k < 1000; k++) {
        char key[32];
        struct lb_pick ctx = {.panic = true, .key = key};
        ctx.key_len = key_text(key, sizeof(key), k);
        int i = index_of(&h, lb_hash.pick(&h.pool, h.state, &ctx));
        assert_true(i >= 0 && i != 3); /* maintenance stays out even then */
        if (home[k] != 3)
            assert_int_equal(i, home[k]);
    }
    /* through the request path's helper, with when_all_down: use-all */
    h.conf.when_all_down = CONF_ALL_DOWN_USE_ALL;
    struct lb_pick ctx = {.key = "x", .key_len = 1};
    assert_non_null(lb_pick_server(&h.pool, h.state, &ctx));
    assert_true(ctx.panic);
    free(home);
    hp_free(&h);
}

/* A weight-0 server owns no slot and is never picked, with or without a key. */
static void test_weight_zero(void **state)
{
    unsigned w[4] = {1, 0, 2, 1};
    struct hpool h;
    hp_make(&h, 4, w, NULL);
    for (unsigned k = 0; k < 10000; k++)
        assert_int_not_equal(pick_key(&h, k, 0, NULL, NULL), 1);
    for (unsigned r = 0; r < 100; r++) {
        struct lb_pick ctx = {0};
        assert_int_not_equal(index_of(&h, lb_hash.pick(&h.pool, h.state, &ctx)), 1);
    }
    hp_free(&h);

    unsigned none[2] = {0, 0};
    hp_make(&h, 2, none, NULL);
    assert_int_equal(lb_hash_table_size(&h.pool), 0);
    assert_int_equal(pick_key(&h, 1, 0, NULL, NULL), -1);
    hp_free(&h);
}

/* A server in slow start takes the share of its keys its weight has reached, the same keys at
 * every pick, and keeps them as it grows; other servers' keys do not move. */
static void test_slow_start(void **state)
{
    enum { N = 4, K = 40000, RAMP = 2 };
    struct hpool h;
    hp_make(&h, N, NULL, NULL);
    h.conf.slow_start_ms = 10000;
    int *home = calloc(K, sizeof(*home));
    bool *taken = calloc(K, sizeof(*taken));
    for (unsigned k = 0; k < K; k++)
        home[k] = pick_key(&h, k, 200000, NULL, NULL);   /* nobody ramping */
    atomic_store(&h.servers[RAMP]->up_since_ms, 100000); /* came back at t = 100 s */
    const uint64_t at[] = {100000, 102000, 104000, 107000, 110000};
    const double expect[] = {0, 0.2, 0.4, 0.7, 1};
    for (unsigned j = 0; j < 5; j++) {
        hp_rebuild(&h, at[j]);
        unsigned own = 0, kept = 0;
        for (unsigned k = 0; k < K; k++) {
            int i = pick_key(&h, k, at[j], NULL, NULL);
            if (home[k] != RAMP) {
                assert_int_equal(i, home[k]);
                continue;
            }
            own++;
            if (i == RAMP) {
                kept++;
                taken[k] = true;
            } else {
                assert_false(taken[k]); /* once it had the key, it keeps it */
            }
        }
        double got = (double)kept / own;
        printf("    slow start at %.0f%%: %.3f of its keys\n", expect[j] * 100, got);
        assert_true(got >= expect[j] - 0.03 && got <= expect[j] + 0.03);
    }
    assert_true(lb_hash.ramping(h.pool.lb_shared) == false);
    free(home);
    free(taken);
    hp_free(&h);
}

/* The table's size and memory, for a bench; a pool balanced otherwise has none. */
static void test_accessors(void **state)
{
    struct hpool h;
    hp_make(&h, 3, NULL, NULL);
    assert_int_equal(lb_hash_table_size(&h.pool), CONF_HASH_TABLE_DEFAULT);
    assert_int_equal(lb_hash_table_bytes(&h.pool), CONF_HASH_TABLE_DEFAULT * sizeof(uint16_t));
    assert_true(lb_follows_requests(&h.pool));
    assert_true(lb_rebuilds(&h.pool));
    const struct lb_ops *ops = h.pool.lb;
    h.pool.lb = &lb_round_robin;
    assert_int_equal(lb_hash_table_size(&h.pool), 0);
    assert_int_equal(lb_hash_table_bytes(&h.pool), 0);
    h.pool.lb = ops;
    hp_free(&h);
}

/* What a pick costs, with 1,000 servers: printed, not asserted. */
static void test_pick_cost(void **state)
{
    enum { N = 1000, PICKS = 1000000 };
    struct hpool h;
    hp_make(&h, N, NULL, NULL);
    for (unsigned bounded = 0; bounded < 2; bounded++) {
        h.conf.hash_balance_factor = bounded ? 125 : 0;
        unsigned picks = bounded ? PICKS / 20 : PICKS, sink = 0;
        double start = now_s();
        for (unsigned k = 0; k < picks; k++) {
            uint32_t ip = 0x0a000000u + k * 2654435761u; /* client addresses, as TCP hashes */
            struct lb_pick ctx = {.key = &ip, .key_len = sizeof(ip)};
            sink += lb_hash.pick(&h.pool, h.state, &ctx)->slot;
        }
        double ns = (now_s() - start) * 1e9 / picks;
        printf("    pick with a 4-byte key, %u servers%s: %.0f ns (%u)\n", N,
               bounded ? ", bounded load (a scan of the pool)" : "", ns, sink % 2);
    }
    hp_free(&h);
}

int main(void)
{
    make_names();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sizes),
        cmocka_unit_test(test_balance_equal_weights),
        cmocka_unit_test(test_balance_mixed_weights),
        cmocka_unit_test(test_keys_moved),
        cmocka_unit_test(test_order_independent),
        cmocka_unit_test(test_reuse),
        cmocka_unit_test(test_no_weight_no_table),
        cmocka_unit_test(test_wide_entries),
        cmocka_unit_test(test_build_time),
        cmocka_unit_test(test_pool_order_independent),
        cmocka_unit_test(test_down_moves_only_its_keys),
        cmocka_unit_test(test_bounded_hot_key),
        cmocka_unit_test(test_bounded_random_keys),
        cmocka_unit_test(test_unbounded_hot_key),
        cmocka_unit_test(test_no_key_round_robin),
        cmocka_unit_test(test_avoid),
        cmocka_unit_test(test_panic),
        cmocka_unit_test(test_weight_zero),
        cmocka_unit_test(test_slow_start),
        cmocka_unit_test(test_accessors),
        cmocka_unit_test(test_pick_cost),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
