"""
test_admin.py - the admin listener: every API endpoint with and without the token, errors,
runtime changes, reload through the API, Prometheus metrics with exact values, and sd_notify.
"""
import base64
import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time

from harness import (FulcrumTestCase, Reader, config, connect, free_port, get, port_open,
                     served_by, wait_for)


def api(port, method, path, body=None, token=None, raw_auth=None, headers=None):
    """One admin call; returns (status, parsed JSON or text, headers). A change carries
    Content-Type: application/json unless headers say otherwise, as the docs tell users to."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    sent = {}
    if method not in ("GET", "HEAD", "OPTIONS"):
        sent["Content-Type"] = "application/json"
    if token:
        sent["Authorization"] = "Bearer " + token
    if raw_auth:
        sent["Authorization"] = raw_auth
    sent.update(headers or {})
    sent = {k: v for k, v in sent.items() if v is not None}
    data = None
    if body is not None:
        data = body if isinstance(body, (bytes, str)) else json.dumps(body)
    conn.request(method, path, body=data, headers=sent)
    r = conn.getresponse()
    text = r.read()
    hdrs = {k.lower(): v for k, v in r.getheaders()}
    conn.close()
    if hdrs.get("content-type", "").startswith("application/json"):
        return r.status, json.loads(text), hdrs
    return r.status, text.decode(), hdrs


def admin_extra(port, token=None):
    return "admin:\n  bind: 127.0.0.1:%d\n%s" % (port, "  token: \"%s\"\n" % token if token
                                                  else "")


def server(state, pool, name):
    p = [p for p in state["pools"] if p["name"] == pool][0]
    return [s for s in p["servers"] if s["name"] == name][0]


class AdminApiTest(FulcrumTestCase):
    def setUp(self):
        super().setUp()
        self.bs = [self.backend("b%d" % i) for i in range(2)]
        self.aport = free_port()
        self.f = self.fulcrum(config([("s0", self.bs[0].address), ("s1", self.bs[1].address)],
                                     extra=admin_extra(self.aport)))
        wait_for(lambda: port_open(self.aport), what="admin listener")

    def test_state(self):
        served_by(self.f.port, 4)
        status, state, _ = api(self.aport, "GET", "/api/state")
        self.assertEqual(status, 200)
        self.assertEqual(state["listeners"][0]["pool"], "app")
        s0 = server(state, "app", "s0")
        self.assertEqual(s0["state"], "up")
        self.assertEqual(s0["address"], self.bs[0].address)
        self.assertEqual(s0["requests"]["2xx"], 2)
        self.assertEqual(s0["latency"]["count"], 2)
        self.assertEqual(state["pools"][0]["requests"]["total"], 4)
        self.assertIn("uptime_seconds", state["fulcrum"])

    def test_drain_maint_ready_and_weight(self):
        status, body, _ = api(self.aport, "POST", "/api/pools/app/servers/s1", {"state": "drain"})
        self.assertEqual(status, 200)
        self.assertEqual((body["state"], body["admin"]), ("draining", "drain"))
        # the change is visible to every worker at once: no new request goes to s1
        self.assertEqual(set(served_by(self.f.port, 6)), {"b0"})
        self.assertIn("server s1: UP -> DRAINING (admin API: drain)", self.f.log())
        status, body, _ = api(self.aport, "POST", "/api/pools/app/servers/s1", {"state": "maint"})
        self.assertEqual(body["state"], "maint")
        status, body, _ = api(self.aport, "POST", "/api/pools/app/servers/s1",
                              {"state": "ready", "weight": 3})
        self.assertEqual((status, body["state"], body["weight"]), (200, "up", 3))
        # every worker takes the rebuilt rotation at its next event: once b1 answers, the
        # rotation is the new one, and any 8 turns in a row of 1:3 give it exactly 6
        wait_for(lambda: served_by(self.f.port, 1) == ["b1"], what="b1 back in the rotation")
        seen = served_by(self.f.port, 8)
        self.assertEqual(seen.count("b1"), 6)

    def test_runtime_add_and_remove(self):
        extra = self.backend("b2")
        status, body, _ = api(self.aport, "POST", "/api/pools/app/servers",
                              {"name": "s2", "address": extra.address, "weight": 2})
        self.assertEqual(status, 201)
        self.assertTrue(body["runtime"])
        wait_for(lambda: "b2" in served_by(self.f.port, 4), what="traffic to the new server")
        status, _, _ = api(self.aport, "POST", "/api/pools/app/servers",
                           {"name": "s2", "address": extra.address})
        self.assertEqual(status, 409)
        status, body, _ = api(self.aport, "DELETE", "/api/pools/app/servers/s0")
        self.assertEqual((status, body["removed"]), (200, "s0"))
        wait_for(lambda: "b0" not in served_by(self.f.port, 6), what="s0 to leave")
        names = [s["name"] for s in api(self.aport, "GET", "/api/state")[1]["pools"][0]["servers"]]
        self.assertEqual(sorted(names), ["s1", "s2"])
        # a reload from the file wins: s0 is back, s2 (runtime) is gone
        status, body, _ = api(self.aport, "POST", "/api/reload")
        self.assertEqual((status, body["result"]), (200, "reloaded"))
        names = [s["name"] for s in api(self.aport, "GET", "/api/state")[1]["pools"][0]["servers"]]
        self.assertEqual(sorted(names), ["s0", "s1"])

    def test_runtime_state_kept_across_reload(self):
        api(self.aport, "POST", "/api/pools/app/servers/s1", {"state": "drain", "weight": 5})
        self.assertEqual(api(self.aport, "POST", "/api/reload")[0], 200)
        s1 = server(api(self.aport, "GET", "/api/state")[1], "app", "s1")
        self.assertEqual((s1["state"], s1["weight"]), ("draining", 5))

    def test_errors(self):
        cases = [
            ("POST", "/api/pools/app/servers/s1", {"state": "sleep"}, 400, "state must be"),
            ("POST", "/api/pools/app/servers/s1", {"weight": 999}, 400, "weight must be"),
            ("POST", "/api/pools/app/servers/s1", {"wieght": 2}, 400, "unknown key"),
            ("POST", "/api/pools/app/servers/s1", b"{not json", 400, "invalid JSON"),
            ("POST", "/api/pools/app/servers/s1", b"[1]", 400, "JSON object"),
            ("POST", "/api/pools/app/servers/s1", {}, 400, "nothing to change"),
            ("POST", "/api/pools/app/servers/nope", {"state": "drain"}, 404, "no server nope"),
            ("POST", "/api/pools/nope/servers/s1", {"state": "drain"}, 404, "no pool nope"),
            ("POST", "/api/pools/app/servers", {"name": "x"}, 400, "required"),
            ("POST", "/api/pools/app/servers", {"name": "x", "address": "nohost"}, 400,
             "address"),
            ("DELETE", "/api/pools/app/servers/nope", None, 404, "no server"),
            ("GET", "/api/nothing", None, 404, "no such endpoint"),
            ("PUT", "/api/state", None, 405, "use GET"),
            ("GET", "/api/reload", None, 405, "use POST"),
        ]
        for method, path, body, want, text in cases:
            status, doc, _ = api(self.aport, method, path, body)
            self.assertEqual(status, want, (method, path, body, doc))
            self.assertIn(text, doc["error"], (method, path, doc))

    def test_reload_with_a_bad_file(self):
        with open(self.f.config_path, "a") as fh:
            fh.write("bogus: 1\n")
        status, body, _ = api(self.aport, "POST", "/api/reload")
        self.assertEqual(status, 400)
        self.assertIn("running configuration stays", body["error"])
        self.assertTrue(any("bogus: unknown key" in d for d in body["details"]))
        self.assertEqual(set(served_by(self.f.port, 4)), {"b0", "b1"})

    def test_dashboard_page(self):
        status, text, headers = api(self.aport, "GET", "/")
        self.assertEqual(status, 200)
        self.assertTrue(headers["content-type"].startswith("text/html"))
        self.assertIn("<html", text.lower())
        self.assertNotRegex(text, r"(src|href)=\"https?://")  # no external assets


class AdminTokenTest(FulcrumTestCase):
    def test_every_call_needs_the_token(self):
        b = self.backend("b0")
        aport = free_port()
        self.fulcrum(config([("s0", b.address)], extra=admin_extra(aport, "t0ken-42")))
        wait_for(lambda: port_open(aport), what="admin listener")
        for method, path, body in (("GET", "/api/state", None), ("GET", "/metrics", None),
                                   ("GET", "/", None), ("POST", "/api/reload", None),
                                   ("POST", "/api/pools/app/servers/s0", {"state": "drain"})):
            for auth in (None, "Bearer wrong", "Bearer t0ken-4", "Bearer t0ken-420",
                         "Basic " + base64.b64encode(b"u:wrong").decode()):
                status, doc, headers = api(aport, method, path, body, raw_auth=auth)
                self.assertEqual(status, 401, (method, path, auth))
                self.assertIn("Basic", headers.get("www-authenticate", ""))
        status, state, _ = api(aport, "GET", "/api/state", token="t0ken-42")
        self.assertEqual(status, 200)
        basic = "Basic " + base64.b64encode(b"anyone:t0ken-42").decode()
        self.assertEqual(api(aport, "GET", "/metrics", raw_auth=basic)[0], 200)
        status, body, _ = api(aport, "POST", "/api/pools/app/servers/s0", {"state": "drain"},
                              token="t0ken-42")
        self.assertEqual(body["state"], "draining")


class MetricsTest(FulcrumTestCase):
    def scrape(self, aport):
        status, text, headers = api(aport, "GET", "/metrics")
        self.assertEqual(status, 200)
        self.assertTrue(headers["content-type"].startswith("text/plain; version=0.0.4"))
        return text

    @staticmethod
    def value(text, series):
        m = re.search("^" + re.escape(series) + r" (\S+)$", text, re.M)
        return float(m.group(1)) if m else None

    def test_exact_values_after_known_requests(self):
        bs = [self.backend("b%d" % i) for i in range(2)]
        aport = free_port()
        dead = "127.0.0.1:%d" % free_port()
        f = self.fulcrum(config([("s0", bs[0].address), ("s1", bs[1].address)], threads=2,
                                extra=admin_extra(aport)))
        wait_for(lambda: port_open(aport), what="admin listener")
        conn = http.client.HTTPConnection("127.0.0.1", f.port, timeout=5)
        for i in range(10):  # 10 x 200, spread 5/5
            conn.request("GET", "/")
            conn.getresponse().read()
        for i in range(4):  # 4 x 503 from the backends
            conn.request("GET", "/?status=503")
            conn.getresponse().read()
        conn.close()
        exchange_bad = connect(f.port)
        exchange_bad.sendall(b"GET / HTTP/1.1\r\n\r\n")  # 400, no server
        Reader(exchange_bad).read_response()
        exchange_bad.close()

        def settled():
            t = self.scrape(aport)
            return t if self.value(t, 'fulcrum_requests_total{pool="app",server="",'
                                      'code_class="4xx"}') == 1 else None
        text = wait_for(settled, what="the 400 to be counted")
        v = lambda s: self.value(text, s)  # noqa: E731
        self.assertEqual(v('fulcrum_requests_total{pool="app",server="s0",code_class="2xx"}'), 5)
        self.assertEqual(v('fulcrum_requests_total{pool="app",server="s1",code_class="2xx"}'), 5)
        self.assertEqual(v('fulcrum_requests_total{pool="app",server="s0",code_class="5xx"}') +
                         v('fulcrum_requests_total{pool="app",server="s1",code_class="5xx"}'), 4)
        self.assertEqual(v('fulcrum_pool_request_duration_seconds_count{pool="app"}'), 15)
        self.assertEqual(v('fulcrum_pool_request_duration_seconds_bucket{pool="app",le="+Inf"}'),
                         15)
        self.assertEqual(v('fulcrum_request_duration_seconds_count{pool="app",server="s0"}'), 7)
        self.assertEqual(v('fulcrum_server_up{pool="app",server="s0"}'), 1)
        self.assertEqual(v('fulcrum_server_state{pool="app",server="s1",state="up"}'), 1)
        self.assertEqual(v('fulcrum_config_reloads_total{result="ok"}'), 0)
        # ours two, and the harness's probe that waited for the listener
        self.assertEqual(v('fulcrum_client_connections_accepted_total'), 3)
        self.assertIsNotNone(re.search(r'^fulcrum_build_info\{version="', text, re.M))
        # a reload is counted
        f.signal(signal.SIGHUP)
        wait_for(lambda: self.value(self.scrape(aport),
                                    'fulcrum_config_reloads_total{result="ok"}') == 1,
                 what="the reload to be counted")
        if shutil.which("promtool"):
            r = subprocess.run(["promtool", "check", "metrics"], input=text.encode(),
                               capture_output=True, timeout=30)
            self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        else:
            self.fail("promtool is not installed (Debian package prometheus)")

    def test_health_check_counter(self):
        b = self.backend("b0")
        aport = free_port()
        f = self.fulcrum(config([("s0", b.address)], extra=admin_extra(aport),
                                pool_extra="    health_check:\n      interval: 100ms\n"))
        wait_for(lambda: port_open(aport), what="admin listener")
        wait_for(lambda: (self.value(self.scrape(aport), 'fulcrum_health_checks_total{pool='
                                     '"app",server="s0",result="pass"}') or 0) >= 3,
                 what="three passing checks")


class NotifyTest(FulcrumTestCase):
    def test_sd_notify(self):
        """With NOTIFY_SOCKET set, fulcrum says READY=1 once listening, RELOADING=1 and READY=1
        around a reload, and STOPPING=1 when it stops."""
        b = self.backend("b0")
        path = tempfile.mktemp(prefix="fulcrum-notify-")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(path)
        sock.settimeout(10)
        os.environ["NOTIFY_SOCKET"] = path
        try:
            f = self.fulcrum(config([("s0", b.address)]))
        finally:
            del os.environ["NOTIFY_SOCKET"]
        try:
            self.assertEqual(sock.recv(256), b"READY=1")
            self.assertTrue(port_open(f.port))
            f.signal(signal.SIGHUP)
            self.assertEqual(sock.recv(256), b"RELOADING=1")
            self.assertEqual(sock.recv(256), b"READY=1")
            f.signal(signal.SIGTERM)
            self.assertEqual(sock.recv(256), b"STOPPING=1")
            self.assertEqual(f.wait(10), 0)
        finally:
            sock.close()
            os.unlink(path)
