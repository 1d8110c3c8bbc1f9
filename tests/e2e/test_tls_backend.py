"""
test_tls_backend.py - re-encryption: fulcrum speaking TLS to its servers (pools[].tls), against
a real TLS server (Python's ssl, OpenSSL underneath) that records what it saw of each
connection: the SNI name, whether the session was resumed, the client certificate, and the
requests.

Asserted: verification on (by IP and by name), off, and failing (unknown CA, name mismatch,
expired certificate) with a 502 and one log line per kind of failure; a client certificate for
servers that want one; idle TLS connections reused and sessions resumed; health checks over TLS.
"""
import http.client
import os
import socket
import ssl
import tempfile
import threading

from harness import FulcrumTestCase, free_port, wait_for
from tlspki import make_pki

PKI_DIR = os.path.join(tempfile.gettempdir(), "fulcrum-e2e-pki")


class TlsServer:
    """A small HTTPS/1.1 server on a thread per connection: keep-alive, answers 200 with its
    name, or closes after each answer (close_each). Records one entry per connection."""

    def __init__(self, cert, key, client_ca=None, close_each=False, name="tls0"):
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(cert, key)
        if client_ca:
            self.ctx.load_verify_locations(client_ca)
            self.ctx.verify_mode = ssl.CERT_REQUIRED
        self.sni = []
        self.ctx.sni_callback = lambda sock, server_name, ctx: self.sni.append(server_name)
        self.close_each = close_each
        self.name = name
        self.connections = []  # dicts: resumed, peer, version, requests
        self.lock = threading.Lock()
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.stopping = False
        threading.Thread(target=self.accept_loop, daemon=True).start()

    def accept_loop(self):
        while not self.stopping:
            try:
                raw, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self.serve, args=(raw,), daemon=True).start()

    def serve(self, raw):
        raw.settimeout(10)
        try:
            conn = self.ctx.wrap_socket(raw, server_side=True)
        except (ssl.SSLError, OSError):
            raw.close()
            return
        entry = {"resumed": conn.session_reused, "version": conn.version(),
                 "peer": conn.getpeercert(), "requests": 0}
        with self.lock:
            self.connections.append(entry)
        f = conn.makefile("rb")
        try:
            while True:
                line = f.readline()
                if not line:
                    break
                while True:
                    h = f.readline()
                    if h in (b"\r\n", b"\n", b""):
                        break
                entry["requests"] += 1
                body = self.name.encode() + b"\n"
                close = self.close_each
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nX-Backend: %s\r\n%s\r\n%s"
                             % (len(body), self.name.encode(),
                                b"Connection: close\r\n" if close else b"", body))
                if close:
                    break
        except (OSError, ssl.SSLError):
            pass
        finally:
            try:
                conn.close()
            except OSError:
                pass

    @property
    def address(self):
        return "127.0.0.1:%d" % self.port

    def close(self):
        self.stopping = True
        self.sock.close()


class TlsBackendCase(FulcrumTestCase):
    def setUp(self):
        super().setUp()
        self.pki = make_pki(PKI_DIR)
        self.servers = []

    def tearDown(self):
        for s in self.servers:
            s.close()
        super().tearDown()

    def server(self, cert=None, key=None, **kw):
        s = TlsServer(cert or self.pki.backend, key or self.pki.backend_key, **kw)
        self.servers.append(s)
        return s

    def start(self, address, tls_yaml, check=""):
        text = ("threads: 1\n"
                "listeners:\n  - bind: 127.0.0.1:{port}\n    pool: app\n"
                "pools:\n  - name: app\n    retries: 0\n"
                "    servers:\n      - { name: s0, address: %s }\n"
                "    tls:\n%s%s" % (address, tls_yaml, check))
        self.f = self.fulcrum(text)
        return self.f

    def get(self, n=1, keep_alive=True):
        statuses = []
        conn = http.client.HTTPConnection("127.0.0.1", self.f.port, timeout=10)
        for _ in range(n):
            conn.request("GET", "/", headers={} if keep_alive else {"Connection": "close"})
            r = conn.getresponse()
            r.read()
            statuses.append(r.status)
            if not keep_alive:
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", self.f.port, timeout=10)
        conn.close()
        return statuses


class VerificationTest(TlsBackendCase):
    def test_verified_by_ip_and_by_name(self):
        s = self.server()
        self.start(s.address, "      ca: %s\n" % self.pki.root_ca)
        self.assertEqual(self.get(3), [200] * 3)
        self.assertEqual(s.sni, [None])  # an IP address is never sent as SNI
        self.assertEqual(len(s.connections), 1)  # reused for every request
        self.assertEqual(s.connections[0]["requests"], 3)
        self.assertEqual(s.connections[0]["version"], "TLSv1.3")

    def test_sni_name(self):
        s = self.server()
        self.start(s.address, "      ca: %s\n      sni: backend.test\n" % self.pki.root_ca)
        self.assertEqual(self.get(), [200])
        self.assertEqual(s.sni, ["backend.test"])

    def test_failures_give_502_and_one_log_line_each(self):
        p = self.pki
        cases = [
            (p.backend, p.backend_key, "      ca: %s\n" % p.client_ca,
             "unable to get local issuer certificate"),
            (p.backend, p.backend_key, "      ca: %s\n      sni: wrong.test\n" % p.root_ca,
             "hostname mismatch"),
            (p.expired, p.expired_key, "      ca: %s\n      sni: expired.test\n" % p.root_ca,
             "certificate has expired"),
        ]
        for cert, key, tls_yaml, why in cases:
            s = self.server(cert, key)
            f = self.start(s.address, tls_yaml)
            self.assertEqual(self.get(3), [502] * 3, why)
            line = "pool app server s0: TLS handshake failed: %s" % why
            wait_for(lambda: line in f.log(), what=why)
            self.assertEqual(f.log().count("TLS handshake failed"), 1, f.log())
            self.assertEqual(sum(c["requests"] for c in s.connections), 0)
            f.stop()

    def test_verify_off(self):
        s = self.server()
        self.start(s.address, "      verify: false\n      ca: %s\n" % self.pki.client_ca)
        self.assertEqual(self.get(2), [200, 200])


class ClientCertificateTest(TlsBackendCase):
    def test_servers_that_want_a_client_certificate(self):
        p = self.pki
        s = self.server(client_ca=p.client_ca)
        self.start(s.address, "      ca: %s\n      cert: %s\n      key: %s\n" %
                   (p.root_ca, p.client, p.client_key))
        self.assertEqual(self.get(), [200])
        subject = dict(x[0] for x in s.connections[0]["peer"]["subject"])
        self.assertEqual(subject["commonName"], "client-1")

    def test_without_one_the_server_refuses(self):
        p = self.pki
        s = self.server(client_ca=p.client_ca)
        self.start(s.address, "      ca: %s\n" % p.root_ca)
        self.assertEqual(self.get(), [502])


class ResumptionTest(TlsBackendCase):
    def test_new_connections_resume_the_session(self):
        s = self.server(close_each=True)
        self.start(s.address, "      ca: %s\n" % self.pki.root_ca)
        self.assertEqual(self.get(5), [200] * 5)
        resumed = [c["resumed"] for c in s.connections]
        self.assertEqual(len(resumed), 5)
        self.assertEqual(resumed, [False, True, True, True, True])


class HealthCheckTest(TlsBackendCase):
    def test_checks_use_tls_with_the_same_settings(self):
        p = self.pki
        good = self.server(name="good")
        check = "    health_check: { path: /healthcheck, interval: 100ms }\n"
        f = self.start(good.address, "      ca: %s\n" % p.root_ca, check)
        wait_for(lambda: sum(c["requests"] for c in good.connections) >= 3,
                 what="checks over TLS")
        self.assertNotIn("DOWN", f.log())
        f.stop()
        bad = self.server(p.expired, p.expired_key, name="bad")
        f = self.start(bad.address, "      ca: %s\n      sni: expired.test\n" % p.root_ca, check)
        wait_for(lambda: "TLS: certificate has expired" in f.log(), what="the check failure")
        self.assertEqual(self.get(), [503])
