"""
test_routes.py - one listener, many applications: routes by host, path, header, method, query
and regex (first match wins), redirects and fixed answers, header rules, the normalised path
that rules see (no spelling of a path slips past a rule), and what operators see of routes:
access log, metrics and the admin API. Every backend is a real fulcrum-backend that says who it
is (X-Backend), so each assertion is on the server that actually answered.
"""
import json
import os
import socket
import subprocess
import tempfile
import time
import urllib.request

from harness import (FULCRUM, FulcrumTestCase, echo_headers, exchange, free_port, get,
                     port_open, wait_for)

POOLS = ("api", "web", "wild", "canary", "uploads", "items", "admin", "fallback")


def raw_get(port, target, host="www.test", extra=b"", method=b"GET"):
    req = (method + b" " + target.encode() + b" HTTP/1.1\r\nHost: " + host.encode() +
           b"\r\n" + extra + b"Connection: close\r\n\r\n")
    return exchange(port, req, method=method.decode())


def read_to_end(sock):
    """Everything the peer sends until it closes; closes the socket."""
    data = b""
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    sock.close()
    return data


class RoutesTest(FulcrumTestCase):
    def start(self, listener_extra="", routes=None, pool_line="    pool: fallback\n", extra=""):
        self.backends = {name: self.backend(name) for name in POOLS}
        routes = routes if routes is not None else (
            "      - name: api\n"
            "        match: { host: api.example.com, path_prefix: /v1/ }\n"
            "        pool: api\n"
            "        request_headers: { set: { X-Route: api } }\n"
            "      - name: exact\n"
            "        match: { host: \"*.example.com\", path: /exact }\n"
            "        pool: wild\n"
            "      - name: canary\n"
            "        match: { header: { name: X-Canary, value: \"on\" } }\n"
            "        pool: canary\n"
            "      - name: any-canary\n"
            "        match: { header: { name: X-Canary-Any } }\n"
            "        pool: canary\n"
            "      - name: uploads\n"
            "        match: { method: [POST, PUT], path_prefix: /upload/ }\n"
            "        pool: uploads\n"
            "      - name: items\n"
            "        match: { path_regex: \"^/item/[0-9]+$\" }\n"
            "        pool: items\n"
            "      - name: debug\n"
            "        match: { query: { name: debug, value: \"1\" } }\n"
            "        respond: { status: 403, body: \"no debug\\n\" }\n"
            "      - name: old\n"
            "        match: { path_prefix: /old/ }\n"
            "        redirect: { location: \"https://example.com/new/\", status: 301 }\n"
            "      - name: www\n"
            "        match: { host: www.example.com }\n"
            "        redirect: { scheme: https, status: 308 }\n"
            "      - name: healthz\n"
            "        match: { path: /healthz }\n"
            "        respond: { status: 200, body: \"ok\\n\", content_type: text/plain }\n"
            "      - name: admin\n"
            "        match: { path_prefix: /admin }\n"
            "        pool: admin\n"
            "        response_headers: { remove: [X-Backend], set: { X-Admin: \"yes\" } }\n")
        pools = "".join("  - name: %s\n    servers: [{address: %s}]\n" % (n, b.address)
                        for n, b in self.backends.items())
        self.log = tempfile.NamedTemporaryFile(prefix="fulcrum-routes-", suffix=".log",
                                               delete=False).name
        self.admin_port = free_port()
        self.f = self.fulcrum(
            "threads: 1\n"
            "admin: { bind: 127.0.0.1:%d }\n"
            "access_log: { path: %s }\n"
            "listeners:\n"
            "  - name: web\n"
            "    bind: 127.0.0.1:{port}\n"
            "%s%s"
            "    routes:\n%s"
            "    request_headers: { set: { X-Env: prod }, remove: [X-Debug] }\n"
            "    response_headers: { set: { Strict-Transport-Security: \"max-age=31536000\" } }\n"
            "%s"
            "pools:\n%s" % (self.admin_port, self.log, pool_line, listener_extra, routes, extra,
                            pools))
        return self.f

    def tearDown(self):
        super().tearDown()
        if getattr(self, "log", None) and os.path.exists(self.log):
            os.unlink(self.log)

    def served(self, target, host="www.test", extra=b"", method=b"GET"):
        r = raw_get(self.f.port, target, host, extra, method)
        return r.status, r.header("X-Backend"), r

    def test_first_match_wins_on_every_key(self):
        self.start()
        cases = [
            ("/v1/users", "api.example.com", b"", b"GET", "api"),
            ("/v1/users", "API.Example.COM:8080", b"", b"GET", "api"),  # case and port ignored
            ("/v1/users", "api.example.com.", b"", b"GET", "api"),      # trailing dot
            ("/v2/users", "api.example.com", b"", b"GET", "fallback"),
            ("/exact", "a.example.com", b"", b"GET", "wild"),
            ("/exact", "a.b.example.com", b"", b"GET", "fallback"),     # one label only
            ("/exact", "example.com", b"", b"GET", "fallback"),
            ("/exact/", "a.example.com", b"", b"GET", "fallback"),      # path is exact
            ("/x", "h", b"X-Canary: on\r\n", b"GET", "canary"),
            ("/x", "h", b"X-Canary: off\r\n", b"GET", "fallback"),
            ("/x", "h", b"x-canary-any: \r\n", b"GET", "canary"),       # presence only
            ("/upload/a", "h", b"Content-Length: 0\r\n", b"POST", "uploads"),
            ("/upload/a", "h", b"Content-Length: 0\r\n", b"PUT", "uploads"),
            ("/upload/a", "h", b"", b"GET", "fallback"),
            ("/item/42", "h", b"", b"GET", "items"),
            ("/item/42x", "h", b"", b"GET", "fallback"),
            ("/v1/users", "api.example.com", b"X-Canary: on\r\n", b"GET", "api"),  # order
        ]
        for target, host, extra, method, want in cases:
            status, backend, _ = self.served(target, host, extra, method)
            self.assertEqual((status, backend), (200, want), (target, host, extra, method))
        for name, b in self.backends.items():
            want = sum(1 for c in cases if c[4] == name)
            self.assertEqual(b.stats()["requests"], want, name)

    def test_redirects_and_fixed_answers(self):
        self.start()
        r = raw_get(self.f.port, "/old/page?x=1")
        self.assertEqual(r.status, 301)
        self.assertEqual(r.header("Location"), "https://example.com/new/")
        self.assertEqual(r.header("Content-Length"), "0")
        self.assertEqual(r.header("Strict-Transport-Security"), "max-age=31536000")
        r = raw_get(self.f.port, "/a/b?q=1&r=2", host="www.example.com:8080")
        self.assertEqual(r.status, 308)
        self.assertEqual(r.header("Location"), "https://www.example.com/a/b?q=1&r=2")
        r = raw_get(self.f.port, "/healthz")
        self.assertEqual((r.status, r.body, r.header("Content-Type")), (200, b"ok\n", "text/plain"))
        r = raw_get(self.f.port, "/healthz", method=b"HEAD")
        self.assertEqual((r.status, r.body, r.header("Content-Length")), (200, b"", "3"))
        r = raw_get(self.f.port, "/x?a=2&debug=1")
        self.assertEqual((r.status, r.body), (403, b"no debug\n"))
        r = raw_get(self.f.port, "/x?debug=10")
        self.assertEqual(r.header("X-Backend"), "fallback")
        # keep-alive goes on after a fixed answer: two requests on one connection
        s = socket.create_connection(("127.0.0.1", self.f.port), timeout=5)
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: h\r\n\r\nGET /healthz HTTP/1.1\r\nHost: h\r\n"
                  b"Connection: close\r\n\r\n")
        data = read_to_end(s)
        self.assertEqual(data.count(b"HTTP/1.1 200 OK"), 2, data)
        for b in self.backends.values():
            if b.name != "fallback":
                self.assertEqual(b.stats()["requests"], 0, b.name)

    def test_no_route_and_no_pool_is_404(self):
        self.start(pool_line="", routes="      - match: { path: /only }\n        pool: web\n")
        self.assertEqual(self.served("/only")[:2], (200, "web"))
        r = raw_get(self.f.port, "/other")
        self.assertEqual(r.status, 404)
        # a well-formed request no route takes keeps its connection: the next one is served
        s = socket.create_connection(("127.0.0.1", self.f.port), timeout=5)
        s.sendall(b"GET /other HTTP/1.1\r\nHost: h\r\n\r\nGET /only HTTP/1.1\r\nHost: h\r\n"
                  b"Connection: close\r\n\r\n")
        data = read_to_end(s)
        self.assertTrue(data.startswith(b"HTTP/1.1 404 "), data)
        self.assertIn(b"HTTP/1.1 200 OK", data)
        self.assertEqual(sum(b.stats()["requests"] for b in self.backends.values()), 2)

    def test_paths_cannot_sneak_past_a_rule(self):
        guard = ("      - name: guard\n"
                 "        match: { path_prefix: /admin }\n"
                 "        respond: { status: 403, body: \"forbidden\\n\" }\n"
                 "      - name: v1\n"
                 "        match: { path_prefix: /v1/ }\n"
                 "        pool: api\n")
        self.start(routes=guard)
        for target in ("/admin", "/v1/../admin", "/v1/%2e%2e/admin", "/v1/%2E%2E/admin",
                       "//admin", "/v1/..//admin", "/./admin", "/%61dmin", "/v1/./../admin/x"):
            r = raw_get(self.f.port, target)
            self.assertEqual(r.status, 403, target)
        for target in ("/../admin", "/v1/../../admin", "/%2e%2e/admin"):
            self.assertEqual(raw_get(self.f.port, target).status, 400, target)
        # %2F is not a separator: "/v1%2F..%2Fadmin" is one segment, not /admin
        self.assertEqual(self.served("/v1%2F..%2Fadmin")[:2], (200, "fallback"))
        self.assertEqual(sum(b.stats()["requests"] for n, b in self.backends.items()
                             if n != "fallback"), 0)

    def test_merge_slashes_off(self):
        guard = ("      - match: { path_prefix: /admin }\n"
                 "        respond: { status: 403 }\n")
        self.start(routes=guard, listener_extra="    merge_slashes: false\n")
        self.assertEqual(raw_get(self.f.port, "/admin").status, 403)
        self.assertEqual(self.served("//admin")[:2], (200, "fallback"))

    def forwarded_line(self, target, host="h"):
        r = raw_get(self.f.port, target, host)
        line, fields, _ = echo_headers(r.body)
        return r.header("X-Backend"), line, dict((k.lower(), v) for k, v in fields)

    def test_forwarded_path_original_or_normalised(self):
        routes = "      - match: { path_prefix: /v1/ }\n        pool: api\n"
        self.start(routes=routes)
        backend, line, _ = self.forwarded_line("/v1/./a/%7Eb/../c?echo=1")
        self.assertEqual((backend, line), ("api", "GET /v1/./a/%7Eb/../c?echo=1 HTTP/1.1"))

    def test_forwarded_path_normalised(self):
        routes = "      - match: { path_prefix: /v1/ }\n        pool: api\n"
        self.start(routes=routes, listener_extra="    forward_normalized_path: true\n")
        backend, line, _ = self.forwarded_line("/v1/./a/%7Eb/../c//d?echo=1&x=%2e")
        self.assertEqual((backend, line), ("api", "GET /v1/a/c/d?echo=1&x=%2e HTTP/1.1"))

    def test_header_rules(self):
        self.start()
        r = raw_get(self.f.port, "/v1/x?echo=1", host="api.example.com",
                    extra=b"X-Debug: secret\r\nX-Env: dev\r\n")
        _, fields, _ = echo_headers(r.body)
        names = [k.lower() for k, _ in fields]
        values = dict((k.lower(), v) for k, v in fields)
        self.assertNotIn("x-debug", names)
        self.assertEqual(names.count("x-env"), 1)
        self.assertEqual(values["x-env"], "prod")
        self.assertEqual(values["x-route"], "api")
        self.assertEqual(r.header("Strict-Transport-Security"), "max-age=31536000")
        self.assertEqual(r.header("X-Backend"), "api")
        # route rules apply to that route only
        r = raw_get(self.f.port, "/admin/x?echo=1")
        self.assertIsNone(r.header("X-Backend"))
        self.assertEqual(r.header("X-Admin"), "yes")
        _, fields, _ = echo_headers(r.body)
        self.assertNotIn("x-route", [k.lower() for k, _ in fields])
        self.assertEqual(self.backends["admin"].stats()["requests"], 1)

    def test_connect_is_405(self):
        self.start()
        r = exchange(self.f.port, b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443"
                                  b"\r\n\r\n")
        self.assertEqual(r.status, 405)
        self.assertIn("GET", r.header("Allow"))

    def test_route_is_logged_counted_and_listed(self):
        self.start()
        self.assertEqual(self.served("/v1/a", "api.example.com")[:2], (200, "api"))
        self.assertEqual(raw_get(self.f.port, "/healthz").status, 200)
        self.assertEqual(raw_get(self.f.port, "/healthz").status, 200)
        self.assertEqual(self.served("/nothing")[:2], (200, "fallback"))

        def lines():
            with open(self.log) as fh:
                return [json.loads(l) for l in fh if l.strip()]
        wait_for(lambda: len(lines()) >= 4, what="4 access log lines")
        got = [(l["target"], l["route"], l["pool"], l["status"]) for l in lines()]
        self.assertEqual(got, [("/v1/a", "api", "api", 200), ("/healthz", "healthz", None, 200),
                               ("/healthz", "healthz", None, 200),
                               ("/nothing", None, "fallback", 200)])
        api = json.loads(urllib.request.urlopen(
            "http://127.0.0.1:%d/api/routes" % self.admin_port, timeout=5).read())
        routes = {r["name"]: r for r in api["listeners"][0]["routes"]}
        self.assertEqual(list(routes)[:3], ["api", "exact", "canary"])
        self.assertEqual(routes["api"]["requests"]["2xx"], 1)
        self.assertEqual(routes["healthz"]["requests"]["total"], 2)
        self.assertEqual(routes["api"]["match"], {"host": ["api.example.com"],
                                                  "path_prefix": "/v1/"})
        self.assertEqual(routes["old"]["redirect"]["status"], 301)
        metrics = urllib.request.urlopen("http://127.0.0.1:%d/metrics" % self.admin_port,
                                         timeout=5).read().decode()
        self.assertIn('fulcrum_route_requests_total{listener="web",route="healthz",'
                      'code_class="2xx"} 2', metrics)
        self.assertIn('fulcrum_route_requests_total{listener="web",route="api",'
                      'code_class="2xx"} 1', metrics)
        # nothing more is logged after an idle moment: each request once
        time.sleep(0.3)
        self.assertEqual(len(lines()), 4)


class RouteConfigErrorsTest(FulcrumTestCase):
    def test_every_error_with_its_position(self):
        text = ("listeners:\n"
                "  - bind: 127.0.0.1:1\n"
                "    routes:\n"
                "      - match: { path_prefix: /a/ }\n"
                "        pool: nope\n"
                "      - match: { path_regex: \"(\" }\n"
                "        pool: app\n"
                "      - match: {}\n"
                "        pool: app\n"
                "      - match: { path: /late }\n"
                "        pool: app\n"
                "      - match: { path: /r }\n"
                "        redirect: { status: 301 }\n"
                "pools:\n  - name: app\n    servers: [{address: 127.0.0.1:9}]\n")
        fd, path = tempfile.mkstemp(suffix=".yaml")
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        try:
            out = subprocess.run([FULCRUM, "-t", "-c", path], capture_output=True, text=True,
                                 timeout=10)
        finally:
            os.unlink(path)
        self.assertNotEqual(out.returncode, 0)
        err = out.stderr
        self.assertIn(path + ":5:15: listeners[0].routes[0].pool: pool \"nope\" is not defined",
                      err)
        self.assertIn(path + ":6:30: listeners[0].routes[1].match.path_regex: not a valid POSIX "
                      "extended regular expression", err)
        self.assertIn(path + ":10:16: listeners[0].routes[3].match: unreachable: routes[2]", err)
        self.assertIn(path + ":12:16: listeners[0].routes[4].match: unreachable: routes[2]", err)
        self.assertIn(path + ":13:19: listeners[0].routes[4].redirect: a redirect needs a target",
                      err)
