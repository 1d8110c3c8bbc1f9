/*
 * etcd_json.c - etcd's v3 JSON gateway: request bodies, answers, registry values and the registry
 * map (etcd_json.h explains the encoding and how the pieces fit).
 *
 * Every answer is parsed with jansson into a tree, read into plain structs and dropped; nothing
 * here keeps a jansson object. A member of an unexpected type is an error, a member that is absent
 * takes its protobuf default, as the gateway leaves defaults out.
 */
#include "discovery/etcd_json.h"

#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/base64.h"
#include "core/net.h"

/* A malloc'd copy of the base64 text decoded, NUL-terminated; NULL if invalid or no memory. */
static char *b64_decode_alloc(const char *text, size_t len, size_t *out_len)
{
    size_t room = len / 4 * 3;
    char *out = malloc(room + 1);
    if (!out)
        return NULL;
    ssize_t n = base64_decode(text, len, (unsigned char *)out, room);
    if (n < 0) {
        free(out);
        return NULL;
    }
    out[n] = '\0';
    *out_len = (size_t)n;
    return out;
}

/* ---- requests ---- */

/* base64 of bytes[0, n) as a new JSON string, or NULL. */
static json_t *b64_string(const void *bytes, size_t n)
{
    char *text = malloc(base64_encoded_size(n));
    if (!text)
        return NULL;
    base64_encode(bytes, n, text);
    json_t *s = json_string(text);
    free(text);
    return s;
}

/*
 * The end of the range of every key that starts with prefix: the prefix with its last byte that
 * is not 0xff incremented and the bytes after it cut off (etcd's clientv3.GetPrefixRangeEnd).
 * A prefix of 0xff bytes only has no end: "\0", which etcd reads as "every key from key on".
 * Writes into out (len bytes at least, 1 if len is 0) and returns the end's length.
 */
static size_t prefix_range_end(const char *prefix, size_t len, char *out)
{
    memcpy(out, prefix, len);
    for (size_t i = len; i-- > 0;) {
        if ((unsigned char)out[i] < 0xff) {
            out[i]++;
            return i + 1;
        }
    }
    out[0] = '\0';
    return 1;
}

/* {"key": b64(prefix), "range_end": b64(end)} into obj. 0, or -1 (no memory). */
static int set_prefix_range(json_t *obj, const char *prefix)
{
    size_t len = strlen(prefix);
    char *end = malloc(len + 1);
    if (!end)
        return -1;
    size_t end_len = prefix_range_end(prefix, len, end);
    int rc = json_object_set_new(obj, "key", b64_string(prefix, len)) == 0 &&
                     json_object_set_new(obj, "range_end", b64_string(end, end_len)) == 0
                 ? 0
                 : -1;
    free(end);
    return rc;
}

/* json_dumps of obj, which is released; NULL if obj is NULL or memory ran out. */
static char *dump_and_drop(json_t *obj)
{
    if (!obj)
        return NULL;
    char *text = json_dumps(obj, JSON_COMPACT);
    json_decref(obj);
    return text;
}

char *etcd_range_request(const char *prefix)
{
    json_t *req = json_object();
    if (req && set_prefix_range(req, prefix) < 0) {
        json_decref(req);
        return NULL;
    }
    return dump_and_drop(req);
}

char *etcd_watch_request(const char *prefix, int64_t start_revision)
{
    json_t *create = json_object(), *req = json_object();
    char rev[24];
    snprintf(rev, sizeof(rev), "%" PRId64, start_revision);
    if (!create || !req || set_prefix_range(create, prefix) < 0 ||
        (start_revision > 0 &&
         json_object_set_new(create, "start_revision", json_string(rev)) < 0) ||
        json_object_set(req, "create_request", create) < 0) {
        json_decref(create);
        json_decref(req);
        return NULL;
    }
    json_decref(create);
    return dump_and_drop(req);
}

/* ---- reading answers ---- */

static void say(char *why, size_t whylen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void say(char *why, size_t whylen, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, whylen, fmt, ap);
    va_end(ap);
}

/* The top-level object of a body, or NULL with why. */
static json_t *load_object(const char *body, size_t len, char *why, size_t whylen)
{
    json_error_t err;
    json_t *root = json_loadb(body, len, 0, &err);
    if (!root) {
        say(why, whylen, "not JSON: %s", err.text);
        return NULL;
    }
    if (!json_is_object(root)) {
        say(why, whylen, "not a JSON object");
        json_decref(root);
        return NULL;
    }
    return root;
}

/*
 * An int64 member, written as a string of digits (the gateway's way) or as a JSON integer.
 * Returns 0 with *out = 0 if absent, 1 if read, -1 if malformed.
 */
static int get_int64(const json_t *obj, const char *name, int64_t *out)
{
    const json_t *v = json_object_get(obj, name);
    *out = 0;
    if (!v || json_is_null(v))
        return 0;
    if (json_is_integer(v)) {
        *out = (int64_t)json_integer_value(v);
        return 1;
    }
    if (!json_is_string(v))
        return -1;
    const char *s = json_string_value(v);
    if (*s == '\0' || json_string_length(v) != strlen(s))
        return -1;
    char *end;
    errno = 0;
    long long n = strtoll(s, &end, 10);
    if (errno || *end != '\0' || !(*s == '-' || (*s >= '0' && *s <= '9')))
        return -1;
    *out = (int64_t)n;
    return 1;
}

/* A boolean member: false if absent, -1 if not a boolean. */
static int get_bool(const json_t *obj, const char *name, bool *out)
{
    const json_t *v = json_object_get(obj, name);
    *out = false;
    if (!v || json_is_null(v))
        return 0;
    if (!json_is_boolean(v))
        return -1;
    *out = json_is_true(v);
    return 1;
}

/* A base64 bytes member decoded into a malloc'd string ("" if absent). 0, or -1 with why. */
static int get_bytes(const json_t *obj, const char *name, char **out, size_t *out_len, char *why,
                     size_t whylen)
{
    const json_t *v = json_object_get(obj, name);
    *out = NULL;
    *out_len = 0;
    if (!v || json_is_null(v)) {
        *out = calloc(1, 1);
    } else if (!json_is_string(v)) {
        say(why, whylen, "%s is not a string", name);
        return -1;
    } else {
        *out = b64_decode_alloc(json_string_value(v), json_string_length(v), out_len);
        if (!*out) {
            say(why, whylen, "%s is not base64", name);
            return -1;
        }
    }
    if (!*out) {
        say(why, whylen, "out of memory");
        return -1;
    }
    return 0;
}

/* A registry value as etcd_parse_value() read it: the server, or why not. */
struct etcd_parsed {
    bool ok;
    struct member m;
    char why[160];
};

static void kv_free(struct etcd_kv *kv)
{
    free(kv->key);
    free(kv->value);
    free(kv->parsed);
    memset(kv, 0, sizeof(*kv));
}

/* One mvccpb.KeyValue object. 0, or -1 with why (kv is left freeable). */
static int read_kv(const json_t *obj, struct etcd_kv *kv, char *why, size_t whylen)
{
    memset(kv, 0, sizeof(*kv));
    if (!json_is_object(obj)) {
        say(why, whylen, "kv is not an object");
        return -1;
    }
    if (get_bytes(obj, "key", &kv->key, &kv->key_len, why, whylen) < 0 ||
        get_bytes(obj, "value", &kv->value, &kv->value_len, why, whylen) < 0)
        return -1;
    if (get_int64(obj, "mod_revision", &kv->mod_revision) < 0) {
        say(why, whylen, "mod_revision is not an integer");
        return -1;
    }
    return 0;
}

/*
 * If root is an error answer, writes its message to why and returns true. The unary form has
 * "error" and "message" strings; the stream form an "error" object with a "message" inside.
 */
static bool error_answer(const json_t *root, char *why, size_t whylen)
{
    const json_t *err = json_object_get(root, "error");
    if (!err)
        return false;
    const json_t *msg = json_object_get(json_is_object(err) ? err : root, "message");
    const char *text = json_string_value(msg);
    if (!text)
        text = json_string_value(err);
    if (!text || !*text) {
        /* LeaseGrantResponse has a string "error" member of its own, empty when all is well */
        if (json_is_string(err))
            return false;
        text = "error without a message";
    }
    say(why, whylen, "etcd: %s", text);
    return true;
}

/* The revision in a "header" object (0 if absent). 0, or -1 with why. */
static int read_header_revision(const json_t *obj, int64_t *revision, char *why, size_t whylen)
{
    *revision = 0;
    const json_t *header = json_object_get(obj, "header");
    if (!header)
        return 0;
    if (!json_is_object(header) || get_int64(header, "revision", revision) < 0) {
        say(why, whylen, "malformed header");
        return -1;
    }
    return 0;
}

int etcd_parse_range(const char *body, size_t len, struct etcd_range *out, char *why, size_t whylen)
{
    memset(out, 0, sizeof(*out));
    json_t *root = load_object(body, len, why, whylen);
    if (!root)
        return -1;
    int rc = -1;
    if (error_answer(root, why, whylen) ||
        read_header_revision(root, &out->revision, why, whylen) < 0)
        goto done;
    if (get_bool(root, "more", &out->more) < 0) {
        say(why, whylen, "more is not a boolean");
        goto done;
    }
    const json_t *kvs = json_object_get(root, "kvs");
    if (kvs && !json_is_array(kvs)) {
        say(why, whylen, "kvs is not an array");
        goto done;
    }
    size_t n = kvs ? json_array_size(kvs) : 0;
    if (n && !(out->kvs = calloc(n, sizeof(*out->kvs)))) {
        say(why, whylen, "out of memory");
        goto done;
    }
    for (size_t i = 0; i < n; i++) {
        out->nkvs = i + 1; /* counted before reading, so a half-read one is freed too */
        if (read_kv(json_array_get(kvs, i), &out->kvs[i], why, whylen) < 0)
            goto done;
    }
    rc = 0;
done:
    json_decref(root);
    return rc;
}

void etcd_range_free(struct etcd_range *r)
{
    for (size_t i = 0; i < r->nkvs; i++)
        kv_free(&r->kvs[i]);
    free(r->kvs);
    memset(r, 0, sizeof(*r));
}

/* One mvccpb.Event: its type ("PUT" or absent, "DELETE") and kv. */
static int read_event(const json_t *obj, struct etcd_event *ev, char *why, size_t whylen)
{
    memset(ev, 0, sizeof(*ev));
    if (!json_is_object(obj)) {
        say(why, whylen, "event is not an object");
        return -1;
    }
    const json_t *type = json_object_get(obj, "type");
    if (type) {
        const char *t = json_string_value(type);
        /* the enum may also come as its number: PUT = 0, DELETE = 1 */
        if (t ? strcmp(t, "DELETE") == 0 : json_is_integer(type) && json_integer_value(type) == 1)
            ev->deleted = true;
        else if (!(t ? strcmp(t, "PUT") == 0
                     : json_is_integer(type) && json_integer_value(type) == 0)) {
            say(why, whylen, "unknown event type");
            return -1;
        }
    }
    const json_t *kv = json_object_get(obj, "kv");
    if (!kv) {
        say(why, whylen, "event without kv");
        return -1;
    }
    return read_kv(kv, &ev->kv, why, whylen);
}

int etcd_parse_watch(const char *msg, size_t len, struct etcd_watch_msg *out, char *why,
                     size_t whylen)
{
    memset(out, 0, sizeof(*out));
    json_t *root = load_object(msg, len, why, whylen);
    if (!root)
        return -1;
    int rc = -1;
    if (error_answer(root, why, whylen))
        goto done;
    const json_t *result = json_object_get(root, "result");
    if (!json_is_object(result)) {
        say(why, whylen, "watch message without a result");
        goto done;
    }
    if (read_header_revision(result, &out->revision, why, whylen) < 0)
        goto done;
    if (get_bool(result, "created", &out->created) < 0 ||
        get_bool(result, "canceled", &out->canceled) < 0 ||
        get_int64(result, "compact_revision", &out->compact_revision) < 0) {
        say(why, whylen, "malformed watch message");
        goto done;
    }
    const json_t *reason = json_object_get(result, "cancel_reason");
    if (json_is_string(reason))
        snprintf(out->reason, sizeof(out->reason), "%s", json_string_value(reason));
    const json_t *events = json_object_get(result, "events");
    if (events && !json_is_array(events)) {
        say(why, whylen, "events is not an array");
        goto done;
    }
    size_t n = events ? json_array_size(events) : 0;
    if (n && !(out->events = calloc(n, sizeof(*out->events)))) {
        say(why, whylen, "out of memory");
        goto done;
    }
    for (size_t i = 0; i < n; i++) {
        out->nevents = i + 1;
        if (read_event(json_array_get(events, i), &out->events[i], why, whylen) < 0)
            goto done;
    }
    rc = 0;
done:
    json_decref(root);
    return rc;
}

void etcd_watch_msg_free(struct etcd_watch_msg *m)
{
    for (size_t i = 0; i < m->nevents; i++)
        kv_free(&m->events[i].kv);
    free(m->events);
    memset(m, 0, sizeof(*m));
}

bool etcd_parse_error(const char *body, size_t len, char *why, size_t whylen)
{
    json_t *root = load_object(body, len, why, whylen);
    if (!root)
        return false;
    bool found = error_answer(root, why, whylen);
    if (!found)
        say(why, whylen, "not an error answer");
    json_decref(root);
    return found;
}

int etcd_parse_lease(const char *body, size_t len, int64_t *id, int64_t *ttl, char *why,
                     size_t whylen)
{
    *id = *ttl = 0;
    json_t *root = load_object(body, len, why, whylen);
    if (!root)
        return -1;
    int rc = -1;
    const json_t *obj = json_object_get(root, "result");
    if (!obj)
        obj = root;
    if (error_answer(root, why, whylen) || error_answer(obj, why, whylen))
        goto done;
    if (!json_is_object(obj) || get_int64(obj, "ID", id) < 0 || get_int64(obj, "TTL", ttl) < 0) {
        say(why, whylen, "malformed lease answer");
        goto done;
    }
    rc = 0;
done:
    json_decref(root);
    return rc;
}

/* ---- values ---- */

/* 1 to MEMBER_NAME_MAX - 1 visible ASCII characters: what a server name may be. */
static bool usable_name(const char *s, size_t len)
{
    if (len == 0 || len >= MEMBER_NAME_MAX)
        return false;
    for (size_t i = 0; i < len; i++)
        if (s[i] < 0x21 || s[i] > 0x7e)
            return false;
    return true;
}

/*
 * An address written with an IP, never a name: net_parse_addr() would resolve a name (a blocking
 * lookup on the control thread, and a registry value must say where a server is, not ask DNS), and
 * would take ":port" as every address. So the host part is checked here first.
 */
static int parse_ip_port(const char *text, struct net_addr *out, char *why, size_t whylen)
{
    const char *error = NULL;
    if (text[0] != '[') {
        const char *colon = strrchr(text, ':');
        char host[INET_ADDRSTRLEN];
        struct in_addr ip4;
        size_t n = colon ? (size_t)(colon - text) : 0;
        if (!colon || n == 0 || n >= sizeof(host)) {
            say(why, whylen, "address must be IP:port or [IPv6]:port");
            return -1;
        }
        memcpy(host, text, n);
        host[n] = '\0';
        if (inet_pton(AF_INET, host, &ip4) != 1) {
            say(why, whylen, "address must be IP:port or [IPv6]:port, not a host name");
            return -1;
        }
    }
    if (net_parse_addr(text, out, &error) < 0) {
        say(why, whylen, "address: %s", error);
        return -1;
    }
    const struct sockaddr *sa = (const struct sockaddr *)&out->ss;
    unsigned port = sa->sa_family == AF_INET ? ntohs(((const struct sockaddr_in *)sa)->sin_port)
                                             : ntohs(((const struct sockaddr_in6 *)sa)->sin6_port);
    if (port == 0) {
        say(why, whylen, "address: port 0");
        return -1;
    }
    return 0;
}

int etcd_parse_value(const char *value, size_t len, const char *default_name, struct member *out,
                     char *why, size_t whylen)
{
    memset(out, 0, sizeof(*out));
    char problem[160];
    json_t *root = load_object(value, len, problem, sizeof(problem));
    if (!root) {
        say(why, whylen, "value is %s", problem); /* "value is not JSON: ..." */
        return -1;
    }
    int rc = -1;
    const json_t *address = json_object_get(root, "address");
    const json_t *name = json_object_get(root, "name");
    const json_t *weight = json_object_get(root, "weight");
    if (!address) {
        say(why, whylen, "no address");
        goto done;
    }
    if (!json_is_string(address) ||
        json_string_length(address) != strlen(json_string_value(address))) {
        say(why, whylen, "address is not a string");
        goto done;
    }
    if (parse_ip_port(json_string_value(address), &out->addr, why, whylen) < 0)
        goto done;
    const char *n = default_name;
    size_t nlen = strlen(default_name);
    if (name) {
        if (!json_is_string(name)) {
            say(why, whylen, "name is not a string");
            goto done;
        }
        n = json_string_value(name);
        nlen = json_string_length(name);
    }
    if (!usable_name(n, nlen)) {
        say(why, whylen, "%s: a server name is 1 to %d visible ASCII characters",
            name ? "name" : "key (no name given)", MEMBER_NAME_MAX - 1);
        goto done;
    }
    memcpy(out->name, n, nlen + 1);
    out->weight = 1;
    if (weight) {
        json_int_t w = json_is_integer(weight) ? json_integer_value(weight) : -1;
        if (w < 0 || w > 256) {
            say(why, whylen, "weight must be an integer 0-256");
            goto done;
        }
        out->weight = (unsigned)w;
    }
    rc = 0;
done:
    json_decref(root);
    return rc;
}

/* ---- the registry ---- */

void etcd_registry_init(struct etcd_registry *reg)
{
    memset(reg, 0, sizeof(*reg));
}

void etcd_registry_clear(struct etcd_registry *reg)
{
    for (size_t i = 0; i < reg->n; i++)
        kv_free(&reg->kvs[i]);
    reg->n = 0;
    reg->revision = 0;
}

void etcd_registry_free(struct etcd_registry *reg)
{
    etcd_registry_clear(reg);
    free(reg->kvs);
    memset(reg, 0, sizeof(*reg));
}

static int key_cmp(const char *a, size_t alen, const char *b, size_t blen)
{
    int c = memcmp(a, b, alen < blen ? alen : blen);
    if (c)
        return c;
    return alen < blen ? -1 : alen > blen;
}

static int kv_order(const void *a, const void *b)
{
    const struct etcd_kv *x = a, *y = b;
    return key_cmp(x->key, x->key_len, y->key, y->key_len);
}

/* Where key is, or would be inserted; *found says which. */
static size_t registry_find(const struct etcd_registry *reg, const char *key, size_t len,
                            bool *found)
{
    size_t lo = 0, hi = reg->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = key_cmp(reg->kvs[mid].key, reg->kvs[mid].key_len, key, len);
        if (c == 0) {
            *found = true;
            return mid;
        }
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    *found = false;
    return lo;
}

void etcd_registry_load(struct etcd_registry *reg, struct etcd_range *r)
{
    etcd_registry_clear(reg);
    free(reg->kvs);
    reg->kvs = r->kvs;
    reg->n = reg->cap = r->nkvs;
    reg->revision = r->revision;
    r->kvs = NULL;
    r->nkvs = 0;
    /* etcd answers in key order already; sorting makes sure, and drops nothing */
    if (reg->n > 1)
        qsort(reg->kvs, reg->n, sizeof(*reg->kvs), kv_order);
    /* a duplicate key (which etcd never sends) would break the search: keep the last one */
    size_t w = 0;
    for (size_t i = 0; i < reg->n; i++) {
        if (w > 0 && kv_order(&reg->kvs[w - 1], &reg->kvs[i]) == 0)
            kv_free(&reg->kvs[--w]);
        reg->kvs[w++] = reg->kvs[i];
    }
    reg->n = w;
}

/* Puts kv (moved in) at its key's place. 1 changed, 0 same value, -1 no memory (kv freed). */
static int registry_put(struct etcd_registry *reg, struct etcd_kv *kv)
{
    bool found;
    size_t at = registry_find(reg, kv->key, kv->key_len, &found);
    if (found) {
        struct etcd_kv *old = &reg->kvs[at];
        bool same =
            old->value_len == kv->value_len && memcmp(old->value, kv->value, kv->value_len) == 0;
        kv_free(old);
        *old = *kv;
        memset(kv, 0, sizeof(*kv));
        return same ? 0 : 1;
    }
    if (reg->n == reg->cap) {
        size_t cap = reg->cap ? reg->cap * 2 : 16;
        struct etcd_kv *grown = realloc(reg->kvs, cap * sizeof(*grown));
        if (!grown) {
            kv_free(kv);
            return -1;
        }
        reg->kvs = grown;
        reg->cap = cap;
    }
    memmove(&reg->kvs[at + 1], &reg->kvs[at], (reg->n - at) * sizeof(*reg->kvs));
    reg->kvs[at] = *kv;
    reg->n++;
    memset(kv, 0, sizeof(*kv));
    return 1;
}

/* 1 if the key was there, 0 if not. */
static int registry_delete(struct etcd_registry *reg, const struct etcd_kv *kv)
{
    bool found;
    size_t at = registry_find(reg, kv->key, kv->key_len, &found);
    if (!found)
        return 0;
    kv_free(&reg->kvs[at]);
    memmove(&reg->kvs[at], &reg->kvs[at + 1], (reg->n - at - 1) * sizeof(*reg->kvs));
    reg->n--;
    return 1;
}

int etcd_registry_apply(struct etcd_registry *reg, struct etcd_watch_msg *m)
{
    int changed = 0;
    for (size_t i = 0; i < m->nevents; i++) {
        struct etcd_event *ev = &m->events[i];
        int r = ev->deleted ? registry_delete(reg, &ev->kv) : registry_put(reg, &ev->kv);
        if (r < 0)
            return -1;
        if (r > 0)
            changed = 1;
        if (ev->kv.mod_revision > reg->revision)
            reg->revision = ev->kv.mod_revision;
    }
    /* A message without events and without news (a progress notification) says that nothing
     * changed up to its header's revision. A created message does not: events from an older
     * start_revision may still follow it. */
    if (!m->nevents && !m->created && !m->canceled && m->revision > reg->revision)
        reg->revision = m->revision;
    return changed;
}

/* The key for a log line: visible ASCII as it is, other bytes as \xHH, cut to fit. */
static void key_text(const struct etcd_kv *kv, char *out, size_t size)
{
    size_t n = 0;
    for (size_t i = 0; i < kv->key_len && n + 5 < size; i++) {
        unsigned char c = (unsigned char)kv->key[i];
        if (c >= 0x20 && c < 0x7f && c != '\\')
            out[n++] = (char)c;
        else
            n += (size_t)snprintf(out + n, size - n, "\\x%02x", c);
    }
    out[n] = '\0';
}

int etcd_registry_members(struct etcd_registry *reg, const char *prefix, const char *pool,
                          struct member_log *log, struct member_set *set)
{
    size_t plen = strlen(prefix);
    int rc = 0;
    members_clear(set);
    for (size_t i = 0; i < reg->n; i++) {
        struct etcd_kv *kv = &reg->kvs[i];
        char key[MEMBER_NAME_MAX + 64];
        key_text(kv, key, sizeof(key));
        if (kv->key_len < plen || memcmp(kv->key, prefix, plen) != 0) {
            members_reject(log, pool, "etcd", "%s: not under the prefix %s", key, prefix);
            continue;
        }
        /* the name defaults to the key after the prefix (cut at a NUL: usable_name refuses it
         * through the length check below if the key held one) */
        const char *suffix = kv->key + plen;
        if (strlen(suffix) != kv->key_len - plen)
            suffix = "";
        if (!kv->parsed) { /* a new or changed value: read it once */
            if (!(kv->parsed = calloc(1, sizeof(*kv->parsed)))) {
                rc = -1;
                break;
            }
            kv->parsed->ok = etcd_parse_value(kv->value, kv->value_len, suffix, &kv->parsed->m,
                                              kv->parsed->why, sizeof(kv->parsed->why)) == 0;
        }
        const struct etcd_parsed *p = kv->parsed;
        if (!p->ok) {
            members_reject(log, pool, "etcd", "%s: %s", key, p->why);
            continue;
        }
        enum members_add_result r = members_add(set, p->m.name, NULL, &p->m.addr, p->m.weight);
        if (r == MEMBERS_NO_MEMORY) {
            rc = -1;
            break;
        }
        if (r != MEMBERS_ADDED)
            members_reject(log, pool, "etcd", "%s: %s", key, members_add_text(r));
    }
    members_log_answer_done(log);
    return rc;
}
