/*
 * lb_fixture.h - what the balancer tests (test_lb.c, test_balancers.c, test_maglev.c) share: a
 * pool of made-up servers with one thread's state, its shared data rebuilt as the control thread
 * does it, and server states set through their inputs as the health thread sets them.
 *
 * Included by one test file each, after cmocka.h; the file defines MAXS (servers at most) first.
 */
#ifndef FULCRUM_TEST_LB_FIXTURE_H
#define FULCRUM_TEST_LB_FIXTURE_H

#include "conf/conf.h"
#include "lb/lb.h"
#include "servers/pool.h"

struct fixture {
    struct conf_pool pc; /* the pool's configuration, when a test gives it one */
    struct pool pool;
    struct server *servers[MAXS];
    void *state; /* one worker thread's */
};

/* After states or weights changed: the shared data built again at now_ms, continuing from the
 * old one. */
static inline void rebuild_at(struct fixture *f, uint64_t now_ms)
{
    if (!f->pool.lb->rebuild)
        return;
    void *next = f->pool.lb->rebuild(&f->pool, f->pool.lb_shared, now_ms);
    assert_non_null(next);
    if (f->pool.lb_shared)
        f->pool.lb->shared_free(f->pool.lb_shared);
    f->pool.lb_shared = next;
}

static inline void free_pool(struct fixture *f)
{
    f->pool.lb->state_free(f->state);
    if (f->pool.lb_shared)
        f->pool.lb->shared_free(f->pool.lb_shared);
    for (unsigned i = 0; i < f->pool.nservers; i++)
        server_unref(f->servers[i]);
}

/* The position of a picked server in the pool; -1 for none. */
static inline int index_of(const struct fixture *f, const struct server *s)
{
    if (!s)
        return -1;
    for (unsigned i = 0; i < f->pool.nservers; i++)
        if (f->servers[i] == s)
            return (int)i;
    fail_msg("picked a server outside the pool");
    return -1;
}

/* Every `window` consecutive picks of seq[0, n) hold server k exactly want[k] times
 * (k < nservers): the interleaving of a smooth rotation. */
static inline void assert_each_window(const int *seq, int n, int window, const int *want,
                                      int nservers)
{
    for (int start = 0; start + window <= n; start++) {
        int count[MAXS] = {0};
        for (int k = 0; k < window; k++)
            count[seq[start + k]]++;
        for (int k = 0; k < nservers; k++)
            assert_int_equal(count[k], want[k]);
    }
}

/* Puts a server in a state the way the health thread would: through its inputs. */
static inline void set_state(struct server *s, enum server_state st)
{
    s->h.admin = st == SERVER_MAINT      ? SERVER_ADMIN_MAINT
                 : st == SERVER_DRAINING ? SERVER_ADMIN_DRAIN
                                         : SERVER_ADMIN_READY;
    s->h.check_down = st == SERVER_DOWN;
    s->h.ejected = st == SERVER_EJECTED;
    server_update_state(s, 0, "test");
    assert_int_equal(server_state(s), st);
}

#endif
