/*
 * ewma.h - the arithmetic of a peak-EWMA latency estimate (Finagle's and Linkerd's), without
 * threads or clocks, so that the unit tests can drive it with made-up times.
 *
 * An estimate e, last changed at time t, is worth e * exp(-(now - t) / tau) now: it decays toward
 * zero while no answer comes, so a server that was slow and then left alone is tried again after
 * a while. A new sample x (a response time) either replaces it, if x is above its current worth
 * (the "peak": a server that slows down is avoided at once), or pulls it toward x by the weight
 * 1 - exp(-(now - t) / tau) (a server that speeds up regains its share gradually).
 */
#ifndef FULCRUM_LB_EWMA_H
#define FULCRUM_LB_EWMA_H

#include <math.h>
#include <stdint.h>

/* What an estimate of e (ns) set at stamp_us is worth at now_us, with time constant tau_us. */
static inline double lb_ewma_worth(double e, uint64_t stamp_us, uint64_t now_us, double tau_us)
{
    if (now_us <= stamp_us || e <= 0)
        return e;
    return e * exp(-(double)(now_us - stamp_us) / tau_us);
}

/* The estimate after a sample of x ns at now_us; e == 0 means no estimate yet (x becomes it). */
static inline double lb_ewma_update(double e, uint64_t stamp_us, uint64_t now_us, double tau_us,
                                    double x)
{
    if (e <= 0)
        return x;
    double w = now_us > stamp_us ? exp(-(double)(now_us - stamp_us) / tau_us) : 1.0;
    double worth = e * w;
    if (x >= worth) /* at or above what the estimate is worth now: the peak wins at once */
        return x;
    return worth * w + x * (1 - w); /* between x and worth: the longer the gap, the nearer x */
}

#endif
