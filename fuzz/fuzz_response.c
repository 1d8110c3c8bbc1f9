/*
 * fuzz_response.c - libFuzzer target: the response head scanner, parser and rewriter.
 *
 * Byte 0 picks the split size, byte 1 the request method the response answers (HEAD changes the
 * framing rules). An accepted head is rewritten, and the result must parse again.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "http/http1.h"
#include "http/rewrite.h"

static struct http1_field fields[100], fields2[128];

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    size_t step = 1 + data[0] % 64;
    uint8_t method = data[1] % 10;
    data += 2;
    size -= 2;
    const struct http1_limits limits = {.max_head_bytes = 4096, .max_fields = 100};
    char *buf = malloc(size ? size : 1);
    if (!buf)
        return 0;
    memcpy(buf, data, size);

    struct http1_scan scan = {0};
    uint16_t status = 0;
    const char *why = NULL;
    int r = HTTP1_AGAIN;
    for (size_t have = 0; r == HTTP1_AGAIN && have < size;) {
        have = have + step > size ? size : have + step;
        r = http1_scan_head(&scan, buf, have, &limits, false, &status, &why);
    }
    if (r == HTTP1_DONE) {
        struct http1_msg msg = {.fields = fields};
        if (http1_parse_response(&scan, buf, &limits, method, &msg) == HTTP1_DONE) {
            unsigned flags = (unsigned)(data[0] >> 6) & 3u;
            char out[8192];
            size_t n = rewrite_response(buf, &msg, flags, NULL, out, sizeof(out));
            if (n) {
                const struct http1_limits big = {.max_head_bytes = 8192, .max_fields = 128};
                struct http1_scan s2 = {0};
                struct http1_msg m2 = {.fields = fields2};
                if (http1_scan_head(&s2, out, n, &big, false, &status, &why) != HTTP1_DONE ||
                    http1_parse_response(&s2, out, &big, method, &m2) != HTTP1_DONE ||
                    m2.status != msg.status)
                    abort();
            }
        }
    }
    free(buf);
    return 0;
}
