"""
test_faults.py - fault injection: what clients get from each kind of broken server or link,
how fulcrum counts it, how fast the server leaves rotation and comes back, and that memory
and file descriptors return to their baseline afterwards. The promises are in
docs/health-checks.md, "Faults, and what clients see".

Two kinds of fault:
  - misbehaving servers on loopback (faults/badserver.py): never read, never answer, garbage,
    close before answering, close or reset mid-body or mid-chunk, drip the head or the body;
    and a client that goes away while fulcrum waits for a slow server;
  - a link between fulcrum and one server (faults/linkemu.py): fulcrum and the load run in
    network namespace a, the server in namespace b, joined by two TUN devices and a user-space
    emulator that adds delay, loss or a blackhole. These tests skip, with the reason, where
    namespaces or TUN devices cannot be made (not root, no /dev/net/tun).

Each load is bounded (a number of requests, a few concurrent clients, a deadline per socket
operation), and each wait polls for a condition with a deadline. FULCRUM_FAULTS_LONG=1 (make
test-faults-long) runs longer loads and repeated fault/heal cycles as well.
"""
import calendar
import http.client
import json
import os
import re
import socket
import struct
import subprocess
import sys
import tempfile
import time
import unittest

from harness import (FULCRUM, BACKEND, SANITIZED, Fulcrum, FulcrumTestCase, Process, config,
                     connect, fd_count, free_port, rss_kib, wait_for)
from faults import load
from faults.badserver import BadServer
from faults.linkemu import NetnsLink, Unavailable

HERE = os.path.dirname(os.path.abspath(__file__))
LONG = os.environ.get("FULCRUM_FAULTS_LONG") == "1"
SLACK = 0.6 if SANITIZED else 0.35
RSS_SLACK_KIB = 512
SCALE = 5 if LONG else 1

SERVER_S = 1.0          # timeouts.server in the loopback tests
EJECTION_S = 2.0        # passive.ejection_time in the loopback tests
FAILURES = 3            # passive.consecutive_failures
CONCURRENCY = 8

CUT = ("reset", "closed", "reset_in_body", "closed_in_body")  # a response the client sees cut


# ---- helpers ----

LOG_LINE = re.compile(r"^(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)\.(\d{3})Z (.*)$", re.M)


def wait_log(f, pattern, timeout=10.0, after=0):
    """Polls fulcrum's log for a line matching pattern, after offset `after`. Returns (match,
    the line's own time stamp as a Unix time)."""
    rx = re.compile(pattern)

    def found():
        for m in LOG_LINE.finditer(f.log(), after):
            hit = rx.search(m.group(8))
            if hit:
                y, mo, d, h, mi, s, ms = (int(x) for x in m.groups()[:7])
                return hit, calendar.timegm((y, mo, d, h, mi, s)) + ms / 1000.0
        return None
    try:
        return wait_for(found, timeout=timeout, interval=0.005, what="log line /%s/" % pattern)
    except AssertionError as e:
        changes = [m.group(0) for m in LOG_LINE.finditer(f.log(), after) if " -> " in m.group(8)]
        raise AssertionError("%s; state changes logged: %s" % (e, changes or "none")) from None


TCP_STATES = {"01": "ESTABLISHED", "02": "SYN_SENT", "03": "SYN_RECV", "04": "FIN_WAIT1",
              "05": "FIN_WAIT2", "06": "TIME_WAIT", "07": "CLOSE", "08": "CLOSE_WAIT",
              "09": "LAST_ACK", "0A": "LISTEN", "0B": "CLOSING"}


def socket_inodes(pid):
    """pid's descriptors: [the inode of each socket, or None for anything else]."""
    try:
        names = os.listdir("/proc/%d/fd" % pid)
    except OSError:
        return []
    out = []
    for fd in names:
        try:
            target = os.readlink("/proc/%d/fd/%s" % (pid, fd))
        except OSError:
            continue
        out.append(target[8:-1] if target.startswith("socket:[") else None)
    return out


def net_rows(pid, table):
    """The rows of /proc/PID/net/TABLE (tcp, tcp6, udp, udp6, unix), split into columns."""
    try:
        with open("/proc/%d/net/%s" % (pid, table)) as fh:
            return [row.split() for row in fh.read().splitlines()[1:]]
    except OSError:
        return []


def tcp_sockets(pid):
    """The TCP sockets process pid holds: [{state, local_port, remote_port}]."""
    inodes = {i for i in socket_inodes(pid) if i}
    return [{"state": TCP_STATES.get(col[3], col[3]),
             "local_port": int(col[1].rsplit(":", 1)[1], 16),
             "remote_port": int(col[2].rsplit(":", 1)[1], 16)}
            for table in ("tcp", "tcp6") for col in net_rows(pid, table) if col[9] in inodes]


def connected_sockets(pid):
    return [s for s in tcp_sockets(pid) if s["state"] != "LISTEN"]


def lasting_fd_count(pid):
    """pid's descriptors minus its TCP connections (and sockets still connecting, which are in
    no table yet): listeners, epoll, eventfds, pipes, files, unix and UDP sockets."""
    lasting = set()
    for table in ("tcp", "tcp6", "udp", "udp6", "unix"):
        for col in net_rows(pid, table):
            if table == "unix":
                lasting.add(col[6])
            elif not table.startswith("tcp") or col[3] == "0A":
                lasting.add(col[9])
    return sum(1 for inode in socket_inodes(pid) if inode is None or inode in lasting)


def fault_config(servers, admin_port, threads=2, server="1s", body_idle=None,
                 passive=None, health="", pool_extra="", access_log=None, connect_to="500ms"):
    if passive is None:
        passive = ("    passive:\n      consecutive_failures: %d\n      ejection_time: %dms\n"
                   "      max_ejection_time: 60s\n" % (FAILURES, EJECTION_S * 1000))
    timeouts = ("timeouts:\n  server: %s\n  connect: %s\n  server_idle: 500ms\n" %
                (server, connect_to))
    if body_idle:
        timeouts += "  server_body_idle: %s\n" % body_idle
    extra = timeouts + "admin:\n  bind: 127.0.0.1:%d\n" % admin_port
    if access_log:
        extra += "access_log:\n  path: %s\n  format: json\n" % access_log
    return config(servers, threads=threads, pool_extra="    retries: 2\n" + passive + health +
                  pool_extra, extra=extra)


def health_conf(interval="500ms", fast=None, down=None, timeout="400ms", rise=2, fall=2):
    text = "    health_check:\n      path: /healthcheck\n      interval: %s\n" % interval
    if fast:
        text += "      fast_interval: %s\n" % fast
    if down:
        text += "      down_interval: %s\n" % down
    return text + "      timeout: %s\n      rise: %d\n      fall: %d\n" % (timeout, rise, fall)


def summary_text(s):
    return "%s in %.2fs, served by %s, slowest %s" % (
        s["outcomes"], s["elapsed"], s["served_by"],
        {k: round(v, 2) for k, v in s["max_latency"].items()})


class FaultTestCase(FulcrumTestCase):
    """Starts fulcrum with an admin listener, and checks its resources against a baseline."""

    def setUp(self):
        super().setUp()
        self.bads = []

    def tearDown(self):
        for b in self.bads:
            b.close()
        super().tearDown()

    def bad(self, mode="ok", **kw):
        b = BadServer(mode, **kw)
        self.bads.append(b)
        return b

    def start(self, text, admin_port):
        f = self.fulcrum(text)
        f.admin_port = admin_port
        wait_for(lambda: self.admin_get(f, "/api/state") is not None, what="the admin listener")
        # descriptors without any connection: listeners, epoll, eventfds, log files
        f.fd_base = lasting_fd_count(f.pid)
        return f

    def admin_get(self, f, path):
        try:
            conn = http.client.HTTPConnection("127.0.0.1", f.admin_port, timeout=5)
            conn.request("GET", path)
            r = conn.getresponse()
            body = r.read()
            conn.close()
            return json.loads(body) if r.status == 200 else None
        except (OSError, ValueError):
            return None

    def server_state(self, f, name):
        s = self.admin_get(f, "/api/pools/app/servers/%s" % name)
        return s and s.get("state")

    def warm(self, f, servers):
        """A clean load through every server, so that the memory baseline includes the buffers
        and pools that traffic needs."""
        s = load.run("127.0.0.1", f.port, requests=20 * len(servers), concurrency=CONCURRENCY)
        self.assertEqual(s["outcomes"], {"200": 20 * len(servers)}, summary_text(s))
        for name in servers:
            self.assertIn(name, s["served_by"])
        f.rss_base = rss_kib(f.pid)

    def assert_baseline(self, f):
        """Back to the baseline: no connection left (idle backend connections expire after
        server_idle), the same descriptors as at start, and RSS within RSS_SLACK_KIB of what
        it was after the warm-up."""
        wait_for(lambda: fd_count(f.pid) == f.fd_base, timeout=10,
                 what="fulcrum's descriptors back to %d (now %d: %s)" % (
                     f.fd_base, fd_count(f.pid), connected_sockets(f.pid)))
        if SANITIZED:  # ASan's quarantine and shadow memory make RSS meaningless here
            return
        rss = wait_for(lambda: (lambda r: r if r <= f.rss_base + RSS_SLACK_KIB else None)(
            rss_kib(f.pid)), timeout=5, what="RSS within %d KiB of %d KiB (now %d)" % (
                RSS_SLACK_KIB, f.rss_base, rss_kib(f.pid)))
        print("    fds %d; RSS %d KiB after warm-up, %d KiB now" % (f.fd_base, f.rss_base, rss))

    def assert_back(self, f, bad, ejected_at, how=r"ejection time over", bound=None):
        """After heal(): back in rotation, in time, and serving again."""
        bound = EJECTION_S + SLACK if bound is None else bound
        _, up_at = wait_log(f, r"server %s: EJECTED -> UP \(%s" % (bad.name, how),
                            timeout=bound + 5)
        self.assertLessEqual(up_at - ejected_at, bound)
        self.assertEqual(self.server_state(f, bad.name), "up")
        s = load.run("127.0.0.1", f.port, requests=20, concurrency=4)
        self.assertEqual(s["outcomes"], {"200": 20}, summary_text(s))
        self.assertGreater(s["served_by"].get(bad.name, 0), 0, summary_text(s))
        return up_at


# ---- misbehaving servers ----

class BadServerFaultTest(FaultTestCase):
    """One bad server and one good one (the demo backend), passive detection on
    (consecutive_failures 3, ejection_time 2s), timeouts.server 1s."""

    def pair(self, mode, threads=2, health="", server="1s", body_idle=None, passive=None,
             **kw):
        bad = self.bad("ok", name="bad", **kw)
        good = self.backend("good")
        admin = free_port()
        f = self.start(fault_config([("bad", bad.address), ("good", good.address)], admin,
                                    threads=threads, server=server, body_idle=body_idle,
                                    passive=passive, health=health), admin)
        self.warm(f, ["bad", "good"])
        # the warm-up's pooled connections expire first (server_idle 500ms), so that every
        # request to the bad server opens a connection that starts in the faulty mode
        wait_for(lambda: fd_count(f.pid) == f.fd_base, timeout=10, what="idle connections gone")
        self.mark = len(f.log())
        self.before = bad.stats()
        bad.set_mode(mode)
        return bad, good, f

    def wait_ejected(self, f, reason, duration="2.000s"):
        """The ejection line, with its reason; returns its time. The count it names is the
        failures in a row when the health thread ejected the server: the 3rd asked for it,
        and failures that happened at the same moment may have been added since."""
        m, at = wait_log(f, r"server bad: UP -> EJECTED \((\d+) consecutive failures, last: "
                            r"%s; ejected for %s\)" % (re.escape(reason), re.escape(duration)),
                         after=self.mark, timeout=1)
        self.assertGreaterEqual(int(m.group(1)), FAILURES)
        return at

    def assert_out(self, f, bad):
        """Once ejected, it gets no request at all: the faults stop. (How many failed before
        depends on how many were in flight, and on how soon the health thread ran after the
        failure that asked for the ejection, so that number is not asserted.)"""
        self.assertEqual(self.server_state(f, "bad"), "ejected")
        before = bad.stats()
        s = load.run("127.0.0.1", f.port, requests=20, concurrency=4)
        self.assertEqual(s["outcomes"], {"200": 20}, summary_text(s))
        self.assertEqual(s["served_by"], {"good": 20}, summary_text(s))
        after = bad.stats()
        self.assertEqual((after["accepted"], after["requests"]),
                         (before["accepted"], before["requests"]))

    def delta(self, bad, key):
        return bad.get(key) - self.before[key]

    def timeout_fault(self, mode, bound, **kw):
        """A fault that costs a 504 after timeouts.server: every request gets a 200 from the
        good server or a 504 (one per request the bad server took), the bad server is ejected
        for "response timeout" once three have failed, and comes back when its time is over."""
        bad, good, f = self.pair(mode, **kw)
        t0 = time.time()
        n = 40 * SCALE
        s = load.run("127.0.0.1", f.port, requests=n, concurrency=CONCURRENCY,
                     timeout=SERVER_S + 3)
        print("\n    %s: %s" % (mode, summary_text(s)))
        self.assertEqual(set(s["outcomes"]) - {"200", "504"}, set(), summary_text(s))
        self.assertEqual(s["outcomes"].get("504", 0), self.delta(bad, "requests"))
        self.assertNotIn("bad", s["served_by"])
        self.assertGreaterEqual(s["outcomes"].get("504", 0), FAILURES)
        self.assertLessEqual(s["max_latency"].get("504", 0), bound)
        ejected_at = self.wait_ejected(f, "response timeout")
        self.assertLessEqual(ejected_at - t0, bound)
        self.assert_out(f, bad)
        bad.heal()
        self.assert_back(f, bad, ejected_at)
        self.assert_baseline(f)

    def test_no_read(self):
        """Accepts, never reads: the request waits in kernel buffers; 504 after
        timeouts.server."""
        self.timeout_fault("no_read", SERVER_S + SLACK)

    def test_no_answer(self):
        """Reads, never answers: 504 after timeouts.server."""
        self.timeout_fault("no_answer", SERVER_S + SLACK)

    def test_drip_head(self):
        """A head dripped at 1 byte / 250 ms: 504 at the head deadline (timeouts.server from
        the request sent), not after the whole head (~15 s) and not never."""
        self.timeout_fault("drip_head", SERVER_S + 0.5 + SLACK, drip_ms=250)

    def test_no_answer_healthy_checks_not_readmitted_early(self):
        """A server that hangs while its health checks pass: ejected for response timeouts,
        and not re-admitted before `rise` consecutive passing checks that started after the
        ejection (ejection_time is 10s, so it is the checks that bring it back)."""
        rise, interval = 2, 0.5
        passive = ("    passive:\n      consecutive_failures: %d\n      ejection_time: 10s\n"
                   "      max_ejection_time: 60s\n" % FAILURES)
        # One thread, so round-robin is exact: of 2 x FAILURES requests sent at once, FAILURES
        # hang on the bad server and time out together, and none is left in flight after
        # the ejection (one would time out later and count against the re-admitted server).
        bad, good, f = self.pair("no_answer", threads=1, healthy_checks=True, passive=passive,
                                 health=health_conf(interval="500ms", rise=rise, fall=2))
        s = load.run("127.0.0.1", f.port, requests=2 * FAILURES, concurrency=2 * FAILURES,
                     timeout=SERVER_S + 3)
        print("\n    %s" % summary_text(s))
        self.assertEqual(s["outcomes"], {"504": FAILURES, "200": FAILURES}, summary_text(s))
        self.assertEqual(self.delta(bad, "requests"), FAILURES)
        m, ejected_at = wait_log(f, r"server bad: UP -> EJECTED \(.*last: ([^;]*);",
                                 after=self.mark, timeout=1)
        self.assertEqual(self.server_state(f, "bad"), "ejected")
        _, up_at = wait_log(f, r"server bad: EJECTED -> UP", after=self.mark, timeout=12)
        checks = bad.stats()["check_times"]
        # A check counts if the server answered it after the ejection. The log's time stamps
        # are in whole milliseconds, and fulcrum's clock for checks is its loop's, read once
        # per wake-up, so a few milliseconds around the ejection are given the benefit of
        # the doubt (a server re-admitted on one check would still show one).
        passed = [t for t in checks if ejected_at - 0.005 < t <= up_at + 0.005]
        print("    ejected for %.3fs; %d checks passed in that time" % (up_at - ejected_at,
                                                                         len(passed)))
        self.assertGreaterEqual(len(passed), rise, "re-admitted after %d passing check(s); "
                                "checks at %s s from the ejection, back at %.3f s" % (
                                    len(passed), ["%.3f" % (t - ejected_at) for t in checks],
                                    up_at - ejected_at))
        self.assertGreaterEqual(up_at - ejected_at, (rise - 1) * interval * 0.9 - 0.01)
        self.assertLessEqual(up_at - ejected_at, rise * interval + 0.4 + SLACK)
        self.assertEqual(m.group(1), "response timeout")
        self.wait_ejected(f, "response timeout", "10.000s")
        bad.heal()
        s = load.run("127.0.0.1", f.port, requests=20, concurrency=4)
        self.assertEqual(s["outcomes"], {"200": 20}, summary_text(s))
        self.assertGreater(s["served_by"].get("bad", 0), 0, summary_text(s))
        self.assert_baseline(f)

    def early_close(self, mode, reason):
        """A failure before any response byte: a POST that reached the bad server gets 502
        (never sent twice), a GET is retried on the good server and gets 200."""
        bad, good, f = self.pair(mode, threads=1)  # one thread: exact round-robin
        s = load.run("127.0.0.1", f.port, requests=4, concurrency=1, method="POST",
                     body=b"pay 100")
        print("\n    POST: %s" % summary_text(s))
        self.assertEqual(s["outcomes"], {"502": 2, "200": 2}, summary_text(s))
        self.assertEqual(self.delta(bad, "requests"), 2)
        self.assertEqual(s["served_by"], {"good": 2})
        n = 40 * SCALE
        s = load.run("127.0.0.1", f.port, requests=n, concurrency=CONCURRENCY)
        print("    GET: %s" % summary_text(s))
        self.assertEqual(s["outcomes"], {"200": n}, summary_text(s))
        self.assertEqual(s["served_by"], {"good": n})
        self.assertGreaterEqual(self.delta(bad, "requests") - 2, 1)
        ejected_at = self.wait_ejected(f, reason)
        self.assert_out(f, bad)
        bad.heal()
        self.assert_back(f, bad, ejected_at)
        self.assert_baseline(f)

    def test_garbage(self):
        self.early_close("garbage", "invalid response")

    def test_close_before_answering(self):
        self.early_close("close_before", "closed before response")

    def cut_fault(self, mode):
        """A 200 head, then the connection ends mid-body: the client sees its response cut
        (reset, or closed before the framing's end), never a complete-looking one; the server
        is ejected for "response cut short" after three, and the cuts stop."""
        bad, good, f = self.pair(mode)
        n = 40 * SCALE
        s = load.run("127.0.0.1", f.port, requests=n, concurrency=CONCURRENCY)
        print("\n    %s: %s" % (mode, summary_text(s)))
        cut = sum(s["outcomes"].get(k, 0) for k in CUT)
        self.assertEqual(set(s["outcomes"]) - set(CUT) - {"200"}, set(), summary_text(s))
        self.assertEqual(cut, self.delta(bad, "faults"))
        self.assertEqual(s["outcomes"]["200"], n - cut)
        self.assertEqual(s["served_by"], {"good": n - cut})
        ejected_at = self.wait_ejected(f, "response cut short")
        self.assertGreaterEqual(cut, FAILURES)
        self.assert_out(f, bad)
        bad.heal()
        self.assert_back(f, bad, ejected_at)
        self.assert_baseline(f)

    def test_close_mid_body(self):
        self.cut_fault("close_mid_body")

    def test_reset_mid_body(self):
        self.cut_fault("reset_mid_body")

    def test_close_mid_chunk(self):
        self.cut_fault("close_mid_chunk")

    def test_drip_body_slower_than_body_idle(self):
        """A body byte every 800 ms with server_body_idle 500ms (and server 2s): the client's
        connection is cut about 500 ms after the head; "response timeout"."""
        bad, good, f = self.pair("drip_body", server="2s", body_idle="500ms", drip_ms=800)
        t0 = time.time()
        s = load.run("127.0.0.1", f.port, requests=24 * SCALE, concurrency=CONCURRENCY,
                     timeout=5)
        print("\n    %s" % summary_text(s))
        cut = sum(s["outcomes"].get(k, 0) for k in CUT)
        self.assertEqual(set(s["outcomes"]) - set(CUT) - {"200"}, set(), summary_text(s))
        self.assertEqual(cut, self.delta(bad, "faults"))
        self.assertNotIn("bad", s["served_by"])
        for k in CUT:
            self.assertLessEqual(s["max_latency"].get(k, 0), 0.5 + SLACK)
        ejected_at = self.wait_ejected(f, "response timeout")
        self.assertLessEqual(ejected_at - t0, 0.5 + SLACK)
        self.assert_out(f, bad)
        bad.heal()
        self.assert_back(f, bad, ejected_at)
        self.assert_baseline(f)

    def test_drip_body_faster_than_body_idle(self):
        """A body byte every 200 ms with server_body_idle 500ms: every response completes,
        though each takes longer than timeouts.server (1s), and nothing counts as a
        failure."""
        bad, good, f = self.pair("drip_body", body_idle="500ms", drip_ms=200, drip_bytes=6)
        s = load.run("127.0.0.1", f.port, requests=8, concurrency=8, timeout=5)
        print("\n    %s" % summary_text(s))
        self.assertEqual(s["outcomes"], {"200": 8}, summary_text(s))
        self.assertEqual(s["served_by"].get("bad"), self.delta(bad, "answered"))
        self.assertGreater(s["served_by"].get("bad", 0), 0)
        self.assertGreater(s["max_latency"]["200"], SERVER_S)
        self.assertNotIn("EJECTED", f.log()[self.mark:])
        self.assert_baseline(f)

    @unittest.skipUnless(LONG, "FULCRUM_FAULTS_LONG=1 (make test-faults-long)")
    def test_repeated_fault_cycles(self):
        """Every fault in turn, three rounds: ejected each time, back each time (each
        ejection lasts longer: ejection_time x n), resources flat at the end."""
        passive = ("    passive:\n      consecutive_failures: %d\n      ejection_time: 500ms\n"
                   "      max_ejection_time: 2s\n" % FAILURES)
        bad, good, f = self.pair("ok", passive=passive, body_idle="500ms", drip_ms=250)
        modes = ["no_read", "no_answer", "garbage", "close_before", "close_mid_body",
                 "reset_mid_body", "close_mid_chunk", "drip_head"]
        for round_ in range(3):
            for mode in modes:
                mark = len(f.log())
                bad.set_mode(mode)
                s = load.run("127.0.0.1", f.port, requests=30, concurrency=CONCURRENCY,
                             timeout=SERVER_S + 3)
                self.assertNotIn("timeout", s["outcomes"], summary_text(s))
                wait_log(f, r"server bad: UP -> EJECTED", after=mark, timeout=3)
                bad.heal()
                # Back once the ejection is over; requests that were still in flight to it may
                # fail after that and eject it once more, so wait for it to serve again.
                wait_for(lambda: self.server_state(f, "bad") == "up" and load.run(
                    "127.0.0.1", f.port, requests=4, concurrency=1)["served_by"].get("bad"),
                    timeout=10, what="the healed server to serve again after %s" % mode)
            print("\n    round %d: RSS %d KiB, fds %d" % (round_, rss_kib(f.pid),
                                                         fd_count(f.pid)))
        self.assert_baseline(f)


# ---- a client that goes away ----

class ClientAbortTest(FaultTestCase):
    """A client closes (or resets) while fulcrum waits for a slow server: the backend request
    is aborted and its connection closed within about a second, nothing stays in CLOSE-WAIT,
    and the access log says 499 client_abort. With ignore_client_abort, the backend request
    runs to completion instead."""

    def setUp(self):
        super().setUp()
        fd, self.log_path = tempfile.mkstemp(prefix="fulcrum-faults-", suffix=".log")
        os.close(fd)

    def tearDown(self):
        super().tearDown()
        os.unlink(self.log_path)

    def single(self, bad, pool_extra=""):
        admin = free_port()
        passive = "    passive:\n      consecutive_failures: 0\n"
        return self.start(fault_config([("slow", bad.address)], admin, threads=1,
                                       server="10s", passive=passive, pool_extra=pool_extra,
                                       access_log=self.log_path), admin)

    def log_line(self, target):
        def find():
            with open(self.log_path) as fh:
                for line in fh:
                    try:
                        entry = json.loads(line)
                    except ValueError:
                        continue
                    if entry.get("target") == target:
                        return entry
            return None
        return wait_for(find, timeout=5, what="an access log line for %s" % target)

    def test_abort_while_waiting_for_the_head(self):
        bad = self.bad("no_answer", name="slow")
        f = self.single(bad)
        for i, how in enumerate(("close", "reset")):
            target = "/abort-%s" % how
            c = connect(f.port)
            client_port = c.getsockname()[1]
            c.sendall(b"GET %s HTTP/1.1\r\nHost: h\r\n\r\n" % target.encode())
            wait_for(lambda: bad.get("requests") == i + 1, timeout=5, what="the request")
            self.assertEqual(bad.get("open"), 1)
            if how == "reset":
                c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            c.close()
            t0 = time.monotonic()
            wait_for(lambda: bad.get("open") == 0, timeout=1 + SLACK,
                     what="fulcrum to close the backend connection after the client's %s" % how)
            took = time.monotonic() - t0
            socks = connected_sockets(f.pid)
            self.assertEqual([s for s in socks if s["state"] == "CLOSE_WAIT"], [], socks)
            self.assertEqual([s for s in socks if s["remote_port"] in (bad.port, client_port)],
                             [], socks)
            entry = self.log_line(target)
            print("\n    client %s: backend connection closed after %.3fs; log: status %s, "
                  "termination %s" % (how, took, entry.get("status"), entry.get("termination")))
            self.assertEqual(entry.get("status"), 499, entry)
            self.assertEqual(entry.get("termination"), "client_abort", entry)
        self.assertEqual(bad.get("accepted"), 2)
        self.assert_baseline_fds(f)

    def assert_baseline_fds(self, f):
        wait_for(lambda: fd_count(f.pid) == f.fd_base, timeout=10,
                 what="fulcrum's descriptors back to %d (now %d)" % (f.fd_base,
                                                                   fd_count(f.pid)))

    def test_abort_while_the_request_body_is_in_flight(self):
        bad = self.bad("no_answer", name="slow")
        f = self.single(bad)
        c = connect(f.port)
        head = b"POST /abort-body HTTP/1.1\r\nHost: h\r\nContent-Length: 100000\r\n\r\n"
        c.sendall(head + b"x" * 1000)
        wait_for(lambda: bad.get("received") >= 1000 + len(head), timeout=5,
                 what="the head and part of the body at the server")
        c.close()
        wait_for(lambda: bad.get("open") == 0, timeout=1 + SLACK,
                 what="fulcrum to close the backend connection")
        self.assertEqual([s for s in connected_sockets(f.pid)], [])
        entry = self.log_line("/abort-body")
        print("\n    log: status %s, termination %s" % (entry.get("status"),
                                                       entry.get("termination")))
        self.assertEqual(entry.get("termination"), "client_abort", entry)
        self.assertEqual(entry.get("status"), 499, entry)
        self.assertEqual(bad.get("requests"), 0)  # it never got the whole request
        self.assert_baseline_fds(f)

    def test_ignore_client_abort(self):
        bad = self.bad("slow", name="slow", delay_ms=1500)
        f = self.single(bad, pool_extra="    ignore_client_abort: true\n")
        c = connect(f.port)
        c.sendall(b"GET /ignored-abort HTTP/1.1\r\nHost: h\r\n\r\n")
        wait_for(lambda: bad.get("requests") == 1, timeout=5, what="the request")
        c.close()
        wait_for(lambda: bad.get("answered") == 1, timeout=1.5 + 1 + SLACK,
                 what="the backend to answer")
        # fulcrum kept the backend connection until the server had answered
        self.assertEqual(bad.get("peer_gone_before_answer"), 0)
        wait_for(lambda: not [s for s in connected_sockets(f.pid)
                              if s["state"] == "CLOSE_WAIT"], timeout=2,
                 what="no CLOSE-WAIT socket left")
        entry = self.log_line("/ignored-abort")
        print("\n    log: status %s, termination %s" % (entry.get("status"),
                                                       entry.get("termination")))
        self.assert_baseline_fds(f)


# ---- a link between fulcrum and one server ----

class NsFulcrum(Fulcrum):
    """fulcrum inside a network namespace (`ip netns exec` execs it: same pid)."""

    def __init__(self, link, side, text):
        self.port = 8080
        fd, self.config_path = tempfile.mkstemp(prefix="fulcrum-e2e-", suffix=".yaml")
        with os.fdopen(fd, "w") as fh:
            fh.write(text.replace("{port}", str(self.port)))
        Process.__init__(self, link.argv(side, [FULCRUM, "-c", self.config_path]), "fulcrum")


class LinkFaultTest(FaultTestCase):
    """fulcrum, the load and a healthy server (good, 127.0.0.1:8001) in namespace a; one
    server (remote, on 10.253.X.2:8001) in namespace b, behind the emulated link. Active
    checks every 500ms (fast 200ms, down 500ms, timeout 400ms, rise 2, fall 2), passive
    detection off, timeouts.connect 500ms."""

    link = None

    @classmethod
    def setUpClass(cls):
        reason = NetnsLink.usable()
        if reason:
            raise unittest.SkipTest(reason)
        try:
            cls.link = NetnsLink().start()
        except Unavailable as e:
            raise unittest.SkipTest("network namespaces or TUN unusable: %s" % e)

    @classmethod
    def tearDownClass(cls):
        if cls.link:
            cls.link.close()
            cls.link = None

    def setUp(self):
        super().setUp()
        self.link.reset()

    def tearDown(self):
        super().tearDown()
        self.link.reset()

    def ns(self, side, module, *args, timeout=30):
        r = subprocess.run(self.link.argv(side, [sys.executable, "-m", module] + list(args)),
                           capture_output=True, text=True, timeout=timeout,
                           env=dict(os.environ, PYTHONPATH=HERE))
        try:
            return json.loads(r.stdout)
        except ValueError:
            raise AssertionError("%s in namespace %s: %s %s" % (module, side, r.stdout,
                                                               r.stderr))

    def ns_load(self, requests, concurrency=4, timeout=5, deadline=60):
        return self.ns("a", "faults.load", "--port", "8080", "--requests", str(requests),
                       "--concurrency", str(concurrency), "--timeout", str(timeout),
                       "--deadline", str(deadline), timeout=deadline + timeout + 10)

    def ns_load_start(self, requests, concurrency=4, timeout=5, deadline=60):
        return subprocess.Popen(
            self.link.argv("a", [sys.executable, "-m", "faults.load", "--port", "8080",
                                 "--requests", str(requests), "--concurrency",
                                 str(concurrency), "--timeout", str(timeout), "--deadline",
                                 str(deadline)]),
            stdout=subprocess.PIPE, text=True, env=dict(os.environ, PYTHONPATH=HERE))

    def ns_state(self, name):
        r = self.ns("a", "faults.nsget", "127.0.0.1:9900", "/api/pools/app/servers/" + name)
        return json.loads(r["body"])["state"] if r.get("status") == 200 else None

    def setup_link(self, check=None, passive=None):
        remote = "%s:8001" % self.link.addr["b"]
        self.processes.append(Process(self.link.argv(
            "b", [BACKEND, "--listen", remote, "--name", "remote", "--quiet"]), "remote"))
        self.processes.append(Process(self.link.argv(
            "a", [BACKEND, "--listen", "127.0.0.1:8001", "--name", "good", "--quiet"]),
            "good"))
        for address in (remote, "127.0.0.1:8001"):
            r = self.ns("a", "faults.nsget", "--wait", "5", address)
            self.assertIn("status", r, "%s not reachable from namespace a: %s" % (address, r))
        text = fault_config(
            [("remote", remote), ("good", "127.0.0.1:8001")], 9900, server="2s",
            passive=passive or "    passive:\n      consecutive_failures: 0\n",
            health=check or health_conf(fast="200ms", down="500ms"))
        f = NsFulcrum(self.link, "a", text)
        self.processes.append(f)
        r = self.ns("a", "faults.nsget", "--wait", "5", "127.0.0.1:9900", "/api/state")
        self.assertEqual(r.get("status"), 200, "fulcrum did not start: %s\n%s" % (r, f.log()))
        f.admin_port = None
        f.fd_base = lasting_fd_count(f.pid)
        s = self.ns_load(40, concurrency=CONCURRENCY)
        self.assertEqual(s["outcomes"], {"200": 40}, summary_text(s))
        self.assertEqual(set(s["served_by"]), {"remote", "good"}, summary_text(s))
        f.rss_base = rss_kib(f.pid)
        return f

    def server_state(self, f, name):
        return self.ns_state(name)

    def ns_retries(self):
        r = self.ns("a", "faults.nsget", "127.0.0.1:9900", "/metrics")
        m = re.search(r'^fulcrum_retries_total\{pool="app"\} (\d+)', r.get("body", ""), re.M)
        self.assertTrue(m, "no fulcrum_retries_total in /metrics: %s" % r)
        return int(m.group(1))

    def test_delay(self):
        """50 ms each way: every request gets 200, the remote server's take at least one
        round trip (100 ms), and it stays up."""
        f = self.setup_link()
        self.link.set("both", delay_ms=50)
        s = self.ns_load(40 * SCALE, concurrency=4)
        print("\n    %s" % summary_text(s))
        self.assertEqual(s["outcomes"], {"200": 40 * SCALE}, summary_text(s))
        remote = [r[2] for r in s["results"] if r[1] == "remote"]
        self.assertGreater(len(remote), 5)
        self.assertGreaterEqual(min(remote), 0.095)
        self.assertNotIn("remote: UP ->", f.log())
        self.link.reset()
        self.assert_baseline(f)

    def test_blackhole(self):
        """Everything to and from the remote server dropped: connects time out (500ms), GETs
        go to the good server (200 for every request), checks mark it DOWN within interval +
        (fall-1) x fast_interval + fall x timeout; once lifted, it is UP again within
        down_interval + (rise-1) x fast_interval + timeout (the check under way when the link
        comes back still times out: its SYN was lost, and TCP resends it only after 1 s)."""
        f = self.setup_link()
        # no pooled connection to the remote server is left (server_idle 500ms): every
        # request to it needs a new connection, which the blackhole makes time out
        wait_for(lambda: fd_count(f.pid) == f.fd_base, timeout=10, what="idle connections gone")
        retries = self.ns_retries()
        mark = len(f.log())
        self.link.set("both", blackhole=True)
        t0 = time.time()
        n = 40 * SCALE
        loader = self.ns_load_start(n, concurrency=CONCURRENCY, timeout=5)
        try:
            _, down_at = wait_log(f, r"server remote: UP -> DOWN", after=mark, timeout=5)
        finally:
            out, _ = loader.communicate(timeout=60)
        s = json.loads(out)
        print("\n    %s" % summary_text(s))
        self.assertEqual(s["outcomes"], {"200": n}, summary_text(s))
        self.assertEqual(set(s["served_by"]), {"good"})
        # some went to the remote server first: their connect timed out, and they were retried
        self.assertGreaterEqual(s["max_latency"]["200"], 0.45, summary_text(s))
        self.assertGreater(self.ns_retries(), retries)
        # interval + (fall-1) x fast_interval + fall x timeout: here every check takes its
        # whole timeout to fail, and each wait is counted from the end of the previous check
        leave = 0.5 + 1 * 0.2 + 2 * 0.4
        print("    DOWN after %.3fs (bound %.1fs)" % (down_at - t0, leave))
        self.assertLessEqual(down_at - t0, leave + SLACK)
        self.assertEqual(self.ns_state("remote"), "down")
        self.link.set("both", blackhole=False)
        t1 = time.time()
        _, up_at = wait_log(f, r"server remote: DOWN -> UP", after=mark, timeout=5)
        back = 0.5 + 1 * 0.2 + 0.4
        print("    UP after %.3fs (bound %.1fs)" % (up_at - t1, back))
        self.assertLessEqual(up_at - t1, back + SLACK)
        s = self.ns_load(20, concurrency=4)
        self.assertEqual(s["outcomes"], {"200": 20}, summary_text(s))
        self.assertIn("remote", s["served_by"])
        self.assert_baseline(f)

    def test_loss(self):
        """30% of packets lost both ways: TCP retransmits, requests still complete; a request
        may get 504 when a timeout explains it, nothing else."""
        f = self.setup_link(check=health_conf(interval="500ms", timeout="1s", rise=2, fall=3),
                            passive=("    passive:\n      consecutive_failures: 3\n"
                                     "      ejection_time: 2s\n"))
        self.link.set("both", loss=0.3)
        n = 40 * SCALE
        s = self.ns_load(n, concurrency=4, timeout=15, deadline=60)
        print("\n    %s" % summary_text(s))
        self.assertEqual(set(s["outcomes"]) - {"200", "504"}, set(), summary_text(s))
        self.assertGreaterEqual(s["outcomes"].get("200", 0), 0.8 * n, summary_text(s))
        self.link.reset()
        wait_for(lambda: self.ns_state("remote") == "up", timeout=15, what="remote up")
        self.assert_baseline(f)
