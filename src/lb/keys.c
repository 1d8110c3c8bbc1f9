/*
 * keys.c - a request's hash key and its sticky cookie (keys.h).
 */
#include "lb/keys.h"

#include <string.h>

#include "core/hash.h"
#include "http/lookup.h"

/* Seeds the digest with the kind, so that a header and a cookie of the same value differ. */
#define KEY_SEED 0x6b6579u

bool lb_request_key(const struct conf_pool *pc, const char *head, const struct http1_msg *msg,
                    const char *target, size_t target_len, uint64_t *digest)
{
    const char *name = pc->hash_key_name, *v = NULL;
    size_t name_len = name ? strlen(name) : 0, len = 0;
    const char *query = memchr(target, '?', target_len);
    size_t path_len = query ? (size_t)(query - target) : target_len;
    bool found = false;

    switch (pc->hash_key) {
    case CONF_HASH_HEADER:
        found = http_field_value(head, msg, name, name_len, &v, &len);
        break;
    case CONF_HASH_COOKIE:
        found = http_cookie_value(head, msg, name, name_len, &v, &len);
        break;
    case CONF_HASH_QUERY:
        found = query &&
                http_query_value(query + 1, target_len - path_len - 1, name, name_len, &v, &len);
        break;
    case CONF_HASH_PATH:
        found = true;
        v = target;
        len = path_len;
        break;
    case CONF_HASH_URI:
        found = true;
        v = target;
        len = target_len;
        break;
    case CONF_HASH_CLIENT_IP:
        break;
    }
    if (found)
        *digest = hash_bytes(v, len, KEY_SEED + (uint64_t)pc->hash_key);
    return found;
}

struct server *lb_sticky_find(const struct pool *pool, const char *head,
                              const struct http1_msg *msg)
{
    const char *cookie = pool->conf->sticky.cookie, *v;
    size_t len;
    if (!cookie || !http_cookie_value(head, msg, cookie, strlen(cookie), &v, &len) ||
        len != sizeof(pool->servers[0]->sticky_id) - 1)
        return NULL;
    for (unsigned i = 0; i < pool->nservers; i++)
        if (memcmp(pool->servers[i]->sticky_id, v, len) == 0)
            return pool->servers[i];
    return NULL;
}

size_t lb_sticky_cookie(const struct conf_sticky *st, const struct server *s, char *buf,
                        size_t size)
{
    /* name=id, then the attributes the configuration wrote out once: no formatting per answer */
    const char *attributes = st->attributes ? st->attributes : "";
    size_t name = strlen(st->cookie), id = strlen(s->sticky_id), rest = strlen(attributes);
    if (name + 1 + id + rest >= size)
        return 0;
    memcpy(buf, st->cookie, name);
    buf[name] = '=';
    memcpy(buf + name + 1, s->sticky_id, id);
    memcpy(buf + name + 1 + id, attributes, rest + 1);
    return name + 1 + id + rest;
}
