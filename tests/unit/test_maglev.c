/*
 * test_maglev.c - `balance: hash`: the Maglev table on its own (maglev.h: sizes, shares of slots
 * by weight, keys moved when a server leaves or joins the configuration, independence from the
 * servers' order, build time and memory for 1,000 servers).
 *
 * Every key and weight comes from fixed seeds; the only timing assert is a generous bound on the
 * build time. The measured figures are printed (keys moved, deviations, build time).
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
    /* the configured size, unless 100 slots per member need more */
    assert_int_equal(maglev_table_size(0, 3), CONF_HASH_TABLE_DEFAULT);
    assert_int_equal(maglev_table_size(101, 1), 101);
    assert_int_equal(maglev_table_size(101, 2), 211);
    assert_int_equal(maglev_table_size(655373, 1000), 655373);
    assert_int_equal(maglev_table_size(0, 1000), 100003);
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
    assert_int_equal(t.size, maglev_next_prime(N * 100));
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
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
