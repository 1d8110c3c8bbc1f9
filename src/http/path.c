/*
 * path.c - the normalised form of a request path (see path.h).
 *
 * One pass over the segments: each is written to out behind its '/', decoded as it goes; a
 * segment that turns out to be "." is taken back, and ".." takes back itself and the segment
 * before it. Since the output never outgrows the input, out needs no more room than the path.
 */
#include "http/path.h"

#include <string.h>

static int hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

static bool unreserved(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '.' || c == '_' || c == '~';
}

/* Decodes segment seg[0, len) onto out at *o; false on a malformed escape. */
static bool put_segment(const char *seg, size_t len, char *out, size_t *o)
{
    static const char digits[] = "0123456789ABCDEF";
    for (size_t k = 0; k < len; k++) {
        char c = seg[k];
        if (c != '%') {
            out[(*o)++] = c;
            continue;
        }
        int hi = k + 1 < len ? hex_value(seg[k + 1]) : -1;
        int lo = k + 2 < len ? hex_value(seg[k + 2]) : -1;
        if (hi < 0 || lo < 0)
            return false;
        unsigned char v = (unsigned char)(hi * 16 + lo);
        if (unreserved(v)) {
            out[(*o)++] = (char)v;
        } else {
            out[(*o)++] = '%';
            out[(*o)++] = digits[hi];
            out[(*o)++] = digits[lo];
        }
        k += 2;
    }
    return true;
}

enum path_status path_normalize(const char *path, size_t len, bool merge_slashes, char *out,
                                size_t cap, size_t *out_len)
{
    *out_len = 0;
    if (len == 0 || path[0] != '/')
        return PATH_NOT_ABSOLUTE;
    if (cap < len)
        return PATH_TOO_LONG; /* the result may be as long as the path */
    size_t o = 0, i = 1;
    for (;;) {
        const char *seg = path + i;
        const char *slash = memchr(seg, '/', len - i);
        size_t seg_len = slash ? (size_t)(slash - seg) : len - i;
        bool last = slash == NULL;
        size_t start = o;
        out[o++] = '/';
        if (!put_segment(seg, seg_len, out, &o))
            return PATH_BAD_ESCAPE;
        size_t n = o - start - 1;
        const char *text = out + start + 1;
        if (n == 1 && text[0] == '.') {
            o = start; /* "/a/./b" is "/a/b" */
        } else if (n == 2 && text[0] == '.' && text[1] == '.') {
            if (start == 0)
                return PATH_ABOVE_ROOT;
            o = start;
            while (out[o - 1] != '/') /* back to the '/' of the segment before */
                o--;
            o--;
        } else if (n == 0 && merge_slashes && !last) {
            o = start; /* "//" is "/" */
        } else {
            if (last)
                break;
            i += seg_len + 1;
            continue;
        }
        if (last) { /* "/a/." and "/a/b/.." name a directory: "/a/" */
            out[o++] = '/';
            break;
        }
        i += seg_len + 1;
    }
    *out_len = o;
    return PATH_OK;
}

const char *path_status_text(enum path_status status)
{
    switch (status) {
    case PATH_OK:
        return "ok";
    case PATH_ABOVE_ROOT:
        return "the path climbs above the root";
    case PATH_BAD_ESCAPE:
        return "malformed percent-encoding in the path";
    case PATH_NOT_ABSOLUTE:
        return "the path does not start with '/'";
    default:
        return "the path is too long";
    }
}
