"""
test_balance.py - round-robin distribution, and reuse of backend connections.
"""
import http.client
import socket
import threading
import time

from harness import FulcrumTestCase, Reader, config, connect, get, served_by, wait_for


class BalanceTest(FulcrumTestCase):
    def test_equal_weights_exact_share(self):
        bs = [self.backend("b%d" % i) for i in range(3)]
        f = self.fulcrum(config([("s%d" % i, b.address) for i, b in enumerate(bs)]))
        seen = served_by(f.port, 3 * 50)
        for b in bs:
            self.assertEqual(seen.count(b.name), 50)
        # what the backends counted agrees with what the client saw
        for b in bs:
            self.assertEqual(b.stats()["requests"], 50)

    def test_smooth_weighted_windows(self):
        bs = [self.backend("b%d" % i) for i in range(3)]
        f = self.fulcrum(config([("s0", bs[0].address, 1), ("s1", bs[1].address, 1),
                                 ("s2", bs[2].address, 2)]))
        seen = served_by(f.port, 200)
        for start in range(len(seen) - 3):
            window = seen[start:start + 4]
            self.assertEqual((window.count("b0"), window.count("b1"), window.count("b2")),
                             (1, 1, 2), window)

    def test_new_connections_rotate_too(self):
        bs = [self.backend("b%d" % i) for i in range(2)]
        f = self.fulcrum(config([("s%d" % i, b.address) for i, b in enumerate(bs)]))
        seen = [get(f.port)[1]["x-backend"] for _ in range(10)]
        self.assertEqual(seen.count("b0"), 5)

    def test_backend_connections_reused(self):
        """10,000 sequential keep-alive requests use about one backend connection per thread."""
        b = self.backend("b1")
        threads = 2
        f = self.fulcrum(config([("s1", b.address)], threads=threads))
        total = 0
        for _ in range(4):  # a few client connections, landing on whichever thread
            conn = http.client.HTTPConnection("127.0.0.1", f.port, timeout=5)
            for _ in range(2500):
                conn.request("GET", "/")
                r = conn.getresponse()
                r.read()
                self.assertEqual(r.status, 200)
                total += 1
            conn.close()
        stats = b.stats()
        print("\n    %d requests, %d backend connections (%d threads)" % (
            total, stats["connections"], threads))
        self.assertLessEqual(stats["connections"], threads)

    def test_idle_connection_closed_by_backend_is_not_used(self):
        """A backend that closes idle connections (as Node and Apache do after a few seconds):
        the client never sees the closed connection, only answers."""
        closed = threading.Semaphore(0)

        def handler(conn, req):
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            conn.shutdown(socket.SHUT_RDWR)  # close while idle, without announcing it
            closed.release()
            return "close"
        sb = self.scripted_backend(handler)
        f = self.fulcrum(config([("s", sb.address)]))
        with connect(f.port) as s:
            r = Reader(s)
            for i in range(5):
                s.sendall(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
                self.assertEqual(r.read_response().status, 200)
                self.assertTrue(closed.acquire(timeout=5))
        self.assertEqual(len(sb.requests), 5)
        self.assertEqual(sb.connections, 5)

    def test_stale_connection_retried_on_fresh_one(self):
        """The race no event can catch: the backend closes an idle connection exactly when
        the next request is sent. The request is replayed on a fresh connection."""
        state = {"n": 0}

        def handler(conn, req):
            state["n"] += 1
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            return None
        sb = self.scripted_backend(handler)
        f = self.fulcrum(config([("s", sb.address)]))
        self.assertEqual(get(f.port)[0], 200)

        # Make every pooled connection die silently: the backend drops the next request it
        # reads on that connection without answering, and closes.
        def dropper(conn, req):
            if state.setdefault("dropped", 0) == 0:
                state["dropped"] = 1
                return "close"
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nnew")
            return None
        sb.handler = dropper
        status, _, body = get(f.port)
        self.assertEqual(status, 200)
        self.assertEqual(body, b"new")
        self.assertEqual(sb.connections, 2)
