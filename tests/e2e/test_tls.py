"""
test_tls.py - TLS termination on listeners, with real clients: Python's ssl, curl and
`openssl s_client`, against certificates made at run time (tlspki.py).

What each test asserts is what the client saw (which certificate, protocol, ALPN, resumption,
the answer) and what the backend saw (X-Forwarded-Proto, the client certificate's subject, or
nothing at all for bad handshakes), plus the exact counters in /metrics.
"""
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import threading
import time
import http.client

from harness import FULCRUM, FulcrumTestCase, free_port, port_open, wait_for
from tlspki import make_pki

PKI_DIR = os.path.join(tempfile.gettempdir(), "fulcrum-e2e-pki")


def pki():
    return make_pki(PKI_DIR)


def der(path):
    """The DER bytes of the first certificate in a PEM file."""
    with open(path) as f:
        text = f.read()
    end = text.index("-----END CERTIFICATE-----") + len("-----END CERTIFICATE-----")
    return ssl.PEM_cert_to_DER_cert(text[:end])


def client_context(ca=None, verify=True, max_version=None, ciphers=None, cert=None, key=None,
                   alpn=None):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if verify:
        ctx.load_verify_locations(ca)
    else:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if max_version:
        ctx.maximum_version = max_version
    if ciphers:
        ctx.set_ciphers(ciphers)
    if cert:
        ctx.load_cert_chain(cert, key)
    if alpn:
        ctx.set_alpn_protocols(alpn)
    return ctx


def tls_connect(port, ctx, name=None, session=None, timeout=5):
    raw = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        return ctx.wrap_socket(raw, server_hostname=name, session=session)
    except Exception:
        raw.close()
        raise


def request(sock, path="/", headers=""):
    """One GET on an open TLS socket; returns (status, body bytes)."""
    sock.sendall(("GET %s HTTP/1.1\r\nHost: t\r\n%s\r\n" % (path, headers)).encode())
    resp = http.client.HTTPResponse(sock)
    resp.begin()
    return resp.status, resp.read()


def metric(text, series):
    for line in text.splitlines():
        if line.startswith(series + " "):
            return float(line.split()[-1])
    raise AssertionError("no series %s" % series)


class TlsCase(FulcrumTestCase):
    def setUp(self):
        super().setUp()
        self.pki = pki()
        self.b = self.backend("b0")
        self.aport = free_port()
        self.dir = tempfile.mkdtemp(prefix="fulcrum-tls-")

    def tearDown(self):
        super().tearDown()
        shutil.rmtree(self.dir, ignore_errors=True)

    def start(self, tls_yaml, extra="", threads=1, wait=True):
        text = ("threads: %d\n"
                "listeners:\n"
                "  - name: https\n"
                "    bind: 127.0.0.1:{port}\n"
                "    pool: app\n"
                "    tls:\n%s"
                "pools:\n"
                "  - name: app\n"
                "    servers:\n"
                "      - { name: s0, address: %s }\n"
                "admin:\n"
                "  bind: 127.0.0.1:%d\n"
                "%s" % (threads, tls_yaml, self.b.address, self.aport, extra))
        self.f = self.fulcrum(text, wait=wait)
        if wait:
            wait_for(lambda: port_open(self.aport), what="admin listener")
        return self.f

    def reload_times(self, n):
        """n reloads (SIGHUP), each waited for in the log before the next."""
        for i in range(n):
            seen = self.f.log().count("configuration reloaded")
            self.f.signal(signal.SIGHUP)
            wait_for(lambda: self.f.log().count("configuration reloaded") > seen,
                     what="reload %d" % i)

    def metrics(self):
        conn = http.client.HTTPConnection("127.0.0.1", self.aport, timeout=5)
        conn.request("GET", "/metrics")
        text = conn.getresponse().read().decode()
        conn.close()
        return text

    def state(self):
        conn = http.client.HTTPConnection("127.0.0.1", self.aport, timeout=5)
        conn.request("GET", "/api/state")
        doc = json.loads(conn.getresponse().read())
        conn.close()
        return doc

    def failures(self, reason):
        return metric(self.metrics(), 'fulcrum_tls_handshake_failures_total{reason="%s"}' % reason)

    def certs_yaml(self, *pairs, indent="      "):
        lines = indent + "certificates:\n"
        for cert, key in pairs:
            lines += indent + "  - { cert: %s, key: %s }\n" % (cert, key)
        return lines


class SniAndCertificatesTest(TlsCase):
    def setUp(self):
        super().setUp()
        p = self.pki
        self.start(self.certs_yaml((p.site_ecdsa, p.site_ecdsa_key), (p.site_rsa, p.site_rsa_key),
                                   (p.api, p.api_key), (p.wildcard, p.wildcard_key),
                                   (p.chain, p.chain_key)))

    def served(self, name, **kw):
        ctx = client_context(verify=False, **kw)
        with tls_connect(self.f.port, ctx, name) as s:
            return s.getpeercert(binary_form=True), s.version()

    def test_each_name_gets_its_certificate(self):
        p = self.pki
        cases = [("site.test", p.site_ecdsa), ("WWW.Site.Test", p.site_ecdsa),
                 ("api.test", p.api), ("a.wild.test", p.wildcard), ("A.WILD.TEST", p.wildcard),
                 ("chain.test", p.chain),
                 # not covered: the default, which is the first certificate
                 ("a.b.wild.test", p.site_ecdsa), ("wild.test", p.site_ecdsa),
                 ("unknown.example", p.site_ecdsa), (None, p.site_ecdsa)]
        for name, cert in cases:
            got, _ = self.served(name)
            self.assertEqual(got, der(cert), name)

    def test_verified_by_a_real_client_with_the_chain(self):
        # chain.test is signed by the intermediate: it verifies only if fulcrum sends it.
        for name in ("site.test", "api.test", "x.wild.test", "chain.test"):
            ctx = client_context(self.pki.root_ca)
            with tls_connect(self.f.port, ctx, name) as s:
                status, _ = request(s)
                self.assertEqual(status, 200, name)
        out = subprocess.run(
            ["curl", "-sS", "--cacert", self.pki.root_ca, "--resolve",
             "chain.test:%d:127.0.0.1" % self.f.port, "https://chain.test:%d/" % self.f.port],
            capture_output=True, timeout=20)
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertIn(b"b0", out.stdout)

    def test_ecdsa_for_clients_that_can_rsa_for_the_rest(self):
        p = self.pki
        got, _ = self.served("site.test")
        self.assertEqual(got, der(p.site_ecdsa))
        # TLS 1.2 with only RSA suites
        got, version = self.served("site.test", max_version=ssl.TLSVersion.TLSv1_2,
                                   ciphers="ECDHE-RSA-AES128-GCM-SHA256")
        self.assertEqual((got, version), (der(p.site_rsa), "TLSv1.2"))
        got, version = self.served("site.test", max_version=ssl.TLSVersion.TLSv1_2)
        self.assertEqual((got, version), (der(p.site_ecdsa), "TLSv1.2"))
        # TLS 1.3 with only RSA signature algorithms (openssl s_client can say so)
        for sigalgs, cert in (("rsa_pss_rsae_sha256", p.site_rsa), ("ecdsa_secp256r1_sha256",
                                                                     p.site_ecdsa)):
            out = subprocess.run(
                ["openssl", "s_client", "-connect", "127.0.0.1:%d" % self.f.port, "-servername",
                 "site.test", "-tls1_3", "-sigalgs", sigalgs],
                input=b"", capture_output=True, timeout=20).stdout.decode()
            subject = [l for l in out.splitlines() if l.startswith("subject=")]
            with open(cert) as fh:
                pem = fh.read()
            self.assertIn("-----BEGIN CERTIFICATE-----", out)
            served = out[out.index("-----BEGIN CERTIFICATE-----"):
                         out.index("-----END CERTIFICATE-----") + 25]
            self.assertEqual(ssl.PEM_cert_to_DER_cert(served), der(cert), (sigalgs, subject))

    def test_protocols_and_backend_sees_https(self):
        ctx = client_context(self.pki.root_ca, alpn=["h2", "http/1.1"])
        with tls_connect(self.f.port, ctx, "site.test") as s:
            self.assertEqual(s.selected_alpn_protocol(), "h2")  # the default: h2 first
        ctx = client_context(self.pki.root_ca, alpn=["http/1.1"])
        with tls_connect(self.f.port, ctx, "site.test") as s:
            self.assertEqual(s.selected_alpn_protocol(), "http/1.1")
            self.assertEqual(s.version(), "TLSv1.3")
            status, body = request(s, "/?echo=1", "X-Forwarded-Proto: http\r\n")
        self.assertEqual(status, 200)
        head = body.decode()
        self.assertIn("X-Forwarded-Proto: https\r\n", head)
        self.assertEqual(head.count("X-Forwarded-Proto"), 1)
        ctx = client_context(self.pki.root_ca, alpn=["spdy/3.1"])
        with tls_connect(self.f.port, ctx, "site.test") as s:
            self.assertIsNone(s.selected_alpn_protocol())  # no common protocol: no ALPN
            self.assertEqual(request(s)[0], 200)
        ctx = client_context(self.pki.root_ca, max_version=ssl.TLSVersion.TLSv1_2)
        with tls_connect(self.f.port, ctx, "site.test") as s:
            self.assertEqual(s.version(), "TLSv1.2")
            self.assertEqual(request(s)[0], 200)

    def test_admin_api_and_metrics_show_the_certificates(self):
        listener = self.state()["listeners"][0]
        certs = listener["tls"]["certificates"]
        self.assertEqual([c["cert"] for c in certs], [self.pki.site_ecdsa, self.pki.site_rsa,
                                                      self.pki.api, self.pki.wildcard,
                                                      self.pki.chain])
        self.assertEqual(sorted(certs[0]["names"]), ["site.test", "www.site.test"])
        self.assertEqual((certs[0]["key_type"], certs[1]["key_type"]), ("ECDSA", "RSA"))
        self.assertIn("Fulcrum Test Root CA", certs[0]["issuer"])
        self.assertIn("Intermediate", certs[4]["issuer"])
        self.assertEqual(certs[4]["chain_length"], 1)
        self.assertTrue(certs[0]["default"])
        self.assertFalse(any(c["default"] for c in certs[1:]))
        text = self.metrics()
        for c in certs:
            series = ('fulcrum_tls_certificate_expiry_timestamp_seconds{listener="https",'
                      'certificate="%s"}' % c["cert"])
            self.assertEqual(metric(text, series), c["not_after_unix"])

    def test_handshake_counters_are_exact(self):
        before = self.metrics()
        full0 = metric(before, 'fulcrum_tls_handshakes_total{kind="full"}')
        v13 = metric(before, 'fulcrum_tls_version_total{version="TLSv1.3"}')
        v12 = metric(before, 'fulcrum_tls_version_total{version="TLSv1.2"}')
        for _ in range(3):
            self.served("site.test")
        for _ in range(2):
            self.served("site.test", max_version=ssl.TLSVersion.TLSv1_2)
        after = self.metrics()
        self.assertEqual(metric(after, 'fulcrum_tls_handshakes_total{kind="full"}'), full0 + 5)
        self.assertEqual(metric(after, 'fulcrum_tls_version_total{version="TLSv1.3"}'), v13 + 3)
        self.assertEqual(metric(after, 'fulcrum_tls_version_total{version="TLSv1.2"}'), v12 + 2)


class ManyHandshakesTest(TlsCase):
    def test_every_new_connection_gets_its_answer(self):
        """A request that arrives right behind the client's last handshake message may be taken
        from the socket by the handshake itself; it must still be answered. Go's client (hey)
        sends them back to back; 10,000 short connections made this happen a few times per run
        before it was fixed (a request left unanswered until client_idle)."""
        p = self.pki
        self.start(self.certs_yaml((p.site_ecdsa, p.site_ecdsa_key)) ,
                   extra="timeouts: {client_idle: 60s, client_header: 60s}\n")
        out = subprocess.run(["hey", "-n", "10000", "-c", "20", "-t", "5", "-disable-keepalive",
                              "https://127.0.0.1:%d/" % self.f.port],
                             capture_output=True, timeout=120).stdout.decode()
        self.assertIn("[200]\t10000 responses", out, out)
        self.assertNotIn("Error distribution", out, out)


class ResumptionTest(TlsCase):
    def resumed(self, max_version, reload_between=False):
        ctx = client_context(self.pki.root_ca, max_version=max_version)
        with tls_connect(self.f.port, ctx, "site.test") as s:
            self.assertEqual(request(s)[0], 200)  # TLS 1.3 tickets come after the handshake
            session = s.session
            self.assertFalse(s.session_reused)
        if reload_between:
            self.f.signal(signal.SIGHUP)
            wait_for(lambda: "configuration reloaded" in self.f.log(), what="the reload")
        results = []
        for _ in range(4):  # two threads: whichever accepts, the ticket works
            with tls_connect(self.f.port, ctx, "site.test", session=session) as s:
                results.append(s.session_reused)
                self.assertEqual(request(s)[0], 200)
        return results

    def test_tickets_across_threads_and_reloads(self):
        p = self.pki
        self.start(self.certs_yaml((p.site_ecdsa, p.site_ecdsa_key)), threads=2)
        for version in (ssl.TLSVersion.TLSv1_3, ssl.TLSVersion.TLSv1_2):
            self.assertEqual(self.resumed(version), [True] * 4, version)
        self.assertEqual(self.resumed(ssl.TLSVersion.TLSv1_3, reload_between=True), [True] * 4)
        text = self.metrics()
        self.assertEqual(metric(text, 'fulcrum_tls_handshakes_total{kind="resumed"}'), 12)
        self.assertEqual(metric(text, 'fulcrum_tls_handshakes_total{kind="full"}'), 3)

    def test_a_chain_of_resumptions(self):
        """Each connection resumes with the session of the one just before, as wrk and browsers
        do. Over TLS 1.3 that works only if every resumed handshake issues a new ticket: a
        client keeps the session of its last connection, resumable only with a ticket of its own
        (openssl s_client writes -sess_out only then)."""
        p = self.pki
        self.start(self.certs_yaml((p.site_ecdsa, p.site_ecdsa_key)))
        for flag in ("-tls1_3", "-tls1_2"):
            previous, seen = None, []
            for i in range(5):
                current = os.path.join(self.dir, "session-%s-%d.pem" % (flag, i))
                argv = ["openssl", "s_client", "-connect", "127.0.0.1:%d" % self.f.port,
                        "-servername", "site.test", flag, "-ign_eof", "-sess_out", current]
                if previous:
                    argv += ["-sess_in", previous]
                out = subprocess.run(argv, input=b"GET / HTTP/1.1\r\nHost: t\r\n"
                                     b"Connection: close\r\n\r\n", capture_output=True,
                                     timeout=20).stdout.decode()
                seen.append("Reused" if "\nReused, " in out else "New")
                if os.path.exists(current):
                    previous = current
                elif flag == "-tls1_3":
                    previous = None  # no new ticket: the client has nothing to resume with
                # TLS 1.2 clients may use a ticket again: s_client keeps the file it has
            self.assertEqual(seen, ["New"] + ["Reused"] * 4, flag)

    def test_session_cache_without_tickets(self):
        p = self.pki
        self.start(self.certs_yaml((p.site_ecdsa, p.site_ecdsa_key)) +
                   "      session_tickets: false\n")
        # TLS 1.2 session IDs live in one context's cache: one thread here
        self.assertEqual(self.resumed(ssl.TLSVersion.TLSv1_2), [True] * 4)

    def test_openssl_reconnect(self):
        p = self.pki
        self.start(self.certs_yaml((p.site_ecdsa, p.site_ecdsa_key)))
        out = subprocess.run(["openssl", "s_client", "-connect", "127.0.0.1:%d" % self.f.port,
                              "-servername", "site.test", "-tls1_2", "-reconnect"],
                             input=b"", capture_output=True, timeout=30).stdout.decode()
        self.assertEqual(out.count("Reused, TLSv1.2"), 5, out[-2000:])


class ClientCertificateTest(TlsCase):
    def setUp(self):
        super().setUp()
        p = self.pki
        self.start(self.certs_yaml((p.site_ecdsa, p.site_ecdsa_key)) +
                   "      client_ca: %s\n      client_subject_header: X-Client-Subject\n" %
                   p.client_ca)

    def test_verified_subject_reaches_the_backend_and_spoofs_do_not(self):
        p = self.pki
        ctx = client_context(p.root_ca, cert=p.client, key=p.client_key)
        with tls_connect(self.f.port, ctx, "site.test") as s:
            status, body = request(s, "/?echo=1", "X-Client-Subject: CN=admin\r\n"
                                                  "x-client-subject: CN=root\r\n")
        self.assertEqual(status, 200)
        head = body.decode()
        lines = [l for l in head.split("\r\n") if l.lower().startswith("x-client-subject")]
        self.assertEqual(len(lines), 1, head)
        self.assertTrue(lines[0].startswith("X-Client-Subject: CN=client-1"), lines)

    def test_missing_or_foreign_certificates_are_refused(self):
        p = self.pki
        before = self.b.stats()["connections"]
        for cert, key in ((None, None), (p.untrusted_client, p.untrusted_client_key)):
            ctx = client_context(p.root_ca, cert=cert, key=key)
            with self.assertRaises((ssl.SSLError, ConnectionError, OSError)):
                with tls_connect(self.f.port, ctx, "site.test") as s:
                    request(s)  # TLS 1.3: the refusal may arrive after the handshake
        wait_for(lambda: self.failures("no_certificate") == 1 and
                 self.failures("bad_certificate") == 1, what="both failures counted")
        self.assertEqual(self.b.stats()["connections"], before)


class ResumptionScopeTest(TlsCase):
    def test_a_session_of_one_listener_does_not_skip_another_ones_client_certificate(self):
        """Ticket keys are shared by every listener: a ticket from a listener without client
        certificates must not resume on one that requires them."""
        p = self.pki
        open_port = free_port()
        self.start(self.certs_yaml((p.site_ecdsa, p.site_ecdsa_key)) +
                   "      client_ca: %s\n" % p.client_ca +
                   "  - name: open\n    bind: 127.0.0.1:%d\n    pool: app\n    tls:\n" % open_port +
                   self.certs_yaml((p.site_ecdsa, p.site_ecdsa_key)))
        for version in (ssl.TLSVersion.TLSv1_3, ssl.TLSVersion.TLSv1_2):
            ctx = client_context(p.root_ca, max_version=version)
            with tls_connect(open_port, ctx, "site.test") as s:
                self.assertEqual(request(s)[0], 200)
                session = s.session
            with tls_connect(open_port, ctx, "site.test", session=session) as s:
                self.assertTrue(s.session_reused)  # the ticket is good where it was made
                self.assertEqual(request(s)[0], 200)
                session = s.session
            with self.assertRaises((ssl.SSLError, ConnectionError, OSError), msg=version):
                with tls_connect(self.f.port, ctx, "site.test", session=session) as s:
                    request(s)
        self.assertEqual(self.b.stats()["requests"], 4)


class BadInputTest(TlsCase):
    def setUp(self):
        super().setUp()
        p = self.pki
        self.start(self.certs_yaml((p.site_ecdsa, p.site_ecdsa_key), (p.api, p.api_key)) +
                   "      sni_strict: true\n", extra="timeouts:\n  tls_handshake: 400ms\n")

    def raw(self, data, read=True):
        with socket.create_connection(("127.0.0.1", self.f.port), timeout=5) as s:
            s.sendall(data)
            if not read:
                return b""
            s.shutdown(socket.SHUT_WR)
            out = b""
            while True:
                try:
                    chunk = s.recv(4096)
                except ConnectionResetError:
                    break
                if not chunk:
                    break
                out += chunk
            return out

    def client_hello(self):
        """The first bytes a real client sends: its ClientHello record."""
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        got = []

        def grab():
            conn, _ = listener.accept()
            got.append(conn.recv(65536))
            conn.close()
        t = threading.Thread(target=grab)
        t.start()
        ctx = client_context(verify=False)
        try:
            tls_connect(listener.getsockname()[1], ctx, "site.test", timeout=2).close()
        except (ssl.SSLError, OSError):
            pass
        t.join()
        listener.close()
        return got[0]

    def test_plain_http_gets_a_plain_400(self):
        out = self.raw(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        self.assertTrue(out.startswith(b"HTTP/1.1 400 Bad Request\r\n"), out)
        self.assertIn(b"This port speaks HTTPS", out)
        wait_for(lambda: self.failures("http_request") == 1, what="the failure counted")

    def test_garbage_truncated_and_stalled_handshakes(self):
        hello = self.client_hello()
        self.assertEqual(hello[0], 0x16)
        self.raw(hello[:20])                              # truncated, then closed
        self.raw(os.urandom(3000))                        # random bytes
        self.raw(b"\x16\x03\x01\xff\xff" + os.urandom(50))  # a record longer than sent
        with socket.create_connection(("127.0.0.1", self.f.port), timeout=5) as s:
            s.sendall(hello[:len(hello) // 2])            # stalls halfway
            t0 = time.monotonic()
            self.assertEqual(s.recv(100), b"")            # closed by tls_handshake (400ms)
            self.assertLess(time.monotonic() - t0, 5)
        wait_for(lambda: self.failures("timeout") == 1, what="the timeout counted")
        text = self.metrics()
        bad = sum(metric(text, 'fulcrum_tls_handshake_failures_total{reason="%s"}' % r)
                  for r in ("closed", "bad_message", "protocol_version", "other"))
        self.assertGreaterEqual(bad, 3)
        self.assertEqual(self.b.stats()["connections"], 0)
        self.assertEqual(metric(text, 'fulcrum_client_connections{state="reading"}'), 0)

    def test_unknown_name_with_sni_strict_and_old_versions(self):
        ctx = client_context(verify=False)
        with self.assertRaises(ssl.SSLError) as e:
            tls_connect(self.f.port, ctx, "nobody.test").close()
        self.assertIn("UNRECOGNIZED_NAME", str(e.exception).upper())
        with tls_connect(self.f.port, ctx, "api.test") as s:  # a covered name still works
            self.assertEqual(request(s)[0], 200)
        for flag in ("-tls1", "-tls1_1"):
            out = subprocess.run(["openssl", "s_client", "-connect", "127.0.0.1:%d" % self.f.port,
                                  "-servername", "api.test", flag, "-cipher", "ALL:@SECLEVEL=0"],
                                 input=b"", capture_output=True, timeout=20)
            self.assertNotEqual(out.returncode, 0)
            self.assertNotIn(b"BEGIN CERTIFICATE", out.stdout)
        wait_for(lambda: self.failures("unknown_name") == 1 and
                 self.failures("protocol_version") == 2, what="the failures counted")
        self.assertEqual(self.b.stats()["connections"], 1)


class ReloadAndCheckTest(TlsCase):
    def copy(self, src, name):
        dst = os.path.join(self.dir, name)
        shutil.copyfile(src, dst)
        return dst

    def test_reload_reads_certificates_again_and_keeps_them_on_failure(self):
        p = self.pki
        cert, key = self.copy(p.site_ecdsa, "c.pem"), self.copy(p.site_ecdsa_key, "k.pem")
        self.start(self.certs_yaml(("c.pem", "k.pem")).replace(
            "c.pem", cert).replace("k.pem", key))
        ctx = client_context(verify=False)

        def served():
            with tls_connect(self.f.port, ctx, "site.test") as s:
                return s.getpeercert(binary_form=True)
        self.assertEqual(served(), der(p.site_ecdsa))
        # a new certificate in the same files
        self.copy(p.site_rsa, "c.pem")
        self.copy(p.site_rsa_key, "k.pem")
        self.f.signal(signal.SIGHUP)
        wait_for(lambda: served() == der(p.site_rsa), what="the new certificate")
        # a key that does not match, then a missing key: both refused, the last good one serves
        self.copy(p.mismatch_key, "k.pem")
        self.f.signal(signal.SIGHUP)
        wait_for(lambda: "does not match certificate" in self.f.log(), what="the refusal")
        os.unlink(key)
        self.f.signal(signal.SIGHUP)
        wait_for(lambda: "k.pem: cannot use it" in self.f.log(), what="the missing key")
        self.assertEqual(served(), der(p.site_rsa))
        reloads = self.state()["fulcrum"]["reloads"]
        self.assertEqual((reloads["ok"], reloads["failed"]), (1, 2))

    def test_dash_t_reports_bad_certificates(self):
        p = self.pki
        base = ("listeners:\n  - bind: 127.0.0.1:1\n    pool: app\n    tls:\n%s"
                "pools:\n  - name: app\n    servers: [{address: 127.0.0.1:2}]\n")

        def check(certs):
            path = os.path.join(self.dir, "t.yaml")
            with open(path, "w") as fh:
                fh.write(base % self.certs_yaml(*certs))
            r = subprocess.run([FULCRUM, "-t", "-c", path], capture_output=True, timeout=20)
            return r.returncode, (r.stdout + r.stderr).decode()
        code, out = check([(p.site_ecdsa, p.site_ecdsa_key)])
        self.assertEqual((code, out.strip()), (0, "configuration OK"))
        code, out = check([(p.mismatch, p.mismatch_key)])
        self.assertEqual(code, 1)
        self.assertIn("t.yaml:6:11: listeners[0].tls.certificates[0]: key %s does not match "
                      "certificate %s" % (p.mismatch_key, p.mismatch), out)
        code, out = check([(p.expired, p.expired_key), (p.expiring, p.expiring_key)])
        self.assertEqual(code, 0, out)
        self.assertIn("certificate %s has expired" % p.expired, out)
        self.assertIn("certificate %s expires in 4 days" % p.expiring, out)
        code, out = check([(os.path.join(self.dir, "none.pem"), p.api_key)])
        self.assertEqual(code, 1)
        self.assertIn("none.pem: cannot read file", out)

    def test_quick_start_flags(self):
        p = self.pki
        port = free_port()
        f = self.fulcrum(args=["--listen", "127.0.0.1:%d" % port, "--server", self.b.address,
                               "--tls-cert", p.site_ecdsa, "--tls-key", p.site_ecdsa_key],
                         port=port)
        ctx = client_context(p.root_ca)
        with tls_connect(port, ctx, "site.test") as s:
            self.assertEqual(request(s)[0], 200)
        r = subprocess.run([FULCRUM, "--listen", "127.0.0.1:1", "--server", "127.0.0.1:2",
                            "--tls-cert", p.site_ecdsa], capture_output=True, timeout=10)
        self.assertEqual(r.returncode, 1)
        self.assertIn(b"--tls-cert needs --tls-key FILE as well", r.stderr)


class ReloadUnderLoadTest(TlsCase):
    def test_ten_reloads_under_https_load_lose_nothing(self):
        p = self.pki
        self.start(self.certs_yaml((p.site_ecdsa, p.site_ecdsa_key), (p.site_rsa, p.site_rsa_key)),
                   threads=2)
        stop = threading.Event()
        counts = {"ok": 0, "errors": []}
        lock = threading.Lock()

        def client(keep_alive):
            ctx = client_context(p.root_ca)
            deadline = time.monotonic() + 60
            while not stop.is_set() and time.monotonic() < deadline:
                try:
                    with tls_connect(self.f.port, ctx, "site.test") as s:
                        for _ in range(20 if keep_alive else 1):
                            status, _ = request(s)
                            with lock:
                                if status == 200:
                                    counts["ok"] += 1
                                else:
                                    counts["errors"].append(status)
                except Exception as e:  # noqa: BLE001 - every failure is a finding
                    with lock:
                        counts["errors"].append(repr(e))
        threads = [threading.Thread(target=client, args=(i % 2 == 0,)) for i in range(4)]
        for t in threads:
            t.start()
        try:
            self.reload_times(10)
        finally:
            stop.set()
            for t in threads:
                t.join()
        self.assertEqual(counts["errors"], [])
        self.assertGreater(counts["ok"], 100)
        self.assertEqual(metric(self.metrics(), 'fulcrum_tls_handshake_failures_total{reason="other"}'), 0)


class ReloadUnderWrkTest(TlsCase):
    def test_reloads_under_wrk_https_load(self):
        """wrk over HTTPS (keep-alive and a new connection per request) while the certificates are
        reloaded ten times: every request answered 200, no socket error."""
        p = self.pki
        self.start(self.certs_yaml((p.site_ecdsa, p.site_ecdsa_key)), threads=2)
        runs = []
        for extra in ([], ["-H", "Connection: close"]):
            proc = subprocess.Popen(
                ["wrk", "-t1", "-c8", "-d6s"] + extra + ["https://127.0.0.1:%d/" % self.f.port],
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
            runs.append(proc)
        try:
            self.reload_times(10)
        finally:
            outputs = [r.communicate(timeout=30)[0].decode() for r in runs]
        for out in outputs:
            self.assertRegex(out, r"\d+ requests in", out)
            self.assertNotIn("Socket errors", out)
            self.assertNotIn("Non-2xx", out)
        self.assertEqual(self.f.log().count("configuration reloaded"), 10)
        text = self.metrics()
        failed = sum(metric(text, 'fulcrum_tls_handshake_failures_total{reason="%s"}' % r)
                     for r in ("http_request", "protocol_version", "no_shared_cipher",
                               "unknown_name", "bad_certificate", "no_certificate",
                               "bad_message", "timeout", "other"))
        self.assertEqual(failed, 0)
