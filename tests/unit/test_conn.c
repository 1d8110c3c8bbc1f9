/*
 * test_conn.c - unit tests for src/core/conn.c: the rules of non-blocking I/O that every
 * connection shares (EINTR, EAGAIN, readiness flags, end of stream, EPIPE), driven through a fake
 * transport that plays back scripted results. Before the connection layer these rules lived as
 * statics of the proxy and could only be reached end to end.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/conn.h"

/* One scripted result of a transport call: a count (>= 0) or -1 with err. */
struct step {
    ssize_t ret;
    int err;
};

static struct fake {
    struct step script[8];
    unsigned nsteps, next;
    unsigned calls, closes, shutdowns;
    bool closed_with_reset;
    size_t last_len; /* length asked of the last call */
} fake;

static ssize_t play(size_t len)
{
    fake.calls++;
    fake.last_len = len;
    assert_true(fake.next < fake.nsteps);
    struct step s = fake.script[fake.next++];
    if (s.ret < 0)
        errno = s.err;
    return s.ret;
}

static ssize_t fake_recv(struct conn *c, void *buf, size_t len)
{
    ssize_t n = play(len);
    if (n > 0)
        memset(buf, 'x', (size_t)n);
    return n;
}

static ssize_t fake_sendv(struct conn *c, const struct iovec *iov, int iovcnt)
{
    size_t len = 0;
    for (int i = 0; i < iovcnt; i++)
        len += iov[i].iov_len;
    return play(len);
}

static int fake_shutdown(struct conn *c)
{
    fake.shutdowns++;
    return 0;
}

static void fake_close(struct conn *c, bool reset)
{
    fake.closes++;
    fake.closed_with_reset = reset;
}

static const struct conn_ops fake_ops = {
    .name = "fake",
    .recv = fake_recv,
    .peek = fake_recv,
    .sendv = fake_sendv,
    .shutdown = fake_shutdown,
    .close = fake_close,
};

static void script(struct conn *c, uint32_t ready, unsigned n, const struct step *steps)
{
    memset(&fake, 0, sizeof(fake));
    if (n) /* steps may be NULL when nothing is scripted */
        memcpy(fake.script, steps, n * sizeof(*steps));
    fake.nsteps = n;
    c->io.fd = 7;
    c->io.ready = ready;
    c->io.handler = NULL;
    c->ops = &fake_ops;
}

static void test_read_full_keeps_readable(void **state)
{
    (void)state;
    struct conn c;
    char buf[16];
    size_t got;
    script(&c, LOOP_READABLE, 1, (struct step[]){{16, 0}});
    assert_int_equal(conn_read(&c, buf, sizeof(buf), &got), CONN_DONE);
    assert_int_equal(got, 16);
    assert_true(c.io.ready & LOOP_READABLE); /* more may be there: no new edge would say so */
}

static void test_short_read_clears_readable(void **state)
{
    (void)state;
    struct conn c;
    char buf[16];
    size_t got;
    script(&c, LOOP_READABLE | LOOP_WRITABLE, 1, (struct step[]){{5, 0}});
    assert_int_equal(conn_read(&c, buf, sizeof(buf), &got), CONN_DONE);
    assert_int_equal(got, 5);
    assert_false(c.io.ready & LOOP_READABLE);
    assert_true(c.io.ready & LOOP_WRITABLE);
    /* the flag is clear: no system call until the next event */
    assert_int_equal(conn_read(&c, buf, sizeof(buf), &got), CONN_BLOCKED);
    assert_int_equal(fake.calls, 1);
}

static void test_short_read_with_fin_pending_stays_readable(void **state)
{
    (void)state;
    struct conn c;
    char buf[16];
    size_t got;
    script(&c, LOOP_READABLE | LOOP_RDHUP, 2, (struct step[]){{5, 0}, {0, 0}});
    assert_int_equal(conn_read(&c, buf, sizeof(buf), &got), CONN_DONE);
    assert_true(c.io.ready & LOOP_READABLE); /* the FIN had its only edge: read once more */
    assert_int_equal(conn_read(&c, buf, sizeof(buf), &got), CONN_EOF);
    assert_int_equal(got, 0);
    assert_false(c.io.ready & LOOP_READABLE);
}

static void test_read_eintr_retried_eagain_blocks(void **state)
{
    (void)state;
    struct conn c;
    char buf[16];
    size_t got;
    script(&c, LOOP_READABLE, 3, (struct step[]){{-1, EINTR}, {-1, EINTR}, {-1, EAGAIN}});
    assert_int_equal(conn_read(&c, buf, sizeof(buf), &got), CONN_BLOCKED);
    assert_int_equal(fake.calls, 3);
    assert_false(c.io.ready & LOOP_READABLE);
}

static void test_read_error_keeps_errno(void **state)
{
    (void)state;
    struct conn c;
    char buf[16];
    size_t got;
    script(&c, LOOP_READABLE, 1, (struct step[]){{-1, ECONNRESET}});
    assert_int_equal(conn_read(&c, buf, sizeof(buf), &got), CONN_ERROR);
    assert_int_equal(errno, ECONNRESET);
}

static void test_read_without_room_is_blocked(void **state)
{
    (void)state;
    struct conn c;
    char buf[1];
    size_t got;
    script(&c, LOOP_READABLE, 0, NULL);
    assert_int_equal(conn_read(&c, buf, 0, &got), CONN_BLOCKED);
    assert_int_equal(fake.calls, 0);
}

static void test_write_rules(void **state)
{
    (void)state;
    struct conn c;
    size_t sent;
    /* short write: the transport is full */
    script(&c, LOOP_WRITABLE, 1, (struct step[]){{3, 0}});
    assert_int_equal(conn_write(&c, "abcdef", 6, &sent), CONN_DONE);
    assert_int_equal(sent, 3);
    assert_false(c.io.ready & LOOP_WRITABLE);
    assert_int_equal(conn_write(&c, "def", 3, &sent), CONN_BLOCKED);
    assert_int_equal(fake.calls, 1);

    /* EINTR retried, then EAGAIN */
    script(&c, LOOP_WRITABLE, 2, (struct step[]){{-1, EINTR}, {-1, EAGAIN}});
    assert_int_equal(conn_write(&c, "abc", 3, &sent), CONN_BLOCKED);
    assert_int_equal(sent, 0);
    assert_false(c.io.ready & LOOP_WRITABLE);

    /* nothing taken from a non-empty write: the peer is gone */
    script(&c, LOOP_WRITABLE, 1, (struct step[]){{0, 0}});
    assert_int_equal(conn_write(&c, "abc", 3, &sent), CONN_ERROR);
    assert_int_equal(errno, EPIPE);

    /* a gone peer is an error with its errno, never a signal */
    script(&c, LOOP_WRITABLE, 1, (struct step[]){{-1, EPIPE}});
    assert_int_equal(conn_write(&c, "abc", 3, &sent), CONN_ERROR);
    assert_int_equal(errno, EPIPE);

    /* nothing to write: no call */
    script(&c, LOOP_WRITABLE, 0, NULL);
    assert_int_equal(conn_write(&c, "", 0, &sent), CONN_BLOCKED);
    assert_int_equal(fake.calls, 0);
}

static void test_writev_counts_every_buffer(void **state)
{
    (void)state;
    struct conn c;
    size_t sent;
    struct iovec iov[2] = {{.iov_base = "head", .iov_len = 4}, {.iov_base = "body", .iov_len = 4}};
    script(&c, LOOP_WRITABLE, 1, (struct step[]){{8, 0}});
    assert_int_equal(conn_writev(&c, iov, 2, &sent), CONN_DONE);
    assert_int_equal(sent, 8);
    assert_int_equal(fake.last_len, 8);
    assert_true(c.io.ready & LOOP_WRITABLE); /* all taken: still room */
}

static void test_peer_gone(void **state)
{
    (void)state;
    struct conn c;
    script(&c, LOOP_RDHUP, 1, (struct step[]){{0, 0}});
    assert_true(conn_peer_gone(&c)); /* end of stream, nothing before it */
    script(&c, LOOP_RDHUP, 1, (struct step[]){{1, 0}});
    assert_false(conn_peer_gone(&c)); /* bytes first: a half-close behind pipelined requests */
    script(&c, LOOP_RDHUP, 2, (struct step[]){{-1, EINTR}, {-1, EAGAIN}});
    assert_false(conn_peer_gone(&c));
    script(&c, LOOP_RDHUP, 1, (struct step[]){{-1, ECONNRESET}});
    assert_true(conn_peer_gone(&c));
}

static void test_close_and_shutdown(void **state)
{
    (void)state;
    struct conn c;
    script(&c, LOOP_READABLE | LOOP_WRITABLE, 0, NULL);
    c.io.handler = (loop_io_fn)1;
    assert_int_equal(conn_shutdown(&c), 0);
    assert_int_equal(fake.shutdowns, 1);
    conn_close(&c, true);
    assert_int_equal(fake.closes, 1);
    assert_true(fake.closed_with_reset);
    assert_int_equal(c.io.fd, -1);
    assert_null(c.io.handler); /* events still queued for it are ignored */
    assert_int_equal(c.io.ready, 0);
    conn_close(&c, false); /* closing twice releases nothing twice */
    assert_int_equal(fake.closes, 1);
}

/* A preamble goes to the socket itself, never through the transport (which would encrypt it),
 * under the same rules: a full socket is CONN_BLOCKED and clears the flag. */
static void test_write_plain_bypasses_the_transport(void **state)
{
    (void)state;
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    assert_int_not_equal(fcntl(sv[0], F_SETFL, O_NONBLOCK), -1);
    struct conn c;
    size_t sent;
    script(&c, LOOP_WRITABLE, 0, NULL); /* the fake transport fails the test if called */
    c.io.fd = sv[0];
    assert_int_equal(conn_write_plain(&c, "PROXY UNKNOWN\r\n", 15, &sent), CONN_DONE);
    assert_int_equal(sent, 15);
    assert_int_equal(fake.calls, 0);
    char got[32];
    assert_int_equal(read(sv[1], got, sizeof(got)), 15);
    assert_memory_equal(got, "PROXY UNKNOWN\r\n", 15);

    char fill[4096];
    memset(fill, 'f', sizeof(fill));
    enum conn_status r;
    do
        r = conn_write_plain(&c, fill, sizeof(fill), &sent);
    while (r == CONN_DONE && (c.io.ready & LOOP_WRITABLE));
    assert_false(c.io.ready & LOOP_WRITABLE);
    assert_int_equal(conn_write_plain(&c, fill, sizeof(fill), &sent), CONN_BLOCKED);
    assert_int_equal(sent, 0);
    assert_int_equal(fake.calls, 0);

    close(sv[1]);
    c.io.ready |= LOOP_WRITABLE;
    assert_int_equal(conn_write_plain(&c, "x", 1, &sent), CONN_ERROR);
    assert_int_equal(errno, EPIPE); /* and no SIGPIPE */
    close(sv[0]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_read_full_keeps_readable),
        cmocka_unit_test(test_short_read_clears_readable),
        cmocka_unit_test(test_short_read_with_fin_pending_stays_readable),
        cmocka_unit_test(test_read_eintr_retried_eagain_blocks),
        cmocka_unit_test(test_read_error_keeps_errno),
        cmocka_unit_test(test_read_without_room_is_blocked),
        cmocka_unit_test(test_write_rules),
        cmocka_unit_test(test_writev_counts_every_buffer),
        cmocka_unit_test(test_peer_gone),
        cmocka_unit_test(test_close_and_shutdown),
        cmocka_unit_test(test_write_plain_bypasses_the_transport),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
