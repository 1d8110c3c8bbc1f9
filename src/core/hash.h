/*
 * hash.h - one fixed 64-bit hash of bytes, the same in every process and on every machine (no
 * per-process seed, bytes read in a fixed order), for what several fulcrum instances must agree
 * on: a hash key's server, a server's sticky cookie value.
 *
 * It is not meant to resist an attacker choosing keys (a client can already choose its server by
 * sending the key of its choice); nothing here decides memory use or running time.
 */
#ifndef FULCRUM_HASH_H
#define FULCRUM_HASH_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* A strong finaliser (splitmix64's): every input bit moves about half the output bits. */
static inline uint64_t hash_mix64(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* 8 bytes as a little-endian number, whatever the machine. */
static inline uint64_t hash_load64(const unsigned char *p)
{
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    uint64_t v;
    memcpy(&v, p, sizeof(v)); /* one load */
    return v;
#else
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
#endif
}

static inline uint64_t hash_bytes(const void *data, size_t len, uint64_t seed)
{
    const unsigned char *p = data;
    uint64_t h = hash_mix64(seed ^ 0x9e3779b97f4a7c15ull ^ (uint64_t)len);
    while (len >= 8) {
        h = hash_mix64(h ^ hash_load64(p)) + 0x9e3779b97f4a7c15ull;
        p += 8;
        len -= 8;
    }
    uint64_t tail = 0;
    for (size_t i = len; i > 0; i--)
        tail = tail << 8 | p[i - 1];
    return hash_mix64(h ^ tail ^ ((uint64_t)len << 56));
}

#endif
