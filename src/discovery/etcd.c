/*
 * etcd.c - placeholder until the etcd source lands: it starts, says so, and finds nothing.
 */
#include "discovery/etcd.h"

#include <stdlib.h>
#include <string.h>

#include "core/log.h"

struct etcd_source {
    struct discovery_status status;
};

struct etcd_source *etcd_source_new(struct loop *loop, const char *pool,
                                    const struct conf_etcd_discovery *c, unsigned max,
                                    const struct member_set *initial, discovery_update_fn *fn,
                                    void *arg)
{
    struct etcd_source *src = calloc(1, sizeof(*src));
    if (src)
        log_warn("pool %s: etcd discovery is not built yet", pool);
    return src;
}

void etcd_source_free(struct etcd_source *src)
{
    free(src);
}

const struct discovery_status *etcd_source_status(const struct etcd_source *src)
{
    return &src->status;
}
