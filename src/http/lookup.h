/*
 * lookup.h - finding one value in a parsed request: a header field, a cookie, a query parameter.
 * For the balancers' keys (hash_key, sticky cookies); nothing is copied or decoded.
 *
 * - A field is found by name, ignoring ASCII case; the first field of that name counts, with the
 *   parser's trimming of surrounding whitespace.
 * - A cookie is found in the Cookie fields (RFC 6265 section 5.4: "a=1; b=2", one field or
 *   several), by exact name; the first of that name counts. Whitespace around the name and the
 *   value is not part of them, and the value loses a pair of double quotes around it, as RFC
 *   6265's cookie-value grammar allows them.
 * - A query parameter is split at '&' as "name=value" or "name"; the first of that name counts,
 *   with no percent-decoding (as route matches do).
 * Each returns true and points *value (with *len) into the input when found.
 */
#ifndef FULCRUM_HTTP_LOOKUP_H
#define FULCRUM_HTTP_LOOKUP_H

#include <stdbool.h>
#include <stddef.h>

#include "http/http1.h"

bool http_field_value(const char *head, const struct http1_msg *msg, const char *name,
                      size_t name_len, const char **value, size_t *len);

/* In one Cookie field's value. */
bool http_cookie_in(const char *field, size_t field_len, const char *name, size_t name_len,
                    const char **value, size_t *len);
/* In every Cookie field of a request, in order. */
bool http_cookie_value(const char *head, const struct http1_msg *msg, const char *name,
                       size_t name_len, const char **value, size_t *len);

bool http_query_value(const char *query, size_t query_len, const char *name, size_t name_len,
                      const char **value, size_t *len);

#endif
