/*
 * source.c - what every discovery source shares (source.h): the names of its health.
 */
#include "discovery/source.h"

const char *discovery_health_label(enum discovery_health h)
{
    switch (h) {
    case DISCOVERY_STARTING:
        return "starting";
    case DISCOVERY_OK:
        return "ok";
    case DISCOVERY_DEGRADED:
        return "degraded";
    case DISCOVERY_FAILED:
        return "failed";
    }
    return "?";
}
