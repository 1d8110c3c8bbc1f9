/*
 * relay.h - a bidirectional byte relay between two connections: what a TCP mode session (tcp.c)
 * is once its server is connected, and what an HTTP connection becomes after a 101 (a WebSocket
 * tunnel, proxy.c).
 *
 *          a --read--> [ buf or pipe: dir[0] ] --write--> b
 *          a <--write- [ buf or pipe: dir[1] ] <--read--- b
 *
 * Each direction holds at most one thing in flight, taken from this thread's pools only while
 * bytes are in it and given back as soon as it is empty:
 *   - a pipe, when both ends are plain TCP and the bytes come in bulk (a read filled a whole
 *     buffer): bytes go socket -> pipe -> socket with splice(2), never copied through user
 *     space, until the source has nothing left to read. Small messages (a request, an answer, a
 *     WebSocket frame) go through a buffer: a short read proves the socket empty, where a short
 *     splice proves nothing (the pipe counts slots, not bytes) and would cost an extra call
 *     that finds EAGAIN. Pipes are kept in a per-thread pool (relay_local), with a
 *     bounded number open at once; past the bound, or if pipe2() fails, the direction uses a
 *     buffer for the moment.
 *   - a buffer (w->bufs), when either end is TLS (its bytes must pass through OpenSSL), when no
 *     pipe can be had, and for bytes the owner had already read when it started the relay.
 *     Those are written first; the direction turns to splice once its buffer is empty.
 * A full buffer or pipe stops reading on that side until the other side took the bytes
 * (backpressure), as everywhere in fulcrum.
 *
 * Half-close: end of stream read on one side becomes a shutdown (FIN, and close_notify over TLS)
 * of the other once every pending byte of that direction was written; the other direction goes on.
 * The relay is done when both directions are. A reset or an error on one side ends the relay with
 * that side named (RELAY_ERROR_A or RELAY_ERROR_B): the owner then closes both connections with a
 * reset, so that a server killed mid-stream reaches the client as a reset, never as a clean end.
 *
 * Ownership: the owner embeds struct relay and keeps owning both connections (it watches their
 * events, calls relay_pump() on every event of either, and closes them). The relay owns the
 * buffers given to relay_start() and every buffer and pipe it takes, until relay_stop().
 *
 * Usage:
 *   relay_start(&s->relay, w, &client, &server, &early_request_bytes, &early_response_bytes);
 *   on every event of either connection, and on a deferred task after RELAY_PROGRESS:
 *     switch (relay_pump(&s->relay)) {
 *     case RELAY_PROGRESS: loop_defer(...)  (fairness: it did a bounded amount of work)
 *     case RELAY_WAIT:     arm the idle timer at relay_last_io_ms() + timeouts.tunnel
 *     case RELAY_DONE:     relay_stop(), close both (FIN)
 *     case RELAY_ERROR_A / RELAY_ERROR_B: relay_stop(), close both with a reset
 *     }
 */
#ifndef FULCRUM_RELAY_H
#define FULCRUM_RELAY_H

#include <stdbool.h>
#include <stdint.h>

#include "core/buf.h"
#include "core/conn.h"

struct worker;

enum relay_status {
    RELAY_PROGRESS, /* bytes moved and more could: call again (from a deferred task) */
    RELAY_WAIT,     /* nothing to do until an event on either connection */
    RELAY_DONE,     /* both directions ended cleanly (each end of stream passed on) */
    RELAY_ERROR_A,  /* a failed (reset, error): relay.error has errno */
    RELAY_ERROR_B,  /* b failed */
};

/* One direction: from -> to. */
struct relay_dir {
    struct conn *from, *to;
    struct buf buf;       /* bytes read from `from` not yet written (buffer path) */
    int pipe_rd, pipe_wr; /* the pipe while bytes are in it (splice path); -1: none */
    uint32_t pipe_size;   /* its capacity */
    uint32_t in_pipe;     /* bytes in it */
    uint64_t bytes;       /* bytes written to `to` so far */
    bool plain;           /* both ends plain TCP: splice may be used */
    bool bulk;            /* a read filled a whole buffer: splice until the source runs dry */
    bool pipe_full;       /* the last splice in found no free slot: empty the pipe first */
    bool eof;             /* `from` sent its end of stream */
    bool shut;            /* ...and it was passed on: this direction is done */
};

struct relay {
    struct worker *w;
    struct relay_dir dir[2]; /* [0]: a -> b, [1]: b -> a */
    uint64_t last_io_ms;     /* the last byte moved either way (loop clock), for an idle timeout */
    int error;               /* errno of the failure behind RELAY_ERROR_A/B */
};

/*
 * Starts relaying between a and b (both connected and watched by the owner's loop). a_to_b and
 * b_to_a, if not NULL, hold bytes already read from a (for b) and from b (for a), in buffers of
 * w->bufs; the relay takes them over and leaves the caller's structs detached (data NULL).
 */
void relay_start(struct relay *r, struct worker *w, struct conn *a, struct conn *b,
                 struct buf *a_to_b, struct buf *b_to_a);

/* Moves what can be moved now, a bounded amount (see enum relay_status). After DONE or an
 * error, do not call it again: stop the relay. */
enum relay_status relay_pump(struct relay *r);

/* Gives back every buffer and pipe (a pipe with bytes still in it is closed, not reused). The
 * connections are left as they are. Safe to call twice. */
void relay_stop(struct relay *r);

/* Bytes delivered so far, a -> b and b -> a. */
static inline uint64_t relay_bytes_a_to_b(const struct relay *r)
{
    return r->dir[0].bytes;
}

static inline uint64_t relay_bytes_b_to_a(const struct relay *r)
{
    return r->dir[1].bytes;
}

/* When the last byte moved (the loop's clock, ms): an idle timeout counts from here. */
static inline uint64_t relay_last_io_ms(const struct relay *r)
{
    return r->last_io_ms;
}

/* Does the relay hold bytes read from one side and not yet written to the other? */
bool relay_pending(const struct relay *r);

/* This module's per-thread state (w->relay): the pipe pool. Created with the worker, freed with
 * it (every relay of the thread stopped before). */
struct relay_local *relay_local_new(void);
void relay_local_free(struct worker *w);

#endif
