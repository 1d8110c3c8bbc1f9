/*
 * control.h - the control thread: everything that is not request traffic.
 *
 * One thread per process, with its own event loop, owns the running snapshot and is the only
 * place where it is replaced (reload) and where a server's state changes (health checks,
 * ejections, and later operator commands). Workers only ever receive snapshots and read states.
 *
 *     main thread (signals) --control_request_reload()--> control thread
 *     workers --control_notify_eject()--------------------> control thread
 *     control thread --worker_offer(snapshot)--> every worker
 */
#ifndef FULCRUM_CONTROL_H
#define FULCRUM_CONTROL_H

#include <stdbool.h>
#include <stdint.h>

struct snapshot;
struct worker;

struct control_options {
    const char *config_path; /* NULL: started from flags, nothing to reload */
    int log_level_override;  /* -1: follow the file's log_level */
    unsigned threads;        /* the number of workers running */
};

/* Starts the control thread for snap and these workers. Returns 0, or -1 (logged). */
int control_start(struct snapshot *snap, struct worker **workers, unsigned nworkers,
                  const struct control_options *opts);
void control_stop(void);

/* From any thread. */
void control_request_reload(void);
void control_notify_eject(void);

/* Counters, for metrics and the admin API. */
struct control_stats {
    uint64_t reloads_ok, reloads_failed;
    uint64_t last_reload_ms; /* monotonic, 0 if never */
};
void control_get_stats(struct control_stats *out);

/*
 * In the control thread: reads the configuration file again and, if it is valid, makes it the
 * running one. Returns 0, or -1 with *errors set to a malloc'ed text (the caller frees it).
 */
int control_reload(char **errors);

/* ---- for the admin API, in the control thread only ---- */

struct stats;
struct snapshot *control_snapshot(void);
/* Every worker's counters (stats.h), for summing. */
struct stats *const *control_worker_stats(unsigned *n);
uint64_t control_started_ms(void);
const struct control_options *control_options(void);

/*
 * Operator commands. Each returns 0, or an HTTP status (400, 404, 409) with *error set to a
 * malloc'ed message. admin is -1 to leave the state alone, or an enum server_admin; weight is -1
 * to leave it alone. Server additions and removals last until the next reload from the file.
 */
int control_set_server(const char *pool, const char *name, int admin, int weight, char **error);
int control_add_server(const char *pool, const char *name, const char *address, unsigned weight,
                       char **error);
int control_remove_server(const char *pool, const char *name, char **error);

#endif
