"""
test_limits.py - fulcrum under resource pressure: slow and idle crowds, the connection cap, a
low file-descriptor limit, and a client that uploads forever to a backend that never reads.
"""
import os
import resource
import selectors
import socket
import threading
import time

from harness import (SANITIZED, FulcrumTestCase, Reader, config, connect, get, rss_kib,
                     wait_for)


def cpu_seconds(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def percentile(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * p / 100))]


class Crowd:
    """Many client sockets driven from one thread: slowloris clients dribble a head one byte at a
    time; idle clients send one request, read the answer and stay open."""

    def __init__(self, port):
        self.port = port
        self.slow = []
        self.idle = []
        self.closed_slow = 0
        self.stop = threading.Event()

    def open(self, n_slow, n_idle):
        for _ in range(n_idle):
            s = socket.create_connection(("127.0.0.1", self.port))
            s.sendall(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
            self.idle.append(s)
        for s in self.idle:
            Reader(s).read_response()  # answered: now idle keep-alive clients
        for _ in range(n_slow):
            s = socket.create_connection(("127.0.0.1", self.port))
            s.sendall(b"GET / HTTP/1.1\r\nHost: h\r\nX-Slow: ")
            s.setblocking(False)
            self.slow.append(s)

    def dribble(self, period):
        """Sends one more header byte on every slow socket each period, until stopped; counts
        the ones fulcrum closes."""
        sel = selectors.DefaultSelector()
        for s in self.slow:
            sel.register(s, selectors.EVENT_READ)
        alive = set(self.slow)
        next_send = time.monotonic()
        while not self.stop.is_set() and alive:
            if time.monotonic() >= next_send:
                for s in list(alive):
                    try:
                        s.send(b"a")
                    except OSError:
                        pass
                next_send += period
            for key, _ in sel.select(timeout=0.05):
                s = key.fileobj
                try:
                    data = s.recv(4096)
                except OSError:
                    data = b""
                if not data or data.startswith(b"HTTP/1.1 408"):
                    sel.unregister(s)
                    alive.discard(s)
                    self.closed_slow += 1
        sel.close()

    def close(self):
        for s in self.slow + self.idle:
            s.close()


class LimitsTest(FulcrumTestCase):
    def test_slow_and_idle_crowds_do_not_hurt_normal_clients(self):
        n = 500 if SANITIZED else 2000
        b = self.backend("b1")
        f = self.fulcrum(config([("s1", b.address)], threads=2,
                                extra="timeouts:\n  client_header: 3s\n"))
        crowd = Crowd(f.port)
        t_open = time.monotonic()
        crowd.open(n_slow=n, n_idle=n)
        opened = time.monotonic() - t_open
        dribbler = threading.Thread(target=crowd.dribble, args=(1.0,))
        dribbler.start()
        try:
            latencies = []
            conn = connect(f.port)
            r = Reader(conn)
            deadline = time.monotonic() + 2.0
            while time.monotonic() < deadline:  # a normal client, keep-alive and new connections
                t0 = time.monotonic()
                conn.sendall(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
                self.assertEqual(r.read_response().status, 200)
                latencies.append(time.monotonic() - t0)
                t0 = time.monotonic()
                self.assertEqual(get(f.port)[0], 200)
                latencies.append(time.monotonic() - t0)
            conn.close()
            p99 = percentile(latencies, 99)
            print("\n    %d slowloris + %d idle clients (opened in %.1fs); normal client: %d "
                  "requests, p50 %.1f ms, p99 %.1f ms" % (n, n, opened, len(latencies),
                                                         percentile(latencies, 50) * 1000,
                                                         p99 * 1000))
            self.assertLess(p99, 0.050)
            # the header timeout closes every slow client (3 s after its first byte)
            wait_for(lambda: crowd.closed_slow == n, timeout=15,
                     what="fulcrum to close the slow clients")
            # the idle keep-alive clients are still there and still work
            for s in crowd.idle[:50]:
                s.sendall(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
                self.assertEqual(Reader(s).read_response().status, 200)
        finally:
            crowd.stop.set()
            dribbler.join()
            crowd.close()

    def test_connection_cap_queues_instead_of_dropping(self):
        b = self.backend("b1")
        f = self.fulcrum(config([("s1", b.address)], threads=2,
                                extra="limits:\n  max_connections: 5\n"))
        held = []
        for _ in range(5):
            s = connect(f.port)
            s.sendall(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
            self.assertEqual(Reader(s).read_response().status, 200)
            held.append(s)
        waiting = connect(f.port)  # the kernel completes the handshake; fulcrum does not accept
        waiting.sendall(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
        waiting.settimeout(0.5)
        with self.assertRaises(socket.timeout):
            waiting.recv(1)  # no answer while at the cap (and no reset either)
        held.pop().close()
        waiting.settimeout(5)
        resp = Reader(waiting).read_response()  # served as soon as a slot frees
        self.assertEqual(resp.status, 200)
        waiting.close()
        for s in held:
            s.close()

    def test_out_of_file_descriptors(self):
        """With ulimit -n 64, accept backs off instead of failing or spinning, and fulcrum keeps
        serving what it can."""
        b = self.backend("b1")

        def low_limit():
            resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))
        f = self.fulcrum(config([("s1", b.address)]), preexec=low_limit)
        port = f.port
        clients = []
        for _ in range(120):  # more clients than descriptors
            s = socket.create_connection(("127.0.0.1", port))
            clients.append(s)
        wait_for(lambda: "pausing accepts" in f.log(), what="accept to back off")
        cpu0 = cpu_seconds(f.pid)
        t0 = time.monotonic()
        wait_for(lambda: time.monotonic() - t0 > 1.0, what="a second")
        busy = cpu_seconds(f.pid) - cpu0
        print("\n    CPU used in 1 s while out of descriptors: %.3f s" % busy)
        self.assertLess(busy, 0.2)  # backing off, not spinning
        for s in clients:
            s.close()
        # descriptors came back: fulcrum serves again
        status = wait_for(lambda: self._try_get(port), timeout=10, what="service again")
        self.assertEqual(status, 200)
        self.assertTrue(f.alive())

    @staticmethod
    def _try_get(port):
        try:
            return get(port, timeout=2)[0]
        except OSError:
            return None

    def test_endless_upload_to_a_backend_that_does_not_read(self):
        release = threading.Event()

        def never_read(conn, req):
            release.wait(30)
            return "close"
        sb = self.scripted_backend(never_read, read_body=False)
        f = self.fulcrum(config([("s", sb.address)]))
        base = rss_kib(f.pid)
        sent = [0]

        def upload():
            s = connect(f.port)
            s.sendall(b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 100000000000\r\n\r\n")
            s.settimeout(1.0)
            chunk = b"x" * 65536
            try:
                while not release.is_set():
                    sent[0] += s.send(chunk)
            except OSError:
                pass
            s.close()
        t = threading.Thread(target=upload)
        t.start()
        peak = base
        t0 = time.monotonic()
        while time.monotonic() - t0 < 3.0:
            peak = max(peak, rss_kib(f.pid))
            time.sleep(0.05)
        stalled_at = sent[0]
        wait_for(lambda: time.monotonic() - t0 > 4.0, what="a stalled second")
        release.set()
        t.join()
        print("\n    client pushed %d KiB before backpressure stopped it; fulcrum RSS %d -> %d KiB"
              % (sent[0] // 1024, base, peak))
        self.assertLess(sent[0], 64 << 20)  # kernel buffers + one fulcrum buffer, not more
        self.assertLess(sent[0] - stalled_at, 1 << 20)  # and it really stopped
        if not SANITIZED:
            self.assertLess(peak - base, 2048)

