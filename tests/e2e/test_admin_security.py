"""
test_admin_security.py - the admin listener refuses what a web page could make the operator's
browser send (ctl/admin_guard.c): changes without Content-Type: application/json (text/plain and
form posts), a foreign Origin, Sec-Fetch-Site: cross-site, and a foreign Host (DNS rebinding),
with and without a valid token. After each refusal the state is read back through GET and must
be unchanged: the server still up at its weight, no server added or removed, no reload counted.
The same requests with JSON, no Origin and a local Host go through.
"""
import base64
import json
import re

from harness import FulcrumTestCase, config, free_port, port_open, wait_for
from test_admin import admin_extra, api

# Exactly what the issue's attacker page makes a browser send.
ATTACK = ("POST /api/pools/app/servers/s1 HTTP/1.1\r\n"
          "Host: evil.example\r\n"
          "Origin: http://evil.example\r\n"
          "Content-Type: text/plain\r\n"
          "Content-Length: 17\r\n"
          "\r\n"
          '{"state":"drain"}')


def basic(token):
    return "Basic " + base64.b64encode(("admin:" + token).encode()).decode()


class AdminGuardTest(FulcrumTestCase):
    token = None

    def setUp(self):
        super().setUp()
        self.bs = [self.backend("b%d" % i) for i in range(2)]
        self.aport = free_port()
        self.f = self.fulcrum(config([("s0", self.bs[0].address), ("s1", self.bs[1].address)],
                                     extra=admin_extra(self.aport, self.token)))
        wait_for(lambda: port_open(self.aport), what="admin listener")
        self.own = "127.0.0.1:%d" % self.aport

    def call(self, method, path, body=None, **headers):
        auth = basic(self.token) if self.token else None
        return api(self.aport, method, path, body, raw_auth=auth, headers=headers)

    def view(self):
        """What must not change: each server's state and weight, and the reload counters."""
        status, state, _ = self.call("GET", "/api/state")
        self.assertEqual(status, 200, state)
        servers = {s["name"]: (s["state"], s["weight"]) for s in state["pools"][0]["servers"]}
        return servers, state["fulcrum"]["reloads"]

    # Every request that changes something, as (method, path, body).
    CHANGES = [
        ("POST", "/api/pools/app/servers/s1", {"state": "drain"}),
        ("POST", "/api/pools/app/servers/s1", {"weight": 7}),
        ("POST", "/api/pools/app/servers", {"name": "x", "address": "127.0.0.1:9"}),
        ("DELETE", "/api/pools/app/servers/s1", None),
        ("POST", "/api/reload", None),
    ]

    # Each attack as (what, headers, expected status): every header a browser would send.
    def attacks(self):
        return [
            ("text/plain", {"Content-Type": "text/plain"}, 415),
            ("form-encoded", {"Content-Type": "application/x-www-form-urlencoded"}, 415),
            ("multipart form", {"Content-Type": "multipart/form-data; boundary=x"}, 415),
            ("no Content-Type", {"Content-Type": None}, 415),
            ("a foreign Origin", {"Origin": "http://evil.example"}, 403),
            ("a foreign Origin, text/plain",
             {"Origin": "http://evil.example", "Content-Type": "text/plain"}, 403),
            ("the opaque Origin null", {"Origin": "null"}, 403),
            ("another local port's Origin", {"Origin": "http://127.0.0.1:1"}, 403),
            ("Sec-Fetch-Site: cross-site",
             {"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "no-cors"}, 403),
            ("a foreign Host", {"Host": "evil.example:%d" % self.aport}, 421),
            ("a foreign Host with its own Origin",
             {"Host": "evil.example:%d" % self.aport,
              "Origin": "http://evil.example:%d" % self.aport}, 421),
        ]

    def test_attacks_are_refused_and_change_nothing(self):
        before = self.view()
        self.assertEqual(before[0], {"s0": ("up", 1), "s1": ("up", 1)})
        for what, headers, want in self.attacks():
            for method, path, body in self.CHANGES:
                status, doc, hdrs = self.call(method, path, body, **headers)
                self.assertEqual(status, want, (what, method, path, doc))
                self.assertIn("error", doc)
                self.assertFalse([h for h in hdrs if h.startswith("access-control-")])
                self.assertEqual(self.view(), before, (what, method, path))
        self.assertNotIn("DRAINING", self.f.log())

    def test_the_issue_request_verbatim(self):
        before = self.view()
        import socket
        with socket.create_connection(("127.0.0.1", self.aport), timeout=5) as s:
            s.sendall(ATTACK.encode())
            head = s.recv(4096).decode()
        self.assertTrue(head.startswith("HTTP/1.1 421 Misdirected Request\r\n"), head)
        self.assertEqual(self.view(), before)

    def test_rebinding_cannot_read_either(self):
        for path in ("/api/state", "/metrics", "/"):
            status, doc, _ = self.call("GET", path, Host="evil.example:%d" % self.aport)
            self.assertEqual(status, 421, path)
            self.assertIn("allowed_hosts", doc["error"])
            # and a page of another origin, on the right Host, gets no answer to read
            status, _, _ = self.call("GET", path, Origin="http://evil.example")
            self.assertEqual(status, 403, path)

    def test_preflight_is_never_granted(self):
        status, doc, hdrs = self.call("OPTIONS", "/api/pools/app/servers/s1", **{
            "Origin": "http://evil.example", "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type"})
        self.assertEqual(status, 403)
        self.assertFalse([h for h in hdrs if h.startswith("access-control-")])

    def test_local_json_requests_work(self):
        hosts = ["127.0.0.1:%d" % self.aport, "localhost:%d" % self.aport, "localhost"]
        for host in hosts:
            status, doc, _ = self.call("GET", "/api/state", Host=host)
            self.assertEqual(status, 200, host)
        # the dashboard's own requests: same Origin as Host, JSON
        status, doc, _ = self.call("POST", "/api/pools/app/servers/s1", {"state": "drain"},
                                   Origin="http://" + self.own, **{"Sec-Fetch-Site": "same-origin"})
        self.assertEqual((status, doc["state"]), (200, "draining"))
        # curl's: no Origin, JSON with a charset
        status, doc, _ = self.call("POST", "/api/pools/app/servers/s1", {"state": "ready"},
                                   **{"Content-Type": "application/json; charset=utf-8"})
        self.assertEqual((status, doc["state"]), (200, "up"))
        status, doc, _ = self.call("POST", "/api/reload", Host="localhost:%d" % self.aport)
        self.assertEqual((status, doc["result"]), (200, "reloaded"))
        self.assertEqual(self.view()[1]["ok"], 1)
        # a link to the dashboard from another site still opens it
        status, text, _ = self.call("GET", "/", **{"Sec-Fetch-Site": "cross-site",
                                                   "Sec-Fetch-Mode": "navigate"})
        self.assertEqual(status, 200)

    def test_json_numbers_are_short(self):
        import http.client
        conn = http.client.HTTPConnection("127.0.0.1", self.aport, timeout=5)
        headers = {"Authorization": basic(self.token)} if self.token else {}
        conn.request("GET", "/api/state", headers=headers)
        text = conn.getresponse().read().decode()
        conn.close()
        reals = re.findall(r"-?\d+\.\d+(?:e-?\d+)?", text)
        self.assertTrue(reals)
        for r in reals:
            digits = re.sub(r"e.*|[^0-9]", "", r).lstrip("0")
            self.assertLessEqual(len(digits), 15, r)
        self.assertIn("0.0005,", text)  # the first bucket bound, as written in stats.c
        self.assertEqual(json.loads(text)["buckets"][0], 0.0005)


class AdminGuardWithTokenTest(AdminGuardTest):
    """The same attacks, carrying a valid token as a browser would (Basic): still refused."""
    token = "t0ken-42"

    def test_without_the_token_nothing_works(self):
        status, _, hdrs = api(self.aport, "GET", "/api/state")
        self.assertEqual(status, 401)


class AllowedHostsTest(FulcrumTestCase):
    def test_names_listed_in_allowed_hosts(self):
        b = self.backend("b0")
        aport = free_port()
        extra = admin_extra(aport) + "  allowed_hosts: [lb.example.test, '[2001:db8::7]']\n"
        f = self.fulcrum(config([("s0", b.address)], extra=extra))
        wait_for(lambda: port_open(aport), what="admin listener")
        for host in ("lb.example.test:%d" % aport, "LB.example.test", "[2001:db8::7]:%d" % aport):
            self.assertEqual(api(aport, "GET", "/api/state", headers={"Host": host})[0], 200, host)
        status, doc, _ = api(aport, "POST", "/api/pools/app/servers/s0", {"state": "maint"},
                             headers={"Host": "lb.example.test:%d" % aport,
                                      "Origin": "http://lb.example.test:%d" % aport})
        self.assertEqual((status, doc["state"]), (200, "maint"))
        for host in ("other.example.test", "x.lb.example.test", "[2001:db8::8]"):
            self.assertEqual(api(aport, "GET", "/api/state", headers={"Host": host})[0], 421, host)
        # a reload that drops the list drops the names
        with open(f.config_path) as fh:
            text = fh.read()
        with open(f.config_path, "w") as fh:
            fh.write(text.replace("  allowed_hosts: [lb.example.test, '[2001:db8::7]']\n", ""))
        self.assertEqual(api(aport, "POST", "/api/reload")[0], 200)
        self.assertEqual(api(aport, "GET", "/api/state",
                             headers={"Host": "lb.example.test"})[0], 421)
