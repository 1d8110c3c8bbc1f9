"""
test_http2.py - HTTP/2 to clients: h2 through ALPN on a TLS listener and h2c with prior
knowledge on a plain one, driven by curl, nghttp and h2load (Debian's nghttp2-client) and by raw
frames. Each stream is one request through the real fulcrum to a real fulcrum-backend; the tests
count what both sides saw: every request in the access log exactly once, every byte of large
uploads (the backend's X-Body-Bytes and X-Body-Crc32) and downloads, the SETTINGS a client is
given, the limits, GOAWAY, and a client that reads nothing holding fulcrum's memory flat.
"""
import collections
import json
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import threading
import time
import urllib.request
import zlib

from harness import FulcrumTestCase, fd_count, free_port, rss_kib, wait_for
from tlspki import make_pki

PKI_DIR = os.path.join(tempfile.gettempdir(), "fulcrum-e2e-pki")
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


def have(tool):
    return shutil.which(tool) is not None


def frame(ftype, flags, stream, payload=b""):
    return struct.pack(">I", len(payload))[1:] + bytes([ftype, flags]) + \
        struct.pack(">I", stream) + payload


def hpack_literal(name, value):
    """A header field as an HPACK literal without indexing, with a new name (RFC 7541 6.2.2)."""
    assert len(name) < 127 and len(value) < 127
    return b"\x00" + bytes([len(name)]) + name + bytes([len(value)]) + value


def get_headers(path, authority=b"t"):
    return (b"\x82\x86" + hpack_literal(b":path", path) +
            hpack_literal(b":authority", authority))


def read_frames(sock, until_type=None, timeout=5.0, until_end_of=None):
    """Frames (type, flags, stream, payload) read until a frame of until_type, the end of stream
    until_end_of (END_STREAM on DATA or HEADERS), the end of the connection or the timeout;
    returns them and whether the connection ended."""
    sock.settimeout(timeout)
    data, frames, ended = b"", [], False
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        while len(data) >= 9:
            length = int.from_bytes(data[:3], "big")
            if len(data) < 9 + length:
                break
            f = (data[3], data[4], int.from_bytes(data[5:9], "big") & 0x7fffffff,
                 data[9:9 + length])
            frames.append(f)
            data = data[9 + length:]
            if until_type is not None and f[0] == until_type:
                return frames, ended
            if f[2] == until_end_of and f[0] in (0, 1) and f[1] & 1:
                return frames, ended
        try:
            chunk = sock.recv(65536)
        except socket.timeout:
            break
        except ConnectionResetError:
            ended = True
            break
        if not chunk:
            ended = True
            break
        data += chunk
    return frames, ended


class Http2Case(FulcrumTestCase):
    def setUp(self):
        super().setUp()
        if not (have("curl") and have("nghttp") and have("h2load")):
            self.skipTest("curl, nghttp and h2load (nghttp2-client) are needed")
        self.pki = make_pki(PKI_DIR)
        self.b = self.backend("b0")
        self.dir = tempfile.mkdtemp(prefix="fulcrum-h2-")
        self.log_path = os.path.join(self.dir, "access.log")
        self.tls_port = free_port()

    def tearDown(self):
        super().tearDown()
        shutil.rmtree(self.dir, ignore_errors=True)

    def start(self, http2="", threads=1, extra="", server=None):
        text = ("threads: %d\n"
                "listeners:\n"
                "  - name: plain\n"
                "    bind: 127.0.0.1:{port}\n"
                "    pool: app\n"
                "    h2c: true\n%s"
                "  - name: https\n"
                "    bind: 127.0.0.1:%d\n"
                "    pool: app\n%s"
                "    tls:\n"
                "      certificates: [{cert: %s, key: %s}]\n"
                "pools:\n"
                "  - name: app\n"
                "    servers:\n"
                "      - { name: s0, address: %s }\n"
                "access_log:\n"
                "  path: %s\n"
                "%s" % (threads, http2, self.tls_port, http2, self.pki.site_ecdsa,
                        self.pki.site_ecdsa_key, server or self.b.address, self.log_path,
                        extra))
        self.f = self.fulcrum(text)
        self.plain = "http://127.0.0.1:%d" % self.f.port
        self.tls = "https://site.test:%d" % self.tls_port
        return self.f

    def curl(self, url, *args, timeout=30):
        """curl over h2 (prior knowledge for http://, ALPN for https://); returns (http_code,
        http_version, body bytes, headers text)."""
        head = os.path.join(self.dir, "head")
        body = os.path.join(self.dir, "body")
        argv = ["curl", "-sS", "-o", body, "-D", head, "-w", "%{http_code} %{http_version}",
                "--max-time", str(timeout)]
        if url.startswith("https"):
            argv += ["--http2", "--cacert", self.pki.root_ca,
                     "--resolve", "site.test:%d:127.0.0.1" % self.tls_port]
        else:
            argv += ["--http2-prior-knowledge"]
        out = subprocess.run(argv + list(args) + [url], capture_output=True, timeout=timeout + 5)
        code, version = out.stdout.decode().split()
        with open(body, "rb") as f:
            data = f.read()
        with open(head) as f:
            headers = f.read()
        return int(code), version, data, headers

    def log_lines(self, n, timeout=10):
        """The access log once it has n lines (the workers flush it every second)."""
        def lines():
            try:
                with open(self.log_path) as f:
                    return [json.loads(l) for l in f if l.strip()]
            except FileNotFoundError:
                return []
        wait_for(lambda: len(lines()) >= n, timeout=timeout, what="%d access log lines" % n)
        time.sleep(1.2)  # one more flush: nothing beyond n may come
        found = lines()
        self.assertEqual(len(found), n, found[n:n + 3])
        return found


class TestHttp2(Http2Case):
    def test_h2c_and_alpn_h2(self):
        self.start()
        code, version, body, headers = self.curl(self.plain + "/one?x=1")
        self.assertEqual((code, version), (200, "2"))
        self.assertIn("x-backend: b0", headers)
        code, version, body, headers = self.curl(self.tls + "/two")
        self.assertEqual((code, version), (200, "2"))
        # HTTP/1.1 is still offered, and still served on both listeners
        code, version, _, _ = self.curl(self.tls + "/three", "--http1.1")
        self.assertEqual((code, version), (200, "1.1"))
        out = subprocess.run(["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code} "
                              "%{http_version}", self.plain + "/four"], capture_output=True)
        self.assertEqual(out.stdout.decode(), "200 1.1")
        lines = self.log_lines(4)
        self.assertEqual([(l["target"], l["protocol"], l["status"]) for l in lines],
                         [("/one?x=1", "HTTP/2.0", 200), ("/two", "HTTP/2.0", 200),
                          ("/three", "HTTP/1.1", 200), ("/four", "HTTP/1.1", 200)])
        self.assertEqual(self.b.stats()["requests"], 4)

    def test_trailers_pass_through(self):
        """A chunked response's trailer fields arrive as a trailing HEADERS frame that ends the
        stream."""
        self.start()
        out = subprocess.run(["nghttp", "-v", self.plain + "/?size=100&chunked=1&chunk=40&"
                              "trailers=1"], capture_output=True, timeout=20).stdout.decode()
        data = out.index("recv DATA frame <length=100")
        trailer = out.index("recv (stream_id=13) x-trailer: done")
        self.assertLess(data, trailer, out)
        self.assertIn("END_STREAM | END_HEADERS", out[trailer:], out)

    def test_request_trailers_reach_the_server(self):
        """A request without content-length goes chunked, and its trailer fields follow the last
        chunk, byte for byte as the server sees them."""
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        seen = []

        def serve():
            conn, _ = listener.accept()
            conn.settimeout(10)
            data = b""
            while not data.endswith(b"\r\n0\r\nx-sum: 5\r\n\r\n") and len(data) < 65536:
                chunk = conn.recv(65536)
                if not chunk:
                    break
                data += chunk
            seen.append(data)
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            conn.close()
        t = threading.Thread(target=serve, daemon=True)
        t.start()
        self.start(server="127.0.0.1:%d" % listener.getsockname()[1])
        s = socket.create_connection(("127.0.0.1", self.f.port), timeout=5)
        post = (b"\x83\x86" + hpack_literal(b":path", b"/t") + hpack_literal(b":authority", b"t"))
        s.sendall(PREFACE + frame(4, 0, 0) + frame(1, 0x4, 1, post) +
                  frame(0, 0, 1, b"hello") + frame(1, 0x5, 1, hpack_literal(b"x-sum", b"5")))
        frames, _ = read_frames(s, timeout=10, until_end_of=1)
        s.close()
        t.join(10)
        listener.close()
        self.assertEqual(len(seen), 1)
        head, _, body = seen[0].partition(b"\r\n\r\n")
        self.assertIn(b"\r\nTransfer-Encoding: chunked", head)
        self.assertEqual(body, b"5\r\nhello\r\n0\r\nx-sum: 5\r\n\r\n")
        data = b"".join(f[3] for f in frames if f[0] == 0 and f[2] == 1)
        self.assertEqual(data, b"ok")
        self.assertTrue(any(f[2] == 1 and f[1] & 1 for f in frames))  # END_STREAM

    def test_upgrade_h2c_stays_refused(self):
        self.start()
        s = socket.create_connection(("127.0.0.1", self.f.port), timeout=5)
        s.sendall(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: Upgrade, HTTP2-Settings\r\n"
                  b"Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n\r\n")
        head = s.recv(65536)
        s.close()
        self.assertTrue(head.startswith(b"HTTP/1.1 200 "), head)
        self.assertNotIn(b"101", head.split(b"\r\n")[0])

    def test_large_upload_and_download_every_byte(self):
        self.start()
        data = os.urandom(6 * 1024 * 1024 + 123)
        path = os.path.join(self.dir, "up.bin")
        with open(path, "wb") as f:
            f.write(data)
        crc = "%08x" % zlib.crc32(data)
        for base in (self.plain, self.tls):
            # with Content-Length
            code, _, _, headers = self.curl(base + "/up", "--data-binary", "@" + path)
            self.assertEqual(code, 200)
            self.assertIn("x-body-bytes: %d" % len(data), headers)
            self.assertIn("x-body-crc32: " + crc, headers)
            # without: the server gets it chunked
            code, _, _, headers = self.curl(base + "/up", "-T", path, "-H",
                                            "content-length:")
            self.assertEqual(code, 200)
            self.assertIn("x-body-bytes: %d" % len(data), headers)
            self.assertIn("x-body-crc32: " + crc, headers)
        size = 20 * 1000 * 1000 + 7
        direct = subprocess.run(["curl", "-sS", "%s/dl?size=%d" % ("http://" + self.b.address,
                                                                    size)],
                                capture_output=True).stdout
        self.assertEqual(len(direct), size)
        for base in (self.plain, self.tls):
            for framing in ("", "&chunked=1", "&framing=close"):
                code, version, body, _ = self.curl(base + "/dl?size=%d%s" % (size, framing))
                self.assertEqual((code, version), (200, "2"), framing)
                self.assertEqual(len(body), size, framing)
                self.assertTrue(body == direct, framing)
        lines = self.log_lines(4 + 6)
        self.assertTrue(all(l["protocol"] == "HTTP/2.0" and l["status"] == 200 for l in lines))

    def test_many_streams_on_one_connection_each_logged_once(self):
        self.admin_port = free_port()
        self.start(threads=2, extra="admin:\n  bind: 127.0.0.1:%d\n" % self.admin_port)
        n = 1000
        uris = os.path.join(self.dir, "uris")
        with open(uris, "w") as f:
            for i in range(n):
                f.write("%s/?id=%d\n" % (self.plain, i))
        out = subprocess.run(["h2load", "-n", str(n), "-c", "1", "-m", "100", "-i", uris],
                             capture_output=True, timeout=60).stdout.decode()
        self.assertIn("%d succeeded, 0 failed" % n, out, out)
        self.assertIn("status codes: %d 2xx" % n, out, out)
        # and over TLS, several connections, many streams each
        out = subprocess.run(["h2load", "-n", "2000", "-c", "4", "-m", "50",
                              "https://127.0.0.1:%d/tls" % self.tls_port],
                             capture_output=True, timeout=60).stdout.decode()
        self.assertIn("2000 succeeded, 0 failed", out, out)
        lines = self.log_lines(n + 2000)
        ids = collections.Counter(l["target"] for l in lines if l["target"].startswith("/?id="))
        self.assertEqual(len(ids), n)
        self.assertEqual(set(ids.values()), {1})
        self.assertEqual(self.b.stats()["requests"], n + 2000)
        metrics = urllib.request.urlopen("http://127.0.0.1:%d/metrics" % self.admin_port,
                                         timeout=5).read().decode()
        self.assertIn("fulcrum_http2_connections_total 5\n", metrics)
        self.assertIn("fulcrum_http2_streams_total %d\n" % (n + 2000), metrics)

    def test_settings_limits_and_431(self):
        self.start(http2="    http2: {max_concurrent_streams: 7, max_header_list_size: 2k}\n")
        out = subprocess.run(["nghttp", "-v", self.plain + "/"], capture_output=True,
                             timeout=20).stdout.decode()
        self.assertIn("SETTINGS_MAX_CONCURRENT_STREAMS(0x03):7", out)
        self.assertIn("SETTINGS_MAX_HEADER_LIST_SIZE(0x06):2048", out)
        self.assertIn(":status: 200", out)
        code, version, _, _ = self.curl(self.plain + "/big", "-H", "x-big: " + "a" * 3000)
        self.assertEqual((code, version), (431, "2"))
        code, _, _, _ = self.curl(self.plain + "/small", "-H", "x-small: " + "a" * 1000)
        self.assertEqual(code, 200)
        # A client that opens 20 streams before it has our SETTINGS gets the 13 beyond 7
        # refused (REFUSED_STREAM: never started, safe to retry); after that it keeps to 7.
        out = subprocess.run(["h2load", "-n", "100", "-c", "1", "-m", "20",
                              self.plain + "/?delay=20"], capture_output=True,
                             timeout=60).stdout.decode()
        done = re.search(r"(\d+) succeeded, (\d+) failed", out)
        succeeded, failed = int(done.group(1)), int(done.group(2))
        self.assertEqual(succeeded + failed, 100, out)
        self.assertLessEqual(failed, 13, out)
        # refused streams never became requests: only the others are logged, with /, /big (431,
        # answered by the HTTP/2 layer) and /small
        lines = self.log_lines(succeeded + 3)
        self.assertEqual([(l["target"], l["status"], l["protocol"]) for l in lines[:3]],
                         [("/", 200, "HTTP/2.0"), ("/big", 431, "HTTP/2.0"),
                          ("/small", 200, "HTTP/2.0")])

    def test_reload_sends_goaway_and_open_streams_finish(self):
        self.start()
        slow = subprocess.Popen(["curl", "-sS", "--http2-prior-knowledge", "-o", "/dev/null",
                                 "-w", "%{http_code} %{http_version}",
                                 self.plain + "/slow?delay=1500"], stdout=subprocess.PIPE)
        wait_for(lambda: self.b.stats()["requests"] >= 1, what="the slow request at the backend")
        # a raw client on its own connection sees the GOAWAY
        s = socket.create_connection(("127.0.0.1", self.f.port), timeout=5)
        s.sendall(PREFACE + frame(4, 0, 0))
        read_frames(s, until_type=4, timeout=2)
        self.f.signal(signal.SIGHUP)
        frames, _ = read_frames(s, until_type=7, timeout=5)
        self.assertIn(7, [f[0] for f in frames])  # GOAWAY
        goaway = [f for f in frames if f[0] == 7][0]
        self.assertEqual(int.from_bytes(goaway[3][4:8], "big"), 0)  # NO_ERROR
        frames, ended = read_frames(s, timeout=5)
        self.assertTrue(ended)
        s.close()
        self.assertEqual(slow.communicate(timeout=10)[0].decode(), "200 2")
        code, _, _, _ = self.curl(self.plain + "/after")
        self.assertEqual(code, 200)

    def test_client_that_never_reads_is_closed(self):
        """A client that takes nothing, not even our RST_STREAM and GOAWAY, cannot keep its
        connection: its stream times out (timeouts.client), the stream idle timeout finds it
        reset and still there, and the connection goes a few seconds later."""
        self.start(http2="    http2: {stream_idle_timeout: 1s, idle_timeout: 1s}\n",
                   extra="timeouts: {client: 1s}\n")
        baseline = fd_count(self.f.proc.pid)
        s = socket.create_connection(("127.0.0.1", self.f.port), timeout=5)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        # windows as large as there are, so that fulcrum's socket fills up with DATA
        big = struct.pack(">HI", 4, 0x7fffffff)
        s.sendall(PREFACE + frame(4, 0, 0, big) +
                  frame(8, 0, 0, struct.pack(">I", 0x7fffffff - 65535)) +
                  frame(1, 0x5, 1, get_headers(b"/dl?size=300000000")))
        wait_for(lambda: fd_count(self.f.proc.pid) > baseline, what="the connection")
        wait_for(lambda: fd_count(self.f.proc.pid) <= baseline, timeout=20,
                 what="fulcrum to close the connection of a client that reads nothing")
        s.close()
        code, _, _, _ = self.curl(self.plain + "/")
        self.assertEqual(code, 200)

    def test_graceful_stop_lets_open_streams_finish(self):
        self.start(threads=2)
        slow = subprocess.Popen(["curl", "-sS", "--http2-prior-knowledge", "-o", "/dev/null",
                                 "-w", "%{http_code} %{http_version}",
                                 self.plain + "/slow?delay=1500"], stdout=subprocess.PIPE)
        wait_for(lambda: self.b.stats()["requests"] >= 1, what="the slow request at the backend")
        self.f.signal(signal.SIGTERM)
        self.assertEqual(slow.communicate(timeout=10)[0].decode(), "200 2")
        self.assertEqual(self.f.wait(timeout=10), 0)
        self.assertEqual(len(self.log_lines(1)), 1)

    def test_idle_connection_gets_goaway(self):
        self.start(http2="    http2: {idle_timeout: 1s}\n")
        s = socket.create_connection(("127.0.0.1", self.f.port), timeout=5)
        s.sendall(PREFACE + frame(4, 0, 0))
        start = time.monotonic()
        frames, ended = read_frames(s, timeout=6)
        s.close()
        self.assertIn(7, [f[0] for f in frames])
        self.assertTrue(ended)
        self.assertGreater(time.monotonic() - start, 0.8)

    def test_idle_stream_is_reset(self):
        self.start(http2="    http2: {stream_idle_timeout: 1s}\n")
        start = time.monotonic()
        out = subprocess.run(["curl", "-sS", "--http2-prior-knowledge", "-o", "/dev/null",
                              self.plain + "/?delay=4000"], capture_output=True, timeout=20)
        self.assertNotEqual(out.returncode, 0)
        self.assertLess(time.monotonic() - start, 3.5)
        code, _, _, _ = self.curl(self.plain + "/?delay=200")
        self.assertEqual(code, 200)

    def test_reader_that_never_reads_holds_memory_flat(self):
        """A client asks for 300 MB and reads nothing: fulcrum holds one stream's window and
        buffers, not the body, and the backend is held back."""
        self.start()
        s = socket.create_connection(("127.0.0.1", self.f.port), timeout=5)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        before = rss_kib(self.f.proc.pid)
        s.sendall(PREFACE + frame(4, 0, 0) +
                  frame(1, 0x5, 1, get_headers(b"/dl?size=300000000")))
        time.sleep(2)
        grown = rss_kib(self.f.proc.pid) - before
        self.assertLess(grown, 16 * 1024, "fulcrum grew by %d KiB" % grown)
        s.close()
        # the stream went away with its connection; fulcrum serves on
        code, _, _, _ = self.curl(self.plain + "/")
        self.assertEqual(code, 200)
