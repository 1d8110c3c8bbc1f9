/*
 * register.h - `fulcrum-backend --register URL`: the backend puts itself into an etcd registry
 * under a lease it keeps alive, so that a fulcrum watching the prefix (discovery.etcd) sends it
 * traffic, and a killed backend disappears once the lease expires (register.c says how).
 */
#ifndef FULCRUM_BACKEND_REGISTER_H
#define FULCRUM_BACKEND_REGISTER_H

#include <stddef.h>

#define BE_REGISTER_TTL_DEFAULT 5u

struct be_register_conf {
    const char *url;     /* http://HOST:PORT/PREFIX, e.g. http://127.0.0.1:2379/services/api/ */
    const char *name;    /* the key is PREFIX + name; also the value's "name" */
    const char *address; /* the value's "address": IP:port or [v6]:port */
    unsigned weight;     /* the value's "weight", 0-256 */
    unsigned ttl_s;      /* the lease's TTL in seconds (kept alive every TTL/3) */
};

struct be_register;

/*
 * Checks c (the URL above all) and starts the thread that registers and keeps the lease alive;
 * c's strings are copied. Start it after SIGTERM and SIGINT are blocked, so that they keep going
 * to the main thread. NULL with a reason in err (nothing started).
 */
struct be_register *be_register_start(const struct be_register_conf *c, char *err, size_t errlen);

/* Stops the thread: the lease is revoked first (the key goes at once), then everything is freed.
 * Waits at most a few seconds for an unreachable etcd. NULL is ignored. */
void be_register_stop(struct be_register *r);

#endif
