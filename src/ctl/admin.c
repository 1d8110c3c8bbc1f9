/*
 * admin.c - the admin listener (see admin.h).
 *
 * A small HTTP/1.1 server on the control thread's loop. It parses requests with fulcrum's own
 * parser (http1.c), reads bodies of at most 64 KiB with a Content-Length, answers one request at
 * a time per connection (keep-alive, so the dashboard's once-a-second poll reuses a connection)
 * and closes connections idle for 30 s. JSON is read and written with jansson.
 *
 *   GET    /                                  the dashboard (dashboard.html, built in)
 *   GET    /metrics                           Prometheus text format 0.0.4 (metrics.c)
 *   GET    /api/state                         listeners, pools, servers and their counters
 *   GET    /api/routes                        every listener's routes and their counters
 *   GET    /api/pools/{pool}/servers/{name}   one server
 *   POST   /api/pools/{pool}/servers/{name}   {"state": "drain"|"maint"|"ready", "weight": N}
 *   POST   /api/pools/{pool}/servers          {"name": ..., "address": ..., "weight": N}
 *   DELETE /api/pools/{pool}/servers/{name}
 *   POST   /api/reload
 *
 * Before anything else, admin_guard.c refuses what a web page could have made the operator's
 * browser send: a foreign Host (DNS rebinding), a foreign Origin, and a change without
 * Content-Type: application/json. Then, with a token configured, every request must carry it
 * (admin_authorized); the dashboard page asks the browser for it through HTTP Basic, which
 * browsers then send with every fetch.
 */
#include "ctl/admin.h"

#include <errno.h>
#include <ifaddrs.h>
#include <jansson.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/base64.h"
#include "core/conn.h"
#include "core/container.h"
#include "core/log.h"
#include "core/net.h"
#include "core/version.h"
#include "ctl/admin_guard.h"
#include "ctl/discovery.h"
#include "ctl/metrics.h"
#include "ctl/plane.h"
#include "http/http1.h"
#include "lb/hash.h"
#include "lb/lb.h"
#include "lb/routing.h"
#include "lb/snapshot.h"
#include "proxy/accesslog.h"
#include "proxy/stats.h"
#include "servers/health.h"
#include "servers/pool.h"
#include "tls/server.h"

#ifndef FULCRUM_VERSION
#define FULCRUM_VERSION "0.0.0"
#endif

#define MAX_CONNS  64
#define MAX_HEAD   16384
#define MAX_BODY   65536
#define IDLE_MS    30000
#define MAX_FIELDS 64

/* The dashboard page, generated from src/dashboard.html at build time (xxd -i). */
extern unsigned char dashboard_html[];
extern unsigned int dashboard_html_len;

struct admin_conn {
    struct conn conn; /* first: the loop's pointer is the admin connection's */
    struct loop_timer timer;
    struct admin_conn *next;
    char *in;
    size_t len, cap;
    char *out;
    size_t out_len, out_sent;
    bool close_after;
};

static struct {
    struct loop *loop;
    struct loop_io listener;
    bool listening;
    struct net_addr addr;
    char *token;
    bool locked;          /* the token could not be copied: every request is refused */
    char **allowed_hosts; /* admin.allowed_hosts, copied: the configuration may be replaced */
    unsigned nallowed_hosts;
    struct admin_conn *conns, *dead;
    unsigned nconns;
    const struct control_plane *plane; /* the control thread's services (ctl/plane.h) */
} adm = {.listener.fd = -1};

/* ---- authentication ---- */

/* Compares in time that depends only on the token's length, not on where a guess goes wrong. */
static bool same_secret(const char *token, const char *given, size_t given_len)
{
    size_t len = strlen(token);
    unsigned diff = (unsigned)(len ^ given_len);
    for (size_t i = 0; i < len; i++)
        diff |= (unsigned char)token[i] ^ (unsigned char)(i < given_len ? given[i] : 0);
    return diff == 0;
}

/* Is the Authorization header value (NULL if absent) the token? Bearer TOKEN, or Basic with the
 * token as the password. Constant time in the token's length. */
static bool admin_authorized(const char *token, const char *auth, size_t len)
{
    if (!token)
        return true;
    if (!auth)
        return false;
    if (len > 7 && http1_token_eq(auth, 7, "bearer "))
        return same_secret(token, auth + 7, len - 7);
    if (len > 6 && http1_token_eq(auth, 6, "basic ")) {
        char decoded[512];
        ssize_t n = base64_decode(auth + 6, len - 6, (unsigned char *)decoded, sizeof(decoded));
        const char *colon = n > 0 ? memchr(decoded, ':', (size_t)n) : NULL;
        if (!colon)
            return false;
        return same_secret(token, colon + 1, (size_t)(decoded + n - (colon + 1)));
    }
    return false;
}

/* ---- responses ---- */

static void respond(struct admin_conn *c, unsigned status, const char *type, const char *body,
                    size_t len, const char *extra)
{
    char *head = NULL;
    int n = asprintf(&head,
                     "HTTP/1.1 %u %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
                     "Cache-Control: no-store\r\n%s%s\r\n",
                     status, http1_reason(status), type, len, extra ? extra : "",
                     c->close_after ? "Connection: close\r\n" : "");
    char *out = n >= 0 ? malloc((size_t)n + len) : NULL;
    if (!out) {
        free(head);
        c->close_after = true;
        return;
    }
    memcpy(out, head, (size_t)n);
    if (len)
        memcpy(out + n, body, len);
    free(head);
    free(c->out);
    c->out = out;
    c->out_len = (size_t)n + len;
    c->out_sent = 0;
}

static void respond_json(struct admin_conn *c, unsigned status, json_t *doc, const char *extra)
{
    /* 15 significant digits: 3.987, not the 3.9870000000000001 that the default 17 print */
    char *text = doc ? json_dumps(doc, JSON_COMPACT | JSON_REAL_PRECISION(15)) : NULL;
    json_decref(doc);
    if (!text) {
        respond(c, 500, "application/json", "{\"error\":\"out of memory\"}", 25, NULL);
        return;
    }
    size_t len = strlen(text);
    text[len] = '\n'; /* replaces the NUL: the body is sent by length */
    respond(c, status, "application/json", text, len + 1, extra);
    free(text);
}

static void respond_error(struct admin_conn *c, unsigned status, const char *message,
                          const char *extra)
{
    respond_json(c, status, json_pack("{s:s}", "error", message), extra);
}

/* ---- JSON views of the running configuration ---- */

static json_t *requests_json(const uint64_t *r)
{
    uint64_t total = 0;
    for (unsigned k = 0; k < STATS_CLASSES; k++)
        total += r[k];
    return json_pack("{s:I,s:I,s:I,s:I,s:I,s:I,s:I}", "total", (json_int_t)total, "none",
                     (json_int_t)r[0], "1xx", (json_int_t)r[1], "2xx", (json_int_t)r[2], "3xx",
                     (json_int_t)r[3], "4xx", (json_int_t)r[4], "5xx", (json_int_t)r[5]);
}

static json_t *latency_json(const struct stats_latency_sum *l)
{
    json_t *buckets = json_array();
    for (unsigned b = 0; b < STATS_BUCKETS; b++)
        json_array_append_new(buckets, json_integer((json_int_t)l->bucket[b]));
    return json_pack("{s:I,s:f,s:o}", "count", (json_int_t)l->count, "sum_seconds",
                     (double)l->sum_us / 1e6, "buckets", buckets);
}

static const char *const admin_names[] = {"ready", "drain", "maint"};

static json_t *server_json(const struct pool *p, const struct server *s)
{
    unsigned n;
    struct stats *const *all = adm.plane->worker_stats(&n);
    struct stats_server_sum sum;
    stats_sum_server(all, n, s->slot, &sum);
    unsigned weight = server_weight(s);
    uint64_t now = loop_now_ms(adm.loop);
    uint64_t up_since = atomic_load(&s->up_since_ms);
    double effective =
        weight ? (double)health_effective_weight(weight, up_since, now, p->conf->slow_start_ms) /
                     ((double)weight * HEALTH_WEIGHT_SCALE)
               : 0.0;
    json_t *health =
        json_pack("{s:b,s:b,s:I,s:I,s:s,s:I,s:I}", "enabled", p->conf->check.enabled, "checked",
                  s->h.checks.checked, "passes", (json_int_t)s->h.checks.passes, "fails",
                  (json_int_t)s->h.checks.fails, "last_result", s->h.last_result, "checks_passed",
                  (json_int_t)s->h.checks_passed, "checks_failed", (json_int_t)s->h.checks_failed);
    json_t *o = json_pack(
        "{s:s,s:s,s:s,s:s,s:I,s:f,s:I,s:I,s:o,s:I,s:I,s:o,s:o,s:b}", "name", s->name, "address",
        s->addr_text, "state", server_state_label(server_state(s)), "admin",
        admin_names[s->h.admin], "weight", (json_int_t)weight, "effective_weight", effective,
        "active_requests", (json_int_t)sum.active, "idle_connections", (json_int_t)sum.idle,
        "health", health, "ejections", (json_int_t)s->h.ejections_total, "consecutive_failures",
        (json_int_t)atomic_load(&s->consecutive_failures), "requests", requests_json(sum.requests),
        "latency", latency_json(&sum.latency), "runtime", s->runtime);
    double estimate = lb_latency_estimate_ms(p, s, now);
    if (o && estimate >= 0)
        json_object_set_new(o, "latency_estimate_ms", json_real(estimate));
    if (o && p->conf->sticky.enabled)
        json_object_set_new(o, "sticky_cookie", json_string(s->sticky_id));
    if (o)
        json_object_set_new(o, "source", json_string(server_source_label(s->source)));
    return o;
}

/* The discovery sources of pool p: where its servers come from, and whether they answer. */
static json_t *discovery_json(const struct pool *p)
{
    struct discovery_view views[2];
    unsigned n = adm.plane->discovery(p->name, views, 2);
    json_t *a = json_array();
    for (unsigned i = 0; i < n; i++) {
        const struct discovery_status *st = views[i].status;
        json_array_append_new(
            a,
            json_pack("{s:s,s:s,s:s,s:I,s:I,s:I,s:I,s:I,s:I,s:s}", "type", views[i].type, "target",
                      views[i].target, "health", discovery_health_label(st->health), "servers",
                      (json_int_t)st->members, "last_ok_unix_ms", (json_int_t)st->last_ok_unix_ms,
                      "last_change_unix_ms", (json_int_t)st->last_change_unix_ms, "answers",
                      (json_int_t)st->answers, "errors", (json_int_t)st->errors, "changes",
                      (json_int_t)st->changes, "last_error", st->last_error));
    }
    return a;
}

static json_t *pool_json(const struct pool *p)
{
    unsigned n;
    struct stats *const *all = adm.plane->worker_stats(&n);
    struct stats_pool_sum sum;
    stats_sum_pool(all, n, p->slot, &sum);
    json_t *servers = json_array();
    for (unsigned i = 0; i < p->nservers; i++)
        json_array_append_new(servers, server_json(p, p->servers[i]));
    json_t *tcp =
        json_pack("{s:I,s:I,s:I,s:I}", "connections", (json_int_t)sum.tcp_connections, "active",
                  (json_int_t)sum.tcp_active, "bytes_in", (json_int_t)sum.tcp_bytes_in, "bytes_out",
                  (json_int_t)sum.tcp_bytes_out);
    json_t *o =
        json_pack("{s:s,s:s,s:b,s:I,s:o,s:o,s:I,s:o,s:o}", "name", p->name, "balance",
                  conf_balance_name(p->conf->balance), "health_check", p->conf->check.enabled,
                  "retries", (json_int_t)p->conf->retries, "requests", requests_json(sum.requests),
                  "latency", latency_json(&sum.latency), "retried", (json_int_t)sum.retries, "tcp",
                  tcp, "servers", servers);
    if (o && p->conf->balance == CONF_BALANCE_HASH) {
        char key[300];
        snprintf(key, sizeof(key), "%s%s%s", conf_hash_key_name(p->conf->hash_key),
                 p->conf->hash_key_name ? ":" : "",
                 p->conf->hash_key_name ? p->conf->hash_key_name : "");
        json_object_set_new(o, "hash",
                            json_pack("{s:s,s:I,s:I,s:I,s:I}", "key", key, "balance_factor",
                                      (json_int_t)p->conf->hash_balance_factor, "spilled",
                                      (json_int_t)sum.spilled, "table_size",
                                      (json_int_t)lb_hash_table_size(p), "table_bytes",
                                      (json_int_t)lb_hash_table_bytes(p)));
    }
    if (o && p->conf->sticky.enabled)
        json_object_set_new(o, "sticky_cookie", json_string(p->conf->sticky.cookie));
    if (o) {
        json_object_set_new(o, "discovery", discovery_json(p));
        json_object_set_new(o, "max_servers", json_integer((json_int_t)p->conf->max_servers));
    }
    return o;
}

static json_t *certificate_json(const struct tls_certificate_view *v, time_t now)
{
    const struct certinfo *ci = v->info;
    json_t *names = json_array();
    for (unsigned i = 0; i < ci->nnames; i++)
        json_array_append_new(names, json_string(ci->names[i]));
    char after[32];
    time_t t = (time_t)ci->not_after;
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(after, sizeof(after), "%Y-%m-%dT%H:%M:%SZ", &tm);
    static const char *const key_names[] = {"other", "RSA", "ECDSA"};
    return json_pack("{s:s,s:s,s:s?,s:s?,s:o,s:s,s:I,s:s,s:I,s:f,s:b,s:I}", "cert", v->cert, "key",
                     v->key, "subject", ci->subject, "issuer", ci->issuer, "names", names,
                     "key_type", key_names[ci->key], "key_bits", (json_int_t)ci->key_bits,
                     "not_after", after, "not_after_unix", (json_int_t)ci->not_after, "days_left",
                     (double)(ci->not_after - (int64_t)now) / 86400.0, "default", v->is_default,
                     "chain_length", (json_int_t)ci->chain_len);
}

static json_t *strings_json(char *const *v, unsigned n)
{
    json_t *a = json_array();
    for (unsigned i = 0; i < n; i++)
        json_array_append_new(a, json_string(v[i]));
    return a;
}

/* A match as the configuration wrote it: only the conditions given. */
static json_t *match_json(const struct conf_route_match *m)
{
    json_t *o = json_object();
    if (m->nhosts)
        json_object_set_new(o, "host", strings_json(m->hosts, m->nhosts));
    if (m->path)
        json_object_set_new(o, "path", json_string(m->path));
    if (m->path_prefix)
        json_object_set_new(o, "path_prefix", json_string(m->path_prefix));
    if (m->path_regex)
        json_object_set_new(o, "path_regex", json_string(m->path_regex));
    if (m->nmethods)
        json_object_set_new(o, "method", strings_json(m->methods, m->nmethods));
    if (m->header.name)
        json_object_set_new(
            o, "header", json_pack("{s:s,s:s?}", "name", m->header.name, "value", m->header.value));
    if (m->query.name)
        json_object_set_new(
            o, "query", json_pack("{s:s,s:s?}", "name", m->query.name, "value", m->query.value));
    if (m->nsnis)
        json_object_set_new(o, "sni", strings_json(m->snis, m->nsnis));
    return o;
}

/* A listener's routes, in order, with what each does and the requests it matched. */
static json_t *routes_json(const struct snapshot_listener *l)
{
    unsigned n;
    struct stats *const *all = adm.plane->worker_stats(&n);
    json_t *routes = json_array();
    for (unsigned i = 0; i < l->conf->nroutes; i++) {
        const struct conf_route *r = &l->conf->routes[i];
        struct stats_pool_sum sum;
        stats_sum_route(all, n, l->routing->slots[i], &sum);
        json_t *o = json_pack("{s:s,s:o,s:o,s:o}", "name", r->name, "match", match_json(&r->match),
                              "requests", requests_json(sum.requests), "latency",
                              latency_json(&sum.latency));
        if (r->action == CONF_ROUTE_POOL)
            json_object_set_new(o, "pool", json_string(r->pool_name));
        else if (r->action == CONF_ROUTE_REDIRECT)
            json_object_set_new(
                o, "redirect",
                json_pack("{s:s?,s:s?,s:s?,s:I,s:I}", "location", r->redirect.location, "scheme",
                          r->redirect.scheme, "host", r->redirect.host, "port",
                          (json_int_t)r->redirect.port, "status", (json_int_t)r->redirect.status));
        else
            json_object_set_new(o, "respond",
                                json_pack("{s:I}", "status", (json_int_t)r->respond.status));
        json_array_append_new(routes, o);
    }
    return routes;
}

static json_t *all_routes_json(void)
{
    const struct snapshot *snap = adm.plane->snapshot();
    json_t *listeners = json_array();
    for (unsigned i = 0; i < snap->nlisteners; i++) {
        const struct snapshot_listener *l = &snap->listeners[i];
        json_array_append_new(listeners,
                              json_pack("{s:s,s:s?,s:o}", "listener", l->conf->name, "pool",
                                        l->pool ? l->pool->name : NULL, "routes", routes_json(l)));
    }
    return json_pack("{s:o}", "listeners", listeners);
}

/* A listener's TLS side: its certificates and the settings that shape handshakes. */
static json_t *listener_tls_json(const struct snapshot_listener *l)
{
    const struct conf_listener_tls *t = &l->conf->tls;
    json_t *certs = json_array(), *alpn = json_array();
    time_t now = time(NULL);
    for (unsigned k = 0; k < tls_server_certificates(l->tls); k++) {
        struct tls_certificate_view v = tls_server_certificate(l->tls, k);
        json_array_append_new(certs, certificate_json(&v, now));
    }
    for (unsigned k = 0; k < t->nalpn; k++)
        json_array_append_new(alpn, json_string(t->alpn[k]));
    if (!t->nalpn)
        json_array_append_new(alpn, json_string("http/1.1"));
    return json_pack("{s:o,s:s,s:b,s:o,s:b,s:b}", "certificates", certs, "min_version",
                     t->min_version == CONF_TLS_1_3 ? "tls1.3" : "tls1.2", "sni_strict",
                     t->sni_strict, "alpn", alpn, "client_certificates", t->client_ca != NULL,
                     "session_tickets", t->session_tickets);
}

static json_t *state_json(void)
{
    const struct snapshot *snap = adm.plane->snapshot();
    unsigned n;
    struct stats *const *all = adm.plane->worker_stats(&n);
    struct stats_global_sum g;
    struct control_stats cs;
    stats_sum_global(all, n, &g);
    adm.plane->reload_stats(&cs);
    const struct control_options *opts = adm.plane->options();

    json_t *listeners = json_array(), *pools = json_array(), *buckets = json_array();
    for (unsigned i = 0; i < snap->nlisteners; i++) {
        const struct snapshot_listener *l = &snap->listeners[i];
        json_array_append_new(listeners,
                              json_pack("{s:s,s:s,s:s,s:s?,s:o,s:o}", "name", l->conf->name, "bind",
                                        l->conf->bind, "mode",
                                        l->conf->mode == CONF_MODE_TCP ? "tcp" : "http", "pool",
                                        l->pool ? l->pool->name : NULL, "routes", routes_json(l),
                                        "tls", l->tls ? listener_tls_json(l) : json_null()));
    }
    for (unsigned i = 0; i < snap->npools; i++)
        json_array_append_new(pools, pool_json(&snap->pools[i]));
    for (unsigned b = 0; b < STATS_BUCKETS; b++)
        json_array_append_new(buckets, json_real(stats_bucket_bounds[b]));
    json_t *fulcrum =
        json_pack("{s:s,s:f,s:I,s:s?,s:{s:I,s:I}}", "version", FULCRUM_VERSION, "uptime_seconds",
                  (double)(loop_now_ms(adm.loop) - adm.plane->started_ms()) / 1000.0, "threads",
                  (json_int_t)opts->threads, "config", opts->config_path, "reloads", "ok",
                  (json_int_t)cs.reloads_ok, "failed", (json_int_t)cs.reloads_failed);
    json_t *clients = json_pack("{s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I}", "idle",
                                (json_int_t)g.clients[STATS_CLIENT_IDLE], "reading",
                                (json_int_t)g.clients[STATS_CLIENT_READING], "active",
                                (json_int_t)g.clients[STATS_CLIENT_ACTIVE], "closing",
                                (json_int_t)g.clients[STATS_CLIENT_CLOSING], "tunnel",
                                (json_int_t)g.clients[STATS_CLIENT_TUNNEL], "http2",
                                (json_int_t)g.clients[STATS_CLIENT_HTTP2], "tunnels_total",
                                (json_int_t)g.tunnels, "accepted", (json_int_t)g.accepted);
    return json_pack("{s:o,s:o,s:o,s:o,s:o}", "fulcrum", fulcrum, "clients", clients, "listeners",
                     listeners, "buckets", buckets, "pools", pools);
}

/* ---- routes ---- */

static int hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c = (char)(c | 0x20);
    return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* Decodes %XX in a path segment; returns -1 on a malformed escape or an empty result. */
static int decode_segment(const char *s, size_t len, char *out, size_t cap)
{
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (c == '%') {
            if (i + 2 >= len) /* the escape needs two more characters */
                return -1;
            int hi = hex_value(s[i + 1]), lo = hex_value(s[i + 2]);
            if (hi < 0 || lo < 0)
                return -1;
            c = (char)(hi * 16 + lo);
            i += 2;
        }
        if (o + 1 >= cap || c == '\0')
            return -1;
        out[o++] = c;
    }
    out[o] = '\0';
    return o ? 0 : -1;
}

/* Splits "/api/pools/P/servers[/S]" into decoded names; returns the number of names (1 or 2)
 * or 0 if the path has another shape. */
static int parse_server_path(const char *path, size_t len, char *pool, char *name, size_t cap)
{
    static const char prefix[] = "/api/pools/";
    if (len <= sizeof(prefix) - 1 || memcmp(path, prefix, sizeof(prefix) - 1) != 0)
        return 0;
    const char *p = path + sizeof(prefix) - 1, *end = path + len;
    const char *slash = memchr(p, '/', (size_t)(end - p));
    if (!slash || decode_segment(p, (size_t)(slash - p), pool, cap) < 0)
        return 0;
    static const char servers[] = "/servers";
    size_t rest = (size_t)(end - slash);
    if (rest == sizeof(servers) - 1 && memcmp(slash, servers, rest) == 0)
        return 1;
    if (rest <= sizeof(servers) || memcmp(slash, "/servers/", sizeof(servers)) != 0)
        return 0;
    const char *s = slash + sizeof(servers);
    if (memchr(s, '/', (size_t)(end - s)) || decode_segment(s, (size_t)(end - s), name, cap) < 0)
        return 0;
    return 2;
}

static json_t *parse_body(struct admin_conn *c, const char *body, size_t len)
{
    if (!len) {
        respond_error(c, 400, "expected a JSON object in the request body", NULL);
        return NULL;
    }
    json_error_t err;
    json_t *doc = json_loadb(body, len, 0, &err);
    if (!doc || !json_is_object(doc)) {
        char msg[256];
        if (doc)
            snprintf(msg, sizeof(msg), "expected a JSON object");
        else
            snprintf(msg, sizeof(msg), "invalid JSON at line %d, column %d: %s", err.line,
                     err.column, err.text);
        json_decref(doc);
        respond_error(c, 400, msg, NULL);
        return NULL;
    }
    return doc;
}

/* Rejects keys other than the allowed ones, so a typo is an error instead of a no-op. */
static bool only_keys(struct admin_conn *c, json_t *doc, const char *const *allowed)
{
    const char *key;
    json_t *value;
    json_object_foreach(doc, key, value)
    {
        bool ok = false;
        for (const char *const *a = allowed; *a && !ok; a++)
            ok = strcmp(*a, key) == 0;
        if (!ok) {
            char msg[256];
            snprintf(msg, sizeof(msg), "unknown key \"%.100s\"", key);
            respond_error(c, 400, msg, NULL);
            return false;
        }
    }
    return true;
}

static bool get_weight(struct admin_conn *c, json_t *doc, int *weight)
{
    json_t *w = json_object_get(doc, "weight");
    *weight = -1;
    if (!w)
        return true;
    if (!json_is_integer(w) || json_integer_value(w) < 0 ||
        json_integer_value(w) > CONF_MAX_WEIGHT) {
        respond_error(c, 400, "weight must be an integer from 0 to 256", NULL);
        return false;
    }
    *weight = (int)json_integer_value(w);
    return true;
}

static void answer_command(struct admin_conn *c, int status, char *error, unsigned ok_status,
                           const char *pool, const char *name)
{
    if (status) {
        respond_error(c, (unsigned)status, error ? error : "failed", NULL);
        free(error);
        return;
    }
    const struct pool *p = snapshot_find_pool(adm.plane->snapshot(), pool);
    for (unsigned i = 0; p && name && i < p->nservers; i++)
        if (strcmp(p->servers[i]->name, name) == 0) {
            respond_json(c, ok_status, server_json(p, p->servers[i]), NULL);
            return;
        }
    respond_json(c, ok_status, json_pack("{s:s,s:s?}", "pool", pool, "server", name), NULL);
}

static void route_server(struct admin_conn *c, uint8_t method, const char *pool, const char *name,
                         const char *body, size_t body_len)
{
    char *error = NULL;
    if (method == HTTP1_METHOD_GET) {
        const struct pool *p = snapshot_find_pool(adm.plane->snapshot(), pool);
        for (unsigned i = 0; p && i < p->nservers; i++)
            if (strcmp(p->servers[i]->name, name) == 0) {
                respond_json(c, 200, server_json(p, p->servers[i]), NULL);
                return;
            }
        respond_error(c, 404, p ? "no such server in this pool" : "no such pool", NULL);
        return;
    }
    if (method == HTTP1_METHOD_DELETE) {
        int status = adm.plane->remove_server(pool, name, &error);
        if (status) {
            answer_command(c, status, error, 200, pool, name);
            return;
        }
        respond_json(c, 200, json_pack("{s:s,s:s}", "pool", pool, "removed", name), NULL);
        return;
    }
    if (method != HTTP1_METHOD_POST) {
        respond_error(c, 405, "use GET, POST or DELETE", "Allow: GET, POST, DELETE\r\n");
        return;
    }
    json_t *doc = parse_body(c, body, body_len);
    static const char *const keys[] = {"state", "weight", NULL};
    int weight, admin = -1;
    if (!doc || !only_keys(c, doc, keys) || !get_weight(c, doc, &weight)) {
        json_decref(doc);
        return;
    }
    json_t *state = json_object_get(doc, "state");
    if (state) {
        const char *v = json_is_string(state) ? json_string_value(state) : "";
        for (int i = 0; i < 3; i++)
            if (strcmp(v, admin_names[i]) == 0)
                admin = i;
        if (admin < 0) {
            json_decref(doc);
            respond_error(c, 400, "state must be \"drain\", \"maint\" or \"ready\"", NULL);
            return;
        }
    }
    json_decref(doc);
    if (admin < 0 && weight < 0) {
        respond_error(c, 400, "nothing to change: give \"state\" and/or \"weight\"", NULL);
        return;
    }
    int status = adm.plane->set_server(pool, name, admin, weight, &error); /* sets error */
    answer_command(c, status, error, 200, pool, name);
}

static void route_add(struct admin_conn *c, uint8_t method, const char *pool, const char *body,
                      size_t body_len)
{
    if (method != HTTP1_METHOD_POST) {
        respond_error(c, 405, "use POST to add a server", "Allow: POST\r\n");
        return;
    }
    json_t *doc = parse_body(c, body, body_len);
    static const char *const keys[] = {"name", "address", "weight", NULL};
    int weight;
    if (!doc || !only_keys(c, doc, keys) || !get_weight(c, doc, &weight)) {
        json_decref(doc);
        return;
    }
    const char *name = json_string_value(json_object_get(doc, "name"));
    const char *address = json_string_value(json_object_get(doc, "address"));
    if (!name || !*name || !address) {
        json_decref(doc);
        respond_error(c, 400, "\"name\" and \"address\" (host:port) are required strings", NULL);
        return;
    }
    char *error = NULL;
    int status =
        adm.plane->add_server(pool, name, address, weight < 0 ? 1 : (unsigned)weight, &error);
    answer_command(c, status, error, 201, pool, name);
    json_decref(doc);
}

static void route(struct admin_conn *c, const struct http1_msg *msg, const char *buf,
                  const char *body, size_t body_len)
{
    const char *path = buf + msg->path_off;
    size_t len = msg->path_len;
    const char *q = memchr(path, '?', len);
    if (q)
        len = (size_t)(q - path);
    uint8_t m = msg->method;
#define IS(p) (len == sizeof(p) - 1 && memcmp(path, p, len) == 0)

    if (IS("/") || IS("/index.html")) {
        if (m != HTTP1_METHOD_GET)
            respond_error(c, 405, "use GET", "Allow: GET\r\n");
        else
            respond(c, 200, "text/html; charset=utf-8", (const char *)dashboard_html,
                    dashboard_html_len, NULL);
    } else if (IS("/metrics")) {
        size_t n = 0;
        char *text = m == HTTP1_METHOD_GET ? metrics_render(adm.plane, &n) : NULL;
        if (m != HTTP1_METHOD_GET)
            respond_error(c, 405, "use GET", "Allow: GET\r\n");
        else if (!text)
            respond_error(c, 500, "out of memory", NULL);
        else
            respond(c, 200, "text/plain; version=0.0.4; charset=utf-8", text, n, NULL);
        free(text);
    } else if (IS("/api/state")) {
        if (m != HTTP1_METHOD_GET)
            respond_error(c, 405, "use GET", "Allow: GET\r\n");
        else
            respond_json(c, 200, state_json(), NULL);
    } else if (IS("/api/routes")) {
        if (m != HTTP1_METHOD_GET)
            respond_error(c, 405, "use GET", "Allow: GET\r\n");
        else
            respond_json(c, 200, all_routes_json(), NULL);
    } else if (IS("/api/reload")) {
        char *errors = NULL;
        if (m != HTTP1_METHOD_POST) {
            respond_error(c, 405, "use POST", "Allow: POST\r\n");
        } else if (adm.plane->reload(&errors) == 0) {
            respond_json(c, 200, json_pack("{s:s}", "result", "reloaded"), NULL);
        } else {
            json_t *lines = json_array();
            for (char *line = errors, *next; line && *line; line = next) {
                next = strchr(line, '\n');
                if (next)
                    *next++ = '\0';
                json_array_append_new(lines, json_string(line));
            }
            respond_json(c, 400,
                         json_pack("{s:s,s:o}", "error",
                                   "reload failed: the running configuration stays", "details",
                                   lines),
                         NULL);
        }
        free(errors);
    } else {
        char pool[256], name[256];
        int parts = parse_server_path(path, len, pool, name, sizeof(pool));
        if (parts == 2)
            route_server(c, m, pool, name, body, body_len);
        else if (parts == 1)
            route_add(c, m, pool, body, body_len);
        else
            respond_error(c, 404, "no such endpoint", NULL);
    }
#undef IS
}

/* ---- connections ---- */

static void drop_conn(struct admin_conn *c)
{
    loop_timer_stop(adm.loop, &c->timer);
    conn_close(&c->conn, false);
    for (struct admin_conn **pp = &adm.conns; *pp; pp = &(*pp)->next)
        if (*pp == c) {
            *pp = c->next;
            break;
        }
    adm.nconns--;
    free(c->in);
    free(c->out);
    c->in = c->out = NULL;
    c->next = adm.dead; /* freed between epoll batches: events of this batch may point here */
    adm.dead = c;
}

static void before_poll(struct loop *loop, void *arg)
{
    while (adm.dead) {
        struct admin_conn *c = adm.dead;
        adm.dead = c->next;
        free(c);
    }
}

static const char *header(const struct http1_msg *msg, const char *buf, const char *name,
                          size_t *len)
{
    for (uint32_t i = 0; i < msg->nfields; i++) {
        const struct http1_field *f = &msg->fields[i];
        if (http1_token_eq(buf + f->name_off, f->name_len, name)) {
            *len = f->value_len;
            return buf + f->value_off;
        }
    }
    *len = 0;
    return NULL;
}

/* Is sa one of the machine's addresses? Asked only for a Host or Origin that is an IP literal
 * other than loopback, so the list is read then and never kept: addresses come and go. */
static bool machine_has_ip(const struct sockaddr *sa)
{
    struct ifaddrs *list;
    if (getifaddrs(&list) < 0) {
        log_error("admin: cannot list the machine's addresses: %s", strerror(errno));
        return false;
    }
    bool found = false;
    for (const struct ifaddrs *i = list; i && !found; i = i->ifa_next) {
        if (!i->ifa_addr || i->ifa_addr->sa_family != sa->sa_family)
            continue;
        if (sa->sa_family == AF_INET)
            found = ((const struct sockaddr_in *)i->ifa_addr)->sin_addr.s_addr ==
                    ((const struct sockaddr_in *)sa)->sin_addr.s_addr;
        else if (sa->sa_family == AF_INET6)
            found =
                memcmp(&((const struct sockaddr_in6 *)i->ifa_addr)->sin6_addr,
                       &((const struct sockaddr_in6 *)sa)->sin6_addr, sizeof(struct in6_addr)) == 0;
    }
    freeifaddrs(list);
    return found;
}

/* The status admin_guard.c refuses the request with (setting *why), or 0. */
static unsigned guard_status(const struct http1_msg *msg, const char *buf, const char **why)
{
    uint8_t m = msg->method;
    struct admin_guard_request req = {
        .changes = m != HTTP1_METHOD_GET && m != HTTP1_METHOD_HEAD && m != HTTP1_METHOD_OPTIONS,
    };
    req.host.ptr = header(msg, buf, "host", &req.host.len);
    req.origin.ptr = header(msg, buf, "origin", &req.origin.len);
    req.fetch_site.ptr = header(msg, buf, "sec-fetch-site", &req.fetch_site.len);
    req.fetch_mode.ptr = header(msg, buf, "sec-fetch-mode", &req.fetch_mode.len);
    req.content_type.ptr = header(msg, buf, "content-type", &req.content_type.len);
    const struct admin_guard_policy policy = {
        .allowed_hosts = adm.allowed_hosts,
        .nallowed_hosts = adm.nallowed_hosts,
        .is_local_ip = machine_has_ip,
    };
    return admin_guard_check(&policy, &req, why);
}

/* Handles the request at the front of c->in if it is complete. Returns true if it did. */
static bool handle_request(struct admin_conn *c)
{
    const struct http1_limits limits = {.max_head_bytes = MAX_HEAD, .max_fields = MAX_FIELDS};
    struct http1_field fields[MAX_FIELDS];
    struct http1_scan scan = {0};
    uint16_t status;
    const char *why;
    int r = http1_scan_head(&scan, c->in, c->len, &limits, true, &status, &why);
    if (r == HTTP1_AGAIN)
        return false;
    struct http1_msg msg = {.fields = fields};
    if (r == HTTP1_ERROR || http1_parse_request(&scan, c->in, &limits, &msg) != HTTP1_DONE) {
        c->close_after = true;
        respond_error(c, r == HTTP1_ERROR ? status : msg.error_status,
                      r == HTTP1_ERROR ? why : msg.error, NULL);
        c->len = 0;
        return true;
    }
    if (msg.body == HTTP1_BODY_CHUNKED || msg.content_length > MAX_BODY) {
        c->close_after = true;
        respond_error(c, msg.body == HTTP1_BODY_CHUNKED ? 411 : 413,
                      "send a body of at most 64 KiB with a Content-Length", NULL);
        c->len = 0;
        return true;
    }
    size_t total = msg.head_end + (size_t)msg.content_length;
    if (c->len < total)
        return false; /* the body is on its way */
    if (msg.version == 10 ? !(msg.flags & HTTP1_F_CONN_KEEP_ALIVE)
                          : (msg.flags & HTTP1_F_CONN_CLOSE))
        c->close_after = true;

    size_t auth_len;
    const char *auth = header(&msg, c->in, "authorization", &auth_len);
    const char *refusal;
    unsigned refused = guard_status(&msg, c->in, &refusal);
    if (refused)
        respond_error(c, refused, refusal, NULL);
    else if (adm.locked || !admin_authorized(adm.token, auth, auth_len))
        respond_error(c, 401, "missing or wrong credentials: send Authorization: Bearer TOKEN",
                      "WWW-Authenticate: Basic realm=\"fulcrum admin\", charset=\"UTF-8\"\r\n");
    else
        route(c, &msg, c->in, c->in + msg.head_end, (size_t)msg.content_length);
    memmove(c->in, c->in + total, c->len - total);
    c->len -= total;
    return true;
}

static bool flush_out(struct admin_conn *c)
{
    while (c->out && c->out_sent < c->out_len) {
        size_t n;
        enum conn_status r =
            conn_write(&c->conn, c->out + c->out_sent, c->out_len - c->out_sent, &n);
        if (r == CONN_BLOCKED)
            return true;
        if (r == CONN_ERROR)
            return false;
        c->out_sent += n;
    }
    free(c->out);
    c->out = NULL;
    return true;
}

static void conn_event(struct loop *loop, struct loop_io *io)
{
    struct admin_conn *c = (struct admin_conn *)io;
    if (io->ready & (LOOP_ERR | LOOP_HUP)) {
        drop_conn(c);
        return;
    }
    for (;;) {
        if (!flush_out(c)) {
            drop_conn(c);
            return;
        }
        if (c->out) /* the client is slow to read: wait */
            break;
        if (c->close_after) {
            drop_conn(c);
            return;
        }
        if (handle_request(c))
            continue;
        if (!(io->ready & LOOP_READABLE))
            break;
        if (c->cap - c->len < 4096) {
            size_t cap = c->cap ? c->cap * 2 : 8192;
            if (cap > MAX_HEAD + MAX_BODY + 4096) {
                c->close_after = true;
                respond_error(c, 431, "request too large", NULL);
                continue;
            }
            char *in = realloc(c->in, cap);
            if (!in) {
                drop_conn(c);
                return;
            }
            c->in = in;
            c->cap = cap;
        }
        size_t n;
        enum conn_status r = conn_read(&c->conn, c->in + c->len, c->cap - c->len, &n);
        c->len += n;
        if (r == CONN_DONE)
            continue;
        if (r == CONN_BLOCKED)
            break;
        drop_conn(c); /* EOF or error */
        return;
    }
    loop_timer_set(loop, &c->timer, IDLE_MS);
}

static void conn_timeout(struct loop *loop, struct loop_timer *t)
{
    drop_conn(container_of(t, struct admin_conn, timer));
}

static void on_accept(struct loop *loop, struct loop_io *io)
{
    for (int i = 0; i < 16; i++) {
        int fd = accept4(io->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0)
            return; /* EAGAIN, or a failure the next event will retry */
        if (adm.nconns >= MAX_CONNS) {
            close(fd); /* the admin API is not for crowds */
            continue;
        }
        struct admin_conn *c = calloc(1, sizeof(*c));
        if (!c) {
            close(fd);
            continue;
        }
        conn_init_tcp(&c->conn, fd, conn_event);
        c->timer.fn = conn_timeout;
        if (conn_watch(loop, &c->conn) < 0) {
            close(fd);
            free(c);
            continue;
        }
        c->next = adm.conns;
        adm.conns = c;
        adm.nconns++;
        loop_timer_set(loop, &c->timer, IDLE_MS);
    }
}

/* ---- start, reload, stop ---- */

static int open_listener(const struct conf_admin *conf)
{
    int fd = net_listen(&conf->addr, 64, false);
    if (fd < 0) {
        log_error("admin: cannot listen on %s: %s", conf->bind, strerror(errno));
        return -1;
    }
    adm.listener.fd = fd;
    adm.listener.handler = on_accept;
    if (loop_add(adm.loop, &adm.listener, LOOP_LEVEL_IN) < 0) {
        log_error("admin: epoll_ctl: %s", strerror(errno));
        close(fd);
        adm.listener.fd = -1;
        return -1;
    }
    adm.listening = true;
    adm.addr = conf->addr;
    log_info("admin API, metrics and dashboard on http://%s/%s", conf->bind,
             conf->token ? " (token required)" : "");
    return 0;
}

static void close_listener(void)
{
    if (!adm.listening)
        return;
    loop_del(adm.loop, &adm.listener);
    close(adm.listener.fd);
    adm.listener.fd = -1;
    adm.listening = false;
}

static void free_allowed_hosts(void)
{
    for (unsigned i = 0; i < adm.nallowed_hosts; i++)
        free(adm.allowed_hosts[i]);
    free(adm.allowed_hosts);
    adm.allowed_hosts = NULL;
    adm.nallowed_hosts = 0;
}

/* Copies what the requests are checked against: the token and the allowed Host names. Returns
 * -1 if memory ran out; the API then refuses every request that needs what is missing. */
static int set_access(const struct conf_admin *conf)
{
    free(adm.token);
    free_allowed_hosts();
    const char *token = conf ? conf->token : NULL;
    adm.token = token ? strdup(token) : NULL;
    adm.locked = token && !adm.token;
    if (adm.locked) {
        log_error("admin: out of memory for the token: the API refuses every request");
        return -1;
    }
    unsigned n = conf ? conf->nallowed_hosts : 0;
    adm.allowed_hosts = n ? calloc(n, sizeof(*adm.allowed_hosts)) : NULL;
    for (unsigned i = 0; adm.allowed_hosts && i < n; i++) {
        adm.allowed_hosts[i] = strdup(conf->allowed_hosts[i]);
        if (!adm.allowed_hosts[i])
            break;
        adm.nallowed_hosts++;
    }
    if (adm.nallowed_hosts < n) {
        log_error("admin: out of memory for allowed_hosts: only localhost and the machine's "
                  "addresses are accepted");
        return -1;
    }
    return 0;
}

int admin_start(struct loop *loop, const struct conf_admin *conf, const struct control_plane *plane)
{
    adm.loop = loop;
    adm.plane = plane;
    loop_set_before_poll(loop, before_poll, NULL);
    if (!conf->enabled)
        return 0;
    if (set_access(conf) < 0)
        return -1;
    return open_listener(conf);
}

void admin_configure(const struct conf_admin *conf)
{
    if (!conf->enabled) {
        close_listener();
        set_access(NULL);
        return;
    }
    set_access(conf);
    if (adm.listening && net_addr_equal(&adm.addr, &conf->addr))
        return;
    close_listener();
    open_listener(conf);
}

void admin_stop(void)
{
    while (adm.conns)
        drop_conn(adm.conns);
    before_poll(NULL, NULL);
    close_listener();
    set_access(NULL);
}
