/*
 * plane.h - what the control plane offers the admin listener and the metrics page: the running
 * state to read, and the operator commands to run.
 *
 * control.c fills one struct control_plane and hands it to admin_start(); admin.c passes it on to
 * metrics_render(). Neither of them names the control thread, which starts them: the calls go
 * through these pointers. Every function runs in the control thread only.
 */
#ifndef FULCRUM_PLANE_H
#define FULCRUM_PLANE_H

#include <stdint.h>

struct snapshot;
struct stats;
struct discovery_view;

struct control_options {
    const char *config_path; /* NULL: started from flags, nothing to reload */
    int log_level_override;  /* -1: follow the file's log_level */
    unsigned threads;        /* the number of workers running */
};

/* Reload counters. */
struct control_stats {
    uint64_t reloads_ok, reloads_failed;
    uint64_t last_reload_ms; /* monotonic, 0 if never */
};
struct control_plane {
    struct snapshot *(*snapshot)(void); /* the running snapshot */
    /* Every worker's counters (proxy/stats.h), for summing. */
    struct stats *const *(*worker_stats)(unsigned *n);
    uint64_t (*started_ms)(void); /* monotonic */
    void (*reload_stats)(struct control_stats *out);
    const struct control_options *(*options)(void);

    /*
     * Reads the configuration file again and, if it is valid, makes it the running one. Returns
     * 0, or -1 with *errors set to a malloc'ed text (the caller frees it).
     */
    int (*reload)(char **errors);
    /*
     * Operator commands. Each returns 0, or an HTTP status (400, 404, 409) with *error set to a
     * malloc'ed message. admin is -1 to leave the state alone, or an enum server_admin; weight is
     * -1 to leave it alone. Server additions and removals last until the next reload from the
     * file.
     */
    int (*set_server)(const char *pool, const char *name, int admin, int weight, char **error);
    int (*add_server)(const char *pool, const char *name, const char *address, unsigned weight,
                      char **error);
    int (*remove_server)(const char *pool, const char *name, char **error);
    /* The discovery sources of pool (ctl/discovery.h), at most max; returns how many. */
    unsigned (*discovery)(const char *pool, struct discovery_view *out, unsigned max);
};

#endif
