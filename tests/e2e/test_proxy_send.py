"""
test_proxy_send.py - pools that send the PROXY protocol to their servers (pools[].proxy_protocol:
v1 | v2), against real receivers: Debian's nginx (`listen ... proxy_protocol`, which logs
$proxy_protocol_addr) and Debian's HAProxy (`bind ... accept-proxy`, answering with the %[src]
and %[dst] it took from the header), plus small Python servers where the exact bytes on the wire
matter (health checks, and the header's place before a TLS handshake).

Clients connect from 127.0.0.2 and 127.0.0.3, so an address the server reports can only be the
client's if the header carried it: fulcrum itself connects from 127.0.0.1.
"""
import json
import os
import re
import shutil
import socket
import ssl
import struct
import tempfile
import threading
import urllib.request

from harness import FulcrumTestCase, Process, Reader, free_port, port_open, wait_for
from tlspki import make_pki

V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
V1_LOCAL = b"PROXY UNKNOWN\r\n"
V2_LOCAL = V2_SIGNATURE + b"\x20\x00\x00\x00"  # version 2, LOCAL, UNSPEC, no address block


def client(port, source):
    """A keep-alive client connection to fulcrum from the loopback address source."""
    s = socket.socket()
    s.bind((source, 0))
    s.settimeout(10)
    s.connect(("127.0.0.1", port))
    return s


def request(sock, path="/"):
    """One GET on a keep-alive connection; returns the response body as text."""
    sock.sendall(b"GET %s HTTP/1.1\r\nHost: test\r\n\r\n" % path.encode())
    r = Reader(sock).read_response()
    if r.status != 200:
        raise AssertionError("status %s: %r" % (r.status, r.body))
    return r.body.decode()


def pool_yaml(name, address, proxy, extra=""):
    return ("  - name: %s\n    retries: 0\n%s%s"
            "    servers: [{name: %s-s0, address: %s}]\n" %
            (name, "    proxy_protocol: %s\n" % proxy if proxy else "", extra, name, address))


def fulcrum_yaml(pools, listener_extra="", admin_port=None):
    """One listener per pool (the first on {port}, the others on ports of their own); returns
    (yaml, {pool name: listener port or None for the first})."""
    text = "threads: 1\nlisteners:\n"
    ports = {}
    for i, (name, _) in enumerate(pools):
        port = "{port}" if i == 0 else str(free_port())
        ports[name] = None if i == 0 else int(port)
        text += "  - name: l-%s\n    bind: 127.0.0.1:%s\n    pool: %s\n%s" % (
            name, port, name, listener_extra)
    text += "pools:\n" + "".join(p for _, p in pools)
    if admin_port:
        text += "admin:\n  bind: 127.0.0.1:%d\n" % admin_port
    return text, ports


def http_check(interval="100ms", kind="http"):
    return ("    health_check:\n      interval: %s\n      fast_interval: %s\n      timeout: 1s\n"
            "      rise: 1\n      fall: 1\n%s" %
            (interval, interval, "      type: tcp\n" if kind == "tcp" else ""))


def api_server(admin_port, pool, name):
    with urllib.request.urlopen("http://127.0.0.1:%d/api/state" % admin_port, timeout=5) as r:
        state = json.loads(r.read())
    p = [p for p in state["pools"] if p["name"] == pool][0]
    return [s for s in p["servers"] if s["name"] == name][0]


# ---- the real receivers ----

class Nginx(Process):
    """Debian's nginx as one foreground process (no master, so nothing outlives it), everything
    in a temporary directory, with a proxy_protocol listener that logs and answers the address
    and port the header named."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="fulcrum-e2e-nginx-")
        self.port = free_port()
        self.access_log = os.path.join(self.dir, "access.log")
        conf = os.path.join(self.dir, "nginx.conf")
        d = self.dir
        with open(conf, "w") as f:
            f.write("daemon off;\nmaster_process off;\npid %s/nginx.pid;\nerror_log stderr info;\n"
                    "events { worker_connections 64; }\n"
                    "http {\n"
                    "  log_format pp '$proxy_protocol_addr $proxy_protocol_port $remote_addr';\n"
                    "  access_log %s pp;\n"
                    "  client_body_temp_path %s/cb;\n  proxy_temp_path %s/px;\n"
                    "  fastcgi_temp_path %s/fc;\n  uwsgi_temp_path %s/uw;\n"
                    "  scgi_temp_path %s/sc;\n"
                    "  server {\n    listen 127.0.0.1:%d proxy_protocol;\n"
                    "    location / { default_type text/plain;\n"
                    "      return 200 '$proxy_protocol_addr $proxy_protocol_port\\n'; }\n"
                    "  }\n}\n" % (d, self.access_log, d, d, d, d, d, self.port))
        nginx = shutil.which("nginx") or "/usr/sbin/nginx"
        if not os.path.exists(nginx):
            raise AssertionError("nginx is not installed (scripts/install-deps test installs it)")
        super().__init__([nginx, "-p", d + "/", "-c", conf, "-e", "stderr"], "nginx")
        wait_for(lambda: port_open(self.port) or not self.alive(), what="nginx")
        if not self.alive():
            raise AssertionError("nginx did not start:\n" + self.log())

    @property
    def address(self):
        return "127.0.0.1:%d" % self.port

    def logged(self):
        try:
            with open(self.access_log) as f:
                return f.read().splitlines()
        except FileNotFoundError:
            return []

    def cleanup(self):
        super().cleanup()
        shutil.rmtree(self.dir, ignore_errors=True)


class Haproxy(Process):
    """Debian's HAProxy with an accept-proxy frontend that answers every request with the source
    and destination it took from the header: "src src_port dst dst_port"."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="fulcrum-e2e-haproxy-")
        self.port = free_port()
        cfg = os.path.join(self.dir, "haproxy.cfg")
        with open(cfg, "w") as f:
            f.write("global\n  log stderr format raw local0\n"
                    "defaults\n  mode http\n  timeout connect 5s\n  timeout client 5s\n"
                    "  timeout server 5s\n"
                    "frontend fe\n  bind 127.0.0.1:%d accept-proxy\n"
                    "  http-request return status 200 content-type text/plain "
                    "lf-string \"%%[src] %%[src_port] %%[dst] %%[dst_port]\\n\"\n" % self.port)
        haproxy = shutil.which("haproxy") or "/usr/sbin/haproxy"
        if not os.path.exists(haproxy):
            raise AssertionError("haproxy is not installed (scripts/install-deps test installs "
                                 "it)")
        super().__init__([haproxy, "-f", cfg, "-db"], "haproxy")
        wait_for(lambda: port_open(self.port) or not self.alive(), what="haproxy")
        if not self.alive():
            raise AssertionError("haproxy did not start:\n" + self.log())

    @property
    def address(self):
        return "127.0.0.1:%d" % self.port

    def cleanup(self):
        super().cleanup()
        shutil.rmtree(self.dir, ignore_errors=True)


def read_header(sock):
    """Reads exactly one PROXY header (v1 or v2) off sock, byte-exact, the way a receiver must:
    v1 up to its CRLF, v2 its 16 bytes and the length they announce. Returns (raw bytes, source
    "ip port" or None for UNKNOWN/LOCAL); raises ValueError for anything else."""
    first = sock.recv(6, socket.MSG_WAITALL)  # never past a header: TLS may follow at once
    if first == b"PROXY ":
        raw = first
        while not raw.endswith(b"\r\n"):
            if len(raw) > 107:
                raise ValueError("v1 line too long")
            b = sock.recv(1)
            if not b:
                raise ValueError("v1 line cut short")
            raw += b
        m = re.match(rb"PROXY TCP[46] (\S+) \S+ (\d+) \d+\r\n$", raw)
        if m:
            return raw, "%s %s" % (m.group(1).decode(), m.group(2).decode())
        if raw.startswith(V1_LOCAL[:-2]):
            return raw, None
        raise ValueError("bad v1 line %r" % raw)
    if len(first) == 6 and V2_SIGNATURE.startswith(first):
        first += sock.recv(10, socket.MSG_WAITALL)
    if len(first) == 16 and first.startswith(V2_SIGNATURE):
        length = struct.unpack("!H", first[14:16])[0]
        rest = sock.recv(length, socket.MSG_WAITALL) if length else b""
        if first[12] == 0x20:
            return first + rest, None
        if first[12] == 0x21 and first[13] == 0x11 and length >= 12:
            src = socket.inet_ntoa(rest[0:4])
            return first + rest, "%s %d" % (src, struct.unpack("!H", rest[8:10])[0])
        raise ValueError("unexpected v2 header %r" % (first + rest))
    raise ValueError("no PROXY header: %r" % first)


class LoopbackServer:
    """A listening socket on a free loopback port whose connections are each served by
    self._serve(conn) in a thread of their own; close() stops accepting."""

    def __init__(self):
        self.lock = threading.Lock()
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.address = "127.0.0.1:%d" % self.sock.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def close(self):
        self.sock.close()


class HeaderThenTls(LoopbackServer):
    """A TLS server that first reads a PROXY header in the clear (read_header), then wraps the
    socket and answers each request with the source the header named ("local" for none). Keeps
    the raw header of every connection; a connection without a valid header before the TLS
    handshake is closed and counted in refused."""

    def __init__(self, cert, key):
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(cert, key)
        self.headers = []
        self.refused = 0
        super().__init__()

    def _serve(self, raw):
        raw.settimeout(10)
        try:
            try:
                header, src = read_header(raw)
            except ValueError:
                with self.lock:
                    self.refused += 1
                return
            with self.lock:
                self.headers.append(header)
            conn = self.ctx.wrap_socket(raw, server_side=True)
            f = conn.makefile("rb")
            while True:
                line = f.readline()
                if not line:
                    return
                while f.readline() not in (b"\r\n", b""):
                    pass
                body = ("%s\n" % (src or "local")).encode()
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
        except (OSError, ssl.SSLError):
            pass
        finally:
            raw.close()


class FirstBytes(LoopbackServer):
    """Records every byte each connection sends until it closes (a TCP health check)."""

    def __init__(self):
        self.seen = []
        super().__init__()

    def _serve(self, c):
        c.settimeout(10)
        data = b""
        try:
            while True:
                d = c.recv(4096)
                if not d:
                    break
                data += d
        except OSError:
            pass
        c.close()
        with self.lock:
            self.seen.append(data)


class ProxySendCase(FulcrumTestCase):
    def setUp(self):
        super().setUp()
        self.closers = []

    def tearDown(self):
        for c in self.closers:
            c.close()
        super().tearDown()

    def nginx(self):
        n = Nginx()
        self.processes.append(n)
        return n

    def haproxy(self):
        h = Haproxy()
        self.processes.append(h)
        return h


class NginxTest(ProxySendCase):
    def test_nginx_logs_the_client_v1_and_v2(self):
        n = self.nginx()
        yaml, ports = fulcrum_yaml([("v1", pool_yaml("v1", n.address, "v1")),
                                    ("v2", pool_yaml("v2", n.address, "v2"))])
        f = self.fulcrum(yaml)
        for version, port in (("v1", f.port), ("v2", ports["v2"])):
            c = client(port, "127.0.0.2")
            cport = c.getsockname()[1]
            self.assertEqual(request(c), "127.0.0.2 %d\n" % cport, version)
            c.close()
            line = "127.0.0.2 %d 127.0.0.1" % cport  # $proxy_protocol_addr, _port, $remote_addr
            wait_for(lambda: line in n.logged(), what="nginx access log line for " + version)

    def test_health_check_passes_only_with_the_header(self):
        n = self.nginx()
        admin = free_port()
        yaml, _ = fulcrum_yaml([("v1", pool_yaml("v1", n.address, "v1", http_check())),
                                ("v2", pool_yaml("v2", n.address, "v2", http_check())),
                                ("none", pool_yaml("none", n.address, None, http_check()))],
                               admin_port=admin)
        f = self.fulcrum(yaml)
        wait_for(lambda: port_open(admin), what="admin listener")
        # without a header nginx drops the connection: the check fails and the server goes down
        wait_for(lambda: re.search(r"server none-s0: UP -> DOWN \(first check failed: (.*)\)",
                                   f.log()), what="the check without a header to fail")
        for pool in ("v1", "v2"):
            wait_for(lambda: api_server(admin, pool, pool + "-s0")["health"]["checks_passed"] >= 3,
                     what="three passing checks of " + pool)
            s = api_server(admin, pool, pool + "-s0")
            self.assertEqual(s["state"], "up", s)
            self.assertEqual(s["health"]["checks_failed"], 0, s)
            self.assertEqual(s["health"]["last_result"], "status 200", s)
        self.assertEqual(api_server(admin, "none", "none-s0")["state"], "down")
        # checks name no client: nginx logged them with the address it sees itself
        for line in n.logged():
            addr = line.split()[0]
            self.assertIn(addr, ("127.0.0.1", "-"), line)


class HaproxyTest(ProxySendCase):
    def test_haproxy_sees_the_client_v1_and_v2(self):
        h = self.haproxy()
        yaml, ports = fulcrum_yaml([("v1", pool_yaml("v1", h.address, "v1")),
                                    ("v2", pool_yaml("v2", h.address, "v2"))])
        f = self.fulcrum(yaml)
        for version, port in (("v1", f.port), ("v2", ports["v2"])):
            c = client(port, "127.0.0.2")
            cport = c.getsockname()[1]
            # source: the client; destination: the address the client connected to
            self.assertEqual(request(c), "127.0.0.2 %d 127.0.0.1 %d\n" % (cport, port), version)
            c.close()

    def test_destination_from_a_received_header(self):
        # a balancer in front sends fulcrum a header; the one fulcrum sends on repeats both ends
        h = self.haproxy()
        yaml, _ = fulcrum_yaml([("app", pool_yaml("app", h.address, "v2"))],
                               listener_extra="    proxy_protocol: { accept: true, trusted: "
                                              "[127.0.0.0/8] }\n")
        f = self.fulcrum(yaml)
        c = client(f.port, "127.0.0.2")
        c.sendall(b"PROXY TCP4 192.0.2.9 203.0.113.7 5555 8443\r\n")
        self.assertEqual(request(c), "192.0.2.9 5555 203.0.113.7 8443\n")
        c.close()
        c = client(f.port, "127.0.0.2")  # UNKNOWN: the connection's own addresses
        c.sendall(b"PROXY UNKNOWN\r\n")
        self.assertEqual(request(c), "127.0.0.2 %d 127.0.0.1 %d\n" % (c.getsockname()[1], f.port))
        c.close()

    def test_keep_alive_clients_never_share_a_connection(self):
        h = self.haproxy()
        yaml, _ = fulcrum_yaml([("app", pool_yaml("app", h.address, "v1"))])
        f = self.fulcrum(yaml)
        a, b = client(f.port, "127.0.0.2"), client(f.port, "127.0.0.3")
        # interleaved on one worker thread: a shared idle connection would hand a's to b
        for i in range(5):
            for c, source in ((a, "127.0.0.2"), (b, "127.0.0.3")):
                self.assertEqual(request(c).split()[0], source, "round %d" % i)
        a.close()
        b.close()

    def test_health_checks_send_local(self):
        h = self.haproxy()
        raw = FirstBytes()
        self.closers.append(raw)
        admin = free_port()
        # an HTTP check through HAProxy accept-proxy (v2 LOCAL), a TCP check seen byte for byte
        yaml, _ = fulcrum_yaml([("http", pool_yaml("http", h.address, "v2", http_check())),
                                ("tcp1", pool_yaml("tcp1", raw.address, "v1",
                                                   http_check(kind="tcp"))),
                                ("tcp2", pool_yaml("tcp2", raw.address, "v2",
                                                   http_check(kind="tcp")))],
                               admin_port=admin)
        self.fulcrum(yaml)
        wait_for(lambda: port_open(admin), what="admin listener")
        wait_for(lambda: api_server(admin, "http", "http-s0")["health"]["checks_passed"] >= 3,
                 what="three passing checks through HAProxy")
        s = api_server(admin, "http", "http-s0")
        self.assertEqual((s["state"], s["health"]["checks_failed"]), ("up", 0), s)
        wait_for(lambda: V1_LOCAL in raw.seen and V2_LOCAL in raw.seen, what="both TCP checks")
        self.assertEqual(set(raw.seen), {V1_LOCAL, V2_LOCAL})  # the header and nothing else
        for pool in ("tcp1", "tcp2"):
            s = api_server(admin, pool, pool + "-s0")
            self.assertEqual(s["state"], "up", s)
            self.assertEqual(s["health"]["last_result"], "connected, PROXY header sent", s)


class TlsTest(ProxySendCase):
    def test_header_before_the_tls_handshake(self):
        pki = make_pki(os.path.join(tempfile.gettempdir(), "fulcrum-e2e-pki"))
        server = HeaderThenTls(pki.backend, pki.backend_key)
        self.closers.append(server)
        admin = free_port()
        tls = "    tls:\n      ca: %s\n" % pki.root_ca
        yaml, ports = fulcrum_yaml(
            [("v1", pool_yaml("v1", server.address, "v1", tls)),
             ("v2", pool_yaml("v2", server.address, "v2", tls + http_check("200ms")))],
            admin_port=admin)
        f = self.fulcrum(yaml)
        for version, port in (("v1", f.port), ("v2", ports["v2"])):
            c = client(port, "127.0.0.3")
            cport = c.getsockname()[1]
            for _ in range(2):  # a new connection (header, handshake) for each request
                self.assertEqual(request(c), "127.0.0.3 %d\n" % cport, version)
            c.close()
        wait_for(lambda: port_open(admin), what="admin listener")
        wait_for(lambda: api_server(admin, "v2", "v2-s0")["health"]["checks_passed"] >= 2,
                 what="TLS health checks to pass")
        self.assertEqual(api_server(admin, "v2", "v2-s0")["state"], "up")
        self.assertIn(V2_LOCAL, server.headers)  # the checks' header, before their handshakes
        self.assertEqual(server.refused, 0)
