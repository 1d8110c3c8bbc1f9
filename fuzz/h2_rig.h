/*
 * h2_rig.h - what the two HTTP/2 fuzz targets share (fuzz_h2.c drives the server role,
 * fuzz_h2_client.c the client role): the thread's HTTP/2 environment, a loop that runs a bounded
 * number of rounds without sleeping, and a session's connection over a socket pair whose other
 * end plays the peer. Everything is static: each target is a program of its own, and includes
 * this once.
 */
#ifndef FULCRUM_FUZZ_H2_RIG_H
#define FULCRUM_FUZZ_H2_RIG_H

#include <stdbool.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/buf.h"
#include "core/conn.h"
#include "core/log.h"
#include "core/loop.h"
#include "h2/env.h"
#include "h2/session.h"
#include "http/http1.h"

#define ROUNDS 64

static struct loop *loop;
static struct buf_pool bufs;
static struct http1_limits limits = {.max_head_bytes = 16384, .max_fields = 100};
static struct http1_field field_array[100];
static struct http1_field *fields = field_array;
static struct h2_env env;
static struct loop_timer tick;
static unsigned rounds, open_users;
static size_t read_room; /* what a user asks for per read: small rooms split chunk framing */
static bool session_open;

/* The session's last call (h2_host.closed). */
static void closed(void *ctx)
{
    session_open = false;
}

static void on_tick(struct loop *l, struct loop_timer *t)
{
    if (++rounds >= ROUNDS)
        loop_stop(l);
}

/* Every round polls without sleeping: the timer is always due. */
static void before_poll(struct loop *l, void *arg)
{
    loop_timer_set(l, &tick, 0);
}

/* The loop, the buffers (buf_size bytes each) and the environment, made on the first input. */
static void rig_init(uint32_t buf_size)
{
    if (loop)
        return;
    log_max_level = LOG_ERROR;
    loop = loop_new();
    buf_pool_init(&bufs, buf_size, 16);
    env = (struct h2_env){
        .loop = loop, .bufs = &bufs, .limits = &limits, .fields = &fields, .local = h2_local_new()};
    if (!loop || !env.local)
        abort();
    tick.fn = on_tick;
    loop_set_before_poll(loop, before_poll, NULL);
}

/* Runs ROUNDS rounds of the loop, then takes what the session sent to peer, so that it is never
 * stuck on a full socket. */
static void run_rounds(int peer)
{
    rounds = 0;
    loop_run(loop);
    char sink[65536];
    while (read(peer, sink, sizeof(sink)) > 0)
        ;
}

/* A socket pair: sv[1] plays the peer, sv[0] becomes *c, watched by the loop. false if none. */
static bool rig_connect(int sv[2], struct conn *c)
{
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) < 0)
        return false;
    conn_init_tcp(c, sv[0], NULL);
    if (conn_watch(loop, c) < 0)
        abort();
    return true;
}

/* The limits both roles run with: small, so that the fuzzer reaches them. */
static const struct h2_limits rig_limits = {
    .max_concurrent_streams = 8, .max_header_list_size = 4096, .stream_idle_ms = 50, .idle_ms = 50};

/* Closes the session if it is still open and lets the loop free what was buried; nothing of it
 * may outlive the connection. */
static void rig_finish(struct h2_session *h2, int peer)
{
    if (session_open)
        h2_session_close(h2);
    run_rounds(peer); /* the batch is over: buried sessions are freed */
    close(peer);
    if (open_users || session_open)
        abort(); /* a stream or the session outlived the connection */
}

#endif
