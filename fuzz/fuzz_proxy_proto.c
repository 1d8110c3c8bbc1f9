/*
 * fuzz_proxy_proto.c - libFuzzer target: the PROXY protocol parser (core/proxy_proto) and writer.
 *
 * The input is the first bytes of a connection. Each parse reads from a heap copy that ends where
 * the bytes it is given end, so AddressSanitizer catches a read one byte too far. Invariants:
 *   - the status and the result agree: DONE has 0 < header_len <= size and no error, ERROR has an
 *     error, a non-local DONE carries two IPv4 or two IPv6 addresses;
 *   - prefixes: an error is final (once a prefix is ERROR, every longer one is, so the input is
 *     ERROR too), and a prefix of a DONE input is AGAIN until it holds the header, then the same
 *     DONE: bytes after the header never change the answer;
 *   - round trip: addresses that were parsed are written by pp_write in both versions, into a
 *     buffer of exactly the written size, and parse back to the same addresses; one byte less of
 *     room makes pp_write return 0.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/proxy_proto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Parses data[0, len) from the end of a heap buffer of exactly len bytes. */
static enum pp_status parse_exact(const uint8_t *data, size_t len, struct pp_result *r)
{
    char *copy = malloc(len ? len : 1);
    if (!copy)
        abort();
    if (len)
        memcpy(copy, data, len);
    enum pp_status s = pp_parse(copy, len, r);
    free(copy);
    return s;
}

static bool same_result(const struct pp_result *a, const struct pp_result *b)
{
    return a->version == b->version && a->local == b->local && a->header_len == b->header_len &&
           a->src_len == b->src_len && a->dst_len == b->dst_len &&
           memcmp(&a->src, &b->src, sizeof(a->src)) == 0 &&
           memcmp(&a->dst, &b->dst, sizeof(a->dst)) == 0;
}

static void check_consistent(enum pp_status s, const struct pp_result *r, size_t len)
{
    switch (s) {
    case PP_DONE:
        if (r->error || r->header_len == 0 || r->header_len > len ||
            (r->version != 1 && r->version != 2))
            abort();
        if (r->local) {
            if (r->src_len || r->dst_len)
                abort();
        } else if (r->src.ss_family != r->dst.ss_family || r->src_len != r->dst_len ||
                   (r->src.ss_family != AF_INET && r->src.ss_family != AF_INET6)) {
            abort();
        }
        break;
    case PP_AGAIN:
        if (r->error || (r->header_len && r->header_len <= len))
            abort();
        break;
    case PP_ERROR:
        if (!r->error || !*r->error)
            abort();
        break;
    default:
        abort();
    }
}

/* One prefix of the input against the whole input's answer. */
static void check_prefix(const uint8_t *data, size_t k, enum pp_status whole,
                         const struct pp_result *wr)
{
    struct pp_result r;
    enum pp_status s = parse_exact(data, k, &r);
    check_consistent(s, &r, k);
    if (s == PP_ERROR && whole != PP_ERROR)
        abort(); /* an error must be final */
    if (whole == PP_DONE) {
        bool holds_header = k >= wr->header_len;
        if (holds_header ? (s != PP_DONE || !same_result(&r, wr)) : s != PP_AGAIN)
            abort();
    }
}

static void round_trip(int version, const struct pp_result *r)
{
    char out[PP_WRITE_MAX];
    const struct sockaddr *src = (const struct sockaddr *)&r->src;
    const struct sockaddr *dst = (const struct sockaddr *)&r->dst;
    size_t n = pp_write(version, src, dst, out, sizeof(out));
    if (n == 0 || pp_write(version, src, dst, out, n - 1) != 0)
        abort();
    char *exact = malloc(n);
    if (!exact || pp_write(version, src, dst, exact, n) != n || memcmp(exact, out, n) != 0)
        abort();
    free(exact);

    struct pp_result back;
    if (parse_exact((const uint8_t *)out, n, &back) != PP_DONE || back.version != version ||
        back.local || back.header_len != n || back.src_len != r->src_len ||
        back.dst_len != r->dst_len || memcmp(&back.src, &r->src, r->src_len) != 0 ||
        memcmp(&back.dst, &r->dst, r->dst_len) != 0)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct pp_result whole;
    enum pp_status s = parse_exact(data, size, &whole);
    check_consistent(s, &whole, size);

    /* Every prefix of a short input, and a sample of a long one's (all of them would make the
     * target quadratic), always including both sides of the header's end. */
    size_t stride = size <= 256 ? 1 : size / 128;
    for (size_t k = 0; k < size; k += (k < 128 ? 1 : stride))
        check_prefix(data, k, s, &whole);
    if (s == PP_DONE) {
        check_prefix(data, whole.header_len - 1, s, &whole);
        check_prefix(data, whole.header_len, s, &whole);
        if (!whole.local) {
            round_trip(1, &whole);
            round_trip(2, &whole);
        }
    }
    return 0;
}
