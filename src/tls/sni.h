/*
 * sni.h - which certificate group a TLS client gets, by the server name (SNI) it asked for.
 *
 * A listener's certificates are put in groups (certificates covering the same names, e.g. an
 * ECDSA and an RSA one); every DNS name of a group's certificates is added here with the group's
 * number. A lookup then answers with the group for a ClientHello's server name:
 *   - names compare without regard to ASCII case, and a trailing dot is ignored;
 *   - an exact name wins over a wildcard;
 *   - a wildcard "*.example.com" covers exactly one more label: "a.example.com", not
 *     "example.com" nor "a.b.example.com";
 *   - when two groups add the same name, the one added first keeps it.
 * The index is built once (add, then finish) and only read afterwards, by any thread.
 */
#ifndef FULCRUM_TLS_SNI_H
#define FULCRUM_TLS_SNI_H

#include <stdbool.h>
#include <stddef.h>

struct sni_index;

struct sni_index *sni_index_new(void);
void sni_index_free(struct sni_index *ix);

/*
 * Adds name (len bytes, not NUL-terminated) for group. A name is a DNS name of letters, digits,
 * '-' and '.', labels of 1-63 characters, at most 253 characters, optionally starting with the
 * wildcard label "*." followed by at least two labels. Returns 0, 1 if the name is not valid
 * (it is ignored: certificates carry all sorts of names), or -1 if memory ran out. A trailing dot
 * is not counted in the 253. group must be at most INT_MAX, since lookups return it as an int; a
 * larger one is refused like an invalid name (1).
 */
int sni_index_add(struct sni_index *ix, const char *name, size_t len, unsigned group);

/* Sorts the index for lookups. Returns 0, or -1 if memory ran out. Adding after finish is
 * allowed but needs another finish: until then lookups find nothing. */
int sni_index_finish(struct sni_index *ix);

/* The group for the server name a client sent (len bytes), or -1 if no name covers it. The name
 * must follow the rules above without a wildcard: one with a NUL byte, a '*' or any other
 * character outside them matches nothing. Allocates nothing. */
int sni_index_lookup(const struct sni_index *ix, const char *name, size_t len);

/* Does name (a certificate's DNS name, possibly a wildcard) cover host? The same rules as the
 * index, for one pair; used to check a configured server name against a certificate. */
bool sni_name_covers(const char *name, size_t name_len, const char *host, size_t host_len);

#endif
