"""
test_signals.py - SIGTERM and SIGINT: stop accepting, let in-flight requests finish, exit 0.
"""
import signal
import threading
import time

from harness import FulcrumTestCase, Reader, config, connect, port_open, wait_for


class SignalTest(FulcrumTestCase):
    def graceful(self, sig):
        b = self.backend("b1")
        f = self.fulcrum(config([("s1", b.address)], threads=2))
        idle = connect(f.port)  # an idle keep-alive client: closed at stop
        idle_reader = Reader(idle)
        idle.sendall(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
        self.assertEqual(idle_reader.read_response().status, 200)

        results = {}

        def slow_request():
            with connect(f.port) as s:
                s.sendall(b"GET /?delay=1000&size=5000 HTTP/1.1\r\nHost: h\r\n\r\n")
                r = Reader(s)
                resp = r.read_response()
                results["status"] = resp.status
                results["body"] = len(resp.body)
                results["connection"] = resp.header("Connection")
                results["closed"] = r.closed()
        t = threading.Thread(target=slow_request)
        t.start()
        wait_for(lambda: b.stats()["held_requests"] >= 1, what="request in flight")
        t0 = time.monotonic()
        f.signal(sig)
        # new clients are refused once the listeners are closed
        wait_for(lambda: not port_open(f.port), timeout=5, what="listener to close")
        self.assertTrue(idle_reader.closed(timeout=5))
        code = f.wait(15)
        t.join()
        elapsed = time.monotonic() - t0
        self.assertEqual(code, 0, f.log())
        self.assertEqual(results.get("status"), 200)
        self.assertEqual(results.get("body"), 5000)
        self.assertEqual(results.get("connection"), "close")
        self.assertTrue(results.get("closed"))
        self.assertLess(elapsed, 5)

    def test_sigterm_graceful(self):
        self.graceful(signal.SIGTERM)

    def test_sigint_graceful(self):
        self.graceful(signal.SIGINT)

    def test_stop_deadline(self):
        b = self.backend("b1")
        f = self.fulcrum(config([("s1", b.address)], extra="shutdown_timeout: 500ms\n"))
        s = connect(f.port)
        s.sendall(b"GET /?hang=1 HTTP/1.1\r\nHost: h\r\n\r\n")
        wait_for(lambda: b.stats()["held_requests"] >= 1, what="request in flight")
        t0 = time.monotonic()
        f.signal(signal.SIGTERM)
        self.assertEqual(f.wait(10), 0)
        self.assertLess(time.monotonic() - t0, 3)
        s.close()


class StopUnderLoadTest(FulcrumTestCase):
    def test_no_response_cut_by_a_stop(self):
        """SIGTERM during a load of downloads: every response that began is completed. (A
        request sent on a keep-alive connection just as it closes gets no response at all,
        which clients retry; a response cut in the middle is what must never happen.)"""
        import http.client
        bs = [self.backend("b%d" % i) for i in range(2)]
        f = self.fulcrum(config([("s%d" % i, b.address) for i, b in enumerate(bs)], threads=2))
        stop = threading.Event()
        counts = {"complete": 0, "cut": 0, "no_response": 0}
        lock = threading.Lock()

        def client(i):
            size = 300000 + 1000 * i
            while not stop.is_set():
                try:
                    s = connect(f.port)
                except OSError:
                    with lock:
                        counts["no_response"] += 1
                    return  # the listener is gone
                r = Reader(s)
                try:
                    for _ in range(5):
                        s.sendall(b"GET /?size=%d HTTP/1.1\r\nHost: h\r\n\r\n" % size)
                        head = __import__("harness").Response()
                        try:
                            r.read_head(head)
                        except (EOFError, OSError, ValueError):
                            with lock:
                                counts["no_response"] += 1
                            break
                        # the response began: it must complete
                        r.buf = head.raw_head + r.buf
                        try:
                            resp = r.read_response()
                            ok = resp.status == 200 and len(resp.body) == size
                        except (EOFError, OSError):
                            ok = False
                        with lock:
                            counts["complete" if ok else "cut"] += 1
                        if not ok or resp.header("Connection") == "close":
                            break
                finally:
                    s.close()
        threads = [threading.Thread(target=client, args=(i,)) for i in range(6)]
        for t in threads:
            t.start()
        wait_for(lambda: counts["complete"] >= 30, what="load to run")
        f.signal(signal.SIGTERM)
        self.assertEqual(f.wait(15), 0)
        stop.set()
        for t in threads:
            t.join()
        print("\n    stop under load: %s" % counts)
        self.assertEqual(counts["cut"], 0)
        self.assertGreater(counts["complete"], 30)
