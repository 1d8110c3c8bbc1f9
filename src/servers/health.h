/*
 * health.h - the arithmetic of server health, without I/O or threads: the rise/fall counters of
 * active checks, which interval comes next, how long an ejection lasts, how many servers a pool
 * may have ejected, and the weight of a server in slow start.
 *
 * check.c applies these to real checks and real time; the unit tests apply them to made-up ones.
 */
#ifndef FULCRUM_HEALTH_H
#define FULCRUM_HEALTH_H

#include <stdbool.h>
#include <stdint.h>

#include "conf/conf.h"

/* Consecutive results of a server's active checks. */
struct health {
    unsigned passes; /* consecutive passes so far */
    unsigned fails;  /* consecutive failures so far */
    bool checked;    /* at least one check has completed */
};

enum health_change {
    HEALTH_SAME = 0,
    HEALTH_GOES_UP,
    HEALTH_GOES_DOWN,
};

/*
 * Records one check result for a server that the checks currently count as up (up) or down.
 * The first check decides: a server assumed up goes down at its first failure, and one that
 * started down (a newcomer awaiting its first check) comes up at its first pass. After that it
 * takes `fall` failures in a row to go down and `rise` passes in a row to come back.
 */
enum health_change health_record(struct health *h, bool up, bool passed, unsigned rise,
                                 unsigned fall);

/* The delay before the next check: fast_interval while the state is moving, down_interval
 * while fully down, interval otherwise. */
uint32_t health_next_interval(const struct health *h, bool up, const struct conf_health_check *c);

/* Length of a server's n-th ejection (n >= 1): ejection_time x n, capped at max_ejection_time. */
uint32_t health_ejection_ms(const struct conf_passive *p, unsigned n);

/* How many of a pool's n servers may be ejected at the same time. */
unsigned health_max_ejected(unsigned nservers, unsigned percent);

/*
 * Weight scale: weights are multiplied by this so that a server in slow start can have a small
 * fraction of its configured weight.
 */
#define HEALTH_WEIGHT_SCALE 1000u

/* A server's effective (scaled) weight, given when it came back up (0: not ramping). */
uint64_t health_effective_weight(unsigned weight, uint64_t up_since_ms, uint64_t now_ms,
                                 uint32_t slow_start_ms);

#endif
