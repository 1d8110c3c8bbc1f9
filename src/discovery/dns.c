/*
 * dns.c - placeholder until the dns source lands: it starts, says so, and finds nothing.
 */
#include "discovery/dns.h"

#include <stdlib.h>
#include <string.h>

#include "core/log.h"

struct dns_source {
    struct discovery_status status;
};

struct dns_source *dns_source_new(struct loop *loop, const char *pool,
                                  const struct conf_dns_discovery *c, unsigned max,
                                  const struct member_set *initial, discovery_update_fn *fn,
                                  void *arg)
{
    struct dns_source *src = calloc(1, sizeof(*src));
    if (src)
        log_warn("pool %s: dns discovery is not built yet", pool);
    return src;
}

void dns_source_free(struct dns_source *src)
{
    free(src);
}

const struct discovery_status *dns_source_status(const struct dns_source *src)
{
    return &src->status;
}
