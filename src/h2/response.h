/*
 * response.h - an HTTP/1.1 response head, as the proxy wrote it, turned into the header list of
 * an HTTP/2 HEADERS frame (no I/O).
 *
 * The head has been parsed by http1_parse_response() (http/http1.h). The list is ":status" and
 * every field but those HTTP/2 forbids (RFC 9113 section 8.2.2: Connection, Keep-Alive,
 * Proxy-Connection, Transfer-Encoding, Upgrade; TE is for requests), with names in lowercase as
 * HTTP/2 requires. Values point into the head; names into the caller's lowercase buffer, which
 * must live until the list is submitted (nghttp2 copies both then).
 */
#ifndef FULCRUM_H2_RESPONSE_H
#define FULCRUM_H2_RESPONSE_H

#include <nghttp2/nghttp2.h>
#include <stddef.h>

#include "http/http1.h"

/* Room for the status text ("200") a list points at. */
#define H2_STATUS_TEXT 4

/*
 * Fills nv (room for max entries) from the parsed head msg in head. status gets the status
 * text, lower the lowercase names (cap bytes). Returns the number of entries, or -1 when nv or
 * lower is too small.
 */
int h2_response_fields(const char *head, const struct http1_msg *msg, nghttp2_nv *nv, size_t max,
                       char status[H2_STATUS_TEXT], char *lower, size_t cap);

/*
 * The trailer section of a chunked body, as the chunked decoder consumed it ("name: value\r\n"
 * lines, then "\r\n"; http1.c has checked its syntax), as the header list of a trailing HEADERS
 * frame: names lowercased into lower, values without surrounding whitespace, connection-specific
 * fields left out. Returns the number of entries (0: no fields), or -1 when nv or lower is too
 * small.
 */
int h2_trailer_fields(const char *section, size_t len, nghttp2_nv *nv, size_t max, char *lower,
                      size_t cap);

/*
 * The client role (client.h): an HTTP/1.1 request head (parsed into msg) as an HTTP/2 header
 * list: :method, :scheme (scheme), :authority (the Host field, or an absolute-form target's
 * authority), :path (the origin-form target, "*" for OPTIONS *), then the fields, names in
 * lowercase (kept in lower, cap bytes), without Host and the connection-specific ones, and
 * "te: trailers" (fulcrum takes trailers, and gRPC servers want to hear it). Returns the entries
 * (at most max), or -1: too many, or a request HTTP/2 cannot carry this way (CONNECT).
 */
int h2_request_fields(const char *head, const struct http1_msg *msg, const char *scheme,
                      nghttp2_nv *nv, size_t max, char *lower, size_t cap);

#endif
