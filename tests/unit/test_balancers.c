/*
 * test_balancers.c - the load-aware balancers and the rotation they share: least-conn, random
 * (power of choices), peak-ewma (its arithmetic, ewma.h, and its picks), and rotation.h's layout
 * and best-of draws.
 *
 * Everything runs on one thread with fixed seeds: the random generators are seeded from the
 * clock, so each test overwrites the seed after state_new, and a share measured over many picks
 * is then the same on every run. The bounds stated on shares still hold for any seed (several
 * standard deviations wide), so they test the algorithm, not the seed.
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
#include "lb/ewma.h"
#include "lb/lb.h"
#include "lb/load.h"
#include "lb/rotation.h"

#define MAXS       16
#define SEED       0x0123456789abcdefull
#define PICKS      30000
#define T_MS       1000000u /* an arbitrary "now" for the tests that make up their times */
#define DEFAULT_MS 7u       /* the pools' ewma_default_ms: not the configuration's default (10) */

#include "lb_fixture.h"

static void rebuild(struct fixture *f)
{
    rebuild_at(f, T_MS);
}

/* A pool of n servers (s0, s1, ... at 127.0.0.1:9000 + i) balanced by algorithm, with the
 * configuration's defaults, rebuilt at T_MS and one thread's state with a fixed seed. */
static void make_pool(struct fixture *f, const char *algorithm, const unsigned *weights, unsigned n)
{
    memset(f, 0, sizeof(*f));
    assert_true(n <= MAXS);
    f->pc.name = "p";
    f->pc.choices = 2;
    f->pc.ewma_decay_ms = 10000;
    f->pc.ewma_default_ms = DEFAULT_MS;
    for (unsigned i = 0; i < n; i++) {
        char name[16], address[32];
        struct net_addr addr;
        const char *why;
        snprintf(name, sizeof(name), "s%u", i);
        snprintf(address, sizeof(address), "127.0.0.1:%u", 9000 + i);
        assert_int_equal(net_parse_addr(address, &addr, &why), 0);
        f->servers[i] = server_new("p", name, &addr, weights[i]);
        assert_non_null(f->servers[i]);
    }
    f->pool.name = "p";
    f->pool.conf = &f->pc;
    f->pool.lb = lb_find(algorithm);
    assert_non_null(f->pool.lb);
    f->pool.servers = f->servers;
    f->pool.nservers = n;
    rebuild(f);
    f->state = f->pool.lb->state_new(&f->pool, 0);
    assert_non_null(f->state);
    /* random and peak-ewma seed their generator (the first member of their state) from the
     * clock: a fixed seed instead */
    if (f->pool.lb == &lb_random || f->pool.lb == &lb_peak_ewma)
        ((struct lb_rng_state *)f->state)->rng = SEED;
}

static int pick_ctx(struct fixture *f, struct lb_pick *ctx)
{
    return index_of(f, f->pool.lb->pick(&f->pool, f->state, ctx));
}

/* A pick at T_MS, avoiding `avoid` if not NULL. */
static int pick(struct fixture *f, struct server *avoid)
{
    struct server *avoids[1] = {avoid};
    struct lb_pick ctx = {.avoid = avoids, .navoid = avoid ? 1 : 0, .now_ms = T_MS};
    return pick_ctx(f, &ctx);
}

/* Counts the servers of `picks` picks (nothing taken: loads stay as they are). */
static void count_picks(struct fixture *f, int picks, int *count)
{
    memset(count, 0, MAXS * sizeof(*count));
    for (int i = 0; i < picks; i++) {
        int k = pick(f, NULL);
        assert_true(k >= 0);
        count[k]++;
    }
}

static void set_inflight(struct server *s, unsigned n)
{
    atomic_store(&s->load.inflight, n);
}

/* ==== least-conn ==== */

/* The fewest in flight wins, wherever the scan starts. */
static void test_lc_fewest_in_flight(void **state)
{
    unsigned w[] = {1, 1, 1, 1};
    struct fixture f;
    make_pool(&f, "least-conn", w, 4);
    const unsigned load[] = {3, 1, 2, 5};
    for (unsigned i = 0; i < 4; i++)
        set_inflight(f.servers[i], load[i]);
    for (int i = 0; i < 8; i++) /* twice round: every start */
        assert_int_equal(pick(&f, NULL), 1);
    set_inflight(f.servers[1], 4);
    for (int i = 0; i < 8; i++)
        assert_int_equal(pick(&f, NULL), 2);
    free_pool(&f);
}

/* An idle pool is served in rotation, each server once in every 3 picks, whatever the seed. */
static void test_lc_ties_rotate(void **state)
{
    unsigned w[] = {1, 1, 1};
    for (unsigned seed = 0; seed < 5; seed++) {
        struct fixture f;
        make_pool(&f, "least-conn", w, 3);
        f.pool.lb->state_free(f.state);
        f.state = f.pool.lb->state_new(&f.pool, seed);
        int seq[300];
        for (int i = 0; i < 300; i++)
            seq[i] = pick(&f, NULL);
        assert_each_window(seq, 300, 3, (const int[]){1, 1, 1}, 3);
        /* equal loads other than 0 tie the same way */
        for (unsigned i = 0; i < 3; i++)
            set_inflight(f.servers[i], 7);
        int count[3] = {0};
        for (int i = 0; i < 30; i++)
            count[pick(&f, NULL)]++;
        for (int k = 0; k < 3; k++)
            assert_int_equal(count[k], 10);
        /* one server out: the other two still alternate (a scan that started one place further
         * each time would give the server after s2 the starts that land on s2) */
        set_state(f.servers[2], SERVER_DOWN);
        int prev = pick(&f, NULL);
        for (int i = 0; i < 30; i++) {
            int got = pick(&f, NULL);
            assert_int_equal(got, 1 - prev);
            prev = got;
        }
        free_pool(&f);
    }
}

/*
 * Weights 1 and 2: the heavier server takes twice the in-flight requests before losing. With
 * (in flight + 1) / weight compared, s1 at l2 beats s0 at l1 while l2 <= 2 l1, ties at
 * l2 = 2 l1 + 1 (then each wins in turn) and loses from l2 = 2 l1 + 2.
 */
static void test_lc_weights(void **state)
{
    unsigned w[] = {1, 2};
    struct fixture f;
    make_pool(&f, "least-conn", w, 2);
    set_inflight(f.servers[0], 3);
    for (unsigned l2 = 0; l2 <= 10; l2++) {
        set_inflight(f.servers[1], l2);
        int a = pick(&f, NULL), b = pick(&f, NULL); /* two picks: both starts of the scan */
        if (l2 <= 6) {
            assert_int_equal(a, 1);
            assert_int_equal(b, 1);
        } else if (l2 == 7) {
            assert_int_not_equal(a, b);
        } else {
            assert_int_equal(a, 0);
            assert_int_equal(b, 0);
        }
    }
    /* Requests that are taken and never end: after every 3 of them, s0 holds k and s1 2k. */
    set_inflight(f.servers[0], 0);
    set_inflight(f.servers[1], 0);
    for (unsigned k = 1; k <= 50; k++) {
        for (int i = 0; i < 3; i++) {
            int got = pick(&f, NULL);
            assert_true(got >= 0);
            lb_taken(&f.pool, f.state, f.servers[got]);
        }
        assert_int_equal(lb_inflight(f.servers[0]), k);
        assert_int_equal(lb_inflight(f.servers[1]), 2 * k);
    }
    free_pool(&f);
}

/* Down, draining, in maintenance, ejected, weight 0 and avoided servers are never picked, however
 * idle; the only usable server takes everything, however loaded. */
static void test_lc_skips(void **state)
{
    unsigned w[] = {1, 1, 1, 1, 1, 0, 1};
    struct fixture f;
    make_pool(&f, "least-conn", w, 7);
    set_state(f.servers[1], SERVER_DOWN);
    set_state(f.servers[2], SERVER_DRAINING);
    set_state(f.servers[3], SERVER_MAINT);
    set_state(f.servers[4], SERVER_EJECTED);
    set_inflight(f.servers[0], 1000);
    for (int i = 0; i < 20; i++)
        assert_int_equal(pick(&f, f.servers[6]), 0);
    /* without the avoid, the idle s6 wins */
    for (int i = 0; i < 20; i++)
        assert_int_equal(pick(&f, NULL), 6);
    /* avoiding the last candidate: nobody */
    struct server *both[2] = {f.servers[0], f.servers[6]};
    struct lb_pick ctx = {.avoid = both, .navoid = 2, .now_ms = T_MS};
    for (int i = 0; i < 7; i++)
        assert_int_equal(pick_ctx(&f, &ctx), -1);
    free_pool(&f);
}

/* When nothing is up, panic mode takes the down and ejected servers (fewest in flight first),
 * never those in maintenance or draining; lb_pick_server() turns it on when the pool says
 * use-all. */
static void test_lc_panic(void **state)
{
    unsigned w[] = {1, 1, 1, 1};
    struct fixture f;
    make_pool(&f, "least-conn", w, 4);
    set_state(f.servers[0], SERVER_DOWN);
    set_state(f.servers[1], SERVER_EJECTED);
    set_state(f.servers[2], SERVER_MAINT);
    set_state(f.servers[3], SERVER_DRAINING);
    struct lb_pick normal = {.now_ms = T_MS}, panic = {.panic = true, .now_ms = T_MS};
    assert_int_equal(pick_ctx(&f, &normal), -1);
    int count[4] = {0};
    for (int i = 0; i < 10; i++)
        count[pick_ctx(&f, &panic)]++;
    assert_int_equal(count[0], 5);
    assert_int_equal(count[1], 5);
    set_inflight(f.servers[0], 2);
    for (int i = 0; i < 4; i++)
        assert_int_equal(pick_ctx(&f, &panic), 1);

    struct lb_pick ctx = {.now_ms = T_MS};
    assert_null(lb_pick_server(&f.pool, f.state, &ctx)); /* reject: the default */
    assert_false(ctx.panic);
    f.pc.when_all_down = CONF_ALL_DOWN_USE_ALL;
    assert_ptr_equal(lb_pick_server(&f.pool, f.state, &ctx), f.servers[1]);
    assert_true(ctx.panic);
    free_pool(&f);
}

/* taken and released move the server's count, which every thread shares; nothing to rebuild. */
static void test_lc_taken_released(void **state)
{
    unsigned w[] = {1, 1};
    struct fixture f;
    make_pool(&f, "least-conn", w, 2);
    assert_true(lb_follows_requests(&f.pool));
    assert_false(lb_rebuilds(&f.pool));
    void *other = f.pool.lb->state_new(&f.pool, 1); /* another thread */
    lb_taken(&f.pool, f.state, f.servers[0]);
    lb_taken(&f.pool, other, f.servers[0]);
    lb_taken(&f.pool, f.state, f.servers[1]);
    assert_int_equal(lb_inflight(f.servers[0]), 2);
    assert_int_equal(lb_inflight(f.servers[1]), 1);
    for (int i = 0; i < 4; i++)
        assert_int_equal(pick(&f, NULL), 1);
    lb_released(&f.pool, other, f.servers[0], 100, LB_OK);
    lb_released(&f.pool, f.state, f.servers[0], 100, LB_FAILED);
    assert_int_equal(lb_inflight(f.servers[0]), 0);
    assert_int_equal(lb_inflight(f.servers[1]), 1);
    for (int i = 0; i < 4; i++)
        assert_int_equal(pick(&f, NULL), 0);
    f.pool.lb->state_free(other);
    free_pool(&f);
}

/* ==== random: the power of two choices ==== */

/* Nothing in flight: each pick is the first server drawn, so shares follow the weights. Bound:
 * 1.5 points of the picks, over five standard deviations at 30,000 picks. */
static void test_random_shares_follow_weights(void **state)
{
    unsigned w[] = {1, 2, 5};
    struct fixture f;
    make_pool(&f, "random", w, 3);
    assert_true(lb_follows_requests(&f.pool));
    assert_true(lb_rebuilds(&f.pool));
    int count[MAXS];
    count_picks(&f, PICKS, count);
    for (int i = 0; i < 3; i++)
        assert_in_range(count[i], PICKS * w[i] / 8 - PICKS * 15 / 1000,
                        PICKS * w[i] / 8 + PICKS * 15 / 1000);
    free_pool(&f);
}

/*
 * Three servers, one heavily loaded: the two draws are distinct servers, so the loaded one loses
 * every comparison and is only picked when every draw of a pick (2 x 2 + 4 = 8) names it:
 * (1/3)^8, about 5 in 30,000. Were both draws allowed to name one server, it would take 1/9 of
 * the picks (3,333).
 */
static void test_random_loaded_server_starves(void **state)
{
    unsigned w[] = {1, 1, 1};
    struct fixture f;
    make_pool(&f, "random", w, 3);
    set_inflight(f.servers[0], 1000);
    int count[MAXS];
    count_picks(&f, PICKS, count);
    assert_in_range(count[0], 0, 30);
    assert_in_range(count[1], PICKS / 2 - 450, PICKS / 2 + 450);
    assert_in_range(count[2], PICKS / 2 - 450, PICKS / 2 + 450);

    /* Taken and never released: the loads stay close together. */
    set_inflight(f.servers[0], 0);
    unsigned spread = 0;
    for (int i = 0; i < 3000; i++) {
        int k = pick(&f, NULL);
        lb_taken(&f.pool, f.state, f.servers[k]);
        unsigned lo = UINT32_MAX, hi = 0;
        for (int j = 0; j < 3; j++) {
            unsigned l = lb_inflight(f.servers[j]);
            lo = l < lo ? l : lo;
            hi = l > hi ? l : hi;
        }
        spread = hi - lo > spread ? hi - lo : spread;
    }
    assert_in_range(spread, 1, 6);
    for (int j = 0; j < 3; j++)
        assert_in_range(lb_inflight(f.servers[j]), 990, 1010);
    for (int j = 0; j < 3; j++)
        while (lb_inflight(f.servers[j]))
            lb_released(&f.pool, f.state, f.servers[j], 10, LB_OK);
    free_pool(&f);
}

/* Down, draining, in maintenance, ejected, weight 0 and avoided servers are never picked. */
static void test_random_skips(void **state)
{
    unsigned w[] = {1, 1, 1, 1, 1, 0, 1};
    struct fixture f;
    make_pool(&f, "random", w, 7);
    set_state(f.servers[1], SERVER_DOWN);
    set_state(f.servers[2], SERVER_DRAINING);
    set_state(f.servers[3], SERVER_MAINT);
    set_state(f.servers[4], SERVER_EJECTED);
    rebuild(&f);
    set_inflight(f.servers[0], 1000);
    for (int i = 0; i < 1000; i++)
        assert_int_equal(pick(&f, f.servers[6]), 0);
    int count[MAXS];
    count_picks(&f, 1000, count);
    assert_int_equal(count[0] + count[6], 1000);
    assert_in_range(count[0], 0, 15); /* 1/2^8 of the picks (4): every draw named s0 */
    struct server *both[2] = {f.servers[0], f.servers[6]};
    struct lb_pick ctx = {.avoid = both, .navoid = 2, .now_ms = T_MS};
    for (int i = 0; i < 10; i++)
        assert_int_equal(pick_ctx(&f, &ctx), -1);
    free_pool(&f);
}

/* States that changed after the rotation was built (the control thread has not rebuilt it yet):
 * the rotation's turns of unusable servers are passed over, and a server missing from it is
 * still found by the fallback scan. */
static void test_random_stale_rotation(void **state)
{
    unsigned w[] = {1, 1, 1, 1};
    struct fixture f;
    make_pool(&f, "random", w, 4);
    set_state(f.servers[1], SERVER_DOWN);
    set_state(f.servers[2], SERVER_MAINT);
    set_state(f.servers[3], SERVER_DRAINING);
    for (int i = 0; i < 3000; i++)
        assert_int_equal(pick(&f, NULL), 0);
    set_state(f.servers[0], SERVER_EJECTED);
    for (int i = 0; i < 100; i++)
        assert_int_equal(pick(&f, NULL), -1);

    /* Rebuilt with s0 alone up... */
    set_state(f.servers[0], SERVER_UP);
    rebuild(&f);
    /* ...then s0 goes down and s1 comes back: no turn names s1, yet it is picked. */
    set_state(f.servers[0], SERVER_DOWN);
    set_state(f.servers[1], SERVER_UP);
    for (int i = 0; i < 100; i++)
        assert_int_equal(pick(&f, NULL), 1);
    free_pool(&f);
}

/* Every server down: no turns at all. Panic mode picks among the down and ejected servers through
 * the fallback scan, never the one in maintenance. Idle, the two share evenly: s0 does not also
 * take the turns of s2, which sits before it in the scan's wrap-around. */
static void test_random_panic(void **state)
{
    unsigned w[] = {1, 1, 1};
    struct fixture f;
    make_pool(&f, "random", w, 3);
    set_state(f.servers[0], SERVER_DOWN);
    set_state(f.servers[1], SERVER_EJECTED);
    set_state(f.servers[2], SERVER_MAINT);
    rebuild(&f);
    assert_int_equal(((struct lb_rotation *)f.pool.lb_shared)->len, 0);
    struct lb_pick normal = {.now_ms = T_MS}, panic = {.panic = true, .now_ms = T_MS};
    assert_int_equal(pick_ctx(&f, &normal), -1);
    int count[3] = {0};
    for (int i = 0; i < 1000; i++)
        count[pick_ctx(&f, &panic)]++;
    assert_in_range(count[0], 400, 600);
    assert_in_range(count[1], 400, 600);
    assert_int_equal(count[2], 0);
    set_inflight(f.servers[1], 1); /* the scan compares loads too */
    for (int i = 0; i < 100; i++)
        assert_int_equal(pick_ctx(&f, &panic), 0);

    struct lb_pick ctx = {.now_ms = T_MS};
    assert_null(lb_pick_server(&f.pool, f.state, &ctx));
    f.pc.when_all_down = CONF_ALL_DOWN_USE_ALL;
    assert_ptr_equal(lb_pick_server(&f.pool, f.state, &ctx), f.servers[0]);
    assert_true(ctx.panic);
    free_pool(&f);
}

static void test_random_taken_released(void **state)
{
    unsigned w[] = {1, 1};
    struct fixture f;
    make_pool(&f, "random", w, 2);
    lb_taken(&f.pool, f.state, f.servers[1]);
    lb_taken(&f.pool, f.state, f.servers[1]);
    assert_int_equal(lb_inflight(f.servers[0]), 0);
    assert_int_equal(lb_inflight(f.servers[1]), 2);
    lb_released(&f.pool, f.state, f.servers[1], 100, LB_FAILED);
    assert_int_equal(lb_inflight(f.servers[1]), 1);
    lb_released(&f.pool, f.state, f.servers[1], 100, LB_OK);
    assert_int_equal(lb_inflight(f.servers[1]), 0);
    free_pool(&f);
}

/* ==== peak-ewma ==== */

static bool near(double a, double b)
{
    double d = a - b;
    return (d < 0 ? -d : d) <= 1e-9 * (b < 0 ? -b : b) + 1e-9;
}

/* The arithmetic of ewma.h, with made-up times (tau = 1 ms = 1000 us, estimates in ns). */
static void test_ewma_arithmetic(void **state)
{
    const double tau = 1000, e = 1e6;
    const uint64_t t0 = 5000;
    /* worth: decays as exp(-dt / tau); no time passed, or a time before the stamp: e itself */
    assert_true(near(lb_ewma_worth(e, t0, t0, tau), e));
    assert_true(near(lb_ewma_worth(e, t0, t0 - 100, tau), e));
    assert_true(near(lb_ewma_worth(e, t0, t0 + 1000, tau), e * exp(-1)));
    assert_true(near(lb_ewma_worth(e, t0, t0 + 3000, tau), e * exp(-3)));
    assert_true(lb_ewma_worth(0, t0, t0 + 3000, tau) == 0);

    /* no estimate yet: the sample becomes it, whatever the times */
    assert_true(lb_ewma_update(0, 0, t0, tau, 1234) == 1234);
    assert_true(lb_ewma_update(0, t0, t0 + 99999, tau, 5) == 5);

    /* a peak (at or above the estimate's current worth) replaces it at once */
    assert_true(lb_ewma_update(e, t0, t0, tau, 2e6) == 2e6);
    assert_true(lb_ewma_update(e, t0, t0 + 1000, tau, e * 0.5) == e * 0.5); /* worth e/2.7 */
    assert_true(lb_ewma_update(e, t0, t0 + 1000, tau, e * exp(-1)) == e * exp(-1));

    /* a lower sample pulls the current worth toward itself by 1 - exp(-dt / tau) */
    for (uint64_t dt = 0; dt <= 5000; dt += 250) {
        double w = exp(-(double)dt / tau), worth = e * w, x = worth / 4;
        double got = lb_ewma_update(e, t0, t0 + dt, tau, x);
        assert_true(near(got, worth + (x - worth) * (1 - w)));
        assert_true(got >= x && got <= worth);
    }
    /* half-life: dt = tau ln 2 halves the worth and meets the sample halfway */
    double half = lb_ewma_update(e, t0, t0 + (uint64_t)(tau * log(2) + 0.5), tau, 1e5);
    assert_true(half > 0.2999e6 && half < 0.3001e6); /* 500k + (100k - 500k) / 2 */
    /* at the same instant a lower sample changes nothing: only a peak acts at once */
    assert_true(lb_ewma_update(e, t0, t0, tau, 1) == e);
}

/* Sets a server's estimate as released() would have at T_MS. */
static void set_estimate(struct server *s, double ns)
{
    atomic_store(&s->load.ewma_ns, (uint64_t)ns);
    atomic_store(&s->load.ewma_stamp_us, (uint64_t)T_MS * 1000u);
}

/* A slow server (estimate 50 ms against 1 ms) gets nothing while the others are idle; once they
 * are busy enough, it gets its turn again. */
static void test_ewma_avoids_slow_server(void **state)
{
    unsigned w[] = {1, 1, 1};
    struct fixture f;
    make_pool(&f, "peak-ewma", w, 3);
    assert_true(lb_follows_requests(&f.pool));
    assert_true(lb_rebuilds(&f.pool));
    set_estimate(f.servers[0], 50e6);
    set_estimate(f.servers[1], 1e6);
    set_estimate(f.servers[2], 1e6);
    rebuild(&f);
    int count[MAXS];
    count_picks(&f, PICKS, count);
    assert_in_range(count[0], 0, 30);
    /* cost = estimate x (in flight + 1): 1 ms x 60 beats 50 ms x 1 */
    set_inflight(f.servers[1], 59);
    set_inflight(f.servers[2], 59);
    count_picks(&f, PICKS, count);
    assert_in_range(count[0], PICKS * 2 / 3 - 450, PICKS * 2 / 3 + 450);
    free_pool(&f);
}

/*
 * A server without an estimate is costed at the pool's typical answer as this thread saw it (a
 * running average of the answers it released), or at ewma_default_ms before it saw any. With s0
 * at 1 ms, s1 at 30 ms and s2 without one (7 ms, the default): s0 wins every pair it is in, s2
 * beats s1: 2/3, 0, 1/3, and still with one request in flight (14 ms). Once the thread has seen
 * answers of 40 ms, s2 is costed at about that, and one request in flight puts it behind s1.
 */
static void test_ewma_default_estimate(void **state)
{
    unsigned w[] = {1, 1, 1};
    struct fixture f;
    make_pool(&f, "peak-ewma", w, 3);
    for (int i = 0; i < 3; i++) /* none has an estimate yet */
        assert_true(lb_latency_estimate_ms(&f.pool, f.servers[i], T_MS) == 0);
    set_estimate(f.servers[0], 1e6);
    set_estimate(f.servers[1], 30e6);
    assert_true(near(lb_latency_estimate_ms(&f.pool, f.servers[0], T_MS), 1));
    /* 10 s later (tau) an estimate is worth 1/e of itself */
    assert_true(near(lb_latency_estimate_ms(&f.pool, f.servers[0], T_MS + 10000), exp(-1)));
    int count[MAXS];
    count_picks(&f, PICKS, count);
    assert_in_range(count[0], PICKS * 2 / 3 - 450, PICKS * 2 / 3 + 450);
    assert_in_range(count[1], 0, 30);
    assert_in_range(count[2], PICKS / 3 - 450, PICKS / 3 + 450);
    set_inflight(f.servers[2], 1);
    count_picks(&f, PICKS, count);
    assert_in_range(count[1], 0, 30);

    /* the thread sees 200 answers of 40 ms (from s1, whose estimate they set) */
    set_inflight(f.servers[2], 0);
    for (int i = 0; i < 200; i++) {
        lb_taken(&f.pool, f.state, f.servers[1]);
        lb_released(&f.pool, f.state, f.servers[1], 40000, LB_OK);
    }
    set_estimate(f.servers[1], 30e6);
    set_inflight(f.servers[2], 1); /* about 2 x 39 ms against 30 */
    count_picks(&f, PICKS, count);
    assert_in_range(count[1], PICKS / 3 - 450, PICKS / 3 + 450);
    assert_in_range(count[2], 0, 30);
    free_pool(&f);
}

/* A server that is not up when rebuild runs loses its estimate: when it is back, it starts
 * afresh rather than with what it measured before it went away. */
static void test_ewma_rebuild_forgets(void **state)
{
    unsigned w[] = {1, 1, 1, 1};
    struct fixture f;
    make_pool(&f, "peak-ewma", w, 4);
    for (int i = 0; i < 4; i++)
        set_estimate(f.servers[i], (i + 1) * 1e6);
    set_state(f.servers[1], SERVER_DOWN);
    set_state(f.servers[2], SERVER_DRAINING);
    rebuild(&f);
    assert_int_equal(atomic_load(&f.servers[0]->load.ewma_ns), 1000000);
    assert_int_equal(atomic_load(&f.servers[1]->load.ewma_ns), 0);
    assert_int_equal(atomic_load(&f.servers[2]->load.ewma_ns), 0);
    assert_int_equal(atomic_load(&f.servers[3]->load.ewma_ns), 4000000);
    assert_true(lb_latency_estimate_ms(&f.pool, f.servers[1], T_MS) == 0);
    set_state(f.servers[1], SERVER_UP);
    set_state(f.servers[2], SERVER_UP);
    rebuild(&f);
    assert_true(lb_latency_estimate_ms(&f.pool, f.servers[1], T_MS) == 0);
    assert_true(near(lb_latency_estimate_ms(&f.pool, f.servers[3], T_MS), 4));
    free_pool(&f);
}

static uint64_t monotonic_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/*
 * released() measures with the monotonic clock: a fresh server takes its first sample as it is;
 * a request the server failed counts at least twice its estimate (or, without one, twice the
 * pool's typical answer as this thread saw it), so failing fast does not pass for answering fast;
 * a failure slower than that counts as itself. Failures do not move the typical answer.
 */
static void test_ewma_released(void **state)
{
    unsigned w[] = {1, 1, 1, 1};
    struct fixture f;
    make_pool(&f, "peak-ewma", w, 4);
    uint64_t now = monotonic_us();
    atomic_store(&f.servers[0]->load.ewma_ns, 1000000);
    atomic_store(&f.servers[0]->load.ewma_stamp_us, now);
    rebuild_at(&f, now / 1000);

    lb_taken(&f.pool, f.state, f.servers[0]);
    assert_int_equal(lb_inflight(f.servers[0]), 1);
    lb_released(&f.pool, f.state, f.servers[0], 10, LB_FAILED); /* failed in 10 us */
    assert_int_equal(lb_inflight(f.servers[0]), 0);
    /* 2 x 1 ms, less the decay of the few microseconds since (tau: 10 s) */
    assert_in_range(atomic_load(&f.servers[0]->load.ewma_ns), 1999000, 2000000);
    assert_true(atomic_load(&f.servers[0]->load.ewma_stamp_us) >= now);
    /* a fast answer right after pulls it down only by the weight of the time elapsed */
    lb_taken(&f.pool, f.state, f.servers[0]);
    lb_released(&f.pool, f.state, f.servers[0], 10, LB_OK);
    assert_in_range(atomic_load(&f.servers[0]->load.ewma_ns), 1900000, 2000000);

    /* no estimate: the first answer is it; a fast failure counts twice the typical answer,
     * here 10 us (s0's answer above) moved 1/64 of the way to 300 us (s1's): 14.53 us */
    lb_taken(&f.pool, f.state, f.servers[1]);
    lb_released(&f.pool, f.state, f.servers[1], 300, LB_OK);
    assert_int_equal(atomic_load(&f.servers[1]->load.ewma_ns), 300000);
    lb_taken(&f.pool, f.state, f.servers[2]);
    lb_released(&f.pool, f.state, f.servers[2], 10, LB_FAILED);
    assert_int_equal(atomic_load(&f.servers[2]->load.ewma_ns), 29062);
    lb_taken(&f.pool, f.state, f.servers[3]);
    lb_released(&f.pool, f.state, f.servers[3], 5000, LB_FAILED);
    assert_int_equal(atomic_load(&f.servers[3]->load.ewma_ns), 5000000);
    for (int i = 0; i < 4; i++)
        assert_int_equal(lb_inflight(f.servers[i]), 0);
    free_pool(&f);
}

/* The estimate is peak-ewma's alone: -1 for every other algorithm, and before the first rebuild. */
static void test_ewma_estimate_other_algorithms(void **state)
{
    unsigned w[] = {1};
    const char *others[] = {"round-robin", "least-conn", "random"};
    for (unsigned i = 0; i < 3; i++) {
        struct fixture f;
        make_pool(&f, others[i], w, 1);
        set_estimate(f.servers[0], 5e6);
        assert_true(lb_latency_estimate_ms(&f.pool, f.servers[0], T_MS) == -1);
        free_pool(&f);
    }
    struct fixture f;
    make_pool(&f, "least-conn", w, 1);
    struct pool bare = {.name = "p", .lb = &lb_hash, .servers = f.servers, .nservers = 1};
    assert_true(lb_latency_estimate_ms(&bare, f.servers[0], T_MS) == -1);
    bare.lb = &lb_peak_ewma; /* no shared data yet */
    assert_true(lb_latency_estimate_ms(&bare, f.servers[0], T_MS) == -1);
    free_pool(&f);
}

/* ==== rotation.h ==== */

/* A pool of servers (weights), not balanced by anything: for building rotations directly. */
static void make_servers(struct fixture *f, const unsigned *weights, unsigned n)
{
    make_pool(f, "least-conn", weights, n); /* no shared data of its own */
}

static int turn_of(const struct fixture *f, const struct lb_rotation *r, uint32_t t)
{
    assert_true(r->order[t] < f->pool.nservers);
    return (int)r->order[t];
}

static void test_rotation_order(void **state)
{
    unsigned w[] = {5, 1, 1};
    struct fixture f;
    make_servers(&f, w, 3);
    struct lb_rotation r;
    assert_int_equal(lb_rotation_build(&r, &f.pool, NULL, T_MS), 0);
    const int expect[] = {0, 0, 1, 0, 2, 0, 0}; /* a a b a c a a */
    assert_int_equal(r.len, 7);
    for (uint32_t t = 0; t < 7; t++)
        assert_int_equal(turn_of(&f, &r, t), expect[t]);
    assert_false(r.ramping);
    struct lb_pick ctx = {.now_ms = T_MS};
    for (int round = 0; round < 2; round++)
        for (uint32_t t = 0; t < 7; t++)
            assert_ptr_equal(lb_rotation_next(&r, &f.pool, &ctx), f.servers[expect[t]]);
    lb_rotation_free(&r);
    assert_int_equal(r.len, 0);

    /* weights with a common factor take as few turns as their ratio needs; only servers that
     * are up, with a weight, have turns */
    unsigned w2[] = {4, 2, 0, 6};
    struct fixture g;
    make_servers(&g, w2, 4);
    set_state(g.servers[3], SERVER_DOWN);
    assert_int_equal(lb_rotation_build(&r, &g.pool, NULL, T_MS), 0);
    assert_int_equal(r.len, 3);
    int count[4] = {0};
    for (uint32_t t = 0; t < r.len; t++)
        count[turn_of(&g, &r, t)]++;
    assert_int_equal(count[0], 2);
    assert_int_equal(count[1], 1);
    lb_rotation_free(&r);
    /* nobody up: no turns, and next finds nobody */
    set_state(g.servers[0], SERVER_MAINT);
    set_state(g.servers[1], SERVER_EJECTED);
    assert_int_equal(lb_rotation_build(&r, &g.pool, NULL, T_MS), 0);
    assert_int_equal(r.len, 0);
    assert_null(lb_rotation_next(&r, &g.pool, &ctx));
    assert_null(lb_rotation_sample(&r, &g.pool, 12345));
    lb_rotation_free(&r);
    free_pool(&g);
    free_pool(&f);
}

/* A server in slow start makes the rotation "ramping" (the control thread rebuilds it again
 * soon) until its weight is whole, and has fewer turns meanwhile. */
static void test_rotation_ramping(void **state)
{
    unsigned w[] = {1, 1, 0};
    struct fixture f;
    make_servers(&f, w, 3);
    atomic_store(&f.servers[1]->up_since_ms, T_MS);
    atomic_store(&f.servers[2]->up_since_ms, T_MS); /* weight 0: nothing to ramp */
    struct lb_rotation r;
    /* no slow start configured: up_since does not matter */
    assert_int_equal(lb_rotation_build(&r, &f.pool, NULL, T_MS + 1000), 0);
    assert_false(r.ramping);
    assert_int_equal(r.len, 2);
    lb_rotation_free(&r);

    f.pc.slow_start_ms = 10000;
    assert_int_equal(lb_rotation_build(&r, &f.pool, NULL, T_MS + 2500), 0);
    assert_true(r.ramping);
    assert_int_equal(r.len, 5); /* 1000 : 250 */
    int count[3] = {0};
    for (uint32_t t = 0; t < r.len; t++)
        count[turn_of(&f, &r, t)]++;
    assert_int_equal(count[0], 4);
    assert_int_equal(count[1], 1);
    lb_rotation_free(&r);
    assert_int_equal(lb_rotation_build(&r, &f.pool, NULL, T_MS + 9999), 0);
    assert_true(r.ramping);
    lb_rotation_free(&r);
    assert_int_equal(lb_rotation_build(&r, &f.pool, NULL, T_MS + 10000), 0);
    assert_false(r.ramping);
    assert_int_equal(r.len, 2);
    lb_rotation_free(&r);

    /* the hooks of random and peak-ewma say the same */
    const char *algorithms[] = {"random", "peak-ewma", "round-robin"};
    for (unsigned i = 0; i < 3; i++) {
        const struct lb_ops *ops = lb_find(algorithms[i]);
        void *sh = ops->rebuild(&f.pool, NULL, T_MS + 5000);
        assert_non_null(sh);
        assert_true(ops->ramping(sh));
        ops->shared_free(sh);
        sh = ops->rebuild(&f.pool, NULL, T_MS + 20000);
        assert_false(ops->ramping(sh));
        ops->shared_free(sh);
    }
    free_pool(&f);
}

/* A rebuilt rotation continues the turn count of the one it replaces. */
static void test_rotation_continues_count(void **state)
{
    unsigned w[] = {1, 1, 1};
    struct fixture f;
    make_servers(&f, w, 3);
    struct lb_rotation r1, r2, r3;
    assert_int_equal(lb_rotation_build(&r1, &f.pool, NULL, T_MS), 0);
    struct lb_pick ctx = {.now_ms = T_MS};
    for (int i = 0; i < 5; i++)
        assert_ptr_equal(lb_rotation_next(&r1, &f.pool, &ctx), f.servers[i % 3]);
    assert_int_equal(lb_rotation_build(&r2, &f.pool, &r1, T_MS), 0);
    assert_int_equal(atomic_load(&r2.next), 5);
    assert_int_equal(atomic_load(&r1.next), 5); /* prev is left as it was */
    assert_ptr_equal(lb_rotation_next(&r2, &f.pool, &ctx), f.servers[5 % 3]);
    assert_int_equal(lb_rotation_build(&r3, &f.pool, NULL, T_MS), 0);
    assert_int_equal(atomic_load(&r3.next), 0);
    /* a server that went down since the build: its turn passes to the next */
    set_state(f.servers[0], SERVER_DOWN);
    for (int i = 0; i < 6; i++)
        assert_ptr_equal(lb_rotation_next(&r3, &f.pool, &ctx), f.servers[i % 3 == 2 ? 2 : 1]);
    lb_rotation_free(&r1);
    lb_rotation_free(&r2);
    lb_rotation_free(&r3);
    free_pool(&f);
}

/*
 * Weight sums above LB_ROTATION_MAX_TURNS are scaled down, keeping the proportions, yet every
 * server keeps at least one turn and the bound holds. The sums come from slow start: one server
 * at full weight 256 (256,000) against servers that just came back (weight 1 each, "about
 * zero").
 */
static void test_rotation_max_turns(void **state)
{
    unsigned w[MAXS];
    for (unsigned i = 0; i < MAXS; i++)
        w[i] = i ? 1 : 256;
    struct fixture f;
    make_servers(&f, w, MAXS);
    f.pc.slow_start_ms = 1000000;
    for (unsigned i = 1; i < MAXS; i++) /* all but s0 came back at T_MS, s1 a little earlier */
        atomic_store(&f.servers[i]->up_since_ms, i == 1 ? T_MS - 3000 : T_MS);
    for (unsigned n = 2; n <= MAXS; n++) {
        f.pool.nservers = n;
        struct lb_rotation r;
        assert_int_equal(lb_rotation_build(&r, &f.pool, NULL, T_MS), 0);
        assert_true(r.ramping);
        assert_true(r.len <= LB_ROTATION_MAX_TURNS);
        assert_true(r.len >= LB_ROTATION_MAX_TURNS - n);
        unsigned count[MAXS] = {0};
        for (uint32_t t = 0; t < r.len; t++)
            count[turn_of(&f, &r, t)]++;
        for (unsigned i = 0; i < n; i++)
            assert_true(count[i] >= 1);
        assert_true(count[0] >= LB_ROTATION_MAX_TURNS - 2 * n);
        lb_rotation_free(&r);
    }
    f.pool.nservers = MAXS;

    /* 600 servers of weights 1..256: 69,708 turns scaled down, laid out in the stride order */
    enum { N = 600 };
    struct server **many = calloc(N, sizeof(*many));
    struct net_addr addr = {0};
    unsigned total = 0;
    for (unsigned i = 0; i < N; i++) {
        char name[16];
        snprintf(name, sizeof(name), "m%u", i);
        many[i] = server_new("p", name, &addr, 1 + i % 256);
        total += 1 + i % 256;
    }
    struct pool big = {.name = "p", .servers = many, .nservers = N};
    struct lb_rotation r;
    assert_int_equal(lb_rotation_build(&r, &big, NULL, T_MS), 0);
    assert_true(r.len <= LB_ROTATION_MAX_TURNS);
    assert_true(r.len >= LB_ROTATION_MAX_TURNS - 2 * N);
    unsigned *count = calloc(N, sizeof(*count));
    for (uint32_t t = 0; t < r.len; t++)
        count[r.order[t]]++;
    for (unsigned i = 0; i < N; i++) {
        assert_true(count[i] >= 1);
        /* proportional to the weight, give or take the rounding */
        double share = (double)(1 + i % 256) * r.len / total;
        assert_true(count[i] + 1.5 >= share && count[i] <= share + 1.5);
    }
    free(count);
    lb_rotation_free(&r);
    for (unsigned i = 0; i < N; i++)
        server_unref(many[i]);
    free(many);
    free_pool(&f);
}

/* What lb_best_of() asked the cost of, per pick. */
struct probe {
    const struct server *asked[LB_MAX_CHOICES * 4];
    unsigned n;
    bool by_slot; /* cost: the server's slot (lower wins); else 1 for everyone */
};

static double probe_cost(const struct pool *pool, const struct server *s, const void *arg)
{
    struct probe *p = (struct probe *)arg;
    if (p->n < sizeof(p->asked) / sizeof(p->asked[0]))
        p->asked[p->n] = s;
    p->n++;
    return p->by_slot ? (double)s->slot : 1;
}

/*
 * lb_best_of() compares `choices` distinct servers (at most LB_MAX_CHOICES), never the same one
 * twice, and takes the cheapest; among equals, the first drawn. choices = 1 is a plain weighted
 * draw.
 */
static void test_best_of_choices(void **state)
{
    unsigned w[MAXS];
    for (unsigned i = 0; i < MAXS; i++)
        w[i] = 1;
    struct fixture f;
    make_servers(&f, w, 12);
    struct lb_rotation r;
    assert_int_equal(lb_rotation_build(&r, &f.pool, NULL, T_MS), 0);
    uint64_t rng = SEED;
    struct lb_pick ctx = {.now_ms = T_MS};
    const unsigned tries[] = {1, 2, 3, 5, 10, 11, 50};
    for (unsigned c = 0; c < sizeof(tries) / sizeof(tries[0]); c++) {
        unsigned choices = tries[c], want = choices < LB_MAX_CHOICES ? choices : LB_MAX_CHOICES;
        unsigned full = 0;
        for (int i = 0; i < 1000; i++) {
            struct probe p = {.by_slot = i % 2};
            struct server *s = lb_best_of(&r, &f.pool, &ctx, choices, &rng, probe_cost, &p);
            assert_non_null(s);
            assert_in_range(p.n, 1, want);
            full += p.n == want;
            const struct server *cheapest = p.asked[0];
            for (unsigned a = 0; a < p.n; a++) {
                for (unsigned b = 0; b < a; b++)
                    assert_ptr_not_equal(p.asked[a], p.asked[b]);
                if (p.asked[a]->slot < cheapest->slot)
                    cheapest = p.asked[a];
            }
            assert_ptr_equal(s, p.by_slot ? cheapest : p.asked[0]);
        }
        /* 2 x choices + 4 draws among 12 servers nearly always find `choices` distinct ones
         * when there are few; ten of twelve, often not */
        if (want <= 5)
            assert_true(full >= 990);
        else
            assert_true(full >= 1);
    }
    lb_rotation_free(&r);
    free_pool(&f);
}

/*
 * When no draw qualifies, every server ctx allows is considered: an empty rotation in panic mode,
 * or a stale one whose servers all went down (a server that came up since has no turn). The scan
 * still skips weight 0 and avoided servers, and takes the cheapest; equals share evenly (at equal
 * weights), wherever the excluded servers sit.
 */
static void test_best_of_falls_back_to_scan(void **state)
{
    unsigned w[] = {0, 1, 1, 1};
    struct fixture f;
    make_servers(&f, w, 4);
    for (int i = 0; i < 4; i++)
        set_state(f.servers[i], SERVER_DOWN);
    struct lb_rotation r;
    assert_int_equal(lb_rotation_build(&r, &f.pool, NULL, T_MS), 0);
    assert_int_equal(r.len, 0);
    uint64_t rng = SEED;
    struct lb_pick normal = {.now_ms = T_MS}, panic = {.panic = true, .now_ms = T_MS};
    struct probe p = {.by_slot = true};
    assert_null(lb_best_of(&r, &f.pool, &normal, 2, &rng, probe_cost, &p));
    for (int i = 0; i < 100; i++) {
        p.n = 0;
        assert_ptr_equal(lb_best_of(&r, &f.pool, &panic, 2, &rng, probe_cost, &p), f.servers[1]);
        assert_int_equal(p.n, 3); /* s1, s2, s3; not s0, weight 0 */
    }
    struct server *avoid[1] = {f.servers[1]};
    panic.avoid = avoid;
    panic.navoid = 1;
    for (int i = 0; i < 100; i++)
        assert_ptr_equal(lb_best_of(&r, &f.pool, &panic, 2, &rng, probe_cost, &p), f.servers[2]);
    /* equal costs: the scan starts at random, so each gets a share */
    int count[4] = {0};
    p.by_slot = false;
    for (int i = 0; i < 900; i++)
        count[index_of(&f, lb_best_of(&r, &f.pool, &panic, 2, &rng, probe_cost, &p))]++;
    assert_int_equal(count[0] + count[1], 0);
    assert_in_range(count[2], 300, 600);
    assert_in_range(count[3], 300, 600);
    lb_rotation_free(&r);

    /* stale: built with s2 alone up; s2 goes down and s3 comes up */
    set_state(f.servers[2], SERVER_UP);
    assert_int_equal(lb_rotation_build(&r, &f.pool, NULL, T_MS), 0);
    assert_int_equal(r.len, 1);
    set_state(f.servers[2], SERVER_DOWN);
    set_state(f.servers[3], SERVER_UP);
    for (int i = 0; i < 100; i++)
        assert_ptr_equal(lb_best_of(&r, &f.pool, &normal, 2, &rng, probe_cost, &p), f.servers[3]);
    lb_rotation_free(&r);
    free_pool(&f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lc_fewest_in_flight),
        cmocka_unit_test(test_lc_ties_rotate),
        cmocka_unit_test(test_lc_weights),
        cmocka_unit_test(test_lc_skips),
        cmocka_unit_test(test_lc_panic),
        cmocka_unit_test(test_lc_taken_released),
        cmocka_unit_test(test_random_shares_follow_weights),
        cmocka_unit_test(test_random_loaded_server_starves),
        cmocka_unit_test(test_random_skips),
        cmocka_unit_test(test_random_stale_rotation),
        cmocka_unit_test(test_random_panic),
        cmocka_unit_test(test_random_taken_released),
        cmocka_unit_test(test_ewma_arithmetic),
        cmocka_unit_test(test_ewma_avoids_slow_server),
        cmocka_unit_test(test_ewma_default_estimate),
        cmocka_unit_test(test_ewma_rebuild_forgets),
        cmocka_unit_test(test_ewma_released),
        cmocka_unit_test(test_ewma_estimate_other_algorithms),
        cmocka_unit_test(test_rotation_order),
        cmocka_unit_test(test_rotation_ramping),
        cmocka_unit_test(test_rotation_continues_count),
        cmocka_unit_test(test_rotation_max_turns),
        cmocka_unit_test(test_best_of_choices),
        cmocka_unit_test(test_best_of_falls_back_to_scan),
    };
    return cmocka_run_group_tests_name("balancers", tests, NULL, NULL);
}
