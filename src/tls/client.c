/*
 * client.c - TLS contexts for connections to servers (client.h).
 *
 * One SSL_CTX per pool, and one per pool's etcd registry on https, each set up like a careful
 * client: TLS 1.2 or later, the system's default ciphers, no renegotiation, verification on
 * unless the settings say otherwise, and a client certificate if they have one. Which name to
 * send and check depends on the server, so it is set on each connection (tls_client_connect),
 * not on the context.
 */
#include "tls/client.h"

#include <arpa/inet.h>
#include <limits.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

struct tls_client {
    /* from the pool's tls, or its etcd registry's: copied, as an etcd source may keep the
     * context a little longer than the configuration it came from */
    char *sni;
    bool verify;
    SSL_CTX *ctx;
    /* the owners: the configuration's set, and each etcd source using it (ctl, on the control
     * thread) while the set may go with the last snapshot on a worker */
    _Atomic unsigned refs;
};

/* Where the settings were written, for error lines: "pools[0].tls", "pool api". */
struct origin {
    const char *path, *what;
    int line, column;
};

static void client_error(struct tls_report *r, const struct origin *o, const char *key,
                         const char *fmt, ...) __attribute__((format(printf, 4, 5)));

static void client_error(struct tls_report *r, const struct origin *o, const char *key,
                         const char *fmt, ...)
{
    char msg[768], path[160];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    snprintf(path, sizeof(path), "%s.%s", o->path, key);
    tls_report(r, path, o->what, o->line, o->column, "%s", msg);
}

static struct tls_client *client_new(const struct conf *conf, const struct conf_pool_tls *t,
                                     const struct origin *o, struct tls_report *r)
{
    char path[PATH_MAX], key[PATH_MAX], why[256];
    struct tls_client *tc = calloc(1, sizeof(*tc));
    if (!tc || !(tc->ctx = SSL_CTX_new(TLS_client_method()))) {
        ERR_clear_error();
        free(tc);
        r->oom = true;
        return NULL;
    }
    tc->verify = t->verify;
    tc->refs = 1;
    if (t->sni && !(tc->sni = strdup(t->sni))) {
        r->oom = true;
        goto fail;
    }
    SSL_CTX *ctx = tc->ctx;
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION |
                                 SSL_OP_IGNORE_UNEXPECTED_EOF);
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS | SSL_MODE_ENABLE_PARTIAL_WRITE |
                              SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    SSL_CTX_set_read_ahead(ctx, 1);
    /* Sessions are kept by the caller (per thread and server), not in a shared cache. */
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
    if (t->verify) {
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
        int ok = t->ca ? SSL_CTX_load_verify_locations(
                             ctx, tls_report_resolve(conf, t->ca, path, sizeof(path)), NULL)
                       : SSL_CTX_set_default_verify_paths(ctx);
        if (ok != 1) {
            client_error(r, o, "ca", "cannot load CA certificates from %s: %s",
                         t->ca ? t->ca : "the system's store",
                         tls_report_ssl_reason(why, sizeof(why)));
            goto fail;
        }
    }
    if (t->cert) {
        tls_report_resolve(conf, t->cert, path, sizeof(path));
        tls_report_resolve(conf, t->key, key, sizeof(key));
        if (SSL_CTX_use_certificate_chain_file(ctx, path) != 1) {
            client_error(r, o, "cert", "cert %s: %s", t->cert,
                         tls_report_ssl_reason(why, sizeof(why)));
            goto fail;
        }
        if (SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1 ||
            SSL_CTX_check_private_key(ctx) != 1) {
            client_error(r, o, "key", "key %s: %s (it must be the key of %s)", t->key,
                         tls_report_ssl_reason(why, sizeof(why)), t->cert);
            goto fail;
        }
    }
    return tc;
fail:
    tls_client_free(tc);
    return NULL;
}

struct tls_client *tls_client_new(const struct conf *conf, unsigned pi, struct tls_report *r)
{
    const struct conf_pool *p = &conf->pools[pi];
    char path[48], what[300];
    snprintf(path, sizeof(path), "pools[%u].tls", pi);
    snprintf(what, sizeof(what), "pool %s", p->name);
    return client_new(conf, &p->tls, &(struct origin){path, what, p->line, p->column}, r);
}

struct tls_client *tls_client_new_etcd(const struct conf *conf, unsigned pi, struct tls_report *r)
{
    const struct conf_pool *p = &conf->pools[pi];
    char path[64], what[300];
    snprintf(path, sizeof(path), "pools[%u].discovery.etcd.tls", pi);
    snprintf(what, sizeof(what), "pool %s", p->name);
    return client_new(conf, &p->discovery.etcd.tls,
                      &(struct origin){path, what, p->line, p->column}, r);
}

struct tls_client *tls_client_ref(struct tls_client *tc)
{
    if (tc)
        tc->refs++;
    return tc;
}

void tls_client_free(struct tls_client *tc)
{
    if (!tc || --tc->refs > 0)
        return;
    SSL_CTX_free(tc->ctx);
    free(tc->sni);
    free(tc);
}

struct ssl_st *tls_client_connect(const struct tls_client *tc, const char *host,
                                  struct ssl_session_st *session)
{
    SSL *ssl = SSL_new(tc->ctx);
    if (!ssl) {
        ERR_clear_error();
        return NULL;
    }
    SSL_set_connect_state(ssl);
    const char *name = tc->sni ? tc->sni : host;
    unsigned char ip[16];
    bool is_ip = inet_pton(AF_INET, name, ip) == 1 || inet_pton(AF_INET6, name, ip) == 1;
    bool ok = true;
    if (!is_ip)
        ok = SSL_set_tlsext_host_name(ssl, name) == 1;
    if (ok && tc->verify)
        ok = is_ip ? X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), name) == 1
                   : SSL_set1_host(ssl, name) == 1;
    if (ok && session)
        ok = SSL_set_session(ssl, session) == 1;
    if (!ok) {
        ERR_clear_error();
        SSL_free(ssl);
        return NULL;
    }
    return ssl;
}

struct ssl_st *tls_client_connect_h2(const struct tls_client *tc, const char *host,
                                     struct ssl_session_st *session)
{
    static const unsigned char h2[] = {2, 'h', '2'}; /* ALPN's wire form: length, name */
    SSL *ssl = tls_client_connect(tc, host, session);
    if (ssl && SSL_set_alpn_protos(ssl, h2, sizeof(h2)) != 0) { /* 0 is success here */
        ERR_clear_error();
        SSL_free(ssl);
        return NULL;
    }
    return ssl;
}

bool tls_client_chose_h2(const struct ssl_st *ssl)
{
    const unsigned char *name;
    unsigned len;
    SSL_get0_alpn_selected(ssl, &name, &len);
    return len == 2 && memcmp(name, "h2", 2) == 0;
}

const char *tls_client_verify_error(const struct ssl_st *ssl)
{
    if (SSL_get_verify_mode(ssl) == SSL_VERIFY_NONE)
        return NULL; /* verify: false: whatever the chain is, it was not the problem */
    long result = SSL_get_verify_result(ssl);
    if (result == X509_V_OK)
        return NULL;
    if (result == X509_V_ERR_HOSTNAME_MISMATCH || result == X509_V_ERR_IP_ADDRESS_MISMATCH)
        return "hostname mismatch";
    return X509_verify_cert_error_string(result);
}

struct ssl_session_st *tls_client_session(const struct ssl_st *ssl)
{
    SSL_SESSION *session = SSL_get1_session((SSL *)ssl);
    if (session && !SSL_SESSION_is_resumable(session)) {
        SSL_SESSION_free(session);
        return NULL;
    }
    return session;
}

void tls_session_free(struct ssl_session_st *session)
{
    SSL_SESSION_free(session);
}
