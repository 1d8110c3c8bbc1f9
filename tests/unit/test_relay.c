/*
 * test_relay.c - unit tests for src/proxy/relay.c, the byte relay of TCP mode and WebSocket
 * tunnels, over real loopback TCP connections.
 *
 *   peer_a <--TCP--> a [relay] b <--TCP--> peer_b
 *
 * The test plays the event loop: before each relay_pump() it asks poll() what each socket is
 * ready for and adds that to the connection's readiness flags, as the edge-triggered loop would
 * (the relay clears them itself). A connection marked as TLS (a non-NULL ssl pointer that is never
 * used, since the transport stays plain TCP) makes its directions take the buffer path instead of
 * splice, so both paths run through the same tests.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/buf.h"
#include "core/conn.h"
#include "proxy/relay.h"
#include "proxy/thread.h"

#define BUFSIZE 20480

struct fixture {
    struct worker w;
    int peer_a, peer_b; /* the test's ends */
    struct conn a, b;   /* the relay's ends */
    struct relay r;
};

static void nonblock(int fd)
{
    assert_int_equal(fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK), 0);
}

/* A connected loopback pair: *mine is the test's end, *theirs the relay's. */
static void tcp_pair(int *mine, int *theirs)
{
    int l = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(sa);
    assert_int_equal(bind(l, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(listen(l, 1), 0);
    assert_int_equal(getsockname(l, (struct sockaddr *)&sa, &len), 0);
    *mine = socket(AF_INET, SOCK_STREAM, 0);
    assert_int_equal(connect(*mine, (struct sockaddr *)&sa, sizeof(sa)), 0);
    *theirs = accept(l, NULL, NULL);
    assert_true(*theirs >= 0);
    close(l);
    nonblock(*mine);
    nonblock(*theirs);
}

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    f->w.loop = loop_new();
    buf_pool_init(&f->w.bufs, BUFSIZE, 16);
    f->w.relay = relay_local_new();
    assert_non_null(f->w.loop);
    assert_non_null(f->w.relay);
    int a, b;
    tcp_pair(&f->peer_a, &a);
    tcp_pair(&f->peer_b, &b);
    conn_init_tcp(&f->a, a, NULL);
    conn_init_tcp(&f->b, b, NULL);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    relay_stop(&f->r);
    assert_int_equal(f->w.bufs.inuse, 0); /* every buffer went back */
    f->a.ssl = f->b.ssl = NULL;
    conn_close(&f->a, false);
    conn_close(&f->b, false);
    close(f->peer_a);
    close(f->peer_b);
    relay_local_free(&f->w);
    buf_pool_destroy(&f->w.bufs);
    loop_free(f->w.loop);
    free(f);
    return 0;
}

/* What the edge-triggered loop would have reported by now. */
static void events(struct conn *c)
{
    struct pollfd p = {.fd = c->io.fd, .events = POLLIN | POLLOUT | POLLRDHUP};
    assert_true(poll(&p, 1, 0) >= 0);
    if (p.revents & POLLIN)
        c->io.ready |= LOOP_READABLE;
    if (p.revents & POLLOUT)
        c->io.ready |= LOOP_WRITABLE;
    if (p.revents & POLLRDHUP)
        c->io.ready |= LOOP_RDHUP | LOOP_READABLE;
    if (p.revents & POLLHUP)
        c->io.ready |= LOOP_HUP | LOOP_READABLE;
    if (p.revents & POLLERR)
        c->io.ready |= LOOP_ERR;
}

static enum relay_status pump(struct fixture *f)
{
    events(&f->a);
    events(&f->b);
    return relay_pump(&f->r);
}

/* A test peer's stream: bytes to send (a pattern seeded by who sends), and what it received. */
struct stream {
    int fd;
    size_t to_send, sent;
    unsigned char seed;
    unsigned char *got;
    size_t ngot, cap;
    bool eof, reset, shut_after_send;
};

static unsigned char pattern(unsigned char seed, size_t i)
{
    return (unsigned char)(seed + i * 7 + (i >> 12));
}

/* Moves what the peer can move without blocking. */
static void peer_io(struct stream *s)
{
    unsigned char chunk[65536];
    while (s->sent < s->to_send) {
        size_t n = s->to_send - s->sent < sizeof(chunk) ? s->to_send - s->sent : sizeof(chunk);
        for (size_t i = 0; i < n; i++)
            chunk[i] = pattern(s->seed, s->sent + i);
        ssize_t w = send(s->fd, chunk, n, MSG_NOSIGNAL);
        if (w <= 0)
            break;
        s->sent += (size_t)w;
    }
    if (s->shut_after_send && s->sent == s->to_send) {
        shutdown(s->fd, SHUT_WR);
        s->shut_after_send = false;
    }
    while (!s->eof && !s->reset) {
        ssize_t r = recv(s->fd, chunk, sizeof(chunk), 0);
        if (r == 0)
            s->eof = true;
        if (r < 0 && errno == ECONNRESET)
            s->reset = true;
        if (r <= 0)
            break;
        if (s->ngot + (size_t)r > s->cap) {
            s->cap = (s->ngot + (size_t)r) * 2;
            s->got = realloc(s->got, s->cap);
        }
        memcpy(s->got + s->ngot, chunk, (size_t)r);
        s->ngot += (size_t)r;
    }
}

static void check_received(const struct stream *s, unsigned char seed, size_t len)
{
    assert_int_equal(s->ngot, len);
    for (size_t i = 0; i < len; i++)
        if (s->got[i] != pattern(seed, i))
            fail_msg("byte %zu differs", i);
}

/* Both peers stream len bytes to each other and half-close; the relay must end DONE with every
 * byte delivered in order and counted. */
static void transfer(struct fixture *f, size_t len)
{
    struct stream pa = {.fd = f->peer_a, .to_send = len, .seed = 1, .shut_after_send = true};
    struct stream pb = {.fd = f->peer_b, .to_send = len, .seed = 2, .shut_after_send = true};
    relay_start(&f->r, &f->w, &f->a, &f->b, NULL, NULL);
    enum relay_status st = RELAY_WAIT;
    for (unsigned i = 0; i < 1000000 && st != RELAY_DONE; i++) {
        peer_io(&pa);
        peer_io(&pb);
        st = pump(f);
        assert_true(st == RELAY_WAIT || st == RELAY_PROGRESS || st == RELAY_DONE);
    }
    assert_int_equal(st, RELAY_DONE);
    while (!pa.eof || !pb.eof) {
        peer_io(&pa);
        peer_io(&pb);
    }
    check_received(&pb, 1, len);
    check_received(&pa, 2, len);
    assert_int_equal(relay_bytes_a_to_b(&f->r), len);
    assert_int_equal(relay_bytes_b_to_a(&f->r), len);
    assert_false(relay_pending(&f->r));
    free(pa.got);
    free(pb.got);
}

static void test_splice_transfer(void **state)
{
    transfer(*state, 8u << 20);
}

static void test_buffer_transfer(void **state)
{
    struct fixture *f = *state;
    f->a.ssl = (struct ssl_st *)1; /* "TLS": never spliced */
    transfer(f, 8u << 20);
}

/* Bytes the owner read before the relay (an HTTP 101's followers) go first, in both directions,
 * and the buffers become the relay's. */
static void test_pending_bytes_first(void **state)
{
    struct fixture *f = *state;
    struct buf to_b = {0}, to_a = {0};
    assert_int_equal(buf_get(&f->w.bufs, &to_b), 0);
    assert_int_equal(buf_get(&f->w.bufs, &to_a), 0);
    memcpy(to_b.data, "early-", 6);
    to_b.end = 6;
    memcpy(to_a.data, "EARLY-", 6);
    to_a.end = 6;
    relay_start(&f->r, &f->w, &f->a, &f->b, &to_b, &to_a);
    assert_null(to_b.data);
    assert_null(to_a.data);
    assert_int_equal(send(f->peer_a, "late", 4, 0), 4);
    assert_int_equal(send(f->peer_b, "LATE", 4, 0), 4);
    char got_b[32] = {0}, got_a[32] = {0};
    size_t nb = 0, na = 0;
    for (unsigned i = 0; i < 1000 && (nb < 10 || na < 10); i++) {
        pump(f);
        ssize_t r = recv(f->peer_b, got_b + nb, sizeof(got_b) - 1 - nb, 0);
        if (r > 0)
            nb += (size_t)r;
        r = recv(f->peer_a, got_a + na, sizeof(got_a) - 1 - na, 0);
        if (r > 0)
            na += (size_t)r;
    }
    assert_string_equal(got_b, "early-late");
    assert_string_equal(got_a, "EARLY-LATE");
    assert_int_equal(relay_bytes_a_to_b(&f->r), 10);
    assert_int_equal(relay_bytes_b_to_a(&f->r), 10);
    assert_int_equal(pump(f), RELAY_WAIT);
    assert_int_equal(f->w.bufs.inuse, 0); /* idle: nothing held */
}

/* One side's end of stream reaches the other as a FIN; the other direction goes on. */
static void test_half_close(void **state)
{
    struct fixture *f = *state;
    relay_start(&f->r, &f->w, &f->a, &f->b, NULL, NULL);
    assert_int_equal(send(f->peer_a, "question", 8, 0), 8);
    assert_int_equal(shutdown(f->peer_a, SHUT_WR), 0);
    struct stream pb = {.fd = f->peer_b};
    for (unsigned i = 0; i < 1000 && !pb.eof; i++) {
        assert_int_equal(pump(f), RELAY_WAIT);
        peer_io(&pb);
    }
    assert_true(pb.eof);
    assert_int_equal(pb.ngot, 8);
    /* b answers after a's FIN, and a still gets it */
    struct stream pa = {.fd = f->peer_a};
    assert_int_equal(send(f->peer_b, "answer", 6, 0), 6);
    assert_int_equal(shutdown(f->peer_b, SHUT_WR), 0);
    enum relay_status st = RELAY_WAIT;
    for (unsigned i = 0; i < 1000 && st != RELAY_DONE; i++) {
        st = pump(f);
        peer_io(&pa);
    }
    assert_int_equal(st, RELAY_DONE);
    while (!pa.eof)
        peer_io(&pa);
    assert_int_equal(pa.ngot, 6);
    assert_memory_equal(pa.got, "answer", 6);
    free(pa.got);
    free(pb.got);
}

/* A reset on b ends the relay naming b. */
static void test_reset_names_the_side(void **state)
{
    struct fixture *f = *state;
    relay_start(&f->r, &f->w, &f->a, &f->b, NULL, NULL);
    assert_int_equal(send(f->peer_a, "hello", 5, 0), 5);
    assert_int_equal(pump(f), RELAY_WAIT);
    struct linger lg = {.l_onoff = 1, .l_linger = 0};
    assert_int_equal(setsockopt(f->peer_b, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg)), 0);
    close(f->peer_b);
    f->peer_b = socket(AF_INET, SOCK_STREAM, 0); /* for teardown */
    enum relay_status st = RELAY_WAIT;
    for (unsigned i = 0; i < 1000 && st == RELAY_WAIT; i++)
        st = pump(f);
    assert_int_equal(st, RELAY_ERROR_B);
    assert_int_equal(f->r.error, ECONNRESET);
}

/* A full destination stops reading from the source (backpressure), and nothing is lost. */
static void test_backpressure(void **state)
{
    struct fixture *f = *state;
    relay_start(&f->r, &f->w, &f->a, &f->b, NULL, NULL);
    struct stream pa = {.fd = f->peer_a, .to_send = 32u << 20, .seed = 5};
    for (unsigned i = 0; i < 2000; i++) { /* peer_b reads nothing */
        peer_io(&pa);
        pump(f);
    }
    assert_true(pa.sent < pa.to_send); /* the sender was held back */
    struct stream pb = {.fd = f->peer_b};
    pa.shut_after_send = true;
    for (unsigned i = 0; i < 1000000 && !pb.eof; i++) {
        peer_io(&pa);
        pump(f);
        peer_io(&pb);
    }
    check_received(&pb, 5, 32u << 20);
    free(pb.got);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN); /* as main.c does: splice has no MSG_NOSIGNAL */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_splice_transfer, setup, teardown),
        cmocka_unit_test_setup_teardown(test_buffer_transfer, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pending_bytes_first, setup, teardown),
        cmocka_unit_test_setup_teardown(test_half_close, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reset_names_the_side, setup, teardown),
        cmocka_unit_test_setup_teardown(test_backpressure, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
