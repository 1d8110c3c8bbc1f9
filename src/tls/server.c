/*
 * server.c - TLS contexts for listeners (server.h).
 *
 * Building a listener: every certificate file is read twice, once by certinfo (names, dates, key
 * type, for SNI and for operators) and once by OpenSSL into its group's context, where the key is
 * checked against the certificate. Settings every context shares (versions, ciphers, ALPN, client
 * certificates, tickets, modes) are applied by setup_context(), so a connection whose context SNI
 * switched behaves the same.
 *
 * Errors are collected, one line each, so that `fulcrum -t` and a failed reload show every
 * problem at once; nothing is half-built on failure.
 */
#include "tls/server.h"

#include <errno.h>
#include <limits.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "core/log.h"
#include "tls/report.h"
#include "tls/sni.h"
#include "tls/tickets.h"

/* Mozilla's "intermediate" TLS 1.2 list (v5.7), ECDSA suites first so that a client that can
 * use either certificate gets the ECDSA one. TLS 1.3 suites are OpenSSL's defaults. */
#define DEFAULT_CIPHERS                                                                            \
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"                                   \
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"                                   \
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:"                                   \
    "DHE-RSA-AES128-GCM-SHA256:DHE-RSA-AES256-GCM-SHA384:DHE-RSA-CHACHA20-POLY1305"
#define EXPIRY_WARNING_DAYS 14
#define SESSION_CACHE_SIZE  20000

struct cert_entry {
    const struct conf_tls_certificate *conf;
    struct certinfo info;
    unsigned group;
};

struct tls_server {
    const struct conf_listener *conf;
    SSL_CTX **groups;
    unsigned ngroups, default_group;
    struct sni_index *sni;
    struct cert_entry *certs;
    unsigned ncerts;
    unsigned char alpn[512]; /* protocols in wire format: length-prefixed names */
    size_t alpn_len;
};

/* One error line about listener l (number li) at key of its tls mapping; line 0: at the
 * listener's own position. */
#define report_error(r, l, li, key, at_line, at_column, ...)                                       \
    tls_report_entry(r, "listeners", li, "listener", (l)->name, key,                               \
                     (at_line) ? (at_line) : (l)->line, (at_line) ? (at_column) : (l)->column,     \
                     __VA_ARGS__)

/* ---- handshake callbacks ---- */

static int on_servername(SSL *ssl, int *alert, void *arg)
{
    const struct tls_server *ts = arg;
    const char *name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
    if (!name)
        return SSL_TLSEXT_ERR_OK; /* no SNI: the default certificate */
    int g = sni_index_lookup(ts->sni, name, strlen(name));
    if (g < 0) {
        if (!ts->conf->tls.sni_strict)
            return SSL_TLSEXT_ERR_OK;
        *alert = SSL_AD_UNRECOGNIZED_NAME;
        return SSL_TLSEXT_ERR_ALERT_FATAL;
    }
    if ((unsigned)g != ts->default_group && !SSL_set_SSL_CTX(ssl, ts->groups[g])) {
        ERR_clear_error();
        *alert = SSL_AD_INTERNAL_ERROR;
        return SSL_TLSEXT_ERR_ALERT_FATAL;
    }
    return SSL_TLSEXT_ERR_OK;
}

/* Our first protocol that the client offers; none in common: no ALPN in the answer (the
 * client then speaks HTTP/1.1, as it would without ALPN). */
static int on_alpn(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                   const unsigned char *in, unsigned int inlen, void *arg)
{
    const struct tls_server *ts = arg;
    for (size_t i = 0; i < ts->alpn_len; i += 1u + ts->alpn[i]) {
        const unsigned char *ours = &ts->alpn[i];
        for (unsigned j = 0; j < inlen; j += 1u + in[j]) {
            if (j + 1u + in[j] > inlen)
                break; /* malformed list: OpenSSL checks it too */
            if (in[j] == ours[0] && memcmp(in + j + 1, ours + 1, ours[0]) == 0) {
                *out = in + j + 1;
                *outlen = in[j];
                return SSL_TLSEXT_ERR_OK;
            }
        }
    }
    return SSL_TLSEXT_ERR_NOACK;
}

bool tls_alpn_is_h2(const SSL *ssl)
{
    const unsigned char *proto = NULL;
    unsigned len = 0;
    SSL_get0_alpn_selected(ssl, &proto, &len);
    return len == 2 && memcmp(proto, "h2", 2) == 0;
}

/* ---- building ---- */

static int setup_context(SSL_CTX *ctx, struct tls_server *ts, const struct conf *conf, unsigned li,
                         struct tls_report *r)
{
    const struct conf_listener *l = ts->conf;
    const struct conf_listener_tls *t = &l->tls;
    char why[256], path[PATH_MAX];

    SSL_CTX_set_min_proto_version(ctx,
                                  t->min_version == CONF_TLS_1_3 ? TLS1_3_VERSION : TLS1_2_VERSION);
    SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION |
                                 SSL_OP_CIPHER_SERVER_PREFERENCE | SSL_OP_IGNORE_UNEXPECTED_EOF |
                                 SSL_OP_SINGLE_ECDH_USE | SSL_OP_SINGLE_DH_USE |
                                 (t->session_tickets ? 0 : SSL_OP_NO_TICKET));
    /* Idle connections give their buffers back; writes go out record by record. */
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS | SSL_MODE_ENABLE_PARTIAL_WRITE |
                              SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    SSL_CTX_set_read_ahead(ctx, 1); /* whole socket reads, not a header then a record */
    SSL_CTX_set_dh_auto(ctx, 1);
    if (SSL_CTX_set_cipher_list(ctx, t->ciphers ? t->ciphers : DEFAULT_CIPHERS) != 1) {
        report_error(r, l, li, "ciphers", 0, 0, "no usable cipher in \"%s\": %s",
                     t->ciphers ? t->ciphers : DEFAULT_CIPHERS,
                     tls_report_ssl_reason(why, sizeof(why)));
        return -1;
    }
    /* A session resumes only where it could have been made: on this listener, with the same
     * client certificate rule. Ticket keys are shared by every listener, so without this a
     * ticket from a listener without client_ca would skip the client certificate on one with. */
    unsigned char sid_ctx[EVP_MAX_MD_SIZE];
    unsigned int sid_len = 0;
    char scope[512];
    int scope_len =
        snprintf(scope, sizeof(scope), "%s%c%s", l->name, 0, t->client_ca ? t->client_ca : "");
    if (scope_len < 0 || (size_t)scope_len >= sizeof(scope))
        scope_len = (int)sizeof(scope) - 1;
    if (EVP_Digest(scope, (size_t)scope_len, sid_ctx, &sid_len, EVP_sha256(), NULL) != 1 ||
        SSL_CTX_set_session_id_context(ctx, sid_ctx, sid_len) != 1) {
        report_error(r, l, li, "", 0, 0, "cannot set up session resumption: %s",
                     tls_report_ssl_reason(why, sizeof(why)));
        return -1;
    }
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_SERVER);
    SSL_CTX_sess_set_cache_size(ctx, SESSION_CACHE_SIZE);
    if (t->session_tickets && tls_tickets_use(ctx) < 0) {
        report_error(r, l, li, "session_tickets", 0, 0, "cannot set up ticket keys: %s",
                     tls_report_ssl_reason(why, sizeof(why)));
        return -1;
    }
    SSL_CTX_set_tlsext_servername_callback(ctx, on_servername);
    SSL_CTX_set_tlsext_servername_arg(ctx, ts);
    SSL_CTX_set_alpn_select_cb(ctx, on_alpn, ts);
    if (t->client_ca) {
        tls_report_resolve(conf, t->client_ca, path, sizeof(path));
        STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(path);
        if (!names || SSL_CTX_load_verify_locations(ctx, path, NULL) != 1) {
            sk_X509_NAME_pop_free(names, X509_NAME_free);
            report_error(r, l, li, "client_ca", 0, 0, "cannot load CA certificates from %s: %s",
                         t->client_ca,
                         errno && !ERR_peek_last_error() ? strerror(errno)
                                                         : tls_report_ssl_reason(why, sizeof(why)));
            return -1;
        }
        SSL_CTX_set_client_CA_list(ctx, names);
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
        SSL_CTX_set_verify_depth(ctx, 10);
    }
    return 0;
}

/* Loads certificate i (chain and key) into its group's context; the key must match. */
static int load_certificate(struct tls_server *ts, const struct conf *conf, unsigned li, unsigned i,
                            struct tls_report *r)
{
    const struct cert_entry *e = &ts->certs[i];
    SSL_CTX *ctx = ts->groups[e->group];
    char why[256], cert[PATH_MAX], key[PATH_MAX], field[64];
    snprintf(field, sizeof(field), "certificates[%u]", i);
    tls_report_resolve(conf, e->conf->cert, cert, sizeof(cert));
    tls_report_resolve(conf, e->conf->key, key, sizeof(key));
    if (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1) {
        report_error(r, ts->conf, li, field, e->conf->line, e->conf->column, "cert %s: %s",
                     e->conf->cert, tls_report_ssl_reason(why, sizeof(why)));
        return -1;
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1) {
        int err = errno;
        unsigned long e2 = ERR_peek_last_error();
        if (ERR_GET_LIB(e2) == ERR_LIB_X509 && ERR_GET_REASON(e2) == X509_R_KEY_VALUES_MISMATCH) {
            ERR_clear_error();
            report_error(r, ts->conf, li, field, e->conf->line, e->conf->column,
                         "key %s does not match certificate %s", e->conf->key, e->conf->cert);
            return -1;
        }
        report_error(r, ts->conf, li, field, e->conf->line, e->conf->column,
                     "key %s: cannot use it: %s", e->conf->key,
                     ERR_GET_LIB(e2) == ERR_LIB_SYS || (!e2 && err)
                         ? strerror(err)
                         : tls_report_ssl_reason(why, sizeof(why)));
        ERR_clear_error();
        return -1;
    }
    if (SSL_CTX_check_private_key(ctx) != 1) {
        ERR_clear_error();
        report_error(r, ts->conf, li, field, e->conf->line, e->conf->column,
                     "key %s does not match certificate %s", e->conf->key, e->conf->cert);
        return -1;
    }
    return 0;
}

/* Do a and b carry the same names (in any order)? */
static bool same_names(const struct certinfo *a, const struct certinfo *b)
{
    if (a->nnames != b->nnames)
        return false;
    for (unsigned i = 0; i < a->nnames; i++) {
        bool found = false;
        for (unsigned j = 0; j < b->nnames && !found; j++)
            found = strcasecmp(a->names[i], b->names[j]) == 0;
        if (!found)
            return false;
    }
    return true;
}

/* Certificate i joins the first group of the same names that lacks its key type. */
static unsigned choose_group(struct tls_server *ts, unsigned i)
{
    const struct cert_entry *e = &ts->certs[i];
    for (unsigned j = 0; j < i; j++) {
        const struct cert_entry *o = &ts->certs[j];
        if (!same_names(&o->info, &e->info))
            continue;
        bool taken = false;
        for (unsigned k = 0; k < i && !taken; k++)
            taken = ts->certs[k].group == o->group && ts->certs[k].info.key == e->info.key;
        if (!taken)
            return o->group;
    }
    return ts->ngroups++;
}

static void warn_expiry(const struct tls_server *ts, const struct cert_entry *e)
{
    time_t now = time(NULL);
    char date[32];
    time_t after = (time_t)e->info.not_after;
    struct tm tm;
    gmtime_r(&after, &tm);
    strftime(date, sizeof(date), "%Y-%m-%d %H:%M UTC", &tm);
    if (e->info.not_after < now)
        log_warn("listener %s: certificate %s has expired (not after %s)", ts->conf->name,
                 e->conf->cert, date);
    else if (e->info.not_after < now + EXPIRY_WARNING_DAYS * 86400)
        log_warn("listener %s: certificate %s expires in %lld days (not after %s)", ts->conf->name,
                 e->conf->cert, (long long)((e->info.not_after - now) / 86400), date);
    if (e->info.not_before > now)
        log_warn("listener %s: certificate %s is not valid yet", ts->conf->name, e->conf->cert);
}

void tls_server_free(struct tls_server *ts)
{
    if (!ts)
        return;
    for (unsigned g = 0; g < ts->ngroups; g++)
        SSL_CTX_free(ts->groups[g]);
    free(ts->groups);
    for (unsigned i = 0; i < ts->ncerts; i++)
        certinfo_free(&ts->certs[i].info);
    free(ts->certs);
    sni_index_free(ts->sni);
    free(ts);
}

static int build_alpn(struct tls_server *ts)
{
    const struct conf_listener_tls *t = &ts->conf->tls;
    /* by default an HTTP listener offers HTTP/2 first; a TCP one relays bytes it does not read */
    static char *const http[] = {"h2", "http/1.1"};
    static char *const http11[] = {"http/1.1"};
    char *const *list = t->nalpn ? t->alpn : ts->conf->mode == CONF_MODE_HTTP ? http : http11;
    unsigned n = t->nalpn ? t->nalpn : ts->conf->mode == CONF_MODE_HTTP ? 2 : 1;
    for (unsigned i = 0; i < n; i++) {
        size_t len = strlen(list[i]);
        if (len == 0 || len > 255 || ts->alpn_len + 1 + len > sizeof(ts->alpn))
            return -1;
        ts->alpn[ts->alpn_len++] = (unsigned char)len;
        memcpy(ts->alpn + ts->alpn_len, list[i], len);
        ts->alpn_len += len;
    }
    return 0;
}

struct tls_server *tls_server_new(const struct conf *conf, unsigned li, struct tls_report *r)
{
    const struct conf_listener *l = &conf->listeners[li];
    const struct conf_listener_tls *t = &l->tls;
    struct tls_server *ts = calloc(1, sizeof(*ts));
    char path[PATH_MAX], why[256], field[64];
    if (!ts)
        goto oom;
    ts->conf = l;
    ts->certs = calloc(t->ncertificates, sizeof(*ts->certs));
    ts->groups = calloc(t->ncertificates, sizeof(*ts->groups));
    ts->sni = sni_index_new();
    if (!ts->certs || !ts->groups || !ts->sni)
        goto oom;
    if (build_alpn(ts) < 0) {
        report_error(r, l, li, "alpn", 0, 0, "the protocol list is too long (at most 511 bytes)");
        goto fail;
    }
    bool ok = true;
    for (unsigned i = 0; i < t->ncertificates; i++) {
        struct cert_entry *e = &ts->certs[i];
        e->conf = &t->certificates[i];
        snprintf(field, sizeof(field), "certificates[%u]", i);
        if (certinfo_load(tls_report_resolve(conf, e->conf->cert, path, sizeof(path)), &e->info,
                          why, sizeof(why)) < 0) {
            report_error(r, l, li, field, e->conf->line, e->conf->column, "cert %s: %s",
                         e->conf->cert, why);
            ok = false;
            continue;
        }
        e->group = choose_group(ts, i);
        ts->ncerts = i + 1;
    }
    ts->ncerts = t->ncertificates; /* certinfo_free is safe on the zeroed ones */
    if (!ok)
        goto fail;
    for (unsigned g = 0; g < ts->ngroups; g++) {
        if (!(ts->groups[g] = SSL_CTX_new(TLS_server_method())))
            goto oom;
        if (setup_context(ts->groups[g], ts, conf, li, r) < 0)
            goto fail;
    }
    for (unsigned i = 0; i < ts->ncerts; i++) {
        struct cert_entry *e = &ts->certs[i];
        if (load_certificate(ts, conf, li, i, r) < 0) {
            ok = false;
            continue;
        }
        if (t->default_certificate && strcmp(t->default_certificate, e->conf->cert) == 0)
            ts->default_group = e->group;
        for (unsigned k = 0; k < e->info.nnames; k++)
            if (sni_index_add(ts->sni, e->info.names[k], strlen(e->info.names[k]), e->group) < 0)
                goto oom;
    }
    if (!ok)
        goto fail;
    if (sni_index_finish(ts->sni) < 0)
        goto oom;
    for (unsigned i = 0; i < ts->ncerts; i++)
        warn_expiry(ts, &ts->certs[i]);
    return ts;
oom:
    r->oom = true;
fail:
    tls_server_free(ts);
    return NULL;
}

/* ---- connections ---- */

struct ssl_st *tls_server_accept(const struct tls_server *ts)
{
    SSL *ssl = SSL_new(ts->groups[ts->default_group]);
    if (!ssl) {
        ERR_clear_error();
        return NULL;
    }
    SSL_set_accept_state(ssl);
    return ssl;
}

unsigned tls_server_certificates(const struct tls_server *ts)
{
    return ts->ncerts;
}

struct tls_certificate_view tls_server_certificate(const struct tls_server *ts, unsigned i)
{
    const struct cert_entry *e = &ts->certs[i];
    const char *dflt = ts->conf->tls.default_certificate;
    return (struct tls_certificate_view){
        .cert = e->conf->cert,
        .key = e->conf->key,
        .info = &e->info,
        .is_default = dflt ? strcmp(dflt, e->conf->cert) == 0 : i == 0,
    };
}

const char *tls_server_subject_header(const struct tls_server *ts)
{
    return ts->conf->tls.client_ca ? ts->conf->tls.client_subject_header : NULL;
}

bool tls_session_resumed(const struct ssl_st *ssl)
{
    return SSL_session_reused((SSL *)ssl) == 1;
}

bool tls_is_v13(const struct ssl_st *ssl)
{
    return SSL_version(ssl) == TLS1_3_VERSION;
}

char *tls_peer_subject(const struct ssl_st *ssl)
{
    X509 *peer = SSL_get0_peer_certificate(ssl);
    if (!peer)
        return NULL;
    BIO *bio = BIO_new(BIO_s_mem());
    char *out = NULL;
    if (bio && X509_NAME_print_ex(bio, X509_get_subject_name(peer), 0, XN_FLAG_RFC2253) >= 0) {
        char *data;
        long len = BIO_get_mem_data(bio, &data);
        if (len >= 0 && (out = malloc((size_t)len + 1))) {
            /* RFC 2253 escapes control and non-ASCII bytes; a header line gets nothing else */
            for (long i = 0; i < len; i++)
                out[i] = (unsigned char)data[i] < 0x20 || data[i] == 0x7f ? '?' : data[i];
            out[len] = '\0';
        }
    }
    BIO_free(bio);
    ERR_clear_error();
    return out;
}

const char *tls_server_name(const struct ssl_st *ssl)
{
    return SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
}
