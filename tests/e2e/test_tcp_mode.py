"""
test_tcp_mode.py - listeners with `mode: tcp`: bytes relayed to a pool's server whatever they
carry. The real peers are redis-server (driven by redis-cli and redis-benchmark) and tcppeer.py
(an echo, hash or endless-stream server in a process of its own, so that it can be killed).

What is asserted is what each end saw: byte-exact streams (SHA-256) both ways, half-closes
passed on, a server killed mid-stream reaching the client as a reset, refused connects retried on
another server, TLS terminated in front, idle connections closed after timeouts.tunnel, drained
servers getting no new connections, max_connections holding TCP clients back; and what fulcrum
counted: one access log line per connection with its exact bytes, and the TCP metrics.
"""
import hashlib
import http.client
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import unittest

from harness import FulcrumTestCase, Process, free_port, port_open, wait_for
from tlspki import make_pki

HERE = os.path.dirname(os.path.abspath(__file__))
HAVE_REDIS = all(shutil.which(c) for c in ("redis-server", "redis-cli", "redis-benchmark"))


class Peer(Process):
    """tcppeer.py in MODE on a port of its own."""

    def __init__(self, mode, name=""):
        self.port = free_port()
        self.address = "127.0.0.1:%d" % self.port
        super().__init__([sys.executable, os.path.join(HERE, "tcppeer.py"), str(self.port), mode,
                          name], "tcppeer-" + mode)
        wait_for(lambda: port_open(self.port) or not self.alive(), what="tcppeer " + mode)
        if not self.alive():
            raise AssertionError("tcppeer did not start:\n" + self.log())


class Redis(Process):
    def __init__(self):
        self.port = free_port()
        self.address = "127.0.0.1:%d" % self.port
        super().__init__(["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
                          "--save", "", "--appendonly", "no", "--protected-mode", "no"], "redis")
        wait_for(lambda: port_open(self.port) or not self.alive(), what="redis-server")
        if not self.alive():
            raise AssertionError("redis-server did not start:\n" + self.log())

    def info(self, section):
        out = subprocess.run(["redis-cli", "-p", str(self.port), "info", section],
                             capture_output=True, text=True, timeout=10, check=True).stdout
        return dict(line.split(":", 1) for line in out.splitlines() if ":" in line)


def api(port, method, path, body=None):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    headers = {"Content-Type": "application/json"} if body is not None else {}
    conn.request(method, path, body=json.dumps(body) if body is not None else None,
                 headers=headers)
    r = conn.getresponse()
    data = r.read()
    conn.close()
    return r.status, data.decode()


def metric(text, series):
    for line in text.splitlines():
        if line.startswith(series + " "):
            return float(line.split()[-1])
    raise AssertionError("no series %s in:\n%s" % (series, text))


def connect(port, timeout=10):
    return socket.create_connection(("127.0.0.1", port), timeout=timeout)


def read_line(sock):
    data = b""
    while not data.endswith(b"\n"):
        chunk = sock.recv(1)
        if not chunk:
            break
        data += chunk
    return data


def read_until_eof(sock):
    data = b""
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            return data
        data += chunk


class TcpCase(FulcrumTestCase):
    def setUp(self):
        super().setUp()
        self.dir = tempfile.mkdtemp(prefix="fulcrum-tcp-")
        self.aport = free_port()
        self.access_log = os.path.join(self.dir, "access.log")

    def tearDown(self):
        super().tearDown()
        shutil.rmtree(self.dir, ignore_errors=True)

    def peer(self, mode, name=""):
        p = Peer(mode, name)
        self.processes.append(p)
        return p

    def start(self, servers, listener_extra="", pool_extra="", extra="", threads=2,
              log_format="json"):
        """fulcrum with one tcp listener on {port} for pool `p` of servers [(name, address)],
        an admin listener and an access log. Readiness is read from the log rather than by
        connecting to the listener, which would be a TCP connection of its own."""
        text = ("threads: %d\n"
                "listeners:\n"
                "  - name: tcp\n"
                "    bind: 127.0.0.1:{port}\n"
                "    mode: tcp\n"
                "    pool: p\n%s"
                "pools:\n"
                "  - name: p\n%s"
                "    servers:\n%s"
                "admin:\n  bind: 127.0.0.1:%d\n"
                "access_log:\n  path: %s\n  format: %s\n%s" % (
                    threads, listener_extra, pool_extra,
                    "".join("      - { name: %s, address: %s }\n" % s for s in servers),
                    self.aport, self.access_log, log_format, extra))
        self.f = self.fulcrum(text, wait=False)
        wait_for(lambda: "started with" in self.f.log() or not self.f.alive(),
                 what="fulcrum to start")
        if not self.f.alive():
            raise AssertionError("fulcrum did not start:\n" + self.f.log())
        wait_for(lambda: port_open(self.aport), what="admin listener")
        return self.f

    def metrics(self):
        return api(self.aport, "GET", "/metrics")[1]

    def log_lines(self, n, timeout=10):
        """Waits for the access log to have n lines (workers hand theirs over once a second)."""
        def lines():
            if not os.path.exists(self.access_log):
                return None
            with open(self.access_log) as f:
                got = f.read().splitlines()
            return got if len(got) >= n else None
        if n == 0:
            return lines() or []
        got = wait_for(lines, timeout=timeout, what="%d access log lines" % n)
        return got

    def json_lines(self, n):
        return [json.loads(line) for line in self.log_lines(n)]


def echo_through(port, payload, greet=False):
    """Sends payload through fulcrum to an echo peer, half-closes, returns what came back."""
    with connect(port) as s:
        if greet:
            read_line(s)
        s.sendall(payload)
        s.shutdown(socket.SHUT_WR)
        return read_until_eof(s)


@unittest.skipUnless(HAVE_REDIS, "redis-server, redis-cli and redis-benchmark are needed "
                     "(scripts/install-deps installs them)")
class RedisTest(TcpCase):
    def test_redis_cli_and_benchmark(self):
        redis = Redis()
        self.processes.append(redis)
        f = self.start([("r0", redis.address)])
        cli = ["redis-cli", "-h", "127.0.0.1", "-p", str(f.port)]
        run = lambda *args: subprocess.run(cli + list(args), capture_output=True, text=True,
                                           timeout=10, check=True).stdout.strip()
        self.assertEqual(run("ping"), "PONG")
        self.assertEqual(run("set", "k", "v" * 100000), "OK")
        self.assertEqual(run("get", "k"), "v" * 100000)

        bench = subprocess.run(["redis-benchmark", "-h", "127.0.0.1", "-p", str(f.port),
                                "-t", "ping,get,set", "-n", "20000", "-q"],
                               capture_output=True, text=True, timeout=120)
        self.assertEqual(bench.returncode, 0, bench.stdout + bench.stderr)
        # -q rewrites its progress line with \r; the last state of each line is the result
        results = [line.split("\r")[-1] for line in bench.stdout.splitlines()]
        for test in ("PING_INLINE", "PING_MBULK", "SET", "GET"):
            self.assertTrue(any(r.startswith(test + ": ") and "requests per second" in r
                                for r in results), bench.stdout)
        self.assertNotIn("rror", bench.stdout + bench.stderr)

        # Every command reached redis, and each connection through fulcrum is one of redis's
        # (all but two that went to redis directly: the start-up probe and the INFO call).
        stats = redis.info("stats")
        self.assertGreaterEqual(int(stats["total_commands_processed"]), 4 * 20000 + 3)
        wait_for(lambda: metric(self.metrics(), 'fulcrum_tcp_active_connections{pool="p"}') == 0,
                 what="every connection closed")
        m = self.metrics()
        connections = metric(m, 'fulcrum_tcp_connections_total{pool="p"}')
        self.assertEqual(connections, int(stats["total_connections_received"]) - 2)
        self.assertGreater(metric(m, 'fulcrum_tcp_bytes_total{pool="p",direction="in"}'), 100000)
        self.assertGreater(metric(m, 'fulcrum_tcp_bytes_total{pool="p",direction="out"}'), 100000)
        self.assertEqual(metric(m, 'fulcrum_server_active_requests{pool="p",server="r0"}'), 0)
        lines = self.json_lines(int(connections))
        self.assertEqual(len(lines), connections)
        # redis-benchmark closes its clients as soon as the count is reached, some with a reply
        # still on its way: those reset when it arrives (client_abort), the others end cleanly
        self.assertTrue(all(e["termination"] in ("ok", "client_abort") and e["server"] == "r0"
                            for e in lines), [e for e in lines if e["termination"] != "ok"][:3])

    def test_pool_of_tcp_listeners_checks_with_a_connect(self):
        # health_check without a type: a pool only tcp listeners use is checked with a TCP
        # connect (an HTTP request would fail against redis)
        redis = Redis()
        self.processes.append(redis)
        self.start([("r0", redis.address)],
                   pool_extra="    health_check: { interval: 100ms, rise: 1, fall: 1 }\n")
        wait_for(lambda: metric(self.metrics(),
                                'fulcrum_health_checks_total{pool="p",server="r0",result="pass"}')
                 >= 3, what="passing checks")
        m = self.metrics()
        self.assertEqual(
            metric(m, 'fulcrum_health_checks_total{pool="p",server="r0",result="fail"}'), 0)
        self.assertEqual(metric(m, 'fulcrum_server_up{pool="p",server="r0"}'), 1)


class StreamTest(TcpCase):
    def test_64_mib_both_ways_byte_exact(self):
        echo = self.peer("echo")
        f = self.start([("e0", echo.address)])
        size = 64 << 20
        sent_hash, got_hash = hashlib.sha256(), hashlib.sha256()
        received = [0]
        with connect(f.port, timeout=30) as s:
            def reader():
                while True:
                    data = s.recv(1 << 20)
                    if not data:
                        return
                    got_hash.update(data)
                    received[0] += len(data)
            t = threading.Thread(target=reader)
            t.start()
            block = os.urandom(1 << 20)
            for i in range(size >> 20):
                chunk = bytes([i & 0xff]) + block[1:]
                sent_hash.update(chunk)
                s.sendall(chunk)
            s.shutdown(socket.SHUT_WR)  # the echo server ends its side once it echoed all
            t.join(60)
            self.assertFalse(t.is_alive())
        self.assertEqual(received[0], size)
        self.assertEqual(got_hash.hexdigest(), sent_hash.hexdigest())
        [line] = self.json_lines(1)
        self.assertEqual((line["bytes_in"], line["bytes_out"], line["termination"]),
                         (size, size, "ok"))

    def test_half_close_still_gets_the_answer(self):
        hasher = self.peer("hash")
        f = self.start([("h0", hasher.address)])
        payload = os.urandom(3 << 20)
        with connect(f.port) as s:
            s.sendall(payload)
            s.shutdown(socket.SHUT_WR)  # the server answers only after our end of stream
            answer = read_until_eof(s)
        self.assertEqual(answer, hashlib.sha256(payload).hexdigest().encode() + b"\n")

    def test_server_killed_mid_stream_is_a_reset_for_the_client(self):
        stream = self.peer("stream")
        f = self.start([("s0", stream.address)])
        s = connect(f.port)
        got = b""
        while len(got) < 1 << 20:
            got += s.recv(65536)
        stream.signal(signal.SIGKILL)
        outcome = None
        try:
            while True:
                data = s.recv(65536)
                if not data:
                    outcome = "clean end of stream"
                    break
                got += data
        except ConnectionResetError:
            outcome = "reset"
        s.close()
        self.assertEqual(outcome, "reset")
        self.assertEqual(got, bytes(i % 251 for i in range(251 * 64)) * (len(got) // (251 * 64))
                         + bytes(i % 251 for i in range(len(got) % (251 * 64))))
        [line] = self.json_lines(1)
        self.assertEqual(line["termination"], "server_error")
        # the client's kernel drops what it had not read yet when the reset arrives
        self.assertGreaterEqual(line["bytes_out"], len(got))


class ServersTest(TcpCase):
    def test_refused_connect_is_retried_on_another_server(self):
        echo = self.peer("echo", "live")
        dead = "127.0.0.1:%d" % free_port()  # nothing listens there
        f = self.start([("dead", dead), ("live", echo.address)], threads=1,
                       pool_extra="    passive: { consecutive_failures: 2 }\n")
        ejected = 'fulcrum_server_state{pool="p",server="dead",state="ejected"}'
        n = 0
        # Every client reaches the live server, whichever the balancer picked first, until
        # passive detection, told of each refused connect, ejects the dead one.
        while n < 20 and metric(self.metrics(), ejected) == 0:
            with connect(f.port) as s:
                self.assertEqual(read_line(s), b"live\n")
                s.sendall(b"ping %d" % n)
                s.shutdown(socket.SHUT_WR)
                self.assertEqual(read_until_eof(s), b"ping %d" % n)
            n += 1
        self.assertEqual(metric(self.metrics(), ejected), 1)
        lines = self.json_lines(n)
        self.assertTrue(all(e["server"] == "live" and e["termination"] == "ok" for e in lines),
                        lines)
        retries = sum(e["retries"] for e in lines)
        self.assertGreaterEqual(retries, 2)
        self.assertEqual(metric(self.metrics(), 'fulcrum_retries_total{pool="p"}'), retries)

    def test_no_server_left_closes_the_client(self):
        dead = "127.0.0.1:%d" % free_port()
        f = self.start([("dead", dead)])
        with connect(f.port) as s:
            self.assertEqual(read_until_eof(s), b"")
        [line] = self.json_lines(1)
        self.assertEqual((line["termination"], line["bytes_in"], line["bytes_out"]),
                         ("connect_error", 0, 0))

    def test_drain_stops_new_connections_only(self):
        e0, e1 = self.peer("echo", "s0"), self.peer("echo", "s1")
        f = self.start([("s0", e0.address), ("s1", e1.address)], threads=1)
        # one connection to each, kept open across the drain
        kept = [connect(f.port), connect(f.port)]
        self.assertEqual(sorted(read_line(s) for s in kept), [b"s0\n", b"s1\n"])
        status, body = api(self.aport, "POST", "/api/pools/p/servers/s1", {"state": "drain"})
        self.assertEqual(status, 200, body)
        for _ in range(8):
            with connect(f.port) as s:
                self.assertEqual(read_line(s), b"s0\n")
        for s in kept:  # in-flight connections to the drained server go on
            s.sendall(b"still here")
            self.assertEqual(s.recv(100), b"still here")
            s.close()

    def test_max_connections_holds_tcp_clients_back(self):
        echo = self.peer("echo", "e0")
        f = self.start([("e0", echo.address)], threads=1,
                       extra="limits:\n  max_connections: 2\n")
        a, b = connect(f.port), connect(f.port)
        self.assertEqual(read_line(a), b"e0\n")
        self.assertEqual(read_line(b), b"e0\n")
        c = connect(f.port)  # waits in the kernel's accept queue
        c.settimeout(0.5)
        with self.assertRaises(socket.timeout):
            c.recv(1)
        a.close()
        c.settimeout(10)
        self.assertEqual(read_line(c), b"e0\n")
        b.close()
        c.close()


class TlsAndProxyTest(TcpCase):
    def test_tls_terminated_in_front_of_a_tcp_pool(self):
        pki = make_pki(os.path.join(tempfile.gettempdir(), "fulcrum-e2e-pki"))
        echo = self.peer("echo")
        f = self.start([("e0", echo.address)],
                       listener_extra="    tls:\n      certificates: [{cert: %s, key: %s}]\n" % (
                           pki.site_ecdsa, pki.site_ecdsa_key))
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.load_verify_locations(pki.root_ca)
        payload = os.urandom(2 << 20)
        got = hashlib.sha256()
        received = 0
        with ctx.wrap_socket(connect(f.port), server_hostname="site.test") as s:
            # One thread (an SSL object is not for two at once): send a piece, then read back
            # until at most 256 KiB are in flight, so neither side's buffers can fill up.
            for off in range(0, len(payload), 65536):
                s.sendall(payload[off:off + 65536])
                while received < off - (256 << 10) or (off + 65536 >= len(payload) and
                                                       received < len(payload)):
                    data = s.recv(1 << 20)
                    self.assertTrue(data, "end of stream after %d bytes" % received)
                    got.update(data)
                    received += len(data)
        self.assertEqual(got.hexdigest(), hashlib.sha256(payload).hexdigest())
        m = self.metrics()
        self.assertEqual(metric(m, 'fulcrum_tls_handshakes_total{kind="full"}'), 1)
        self.assertEqual(metric(m, 'fulcrum_tcp_bytes_total{pool="p",direction="in"}'),
                         len(payload))

    def test_proxy_protocol_names_the_client(self):
        echo = self.peer("echo")
        f = self.start([("e0", echo.address)],
                       listener_extra="    proxy_protocol: { accept: true, trusted: [127.0.0.1] }\n")
        with connect(f.port) as s:
            s.sendall(b"PROXY TCP4 192.0.2.9 127.0.0.1 5555 6379\r\nhello")
            s.shutdown(socket.SHUT_WR)
            self.assertEqual(read_until_eof(s), b"hello")  # the header is not relayed
        [line] = self.json_lines(1)
        self.assertEqual((line["client"], line["bytes_in"]), ("192.0.2.9", 5))


class TimeoutAndLogTest(TcpCase):
    def test_idle_connection_closed_after_tunnel_timeout(self):
        echo = self.peer("echo")
        f = self.start([("e0", echo.address)], extra="timeouts:\n  tunnel: 1s\n")
        busy = connect(f.port)
        idle = connect(f.port)
        idle.sendall(b"x")
        self.assertEqual(idle.recv(1), b"x")
        start = time.monotonic()
        # the busy connection moves a byte every 300 ms, so it is never silent for 1s
        while time.monotonic() - start < 2.5:
            busy.sendall(b"y")
            self.assertEqual(busy.recv(1), b"y")
            time.sleep(0.3)
        idle.settimeout(5)
        self.assertEqual(idle.recv(1), b"")  # closed with an ordinary end of stream
        self.assertGreaterEqual(time.monotonic() - start, 0.9)
        busy.sendall(b"z")
        self.assertEqual(busy.recv(1), b"z")
        busy.close()
        idle.close()
        lines = self.json_lines(2)
        self.assertEqual(sorted(e["termination"] for e in lines), ["idle_timeout", "ok"])

    def test_one_line_per_connection_with_exact_bytes(self):
        echo = self.peer("echo")
        f = self.start([("e0", echo.address)])
        sizes = [1, 1000, 65536, 300000, 1 << 20]
        for n in sizes:
            self.assertEqual(len(echo_through(f.port, b"a" * n)), n)
        m = self.metrics()
        self.assertEqual(self.f.stop(), 0)  # everything logged is written by now
        lines = [json.loads(line) for line in self.log_lines(0)]
        self.assertEqual(len(lines), len(sizes))
        self.assertEqual(sorted((e["bytes_in"], e["bytes_out"]) for e in lines),
                         [(n, n) for n in sizes])
        for e in lines:
            self.assertEqual((e["protocol"], e["method"], e["target"], e["status"], e["pool"],
                              e["server"], e["termination"], e["retries"]),
                             ("TCP", None, None, 0, "p", "e0", "ok", 0))
            self.assertIsNone(e["response_ms"])
            self.assertGreaterEqual(e["total_ms"], e["connect_ms"])
        self.assertEqual(metric(m, 'fulcrum_tcp_connections_total{pool="p"}'), len(sizes))
        self.assertEqual(metric(m, 'fulcrum_tcp_bytes_total{pool="p",direction="in"}'),
                         sum(sizes))
        self.assertEqual(metric(m, 'fulcrum_tcp_bytes_total{pool="p",direction="out"}'),
                         sum(sizes))

    def test_combined_format(self):
        echo = self.peer("echo")
        f = self.start([("e0", echo.address)], log_format="combined")
        echo_through(f.port, b"b" * 42)
        [line] = self.log_lines(1)
        self.assertRegex(line, r'^127\.0\.0\.1 - - \[[^\]]+\] "- - TCP" 0 42 "-" "-"$')


class StopAndReloadTest(TcpCase):
    def test_stop_resets_open_connections_at_the_deadline(self):
        echo = self.peer("echo")
        f = self.start([("e0", echo.address)], extra="shutdown_timeout: 1s\n")
        s = connect(f.port)
        s.sendall(b"x")
        self.assertEqual(s.recv(1), b"x")
        start = time.monotonic()
        f.signal(signal.SIGTERM)
        s.settimeout(10)
        with self.assertRaises(ConnectionResetError):
            s.recv(1)
        self.assertGreaterEqual(time.monotonic() - start, 0.9)
        self.assertEqual(f.wait(), 0)
        s.close()
        [line] = self.json_lines(1)
        self.assertEqual(line["termination"], "shutdown")

    def test_connection_outlives_a_reload(self):
        e0, e1 = self.peer("echo", "s0"), self.peer("echo", "s1")
        f = self.start([("s0", e0.address)])
        s = connect(f.port)
        self.assertEqual(read_line(s), b"s0\n")
        with open(f.config_path) as cf:
            text = cf.read()
        with open(f.config_path, "w") as cf:
            cf.write(text.replace(e0.address, e1.address).replace("name: s0", "name: s1"))
        f.signal(signal.SIGHUP)
        wait_for(lambda: "configuration reloaded" in f.log(), what="the reload")
        with connect(f.port) as s2:  # new connections follow the new pool
            self.assertEqual(read_line(s2), b"s1\n")
        s.sendall(b"old")  # the old one stays with its server
        self.assertEqual(s.recv(3), b"old")
        s.close()
