/*
 * test_lb.c - smooth weighted round-robin: proportions, interleaving, and skipping servers that
 * are not usable.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "conf.h"
#include "lb.h"

#define MAXS 8

struct fixture {
    struct pool pool;
    struct server *servers[MAXS];
    void *state;
};

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
    f->state = f->pool.lb->state_new(&f->pool, seed);
    assert_non_null(f->state);
}

static void free_pool(struct fixture *f)
{
    f->pool.lb->state_free(f->state);
    for (unsigned i = 0; i < f->pool.nservers; i++)
        server_unref(f->servers[i]);
}

static int pick_index(struct fixture *f, struct server *avoid)
{
    struct server *avoids[1] = {avoid};
    const struct lb_pick ctx = {.avoid = avoids, .navoid = avoid ? 1 : 0};
    struct server *s = f->pool.lb->pick(&f->pool, f->state, &ctx);
    if (!s)
        return -1;
    for (unsigned i = 0; i < f->pool.nservers; i++)
        if (f->servers[i] == s)
            return (int)i;
    fail_msg("picked a server outside the pool");
    return -1;
}

/* Puts a server in a state the way the health thread would: through its inputs. */
static void set_state(struct server *s, enum server_state st)
{
    s->h.admin = st == SERVER_MAINT      ? SERVER_ADMIN_MAINT
                 : st == SERVER_DRAINING ? SERVER_ADMIN_DRAIN
                                         : SERVER_ADMIN_READY;
    s->h.check_down = st == SERVER_DOWN;
    s->h.ejected = st == SERVER_EJECTED;
    server_update_state(s, 0, "test");
    assert_int_equal(server_state(s), st);
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
    for (int start = 0; start + 4 <= 400; start++) {
        int count[3] = {0};
        for (int k = 0; k < 4; k++)
            count[seq[start + k]]++;
        assert_int_equal(count[0], 1);
        assert_int_equal(count[1], 1);
        assert_int_equal(count[2], 2);
    }
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
    for (int i = 0; i < 20; i++)
        assert_int_equal(pick_index(&f, NULL), 0);
    /* avoid excludes the only candidate: nothing */
    assert_int_equal(pick_index(&f, f.servers[0]), -1);
    set_state(f.servers[0], SERVER_MAINT);
    assert_int_equal(pick_index(&f, NULL), -1);
    /* back up: shares even out again */
    set_state(f.servers[0], SERVER_UP);
    set_state(f.servers[1], SERVER_UP);
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
    const struct lb_pick normal = {0}, panic = {.panic = true};
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
        const struct lb_pick ctx = {.now_ms = t};
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

static void test_seeds_start_apart(void **state)
{
    unsigned w[] = {1, 1, 1};
    struct fixture a, b;
    make_pool(&a, w, 3, 0);
    make_pool(&b, w, 3, 1);
    assert_int_not_equal(pick_index(&a, NULL), pick_index(&b, NULL));
    free_pool(&a);
    free_pool(&b);
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
    };
    return cmocka_run_group_tests_name("lb", tests, NULL, NULL);
}
