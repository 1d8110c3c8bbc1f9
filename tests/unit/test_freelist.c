/*
 * test_freelist.c - the intrusive free list (core/freelist.h) and container_of
 * (core/container.h): take from empty, put and take back in LIFO order, the cap, and the
 * caller keeping ownership of what does not fit.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/container.h"
#include "core/freelist.h"

struct thing {
    int id;
    char pad[13];
    struct freelist_node spare; /* not the first member: offsets must be undone */
    long tail;
};

static void test_empty_gives_null(void **state)
{
    struct freelist fl = FREELIST_INIT(4);
    assert_null(fl.head);
    assert_int_equal(fl.count, 0);
    assert_null(freelist_take(&fl));
    assert_null(freelist_take_entry(&fl, struct thing, spare));
    assert_int_equal(fl.count, 0);

    struct freelist other;
    freelist_init(&other, 7);
    assert_null(other.head);
    assert_int_equal(other.count, 0);
    assert_int_equal(other.cap, 7);
    assert_null(freelist_take(&other));
}

static void test_put_then_take_lifo(void **state)
{
    struct freelist fl = FREELIST_INIT(8);
    struct thing t[3];
    memset(t, 0, sizeof(t));
    for (int i = 0; i < 3; i++) {
        t[i].id = i;
        t[i].tail = 100 + i;
        assert_true(freelist_put(&fl, &t[i].spare));
        assert_int_equal(fl.count, (unsigned)i + 1);
    }
    /* last in, first out: the most recently used object is the likeliest in cache */
    for (int i = 2; i >= 0; i--) {
        struct thing *got = freelist_take_entry(&fl, struct thing, spare);
        assert_ptr_equal(got, &t[i]);
        assert_int_equal(got->id, i);
        assert_int_equal(got->tail, 100 + i); /* the list touched nothing but the node */
        assert_null(got->spare.next);
        assert_int_equal(fl.count, (unsigned)i);
    }
    assert_null(freelist_take(&fl));
    assert_null(fl.head);
}

static void test_cap_leaves_ownership_with_caller(void **state)
{
    struct freelist fl = FREELIST_INIT(2);
    struct thing *t[4];
    for (int i = 0; i < 4; i++) {
        t[i] = calloc(1, sizeof(*t[i]));
        assert_non_null(t[i]);
    }
    assert_true(freelist_put(&fl, &t[0]->spare));
    assert_true(freelist_put(&fl, &t[1]->spare));
    /* full: refused, the list is unchanged and the caller frees the object */
    assert_false(freelist_put(&fl, &t[2]->spare));
    assert_int_equal(fl.count, 2);
    free(t[2]);
    /* taking one makes room for one */
    struct thing *got = freelist_take_entry(&fl, struct thing, spare);
    assert_ptr_equal(got, t[1]);
    assert_true(freelist_put(&fl, &t[3]->spare));
    assert_false(freelist_put(&fl, &got->spare));
    free(got);
    /* release everything: take until empty */
    unsigned freed = 0;
    struct freelist_node *n;
    while ((n = freelist_take(&fl))) {
        free(container_of(n, struct thing, spare));
        freed++;
    }
    assert_int_equal(freed, 2);
    assert_int_equal(fl.count, 0);
}

static void test_cap_zero_keeps_nothing(void **state)
{
    struct freelist fl = FREELIST_INIT(0);
    struct thing t = {0};
    assert_false(freelist_put(&fl, &t.spare));
    assert_int_equal(fl.count, 0);
    assert_null(freelist_take(&fl));
}

static void test_reuse_after_empty(void **state)
{
    struct freelist fl = FREELIST_INIT(1);
    struct thing a = {.id = 1}, b = {.id = 2};
    for (int round = 0; round < 3; round++) {
        assert_true(freelist_put(&fl, &a.spare));
        assert_false(freelist_put(&fl, &b.spare));
        assert_ptr_equal(freelist_take_entry(&fl, struct thing, spare), &a);
        assert_null(freelist_take_entry(&fl, struct thing, spare));
    }
}

static void test_container_of(void **state)
{
    struct thing t;
    assert_ptr_equal(container_of(&t.spare, struct thing, spare), &t);
    assert_ptr_equal(container_of(&t.tail, struct thing, tail), &t);
    assert_ptr_equal(container_of(&t.id, struct thing, id), &t);
    const struct freelist_node *cn = &t.spare;
    assert_ptr_equal(container_of(cn, struct thing, spare), &t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_empty_gives_null),
        cmocka_unit_test(test_put_then_take_lifo),
        cmocka_unit_test(test_cap_leaves_ownership_with_caller),
        cmocka_unit_test(test_cap_zero_keeps_nothing),
        cmocka_unit_test(test_reuse_after_empty),
        cmocka_unit_test(test_container_of),
    };
    return cmocka_run_group_tests_name("freelist", tests, NULL, NULL);
}
