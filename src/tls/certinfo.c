/*
 * certinfo.c - what a certificate file says, read with OpenSSL (see certinfo.h).
 *
 * The PEM text is read through a read-only memory BIO, so nothing is copied. The first
 * certificate is decoded for its fields; the ones after it are decoded only to be counted, which
 * also catches a damaged intermediate before a TLS context would trip over it.
 *
 * OpenSSL reports problems on a per-thread error queue. Every call empties it before returning,
 * success or failure, so that a later, unrelated OpenSSL call on this thread does not find our
 * leftovers and report them as its own.
 */
#include "tls/certinfo.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/asn1.h>
#include <openssl/bio.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

/* A certificate file holds a few kilobytes; anything this large is not one. */
#define CERTINFO_MAX_FILE (16u << 20)

static void set_err(char *err, size_t err_size, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void set_err(char *err, size_t err_size, const char *fmt, ...)
{
    if (!err || err_size == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, err_size, fmt, ap);
    va_end(ap);
}

/* Explains why PEM_read_bio_X509() returned nothing: text without a certificate block is "not
 * found", a block that does not decode is "invalid PEM", and one whose DER is wrong is an
 * "invalid certificate". what names the certificate ("certificate", "certificate 2 of the
 * chain"). Empties the error queue. */
static void pem_error(char *err, size_t err_size, const char *what)
{
    /* the first error queued is the cause; the PEM layer only wraps a DER error in "ASN1 lib" */
    unsigned long first = ERR_peek_error(), e, der = 0;
    while ((e = ERR_get_error()) != 0) {
        if (!der && ERR_GET_LIB(e) != ERR_LIB_PEM)
            der = e;
    }
    unsigned long cause = der ? der : first;
    const char *reason = cause ? ERR_reason_error_string(cause) : NULL;
    const char *sep = reason ? ": " : "";
    if (!reason)
        reason = "";
    if (der)
        set_err(err, err_size, "invalid %s%s%s", what, sep, reason);
    else if (ERR_GET_LIB(first) == ERR_LIB_PEM && ERR_GET_REASON(first) == PEM_R_NO_START_LINE)
        set_err(err, err_size, "no %s found", what);
    else
        set_err(err, err_size, "invalid PEM in %s%s%s", what, sep, reason);
}

/* PEM_read_bio_X509() asks for a password if it meets an encrypted block it must decode; a
 * certificate is never encrypted, and a server must never wait on a terminal prompt. */
static int no_password(char *buf, int size, int rwflag, void *u)
{
    (void)buf;
    (void)size;
    (void)rwflag;
    (void)u;
    return -1;
}

/*
 * A copy of a DNS name as a C string, or NULL. Only printable ASCII without spaces is kept: a NUL
 * inside would cut the name short ("evil.example\0.good.example"), and the names end up in logs,
 * JSON and the dashboard. *bad is set when the name was left out for that reason, so that the
 * caller can tell it from running out of memory.
 */
static char *copy_name(const unsigned char *s, int len, bool *bad)
{
    *bad = false;
    if (!s || len <= 0) {
        *bad = true;
        return NULL;
    }
    for (int i = 0; i < len; i++) {
        if (s[i] <= 0x20 || s[i] >= 0x7f) {
            *bad = true;
            return NULL;
        }
    }
    char *copy = malloc((size_t)len + 1);
    if (!copy)
        return NULL;
    memcpy(copy, s, (size_t)len);
    copy[len] = '\0';
    return copy;
}

static int add_name(struct certinfo *ci, size_t *cap, char *name)
{
    if (ci->nnames == *cap) {
        size_t n = *cap ? *cap * 2 : 4;
        if (n > UINT_MAX)
            return -1;
        char **v = realloc(ci->names, n * sizeof(*v));
        if (!v)
            return -1;
        ci->names = v;
        *cap = n;
    }
    ci->names[ci->nnames++] = name;
    return 0;
}

/* The subjectAltName DNS names. Returns 0 (maybe with no names) or -1 if memory ran out. */
static int read_san(X509 *x, struct certinfo *ci, size_t *cap)
{
    int crit = 0;
    GENERAL_NAMES *gens = X509_get_ext_d2i(x, NID_subject_alt_name, &crit, NULL);
    /* NULL also stands for an extension that does not decode or appears twice: no names then,
     * like a certificate without one (a TLS client will not accept it for those names either) */
    if (!gens)
        return 0;
    int rc = 0;
    for (int i = 0; i < sk_GENERAL_NAME_num(gens); i++) {
        const GENERAL_NAME *g = sk_GENERAL_NAME_value(gens, i);
        if (!g || g->type != GEN_DNS)
            continue;
        bool bad;
        char *name =
            copy_name(ASN1_STRING_get0_data(g->d.dNSName), ASN1_STRING_length(g->d.dNSName), &bad);
        if (!name && bad)
            continue;
        if (!name || add_name(ci, cap, name) < 0) {
            free(name);
            rc = -1;
            break;
        }
    }
    GENERAL_NAMES_free(gens);
    return rc;
}

/* The subject's common name, for a certificate without DNS names in a subjectAltName. The last
 * CN is taken: in the order the name is encoded, the last is the most specific. Returns 0 (maybe
 * with no name) or -1 if memory ran out. */
static int read_cn(X509 *x, struct certinfo *ci, size_t *cap)
{
    const X509_NAME *subject = X509_get_subject_name(x);
    int last = -1;
    for (int i = -1; (i = X509_NAME_get_index_by_NID(subject, NID_commonName, i)) >= 0;)
        last = i;
    if (last < 0)
        return 0;
    const ASN1_STRING *data = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subject, last));
    unsigned char *utf8 = NULL;
    /* the CN may be any of several string types: convert to UTF-8 first, then judge the bytes */
    int len = data ? ASN1_STRING_to_UTF8(&utf8, data) : -1;
    if (len < 0)
        return 0;
    bool bad;
    char *name = copy_name(utf8, len, &bad);
    OPENSSL_free(utf8);
    if (!name)
        return bad ? 0 : -1;
    if (add_name(ci, cap, name) < 0) {
        free(name);
        return -1;
    }
    return 0;
}

/* A name as one RFC 2253 line in *line. Returns 0, -1 if memory ran out, or -2 if OpenSSL
 * could not print the name. */
static int name_line(const X509_NAME *name, char **line)
{
    BIO *out = BIO_new(BIO_s_mem());
    if (!out)
        return -1;
    int rc = -2;
    char *data;
    if (X509_NAME_print_ex(out, name, 0, XN_FLAG_RFC2253) >= 0) {
        long len = BIO_get_mem_data(out, &data);
        if (len >= 0) {
            rc = -1;
            if ((*line = malloc((size_t)len + 1))) {
                if (len > 0)
                    memcpy(*line, data, (size_t)len);
                (*line)[len] = '\0';
                rc = 0;
            }
        }
    }
    BIO_free(out);
    return rc;
}

/* An ASN1_TIME as Unix time. Returns 0, or -1 if the time does not decode. */
static int unix_time(const ASN1_TIME *t, int64_t *out)
{
    struct tm tm;
    /* a NULL time would mean "now" to ASN1_TIME_to_tm() */
    if (!t || ASN1_TIME_to_tm(t, &tm) != 1)
        return -1;
    errno = 0;
    time_t secs = timegm(&tm);
    /* -1 is also 1969-12-31T23:59:59Z: only errno tells an overflow from that second */
    if (secs == (time_t)-1 && errno != 0)
        return -1;
    *out = (int64_t)secs;
    return 0;
}

static enum certinfo_key key_type(const EVP_PKEY *key)
{
    switch (EVP_PKEY_get_base_id(key)) {
    case EVP_PKEY_RSA:
    case EVP_PKEY_RSA_PSS:
        return CERTINFO_KEY_RSA;
    case EVP_PKEY_EC:
        return CERTINFO_KEY_ECDSA;
    default:
        return CERTINFO_KEY_OTHER;
    }
}

/* Fills ci from one certificate. Returns 0, or -1 with err set. */
static int read_cert(X509 *x, struct certinfo *ci, char *err, size_t err_size)
{
    size_t cap = 0;
    int rc = name_line(X509_get_subject_name(x), &ci->subject);
    if (rc == 0)
        rc = name_line(X509_get_issuer_name(x), &ci->issuer);
    if (rc == -2) {
        set_err(err, err_size, "unprintable subject or issuer name in the certificate");
        return -1;
    }
    if (rc < 0 || read_san(x, ci, &cap) < 0 || (ci->nnames == 0 && read_cn(x, ci, &cap) < 0)) {
        set_err(err, err_size, "out of memory");
        return -1;
    }
    if (unix_time(X509_get0_notBefore(x), &ci->not_before) < 0 ||
        unix_time(X509_get0_notAfter(x), &ci->not_after) < 0) {
        set_err(err, err_size, "invalid validity dates in the certificate");
        return -1;
    }
    /* a key of an algorithm this OpenSSL does not know is not an error: it is "other", size 0 */
    const EVP_PKEY *key = X509_get0_pubkey(x);
    if (key) {
        ci->key = key_type(key);
        int bits = EVP_PKEY_get_bits(key);
        ci->key_bits = bits > 0 ? (unsigned)bits : 0;
    } else {
        ci->key = CERTINFO_KEY_OTHER;
    }
    return 0;
}

int certinfo_parse(const char *pem, size_t len, struct certinfo *out, char *err, size_t err_size)
{
    memset(out, 0, sizeof(*out));
    if (len > INT_MAX) {
        set_err(err, err_size, "the text is too large for a certificate");
        return -1;
    }
    /* start clean, so that an error found below is ours */
    ERR_clear_error();
    BIO *in = BIO_new_mem_buf(pem ? pem : "", (int)len);
    if (!in) {
        set_err(err, err_size, "out of memory");
        ERR_clear_error();
        return -1;
    }
    int rc = -1;
    X509 *x = PEM_read_bio_X509(in, NULL, no_password, NULL);
    if (!x) {
        pem_error(err, err_size, "certificate");
        goto done;
    }
    if (read_cert(x, out, err, err_size) < 0)
        goto done;
    for (;;) {
        X509 *next = PEM_read_bio_X509(in, NULL, no_password, NULL);
        if (!next)
            break;
        X509_free(next);
        out->chain_len++;
    }
    /* the loop ends at the end of the text ("no start line"), or at a damaged certificate */
    unsigned long e = ERR_peek_error();
    if (e && !(ERR_GET_LIB(e) == ERR_LIB_PEM && ERR_GET_REASON(e) == PEM_R_NO_START_LINE)) {
        char what[64];
        snprintf(what, sizeof(what), "certificate %u of the chain", out->chain_len + 2);
        pem_error(err, err_size, what);
        goto done;
    }
    rc = 0;
done:
    X509_free(x);
    BIO_free(in);
    ERR_clear_error();
    if (rc < 0)
        certinfo_free(out);
    return rc;
}

int certinfo_load(const char *path, struct certinfo *out, char *err, size_t err_size)
{
    memset(out, 0, sizeof(*out));
    char *buf = NULL;
    size_t len = 0, cap = 0, n;
    int rc = -1;
    FILE *f = fopen(path, "re");
    if (!f) {
        char msg[128];
        set_err(err, err_size, "cannot read file: %s", strerror_r(errno, msg, sizeof(msg)));
        return -1;
    }
    do {
        if (len == cap) {
            if (cap >= CERTINFO_MAX_FILE) {
                set_err(err, err_size, "file too large for a certificate (over %u MiB)",
                        CERTINFO_MAX_FILE >> 20);
                goto out;
            }
            /* not realloc(): it would free the old copy without wiping it (see below) */
            size_t bigger_cap = cap ? cap * 2 : 8192;
            char *bigger = malloc(bigger_cap);
            if (!bigger) {
                set_err(err, err_size, "out of memory");
                goto out;
            }
            if (buf) {
                memcpy(bigger, buf, len);
                OPENSSL_cleanse(buf, cap);
                free(buf);
            }
            buf = bigger;
            cap = bigger_cap;
        }
        n = fread(buf + len, 1, cap - len, f);
        len += n;
    } while (n > 0);
    if (ferror(f)) {
        char msg[128];
        set_err(err, err_size, "cannot read file: %s", strerror_r(errno, msg, sizeof(msg)));
        goto out;
    }
    rc = certinfo_parse(buf, len, out, err, err_size);
out:
    fclose(f);
    /* the file may hold the private key after the certificate: leave no copy of it behind */
    if (buf)
        OPENSSL_cleanse(buf, cap);
    free(buf);
    return rc;
}

void certinfo_free(struct certinfo *ci)
{
    if (!ci)
        return;
    free(ci->subject);
    free(ci->issuer);
    for (unsigned i = 0; i < ci->nnames; i++)
        free(ci->names[i]);
    free(ci->names);
    memset(ci, 0, sizeof(*ci));
}
