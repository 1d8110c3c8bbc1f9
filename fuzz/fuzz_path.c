/*
 * fuzz_path.c - libFuzzer target: request path normalisation (http/path.h).
 *
 * Byte 0 picks merge_slashes. Whatever the input, a normalised path must start with '/', be no
 * longer than the input, normalise to itself again, and hold no dot-segment (and, when merging,
 * no empty segment) that a backend could resolve differently from the router.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "http/path.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static bool is_dot_segment(const char *s, size_t len)
{
    return (len == 1 && s[0] == '.') || (len == 2 && s[0] == '.' && s[1] == '.');
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    bool merge = data[0] & 1;
    const char *path = (const char *)data + 1;
    size_t len = size - 1;
    char *out = malloc(len ? len : 1), *again = malloc(len ? len : 1);
    if (!out || !again)
        abort();
    size_t n, n2;
    if (path_normalize(path, len, merge, out, len, &n) == PATH_OK) {
        if (n < 1 || n > len || out[0] != '/')
            abort();
        if (path_normalize(out, n, merge, again, len, &n2) != PATH_OK || n2 != n ||
            memcmp(again, out, n) != 0)
            abort();
        for (size_t start = 1; start <= n;) {
            const char *slash = memchr(out + start, '/', n - start);
            size_t seg = slash ? (size_t)(slash - (out + start)) : n - start;
            if (is_dot_segment(out + start, seg) || (merge && seg == 0 && slash))
                abort();
            start += seg + 1;
        }
    }
    free(out);
    free(again);
    return 0;
}
