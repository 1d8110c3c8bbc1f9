/*
 * fuzz_request.c - libFuzzer target: the request head scanner, parser and rewriter.
 *
 * The first input byte picks how the rest is split into arrivals (its low 6 bits), so the
 * incremental scan is exercised on every split a network could produce, and the rule for field
 * names with '_' (its high 2 bits). Whatever the parser accepts is rewritten, and the forwarded
 * head must parse again: fulcrum must never emit a head it would reject. A chunked request must
 * go out with exactly one canonical Transfer-Encoding line, and with the default rule no field
 * name with '_' may go out at all.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "http/http1.h"
#include "http/rewrite.h"

static struct http1_field fields[100], fields2[128];

/* The forwarded head m2 (in out) has what the rewriter promises. */
static bool forwarded_head_ok(const char *out, const struct http1_msg *m2, uint8_t rule)
{
    unsigned te_lines = 0;
    for (uint32_t i = 0; i < m2->nfields; i++) {
        const struct http1_field *f = &m2->fields[i];
        if (f->id == HTTP1_FIELD_TRANSFER_ENCODING) {
            te_lines++;
            if (f->value_len != 7 || memcmp(out + f->value_off, "chunked", 7) != 0)
                return false;
        }
        if (rule == HTTP1_UNDERSCORES_DROP && memchr(out + f->name_off, '_', f->name_len))
            return false;
    }
    return te_lines == (m2->body == HTTP1_BODY_CHUNKED ? 1u : 0u);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    size_t step = 1 + data[0] % 64;
    uint8_t rule = (uint8_t)(data[0] >> 6); /* 3 is not a rule: the parser must treat it as drop */
    data++;
    size--;
    const struct http1_limits limits = {
        .max_head_bytes = 4096, .max_fields = 100, .underscores = rule};
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
            size_t n =
                rewrite_request(buf, &msg, &(struct rewrite_client){.ip = "192.0.2.1", .ip_len = 9},
                                NULL, out, sizeof(out));
            if (n) {
                /* the forwarded head is valid HTTP/1.1 with the same framing */
                const struct http1_limits big = {.max_head_bytes = 8192, .max_fields = 128};
                struct http1_scan s2 = {0};
                struct http1_msg m2 = {.fields = fields2};
                if (http1_scan_head(&s2, out, n, &big, true, &status, &why) != HTTP1_DONE ||
                    s2.head_end != n || http1_parse_request(&s2, out, &big, &m2) != HTTP1_DONE ||
                    m2.body != msg.body || m2.content_length != msg.content_length ||
                    !forwarded_head_ok(out, &m2, rule == 3 ? HTTP1_UNDERSCORES_DROP : rule))
                    abort();
            }
        } else if (msg.error_status < 400 || msg.error_status > 505) {
            abort();
        }
    }
    free(buf);
    return 0;
}
