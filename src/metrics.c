/*
 * metrics.c - Prometheus text exposition (see metrics.h).
 *
 * Families (all prefixed fulcrum_):
 *   build_info{version,git,compiler}              gauge 1
 *   start_time_seconds                            gauge, Unix time
 *   requests_total{pool,server,code_class}        counter; server="" when none was chosen,
 *                                                 code_class="none" when nothing was sent
 *   request_duration_seconds{pool,server}         histogram, per server (and server="")
 *   pool_request_duration_seconds{pool}           histogram, per pool
 *   server_up{pool,server}                        gauge 1/0 (1: in rotation)
 *   server_state{pool,server,state}               gauge, 1 for the current state
 *   server_weight{pool,server}                    gauge, configured weight
 *   server_active_requests{pool,server}           gauge
 *   server_idle_connections{pool,server}          gauge
 *   retries_total{pool}                           counter
 *   ejections_total{pool,server}                  counter
 *   health_checks_total{pool,server,result}       counter, result pass|fail
 *   client_connections{state}                     gauge, idle|reading|active|closing
 *   client_connections_accepted_total             counter
 *   header_fields_dropped_total{reason}           counter, reason underscore
 *   config_reloads_total{result}                  counter, ok|failed
 *   access_log_dropped_total                      counter
 */
#include "metrics.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "accesslog.h"
#include "control.h"
#include "pool.h"
#include "snapshot.h"
#include "stats.h"
#include "version.h"

static const char *const class_names[STATS_CLASSES] = {"none", "1xx", "2xx", "3xx", "4xx", "5xx"};
static const char *const state_names[] = {"up", "down", "ejected", "draining", "maint"};
static const char *const client_states[STATS_CLIENT_STATES] = {"idle", "reading", "active",
                                                               "closing"};

/* A label value: backslash, double quote and newline must be escaped. */
static void label(FILE *f, const char *v)
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

static void family(FILE *f, const char *name, const char *type, const char *help)
{
    fprintf(f, "# HELP fulcrum_%s %s\n# TYPE fulcrum_%s %s\n", name, help, name, type);
}

/* One series: fulcrum_NAME{pool="p"[,server="s"]EXTRA} */
static void series(FILE *f, const char *name, const char *pool, const char *server,
                   const char *extra)
{
    fprintf(f, "fulcrum_%s{pool=\"", name);
    label(f, pool);
    if (server) {
        fputs("\",server=\"", f);
        label(f, server);
    }
    fprintf(f, "\"%s}", extra ? extra : "");
}

static void histogram(FILE *f, const char *name, const char *pool, const char *server,
                      const struct stats_latency_sum *l)
{
    char bucket[96], sum[96], count[96], le[48];
    snprintf(bucket, sizeof(bucket), "%s_bucket", name);
    snprintf(sum, sizeof(sum), "%s_sum", name);
    snprintf(count, sizeof(count), "%s_count", name);
    uint64_t cumulative = 0;
    for (unsigned b = 0; b < STATS_BUCKETS; b++) {
        cumulative += l->bucket[b];
        snprintf(le, sizeof(le), ",le=\"%g\"", stats_bucket_bounds[b]);
        series(f, bucket, pool, server, le);
        fprintf(f, " %llu\n", (unsigned long long)cumulative);
    }
    series(f, bucket, pool, server, ",le=\"+Inf\"");
    fprintf(f, " %llu\n", (unsigned long long)l->count);
    series(f, sum, pool, server, NULL);
    fprintf(f, " %.6f\n", (double)l->sum_us / 1e6);
    series(f, count, pool, server, NULL);
    fprintf(f, " %llu\n", (unsigned long long)l->count);
}

char *metrics_render(size_t *len)
{
    const struct snapshot *snap = control_snapshot();
    unsigned n;
    struct stats *const *all = control_worker_stats(&n);
    char *text = NULL;
    FILE *f = open_memstream(&text, len);
    if (!f)
        return NULL;

    family(f, "build_info", "gauge", "Version and build of the running fulcrum.");
    fprintf(f, "fulcrum_build_info{version=\"%s\",git=\"%s\",compiler=\"%s\"} 1\n", FULCRUM_VERSION,
            FULCRUM_GIT_REV,
#if defined(__clang__)
            "clang " __clang_version__
#else
            "gcc " __VERSION__
#endif
    );
    family(f, "start_time_seconds", "gauge", "When the process started, in Unix time.");
    {
        struct timespec rt, mono;
        clock_gettime(CLOCK_REALTIME, &rt);
        clock_gettime(CLOCK_MONOTONIC, &mono);
        double up = (double)mono.tv_sec + mono.tv_nsec / 1e9 - control_started_ms() / 1e3;
        fprintf(f, "fulcrum_start_time_seconds %.3f\n", (double)rt.tv_sec + rt.tv_nsec / 1e9 - up);
    }

    /* requests and latency: per server, then the pool's answers without a server */
    family(f, "requests_total", "counter",
           "Requests answered, by pool, server (empty: no server) and status class.");
    for (unsigned i = 0; i < snap->npools; i++) {
        const struct pool *p = &snap->pools[i];
        struct stats_pool_sum ps;
        uint64_t by_server[STATS_CLASSES] = {0};
        for (unsigned k = 0; k < p->nservers; k++) {
            struct stats_server_sum ss;
            stats_sum_server(all, n, p->servers[k]->slot, &ss);
            for (unsigned c = 0; c < STATS_CLASSES; c++) {
                char extra[40];
                snprintf(extra, sizeof(extra), ",code_class=\"%s\"", class_names[c]);
                series(f, "requests_total", p->name, p->servers[k]->name, extra);
                fprintf(f, " %llu\n", (unsigned long long)ss.requests[c]);
                by_server[c] += ss.requests[c];
            }
        }
        stats_sum_pool(all, n, p->slot, &ps);
        for (unsigned c = 0; c < STATS_CLASSES; c++) {
            char extra[40];
            snprintf(extra, sizeof(extra), ",code_class=\"%s\"", class_names[c]);
            series(f, "requests_total", p->name, "", extra);
            /* what the pool answered that no server of the current snapshot accounts for */
            uint64_t own = ps.requests[c] > by_server[c] ? ps.requests[c] - by_server[c] : 0;
            fprintf(f, " %llu\n", (unsigned long long)own);
        }
    }
    family(f, "request_duration_seconds", "histogram",
           "Time from a request's first byte to the end of its answer, per server.");
    for (unsigned i = 0; i < snap->npools; i++) {
        const struct pool *p = &snap->pools[i];
        for (unsigned k = 0; k < p->nservers; k++) {
            struct stats_server_sum ss;
            stats_sum_server(all, n, p->servers[k]->slot, &ss);
            histogram(f, "request_duration_seconds", p->name, p->servers[k]->name, &ss.latency);
        }
    }
    family(f, "pool_request_duration_seconds", "histogram",
           "Time from a request's first byte to the end of its answer, per pool.");
    for (unsigned i = 0; i < snap->npools; i++) {
        struct stats_pool_sum ps;
        stats_sum_pool(all, n, snap->pools[i].slot, &ps);
        histogram(f, "pool_request_duration_seconds", snap->pools[i].name, NULL, &ps.latency);
    }

    /* servers */
    family(f, "server_up", "gauge", "1 if the server is in rotation (state up), else 0.");
    for (unsigned i = 0; i < snap->npools; i++)
        for (unsigned k = 0; k < snap->pools[i].nservers; k++) {
            const struct server *s = snap->pools[i].servers[k];
            series(f, "server_up", snap->pools[i].name, s->name, NULL);
            fprintf(f, " %d\n", server_state(s) == SERVER_UP);
        }
    family(f, "server_state", "gauge", "1 for the server's current state.");
    for (unsigned i = 0; i < snap->npools; i++)
        for (unsigned k = 0; k < snap->pools[i].nservers; k++) {
            const struct server *s = snap->pools[i].servers[k];
            for (unsigned st = 0; st < 5; st++) {
                char extra[32];
                snprintf(extra, sizeof(extra), ",state=\"%s\"", state_names[st]);
                series(f, "server_state", snap->pools[i].name, s->name, extra);
                fprintf(f, " %d\n", server_state(s) == (enum server_state)st);
            }
        }
    struct {
        const char *name, *type, *help;
    } per_server[] = {
        {"server_weight", "gauge", "The server's configured weight (0-256)."},
        {"server_active_requests", "gauge", "Requests in flight to the server."},
        {"server_idle_connections", "gauge", "Idle pooled connections to the server."},
        {"ejections_total", "counter", "Times passive detection ejected the server."},
    };
    for (unsigned m = 0; m < sizeof(per_server) / sizeof(per_server[0]); m++) {
        family(f, per_server[m].name, per_server[m].type, per_server[m].help);
        for (unsigned i = 0; i < snap->npools; i++)
            for (unsigned k = 0; k < snap->pools[i].nservers; k++) {
                const struct server *s = snap->pools[i].servers[k];
                struct stats_server_sum ss;
                stats_sum_server(all, n, s->slot, &ss);
                uint64_t v = m == 0   ? server_weight(s)
                             : m == 1 ? ss.active
                             : m == 2 ? ss.idle
                                      : s->h.ejections_total;
                series(f, per_server[m].name, snap->pools[i].name, s->name, NULL);
                fprintf(f, " %llu\n", (unsigned long long)v);
            }
    }
    family(f, "health_checks_total", "counter", "Active health checks, by result.");
    for (unsigned i = 0; i < snap->npools; i++)
        for (unsigned k = 0; k < snap->pools[i].nservers; k++) {
            const struct server *s = snap->pools[i].servers[k];
            series(f, "health_checks_total", snap->pools[i].name, s->name, ",result=\"pass\"");
            fprintf(f, " %llu\n", (unsigned long long)s->h.checks_passed);
            series(f, "health_checks_total", snap->pools[i].name, s->name, ",result=\"fail\"");
            fprintf(f, " %llu\n", (unsigned long long)s->h.checks_failed);
        }
    family(f, "retries_total", "counter", "Requests sent to another server after a failure.");
    for (unsigned i = 0; i < snap->npools; i++) {
        struct stats_pool_sum ps;
        stats_sum_pool(all, n, snap->pools[i].slot, &ps);
        series(f, "retries_total", snap->pools[i].name, NULL, NULL);
        fprintf(f, " %llu\n", (unsigned long long)ps.retries);
    }

    /* process */
    struct stats_global_sum g;
    stats_sum_global(all, n, &g);
    family(f, "client_connections", "gauge", "Client connections, by what they are doing.");
    for (unsigned st = 0; st < STATS_CLIENT_STATES; st++)
        fprintf(f, "fulcrum_client_connections{state=\"%s\"} %lld\n", client_states[st],
                (long long)(g.clients[st] > 0 ? g.clients[st] : 0));
    family(f, "client_connections_accepted_total", "counter", "Client connections accepted.");
    fprintf(f, "fulcrum_client_connections_accepted_total %llu\n", (unsigned long long)g.accepted);
    family(f, "header_fields_dropped_total", "counter",
           "Request header fields not forwarded, by reason (underscore: '_' in the name).");
    fprintf(f, "fulcrum_header_fields_dropped_total{reason=\"underscore\"} %llu\n",
            (unsigned long long)g.underscore_fields_dropped);
    struct control_stats cs;
    control_get_stats(&cs);
    family(f, "config_reloads_total", "counter", "Configuration reloads, by result.");
    fprintf(f, "fulcrum_config_reloads_total{result=\"ok\"} %llu\n",
            (unsigned long long)cs.reloads_ok);
    fprintf(f, "fulcrum_config_reloads_total{result=\"failed\"} %llu\n",
            (unsigned long long)cs.reloads_failed);
    family(f, "access_log_dropped_total", "counter",
           "Access log lines dropped because the writer could not keep up.");
    fprintf(f, "fulcrum_access_log_dropped_total %llu\n", (unsigned long long)accesslog_dropped());

    if (fclose(f) != 0) {
        free(text);
        return NULL;
    }
    return text;
}
