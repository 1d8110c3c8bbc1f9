/*
 * preamble.c - a client connection's PROXY protocol header and TLS handshake (preamble.h),
 * shared by HTTP sessions (proxy.c) and TCP mode sessions (tcp.c).
 */
#include "proxy/preamble.h"

#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "core/log.h"
#include "core/net.h"
#include "core/proxy_proto.h"
#include "core/tls_conn.h"
#include "lb/snapshot.h"
#include "proxy/stats.h"
#include "tls/server.h"

bool preamble_trusted(const struct conf_proxy_accept *pp, const struct sockaddr *sa)
{
    for (unsigned i = 0; i < pp->ntrusted; i++)
        if (net_cidr_match(&pp->trusted[i], sa))
            return true;
    return false;
}

enum preamble_status preamble_proxy_header(struct conn *c, union preamble_peer *peer,
                                           union preamble_peer *dst, const char *listener)
{
    char header[PP_MAX];
    size_t got;
    enum conn_status r = conn_peek(c, header, sizeof(header), &got);
    if (r == CONN_BLOCKED)
        return PREAMBLE_WAIT;
    if (r != CONN_DONE)
        return PREAMBLE_CLOSE;
    struct pp_result pp;
    char from[NET_ADDR_TEXT];
    switch (pp_parse(header, got, &pp)) {
    case PP_AGAIN:
        c->io.ready &= ~LOOP_READABLE; /* all there is: the rest comes with a new event */
        return PREAMBLE_WAIT;
    case PP_ERROR:
        net_addr_format(&peer->sa, from, sizeof(from));
        log_warn("listener %s: PROXY protocol header from %s refused: %s", listener, from,
                 pp.error);
        return PREAMBLE_REFUSED;
    default:
        break;
    }
    if (conn_read(c, header, pp.header_len, &got) != CONN_DONE || got != pp.header_len)
        return PREAMBLE_REFUSED;
    if (!pp.local) {
        memcpy(peer, &pp.src, pp.src_len < sizeof(*peer) ? pp.src_len : sizeof(*peer));
        if (dst)
            memcpy(dst, &pp.dst, pp.dst_len < sizeof(*dst) ? pp.dst_len : sizeof(*dst));
    }
    return PREAMBLE_DONE;
}

int preamble_start_tls(struct conn *c, const struct tls_server *tls, loop_io_fn handler)
{
    struct ssl_st *ssl = tls_server_accept(tls);
    uint32_t ready = c->io.ready;
    if (!ssl || conn_init_tls(c, c->io.fd, handler, ssl) < 0) {
        log_error("TLS: cannot set up a connection: out of memory");
        if (ssl)
            conn_close(c, false); /* frees ssl */
        return -1;
    }
    c->io.ready = ready;
    return 0;
}

enum preamble_status preamble_handshake(struct conn *c, struct stats *st)
{
    const char *why = "other";
    enum conn_status r = conn_handshake(c, &why);
    if (r == CONN_BLOCKED)
        return PREAMBLE_WAIT;
    if (r != CONN_DONE) {
        stats_add(&st->tls_failures[stats_tls_failure_index(why)], 1);
        log_debug("TLS handshake failed: %s", why);
        if (strcmp(why, "http_request") == 0)
            conn_tls_refuse_plain_http(c);
        return PREAMBLE_CLOSE;
    }
    stats_add(&st->tls_handshakes[tls_session_resumed(c->ssl)], 1);
    stats_add(&st->tls_versions[tls_is_v13(c->ssl)], 1);
    return PREAMBLE_DONE;
}

const struct sockaddr *preamble_destination(const struct conn *c, union preamble_peer *dst)
{
    if (dst->sa.sa_family == AF_UNSPEC) {
        socklen_t len = sizeof(*dst);
        if (getsockname(c->io.fd, &dst->sa, &len) < 0) {
            log_debug("getsockname: %s", strerror(errno));
            memset(dst, 0, sizeof(*dst));
            return NULL;
        }
    }
    return &dst->sa;
}

int preamble_accept(struct conn *c, int fd, const struct snapshot_listener *sl,
                    const struct sockaddr *peer, loop_io_fn handler)
{
    bool proxy_header = sl->conf->proxy_protocol.accept;
    if (proxy_header && !preamble_trusted(&sl->conf->proxy_protocol, peer)) {
        log_debug("listener %s: connection from an address not trusted to send a PROXY header",
                  sl->conf->name);
        close(fd);
        return -1;
    }
    if (!sl->tls || proxy_header) { /* over TLS, the header comes before the handshake */
        conn_init_tcp(c, fd, handler);
        return 0;
    }
    struct ssl_st *ssl = tls_server_accept(sl->tls);
    if (!ssl || conn_init_tls(c, fd, handler, ssl) < 0) {
        log_error("TLS: cannot set up a connection: out of memory");
        if (ssl)
            conn_close(c, false); /* frees ssl, closes fd */
        else
            close(fd);
        return -1;
    }
    return 0;
}
