/*
 * lookup.c - one value out of a parsed request: a field, a cookie, a query parameter
 * (lookup.h).
 */
#include "http/lookup.h"

#include <string.h>
#include <strings.h>

/* The index of the first field named name at or after from, or msg->nfields. */
static uint32_t next_field(const char *head, const struct http1_msg *msg, uint32_t from,
                           const char *name, size_t name_len)
{
    for (uint32_t i = from; i < msg->nfields; i++) {
        const struct http1_field *f = &msg->fields[i];
        /* names are tokens (the parser saw to it): no NUL to stop strncasecmp() early */
        if (f->name_len == name_len && strncasecmp(head + f->name_off, name, name_len) == 0)
            return i;
    }
    return msg->nfields;
}

bool http_field_value(const char *head, const struct http1_msg *msg, const char *name,
                      size_t name_len, const char **value, size_t *len)
{
    uint32_t i = next_field(head, msg, 0, name, name_len);
    if (i == msg->nfields)
        return false;
    *value = head + msg->fields[i].value_off;
    *len = msg->fields[i].value_len;
    return true;
}

static bool is_space(char c)
{
    return c == ' ' || c == '\t';
}

bool http_cookie_in(const char *field, size_t field_len, const char *name, size_t name_len,
                    const char **value, size_t *len)
{
    const char *p = field, *end = field + field_len;
    while (p < end) {
        while (p < end && (is_space(*p) || *p == ';'))
            p++;
        const char *semi = memchr(p, ';', (size_t)(end - p));
        const char *stop = semi ? semi : end;
        const char *eq = memchr(p, '=', (size_t)(stop - p));
        const char *n_end = eq;
        while (n_end && n_end > p && is_space(n_end[-1])) /* "SRV =x": as RFC 6265 5.2 trims */
            n_end--;
        if (eq && (size_t)(n_end - p) == name_len && memcmp(p, name, name_len) == 0) {
            const char *v = eq + 1, *v_end = stop;
            while (v < v_end && is_space(*v))
                v++;
            while (v_end > v && is_space(v_end[-1]))
                v_end--;
            if (v_end - v >= 2 && v[0] == '"' && v_end[-1] == '"') {
                v++;
                v_end--;
            }
            *value = v;
            *len = (size_t)(v_end - v);
            return true;
        }
        p = stop;
    }
    return false;
}

bool http_cookie_value(const char *head, const struct http1_msg *msg, const char *name,
                       size_t name_len, const char **value, size_t *len)
{
    for (uint32_t i = next_field(head, msg, 0, "cookie", 6); i < msg->nfields;
         i = next_field(head, msg, i + 1, "cookie", 6)) {
        const struct http1_field *f = &msg->fields[i];
        if (http_cookie_in(head + f->value_off, f->value_len, name, name_len, value, len))
            return true;
    }
    return false;
}

bool http_query_value(const char *query, size_t query_len, const char *name, size_t name_len,
                      const char **value, size_t *len)
{
    const char *p = query, *end = query + query_len;
    while (p && p < end) {
        const char *amp = memchr(p, '&', (size_t)(end - p));
        const char *stop = amp ? amp : end;
        const char *eq = memchr(p, '=', (size_t)(stop - p));
        const char *name_end = eq ? eq : stop;
        if ((size_t)(name_end - p) == name_len && memcmp(p, name, name_len) == 0) {
            *value = eq ? eq + 1 : stop;
            *len = eq ? (size_t)(stop - eq - 1) : 0;
            return true;
        }
        p = amp ? amp + 1 : NULL;
    }
    return false;
}
