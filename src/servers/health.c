/*
 * health.c - health arithmetic (see health.h).
 */
#include "servers/health.h"

enum health_change health_record(struct health *h, bool up, bool passed, unsigned rise,
                                 unsigned fall)
{
    bool first = !h->checked;
    h->checked = true;
    if (passed) {
        h->fails = 0;
        h->passes++;
        /* a server that started down awaiting its first check (a newcomer): the first decides */
        if (!up && (first || h->passes >= rise))
            return HEALTH_GOES_UP;
        return HEALTH_SAME;
    }
    h->passes = 0;
    h->fails++;
    /* Up is only the assumption made before anything was known: the first check decides. */
    if (up && (first || h->fails >= fall))
        return HEALTH_GOES_DOWN;
    return HEALTH_SAME;
}

uint32_t health_next_interval(const struct health *h, bool up, const struct conf_health_check *c)
{
    if (up)
        return h->fails ? c->fast_interval_ms : c->interval_ms;
    return h->passes ? c->fast_interval_ms : c->down_interval_ms;
}

uint32_t health_ejection_ms(const struct conf_passive *p, unsigned n)
{
    uint64_t ms = (uint64_t)p->ejection_time_ms * (n ? n : 1);
    return ms > p->max_ejection_time_ms ? p->max_ejection_time_ms : (uint32_t)ms;
}

unsigned health_max_ejected(unsigned nservers, unsigned percent)
{
    return (unsigned)((uint64_t)nservers * percent / 100);
}

uint64_t health_effective_weight(unsigned weight, uint64_t up_since_ms, uint64_t now_ms,
                                 uint32_t slow_start_ms)
{
    uint64_t full = (uint64_t)weight * HEALTH_WEIGHT_SCALE;
    if (!weight || !up_since_ms || !slow_start_ms || now_ms >= up_since_ms + slow_start_ms)
        return full;
    uint64_t elapsed = now_ms > up_since_ms ? now_ms - up_since_ms : 0;
    uint64_t w = full * elapsed / slow_start_ms;
    return w ? w : 1; /* "about zero", but still a candidate so the ramp can start */
}
