"""
test_health.py - active checks, passive ejection, retries, slow start and all-servers-down.

Times are measured, not assumed: a test flips a backend's health, then polls fulcrum's log for
the state change and asserts the observed delay against the formula in docs/health-checks.md.
A small allowance (SLACK) covers process scheduling on a loaded 2-core machine.
"""
import http.client
import re
import signal
import socket
import struct
import threading
import time

from harness import (SANITIZED, Backend, FulcrumTestCase, Load, Reader, config, connect,
                     exchange, free_port, get, served_by, wait_for)

SLACK = 0.4 if SANITIZED else 0.25


def post(port, path):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    conn.request("POST", path)
    r = conn.getresponse()
    r.read()
    conn.close()
    return r.status


def wait_log(f, pattern, timeout=10.0, after=0):
    """Polls fulcrum's log until pattern matches text added after offset `after`."""
    def found():
        return re.search(pattern, f.log()[after:])
    return wait_for(found, timeout=timeout, interval=0.005, what="log line /%s/" % pattern)


def check_conf(interval="300ms", fast="100ms", timeout="200ms", rise=2, fall=3, extra=""):
    return ("    health_check:\n"
            "      interval: %s\n"
            "      fast_interval: %s\n"
            "      timeout: %s\n"
            "      rise: %d\n"
            "      fall: %d\n%s" % (interval, fast, timeout, rise, fall, extra))


class ActiveCheckTest(FulcrumTestCase):
    def test_leaves_and_returns_within_the_formula(self):
        bs = [self.backend("b%d" % i) for i in range(3)]
        f = self.fulcrum(config([("s%d" % i, b.address) for i, b in enumerate(bs)],
                                pool_extra=check_conf()))
        # interval 0.3, fast 0.1, timeout 0.2, rise 2, fall 3
        leave_bound = 0.3 + 2 * 0.1 + 0.2
        return_bound = 2 * 0.1 + 0.3
        wait_for(lambda: "first check" not in f.log() and
                 len(served_by(f.port, 3)) == 3, what="start")
        mark = len(f.log())
        t0 = time.monotonic()
        self.assertEqual(post(bs[1].port, "/healthcheck/fail"), 200)
        wait_log(f, r"server s1: UP -> DOWN \(3/3 checks failed: status 503\)", after=mark)
        left = time.monotonic() - t0
        print("\n    left rotation after %.3fs (bound %.3fs)" % (left, leave_bound))
        self.assertLessEqual(left, leave_bound + SLACK)
        seen = served_by(f.port, 30)
        self.assertNotIn("b1", seen)
        self.assertEqual(seen.count("b0"), 15)

        mark = len(f.log())
        t1 = time.monotonic()
        self.assertEqual(post(bs[1].port, "/healthcheck/ok"), 200)
        wait_log(f, r"server s1: DOWN -> UP \(2/2 checks passed\)", after=mark)
        back = time.monotonic() - t1
        print("    back in rotation after %.3fs (bound %.3fs)" % (back, return_bound))
        self.assertLessEqual(back, return_bound + SLACK)
        seen = served_by(f.port, 30)
        self.assertEqual(seen.count("b1"), 10)

    def test_first_check_runs_at_once(self):
        dead = "127.0.0.1:%d" % free_port()
        b = self.backend("b0")
        f = self.fulcrum(config([("alive", b.address), ("dead", dead)],
                                pool_extra=check_conf(interval="5s")))
        t0 = time.monotonic()
        wait_log(f, r"server dead: UP -> DOWN \(first check failed: Connection refused\)")
        self.assertLess(time.monotonic() - t0, 1.0)  # not after a 5 s interval
        self.assertEqual(set(served_by(f.port, 10)), {"b0"})

    def test_checks_once_per_process(self):
        b = self.backend("b0")
        f = self.fulcrum(config([("s0", b.address)], threads=2,
                                pool_extra=check_conf(interval="100ms")))
        time_start = time.monotonic()
        before = b.stats()["requests"]
        wait_for(lambda: time.monotonic() - time_start > 1.0, what="a second of checks")
        checks = b.stats()["requests"] - before
        # about 10 checks in a second from one health thread, not 10 per worker thread
        print("\n    %d checks in ~1s with 2 worker threads, interval 100ms" % checks)
        self.assertGreaterEqual(checks, 7)
        self.assertLessEqual(checks, 14)

    def test_tcp_check(self):
        b = self.backend("b0")
        other = self.backend("b1")
        f = self.fulcrum(config([("s0", b.address), ("s1", other.address)],
                                pool_extra=check_conf(extra="      type: tcp\n")))
        before = b.stats()["requests"]
        other.stop(signal.SIGKILL)
        wait_log(f, r"server s1: UP -> DOWN \(\d/3 checks failed: Connection refused\)")
        self.assertEqual(set(served_by(f.port, 6)), {"b0"})
        # a TCP check sends no request
        self.assertEqual(b.stats()["requests"] - before, 6)

    def test_separate_check_port(self):
        traffic = self.backend("traffic")
        health = self.backend("health")
        f = self.fulcrum(config([("s0", traffic.address)],
                                pool_extra=check_conf(extra="      port: %d\n" % health.port)))
        self.assertEqual(get(f.port)[0], 200)
        self.assertEqual(post(health.port, "/healthcheck/fail"), 200)
        wait_log(f, r"server s0: UP -> DOWN")
        # the traffic port was healthy all along; only the check port decided
        self.assertEqual(get(f.port)[0], 503)
        self.assertEqual(post(health.port, "/healthcheck/ok"), 200)
        wait_log(f, r"server s0: DOWN -> UP")
        self.assertEqual(get(f.port)[0], 200)
        self.assertGreater(health.stats()["requests"], 2)
        self.assertEqual(traffic.stats()["requests"], 2)  # no check ever went there

    def test_expect_status_and_body(self):
        b = self.backend("b0")
        f = self.fulcrum(config([("s0", b.address)], pool_extra=check_conf(
            extra="      expect_status: [204, 300-399]\n")))
        wait_log(f, r"server s0: UP -> DOWN \(first check failed: status 200\)")
        base = b.stats()["requests"]
        f2 = self.fulcrum(config([("s0", b.address)], pool_extra=check_conf(
            extra="      expect_body: \"ok\"\n      expect_status: 200\n")))
        # several passing checks go by (the first fails only on a mismatch), and nothing is
        # logged for them
        wait_for(lambda: b.stats()["requests"] - base >= 4, what="checks of f2")
        self.assertEqual(get(f2.port)[0], 200)
        f3 = self.fulcrum(config([("s0", b.address)], pool_extra=check_conf(
            extra="      expect_body: \"all systems go\"\n")))
        wait_log(f3, r"server s0: UP -> DOWN \(first check failed: status 200, body without")
        self.assertNotIn("DOWN", f2.log())

    def test_check_request_and_host(self):
        seen = []

        def handler(conn, req):
            seen.append(req)
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            return "close"
        sb = self.scripted_backend(handler)
        self.fulcrum(config([("s0", sb.address)], pool_extra=check_conf(
            extra="      path: /status?deep=1\n      host: app.internal\n      method: HEAD\n")))
        wait_for(lambda: seen, what="a check request")
        self.assertTrue(seen[0].startswith(b"HEAD /status?deep=1 HTTP/1.1\r\n"), seen[0])
        self.assertIn(b"\r\nHost: app.internal\r\n", seen[0])

    def test_check_timeout_bounded(self):
        """A server that accepts but never answers fails its check at the timeout."""
        def handler(conn, req):
            time.sleep(3)
            return "close"
        sb = self.scripted_backend(handler)
        b = self.backend("b0")
        f = self.fulcrum(config([("slow", sb.address), ("s0", b.address)],
                                pool_extra=check_conf(timeout="150ms")))
        t0 = time.monotonic()
        wait_log(f, r"server slow: UP -> DOWN \(first check failed: timeout\)")
        self.assertLess(time.monotonic() - t0, 0.15 + SLACK)


class KillUnderLoadTest(FulcrumTestCase):
    def test_kill_and_restart_under_load(self):
        """kill -9 one of three backends during a 20 s GET load, restart it 10 s later: the
        client sees no error at all, and the killed server serves again."""
        bs = [self.backend("b%d" % i) for i in range(3)]
        f = self.fulcrum(config([("s%d" % i, b.address) for i, b in enumerate(bs)], threads=2,
                                pool_extra=check_conf(interval="500ms", fast="200ms",
                                                      timeout="300ms")))
        load = Load(f.port, clients=4).start()
        try:
            start = time.monotonic()
            wait_for(lambda: time.monotonic() - start >= 3, timeout=5, what="3 s of load")
            victim = bs[1]
            victim.stop(signal.SIGKILL)
            killed_at = time.monotonic()
            wait_for(lambda: time.monotonic() - killed_at >= 10, timeout=12, what="10 s down")
            with load.lock:
                before_restart = load.served.get("b1", 0)
            restarted = self.backend("b1", port=victim.port)
            wait_log(f, r"server s1: DOWN -> UP", timeout=8)
            wait_for(lambda: time.monotonic() - start >= 20, timeout=12, what="20 s of load")
        finally:
            counts = load.stop()
        served = load.served
        print("\n    %s; served: %s" % (counts, served))
        self.assertEqual(counts["bad_status"], 0)
        self.assertEqual(counts["errors"], 0)
        self.assertGreater(counts["ok"], 1000)
        self.assertGreater(served.get("b1", 0), before_restart)
        self.assertGreater(restarted.stats()["requests"], 0)
        log = f.log()
        self.assertRegex(log, r"server s1: UP -> (DOWN|EJECTED)")
        self.assertRegex(log, r"server s1: DOWN -> UP")


class PassiveTest(FulcrumTestCase):
    def failing_backend(self):
        """Answers 503 to everything, yet passes its health check."""
        def handler(conn, req):
            if req.startswith(b"GET /healthcheck "):
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nok\n")
            else:
                conn.sendall(b"HTTP/1.1 503 Service Unavailable\r\nX-Backend: bad\r\n"
                             b"Content-Length: 5\r\n\r\nbusy\n")
        return self.scripted_backend(handler)

    def test_ejected_after_consecutive_failures_and_back_after_time(self):
        bad = self.failing_backend()
        good = self.backend("good")
        f = self.fulcrum(config([("bad", bad.address), ("good", good.address)], pool_extra=(
            "    passive:\n      consecutive_failures: 3\n      ejection_time: 1s\n"
            "      max_ejection_time: 10s\n")))
        seen = []
        conn = http.client.HTTPConnection("127.0.0.1", f.port, timeout=5)
        for _ in range(6):  # alternating: the 3rd failure of `bad` is the 5th request
            conn.request("GET", "/")
            r = conn.getresponse()
            r.read()
            seen.append(r.status)
        self.assertEqual(seen.count(503), 3)
        wait_log(f, r"server bad: UP -> EJECTED \(3 consecutive failures, last: status 503; "
                    r"ejected for 1\.000s\)")
        t0 = time.monotonic()
        self.assertEqual(set(served_by(f.port, 10)), {"good"})
        wait_log(f, r"server bad: EJECTED -> UP \(ejection time over\)", timeout=5)
        first = time.monotonic() - t0
        # second ejection lasts twice as long
        mark = len(f.log())
        for _ in range(6):
            get(f.port)
        wait_log(f, r"server bad: UP -> EJECTED \(3 consecutive failures, last: status 503; "
                    r"ejected for 2\.000s\)", after=mark)
        t1 = time.monotonic()
        wait_log(f, r"server bad: EJECTED -> UP \(ejection time over\)", timeout=6, after=mark)
        second = time.monotonic() - t1
        print("\n    ejections lasted %.2fs and %.2fs" % (first, second))
        self.assertLess(abs(second - 2.0), 0.5)

    def test_passing_check_readmits(self):
        bad = self.failing_backend()
        good = self.backend("good")
        f = self.fulcrum(config([("bad", bad.address), ("good", good.address)], pool_extra=(
            check_conf(interval="400ms") +
            "    passive:\n      consecutive_failures: 2\n      ejection_time: 60s\n")))
        for _ in range(4):
            get(f.port)
        wait_log(f, r"server bad: UP -> EJECTED")
        t0 = time.monotonic()
        # rise (2) passing checks that began after the ejection, never a single one: the second
        # comes a fast_interval (400 ms, less up to 10% jitter) after the first.
        wait_log(f, r"server bad: EJECTED -> UP \(2/2 health checks passed\)", timeout=3)
        took = time.monotonic() - t0
        self.assertGreater(took, 0.3)
        self.assertLess(took, 2 * 0.4 + SLACK)

    def test_max_ejected_percent(self):
        bads = [self.failing_backend() for _ in range(2)]
        f = self.fulcrum(config([("bad0", bads[0].address), ("bad1", bads[1].address)],
                                pool_extra="    passive:\n      consecutive_failures: 2\n"))
        for _ in range(8):
            get(f.port)
        wait_log(f, r"server bad\d: UP -> EJECTED")
        wait_log(f, r"already ejected \(max_ejected_percent 50\): kept in rotation")
        self.assertEqual(len(re.findall(r"UP -> EJECTED", f.log())), 1)
        # the pool still answers (with the remaining server's 503s), never a 502/503 of ours
        status, headers, _ = get(f.port)
        self.assertEqual(headers.get("x-backend"), "bad")


class RetryTest(FulcrumTestCase):
    @staticmethod
    def die(sb, conn):
        """What a killed process does: stop listening (new connects are refused) and reset."""
        sb.sock.shutdown(socket.SHUT_RDWR)  # wakes the accept() of the serving thread too
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))

    def dying_backend(self):
        """Reads one request, then dies."""
        state = {"requests": []}

        def handler(conn, req):
            state["requests"].append(req)
            self.die(sb, conn)
            return "close"
        sb = self.scripted_backend(handler)
        sb.state = state
        return sb

    def test_idempotent_request_retried_elsewhere(self):
        dying = self.dying_backend()
        good = self.backend("good")
        f = self.fulcrum(config([("dying", dying.address), ("good", good.address)]))
        status, headers, _ = get(f.port, "/x")
        self.assertEqual(status, 200)
        self.assertEqual(headers["x-backend"], "good")
        self.assertEqual(len(dying.state["requests"]), 1)
        self.assertEqual(good.stats()["requests"], 1)

    def test_post_not_sent_twice(self):
        dying = self.dying_backend()
        good = self.backend("good")
        f = self.fulcrum(config([("dying", dying.address), ("good", good.address)]))
        status, _, body = get(f.port, "/order", method="POST", body=b"pay 100",
                              headers={"Content-Type": "text/plain"})
        self.assertEqual(status, 502)
        self.assertEqual(len(dying.state["requests"]), 1)
        self.assertTrue(dying.state["requests"][0].endswith(b"pay 100"))
        self.assertEqual(good.stats()["requests"], 0)

    def test_post_on_reused_connection_not_sent_twice(self):
        """The stale-connection retry must not turn into a second delivery elsewhere."""
        state = {"n": 0, "requests": []}

        def handler(conn, req):
            state["requests"].append(req)
            if req.startswith(b"GET"):
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                return None
            self.die(sb, conn)
            return "close"
        sb = self.scripted_backend(handler)
        good = self.backend("good")
        f = self.fulcrum(config([("dying", sb.address, 1), ("good", good.address, 1)]))
        with connect(f.port) as c:
            r = Reader(c)
            c.sendall(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")  # -> dying (pooled afterwards)
            self.assertEqual(r.read_response().status, 200)
            c.sendall(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")  # -> good
            self.assertEqual(r.read_response().status, 200)
            c.sendall(b"POST /pay HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\n100")
            self.assertEqual(r.read_response().status, 502)
        posts = [q for q in state["requests"] if q.startswith(b"POST")]
        self.assertEqual(len(posts), 1)
        self.assertEqual(good.stats()["requests"], 1)  # only the GET

    def test_connect_failure_retried_for_any_method(self):
        dead = "127.0.0.1:%d" % free_port()
        good = self.backend("good")
        f = self.fulcrum(config([("dead", dead), ("good", good.address)]))
        for _ in range(4):
            status, headers, _ = get(f.port, "/", method="POST", body=b"x")
            self.assertEqual(status, 200)
            self.assertEqual(headers["x-backend"], "good")

    def hung_and_good(self, retry_on_timeout, name):
        """fulcrum over a server that reads a request and never answers (first in round-robin
        order) and a good one, with timeouts.server 300ms."""
        hung = self.scripted_backend(lambda conn, req: None)  # keeps what it read in .requests
        good = self.backend(name)
        f = self.fulcrum(config([("hung", hung.address), ("good", good.address)],
                                pool_extra="    retry_on_timeout: %s\n" % retry_on_timeout,
                                extra="timeouts: {server: 300ms}\n"))
        return hung, good, f

    def test_response_timeout_retried_only_with_retry_on_timeout(self):
        """With retry_on_timeout, an idempotent request whose server never answered goes to
        another server after timeouts.server; without it, or for a POST, the client gets 504."""
        hung, good, f = self.hung_and_good("true", "good")
        status, headers, _ = get(f.port, "/x")
        self.assertEqual((status, headers["x-backend"]), (200, "good"))
        self.assertEqual((len(hung.requests), good.stats()["requests"]), (1, 1))

        hung, good, f = self.hung_and_good("true", "good-post")
        status, _, _ = get(f.port, "/pay", method="POST", body=b"100")
        self.assertEqual((status, len(hung.requests), good.stats()["requests"]), (504, 1, 0))

        hung, good, f = self.hung_and_good("false", "good-off")
        status, _, _ = get(f.port, "/x")
        self.assertEqual((status, len(hung.requests), good.stats()["requests"]), (504, 1, 0))

    def test_retries_limit(self):
        deads = [("d%d" % i, "127.0.0.1:%d" % free_port()) for i in range(4)]
        f = self.fulcrum(config(deads, pool_extra="    retries: 1\n"))
        self.assertEqual(get(f.port)[0], 502)
        f2 = self.fulcrum(config(deads[:3] + [("good", self.backend("good").address)],
                                 pool_extra="    retries: 3\n"))
        self.assertEqual(get(f2.port)[0], 200)


class RecoveryTest(FulcrumTestCase):
    def test_slow_start_ramps_share(self):
        b0 = self.backend("b0")
        b1 = self.backend("b1")
        f = self.fulcrum(config([("s0", b0.address), ("s1", b1.address)], pool_extra=(
            check_conf(interval="100ms", fast="50ms", timeout="100ms", rise=1, fall=1) +
            "    slow_start: 3s\n")))
        self.assertEqual(post(b1.port, "/healthcheck/fail"), 200)
        wait_log(f, r"server s1: UP -> DOWN")
        self.assertEqual(post(b1.port, "/healthcheck/ok"), 200)
        wait_log(f, r"server s1: DOWN -> UP")
        t0 = time.monotonic()
        shares = []
        conn = http.client.HTTPConnection("127.0.0.1", f.port, timeout=5)
        while time.monotonic() - t0 < 4.0:
            window = []
            w0 = time.monotonic()
            while time.monotonic() - w0 < 0.5:
                conn.request("GET", "/")
                r = conn.getresponse()
                r.read()
                window.append(r.getheader("X-Backend"))
            shares.append(window.count("b1") / len(window))
        conn.close()
        print("\n    share of the recovered server per 0.5 s: %s" %
              " ".join("%.2f" % s for s in shares))
        self.assertLess(shares[0], 0.2)  # starts near zero
        self.assertGreater(shares[-1], 0.45)  # ends at its full share (0.5)
        self.assertGreater(shares[3], shares[0])
        # the ramp only goes up (small noise allowed between neighbouring windows)
        for a, b in zip(shares, shares[1:]):
            self.assertGreater(b, a - 0.05)

    def test_no_slow_start_at_process_start(self):
        b0 = self.backend("b0")
        b1 = self.backend("b1")
        f = self.fulcrum(config([("s0", b0.address), ("s1", b1.address)],
                                pool_extra=check_conf() + "    slow_start: 30s\n"))
        seen = served_by(f.port, 20)
        self.assertEqual(seen.count("b1"), 10)


class AllDownTest(FulcrumTestCase):
    def test_reject(self):
        bs = [self.backend("b%d" % i) for i in range(2)]
        f = self.fulcrum(config([("s%d" % i, b.address) for i, b in enumerate(bs)],
                                pool_extra=check_conf()))
        for b in bs:
            post(b.port, "/healthcheck/fail")
        wait_log(f, r"server s0: UP -> DOWN")
        wait_log(f, r"server s1: UP -> DOWN")
        resp = exchange(f.port, b"GET /not-a-check HTTP/1.1\r\nHost: h\r\n\r\n")
        self.assertEqual(resp.status, 503)
        self.assertEqual(resp.header("Retry-After"), "1")
        self.assertEqual(resp.body, b"503 Service Unavailable\n")

    def test_use_all(self):
        bs = [self.backend("b%d" % i) for i in range(2)]
        f = self.fulcrum(config([("s%d" % i, b.address) for i, b in enumerate(bs)],
                                pool_extra=check_conf() + "    when_all_down: use-all\n"))
        for b in bs:
            post(b.port, "/healthcheck/fail")
        wait_log(f, r"server s0: UP -> DOWN")
        wait_log(f, r"server s1: UP -> DOWN")
        seen = served_by(f.port, 10)
        self.assertEqual(sorted(set(seen)), ["b0", "b1"])
