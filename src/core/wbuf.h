/*
 * wbuf.h - a bounded writer for formatting into a caller's fixed array.
 *
 * Appends go one after another; once a piece does not fit, the writer stays failed and ignores
 * the rest, so formatting code reads as a straight run of appends with one check at the end
 * (wbuf_len). The head rewriter (on every request) and the access log both format this way; the
 * functions are inline so the appends cost no calls.
 */
#ifndef FULCRUM_WBUF_H
#define FULCRUM_WBUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

struct wbuf {
    char *start, *p, *end;
    bool overflow; /* a piece did not fit: the output is unusable */
};

static inline struct wbuf wbuf_init(char *out, size_t cap)
{
    return (struct wbuf){out, out, out + cap, false};
}

static inline void wbuf_put(struct wbuf *w, const char *s, size_t n)
{
    if (w->overflow || (size_t)(w->end - w->p) < n) {
        w->overflow = true;
        return;
    }
    memcpy(w->p, s, n);
    w->p += n;
}

#define WBUF_LITERAL(w, s) wbuf_put((w), (s), sizeof(s) - 1)

static inline void wbuf_puts(struct wbuf *w, const char *s)
{
    wbuf_put(w, s, strlen(s));
}

static inline void wbuf_u64(struct wbuf *w, uint64_t v)
{
    char digits[20];
    size_t n = sizeof(digits);
    do {
        digits[--n] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    wbuf_put(w, digits + n, sizeof(digits) - n);
}

/* Bytes written, or 0 if anything did not fit. */
static inline size_t wbuf_len(const struct wbuf *w)
{
    return w->overflow ? 0 : (size_t)(w->p - w->start);
}

#endif
