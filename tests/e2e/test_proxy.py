"""
test_proxy.py - forwarding: headers, keep-alive, pipelining, Connection handling, HTTP/1.0,
bodiless responses, interim responses and 100-continue, and header names with an underscore.
"""
import http.client
import re
import signal
import socket
import time

from harness import (FulcrumTestCase, Reader, config, connect, echo_headers, exchange, free_port,
                     get, port_open, wait_for)


class ProxyTest(FulcrumTestCase):
    def setUp(self):
        super().setUp()
        self.b = self.backend("b1")
        self.f = self.fulcrum(config([("s1", self.b.address)]))

    def echo(self, raw):
        """Sends raw (a request for /?echo=1 ...) and returns (response, echoed head fields)."""
        resp = exchange(self.f.port, raw)
        self.assertEqual(resp.status, 200, resp.body)
        line, fields, body = echo_headers(resp.body)
        return resp, line, fields, body

    def test_simple_get(self):
        status, headers, body = get(self.f.port, "/hello")
        self.assertEqual(status, 200)
        self.assertEqual(headers["x-backend"], "b1")
        self.assertEqual(body, b"Hello from b1\n")
        self.assertEqual(self.b.stats()["requests"], 1)

    def test_forwarded_headers(self):
        resp, line, fields, _ = self.echo(
            b"GET /path/x?echo=1&a=b HTTP/1.1\r\nHost: app.example:8080\r\n"
            b"X-Forwarded-For: 203.0.113.9\r\nX-Forwarded-Proto: https\r\n"
            b"X-Forwarded-Host: spoofed\r\nUser-Agent: t\r\n\r\n")
        self.assertEqual(line, "GET /path/x?echo=1&a=b HTTP/1.1")
        names = [n.lower() for n, _ in fields]
        d = {n.lower(): v for n, v in fields}
        self.assertEqual(d["host"], "app.example:8080")
        self.assertEqual(d["x-forwarded-for"], "203.0.113.9, 127.0.0.1")
        self.assertEqual(d["x-forwarded-proto"], "http")
        self.assertEqual(d["x-forwarded-host"], "app.example:8080")
        self.assertEqual(d["user-agent"], "t")
        for name in ("x-forwarded-for", "x-forwarded-proto", "x-forwarded-host", "host"):
            self.assertEqual(names.count(name), 1, name)

    def test_hop_by_hop_removed(self):
        _, _, fields, _ = self.echo(
            b"GET /?echo=1 HTTP/1.1\r\nHost: h\r\nConnection: keep-alive, X-Private\r\n"
            b"X-Private: secret\r\nKeep-Alive: timeout=5\r\nProxy-Connection: keep-alive\r\n"
            b"TE: trailers\r\nTrailer: X-T\r\nUpgrade: websocket\r\nX-End-To-End: yes\r\n\r\n")
        names = {n.lower() for n, _ in fields}
        for hop in ("connection", "x-private", "keep-alive", "proxy-connection", "te",
                    "trailer", "upgrade"):
            self.assertNotIn(hop, names)
        self.assertIn("x-end-to-end", names)

    def test_response_hop_by_hop_removed(self):
        def handler(conn, request):
            conn.sendall(b"HTTP/1.1 200 OK\r\nConnection: keep-alive, X-Hop\r\nX-Hop: 1\r\n"
                         b"Keep-Alive: timeout=5\r\nUpgrade: foo\r\nProxy-Connection: x\r\n"
                         b"Trailer: X\r\nX-Kept: 1\r\nContent-Length: 2\r\n\r\nok")
        sb = self.scripted_backend(handler)
        f = self.fulcrum(config([("s", sb.address)]))
        resp = exchange(f.port, b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
        names = {n.lower() for n, _ in resp.headers}
        self.assertEqual(resp.body, b"ok")
        for hop in ("connection", "x-hop", "keep-alive", "upgrade", "proxy-connection",
                    "trailer"):
            self.assertNotIn(hop, names)
        self.assertIn("x-kept", names)

    def test_absolute_form_target(self):
        _, line, fields, _ = self.echo(
            b"GET http://t.example/abs?echo=1 HTTP/1.1\r\nHost: t.example\r\n\r\n")
        self.assertEqual(line, "GET /abs?echo=1 HTTP/1.1")
        self.assertEqual(dict((n.lower(), v) for n, v in fields)["host"], "t.example")

    def test_keep_alive_many_requests_one_connection(self):
        conn = http.client.HTTPConnection("127.0.0.1", self.f.port, timeout=5)
        for i in range(200):
            conn.request("GET", "/n%d" % i)
            r = conn.getresponse()
            self.assertEqual(r.status, 200)
            self.assertEqual(r.read(), b"Hello from b1\n")
            self.assertIsNone(r.getheader("Connection"))
        conn.close()
        stats = self.b.stats()
        self.assertEqual(stats["requests"], 200)
        self.assertEqual(stats["connections"], 1)  # one thread, one reused backend connection

    def test_pipelined_requests_answered_in_order(self):
        with connect(self.f.port) as s:
            s.sendall(b"".join(b"GET /p%d?echo=1 HTTP/1.1\r\nHost: h\r\n\r\n" % i
                               for i in range(10)))
            r = Reader(s)
            for i in range(10):
                resp = r.read_response()
                self.assertEqual(resp.status, 200)
                self.assertTrue(resp.body.startswith(b"GET /p%d?echo=1 HTTP/1.1" % i),
                                resp.body[:40])

    def test_pipelined_with_bodies(self):
        with connect(self.f.port) as s:
            s.sendall(b"POST /a?echo=1 HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello"
                      b"POST /b?echo=1 HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
                      b"3\r\nabc\r\n0\r\n\r\n"
                      b"GET /c?echo=1 HTTP/1.1\r\nHost: h\r\n\r\n")
            r = Reader(s)
            a, b, c = r.read_response(), r.read_response(), r.read_response()
            self.assertTrue(a.body.startswith(b"POST /a?echo=1"))
            self.assertTrue(a.body.endswith(b"\r\n\r\nhello"))
            self.assertTrue(b.body.startswith(b"POST /b?echo=1"))
            self.assertTrue(b.body.endswith(b"\r\n\r\nabc"))
            self.assertTrue(c.body.startswith(b"GET /c?echo=1"))

    def test_client_connection_close(self):
        with connect(self.f.port) as s:
            s.sendall(b"GET /?echo=1 HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
            r = Reader(s)
            resp = r.read_response()
            self.assertEqual(resp.status, 200)
            self.assertEqual(resp.header("Connection"), "close")
            self.assertTrue(r.closed())
            _, fields, _ = echo_headers(resp.body)
            self.assertNotIn("connection", {n.lower() for n, _ in fields})
        # the backend connection stays usable: the next request reuses it
        self.assertEqual(get(self.f.port)[0], 200)
        self.assertEqual(self.b.stats()["connections"], 1)

    def test_backend_connection_close(self):
        with connect(self.f.port) as s:
            r = Reader(s)
            s.sendall(b"GET /?close=1 HTTP/1.1\r\nHost: h\r\n\r\n")
            resp = r.read_response()
            self.assertEqual(resp.status, 200)
            # the client's connection is not the backend's business: it stays open
            self.assertIsNone(resp.header("Connection"))
            s.sendall(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
            self.assertEqual(r.read_response().status, 200)
        self.assertEqual(self.b.stats()["connections"], 2)

    def test_http10_close_delimited_or_keep_alive(self):
        with connect(self.f.port) as s:
            s.sendall(b"GET / HTTP/1.0\r\n\r\n")
            r = Reader(s)
            resp = r.read_response()
            self.assertEqual(resp.status, 200)
            self.assertEqual(resp.body, b"Hello from b1\n")
            self.assertTrue(r.closed())
        with connect(self.f.port) as s:
            r = Reader(s)
            for _ in range(3):
                s.sendall(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
                resp = r.read_response()
                self.assertEqual(resp.status, 200)
                self.assertEqual(resp.header("Connection"), "keep-alive")
                self.assertIsNotNone(resp.header("Content-Length"))
        # a chunked backend response reaches an HTTP/1.0 client de-chunked, close-delimited
        with connect(self.f.port) as s:
            s.sendall(b"GET /?size=100000&chunked=1&chunk=7000 HTTP/1.0\r\n"
                      b"Connection: keep-alive\r\n\r\n")
            r = Reader(s)
            resp = r.read_response()
            self.assertIsNone(resp.header("Transfer-Encoding"))
            self.assertEqual(resp.header("Connection"), "close")
            self.assertEqual(len(resp.body), 100000)
            self.assertEqual(resp.body[:26], b"abcdefghijklmnopqrstuvwxyz")

    def test_http10_request_sent_upstream_as_11(self):
        resp = exchange(self.f.port, b"GET /?echo=1 HTTP/1.0\r\nHost: h\r\n\r\n")
        self.assertTrue(resp.body.startswith(b"GET /?echo=1 HTTP/1.1\r\n"))

    def test_head_204_304_have_no_body(self):
        with connect(self.f.port) as s:
            r = Reader(s)
            s.sendall(b"HEAD /?size=1000 HTTP/1.1\r\nHost: h\r\n\r\n")
            resp = r.read_response("HEAD")
            self.assertEqual(resp.status, 200)
            self.assertEqual(resp.header("Content-Length"), "1000")
            for status in (204, 304):
                s.sendall(b"GET /?status=%d HTTP/1.1\r\nHost: h\r\n\r\n" % status)
                resp = r.read_response()
                self.assertEqual(resp.status, status)
                self.assertEqual(resp.body, b"")
            # the connection is still in step: a normal request works
            s.sendall(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
            resp = r.read_response()
            self.assertEqual(resp.body, b"Hello from b1\n")
            self.assertEqual(r.buf, b"")

    def test_interim_response_forwarded(self):
        with connect(self.f.port) as s:
            s.sendall(b"GET /?interim=103 HTTP/1.1\r\nHost: h\r\n\r\n")
            r = Reader(s)
            resp = r.read_response()
            self.assertEqual(resp.interim, [103])
            self.assertEqual(resp.status, 200)
        # never to an HTTP/1.0 client
        with connect(self.f.port) as s:
            s.sendall(b"GET /?interim=103 HTTP/1.0\r\n\r\n")
            resp = Reader(s).read_response()
            self.assertEqual(resp.interim, [])
            self.assertEqual(resp.status, 200)

    def test_expect_100_continue(self):
        body = b"x" * 5000
        with connect(self.f.port) as s:
            s.sendall(b"POST /up?echo=1 HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\n"
                      b"Content-Length: 5000\r\n\r\n")
            r = Reader(s)
            interim = __import__("harness").Response()
            r.read_head(interim)  # the backend's 100 Continue, relayed before any body
            self.assertEqual(interim.status, 100)
            s.sendall(body)
            resp = r.read_response()
            self.assertEqual(resp.status, 200)
            self.assertTrue(resp.body.endswith(body))
            _, fields, _ = echo_headers(resp.body)
            self.assertIn(("Expect", "100-continue"), fields)

    def test_host_kept_as_sent(self):
        _, _, fields, _ = self.echo(b"GET /?echo=1 HTTP/1.1\r\nHost: MiXeD.Example\r\n\r\n")
        self.assertIn(("Host", "MiXeD.Example"), fields)


def metrics_value(port, series):
    """One series' value from the admin listener's /metrics, or None if it is not there."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    conn.request("GET", "/metrics")
    text = conn.getresponse().read().decode()
    conn.close()
    m = re.search("^" + re.escape(series) + r" (\S+)$", text, re.M)
    return float(m.group(1)) if m else None


UNDERSCORE_DROPS = 'fulcrum_header_fields_dropped_total{reason="underscore"}'
# CGI and WSGI backends read these as Transfer-Encoding, Content-Length and X-Forwarded-For
UNDERSCORE_FIELDS = (b"Transfer_Encoding: chunked\r\nContent_Length: 40\r\n"
                     b"X-Forwarded_For: 203.0.113.9\r\n")


class UnderscoreHeaderTest(FulcrumTestCase):
    """http.underscores_in_headers: request field names with '_' are dropped and counted (the
    default), forwarded (allow) or refused (reject)."""

    def start(self, mode=None):
        self.b = self.backend("b1")
        self.aport = free_port()
        extra = "admin:\n  bind: 127.0.0.1:%d\n" % self.aport
        if mode:
            extra += "http:\n  underscores_in_headers: %s\n" % mode
        self.f = self.fulcrum(config([("s1", self.b.address)], threads=2, extra=extra))
        wait_for(lambda: port_open(self.aport), what="admin listener")

    def echoed_names(self, extra_fields, path=b"/?echo=1"):
        """Sends a request with extra_fields on a new connection; returns the response and the
        field names the backend received (lower-case)."""
        resp = exchange(self.f.port, b"GET " + path + b" HTTP/1.1\r\nHost: h\r\n" +
                        extra_fields + b"\r\n")
        if resp.status != 200:
            return resp, None
        _, fields, _ = echo_headers(resp.body)
        return resp, [n.lower() for n, _ in fields]

    def test_dropped_and_counted_exactly(self):
        self.start()
        self.assertEqual(metrics_value(self.aport, UNDERSCORE_DROPS), 0)
        # 5 requests x 3 fields, on separate connections so both workers take some
        for _ in range(5):
            resp, names = self.echoed_names(UNDERSCORE_FIELDS + b"X-Kept: a_b\r\n")
            self.assertEqual(resp.status, 200)
            for name in ("transfer_encoding", "content_length", "x-forwarded_for"):
                self.assertNotIn(name, names)
            self.assertIn("x-kept", names)  # an underscore in a value is fine
            self.assertEqual(names.count("x-forwarded-for"), 1)
        # 4 pipelined requests x 1 field on one connection, the last one /after: a backend that
        # read Content_Length would have swallowed it
        with connect(self.f.port) as s:
            s.sendall(b"".join(b"GET /p%d?echo=1 HTTP/1.1\r\nHost: h\r\nContent_Length: 40\r\n"
                               b"\r\n" % i for i in range(3)) +
                      b"GET /after?echo=1 HTTP/1.1\r\nHost: h\r\nA_B: 1\r\n\r\n")
            r = Reader(s)
            for path in (b"/p0", b"/p1", b"/p2", b"/after"):
                resp = r.read_response()
                self.assertEqual(resp.status, 200)
                self.assertTrue(resp.body.startswith(b"GET " + path + b"?echo=1 "), resp.body)
                self.assertNotIn(b"_", resp.body.split(b"\r\n\r\n")[0])
        # not counted: no underscore in a name, and a request refused for another reason
        self.assertEqual(exchange(self.f.port, b"GET / HTTP/1.1\r\nHost: h\r\nX-A: _\r\n\r\n")
                         .status, 200)
        self.assertEqual(exchange(self.f.port, b"POST / HTTP/1.1\r\nHost: h\r\nX_Y: 1\r\n"
                                  b"Content-Length: 1x\r\n\r\n").status, 400)
        self.assertEqual(self.b.stats()["requests"], 10)
        wait_for(lambda: metrics_value(self.aport, UNDERSCORE_DROPS) == 19,
                 what="19 drops to be counted")

    def test_allow_forwards_unchanged(self):
        self.start("allow")
        resp, names = self.echoed_names(UNDERSCORE_FIELDS)
        self.assertEqual(resp.status, 200)
        _, fields, _ = echo_headers(resp.body)
        for field in (("Transfer_Encoding", "chunked"), ("Content_Length", "40"),
                      ("X-Forwarded_For", "203.0.113.9")):
            self.assertIn(field, fields)
        # the forwarded X-Forwarded-For is fulcrum's own, not the client's underscore one
        self.assertIn(("X-Forwarded-For", "127.0.0.1"), fields)
        self.assertEqual(metrics_value(self.aport, UNDERSCORE_DROPS), 0)

    def test_reject_answers_400(self):
        self.start("reject")
        with connect(self.f.port) as s:
            s.sendall(b"GET / HTTP/1.1\r\nHost: h\r\nX-Api_Key: k\r\n\r\n")
            r = Reader(s)
            self.assertEqual(r.read_response().status, 400)
            self.assertTrue(r.closed())
        resp, names = self.echoed_names(b"X-Kept: a_b\r\n")  # values may still have '_'
        self.assertEqual(resp.status, 200)
        self.assertIn("x-kept", names)
        self.assertEqual(self.b.stats()["requests"], 1)
        self.assertEqual(metrics_value(self.aport, UNDERSCORE_DROPS), 0)

    def test_reload_changes_the_rule(self):
        self.start("reject")
        raw = b"GET / HTTP/1.1\r\nHost: h\r\nX_Y: 1\r\n\r\n"
        self.assertEqual(exchange(self.f.port, raw).status, 400)
        with open(self.f.config_path) as fh:
            text = fh.read()
        with open(self.f.config_path, "w") as fh:
            fh.write(text.replace("in_headers: reject", "in_headers: allow"))
        self.f.signal(signal.SIGHUP)
        wait_for(lambda: exchange(self.f.port, raw).status == 200, what="allow after the reload")
