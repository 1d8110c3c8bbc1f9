"""
badserver.py - HTTP servers that each misbehave in exactly one way, on every connection.

    s = BadServer("no_answer", name="bad")  # on 127.0.0.1, a port of the kernel's choice
    s.address                                # "127.0.0.1:PORT", for a fulcrum configuration
    s.stats()                                # counters: connections accepted, open, requests...
    s.heal()                                 # from now on: 200 with a small body, keep-alive
    s.close()

Modes (what happens to each request on the traffic port):

    no_read          accept the connection and never read from it; it stays open until the peer
                     closes it (the request sits in kernel buffers)
    no_answer        read the request, never answer; wait for the peer to close
    garbage          read the request, answer bytes that are not HTTP, close
    close_before     read the request, close (FIN) without a byte of response
    close_mid_body   a 200 head with Content-Length: body_size and a third of the body, then a
                     close (FIN)
    reset_mid_body   the same, then a reset (SO_LINGER 0)
    close_mid_chunk  a chunked 200 head and part of a chunk, then a close (no final 0-chunk)
    drip_head        a normal response whose head is sent one byte every drip_ms
    drip_body        a 200 head at once with Content-Length: drip_bytes, then one body byte every
                     drip_ms
    slow             wait delay_ms, then a normal 200 (whether or not the peer is still there)
    ok               a normal 200 "ok from NAME", keep-alive (what heal() switches to)

The cut modes pause cut_ms after the partial response before closing or resetting, so the
peer reads what was sent before the connection ends (a reset can make the peer's kernel drop
bytes it has not read yet).

Health checks. healthy_checks=True answers `GET /healthcheck` with check_status (200) on the
traffic port whatever the mode, so checks pass while traffic fails. In no_read mode the request
is peeked at (MSG_PEEK) for up to 200 ms to tell a check from traffic, and traffic bytes are left
unread. health=True also opens a separate health port (health_port) answering check_status.
Check connections are counted in `checks`, not in `requests`.

Counters (stats()): accepted and open (every connection, checks included), requests (traffic
requests read; a no_read connection counts as one at accept), checks, answered (complete
responses sent), faults (faulty acts performed), methods, peer_gone_before_answer (slow mode:
the peer had closed before the answer went out), received (bytes read), check_times
(time.time() of each check).

Standard library only; one thread per connection. Run on its own for a network namespace:
    python3 -m faults.badserver --mode drip_head --listen 10.253.1.2:8001 --name remote
"""
import argparse
import re
import select
import socket
import struct
import sys
import threading
import time

MODES = ("no_read", "no_answer", "garbage", "close_before", "close_mid_body", "reset_mid_body",
         "close_mid_chunk", "drip_head", "drip_body", "slow", "ok")

# Not HTTP: a TLS record header followed by text, with an empty line so that a parser that waits
# for the end of a head has one and must judge it.
GARBAGE = b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1garbage, not an HTTP response\r\n\r\n"

ALPHABET = bytes(range(ord("a"), ord("z") + 1))


def pattern(n):
    return (ALPHABET * (n // 26 + 1))[:n]


class _Gone(Exception):
    """The peer closed or reset the connection, or the server is stopping."""


class BadServer:
    def __init__(self, mode, name="bad", host="127.0.0.1", port=0, drip_ms=500, drip_bytes=10,
                 delay_ms=1000, body_size=30000, cut_ms=50, healthy_checks=False, health=False):
        if mode not in MODES:
            raise ValueError("unknown mode %r (one of %s)" % (mode, ", ".join(MODES)))
        self.mode = mode
        self.name = name
        self.drip_ms = drip_ms
        self.drip_bytes = drip_bytes
        self.delay_ms = delay_ms
        self.body_size = body_size
        self.cut_ms = cut_ms
        self.healthy_checks = healthy_checks
        self.check_status = 200
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.conns = set()
        self.counters = {"accepted": 0, "open": 0, "requests": 0, "checks": 0, "answered": 0,
                         "faults": 0, "peer_gone_before_answer": 0, "received": 0}
        self.methods = {}
        self.check_times = []
        self.sock = self._listen(host, port)
        self.host, self.port = self.sock.getsockname()[:2]
        self.threads = [threading.Thread(target=self._accept, args=(self.sock, self._serve),
                                         daemon=True)]
        self.health_sock = None
        self.health_port = None
        if health:
            self.health_sock = self._listen(host, 0)
            self.health_port = self.health_sock.getsockname()[1]
            self.threads.append(threading.Thread(
                target=self._accept, args=(self.health_sock, self._serve_health), daemon=True))
        for t in self.threads:
            t.start()

    # ---- control ----

    @property
    def address(self):
        return "%s:%d" % (self.host, self.port)

    def heal(self):
        """New requests get 200 with a small body on a keep-alive connection from now on."""
        self.set_mode("ok")

    def set_mode(self, mode):
        if mode not in MODES:
            raise ValueError("unknown mode %r" % mode)
        with self.lock:
            self.mode = mode

    def stats(self):
        with self.lock:
            d = dict(self.counters)
            d["methods"] = dict(self.methods)
            d["check_times"] = list(self.check_times)
            d["mode"] = self.mode
            return d

    def get(self, key):
        with self.lock:
            return self.counters[key]

    def close(self):
        self.stopping.set()
        for s in (self.sock, self.health_sock):
            if s is not None:
                try:
                    s.shutdown(socket.SHUT_RDWR)  # wakes accept()
                except OSError:
                    pass
                s.close()
        with self.lock:
            conns = list(self.conns)
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    # ---- plumbing ----

    @staticmethod
    def _listen(host, port):
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        s = socket.socket(family, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((host, port))
        s.listen(128)
        return s

    def _count(self, key, n=1):
        with self.lock:
            self.counters[key] += n

    def _accept(self, lsock, serve):
        while not self.stopping.is_set():
            try:
                conn, _ = lsock.accept()
            except OSError:
                return
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self.lock:
                self.counters["accepted"] += 1
                self.counters["open"] += 1
                self.conns.add(conn)
            threading.Thread(target=self._run, args=(serve, conn), daemon=True).start()

    def _run(self, serve, conn):
        try:
            serve(conn)
        except (_Gone, OSError):
            pass
        finally:
            with self.lock:
                self.conns.discard(conn)
                self.counters["open"] -= 1
            try:
                conn.close()
            except OSError:
                pass

    def _wait(self, seconds):
        """A pause that ends early when the server stops."""
        if self.stopping.wait(seconds):
            raise _Gone()

    def _recv(self, conn, n=65536):
        """recv() that wakes every 100 ms to see whether the server is stopping."""
        conn.settimeout(0.1)
        while True:
            if self.stopping.is_set():
                raise _Gone()
            try:
                data = conn.recv(n)
            except socket.timeout:
                continue
            except (ConnectionResetError, BrokenPipeError):
                raise _Gone()
            if not data:
                raise _Gone()
            self._count("received", len(data))
            return data

    def _send(self, conn, data):
        conn.settimeout(5)
        try:
            conn.sendall(data)
        except (OSError, socket.timeout):
            raise _Gone()

    def _read_request(self, conn, buf):
        """Reads one request (head and body). Returns (method, target, headers, rest of buf)."""
        while b"\r\n\r\n" not in buf:
            buf += self._recv(conn)
        head, _, buf = buf.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        parts = lines[0].split(b" ")
        method = parts[0].decode("latin-1")
        target = parts[1].decode("latin-1") if len(parts) > 1 else ""
        headers = {}
        for line in lines[1:]:
            k, _, v = line.partition(b":")
            headers[k.strip().lower().decode("latin-1")] = v.strip().decode("latin-1")
        if "content-length" in headers:
            n = int(headers["content-length"])
            while len(buf) < n:
                buf += self._recv(conn)
            buf = buf[n:]
        elif "chunked" in headers.get("transfer-encoding", "").lower():
            while b"0\r\n\r\n" not in buf:
                buf += self._recv(conn)
            buf = buf.partition(b"0\r\n\r\n")[2]
        return method, target, headers, buf

    @staticmethod
    def _is_check(method, target):
        return method in ("GET", "HEAD") and target.split("?")[0] == "/healthcheck"

    def _answer_check(self, conn):
        with self.lock:
            self.counters["checks"] += 1
            self.check_times.append(time.time())
            status = self.check_status
        body = b"ok\n" if status < 400 else b"failing\n"
        self._send(conn, b"HTTP/1.1 %d %s\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s" %
                   (status, b"OK" if status < 400 else b"Failing", len(body), body))

    def _wait_peer_gone(self, conn):
        """Holds the connection, reading nothing, until the peer closes or resets it."""
        p = select.poll()
        p.register(conn, select.POLLRDHUP | select.POLLHUP | select.POLLERR)
        while not self.stopping.is_set():
            if p.poll(100):
                return
        raise _Gone()

    def _peer_gone(self, conn):
        p = select.poll()
        p.register(conn, select.POLLRDHUP | select.POLLHUP | select.POLLERR)
        return bool(p.poll(0))

    def _peek_check(self, conn):
        """no_read mode: is this connection a health check? Peeks for up to 200 ms."""
        deadline = time.monotonic() + 0.2
        conn.settimeout(0.02)
        data = b""
        while time.monotonic() < deadline and b"\r\n\r\n" not in data:
            try:
                data = conn.recv(4096, socket.MSG_PEEK)
            except socket.timeout:
                continue
            if not data:
                return False
        return bool(re.match(rb"(GET|HEAD) /healthcheck[ ?]", data)) and b"\r\n\r\n" in data

    def _head(self, status=200, reason=b"OK", fields=b""):
        return (b"HTTP/1.1 %d %s\r\nX-Backend: %s\r\nContent-Type: text/plain\r\n%s\r\n" %
                (status, reason, self.name.encode(), fields))

    def _ok_response(self, close):
        body = b"ok from %s\n" % self.name.encode()
        fields = b"Content-Length: %d\r\n" % len(body)
        if close:
            fields += b"Connection: close\r\n"
        return self._head(fields=fields) + body

    # ---- the traffic port ----

    def _serve(self, conn):
        buf = b""
        while True:
            mode = self.mode
            if mode == "no_read":
                if self.healthy_checks and self._peek_check(conn):
                    method, target, headers, buf = self._read_request(conn, buf)
                    self._answer_check(conn)
                    return
                with self.lock:
                    self.counters["requests"] += 1
                    self.counters["faults"] += 1
                self._wait_peer_gone(conn)
                return
            method, target, headers, buf = self._read_request(conn, buf)
            if self._is_check(method, target) and (self.healthy_checks or self.mode == "ok"):
                self._answer_check(conn)
                return
            mode = self.mode
            with self.lock:
                self.counters["requests"] += 1
                self.methods[method] = self.methods.get(method, 0) + 1
                if mode not in ("ok", "slow"):
                    self.counters["faults"] += 1
            close = headers.get("connection", "").lower() == "close"
            if getattr(self, "_do_" + mode)(conn, close) == "close" or close:
                return

    def _do_ok(self, conn, close):
        self._send(conn, self._ok_response(close))
        self._count("answered")

    def _do_slow(self, conn, close):
        self._wait(self.delay_ms / 1000.0)
        if self._peer_gone(conn):
            self._count("peer_gone_before_answer")
        self._send(conn, self._ok_response(close))
        self._count("answered")

    def _do_no_read(self, conn, close):
        # The connection was already reading (a keep-alive one that began in another mode):
        # the request is read, and it is never answered.
        self._do_no_answer(conn, close)

    def _do_no_answer(self, conn, close):
        while True:
            self._recv(conn)  # discards; returns by _Gone when the peer closes

    def _do_garbage(self, conn, close):
        self._send(conn, GARBAGE)
        return "close"

    def _do_close_before(self, conn, close):
        return "close"

    def _cut(self, conn, data, reset):
        self._send(conn, data)
        self._wait(self.cut_ms / 1000.0)
        if reset:
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        return "close"

    def _do_close_mid_body(self, conn, close):
        n = self.body_size
        head = self._head(fields=b"Content-Length: %d\r\n" % n)
        return self._cut(conn, head + pattern(n // 3), reset=False)

    def _do_reset_mid_body(self, conn, close):
        n = self.body_size
        head = self._head(fields=b"Content-Length: %d\r\n" % n)
        return self._cut(conn, head + pattern(n // 3), reset=True)

    def _do_close_mid_chunk(self, conn, close):
        n = self.body_size
        head = self._head(fields=b"Transfer-Encoding: chunked\r\n")
        return self._cut(conn, head + b"%x\r\n" % n + pattern(n // 3), reset=False)

    def _do_drip_head(self, conn, close):
        data = self._ok_response(close)
        head_len = data.index(b"\r\n\r\n") + 4
        for i in range(head_len):
            self._send(conn, data[i:i + 1])
            if i + 1 < head_len:
                self._wait(self.drip_ms / 1000.0)
        self._send(conn, data[head_len:])
        self._count("answered")

    def _do_drip_body(self, conn, close):
        n = self.drip_bytes
        fields = b"Content-Length: %d\r\n" % n
        if close:
            fields += b"Connection: close\r\n"
        self._send(conn, self._head(fields=fields))
        body = pattern(n)
        for i in range(n):
            self._wait(self.drip_ms / 1000.0)
            self._send(conn, body[i:i + 1])
        self._count("answered")

    # ---- the health port ----

    def _serve_health(self, conn):
        self._read_request(conn, b"")
        self._answer_check(conn)


def main():
    ap = argparse.ArgumentParser(description="a misbehaving HTTP server (see the module text)")
    ap.add_argument("--mode", required=True, choices=MODES)
    ap.add_argument("--listen", required=True, help="HOST:PORT")
    ap.add_argument("--name", default="bad")
    ap.add_argument("--drip-ms", type=int, default=500)
    ap.add_argument("--delay-ms", type=int, default=1000)
    ap.add_argument("--healthy-checks", action="store_true")
    args = ap.parse_args()
    host, _, port = args.listen.rpartition(":")
    s = BadServer(args.mode, name=args.name, host=host.strip("[]"), port=int(port),
                  drip_ms=args.drip_ms, delay_ms=args.delay_ms,
                  healthy_checks=args.healthy_checks)
    print("badserver %s (%s) listening on %s" % (args.name, args.mode, s.address), flush=True)
    try:
        while sys.stdin.read(1):  # runs until stdin closes (its parent went away) or a signal
            pass
    except KeyboardInterrupt:
        pass
    s.close()


if __name__ == "__main__":
    main()
