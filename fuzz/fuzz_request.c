/*
 * fuzz_request.c - libFuzzer target: the request head scanner, parser and rewriter.
 *
 * The first input byte picks how the rest is split into arrivals, so the incremental scan is
 * exercised on every split a network could produce. Whatever the parser accepts is rewritten,
 * and the forwarded head must parse again: fulcrum must never emit a head it would reject.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "http1.h"
#include "rewrite.h"

static struct http1_field fields[100], fields2[128];

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    size_t step = 1 + data[0] % 64;
    data++;
    size--;
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
        r = http1_scan_head(&scan, buf, have, &limits, true, &status, &why);
    }
    if (r == HTTP1_ERROR && (status < 400 || status > 505))
        abort();
    if (r == HTTP1_DONE) {
        struct http1_msg msg = {.fields = fields};
        if (http1_parse_request(&scan, buf, &limits, &msg) == HTTP1_DONE) {
            char out[8192];
            size_t n = rewrite_request(buf, &msg, "192.0.2.1", 9, out, sizeof(out));
            if (n) {
                /* the forwarded head is valid HTTP/1.1 with the same framing */
                const struct http1_limits big = {.max_head_bytes = 8192, .max_fields = 128};
                struct http1_scan s2 = {0};
                struct http1_msg m2 = {.fields = fields2};
                if (http1_scan_head(&s2, out, n, &big, true, &status, &why) != HTTP1_DONE ||
                    s2.head_end != n || http1_parse_request(&s2, out, &big, &m2) != HTTP1_DONE ||
                    m2.body != msg.body || m2.content_length != msg.content_length)
                    abort();
            }
        } else if (msg.error_status < 400 || msg.error_status > 505) {
            abort();
        }
    }
    free(buf);
    return 0;
}
