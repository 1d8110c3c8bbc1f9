/*
 * tls_conn.c - the TLS transport (tls_conn.h): OpenSSL calls mapped onto the conn_ops contract,
 * one attempt per call answered like the system call it stands for.
 *
 * Readiness. Whenever OpenSSL holds bytes it took from the socket but nobody read yet, the
 * connection is marked readable: the socket has no more to say about them, so no event would.
 *
 * The socket. OpenSSL reads and writes it through a BIO of ours (socket_bio), which is a plain
 * recv()/send() that also notes whether the last read drained the socket (fewer bytes than
 * asked). With that, a read that has what it needs stops without one more recv() that could
 * only answer EAGAIN: as for TCP, the short count tells the caller the socket is empty.
 *
 * Errors. OpenSSL keeps a per-thread error queue that must be empty before each call for
 * SSL_get_error() to be right, so every path that leaves something there clears it. A peer that
 * closes without close_notify reads as end of stream (SSL_OP_IGNORE_UNEXPECTED_EOF is set on
 * every context, tls/): HTTP's own framing tells a cut-short message from a complete one.
 */
#include "core/tls_conn.h"

#include <errno.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <pthread.h>
#include <openssl/ssl.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/net.h"

/* Multi-buffer writes are gathered into one record of at most this size. */
#define GATHER_MAX 16384

/* Maps the outcome of a failed call to the errno of a system call: EAGAIN to wait, 0 (the
 * return value) for end of stream, or an error. */
static ssize_t failed(struct conn *c, int ret)
{
    int err = SSL_get_error(c->ssl, ret);
    switch (err) {
    case SSL_ERROR_WANT_READ:
    case SSL_ERROR_WANT_WRITE:
        errno = EAGAIN;
        return -1;
    case SSL_ERROR_ZERO_RETURN:
        return 0;
    case SSL_ERROR_SYSCALL:
        ERR_clear_error();
        if (errno == 0)
            errno = ECONNRESET;
        return -1;
    default:
        ERR_clear_error();
        errno = EPROTO;
        return -1;
    }
}

static ssize_t tls_recv(struct conn *c, void *buf, size_t len)
{
    size_t total = 0;
    while (total < len) {
        size_t n;
        int ret = SSL_read_ex(c->ssl, (char *)buf + total, len - total, &n);
        if (ret > 0) {
            total += n;
            /* Nothing decrypted or buffered is left, and the socket gave less than asked: it
             * is empty, and the caller can tell from the short count. */
            if (c->drained && !SSL_has_pending(c->ssl))
                break;
            continue;
        }
        if (total) {
            /* Hand over what arrived; a failure shows again on the next call, as OpenSSL keeps
             * the connection's state. */
            if (SSL_get_error(c->ssl, ret) != SSL_ERROR_WANT_READ)
                ERR_clear_error();
            break;
        }
        return failed(c, ret);
    }
    return (ssize_t)total;
}

static ssize_t tls_peek(struct conn *c, void *buf, size_t len)
{
    size_t n;
    int ret = SSL_peek_ex(c->ssl, buf, len, &n);
    /* Peeking may move bytes from the socket into OpenSSL's buffer: a read must still come. */
    if (SSL_has_pending(c->ssl))
        c->io.ready |= LOOP_READABLE;
    return ret > 0 ? (ssize_t)n : failed(c, ret);
}

/* Writes records until len bytes went or the socket is full (a short count). A write that blocks
 * midway leaves OpenSSL holding an encrypted record; the caller's next call starts at the same
 * byte with at least as many bytes, which is what OpenSSL needs to finish it. */
static ssize_t tls_send(struct conn *c, const char *p, size_t len)
{
    size_t total = 0;
    while (total < len) {
        size_t n;
        int ret = SSL_write_ex(c->ssl, p + total, len - total, &n);
        if (ret > 0) {
            total += n;
            continue;
        }
        if (total) {
            if (SSL_get_error(c->ssl, ret) != SSL_ERROR_WANT_WRITE)
                ERR_clear_error();
            break;
        }
        ssize_t r = failed(c, ret);
        if (r == 0) { /* the peer said close_notify: writing is over */
            errno = EPIPE;
            r = -1;
        }
        return r;
    }
    return (ssize_t)total;
}

static ssize_t tls_sendv(struct conn *c, const struct iovec *iov, int iovcnt)
{
    if (iovcnt == 1)
        return tls_send(c, iov[0].iov_base, iov[0].iov_len);
    /* One record for several small pieces (a head and the start of a body) rather than one
     * record each. The same bytes are gathered again if the caller has to retry. */
    static _Thread_local char gather[GATHER_MAX];
    size_t n = 0;
    for (int i = 0; i < iovcnt && n < sizeof(gather); i++) {
        size_t take = iov[i].iov_len < sizeof(gather) - n ? iov[i].iov_len : sizeof(gather) - n;
        memcpy(gather + n, iov[i].iov_base, take);
        n += take;
    }
    return tls_send(c, gather, n);
}

static int tls_shutdown(struct conn *c)
{
    if (SSL_is_init_finished(c->ssl) && SSL_shutdown(c->ssl) < 0)
        ERR_clear_error(); /* close_notify could not go out now; the FIN still does */
    return shutdown(c->io.fd, SHUT_WR);
}

static void tls_close(struct conn *c, bool reset)
{
    if (!reset && SSL_is_init_finished(c->ssl) && SSL_shutdown(c->ssl) < 0)
        ERR_clear_error();
    SSL_free(c->ssl);
    c->ssl = NULL;
    if (reset)
        net_close_reset(c->io.fd);
    else
        close(c->io.fd);
}

const struct conn_ops conn_tls_ops = {
    .name = "tls",
    .recv = tls_recv,
    .peek = tls_peek,
    .sendv = tls_sendv,
    .shutdown = tls_shutdown,
    .close = tls_close,
};

/* ---- the socket under OpenSSL ---- */

static int bio_read(BIO *b, char *buf, int len)
{
    struct conn *c = BIO_get_data(b);
    BIO_clear_retry_flags(b);
    ssize_t n;
    do
        n = recv(c->io.fd, buf, (size_t)len, 0);
    while (n < 0 && errno == EINTR);
    if (n < 0) {
        c->drained = true;
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            BIO_set_retry_read(b);
        return -1;
    }
    c->drained = n < len;
    return (int)n;
}

static int bio_write(BIO *b, const char *buf, int len)
{
    struct conn *c = BIO_get_data(b);
    BIO_clear_retry_flags(b);
    ssize_t n;
    do
        n = send(c->io.fd, buf, (size_t)len, MSG_NOSIGNAL);
    while (n < 0 && errno == EINTR);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
        BIO_set_retry_write(b);
    return (int)n;
}

static long bio_ctrl(BIO *b, int cmd, long num, void *ptr)
{
    return cmd == BIO_CTRL_FLUSH; /* writes go straight to the socket: nothing to flush */
}

static BIO_METHOD *socket_bio;
static pthread_once_t socket_bio_once = PTHREAD_ONCE_INIT;

static void make_socket_bio(void)
{
    BIO_METHOD *m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "fulcrum socket");
    if (m && BIO_meth_set_read(m, bio_read) == 1 && BIO_meth_set_write(m, bio_write) == 1 &&
        BIO_meth_set_ctrl(m, bio_ctrl) == 1)
        socket_bio = m; /* kept for the life of the process */
    else
        BIO_meth_free(m);
}

int conn_init_tls(struct conn *c, int fd, loop_io_fn handler, struct ssl_st *ssl)
{
    c->io.fd = fd;
    c->io.ready = 0;
    c->io.handler = handler;
    c->ops = &conn_tls_ops;
    c->ssl = ssl;
    c->stream = NULL;
    c->drained = false;
    pthread_once(&socket_bio_once, make_socket_bio);
    BIO *bio = socket_bio ? BIO_new(socket_bio) : NULL;
    if (!bio) {
        ERR_clear_error();
        return -1;
    }
    BIO_set_data(bio, c);
    BIO_set_init(bio, 1);
    SSL_set_bio(ssl, bio, bio); /* ssl owns it from here */
    return 0;
}

/* A label for why a handshake failed, from OpenSSL's reason code. */
static const char *failure_label(unsigned long e)
{
    if (ERR_GET_LIB(e) != ERR_LIB_SSL)
        return "other";
    switch (ERR_GET_REASON(e)) {
    case SSL_R_HTTP_REQUEST:
    case SSL_R_HTTPS_PROXY_REQUEST:
        return "http_request";
    case SSL_R_UNSUPPORTED_PROTOCOL:
    case SSL_R_WRONG_VERSION_NUMBER:
    case SSL_R_VERSION_TOO_LOW:
    case SSL_R_TLSV1_ALERT_PROTOCOL_VERSION:
        return "protocol_version";
    case SSL_R_NO_SHARED_CIPHER:
    case SSL_R_NO_SHARED_GROUPS:
    case SSL_R_NO_SUITABLE_SIGNATURE_ALGORITHM:
        return "no_shared_cipher";
    case SSL_R_CALLBACK_FAILED: /* the SNI callback refused the name (sni_strict) */
    case SSL_R_TLSV1_UNRECOGNIZED_NAME:
        return "unknown_name";
    case SSL_R_CERTIFICATE_VERIFY_FAILED:
    case SSL_R_TLSV1_ALERT_UNKNOWN_CA:
    case SSL_R_SSLV3_ALERT_BAD_CERTIFICATE:
    case SSL_R_SSLV3_ALERT_CERTIFICATE_EXPIRED:
        return "bad_certificate";
    case SSL_R_PEER_DID_NOT_RETURN_A_CERTIFICATE:
    case SSL_R_TLSV13_ALERT_CERTIFICATE_REQUIRED:
        return "no_certificate";
    default:
        return "bad_message";
    }
}

enum conn_status conn_handshake(struct conn *c, const char **why)
{
    /* Nothing new on the side the handshake waits for: no call. */
    if ((SSL_want_read(c->ssl) && !(c->io.ready & LOOP_READABLE)) ||
        (SSL_want_write(c->ssl) && !(c->io.ready & LOOP_WRITABLE)))
        return CONN_BLOCKED;
    ERR_clear_error();
    int ret = SSL_do_handshake(c->ssl);
    if (ret == 1) {
        /* What the peer sent right behind its last handshake message (a request, often) may
         * be in OpenSSL's buffer already, taken from the socket by a call that no readiness
         * event asked for; no event will come for it either. */
        if (SSL_has_pending(c->ssl))
            c->io.ready |= LOOP_READABLE;
        return CONN_DONE;
    }
    int err = SSL_get_error(c->ssl, ret);
    if (err == SSL_ERROR_WANT_READ) {
        c->io.ready &= ~LOOP_READABLE;
        return CONN_BLOCKED;
    }
    if (err == SSL_ERROR_WANT_WRITE) {
        c->io.ready &= ~LOOP_WRITABLE;
        return CONN_BLOCKED;
    }
    unsigned long e = ERR_peek_last_error();
    ERR_clear_error();
    if (err == SSL_ERROR_ZERO_RETURN || (err == SSL_ERROR_SYSCALL && e == 0)) {
        *why = "closed";
        return CONN_EOF;
    }
    *why = e ? failure_label(e) : "other";
    return CONN_ERROR;
}

void conn_tls_refuse_plain_http(struct conn *c)
{
    static const char answer[] = "HTTP/1.1 400 Bad Request\r\n"
                                 "Content-Type: text/plain\r\n"
                                 "Content-Length: 47\r\n"
                                 "Connection: close\r\n"
                                 "\r\n"
                                 "This port speaks HTTPS: use https:// instead.\r\n";
    _Static_assert(sizeof("This port speaks HTTPS: use https:// instead.\r\n") - 1 == 47,
                   "Content-Length");
    /* Best effort: the connection closes right after, whatever was taken. */
    if (send(c->io.fd, answer, sizeof(answer) - 1, MSG_NOSIGNAL | MSG_DONTWAIT) < 0)
        return;
}

const char *conn_tls_version(const struct conn *c)
{
    return SSL_get_version(c->ssl);
}

void conn_tls_moved(struct conn *c)
{
    BIO *rbio = SSL_get_rbio(c->ssl), *wbio = SSL_get_wbio(c->ssl);
    if (rbio)
        BIO_set_data(rbio, c);
    if (wbio && wbio != rbio)
        BIO_set_data(wbio, c);
}
