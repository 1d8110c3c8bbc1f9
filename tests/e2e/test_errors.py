"""
test_errors.py - what clients get when their input is bad or a backend fails: the right status,
a short plain-text body, the connection closed where it can no longer be trusted, and nothing
forwarded that should not be.
"""
import socket
import time

from harness import (FulcrumTestCase, Reader, config, connect, exchange, free_port, get,
                     wait_for)


class BadRequestTest(FulcrumTestCase):
    def setUp(self):
        super().setUp()
        self.b = self.backend("b1")
        self.f = self.fulcrum(config([("s1", self.b.address)], extra=(
            "limits:\n  max_header_bytes: 4096\n  max_headers: 50\n")))

    def reject(self, raw, status):
        before = self.b.stats()["requests"]
        with connect(self.f.port) as s:
            s.sendall(raw)
            r = Reader(s)
            resp = r.read_response()
            self.assertEqual(resp.status, status, raw[:80])
            self.assertEqual(resp.header("Connection"), "close")
            self.assertEqual(resp.header("Content-Type"), "text/plain")
            self.assertTrue(resp.body.startswith(b"%d " % status))
            self.assertTrue(r.closed(), "connection left open after %d" % status)
        # nothing reached the backend
        self.assertEqual(self.b.stats()["requests"], before)

    def test_malformed(self):
        for raw in (b"G(ET / HTTP/1.1\r\nHost: h\r\n\r\n",
                    b"GET /a b HTTP/1.1\r\nHost: h\r\n\r\n",
                    b"GET / HTTP/1.1\r\n\r\n",
                    b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
                    b"GET / HTTP/1.1\r\nHost: h\r\nX: a\r\n b\r\n\r\n",
                    b"GET / HTTP/1.1\r\nHost: h\r\nX : y\r\n\r\n",
                    b"GET / HTTP/1.1\r\nHost: h\nX: y\r\n\r\n",
                    b"GET / HTTP/1.1\r\nHost: h\r\nX: a\x00b\r\n\r\n",
                    b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 TLS hello\r\n\r\n"):
            self.reject(raw, 400)

    def test_framing_conflicts(self):
        smuggle = b"GET /smuggled HTTP/1.1\r\nHost: h\r\n\r\n"
        self.reject(b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: %d\r\n"
                    b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n" % (5 + len(smuggle)) + smuggle,
                    400)
        self.reject(b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n"
                    b"Content-Length: 37\r\n\r\n" + smuggle, 400)
        self.reject(b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: +5\r\n\r\nhello", 400)
        self.reject(b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: xchunked\r\n\r\n", 501)

    def test_bad_chunk_size(self):
        # The head was fine, so the request was already on its way: the client still gets a
        # 400, the connection closes, and the backend never sees a complete request.
        with connect(self.f.port) as s:
            s.sendall(b"POST /?echo=1 HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
                      b"zz\r\nhello\r\n0\r\n\r\n")
            r = Reader(s)
            resp = r.read_response()
            self.assertEqual(resp.status, 400)
            self.assertTrue(r.closed())

    def test_limits(self):
        self.reject(b"GET /" + b"a" * 5000 + b" HTTP/1.1\r\nHost: h\r\n\r\n", 414)
        self.reject(b"GET / HTTP/1.1\r\nHost: h\r\nX-Big: " + b"b" * 5000 + b"\r\n\r\n", 431)
        many = b"".join(b"X-%d: v\r\n" % i for i in range(60))
        self.reject(b"GET / HTTP/1.1\r\nHost: h\r\n" + many + b"\r\n", 431)
        self.reject(b"GET / HTTP/2.0\r\nHost: h\r\n\r\n", 505)

    def test_error_after_keepalive_requests(self):
        with connect(self.f.port) as s:
            r = Reader(s)
            s.sendall(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
            self.assertEqual(r.read_response().status, 200)
            s.sendall(b"GET / HTTP/1.1\r\n\r\n")
            self.assertEqual(r.read_response().status, 400)
            self.assertTrue(r.closed())

    def test_header_timeout(self):
        f = self.fulcrum(config([("s1", self.b.address)],
                                extra="timeouts:\n  client_header: 300ms\n"))
        with connect(f.port) as s:
            s.sendall(b"GET / HTTP/1.1\r\nHo")
            t0 = time.monotonic()
            r = Reader(s)
            resp = r.read_response()
            self.assertEqual(resp.status, 408)
            self.assertTrue(r.closed())
            self.assertLess(time.monotonic() - t0, 3)
        # a connection that sends nothing is closed quietly
        with connect(f.port) as s:
            self.assertTrue(Reader(s).closed(timeout=3))

    def test_idle_timeout(self):
        f = self.fulcrum(config([("s1", self.b.address)],
                                extra="timeouts:\n  client_idle: 300ms\n"))
        with connect(f.port) as s:
            r = Reader(s)
            s.sendall(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
            self.assertEqual(r.read_response().status, 200)
            t0 = time.monotonic()
            self.assertTrue(r.closed(timeout=5))
            self.assertGreater(time.monotonic() - t0, 0.2)

    def test_truncated_upload(self):
        """A client that stops in the middle of its body has left (issue 9, part 3): the backend
        request is aborted and the connection closed, with no answer (logged as 499)."""
        with connect(self.f.port) as s:
            s.sendall(b"POST /?echo=1 HTTP/1.1\r\nHost: h\r\nContent-Length: 100\r\n\r\nhello")
            s.shutdown(socket.SHUT_WR)
            self.assertTrue(Reader(s).closed())


class BackendFailureTest(FulcrumTestCase):
    def check_error(self, port, path, status, method="GET"):
        raw = b"%s %s HTTP/1.1\r\nHost: h\r\n\r\n" % (method.encode(), path.encode())
        resp = exchange(port, raw, method)
        self.assertEqual(resp.status, status, path)
        self.assertEqual(resp.header("Content-Type"), "text/plain")
        if method != "HEAD":
            self.assertEqual(resp.body, b"%d %s\n" % (status, resp.reason.encode()))
        return resp

    def test_connection_refused_502(self):
        f = self.fulcrum(config([("dead", "127.0.0.1:%d" % free_port())]))
        self.check_error(f.port, "/", 502)
        self.check_error(f.port, "/", 502, "HEAD")

    def test_reset_502(self):
        b = self.backend("b1")
        f = self.fulcrum(config([("s1", b.address)]))
        self.check_error(f.port, "/?reset=1", 502)
        self.assertEqual(get(f.port)[0], 200)  # the client side recovers

    def test_invalid_response_502(self):
        b = self.backend("b1")
        f = self.fulcrum(config([("s1", b.address)]))
        self.check_error(f.port, "/?garbage=1", 502)

    def test_timeout_504(self):
        b = self.backend("b1")
        f = self.fulcrum(config([("s1", b.address)], extra="timeouts:\n  server: 300ms\n"))
        t0 = time.monotonic()
        self.check_error(f.port, "/?delay=3000", 504)
        self.assertLess(time.monotonic() - t0, 2.5)

    def test_connect_timeout_504(self):
        # A listener whose accept queue is full never completes new handshakes.
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        sock.listen(0)
        port = sock.getsockname()[1]
        fillers = []
        for _ in range(8):
            c = socket.socket()
            c.setblocking(False)
            try:
                c.connect(("127.0.0.1", port))
            except BlockingIOError:
                pass
            fillers.append(c)
        try:
            f = self.fulcrum(config([("s", "127.0.0.1:%d" % port)],
                                    extra="timeouts:\n  connect: 300ms\n"))
            t0 = time.monotonic()
            self.check_error(f.port, "/", 504)
            self.assertLess(time.monotonic() - t0, 2.5)
        finally:
            for c in fillers:
                c.close()
            sock.close()

    def test_no_server_available_503(self):
        b = self.backend("b1")
        f = self.fulcrum(config([("s1", b.address, 0)]))
        resp = self.check_error(f.port, "/", 503)
        self.assertEqual(resp.header("Retry-After"), "1")
        # a 503 for a complete request keeps the client connection
        self.assertEqual(resp.header("Connection"), "keep-alive")
        self.assertEqual(b.stats()["requests"], 0)

    def test_truncated_response_is_visible(self):
        b = self.backend("b1")
        f = self.fulcrum(config([("s1", b.address)]))
        for path in ("/?size=200000&reset_after=1000",
                     "/?size=200000&chunked=1&reset_after=1000"):
            with connect(f.port) as s:
                s.sendall(b"GET %s HTTP/1.1\r\nHost: h\r\n\r\n" % path.encode())
                r = Reader(s)
                with self.assertRaises((EOFError, ConnectionResetError)):
                    r.read_response()

    def test_response_framing_attacks(self):
        cases = [
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 58\r\n\r\nhello"
            b"HTTP/1.1 200 OK\r\nX-Injected: 1\r\nContent-Length: 0\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 58\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"0\r\n\r\nHTTP/1.1 200 OK\r\nX-Injected: 1\r\nContent-Length: 0\r\n\r\n",
            b"HTTP/1.1 2000 OK\r\nContent-Length: 0\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length : 5\r\n\r\nhello",
        ]
        for case in cases:
            sb = self.scripted_backend(lambda conn, req, c=case: (conn.sendall(c), "close")[1])
            f = self.fulcrum(config([("s", sb.address)]))
            with connect(f.port) as s:
                s.sendall(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
                r = Reader(s)
                resp = r.read_response()
                self.assertEqual(resp.status, 502, case)
                self.assertNotIn(b"X-Injected", resp.raw_head + resp.body + r.buf)

    def test_204_with_body_not_reused(self):
        def handler(conn, req):
            conn.sendall(b"HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\nhello"
                         b"HTTP/1.1 200 OK\r\nX-Injected: 1\r\nContent-Length: 0\r\n\r\n")
        sb = self.scripted_backend(handler)
        f = self.fulcrum(config([("s", sb.address)]))
        with connect(f.port) as s:
            r = Reader(s)
            s.sendall(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
            resp = r.read_response()
            self.assertEqual(resp.status, 204)
            self.assertIsNone(resp.header("Content-Length"))
            s.sendall(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
            resp = r.read_response()
            self.assertEqual(resp.status, 204)
            self.assertNotIn(b"X-Injected", resp.raw_head + r.buf)
        self.assertEqual(sb.connections, 2)  # the out-of-step connection was not reused
