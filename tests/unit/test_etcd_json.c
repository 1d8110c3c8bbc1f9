/*
 * test_etcd_json.c - what the etcd source reads from etcd's JSON gateway (discovery/etcd_json.h):
 * base64, request bodies, range answers, watch messages (PUT without a type, DELETE, created,
 * compacted, canceled, errors), lease answers, registry values good and bad, and the registry map
 * turned into a member set (defaults, duplicates, max_servers, each problem logged once).
 *
 * The JSON answers are the ones etcd 3.4's gateway wrote in a real session, trimmed.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "log_capture.h"

#include "core/log.h"
#include "core/base64.h"
#include "discovery/etcd_json.h"
#include "discovery/members.h"

/* base64 of a short text, for building answers. */
static const char *b64(const char *text)
{
    static char out[8][256];
    static unsigned next;
    char *o = out[next++ % 8];
    assert_true(base64_encoded_size(strlen(text)) <= sizeof(out[0]));
    base64_encode(text, strlen(text), o);
    return o;
}

static void base64_round_trips(void **state)
{
    static const char *const known[][2] = {
        {"", ""},        {"f", "Zg=="},        {"fo", "Zm8="},
        {"foo", "Zm9v"}, {"foob", "Zm9vYg=="}, {"/services/api/", "L3NlcnZpY2VzL2FwaS8="},
    };
    char enc[64];
    unsigned char dec[64];
    for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++) {
        size_t n = strlen(known[i][0]);
        assert_int_equal(base64_encoded_size(n), strlen(known[i][1]) + 1);
        base64_encode(known[i][0], n, enc);
        assert_string_equal(enc, known[i][1]);
        assert_int_equal(base64_decode(enc, strlen(enc), dec, sizeof(dec)), (ssize_t)n);
        assert_memory_equal(dec, known[i][0], n);
    }
    /* every byte value and every length mod 3 */
    unsigned char all[256];
    char text[400];
    for (int i = 0; i < 256; i++)
        all[i] = (unsigned char)(255 - i);
    for (size_t n = 250; n <= 256; n++) {
        unsigned char back[256];
        base64_encode(all, n, text);
        assert_int_equal(base64_decode(text, strlen(text), back, sizeof(back)), (ssize_t)n);
        assert_memory_equal(back, all, n);
    }
    /* refused: length not a multiple of 4, bad characters, padding in the middle, no room */
    assert_int_equal(base64_decode("Zg=", 3, dec, sizeof(dec)), -1);
    assert_int_equal(base64_decode("Zg", 2, dec, sizeof(dec)), -1);
    assert_int_equal(base64_decode("Z!==", 4, dec, sizeof(dec)), -1);
    assert_int_equal(base64_decode("Zg==Zm8=", 8, dec, sizeof(dec)), -1);
    assert_int_equal(base64_decode("Z===", 4, dec, sizeof(dec)), -1);
    assert_int_equal(base64_decode("Zm9v", 4, dec, 2), -1);
}

static void request_bodies(void **state)
{
    char *range = etcd_range_request("/services/api/");
    assert_non_null(range);
    /* range_end: the prefix with its last byte + 1, "/services/api0" */
    assert_string_equal(
        range, "{\"key\":\"L3NlcnZpY2VzL2FwaS8=\",\"range_end\":\"L3NlcnZpY2VzL2FwaTA=\"}");
    free(range);
    char *watch = etcd_watch_request("a\xff", 42);
    assert_non_null(watch);
    /* "a\xff": the 0xff byte cannot grow, so the end is "b" */
    char expect[256];
    snprintf(expect, sizeof(expect),
             "{\"create_request\":{\"key\":\"%s\",\"range_end\":\"%s\",\"start_revision\":"
             "\"42\"}}",
             b64("a\xff"), b64("b"));
    assert_string_equal(watch, expect);
    free(watch);
    watch = etcd_watch_request("\xff", 0); /* no end: "\0", every key from the prefix on */
    assert_non_null(watch);
    assert_string_equal(watch, "{\"create_request\":{\"key\":\"/w==\",\"range_end\":\"AA==\"}}");
    free(watch);
}

static void range_answers(void **state)
{
    char body[1024], why[160];
    struct etcd_range r;
    snprintf(body, sizeof(body),
             "{\"header\":{\"cluster_id\":\"324952591200643719\",\"revision\":\"3\","
             "\"raft_term\":\"2\"},\"kvs\":[{\"key\":\"%s\",\"create_revision\":\"2\","
             "\"mod_revision\":\"2\",\"version\":\"1\",\"value\":\"%s\"},{\"key\":\"%s\","
             "\"mod_revision\":\"3\",\"value\":\"eA==\"}],\"count\":\"2\"}",
             b64("/services/api/a"), b64("{\"address\":\"127.0.0.1:9001\"}"),
             b64("/services/api/b"));
    assert_int_equal(etcd_parse_range(body, strlen(body), &r, why, sizeof(why)), 0);
    assert_int_equal(r.revision, 3);
    assert_false(r.more);
    assert_int_equal(r.nkvs, 2);
    assert_string_equal(r.kvs[0].key, "/services/api/a");
    assert_int_equal(r.kvs[0].key_len, 15);
    assert_string_equal(r.kvs[0].value, "{\"address\":\"127.0.0.1:9001\"}");
    assert_int_equal(r.kvs[0].mod_revision, 2);
    assert_string_equal(r.kvs[1].value, "x");
    assert_int_equal(r.kvs[1].mod_revision, 3);
    etcd_range_free(&r);

    /* an empty answer has no kvs at all; a limited one says more */
    const char *empty = "{\"header\":{\"revision\":\"7\"},\"more\":true}";
    assert_int_equal(etcd_parse_range(empty, strlen(empty), &r, why, sizeof(why)), 0);
    assert_int_equal(r.revision, 7);
    assert_int_equal(r.nkvs, 0);
    assert_true(r.more);
    etcd_range_free(&r);

    /* an error answer, not JSON, wrong types, bad base64: refused, and always freeable */
    const char *err = "{\"error\":\"etcdserver: mvcc: required revision has been compacted\","
                      "\"message\":\"etcdserver: mvcc: required revision has been compacted\","
                      "\"code\":11}";
    assert_int_equal(etcd_parse_range(err, strlen(err), &r, why, sizeof(why)), -1);
    assert_string_equal(why, "etcd: etcdserver: mvcc: required revision has been compacted");
    etcd_range_free(&r);
    static const char *const bad[] = {
        "",
        "nope",
        "[]",
        "{\"kvs\":{}}",
        "{\"header\":{\"revision\":\"x\"}}",
        "{\"header\":{\"revision\":\"\"}}",
        "{\"kvs\":[{\"key\":\"%%%%\"}]}",
        "{\"kvs\":[{\"key\":\"eA==\"},{\"key\":7}]}",
        "{\"kvs\":[1]}",
        "{\"more\":\"yes\"}",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(etcd_parse_range(bad[i], strlen(bad[i]), &r, why, sizeof(why)), -1);
        etcd_range_free(&r);
    }
}

static void watch_messages(void **state)
{
    char msg[1024], why[160];
    struct etcd_watch_msg m;

    const char *created = "{\"result\":{\"header\":{\"cluster_id\":\"1\",\"revision\":\"3\"},"
                          "\"created\":true}}";
    assert_int_equal(etcd_parse_watch(created, strlen(created), &m, why, sizeof(why)), 0);
    assert_true(m.created);
    assert_false(m.canceled);
    assert_int_equal(m.revision, 3);
    assert_int_equal(m.nevents, 0);
    etcd_watch_msg_free(&m);

    /* a PUT has no "type" (the enum's default is left out), a DELETE has no value */
    snprintf(
        msg, sizeof(msg),
        "{\"result\":{\"header\":{\"revision\":\"5\"},\"events\":[{\"kv\":{\"key\":\"%s\","
        "\"create_revision\":\"4\",\"mod_revision\":\"4\",\"version\":\"1\",\"value\":"
        "\"eQ==\"}},{\"type\":\"DELETE\",\"kv\":{\"key\":\"%s\",\"mod_revision\":\"5\"}},"
        "{\"type\":\"PUT\",\"kv\":{\"key\":\"%s\",\"mod_revision\":\"5\",\"value\":\"eg==\"}}]}}",
        b64("/p/c"), b64("/p/c"), b64("/p/d"));
    assert_int_equal(etcd_parse_watch(msg, strlen(msg), &m, why, sizeof(why)), 0);
    assert_int_equal(m.nevents, 3);
    assert_false(m.events[0].deleted);
    assert_string_equal(m.events[0].kv.key, "/p/c");
    assert_string_equal(m.events[0].kv.value, "y");
    assert_int_equal(m.events[0].kv.mod_revision, 4);
    assert_true(m.events[1].deleted);
    assert_string_equal(m.events[1].kv.value, "");
    assert_false(m.events[2].deleted);
    etcd_watch_msg_free(&m);

    /* compacted: created, then canceled with the compact revision (two messages) */
    const char *compacted = "{\"result\":{\"header\":{\"cluster_id\":\"1\",\"raft_term\":\"2\"},"
                            "\"canceled\":true,\"compact_revision\":\"5\"}}";
    assert_int_equal(etcd_parse_watch(compacted, strlen(compacted), &m, why, sizeof(why)), 0);
    assert_true(m.canceled);
    assert_int_equal(m.compact_revision, 5);
    assert_int_equal(m.revision, 0);
    etcd_watch_msg_free(&m);

    const char *canceled = "{\"result\":{\"header\":{\"revision\":\"9\"},\"canceled\":true,"
                           "\"cancel_reason\":\"rpc error: leader changed\"}}";
    assert_int_equal(etcd_parse_watch(canceled, strlen(canceled), &m, why, sizeof(why)), 0);
    assert_true(m.canceled);
    assert_int_equal(m.compact_revision, 0);
    assert_string_equal(m.reason, "rpc error: leader changed");
    etcd_watch_msg_free(&m);

    /* errors: the stream's form (an object) and the unary one (strings) */
    const char *stream_err = "{\"error\":{\"grpc_code\":14,\"http_code\":503,\"message\":"
                             "\"etcdserver: no leader\",\"http_status\":\"Service Unavailable\"}}";
    assert_int_equal(etcd_parse_watch(stream_err, strlen(stream_err), &m, why, sizeof(why)), -1);
    assert_string_equal(why, "etcd: etcdserver: no leader");
    etcd_watch_msg_free(&m);
    const char *unary_err = "{\"error\":\"invalid character 'b'\",\"message\":\"invalid "
                            "character 'b'\",\"code\":2}";
    assert_int_equal(etcd_parse_watch(unary_err, strlen(unary_err), &m, why, sizeof(why)), -1);
    assert_string_equal(why, "etcd: invalid character 'b'");
    assert_true(etcd_parse_error(unary_err, strlen(unary_err), why, sizeof(why)));
    assert_false(etcd_parse_error(created, strlen(created), why, sizeof(why)));
    etcd_watch_msg_free(&m);

    static const char *const bad[] = {
        "{}",
        "{\"result\":1}",
        "{\"result\":{\"events\":{}}}",
        "{\"result\":{\"events\":[{}]}}",
        "{\"result\":{\"events\":[{\"type\":\"TOUCH\",\"kv\":{}}]}}",
        "{\"result\":{\"events\":[{\"kv\":{\"key\":\"eA=\"}}]}}",
        "{\"result\":{\"created\":\"true\"}}",
        "{\"result\":{\"compact_revision\":[]}}",
        "{\"result\":",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(etcd_parse_watch(bad[i], strlen(bad[i]), &m, why, sizeof(why)), -1);
        etcd_watch_msg_free(&m);
    }
}

static void lease_answers(void **state)
{
    char why[160];
    int64_t id, ttl;
    const char *grant =
        "{\"header\":{\"revision\":\"5\"},\"ID\":\"2324035724385227274\",\"TTL\":\"5\"}";
    assert_int_equal(etcd_parse_lease(grant, strlen(grant), &id, &ttl, why, sizeof(why)), 0);
    assert_int_equal(id, 2324035724385227274);
    assert_int_equal(ttl, 5);
    /* keep-alive of a lease that expired: wrapped in result, and TTL 0 left out */
    const char *gone = "{\"result\":{\"header\":{\"revision\":\"5\"},\"ID\":\"77\"}}";
    assert_int_equal(etcd_parse_lease(gone, strlen(gone), &id, &ttl, why, sizeof(why)), 0);
    assert_int_equal(id, 77);
    assert_int_equal(ttl, 0);
    const char *err = "{\"error\":\"etcdserver: requested lease not found\",\"message\":"
                      "\"etcdserver: requested lease not found\",\"code\":5}";
    assert_int_equal(etcd_parse_lease(err, strlen(err), &id, &ttl, why, sizeof(why)), -1);
    assert_string_equal(why, "etcd: etcdserver: requested lease not found");
    const char *grant_err = "{\"ID\":\"1\",\"TTL\":\"5\",\"error\":\"too many leases\"}";
    assert_int_equal(etcd_parse_lease(grant_err, strlen(grant_err), &id, &ttl, why, sizeof(why)),
                     -1);
    const char *grant_ok = "{\"ID\":\"1\",\"TTL\":\"5\",\"error\":\"\"}";
    assert_int_equal(etcd_parse_lease(grant_ok, strlen(grant_ok), &id, &ttl, why, sizeof(why)), 0);
}

static void value_of(const char *value, const char *default_name, struct member *m, int expect,
                     const char *why_part)
{
    char why[160] = "";
    assert_int_equal(etcd_parse_value(value, strlen(value), default_name, m, why, sizeof(why)),
                     expect);
    if (why_part && !strstr(why, why_part))
        fail_msg("value %s: \"%s\" does not say \"%s\"", value, why, why_part);
}

static void values(void **state)
{
    struct member m;
    char text[NET_ADDR_TEXT];

    value_of("{\"address\": \"10.0.0.5:8080\", \"name\": \"api-5\", \"weight\": 2}", "k", &m, 0,
             NULL);
    assert_string_equal(m.name, "api-5");
    assert_int_equal(m.weight, 2);
    net_addr_format((struct sockaddr *)&m.addr.ss, text, sizeof(text));
    assert_string_equal(text, "10.0.0.5:8080");

    /* defaults: the name is the key after the prefix, the weight 1; other members ignored */
    value_of("{\"address\": \"[::1]:9\", \"zone\": \"b\"}", "api-7", &m, 0, NULL);
    assert_string_equal(m.name, "api-7");
    assert_int_equal(m.weight, 1);
    net_addr_format((struct sockaddr *)&m.addr.ss, text, sizeof(text));
    assert_string_equal(text, "[::1]:9");
    value_of("{\"address\": \"10.0.0.5:1\", \"weight\": 0}", "k", &m, 0, NULL);
    assert_int_equal(m.weight, 0);
    value_of("{\"address\": \"10.0.0.5:1\", \"weight\": 256}", "k", &m, 0, NULL);
    assert_int_equal(m.weight, 256);

    value_of("x", "k", &m, -1, "value is not JSON");
    value_of("", "k", &m, -1, "not JSON");
    value_of("\"10.0.0.5:80\"", "k", &m, -1, NULL);
    value_of("{\"name\": \"a\"}", "k", &m, -1, "no address");
    value_of("{\"address\": 5}", "k", &m, -1, "not a string");
    value_of("{\"address\": \"localhost:80\"}", "k", &m, -1, "not a host name");
    value_of("{\"address\": \"api.example.com:80\"}", "k", &m, -1, "not a host name");
    value_of("{\"address\": \":80\"}", "k", &m, -1, NULL);
    value_of("{\"address\": \"*:80\"}", "k", &m, -1, NULL);
    value_of("{\"address\": \"10.0.0.5\"}", "k", &m, -1, NULL);
    value_of("{\"address\": \"10.0.0.5:0\"}", "k", &m, -1, "port 0");
    value_of("{\"address\": \"10.0.0.5:65536\"}", "k", &m, -1, NULL);
    value_of("{\"address\": \"::1:80\"}", "k", &m, -1, NULL);
    value_of("{\"address\": \"[localhost]:80\"}", "k", &m, -1, NULL);
    value_of("{\"address\": \"10.0.0.5:1\", \"weight\": 257}", "k", &m, -1, "weight");
    value_of("{\"address\": \"10.0.0.5:1\", \"weight\": -1}", "k", &m, -1, "weight");
    value_of("{\"address\": \"10.0.0.5:1\", \"weight\": 1.5}", "k", &m, -1, "weight");
    value_of("{\"address\": \"10.0.0.5:1\", \"weight\": \"2\"}", "k", &m, -1, "weight");
    value_of("{\"address\": \"10.0.0.5:1\", \"name\": \"\"}", "k", &m, -1, "name");
    value_of("{\"address\": \"10.0.0.5:1\", \"name\": \"a b\"}", "k", &m, -1, "name");
    value_of("{\"address\": \"10.0.0.5:1\", \"name\": 3}", "k", &m, -1, "name");
    value_of("{\"address\": \"10.0.0.5:1\"}", "", &m, -1, "key");
    value_of("{\"address\": \"10.0.0.5:1\"}", "sub/dir", &m, 0, NULL);
    char long_name[400];
    memset(long_name, 'n', sizeof(long_name) - 1);
    long_name[sizeof(long_name) - 1] = '\0';
    value_of("{\"address\": \"10.0.0.5:1\"}", long_name, &m, -1, "key");
}

/* ---- the registry ---- */

/* Parses a watch message made of events "+key=value" (PUT) and "-key" (DELETE), at revision. */
static void watch_events(struct etcd_watch_msg *m, int64_t revision, const char *const *events,
                         size_t n)
{
    char msg[4096], why[160];
    size_t len = (size_t)snprintf(msg, sizeof(msg),
                                  "{\"result\":{\"header\":{\"revision\":"
                                  "\"%lld\"},\"events\":[",
                                  (long long)revision);
    for (size_t i = 0; i < n; i++) {
        char key[128];
        const char *eq = strchr(events[i], '=');
        size_t klen = eq ? (size_t)(eq - events[i] - 1) : strlen(events[i] + 1);
        memcpy(key, events[i] + 1, klen);
        key[klen] = '\0';
        if (events[i][0] == '+')
            len += (size_t)snprintf(msg + len, sizeof(msg) - len,
                                    "%s{\"kv\":{\"key\":\"%s\",\"mod_revision\":\"%lld\","
                                    "\"value\":\"%s\"}}",
                                    i ? "," : "", b64(key), (long long)revision, b64(eq + 1));
        else
            len += (size_t)snprintf(msg + len, sizeof(msg) - len,
                                    "%s{\"type\":\"DELETE\",\"kv\":{\"key\":\"%s\","
                                    "\"mod_revision\":\"%lld\"}}",
                                    i ? "," : "", b64(key), (long long)revision);
    }
    snprintf(msg + len, sizeof(msg) - len, "]}}");
    assert_int_equal(etcd_parse_watch(msg, strlen(msg), m, why, sizeof(why)), 0);
}

static void registry_follows_range_and_watch(void **state)
{
    struct etcd_registry reg;
    struct etcd_range r;
    struct etcd_watch_msg m;
    struct member_set set;
    struct member_log log = {0};
    char body[2048], why[160], logged[4096];
    struct log_capture capture;
    log_capture_start(&capture);

    etcd_registry_init(&reg);
    members_init(&set, 3);
    /* etcd answers in key order; this one is not, and the registry sorts it */
    snprintf(body, sizeof(body),
             "{\"header\":{\"revision\":\"10\"},\"kvs\":["
             "{\"key\":\"%s\",\"mod_revision\":\"8\",\"value\":\"%s\"},"
             "{\"key\":\"%s\",\"mod_revision\":\"9\",\"value\":\"%s\"},"
             "{\"key\":\"%s\",\"mod_revision\":\"7\",\"value\":\"%s\"}]}",
             b64("/s/b"), b64("{\"address\":\"127.0.0.1:2\",\"weight\":3}"), b64("/s/bad"),
             b64("not json"), b64("/s/a"), b64("{\"address\":\"127.0.0.1:1\",\"name\":\"x\"}"));
    assert_int_equal(etcd_parse_range(body, strlen(body), &r, why, sizeof(why)), 0);
    etcd_registry_load(&reg, &r);
    etcd_range_free(&r);
    assert_int_equal(reg.revision, 10);
    assert_int_equal(reg.n, 3);
    assert_string_equal(reg.kvs[0].key, "/s/a");
    assert_string_equal(reg.kvs[2].key, "/s/bad");

    assert_int_equal(etcd_registry_members(&reg, "/s/", "api", &log, &set), 0);
    assert_int_equal(set.n, 2);
    assert_string_equal(set.v[0].name, "x");
    assert_string_equal(set.v[1].name, "b"); /* from the key */
    assert_int_equal(set.v[1].weight, 3);
    assert_int_equal(log_capture_lines(&capture, logged, sizeof(logged)), 1);
    assert_non_null(strstr(logged, "pool api: etcd: /s/bad: value is not JSON"));

    /* a new key, a changed one, a deleted one; the bad one is not logged again */
    const char *ev1[] = {"+/s/c={\"address\":\"127.0.0.1:3\"}", "-/s/a",
                         "+/s/b={\"address\":\"127.0.0.1:2\",\"weight\":4}"};
    watch_events(&m, 11, ev1, 3);
    assert_int_equal(etcd_registry_apply(&reg, &m), 1);
    etcd_watch_msg_free(&m);
    assert_int_equal(reg.revision, 11);
    assert_int_equal(etcd_registry_members(&reg, "/s/", "api", &log, &set), 0);
    assert_int_equal(set.n, 2);
    assert_string_equal(set.v[0].name, "b");
    assert_int_equal(set.v[0].weight, 4);
    assert_string_equal(set.v[1].name, "c");
    assert_int_equal(log_capture_lines(&capture, logged, sizeof(logged)), 1);

    /* the same value again, and the delete of a key never seen: no change */
    const char *ev2[] = {"+/s/c={\"address\":\"127.0.0.1:3\"}", "-/s/zzz"};
    watch_events(&m, 12, ev2, 2);
    assert_int_equal(etcd_registry_apply(&reg, &m), 0);
    etcd_watch_msg_free(&m);
    assert_int_equal(reg.revision, 12);

    /* a duplicate address, a duplicate name, and one more than max_servers (3) */
    const char *ev3[] = {
        "+/s/d={\"address\":\"127.0.0.1:2\"}", "+/s/e={\"address\":\"127.0.0.1:5\",\"name\":\"c\"}",
        "+/s/f={\"address\":\"127.0.0.1:6\"}", "+/s/g={\"address\":\"127.0.0.1:7\"}"};
    watch_events(&m, 13, ev3, 4);
    assert_int_equal(etcd_registry_apply(&reg, &m), 1);
    etcd_watch_msg_free(&m);
    assert_int_equal(etcd_registry_members(&reg, "/s/", "api", &log, &set), 0);
    assert_int_equal(set.n, 3);
    assert_int_equal(members_find(&set, "f"), 2);
    assert_int_equal(log_capture_lines(&capture, logged, sizeof(logged)), 4);
    assert_non_null(strstr(logged, "etcd: /s/d: duplicate address"));
    assert_non_null(strstr(logged, "etcd: /s/e: duplicate name"));
    assert_non_null(strstr(logged, "etcd: /s/g: more servers than max_servers allows"));
    /* building again logs nothing new */
    assert_int_equal(etcd_registry_members(&reg, "/s/", "api", &log, &set), 0);
    assert_int_equal(log_capture_lines(&capture, logged, sizeof(logged)), 4);

    /* a progress notification moves the revision; a created message does not */
    const char *progress = "{\"result\":{\"header\":{\"revision\":\"20\"}}}";
    assert_int_equal(etcd_parse_watch(progress, strlen(progress), &m, why, sizeof(why)), 0);
    assert_int_equal(etcd_registry_apply(&reg, &m), 0);
    etcd_watch_msg_free(&m);
    assert_int_equal(reg.revision, 20);
    const char *created = "{\"result\":{\"header\":{\"revision\":\"30\"},\"created\":true}}";
    assert_int_equal(etcd_parse_watch(created, strlen(created), &m, why, sizeof(why)), 0);
    assert_int_equal(etcd_registry_apply(&reg, &m), 0);
    etcd_watch_msg_free(&m);
    assert_int_equal(reg.revision, 20);

    /* after a compaction the source reads everything again: the load replaces it all */
    snprintf(body, sizeof(body),
             "{\"header\":{\"revision\":\"40\"},\"kvs\":[{\"key\":\"%s\",\"mod_revision\":\"35\","
             "\"value\":\"%s\"}]}",
             b64("/s/z"), b64("{\"address\":\"127.0.0.1:9\"}"));
    assert_int_equal(etcd_parse_range(body, strlen(body), &r, why, sizeof(why)), 0);
    etcd_registry_load(&reg, &r);
    etcd_range_free(&r);
    assert_int_equal(reg.revision, 40);
    assert_int_equal(etcd_registry_members(&reg, "/s/", "api", &log, &set), 0);
    assert_int_equal(set.n, 1);
    assert_string_equal(set.v[0].name, "z");

    /* a key outside the prefix (etcd would not send one) is refused, not taken */
    const char *ev4[] = {"+/t/x={\"address\":\"127.0.0.1:10\"}"};
    watch_events(&m, 41, ev4, 1);
    assert_int_equal(etcd_registry_apply(&reg, &m), 1);
    etcd_watch_msg_free(&m);
    assert_int_equal(etcd_registry_members(&reg, "/s/", "api", &log, &set), 0);
    assert_int_equal(set.n, 1);
    assert_int_equal(log_capture_lines(&capture, logged, sizeof(logged)), 5);
    assert_non_null(strstr(logged, "etcd: /t/x: not under the prefix /s/"));

    etcd_registry_clear(&reg);
    assert_int_equal(reg.n, 0);
    assert_int_equal(reg.revision, 0);
    log_capture_stop(&capture);
    etcd_registry_free(&reg);
    members_free(&set);
    members_log_free(&log);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(base64_round_trips),
        cmocka_unit_test(request_bodies),
        cmocka_unit_test(range_answers),
        cmocka_unit_test(watch_messages),
        cmocka_unit_test(lease_answers),
        cmocka_unit_test(values),
        cmocka_unit_test(registry_follows_range_and_watch),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
