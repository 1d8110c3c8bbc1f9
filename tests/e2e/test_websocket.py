"""
test_websocket.py - WebSocket tunnels through fulcrum, with a real client and server
(python3-websockets): messages both ways, a large message, a slow reader, plain and TLS
listeners; a refused handshake is an ordinary response; a 101 nobody asked for is a 502; h2c
is never tunnelled; an idle tunnel is closed after timeouts.tunnel; a tunnel survives a reload;
each tunnel is one access log line with its bytes and duration, and counts in the metrics.
"""
import asyncio
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.request

try:
    import websockets
except ImportError:  # a python3 other than Debian's: use Debian's python3-websockets anyway
    sys.path.append("/usr/lib/python3/dist-packages")
    import websockets

from harness import (FulcrumTestCase, Process, echo_headers, exchange, free_port, port_open,
                     wait_for)
from tlspki import make_pki

HERE = os.path.dirname(os.path.abspath(__file__))
PKI_DIR = os.path.join(tempfile.gettempdir(), "fulcrum-e2e-pki")


def run(coro, timeout=60):
    return asyncio.run(asyncio.wait_for(coro, timeout))


class WebSocketTest(FulcrumTestCase):
    def start(self, tls=False, extra=""):
        self.ws_port = free_port()
        self.server = Process([sys.executable, os.path.join(HERE, "ws_server.py"),
                               str(self.ws_port)], "ws-server")
        self.processes.append(self.server)
        wait_for(lambda: port_open(self.ws_port), what="WebSocket server")
        self.log_path = tempfile.NamedTemporaryFile(prefix="fulcrum-ws-", suffix=".log",
                                                    delete=False).name
        self.admin_port = free_port()
        tls_block = ""
        if tls:
            self.pki = make_pki(PKI_DIR)
            tls_block = ("    tls:\n      certificates:\n        - { cert: %s, key: %s }\n"
                         % (self.pki.site_ecdsa, self.pki.site_ecdsa_key))
        self.f = self.fulcrum(
            "threads: 1\nadmin: { bind: 127.0.0.1:%d }\naccess_log: { path: %s }\n%s"
            "listeners:\n  - name: web\n    bind: 127.0.0.1:{port}\n    pool: ws\n%s"
            "pools:\n  - name: ws\n    servers: [{address: 127.0.0.1:%d}]\n"
            % (self.admin_port, self.log_path, extra, tls_block, self.ws_port))
        scheme = "wss" if tls else "ws"
        self.url = "%s://127.0.0.1:%d/chat" % (scheme, self.f.port)
        self.ssl = None
        if tls:
            self.ssl = ssl.create_default_context(cafile=self.pki.root_ca)
            self.ssl.check_hostname = False
        return self.f

    def tearDown(self):
        super().tearDown()
        if getattr(self, "log_path", None) and os.path.exists(self.log_path):
            os.unlink(self.log_path)

    def log_lines(self):
        with open(self.log_path) as fh:
            return [json.loads(l) for l in fh if l.strip()]

    def connect(self, **kw):
        return websockets.connect(self.url, ssl=self.ssl, max_size=64 << 20, compression=None,
                                  **kw)

    def exchange_messages(self):
        async def go():
            async with self.connect() as ws:
                for i in range(50):
                    await ws.send("hello %d" % i)
                    self.assertEqual(await ws.recv(), "hello %d" % i)
                big = os.urandom(8 << 20).hex()[: 8 << 20]  # 8 MiB of text, both ways
                await ws.send(big)
                self.assertEqual(await ws.recv(), big)
                # slow reader: ask for 32 MiB and read nothing for a moment, then everything
                await ws.send("flood:%d" % (32 << 20))
                await asyncio.sleep(1.0)
                got = 0
                while True:
                    m = await ws.recv()
                    if m == "flood done":
                        break
                    got += len(m)
                self.assertEqual(got, 32 << 20)
                await ws.send("after")
                self.assertEqual(await ws.recv(), "after")
        run(go())

    def test_messages_both_ways_plain(self):
        self.start()
        self.exchange_messages()
        wait_for(lambda: len(self.log_lines()) >= 1, what="the tunnel's log line")
        line = self.log_lines()[0]
        self.assertEqual((line["status"], line["target"], line["method"]), (101, "/chat", "GET"))
        # client to server: 50 small frames + 8 MiB + a few more (masked, a little over)
        self.assertGreater(line["bytes_in"], 8 << 20)
        self.assertLess(line["bytes_in"], (8 << 20) + 65536)
        self.assertGreater(line["bytes_out"], (40 << 20))
        self.assertLess(line["bytes_out"], (40 << 20) + 65536)
        time.sleep(0.3)  # one line per tunnel, not one more after an idle moment
        self.assertEqual(len(self.log_lines()), 1)
        metrics = urllib.request.urlopen("http://127.0.0.1:%d/metrics" % self.admin_port,
                                         timeout=5).read().decode()
        self.assertIn("fulcrum_tunnels_total 1\n", metrics)
        self.assertIn('fulcrum_client_connections{state="tunnel"} 0\n', metrics)

    def test_messages_both_ways_tls(self):
        self.start(tls=True)
        self.exchange_messages()

    def test_tunnel_counts_while_open_and_survives_reload(self):
        self.start()

        async def go():
            async with self.connect() as ws:
                await ws.send("one")
                self.assertEqual(await ws.recv(), "one")
                state = json.loads(urllib.request.urlopen(
                    "http://127.0.0.1:%d/api/state" % self.admin_port, timeout=5).read())
                self.assertEqual(state["clients"]["tunnel"], 1)
                self.f.signal(signal.SIGHUP)

                def reloads():
                    st = json.loads(urllib.request.urlopen(
                        "http://127.0.0.1:%d/api/state" % self.admin_port, timeout=5).read())
                    return st["fulcrum"]["reloads"]["ok"]
                wait_for(lambda: reloads() == 1, what="the reload")
                for i in range(5):
                    await ws.send("after reload %d" % i)
                    self.assertEqual(await ws.recv(), "after reload %d" % i)
        run(go())

    def test_tunnel_closed_at_the_stop_deadline(self):
        self.start(extra="shutdown_timeout: 1s\n")

        async def go():
            async with self.connect(ping_interval=None) as ws:
                await ws.send("before")
                self.assertEqual(await ws.recv(), "before")
                stopped = time.monotonic()
                self.f.signal(signal.SIGTERM)
                await asyncio.sleep(0.3)  # the stop has begun: the tunnel still works
                await ws.send("during the stop")
                self.assertEqual(await ws.recv(), "during the stop")
                with self.assertRaises(websockets.ConnectionClosed):
                    await asyncio.wait_for(ws.recv(), 10)
                return time.monotonic() - stopped
        waited = run(go())
        self.assertGreater(waited, 0.8)
        self.assertEqual(self.f.wait(10), 0)
        lines = self.log_lines()
        self.assertEqual(len(lines), 1)
        self.assertEqual((lines[0]["status"], lines[0]["termination"]), (101, "shutdown"))
        self.assertGreater(lines[0]["bytes_in"], 0)
        self.assertGreater(lines[0]["bytes_out"], 0)

    def test_refused_handshake_is_an_ordinary_response(self):
        self.start()
        r = exchange(self.f.port, b"GET /reject HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\n"
                                  b"Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n"
                                  b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")
        self.assertEqual((r.status, r.header("X-Rejected")), (403, "yes"))
        self.assertEqual(r.body, b"no websocket for you\n")

    def test_idle_tunnel_closed_after_timeouts_tunnel(self):
        self.start(extra="timeouts: { tunnel: 1s }\n")

        async def go():
            async with self.connect(ping_interval=None) as ws:
                await ws.send("x")
                self.assertEqual(await ws.recv(), "x")
                start = time.monotonic()
                with self.assertRaises(websockets.ConnectionClosed):
                    await asyncio.wait_for(ws.recv(), 10)
                return time.monotonic() - start
        waited = run(go())
        self.assertGreater(waited, 0.8)
        wait_for(lambda: len(self.log_lines()) == 1, what="the tunnel's log line")
        self.assertEqual(self.log_lines()[0]["termination"], "tunnel_timeout")


class UpgradeEdgesTest(FulcrumTestCase):
    def test_101_not_asked_for_is_502(self):
        def handler(conn, req):
            conn.sendall(b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\n"
                         b"Upgrade: websocket\r\n\r\n")
        b = self.scripted_backend(handler)
        f = self.fulcrum("threads: 1\nlisteners:\n  - bind: 127.0.0.1:{port}\n    pool: p\n"
                         "pools:\n  - name: p\n    retries: 0\n    servers: [{address: %s}]\n"
                         % b.address)
        r = exchange(f.port, b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
        self.assertEqual(r.status, 502)
        # h2c is not WebSocket: never tunnelled either
        r = exchange(f.port, b"GET / HTTP/1.1\r\nHost: h\r\nConnection: Upgrade, HTTP2-Settings"
                             b"\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n\r\n")
        self.assertEqual(r.status, 502)

    def test_h2c_upgrade_is_stripped(self):
        be = self.backend("b")
        f = self.fulcrum("threads: 1\nlisteners:\n  - bind: 127.0.0.1:{port}\n    pool: p\n"
                         "pools:\n  - name: p\n    servers: [{address: %s}]\n" % be.address)
        r = exchange(f.port, b"GET /?echo=1 HTTP/1.1\r\nHost: h\r\nConnection: Upgrade, "
                             b"HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABk\r\n\r\n")
        self.assertEqual(r.status, 200)
        _, fields, _ = echo_headers(r.body)
        names = [k.lower() for k, _ in fields]
        for gone in ("upgrade", "connection", "http2-settings"):
            self.assertNotIn(gone, names)
        # websocket with another protocol offered alongside is not a WebSocket handshake either
        r = exchange(f.port, b"GET /?echo=1 HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\n"
                             b"Upgrade: websocket, h2c\r\n\r\n")
        _, fields, _ = echo_headers(r.body)
        self.assertNotIn("upgrade", [k.lower() for k, _ in fields])
        # a real handshake keeps both fields, exactly
        r = exchange(f.port, b"GET /?echo=1 HTTP/1.1\r\nHost: h\r\nConnection: keep-alive, "
                             b"Upgrade\r\nUpgrade: WebSocket\r\nSec-WebSocket-Version: 13\r\n\r\n")
        _, fields, _ = echo_headers(r.body)
        values = dict((k.lower(), v) for k, v in fields)
        self.assertEqual((values.get("connection"), values.get("upgrade")),
                         ("Upgrade", "websocket"))
