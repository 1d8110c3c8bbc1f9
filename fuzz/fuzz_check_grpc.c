/*
 * fuzz_check_grpc.c - libFuzzer target: what a server sends back to a gRPC health check
 * (ctl/check_grpc.h), the part of health_check {type: grpc} that reads bytes from a server.
 *
 * The first input byte picks how the rest is cut into reads (1 to 32 bytes each, or all at once
 * for 0), as the socket may deliver it; the bytes go to a fresh check call whose request was
 * taken as sent. Whatever they are:
 *   - once a verdict is PASS or FAIL it never changes, and FAIL always says why;
 *   - PASS comes only with the reason "SERVING";
 *   - the acknowledgements the session queues can always be taken.
 * The connection's end is fed last.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ctl/check_grpc.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void drain(struct grpc_check *g)
{
    const uint8_t *out;
    size_t n;
    while ((n = grpc_check_pending(g, &out)) > 0)
        grpc_check_sent(g, n);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    size_t step = data[0] % 33;
    data++;
    size--;
    struct grpc_check *g = grpc_check_new("10.0.0.1:9090", "pkg.Echo");
    if (!g)
        return 0;
    drain(g);
    enum grpc_check_verdict first = GRPC_CHECK_MORE;
    char why[128], first_why[128] = "";
    for (size_t at = 0; at < size;) {
        size_t n = step ? (size - at < step ? size - at : step) : size - at;
        uint8_t *chunk = malloc(n); /* exact size: a read past it is caught */
        if (!chunk)
            break;
        memcpy(chunk, data + at, n);
        enum grpc_check_verdict v = grpc_check_feed(g, chunk, n, why, sizeof(why));
        free(chunk);
        at += n;
        if (v != GRPC_CHECK_MORE && !why[0])
            abort();
        if (v == GRPC_CHECK_PASS && strcmp(why, "SERVING") != 0)
            abort();
        if (first != GRPC_CHECK_MORE && (v != first || strcmp(why, first_why) != 0))
            abort();
        if (first == GRPC_CHECK_MORE && v != GRPC_CHECK_MORE) {
            first = v;
            memcpy(first_why, why, sizeof(why));
        }
        drain(g);
    }
    enum grpc_check_verdict end = grpc_check_feed(g, NULL, 0, why, sizeof(why));
    if (end == GRPC_CHECK_MORE || (first != GRPC_CHECK_MORE && end != first))
        abort();
    grpc_check_free(g);
    return 0;
}
