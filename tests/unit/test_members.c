/*
 * test_members.c - a discovery source's member set: duplicates, the max, comparison, weight
 * scaling, and the log that reports each bad record once while it lasts.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "log_capture.h"

#include "core/log.h"
#include "discovery/members.h"
#include "discovery/source.h"

static struct net_addr addr(const char *text)
{
    struct net_addr a;
    const char *why;
    assert_int_equal(net_parse_addr(text, &a, &why), 0);
    return a;
}

static void refuses_duplicates_and_more_than_max(void **state)
{
    struct member_set set;
    members_init(&set, 3);
    struct net_addr a = addr("127.0.0.1:1"), b = addr("127.0.0.1:2"), c = addr("127.0.0.1:3");
    struct net_addr d = addr("127.0.0.1:4");
    assert_int_equal(members_add(&set, "a", NULL, &a, 1), MEMBERS_ADDED);
    assert_int_equal(members_add(&set, "a", NULL, &b, 1), MEMBERS_DUPLICATE_NAME);
    assert_int_equal(members_add(&set, "b", NULL, &a, 1), MEMBERS_DUPLICATE_ADDRESS);
    assert_int_equal(members_add(&set, "b", "api-b.example", &b, 2), MEMBERS_ADDED);
    assert_int_equal(members_add(&set, "c", NULL, &c, 3), MEMBERS_ADDED);
    assert_int_equal(members_add(&set, "d", NULL, &d, 3), MEMBERS_FULL);
    assert_int_equal(members_add(&set, "", NULL, &d, 3), MEMBERS_BAD_NAME);
    assert_int_equal(set.n, 3);
    assert_string_equal(set.v[0].host, "127.0.0.1");
    assert_string_equal(set.v[1].host, "api-b.example");
    assert_int_equal(members_find(&set, "c"), 2);
    assert_int_equal(members_find(&set, "d"), -1);
    members_free(&set);
}

static void equal_in_any_order_and_copy(void **state)
{
    struct member_set x, y, z;
    members_init(&x, 10);
    members_init(&y, 10);
    members_init(&z, 10);
    struct net_addr a = addr("127.0.0.1:1"), b = addr("[::1]:2");
    members_add(&x, "a", NULL, &a, 1);
    members_add(&x, "b", NULL, &b, 1);
    members_add(&y, "b", NULL, &b, 1);
    members_add(&y, "a", NULL, &a, 1);
    assert_true(members_equal(&x, &y));
    assert_int_equal(members_copy(&z, &x), 0);
    assert_true(members_equal(&z, &y));
    y.v[0].weight = 2; /* a weight change is a change */
    assert_false(members_equal(&x, &y));
    members_clear(&z);
    assert_false(members_equal(&x, &z));
    members_free(&x);
    members_free(&y);
    members_free(&z);
}

/* 2,000 members: every one found by name, every duplicate caught, through copies and clears. */
static void large_sets_are_indexed(void **state)
{
    enum { N = 2000 };
    struct member_set set, copy;
    members_init(&set, N);
    members_init(&copy, N);
    char name[32], text[32];
    for (int round = 0; round < 2; round++) {
        for (unsigned i = 0; i < N; i++) {
            snprintf(name, sizeof(name), "s%u", i);
            snprintf(text, sizeof(text), "127.1.%u.%u:8080", i / 250, i % 250 + 1);
            struct net_addr a = addr(text);
            assert_int_equal(members_add(&set, name, NULL, &a, 1), MEMBERS_ADDED);
        }
        struct net_addr again = addr("127.1.3.7:8080"), other = addr("127.1.3.7:8081");
        assert_int_equal(members_add(&set, "s5", NULL, &other, 1), MEMBERS_DUPLICATE_NAME);
        assert_int_equal(members_add(&set, "new", NULL, &again, 1), MEMBERS_DUPLICATE_ADDRESS);
        assert_int_equal(members_add(&set, "new", NULL, &other, 1), MEMBERS_FULL);
        for (unsigned i = 0; i < N; i++) {
            snprintf(name, sizeof(name), "s%u", i);
            assert_int_equal(members_find(&set, name), (int)i);
        }
        assert_int_equal(members_copy(&copy, &set), 0);
        assert_true(members_equal(&copy, &set));
        assert_int_equal(members_find(&copy, "s1999"), N - 1);
        members_clear(&set);
        assert_int_equal(members_find(&set, "s0"), -1);
    }
    members_free(&set);
    members_free(&copy);
}

static void scales_weights(void **state)
{
    assert_int_equal(members_scale_weight(0, 100), 1);
    assert_int_equal(members_scale_weight(7, 256), 7);
    assert_int_equal(members_scale_weight(65535, 65535), 256);
    assert_int_equal(members_scale_weight(0, 65535), 1);
    assert_int_equal(members_scale_weight(1, 65535), 1);
    assert_int_equal(members_scale_weight(32768, 65535), 128);
    assert_int_equal(members_scale_weight(100, 1000), 26);
}

static void logs_each_problem_once_while_it_lasts(void **state)
{
    struct member_log log = {0};
    char logged[4096];
    struct log_capture capture;
    log_capture_start(&capture);
    /* answer 1: two problems, one of them twice */
    members_reject(&log, "api", "dns", "record %d: bad", 1);
    members_reject(&log, "api", "dns", "record %d: bad", 2);
    members_reject(&log, "api", "dns", "record %d: bad", 1);
    members_log_answer_done(&log);
    assert_int_equal(log_capture_lines(&capture, logged, sizeof(logged)), 2);
    /* answer 2: the same two again, nothing new */
    members_reject(&log, "api", "dns", "record %d: bad", 2);
    members_reject(&log, "api", "dns", "record %d: bad", 1);
    members_log_answer_done(&log);
    assert_int_equal(log_capture_lines(&capture, logged, sizeof(logged)), 2);
    /* answer 3: record 1 fixed; answer 4: it is bad again, which is news */
    members_reject(&log, "api", "dns", "record %d: bad", 2);
    members_log_answer_done(&log);
    members_reject(&log, "api", "dns", "record %d: bad", 1);
    members_log_answer_done(&log);
    assert_int_equal(log_capture_lines(&capture, logged, sizeof(logged)), 3);
    assert_non_null(strstr(logged, "pool api: dns: record 1: bad (ignored)"));
    log_capture_stop(&capture);
    members_log_free(&log);
}

static void health_labels(void **state)
{
    assert_string_equal(discovery_health_label(DISCOVERY_STARTING), "starting");
    assert_string_equal(discovery_health_label(DISCOVERY_OK), "ok");
    assert_string_equal(discovery_health_label(DISCOVERY_DEGRADED), "degraded");
    assert_string_equal(discovery_health_label(DISCOVERY_FAILED), "failed");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(refuses_duplicates_and_more_than_max),
        cmocka_unit_test(equal_in_any_order_and_copy),
        cmocka_unit_test(large_sets_are_indexed),
        cmocka_unit_test(scales_weights),
        cmocka_unit_test(logs_each_problem_once_while_it_lasts),
        cmocka_unit_test(health_labels),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
