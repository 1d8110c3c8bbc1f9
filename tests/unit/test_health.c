/*
 * test_health.c - the rise/fall state machine, check intervals, ejection arithmetic and the
 * slow-start weight.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "servers/health.h"

/* Feeds a sequence of results ('p' pass, 'f' fail) and returns the final up/down state. */
static bool run_from(bool up, const char *results, unsigned rise, unsigned fall, struct health *h)
{
    memset(h, 0, sizeof(*h));
    for (const char *r = results; *r; r++) {
        enum health_change c = health_record(h, up, *r == 'p', rise, fall);
        if (c == HEALTH_GOES_UP)
            up = true;
        else if (c == HEALTH_GOES_DOWN)
            up = false;
    }
    return up;
}

static bool run(const char *results, unsigned rise, unsigned fall, struct health *h)
{
    return run_from(true, results, rise, fall, h);
}

static void test_first_check_decides(void **state)
{
    struct health h;
    assert_true(run("", 2, 3, &h));   /* up until a check says otherwise */
    assert_false(run("f", 2, 3, &h)); /* the first failure takes it down at once */
    assert_true(run("p", 2, 3, &h));
    /* a newcomer starts down: its first pass brings it in, its first failure keeps it out */
    assert_false(run_from(false, "", 2, 3, &h));
    assert_true(run_from(false, "p", 2, 3, &h));
    assert_false(run_from(false, "f", 2, 3, &h));
    assert_false(run_from(false, "fp", 2, 3, &h)); /* after that, rise passes as ever */
    assert_true(run_from(false, "fpp", 2, 3, &h));
    assert_true(run_from(false, "pff", 2, 3, &h)); /* and fall failures */
    assert_false(run_from(false, "pfff", 2, 3, &h));
}

static void test_fall_needs_consecutive_failures(void **state)
{
    struct health h;
    assert_true(run("pff", 2, 3, &h));
    assert_false(run("pfff", 2, 3, &h));
    assert_true(run("pffpff", 2, 3, &h)); /* a pass in between starts the count again */
    assert_false(run("pffpfff", 2, 3, &h));
    assert_false(run("pf", 2, 1, &h));
}

static void test_rise_needs_consecutive_passes(void **state)
{
    struct health h;
    assert_false(run("fp", 2, 3, &h));
    assert_true(run("fpp", 2, 3, &h));
    assert_false(run("fpfp", 2, 3, &h));
    assert_true(run("fpfpp", 2, 3, &h));
    assert_true(run("fp", 1, 3, &h));
    /* back up, it again needs `fall` failures */
    assert_true(run("fppff", 2, 3, &h));
    assert_false(run("fppfff", 2, 3, &h));
}

static void test_intervals(void **state)
{
    struct conf_health_check c = {
        .interval_ms = 2000, .fast_interval_ms = 500, .down_interval_ms = 5000};
    struct health h = {0};
    assert_int_equal(health_next_interval(&h, true, &c), 2000); /* stable up */
    h.fails = 1;
    assert_int_equal(health_next_interval(&h, true, &c), 500); /* going down */
    h.fails = 3;
    assert_int_equal(health_next_interval(&h, false, &c), 5000); /* fully down */
    h.fails = 0;
    h.passes = 1;
    assert_int_equal(health_next_interval(&h, false, &c), 500); /* coming back */
}

static void test_ejection_time(void **state)
{
    struct conf_passive p = {.ejection_time_ms = 30000, .max_ejection_time_ms = 300000};
    assert_int_equal(health_ejection_ms(&p, 1), 30000);
    assert_int_equal(health_ejection_ms(&p, 2), 60000);
    assert_int_equal(health_ejection_ms(&p, 10), 300000);
    assert_int_equal(health_ejection_ms(&p, 11), 300000);
    assert_int_equal(health_ejection_ms(&p, 4000000), 300000); /* no overflow */
    assert_int_equal(health_ejection_ms(&p, 0), 30000);
}

static void test_max_ejected(void **state)
{
    assert_int_equal(health_max_ejected(1, 50), 0); /* a lone server is never ejected */
    assert_int_equal(health_max_ejected(2, 50), 1);
    assert_int_equal(health_max_ejected(3, 50), 1);
    assert_int_equal(health_max_ejected(4, 50), 2);
    assert_int_equal(health_max_ejected(10, 0), 0);
    assert_int_equal(health_max_ejected(10, 100), 10);
}

static void test_slow_start_weight(void **state)
{
    const uint64_t full = 3 * HEALTH_WEIGHT_SCALE;
    assert_int_equal(health_effective_weight(3, 0, 5000, 10000), full); /* not ramping */
    assert_int_equal(health_effective_weight(3, 1000, 5000, 0), full);  /* no slow start */
    assert_int_equal(health_effective_weight(3, 1000, 1000, 10000), 1); /* about zero */
    assert_int_equal(health_effective_weight(3, 1000, 6000, 10000), full / 2);
    assert_int_equal(health_effective_weight(3, 1000, 11000, 10000), full);
    assert_int_equal(health_effective_weight(3, 1000, 999999, 10000), full);
    assert_int_equal(health_effective_weight(0, 1000, 6000, 10000), 0); /* weight 0 stays 0 */
    /* the ramp is monotonic */
    uint64_t prev = 0;
    for (uint64_t t = 1000; t <= 12000; t += 7) {
        uint64_t w = health_effective_weight(3, 1000, t, 10000);
        assert_true(w >= prev);
        prev = w;
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_first_check_decides),
        cmocka_unit_test(test_fall_needs_consecutive_failures),
        cmocka_unit_test(test_rise_needs_consecutive_passes),
        cmocka_unit_test(test_intervals),
        cmocka_unit_test(test_ejection_time),
        cmocka_unit_test(test_max_ejected),
        cmocka_unit_test(test_slow_start_weight),
    };
    return cmocka_run_group_tests_name("health", tests, NULL, NULL);
}
