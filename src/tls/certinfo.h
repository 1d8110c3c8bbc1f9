/*
 * certinfo.h - what an operator needs to know about a certificate file: its subject, issuer,
 * DNS names, key type and validity, read from PEM text.
 *
 * Used when a configuration is loaded (names for SNI, a warning for a certificate that expires
 * soon, an error for one that has expired) and by the admin API, metrics and dashboard.
 * Nothing here keeps OpenSSL objects: the result is plain text and numbers, owned by the caller.
 */
#ifndef FULCRUM_TLS_CERTINFO_H
#define FULCRUM_TLS_CERTINFO_H

#include <stddef.h>
#include <stdint.h>

enum certinfo_key { CERTINFO_KEY_OTHER, CERTINFO_KEY_RSA, CERTINFO_KEY_ECDSA };

struct certinfo {
    char *subject; /* one line, RFC 2253 order ("CN=site.example,O=Example") */
    char *issuer;  /* the same form */
    char **names;  /* subjectAltName DNS names; the subject's CN when there are none. Only
                    * names of printable ASCII without spaces are kept (no NUL, no UTF-8) */
    unsigned nnames;
    enum certinfo_key key;
    unsigned key_bits;  /* 2048, 256, ... */
    int64_t not_before; /* Unix time */
    int64_t not_after;  /* Unix time */
    unsigned chain_len; /* certificates after the first one in the text (intermediates) */
};

/*
 * Reads the first certificate of PEM text (len bytes) and counts the ones that follow. Returns 0,
 * or -1 with a message in err (e.g. "no certificate found", "invalid PEM in certificate: bad end
 * line", "invalid certificate 2 of the chain: too long") on failure; *out is then zeroed. Blocks
 * that are not certificates (a private key in the same file) are passed over. Leaves the thread's
 * OpenSSL error queue empty, success or failure.
 */
int certinfo_parse(const char *pem, size_t len, struct certinfo *out, char *err, size_t err_size);

/* The same for a file; the message names the problem, not the file (the caller does). */
int certinfo_load(const char *path, struct certinfo *out, char *err, size_t err_size);

/* Releases what certinfo_parse() allocated; the struct itself is the caller's. Safe on a
 * zeroed struct. */
void certinfo_free(struct certinfo *ci);

#endif
