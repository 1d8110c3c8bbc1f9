"""
test_chaos.py - a mixed load while backends are killed, restarted, stalled (SIGSTOP/SIGCONT),
reset mid-response and made to send garbage.

Every client exchange ends one of three ways:
  ok       - a complete response whose content is verified (body pattern, upload CRC, order of
             pipelined answers);
  error    - a clean error: a 502/503/504 answer, or a connection that fails before the message
             is complete (truncation the client can see);
  WRONG    - anything else: a message that looks complete but is not what was asked for, or
             answers out of order. There must be none.
Throughout, fulcrum must not crash; afterwards its file descriptors and memory come back down.

The run is bounded: CHAOS_SECONDS of load (20 by default, FULCRUM_CHAOS_SECONDS to change).
make soak runs the same mix for 10 minutes (tests/soak/soak.py).
"""
import os
import random
import signal
import socket
import threading
import time
import zlib

from harness import (SANITIZED, Backend, FulcrumTestCase, Reader, config, fd_count, rss_kib,
                     wait_for)

CHAOS_SECONDS = float(os.environ.get("FULCRUM_CHAOS_SECONDS", 20))

ALPHABET = bytes(range(ord("a"), ord("z") + 1))


def pattern(n):
    return (ALPHABET * (n // 26 + 1))[:n]


class Verdict(Exception):
    """A wrong answer: raised to the worker loop, which records it."""


class Tally:
    def __init__(self):
        self.lock = threading.Lock()
        self.counts = {"ok": 0, "error": 0, "wrong": 0}
        self.kinds = {}
        self.wrong = []

    def add(self, outcome, kind, detail=None):
        with self.lock:
            self.counts[outcome] += 1
            key = "%s/%s" % (kind, outcome)
            self.kinds[key] = self.kinds.get(key, 0) + 1
            if outcome == "wrong" and len(self.wrong) < 10:
                self.wrong.append("%s: %s" % (kind, detail))


def is_error_status(status):
    return status in (502, 503, 504)


class Client:
    """One load worker: a mix of exchange kinds on a keep-alive connection and new ones."""

    def __init__(self, port, tally, rng):
        self.port = port
        self.tally = tally
        self.rng = rng
        self.sock = None
        self.reader = None

    def conn(self, fresh=False):
        if fresh or self.sock is None:
            self.drop()
            self.sock = socket.create_connection(("127.0.0.1", self.port), timeout=15)
            self.reader = Reader(self.sock)
        return self.sock, self.reader

    def drop(self):
        if self.sock:
            self.sock.close()
        self.sock = self.reader = None

    def run_one(self):
        kind = self.rng.choice(["get", "get", "new", "upload", "download", "pipeline",
                                "misbehave", "bad"])
        try:
            getattr(self, "do_" + kind)()
            self.tally.add("ok", kind)
        except Verdict as e:
            self.tally.add("wrong", kind, str(e))
            self.drop()
        except (OSError, EOFError, ValueError) as e:
            # The connection failed before a complete message: a visible error, never a
            # silently short answer (Reader raises on any cut before the framing ends).
            self.tally.add("error", kind)
            self.drop()
        except ErrorAnswer:
            self.tally.add("error", kind)

    def response(self, method="GET"):
        resp = self.reader.read_response(method)
        if is_error_status(resp.status):
            if resp.header("Connection") == "close":
                self.drop()
            raise ErrorAnswer()
        return resp

    def check_body(self, resp, n):
        if resp.status != 200:
            raise Verdict("status %d" % resp.status)
        if not resp.complete:
            raise EOFError("cut")  # close-delimited and reset: visible
        if resp.body != pattern(n):
            raise Verdict("body of %d bytes is not the %d asked for" % (len(resp.body), n))

    def do_get(self, fresh=False):
        n = self.rng.choice([0, 1, 100, 5000, 70000])
        s, _ = self.conn(fresh)
        s.sendall(b"GET /?size=%d HTTP/1.1\r\nHost: chaos\r\n\r\n" % n)
        self.check_body(self.response(), n)

    def do_new(self):
        self.do_get(fresh=True)
        self.drop()

    def do_download(self):
        n = self.rng.choice([1 << 20, 3 << 20])
        chunked = self.rng.random() < 0.5
        s, _ = self.conn()
        s.sendall(b"GET /?size=%d%s HTTP/1.1\r\nHost: chaos\r\n\r\n" %
                  (n, b"&chunked=1" if chunked else b""))
        self.check_body(self.response(), n)

    def do_upload(self):
        n = self.rng.choice([10, 30000, 400000])
        body = os.urandom(n)
        s, _ = self.conn()
        s.sendall(b"PUT /up HTTP/1.1\r\nHost: chaos\r\nContent-Length: %d\r\n\r\n" % n + body)
        resp = self.response()
        if resp.status != 200 or resp.header("X-Body-Crc32") != "%08x" % zlib.crc32(body):
            raise Verdict("upload of %d bytes: status %d crc %s" %
                          (n, resp.status, resp.header("X-Body-Crc32")))

    def do_pipeline(self):
        s, r = self.conn()
        tags = [self.rng.randrange(1 << 30) for _ in range(3)]
        s.sendall(b"".join(b"GET /p%d?echo=1 HTTP/1.1\r\nHost: chaos\r\n\r\n" % t for t in tags))
        for t in tags:
            resp = self.response()
            if resp.status != 200 or not resp.body.startswith(b"GET /p%d?echo=1 " % t):
                raise Verdict("pipelined answer for /p%d: %d %r" % (t, resp.status,
                                                                    resp.body[:40]))

    def do_misbehave(self):
        """Ask a backend to reset in the middle, or to answer garbage."""
        s, _ = self.conn(fresh=True)
        if self.rng.random() < 0.5:
            s.sendall(b"GET /?size=300000&reset_after=10000 HTTP/1.1\r\nHost: chaos\r\n\r\n")
            resp = self.response()
            # reaching here means fulcrum presented a complete 300000-byte message: wrong
            raise Verdict("a reset response arrived as complete (%d bytes)" % len(resp.body))
        s.sendall(b"GET /?garbage=1 HTTP/1.1\r\nHost: chaos\r\n\r\n")
        resp = self.response()
        raise Verdict("garbage answered with status %d" % resp.status)

    def do_bad(self):
        s, r = self.conn(fresh=True)
        s.sendall(b"GET /x HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n")
        resp = r.read_response()
        if resp.status != 400:
            raise Verdict("bad request answered %d" % resp.status)
        self.drop()


class ErrorAnswer(Exception):
    """fulcrum answered with a clean 502/503/504."""


class ChaosTest(FulcrumTestCase):
    def test_chaos(self):
        rng = random.Random(os.environ.get("FULCRUM_CHAOS_SEED", "fulcrum"))
        backends = [self.backend("b%d" % i) for i in range(3)]
        ports = [b.port for b in backends]
        f = self.fulcrum(config(
            [("s%d" % i, b.address) for i, b in enumerate(backends)], threads=2,
            pool_extra=("    health_check:\n      interval: 300ms\n      fast_interval: 100ms\n"
                        "      timeout: 300ms\n      rise: 2\n      fall: 2\n"),
            extra=("timeouts:\n  server: 2s\n  connect: 500ms\n  server_idle: 1s\n"
                   "  client_idle: 5s\n")))
        fds_at_start = fd_count(f.pid)

        tally = Tally()
        stop = threading.Event()

        def worker(seed):
            c = Client(f.port, tally, random.Random(seed))
            while not stop.is_set():
                c.run_one()
            c.drop()

        # warm up under the same mix, so the memory baseline includes the pools a load needs
        warm = [threading.Thread(target=worker, args=(i,)) for i in range(6)]
        for t in warm:
            t.start()
        time.sleep(2)  # the warm-up is a length of time, not a wait for a condition
        stop.set()
        for t in warm:
            t.join()
        rss_base = rss_kib(f.pid)
        stop.clear()

        workers = [threading.Thread(target=worker, args=(100 + i,)) for i in range(6)]
        for t in workers:
            t.start()
        events = []
        t_end = time.monotonic() + CHAOS_SECONDS
        try:
            while time.monotonic() < t_end:
                self.assertTrue(f.alive(), "fulcrum died:\n" + f.log())
                i = rng.randrange(3)
                b = backends[i]
                action = rng.choice(["kill", "stop"])
                pause = rng.uniform(0.5, 2.0)
                if action == "kill":
                    b.stop(signal.SIGKILL)
                    events.append("kill b%d" % i)
                    time.sleep(pause)  # chaos: how long the backend stays dead
                    backends[i] = self.backend("b%d" % i, port=ports[i])
                else:
                    b.signal(signal.SIGSTOP)
                    events.append("stop b%d" % i)
                    time.sleep(pause)  # chaos: how long the backend stays frozen
                    b.signal(signal.SIGCONT)
                time.sleep(rng.uniform(0.5, 1.5))  # chaos: quiet time between events
        finally:
            stop.set()
            for t in workers:
                t.join()
            for b in backends:
                b.signal(signal.SIGCONT)
        print("\n    %s; %s\n    events: %s" % (tally.counts, tally.kinds, ", ".join(events)))
        self.assertTrue(f.alive(), "fulcrum died:\n" + f.log())
        self.assertEqual(tally.counts["wrong"], 0, "\n".join(tally.wrong))
        self.assertGreater(tally.counts["ok"], 200)

        # afterwards: idle backend connections expire (server_idle 1s), clients are gone
        wait_for(lambda: fd_count(f.pid) <= fds_at_start, timeout=15,
                 what="fulcrum's descriptors back to %d (now %d)" % (fds_at_start,
                                                                   fd_count(f.pid)))
        rss_after = rss_kib(f.pid)
        print("    fds %d -> %d; RSS after warm-up %d KiB, after chaos %d KiB" % (
            fds_at_start, fd_count(f.pid), rss_base, rss_after))
        if not SANITIZED:
            self.assertLess(rss_after, rss_base + 4096)
