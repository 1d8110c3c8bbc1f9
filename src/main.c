/*
 * main.c - command line, start-up, signals and stop.
 *
 * Start-up: read the configuration (file or quick-start flags), build the first snapshot, check
 * that every listen address is free, start one worker per thread, then wait for signals in the
 * main thread. Signals are blocked in every thread and taken synchronously here, so no handler
 * ever runs in the middle of a worker's work.
 *
 *   SIGTERM, SIGINT  graceful stop: workers stop accepting, finish in-flight requests within
 *                    shutdown_timeout, then exit; the process exits 0. A second one stops at once.
 *   SIGHUP           reload the configuration file (control.c); a bad file changes nothing
 *   SIGUSR1          reopen the access log and the error log (for logrotate)
 */
#include <errno.h>
#include <getopt.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <openssl/crypto.h>
#include <yaml.h>

#include "conf/conf.h"
#include "core/log.h"
#include "core/notify.h"
#include "core/version.h"
#include "ctl/control.h"
#include "lb/snapshot.h"
#include "proxy/accesslog.h"
#include "proxy/worker.h"
#include "tls/set.h"

static void usage(FILE *out)
{
    fprintf(
        out,
        "Usage: fulcrum -c FILE [-t]\n"
        "       fulcrum --listen ADDR --server ADDR [--server ADDR ...] [options]\n"
        "\n"
        "fulcrum is an HTTP/1.1 load balancer: it spreads requests arriving on its listeners\n"
        "over pools of backend servers.\n"
        "\n"
        "Configuration:\n"
        "  -c, --config FILE     run from a YAML configuration file (see fulcrum.yaml(5))\n"
        "  -t, --test            check the configuration, print \"configuration OK\" or every\n"
        "                        error found, and exit 0 or 1\n"
        "\n"
        "Quick start without a file:\n"
        "  --listen ADDR         accept clients on ADDR (repeatable): 127.0.0.1:8080,\n"
        "                        [::1]:8080, or :8080 for every address\n"
        "  --server ADDR[,weight=N][,name=NAME]\n"
        "                        add a backend server to the pool (repeatable); weight\n"
        "                        0-256, default 1\n"
        "  --balance NAME        round-robin (default), least-conn, random, hash (of the\n"
        "                        client's address) or peak-ewma\n"
        "  --health-check PATH   check every server with GET PATH (2xx-3xx passes)\n"
        "  --health-interval DUR time between checks (default 2s), e.g. 500ms, 5s\n"
        "  --admin ADDR          admin API, metrics and dashboard on ADDR\n"
        "                        (e.g. 127.0.0.1:9900)\n"
        "  --access-log PATH     JSON access log to PATH, or stdout\n"
        "  --tls-cert FILE       serve HTTPS on every --listen with this certificate (PEM,\n"
        "                        its chain after it) ...\n"
        "  --tls-key FILE        ... and this private key (PEM)\n"
        "\n"
        "Options:\n"
        "  --threads N           worker threads (default: one per CPU); overrides the file\n"
        "  --log-level LEVEL     error, warn, info or debug (default info); overrides the file\n"
        "  -v, --version         print the version and build options\n"
        "  -h, --help            print this help\n"
        "\n"
        "Signals: SIGTERM or SIGINT stop gracefully (in-flight requests finish); SIGHUP\n"
        "reloads the configuration file; SIGUSR1 reopens the log files.\n"
        "\n"
        "Example:\n"
        "  fulcrum --listen 127.0.0.1:8080 --server 127.0.0.1:9001 --server "
        "127.0.0.1:9002,weight=2\n");
}

static void version(void)
{
    printf("fulcrum %s (git %s)\n", FULCRUM_VERSION, FULCRUM_GIT_REV);
    printf("compiler: %s\n",
#if defined(__clang__)
           "clang " __clang_version__
#elif defined(__GNUC__)
           "gcc " __VERSION__
#else
           "unknown"
#endif
    );
    printf("libraries: libyaml %s, jansson %s, %s\n", yaml_get_version_string(),
           jansson_version_str(), OpenSSL_version(OPENSSL_VERSION));
    printf("features: epoll, SO_REUSEPORT, TLS, sd_notify, admin API, Prometheus metrics, "
           "access log\n");
#if defined(__SANITIZE_ADDRESS__)
    printf("sanitizers: address\n");
#endif
}

static unsigned cpu_count(void)
{
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof(set), &set) == 0 && CPU_COUNT(&set) > 0)
        return (unsigned)CPU_COUNT(&set);
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (unsigned)n : 1;
}

/* Each client needs a descriptor, and each busy one a backend connection too; we warn only when
 * the limit cannot even give every allowed client its own. */
static void raise_fd_limit(unsigned max_connections)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
        return;
    if (rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
        getrlimit(RLIMIT_NOFILE, &rl);
    }
    rlim_t want = (rlim_t)max_connections + 64;
    if (rl.rlim_cur < want)
        log_warn("file descriptor limit %llu is below max_connections %u; accepts will pause "
                 "when descriptors run out (raise it with ulimit -n or LimitNOFILE=)",
                 (unsigned long long)rl.rlim_cur, max_connections);
}

/* SO_REUSEPORT would let us share a port with another running fulcrum without noticing. */
static int check_listen_addresses(const struct conf *conf)
{
    int failed = 0;
    for (unsigned i = 0; i < conf->nlisteners; i++) {
        const struct conf_listener *l = &conf->listeners[i];
        if (net_bind_probe(&l->addr) < 0) {
            log_error("listener %s: cannot listen on %s: %s", l->name, l->bind, strerror(errno));
            failed = 1;
        }
    }
    return failed ? -1 : 0;
}

static unsigned workers_running(struct worker **workers, unsigned n)
{
    unsigned running = 0;
    for (unsigned i = 0; i < n; i++)
        running += !atomic_load(&workers[i]->exited);
    return running;
}

struct options {
    const char *config;
    bool test;
    unsigned threads;
    const char *log_level;
    struct conf *flags_conf;
};

static int parse_args(int argc, char **argv, struct options *o)
{
    enum {
        OPT_LISTEN = 256,
        OPT_SERVER,
        OPT_THREADS,
        OPT_LOG_LEVEL,
        OPT_CHECK,
        OPT_INTERVAL,
        OPT_ADMIN,
        OPT_ACCESS_LOG,
        OPT_TLS_CERT,
        OPT_TLS_KEY,
        OPT_BALANCE
    };
    static const struct option longopts[] = {
        {"config", required_argument, NULL, 'c'},
        {"test", no_argument, NULL, 't'},
        {"listen", required_argument, NULL, OPT_LISTEN},
        {"server", required_argument, NULL, OPT_SERVER},
        {"health-check", required_argument, NULL, OPT_CHECK},
        {"health-interval", required_argument, NULL, OPT_INTERVAL},
        {"admin", required_argument, NULL, OPT_ADMIN},
        {"access-log", required_argument, NULL, OPT_ACCESS_LOG},
        {"tls-cert", required_argument, NULL, OPT_TLS_CERT},
        {"tls-key", required_argument, NULL, OPT_TLS_KEY},
        {"balance", required_argument, NULL, OPT_BALANCE},
        {"threads", required_argument, NULL, OPT_THREADS},
        {"log-level", required_argument, NULL, OPT_LOG_LEVEL},
        {"version", no_argument, NULL, 'v'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0}};
    int c;
    char *err = NULL;

    while ((c = getopt_long(argc, argv, "c:tvh", longopts, NULL)) != -1) {
        switch (c) {
        case 'c':
            o->config = optarg;
            break;
        case 't':
            o->test = true;
            break;
        case 'v':
            version();
            exit(0);
        case 'h':
            usage(stdout);
            exit(0);
        case OPT_LISTEN:
        case OPT_SERVER:
        case OPT_CHECK:
        case OPT_INTERVAL:
        case OPT_ADMIN:
        case OPT_ACCESS_LOG:
        case OPT_TLS_CERT:
        case OPT_TLS_KEY:
        case OPT_BALANCE: {
            if (!o->flags_conf && !(o->flags_conf = conf_new())) {
                fprintf(stderr, "fulcrum: out of memory\n");
                return -1;
            }
            int rc = c == OPT_LISTEN   ? conf_add_listen_flag(o->flags_conf, optarg, &err)
                     : c == OPT_SERVER ? conf_add_server_flag(o->flags_conf, optarg, &err)
                     : c == OPT_CHECK  ? conf_set_health_check_flag(o->flags_conf, optarg, &err)
                     : c == OPT_INTERVAL
                         ? conf_set_health_interval_flag(o->flags_conf, optarg, &err)
                     : c == OPT_ADMIN   ? conf_set_admin_flag(o->flags_conf, optarg, &err)
                     : c == OPT_BALANCE ? conf_set_balance_flag(o->flags_conf, optarg, &err)
                     : c == OPT_ACCESS_LOG
                         ? conf_set_access_log_flag(o->flags_conf, optarg, &err)
                         : conf_set_tls_flag(o->flags_conf, c == OPT_TLS_KEY, optarg, &err);
            if (rc < 0) {
                fprintf(stderr, "fulcrum: %s\n", err ? err : "invalid argument");
                free(err);
                return -1;
            }
            break;
        }
        case OPT_THREADS: {
            char *end;
            long n = strtol(optarg, &end, 10);
            if (*optarg < '0' || *optarg > '9' || *end || n < 1 || n > 1024) {
                fprintf(stderr, "fulcrum: --threads %s: expected a number from 1 to 1024\n",
                        optarg);
                return -1;
            }
            o->threads = (unsigned)n;
            break;
        }
        case OPT_LOG_LEVEL:
            if (log_level_parse(optarg) < 0) {
                fprintf(stderr, "fulcrum: --log-level %s: expected error, warn, info or debug\n",
                        optarg);
                return -1;
            }
            o->log_level = optarg;
            break;
        default:
            fprintf(stderr, "Try 'fulcrum --help' for more information.\n");
            return -1;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "fulcrum: unexpected argument '%s'\nTry 'fulcrum --help'.\n", argv[optind]);
        return -1;
    }
    if (o->config && o->flags_conf) {
        fprintf(stderr, "fulcrum: use either -c FILE or --listen/--server, not both\n");
        return -1;
    }
    if (!o->config && !o->flags_conf) {
        fprintf(stderr, "fulcrum: nothing to do: give -c FILE, or --listen and --server\n"
                        "Try 'fulcrum --help' for more information.\n");
        return -1;
    }
    return 0;
}

static struct conf *load_conf(struct options *o)
{
    char *errors = NULL;
    struct conf *conf;
    if (o->config) {
        conf = conf_load_file(o->config, &errors);
    } else {
        conf = conf_finish(o->flags_conf, &errors) == 0 ? o->flags_conf : NULL;
        if (!conf)
            conf_free(o->flags_conf);
        o->flags_conf = NULL;
    }
    if (!conf) {
        fprintf(stderr, "%s%s", errors ? errors : "invalid configuration\n",
                errors && errors[strlen(errors) - 1] != '\n' ? "\n" : "");
        free(errors);
        return NULL;
    }
    if (o->threads)
        conf->threads = o->threads;
    if (o->log_level)
        conf->log_level = log_level_parse(o->log_level);
    return conf;
}

static void describe(const struct conf *conf, unsigned threads)
{
    for (unsigned i = 0; i < conf->nlisteners; i++) {
        const struct conf_listener *l = &conf->listeners[i];
        const char *mode = l->mode == CONF_MODE_TCP ? " (tcp)" : "";
        if (l->nroutes)
            log_info("listener %s on %s%s -> %u route%s, else %s%s", l->name, l->bind, mode,
                     l->nroutes, l->nroutes == 1 ? "" : "s", l->pool_name ? "pool " : "404",
                     l->pool_name ? l->pool_name : "");
        if (l->pool == CONF_NO_POOL)
            continue;
        const struct conf_pool *p = &conf->pools[l->pool];
        if (!l->nroutes)
            log_info("listener %s on %s%s -> pool %s (%u server%s, %s)", l->name, l->bind, mode,
                     p->name, p->nservers, p->nservers == 1 ? "" : "s",
                     conf_balance_name(p->balance));
    }
    log_info("fulcrum %s started with %u worker thread%s", FULCRUM_VERSION, threads,
             threads == 1 ? "" : "s");
}

int main(int argc, char **argv)
{
    struct options opts = {0};
    if (parse_args(argc, argv, &opts) < 0) {
        conf_free(opts.flags_conf);
        return 2;
    }
    struct conf *conf = load_conf(&opts);
    if (!conf)
        return 1;
    if (tls_global_init() < 0) {
        fprintf(stderr, "fulcrum: cannot initialise OpenSSL\n");
        conf_free(conf);
        return 1;
    }
    char *tls_errors = NULL;
    struct tls_set *tls = tls_set_new(conf, &tls_errors);
    if (!tls) {
        fprintf(stderr, "%s\n", tls_errors ? tls_errors : "out of memory");
        free(tls_errors);
        conf_free(conf);
        return 1;
    }
    if (opts.test) {
        printf("configuration OK\n");
        tls_set_free(tls);
        conf_free(conf);
        return 0;
    }
    log_max_level = conf->log_level;
    if (conf->error_log && log_open(conf->error_log) < 0) {
        fprintf(stderr, "fulcrum: error log %s: %s\n", conf->error_log, strerror(errno));
        tls_set_free(tls);
        conf_free(conf);
        return 1;
    }

    unsigned nthreads = conf->threads ? conf->threads : cpu_count();
    uint32_t shutdown_ms = conf->shutdown_timeout_ms;
    raise_fd_limit(conf->limits.max_connections);
    if (check_listen_addresses(conf) < 0) {
        tls_set_free(tls);
        conf_free(conf);
        return 1;
    }
    snapshot_set_workers(nthreads);
    struct snapshot *snap = snapshot_new(conf, tls, NULL, NULL);
    if (!snap) {
        log_error("out of memory");
        tls_set_free(tls);
        conf_free(conf);
        return 1;
    }

    /* Block the signals we handle before any thread exists, so every thread inherits the mask
     * and only sigtimedwait() below ever sees them. */
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGHUP);
    sigaddset(&sigs, SIGUSR1);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN);

    struct worker **workers = calloc(nthreads, sizeof(*workers));
    if (!workers) {
        log_error("out of memory");
        snapshot_unref(snap);
        return 1;
    }
    int status = 0;
    unsigned started = 0;
    for (unsigned i = 0; i < nthreads; i++) {
        workers[i] = worker_new(i, snap);
        if (!workers[i]) {
            status = 1;
            break;
        }
    }
    worker_set_all(workers, status ? 0 : nthreads, snap->conf->limits.max_connections);
    struct control_options copts = {.config_path = opts.config,
                                    .log_level_override =
                                        opts.log_level ? log_level_parse(opts.log_level) : -1,
                                    .threads = nthreads};
    if (status == 0 && accesslog_start(&snap->conf->access_log) < 0)
        status = 1;
    if (status == 0 && control_start(snap, workers, nthreads, &copts) < 0)
        status = 1;
    for (unsigned i = 0; status == 0 && i < nthreads; i++) {
        if (worker_start(workers[i]) < 0)
            status = 1;
        else
            started++;
    }
    if (status == 0) {
        describe(snap->conf, nthreads);
        notify_send("READY=1");
    }

    bool stopping = status != 0;
    for (unsigned i = 0; stopping && i < started; i++)
        worker_request_halt(workers[i]);
    while (!stopping) {
        siginfo_t info;
        int sig = sigwaitinfo(&sigs, &info);
        if (sig < 0)
            continue;
        if (sig == SIGTERM || sig == SIGINT) {
            log_info("%s received: stopping; in-flight requests have %u ms to finish",
                     sig == SIGTERM ? "SIGTERM" : "SIGINT", shutdown_ms);
            stopping = true;
        } else if (sig == SIGUSR1) {
            log_info("SIGUSR1 received: reopening the log files");
            log_reopen();
            accesslog_reopen();
        } else if (sig == SIGHUP) {
            log_info("SIGHUP received: reloading %s", opts.config ? opts.config : "(no file)");
            control_request_reload();
        }
    }
    if (status == 0) {
        notify_send("STOPPING=1");
        for (unsigned i = 0; i < started; i++)
            worker_request_stop(workers[i]);
        /* Wait for graceful completion, but let a second signal cut it short. */
        struct timespec slice = {0, 20 * 1000000L};
        for (uint32_t waited = 0; waited < shutdown_ms; waited += 20) {
            if (workers_running(workers, started) == 0)
                break;
            siginfo_t info;
            int sig = sigtimedwait(&sigs, &info, &slice);
            if (sig == SIGTERM || sig == SIGINT) {
                log_info("second stop signal: closing every connection now");
                break;
            }
        }
        if (workers_running(workers, started))
            log_warn("shutdown_timeout reached: closing the connections still open");
        for (unsigned i = 0; i < started; i++)
            worker_request_halt(workers[i]);
    }
    for (unsigned i = 0; i < started; i++)
        worker_join(workers[i]);
    control_stop();
    accesslog_stop(); /* after the workers: their last lines are queued */
    for (unsigned i = 0; i < nthreads; i++)
        worker_free(workers[i]);
    free(workers);
    snapshot_unref(snap);
    if (status == 0)
        log_info("stopped");
    return status;
}
