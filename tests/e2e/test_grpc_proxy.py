"""
test_grpc_proxy.py - gRPC through fulcrum: real gRPC clients and servers (tests/e2e/grpc_peer.py
on Debian's python3-grpcio) on both sides, a `protocol: h2` pool in between.

- every kind of call (unary, server streaming, client streaming, bidirectional in lockstep),
  payloads of 3 MB each way, metadata both ways, and an error status with its message and
  trailing metadata intact; each call logged once, as HTTP/2.0;
- many calls at once share one connection to the server (threads: 1): multiplexing;
- a call the client cancels is cancelled at the server (RST_STREAM), and counted;
- grpc-timeout bounds the server's time: against a server that never answers, fulcrum answers
  DEADLINE_EXCEEDED itself when the client's deadline passes (not after timeouts.server);
- TLS on both sides: ALPN h2 from the client, and to the server with the pool's tls;
- three servers under load, one killed (SIGKILL): every server had calls before, the dead one none
  after, and only calls in flight at the kill may fail (UNAVAILABLE);
- a server that stops gracefully (GOAWAY) under load: fulcrum fails no call.
"""
import json
import os
import socket
import subprocess
import tempfile
import threading
import time
import types
import unittest

import grpc_peer
from harness import FulcrumTestCase, free_port, metric_value, wait_for
from tlspki import make_pki

PKI_DIR = os.path.join(tempfile.gettempdir(), "fulcrum-e2e-pki")
SERVICE = grpc_peer.SERVICE
ACCESS_LOG_FLUSH = 1.2  # the workers flush the access log every second


def grpc_available():
    try:
        import grpc  # noqa: F401
        import h2.connection  # noqa: F401
    except ImportError:
        return False
    return True


def connections_to(port):
    """Established TCP connections to 127.0.0.1:port (from anyone), as the kernel sees them."""
    out = subprocess.run(["ss", "-Htn", "state", "established", "( dport = :%d )" % port],
                         capture_output=True, text=True, timeout=10).stdout
    return len([line for line in out.splitlines() if line.strip()])


def raw_call(port, path, message, headers=(), timeout=10.0):
    """One gRPC call on a raw HTTP/2 connection (python3-h2), with no deadline of the client's
    own: returns (seconds to the end of the stream, response headers, trailers)."""
    import h2.config
    import h2.connection
    import h2.events
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    conn.initiate_connection()
    body = b"\x00" + len(message).to_bytes(4, "big") + message
    conn.send_headers(1, [(":method", "POST"), (":scheme", "http"), (":authority", "grpc.test"),
                          (":path", path), ("content-type", "application/grpc"),
                          ("te", "trailers")] + list(headers))
    conn.send_data(1, body, end_stream=True)
    sock.sendall(conn.data_to_send())
    start, head, trailers = time.monotonic(), {}, {}
    try:
        while True:
            data = sock.recv(65536)
            if not data:
                raise AssertionError("connection closed before the end of the stream")
            for event in conn.receive_data(data):
                if isinstance(event, h2.events.ResponseReceived):
                    head = {k.decode(): v.decode() for k, v in event.headers}
                elif isinstance(event, h2.events.TrailersReceived):
                    trailers = {k.decode(): v.decode() for k, v in event.headers}
                elif isinstance(event, h2.events.StreamReset):
                    raise AssertionError("stream reset: %s" % event.error_code)
                elif isinstance(event, h2.events.StreamEnded):
                    return time.monotonic() - start, head, trailers
            sock.sendall(conn.data_to_send())
    finally:
        sock.close()


def echo_request(payload=b"", delay_ms=0):
    return grpc_peer.encode(grpc_peer.ECHO_REQUEST, payload=payload, count=0, status=0,
                            message="", delay_ms=delay_ms)


@unittest.skipUnless(grpc_available(), "python3-grpcio or python3-h2 is not installed")
class GrpcProxyTest(FulcrumTestCase):
    def setUp(self):
        super().setUp()
        self.dir = tempfile.mkdtemp(prefix="fulcrum-grpc-")
        self.log_path = os.path.join(self.dir, "access.log")

    def peer(self, name, tls=None):
        p = grpc_peer.spawn(name, tls=tls)
        self.addCleanup(p.cleanup)
        return p

    def start(self, peers, threads=1, pool_extra="", listener_extra="    h2c: true\n", admin=False):
        text = ("threads: %d\n"
                "listeners:\n"
                "  - name: grpc\n"
                "    bind: 127.0.0.1:{port}\n"
                "    pool: api\n%s"
                "pools:\n"
                "  - name: api\n"
                "    protocol: h2\n%s"
                "    servers:\n" % (threads, listener_extra, pool_extra))
        for p in peers:
            text += "      - { name: %s, address: \"%s\" }\n" % (p.name, p.target)
        text += "access_log:\n  path: %s\n" % self.log_path
        if admin:
            self.admin_port = free_port()
            text += "admin:\n  bind: 127.0.0.1:%d\n" % self.admin_port
        self.f = self.fulcrum(text)
        self.target = "127.0.0.1:%d" % self.f.port
        return self.f

    def log_lines(self, n, timeout=10):
        """The access log once it has n lines, and still n one flush later."""
        def lines():
            try:
                with open(self.log_path) as f:
                    return [json.loads(line) for line in f if line.strip()]
            except FileNotFoundError:
                return []
        wait_for(lambda: len(lines()) >= n, timeout=timeout, what="%d access log lines" % n)
        time.sleep(ACCESS_LOG_FLUSH)  # one more flush: nothing beyond n may come
        found = lines()
        self.assertEqual(len(found), n, found[n:n + 3])
        return found

    def test_every_kind_of_call(self):
        a = self.peer("a")
        self.start([a])
        t = self.target
        r = grpc_peer.unary(t, payload=b"hello")
        self.assertTrue(r.ok, r)
        self.assertEqual((r.reply.payload, r.reply.server), (b"hello", "a"))

        r = grpc_peer.server_stream(t, count=50, payload=b"s")
        self.assertTrue(r.ok, r)
        self.assertEqual([x.index for x in r.replies], list(range(50)))

        parts = [bytes([65 + i % 26]) * (i + 1) for i in range(40)]
        r = grpc_peer.client_stream(t, payloads=parts)
        self.assertTrue(r.ok, r)
        self.assertEqual((r.reply.payload, r.reply.index), (b"".join(parts), 40))

        # lockstep: each message goes only after the answer to the one before came back, so a
        # proxy that held a stream's messages back would stall it into its deadline
        parts = [b"m%d" % i for i in range(20)]
        r = grpc_peer.bidi(t, payloads=parts, lockstep=True, timeout=10)
        self.assertTrue(r.ok, r)
        self.assertEqual([x.payload for x in r.replies], parts)

        message = "no such thing: caf\u00e9 100% gone"
        r = grpc_peer.fail(t, status="NOT_FOUND", message=message)
        self.assertEqual((r.code, r.details), ("NOT_FOUND", message), r)
        self.assertIn(("x-fail-server", "a"), r.trailing_metadata)

        r = grpc_peer.headers(t, metadata=[("x-tenant", "blue"), ("x-bin-bin", b"\x00\x01")])
        self.assertTrue(r.ok, r)
        seen = r.reply.info
        self.assertIn("x-tenant: blue", seen)
        self.assertIn("x-forwarded-for: 127.0.0.1", seen)
        self.assertIn("x-bin-bin:", seen)

        big = os.urandom(3 * 1024 * 1024)
        r = grpc_peer.unary(t, payload=big)
        self.assertTrue(r.ok, (r.code, r.details))
        self.assertEqual(r.reply.payload, big)

        calls = grpc_peer.stats(a.target)["calls"]
        for method, n in {"Unary": 2, "ServerStream": 1, "ClientStream": 1, "Bidi": 1,
                          "Fail": 1, "Headers": 1}.items():
            self.assertEqual(calls.get(method), n, calls)
        # each call logged once (the stats call went to the server directly)
        lines = self.log_lines(7)
        self.assertEqual({(l["protocol"], l["status"], l["server"]) for l in lines},
                         {("HTTP/2.0", 200, "a")}, lines)
        self.assertEqual(sorted(l["target"] for l in lines), sorted(
            "/%s/%s" % (SERVICE, m) for m in
            ["Unary", "Unary", "ServerStream", "ClientStream", "Bidi", "Fail", "Headers"]))

    def test_calls_share_one_connection_to_the_server(self):
        a = self.peer("a")
        self.start([a], threads=1)
        results, lock = [], threading.Lock()
        # 40 calls at once, from 40 client connections, each held 1.5 s by the server
        def call():
            r = grpc_peer.unary(self.target, payload=b"x", delay_ms=1500, timeout=20)
            with lock:
                results.append(r)
        threads = [threading.Thread(target=call) for _ in range(40)]
        for th in threads:
            th.start()
        wait_for(lambda: connections_to(a.port) >= 1, what="fulcrum's connection to the server")
        peak = 0
        while any(th.is_alive() for th in threads) and len(results) == 0:
            peak = max(peak, connections_to(a.port))
            time.sleep(0.05)
        for th in threads:
            th.join(30)
        self.assertEqual([r.code for r in results], ["OK"] * 40)
        self.assertEqual(peak, 1, "connections from fulcrum to the server while 40 calls ran")

    def test_grpc_timeout_bounds_the_server(self):
        # a server that takes the connection and never answers (the kernel accepts for it):
        # fulcrum's timeouts.server is 30 s by default, the client's deadline 300 ms
        mute = socket.socket()
        mute.bind(("127.0.0.1", 0))
        mute.listen(16)
        self.addCleanup(mute.close)
        self.start([types.SimpleNamespace(name="mute",
                                          target="127.0.0.1:%d" % mute.getsockname()[1])])
        took, head, trailers = raw_call(self.f.port, "/%s/Unary" % SERVICE, echo_request(b"x"),
                                        headers=[("grpc-timeout", "300m")])
        # fulcrum answered, as a gRPC status, when the client's deadline passed
        self.assertEqual((head.get(":status"), head.get("grpc-status"),
                          head.get("grpc-message")),
                         ("200", "4", "deadline exceeded (grpc-timeout)"), head)
        self.assertGreaterEqual(took, 0.29)
        line = self.log_lines(1)[0]
        self.assertEqual((line["status"], line["termination"]), (504, "grpc_deadline"), line)
        self.assertEqual(self.f.log().count("deadline"), 0, self.f.log())  # not a server fault
        # a deadline a real server meets changes nothing
        self.f.stop()
        self.processes.remove(self.f)
        os.unlink(self.log_path)
        self.start([self.peer("a")])
        took, head, trailers = raw_call(self.f.port, "/%s/Unary" % SERVICE,
                                        echo_request(b"soon"), headers=[("grpc-timeout", "5S")])
        self.assertEqual((head.get(":status"), trailers.get("grpc-status")), ("200", "0"),
                         (head, trailers))

    def metric(self, name):
        return metric_value(self.admin_port, name)

    def test_a_call_the_client_cancels_is_cancelled_at_the_server(self):
        a = self.peer("a")
        self.start([a], admin=True)
        # the client resets its stream once the call is with the server, which would take 5 s
        import h2.config
        import h2.connection
        sock = socket.create_connection(("127.0.0.1", self.f.port), timeout=10)
        self.addCleanup(sock.close)
        conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        conn.initiate_connection()
        message = echo_request(b"x", delay_ms=5000)
        conn.send_headers(1, [(":method", "POST"), (":scheme", "http"),
                              (":authority", "grpc.test"), (":path", "/%s/Unary" % SERVICE),
                              ("content-type", "application/grpc"), ("te", "trailers")])
        conn.send_data(1, b"\x00" + len(message).to_bytes(4, "big") + message, end_stream=True)
        sock.sendall(conn.data_to_send())
        wait_for(lambda: grpc_peer.stats(a.target)["calls"].get("Unary") == 1,
                 what="the call at the server")
        # one HTTP/2 connection, its stream not counted as a connection of its own
        self.assertEqual(self.metric('fulcrum_client_connections{state="http2"}'), 1)
        self.assertEqual(self.metric('fulcrum_client_connections{state="active"}'), 0)
        conn.reset_stream(1)
        sock.sendall(conn.data_to_send())
        wait_for(lambda: grpc_peer.stats(a.target)["cancelled"] == 1,
                 what="the server's call cancelled")
        wait_for(lambda: self.metric("fulcrum_http2_streams_cancelled_total") == 1,
                 what="the cancelled stream counted")
        # the connection to the server stays, for the next call
        r = grpc_peer.unary(self.target, payload=b"next")
        self.assertTrue(r.ok, r)
        self.assertEqual(connections_to(a.port), 1)

    def test_tls_on_both_sides(self):
        pki = make_pki(PKI_DIR)
        a = self.peer("a", tls=(pki.backend, pki.backend_key))
        self.start([a], pool_extra="    tls: {ca: %s}\n" % pki.root_ca,
                   listener_extra="    tls:\n      certificates: [{cert: %s, key: %s}]\n"
                   % (pki.site_ecdsa, pki.site_ecdsa_key))
        r = grpc_peer.unary(self.target, payload=b"sealed", tls=pki.root_ca,
                            server_name="site.test")
        self.assertTrue(r.ok, (r.code, r.details))
        self.assertEqual(r.reply.payload, b"sealed")
        r = grpc_peer.server_stream(self.target, count=5, tls=pki.root_ca,
                                    server_name="site.test")
        self.assertEqual((r.code, len(r.replies)), ("OK", 5))

    def run_load(self, seconds, concurrency):
        out = {}
        th = threading.Thread(target=lambda: out.update(grpc_peer.load(
            self.target, seconds=seconds, concurrency=concurrency, timeout=5)))
        th.start()
        return th, out

    def test_three_servers_one_killed_under_load(self):
        peers = [self.peer(n) for n in ("a", "b", "c")]
        self.start(peers, pool_extra="    retries: 2\n")
        concurrency = 4
        th, out = self.run_load(seconds=4, concurrency=concurrency)
        wait_for(lambda: all(grpc_peer.stats(p.target)["calls"].get("Unary", 0) > 10
                             for p in peers), what="calls on all three servers")
        peers[1].kill()
        killed_at = time.monotonic()
        th.join(30)
        codes, servers = out["codes"], out["servers"]
        failed = sum(n for code, n in codes.items() if code != "OK")
        # only the calls in flight on the dead server could be lost: at most one per client
        self.assertLessEqual(failed, concurrency, codes)
        self.assertEqual(set(codes) - {"OK"}, set() if not failed else {"UNAVAILABLE"}, codes)
        self.assertGreater(codes["OK"], 100, codes)
        self.assertEqual(set(servers), {"a", "b", "c"}, servers)
        # after the kill, everything goes to the two that are left
        after = grpc_peer.load(self.target, seconds=1.0, concurrency=concurrency, timeout=5)
        self.assertEqual(dict(after["codes"]), {"OK": after["calls"]}, after)
        self.assertEqual(set(after["servers"]), {"a", "c"}, after)
        self.assertGreater(time.monotonic() - killed_at, 0)

    def test_graceful_server_stop_costs_no_call(self):
        peers = [self.peer(n) for n in ("a", "b")]
        self.start(peers, pool_extra="    retries: 2\n")
        th, out = self.run_load(seconds=3, concurrency=4)
        wait_for(lambda: all(grpc_peer.stats(p.target)["calls"].get("Unary", 0) > 10
                             for p in peers), what="calls on both servers")
        peers[1].stop()  # SIGTERM: GOAWAY, calls in flight finish
        th.join(30)
        # fulcrum failed no call: each one is logged once, answered by a server. (A gRPC server
        # that is shutting down may itself answer a call that crossed its GOAWAY with CANCELLED:
        # that answer is passed on, as it should be.)
        lines = self.log_lines(out["calls"])
        self.assertEqual([l for l in lines if (l["status"], l["termination"]) != (200, "ok")],
                         [])
        self.assertEqual(set(out["codes"]) - {"OK", "CANCELLED"}, set(), out)
        self.assertLessEqual(out["codes"]["CANCELLED"], 4, out)


if __name__ == "__main__":
    unittest.main()
