/*
 * metrics.c - Prometheus text exposition (see metrics.h).
 *
 * Families (all prefixed fulcrum_), in the order they are written:
 *   build_info{version,git,compiler}              gauge 1
 *   start_time_seconds                            gauge, Unix time
 *   requests_total{pool,server,code_class}        counter; server="" when none was chosen,
 *                                                 code_class="none" when nothing was sent
 *   request_duration_seconds{pool,server}         histogram, per server
 *   pool_request_duration_seconds{pool}           histogram, per pool
 *   server_up{pool,server}                        gauge 1/0 (1: in rotation)
 *   server_state{pool,server,state}               gauge, 1 for the current state
 *   server_weight{pool,server}                    gauge, configured weight
 *   server_active_requests{pool,server}           gauge
 *   server_latency_estimate_seconds{pool,server}  gauge, peak-ewma pools only
 *   hash_spilled_requests_total{pool}             counter, hash with bounded load: requests
 *                                                 sent past their key's own server
 *   server_idle_connections{pool,server}          gauge
 *   server_source{pool,server,source}             gauge 1; source file|api|dns|etcd
 *   discovery_up{pool,source}                     gauge 1/0 (0: failing, degraded or failed)
 *   discovery_servers{pool,source}                gauge, servers the source found
 *   discovery_last_success_timestamp_seconds{pool,source}  gauge, Unix time (0: never)
 *   discovery_errors_total{pool,source}           counter, failed queries or connections
 *   ejections_total{pool,server}                  counter
 *   health_checks_total{pool,server,result}       counter, result pass|fail
 *   retries_total{pool}                           counter
 *   tcp_connections_total{pool}                   counter, TCP mode connections given to the pool
 *   tcp_active_connections{pool}                  gauge
 *   tcp_bytes_total{pool,direction}               counter, in (client to server) | out
 *   route_requests_total{listener,route,code_class}  counter, per route of each listener
 *   route_request_duration_seconds{listener,route}   histogram, per route
 *   client_connections{state}                     gauge, idle|reading|active|closing|tunnel|http2
 *   tunnels_total                                 counter, WebSocket tunnels opened
 *   http2_connections_total                       counter, client connections in HTTP/2
 *   http2_streams_total                           counter, HTTP/2 streams that became requests
 *   client_connections_accepted_total             counter
 *   header_fields_dropped_total{reason}           counter, reason underscore
 *   config_reloads_total{result}                  counter, ok|failed
 *   access_log_dropped_total                      counter
 *   tls_handshakes_total{kind}                    counter, full|resumed
 *   tls_handshake_failures_total{reason}          counter, stats_tls_failure_names
 *   tls_version_total{version}                    counter, TLSv1.2|TLSv1.3 (completed handshakes)
 *   tls_certificate_expiry_timestamp_seconds{listener,certificate}   gauge, Unix time
 *
 * Each family is one row of the table `families`: its name, type and help, which series it has
 * (one for the process, one per pool or one per server, times the values of an optional extra
 * label), and the function that reads a series' value (for a histogram, its latency
 * distribution). Families of another shape have an emit function of their own.
 */
#include "ctl/metrics.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/loop.h"
#include "core/version.h"
#include "ctl/discovery.h"
#include "ctl/plane.h"
#include "lb/lb.h"
#include "lb/routing.h"
#include "lb/snapshot.h"
#include "proxy/accesslog.h"
#include "proxy/stats.h"
#include "servers/pool.h"
#include "tls/server.h"

/* Which series a family has. */
enum scope {
    SCOPE_PROCESS, /* fulcrum_NAME, or fulcrum_NAME{LABEL="..."} per label value */
    SCOPE_POOL,    /* fulcrum_NAME{pool="p"[,LABEL="..."]} per pool of the snapshot */
    SCOPE_SERVER,  /* fulcrum_NAME{pool="p",server="s"[,LABEL="..."]} per server of each pool */
    SCOPE_ROUTE,   /* fulcrum_NAME{listener="l",route="r"[,LABEL="..."]} per route */
    SCOPE_CUSTOM,  /* written by the family's emit function */
};

/* What a series' value is read from. Which fields are filled depends on the scope. */
struct source {
    const struct pool *pool;          /* POOL, SERVER */
    const struct server *server;      /* SERVER */
    struct stats_server_sum ss;       /* SERVER: its counters, summed over the workers */
    struct stats_pool_sum ps;         /* POOL, ROUTE: its counters, summed over the workers */
    const struct stats_global_sum *g; /* PROCESS */
    const struct control_stats *cs;   /* PROCESS */
};

/* One scrape. */
struct render {
    FILE *f;
    const struct control_plane *cp;
    const struct snapshot *snap;
    struct stats *const *all; /* every worker's counters */
    unsigned n;
};

struct family {
    const char *name, *type, *help;
    enum scope scope;
    /* An extra label, or NULL; a series per value, nlabel values. */
    const char *label;
    unsigned nlabel;
    /* Series i's value; with a label, *label_value is set to its value (i < nlabel). */
    uint64_t (*value)(const struct source *src, unsigned i, const char **label_value);
    /* Histograms instead: the latency distribution the series describe. */
    const struct stats_latency_sum *(*latency)(const struct source *src);
    /* SCOPE_CUSTOM: writes every series of the family. */
    void (*emit)(const struct render *r, const struct family *fam);
};

/* ---- writing series ---- */

#define MAX_LABELS 4 /* pool, server, the family's own label, le */

struct labels {
    unsigned n;
    const char *key[MAX_LABELS], *value[MAX_LABELS];
};

static void add_label(struct labels *l, const char *key, const char *value)
{
    if (l->n < MAX_LABELS) {
        l->key[l->n] = key;
        l->value[l->n] = value;
        l->n++;
    }
}

/* A label value: backslash, double quote and newline must be escaped. */
static void put_label_value(FILE *f, const char *v)
{
    for (; *v; v++) {
        if (*v == '\\' || *v == '"')
            fprintf(f, "\\%c", *v);
        else if (*v == '\n')
            fputs("\\n", f);
        else
            fputc(*v, f);
    }
}

/* fulcrum_NAMESUFFIX{key="value",...}, without the braces when there is no label. */
static void put_series(FILE *f, const char *name, const char *suffix, const struct labels *l)
{
    fprintf(f, "fulcrum_%s%s", name, suffix);
    for (unsigned i = 0; i < l->n; i++) {
        fprintf(f, "%s%s=\"", i ? "," : "{", l->key[i]);
        put_label_value(f, l->value[i]);
        fputc('"', f);
    }
    if (l->n)
        fputc('}', f);
}

static void put_histogram(FILE *f, const char *name, const struct labels *base,
                          const struct stats_latency_sum *h)
{
    uint64_t cumulative = 0;
    char le[48];
    for (unsigned b = 0; b <= STATS_BUCKETS; b++) {
        struct labels l = *base;
        if (b < STATS_BUCKETS) {
            cumulative += h->bucket[b];
            snprintf(le, sizeof(le), "%g", stats_bucket_bounds[b]);
        } else {
            cumulative = h->count;
            snprintf(le, sizeof(le), "+Inf");
        }
        add_label(&l, "le", le);
        put_series(f, name, "_bucket", &l);
        fprintf(f, " %llu\n", (unsigned long long)cumulative);
    }
    put_series(f, name, "_sum", base);
    fprintf(f, " %.6f\n", (double)h->sum_us / 1e6);
    put_series(f, name, "_count", base);
    fprintf(f, " %llu\n", (unsigned long long)h->count);
}

/* Every series of fam for one source: its histogram, or a series per label value. */
static void put_samples(FILE *f, const struct family *fam, const struct labels *base,
                        const struct source *src)
{
    if (fam->latency) {
        put_histogram(f, fam->name, base, fam->latency(src));
        return;
    }
    unsigned n = fam->label ? fam->nlabel : 1;
    for (unsigned i = 0; i < n; i++) {
        struct labels l = *base;
        const char *label_value = "";
        uint64_t v = fam->value(src, i, &label_value);
        if (fam->label)
            add_label(&l, fam->label, label_value);
        put_series(f, fam->name, "", &l);
        fprintf(f, " %llu\n", (unsigned long long)v);
    }
}

/* ---- families with their own shape ---- */

static void emit_build_info(const struct render *r, const struct family *fam)
{
    struct labels l = {0};
    add_label(&l, "version", FULCRUM_VERSION);
    add_label(&l, "git", FULCRUM_GIT_REV);
#if defined(__clang__)
    add_label(&l, "compiler", "clang " __clang_version__);
#else
    add_label(&l, "compiler", "gcc " __VERSION__);
#endif
    put_series(r->f, fam->name, "", &l);
    fputs(" 1\n", r->f);
}

static void emit_start_time(const struct render *r, const struct family *fam)
{
    struct timespec rt, mono;
    clock_gettime(CLOCK_REALTIME, &rt);
    clock_gettime(CLOCK_MONOTONIC, &mono);
    double up = (double)mono.tv_sec + mono.tv_nsec / 1e9 - r->cp->started_ms() / 1e3;
    fprintf(r->f, "fulcrum_%s %.3f\n", fam->name, (double)rt.tv_sec + rt.tv_nsec / 1e9 - up);
}

/* peak-ewma's estimate of each server's response time, for the pools that balance with it. */
static void emit_latency_estimates(const struct render *r, const struct family *fam)
{
    uint64_t now = loop_clock_us() / 1000u;
    for (unsigned i = 0; i < r->snap->npools; i++) {
        const struct pool *p = &r->snap->pools[i];
        for (unsigned k = 0; k < p->nservers; k++) {
            double ms = lb_latency_estimate_ms(p, p->servers[k], now);
            if (ms < 0)
                break; /* the pool balances otherwise */
            struct labels l = {0};
            add_label(&l, "pool", p->name);
            add_label(&l, "server", p->servers[k]->name);
            put_series(r->f, fam->name, "", &l);
            fprintf(r->f, " %.6f\n", ms / 1000.0);
        }
    }
}

static uint64_t server_source(const struct source *src, unsigned i, const char **lv)
{
    *lv = server_source_label(src->server->source);
    return 1;
}

/* The discovery families: one series per source of each pool, read by value(). */
static void emit_discovery(const struct render *r, const struct family *fam,
                           void (*value)(FILE *f, const struct discovery_status *st))
{
    for (unsigned i = 0; i < r->snap->npools; i++) {
        const struct pool *p = &r->snap->pools[i];
        struct discovery_view views[2];
        unsigned n = r->cp->discovery(p->name, views, 2);
        for (unsigned k = 0; k < n; k++) {
            struct labels l = {0};
            add_label(&l, "pool", p->name);
            add_label(&l, "source", views[k].type);
            put_series(r->f, fam->name, "", &l);
            value(r->f, views[k].status);
        }
    }
}

static void discovery_up_value(FILE *f, const struct discovery_status *st)
{
    fprintf(f, " %d\n", st->health == DISCOVERY_OK);
}

static void discovery_servers_value(FILE *f, const struct discovery_status *st)
{
    fprintf(f, " %u\n", st->members);
}

static void discovery_success_value(FILE *f, const struct discovery_status *st)
{
    fprintf(f, " %.3f\n", (double)st->last_ok_unix_ms / 1000.0);
}

static void discovery_errors_value(FILE *f, const struct discovery_status *st)
{
    fprintf(f, " %llu\n", (unsigned long long)st->errors);
}

static void emit_discovery_up(const struct render *r, const struct family *fam)
{
    emit_discovery(r, fam, discovery_up_value);
}

static void emit_discovery_servers(const struct render *r, const struct family *fam)
{
    emit_discovery(r, fam, discovery_servers_value);
}

static void emit_discovery_success(const struct render *r, const struct family *fam)
{
    emit_discovery(r, fam, discovery_success_value);
}

static void emit_discovery_errors(const struct render *r, const struct family *fam)
{
    emit_discovery(r, fam, discovery_errors_value);
}

/* Per server, then what the pool answered that no server of the snapshot accounts for
 * (server=""): no server chosen, or a server removed since. */
static void emit_requests(const struct render *r, const struct family *fam)
{
    static const char *const class_names[STATS_CLASSES] = {"none", "1xx", "2xx",
                                                           "3xx",  "4xx", "5xx"};
    for (unsigned i = 0; i < r->snap->npools; i++) {
        const struct pool *p = &r->snap->pools[i];
        uint64_t by_server[STATS_CLASSES] = {0};
        for (unsigned k = 0; k <= p->nservers; k++) {
            uint64_t requests[STATS_CLASSES];
            if (k < p->nservers) {
                struct stats_server_sum ss;
                stats_sum_server(r->all, r->n, p->servers[k]->slot, &ss);
                for (unsigned c = 0; c < STATS_CLASSES; c++) {
                    requests[c] = ss.requests[c];
                    by_server[c] += ss.requests[c];
                }
            } else {
                struct stats_pool_sum ps;
                stats_sum_pool(r->all, r->n, p->slot, &ps);
                for (unsigned c = 0; c < STATS_CLASSES; c++)
                    requests[c] = ps.requests[c] > by_server[c] ? ps.requests[c] - by_server[c] : 0;
            }
            for (unsigned c = 0; c < STATS_CLASSES; c++) {
                struct labels l = {0};
                add_label(&l, "pool", p->name);
                add_label(&l, "server", k < p->nservers ? p->servers[k]->name : "");
                add_label(&l, "code_class", class_names[c]);
                put_series(r->f, fam->name, "", &l);
                fprintf(r->f, " %llu\n", (unsigned long long)requests[c]);
            }
        }
    }
}

/* ---- values ---- */

static const struct stats_latency_sum *server_latency(const struct source *src)
{
    return &src->ss.latency;
}

static const struct stats_latency_sum *pool_latency(const struct source *src)
{
    return &src->ps.latency;
}

static uint64_t server_up(const struct source *src, unsigned i, const char **lv)
{
    return server_state(src->server) == SERVER_UP;
}

static uint64_t server_state_is(const struct source *src, unsigned i, const char **lv)
{
    *lv = server_state_label((enum server_state)i);
    return server_state(src->server) == (enum server_state)i;
}

static uint64_t weight(const struct source *src, unsigned i, const char **lv)
{
    return server_weight(src->server);
}

static uint64_t active_requests(const struct source *src, unsigned i, const char **lv)
{
    return src->ss.active;
}

static uint64_t hash_spilled(const struct source *src, unsigned i, const char **lv)
{
    return src->ps.spilled;
}

static uint64_t idle_connections(const struct source *src, unsigned i, const char **lv)
{
    return src->ss.idle;
}

static uint64_t ejections(const struct source *src, unsigned i, const char **lv)
{
    return src->server->h.ejections_total;
}

static uint64_t health_checks(const struct source *src, unsigned i, const char **lv)
{
    *lv = i == 0 ? "pass" : "fail";
    return i == 0 ? src->server->h.checks_passed : src->server->h.checks_failed;
}

static uint64_t route_requests(const struct source *src, unsigned i, const char **lv)
{
    static const char *const class_names[STATS_CLASSES] = {"none", "1xx", "2xx",
                                                           "3xx",  "4xx", "5xx"};
    *lv = class_names[i];
    return src->ps.requests[i];
}

static uint64_t retries(const struct source *src, unsigned i, const char **lv)
{
    return src->ps.retries;
}

static uint64_t tcp_connections(const struct source *src, unsigned i, const char **lv)
{
    return src->ps.tcp_connections;
}

static uint64_t tcp_active(const struct source *src, unsigned i, const char **lv)
{
    return src->ps.tcp_active;
}

static uint64_t tcp_bytes(const struct source *src, unsigned i, const char **lv)
{
    *lv = i == 0 ? "in" : "out";
    return i == 0 ? src->ps.tcp_bytes_in : src->ps.tcp_bytes_out;
}

static uint64_t tunnels(const struct source *src, unsigned i, const char **lv)
{
    return src->g->tunnels;
}

static uint64_t h2_connections(const struct source *src, unsigned i, const char **lv)
{
    return src->g->h2_connections;
}

static uint64_t h2_streams(const struct source *src, unsigned i, const char **lv)
{
    return src->g->h2_streams;
}

static uint64_t h2_streams_cancelled(const struct source *src, unsigned i, const char **lv)
{
    return src->g->h2_streams_cancelled;
}

static uint64_t client_connections(const struct source *src, unsigned i, const char **lv)
{
    static const char *const names[STATS_CLIENT_STATES] = {"idle",    "reading", "active",
                                                           "closing", "tunnel",  "http2"};
    *lv = names[i];
    /* a sum over workers can be briefly negative: a connection moved between two reads */
    return src->g->clients[i] > 0 ? (uint64_t)src->g->clients[i] : 0;
}

static uint64_t accepted(const struct source *src, unsigned i, const char **lv)
{
    return src->g->accepted;
}

static uint64_t fields_dropped(const struct source *src, unsigned i, const char **lv)
{
    *lv = "underscore";
    return src->g->underscore_fields_dropped;
}

static uint64_t reloads(const struct source *src, unsigned i, const char **lv)
{
    *lv = i == 0 ? "ok" : "failed";
    return i == 0 ? src->cs->reloads_ok : src->cs->reloads_failed;
}

static uint64_t access_log_dropped(const struct source *src, unsigned i, const char **lv)
{
    return accesslog_dropped();
}

static uint64_t tls_handshakes(const struct source *src, unsigned i, const char **lv)
{
    *lv = i == 0 ? "full" : "resumed";
    return src->g->tls_handshakes[i];
}

static uint64_t tls_failures(const struct source *src, unsigned i, const char **lv)
{
    *lv = stats_tls_failure_names[i];
    return src->g->tls_failures[i];
}

static uint64_t tls_versions(const struct source *src, unsigned i, const char **lv)
{
    *lv = i == 0 ? "TLSv1.2" : "TLSv1.3";
    return src->g->tls_versions[i];
}

/* One series per certificate of each TLS listener: when it stops being valid. */
static void emit_certificate_expiry(const struct render *r, const struct family *fam)
{
    for (unsigned i = 0; i < r->snap->nlisteners; i++) {
        const struct snapshot_listener *l = &r->snap->listeners[i];
        for (unsigned k = 0; l->tls && k < tls_server_certificates(l->tls); k++) {
            struct tls_certificate_view v = tls_server_certificate(l->tls, k);
            struct labels lb = {0};
            add_label(&lb, "listener", l->conf->name);
            add_label(&lb, "certificate", v.cert);
            put_series(r->f, fam->name, "", &lb);
            fprintf(r->f, " %lld\n", (long long)v.info->not_after);
        }
    }
}

/* ---- the families, in the order they are written ---- */

static const struct family families[] = {
    {"build_info", "gauge", "Version and build of the running fulcrum.", SCOPE_CUSTOM,
     .emit = emit_build_info},
    {"start_time_seconds", "gauge", "When the process started, in Unix time.", SCOPE_CUSTOM,
     .emit = emit_start_time},
    {"requests_total", "counter",
     "Requests answered, by pool, server (empty: no server) and status class.", SCOPE_CUSTOM,
     .emit = emit_requests},
    {"request_duration_seconds", "histogram",
     "Time from a request's first byte to the end of its answer, per server.", SCOPE_SERVER,
     .latency = server_latency},
    {"pool_request_duration_seconds", "histogram",
     "Time from a request's first byte to the end of its answer, per pool.", SCOPE_POOL,
     .latency = pool_latency},
    {"server_up", "gauge", "1 if the server is in rotation (state up), else 0.", SCOPE_SERVER,
     .value = server_up},
    {"server_state", "gauge", "1 for the server's current state.", SCOPE_SERVER, .label = "state",
     .nlabel = SERVER_STATES, .value = server_state_is},
    {"server_weight", "gauge", "The server's configured weight (0-256).", SCOPE_SERVER,
     .value = weight},
    {"server_active_requests", "gauge",
     "Requests (and TCP mode connections) in flight to the server.", SCOPE_SERVER,
     .value = active_requests},
    {"server_idle_connections", "gauge", "Idle pooled connections to the server.", SCOPE_SERVER,
     .value = idle_connections},
    {"server_source", "gauge",
     "1, labelled with where the server came from: file, api (admin API), dns or etcd.",
     SCOPE_SERVER, .label = "source", .nlabel = 1, .value = server_source},
    {"discovery_up", "gauge", "1 if the discovery source's last query or watch worked, else 0.",
     SCOPE_CUSTOM, .emit = emit_discovery_up},
    {"discovery_servers", "gauge", "Servers the discovery source found.", SCOPE_CUSTOM,
     .emit = emit_discovery_servers},
    {"discovery_last_success_timestamp_seconds", "gauge",
     "When the discovery source last answered, in Unix time (0: never).", SCOPE_CUSTOM,
     .emit = emit_discovery_success},
    {"discovery_errors_total", "counter", "Failed queries or connections of the discovery source.",
     SCOPE_CUSTOM, .emit = emit_discovery_errors},
    {"server_latency_estimate_seconds", "gauge",
     "peak-ewma's estimate of the server's time to a response head (peak-ewma pools only).",
     SCOPE_CUSTOM, .emit = emit_latency_estimates},
    {"hash_spilled_requests_total", "counter",
     "Requests that bounded load sent past their hash key's own server (hash pools).", SCOPE_POOL,
     .value = hash_spilled},
    {"ejections_total", "counter", "Times passive detection ejected the server.", SCOPE_SERVER,
     .value = ejections},
    {"health_checks_total", "counter", "Active health checks, by result.", SCOPE_SERVER,
     .label = "result", .nlabel = 2, .value = health_checks},
    {"retries_total", "counter", "Requests sent to another server after a failure.", SCOPE_POOL,
     .value = retries},
    {"tcp_connections_total", "counter", "TCP mode connections handed to the pool.", SCOPE_POOL,
     .value = tcp_connections},
    {"tcp_active_connections", "gauge", "TCP mode connections of the pool open now.", SCOPE_POOL,
     .value = tcp_active},
    {"tcp_bytes_total", "counter",
     "Bytes relayed by TCP mode connections: in (client to server), out (server to client).",
     SCOPE_POOL, .label = "direction", .nlabel = 2, .value = tcp_bytes},
    {"route_requests_total", "counter", "Requests that matched the route, by status class.",
     SCOPE_ROUTE, .label = "code_class", .nlabel = STATS_CLASSES, .value = route_requests},
    {"route_request_duration_seconds", "histogram",
     "Time from a request's first byte to the end of its answer, per route.", SCOPE_ROUTE,
     .latency = pool_latency},
    {"client_connections", "gauge", "Client connections, by what they are doing.", SCOPE_PROCESS,
     .label = "state", .nlabel = STATS_CLIENT_STATES, .value = client_connections},
    {"client_connections_accepted_total", "counter", "Client connections accepted.", SCOPE_PROCESS,
     .value = accepted},
    {"tunnels_total", "counter", "WebSocket tunnels opened (a 101 answer passed on).",
     SCOPE_PROCESS, .value = tunnels},
    {"http2_connections_total", "counter",
     "Client connections that spoke HTTP/2 (ALPN h2, or the h2c preface).", SCOPE_PROCESS,
     .value = h2_connections},
    {"http2_streams_total", "counter",
     "HTTP/2 streams that became requests (each is counted with the requests as well).",
     SCOPE_PROCESS, .value = h2_streams},
    {"http2_streams_cancelled_total", "counter",
     "HTTP/2 streams that ended while their request was with a server (reset by the client, "
     "their connection's end, stream_idle_timeout): the server's request was cancelled.",
     SCOPE_PROCESS, .value = h2_streams_cancelled},
    {"header_fields_dropped_total", "counter",
     "Request header fields not forwarded, by reason (underscore: '_' in the name).", SCOPE_PROCESS,
     .label = "reason", .nlabel = 1, .value = fields_dropped},
    {"config_reloads_total", "counter", "Configuration reloads, by result.", SCOPE_PROCESS,
     .label = "result", .nlabel = 2, .value = reloads},
    {"access_log_dropped_total", "counter",
     "Access log lines dropped because the writer could not keep up.", SCOPE_PROCESS,
     .value = access_log_dropped},
    {"tls_handshakes_total", "counter", "Completed TLS handshakes with clients, full or resumed.",
     SCOPE_PROCESS, .label = "kind", .nlabel = 2, .value = tls_handshakes},
    {"tls_handshake_failures_total", "counter", "Failed TLS handshakes with clients, by reason.",
     SCOPE_PROCESS, .label = "reason", .nlabel = STATS_TLS_FAILURES, .value = tls_failures},
    {"tls_version_total", "counter", "Completed TLS handshakes with clients, by protocol version.",
     SCOPE_PROCESS, .label = "version", .nlabel = 2, .value = tls_versions},
    {"tls_certificate_expiry_timestamp_seconds", "gauge",
     "When each listener certificate expires (notAfter), in Unix time.", SCOPE_CUSTOM,
     .emit = emit_certificate_expiry},
};

static void emit_family(const struct render *r, const struct family *fam,
                        const struct source *process)
{
    fprintf(r->f, "# HELP fulcrum_%s %s\n# TYPE fulcrum_%s %s\n", fam->name, fam->help, fam->name,
            fam->type);
    const struct snapshot *snap = r->snap;
    struct labels none = {0};
    switch (fam->scope) {
    case SCOPE_CUSTOM:
        fam->emit(r, fam);
        break;
    case SCOPE_PROCESS:
        put_samples(r->f, fam, &none, process);
        break;
    case SCOPE_POOL:
        for (unsigned i = 0; i < snap->npools; i++) {
            struct source src = {.pool = &snap->pools[i]};
            stats_sum_pool(r->all, r->n, src.pool->slot, &src.ps);
            struct labels l = {0};
            add_label(&l, "pool", src.pool->name);
            put_samples(r->f, fam, &l, &src);
        }
        break;
    case SCOPE_SERVER:
        for (unsigned i = 0; i < snap->npools; i++)
            for (unsigned k = 0; k < snap->pools[i].nservers; k++) {
                struct source src = {.pool = &snap->pools[i], .server = snap->pools[i].servers[k]};
                stats_sum_server(r->all, r->n, src.server->slot, &src.ss);
                struct labels l = {0};
                add_label(&l, "pool", src.pool->name);
                add_label(&l, "server", src.server->name);
                put_samples(r->f, fam, &l, &src);
            }
        break;
    case SCOPE_ROUTE:
        for (unsigned i = 0; i < snap->nlisteners; i++) {
            const struct snapshot_listener *sl = &snap->listeners[i];
            for (unsigned k = 0; k < sl->conf->nroutes; k++) {
                struct source src = {0};
                stats_sum_route(r->all, r->n, sl->routing->slots[k], &src.ps);
                struct labels l = {0};
                add_label(&l, "listener", sl->conf->name);
                add_label(&l, "route", sl->conf->routes[k].name);
                put_samples(r->f, fam, &l, &src);
            }
        }
        break;
    }
}

char *metrics_render(const struct control_plane *cp, size_t *len)
{
    char *text = NULL;
    FILE *f = open_memstream(&text, len);
    if (!f)
        return NULL;
    unsigned n;
    struct stats *const *all = cp->worker_stats(&n);
    struct render r = {.f = f, .cp = cp, .snap = cp->snapshot(), .all = all, .n = n};

    struct stats_global_sum g;
    struct control_stats cs;
    stats_sum_global(all, n, &g);
    cp->reload_stats(&cs);
    const struct source process = {.g = &g, .cs = &cs};

    for (size_t i = 0; i < sizeof(families) / sizeof(families[0]); i++)
        emit_family(&r, &families[i], &process);

    if (fclose(f) != 0) {
        free(text);
        return NULL;
    }
    return text;
}
