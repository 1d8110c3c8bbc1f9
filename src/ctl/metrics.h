/*
 * metrics.h - the Prometheus text exposition (format 0.0.4) served at /metrics.
 *
 * Rendered on demand in the control thread from the running snapshot, the servers' shared state
 * and the sum of every worker's counters (stats.h); nothing is kept between scrapes.
 */
#ifndef FULCRUM_METRICS_H
#define FULCRUM_METRICS_H

#include <stddef.h>

struct control_plane;

/* The page for the running state that cp gives access to: a malloc'ed text and its length in
 * *len, or NULL if memory ran out. */
char *metrics_render(const struct control_plane *cp, size_t *len);

#endif
