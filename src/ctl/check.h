/*
 * check.h - active health checks of every server, and passive ejections.
 *
 * The control thread (control.c) owns one checker and runs it on its event loop, so servers are
 * checked once per process, not once per worker. Worker threads never change a state: they count
 * failures on the server and, when a server reaches its pool's threshold, wake the control thread
 * through the eject hook (server_set_eject_hook() in servers/pool.h), which then calls
 * checker_eject_requests(). Results are published through the servers' atomics (pool.h), which
 * every worker reads without locks.
 */
#ifndef FULCRUM_CHECK_H
#define FULCRUM_CHECK_H

#include "core/loop.h"
#include "lb/snapshot.h"

struct checker;

struct checker *checker_new(struct loop *loop);
void checker_free(struct checker *c);

/*
 * Watches the servers of snap: a server new to the configuration is checked at once; one that
 * stays keeps its state, counters and schedule (unless its pool's check changed); one that left
 * is no longer checked. Returns -1 if memory ran out for some server (logged).
 */
int checker_sync(struct checker *c, const struct snapshot *snap);

/* Ejects the servers whose workers asked for it (eject_wanted), within the pools' limits. */
void checker_eject_requests(struct checker *c);

#endif
