/*
 * test_certinfo.c - certificate facts from PEM text (tls/certinfo.h). The certificates are made
 * here, at test time, with OpenSSL: EC P-256 and RSA 2048 keys, DNS names with a wildcard, a
 * certificate with only a CN, an expired one, one with a chain of two behind it. Then the
 * failures: empty text, garbage, truncated PEM, a private key alone, a missing file.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include <openssl/bio.h>
#include <openssl/buffer.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "tls/certinfo.h"

/* Fixed validity, so every date can be checked to the second. */
#define T_2023_11_14 1700000000 /* 2023-11-14T22:13:20Z */
#define T_2033_05_18 2000000000 /* 2033-05-18T03:33:20Z */
#define T_2061_11_23 2900000000 /* after 2049: a GeneralizedTime */
#define T_2001_09_09 1000000000
#define T_2002_01_01 1009843200

struct keys {
    EVP_PKEY *ec;  /* P-256 */
    EVP_PKEY *rsa; /* 2048 bits */
    EVP_PKEY *ca;  /* the issuers' key: P-256 */
};

static int setup(void **state)
{
    struct keys *k = calloc(1, sizeof(*k));
    if (!k)
        return -1;
    /* RSA key generation is slow: one set of keys serves every test */
    k->ec = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    k->rsa = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
    k->ca = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    *state = k;
    return k->ec && k->rsa && k->ca ? 0 : -1;
}

static int teardown(void **state)
{
    struct keys *k = *state;
    if (k) {
        EVP_PKEY_free(k->ec);
        EVP_PKEY_free(k->rsa);
        EVP_PKEY_free(k->ca);
        free(k);
    }
    return 0;
}

/* What a test certificate looks like; fields left zero are left out. */
struct spec {
    const char *cn, *org;          /* subject */
    const char *issuer_cn;         /* NULL: self-issued */
    const char *const *dns;        /* subjectAltName DNS names, NULL-terminated */
    const char *ip;                /* an IPv4 subjectAltName, which is not a DNS name */
    int64_t not_before, not_after; /* 0 and 0: T_2023_11_14 and T_2033_05_18 */
};

static void add_entry(X509_NAME *name, const char *field, const char *value)
{
    assert_int_equal(X509_NAME_add_entry_by_txt(name, field, MBSTRING_UTF8,
                                                (const unsigned char *)value, -1, -1, 0),
                     1);
}

static void set_time(ASN1_TIME *t, int64_t when)
{
    assert_non_null(ASN1_TIME_set(t, (time_t)when));
}

static void add_san(X509 *x, const struct spec *s)
{
    GENERAL_NAMES *gens = GENERAL_NAMES_new();
    assert_non_null(gens);
    for (const char *const *d = s->dns; d && *d; d++) {
        GENERAL_NAME *g = GENERAL_NAME_new();
        ASN1_IA5STRING *ia5 = ASN1_IA5STRING_new();
        assert_non_null(g);
        assert_non_null(ia5);
        assert_int_equal(ASN1_STRING_set(ia5, *d, (int)strlen(*d)), 1);
        GENERAL_NAME_set0_value(g, GEN_DNS, ia5);
        assert_true(sk_GENERAL_NAME_push(gens, g) > 0);
    }
    if (s->ip) {
        GENERAL_NAME *g = a2i_GENERAL_NAME(NULL, NULL, NULL, GEN_IPADD, s->ip, 0);
        assert_non_null(g);
        assert_true(sk_GENERAL_NAME_push(gens, g) > 0);
    }
    assert_int_equal(X509_add1_ext_i2d(x, NID_subject_alt_name, gens, 0, X509V3_ADD_DEFAULT), 1);
    GENERAL_NAMES_free(gens);
}

/* A certificate for key, signed by signer. */
static X509 *make_cert(EVP_PKEY *key, EVP_PKEY *signer, const struct spec *s)
{
    X509 *x = X509_new();
    assert_non_null(x);
    assert_int_equal(X509_set_version(x, X509_VERSION_3), 1);
    assert_int_equal(ASN1_INTEGER_set(X509_get_serialNumber(x), 42), 1);
    X509_NAME *subject = X509_get_subject_name(x);
    if (s->org)
        add_entry(subject, "O", s->org);
    if (s->cn)
        add_entry(subject, "CN", s->cn);
    X509_NAME *issuer = X509_NAME_new();
    assert_non_null(issuer);
    if (s->issuer_cn) {
        add_entry(issuer, "O", "Test CA");
        add_entry(issuer, "CN", s->issuer_cn);
    } else {
        X509_NAME_free(issuer);
        assert_non_null(issuer = X509_NAME_dup(subject));
    }
    assert_int_equal(X509_set_issuer_name(x, issuer), 1);
    X509_NAME_free(issuer);
    set_time(X509_getm_notBefore(x), s->not_before || s->not_after ? s->not_before : T_2023_11_14);
    set_time(X509_getm_notAfter(x), s->not_before || s->not_after ? s->not_after : T_2033_05_18);
    assert_int_equal(X509_set_pubkey(x, key), 1);
    if (s->dns || s->ip)
        add_san(x, s);
    assert_true(X509_sign(x, signer, EVP_sha256()) > 0);
    return x;
}

/* Growing PEM text. */
struct pem {
    BIO *bio;
};

static struct pem pem_new(void)
{
    struct pem p = {BIO_new(BIO_s_mem())};
    assert_non_null(p.bio);
    return p;
}

static void pem_cert(struct pem *p, X509 *x)
{
    assert_int_equal(PEM_write_bio_X509(p->bio, x), 1);
    X509_free(x);
}

static void pem_text(struct pem *p, const char *text)
{
    assert_int_equal(BIO_write(p->bio, text, (int)strlen(text)), (int)strlen(text));
}

/* The text so far, borrowed from the BIO (valid until pem_free). */
static const char *pem_data(struct pem *p, size_t *len)
{
    BUF_MEM *mem = NULL;
    assert_int_equal(BIO_get_mem_ptr(p->bio, &mem), 1);
    assert_non_null(mem);
    *len = mem->length;
    return mem->data;
}

static void pem_free(struct pem *p)
{
    BIO_free(p->bio);
}

/* Parses the text and asserts success and an empty error queue. */
static void parse_ok(struct pem *p, struct certinfo *ci)
{
    size_t len;
    const char *data = pem_data(p, &len);
    char err[128] = "";
    if (certinfo_parse(data, len, ci, err, sizeof(err)) != 0)
        fail_msg("certinfo_parse: %s", err);
    assert_int_equal(ERR_peek_error(), 0);
}

/* Parses text that must fail with a message starting with want. */
static void parse_fails(const char *data, size_t len, const char *want)
{
    struct certinfo ci;
    memset(&ci, 0x5a, sizeof(ci)); /* whatever the caller had: it must come back zeroed */
    char err[128] = "";
    assert_int_equal(certinfo_parse(data, len, &ci, err, sizeof(err)), -1);
    if (strncmp(err, want, strlen(want)) != 0)
        fail_msg("\"%s\" does not start with \"%s\"", err, want);
    assert_null(ci.subject);
    assert_null(ci.issuer);
    assert_null(ci.names);
    assert_int_equal(ci.nnames, 0);
    assert_int_equal(ci.chain_len, 0);
    assert_int_equal(ERR_peek_error(), 0);
    certinfo_free(&ci);
}

static void test_ec_with_names(void **state)
{
    struct keys *k = *state;
    static const char *const dns[] = {"site.example", "*.site.example", "Other.Example", NULL};
    struct spec s = {.cn = "site.example", .org = "Example", .dns = dns, .ip = "192.0.2.1"};
    struct pem p = pem_new();
    pem_cert(&p, make_cert(k->ec, k->ec, &s));
    struct certinfo ci;
    parse_ok(&p, &ci);

    assert_string_equal(ci.subject, "CN=site.example,O=Example");
    assert_string_equal(ci.issuer, "CN=site.example,O=Example");
    /* the DNS names in order, as written; the IP address is not one of them, nor is the CN */
    assert_int_equal(ci.nnames, 3);
    assert_string_equal(ci.names[0], "site.example");
    assert_string_equal(ci.names[1], "*.site.example");
    assert_string_equal(ci.names[2], "Other.Example");
    assert_int_equal(ci.key, CERTINFO_KEY_ECDSA);
    assert_int_equal(ci.key_bits, 256);
    assert_int_equal(ci.not_before, T_2023_11_14);
    assert_int_equal(ci.not_after, T_2033_05_18);
    assert_int_equal(ci.chain_len, 0);
    certinfo_free(&ci);
    /* freed and zeroed: a second free does nothing */
    assert_null(ci.names);
    certinfo_free(&ci);
    pem_free(&p);
}

static void test_rsa_issued_by_ca(void **state)
{
    struct keys *k = *state;
    static const char *const dns[] = {"rsa.example", NULL};
    struct spec s = {.cn = "rsa.example", .issuer_cn = "Test Intermediate", .dns = dns};
    struct pem p = pem_new();
    pem_cert(&p, make_cert(k->rsa, k->ca, &s));
    struct certinfo ci;
    parse_ok(&p, &ci);
    assert_string_equal(ci.subject, "CN=rsa.example");
    assert_string_equal(ci.issuer, "CN=Test Intermediate,O=Test CA");
    assert_int_equal(ci.nnames, 1);
    assert_string_equal(ci.names[0], "rsa.example");
    assert_int_equal(ci.key, CERTINFO_KEY_RSA);
    assert_int_equal(ci.key_bits, 2048);
    certinfo_free(&ci);
    pem_free(&p);
}

static void test_cn_when_no_dns_names(void **state)
{
    struct keys *k = *state;
    struct pem p = pem_new();
    /* no subjectAltName at all */
    struct spec s = {.cn = "legacy.example", .org = "Old, Inc."};
    pem_cert(&p, make_cert(k->ec, k->ec, &s));
    struct certinfo ci;
    parse_ok(&p, &ci);
    assert_string_equal(ci.subject, "CN=legacy.example,O=Old\\, Inc."); /* RFC 2253 escape */
    assert_int_equal(ci.nnames, 1);
    assert_string_equal(ci.names[0], "legacy.example");
    certinfo_free(&ci);
    pem_free(&p);

    /* a subjectAltName with an IP address only: still no DNS names, so the CN */
    p = pem_new();
    struct spec ip_only = {.cn = "ip.example", .ip = "192.0.2.7"};
    pem_cert(&p, make_cert(k->ec, k->ec, &ip_only));
    parse_ok(&p, &ci);
    assert_int_equal(ci.nnames, 1);
    assert_string_equal(ci.names[0], "ip.example");
    certinfo_free(&ci);
    pem_free(&p);

    /* neither: no names at all, which is not an error */
    p = pem_new();
    struct spec bare = {.org = "Nameless"};
    pem_cert(&p, make_cert(k->ec, k->ec, &bare));
    parse_ok(&p, &ci);
    assert_string_equal(ci.subject, "O=Nameless");
    assert_int_equal(ci.nnames, 0);
    assert_null(ci.names);
    certinfo_free(&ci);
    pem_free(&p);
}

static void test_names_that_are_not_dns_names(void **state)
{
    struct keys *k = *state;
    /* a space, a control character and a byte above 127 are left out; the rest is kept as is,
     * for the SNI index to judge */
    static const char *const dns[] = {"ok.example",          "bad name.example",
                                      "tab\t.example",       "\xc3\xa9t\xc3\xa9.example",
                                      "under_score.example", NULL};
    struct spec s = {.cn = "cn.example", .dns = dns};
    struct pem p = pem_new();
    pem_cert(&p, make_cert(k->ec, k->ec, &s));
    struct certinfo ci;
    parse_ok(&p, &ci);
    assert_int_equal(ci.nnames, 2);
    assert_string_equal(ci.names[0], "ok.example");
    assert_string_equal(ci.names[1], "under_score.example");
    certinfo_free(&ci);
    pem_free(&p);

    /* a CN that is not ASCII is no name either */
    p = pem_new();
    struct spec utf8_cn = {.cn = "caf\xc3\xa9.example"};
    pem_cert(&p, make_cert(k->ec, k->ec, &utf8_cn));
    parse_ok(&p, &ci);
    assert_int_equal(ci.nnames, 0);
    assert_string_equal(ci.subject, "CN=caf\\C3\\A9.example");
    certinfo_free(&ci);
    pem_free(&p);
}

static void test_expired_and_far_dates(void **state)
{
    struct keys *k = *state;
    struct pem p = pem_new();
    struct spec expired = {
        .cn = "old.example", .not_before = T_2001_09_09, .not_after = T_2002_01_01};
    pem_cert(&p, make_cert(k->ec, k->ec, &expired));
    struct certinfo ci;
    parse_ok(&p, &ci);
    assert_int_equal(ci.not_before, T_2001_09_09);
    assert_int_equal(ci.not_after, T_2002_01_01);
    assert_true(ci.not_after < (int64_t)time(NULL));
    certinfo_free(&ci);
    pem_free(&p);

    /* after 2049 the time is a GeneralizedTime; before 1970 it is negative, and the second
     * before the epoch is -1, the value timegm() also uses for an error */
    p = pem_new();
    struct spec far = {.cn = "far.example", .not_before = -1, .not_after = T_2061_11_23};
    pem_cert(&p, make_cert(k->ec, k->ec, &far));
    parse_ok(&p, &ci);
    assert_int_equal(ci.not_before, -1);
    assert_int_equal(ci.not_after, T_2061_11_23);
    certinfo_free(&ci);
    pem_free(&p);

    p = pem_new();
    struct spec epoch = {.cn = "epoch.example", .not_before = -86400 * 365, .not_after = 0};
    pem_cert(&p, make_cert(k->ec, k->ec, &epoch));
    parse_ok(&p, &ci);
    assert_int_equal(ci.not_before, -86400 * 365);
    assert_int_equal(ci.not_after, 0);
    certinfo_free(&ci);
    pem_free(&p);
}

static void test_chain(void **state)
{
    struct keys *k = *state;
    static const char *const dns[] = {"leaf.example", NULL};
    struct spec leaf = {.cn = "leaf.example", .issuer_cn = "Test Intermediate", .dns = dns};
    struct spec inter = {.cn = "Test Intermediate", .org = "Test CA", .issuer_cn = "Test Root"};
    struct spec root = {.cn = "Test Root", .org = "Test CA"};
    struct pem p = pem_new();
    pem_text(&p, "Bag Attributes: text before a block is skipped\n");
    pem_cert(&p, make_cert(k->rsa, k->ca, &leaf));
    pem_cert(&p, make_cert(k->ca, k->ca, &inter));
    /* the private key in the same file is passed over, and not counted */
    assert_int_equal(PEM_write_bio_PrivateKey(p.bio, k->ec, NULL, NULL, 0, NULL, NULL), 1);
    pem_cert(&p, make_cert(k->ca, k->ca, &root));
    struct certinfo ci;
    parse_ok(&p, &ci);
    /* the fields are the first certificate's */
    assert_string_equal(ci.subject, "CN=leaf.example");
    assert_string_equal(ci.issuer, "CN=Test Intermediate,O=Test CA");
    assert_int_equal(ci.key, CERTINFO_KEY_RSA);
    assert_int_equal(ci.nnames, 1);
    assert_string_equal(ci.names[0], "leaf.example");
    assert_int_equal(ci.chain_len, 2);
    certinfo_free(&ci);
    pem_free(&p);
}

static void test_encrypted_key_needs_no_password(void **state)
{
    struct keys *k = *state;
    struct spec s = {.cn = "enc.example"};
    struct pem p = pem_new();
    /* an encrypted key before the certificate: reading it would prompt on the terminal */
    assert_int_equal(
        PEM_write_bio_PKCS8PrivateKey(p.bio, k->ec, EVP_aes_128_cbc(), "secret", 6, NULL, NULL), 1);
    pem_cert(&p, make_cert(k->ec, k->ec, &s));
    struct certinfo ci;
    parse_ok(&p, &ci);
    assert_string_equal(ci.subject, "CN=enc.example");
    assert_int_equal(ci.chain_len, 0);
    certinfo_free(&ci);
    pem_free(&p);
}

static void test_other_key_type(void **state)
{
    EVP_PKEY *ed = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
    assert_non_null(ed);
    X509 *x = X509_new();
    assert_non_null(x);
    assert_int_equal(X509_set_version(x, X509_VERSION_3), 1);
    add_entry(X509_get_subject_name(x), "CN", "ed.example");
    assert_int_equal(X509_set_issuer_name(x, X509_get_subject_name(x)), 1);
    set_time(X509_getm_notBefore(x), T_2023_11_14);
    set_time(X509_getm_notAfter(x), T_2033_05_18);
    assert_int_equal(X509_set_pubkey(x, ed), 1);
    assert_true(X509_sign(x, ed, NULL) > 0); /* Ed25519 signs without a separate digest */
    struct pem p = pem_new();
    pem_cert(&p, x);
    struct certinfo ci;
    parse_ok(&p, &ci);
    assert_int_equal(ci.key, CERTINFO_KEY_OTHER);
    assert_true(ci.key_bits > 0);
    certinfo_free(&ci);
    pem_free(&p);
    EVP_PKEY_free(ed);
}

static void test_invalid_text(void **state)
{
    struct keys *k = *state;
    parse_fails("", 0, "no certificate found");
    parse_fails(NULL, 0, "no certificate found");
    parse_fails("hello, world\n", 13, "no certificate found");
    static const char binary[] = "\x30\x82\x01\x0a\x00\xff\xfe-----BEGIN";
    parse_fails(binary, sizeof(binary) - 1, "no certificate found");
    static const char bad_base64[] = "-----BEGIN CERTIFICATE-----\n!!!!\n"
                                     "-----END CERTIFICATE-----\n";
    parse_fails(bad_base64, sizeof(bad_base64) - 1, "invalid PEM");
    /* base64 that decodes, to bytes that are no certificate */
    static const char not_der[] = "-----BEGIN CERTIFICATE-----\naGVsbG8gd29ybGQ=\n"
                                  "-----END CERTIFICATE-----\n";
    parse_fails(not_der, sizeof(not_der) - 1, "invalid certificate");

    struct spec s = {.cn = "cut.example"};
    struct pem p = pem_new();
    pem_cert(&p, make_cert(k->ec, k->ec, &s));
    size_t len;
    const char *full = pem_data(&p, &len);
    /* cut in the middle: no END line */
    parse_fails(full, len / 2, "invalid PEM");
    /* cut to the first line alone */
    parse_fails(full, 28, "invalid PEM");
    /* a few base64 lines gone: the END line is there, the DER inside is short */
    const char *second = memchr(full, '\n', len);
    assert_non_null(second);
    char *shortened = malloc(len);
    assert_non_null(shortened);
    size_t head = (size_t)(second - full) + 1;
    memcpy(shortened, full, head);
    size_t skip = head + 3 * 65; /* three full base64 lines */
    memcpy(shortened + head, full + skip, len - skip);
    parse_fails(shortened, head + len - skip, "invalid certificate");
    free(shortened);
    /* the text ends one byte early: the END line loses its newline, which PEM allows */
    struct certinfo ci;
    char err[128];
    assert_int_equal(certinfo_parse(full, len - 1, &ci, err, sizeof(err)), 0);
    certinfo_free(&ci);
    pem_free(&p);
}

static void test_key_only(void **state)
{
    struct keys *k = *state;
    struct pem p = pem_new();
    assert_int_equal(PEM_write_bio_PrivateKey(p.bio, k->ec, NULL, NULL, 0, NULL, NULL), 1);
    assert_int_equal(PEM_write_bio_PUBKEY(p.bio, k->ec), 1);
    size_t len;
    const char *data = pem_data(&p, &len);
    parse_fails(data, len, "no certificate found");
    pem_free(&p);
}

static void test_damaged_chain(void **state)
{
    struct keys *k = *state;
    struct spec s = {.cn = "a.example"};
    struct pem p = pem_new();
    pem_cert(&p, make_cert(k->ec, k->ec, &s));
    pem_cert(&p, make_cert(k->ec, k->ec, &s));
    pem_text(&p, "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n");
    size_t len;
    const char *data = pem_data(&p, &len);
    parse_fails(data, len, "invalid certificate 3 of the chain");
    pem_free(&p);
}

static void test_error_buffer(void **state)
{
    struct certinfo ci;
    /* no buffer, or one too small: no overflow, still a failure */
    assert_int_equal(certinfo_parse("x", 1, &ci, NULL, 0), -1);
    char tiny[5] = "zzzz";
    assert_int_equal(certinfo_parse("x", 1, &ci, tiny, 1), -1);
    assert_string_equal(tiny, "");
    assert_int_equal(certinfo_parse("x", 1, &ci, tiny, sizeof(tiny)), -1);
    assert_string_equal(tiny, "no c");
    assert_int_equal(ERR_peek_error(), 0);
    /* the free of a zeroed struct */
    struct certinfo zero = {0};
    certinfo_free(&zero);
}

static void test_load_file(void **state)
{
    struct keys *k = *state;
    static const char *const dns[] = {"file.example", "*.file.example", NULL};
    struct spec s = {.cn = "file.example", .dns = dns};
    struct pem p = pem_new();
    pem_cert(&p, make_cert(k->ec, k->ca, &s));
    pem_cert(&p, make_cert(k->ca, k->ca, &(struct spec){.cn = "Test Root"}));
    size_t len;
    const char *data = pem_data(&p, &len);

    char path[] = "/tmp/test_certinfo.XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, data, len), (ssize_t)len);
    assert_int_equal(close(fd), 0);

    struct certinfo ci;
    char err[128] = "";
    if (certinfo_load(path, &ci, err, sizeof(err)) != 0)
        fail_msg("certinfo_load: %s", err);
    assert_string_equal(ci.subject, "CN=file.example");
    assert_int_equal(ci.nnames, 2);
    assert_string_equal(ci.names[1], "*.file.example");
    assert_int_equal(ci.chain_len, 1);
    assert_int_equal(ci.not_after, T_2033_05_18);
    certinfo_free(&ci);
    assert_int_equal(unlink(path), 0);
    pem_free(&p);

    /* the file is gone now */
    memset(&ci, 0x5a, sizeof(ci));
    assert_int_equal(certinfo_load(path, &ci, err, sizeof(err)), -1);
    assert_string_equal(err, "cannot read file: No such file or directory");
    assert_null(ci.subject);
    assert_int_equal(ci.nnames, 0);
    /* a directory opens, but does not read */
    assert_int_equal(certinfo_load("/", &ci, err, sizeof(err)), -1);
    assert_string_equal(err, "cannot read file: Is a directory");
    /* an empty file */
    assert_int_equal(certinfo_load("/dev/null", &ci, err, sizeof(err)), -1);
    assert_string_equal(err, "no certificate found");
    assert_int_equal(ERR_peek_error(), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ec_with_names),
        cmocka_unit_test(test_rsa_issued_by_ca),
        cmocka_unit_test(test_cn_when_no_dns_names),
        cmocka_unit_test(test_names_that_are_not_dns_names),
        cmocka_unit_test(test_expired_and_far_dates),
        cmocka_unit_test(test_chain),
        cmocka_unit_test(test_encrypted_key_needs_no_password),
        cmocka_unit_test(test_other_key_type),
        cmocka_unit_test(test_invalid_text),
        cmocka_unit_test(test_key_only),
        cmocka_unit_test(test_damaged_chain),
        cmocka_unit_test(test_error_buffer),
        cmocka_unit_test(test_load_file),
    };
    return cmocka_run_group_tests_name("certinfo", tests, setup, teardown);
}
