/*
 * dns.c - a pool's servers from DNS (see dns.h): one c-ares channel per source, driven by the
 * control thread's loop. dns_answer.c reads the replies; this file asks the questions, keeps
 * time, and decides what a round of answers means for the set.
 *
 * One resolution is a round:
 *
 *   round_timer --> start_round: A, AAAA (both for A+AAAA) or SRV query
 *                      |  SRV: targets without addresses in the additional section
 *                      |       -> an A and an AAAA follow-up query for each
 *                      v
 *                 every query answered (pending == 0), or the deadline (timeout) cancelled them
 *                      |
 *        good ---------+--------- failed (SERVFAIL, REFUSED, timeout, a malformed reply, ...)
 *   (NXDOMAIN and NODATA       |
 *    are good, and empty)      +-> health DEGRADED: the last good set is kept; retry after 1s,
 *          |                       2s, 4s ... up to `interval`
 *          |                       hold_timer: hold_on_error after the last good answer, the set
 *          |                       is emptied once (health FAILED), and retries go on
 *          v
 *   health OK; the set replaces the last one (fn is called only when it differs); the next
 *   round in min(interval, smallest TTL), never sooner than 1s
 *
 * c-ares and the loop. c-ares owns its sockets and tells us, through its socket-state callback,
 * which ones to watch for reading and writing. Each becomes a `struct dns_watch` registered with
 * the loop (edge-triggered, like every connection). An event runs service(), which asks
 * poll(2), with a zero timeout, which sockets are ready now and hands exactly those to
 * ares_process_fd(). The zero-timeout poll is what makes edge triggering safe here: c-ares reads
 * a TCP socket once per call and does not say when it saw EAGAIN, so readiness is asked again
 * after every call instead of being remembered. A socket that starts wanting to write may be
 * writable already, with no edge to come, so that arms service_timer too. c-ares's own
 * retransmissions run from ares_timer, armed at ares_timeout() after every call into c-ares.
 * (Timers rather than a deferred task: a stopped timer leaves the loop at once, so freeing a
 * source from any callback leaves nothing of it behind to run.)
 *
 * A released watch is freed only after the loop's batch (loop_bury()): an event of the same batch
 * may still point at one whose socket c-ares just closed (or whose source was just freed); its
 * handler is NULL meanwhile, so the loop ignores it.
 *
 * Everything here runs on the control thread; nothing on the request path waits for it.
 */
#include "discovery/dns.h"

#include <ares.h>
#include <arpa/inet.h>
#include <arpa/nameser.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "conf/conf.h"
#include "core/container.h"
#include "core/log.h"
#include "core/loop.h"
#include "discovery/dns_answer.h"

#define MIN_ROUND_MS   1000 /* never re-resolve sooner than this */
#define FIRST_RETRY_MS 1000 /* the first retry after a failure; doubles up to the interval */
#define ARES_TRIES     3    /* c-ares sends each query up to this many times per resolver */
#define SERVICE_PASSES 8    /* rounds of poll + ares_process_fd per service() */

/* One socket of c-ares, watched by the loop. */
struct dns_watch {
    struct loop_io io;      /* first: the loop's pointer is the watch's */
    struct dns_source *src; /* NULL once released */
    struct dns_watch *next; /* the source's watches */
    bool want_read, want_write;
    struct loop_grave grave; /* released: freed after the batch (see the header comment) */
};

/* One query in flight: what its reply is for. Freed by its callback. */
struct dns_query {
    struct dns_source *src;
    enum dns_rr_type type;
    int target; /* SRV follow-up: index in src->targets; -1: the round's main query */
};

struct dns_source {
    struct loop *loop;
    char *pool;
    char *name;  /* the name queried */
    char *label; /* "dns NAME": how log lines and members_reject() name the source */
    enum conf_dns_type type;
    unsigned port;
    uint32_t interval_ms, hold_ms, timeout_ms;
    unsigned max;
    discovery_update_fn *fn;
    void *arg;

    ares_channel channel;
    char resolvers[96]; /* for error texts: "127.0.0.1:5353", "10.0.0.2:53 and 1 more" */
    bool one_resolver;  /* the channel hands over SERVFAIL and REFUSED (start_channel) */
    struct dns_watch *watches;
    unsigned nwatches;
    struct pollfd *pollfds; /* service()'s, nwatches long at least */
    unsigned pollfds_cap;
    struct loop_timer service_timer; /* service() from the loop, outside c-ares's calls */
    struct loop_timer ares_timer;

    /* the round in flight */
    bool running;
    unsigned pending;    /* queries not answered yet */
    uint64_t started_ms; /* loop clock */
    bool failed;         /* some query of this round failed: the round is not an answer */
    char error[160];     /* why, when failed */
    struct dns_answer_ctx cx;
    struct member_set building;
    struct dns_srv_targets targets;
    struct loop_timer deadline_timer;

    /* across rounds */
    struct member_set current; /* the last set handed over (or the initial one) */
    struct member_log log;
    struct discovery_status status;
    uint64_t last_good_ms; /* loop clock of the last good answer (the start, before one) */
    uint32_t retry_ms;     /* the backoff after failures; 0 after a good answer */
    struct loop_timer round_timer;
    struct loop_timer hold_timer;
    bool closing; /* dns_source_free() is running: callbacks only clean up */
};

static uint64_t wall_clock_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* "5m", "30s", "1.5s", "250ms": durations in log lines and errors, written as in the config. */
static const char *duration_text(char *out, size_t size, uint64_t ms)
{
    if (ms >= 3600000 && ms % 3600000 == 0)
        snprintf(out, size, "%lluh", (unsigned long long)(ms / 3600000));
    else if (ms >= 60000 && ms % 60000 == 0)
        snprintf(out, size, "%llum", (unsigned long long)(ms / 60000));
    else if (ms >= 1000 && ms % 1000 == 0)
        snprintf(out, size, "%llus", (unsigned long long)(ms / 1000));
    else if (ms >= 1000)
        snprintf(out, size, "%.1fs", (double)ms / 1000.0);
    else
        snprintf(out, size, "%llums", (unsigned long long)ms);
    return out;
}

static const char *plural(unsigned n)
{
    return n == 1 ? "" : "s";
}

/* ---- c-ares's sockets on the loop ---- */

static void service(struct dns_source *src);

static void on_socket_event(struct loop *loop, struct loop_io *io)
{
    struct dns_watch *w = (struct dns_watch *)io;
    io->ready = 0; /* service() asks poll() instead */
    service(w->src);
}

static void bury_watch(struct loop_grave *grave)
{
    free(container_of(grave, struct dns_watch, grave));
}

/* Frees w once the batch is over: an event of it may still be pending in this one. */
static void watch_bury(struct loop *loop, struct dns_watch *w)
{
    w->io.handler = NULL;
    w->src = NULL;
    w->grave.bury = bury_watch;
    loop_bury(loop, &w->grave);
}

/* Stops watching *pp's socket (still open: c-ares closes it after telling us). */
static void watch_release(struct dns_source *src, struct dns_watch **pp)
{
    struct dns_watch *w = *pp;
    *pp = w->next;
    src->nwatches--;
    loop_del(src->loop, &w->io);
    watch_bury(src->loop, w);
}

/* c-ares's socket-state callback: fd opened, closed, or wants other directions. */
static void on_socket_state(void *data, ares_socket_t fd, int readable, int writable)
{
    struct dns_source *src = data;
    struct dns_watch **pp = &src->watches;
    while (*pp && (*pp)->io.fd != fd)
        pp = &(*pp)->next;
    if (!readable && !writable) {
        if (*pp)
            watch_release(src, pp);
        return;
    }
    struct dns_watch *w = *pp;
    if (!w) {
        if (src->nwatches + 1 > src->pollfds_cap) {
            unsigned cap = src->pollfds_cap ? src->pollfds_cap * 2 : 4;
            struct pollfd *grown = realloc(src->pollfds, cap * sizeof(*grown));
            if (!grown) {
                /* unwatched, its queries time out and the round fails: said, not hidden */
                log_error("pool %s: %s: out of memory watching a resolver socket", src->pool,
                          src->label);
                return;
            }
            src->pollfds = grown;
            src->pollfds_cap = cap;
        }
        w = calloc(1, sizeof(*w));
        if (!w) {
            log_error("pool %s: %s: out of memory watching a resolver socket", src->pool,
                      src->label);
            return;
        }
        w->io.fd = fd;
        w->io.handler = on_socket_event;
        w->src = src;
        if (loop_add(src->loop, &w->io, LOOP_EDGE_RW) < 0) {
            log_error("pool %s: %s: cannot watch a resolver socket: %s", src->pool, src->label,
                      strerror(errno));
            watch_bury(src->loop, w);
            return;
        }
        w->next = src->watches;
        src->watches = w;
        src->nwatches++;
    }
    /* a socket that starts wanting to write may be writable already, with no edge to come:
     * look soon (not from here: this runs inside c-ares) */
    if (writable && !w->want_write)
        loop_timer_set(src->loop, &src->service_timer, 0);
    w->want_read = readable;
    w->want_write = writable;
}

/* Arms ares_timer for c-ares's next retransmission or timeout; call after each c-ares call. */
static void ares_timer_update(struct dns_source *src)
{
    struct timeval tv;
    if (src->closing || !ares_timeout(src->channel, NULL, &tv)) {
        loop_timer_stop(src->loop, &src->ares_timer);
        return;
    }
    uint64_t ms = (uint64_t)tv.tv_sec * 1000u + ((uint64_t)tv.tv_usec + 999u) / 1000u;
    loop_timer_set(src->loop, &src->ares_timer, ms);
}

static void on_ares_timer(struct loop *loop, struct loop_timer *t)
{
    struct dns_source *src = container_of(t, struct dns_source, ares_timer);
    ares_process_fd(src->channel, ARES_SOCKET_BAD, ARES_SOCKET_BAD);
    ares_timer_update(src);
}

/*
 * Hands c-ares the sockets that are ready now, until none is, or SERVICE_PASSES (then it comes
 * back next iteration). The update callback may run from here; it must not free the source.
 */
static void service(struct dns_source *src)
{
    int pass;
    for (pass = 0; pass < SERVICE_PASSES; pass++) {
        unsigned n = 0;
        for (struct dns_watch *w = src->watches; w && n < src->pollfds_cap; w = w->next) {
            src->pollfds[n].fd = w->io.fd;
            src->pollfds[n].events =
                (short)((w->want_read ? POLLIN : 0) | (w->want_write ? POLLOUT : 0));
            src->pollfds[n].revents = 0;
            n++;
        }
        if (n == 0)
            break;
        int ready = poll(src->pollfds, n, 0);
        if (ready < 0 && errno == EINTR)
            continue;
        if (ready <= 0)
            break;
        /* c-ares may open and close sockets meanwhile: work from this copy of the fds (which a
         * new socket may move, by realloc, but never shortens) */
        for (unsigned i = 0; i < n; i++) {
            short ev = src->pollfds[i].events, got = src->pollfds[i].revents;
            if (!got)
                continue;
            bool broken = got & (POLLERR | POLLHUP | POLLNVAL);
            ares_socket_t fd = src->pollfds[i].fd;
            ares_socket_t rfd = (ev & POLLIN) && (got & POLLIN || broken) ? fd : ARES_SOCKET_BAD;
            ares_socket_t wfd = (ev & POLLOUT) && (got & POLLOUT || broken) ? fd : ARES_SOCKET_BAD;
            ares_process_fd(src->channel, rfd, wfd);
        }
    }
    if (pass == SERVICE_PASSES) /* still busy: let the rest of the loop run first */
        loop_timer_set(src->loop, &src->service_timer, 1);
    ares_timer_update(src);
}

static void on_service_timer(struct loop *loop, struct loop_timer *t)
{
    service(container_of(t, struct dns_source, service_timer));
}

/* ---- rounds ---- */

static void round_failed(struct dns_source *src, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* The first failure of a round is the one reported. */
static void round_failed(struct dns_source *src, const char *fmt, ...)
{
    if (src->failed)
        return;
    src->failed = true;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(src->error, sizeof(src->error), fmt, ap);
    va_end(ap);
}

/* Why a query failed, for the round's error. */
static void query_failed(struct dns_source *src, int status)
{
    char took[32];
    switch (status) {
    case ARES_ESERVFAIL:
        round_failed(src, "SERVFAIL from %s", src->resolvers);
        break;
    case ARES_EREFUSED:
        round_failed(src, "REFUSED from %s", src->resolvers);
        break;
    case ARES_ENOTIMP:
        round_failed(src, "NOTIMP from %s", src->resolvers);
        break;
    case ARES_EFORMERR:
        round_failed(src, "FORMERR from %s", src->resolvers);
        break;
    case ARES_EBADRESP:
        round_failed(src, "malformed reply from %s", src->resolvers);
        break;
    case ARES_ECONNREFUSED:
        if (src->one_resolver)
            round_failed(src, "connection refused by %s", src->resolvers);
        else
            round_failed(src, "no resolver answered (%s: SERVFAIL, REFUSED or unreachable)",
                         src->resolvers);
        break;
    case ARES_ETIMEOUT:
    case ARES_ECANCELLED: /* the deadline cancelled it (and said so first) */
        round_failed(src, "timeout after %s",
                     duration_text(took, sizeof(took), loop_now_ms(src->loop) - src->started_ms));
        break;
    default:
        round_failed(src, "%s (resolver %s)", ares_strerror(status), src->resolvers);
        break;
    }
}

static void finish_round(struct dns_source *src);
static void send_query(struct dns_source *src, const char *name, enum dns_rr_type type, int target);

/* Follow-up queries for the SRV targets whose addresses the answer did not carry. */
static void resolve_targets(struct dns_source *src)
{
    for (unsigned i = 0; i < src->targets.n && !src->failed; i++) {
        if (src->targets.v[i].has_addr)
            continue;
        send_query(src, src->targets.v[i].name, DNS_RR_A, (int)i);
        send_query(src, src->targets.v[i].name, DNS_RR_AAAA, (int)i);
    }
}

/* A reply (status SUCCESS) for q, read into the round. */
static void read_reply(struct dns_source *src, const struct dns_query *q,
                       const unsigned char *reply, size_t len)
{
    const char *why = "?";
    int rc;
    if (q->target >= 0) {
        rc = dns_answer_target(&src->cx, reply, len, q->type, &src->targets.v[q->target], &why);
    } else if (q->type == DNS_RR_SRV) {
        rc = dns_answer_srv(&src->cx, reply, len, src->max, &src->targets, &why);
        if (rc == 0)
            resolve_targets(src);
    } else {
        rc = dns_answer_addresses(&src->cx, reply, len, q->type, src->name, src->port,
                                  &src->building, &why);
    }
    if (rc < 0)
        round_failed(src, "malformed reply from %s: %s", src->resolvers, why);
}

static void on_reply(void *arg, int status, int timeouts, unsigned char *reply, int len)
{
    struct dns_query *q = arg;
    struct dns_source *src = q->src;
    if (src->closing) { /* ares_destroy(): nothing to decide any more */
        free(q);
        return;
    }
    if (status == ARES_SUCCESS && reply && len > 0)
        read_reply(src, q, reply, (size_t)len);
    else if (status == ARES_ENOTFOUND || status == ARES_ENODATA)
        ; /* NXDOMAIN, or no record of that type: nothing to add, and not a failure */
    else
        query_failed(src, status);
    free(q);
    if (--src->pending == 0)
        finish_round(src);
}

/* Sends one query of the round. The callback may run before ares_query() returns. */
static void send_query(struct dns_source *src, const char *name, enum dns_rr_type type, int target)
{
    struct dns_query *q = malloc(sizeof(*q));
    if (!q) {
        round_failed(src, "out of memory");
        return;
    }
    q->src = src;
    q->type = type;
    q->target = target;
    src->pending++;
    ares_query(src->channel, name, ns_c_in, (int)type, on_reply, q);
}

static void start_round(struct dns_source *src)
{
    src->running = true;
    src->failed = false;
    src->error[0] = '\0';
    src->started_ms = loop_now_ms(src->loop);
    members_clear(&src->building);
    src->targets.n = 0;
    dns_answer_ctx_init(&src->cx, &src->log, src->pool, src->label);
    loop_timer_set(src->loop, &src->deadline_timer, src->timeout_ms);
    /* held while sending, so that a query answered at once cannot end the round early */
    src->pending++;
    switch (src->type) {
    case CONF_DNS_SRV:
        send_query(src, src->name, DNS_RR_SRV, -1);
        break;
    case CONF_DNS_A:
        send_query(src, src->name, DNS_RR_A, -1);
        break;
    case CONF_DNS_AAAA:
        send_query(src, src->name, DNS_RR_AAAA, -1);
        break;
    case CONF_DNS_A_AAAA:
        send_query(src, src->name, DNS_RR_A, -1);
        send_query(src, src->name, DNS_RR_AAAA, -1);
        break;
    }
    if (--src->pending == 0)
        finish_round(src);
    ares_timer_update(src);
}

static void on_round_timer(struct loop *loop, struct loop_timer *t)
{
    struct dns_source *src = container_of(t, struct dns_source, round_timer);
    if (!src->running)
        start_round(src);
}

/* The round took too long: cancel what is left; the callbacks end the round as failed. */
static void on_deadline(struct loop *loop, struct loop_timer *t)
{
    struct dns_source *src = container_of(t, struct dns_source, deadline_timer);
    char limit[32];
    round_failed(src, "timeout after %s", duration_text(limit, sizeof(limit), src->timeout_ms));
    ares_cancel(src->channel);
    ares_timer_update(src);
}

/* Hands the current set over, as a change. */
static void publish(struct dns_source *src)
{
    src->status.changes++;
    src->status.last_change_unix_ms = wall_clock_ms();
    src->status.members = src->current.n;
    src->fn(src->arg, &src->current);
}

/* hold_on_error ran out without a good answer: the set is emptied, once. */
static void give_up(struct dns_source *src)
{
    char hold[32];
    loop_timer_stop(src->loop, &src->hold_timer);
    src->status.health = DISCOVERY_FAILED;
    log_warn("pool %s: %s: resolver failing for %s (%s), dropping %u server%s", src->pool,
             src->label, duration_text(hold, sizeof(hold), src->hold_ms), src->status.last_error,
             src->current.n, plural(src->current.n));
    if (src->current.n) {
        members_clear(&src->current);
        publish(src);
    }
}

static void on_hold_timer(struct loop *loop, struct loop_timer *t)
{
    struct dns_source *src = container_of(t, struct dns_source, hold_timer);
    if (src->status.health == DISCOVERY_DEGRADED)
        give_up(src);
}

static void good_answer(struct dns_source *src)
{
    enum discovery_health was = src->status.health;
    src->status.health = DISCOVERY_OK;
    src->status.answers++;
    src->status.last_ok_unix_ms = wall_clock_ms();
    src->last_good_ms = loop_now_ms(src->loop);
    src->retry_ms = 0;
    loop_timer_stop(src->loop, &src->hold_timer);
    if (src->type == CONF_DNS_SRV)
        dns_answer_srv_members(&src->cx, &src->targets, &src->building);
    dns_answer_report_full(&src->cx);
    bool changed = !members_equal(&src->current, &src->building);
    if (was == DISCOVERY_DEGRADED || was == DISCOVERY_FAILED)
        log_info("pool %s: %s: answering again (%u server%s)", src->pool, src->label,
                 src->building.n, plural(src->building.n));
    else if (was == DISCOVERY_STARTING)
        log_info("pool %s: %s: %u server%s", src->pool, src->label, src->building.n,
                 plural(src->building.n));
    if (changed) {
        struct member_set swap = src->current;
        src->current = src->building;
        src->building = swap;
        log_debug("pool %s: %s: now %u server%s", src->pool, src->label, src->current.n,
                  plural(src->current.n));
        publish(src);
    }
    src->status.members = src->current.n;
}

static void failed_answer(struct dns_source *src)
{
    src->status.errors++;
    snprintf(src->status.last_error, sizeof(src->status.last_error), "%s", src->error);
    enum discovery_health was = src->status.health;
    if (was == DISCOVERY_DEGRADED || was == DISCOVERY_FAILED)
        return; /* already said; the hold timer runs */
    uint64_t give_up_at = src->last_good_ms + src->hold_ms;
    if (give_up_at <= loop_now_ms(src->loop)) {
        give_up(src);
        return;
    }
    char hold[32];
    src->status.health = DISCOVERY_DEGRADED;
    log_warn("pool %s: %s: resolver failing (%s), keeping %u server%s for %s", src->pool,
             src->label, src->error, src->current.n, plural(src->current.n),
             duration_text(hold, sizeof(hold), src->hold_ms));
    loop_timer_set_at(src->loop, &src->hold_timer, give_up_at);
}

/* Every query of the round answered: what the round means, and when the next one runs. */
static void finish_round(struct dns_source *src)
{
    src->running = false;
    loop_timer_stop(src->loop, &src->deadline_timer);
    uint64_t next_ms;
    if (src->failed) {
        failed_answer(src);
        src->retry_ms = src->retry_ms ? src->retry_ms * 2 : FIRST_RETRY_MS;
        if (src->retry_ms > src->interval_ms)
            src->retry_ms = src->interval_ms;
        next_ms = src->retry_ms;
    } else {
        good_answer(src);
        next_ms = src->interval_ms;
        if (src->cx.min_ttl != UINT32_MAX && (uint64_t)src->cx.min_ttl * 1000u < next_ms)
            next_ms = (uint64_t)src->cx.min_ttl * 1000u;
    }
    members_log_answer_done(&src->log);
    if (next_ms < MIN_ROUND_MS)
        next_ms = MIN_ROUND_MS;
    loop_timer_set(src->loop, &src->round_timer, next_ms);
}

/* ---- the source ---- */

/* "127.0.0.1:5353", "10.0.0.1:53 and 2 more": the resolvers in use, for error texts. Returns
 * how many there are. */
static unsigned describe_resolvers(struct dns_source *src)
{
    struct ares_addr_port_node *servers = NULL;
    snprintf(src->resolvers, sizeof(src->resolvers), "the system's resolvers");
    if (ares_get_servers_ports(src->channel, &servers) != ARES_SUCCESS || !servers)
        return 0;
    struct net_addr first;
    memset(&first, 0, sizeof(first));
    if (servers->family == AF_INET) {
        struct sockaddr_in *sin = (struct sockaddr_in *)&first.ss;
        sin->sin_family = AF_INET;
        sin->sin_port = htons((uint16_t)(servers->udp_port ? servers->udp_port : 53));
        memcpy(&sin->sin_addr, &servers->addr.addr4, sizeof(sin->sin_addr));
    } else {
        struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&first.ss;
        sin6->sin6_family = AF_INET6;
        sin6->sin6_port = htons((uint16_t)(servers->udp_port ? servers->udp_port : 53));
        memcpy(&sin6->sin6_addr, &servers->addr.addr6, sizeof(sin6->sin6_addr));
    }
    char text[NET_ADDR_TEXT];
    net_addr_format((const struct sockaddr *)&first.ss, text, sizeof(text));
    unsigned more = 0;
    for (struct ares_addr_port_node *s = servers->next; s; s = s->next)
        more++;
    if (more)
        snprintf(src->resolvers, sizeof(src->resolvers), "%s and %u more", text, more);
    else
        snprintf(src->resolvers, sizeof(src->resolvers), "%s", text);
    ares_free_data(servers);
    return 1 + more;
}

/* The configured resolvers, in place of /etc/resolv.conf's. */
static int use_resolvers(struct dns_source *src, const struct conf_dns_discovery *c)
{
    struct ares_addr_port_node *nodes = calloc(c->nresolvers, sizeof(*nodes));
    if (!nodes)
        return ARES_ENOMEM;
    for (unsigned i = 0; i < c->nresolvers; i++) {
        const struct sockaddr_storage *ss = &c->resolvers[i].ss;
        struct ares_addr_port_node *n = &nodes[i];
        n->next = i + 1 < c->nresolvers ? &nodes[i + 1] : NULL;
        n->family = ss->ss_family;
        if (ss->ss_family == AF_INET) {
            const struct sockaddr_in *sin = (const struct sockaddr_in *)ss;
            memcpy(&n->addr.addr4, &sin->sin_addr, sizeof(n->addr.addr4));
            n->udp_port = n->tcp_port = ntohs(sin->sin_port);
        } else {
            const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)ss;
            memcpy(&n->addr.addr6, &sin6->sin6_addr, sizeof(n->addr.addr6));
            n->udp_port = n->tcp_port = ntohs(sin6->sin6_port);
        }
    }
    int rc = ares_set_servers_ports(src->channel, nodes); /* copies the list */
    free(nodes);
    return rc;
}

/* A channel with our options, the configured resolvers in place of the system's. */
static int open_channel(struct dns_source *src, const struct conf_dns_discovery *c, int flags)
{
    /* c-ares retransmits after a quarter of the timeout, then twice as late each time; the
     * deadline timer ends the whole resolution at timeout, whatever c-ares still plans */
    struct ares_options o;
    memset(&o, 0, sizeof(o));
    o.flags = flags;
    o.sock_state_cb = on_socket_state;
    o.sock_state_cb_data = src;
    o.timeout = (int)(src->timeout_ms / 4 > 50 ? src->timeout_ms / 4 : 50);
    o.tries = ARES_TRIES;
    int rc = ares_init_options(&src->channel, &o,
                               ARES_OPT_FLAGS | ARES_OPT_SOCK_STATE_CB | ARES_OPT_TIMEOUTMS |
                                   ARES_OPT_TRIES);
    if (rc != ARES_SUCCESS) {
        src->channel = NULL;
        return rc;
    }
    if (c->nresolvers && (rc = use_resolvers(src, c)) != ARES_SUCCESS) {
        ares_destroy(src->channel);
        src->channel = NULL;
    }
    return rc;
}

/*
 * With several resolvers, c-ares tries the next one after a SERVFAIL, REFUSED or NOTIMP, and
 * reports only that none answered (as ARES_ECONNREFUSED, in 1.18). With one there is no next to
 * try, so the channel hands such replies over instead (ARES_FLAG_NOCHECKRESP) and the error
 * says which it was. /etc/resolv.conf's count is known once a channel has read it: a second
 * channel replaces the first when it lists one resolver.
 */
static int start_channel(struct dns_source *src, const struct conf_dns_discovery *c)
{
    static bool library_ready; /* the control thread is the only caller */
    int rc;
    if (!library_ready) {
        if ((rc = ares_library_init(ARES_LIB_INIT_ALL)) != ARES_SUCCESS)
            return rc;
        library_ready = true;
    }
    if ((rc = open_channel(src, c, 0)) != ARES_SUCCESS)
        return rc;
    src->one_resolver = describe_resolvers(src) == 1;
    if (src->one_resolver) {
        ares_destroy(src->channel);
        rc = open_channel(src, c, ARES_FLAG_NOCHECKRESP);
    }
    return rc;
}

struct dns_source *dns_source_new(struct loop *loop, const char *pool,
                                  const struct conf_dns_discovery *c, unsigned max,
                                  const struct member_set *initial, discovery_update_fn *fn,
                                  void *arg)
{
    struct dns_source *src = calloc(1, sizeof(*src));
    if (!src) {
        log_error("pool %s: dns %s: out of memory", pool, c->name);
        return NULL;
    }
    src->loop = loop;
    src->type = c->type;
    src->port = c->port;
    src->interval_ms = c->interval_ms > MIN_ROUND_MS ? c->interval_ms : MIN_ROUND_MS;
    src->hold_ms = c->hold_on_error_ms;
    src->timeout_ms = c->timeout_ms ? c->timeout_ms : 2000;
    src->max = max;
    src->fn = fn;
    src->arg = arg;
    src->service_timer.fn = on_service_timer;
    src->ares_timer.fn = on_ares_timer;
    src->deadline_timer.fn = on_deadline;
    src->round_timer.fn = on_round_timer;
    src->hold_timer.fn = on_hold_timer;
    members_init(&src->current, max);
    members_init(&src->building, max);
    src->pool = strdup(pool);
    src->name = strdup(c->name);
    if (!src->pool || !src->name || asprintf(&src->label, "dns %s", c->name) < 0) {
        src->label = NULL;
        log_error("pool %s: dns %s: out of memory", pool, c->name);
        dns_source_free(src);
        return NULL;
    }
    if (initial && members_copy(&src->current, initial) < 0) {
        log_error("pool %s: %s: out of memory", pool, src->label);
        dns_source_free(src);
        return NULL;
    }
    src->status.members = src->current.n;
    int rc = start_channel(src, c);
    if (rc != ARES_SUCCESS) {
        log_error("pool %s: %s: cannot start the resolver: %s", pool, src->label,
                  ares_strerror(rc));
        dns_source_free(src);
        return NULL;
    }
    src->last_good_ms = loop_now_ms(loop); /* hold_on_error counts from here before an answer */
    loop_timer_set(loop, &src->round_timer, 0); /* the first query at once, from the loop */
    return src;
}

void dns_source_free(struct dns_source *src)
{
    if (!src)
        return;
    src->closing = true;
    loop_timer_stop(src->loop, &src->round_timer);
    loop_timer_stop(src->loop, &src->deadline_timer);
    loop_timer_stop(src->loop, &src->hold_timer);
    loop_timer_stop(src->loop, &src->ares_timer);
    loop_timer_stop(src->loop, &src->service_timer);
    /* the queries' callbacks run with ARES_EDESTRUCTION and only free themselves; the sockets'
     * callbacks release their watches */
    if (src->channel)
        ares_destroy(src->channel);
    while (src->watches) /* any socket c-ares closed without telling */
        watch_release(src, &src->watches);
    free(src->pollfds);
    members_free(&src->current);
    members_free(&src->building);
    dns_srv_targets_free(&src->targets);
    members_log_free(&src->log);
    free(src->pool);
    free(src->name);
    free(src->label);
    free(src);
}

const struct discovery_status *dns_source_status(const struct dns_source *src)
{
    return &src->status;
}
