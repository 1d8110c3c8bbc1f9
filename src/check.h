/*
 * check.h - the health thread: active checks of every server, passive ejections, and every change
 * of a server's state.
 *
 * One thread per process, with its own event loop, checks each server of a pool that has a
 * health_check (once per process, not once per worker). Worker threads never change a state:
 * they count failures on the server and, when a server reaches its pool's threshold, call
 * check_notify(); the health thread then decides about the ejection. Results are published
 * through the servers' atomics (pool.h), which every worker reads without locks.
 */
#ifndef FULCRUM_CHECK_H
#define FULCRUM_CHECK_H

#include "snapshot.h"

/* Starts the health thread for snap. Returns 0, or -1 (logged). */
int check_start(struct snapshot *snap);
/* Stops it and waits for it. */
void check_stop(void);
/* From any thread: a server asked to be ejected (eject_wanted). */
void check_notify(void);

#endif
