/*
 * keys.h - what a request offers the balancer besides itself: the key `balance: hash` maps to a
 * server (hash_key), and the sticky session cookie that names the server a client had before.
 *
 * Both are read from the request head as the parser left it (http/lookup.h), before the head is
 * rewritten; the proxy keeps what it needs (a digest, a server) for the request's retries.
 */
#ifndef FULCRUM_LB_KEYS_H
#define FULCRUM_LB_KEYS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "conf/conf.h"
#include "http/http1.h"
#include "servers/pool.h"

/*
 * The digest of a request's hash key for pool pc (hash_key: header, cookie, query, path, uri),
 * in *digest; false if the request has no such key (no field, cookie or parameter of that name).
 * client_ip is not read here: the proxy passes the client's address bytes themselves, as TCP
 * mode does. target is the request target as received (path and query).
 */
bool lb_request_key(const struct conf_pool *pc, const char *head, const struct http1_msg *msg,
                    const char *target, size_t target_len, uint64_t *digest);

/* The server of pool the request's sticky cookie names (pool->conf->sticky), or NULL when it
 * names none of them. Whether that server may take the request is the caller's to check. */
struct server *lb_sticky_find(const struct pool *pool, const char *head,
                              const struct http1_msg *msg);

/* The value of the Set-Cookie field that pins a client to s: "NAME=ID; Path=/; ...", written
 * into buf. Returns its length, or 0 if it does not fit. */
size_t lb_sticky_cookie(const struct conf_sticky *st, const struct server *s, char *buf,
                        size_t size);

#endif
