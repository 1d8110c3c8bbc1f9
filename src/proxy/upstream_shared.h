/*
 * upstream_shared.h - what upstream.c (connections and the thread's per-server state) and
 * upstream_h2.c (HTTP/2 connections to servers and their streams) share; nothing else includes
 * it. upstream.h is the public face of both.
 */
#ifndef FULCRUM_UPSTREAM_SHARED_H
#define FULCRUM_UPSTREAM_SHARED_H

#include <stdbool.h>

#include "core/conn.h"
#include "core/loop.h"

struct h2_env;
struct h2_link;
struct server;
struct tls_client;
struct upstream;
struct worker;

/* upstream.c: the server's HTTP/2 connections on this thread (the head of their list). */
struct h2_link **upstream_links(struct worker *w, const struct server *s);
/* upstream.c: has the server left the thread's snapshot? (its idle connections close) */
bool upstream_server_retired(struct worker *w, const struct server *s);
/* upstream.c: a connection like upstream_connect()'s, offering only h2 through ALPN over TLS. */
struct upstream *upstream_connect_h2(struct worker *w, struct server *s,
                                     const struct tls_client *tls, loop_io_fn handler, int *err);
/* upstream.c: a zeroed upstream (from the thread's spares). */
struct upstream *upstream_alloc(struct worker *w);
/* upstream.c: lets go of u without closing its connection, which moved elsewhere. */
void upstream_forget(struct worker *w, struct upstream *u);
/* upstream.c: the thread's HTTP/2 environment for connections to servers (made on first use). */
const struct h2_env *upstream_h2_env(struct worker *w);

/* upstream_h2.c: upstream_finish_connect() for a stream. */
enum conn_status upstream_stream_finish_connect(struct upstream *u, int *err, const char **why);
/* upstream_h2.c: ends u's stream (reset: RST_STREAM CANCEL) and lets go of its connection. */
void upstream_stream_close(struct worker *w, struct upstream *u, bool reset);
/* upstream_h2.c: closes the connections of a server's list (upstream_links) that carry no
 * stream; the others close when their last stream ends. */
void upstream_close_idle_links(struct h2_link **head);

#endif
