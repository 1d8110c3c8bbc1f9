/*
 * control.h - the control thread: everything that is not request traffic.
 *
 * One thread per process, with its own event loop, owns the running snapshot and is the only
 * place where it is replaced (reload) and where a server's state changes (health checks,
 * ejections, and operator commands from the admin API). Workers only ever receive snapshots and
 * read states.
 *
 *     main thread (signals) --control_request_reload()--> control thread
 *     workers --eject hook (servers/pool.h)---------------> control thread
 *     control thread --worker_offer(snapshot)--> every worker
 */
#ifndef FULCRUM_CONTROL_H
#define FULCRUM_CONTROL_H

#include <stdbool.h>
#include <stdint.h>

#include "ctl/plane.h"

struct snapshot;
struct worker;

/* Starts the control thread for snap and these workers. Returns 0, or -1 (logged). */
int control_start(struct snapshot *snap, struct worker **workers, unsigned nworkers,
                  const struct control_options *opts);
void control_stop(void);

/* From any thread. */
void control_request_reload(void);

#endif
