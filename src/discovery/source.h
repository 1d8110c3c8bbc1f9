/*
 * source.h - what every discovery source (dns.c, etcd.c) shares with the control thread: how it
 * hands over a new set of servers, and the status operators see.
 *
 * A source runs on the control thread's loop, off the request path. When an answer changes the
 * set it found, it calls its update callback with the complete new set (the callee copies what it
 * keeps); when its hold_on_error runs out after failures, it calls it with an empty set. The
 * status is the source's own; the admin API, metrics and dashboard read it through the callee.
 */
#ifndef FULCRUM_SOURCE_H
#define FULCRUM_SOURCE_H

#include <stdbool.h>
#include <stdint.h>

#include "discovery/members.h"

enum discovery_health {
    DISCOVERY_STARTING = 0, /* no answer yet */
    DISCOVERY_OK,           /* the last query or watch worked */
    DISCOVERY_DEGRADED,     /* failing: the last good set is kept (hold_on_error) */
    DISCOVERY_FAILED,       /* failing for longer than hold_on_error: the set was emptied */
};

/* "starting", "ok", "degraded", "failed". */
const char *discovery_health_label(enum discovery_health h);

struct discovery_status {
    enum discovery_health health;
    uint64_t last_ok_unix_ms;          /* wall clock of the last good answer; 0: never */
    uint64_t last_change_unix_ms;      /* wall clock of the last change of the set; 0: never */
    uint64_t answers, errors, changes; /* counters since the source started */
    unsigned members;                  /* servers in the current set */
    char last_error[160];              /* "" if none yet */
};

/* The new complete set of a source. Control thread; set is the source's, valid during the call. */
typedef void discovery_update_fn(void *arg, const struct member_set *set);

#endif
