/*
 * fuzz_etcd.c - libFuzzer target: what the etcd source reads from etcd (discovery/etcd_json.h).
 *
 * The first byte picks what the rest is, and the rest is copied to an allocation of its exact
 * size, so that a read past its end is caught:
 *   0  a registry value: parsed, it is a usable server (a name of 1-255 visible ASCII
 *      characters, a weight of 0-256, an IPv4 or IPv6 address with a port other than 0);
 *   1  a range answer: loaded into a registry, which stays sorted without duplicate keys, and
 *      built into a set of at most 8 servers under the prefix "/p/";
 *   2  a watch message: applied to a registry of three keys (one bad value among them); the
 *      registry stays sorted, its revision never goes back, and the set is built as above;
 *   3  base64: whatever decodes fits its bound, and the input's bytes survive encode + decode.
 * Whatever the bytes, nothing crashes, leaks or reads out of bounds.
 */
#include <arpa/inet.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "core/base64.h"
#include "discovery/etcd_json.h"
#include "discovery/members.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_SET 8

static void check_member(const struct member *m)
{
    size_t n = strlen(m->name);
    if (n == 0 || n >= MEMBER_NAME_MAX || m->weight > 256)
        abort();
    for (size_t i = 0; i < n; i++)
        if (m->name[i] < 0x21 || m->name[i] > 0x7e)
            abort();
    const struct sockaddr *sa = (const struct sockaddr *)&m->addr.ss;
    if (sa->sa_family == AF_INET) {
        if (((const struct sockaddr_in *)sa)->sin_port == 0)
            abort();
    } else if (sa->sa_family == AF_INET6) {
        if (((const struct sockaddr_in6 *)sa)->sin6_port == 0)
            abort();
    } else {
        abort();
    }
    if (m->addr.any)
        abort();
}

static void check_registry(const struct etcd_registry *reg)
{
    for (size_t i = 1; i < reg->n; i++) {
        const struct etcd_kv *a = &reg->kvs[i - 1], *b = &reg->kvs[i];
        size_t n = a->key_len < b->key_len ? a->key_len : b->key_len;
        int c = memcmp(a->key, b->key, n);
        if (c > 0 || (c == 0 && a->key_len >= b->key_len))
            abort(); /* not strictly increasing */
    }
}

static void build_set(struct etcd_registry *reg)
{
    struct member_set set;
    struct member_log log = {0};
    members_init(&set, MAX_SET);
    if (etcd_registry_members(reg, "/p/", "fuzz", &log, &set) == 0) {
        if (set.n > MAX_SET)
            abort();
        for (unsigned i = 0; i < set.n; i++)
            check_member(&set.v[i]);
    }
    members_free(&set);
    members_log_free(&log);
}

/* A registry of three keys, as a range read would leave it. */
static void seed_registry(struct etcd_registry *reg)
{
    static const char range[] =
        "{\"header\":{\"revision\":\"10\"},\"kvs\":["
        "{\"key\":\"L3AvYQ==\",\"mod_revision\":\"5\","
        "\"value\":\"eyJhZGRyZXNzIjoiMTI3LjAuMC4xOjEifQ==\"}," /* /p/a {"address":"127.0.0.1:1"} */
        "{\"key\":\"L3AvYg==\",\"mod_revision\":\"6\",\"value\":\"eA==\"}," /* /p/b x */
        "{\"key\":\"L3AvYw==\",\"mod_revision\":\"7\","
        "\"value\":\"eyJhZGRyZXNzIjoiWzo6MV06MiJ9\"}]}"; /* /p/c {"address":"[::1]:2"} */
    struct etcd_range r;
    char why[160];
    if (etcd_parse_range(range, sizeof(range) - 1, &r, why, sizeof(why)) < 0)
        abort();
    etcd_registry_load(reg, &r);
    etcd_range_free(&r);
    if (reg->n != 3 || reg->revision != 10)
        abort();
}

static void fuzz_base64(const char *in, size_t n)
{
    unsigned char *out = malloc(n / 4 * 3 + 1);
    char *text = malloc(base64_encoded_size(n));
    if (!out || !text)
        abort();
    ssize_t got = base64_decode(in, n, out, n / 4 * 3);
    if (got > (ssize_t)(n / 4 * 3))
        abort();
    /* the input as bytes: encoded, then decoded, it is the same */
    base64_encode(in, n, text);
    size_t tlen = strlen(text);
    unsigned char *back = malloc(tlen / 4 * 3 + 1);
    if (!back)
        abort();
    if (tlen + 1 != base64_encoded_size(n) ||
        base64_decode(text, tlen, back, tlen / 4 * 3) != (ssize_t)n || memcmp(back, in, n) != 0)
        abort();
    free(back);
    free(text);
    free(out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    log_max_level = -1;
    size_t n = size - 1;
    char *in = malloc(n ? n : 1);
    if (!in)
        return 0;
    memcpy(in, data + 1, n);
    char why[160];

    switch (data[0] % 4) {
    case 0: {
        struct member m;
        if (etcd_parse_value(in, n, "default-name", &m, why, sizeof(why)) == 0)
            check_member(&m);
        break;
    }
    case 1: {
        struct etcd_range r;
        struct etcd_registry reg;
        etcd_registry_init(&reg);
        if (etcd_parse_range(in, n, &r, why, sizeof(why)) == 0) {
            etcd_registry_load(&reg, &r);
            check_registry(&reg);
            build_set(&reg);
        }
        etcd_range_free(&r);
        etcd_registry_free(&reg);
        break;
    }
    case 2: {
        struct etcd_watch_msg m;
        struct etcd_registry reg;
        etcd_registry_init(&reg);
        seed_registry(&reg);
        if (etcd_parse_watch(in, n, &m, why, sizeof(why)) == 0) {
            int64_t before = reg.revision;
            if (etcd_registry_apply(&reg, &m) >= 0 && reg.revision < before)
                abort();
            check_registry(&reg);
            build_set(&reg);
        }
        etcd_watch_msg_free(&m);
        etcd_registry_free(&reg);
        break;
    }
    default:
        fuzz_base64(in, n);
        break;
    }
    free(in);
    return 0;
}
