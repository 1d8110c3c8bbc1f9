/*
 * etcd_json.h - what the etcd source (etcd.c) and `fulcrum-backend --register` say to etcd's v3
 * JSON gateway and read back from it, and what the registry holds between answers. No I/O: every
 * function here works on bytes already received, so all of it is unit-tested and fuzzed directly.
 *
 * etcd's JSON gateway (grpc-gateway over the gRPC API) writes protobuf's JSON mapping:
 *   - keys and values are bytes, carried base64-encoded (standard alphabet, padded);
 *   - int64s (revisions, lease IDs, TTLs) are JSON strings: "revision": "42";
 *   - fields at their default value are left out: a PUT event has no "type" (PUT is enum value
 *     0), an empty answer has no "kvs", a lease keep-alive whose lease expired has no "TTL";
 *   - a unary error is {"error": "text", "message": "text", "code": N}; an error inside a stream
 *     is {"error": {"grpc_code": N, "message": "text", ...}}; a stream message is
 *     {"result": {...}}.
 *
 * How the pieces fit:
 *
 *   range response --etcd_parse_range()--> struct etcd_range --etcd_registry_load()--+
 *                                                                                    v
 *   watch message  --etcd_parse_watch()--> struct etcd_watch_msg --apply()--> struct etcd_registry
 *                                                                                    |
 *           etcd_registry_members(): each value through etcd_parse_value() -> struct member_set
 *
 * The registry is the map key -> value that the range read started and the watch keeps current,
 * with the revision the watch resumes after. A bad value stays in the registry (a later PUT may
 * fix it) and is reported through members_reject() each time the set is built, which logs it once
 * while it lasts.
 *
 * Ownership: every struct filled here owns its allocations and has its _free(); strings passed in
 * are borrowed for the call.
 */
#ifndef FULCRUM_ETCD_JSON_H
#define FULCRUM_ETCD_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "discovery/members.h"

/* ---- requests ---- */

/* The JSON bodies of the requests, NUL-terminated, for the caller to free(); NULL: out of
 * memory. prefix: every key starting with it (range_end is the prefix with its last byte + 1). */
char *etcd_range_request(const char *prefix);
/* A watch of every key under prefix, from start_revision on (0: from now). */
char *etcd_watch_request(const char *prefix, int64_t start_revision);

/* ---- answers ---- */

/* One key, decoded. key and value are NUL-terminated past their length (either may hold NULs). */
struct etcd_parsed;

struct etcd_kv {
    char *key;
    size_t key_len;
    char *value; /* "" for a DELETE event */
    size_t value_len;
    int64_t mod_revision;
    /* in the registry: the value read as a server, once (etcd_registry_members()); NULL until
     * then. A watch event rebuilds the set from every key, and reading 1,000 values again for
     * each would cost more than everything else a change does. */
    struct etcd_parsed *parsed;
};

/* A /v3/kv/range answer. */
struct etcd_range {
    int64_t revision; /* the store's revision the answer reflects: the watch starts after it */
    struct etcd_kv *kvs;
    size_t nkvs;
    bool more; /* a limit cut the answer short (never with the requests above) */
};

/* One /v3/watch stream message ({"result": ...}). */
struct etcd_event {
    bool deleted; /* DELETE; otherwise PUT */
    struct etcd_kv kv;
};

struct etcd_watch_msg {
    int64_t revision; /* header.revision; 0 if absent */
    bool created;     /* the answer to the create request */
    bool canceled;    /* the server ended the watch: start again */
    /* > 0: the revision asked for was compacted away; everything must be read again */
    int64_t compact_revision;
    struct etcd_event *events;
    size_t nevents;
    char reason[160]; /* cancel_reason, if any */
};

/*
 * Parses a range answer body / one watch stream message. Return 0, or -1 with a short reason in
 * why: not JSON, an error answer (why holds etcd's message), or a malformed member. The struct
 * is always left freeable.
 */
int etcd_parse_range(const char *body, size_t len, struct etcd_range *out, char *why,
                     size_t whylen);
void etcd_range_free(struct etcd_range *r);
int etcd_parse_watch(const char *msg, size_t len, struct etcd_watch_msg *out, char *why,
                     size_t whylen);
void etcd_watch_msg_free(struct etcd_watch_msg *m);

/* The message of an error answer ({"error": ..., "message": ...}) into why; false (why holds a
 * description of the body) if the body is not one. */
bool etcd_parse_error(const char *body, size_t len, char *why, size_t whylen);

/* A /v3/lease/grant or /v3/lease/keepalive answer (the latter wrapped in "result"): the lease ID
 * and its TTL in seconds (0: the lease no longer exists). 0, or -1 with why. */
int etcd_parse_lease(const char *body, size_t len, int64_t *id, int64_t *ttl, char *why,
                     size_t whylen);

/* ---- values ---- */

/*
 * Reads a registry value {"address": "10.0.0.5:8080", "name": "api-5", "weight": 2} into *out.
 * address: an IPv4 address or a bracketed IPv6 address with a port (1-65535), never a host name
 * (nothing here resolves names); name: 1-255 visible ASCII characters, default_name if absent;
 * weight: an integer 0-256, 1 if absent. Other members are ignored. 0, or -1 with why.
 */
int etcd_parse_value(const char *value, size_t len, const char *default_name, struct member *out,
                     char *why, size_t whylen);

/* ---- the registry: every key under the prefix, kept current by the watch ---- */

struct etcd_registry {
    struct etcd_kv *kvs; /* sorted by key (bytewise), no duplicates */
    size_t n, cap;
    int64_t revision; /* everything up to this revision is in: a watch resumes after it */
};

void etcd_registry_init(struct etcd_registry *reg);
void etcd_registry_free(struct etcd_registry *reg);
/* Empties it, revision included (the next read must be a range read). */
void etcd_registry_clear(struct etcd_registry *reg);
/* Replaces the contents with a range answer's keys, which move out of r (r stays freeable). */
void etcd_registry_load(struct etcd_registry *reg, struct etcd_range *r);
/*
 * Applies a watch message's events in order (their keys and values move out of m) and moves the
 * revision on. Returns 1 if a key appeared, went or changed its value, 0 if not, -1 if memory ran
 * out (the registry is then incomplete: read everything again).
 */
int etcd_registry_apply(struct etcd_registry *reg, struct etcd_watch_msg *m);
/*
 * Builds the set of servers from every key, in key order: a key that is not under prefix or
 * whose value is bad, or that members_add() refuses (duplicate, max_servers), is reported with
 * members_reject(log, pool, "etcd", ...) and left out; members_log_answer_done() ends the answer.
 * set is cleared first. 0, or -1 if memory ran out.
 */
int etcd_registry_members(struct etcd_registry *reg, const char *prefix, const char *pool,
                          struct member_log *log, struct member_set *set);

#endif
