/*
 * proxy_proto.h - the PROXY protocol (HAProxy's specification, versions 1 and 2): parsing the
 * header a load balancer in front of fulcrum puts before a client's bytes, and writing the header
 * fulcrum puts before the bytes it sends to a backend. No I/O, no allocation, no copy.
 *
 * Where it fits: a listener that accepts the protocol hands the first bytes of each connection
 * from a trusted peer to pp_parse() before anything else reads them, consumes header_len bytes and
 * from then on takes src as the client's address. A pool configured to send it calls pp_write()
 * once per backend connection and sends the header before the first request.
 *
 *   client ---> [LB] --- "PROXY TCP4 c s cp sp\r\n" GET / ... ---> fulcrum listener
 *                                                                   pp_parse, consume header_len
 *   fulcrum --- pp_write(src, dst) header, then the request ------> backend
 *
 * pp_parse() is a function of the bytes received so far: call it again with the whole prefix
 * (same start, more bytes) after every read. It returns
 *   PP_DONE   a complete valid header; r->header_len bytes belong to it, the rest is payload;
 *   PP_AGAIN  nothing so far rules a header out: more bytes are needed;
 *   PP_ERROR  the bytes cannot begin a header (r->error says why). This is decided as the bytes
 *             arrive: a stream that starts with neither "PROXY " nor the v2 signature fails at its
 *             first differing byte, a v1 field at its first byte of the wrong kind (its value, such
 *             as an address, once the field ends), a v2 field as soon as it is complete.
 * Bytes past the header never change the answer.
 * A caller's buffer of PP_MAX bytes holds any header pp_parse accepts; once it holds that many
 * bytes the answer is never PP_AGAIN.
 *
 * Version 1 is one text line of at most PP_MAX_V1 bytes: "PROXY TCP4|TCP6 src dst sport dport" or
 * "PROXY UNKNOWN[ anything]", then CRLF. Fields are separated by single spaces; addresses must be
 * what inet_pton() accepts for the family the protocol names; ports are decimal 0-65535 without a
 * sign or leading zero. Control bytes anywhere in the line are refused (a header line is text).
 *
 * Version 2 is binary: the 12-byte signature, version/command, family/protocol, a 16-bit length,
 * then that many bytes: the addresses, then TLVs. Rules and what they give:
 *   LOCAL command                 local (the family and the whole block are ignored, per spec)
 *   PROXY, TCP over IPv4 or IPv6  the addresses
 *   PROXY, UNSPEC                 local (the spec lets a receiver use the real endpoints)
 *   PROXY, AF_UNIX stream/dgram   local: a unix peer has no address fulcrum can use
 *   PROXY, UDP over IPv4/IPv6     refused: a datagram flow cannot arrive on a TCP connection
 *   any other value               refused, as the spec requires
 * The length may not exceed PP_MAX_V2 - 16 (fulcrum's cap, not the spec's 65535: known senders
 * put tens to a few hundred bytes of TLVs there) and must cover the family's address block. TLVs
 * are not interpreted (CRC32C is not checked) but, after a known address block, each must fit
 * inside the length and they must fill it exactly.
 *
 * Status values follow the parser convention of docs/architecture.md (DONE 0, AGAIN 1, ERROR -1).
 * Nothing is kept between calls and no global is written, so any thread may call these.
 */
#ifndef FULCRUM_PROXY_PROTO_H
#define FULCRUM_PROXY_PROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

/* Longest v1 line, CRLF included: "PROXY UNKNOWN " + two full IPv6 addresses + two 5-digit ports.
 */
#define PP_MAX_V1 107
/* Longest v2 header fulcrum accepts: the 16 fixed bytes and a length of at most 4080. */
#define PP_MAX_V2 4096
/* A buffer this large holds any header pp_parse() accepts. */
#define PP_MAX PP_MAX_V2
/* A buffer this large holds any header pp_write() writes (v1 up to 104 bytes, v2 up to 52). */
#define PP_WRITE_MAX PP_MAX_V1

enum pp_status {
    PP_DONE = 0,   /* a complete header */
    PP_AGAIN = 1,  /* a valid beginning: more bytes are needed */
    PP_ERROR = -1, /* not a PROXY protocol header; see error */
};

struct pp_result {
    int version; /* 1 or 2 once the first bytes tell (set on every status), else 0 */
    bool local;  /* v2 LOCAL, UNSPEC or AF_UNIX, or v1 UNKNOWN: keep the connection's addresses */
    /* When done and !local: TCP over IPv4 (sockaddr_in) or IPv6 (sockaddr_in6), zero-filled. */
    struct sockaddr_storage src, dst;
    socklen_t src_len, dst_len;
    /* PP_DONE: bytes of the header, to consume from the stream. PP_AGAIN: the full length once
     * the bytes tell it (a v2 header after its first 16 bytes), so the caller may wait for that
     * many before calling again; 0 otherwise. */
    size_t header_len;
    const char *error; /* PP_ERROR: a short lower-case reason for the log line (static string) */
};

/* Looks at the first len bytes of a connection (buf may be NULL when len is 0). r is
 * overwritten on every call; buf is only read, and never past the header's end. */
enum pp_status pp_parse(const char *buf, size_t len, struct pp_result *r);

/*
 * Writes a version 1 or 2 header saying the connection came from src to dst (sockaddr_in or
 * sockaddr_in6, both of one family) into out. When src or dst is NULL, or their families differ
 * or are not IPv4/IPv6, it writes the header for "no addresses" instead (v1 UNKNOWN, v2 LOCAL),
 * which makes the receiver keep its own view of the connection; health checks use that form.
 * Addresses are written as given: an IPv4-mapped IPv6 address stays TCP6.
 * Returns the header's length, or 0 if it does not fit in cap or version is not 1 or 2.
 */
size_t pp_write(int version, const struct sockaddr *src, const struct sockaddr *dst, char *out,
                size_t cap);

#endif
