/*
 * path.h - the form of a request path that routing compares, so that no spelling of a path
 * can reach a pool other than the one the rules give it.
 *
 * RFC 3986 section 6.2.2 lists what does not change a path's meaning; routing undoes all of it
 * before it compares:
 *   - percent-encoded unreserved characters (letters, digits, '-', '.', '_', '~') are decoded,
 *     and the hex digits of the escapes that stay are upper-cased (%2f -> %2F);
 *   - dot-segments are resolved (section 5.2.4), after the decoding, so "/v1/%2e%2e/admin" is
 *     "/admin";
 *   - with merge_slashes, runs of '/' become one ("//admin" is "/admin").
 * A path that climbs above the root ("/../x", "/a/../../x") is refused rather than clamped: a
 * backend that resolved it differently could be reached at a path the rules never saw. So is a
 * malformed escape ("%", "%zz") and a path that does not start with '/'.
 *
 * "%2F" (an encoded '/') stays encoded and is not a separator here: it is part of a segment.
 *
 * Only the path is given, without the query. Nothing is allocated; the result goes to out.
 */
#ifndef FULCRUM_HTTP_PATH_H
#define FULCRUM_HTTP_PATH_H

#include <stdbool.h>
#include <stddef.h>

enum path_status {
    PATH_OK = 0,
    PATH_ABOVE_ROOT, /* a ".." climbed above "/" */
    PATH_BAD_ESCAPE, /* '%' not followed by two hex digits */
    PATH_NOT_ABSOLUTE,
    PATH_TOO_LONG, /* the result does not fit in cap */
};

/* Writes the normalised form of path[0, len) to out (at most cap bytes, not NUL-terminated) and
 * its length to *out_len. The result is never longer than the input. */
enum path_status path_normalize(const char *path, size_t len, bool merge_slashes, char *out,
                                size_t cap, size_t *out_len);

/* A short reason for a status other than PATH_OK, for the 400 answer. */
const char *path_status_text(enum path_status status);

#endif
