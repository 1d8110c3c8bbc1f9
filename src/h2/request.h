/*
 * request.h - an HTTP/2 request's header fields written as the HTTP/1.1 head the proxy reads, and
 * its trailer fields as the end of a chunked body (no I/O, no nghttp2).
 *
 * nghttp2 hands the fields of a header block over one at a time, pseudo-header fields first (it
 * has checked their order and names, the characters of every name and value, and that no
 * connection-specific field is present). The builder writes them into the caller's buffer:
 *
 *   :method GET  :scheme https  :path /a?b  :authority example.com  accept text/html  cookie a=1
 *   cookie b=2
 *     ->  "GET /a?b HTTP/1.1\r\nHost: example.com\r\naccept: text/html\r\n"
 *         "cookie: a=1; b=2\r\nConnection: close\r\n\r\n"
 *
 *   - The request line and Host are written at the first regular field (or at the end), once the
 *     pseudo-header fields are known; until then their values wait in the scratch buffer.
 *   - Cookie crumbs (RFC 9113 section 8.2.3) are joined into one field at the end; they wait in
 *     the scratch buffer too, once the request line no longer needs it.
 *   - A Host field beside :authority must name the same host (section 8.3.1); it is written once.
 *   - A request with a body but no Content-Length gets "Transfer-Encoding: chunked": the stream
 *     frames the DATA it receives as chunks (stream.c), so that trailers can follow the body.
 *   - "Connection: close" ends the head: a stream carries one request, and the proxy's session
 *     for it ends with its response.
 *
 * Errors leave error_status set (400 for a malformed request, 431 when the head does not fit)
 * and every later call does nothing.
 */
#ifndef FULCRUM_H2_REQUEST_H
#define FULCRUM_H2_REQUEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct h2_request {
    char *head; /* the head being written, cap bytes */
    uint32_t cap, len;
    char *scratch; /* pseudo-header values, then cookie crumbs */
    uint32_t scratch_cap, scratch_len;
    uint32_t method_off, method_len, path_off, path_len, authority_off, authority_len;
    uint32_t cookie_off; /* where the crumbs start in scratch */
    uint16_t status;     /* a response's (h2_reply_*) */
    bool reply;          /* a response is being written (h2_reply_*), not a request */
    uint8_t method;      /* enum http1_method (the response's framing depends on HEAD) */
    bool line_written;   /* request line and Host are in head */
    bool has_authority, has_path, has_host, has_length, has_cookie;
    bool chunked;          /* the body goes to the proxy with chunked framing */
    uint16_t error_status; /* 0, 400 or 431 */
    const char *error;     /* why, for the log */
};

/* Starts a request head in head[0, cap), with scratch[0, scratch_cap) to wait in. */
void h2_request_init(struct h2_request *r, char *head, uint32_t cap, char *scratch,
                     uint32_t scratch_cap);

/* One field of the block, pseudo-header or regular. Returns 0, or -1 (error_status set). */
int h2_request_field(struct h2_request *r, const char *name, size_t name_len, const char *value,
                     size_t value_len);

/* The block is complete; end_stream: the request has no body. Returns the head's length, or 0
 * (error_status set). */
uint32_t h2_request_finish(struct h2_request *r, bool end_stream);

/*
 * The trailer fields of a request sent chunked, written as the chunked body's end: "0\r\n", the
 * fields, "\r\n". init writes the last chunk; each field adds a line; finish the empty line.
 * Returns as h2_request_field and h2_request_finish do (431 when it does not fit).
 */
void h2_trailers_init(struct h2_request *r, char *buf, uint32_t cap);
int h2_trailers_field(struct h2_request *r, const char *name, size_t name_len, const char *value,
                      size_t value_len);
uint32_t h2_trailers_finish(struct h2_request *r);

/*
 * The client role (client.h): a response's header block as an HTTP/1.1 response head, written
 * into head as the fields come. ":status" gives the status line (with the usual reason phrase);
 * the body's framing is decided at the end: Content-Length as the server sent it, none for a
 * response that cannot have a body, "Content-Length: 0" for one that ended with its HEADERS, and
 * otherwise chunked, so that trailers (gRPC's grpc-status) can follow the body. A failure is
 * error_status 502 with error saying why. method is the request's (HEAD has no body).
 */
void h2_reply_init(struct h2_request *r, char *head, uint32_t cap, uint8_t method);
int h2_reply_field(struct h2_request *r, const char *name, size_t name_len, const char *value,
                   size_t value_len);
/* The head's length (0: failed); *chunked: the body follows with chunked framing. */
uint32_t h2_reply_finish(struct h2_request *r, bool end_stream, bool *chunked);

#endif
