/*
 * sni.c - the SNI name index (see sni.h).
 *
 * Names are validated and lowercased once, when they are added, and kept in one growing text
 * arena; each entry refers to its name by offset, so the arena can grow without fixing pointers.
 * There are two arrays of entries: exact names ("www.example.com") and wildcard suffixes (the
 * "example.com" of "*.example.com"). finish() sorts both and drops the later of two equal names.
 *
 * A lookup lowercases the client's name into a stack buffer, binary-searches the exact names,
 * and then the wildcard suffixes with the name's first label cut off: a wildcard covers exactly
 * one label, so the suffix to look for is always what follows the first dot. It allocates
 * nothing and takes no lock, so any number of threads can share a finished index.
 */
#include "tls/sni.h"

#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define SNI_MAX_NAME  253 /* the longest DNS name, in its text form, without a trailing dot */
#define SNI_MAX_LABEL 63

struct sni_entry {
    uint32_t off;   /* of the lowercase name in the arena */
    uint32_t len;   /* never more than SNI_MAX_NAME */
    uint32_t seq;   /* order of addition: the first added keeps a name */
    unsigned group; /* at most INT_MAX */
};

struct sni_list {
    struct sni_entry *v;
    size_t n, cap;
};

struct sni_index {
    char *text; /* every stored name, lowercase, back to back, no terminators */
    size_t text_len, text_cap;
    struct sni_list exact; /* whole names */
    struct sni_list wild;  /* wildcard names without their "*." */
    uint32_t next_seq;
    bool sorted; /* nothing was added since finish(): lookups may binary-search */
};

/* A lowercase, validated name: the form that is stored and compared. */
struct sni_key {
    char s[SNI_MAX_NAME];
    size_t len;
    bool wild; /* s holds the suffix of a wildcard name, without the "*." */
};

static char lower(char c)
{
    return c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
}

static bool is_ldh(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-';
}

/*
 * Checks name against the rules of sni.h and writes its lowercase form to key. A wildcard is
 * accepted only when allow_wild is set (a certificate's name may be one, a client's may not).
 * One code path for index names, client names and sni_name_covers() keeps them in agreement.
 */
static bool make_key(const char *name, size_t len, bool allow_wild, struct sni_key *key)
{
    if (len > 0 && name[len - 1] == '.')
        len--;
    if (len == 0 || len > SNI_MAX_NAME)
        return false;
    size_t start = 0;
    key->wild = false;
    if (name[0] == '*') {
        if (!allow_wild || len < 2 || name[1] != '.')
            return false;
        key->wild = true;
        start = 2;
    }
    size_t label = 0, labels = 1;
    key->len = 0;
    for (size_t i = start; i < len; i++) {
        char c = lower(name[i]);
        if (c == '.') {
            if (label == 0)
                return false;
            label = 0;
            labels++;
        } else if (is_ldh(c)) {
            if (++label > SNI_MAX_LABEL)
                return false;
        } else {
            return false; /* '*' inside a name, '_', NUL, spaces, bytes above 127... */
        }
        key->s[key->len++] = c;
    }
    if (label == 0)
        return false; /* empty last label: "a..", or "*." with nothing after it */
    /* "*.com" would cover a whole top-level domain: at least two labels must follow the "*." */
    return !key->wild || labels >= 2;
}

/* Any total order serves a binary search; length first settles most comparisons in one step. */
static int cmp_name(const char *a, size_t alen, const char *b, size_t blen)
{
    if (alen != blen)
        return alen < blen ? -1 : 1;
    return memcmp(a, b, alen);
}

/* Sorts by name, then by order of addition, so the first added of equal names comes first. */
static int cmp_entry(const void *pa, const void *pb, void *text)
{
    const struct sni_entry *a = pa, *b = pb;
    const char *t = text;
    int c = cmp_name(t + a->off, a->len, t + b->off, b->len);
    if (c)
        return c;
    return a->seq < b->seq ? -1 : a->seq > b->seq;
}

struct sni_index *sni_index_new(void)
{
    return calloc(1, sizeof(struct sni_index));
}

void sni_index_free(struct sni_index *ix)
{
    if (!ix)
        return;
    free(ix->text);
    free(ix->exact.v);
    free(ix->wild.v);
    free(ix);
}

static int grow(void **v, size_t *cap, size_t need, size_t size)
{
    if (need <= *cap)
        return 0;
    size_t n = *cap ? *cap : 16;
    while (n < need) {
        if (n > SIZE_MAX / 2 / size)
            return -1;
        n *= 2;
    }
    void *p = realloc(*v, n * size);
    if (!p)
        return -1;
    *v = p;
    *cap = n;
    return 0;
}

int sni_index_add(struct sni_index *ix, const char *name, size_t len, unsigned group)
{
    struct sni_key key;
    /* groups come back from lookups as an int, where -1 means "none" */
    if (group > INT_MAX || !make_key(name, len, true, &key))
        return 1;
    /* offsets and sequence numbers are 32-bit: an index of 4 GiB of names is not an index */
    if (ix->text_len + key.len > UINT32_MAX || ix->next_seq == UINT32_MAX)
        return -1;
    struct sni_list *list = key.wild ? &ix->wild : &ix->exact;
    void *v = list->v, *text = ix->text;
    if (grow(&v, &list->cap, list->n + 1, sizeof(struct sni_entry)) < 0)
        return -1;
    list->v = v;
    if (grow(&text, &ix->text_cap, ix->text_len + key.len, 1) < 0)
        return -1;
    ix->text = text;
    memcpy(ix->text + ix->text_len, key.s, key.len);
    list->v[list->n++] = (struct sni_entry){.off = (uint32_t)ix->text_len,
                                            .len = (uint32_t)key.len,
                                            .seq = ix->next_seq++,
                                            .group = group};
    ix->text_len += key.len;
    ix->sorted = false;
    return 0;
}

/* Sorts a list by name, then by order of addition, and keeps only the first of equal names. */
static void sort_list(char *text, struct sni_list *list)
{
    if (list->n < 2)
        return;
    qsort_r(list->v, list->n, sizeof(*list->v), cmp_entry, text);
    size_t kept = 1;
    for (size_t i = 1; i < list->n; i++) {
        const struct sni_entry *prev = &list->v[kept - 1], *e = &list->v[i];
        if (cmp_name(text + prev->off, prev->len, text + e->off, e->len) != 0)
            list->v[kept++] = *e;
    }
    list->n = kept;
}

int sni_index_finish(struct sni_index *ix)
{
    /* Nothing here allocates, so this cannot fail today; the -1 of the contract leaves room for a
     * lookup structure that would (a hash table, a trie). */
    sort_list(ix->text, &ix->exact);
    sort_list(ix->text, &ix->wild);
    ix->sorted = true;
    return 0;
}

static int find(const struct sni_index *ix, const struct sni_list *list, const char *s, size_t len)
{
    size_t lo = 0, hi = list->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        const struct sni_entry *e = &list->v[mid];
        int c = cmp_name(s, len, ix->text + e->off, e->len);
        if (c == 0)
            return (int)e->group;
        if (c < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    return -1;
}

int sni_index_lookup(const struct sni_index *ix, const char *name, size_t len)
{
    struct sni_key key;
    /* an unsorted index cannot be searched: finding nothing is the safe answer */
    if (!ix->sorted || !make_key(name, len, false, &key))
        return -1;
    int group = find(ix, &ix->exact, key.s, key.len);
    if (group >= 0)
        return group;
    const char *dot = memchr(key.s, '.', key.len);
    if (!dot)
        return -1;
    size_t skip = (size_t)(dot - key.s) + 1;
    return find(ix, &ix->wild, key.s + skip, key.len - skip);
}

bool sni_name_covers(const char *name, size_t name_len, const char *host, size_t host_len)
{
    struct sni_key n, h;
    if (!make_key(name, name_len, true, &n) || !make_key(host, host_len, false, &h))
        return false;
    if (!n.wild)
        return cmp_name(n.s, n.len, h.s, h.len) == 0;
    const char *dot = memchr(h.s, '.', h.len);
    if (!dot)
        return false;
    size_t skip = (size_t)(dot - h.s) + 1;
    return cmp_name(n.s, n.len, h.s + skip, h.len - skip) == 0;
}
