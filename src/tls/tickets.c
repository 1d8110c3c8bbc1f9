/*
 * tickets.c - derived session ticket keys (tickets.h).
 *
 * For period p the key material is HMAC-SHA256(secret, label || p) for three labels: the 16-byte
 * key name written into each ticket, the AES-256-CBC key and the HMAC-SHA256 key that OpenSSL's
 * ticket format uses. Each thread keeps the keys of the two periods it may need, recomputing them
 * when the period moves on; the secret itself is written once, before the worker threads start.
 */
#include "tls/tickets.h"

#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <string.h>
#include <time.h>

static unsigned char secret[32];

struct ticket_keys {
    uint64_t period; /* 0: not computed */
    unsigned char name[16];
    unsigned char aes[32];
    unsigned char mac[32];
};

int tls_tickets_init(void)
{
    if (RAND_bytes(secret, sizeof(secret)) != 1) {
        ERR_clear_error();
        return -1;
    }
    return 0;
}

static void derive(uint64_t period, const char *label, unsigned char out[32])
{
    unsigned char msg[16 + 8];
    size_t len = strlen(label);
    memcpy(msg, label, len);
    for (int i = 0; i < 8; i++)
        msg[len + (size_t)i] = (unsigned char)(period >> (56 - 8 * i));
    unsigned int out_len = 32;
    if (!HMAC(EVP_sha256(), secret, sizeof(secret), msg, len + 8, out, &out_len)) {
        ERR_clear_error();
        memset(out, 0, 32); /* unusable keys fail to decrypt: a full handshake, not a crash */
    }
}

/* The keys of period (the thread's copy, computed on first use). */
static const struct ticket_keys *keys_for(uint64_t period)
{
    static _Thread_local struct ticket_keys cache[2];
    struct ticket_keys *k = &cache[period & 1];
    if (k->period != period) {
        unsigned char name[32];
        derive(period, "name", name);
        memcpy(k->name, name, sizeof(k->name));
        derive(period, "aes", k->aes);
        derive(period, "mac", k->mac);
        k->period = period;
    }
    return k;
}

static uint64_t current_period(void)
{
    return (uint64_t)time(NULL) / TLS_TICKET_PERIOD + 1; /* never 0: 0 marks "not computed" */
}

void tls_tickets_name(uint64_t now, unsigned char name[16])
{
    memcpy(name, keys_for(now / TLS_TICKET_PERIOD + 1)->name, 16);
}

static int set_mac(EVP_MAC_CTX *hctx, const struct ticket_keys *k)
{
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_octet_string(OSSL_MAC_PARAM_KEY, (void *)k->mac, sizeof(k->mac)),
        OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, "SHA256", 0),
        OSSL_PARAM_construct_end(),
    };
    return EVP_MAC_CTX_set_params(hctx, params);
}

/*
 * OpenSSL's ticket key callback. Encrypting (enc = 1): name the current key, a fresh IV.
 * Decrypting: 1 for a ticket of the current period, 2 (accept, then issue a new ticket) for the
 * previous one, 0 (unknown: full handshake) for anything else; -1 on an internal failure. Over
 * TLS 1.3 always 2: clients use a ticket once (RFC 8446 appendix C.4) and keep only the session
 * of the connection they just made, which can be resumed again only if it got a ticket of its own.
 */
static int ticket_key_cb(SSL *ssl, unsigned char key_name[16], unsigned char *iv,
                         EVP_CIPHER_CTX *cctx, EVP_MAC_CTX *hctx, int enc)
{
    uint64_t now = current_period();
    if (enc) {
        const struct ticket_keys *k = keys_for(now);
        if (RAND_bytes(iv, 16) != 1 ||
            EVP_EncryptInit_ex(cctx, EVP_aes_256_cbc(), NULL, k->aes, iv) != 1 ||
            set_mac(hctx, k) != 1) {
            ERR_clear_error();
            return -1;
        }
        memcpy(key_name, k->name, 16);
        return 1;
    }
    for (uint64_t age = 0; age < 2 && age < now; age++) {
        const struct ticket_keys *k = keys_for(now - age);
        if (memcmp(key_name, k->name, 16) != 0)
            continue;
        if (set_mac(hctx, k) != 1 ||
            EVP_DecryptInit_ex(cctx, EVP_aes_256_cbc(), NULL, k->aes, iv) != 1) {
            ERR_clear_error();
            return -1;
        }
        return age == 0 && SSL_version(ssl) != TLS1_3_VERSION ? 1 : 2;
    }
    return 0;
}

int tls_tickets_use(struct ssl_ctx_st *ctx)
{
    /* A ticket outlives at most two periods: tell clients so, and keep the session cache's
     * entries for as long. */
    SSL_CTX_set_timeout(ctx, TLS_TICKET_PERIOD);
    return SSL_CTX_set_tlsext_ticket_key_evp_cb(ctx, ticket_key_cb) == 1 ? 0 : -1;
}
