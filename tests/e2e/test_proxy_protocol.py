"""
test_proxy_protocol.py - listeners that accept the PROXY protocol (proxy_protocol: {accept,
trusted}): the address a trusted load balancer in front names becomes the client's, in plain
HTTP and before a TLS handshake; headers from untrusted addresses, and bad headers, close the
connection with nothing reaching a backend. The real peer is HAProxy from Debian with
send-proxy and send-proxy-v2, with the client on another loopback address than HAProxy's.
"""
import os
import shutil
import socket
import ssl
import struct
import subprocess
import tempfile
import time

from harness import FulcrumTestCase, Process, free_port, port_open, wait_for
from tlspki import make_pki

V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"


def v2_header(src, sport, dst, dport, command=1, length=None, signature=V2_SIGNATURE, tlv=b""):
    body = socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack("!HH", sport, dport) + tlv
    return (signature + bytes([0x20 | command, 0x11]) +
            struct.pack("!H", len(body) if length is None else length) + body)


def exchange(port, data, source="127.0.0.1", read=True):
    s = socket.socket()
    s.bind((source, 0))
    s.settimeout(5)
    s.connect(("127.0.0.1", port))
    s.sendall(data)
    out = b""
    try:
        while read:
            chunk = s.recv(65536)
            if not chunk:
                break
            out += chunk
    except (ConnectionResetError, socket.timeout):
        pass
    s.close()
    return out


def forwarded_for(answer):
    for line in answer.split(b"\r\n"):
        if line.lower().startswith(b"x-forwarded-for:"):
            return line.split(b":", 1)[1].strip().decode()
    return None


ECHO = b"GET /?echo=1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"


class ProxyProtocolTest(FulcrumTestCase):
    def start(self, trusted="[127.0.0.0/8]", tls=""):
        self.b = self.backend("b0")
        self.f = self.fulcrum(
            "threads: 1\nlisteners:\n  - name: web\n    bind: 127.0.0.1:{port}\n    pool: app\n"
            "    proxy_protocol: { accept: true, trusted: %s }\n%s"
            "pools:\n  - name: app\n    servers: [{address: %s}]\n" % (trusted, tls, self.b.address))
        return self.f

    def test_v1_and_v2_name_the_client(self):
        self.start()
        answer = exchange(self.f.port, b"PROXY TCP4 192.0.2.9 127.0.0.1 5555 80\r\n" + ECHO)
        self.assertTrue(answer.startswith(b"HTTP/1.1 200"), answer)
        self.assertEqual(forwarded_for(answer), "192.0.2.9")
        answer = exchange(self.f.port, b"PROXY TCP6 2001:db8::7 ::1 5555 80\r\n" + ECHO)
        self.assertEqual(forwarded_for(answer), "2001:db8::7")
        answer = exchange(self.f.port, v2_header("198.51.100.3", 4000, "127.0.0.1", 80,
                                                 tlv=b"\x01\x00\x02h2") + ECHO)
        self.assertEqual(forwarded_for(answer), "198.51.100.3")
        # LOCAL (a health check of the balancer in front) and UNKNOWN keep the real peer
        answer = exchange(self.f.port, v2_header("0.0.0.0", 0, "0.0.0.0", 0, command=0) + ECHO)
        self.assertEqual(forwarded_for(answer), "127.0.0.1")
        answer = exchange(self.f.port, b"PROXY UNKNOWN\r\n" + ECHO)
        self.assertEqual(forwarded_for(answer), "127.0.0.1")
        # the header arriving in pieces
        s = socket.create_connection(("127.0.0.1", self.f.port), timeout=5)
        for piece in (b"PROXY TCP4 192.0", b".2.10 127.0.0.1 5", b"555 80\r", b"\n" + ECHO):
            s.sendall(piece)
            time.sleep(0.02)
        answer = s.recv(65536)
        s.close()
        self.assertEqual(forwarded_for(answer), "192.0.2.10")

    def test_untrusted_and_bad_headers_are_closed(self):
        self.start()
        bad = [
            (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", "no header"),
            (b"PROXY TCP4 999.0.2.9 127.0.0.1 5555 80\r\n" + ECHO, "bad address"),
            (b"PROXY TCP4 192.0.2.9 127.0.0.1 5555 80\n" + ECHO, "no CRLF"),
            (b"PROXY TCP4 " + b"1" * 120 + b"\r\n" + ECHO, "too long"),
            (b"PROXY TCP4 192.0.2.9  127.0.0.1 5555 80\r\n" + ECHO, "double space"),
            (v2_header("192.0.2.9", 1, "127.0.0.1", 80, signature=b"\r\n\r\n\x00\r\nQUIX\n") +
             ECHO, "v2 signature"),
            (v2_header("192.0.2.9", 1, "127.0.0.1", 80, length=4) + ECHO, "v2 length"),
        ]
        for data, what in bad:
            answer = exchange(self.f.port, data)
            self.assertNotIn(b"HTTP/1.1 200", answer, what)
        exchange(self.f.port, b"PROXY TCP4 192.0.2.9", read=False)  # truncated, then closed
        wait_for(lambda: self.f.log().count("PROXY protocol header from 127.0.0.1") >= 6,
                 what="a log line per bad header")
        self.assertEqual(self.b.stats()["connections"], 0)
        self.assertTrue(self.f.alive())

    def test_only_trusted_addresses_may_send_it(self):
        self.start(trusted="[127.0.0.2/32]")
        answer = exchange(self.f.port, b"PROXY TCP4 192.0.2.9 127.0.0.1 5555 80\r\n" + ECHO)
        self.assertEqual(answer, b"")  # from 127.0.0.1: closed at once
        answer = exchange(self.f.port, b"PROXY TCP4 192.0.2.9 127.0.0.1 5555 80\r\n" + ECHO,
                          source="127.0.0.2")
        self.assertEqual(forwarded_for(answer), "192.0.2.9")

    def test_before_a_tls_handshake(self):
        pki = make_pki(os.path.join(tempfile.gettempdir(), "fulcrum-e2e-pki"))
        self.start(tls="    tls:\n      certificates: [{cert: %s, key: %s}]\n" %
                   (pki.site_ecdsa, pki.site_ecdsa_key))
        raw = socket.create_connection(("127.0.0.1", self.f.port), timeout=5)
        raw.sendall(b"PROXY TCP4 203.0.113.5 127.0.0.1 5555 443\r\n")
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.load_verify_locations(pki.root_ca)
        with ctx.wrap_socket(raw, server_hostname="site.test") as s:
            s.sendall(ECHO)
            answer = b""
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                answer += chunk
        self.assertEqual(forwarded_for(answer), "203.0.113.5")


class HaproxyInFrontTest(FulcrumTestCase):
    def test_send_proxy_and_send_proxy_v2(self):
        haproxy = shutil.which("haproxy") or "/usr/sbin/haproxy"
        if not os.path.exists(haproxy):
            self.fail("haproxy is not installed (scripts/install-deps test installs it)")
        b = self.backend("b0")
        f = self.fulcrum("threads: 1\nlisteners:\n  - bind: 127.0.0.1:{port}\n    pool: app\n"
                         "    proxy_protocol: { accept: true, trusted: [127.0.0.1/32] }\n"
                         "pools:\n  - name: app\n    servers: [{address: %s}]\n" % b.address)
        for option in ("send-proxy", "send-proxy-v2"):
            port = free_port()
            d = tempfile.mkdtemp(prefix="fulcrum-haproxy-")
            cfg = os.path.join(d, "haproxy.cfg")
            with open(cfg, "w") as fh:
                fh.write("global\n  log stderr format raw local0\n"
                         "defaults\n  mode http\n  timeout connect 5s\n  timeout client 5s\n"
                         "  timeout server 5s\n"
                         "frontend fe\n  bind 127.0.0.1:%d\n  default_backend be\n"
                         "backend be\n  server fulcrum 127.0.0.1:%d %s\n" % (port, f.port, option))
            h = Process([haproxy, "-f", cfg, "-db"], "haproxy")
            self.processes.append(h)
            wait_for(lambda: port_open(port) or not h.alive(), what="haproxy")
            answer = exchange(port, ECHO, source="127.0.0.2")
            self.assertEqual(forwarded_for(answer), "127.0.0.2", (option, answer))
            h.stop()
            shutil.rmtree(d, ignore_errors=True)
