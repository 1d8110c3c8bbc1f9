"""
test_accesslog.py - access log lines (JSON and combined) for a normal request, a 502 and a
client abort; reopening on SIGUSR1; the error log file.
"""
import json
import os
import re
import signal
import socket
import struct
import tempfile

from harness import FulcrumTestCase, Reader, config, connect, free_port, get, wait_for


class AccessLogTest(FulcrumTestCase):
    def setUp(self):
        super().setUp()
        self.dir = tempfile.mkdtemp(prefix="fulcrum-accesslog-")
        self.path = os.path.join(self.dir, "access.log")

    def tearDown(self):
        super().tearDown()
        for name in os.listdir(self.dir):
            os.unlink(os.path.join(self.dir, name))
        os.rmdir(self.dir)

    def lines(self, n, path=None):
        """Waits until the log holds n lines (the workers flush at least once a second)."""
        path = path or self.path

        def read():
            if not os.path.exists(path):
                return None
            with open(path) as fh:
                got = fh.read().splitlines()
            return got if len(got) >= n else None
        return wait_for(read, timeout=10, what="%d access log lines in %s" % (n, path))

    def start(self, servers, fmt="json"):
        extra = "access_log:\n  path: %s\n  format: %s\n" % (self.path, fmt)
        return self.fulcrum(config(servers, extra=extra))

    def test_json_fields(self):
        b = self.backend("b0")
        dead = "127.0.0.1:%d" % free_port()
        f = self.start([("s0", b.address)])
        get(f.port, "/ok?x=1", headers={"User-Agent": "test/1.0"})
        f2_port = f.port
        # a 502: the backend resets
        get(f2_port, "/?reset=1")
        # a client abort: the client gives up in the middle of a large download
        s = connect(f.port)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.sendall(b"GET /big?size=50000000 HTTP/1.1\r\nHost: h\r\n\r\n")
        s.recv(1000)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        s.close()  # a reset, as a browser's cancelled download often is
        lines = [json.loads(l) for l in self.lines(3)]
        ok, bad, abort = lines[0], lines[1], lines[2]
        for key in ("time", "client", "method", "target", "protocol", "status", "bytes_in",
                    "bytes_out", "pool", "server", "queue_ms", "connect_ms", "response_ms",
                    "total_ms", "retries", "termination"):
            self.assertIn(key, ok)
        self.assertRegex(ok["time"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
        self.assertEqual((ok["client"], ok["method"], ok["target"], ok["protocol"]),
                         ("127.0.0.1", "GET", "/ok?x=1", "HTTP/1.1"))
        self.assertEqual((ok["status"], ok["pool"], ok["server"], ok["termination"]),
                         (200, "app", "s0", "ok"))
        self.assertGreater(ok["bytes_in"], 30)
        self.assertGreater(ok["bytes_out"], 30)
        self.assertGreaterEqual(ok["total_ms"], ok["response_ms"])
        self.assertEqual(ok["retries"], 0)
        self.assertEqual((bad["status"], bad["termination"]), (502, "server_error"))
        self.assertEqual((abort["status"], abort["termination"], abort["target"]),
                         (200, "client_abort", "/big?size=50000000"))
        self.assertLess(abort["bytes_out"], 50000000)

    def test_combined_format(self):
        b = self.backend("b0")
        f = self.start([("s0", b.address)], fmt="combined")
        get(f.port, "/c", headers={"User-Agent": "agent \"q\"", "Referer": "http://r/"})
        line = self.lines(1)[0]
        self.assertRegex(line, r'^127\.0\.0\.1 - - \[\d\d/\w{3}/\d{4}:\d\d:\d\d:\d\d \+0000\] '
                               r'"GET /c HTTP/1\.1" 200 \d+ "http://r/" "agent \\x22q\\x22"$')

    def test_reopen_on_sigusr1(self):
        b = self.backend("b0")
        f = self.start([("s0", b.address)])
        get(f.port, "/before")
        self.lines(1)
        os.rename(self.path, self.path + ".1")  # what logrotate does
        get(f.port, "/still-old")  # lands in the renamed file, which is still open
        wait_for(lambda: "/still-old" in open(self.path + ".1").read(), what="old file")
        f.signal(signal.SIGUSR1)
        wait_for(lambda: "reopening the log files" in f.log(), what="SIGUSR1")

        def reopened():
            get(f.port, "/after")
            return os.path.exists(self.path) and "/after" in open(self.path).read()
        wait_for(reopened, timeout=10, interval=0.3, what="a new file with the next lines")
        self.assertNotIn("/after", open(self.path + ".1").read())

    def test_error_log_file(self):
        b = self.backend("b0")
        errlog = os.path.join(self.dir, "error.log")
        f = self.fulcrum(config([("s0", b.address)], extra="error_log: %s\n" % errlog))
        wait_for(lambda: os.path.exists(errlog) and "started" in open(errlog).read(),
                 what="start-up lines in the error log")
        os.rename(errlog, errlog + ".1")
        f.signal(signal.SIGUSR1)
        wait_for(lambda: os.path.exists(errlog), what="the error log to be opened again")
        f.signal(signal.SIGHUP)
        wait_for(lambda: "configuration reloaded" in open(errlog).read(),
                 what="the reload line in the new file")
        self.assertNotIn("configuration reloaded", open(errlog + ".1").read())
