#!/usr/bin/env python3
"""
peers_selfcheck.py - checks the HTTP/2 test peers against servers that are known to be right,
by hand (it is not a test_*.py, so tests/e2e/run.py and `make test` do not run it):

    python3 tests/e2e/peers_selfcheck.py              # --grpc and --attacks
    python3 tests/e2e/peers_selfcheck.py --grpc       # grpc_peer.py: direct, TLS, via HAProxy
    python3 tests/e2e/peers_selfcheck.py --attacks [--tls] [--only nginx] [NAME ...]

--grpc: grpc_peer.py's client against its server directly over h2c and over TLS (ALPN h2),
through HAProxy 2.6 as an HTTP/2 proxy (`bind ... proto h2`, `server ... proto h2`: h2c on both
sides, and TLS with ALPN h2 to HAProxy then h2c to the server) and through nginx 1.22's
grpc_pass (h2c), every call kind, the error
status, the health check flipped at run time, a cancelled call counted by the server, and load
spread over three servers with one killed under load. Each line says PASS or FAIL.

--attacks: every h2attack.py attack (or the NAMEs) against nginx 1.22 (`listen ... http2`,
answering itself) and HAProxy 2.6 (`bind ... proto h2` in front of an HTTP/1.1 nginx), h2c, or
with --tls over TLS with ALPN h2, and prints each outcome: what "right" looks like.

Everything runs from a temporary directory on ports chosen at run time, and is stopped and
removed at the end. Needs haproxy, nginx, openssl, python3-grpcio and python3-h2
(scripts/install-deps test).
"""
import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import grpc_peer  # noqa: E402
import h2attack  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(HERE))
BIG_BYTES = 64 << 20  # /big: a response no socket buffer holds
# The paths each attack asks for: /upload goes through to the HTTP/1.1 backend (which reads
# request bodies) on both servers; /big is 64 MiB (a file for nginx, size= for the backend).
ATTACK_PATHS = {
    "rapid_reset": "/upload?delay=50",
    "empty_data_flood": "/upload", "window_update_zero_stream": "/upload",
    "data_exceeds_window": "/upload", "malformed_content_length": "/upload",
    "zero_window": "/big?size=%d" % BIG_BYTES, "stall_reading": "/big?size=%d" % BIG_BYTES,
}


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, proc, what, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("%s exited with status %s" % (what, proc.returncode))
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("%s did not listen on %d within %.0fs" % (what, port, timeout))


class Servers:
    """nginx (h2c and TLS h2 answering itself, and an HTTP/1.1 backend), HAProxy (h2c and TLS
    h2 in front of the HTTP/1.1 nginx, and h2c and TLS h2 in front of gRPC servers) and three
    grpc_peer servers, in a temporary directory."""

    def __init__(self, backend_bin=None):
        self.backend_bin = backend_bin
        self.tmp = tempfile.mkdtemp(prefix="fulcrum-h2peers-")
        os.chmod(self.tmp, 0o755)
        self.procs = []
        self.peers = []
        self.port = {k: free_port() for k in (
            "nginx_h2c", "nginx_tls", "backend", "haproxy_h2c", "haproxy_tls",
            "haproxy_grpc", "haproxy_grpc_tls", "nginx_grpc")}
        self.cert, self.key, self.pem = self.make_cert()
        www = os.path.join(self.tmp, "www")
        os.makedirs(www)
        with open(os.path.join(www, "big"), "wb") as f:
            f.truncate(BIG_BYTES)

    def make_cert(self):
        cert, key = os.path.join(self.tmp, "cert.pem"), os.path.join(self.tmp, "key.pem")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                        "ec_paramgen_curve:P-256", "-noenc", "-days", "2", "-subj",
                        "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
                        "-keyout", key, "-out", cert], check=True, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, timeout=60)
        pem = os.path.join(self.tmp, "haproxy.pem")
        with open(pem, "w") as out:
            for part in (cert, key):
                with open(part) as f:
                    out.write(f.read())
        return cert, key, pem

    def start(self, name, argv):
        log = open(os.path.join(self.tmp, name + ".log"), "wb")
        p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                             start_new_session=True)
        log.close()
        p.name = name
        self.procs.append(p)
        return p

    def log(self, name):
        with open(os.path.join(self.tmp, name + ".log"), "rb") as f:
            return f.read().decode("utf-8", "replace")

    def start_grpc(self, n=3):
        for i in range(n):
            self.peers.append(grpc_peer.spawn("g%d" % (i + 1)))
        self.peers.append(grpc_peer.spawn("gtls", tls=(self.cert, self.key)))

    def start_nginx(self):
        t, p = self.tmp, self.port
        conf = """daemon off;
master_process off;
worker_processes 1;
pid {t}/nginx.pid;
error_log stderr warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {t}/client_body;
    proxy_temp_path {t}/proxy;
    fastcgi_temp_path {t}/fastcgi;
    uwsgi_temp_path {t}/uwsgi;
    scgi_temp_path {t}/scgi;
    default_type text/plain;
    send_timeout 5s;
    keepalive_timeout 10s;
    server {{
        listen 127.0.0.1:{h2c} http2;
        listen 127.0.0.1:{tls} ssl http2;
        ssl_certificate {cert};
        ssl_certificate_key {key};
        location / {{ return 200 "hello h2\\n"; }}
        location /big {{ root {t}/www; }}
        location /upload {{
            proxy_pass http://127.0.0.1:{backend};
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
    }}
    upstream grpc {{
{grpc_servers}    }}
    server {{
        listen 127.0.0.1:{grpc} http2;
        location / {{ grpc_pass grpc://grpc; }}
    }}
{backend_server}}}
""".format(grpc=p["nginx_grpc"], grpc_servers="".join(
            "        server %s;\n" % g.target for g in self.peers if g.name != "gtls"),
           t=t, h2c=p["nginx_h2c"], tls=p["nginx_tls"], backend=p["backend"], cert=self.cert,
           key=self.key, backend_server="" if self.backend_bin else """    server {{
        listen 127.0.0.1:{backend};
        location / {{ return 200 "hello h1\\n"; }}
        location /big {{ root {t}/www; }}
    }}
""".format(backend=p["backend"], t=t))
        path = os.path.join(t, "nginx.conf")
        with open(path, "w") as f:
            f.write(conf)
        proc = self.start("nginx", ["/usr/sbin/nginx", "-c", path, "-p", t + "/", "-e", "stderr"])
        for k in ("nginx_h2c", "nginx_tls", "nginx_grpc"):
            wait_port(p[k], proc, "nginx")
        if self.backend_bin:
            proc = self.start("backend", [self.backend_bin, "--listen",
                                          "127.0.0.1:%d" % p["backend"], "--name", "h1"])
        wait_port(p["backend"], proc, "the HTTP/1.1 backend")

    def backend_stats(self):
        """fulcrum-backend's /stats (connections, requests), or None with nginx as backend."""
        if not self.backend_bin:
            return None
        import http.client
        import json
        conn = http.client.HTTPConnection("127.0.0.1", self.port["backend"], timeout=5)
        conn.request("GET", "/stats")
        data = json.loads(conn.getresponse().read())
        conn.close()
        return data

    def start_haproxy(self):
        p = self.port
        grpc_servers = "".join("    server %s %s proto h2 check inter 1s\n"
                               % (g.name, g.target) for g in self.peers if g.name != "gtls")
        conf = """global
    nbthread 1
    maxconn 4000

defaults
    mode http
    timeout connect 2s
    timeout client 5s
    timeout server 10s
    timeout http-request 5s

frontend h2c
    bind 127.0.0.1:{h2c} proto h2
    bind 127.0.0.1:{tls} ssl crt {pem} alpn h2
    default_backend web

frontend grpc
    bind 127.0.0.1:{grpc} proto h2
    bind 127.0.0.1:{grpc_tls} ssl crt {pem} alpn h2
    default_backend grpc

backend web
    server s1 127.0.0.1:{backend}

backend grpc
    balance roundrobin
    retry-on conn-failure empty-response
{grpc_servers}""".format(h2c=p["haproxy_h2c"], tls=p["haproxy_tls"], grpc=p["haproxy_grpc"],
                         grpc_tls=p["haproxy_grpc_tls"], pem=self.pem, backend=p["backend"],
                         grpc_servers=grpc_servers or "    server none 127.0.0.1:1 proto h2\n")
        path = os.path.join(self.tmp, "haproxy.cfg")
        with open(path, "w") as f:
            f.write(conf)
        proc = self.start("haproxy", ["/usr/sbin/haproxy", "-f", path, "-db"])
        for k in ("haproxy_h2c", "haproxy_tls", "haproxy_grpc"):
            wait_port(p[k], proc, "haproxy")

    def stop(self):
        for g in self.peers:
            g.cleanup()
        for p in reversed(self.procs):
            if p.poll() is None:
                try:
                    os.killpg(p.pid, signal.SIGTERM)
                    p.wait(5)
                except (subprocess.TimeoutExpired, ProcessLookupError):
                    os.killpg(p.pid, signal.SIGKILL)
                    p.wait()
        shutil.rmtree(self.tmp, ignore_errors=True)


# ---------------------------------------------------------------------------------------------

class Checks:
    def __init__(self):
        self.failed = 0

    def check(self, what, ok, detail=""):
        print("%s  %s%s" % ("PASS" if ok else "FAIL", what, ("  (%s)" % detail) if detail else ""),
              flush=True)
        if not ok:
            self.failed += 1


def grpc_calls(ck, where, target, **kw):
    r = grpc_peer.unary(target, b"hello", **kw)
    ck.check("%s: unary" % where, r.ok and r.reply.payload == b"hello" and r.reply.server,
             repr(r))
    r = grpc_peer.server_stream(target, 5, b"s", **kw)
    ck.check("%s: server streaming" % where,
             r.ok and [x.index for x in r.replies] == list(range(5)), repr(r))
    r = grpc_peer.client_stream(target, [b"a", b"b", b"c"], **kw)
    ck.check("%s: client streaming" % where, r.ok and r.reply.payload == b"abc"
             and r.reply.index == 3, repr(r))
    r = grpc_peer.bidi(target, [b"1", b"2", b"3"], timeout=5, **kw)
    ck.check("%s: bidirectional streaming, lockstep" % where,
             r.ok and [x.payload for x in r.replies] == [b"1", b"2", b"3"], repr(r))
    r = grpc_peer.fail(target, "PERMISSION_DENIED", "not you, \u00e9", **kw)
    ck.check("%s: error status and message intact" % where,
             r.code == "PERMISSION_DENIED" and r.details == "not you, \u00e9", repr(r))
    r = grpc_peer.headers(target, metadata=[("x-test", "v")], timeout=7, **kw)
    ck.check("%s: metadata and grpc-timeout reach the server" % where,
             r.ok and "x-test: v" in r.reply.info and "x-time-remaining: " in r.reply.info,
             r.reply.info.replace("\n", "; ") if r.reply else repr(r))
    r = grpc_peer.health_check(target, **kw)
    ck.check("%s: health check" % where, r.health == "SERVING", repr(r))


def check_grpc(srv):
    ck = Checks()
    g1, gtls = srv.peers[0], srv.peers[-1]
    grpc_calls(ck, "direct h2c", g1.target)
    grpc_calls(ck, "direct TLS", gtls.target, tls=srv.cert, server_name="localhost")

    # health flipped at run time, by RPC and by signal
    r1 = grpc_peer.set_health(g1.target, "fulcrum.test.Echo", "NOT_SERVING")
    r2 = grpc_peer.health_check(g1.target, "fulcrum.test.Echo")
    g1.signal(signal.SIGUSR2)
    time.sleep(0.3)
    r3 = grpc_peer.health_check(g1.target, "fulcrum.test.Echo")
    r4 = grpc_peer.health_check(g1.target, "no.such.Service")
    ck.check("health flips: NOT_SERVING by RPC, SERVING by SIGUSR2, unknown = NOT_FOUND",
             r1.ok and r2.health == "NOT_SERVING" and r3.health == "SERVING"
             and r4.code == "NOT_FOUND", "%s %s %s" % (r2.health, r3.health, r4.code))

    # a cancelled call is counted by the server
    before = grpc_peer.stats(g1.target)["cancelled"]
    r = grpc_peer.unary(g1.target, b"x", delay_ms=3000, timeout=0.3)
    time.sleep(0.5)
    after = grpc_peer.stats(g1.target)["cancelled"]
    ck.check("a call cancelled by its deadline is counted by the server",
             r.code == "DEADLINE_EXCEEDED" and after == before + 1, "%s %d->%d"
             % (r.code, before, after))

    # through HAProxy
    via = "127.0.0.1:%d" % srv.port["haproxy_grpc"]
    grpc_calls(ck, "via HAProxy h2c", via)
    grpc_calls(ck, "via HAProxy TLS", "127.0.0.1:%d" % srv.port["haproxy_grpc_tls"],
               tls=srv.cert, server_name="localhost")
    grpc_calls(ck, "via nginx grpc_pass", "127.0.0.1:%d" % srv.port["nginx_grpc"])
    before = grpc_peer.stats(g1.target)["cancelled"] + sum(
        grpc_peer.stats(g.target)["cancelled"] for g in srv.peers[1:3])
    r = grpc_peer.unary(via, b"x", delay_ms=3000, timeout=0.3)
    time.sleep(0.5)
    after = sum(grpc_peer.stats(g.target)["cancelled"] for g in srv.peers[:3])
    ck.check("via HAProxy: a call cancelled by the client is cancelled at the server",
             r.code == "DEADLINE_EXCEEDED" and after == before + 1,
             "%s %d->%d" % (r.code, before, after))

    res = grpc_peer.load(via, seconds=2, concurrency=6)
    ck.check("via HAProxy: load spread over three servers",
             set(res["servers"]) == {"g1", "g2", "g3"} and set(res["codes"]) == {"OK"},
             "%s %s" % (dict(res["servers"]), dict(res["codes"])))
    import threading
    box = {}
    t = threading.Thread(target=lambda: box.update(
        r=grpc_peer.load(via, seconds=3, concurrency=6)))
    t.start()
    time.sleep(1.0)
    srv.peers[2].kill()
    t.join(20)
    res = box.get("r", {"servers": {}, "codes": {}})
    ok_calls = res["codes"].get("OK", 0)
    ck.check("via HAProxy: g3 killed under load, the others keep answering (HAProxy's own "
             "failures shown, not judged)", ok_calls > 0 and res["servers"].get("g1"),
             "%s %s" % (dict(res["servers"]), dict(res["codes"])))
    return ck.failed


def check_attacks(srv, names, tls, only):
    targets = []
    if "nginx" in only:
        targets.append(("nginx", srv.port["nginx_tls" if tls else "nginx_h2c"]))
    if "haproxy" in only:
        targets.append(("haproxy", srv.port["haproxy_tls" if tls else "haproxy_h2c"]))
    for who, port in targets:
        status, body, _ = h2attack.get("127.0.0.1", port, "/", tls=tls)
        print("== %s on %d (%s): GET / -> %s %r" % (who, port, "TLS h2" if tls else "h2c",
                                                   status, body), flush=True)
        for name in names:
            kw = {"path": ATTACK_PATHS[name]} if name in ATTACK_PATHS else {}
            before = srv.backend_stats()
            out = h2attack.ATTACKS[name]("127.0.0.1", port, tls=tls, **kw)
            line = "  " + out.summary()
            after = srv.backend_stats()
            if before and after:
                # /stats counts itself: one connection and one request each time
                line += " | backend: %d connections, %d responses, %d held" % (
                    after["connections"] - before["connections"] - 1,
                    after["requests"] - before["requests"] - 1, after["held_requests"])
            print(line, flush=True)
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--grpc", action="store_true")
    ap.add_argument("--attacks", action="store_true")
    ap.add_argument("--tls", action="store_true", help="attacks over TLS (ALPN h2)")
    ap.add_argument("--only", default="nginx,haproxy")
    ap.add_argument("--backend", default=os.path.join(
        ROOT, os.environ.get("FULCRUM_BUILD", "build"), "fulcrum-backend"),
        help="the HTTP/1.1 backend behind both (default $FULCRUM_BUILD/fulcrum-backend; "
             "nginx itself when it does not exist)")
    ap.add_argument("names", nargs="*", help="attacks to play (default: all)")
    args = ap.parse_args()
    if not (args.grpc or args.attacks):
        args.grpc = args.attacks = True
    for n in args.names:
        if n not in h2attack.ATTACKS:
            ap.error("unknown attack %s" % n)
    srv = Servers(args.backend if os.access(args.backend, os.X_OK) else None)
    print("HTTP/1.1 backend: %s" % (srv.backend_bin or "nginx"), flush=True)
    failed = 0
    try:
        srv.start_grpc()
        srv.start_nginx()
        srv.start_haproxy()
        if args.grpc:
            failed += check_grpc(srv)
        if args.attacks:
            failed += check_attacks(srv, args.names or list(h2attack.ATTACKS), args.tls,
                                    args.only.split(","))
    finally:
        srv.stop()
    print("selfcheck: %s" % ("%d failed" % failed if failed else "all passed"))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
