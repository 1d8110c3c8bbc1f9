/*
 * maglev.c - builds the weighted Maglev table (maglev.h).
 *
 * Each member has its own permutation of the slots: it starts at offset = h1 % M and moves by
 * skip = h2 % (M - 1) + 1, h1 and h2 being two seeded hashes of its name and address; M is prime,
 * so the permutation visits every slot. Members take turns, in the canonical order (by name, then
 * address), each claiming the next slot of its permutation that nobody has yet, until the table
 * is full. Weights set how many turns: each round adds a member's weight to its credit, and it
 * claims one slot per `wmax` of credit (wmax, the heaviest weight), so the heaviest claims one
 * slot per round and a member of half that weight one every other round. Shares of slots follow
 * shares of weight to within the last, partial round.
 *
 * The cost is about M x ln M probes (the last empty slots are the hard ones to find) plus the
 * turns: one credit update per member and round, or, when weights are so uneven that most of
 * those updates would claim nothing, a heap that yields the same turns in the same order.
 * maglev_build() copies a previous table instead when its inputs are the same.
 */
#include "lb/maglev.h"

#include <stdlib.h>
#include <string.h>

#include "conf/conf.h"
#include "core/hash.h"

/* Seeds of a member's two hashes, and of the fingerprint of a list. */
#define SEED_OFFSET 0x3c6ef372fe94f82bull
#define SEED_SKIP   0xa54ff53a5f1d36f1ull
#define SEED_INPUTS 0x510e527fade682d1ull

/* The sentinel of an empty slot while the table fills: no member has this index. */
#define EMPTY16 UINT16_MAX
#define EMPTY32 UINT32_MAX

uint64_t maglev_digest(const void *data, size_t len)
{
    return hash_bytes(data, len, 0);
}

/* A member's identity: its name and address, with a 0 byte between so that ("ab", "c") and
 * ("a", "bc") differ. */
static uint64_t member_digest(const struct maglev_member *m)
{
    const char *name = m->name ? m->name : "", *addr = m->addr ? m->addr : "";
    return hash_bytes(addr, strlen(addr), hash_bytes(name, strlen(name), 0));
}

static bool is_prime(uint32_t n)
{
    if (n < 2)
        return false;
    if (n % 2 == 0)
        return n == 2;
    for (uint64_t d = 3; d * d <= n; d += 2)
        if (n % d == 0)
            return false;
    return true;
}

uint32_t maglev_next_prime(uint32_t n)
{
    if (n <= 2)
        return 2;
    if (n % 2 == 0)
        n++;
    while (!is_prime(n))
        n += 2;
    return n;
}

uint32_t maglev_table_size(uint32_t configured, unsigned n)
{
    uint32_t m = configured ? configured : CONF_HASH_TABLE_DEFAULT;
    if (m >= CONF_HASH_TABLE_MAX)
        return CONF_HASH_TABLE_MAX;
    m = maglev_next_prime(m); /* the configuration asks for a prime; a test may not */
    /* Too small for n: the size doubles (to the next prime) until it is big enough. Steps of a
     * doubling, rather than exactly 100 x n, so that adding or removing one server almost never
     * changes the size, which would move almost every key. */
    uint64_t want = (uint64_t)n * CONF_HASH_TABLE_PER_SERVER;
    while (m < want && m < CONF_HASH_TABLE_MAX)
        m = 2 * (uint64_t)m >= CONF_HASH_TABLE_MAX ? CONF_HASH_TABLE_MAX : maglev_next_prime(2 * m);
    return m < CONF_HASH_TABLE_MAX ? m : CONF_HASH_TABLE_MAX; /* itself a prime */
}

/* A member while the table fills, in canonical order. */
struct filler {
    const char *name, *addr;
    unsigned weight;
    uint32_t index; /* in the caller's list */
    uint32_t pos;   /* the next slot of its permutation */
    uint32_t skip;
    uint64_t credit;
};

static int canonical(const void *a, const void *b)
{
    const struct filler *x = a, *y = b;
    int c = strcmp(x->name, y->name);
    if (!c)
        c = strcmp(x->addr, y->addr);
    if (!c && x->weight != y->weight)
        c = x->weight < y->weight ? -1 : 1;
    /* Only a member listed twice gets here: the two are alike, whichever takes which slots. */
    if (!c && x->index != y->index)
        c = x->index < y->index ? -1 : 1;
    return c;
}

static uint64_t fingerprint(const struct maglev_member *members, unsigned n, uint32_t configured)
{
    uint64_t f = maglev_mix(((uint64_t)n << 32) | configured, SEED_INPUTS);
    for (unsigned i = 0; i < n; i++)
        f = maglev_mix(f ^ member_digest(&members[i]), members[i].weight + SEED_INPUTS);
    return f;
}

static int alloc_entries(struct maglev *t)
{
    if (t->nmembers < EMPTY16)
        t->narrow = malloc((size_t)t->size * sizeof(*t->narrow));
    else
        t->wide = malloc((size_t)t->size * sizeof(*t->wide));
    return t->narrow || t->wide ? 0 : -1;
}

/* x claims the next free slot of its permutation. */
static void claim(struct maglev *t, struct filler *x)
{
    uint32_t m = t->size;
    if (t->narrow) {
        while (t->narrow[x->pos] != EMPTY16)
            x->pos = x->pos + x->skip >= m ? x->pos + x->skip - m : x->pos + x->skip;
        t->narrow[x->pos] = (uint16_t)x->index;
    } else {
        while (t->wide[x->pos] != EMPTY32)
            x->pos = x->pos + x->skip >= m ? x->pos + x->skip - m : x->pos + x->skip;
        t->wide[x->pos] = x->index;
    }
}

/* Members take turns claiming the next free slot of their permutation until none is left: in
 * each round, in canonical order, every member whose credit reached wmax claims one. */
static void fill_by_rounds(struct maglev *t, struct filler *f, unsigned nf, uint64_t wmax)
{
    uint32_t filled = 0;
    for (;;) {
        for (unsigned i = 0; i < nf; i++) {
            struct filler *x = &f[i];
            for (x->credit += x->weight; x->credit >= wmax; x->credit -= wmax) {
                claim(t, x);
                if (++filled == t->size)
                    return;
            }
        }
    }
}

/*
 * The same turns in the same order, found with a heap instead of a visit of every member in
 * every round. A member never claims twice in a round (no weight is above wmax), and its k-th
 * claim falls in round ceil(k x wmax / weight); ordering claims by (round, canonical position)
 * is the order of fill_by_rounds(). Worth it when weights are very uneven: with one server of
 * weight 256 and 999 of weight 1, the rounds visit members about 25 million times for 131,101
 * claims.
 */
struct turn {
    uint64_t round;
    uint32_t member; /* canonical position */
};

static bool before(const struct turn *a, const struct turn *b)
{
    return a->round < b->round || (a->round == b->round && a->member < b->member);
}

static void sift_down(struct turn *h, unsigned n, unsigned i)
{
    for (;;) {
        unsigned l = 2 * i + 1, r = l + 1, m = i;
        if (l < n && before(&h[l], &h[m]))
            m = l;
        if (r < n && before(&h[r], &h[m]))
            m = r;
        if (m == i)
            return;
        struct turn tmp = h[i];
        h[i] = h[m];
        h[m] = tmp;
        i = m;
    }
}

static int fill_by_heap(struct maglev *t, struct filler *f, unsigned nf, uint64_t wmax)
{
    struct turn *h = malloc(nf * sizeof(*h));
    if (!h)
        return -1;
    for (unsigned i = 0; i < nf; i++) { /* claims so far are counted in credit */
        f[i].credit = 1;
        h[i] = (struct turn){(wmax + f[i].weight - 1) / f[i].weight, i};
    }
    for (unsigned i = nf / 2; i-- > 0;)
        sift_down(h, nf, i);
    for (uint32_t filled = 0; filled < t->size; filled++) {
        struct filler *x = &f[h[0].member];
        claim(t, x);
        x->credit++;
        h[0].round = (x->credit * wmax + x->weight - 1) / x->weight;
        sift_down(h, nf, 0);
    }
    free(h);
    return 0;
}

static int fill(struct maglev *t, struct filler *f, unsigned nf, uint64_t wmax)
{
    if (t->narrow)
        memset(t->narrow, 0xff, (size_t)t->size * sizeof(*t->narrow));
    else
        memset(t->wide, 0xff, (size_t)t->size * sizeof(*t->wide));
    uint64_t wsum = 0;
    for (unsigned i = 0; i < nf; i++)
        wsum += f[i].weight;
    /* member visits by rounds, against about 16 steps of the heap per claim */
    uint64_t visits = (uint64_t)t->size * wmax / wsum * nf;
    if (visits <= 16 * (uint64_t)t->size)
        return fill_by_rounds(t, f, nf, wmax), 0;
    return fill_by_heap(t, f, nf, wmax);
}

int maglev_build(struct maglev *t, const struct maglev_member *members, unsigned n,
                 uint32_t configured, const struct maglev *prev)
{
    memset(t, 0, sizeof(*t));
    t->nmembers = n;
    t->inputs = fingerprint(members, n, configured);

    struct filler *f = malloc((n ? n : 1) * sizeof(*f));
    if (!f)
        return -1;
    unsigned nf = 0;
    uint64_t wmax = 0;
    for (unsigned i = 0; i < n; i++) {
        if (!members[i].weight)
            continue; /* takes no slot */
        f[nf++] = (struct filler){
            .name = members[i].name ? members[i].name : "",
            .addr = members[i].addr ? members[i].addr : "",
            .weight = members[i].weight,
            .index = i,
        };
        if (members[i].weight > wmax)
            wmax = members[i].weight;
    }
    if (!nf) { /* nobody to own a slot: an empty table */
        free(f);
        return 0;
    }
    t->size = maglev_table_size(configured, n);
    if (alloc_entries(t) < 0) {
        free(f);
        maglev_free(t);
        return -1;
    }
    if (prev && prev->inputs == t->inputs && prev->nmembers == n && prev->size == t->size &&
        !prev->narrow == !t->narrow) {
        if (t->narrow)
            memcpy(t->narrow, prev->narrow, maglev_bytes(t));
        else
            memcpy(t->wide, prev->wide, maglev_bytes(t));
        free(f);
        return 0;
    }
    qsort(f, nf, sizeof(*f), canonical);
    for (unsigned i = 0; i < nf; i++) {
        uint64_t d = member_digest(&members[f[i].index]);
        f[i].pos = (uint32_t)(maglev_mix(d, SEED_OFFSET) % t->size);
        f[i].skip = (uint32_t)(maglev_mix(d, SEED_SKIP) % (t->size - 1)) + 1;
    }
    int r = fill(t, f, nf, wmax);
    free(f);
    if (r < 0)
        maglev_free(t);
    return r;
}

void maglev_free(struct maglev *t)
{
    free(t->narrow);
    free(t->wide);
    t->narrow = NULL;
    t->wide = NULL;
    t->size = 0;
}
