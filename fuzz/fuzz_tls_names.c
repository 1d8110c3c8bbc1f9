/*
 * fuzz_tls_names.c - libFuzzer target: certificate facts (tls/certinfo.h) and the SNI index
 * (tls/sni.h), fed from the same input so that names from real-looking certificates meet
 * arbitrary ones.
 *
 * Input: byte 0 holds flags, bytes 1-2 the length of the certificate part (little-endian, cut to
 * what is there), then that part, then records of [kind][length][name bytes]. The certificate
 * part is parsed as PEM text and, with flag 1, also as DER wrapped in a base64 CERTIFICATE
 * envelope, so that the DER decoder sees the raw bytes. A record's kind says whether its name is
 * added (bit 0) and for which group (the other bits); every name is also looked up.
 *
 * The checks: certinfo results are well formed and leave no OpenSSL error behind; every lookup
 * answers what a plain model built on sni_name_covers() answers (exact names first, then the
 * wildcard, the first added keeping a name); lookups ignore case and a trailing dot; and an index
 * of one name answers exactly as sni_name_covers() does for that name.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/evp.h>

#include "tls/certinfo.h"
#include "tls/sni.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_NAMES 64 /* names kept per input: the model and the one-name indexes are quadratic */

struct name {
    const char *s;
    size_t len;
    unsigned group;
    bool add;
};

struct names {
    struct name v[MAX_NAMES];
    size_t n;
};

static void push(struct names *ns, const char *s, size_t len, unsigned group, bool add)
{
    if (ns->n < MAX_NAMES)
        ns->v[ns->n++] = (struct name){s, len, group, add};
}

/* PEM text for raw DER bytes: 48 bytes per line make the 64 characters PEM writers use. */
static char *wrap_der(const uint8_t *der, size_t len, size_t *out_len)
{
    static const char begin[] = "-----BEGIN CERTIFICATE-----\n";
    static const char end[] = "-----END CERTIFICATE-----\n";
    size_t lines = (len + 47) / 48;
    char *pem = malloc(sizeof(begin) + lines * 66 + sizeof(end));
    if (!pem)
        abort();
    size_t pos = sizeof(begin) - 1;
    memcpy(pem, begin, pos);
    for (size_t off = 0; off < len; off += 48) {
        size_t n = len - off < 48 ? len - off : 48;
        pos += (size_t)EVP_EncodeBlock((unsigned char *)pem + pos, der + off, (int)n);
        pem[pos++] = '\n';
    }
    memcpy(pem + pos, end, sizeof(end) - 1);
    *out_len = pos + sizeof(end) - 1;
    return pem;
}

/* Parses one text and checks the outcome is well formed; on success the result is in *ci. */
static bool parse(const char *text, size_t len, struct certinfo *ci)
{
    char err[160];
    err[0] = '\0';
    int r = certinfo_parse(text, len, ci, err, sizeof(err));
    if (ERR_peek_error() != 0)
        abort(); /* an OpenSSL error left for the next caller on this thread */
    if (r != 0) {
        if (r != -1 || err[0] == '\0' || ci->subject || ci->names || ci->nnames)
            abort();
        return false;
    }
    if (!ci->subject || !ci->issuer || (ci->nnames > 0) != (ci->names != NULL))
        abort();
    for (unsigned i = 0; i < ci->nnames; i++) {
        const char *s = ci->names[i];
        if (!s || !*s)
            abort();
        for (; *s; s++)
            if (*s <= ' ' || *s >= 0x7f)
                abort();
    }
    return true;
}

/* Whether a name the index accepted is a wildcard: sni_name_covers() then treats it as one. */
static bool is_wildcard(const struct name *n)
{
    return n->len > 0 && n->s[0] == '*';
}

/* What the index must answer for host, from the rules of sni.h spelled out one name at a time. */
static int model(const struct names *ns, const bool *accepted, const char *host, size_t len)
{
    for (int wild = 0; wild < 2; wild++) {
        for (size_t i = 0; i < ns->n; i++) {
            const struct name *n = &ns->v[i];
            if (accepted[i] && is_wildcard(n) == (wild == 1) &&
                sni_name_covers(n->s, n->len, host, len))
                return (int)n->group;
        }
    }
    return -1;
}

static void check_variants(const struct sni_index *ix, const char *host, size_t len, int want)
{
    char buf[300];
    if (len >= sizeof(buf) - 1)
        return;
    /* ASCII case does not matter */
    for (size_t i = 0; i < len; i++) {
        char c = host[i];
        buf[i] = c >= 'a' && c <= 'z' ? (char)(c - 'a' + 'A') : c;
    }
    if (sni_index_lookup(ix, buf, len) != want)
        abort();
    /* nor does one trailing dot, added to a name without one */
    if (len == 0 || host[len - 1] != '.') {
        memcpy(buf, host, len);
        buf[len] = '.';
        if (sni_index_lookup(ix, buf, len + 1) != want)
            abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 3)
        return 0;
    uint8_t flags = data[0];
    size_t cert_len = (size_t)data[1] | (size_t)data[2] << 8;
    data += 3;
    size -= 3;
    if (cert_len > size)
        cert_len = size;

    struct certinfo text_ci = {0}, der_ci = {0};
    char *wrapped = NULL;
    struct names ns = {.n = 0};
    if (parse((const char *)data, cert_len, &text_ci)) {
        for (unsigned i = 0; i < text_ci.nnames; i++)
            push(&ns, text_ci.names[i], strlen(text_ci.names[i]), 0, true);
    }
    if (flags & 1) {
        size_t wrapped_len;
        wrapped = wrap_der(data, cert_len, &wrapped_len);
        if (parse(wrapped, wrapped_len, &der_ci)) {
            for (unsigned i = 0; i < der_ci.nnames; i++)
                push(&ns, der_ci.names[i], strlen(der_ci.names[i]), 1, true);
        }
    }

    /* the records: [kind][length][bytes], the last one cut to what is left */
    const uint8_t *p = data + cert_len, *end = data + size;
    while (end - p >= 2) {
        uint8_t kind = p[0];
        size_t len = p[1];
        p += 2;
        if (len > (size_t)(end - p))
            len = (size_t)(end - p);
        push(&ns, (const char *)p, len, kind >> 1, kind & 1);
        p += len;
    }

    struct sni_index *ix = sni_index_new();
    if (!ix)
        abort();
    bool accepted[MAX_NAMES];
    for (size_t i = 0; i < ns.n; i++) {
        accepted[i] = false;
        if (!ns.v[i].add)
            continue;
        int r = sni_index_add(ix, ns.v[i].s, ns.v[i].len, ns.v[i].group);
        if (r != 0 && r != 1)
            abort();
        accepted[i] = r == 0;
    }
    if (sni_index_finish(ix) != 0)
        abort();

    for (size_t i = 0; i < ns.n; i++) {
        const struct name *h = &ns.v[i];
        int got = sni_index_lookup(ix, h->s, h->len);
        int want = model(&ns, accepted, h->s, h->len);
        if (got != want)
            abort();
        check_variants(ix, h->s, h->len, want);
    }

    /* an index of one name answers as sni_name_covers() does, for every host in the input */
    for (size_t i = 0; i < ns.n && i < 8; i++) {
        struct sni_index *one = sni_index_new();
        if (!one)
            abort();
        int r = sni_index_add(one, ns.v[i].s, ns.v[i].len, 7);
        if ((r != 0 && r != 1) || sni_index_finish(one) != 0)
            abort();
        for (size_t j = 0; j < ns.n; j++) {
            const struct name *h = &ns.v[j];
            bool in_index = sni_index_lookup(one, h->s, h->len) == 7;
            if (in_index != sni_name_covers(ns.v[i].s, ns.v[i].len, h->s, h->len))
                abort();
        }
        sni_index_free(one);
    }

    sni_index_free(ix);
    certinfo_free(&text_ci);
    certinfo_free(&der_ci);
    free(wrapped);
    return 0;
}
