"""
test_accesslog_exact.py - the access log writes every request exactly once: under concurrent load,
through an idle period afterwards (a recycled buffer once wrote old lines again, once a second,
forever), in both formats, across a SIGUSR1 reopen and across a reload. Lines are dropped, and
counted in fulcrum_access_log_dropped_total, only when the writer really cannot keep up: a FIFO
that nobody reads stands in for a stuck disk.

Each request carries a unique target (/?id=N), so a repeated line and a lost one are both seen.
"""
import collections
import fcntl
import http.client
import json
import os
import re
import signal
import tempfile
import threading
import time
import urllib.request

from harness import FulcrumTestCase, config, free_port, get, port_open, wait_for

# The workers hand their buffers to the writer at least once a second; an idle period of this
# long sees at least two such rounds.
IDLE_SECONDS = 2.5
F_SETPIPE_SZ = 1031


def send_requests(port, ids, clients=8):
    """GET /?id=N for every N in ids, over `clients` keep-alive connections in parallel. Returns
    the statuses seen, by id."""
    statuses = {}
    lock = threading.Lock()
    chunks = [ids[i::clients] for i in range(clients)]

    def run(mine):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
        for n in mine:
            conn.request("GET", "/?id=%d" % n)
            r = conn.getresponse()
            r.read()
            with lock:
                statuses[n] = r.status
        conn.close()
    threads = [threading.Thread(target=run, args=(c,)) for c in chunks]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return statuses


ID_RE = re.compile(r"/\?id=(\d+)")


def ids_in(lines):
    """Counts of each request id found in the lines."""
    found = collections.Counter()
    for line in lines:
        m = ID_RE.search(line)
        if m:
            found[int(m.group(1))] += 1
    return found


def read_lines(*paths):
    out = []
    for p in paths:
        if os.path.exists(p):
            with open(p, errors="replace") as fh:
                out += fh.read().splitlines()
    return out


def metric(admin_port, name):
    with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % admin_port, timeout=5) as r:
        text = r.read().decode()
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError("metric %s not found" % name)


class AccessLogExactTest(FulcrumTestCase):
    def setUp(self):
        super().setUp()
        self.dir = tempfile.mkdtemp(prefix="fulcrum-accesslog-exact-")
        self.path = os.path.join(self.dir, "access.log")
        self.admin_port = free_port()

    def tearDown(self):
        super().tearDown()
        for name in os.listdir(self.dir):
            os.unlink(os.path.join(self.dir, name))
        os.rmdir(self.dir)

    def conf(self, backend, fmt="json", threads=2, path=None, backlog=None):
        extra = "access_log:\n  path: %s\n  format: %s\n" % (path or self.path, fmt)
        if backlog:
            extra += "  max_backlog: %s\n" % backlog
        extra += "admin:\n  bind: 127.0.0.1:%d\n" % self.admin_port
        return config([("s0", backend.address)], threads=threads, extra=extra)

    def start(self, backend, **kw):
        f = self.fulcrum(self.conf(backend, **kw))
        wait_for(lambda: port_open(self.admin_port), what="admin listener")
        return f

    def assert_exactly_once(self, ids, *paths):
        """Waits until every id is logged, then idles and checks nothing was added or repeated."""
        want = set(ids)
        wait_for(lambda: set(ids_in(read_lines(*paths))) >= want, timeout=20,
                 what="%d requests in the access log" % len(want))
        time.sleep(IDLE_SECONDS)  # the idle period is the scenario: lines must not come back
        lines = read_lines(*paths)
        found = ids_in(lines)
        repeated = {n: c for n, c in found.items() if c != 1}
        self.assertEqual(repeated, {}, "ids logged more than once")
        self.assertEqual(set(found), want)
        self.assertEqual(len(lines), len(want), "lines without a request id, or extra lines")
        self.assertEqual(len(set(lines)), len(lines), "identical lines")
        self.assertEqual(metric(self.admin_port, "fulcrum_access_log_dropped_total"), 0)

    def test_two_requests_then_idle(self):
        """The field report: two requests 1.5 s apart, then idle; the log grew a line a second."""
        b = self.backend("b0")
        f = self.start(b, threads=1)
        get(f.port, "/?id=1")
        time.sleep(1.5)  # part of the scenario: the first line is handed off before the second
        get(f.port, "/?id=2")
        self.assert_exactly_once([1, 2], self.path)

    def check_load(self, fmt, n):
        b = self.backend("b0")
        f = self.start(b, fmt=fmt)
        ids = list(range(n))
        statuses = send_requests(f.port, ids)
        self.assertEqual(collections.Counter(statuses.values()), {200: n})
        self.assert_exactly_once(ids, self.path)
        if fmt == "json":
            for line in read_lines(self.path):
                self.assertEqual(json.loads(line)["status"], 200)
        else:
            for line in read_lines(self.path):
                self.assertRegex(line, r'"GET /\?id=\d+ HTTP/1.1" 200 ')
        return f

    def test_load_json(self):
        self.check_load("json", 3000)

    def test_load_combined(self):
        self.check_load("combined", 1500)

    def test_across_sigusr1_reopen(self):
        b = self.backend("b0")
        f = self.start(b)
        first = list(range(0, 500))
        send_requests(f.port, first)
        wait_for(lambda: set(ids_in(read_lines(self.path))) >= set(first), timeout=20,
                 what="the first batch in the log")
        os.rename(self.path, self.path + ".1")
        f.signal(signal.SIGUSR1)
        wait_for(lambda: os.path.exists(self.path), what="the reopened file")
        second = list(range(500, 1000))
        send_requests(f.port, second)
        self.assert_exactly_once(first + second, self.path + ".1", self.path)
        self.assertEqual(set(ids_in(read_lines(self.path))) & set(first), set(),
                         "lines written before the reopen appear in the new file")

    def test_across_reload(self):
        b = self.backend("b0")
        f = self.start(b)
        first = list(range(0, 500))
        send_requests(f.port, first)
        # The reload changes the format: lines after it are combined, none is lost or repeated.
        before = f.log().count("configuration reloaded")
        with open(f.config_path, "w") as fh:
            fh.write(self.conf(b, fmt="combined").replace("{port}", str(f.port)))
        f.signal(signal.SIGHUP)
        wait_for(lambda: f.log().count("configuration reloaded") > before, what="the reload")
        second = list(range(500, 1000))
        send_requests(f.port, second)
        self.assert_exactly_once(first + second, self.path)
        combined = [l for l in read_lines(self.path) if not l.startswith("{")]
        self.assertEqual(set(ids_in(combined)), set(second))

    def test_slow_writer_drops_are_counted(self):
        """A FIFO nobody reads: the writer blocks, the backlog (64 KiB) fills, and later lines are
        dropped and counted. Once the FIFO is read, every line that was not dropped arrives,
        once: logged + dropped == requests sent."""
        fifo = os.path.join(self.dir, "fifo")
        os.mkfifo(fifo)
        # A reader that reads nothing yet, so fulcrum's open() does not wait; a small pipe makes
        # the writer block sooner.
        rfd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
        try:
            fcntl.fcntl(rfd, F_SETPIPE_SZ, 4096)
            b = self.backend("b0")
            f = self.start(b, threads=1, path=fifo, backlog="64k")
            n = 3000
            ids = list(range(n))
            statuses = send_requests(f.port, ids, clients=4)
            self.assertEqual(collections.Counter(statuses.values()), {200: n})
            wait_for(lambda: metric(self.admin_port, "fulcrum_access_log_dropped_total") > 0,
                     timeout=10, what="dropped lines to be counted")
            # Now read everything that reaches the FIFO until the writer has been idle a while.
            data = b""
            quiet_since = time.monotonic()
            deadline = time.monotonic() + 30
            while time.monotonic() - quiet_since < IDLE_SECONDS and time.monotonic() < deadline:
                try:
                    chunk = os.read(rfd, 65536)
                except BlockingIOError:
                    chunk = b""
                if chunk:
                    data += chunk
                    quiet_since = time.monotonic()
                else:
                    time.sleep(0.05)
            lines = data.decode(errors="replace").splitlines()
            found = ids_in(lines)
            dropped = metric(self.admin_port, "fulcrum_access_log_dropped_total")
            self.assertEqual({k: c for k, c in found.items() if c != 1}, {})
            self.assertEqual(len(lines), len(found))
            self.assertGreater(dropped, 0)
            self.assertGreater(len(found), 0)
            self.assertEqual(len(found) + dropped, n)
        finally:
            os.close(rfd)
