"""
harness.py - shared pieces of the end-to-end tests.

Every test starts the real binaries (build/fulcrum, build/fulcrum-backend) on loopback ports
chosen at run time, drives them with real clients (raw sockets, http.client, curl), and asserts on
what both the client and the backend saw. Nothing here sleeps in place of synchronisation: waits
poll for a condition with a deadline.

FULCRUM_BUILD selects the build directory (build-asan for the sanitizer run).
"""

import http.client
import json
import os
import re
import shutil
import signal as signals
import socket
import subprocess
import tempfile
import threading
import time
import unittest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILD = os.path.join(ROOT, os.environ.get("FULCRUM_BUILD", "build"))
FULCRUM = os.path.join(BUILD, "fulcrum")
BACKEND = os.path.join(BUILD, "fulcrum-backend")
SANITIZED = "asan" in os.path.basename(BUILD)


def free_port():
    """A port nothing listens on right now (the kernel's choice, so collisions are unlikely)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(condition, timeout=10.0, interval=0.01, what="condition"):
    """Polls condition() until it returns something true; fails after timeout seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("timed out after %.1fs waiting for %s" % (timeout, what))
        time.sleep(interval)


def port_open(port, host="127.0.0.1"):
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def metric_value(admin_port, name):
    """One sample of fulcrum's /metrics on the admin listener, by its name with labels
    ('fulcrum_client_connections{state="http2"}'), as an int; AssertionError if absent."""
    conn = http.client.HTTPConnection("127.0.0.1", admin_port, timeout=5)
    try:
        conn.request("GET", "/metrics")
        text = conn.getresponse().read().decode()
    finally:
        conn.close()
    for line in text.splitlines():
        if line.startswith(name + " "):
            return int(float(line.split()[1]))
    raise AssertionError("no metric %s" % name)


def fd_count(pid):
    return len(os.listdir("/proc/%d/fd" % pid))


class Process:
    """A child process whose output goes to a log file we can read at any time."""

    def __init__(self, argv, name, preexec=None):
        self.log_path = tempfile.mktemp(prefix="fulcrum-e2e-%s-" % name, suffix=".log")
        self.log_file = open(self.log_path, "wb")
        self.proc = subprocess.Popen(argv, stdout=self.log_file, stderr=subprocess.STDOUT,
                                     preexec_fn=preexec)
        self.pid = self.proc.pid

    def log(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def alive(self):
        return self.proc.poll() is None

    def signal(self, sig):
        if self.alive():
            self.proc.send_signal(sig)

    def wait(self, timeout=15):
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError("process %d did not exit within %ss" % (self.pid, timeout))

    def stop(self, sig=signals.SIGTERM, timeout=15):
        if self.alive():
            self.signal(sig)
        code = self.wait(timeout)
        self.log_file.close()
        return code

    def cleanup(self):
        if self.alive():
            self.proc.kill()
            self.proc.wait()
        self.log_file.close()
        try:
            os.unlink(self.log_path)
        except OSError:
            pass


class Backend(Process):
    """build/fulcrum-backend on a port of its own."""

    def __init__(self, name, port=None):
        self.name = name
        self.port = port or free_port()
        self.own_connections = 1  # the probe below
        self.own_requests = 0
        super().__init__([BACKEND, "--listen", "127.0.0.1:%d" % self.port, "--name", name],
                         "backend-" + name)
        wait_for(lambda: port_open(self.port) or not self.alive(), what="backend " + name)
        if not self.alive():
            raise AssertionError("backend %s did not start:\n%s" % (name, self.log()))

    @property
    def address(self):
        return "127.0.0.1:%d" % self.port

    def stats(self):
        """The backend's counters, minus the harness's own traffic (the start-up probe and the
        /stats calls, this one included), so tests compare them with what went through
        fulcrum. active_connections is left raw: it includes this call's connection."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
        conn.request("GET", "/stats")
        data = json.loads(conn.getresponse().read())
        conn.close()
        self.own_connections += 1
        self.own_requests += 1
        data["connections"] -= self.own_connections
        data["requests"] -= self.own_requests
        return data


class Fulcrum(Process):
    """build/fulcrum, from a YAML text (with {port} filled in) or from command-line flags."""

    def __init__(self, config=None, args=None, port=None, wait=True, preexec=None):
        self.port = port or free_port()
        self.config_path = None
        argv = [FULCRUM]
        if config is not None:
            fd, self.config_path = tempfile.mkstemp(prefix="fulcrum-e2e-", suffix=".yaml")
            with os.fdopen(fd, "w") as f:
                f.write(config.replace("{port}", str(self.port)))
            argv += ["-c", self.config_path]
        argv += args or []
        super().__init__(argv, "fulcrum", preexec)
        if wait:
            wait_for(lambda: port_open(self.port) or not self.alive(), what="fulcrum to listen")
            if not self.alive():
                raise AssertionError("fulcrum did not start:\n" + self.log())

    def cleanup(self):
        super().cleanup()
        if self.config_path:
            os.unlink(self.config_path)

    def sanitizer_report(self):
        text = self.log()
        if "ERROR: AddressSanitizer" in text or "runtime error:" in text or \
                "ERROR: LeakSanitizer" in text:
            return text
        return None


def config(servers, port_placeholder=True, threads=1, pool_extra="", extra="", balance=None):
    """A YAML config with one listener on {port} and one pool of (name, address, weight)."""
    lines = []
    for s in servers:
        name, address = s[0], s[1]
        weight = s[2] if len(s) > 2 else None
        item = "      - { name: %s, address: %s" % (name, address)
        if weight is not None:
            item += ", weight: %d" % weight
        lines.append(item + " }")
    return (
        "threads: %d\n"
        "listeners:\n"
        "  - name: web\n"
        "    bind: 127.0.0.1:{port}\n"
        "    pool: app\n"
        "pools:\n"
        "  - name: app\n"
        "%s%s"
        "    servers:\n"
        "%s\n"
        "%s" % (threads, ("    balance: %s\n" % balance) if balance else "", pool_extra,
                "\n".join(lines), extra))


# ---- a small HTTP/1.1 response reader for raw sockets ----

class Response:
    def __init__(self):
        self.status = None
        self.reason = None
        self.version = None
        self.headers = []  # (name, value) in order
        self.body = b""
        self.trailers = []
        self.interim = []  # statuses of 1xx responses before this one
        self.raw_head = b""
        self.complete = False  # the framing said the message ended (not cut short)

    def header(self, name, default=None):
        for n, v in self.headers:
            if n.lower() == name.lower():
                return v
        return default

    def header_all(self, name):
        return [v for n, v in self.headers if n.lower() == name.lower()]


class Reader:
    """Reads responses from a socket, keeping bytes that belong to the next one."""

    def __init__(self, sock):
        self.sock = sock
        self.buf = b""
        self.eof = False

    def _fill(self):
        if self.eof:
            return False
        try:
            data = self.sock.recv(65536)
        except ConnectionResetError:
            data = b""
            self.reset = True
        if not data:
            self.eof = True
            return False
        self.buf += data
        return True

    def _line(self):
        while b"\r\n" not in self.buf:
            if not self._fill():
                raise EOFError("connection closed in a head")
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def _take(self, n):
        while len(self.buf) < n:
            if not self._fill():
                raise EOFError("connection closed in a body")
        data, self.buf = self.buf[:n], self.buf[n:]
        return data

    def read_head(self, resp):
        line = self._line()
        head = line + b"\r\n"
        m = re.match(rb"^HTTP/(\d\.\d) (\d{3}) ?(.*)$", line)
        if not m:
            raise ValueError("bad status line %r" % line)
        resp.version = m.group(1).decode()
        resp.status = int(m.group(2))
        resp.reason = m.group(3).decode("latin-1")
        resp.headers = []
        while True:
            line = self._line()
            head += line + b"\r\n"
            if not line:
                break
            name, _, value = line.partition(b":")
            resp.headers.append((name.decode("latin-1"), value.strip().decode("latin-1")))
        resp.raw_head = head

    def read_response(self, method="GET"):
        """One final response (1xx are collected in .interim). Raises EOFError on a cut."""
        resp = Response()
        while True:
            self.read_head(resp)
            if 100 <= resp.status < 200:
                resp.interim.append(resp.status)
                continue
            break
        if method == "HEAD" or resp.status in (204, 304):
            resp.complete = True
            return resp
        te = resp.header("Transfer-Encoding")
        cl = resp.header("Content-Length")
        if te and "chunked" in te.lower():
            body = b""
            while True:
                size_line = self._line()
                size = int(size_line.split(b";")[0], 16)
                if size == 0:
                    break
                body += self._take(size)
                if self._take(2) != b"\r\n":
                    raise ValueError("bad chunk end")
            while True:
                line = self._line()
                if not line:
                    break
                n, _, v = line.partition(b":")
                resp.trailers.append((n.decode(), v.strip().decode()))
            resp.body = body
            resp.complete = True
        elif cl is not None:
            resp.body = self._take(int(cl))
            resp.complete = True
        else:
            while self._fill():
                pass
            resp.body, self.buf = self.buf, b""
            resp.complete = not getattr(self, "reset", False)
        return resp

    def closed(self, timeout=5.0):
        """True if the peer closes (EOF or reset) within timeout with no further bytes."""
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(1)
        except (ConnectionResetError, BrokenPipeError):
            return True
        except socket.timeout:
            return False
        return data == b""


def connect(port, timeout=10):
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def exchange(port, raw, method="GET", timeout=10):
    """Sends raw bytes on a new connection and reads one response."""
    with connect(port, timeout) as s:
        s.sendall(raw)
        r = Reader(s)
        return r.read_response(method)


def get(port, path="/", headers=None, method="GET", body=None, timeout=10):
    """One request over http.client; returns (status, headers dict (lower-case), body)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    conn.request(method, path, body=body, headers=headers or {})
    r = conn.getresponse()
    data = r.read()
    hdrs = {k.lower(): v for k, v in r.getheaders()}
    conn.close()
    return r.status, hdrs, data


def echo_headers(body):
    """Parses a backend echo body into (request line, [(name, value)], body bytes)."""
    head, _, rest = body.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    fields = []
    for line in lines[1:]:
        n, _, v = line.partition(b":")
        fields.append((n.decode("latin-1"), v.strip().decode("latin-1")))
    return lines[0].decode("latin-1"), fields, rest


def curl_available():
    return shutil.which("curl") is not None


class ScriptedBackend:
    """
    A raw TCP backend driven by a Python function, for response cases the demo backend cannot
    produce (broken framing, hop-by-hop fields, odd closes). handler(conn, request_bytes) is
    called for each request head received; it writes whatever it likes. Requests seen are kept.
    """

    def __init__(self, handler, read_body=True):
        self.handler = handler
        self.read_body = read_body
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.address = "127.0.0.1:%d" % self.port
        self.requests = []
        self.connections = 0
        self.lock = threading.Lock()
        self.stopping = False
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self):
        while not self.stopping:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with self.lock:
                self.connections += 1
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn):
        buf = b""
        try:
            while True:
                while b"\r\n\r\n" not in buf:
                    data = conn.recv(65536)
                    if not data:
                        return
                    buf += data
                head, _, buf = buf.partition(b"\r\n\r\n")
                request = head + b"\r\n\r\n"
                m = re.search(rb"(?im)^content-length:\s*(\d+)", head)
                if self.read_body and m:
                    n = int(m.group(1))
                    while len(buf) < n:
                        data = conn.recv(65536)
                        if not data:
                            return
                        buf += data
                    request += buf[:n]
                    buf = buf[n:]
                with self.lock:
                    self.requests.append(request)
                if self.handler(conn, request) == "close":
                    conn.close()
                    return
        except OSError:
            pass
        finally:
            try:
                conn.close()
            except OSError:
                pass

    def close(self):
        self.stopping = True
        self.sock.close()


class FulcrumTestCase(unittest.TestCase):
    """Cleans up every process a test started, and fails a test whose fulcrum crashed or
    reported a sanitizer error."""

    def setUp(self):
        self.processes = []
        self.scripted = []

    def backend(self, name, port=None):
        b = Backend(name, port)
        self.processes.append(b)
        return b

    def fulcrum(self, config=None, args=None, **kw):
        f = Fulcrum(config, args, **kw)
        self.processes.append(f)
        return f

    def scripted_backend(self, handler, **kw):
        b = ScriptedBackend(handler, **kw)
        self.scripted.append(b)
        return b

    def tearDown(self):
        problems = []
        for p in self.processes:
            if isinstance(p, Fulcrum):
                if not p.alive() and p.proc.returncode not in (0, None) and \
                        not getattr(p, "expected_exit", False):
                    problems.append("fulcrum exited with %s:\n%s" % (p.proc.returncode, p.log()))
                elif p.alive():
                    code = p.stop()
                    if code != 0:
                        problems.append("fulcrum stopped with %s:\n%s" % (code, p.log()))
                report = p.sanitizer_report()
                if report:
                    problems.append("sanitizer report:\n" + report)
        for p in self.processes:
            p.cleanup()
        for b in self.scripted:
            b.close()
        if problems:
            self.fail("\n".join(problems))


def served_by(port, n, path="/"):
    """Sends n GETs on one keep-alive connection; returns the X-Backend of each answer (all
    must be 200)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    seen = []
    try:
        for _ in range(n):
            conn.request("GET", path)
            r = conn.getresponse()
            r.read()
            assert r.status == 200, "status %d" % r.status
            seen.append(r.getheader("X-Backend"))
    finally:
        conn.close()
    return seen


class Load:
    """GET clients in threads, each on its own keep-alive connection (or a new connection per
    request, for every second client when mix_new is set), until stop(). Counts what they saw."""

    def __init__(self, port, clients=4, mix_new=False):
        self.port = port
        self.stopping = threading.Event()
        self.lock = threading.Lock()
        self.counts = {"ok": 0, "bad_status": 0, "errors": 0}
        self.served = {}
        self.threads = [threading.Thread(target=self._run, args=(not (mix_new and i % 2),))
                        for i in range(clients)]

    def _run(self, keep_alive):
        conn = None
        while not self.stopping.is_set():
            try:
                if conn is None:
                    conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
                conn.request("GET", "/")
                r = conn.getresponse()
                r.read()
                with self.lock:
                    if r.status == 200:
                        self.counts["ok"] += 1
                        name = r.getheader("X-Backend")
                        self.served[name] = self.served.get(name, 0) + 1
                    else:
                        self.counts["bad_status"] += 1
                if not keep_alive:
                    conn.close()
                    conn = None
            except (OSError, http.client.HTTPException) as e:
                with self.lock:
                    self.counts["errors"] += 1
                    self.counts.setdefault("first_error", repr(e))
                conn = None
        if conn:
            conn.close()

    def start(self):
        for t in self.threads:
            t.start()
        return self

    def stop(self):
        self.stopping.set()
        for t in self.threads:
            t.join()
        return self.counts
