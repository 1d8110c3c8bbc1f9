/*
 * fuzz_chunked.c - libFuzzer target: the chunked decoder, in pass-through and decode modes.
 *
 * Byte 0 picks the split size. Both modes must agree on where the message ends and whether it is
 * valid, and decoding must never produce more bytes than it consumed.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "http/http1.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int run(const uint8_t *data, size_t size, size_t step, bool decode, size_t *end,
               uint64_t *payload)
{
    struct http1_chunked c = {.max_trailer = 1024};
    size_t pos = 0;
    int r = HTTP1_AGAIN;
    while (r == HTTP1_AGAIN && pos < size) {
        size_t n = size - pos < step ? size - pos : step;
        char *piece = malloc(n);
        if (!piece)
            abort();
        memcpy(piece, data + pos, n);
        size_t used, produced;
        r = http1_chunked_parse(&c, piece, n, decode, &used, &produced);
        if (used > n || produced > used || (r == HTTP1_AGAIN && used != n))
            abort();
        if (!decode && produced != used)
            abort();
        pos += used;
        free(piece);
    }
    *end = pos;
    *payload = c.payload;
    return r;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    size_t step = 1 + data[0] % 32;
    size_t end1, end2;
    uint64_t p1, p2;
    int r1 = run(data + 1, size - 1, step, false, &end1, &p1);
    int r2 = run(data + 1, size - 1, size, true, &end2, &p2);
    if (r1 != r2 || (r1 != HTTP1_ERROR && (end1 != end2 || p1 != p2)))
        abort();
    return 0;
}
