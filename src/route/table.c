/*
 * table.c - a listener's route table (see route.h): the compiled routes, and the index that
 * narrows a request down to the few routes that could match it.
 *
 * The index is built once per snapshot. Routes are put in host groups, and within a group by path:
 *
 *   Host ------------- exact --> group g --+     in every group:
 *   Host minus 1 label - wild -> group g --+       exact path  -> its routes     (hash: g, path)
 *   always ----------------------> group 0 +       path prefix -> its routes     (hash: g, prefix)
 *                       (routes naming no host)    the distinct prefix lengths   (sorted array)
 *                                                  the other routes              (one list)
 *
 * A route goes to the group of each host it names ("*.example.com" to the wildcard group of
 * "example.com"), or to group 0 if it names none; within a group it goes to exactly one place:
 * its path if it has one, else its path_prefix, else the group's other routes. Every list holds
 * route indices in ascending order. All keys share one open-addressing hash table, each with a
 * tag (its kind and group), and it is sized to stay at most half full, so a probe always ends.
 *
 * A lookup visits at most three groups: the exact Host's, the wildcard group of the Host without
 * its first label, and group 0. In each it walks the list of the exact path, the lists of the
 * path's prefixes (one probe per distinct prefix length of the group; the path's words are
 * hashed once for all of them), and the other routes. Since the first route wins, the lists are
 * not merged: each is walked in order until a route holds or until an index that is not below
 * the best found so far, and the smallest index found wins. A candidate is tested in full
 * (route_entry_holds()), so the index can only leave out routes that could not match: the answer
 * is the linear scan's. Per request that is O(path + prefix lengths + candidates), and nothing is
 * allocated. Routes that name neither a host nor a path or prefix are the ones every request
 * walks through.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conf/conf.h"
#include "route/match.h"
#include "route/route.h"

enum key_kind {
    KEY_HOST = 0, /* an exact host -> its group */
    KEY_WILD,     /* a wildcard's suffix -> its group */
    KEY_PATH,     /* (group, exact path) -> a list */
    KEY_PREFIX,   /* (group, path prefix) -> a list */
};

#define TAG(kind, group) ((uint32_t)(kind) | (uint32_t)(group) << 2)
#define MAX_GROUPS       (UINT32_MAX >> 2)

struct slot {
    const char *key; /* into the conf; NULL: an empty slot */
    uint32_t len;
    uint32_t hash;
    uint32_t tag;   /* TAG(kind, group) */
    uint32_t value; /* KEY_HOST, KEY_WILD: a group; KEY_PATH, KEY_PREFIX: a list */
};

/* A list of route indices, ascending: t->members[off, off + len). */
struct span {
    uint32_t off, len;
};

struct group {
    uint32_t others;          /* the list of its routes with neither path nor path_prefix */
    uint32_t npaths;          /* its exact paths (none: no need to look) */
    uint32_t lens_off, nlens; /* its distinct prefix lengths, ascending, in t->lens */
};

struct route_table {
    struct route_entry *entries;
    unsigned n;
    struct route_name *names; /* every route's hosts and snis */
    struct slot *slots;
    uint32_t mask; /* slots - 1, a power of two minus one */
    struct group *groups;
    uint32_t ngroups;
    uint32_t nexact, nwild; /* host keys of each kind (none: no need to look) */
    struct span *lists;
    uint32_t nlists;
    uint32_t *members; /* what the lists hold */
    uint32_t *lens;
};

/*
 * The hash reads 8 bytes at a time. A key's hash is the state after its whole words, mixed with
 * its last partial word (zero-padded) and its length, so the hashes of a path's prefixes come
 * from one pass over its words. Host keys fold ASCII case, a word at a time.
 */
static uint64_t hash_start(uint32_t tag)
{
    return (0xcbf29ce484222325ull ^ tag) * 0x9e3779b97f4a7c15ull;
}

/* n (at most 8) bytes of p as a word, zero-padded. */
static uint64_t word(const char *p, size_t n)
{
    uint64_t w = 0;
    memcpy(&w, p, n);
    return w;
}

/* w with its bytes 'A'-'Z' lowercased, every other byte (those over 127 too) left alone. */
static uint64_t fold_word(uint64_t w)
{
    const uint64_t ones = 0x0101010101010101ull;
    uint64_t low = w & 0x7f * ones;
    uint64_t from_a = low + (0x80 - 'A') * ones; /* top bit of each byte: low >= 'A' */
    uint64_t past_z = low + (0x7f - 'Z') * ones; /* top bit: low > 'Z' */
    uint64_t upper = from_a & ~past_z & ~w & 0x80 * ones;
    return w | upper >> 2;
}

static uint64_t hash_word(uint64_t h, uint64_t w)
{
    h = (h ^ w) * 0x9e3779b97f4a7c15ull;
    return h ^ h >> 29;
}

static uint32_t hash_end(uint64_t h, size_t len)
{
    h = (h ^ len) * 0xd6e8feb86659fd93ull;
    return (uint32_t)(h ^ h >> 32);
}

static bool folds(uint32_t tag)
{
    return (tag & 3) == KEY_HOST || (tag & 3) == KEY_WILD;
}

static uint32_t hash_key(uint32_t tag, const char *key, size_t len)
{
    bool fold = folds(tag);
    uint64_t h = hash_start(tag);
    size_t i = 0;
    for (; i + 8 <= len; i += 8)
        h = hash_word(h, fold ? fold_word(word(key + i, 8)) : word(key + i, 8));
    if (i < len)
        h = hash_word(h, fold ? fold_word(word(key + i, len - i)) : word(key + i, len - i));
    return hash_end(h, len);
}

/* The slot of key, or the empty slot where it would go. */
static struct slot *probe(const struct route_table *t, uint32_t tag, uint32_t hash, const char *key,
                          size_t len)
{
    for (uint32_t i = hash & t->mask;; i = (i + 1) & t->mask) {
        struct slot *s = &t->slots[i];
        if (!s->key)
            return s;
        if (s->hash == hash && s->tag == tag && s->len == len &&
            (folds(tag) ? route_fold_eq(s->key, key, len) : memcmp(s->key, key, len) == 0))
            return s;
    }
}

static const struct slot *find(const struct route_table *t, uint32_t tag, const char *key,
                               size_t len)
{
    const struct slot *s = probe(t, tag, hash_key(tag, key, len), key, len);
    return s->key ? s : NULL;
}

/* ---- building ---- */

struct member {
    uint32_t list, route;
};

struct prefix_len {
    uint32_t group, len;
};

struct build {
    struct route_table *t;
    struct member *members; /* (list, route), in route order */
    size_t nmembers;
    struct prefix_len *lens;
    size_t nlens;
    uint32_t *mark; /* per group: the last route added to it, plus one */
};

/* The slot of key, added with a new value from *next if it was not there. */
static struct slot *key_slot(struct build *b, uint32_t tag, const char *key, size_t len,
                             uint32_t *next)
{
    uint32_t hash = hash_key(tag, key, len);
    struct slot *s = probe(b->t, tag, hash, key, len);
    if (!s->key)
        *s = (struct slot){
            .key = key, .len = (uint32_t)len, .hash = hash, .tag = tag, .value = (*next)++};
    return s;
}

static uint32_t host_group(struct build *b, const struct route_name *n)
{
    struct route_table *t = b->t;
    uint32_t before = t->ngroups;
    struct slot *s = key_slot(b, TAG(n->wild ? KEY_WILD : KEY_HOST, 0), n->s, n->len, &t->ngroups);
    if (t->ngroups != before) {
        t->groups[s->value].others = t->nlists++;
        *(n->wild ? &t->nwild : &t->nexact) += 1;
    }
    return s->value;
}

/* Puts route i in its one place in group g. */
static void add_member(struct build *b, uint32_t g, uint32_t i)
{
    struct route_table *t = b->t;
    const struct route_entry *e = &t->entries[i];
    const struct conf_route_match *m = &e->pub.conf->match;
    uint32_t list = t->groups[g].others;
    if (m->path) {
        uint32_t before = t->nlists;
        list = key_slot(b, TAG(KEY_PATH, g), m->path, e->path_len, &t->nlists)->value;
        t->groups[g].npaths += t->nlists != before;
    } else if (m->path_prefix) {
        list = key_slot(b, TAG(KEY_PREFIX, g), m->path_prefix, e->prefix_len, &t->nlists)->value;
        b->lens[b->nlens++] = (struct prefix_len){g, e->prefix_len};
    }
    b->members[b->nmembers++] = (struct member){list, i};
}

static int cmp_prefix_len(const void *pa, const void *pb)
{
    const struct prefix_len *a = pa, *b = pb;
    if (a->group != b->group)
        return a->group < b->group ? -1 : 1;
    return a->len < b->len ? -1 : a->len > b->len;
}

/* The lists from the (list, route) pairs: a stable counting sort, so each stays in route order.
 * A route is added to a group once, so no list holds an index twice. */
static int finish_lists(struct build *b)
{
    struct route_table *t = b->t;
    t->lists = calloc(t->nlists, sizeof(*t->lists));
    t->members = calloc(b->nmembers ? b->nmembers : 1, sizeof(*t->members));
    if (!t->lists || !t->members)
        return -1;
    for (size_t j = 0; j < b->nmembers; j++)
        t->lists[b->members[j].list].len++;
    uint32_t off = 0;
    for (uint32_t l = 0; l < t->nlists; l++) {
        t->lists[l].off = off;
        off += t->lists[l].len;
        t->lists[l].len = 0;
    }
    for (size_t j = 0; j < b->nmembers; j++) {
        struct span *s = &t->lists[b->members[j].list];
        t->members[s->off + s->len++] = b->members[j].route;
    }
    return 0;
}

/* Each group's distinct prefix lengths, ascending. */
static int finish_lens(struct build *b)
{
    struct route_table *t = b->t;
    t->lens = calloc(b->nlens ? b->nlens : 1, sizeof(*t->lens));
    if (!t->lens)
        return -1;
    qsort(b->lens, b->nlens, sizeof(*b->lens), cmp_prefix_len);
    uint32_t n = 0;
    for (size_t j = 0; j < b->nlens; j++) {
        const struct prefix_len *p = &b->lens[j];
        struct group *g = &t->groups[p->group];
        if (j > 0 && p->group == b->lens[j - 1].group && p->len == b->lens[j - 1].len)
            continue;
        if (g->nlens == 0)
            g->lens_off = n;
        g->nlens++;
        t->lens[n++] = p->len;
    }
    return 0;
}

/* Compiles route i's own parts: its names and its regular expression. */
static int compile_entry(struct route_table *t, const struct conf_route *r, unsigned i,
                         struct route_name **names, char *why, size_t why_size)
{
    struct route_entry *e = &t->entries[i];
    const struct conf_route_match *m = &r->match;
    e->pub = (struct route){.conf = r, .index = i};
    e->hosts = *names;
    e->nhosts = m->nhosts;
    for (unsigned j = 0; j < m->nhosts; j++)
        *(*names)++ = route_name_of(m->hosts[j]);
    e->snis = *names;
    e->nsnis = m->nsnis;
    for (unsigned j = 0; j < m->nsnis; j++)
        *(*names)++ = route_name_of(m->snis[j]);
    e->path_len = m->path ? (uint32_t)strlen(m->path) : 0;
    e->prefix_len = m->path_prefix ? (uint32_t)strlen(m->path_prefix) : 0;
    if (!m->path_regex)
        return 0;
    int rc = regcomp(&e->regex, m->path_regex, REG_EXTENDED | REG_NOSUB);
    if (rc != 0) {
        char text[160];
        regerror(rc, &e->regex, text, sizeof(text));
        if (why_size)
            snprintf(why, why_size, "routes[%u] (%s): path_regex: %s", i, r->name ? r->name : "",
                     text);
        return -1;
    }
    e->has_regex = true;
    return 0;
}

static int build_index(struct build *b)
{
    struct route_table *t = b->t;
    t->ngroups = 1; /* group 0: the routes that name no host; its "others" is list 0 */
    t->nlists = 1;
    for (uint32_t i = 0; i < t->n; i++) {
        const struct route_entry *e = &t->entries[i];
        if (e->nhosts == 0)
            add_member(b, 0, i);
        for (unsigned j = 0; j < e->nhosts; j++) {
            if (e->hosts[j].len == 0) /* matches no name: in no group */
                continue;
            uint32_t g = host_group(b, &e->hosts[j]);
            if (b->mark[g] == i + 1) /* "a.com" and "A.COM." are one group */
                continue;
            b->mark[g] = i + 1;
            add_member(b, g, i);
        }
    }
    return finish_lists(b) < 0 || finish_lens(b) < 0 ? -1 : 0;
}

struct route_table *route_table_new(const struct conf_listener *l, char *why, size_t why_size)
{
    struct route_table *t = calloc(1, sizeof(*t));
    struct build b = {.t = t};
    if (why_size)
        why[0] = '\0';
    if (!t)
        goto oom;
    /* Bounds for everything the build adds, so nothing grows: each route is a member of one
     * group per host (or of group 0), and a member adds at most one key and one list. */
    size_t nnames = 0, nhosts = 0, nmembers = 0;
    for (unsigned i = 0; i < l->nroutes; i++) {
        const struct conf_route_match *m = &l->routes[i].match;
        nnames += (size_t)m->nhosts + m->nsnis;
        nhosts += m->nhosts;
        nmembers += m->nhosts ? m->nhosts : 1;
    }
    size_t nkeys = nhosts + nmembers, nslots = 16;
    while (nslots < 2 * nkeys && nslots <= UINT32_MAX / 2)
        nslots *= 2;
    if (nslots < 2 * nkeys || nhosts + 1 > MAX_GROUPS || nkeys + 1 > UINT32_MAX)
        goto oom;
    t->n = l->nroutes;
    t->mask = (uint32_t)(nslots - 1);
    t->entries = calloc(t->n ? t->n : 1, sizeof(*t->entries));
    t->names = calloc(nnames ? nnames : 1, sizeof(*t->names));
    t->slots = calloc(nslots, sizeof(*t->slots));
    t->groups = calloc(nhosts + 1, sizeof(*t->groups));
    b.members = calloc(nmembers ? nmembers : 1, sizeof(*b.members));
    b.lens = calloc(nmembers ? nmembers : 1, sizeof(*b.lens));
    b.mark = calloc(nhosts + 1, sizeof(*b.mark));
    if (!t->entries || !t->names || !t->slots || !t->groups || !b.members || !b.lens || !b.mark)
        goto oom;
    struct route_name *names = t->names;
    for (unsigned i = 0; i < t->n; i++)
        if (compile_entry(t, &l->routes[i], i, &names, why, why_size) < 0)
            goto fail;
    if (build_index(&b) < 0)
        goto oom;
    free(b.members);
    free(b.lens);
    free(b.mark);
    return t;
oom:
    if (why_size)
        snprintf(why, why_size, "out of memory building the route table");
fail:
    free(b.members);
    free(b.lens);
    free(b.mark);
    route_table_free(t);
    return NULL;
}

void route_table_free(struct route_table *t)
{
    if (!t)
        return;
    for (unsigned i = 0; t->entries && i < t->n; i++)
        if (t->entries[i].has_regex)
            regfree(&t->entries[i].regex);
    free(t->entries);
    free(t->names);
    free(t->slots);
    free(t->groups);
    free(t->lists);
    free(t->members);
    free(t->lens);
    free(t);
}

unsigned route_table_count(const struct route_table *t)
{
    return t->n;
}

const struct route *route_table_get(const struct route_table *t, unsigned i)
{
    return i < t->n ? &t->entries[i].pub : NULL;
}

/* ---- lookup ---- */

/* Walks a list in order while its indices are below *best; the first route that holds is the
 * new best. */
static void walk(const struct route_table *t, uint32_t list, struct route_keys *k, uint32_t *best)
{
    const struct span *s = &t->lists[list];
    for (uint32_t j = 0; j < s->len; j++) {
        uint32_t i = t->members[s->off + j];
        if (i >= *best)
            return;
        if (route_entry_holds(&t->entries[i], k)) {
            *best = i;
            return;
        }
    }
}

static void visit_group(const struct route_table *t, uint32_t g, struct route_keys *k,
                        uint32_t *best)
{
    const struct group *grp = &t->groups[g];
    walk(t, grp->others, k, best);
    const struct slot *s = NULL;
    if (grp->npaths)
        s = find(t, TAG(KEY_PATH, g), k->path, k->path_len);
    if (s)
        walk(t, s->value, k, best);
    /* hash_key() of each prefix, the whole words hashed once for all of them */
    uint32_t tag = TAG(KEY_PREFIX, g);
    uint64_t h = hash_start(tag);
    size_t words = 0; /* bytes of the path in h */
    for (uint32_t j = 0; j < grp->nlens; j++) {
        uint32_t len = t->lens[grp->lens_off + j];
        if (len > k->path_len)
            break;
        for (; words + 8 <= len; words += 8)
            h = hash_word(h, word(k->path + words, 8));
        uint64_t last = words < len ? hash_word(h, word(k->path + words, len - words)) : h;
        s = probe(t, tag, hash_end(last, len), k->path, len);
        if (s->key)
            walk(t, s->value, k, best);
    }
}

const struct route *route_match(const struct route_table *t, const struct route_request *req)
{
    char buf[ROUTE_REGEX_STACK];
    struct route_keys k;
    route_keys_init(&k, req, buf, sizeof(buf));
    uint32_t best = t->n;
    if (k.host && k.host_len > 0) {
        const struct slot *s = t->nexact ? find(t, TAG(KEY_HOST, 0), k.host, k.host_len) : NULL;
        if (s)
            visit_group(t, s->value, &k, &best);
        const char *dot = t->nwild ? memchr(k.host, '.', k.host_len) : NULL;
        if (dot && dot != k.host) { /* a wildcard covers one non-empty label */
            size_t skip = (size_t)(dot - k.host) + 1;
            s = find(t, TAG(KEY_WILD, 0), k.host + skip, k.host_len - skip);
            if (s)
                visit_group(t, s->value, &k, &best);
        }
    }
    visit_group(t, 0, &k, &best);
    route_keys_done(&k);
    return best < t->n ? &t->entries[best].pub : NULL;
}
