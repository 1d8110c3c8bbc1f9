"""
test_corpus.py - the shared HTTP/1.1 parsing and smuggling corpus, run end to end against fulcrum,
plus extra cases of our own.

The corpus (tests/corpus/, a byte-for-byte copy of the shared corpus; README.md there describes
the format) is two JSON lists of cases:

- request cases: exact bytes a client sends. Behind fulcrum sits a *capturing backend* that
  records every connection's raw bytes, parses them into requests itself (a deliberately tolerant
  parser: it is a measuring instrument, not a second implementation to be tested), and answers
  each complete request with `HTTP/1.1 200 OK\\r\\nContent-Length: 2\\r\\n\\r\\nok`;
- response cases: exact bytes a backend sends back after the case's client request reached it.

Each case becomes one test method (test_req_<id>, test_resp_<id>, and test_extra_req_<id> /
test_extra_resp_<id> for ours), each with a fresh backend and a fresh fulcrum. The client sends
the case's bytes and reads until the connection closes or IDLE seconds pass without data. Then:

1. The outcome is classified from what the client saw (see request_outcome / response_outcome)
   and must be one of the case's `acceptable` outcomes. `forward_normalised` and
   `forward_unchanged` cannot be told apart from the client; the case's checks are what pin down
   "normalised" (a header removed, a line re-serialised, ...).
2. `status`: on the request side it constrains the statuses fulcrum itself generated (the
   capturing backend only ever answers 200, so any other status came from fulcrum; a forwarded
   request's 200 is not held against a `status: [400]` list when forwarding is acceptable). On
   the response side it constrains the final status the client got. A connection closed with no
   answer has no status; that is the `reject_5xx_or_close` outcome.
3. `close: true`: fulcrum must have closed the client connection (EOF or reset) after answering.
4. Every `checks` key is evaluated by the function of the same name in CHECKS. An unknown key
   fails the case loudly, so new corpus keys cannot be ignored silently. Checks about "the
   forwarded request" look at the first request the backend received and pass trivially when
   nothing was forwarded (a reject); checks about "the relayed response" (body, headers, final
   and interim statuses) apply only when the outcome is a forward, since a fulcrum-made 502 is not
   the relayed message.
5. Implicitly, a reject means the rejected request never completed at the backend: the backend
   may have completed at most as many requests as the client got 2xx answers before the error.

`backend_conn_reused: false` is checked with a probe: after the case, one more normal request is
sent through fulcrum (on the same client connection if it is still open, else on a new one), and
it must reach the backend on a connection that carried none of the case's bytes.

A failing case reports its id, the outcome seen, every failed check, the first 300 bytes the
client received and what the backend received on each connection.
"""

import base64
import json
import os
import re
import select
import socket
import threading
import time

from harness import ROOT, FulcrumTestCase, config, connect

CORPUS_DIR = os.path.join(ROOT, "tests", "corpus")
IDLE = 1.5  # seconds without data after which the client stops reading
READ_CAP = 8.0  # longest any single read phase may take
OK_RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
PROBE_TARGET = b"/__corpus_probe"
PROBE = b"GET " + PROBE_TARGET + b" HTTP/1.1\r\nHost: t.example\r\n\r\n"
OUTCOMES = {"reject_400", "reject_4xx", "reject_5xx_or_close", "forward_normalised",
            "forward_unchanged"}
FORWARD = {"forward_normalised", "forward_unchanged"}
CLIENT_ACTIONS = ("send", "send_then_shutdown_write")
BACKEND_ACTIONS = {"send_then_close": True, "send_keep_open": False}  # close afterwards?


# ---------------------------------------------------------------------------------------------
# Cases: the corpus files, and our own extras in the same shape
# ---------------------------------------------------------------------------------------------

def load_corpus(name):
    """The cases of one corpus file, with raw bytes decoded."""
    with open(os.path.join(CORPUS_DIR, name), "rb") as f:
        cases = json.load(f)
    for case in cases:
        case["raw"] = base64.b64decode(case["raw_b64"])
        if "client_request_b64" in case:
            case["client_request"] = base64.b64decode(case["client_request_b64"])
    return cases


def b64(data):
    return base64.b64encode(data).decode()


SMUGGLE = b"GET /smuggled HTTP/1.1\r\nHost: t.example\r\n\r\n"
AFTER = b"GET /after HTTP/1.1\r\nHost: t.example\r\n\r\n"
POST = b"POST / HTTP/1.1\r\nHost: t.example\r\n"
CHUNKED_SMUGGLE = b"0\r\n\r\n" + SMUGGLE  # 48 bytes: a Content-Length reader takes it as body
REJECT_SMUGGLE = {"smuggle_marker": "/smuggled", "backend_requests_max": 0}


def extra(id, reason, raw, acceptable, status=None, close=None, checks=None, **more):
    case = dict(id=id, reason=reason, raw=raw, acceptable=acceptable, status=status, close=close,
                checks=checks or {}, client_action="send", level="extra")
    case.update(more)
    return case


EXTRA_REQUESTS = [
    extra("x-cl-then-te-obs-fold",
          "RFC 9112 5.2, 6.3: a folded Transfer-Encoding after Content-Length is still TE; "
          "unfolding must lead to the CL+TE rule, never to CL framing with the fold relayed",
          POST + b"Content-Length: 48\r\nTransfer-Encoding:\r\n chunked\r\n\r\n" + CHUNKED_SMUGGLE,
          ["reject_400", "forward_normalised"], [400], True,
          {"smuggle_marker": "/smuggled", "backend_requests_max": 1,
           "forwarded_header_absent": ["content-length"], "forwarded_no_obs_fold": True}),
    extra("x-cl-leading-zeros",
          "RFC 9110 8.6: Content-Length = 1*DIGIT, so 0010 is ten (decimal), not 8 (octal)",
          b"POST /z HTTP/1.1\r\nHost: t.example\r\nContent-Length: 0010\r\n\r\n0123456789" + AFTER,
          ["forward_normalised", "forward_unchanged"], None, None,
          {"backend_requests": 2, "backend_targets_in_order": ["/z", "/after"],
           "forwarded_body_b64": b64(b"0123456789")}),
    extra("x-cl-ows-tabs",
          "RFC 9110 5.5: OWS (SP/HTAB) around a field value is not part of it, so "
          "'\\t10\\t' is ten (control)",
          b"POST /w HTTP/1.1\r\nHost: t.example\r\nContent-Length:\t10\t\r\n\r\n0123456789" + AFTER,
          ["forward_normalised", "forward_unchanged"], None, None,
          {"backend_requests": 2, "backend_targets_in_order": ["/w", "/after"],
           "forwarded_body_b64": b64(b"0123456789")}),
    extra("x-cl-internal-space",
          "RFC 9110 8.6: '0 43' is not 1*DIGIT; a reader stopping at the space sees 0, one "
          "dropping spaces sees 43: MUST 400",
          POST + b"Content-Length: 0 43\r\n\r\n" + SMUGGLE,
          ["reject_400"], [400], True, REJECT_SMUGGLE),
    extra("x-cl-list-different",
          "RFC 9112 6.3 item 5: a Content-Length list with differing values is invalid: MUST 400",
          POST + b"Content-Length: 0, 43\r\n\r\n" + SMUGGLE,
          ["reject_400"], [400], True, REJECT_SMUGGLE),
    extra("x-cl-overflow",
          "RFC 9110 8.6: recipients MUST prevent integer overflow; 2^64+5 wraps to 5 in uint64",
          POST + b"Content-Length: 18446744073709551621\r\n\r\nhello" + SMUGGLE,
          ["reject_400", "reject_4xx"], [400, 413], True,
          {"smuggle_marker": "/smuggled", "backend_requests_max": 0,
           "backend_complete_requests": 0}),
    extra("x-te-name-trailing-tab",
          "RFC 9112 5.1: no whitespace (HTAB included) between field name and colon: MUST 400",
          POST + b"Transfer-Encoding\t: chunked\r\nContent-Length: 48\r\n\r\n" + CHUNKED_SMUGGLE,
          ["reject_400"], [400], True, REJECT_SMUGGLE),
    extra("x-te-vertical-tab",
          "RFC 9110 5.6.3: OWS is SP/HTAB only, so '\\x0bchunked' is not chunked; the framing is "
          "unknown (6.3 item 5): 400/501, never CL framing with TE still on the message",
          POST + b"Transfer-Encoding:\x0bchunked\r\nContent-Length: 48\r\n\r\n" + CHUNKED_SMUGGLE,
          ["reject_400", "reject_5xx_or_close"], [400, 501], True, REJECT_SMUGGLE),
    extra("x-chunk-size-17-hex-digits",
          "RFC 9112 7.1: recipients MUST prevent chunk-size overflow; 0x10000000000000005 "
          "truncated to 64 bits is 5",
          POST + b"Transfer-Encoding: chunked\r\n\r\n10000000000000005\r\nhello\r\n0\r\n\r\n"
          + SMUGGLE,
          ["reject_400", "reject_4xx"], [400, 413], True,
          {"smuggle_marker": "/smuggled", "backend_complete_requests": 0}),
    extra("x-chunk-size-leading-zeros",
          "RFC 9112 7.1: chunk-size = 1*HEXDIG, so 0005 is a valid size 5 (control)",
          b"POST /lz HTTP/1.1\r\nHost: t.example\r\nTransfer-Encoding: chunked\r\n\r\n"
          b"0005\r\nhello\r\n0\r\n\r\n" + AFTER,
          ["forward_normalised", "forward_unchanged"], None, None,
          {"backend_requests": 2, "backend_targets_in_order": ["/lz", "/after"],
           "forwarded_body_b64": b64(b"hello")}),
    extra("x-chunk-ext-quoted-pair-crlf",
          "RFC 9110 5.6.4: quoted-pair cannot escape CR/LF, so '\\\\<CRLF>' in a quoted chunk-ext "
          "is invalid; the extension bytes must never reach the backend verbatim",
          POST + b"Transfer-Encoding: chunked\r\n\r\n0;a=\"\\\r\n\r\n" + SMUGGLE + b"\"\r\n\r\n",
          ["reject_400", "forward_normalised"], [400], True,
          {"forwarded_chunk_ext_absent": True}),
    extra("x-host-with-space",
          "RFC 9112 3.2: a Host field with an invalid value (SP is not in uri-host): MUST 400",
          b"GET / HTTP/1.1\r\nHost: t.example evil.example\r\n\r\n",
          ["reject_400"], [400], None, {"backend_requests_max": 0}),
    extra("x-absolute-form-other-host",
          "RFC 9112 3.2.2: with an absolute-form target the Host field is ignored and replaced "
          "by the target's authority; forwarding origin-form /abs with Host: evil.example "
          "moves the request to another vhost",
          b"GET http://t.example/abs HTTP/1.1\r\nHost: evil.example\r\n\r\n",
          ["forward_normalised", "reject_400"], [400], None,
          {"forwarded_path": "/abs", "forwarded_host_if_passthrough": "t.example"}),
    extra("x-after-connection-close",
          "RFC 9112 9.6: after a request with Connection: close the server MUST NOT process "
          "further requests on that connection",
          b"GET /one HTTP/1.1\r\nHost: t.example\r\nConnection: close\r\n\r\n" + SMUGGLE,
          ["forward_normalised", "forward_unchanged"], None, True,
          {"backend_requests": 1, "backend_targets_in_order": ["/one"],
           "smuggle_marker": "/smuggled"}),
    extra("x-pipeline-after-rejected",
          "RFC 9112 2.2, 9.6: once a request is rejected the stream cannot be re-synchronised; "
          "nothing pipelined after it may reach the backend",
          b"GET /one HTTP/1.1\r\nHost: t.example\r\n\r\n"
          b"GET /a b HTTP/1.1\r\nHost: t.example\r\n\r\n" + SMUGGLE,
          ["reject_400"], [400], True,
          {"backend_requests": 1, "backend_targets_in_order": ["/one"],
           "smuggle_marker": "/smuggled"}),
    extra("x-http10-te-keep-alive",
          "RFC 9112 6.1: an HTTP/1.0 message with Transfer-Encoding has faulty framing; the "
          "connection MUST close after it, keep-alive or not",
          b"POST /p HTTP/1.0\r\nHost: t.example\r\nConnection: keep-alive\r\n"
          b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n" + SMUGGLE,
          ["reject_400", "forward_normalised"], [400], True,
          {"smuggle_marker": "/smuggled", "backend_requests_max": 1,
           "forwarded_body_b64": b64(b"hello")}),
    extra("x-nul-in-request-line",
          "RFC 9112 3.2: NUL is not allowed in a request-target: 400",
          b"GET /a\x00b HTTP/1.1\r\nHost: t.example\r\n\r\n",
          ["reject_400"], [400], True, {"backend_requests_max": 0}),
]

GET_R = b"GET /r HTTP/1.1\r\nHost: t.example\r\n\r\n"

EXTRA_RESPONSES = [
    extra("x-resp-head-chunked",
          "RFC 9112 6.3 item 1: a response to HEAD ends with its header section whatever "
          "Transfer-Encoding says; waiting for chunks stalls the client",
          b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
          ["forward_unchanged", "forward_normalised"], [200], None,
          {"client_final_status": 200, "client_body_b64": "", "max_latency_ms": 1000},
          client_request=b"HEAD /r HTTP/1.1\r\nHost: t.example\r\n\r\n",
          backend_action="send_keep_open"),
    extra("x-resp-1xx-after-final",
          "RFC 9112 9.3, RFC 9110 15.2: bytes after a complete response with no request "
          "outstanding are not a response; the connection is out of step and must not be reused",
          OK_RESPONSE + b"HTTP/1.1 100 Continue\r\n\r\n"
          b"HTTP/1.1 200 OK\r\nX-Injected: 1\r\nContent-Length: 0\r\n\r\n",
          ["forward_unchanged", "forward_normalised"], [200], None,
          {"client_final_status": 200, "client_body_b64": b64(b"ok"),
           "client_must_not_see": "X-Injected", "backend_conn_reused": False},
          client_request=GET_R, backend_action="send_keep_open"),
    extra("x-resp-te-chunked-then-identity",
          "RFC 9112 6.3 item 4: 'chunked, identity' does not end in chunked, so the response is "
          "read until close; relaying both lines leaves the framing to each client's guess "
          "(Python's http.client takes the first line and decodes 'hello')",
          b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n\r\n"
          b"5\r\nhello\r\n0\r\n\r\n",
          ["reject_5xx_or_close", "forward_normalised"], [502, 200], None,
          {"client_body_b64": b64(b"5\r\nhello\r\n0\r\n\r\n"),
           "client_transfer_encoding_unambiguous": True},
          client_request=GET_R, backend_action="send_then_close"),
    extra("x-resp-cl-overflow",
          "RFC 9110 8.6: a Content-Length that overflows 64 bits (2^64+2 wraps to 2) is invalid: "
          "502, and the connection is not reused",
          b"HTTP/1.1 200 OK\r\nContent-Length: 18446744073709551618\r\n\r\nok"
          b"HTTP/1.1 200 OK\r\nX-Injected: 1\r\nContent-Length: 0\r\n\r\n",
          ["reject_5xx_or_close"], [502], None,
          {"client_must_not_see": "X-Injected", "backend_conn_reused": False},
          client_request=GET_R, backend_action="send_keep_open"),
]


# ---------------------------------------------------------------------------------------------
# A tolerant HTTP/1.1 request parser (the capturing backend's instrument)
# ---------------------------------------------------------------------------------------------

HEAD_END = re.compile(rb"\r?\n\r?\n")
LINE_SPLIT = re.compile(rb"\r?\n")
DIGITS = re.compile(r"[0-9]+")  # str.isdigit() would take '\xb2' and int() would then fail


class Request:
    """One request as the backend received it. complete: its framing said it ended."""

    def __init__(self):
        self.raw = b""  # every byte of this request
        self.head = b""  # request line and header section, with the blank line
        self.line = b""
        self.method = self.target = self.version = ""
        self.headers = []  # (name, value) as str (latin-1), obs-folds joined
        self.body = b""  # decoded
        self.body_raw = b""
        self.trailers = []  # raw trailer lines
        self.chunk_exts = []  # raw chunk-ext text of every chunk-size line seen
        self.complete = False
        self.error = None  # why the instrument could not frame it
        self.seq = 0  # arrival order over the whole backend

    def header_values(self, name):
        return [v for n, v in self.headers if n.lower() == name]

    def describe(self):
        state = "complete" if self.complete else "INCOMPLETE" + (
            " (%s)" % self.error if self.error else "")
        return "%s %s %s" % (self.method or "?", self.target or "?", state)


def parse_head(head, req):
    lines = LINE_SPLIT.split(head.rstrip(b"\r\n"))
    req.line = lines[0]
    parts = req.line.decode("latin-1").split()
    req.method = parts[0] if parts else ""
    req.target = parts[1] if len(parts) > 1 else ""
    req.version = parts[-1] if len(parts) > 2 else ""
    for line in lines[1:]:
        text = line.decode("latin-1")
        if text[:1] in (" ", "\t") and req.headers:  # obs-fold: join, tolerantly
            n, v = req.headers[-1]
            req.headers[-1] = (n, (v + " " + text.strip()).strip())
            continue
        name, _, value = text.partition(":")
        # names are trimmed: the instrument reads ambiguous lines the way a lenient backend
        # would, so " Transfer-Encoding" or "Content-Length " count as framing fields
        req.headers.append((name.strip(" \t"), value.strip(" \t")))


def body_framing(req):
    """('chunked', None), ('length', n), ('none', None) or ('error', why)."""
    te = ",".join(req.header_values("transfer-encoding")).lower()
    codings = [c.strip() for c in te.split(",") if c.strip()]
    if codings:
        if codings[-1] == "chunked":
            return "chunked", None
        return "error", "Transfer-Encoding %r does not end in chunked" % te
    cls = req.header_values("content-length")
    if not cls:
        return "none", None
    values = {v.strip() for cl in cls for v in cl.split(",")}
    if len(values) != 1 or not DIGITS.fullmatch(next(iter(values))):
        return "error", "unusable Content-Length %r" % cls
    return "length", int(values.pop())


def parse_chunked(buf, pos, req):
    """Decodes a chunked body from buf[pos:]. Returns the end offset, None if more bytes are
    needed, or -1 on a framing error (req.error says why)."""
    body = b""
    while True:
        eol = buf.find(b"\r\n", pos)
        if eol < 0:
            if b";" in buf[pos:]:
                req.chunk_exts.append(buf[pos:][buf[pos:].index(b";"):][:100])
            req.body = body
            return None
        line = buf[pos:eol]
        size, semi, ext = line.partition(b";")
        if semi:
            req.chunk_exts.append(ext[:100])
        if not re.fullmatch(rb"[0-9a-fA-F]+", size):
            req.error = "bad chunk-size line %r" % line[:40]
            req.body = body
            return -1
        n = int(size, 16)
        pos = eol + 2
        if n == 0:
            break
        if len(buf) < pos + n + 2:
            req.body = body + buf[pos:pos + n]
            return None
        body += buf[pos:pos + n]
        pos += n
        if buf[pos:pos + 2] != b"\r\n":
            req.error = "chunk-data not followed by CRLF"
            req.body = body
            return -1
        pos += 2
    req.body = body
    while True:  # trailer section
        eol = buf.find(b"\r\n", pos)
        if eol < 0:
            return None
        line, pos = buf[pos:eol], eol + 2
        if not line:
            return pos
        req.trailers.append(line)


def parse_request(buf):
    """Parses one request from the start of buf.
    Returns (request, consumed, state), state being 'done', 'more' (need more bytes; request is
    what has arrived so far) or 'bad' (the instrument cannot frame it; the rest of the stream
    is recorded but not parsed)."""
    req = Request()
    start = 0
    while buf.startswith(b"\r\n", start) or buf.startswith(b"\n", start):
        start += 2 if buf.startswith(b"\r\n", start) else 1
    m = HEAD_END.search(buf, start)
    if not m:
        req.raw = buf[start:]
        req.error = "head cut short"
        return req, len(buf), "more"
    req.head = buf[start:m.end()]
    parse_head(req.head, req)
    kind, arg = body_framing(req)
    pos = m.end()
    if kind == "error":
        req.error = arg
        req.raw = buf[start:]
        return req, len(buf), "bad"
    if kind == "chunked":
        end = parse_chunked(buf, pos, req)
        if end == -1:
            req.raw = buf[start:]
            return req, len(buf), "bad"
        if end is None:
            req.raw, req.body_raw = buf[start:], buf[pos:]
            req.error = req.error or "chunked body cut short"
            return req, len(buf), "more"
    elif kind == "length":
        if len(buf) < pos + arg:
            req.raw, req.body = buf[start:], buf[pos:]
            req.error = "body has %d of %d bytes" % (len(buf) - pos, arg)
            return req, len(buf), "more"
        req.body = buf[pos:pos + arg]
        end = pos + arg
    else:
        end = pos
    req.raw, req.body_raw = buf[start:end], buf[pos:end]
    req.complete, req.error = True, None
    return req, end, "done"


# ---------------------------------------------------------------------------------------------
# The capturing backend
# ---------------------------------------------------------------------------------------------

class BackendConnection:
    def __init__(self, index):
        self.index = index
        self.raw = b""
        self.requests = []  # finished: complete, or given up on
        self.pending = None  # the request still arriving, if any
        self.closed_by_peer = False  # fulcrum closed (EOF or reset)
        self.closed_by_us = False

    def all_requests(self):
        return self.requests + ([self.pending] if self.pending else [])

    @property
    def reused(self):
        """A later request arrived after an earlier one on this connection."""
        return len(self.all_requests()) > 1

    def describe(self):
        state = "closed by fulcrum" if self.closed_by_peer else (
            "closed by backend" if self.closed_by_us else "open")
        if self.reused:
            state += ", reused"
        reqs = ", ".join(r.describe() for r in self.all_requests()) or "no request"
        return "conn %d (%s, %d bytes): %s\n      raw: %r" % (
            self.index, state, len(self.raw), reqs, self.raw[:600])


class CapturingBackend:
    """
    A threaded raw-TCP backend that records everything fulcrum sends it. responder(backend,
    connection, request) returns (bytes to send, close afterwards); by default every complete
    request gets OK_RESPONSE and the connection stays open.
    """

    def __init__(self, responder=None):
        self.responder = responder or (lambda backend, conn, req: (OK_RESPONSE, False))
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.address = "127.0.0.1:%d" % self.sock.getsockname()[1]
        self.lock = threading.Lock()
        self.connections = []
        self.sockets = []
        self.seq = 0
        self.last_activity = time.monotonic()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with self.lock:
                state = BackendConnection(len(self.connections))
                self.connections.append(state)
                self.sockets.append(conn)
                self.last_activity = time.monotonic()
            threading.Thread(target=self._serve, args=(conn, state), daemon=True).start()

    def _serve(self, conn, state):
        buf, broken = b"", False
        while True:
            try:
                data = conn.recv(65536)
            except OSError:
                data = b""
            with self.lock:
                self.last_activity = time.monotonic()
                state.raw += data
                if not data:
                    state.closed_by_peer = True
                    if state.pending is not None:
                        state.requests.append(state.pending)
                        state.pending = None
            if not data:
                break
            if broken:
                with self.lock:
                    state.requests[-1].raw += data
                continue
            buf += data
            while buf:
                req, used, result = parse_request(buf)
                if result == "more" and not req.raw:
                    break  # only empty lines so far
                with self.lock:
                    if state.pending is None:
                        self.seq += 1
                        req.seq = self.seq
                    else:
                        req.seq = state.pending.seq
                    if result == "more":
                        state.pending = req
                        break
                    state.pending = None
                    state.requests.append(req)
                buf = buf[used:]
                if result == "bad":
                    broken = True
                    break
                reply, close = self.responder(self, state, req)
                try:
                    if reply:
                        conn.sendall(reply)
                    if close:
                        conn.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                if close:
                    with self.lock:
                        state.closed_by_us = True
                    conn.close()
                    return
        conn.close()

    def snapshot(self):
        """(connections, every request in arrival order), copied under the lock."""
        with self.lock:
            conns = list(self.connections)
            reqs = sorted((r for c in conns for r in c.all_requests()), key=lambda r: r.seq)
            return conns, reqs

    def wait_quiet(self, quiet=0.2, timeout=3.0):
        """Waits until nothing has arrived for `quiet` seconds, so that bytes fulcrum sent
        just before answering the client are recorded."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                idle = time.monotonic() - self.last_activity
            if idle >= quiet:
                return
            time.sleep(0.02)

    def connection_with(self, marker):
        with self.lock:
            for c in self.connections:
                if marker in c.raw:
                    return c
        return None

    def close(self):
        self.sock.close()
        with self.lock:
            for s in self.sockets:
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass


def response_case_responder(raw, close):
    """The first request the backend ever completes gets the case's bytes; later ones (the
    probe) get OK_RESPONSE."""
    def respond(backend, conn, req):
        if req.seq == 1:
            return raw, close
        return OK_RESPONSE, False
    return respond


# ---------------------------------------------------------------------------------------------
# The client side: send, read everything, parse the responses
# ---------------------------------------------------------------------------------------------

class Transcript:
    """Everything the client received on one connection, with arrival times."""

    def __init__(self):
        self.data = b""
        self.arrivals = []  # (time, total bytes so far)
        self.eof = False
        self.reset = False
        self.send_error = None
        self.t_sent = None

    @property
    def closed(self):
        return self.eof or self.reset

    def time_at(self, offset):
        for t, total in self.arrivals:
            if total >= offset:
                return t
        return None

    def describe(self):
        how = "closed by EOF" if self.eof else ("closed by reset" if self.reset else "still open")
        extra = ", send failed: %s" % self.send_error if self.send_error else ""
        return "%d bytes, %s%s: %r" % (len(self.data), how, extra, self.data[:300])


def send_bytes(sock, raw, action, transcript):
    try:
        sock.sendall(raw)
        if action == "send_then_shutdown_write":
            sock.shutdown(socket.SHUT_WR)
    except OSError as e:
        transcript.send_error = repr(e)
    transcript.t_sent = time.monotonic()


def read_until_idle(sock, transcript, idle=IDLE, cap=READ_CAP, enough=None):
    """Reads until EOF/reset, `idle` seconds without data, `cap` seconds, or enough(data)."""
    deadline = time.monotonic() + cap
    last = time.monotonic()
    while True:
        wait = min(last + idle, deadline) - time.monotonic()
        if wait <= 0:
            return
        readable, _, _ = select.select([sock], [], [], wait)
        if not readable:
            continue
        try:
            data = sock.recv(65536)
        except (ConnectionResetError, BrokenPipeError):
            transcript.reset = True
            return
        if not data:
            transcript.eof = True
            return
        last = time.monotonic()
        transcript.data += data
        transcript.arrivals.append((last, len(transcript.data)))
        if enough and enough(transcript.data):
            return


def converse(sock, raw, action="send", idle=IDLE, enough=None):
    """Sends raw (in a thread, so a large send never blocks our reading) and reads."""
    transcript = Transcript()
    sender = threading.Thread(target=send_bytes, args=(sock, raw, action, transcript),
                              daemon=True)
    sender.start()
    read_until_idle(sock, transcript, idle=idle, enough=enough)
    sender.join(5)
    return transcript


class Message:
    """One response as the client received it: interim (1xx) heads, then the final one."""

    def __init__(self):
        self.interim = []
        self.heads = []  # raw heads, interim ones included
        self.status = None
        self.headers = []
        self.body = b""
        self.complete = False
        self.garbage = False
        self.end = None  # offset in the transcript where the message ended

    def header_values(self, name):
        return [v for n, v in self.headers if n.lower() == name]


def parse_status_head(head, msg):
    lines = LINE_SPLIT.split(head.rstrip(b"\r\n"))
    m = re.match(rb"HTTP/\d\.\d +(\d{3})(?:\s|$)", lines[0])
    if not m:
        return False
    msg.status = int(m.group(1))
    msg.headers = []
    for line in lines[1:]:
        text = line.decode("latin-1")
        if text[:1] in (" ", "\t") and msg.headers:
            n, v = msg.headers[-1]
            msg.headers[-1] = (n, (v + " " + text.strip()).strip())
            continue
        name, _, value = text.partition(":")
        msg.headers.append((name.strip(), value.strip(" \t")))
    return True


def read_response_body(data, pos, msg, method, clean_close):
    """Frames the final response's body as a client would; returns the end offset."""
    te = ",".join(msg.header_values("transfer-encoding")).lower()
    codings = [c.strip() for c in te.split(",") if c.strip()]
    if method == "HEAD" or msg.status in (204, 304):
        msg.complete = True
        return pos
    if codings and codings[-1] == "chunked":
        req = Request()  # reuse the request-side chunked decoder
        end = parse_chunked(data, pos, req)
        msg.body = req.body
        if end is None or end == -1:
            return len(data)
        msg.complete = True
        return end
    cls = msg.header_values("content-length")
    if not codings and cls and DIGITS.fullmatch(cls[0].strip()):
        n = int(cls[0].strip())
        msg.body = data[pos:pos + n]
        msg.complete = len(data) >= pos + n
        return min(len(data), pos + n)
    msg.body = data[pos:]  # read until close
    msg.complete = clean_close
    return len(data)


def parse_messages(data, clean_close, methods=()):
    """Every response in data, in order; the last may be incomplete or garbage."""
    messages, pos = [], 0
    while pos < len(data):
        msg = Message()
        method = methods[len(messages)] if len(messages) < len(methods) else "GET"
        while True:
            m = HEAD_END.search(data, pos)
            if not m:
                msg.heads.append(data[pos:])
                pos = len(data)
                break
            head, pos = data[pos:m.end()], m.end()
            msg.heads.append(head)
            if not parse_status_head(head, msg):
                msg.garbage = True
                pos = len(data)
                break
            if 100 <= msg.status < 200 and msg.status != 101:
                msg.interim.append(msg.status)
                msg.status = None
                continue
            pos = read_response_body(data, pos, msg, method, clean_close)
            break
        msg.end = pos
        messages.append(msg)
        if not msg.complete:
            break
    return messages


# ---------------------------------------------------------------------------------------------
# Outcomes
# ---------------------------------------------------------------------------------------------

def request_outcome(messages, closed):
    """(labels, description). The capturing backend only answers 200, so any other final
    status was generated by fulcrum."""
    finals = [m.status for m in messages if m.status is not None]
    errors = [s for s in finals if s != 200]
    desc = "client statuses %s, %s" % (finals, "closed" if closed else "open")
    if any(m.garbage for m in messages):
        return set(), "unparseable answer (%s)" % desc
    if errors:
        s = errors[0]
        if s == 400:
            return {"reject_400", "reject_4xx"}, "reject_400 (%s)" % desc
        if 400 <= s < 500:
            return {"reject_4xx"}, "reject_4xx (%s)" % desc
        if s >= 500:
            return {"reject_5xx_or_close"}, "reject_5xx_or_close (%s)" % desc
        return set(), "unexpected status %d (%s)" % (s, desc)
    if finals:
        return set(FORWARD), "forward (%s)" % desc
    if closed:
        return {"reject_5xx_or_close"}, "reject_5xx_or_close (closed, no answer)"
    return set(), "no answer, connection left open"


def response_outcome(final, closed, received):
    """(labels, description). On the response side the README asks for "a 502 if nothing was
    relayed yet, an abort after": a connection closed before a single byte reached the client
    had relayed nothing, so it should have been a 502."""
    if final is None:
        if closed and not received:
            return set(), ("closed without sending a byte: nothing was relayed yet, so the "
                           "answer must be a 502, not a bare close/reset")
        if closed:
            return {"reject_5xx_or_close"}, "reject_5xx_or_close (closed, no final response)"
        return set(), "no final response, connection left open"
    if final.garbage:
        return set(), "unparseable answer"
    desc = "final status %s, %s, %s" % (final.status,
                                        "complete" if final.complete else "cut short",
                                        "closed" if closed else "open")
    if final.status >= 500:  # the scripted backends never send one: fulcrum made it
        return {"reject_5xx_or_close"}, "reject_5xx_or_close (%s)" % desc
    if not final.complete:
        if closed:
            return {"reject_5xx_or_close"}, "reject_5xx_or_close: aborted (%s)" % desc
        return set(), "stalled (%s)" % desc
    return set(FORWARD), "forward (%s)" % desc


class Result:
    """Everything one case produced, for the outcome rules and the checks."""

    def __init__(self, case, kind, transcript, messages, backend, snapshot, probe):
        self.case, self.kind, self.transcript = case, kind, transcript
        self.messages = messages
        self.backend = backend
        self.connections, self.requests = snapshot  # taken before the probe
        self.first = self.requests[0] if self.requests else None
        self.probe = probe  # (Transcript, BackendConnection or None, case conn indices) or None
        finals = [m for m in messages if m.status is not None or m.garbage]
        self.final = finals[0] if finals else None
        if kind == "request":
            self.labels, self.outcome = request_outcome(messages, transcript.closed)
        else:
            self.labels, self.outcome = response_outcome(self.final, transcript.closed,
                                                         len(transcript.data))
        self.forwarded = bool(self.labels & FORWARD)

    def client_heads(self):
        return [h for m in self.messages for h in m.heads]

    def report(self, problems):
        lines = ["case %s (%s side, level %s)" % (self.case["id"], self.kind,
                                                  self.case.get("level")),
                 "  outcome seen: %s; acceptable: %s; status %s; close %s" % (
                     self.outcome, self.case["acceptable"], self.case.get("status"),
                     self.case.get("close")),
                 "  problems:"]
        lines += ["    - " + p for p in problems]
        lines.append("  client received: " + self.transcript.describe())
        if self.kind == "response":
            lines.append("  backend sent: %r" % self.case["raw"][:300])
        lines.append("  backend received (%d connection(s)):" % len(self.connections))
        lines += ["    " + c.describe() for c in self.connections]
        if self.probe:
            t, conn, _ = self.probe
            lines.append("  probe: client got %s; backend conn %s" % (
                t.describe(), conn.index if conn else "none"))
        return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# Checks: one function per corpus `checks` key; each returns None or what went wrong
# ---------------------------------------------------------------------------------------------

def request_path(target):
    path = re.sub(r"^[a-zA-Z][a-zA-Z0-9+.-]*://[^/?#]*", "", target)
    return path.split("?", 1)[0] or "/"


def backend_requests(r, n):
    if len(r.requests) != n:
        return "backend got %d request(s), expected %d" % (len(r.requests), n)


def backend_requests_max(r, n):
    if len(r.requests) > n:
        return "backend got %d request(s) (%s), at most %d allowed" % (
            len(r.requests), "; ".join(q.describe() for q in r.requests), n)


def backend_complete_requests(r, n):
    done = [q for q in r.requests if q.complete]
    if len(done) != n:
        return "backend got %d complete request(s), expected %d" % (len(done), n)


def smuggle_marker(r, marker):
    hits = [q for q in r.requests if q.target and request_path(q.target) == marker]
    if hits:
        return "a request for %s reached the backend: %r" % (marker, hits[0].head[:200])


def backend_targets_in_order(r, targets):
    seen = [q.target for q in r.requests]
    if seen != targets:
        return "backend targets %s, expected %s" % (seen, targets)


def backend_conn_reused(r, expected):
    if r.probe is None:
        return "no probe was sent (internal error)"
    _, conn, case_conns = r.probe
    if conn is None:
        return "the probe request never reached the backend"
    reused = conn.index in case_conns
    if reused != expected:
        return ("the probe arrived on backend connection %d, which carried the case's bytes"
                % conn.index if reused else
                "the probe arrived on a new backend connection, reuse was expected")


def forwarded_header_absent(r, names):
    if r.first:
        present = [n for n in names if r.first.header_values(n.lower())]
        if present:
            return "forwarded request has %s: %r" % (present, r.first.head[:400])


def forwarded_header_count(r, counts):
    if r.first:
        for name, n in counts.items():
            got = len(r.first.header_values(name.lower()))
            if got != n:
                return "forwarded request has %d %s field(s), expected %d" % (got, name, n)


def forwarded_header_section_absent(r, fields):
    if r.first:
        have = {"%s: %s" % (n.strip().lower(), v.lower()) for n, v in r.first.headers}
        bad = [f for f in fields if f.lower() in have]
        if bad:
            return "forwarded header section contains %s" % bad


def forwarded_body_b64(r, body):
    if r.first:
        want = base64.b64decode(body)
        if not r.first.complete or r.first.body != want:
            return "forwarded body %r (%s), expected %r" % (
                r.first.body[:200], r.first.describe(), want)


def forwarded_request_line(r, line):
    if r.first and r.first.line != line.encode("latin-1"):
        return "forwarded request line %r, expected %r" % (r.first.line, line)


def forwarded_path(r, path):
    if r.first and r.first.target != path:
        return "forwarded target %r, expected %r" % (r.first.target, path)


def forwarded_host_if_passthrough(r, host):
    if r.first:
        hosts = r.first.header_values("host")
        if hosts == [r.backend.address]:
            return None  # fulcrum set its own Host: not a pass-through
        if hosts != [host]:
            return "forwarded Host %s, expected [%r]" % (hosts, host)


def forwarded_version_not(r, version):
    if r.first and (r.first.version == version or version.encode() in r.first.line):
        return "forwarded request line %r carries %s" % (r.first.line, version)


def forwarded_raw_line_absent(r, line):
    if r.first:
        raw = line.encode("latin-1")
        if r.first.head.startswith(raw) or b"\n" + raw in r.first.head:
            return "the raw line %r was forwarded" % line


def forwarded_raw_line_present(r, line):
    """The forwarded head has exactly this field line, byte for byte (a canonical form)."""
    if r.first:
        if line.encode("latin-1") not in LINE_SPLIT.split(r.first.head):
            return "the forwarded head has no line %r: %r" % (line, r.first.head[:400])


def all_heads(r):
    return [q.head or q.raw for q in r.requests] + \
        [b"\r\n".join(q.trailers) for q in r.requests if q.trailers]


def heads_must_not_match(r, pattern, what):
    for head in all_heads(r):
        m = re.search(pattern, head)
        if m:
            return "forwarded head contains %s near %r" % (
                what, head[max(0, m.start() - 40):m.end() + 40])


def forwarded_no_bare_lf(r, on):
    if on:
        return heads_must_not_match(r, rb"(?<!\r)\n", "a bare LF")


def forwarded_no_bare_cr(r, on):
    if on:
        return heads_must_not_match(r, rb"\r(?!\n)", "a bare CR")


def forwarded_no_nul(r, on):
    if on:
        return heads_must_not_match(r, rb"\x00", "a NUL")


def forwarded_no_obs_fold(r, on):
    if on:
        return heads_must_not_match(r, rb"\n[ \t]", "an obs-fold")


def forwarded_chunk_ext_absent(r, on):
    if on:
        exts = [e for q in r.requests for e in q.chunk_exts]
        if exts:
            return "chunk extension(s) forwarded: %r" % exts[:3]


def client_body_b64(r, body):
    if r.forwarded:
        want = base64.b64decode(body)
        if r.final.body != want:
            return "client body %r, expected %r" % (r.final.body[:200], want)


def client_must_not_see(r, text):
    seen = r.transcript.data + (r.probe[0].data if r.probe else b"")
    if text.lower().encode() in seen.lower():
        return "the client received %r" % text


def client_header_absent(r, names):
    if r.forwarded:
        present = [n for n in names if r.final.header_values(n.lower())]
        if present:
            return "client response has %s" % present


def client_sees_complete_message(r, expected):
    f = r.final
    complete = f is not None and not f.garbage and f.complete and f.status < 500
    if complete != expected:
        return "client %s a complete message (final status %s)" % (
            "got" if complete else "did not get", f.status if f else None)


def client_final_status(r, status):
    if r.forwarded and r.final.status != status:
        return "final status %s, expected %s" % (r.final.status, status)


def client_interim_statuses(r, statuses):
    if r.forwarded and r.final.interim != statuses:
        return "interim statuses %s, expected %s" % (r.final.interim, statuses)


def client_no_obs_fold(r, on):
    if on:
        for head in r.client_heads():
            if re.search(rb"\n[ \t]", head):
                return "client head contains an obs-fold: %r" % head[:300]


def client_no_space_before_colon(r, on):
    if on:
        for head in r.client_heads():
            for line in LINE_SPLIT.split(head)[1:]:
                name, colon, _ = line.partition(b":")
                if colon and name != name.rstrip():
                    return "client head has whitespace before a colon: %r" % line


def client_transfer_encoding_unambiguous(r, on):
    """Ours: if the relayed response has Transfer-Encoding, it is one field line whose only
    'chunked' is the final coding, so every client frames the message the same way."""
    if on and r.forwarded:
        lines = r.final.header_values("transfer-encoding")
        codings = [c.strip().lower() for v in lines for c in v.split(",") if c.strip()]
        if len(lines) > 1 or ("chunked" in codings and codings.index("chunked") !=
                              len(codings) - 1):
            return "client got Transfer-Encoding %s: clients disagree on its framing" % lines


def max_latency_ms(r, limit):
    f = r.final
    if f is None or not f.complete or r.transcript.t_sent is None:
        return "no complete final response to time"
    ms = (r.transcript.time_at(f.end) - r.transcript.t_sent) * 1000
    if ms > limit:
        return "the response took %.0f ms, at most %d allowed" % (ms, limit)


CHECKS = {f.__name__: f for f in (
    backend_requests, backend_requests_max, backend_complete_requests, smuggle_marker,
    backend_targets_in_order, backend_conn_reused, forwarded_header_absent,
    forwarded_header_count, forwarded_header_section_absent, forwarded_body_b64,
    forwarded_request_line, forwarded_path, forwarded_host_if_passthrough,
    forwarded_version_not, forwarded_raw_line_absent, forwarded_raw_line_present,
    forwarded_no_bare_lf, forwarded_no_bare_cr, forwarded_no_nul, forwarded_no_obs_fold,
    forwarded_chunk_ext_absent,
    client_body_b64, client_must_not_see, client_header_absent, client_sees_complete_message,
    client_final_status, client_interim_statuses, client_no_obs_fold,
    client_no_space_before_colon, client_transfer_encoding_unambiguous, max_latency_ms)}


def evaluate(r):
    """Every way the result breaks its case, as readable strings (empty: it passed)."""
    case, problems = r.case, []
    unknown = set(case["acceptable"]) - OUTCOMES
    if unknown:
        problems.append("UNKNOWN outcome name(s) %s in acceptable: teach test_corpus.py"
                        % sorted(unknown))
    if not r.labels & set(case["acceptable"]):
        problems.append("outcome %s is not one of %s" % (r.outcome, case["acceptable"]))
    problems += status_problems(r)
    if case.get("close") and not r.transcript.closed:
        problems.append("the client connection was left open (close: true)")
    if r.kind == "request" and not r.forwarded:
        answered = 0
        for m in r.messages:
            if m.status != 200:
                break
            answered += 1
        done = sum(1 for q in r.requests if q.complete)
        if done > answered:
            problems.append("rejected, yet %d complete request(s) reached the backend for %d "
                            "answered" % (done, answered))
    for key, value in case["checks"].items():
        check = CHECKS.get(key)
        if check is None:
            problems.append("UNKNOWN check key %r: implement it in test_corpus.py" % key)
            continue
        problem = check(r, value)
        if problem:
            problems.append("%s=%s: %s" % (key, json.dumps(value)[:80], problem))
    return problems


def status_problems(r):
    allowed = r.case.get("status")
    if not allowed:
        return []
    if r.kind == "request":
        made = [m.status for m in r.messages if m.status not in (None, 200)]
    else:
        made = [r.final.status] if r.final is not None and r.final.status is not None else []
    bad = [s for s in made if s not in allowed]
    return ["status %s is not one of %s" % (bad, allowed)] if bad else []


# ---------------------------------------------------------------------------------------------
# The tests
# ---------------------------------------------------------------------------------------------

FULCRUM_EXTRA = "shutdown_timeout: 1s\n"


class CorpusTest(FulcrumTestCase):
    """One test method per case; see the module docstring."""

    def start(self, responder=None):
        backend = CapturingBackend(responder)
        self.scripted.append(backend)  # FulcrumTestCase.tearDown closes it
        f = self.fulcrum(config([("s", backend.address)], threads=1, extra=FULCRUM_EXTRA))
        return backend, f

    def probe(self, f, backend, sock, can_reuse):
        """Sends PROBE (on sock if it can be reused, else on a new connection) and finds the
        backend connection it arrived on."""
        with backend.lock:
            case_conns = {c.index for c in backend.connections if c.raw}
        own = None
        if not can_reuse:
            sock = own = connect(f.port)
        try:
            transcript = converse(sock, PROBE, idle=3.0, enough=lambda d: d.endswith(b"ok"))
        finally:
            if own:
                own.close()
        conn = None
        deadline = time.monotonic() + 3
        while conn is None and time.monotonic() < deadline:
            conn = backend.connection_with(PROBE_TARGET)
            if conn is None:
                time.sleep(0.02)
        return transcript, conn, case_conns

    def run_case(self, case, kind):
        if kind == "request":
            backend, f = self.start()
            raw, methods = case["raw"], ()
        else:
            if case["backend_action"] not in BACKEND_ACTIONS:
                self.fail("case %s: unknown backend_action %r" % (case["id"],
                                                                  case["backend_action"]))
            close = BACKEND_ACTIONS[case["backend_action"]]
            backend, f = self.start(response_case_responder(case["raw"], close))
            raw = case["client_request"]
            methods = (raw.split(b" ", 1)[0].decode("latin-1"),)
        action = case.get("client_action", "send")
        if action not in CLIENT_ACTIONS:
            self.fail("case %s: unknown client_action %r" % (case["id"], action))
        with connect(f.port) as sock:
            transcript = converse(sock, raw, action)
            backend.wait_quiet()
            snapshot = backend.snapshot()
            messages = parse_messages(transcript.data, transcript.eof, methods)
            probe = None
            if "backend_conn_reused" in case["checks"]:
                can_reuse = action == "send" and not transcript.closed
                probe = self.probe(f, backend, sock, can_reuse)
            result = Result(case, kind, transcript, messages, backend, snapshot, probe)
        problems = evaluate(result)
        if problems:
            self.fail("\n" + result.report(problems))

    def test_corpus_files(self):
        # the copies load, ids are unique, and each file holds the side it claims
        for name, kind in (("http1-requests.json", "request"),
                           ("http1-responses.json", "response")):
            cases = load_corpus(name)
            self.assertTrue(cases, name)
            ids = [c["id"] for c in cases]
            self.assertEqual(len(ids), len(set(ids)), name)
            for c in cases:
                self.assertEqual(c["category"], kind, c["id"])


def method_name(prefix, case_id):
    return "test_%s_%s" % (prefix, re.sub(r"[^0-9a-zA-Z]+", "_", case_id))


def attach(prefix, cases, kind):
    for case in cases:
        name = method_name(prefix, case["id"])
        if hasattr(CorpusTest, name):
            raise ValueError("two cases map to %s" % name)

        def test(self, case=case):
            self.run_case(case, kind)
        test.__name__ = name
        test.__doc__ = None
        setattr(CorpusTest, name, test)


attach("req", load_corpus("http1-requests.json"), "request")
attach("resp", load_corpus("http1-responses.json"), "response")
attach("extra_req", EXTRA_REQUESTS, "request")
attach("extra_resp", EXTRA_RESPONSES, "response")
