/*
 * set.c - the TLS contexts of a configuration (set.h).
 */
#include "tls/set.h"

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <stdlib.h>
#include <string.h>

#include "tls/client.h"
#include "tls/report.h"
#include "tls/server.h"
#include "tls/tickets.h"

int tls_global_init(void)
{
    if (OPENSSL_init_ssl(0, NULL) != 1 || tls_tickets_init() < 0) {
        ERR_clear_error();
        return -1;
    }
    return 0;
}

struct tls_set *tls_set_new(const struct conf *conf, char **errors)
{
    struct tls_report r = {.conf = conf};
    struct tls_set *set = calloc(1, sizeof(*set));
    *errors = NULL;
    if (!set ||
        !(set->servers = calloc(conf->nlisteners ? conf->nlisteners : 1, sizeof(*set->servers))) ||
        !(set->clients = calloc(conf->npools ? conf->npools : 1, sizeof(*set->clients))) ||
        !(set->etcd = calloc(conf->npools ? conf->npools : 1, sizeof(*set->etcd)))) {
        tls_set_free(set);
        *errors = strdup("out of memory");
        return NULL;
    }
    set->nservers = conf->nlisteners;
    set->nclients = conf->npools;
    for (unsigned i = 0; i < conf->nlisteners; i++)
        if (conf->listeners[i].tls.enabled)
            set->servers[i] = tls_server_new(conf, i, &r);
    for (unsigned i = 0; i < conf->npools; i++) {
        if (conf->pools[i].tls.enabled)
            set->clients[i] = tls_client_new(conf, i, &r);
        const struct conf_etcd_discovery *e = &conf->pools[i].discovery.etcd;
        if (e->enabled && e->https)
            set->etcd[i] = tls_client_new_etcd(conf, i, &r);
    }
    if (!r.text && !r.oom)
        return set;
    tls_set_free(set);
    if (r.oom) {
        free(r.text);
        *errors = strdup("out of memory");
    } else {
        r.text[r.len - 1] = '\0'; /* no newline after the last line */
        *errors = r.text;
    }
    return NULL;
}

void tls_set_free(struct tls_set *set)
{
    if (!set)
        return;
    for (unsigned i = 0; set->servers && i < set->nservers; i++)
        tls_server_free(set->servers[i]);
    for (unsigned i = 0; set->clients && i < set->nclients; i++)
        tls_client_free(set->clients[i]);
    for (unsigned i = 0; set->etcd && i < set->nclients; i++)
        tls_client_free(set->etcd[i]);
    free(set->servers);
    free(set->clients);
    free(set->etcd);
    free(set);
}
