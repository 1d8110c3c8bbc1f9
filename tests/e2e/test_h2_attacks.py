"""
test_h2_attacks.py - the HTTP/2 attacks of issue 15 (h2attack.py) played against the real
fulcrum, in front of real fulcrum-backend servers, over h2c and TLS. Each test asserts what the
client saw (the frames fulcrum sent, when it closed), what the servers saw (fulcrum-backend's
/stats: connections, requests held, connections still open), fulcrum's counters (/metrics),
that its memory stays bounded, and that it serves a normal request afterwards.

The limits under test (docs/http2.md, "Protections"):
  - rapid reset: nghttp2's stream reset limit, 1,000 in a burst refilled at 33 per second, ends
    the connection with GOAWAY INTERNAL_ERROR (nghttp2's code for it); streams whose request
    had reached a server have that request cancelled, and counted in
    fulcrum_http2_streams_cancelled_total;
  - CONTINUATION floods: 8 CONTINUATION frames per header block, then the connection closes;
    an HPACK bomb's decoded list is capped by max_header_list_size (431);
  - SETTINGS and PING floods: at most 1,000 acknowledgements queued, and a client that does not
    read is not read either;
  - empty DATA frames: fulcrum's own limit, 100 in a burst, then one per 100 ms (GOAWAY
    ENHANCE_YOUR_CALM beyond);
  - stalls: stream_idle_timeout and idle_timeout end streams and connections a client stalls,
    and free their servers' connections at once;
  - invalid frames and states: the RFC 9113 verdict, or stricter.
"""
import os
import socket
import tempfile
import threading
import time

import h2attack as A
from harness import FulcrumTestCase, free_port, metric_value, rss_kib, wait_for
from tlspki import make_pki

PKI_DIR = os.path.join(tempfile.gettempdir(), "fulcrum-e2e-pki")

# nghttp2 (Debian's 1.52 with the CVE-2023-44487 fix) ends a rapid reset with INTERNAL_ERROR.
RAPID_RESET_GOAWAY = "INTERNAL_ERROR"
RESET_BURST, RESET_PER_S = 1000, 33   # nghttp2_option_set_stream_reset_rate_limit
EMPTY_DATA_BURST = 100                # session.c's EMPTY_DATA_BURST
MAX_OUTBOUND_ACK = 1000               # nghttp2_option_set_max_outbound_ack

# Invalid frames where nghttp2 answers with a connection error where RFC 9113 asks for a stream
# error (section 5.4.1 allows it): "stricter".
STRICTER = {
    "window_update_zero_stream",   # WINDOW_UPDATE 0 on a stream: GOAWAY PROTOCOL_ERROR
    "data_after_end_stream",       # DATA on a half-closed (remote) stream: GOAWAY STREAM_CLOSED
    "priority_self_dependency",    # PRIORITY on itself: GOAWAY PROTOCOL_ERROR
}
# Cases tested on their own below, not by the RFC verdict alone:
#   stream_id_backwards: nghttp2 ignores HEADERS on a stream id lower than the last one. It could
#     be the trailers of a stream it has reset and forgotten (no_closed_streams), which RFC 9113
#     section 5.1 says to ignore, and it cannot tell the two apart; the stream is never opened.
#   data_exceeds_window: a stream's window counts the WINDOW_UPDATEs fulcrum already queued as
#     the proxy forwards the body, so against a server that reads, the attack's extra byte is
#     within the window. Against a server fulcrum cannot reach yet, the window is the one the
#     client knows, and one byte more is FLOW_CONTROL_ERROR.
OWN_TEST = {"stream_id_backwards", "data_exceeds_window"}


def stuck_listener():
    """A listening socket whose accept queue is full and which accepts nothing: a connect to it
    gets no answer (its SYN is dropped) until the socket closes."""
    ln = socket.socket()
    ln.bind(("127.0.0.1", 0))
    ln.listen(0)
    fillers = []
    for _ in range(2):
        s = socket.socket()
        s.setblocking(False)
        s.connect_ex(ln.getsockname())
        fillers.append(s)
    return ln, fillers


class H2AttackCase(FulcrumTestCase):
    def setUp(self):
        super().setUp()
        self.pki = make_pki(PKI_DIR)
        self.b = self.backend("b0")
        self.admin_port = None

    def start(self, http2="", extra="", server=None):
        self.admin_port = free_port()
        self.tls_port = free_port()
        text = ("threads: 1\n"
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
                "admin:\n"
                "  bind: 127.0.0.1:%d\n"
                "%s" % (http2, self.tls_port, http2, self.pki.site_ecdsa,
                        self.pki.site_ecdsa_key, server or self.b.address, self.admin_port,
                        extra))
        self.f = self.fulcrum(text)
        self.port = self.f.port
        return self.f

    # -- what fulcrum and its server say

    def metric(self, name):
        return metric_value(self.admin_port, name)

    def rss(self):
        return rss_kib(self.f.proc.pid)

    def assert_bounded(self, before, what, limit_kib=16 * 1024):
        grown = self.rss() - before
        self.assertLess(grown, limit_kib, "%s: fulcrum grew by %d KiB" % (what, grown))

    def assert_healthy(self, tls=False):
        """A normal request on a new connection is served."""
        port = self.tls_port if tls else self.port
        status, body, _ = A.get("127.0.0.1", port, "/after", tls=tls, server_name="site.test")
        self.assertEqual(status, 200)
        self.assertEqual(body, b"Hello from b0\n")
        self.assertTrue(self.f.alive())

    def wait_backend_idle(self, timeout=5.0):
        """Every server connection fulcrum had open has been closed, and no request is held:
        only the /stats call itself is open."""
        def idle():
            s = self.b.stats()
            return s["active_connections"] == 1 and s["held_requests"] == 0 and s
        return wait_for(idle, timeout=timeout, what="the backend's connections to close")


class TestRapidReset(H2AttackCase):
    def check_rapid_reset(self, tls):
        self.start()
        before = self.rss()
        port = self.tls_port if tls else self.port
        out = A.rapid_reset("127.0.0.1", port, tls=tls, server_name="site.test", streams=2000,
                            path="/?hang=1")
        s = out.summary()
        self.assertEqual(out.goaway and out.goaway["error"], RAPID_RESET_GOAWAY, s)
        self.assertTrue(out.closed, s)
        # The 1,001st reset in a burst trips the limit: last_stream_id is that stream's (2001),
        # or a later one by the tokens refilled (33 per second) while the attack ran.
        last = out.goaway["last_stream_id"]
        refill = 2 * RESET_PER_S * (int(out.elapsed) + 1)
        self.assertTrue(2 * RESET_BURST + 1 <= last <= 2 * RESET_BURST + 1 + refill, s)
        self.assertEqual(out.responses, {}, s)
        # Streams reset before their request reached a server never did; those that got as far
        # as a connection to it were cancelled with it: fulcrum has nothing open at the server.
        stats = self.wait_backend_idle()
        cancelled = self.metric("fulcrum_http2_streams_cancelled_total")
        opened = self.metric("fulcrum_http2_streams_total")
        self.assertLessEqual(cancelled, opened)
        # nghttp2 takes new streams until its GOAWAY has been written, that is to the end of
        # the read in which the limit tripped: a few beyond last_stream_id, reset as well
        self.assertGreaterEqual(opened, last // 2 + 1)
        self.assertLessEqual(opened, out.params["streams_sent"])
        # every server connection fulcrum opened was for a stream that was then cancelled
        self.assertEqual(stats["connections"], cancelled, stats)
        self.assertEqual(stats["requests"], 0, stats)
        self.assert_bounded(before, "rapid reset")
        self.assert_healthy(tls)

    def test_rapid_reset_h2c(self):
        self.check_rapid_reset(False)

    def test_rapid_reset_tls(self):
        self.check_rapid_reset(True)

    def test_streams_reset_at_the_server_are_cancelled_and_counted(self):
        """Ten requests held by the server, then reset by the client: fulcrum closes the ten
        server connections, counts ten cancelled streams, and the client's connection goes on."""
        self.start()
        n = 10
        c = A.Conn("127.0.0.1", self.port)
        try:
            c.handshake()
            sids = [c.new_stream() for _ in range(n)]
            c.send(b"".join(A.frame(A.HEADERS, A.END_HEADERS | A.END_STREAM, sid,
                                    c.headers_block("/?hang=1&i=%d" % sid)) for sid in sids),
                   count=n)
            wait_for(lambda: self.b.stats()["held_requests"] == n, what="%d held requests" % n)
            self.assertEqual(self.metric("fulcrum_http2_streams_cancelled_total"), 0)
            c.send(b"".join(A.rst_stream(sid) for sid in sids), count=n)
            stats = self.wait_backend_idle()
            self.assertEqual(stats["connections"], n)
            self.assertEqual(stats["requests"], 0)
            self.assertEqual(self.metric("fulcrum_http2_streams_cancelled_total"), n)
            # the connection still serves: one more stream, answered, and not counted
            sid = c.new_stream()
            c.send(A.frame(A.HEADERS, A.END_HEADERS | A.END_STREAM, sid, c.headers_block("/")))
            c.read_for(5, until=lambda: c.out.responses.get(200))
            self.assertEqual(c.out.responses, {200: 1}, c.out.summary())
            self.assertIsNone(c.out.goaway, c.out.summary())
            self.assertEqual(c.out.rst, {}, c.out.summary())
        finally:
            c.close()
        self.assertEqual(self.metric("fulcrum_http2_streams_total"), n + 1)
        self.assertEqual(self.metric("fulcrum_http2_streams_cancelled_total"), n)


class TestHeaderFloods(H2AttackCase):
    def test_continuation_floods_close_the_connection(self):
        self.start()
        before = self.rss()
        for attack, frames in ((A.continuation_flood, 20000), (A.continuation_flood_big, 400)):
            out = attack("127.0.0.1", self.port, frames=frames)
            s = out.summary()
            self.assertTrue(out.closed, s)
            self.assertEqual(out.responses, {}, s)
            # at most 8 CONTINUATION frames after the HEADERS are read: the client is cut off
            # within the batches it had already written
            self.assertLess(out.sent_frames, frames // 4, s)
            self.assertLess(out.closed_after, 2, s)
        self.assertEqual(self.b.stats()["requests"], 0)
        self.assert_bounded(before, "CONTINUATION floods")
        self.assert_healthy()

    def test_hpack_bomb_is_431(self):
        """16 KB on the wire that decode to 64 MB: the stream gets 431 once the decoded list
        passes max_header_list_size, and never reaches the server; the first one does."""
        self.start()
        before = self.rss()
        out = A.hpack_bomb("127.0.0.1", self.port, wait=0.5)
        s = out.summary()
        self.assertEqual(out.responses, {200: 1, 431: 1}, s)
        self.assertIsNone(out.goaway, s)
        self.assertEqual(self.b.stats()["requests"], 1)
        self.assert_bounded(before, "HPACK bomb")
        self.assert_healthy()


class TestControlFloods(H2AttackCase):
    def flood_in_one_write(self, frame, count):
        """count frames in one write, nothing read meanwhile; returns the Outcome."""
        c = A.Conn("127.0.0.1", self.port, outcome=A.Outcome("flood", {"count": count}))
        try:
            c.handshake()
            c.read_for(0.05)
            c.start_clock()
            c.send(frame * count, count=count, read=False)
            c.read_for(3)
        finally:
            c.close()
        return c.out

    def test_ping_and_settings_acks_are_capped(self):
        """1,150 PINGs (or SETTINGS) in one read: fulcrum queues 1,000 acknowledgements, and the
        next one ends the connection. 990 are all answered."""
        self.start()
        before = self.rss()
        out = self.flood_in_one_write(A.ping(b"12345678"), 1150)
        self.assertEqual(out.frames["PING"], MAX_OUTBOUND_ACK, out.summary())
        self.assertEqual(out.closed, "EOF", out.summary())
        out = self.flood_in_one_write(A.settings_frame([(A.S_MAX_CONCURRENT_STREAMS, 100)]), 1150)
        # our own SETTINGS, the ack of the handshake's, and 1,000 more
        self.assertEqual(out.frames["SETTINGS"], 2 + MAX_OUTBOUND_ACK, out.summary())
        self.assertEqual(out.closed, "EOF", out.summary())
        out = self.flood_in_one_write(A.ping(b"12345678"), 990)
        self.assertEqual(out.frames["PING"], 990, out.summary())
        self.assertIsNone(out.closed, out.summary())
        self.assert_bounded(before, "PING and SETTINGS floods")
        self.assert_healthy()

    def test_long_floods_are_held_back(self):
        """20,000 PINGs sent without reading, and 20,000 SETTINGS: fulcrum reads no more than it
        can answer, so the floods either end the connection or are answered, without growing
        fulcrum's memory."""
        self.start()
        before = self.rss()
        for attack, kind in ((A.ping_flood, "PING"), (A.settings_flood, "SETTINGS")):
            out = attack("127.0.0.1", self.port, count=20000, wait=0.5)
            s = out.summary()
            acks = out.frames[kind] - (2 if kind == "SETTINGS" else 1)  # ours, the probe's
            self.assertTrue(out.closed or acks == out.params["sent"], s)
            self.assertLessEqual(acks, out.params["sent"], s)
        self.assert_bounded(before, "long floods")
        self.assert_healthy()


class TestEmptyData(H2AttackCase):
    def post_with_empty_frames(self, pattern):
        """A POST whose body is sent as pattern: a list of bytes, one DATA frame each, then an
        empty DATA frame with END_STREAM; all in one write. Returns the Outcome."""
        c = A.Conn("127.0.0.1", self.port, outcome=A.Outcome("empty", {"frames": len(pattern)}))
        try:
            c.handshake()
            sid = c.new_stream()
            frames = [A.frame(A.HEADERS, A.END_HEADERS, sid, c.headers_block("/up", "POST"))]
            frames += [A.frame(A.DATA, 0, sid, p) for p in pattern]
            frames.append(A.frame(A.DATA, A.END_STREAM, sid))
            c.start_clock()
            c.send(b"".join(frames), count=len(frames))
            c.read_for(3, until=lambda: c.out.responses)
            c.read_for(0.2)
        finally:
            c.close()
        return c.out

    def test_empty_data_flood_gets_goaway(self):
        self.start()
        before = self.rss()
        out = A.empty_data_flood("127.0.0.1", self.port, count=20000, path="/up")
        s = out.summary()
        self.assertEqual(out.goaway and out.goaway["error"], "ENHANCE_YOUR_CALM", s)
        self.assertTrue(out.closed, s)
        self.assertLess(out.sent_frames, 20000, s)
        # the POST had reached the server: its request was cancelled with the connection
        self.wait_backend_idle()
        self.assertEqual(self.metric("fulcrum_http2_streams_cancelled_total"), 1)
        self.assert_bounded(before, "empty DATA flood")
        self.assert_healthy()

    def test_empty_data_limit_is_exact(self):
        """100 empty DATA frames in a burst are allowed, the 101st is not; frames with data in
        between do not reset the count; the END_STREAM frame is not counted."""
        self.start()
        out = self.post_with_empty_frames([b""] * EMPTY_DATA_BURST + [b"x"])
        self.assertEqual(out.responses, {200: 1}, out.summary())
        self.assertIsNone(out.goaway, out.summary())
        out = self.post_with_empty_frames([b""] * (EMPTY_DATA_BURST + 1) + [b"x"])
        self.assertEqual(out.goaway and out.goaway["error"], "ENHANCE_YOUR_CALM", out.summary())
        self.assertEqual(out.responses, {}, out.summary())
        self.assertTrue(out.closed, out.summary())
        out = self.post_with_empty_frames([b"", b"x"] * (EMPTY_DATA_BURST + 1))
        self.assertEqual(out.goaway and out.goaway["error"], "ENHANCE_YOUR_CALM", out.summary())
        self.assert_healthy()


class TestStalls(H2AttackCase):
    def test_stalled_clients_time_out_and_free_their_servers(self):
        """zero_window (the client never opens its window) and stall_reading (it stops reading)
        at once: both streams are reset after stream_idle_timeout (timeouts.client is far
        away), both server connections are closed then, long before the client connections end
        (idle_timeout after the reset for the first; for the second, which takes nothing, not
        even the RST_STREAM, 5 s after its stream was found still there)."""
        self.start(http2="    http2: {stream_idle_timeout: 1s, idle_timeout: 1s}\n",
                   extra="timeouts: {client: 60s}\n")
        before = self.rss()
        outs = {}

        def play(name, **kw):
            outs[name] = A.ATTACKS[name]("127.0.0.1", self.port, **kw)
        threads = [threading.Thread(target=play, args=("zero_window",),
                                    kwargs={"path": "/?size=10000000", "wait": 10}),
                   threading.Thread(target=play, args=("stall_reading",),
                                    kwargs={"path": "/?size=300000000", "wait": 10})]
        start = time.monotonic()
        for t in threads:
            t.start()
        wait_for(lambda: self.b.stats()["active_connections"] == 3, timeout=5,
                 what="both requests at the server")
        self.wait_backend_idle(timeout=4)
        freed = time.monotonic() - start
        self.assertEqual(self.metric("fulcrum_http2_streams_cancelled_total"), 2)
        for t in threads:
            t.join(20)
        zw, sr = outs["zero_window"], outs["stall_reading"]
        # zero_window: the response head went, then RST_STREAM CANCEL after the idle second,
        # then GOAWAY NO_ERROR an idle second later
        self.assertEqual(zw.responses, {200: 1}, zw.summary())
        self.assertEqual(zw.rst_streams, {1: "CANCEL"}, zw.summary())
        self.assertTrue(0.8 < zw.rst_after < 3, zw.summary())
        self.assertEqual(zw.goaway and zw.goaway["error"], "NO_ERROR", zw.summary())
        self.assertTrue(zw.closed and zw.closed_after < zw.rst_after + 3, zw.summary())
        # stall_reading: closed, by fulcrum, within stream_idle_timeout x 2 + 5 s and a margin
        self.assertIsNotNone(sr.closed_after, sr.summary())
        self.assertLess(sr.closed_after, 10, sr.summary())
        self.assertLess(freed, min(zw.closed_after, sr.closed_after), (freed, zw.summary()))
        # both responses had begun (the server counts them), neither was complete
        self.assertEqual(self.b.stats()["requests"], 2)
        self.assert_bounded(before, "stalls")
        self.assert_healthy()


class TestInvalidFrames(H2AttackCase):
    def check_invalid_frames(self, tls):
        self.start()
        port = self.tls_port if tls else self.port
        for name, attack in A.ATTACKS.items():
            if not attack.expected or name in OWN_TEST:
                continue
            out = attack("127.0.0.1", port, tls=tls, server_name="site.test", wait=0.3)
            s = out.summary()
            if name in STRICTER:
                self.assertTrue(out.verdict.startswith("stricter"), s)
            else:
                self.assertTrue(out.verdict.startswith("as expected"), s)
            if out.expected.startswith("stream"):
                # a stream error leaves the connection working: the probe PING was answered
                # (stricter ones closed it)
                self.assertTrue(name in STRICTER or out.frames["PING"] >= 1, s)
        self.assertEqual(self.b.stats()["requests"], 0)
        self.assert_healthy(tls)

    def test_invalid_frames_h2c(self):
        self.check_invalid_frames(False)

    def test_invalid_frames_tls(self):
        self.check_invalid_frames(True)

    def test_stream_id_backwards_is_ignored(self):
        """HEADERS on stream 5, then on stream 3: stream 5 is served, stream 3 is never opened
        (see OWN_TEST), and the connection goes on."""
        self.start()
        out = A.stream_id_backwards("127.0.0.1", self.port, wait=0.3)
        s = out.summary()
        self.assertEqual(out.responses, {200: 1}, s)
        self.assertIsNone(out.goaway, s)
        self.assertEqual(out.rst, {}, s)
        self.assertGreaterEqual(out.frames["PING"], 1, s)
        self.assertEqual(self.b.stats()["requests"], 1)
        self.assertEqual(self.metric("fulcrum_http2_streams_total"), 1)

    def test_data_beyond_the_window_is_flow_control_error(self):
        """With the server out of reach (its SYN unanswered), nothing of the body is forwarded,
        so the window is the client's: one byte more is a stream FLOW_CONTROL_ERROR."""
        ln, fillers = stuck_listener()
        try:
            self.start(extra="timeouts: {connect: 10s}\n",
                       server="127.0.0.1:%d" % ln.getsockname()[1])
            out = A.data_exceeds_window("127.0.0.1", self.port, wait=0.5)
            s = out.summary()
            self.assertEqual(out.verdict, "as expected", s)
            self.assertEqual(out.rst_streams, {1: "FLOW_CONTROL_ERROR"}, s)
            self.assertIsNone(out.goaway, s)
        finally:
            for s in fillers:
                s.close()
            ln.close()
