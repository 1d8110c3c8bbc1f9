/*
 * stream.h - what session.c (the connection and nghttp2's callbacks) and stream.c (a stream's
 * transport) share inside the h2 layer: the two structures and the calls between them.
 *
 * A stream is referenced from two sides: nghttp2 (its stream user data, until on_stream_close)
 * and its user's struct conn (conn->stream, until conn_close()). It is freed when both have let
 * go (h2_stream_release), never while it waits in the session's list of streams to notify.
 */
#ifndef FULCRUM_H2_STREAM_H
#define FULCRUM_H2_STREAM_H

#include <nghttp2/nghttp2.h>

#include "core/freelist.h"
#include "h2/env.h"
#include "h2/request.h"

/* Request body bytes one stream may hold: its window, the protocol's default. */
#define H2_STREAM_WINDOW 65535u

enum h2_tx_state {
    H2_TX_HEAD, /* the response head (or an interim one) is due */
    H2_TX_BODY, /* body bytes follow, framed as tx_body says */
    H2_TX_DONE, /* the response is complete on our side */
};

struct h2_stream {
    struct h2_session *h2;
    int32_t id;
    struct conn *conn;             /* its user's connection; NULL once the user let go */
    struct h2_stream *prev, *next; /* the session's streams, least recently active first */
    struct h2_stream *notify_next; /* in the session's list of streams to notify */
    struct freelist_node spare;    /* on the thread's spares */
    uint64_t last_io_ms;           /* last frame either way */
    struct buf head;               /* the request head, not read yet */
    struct buf rx;                 /* request body bytes received, not read yet */
    struct buf tail;               /* chunked body's end (last chunk, trailers), not read yet */
    struct buf tx;                 /* response body bytes written, not framed yet */
    struct http1_chunked tx_chunk; /* the response body's chunked framing */
    struct buf trailers;           /* the response's trailer section, as its server sent it */
    uint64_t tx_left;              /* Content-Length bytes of the response not written yet */
    uint32_t header_bytes;         /* the header block being received, RFC 9113 counting */
    uint64_t chunk_left;           /* body bytes of the current chunk not read yet */
    char frame[12];                /* its framing ("size\r\n" or "\r\n") ... */
    uint8_t frame_off, frame_len;  /* ... and how much of it was read */
    uint32_t tail_static;          /* bytes of "0\r\n\r\n" given (no trailers) */
    uint32_t close_error;          /* nghttp2's error code when the stream closed */
    uint8_t method;                /* enum http1_method of the request */
    uint8_t tx_state;              /* enum h2_tx_state */
    uint8_t tx_body;               /* enum http1_body of the response */
    bool chunked_rx;               /* the body goes to the user with chunked framing */
    bool head_done;                /* client role: the final response head arrived */
    bool rx_window;                /* rx is a whole window's buffer (h2_local.rx), not a pooled
                                    * one of the thread's (env->bufs) */
    bool rx_end;                   /* the client ended the request (END_STREAM) */
    bool tail_done;                /* the chunked body's end has been read */
    bool eof_given;                /* recv() has returned end of stream */
    bool too_large;                /* the header block passed max_header_list_size */
    bool data_deferred;            /* nghttp2 waits for tx bytes (resume_data wakes it) */
    bool end_sent;                 /* our END_STREAM went out */
    bool reset_sent;               /* we asked for RST_STREAM */
    bool closed;                   /* nghttp2 closed the stream */
    bool notify_queued;            /* in the session's list of streams to notify */
    bool free_after_notify;        /* released while queued: freed when dequeued */
};

struct h2_local {
    struct buf_pool rx;                          /* request body buffers, one window each */
    struct freelist streams;                     /* spare struct h2_stream */
    nghttp2_session_callbacks *callbacks;        /* the server role's */
    nghttp2_session_callbacks *client_callbacks; /* the client role's (client.c) */
    nghttp2_nv *nv;                              /* header lists of responses */
    size_t nv_cap;
    char *lower; /* their lowercase names */
    size_t lower_cap;
};

struct h2_session {
    struct conn conn; /* first: the client connection, as the loop sees it */
    struct loop_grave grave;
    nghttp2_session *ng; /* NULL once the connection has ended */
    const struct h2_env *env;
    struct h2_limits lim;
    struct h2_host host;
    struct buf rbuf, wbuf;  /* a read on its way to nghttp2; frames on their way out */
    const uint8_t *pending; /* what nghttp2 gave us and wbuf had no room for */
    size_t npending;
    struct loop_timer timer;
    struct loop_task task; /* pump() again: more work, or a stream's user changed something */
    struct h2_stream *first, *last; /* streams, least recently active first */
    unsigned nstreams;
    unsigned attached;        /* streams whose user still holds them */
    struct h2_stream *notify; /* streams whose readiness changed */
    struct h2_request req;    /* the header block being received */
    struct buf scratch;       /* its waiting room (request.h) */
    uint64_t opened;          /* streams opened so far */
    uint64_t idle_since_ms;   /* when the last stream ended (or the connection began) */
    uint64_t close_by_ms;     /* closing: the end, flushed or not (a client that reads
                               * nothing cannot keep the connection) */
    uint64_t grace_until_ms;  /* after GOAWAY: the deadline; 0: no GOAWAY sent */
    bool client;              /* the client role: a connection to a server (client.h) */
    bool in_pump;
    bool kicked;  /* asked to pump while pumping */
    bool ended;   /* the client connection is closed; waiting for streams' users to let go */
    bool closing; /* flush what is queued, then end (by close_by_ms at the latest) */
    bool buried;  /* handed to loop_bury(): freed after this batch */
    /* the empty DATA limit (session.c): frames counted, less those leaked since leak_ms */
    uint32_t empty_data;
    uint64_t empty_data_leak_ms;
};

/* stream.c */
extern const struct conn_ops h2_stream_ops;
struct h2_stream *h2_stream_new(struct h2_session *h2, int32_t id);
/* Gives st to conn (the user's connection) and tells the user it may read. */
void h2_stream_attach(struct h2_stream *st, struct conn *conn);
/* nghttp2 closed the stream with error_code. */
void h2_stream_closed(struct h2_stream *st, uint32_t error_code);
/* Request body bytes arrived; false when they do not fit (the client ignored its window). */
bool h2_stream_data(struct h2_stream *st, const uint8_t *data, size_t len);
/* Sets the readiness flags of st's user's connection to what it may do (read, write). */
void h2_stream_ready(struct h2_stream *st);
/* The same, and notifies the user if something became possible. */
void h2_stream_refresh(struct h2_stream *st);
/* Gives back st's buffer of body bytes, to the pool it came from. */
void h2_stream_put_rx(struct h2_stream *st);
/* Frees st if nobody holds it any more. */
void h2_stream_release(struct h2_stream *st);
/* The response body's data source for nghttp2. */
ssize_t h2_stream_read_body(nghttp2_session *ng, int32_t id, uint8_t *buf, size_t length,
                            uint32_t *flags, nghttp2_data_source *source, void *user);
/* Resets the stream (RST_STREAM with error_code), once. */
void h2_stream_reset(struct h2_stream *st, uint32_t error_code);
/* Returns request body bytes never read to the connection's window, and drops them. */
void h2_stream_drop_rx(struct h2_stream *st);

/* The stream with that id, or NULL. */
static inline struct h2_stream *h2_stream_of(struct h2_session *h2, int32_t id)
{
    return h2->ng ? nghttp2_session_get_stream_user_data(h2->ng, id) : NULL;
}

/* Makes room for n entries and cap bytes of lowercase names in the thread's header lists. */
int h2_stream_reserve_lists(struct h2_local *local, size_t n, size_t cap);

/* client.c */
/* The client role's take on the request head the user writes: HEADERS, and the body's source.
 * Returns the head's length, or -1 (errno EPROTO: not a head HTTP/2 can carry). */
ssize_t h2_client_submit(struct h2_stream *st, const char *p, size_t len);
void h2_client_set_callbacks(nghttp2_session_callbacks *cb);

/* session.c */
/* Starts a session on c (session.h's h2_session_start, or client.h's h2_client_start). */
struct h2_session *h2_session_begin(const struct h2_env *env, struct conn *c, const char *early,
                                    size_t early_len, const struct h2_limits *lim,
                                    const struct h2_host *host, bool client);
/* nghttp2's callbacks both roles share. */
int h2_session_on_data_chunk(nghttp2_session *ng, uint8_t flags, int32_t id, const uint8_t *data,
                             size_t len, void *user);
int h2_session_on_stream_close(nghttp2_session *ng, int32_t id, uint32_t error_code, void *user);
/* The stream a decoded header field belongs to, with the field counted against the header list
 * limit; NULL when there is none, or its header list is already too large (too_large). */
struct h2_stream *h2_session_field_stream(struct h2_session *h2, const nghttp2_frame *frame,
                                          size_t name_len, size_t value_len);
/* A trailer section is complete: the stream's tail holds it, or it is dropped. */
void h2_session_trailers_ready(struct h2_session *h2, struct h2_stream *st);
/* Something changed nghttp2's state outside of pump(): pump again soon. */
void h2_session_kick(struct h2_session *h2);
/* Queues st for its user's handler (run by pump(), outside nghttp2's callbacks). */
void h2_session_notify(struct h2_session *h2, struct h2_stream *st);
/* st saw a frame: it moves to the end of the idle order. */
void h2_session_touch(struct h2_session *h2, struct h2_stream *st);
/* A stream was freed: after end(), the last one frees the session. */
void h2_session_stream_gone(struct h2_session *h2);

#endif
