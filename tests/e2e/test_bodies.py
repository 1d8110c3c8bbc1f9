"""
test_bodies.py - request and response bodies, streamed both ways: Content-Length, chunked with
trailers, close-delimited, and 1 GiB each way with fulcrum's memory held flat.
"""
import os
import socket
import subprocess
import threading
import time
import zlib

from harness import (SANITIZED, FulcrumTestCase, Reader, config, connect, exchange, rss_kib,
                     wait_for)

GIB = 1 << 30
# The sanitizer build is several times slower; its run checks correctness on less data.
BIG = int(os.environ.get("FULCRUM_E2E_BIG", 128 << 20 if SANITIZED else GIB))


def pattern(n):
    alphabet = bytes(range(ord("a"), ord("z") + 1))
    return (alphabet * (n // 26 + 1))[:n]


class BodiesTest(FulcrumTestCase):
    def setUp(self):
        super().setUp()
        self.b = self.backend("b1")
        self.f = self.fulcrum(config([("s1", self.b.address)]))

    def test_content_length_upload(self):
        body = os.urandom(300000)
        with connect(self.f.port) as s:
            s.sendall(b"POST /u HTTP/1.1\r\nHost: h\r\nContent-Length: %d\r\n\r\n" % len(body))
            s.sendall(body)
            resp = Reader(s).read_response()
        self.assertEqual(resp.status, 200)
        self.assertEqual(resp.header("X-Body-Bytes"), str(len(body)))
        self.assertEqual(resp.header("X-Body-Crc32"), "%08x" % zlib.crc32(body))

    def test_chunked_upload_with_trailers(self):
        parts = [os.urandom(n) for n in (1, 1000, 70000, 5)]
        wire = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in parts)
        wire += b"0\r\nX-Checksum: abc\r\n\r\n"
        with connect(self.f.port) as s:
            s.sendall(b"POST /u?echo=1 HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n")
            for i in range(0, len(wire), 777):  # awkward splits
                s.sendall(wire[i:i + 777])
            resp = Reader(s).read_response()
        body = b"".join(parts)
        self.assertEqual(resp.status, 200)
        self.assertEqual(resp.header("X-Body-Crc32"), "%08x" % zlib.crc32(body))
        self.assertTrue(resp.body.endswith(body))

    def test_chunked_download_with_trailers(self):
        with connect(self.f.port) as s:
            s.sendall(b"GET /?size=250000&chunked=1&chunk=9999&trailers=1 HTTP/1.1\r\n"
                      b"Host: h\r\n\r\n")
            r = Reader(s)
            resp = r.read_response()
            self.assertEqual(resp.header("Transfer-Encoding"), "chunked")
            self.assertEqual(resp.body, pattern(250000))
            self.assertIn(("X-Trailer", "done"), resp.trailers)
            # keep-alive continues after a chunked message
            s.sendall(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
            self.assertEqual(r.read_response().status, 200)

    def test_close_delimited_download(self):
        with connect(self.f.port) as s:
            s.sendall(b"GET /?size=100000&framing=close HTTP/1.1\r\nHost: h\r\n\r\n")
            r = Reader(s)
            resp = r.read_response()
            self.assertEqual(resp.header("Connection"), "close")
            self.assertIsNone(resp.header("Content-Length"))
            self.assertEqual(resp.body, pattern(100000))
            self.assertTrue(resp.complete)

    def test_slow_reader_gets_everything(self):
        """Backpressure: a client that reads slowly still gets every byte, in order."""
        size = 4 << 20
        with connect(self.f.port) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            s.sendall(b"GET /?size=%d HTTP/1.1\r\nHost: h\r\n\r\n" % size)
            time.sleep(0)  # the reads below are the slow part
            r = Reader(s)
            resp = __import__("harness").Response()
            r.read_head(resp)
            got = len(r.buf)
            r.buf = b""
            while got < size:
                data = s.recv(8192)
                self.assertTrue(data)
                got += len(data)
        self.assertEqual(got, size)

    def _rss_during(self, action):
        """Runs action() while sampling fulcrum's RSS; returns (baseline, peak) in KiB."""
        # Warm up: one request of each kind allocates the thread's buffers and objects.
        for raw in (b"GET /?size=100000 HTTP/1.1\r\nHost: h\r\n\r\n",
                    b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 100000\r\n\r\n" +
                    b"x" * 100000):
            exchange(self.f.port, raw)
        baseline = rss_kib(self.f.pid)
        peak = [baseline]
        done = threading.Event()

        def sample():
            while not done.is_set():
                peak[0] = max(peak[0], rss_kib(self.f.pid))
                time.sleep(0.02)
        t = threading.Thread(target=sample)
        t.start()
        try:
            action()
        finally:
            done.set()
            t.join()
        return baseline, peak[0]

    def test_big_download_memory_flat(self):
        def download():
            out = subprocess.run(
                ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code} %{size_download}",
                 "http://127.0.0.1:%d/?size=%d" % (self.f.port, BIG)],
                capture_output=True, text=True, timeout=600)
            self.assertEqual(out.stdout, "200 %d" % BIG)
        base, peak = self._rss_during(download)
        print("\n    download %d MiB: fulcrum RSS %d KiB -> peak %d KiB (+%d KiB)" % (
            BIG >> 20, base, peak, peak - base))
        if not SANITIZED:
            self.assertLess(peak - base, 2048)

    def test_big_upload_memory_flat(self):
        crc = [0]

        def upload():
            chunk = pattern(1 << 20)
            with connect(self.f.port, timeout=600) as s:
                s.sendall(b"POST /big HTTP/1.1\r\nHost: h\r\nContent-Length: %d\r\n\r\n" % BIG)
                sent = 0
                c = 0
                while sent < BIG:
                    piece = chunk[:min(len(chunk), BIG - sent)]
                    s.sendall(piece)
                    c = zlib.crc32(piece, c)
                    sent += len(piece)
                crc[0] = c
                resp = Reader(s).read_response()
                self.assertEqual(resp.status, 200)
                self.assertEqual(resp.header("X-Body-Bytes"), str(BIG))
                self.assertEqual(resp.header("X-Body-Crc32"), "%08x" % crc[0])
        base, peak = self._rss_during(upload)
        print("\n    upload %d MiB: fulcrum RSS %d KiB -> peak %d KiB (+%d KiB)" % (
            BIG >> 20, base, peak, peak - base))
        if not SANITIZED:
            self.assertLess(peak - base, 2048)
