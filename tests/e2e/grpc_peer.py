#!/usr/bin/env python3
"""
grpc_peer.py - a real gRPC server and client for the HTTP/2 and gRPC tests, on Debian's
python3-grpcio (gRPC's own C core: its HTTP/2, HPACK, flow control and ALPN), with no generated
code: the messages are encoded and decoded by the few lines of protobuf below.

Server (a process of its own, so that a test can kill it under load):

    python3 tests/e2e/grpc_peer.py serve --port P --name NAME [--tls CERT KEY] [--host H]

--port 0 lets the kernel choose. Once it listens it prints one line and flushes it:

    grpc_peer ready name=NAME port=P tls=no pid=PID

With --tls it serves h2 over TLS (gRPC always offers and requires ALPN "h2"); without, h2c with
prior knowledge. SIGTERM or SIGINT stops it (5 s grace for calls in flight). SIGUSR1 sets every
health status to NOT_SERVING, SIGUSR2 back to SERVING.

Services (the .proto these messages follow, for grpcurl or @grpc/grpc-js):

    package fulcrum.test;
    message EchoRequest {
      bytes  payload  = 1;
      uint32 count    = 2;   // ServerStream: how many replies
      uint32 status   = 3;   // Fail: the grpc-status to return (a grpc.StatusCode value)
      string message  = 4;   // Fail: the grpc-message to return
      uint32 delay_ms = 5;   // every method: wait this long first (cancellation counts)
    }
    message EchoReply {
      bytes  payload = 1;
      string server  = 2;    // the server's --name
      uint32 index   = 3;    // position in a stream; ClientStream: the number of requests
      string info    = 4;    // Headers: the request's metadata, one "name: value" per line
    }
    service Echo {
      rpc Unary(EchoRequest) returns (EchoReply);                 // payload echoed
      rpc ServerStream(EchoRequest) returns (stream EchoReply);   // count replies, index 0..
      rpc ClientStream(stream EchoRequest) returns (EchoReply);   // payloads concatenated
      rpc Bidi(stream EchoRequest) returns (stream EchoReply);    // one reply per request
      rpc Fail(EchoRequest) returns (EchoReply);                  // always the chosen status
      rpc Headers(EchoRequest) returns (EchoReply);               // metadata the server saw
    }
    // grpc.health.v1.Health/Check, the standard one:
    //   HealthCheckRequest { string service = 1; }
    //   HealthCheckResponse { enum status = 1; }  UNKNOWN 0, SERVING 1, NOT_SERVING 2,
    //                                             SERVICE_UNKNOWN 3
    // Unknown services get NOT_FOUND, as the health protocol says. "" and "fulcrum.test.Echo"
    // start SERVING.

and a control service of the test peer (JSON messages, not protobuf: only this file uses it):

    fulcrum.test.Control/SetHealth  {"service": S, "status": "NOT_SERVING"}  -> {"ok": true}
    fulcrum.test.Control/Stats      {}  -> {"name":..., "calls": {method: n}, "cancelled": n,
                                            "health": {service: status}}

"cancelled" counts calls whose client (or a proxy in between) cancelled them while the server
was still working on them (during delay_ms, or between stream messages): how a test sees that
the work of a reset stream was cancelled.

Client library (import grpc_peer, from tests/e2e): every call function takes a target
"host:port" and returns a Result with what the client saw, never raising for an RPC error:

    Result.code       "OK", "UNAVAILABLE", ... (grpc.StatusCode name)
    Result.details    the grpc-message ("" when none)
    Result.replies    [Reply(payload: bytes, server: str, index: int, info: str), ...]
    Result.initial_metadata, Result.trailing_metadata   [(name, value), ...]
    Result.elapsed    seconds
    Result.reply      the first reply or None; Result.ok: code == "OK"

    unary(target, payload=b"hi", **kw)
    server_stream(target, count=3, payload=b"x", **kw)
    client_stream(target, payloads=(b"a", b"b"), **kw)
    bidi(target, payloads=(b"a", b"b"), lockstep=True, **kw)    lockstep: each request is sent
                                  only after the reply to the one before it arrived (a proxy that
                                  buffers a whole stream stalls it: the deadline says so)
    fail(target, status="NOT_FOUND", message="no such thing", **kw)
    headers(target, **kw)         the metadata the server received (Reply.info)
    health_check(target, service="")   -> Result, with Result.health: "SERVING", ... or None
    set_health(target, service, status)  -> Result (status "SERVING" / "NOT_SERVING" /
                                  "SERVICE_UNKNOWN" / "UNKNOWN")
    stats(target)                 -> dict (Control/Stats), or raises RuntimeError
    load(target, seconds=3, concurrency=8, max_calls=100000, **kw)
                                  unary calls from threads for a bounded time and count:
                                  {"servers": Counter(name), "codes": Counter(code), "calls": n}

  The keyword arguments of every call: timeout (s, default 10: the grpc-timeout it sends),
  metadata [(name, value)], delay_ms, tls (None for h2c; True to trust the system CAs; or the
  path of a CA file), server_name (TLS name to check, e.g. "localhost" when the target is an IP
  address), channel (reuse a grpc.Channel from channel(), in which case target and the TLS
  arguments are ignored). channel(target, tls=None, server_name=None) makes one; close it.

  spawn(name, port=0, tls=None) starts `grpc_peer.py serve` as a child process and returns a
  PeerProcess (.port, .pid, .target, .stop(), .kill(), .log()) once it printed its ready line.

Using it in an end-to-end test (a sketch; the pool keys are those of issue 15):

    import grpc_peer
    servers = [grpc_peer.spawn("g%d" % i) for i in range(3)]   # each .cleanup() in tearDown
    f = self.fulcrum(config=...)  # a listener with h2c: true, a pool with protocol: h2 and
                                  # health_check: { type: grpc, service: fulcrum.test.Echo }
    target = "127.0.0.1:%d" % f.port
    r = grpc_peer.unary(target, b"hello")
    self.assertEqual((r.code, r.reply.payload), ("OK", b"hello"))
    r = grpc_peer.fail(target, "RESOURCE_EXHAUSTED", "slow down")   # passed through intact?
    grpc_peer.set_health(servers[0].target, "fulcrum.test.Echo", "NOT_SERVING")
    res = grpc_peer.load(target, seconds=3, concurrency=6)          # spread: res["servers"]
    grpc_peer.stats(servers[0].target)["cancelled"]                 # work cancelled upstream

A server's stderr is its log (PeerProcess.log()). gRPC's C core prints its own errors there
and on the client's stderr (e.g. "Error parsing metadata" when a proxy answers a gRPC call with
an HTML 503); GRPC_VERBOSITY=NONE in the environment silences it.

Self-checks by hand (not part of `make test`): tests/e2e/peers_selfcheck.py --grpc runs this
client against this server directly (h2c and TLS) and through HAProxy 2.6 as an HTTP/2 proxy.
"""
import argparse
import collections
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from concurrent import futures

try:
    import grpc
except ImportError:  # a python3 other than Debian's: use Debian's python3-grpcio anyway
    sys.path.append("/usr/lib/python3/dist-packages")
    import grpc

SERVICE = "fulcrum.test.Echo"
CONTROL = "fulcrum.test.Control"
HEALTH = "grpc.health.v1.Health"
HEALTH_STATUSES = {"UNKNOWN": 0, "SERVING": 1, "NOT_SERVING": 2, "SERVICE_UNKNOWN": 3}
HEALTH_NAMES = {v: k for k, v in HEALTH_STATUSES.items()}
MAX_STREAM_COUNT = 100000  # ServerStream replies, at most

# ---------------------------------------------------------------------------------------------
# A little protobuf: varints (wire type 0) and length-delimited fields (wire type 2), the only
# two kinds these messages use. Unknown fields are skipped, as protobuf does.

ECHO_REQUEST = {1: ("payload", bytes), 2: ("count", int), 3: ("status", int),
                4: ("message", str), 5: ("delay_ms", int)}
ECHO_REPLY = {1: ("payload", bytes), 2: ("server", str), 3: ("index", int), 4: ("info", str)}
HEALTH_REQUEST = {1: ("service", str)}
HEALTH_RESPONSE = {1: ("status", int)}


def _varint(n):
    out = bytearray()
    n &= (1 << 64) - 1
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _read_varint(data, i):
    shift = result = 0
    while True:
        if i >= len(data) or shift > 63:
            raise ValueError("truncated or overlong varint")
        b = data[i]
        i += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, i
        shift += 7


def encode(schema, **values):
    """Encodes values (by field name) as a protobuf message of schema {number: (name, type)}.
    Zero values and empty strings are left out, as proto3 does."""
    out = bytearray()
    for number in sorted(schema):
        name, kind = schema[number]
        v = values.get(name)
        if not v:
            continue
        if kind is int:
            out += _varint(number << 3 | 0) + _varint(v)
        else:
            if kind is str:
                v = v.encode("utf-8")
            out += _varint(number << 3 | 2) + _varint(len(v)) + bytes(v)
    return bytes(out)


def decode(schema, data):
    """Decodes a protobuf message of schema into a dict with every field (defaults for the
    missing ones)."""
    out = {name: kind() for name, kind in schema.values()}
    i = 0
    while i < len(data):
        key, i = _read_varint(data, i)
        number, wire = key >> 3, key & 7
        if wire == 0:
            v, i = _read_varint(data, i)
        elif wire == 2:
            n, i = _read_varint(data, i)
            if i + n > len(data):
                raise ValueError("truncated field %d" % number)
            v, i = bytes(data[i:i + n]), i + n
        elif wire == 1:
            v, i = data[i:i + 8], i + 8
        elif wire == 5:
            v, i = data[i:i + 4], i + 4
        else:
            raise ValueError("unsupported wire type %d" % wire)
        if number in schema:
            name, kind = schema[number]
            if kind is str and isinstance(v, bytes):
                v = v.decode("utf-8", "replace")
            if kind is int and wire == 0 or kind is not int and wire == 2:
                out[name] = v
    return out


# ---------------------------------------------------------------------------------------------
# Server

class EchoServer:
    """The services above on one grpc.Server. Use serve() to run it in this process."""

    def __init__(self, name):
        self.name = name
        self.lock = threading.Lock()
        self.calls = collections.Counter()
        self.cancelled = 0
        self.health = {"": "SERVING", SERVICE: "SERVING"}

    # -- helpers
    def _count(self, method):
        with self.lock:
            self.calls[method] += 1

    def _cancelled(self):
        with self.lock:
            self.cancelled += 1

    def _delay(self, context, ms):
        """Waits ms milliseconds, or less if the call is cancelled; False if it was."""
        deadline = time.monotonic() + ms / 1000.0
        while time.monotonic() < deadline:
            if not context.is_active():
                self._cancelled()
                return False
            time.sleep(min(0.01, max(0.0, deadline - time.monotonic())))
        return True

    def _reply(self, **kw):
        return encode(ECHO_REPLY, server=self.name, **kw)

    # -- fulcrum.test.Echo
    def unary(self, request, context):
        self._count("Unary")
        req = decode(ECHO_REQUEST, request)
        if not self._delay(context, req["delay_ms"]):
            return b""
        return self._reply(payload=req["payload"])

    def server_stream(self, request, context):
        self._count("ServerStream")
        req = decode(ECHO_REQUEST, request)
        for i in range(min(req["count"], MAX_STREAM_COUNT)):
            if not self._delay(context, req["delay_ms"]):
                return
            yield self._reply(payload=req["payload"], index=i)

    def client_stream(self, request_iterator, context):
        self._count("ClientStream")
        parts, n = [], 0
        for request in request_iterator:
            req = decode(ECHO_REQUEST, request)
            if not self._delay(context, req["delay_ms"]):
                return b""
            parts.append(req["payload"])
            n += 1
        return self._reply(payload=b"".join(parts), index=n)

    def bidi(self, request_iterator, context):
        self._count("Bidi")
        for i, request in enumerate(request_iterator):
            req = decode(ECHO_REQUEST, request)
            if not self._delay(context, req["delay_ms"]):
                return
            yield self._reply(payload=req["payload"], index=i)

    def fail(self, request, context):
        self._count("Fail")
        req = decode(ECHO_REQUEST, request)
        if not self._delay(context, req["delay_ms"]):
            return b""
        codes = {c.value[0]: c for c in grpc.StatusCode}
        code = codes.get(req["status"], grpc.StatusCode.UNKNOWN)
        context.set_trailing_metadata((("x-fail-server", self.name),))
        context.abort(code, req["message"])

    def headers(self, request, context):
        self._count("Headers")
        req = decode(ECHO_REQUEST, request)
        if not self._delay(context, req["delay_ms"]):
            return b""
        lines = ["%s: %s" % (k, v if isinstance(v, str) else v.hex())
                 for k, v in context.invocation_metadata()]
        remaining = context.time_remaining()
        if remaining is not None:
            lines.append("x-time-remaining: %.3f" % remaining)
        lines.append("x-peer: %s" % context.peer())
        return self._reply(payload=req["payload"], info="\n".join(lines) + "\n")

    # -- grpc.health.v1.Health
    def check(self, request, context):
        self._count("Health/Check")
        service = decode(HEALTH_REQUEST, request)["service"]
        with self.lock:
            status = self.health.get(service)
        if status is None:
            context.abort(grpc.StatusCode.NOT_FOUND, "unknown service %r" % service)
        return encode(HEALTH_RESPONSE, status=HEALTH_STATUSES[status])

    def set_all(self, status):
        with self.lock:
            for k in self.health:
                self.health[k] = status

    # -- fulcrum.test.Control
    def set_health(self, request, context):
        self._count("Control/SetHealth")
        try:
            req = json.loads(request or b"{}")
            service, status = req.get("service", ""), req["status"]
            if status not in HEALTH_STATUSES:
                raise ValueError("unknown status %r" % status)
        except (ValueError, KeyError, TypeError) as e:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(e))
        with self.lock:
            self.health[service] = status
        return json.dumps({"ok": True}).encode()

    def stats(self, request, context):
        with self.lock:
            return json.dumps({"name": self.name, "calls": dict(self.calls),
                               "cancelled": self.cancelled,
                               "health": dict(self.health)}).encode()

    def handlers(self):
        h = grpc
        return [
            h.method_handlers_generic_handler(SERVICE, {
                "Unary": h.unary_unary_rpc_method_handler(self.unary),
                "ServerStream": h.unary_stream_rpc_method_handler(self.server_stream),
                "ClientStream": h.stream_unary_rpc_method_handler(self.client_stream),
                "Bidi": h.stream_stream_rpc_method_handler(self.bidi),
                "Fail": h.unary_unary_rpc_method_handler(self.fail),
                "Headers": h.unary_unary_rpc_method_handler(self.headers),
            }),
            h.method_handlers_generic_handler(HEALTH, {
                "Check": h.unary_unary_rpc_method_handler(self.check),
            }),
            h.method_handlers_generic_handler(CONTROL, {
                "SetHealth": h.unary_unary_rpc_method_handler(self.set_health),
                "Stats": h.unary_unary_rpc_method_handler(self.stats),
            }),
        ]


def serve(name, port=0, host="127.0.0.1", tls=None, workers=64):
    """Starts the services in this process; returns (grpc.Server, EchoServer, port). tls is
    None or (cert_path, key_path). Stop with server.stop(grace)."""
    echo = EchoServer(name)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=workers),
                         handlers=echo.handlers(),
                         options=[("grpc.so_reuseport", 0)])
    address = "%s:%d" % (host, port)
    if tls:
        with open(tls[0], "rb") as f:
            cert = f.read()
        with open(tls[1], "rb") as f:
            key = f.read()
        port = server.add_secure_port(address, grpc.ssl_server_credentials([(key, cert)]))
    else:
        port = server.add_insecure_port(address)
    if not port:
        raise OSError("cannot listen on %s" % address)
    server.start()
    return server, echo, port


def main_serve(args):
    tls = tuple(args.tls) if args.tls else None
    server, echo, port = serve(args.name, args.port, args.host, tls)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGUSR1, lambda *_: echo.set_all("NOT_SERVING"))
    signal.signal(signal.SIGUSR2, lambda *_: echo.set_all("SERVING"))
    print("grpc_peer ready name=%s port=%d tls=%s pid=%d"
          % (args.name, port, "yes" if tls else "no", os.getpid()), flush=True)
    while not stop.wait(0.5):
        pass
    server.stop(5).wait(6)
    return 0


# ---------------------------------------------------------------------------------------------
# Client

Reply = collections.namedtuple("Reply", "payload server index info")


class Result:
    """What the client saw of one call."""

    def __init__(self):
        self.code = None
        self.details = ""
        self.replies = []
        self.initial_metadata = []
        self.trailing_metadata = []
        self.elapsed = 0.0
        self.health = None

    @property
    def ok(self):
        return self.code == "OK"

    @property
    def reply(self):
        return self.replies[0] if self.replies else None

    def __repr__(self):
        return "Result(code=%s, details=%r, replies=%d%s, %.3fs)" % (
            self.code, self.details, len(self.replies),
            ", health=%s" % self.health if self.health else "", self.elapsed)


def channel(target, tls=None, server_name=None, options=()):
    """A grpc.Channel to target: h2c when tls is None, else h2 over TLS with ALPN h2, trusting
    the CA file tls (or the system's CAs when tls is True); server_name overrides the name the
    certificate must carry."""
    opts = list(options)
    if tls is None:
        return grpc.insecure_channel(target, options=opts)
    roots = None
    if tls is not True:
        with open(tls, "rb") as f:
            roots = f.read()
    if server_name:
        opts.append(("grpc.ssl_target_name_override", server_name))
    return grpc.secure_channel(target, grpc.ssl_channel_credentials(root_certificates=roots),
                               options=opts)


def _md(md):
    return [(k, v) for k, v in (md or ())]


def _finish(res, call, t0):
    """Fills res from a finished grpc call object (or RpcError, which is one)."""
    try:
        res.code = call.code().name
        res.details = call.details() or ""
        res.initial_metadata = _md(call.initial_metadata())
        res.trailing_metadata = _md(call.trailing_metadata())
    except Exception as e:  # a call that failed before it had any of these
        res.code = res.code or "UNKNOWN"
        res.details = res.details or str(e)
    res.elapsed = time.monotonic() - t0
    return res


def _reply(data):
    d = decode(ECHO_REPLY, data)
    return Reply(d["payload"], d["server"], d["index"], d["info"])


class _Chan:
    """The channel of one call: the caller's, or a new one closed afterwards."""

    def __init__(self, target, kw):
        self.given = kw.get("channel")
        self.ch = self.given or channel(target, kw.get("tls"), kw.get("server_name"))

    def __enter__(self):
        return self.ch

    def __exit__(self, *exc):
        if not self.given:
            self.ch.close()


def _call_unary(target, path, request, kw, parse=_reply):
    res, t0 = Result(), time.monotonic()
    with _Chan(target, kw) as ch:
        fn = ch.unary_unary(path)
        try:
            resp, call = fn.with_call(request, timeout=kw.get("timeout", 10.0),
                                      metadata=kw.get("metadata"))
            if parse:
                res.replies.append(parse(resp))
            return _finish(res, call, t0)
        except grpc.RpcError as e:
            return _finish(res, e, t0)


def _request(payload=b"", **kw):
    return encode(ECHO_REQUEST, payload=payload, count=kw.get("count", 0),
                  status=kw.get("status", 0), message=kw.get("message", ""),
                  delay_ms=kw.get("delay_ms", 0))


def unary(target, payload=b"hi", **kw):
    return _call_unary(target, "/%s/Unary" % SERVICE, _request(payload, **kw), kw)


def headers(target, payload=b"", **kw):
    return _call_unary(target, "/%s/Headers" % SERVICE, _request(payload, **kw), kw)


def fail(target, status="NOT_FOUND", message="no such thing", **kw):
    code = getattr(grpc.StatusCode, status).value[0] if isinstance(status, str) else status
    return _call_unary(target, "/%s/Fail" % SERVICE,
                       _request(b"", status=code, message=message,
                                delay_ms=kw.get("delay_ms", 0)), kw)


def server_stream(target, count=3, payload=b"x", **kw):
    res, t0 = Result(), time.monotonic()
    with _Chan(target, kw) as ch:
        call = ch.unary_stream("/%s/ServerStream" % SERVICE)(
            _request(payload, count=count, delay_ms=kw.get("delay_ms", 0)),
            timeout=kw.get("timeout", 10.0), metadata=kw.get("metadata"))
        try:
            for data in call:
                res.replies.append(_reply(data))
        except grpc.RpcError:
            pass
        return _finish(res, call, t0)


def client_stream(target, payloads=(b"a", b"b"), **kw):
    res, t0 = Result(), time.monotonic()
    delay = kw.get("delay_ms", 0)
    with _Chan(target, kw) as ch:
        fn = ch.stream_unary("/%s/ClientStream" % SERVICE)
        try:
            resp, call = fn.with_call(iter([_request(p, delay_ms=delay) for p in payloads]),
                                      timeout=kw.get("timeout", 10.0),
                                      metadata=kw.get("metadata"))
            res.replies.append(_reply(resp))
            return _finish(res, call, t0)
        except grpc.RpcError as e:
            return _finish(res, e, t0)


_END = object()


def bidi(target, payloads=(b"a", b"b"), lockstep=True, **kw):
    """One request per payload; with lockstep, each is sent only once the reply to the one
    before it has arrived."""
    res, t0 = Result(), time.monotonic()
    delay = kw.get("delay_ms", 0)
    payloads = list(payloads)
    with _Chan(target, kw) as ch:
        if not lockstep:
            requests = iter([_request(p, delay_ms=delay) for p in payloads])
        else:
            import queue
            q = queue.Queue()

            def gen():
                while True:
                    item = q.get()
                    if item is _END:
                        return
                    yield item

            requests = gen()
            if payloads:
                q.put(_request(payloads[0], delay_ms=delay))
            else:
                q.put(_END)
        call = ch.stream_stream("/%s/Bidi" % SERVICE)(
            requests, timeout=kw.get("timeout", 10.0), metadata=kw.get("metadata"))
        try:
            for data in call:
                res.replies.append(_reply(data))
                if lockstep:
                    n = len(res.replies)
                    q.put(_request(payloads[n], delay_ms=delay) if n < len(payloads) else _END)
        except grpc.RpcError:
            pass
        finally:
            if lockstep:
                q.put(_END)
        return _finish(res, call, t0)


def health_check(target, service="", **kw):
    res = _call_unary(target, "/%s/Check" % HEALTH, encode(HEALTH_REQUEST, service=service), kw,
                      parse=lambda d: decode(HEALTH_RESPONSE, d)["status"])
    if res.ok and res.replies:
        res.health = HEALTH_NAMES.get(res.replies[0], str(res.replies[0]))
    return res


def set_health(target, service, status, **kw):
    return _call_unary(target, "/%s/SetHealth" % CONTROL,
                       json.dumps({"service": service, "status": status}).encode(), kw,
                       parse=json.loads)


def stats(target, **kw):
    res = _call_unary(target, "/%s/Stats" % CONTROL, b"{}", kw, parse=json.loads)
    if not res.ok:
        raise RuntimeError("Control/Stats on %s: %s %s" % (target, res.code, res.details))
    return res.replies[0]


def load(target, seconds=3.0, concurrency=8, max_calls=100000, payload=b"load", **kw):
    """Unary calls from concurrency threads, each on its own channel (its own connection),
    until seconds have passed or max_calls were made. Returns {"servers": Counter of the
    replying server names, "codes": Counter of status codes, "calls": n, "elapsed": s}."""
    servers, codes = collections.Counter(), collections.Counter()
    lock = threading.Lock()
    made = [0]
    deadline = time.monotonic() + seconds
    kw.setdefault("timeout", 5.0)

    def worker():
        kw2 = dict(kw)
        own = kw2.get("channel") is None
        if own:
            kw2["channel"] = channel(target, kw.get("tls"), kw.get("server_name"))
        try:
            while time.monotonic() < deadline:
                with lock:
                    if made[0] >= max_calls:
                        return
                    made[0] += 1
                r = unary(target, payload, **kw2)
                with lock:
                    codes[r.code] += 1
                    if r.reply:
                        servers[r.reply.server] += 1
        finally:
            if own:
                kw2["channel"].close()

    t0 = time.monotonic()
    threads = [threading.Thread(target=worker, daemon=True) for _ in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(seconds + kw["timeout"] + 5)
    return {"servers": servers, "codes": codes, "calls": sum(codes.values()),
            "elapsed": time.monotonic() - t0}


class PeerProcess:
    """`grpc_peer.py serve` as a child process; started by spawn()."""

    def __init__(self, name, port=0, tls=None, host="127.0.0.1", timeout=15.0):
        self.name = name
        self.log_path = tempfile.mktemp(prefix="fulcrum-grpc-peer-%s-" % name, suffix=".log")
        argv = [sys.executable, os.path.abspath(__file__), "serve", "--port", str(port),
                "--name", name, "--host", host]
        if tls:
            argv += ["--tls", tls[0], tls[1]]
        self.log_file = open(self.log_path, "wb")
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=self.log_file)
        self.pid = self.proc.pid
        self.port = None
        self.host = host
        deadline = time.monotonic() + timeout
        line = b""
        import select
        while time.monotonic() < deadline:
            r, _, _ = select.select([self.proc.stdout], [], [], 0.2)
            if r:
                line = self.proc.stdout.readline()
                break
            if self.proc.poll() is not None:
                break
        fields = dict(f.split("=", 1) for f in line.decode().split() if "=" in f)
        if not line.startswith(b"grpc_peer ready") or "port" not in fields:
            self.kill()
            raise RuntimeError("grpc peer %s did not start: %r\n%s" % (name, line, self.log()))
        self.port = int(fields["port"])

    @property
    def target(self):
        return "%s:%d" % (self.host, self.port)

    def log(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def alive(self):
        return self.proc.poll() is None

    def signal(self, sig):
        if self.alive():
            self.proc.send_signal(sig)

    def kill(self):
        """SIGKILL: the server dies with its connections reset."""
        if self.alive():
            self.proc.kill()
        self.proc.wait()
        self._close()

    def stop(self, timeout=10.0):
        """SIGTERM, then SIGKILL after timeout; returns the exit status."""
        if self.alive():
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._close()
        return self.proc.returncode

    def _close(self):
        if self.proc.stdout:
            self.proc.stdout.close()
        self.log_file.close()

    def cleanup(self):
        self.kill()
        try:
            os.unlink(self.log_path)
        except OSError:
            pass


def spawn(name, port=0, tls=None, host="127.0.0.1"):
    return PeerProcess(name, port, tls, host)


# ---------------------------------------------------------------------------------------------
# Command line

def main_call(args):
    kw = {"timeout": args.timeout}
    if args.tls:
        kw["tls"] = args.tls
    if args.server_name:
        kw["server_name"] = args.server_name
    kind = args.kind
    if kind == "unary":
        r = unary(args.target, args.payload.encode(), **kw)
    elif kind == "server-stream":
        r = server_stream(args.target, args.count, args.payload.encode(), **kw)
    elif kind == "client-stream":
        r = client_stream(args.target, [args.payload.encode()] * args.count, **kw)
    elif kind == "bidi":
        r = bidi(args.target, [args.payload.encode()] * args.count, **kw)
    elif kind == "fail":
        r = fail(args.target, args.status, args.message, **kw)
    elif kind == "headers":
        r = headers(args.target, **kw)
    elif kind == "health":
        r = health_check(args.target, args.service, **kw)
    elif kind == "set-health":
        r = set_health(args.target, args.service, args.status, **kw)
    else:
        print(json.dumps(stats(args.target, **kw), indent=1))
        return 0
    print(json.dumps({
        "code": r.code, "details": r.details, "health": r.health,
        "replies": [(p.payload.decode("latin-1"), p.server, p.index, p.info)
                    if isinstance(p, Reply) else p for p in r.replies],
        "trailing_metadata": r.trailing_metadata, "elapsed": round(r.elapsed, 4)}, indent=1))
    return 0 if r.ok else 1


def main():
    ap = argparse.ArgumentParser(description="gRPC test peer (see the module docstring)")
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("serve", help="run the server")
    s.add_argument("--port", type=int, default=0)
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--name", required=True)
    s.add_argument("--tls", nargs=2, metavar=("CERT", "KEY"))
    c = sub.add_parser("call", help="make one call and print what the client saw as JSON")
    c.add_argument("target")
    c.add_argument("kind", choices=("unary", "server-stream", "client-stream", "bidi", "fail",
                                    "headers", "health", "set-health", "stats"))
    c.add_argument("--payload", default="hi")
    c.add_argument("--count", type=int, default=3)
    c.add_argument("--status", default="NOT_FOUND",
                   help="fail: a grpc.StatusCode name; set-health: SERVING, NOT_SERVING, ...")
    c.add_argument("--message", default="no such thing")
    c.add_argument("--service", default="")
    c.add_argument("--timeout", type=float, default=10.0)
    c.add_argument("--tls", metavar="CA", help="h2 over TLS, trusting this CA file")
    c.add_argument("--server-name", help="the name the server's certificate must carry")
    args = ap.parse_args()
    return main_serve(args) if args.cmd == "serve" else main_call(args)


if __name__ == "__main__":
    sys.exit(main())
