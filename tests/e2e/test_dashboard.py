"""
test_dashboard.py - the dashboard (src/ctl/dashboard.html) in a real browser, against the real fulcrum.

fulcrum runs with an admin listener; tests/browser/dashboard.mjs (playwright-core driving Debian's
/usr/bin/chromium, never a downloaded browser) opens the page, waits until every server row shows
the state the API reports, clicks a button, and waits for the row to change. The result is checked
twice: by what the page showed (the driver's JSON) and through the API (GET /api/state).

Needs node, npm and chromium: a machine without them FAILS these tests (CI installs them). The
node project in tests/browser is installed with `npm ci` the first time it is missing.
FULCRUM_DASHBOARD_PNG=path also saves the screenshot there (docs/dashboard.png is made so).
"""
import base64
import http.client
import json
import os
import shutil
import signal
import struct
import subprocess
import tempfile
import threading
import time

from harness import ROOT, FulcrumTestCase, config, free_port, get, port_open, wait_for

BROWSER_DIR = os.path.join(ROOT, "tests", "browser")
DRIVER = os.path.join(BROWSER_DIR, "dashboard.mjs")
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
TOKEN = "dash-Token_0123456789"

_installed = False


def check_conf():
    return ("    health_check:\n"
            "      interval: 200ms\n"
            "      fast_interval: 100ms\n"
            "      timeout: 200ms\n"
            "      rise: 2\n"
            "      fall: 2\n")


def admin_conf(port, token=None):
    return "admin:\n  bind: 127.0.0.1:%d\n%s" % (port, '  token: "%s"\n' % token if token else "")


def basic(password, user="admin"):
    return "Basic " + base64.b64encode(("%s:%s" % (user, password)).encode()).decode()


def api(port, path="/api/state", method="GET", body=None, token=None):
    """One admin API call; returns (status, headers (lower-case), parsed JSON or raw bytes)."""
    headers = {"Authorization": basic(token)} if token else {}
    if method not in ("GET", "HEAD"):
        headers["Content-Type"] = "application/json"
    if body is not None:
        body = json.dumps(body)
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request(method, path, body=body, headers=headers)
    r = conn.getresponse()
    data = r.read()
    hdrs = {k.lower(): v for k, v in r.getheaders()}
    conn.close()
    if "json" in hdrs.get("content-type", ""):
        data = json.loads(data)
    return r.status, hdrs, data


def states(port, token=None):
    """{pool: {server: state}} as the API reports it."""
    status, _, data = api(port, token=token)
    assert status == 200, (status, data)
    return {p["name"]: {s["name"]: s["state"] for s in p["servers"]} for p in data["pools"]}


def server_info(port, pool, server, token=None):
    _, _, data = api(port, token=token)
    for p in data["pools"]:
        for s in p["servers"]:
            if p["name"] == pool and s["name"] == server:
                return s
    raise AssertionError("no server %s in pool %s" % (server, pool))


def png_size(path):
    with open(path, "rb") as f:
        head = f.read(24)
    assert head[:8] == b"\x89PNG\r\n\x1a\n", "%s is not a PNG" % path
    return struct.unpack(">II", head[16:24])


class Traffic:
    """Requests to fulcrum from a thread until stopped (at most `limit` of them, so it always
    ends), so the page has rates to show. Counts the answers by backend."""

    def __init__(self, port, limit=3000, pause=0.01):
        self.port, self.limit, self.pause = port, limit, pause
        self.seen = {}
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        for i in range(self.limit):
            if self.stopping.is_set():
                return
            try:
                path = "/?status=503" if i % 20 == 0 else "/?delay=%d" % (i % 3)
                status, hdrs, _ = get(self.port, path, timeout=5)
                key = hdrs.get("x-backend", str(status))
                self.seen[key] = self.seen.get(key, 0) + 1
            except OSError:
                pass
            time.sleep(self.pause)

    def stop(self):
        self.stopping.set()
        self.thread.join(10)


class DashboardTestCase(FulcrumTestCase):
    def setUp(self):
        super().setUp()
        self.traffic = []

    def tearDown(self):
        for t in self.traffic:
            t.stop()
        super().tearDown()

    def require_browser(self):
        """Fails (does not skip) without node or chromium; installs tests/browser once."""
        global _installed
        node, npm = shutil.which("node"), shutil.which("npm")
        if not node or not npm:
            self.fail("node and npm are needed for the dashboard test: apt-get install nodejs npm")
        if not os.access(CHROMIUM, os.X_OK):
            self.fail("chromium is needed for the dashboard test, not found at %s: "
                      "apt-get install chromium" % CHROMIUM)
        if _installed:
            return node
        with open(os.path.join(BROWSER_DIR, "package-lock.json")) as f:
            want = json.load(f)["packages"]["node_modules/playwright-core"]["version"]
        have = None
        try:
            with open(os.path.join(BROWSER_DIR, "node_modules", "playwright-core",
                                   "package.json")) as f:
                have = json.load(f)["version"]
        except (OSError, ValueError, KeyError):
            pass
        if have != want:
            env = dict(os.environ, PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD="1")
            r = subprocess.run([npm, "ci", "--prefix", BROWSER_DIR, "--no-audit", "--no-fund",
                                "--loglevel=error"], env=env, capture_output=True, text=True,
                               timeout=300)
            if r.returncode != 0:
                self.fail("npm ci --prefix tests/browser failed:\n" + r.stdout + r.stderr)
        _installed = True
        return node

    def driver(self, url, spec, expect_ok=True):
        """Runs dashboard.mjs with spec on stdin; returns its JSON result."""
        node = self.require_browser()
        r = subprocess.run([node, DRIVER, url], input=json.dumps(spec), capture_output=True,
                           text=True, timeout=240, cwd=BROWSER_DIR)
        lines = r.stdout.strip().splitlines()
        try:
            result = json.loads(lines[-1])
        except (IndexError, ValueError):
            self.fail("dashboard.mjs printed no result (exit %d):\n%s%s" % (
                r.returncode, r.stdout, r.stderr))
        if expect_ok and (r.returncode != 0 or not result.get("ok")):
            self.fail("dashboard.mjs failed (exit %d): %s\n%s" % (
                r.returncode, result.get("error"), r.stderr))
        return result

    def start(self, n, token=None, health=False):
        """n backends behind fulcrum with an admin listener; returns (backends, fulcrum, admin
        port), once the admin API answers."""
        bs = [self.backend("b%d" % i) for i in range(n)]
        admin = free_port()
        f = self.fulcrum(config([("s%d" % i, b.address) for i, b in enumerate(bs)],
                                pool_extra=check_conf() if health else "",
                                extra=admin_conf(admin, token)))
        wait_for(lambda: port_open(admin) or not f.alive(), what="the admin listener")
        self.assertTrue(f.alive(), f.log())
        return bs, f, admin


class DashboardTest(DashboardTestCase):
    def test_shows_states_and_drains_a_server(self):
        bs, f, admin = self.start(3, health=True)
        # s1 fails its health checks: down; the others up.
        conn = http.client.HTTPConnection("127.0.0.1", bs[1].port, timeout=5)
        conn.request("POST", "/healthcheck/fail")
        self.assertEqual(conn.getresponse().status, 200)
        conn.close()
        expected = {"app": {"s0": "up", "s1": "down", "s2": "up"}}
        wait_for(lambda: states(admin) == expected, timeout=15,
                 what="s1 down and s0, s2 up in /api/state")

        for _ in range(30):
            get(f.port, "/")
        self.traffic.append(Traffic(f.port))

        png = os.environ.get("FULCRUM_DASHBOARD_PNG") or \
            os.path.join(tempfile.mkdtemp(prefix="fulcrum-dash-"), "dashboard.png")
        result = self.driver("http://127.0.0.1:%d/" % admin, {
            "expect": expected, "exact": True, "traffic": True,
            "click": {"pool": "app", "server": "s2", "action": "drain", "state": "draining"},
            "screenshot": png, "timeout_ms": 30000})

        # What the page showed: every server with its state, then s2 draining.
        self.assertEqual(result["status"], 200)
        self.assertEqual(result["before"]["pools"], expected)
        self.assertEqual(result["after"]["pools"]["app"]["s2"], "draining")
        self.assertIsNone(result["after"]["error"])
        self.assertTrue(any(r > 0 for r in result["before"]["rates"]), result["before"])
        with open(os.path.join(ROOT, "VERSION")) as fv:
            self.assertEqual(result["before"]["header"]["version"], fv.read().strip())
        self.assertEqual(png_size(png), (1280, 800))

        # What fulcrum did: s2 is draining, through the API and for real traffic.
        s2 = server_info(admin, "app", "s2")
        self.assertEqual((s2["state"], s2["admin"]), ("draining", "drain"))
        self.assertEqual(states(admin), {"app": {"s0": "up", "s1": "down", "s2": "draining"}})
        self.traffic.pop().stop()
        seen = [get(f.port, "/")[1].get("x-backend") for _ in range(6)]
        self.assertEqual(seen, ["b0"] * 6)

        # The page's Ready button puts it back (a fresh page: the API is what it reads).
        draining = {"app": {"s0": "up", "s1": "down", "s2": "draining"}}
        result = self.driver("http://127.0.0.1:%d/" % admin, {
            "expect": draining, "exact": True,
            "click": [{"pool": "app", "server": "s2", "action": "ready", "state": "up"}],
            "timeout_ms": 30000})
        self.assertEqual(result["before"]["pools"], draining)
        self.assertEqual(result["clicks"][0]["pools"]["app"]["s2"], "up")
        self.assertIsNone(result["after"]["error"])
        s2 = server_info(admin, "app", "s2")
        self.assertEqual((s2["state"], s2["admin"]), ("up", "ready"))
        self.assertEqual(sorted(set(get(f.port, "/")[1].get("x-backend") for _ in range(6))),
                         ["b0", "b2"])

    def test_page_shows_an_api_error(self):
        bs, f, admin = self.start(2)
        bad = {"state": "sideways"}
        status, _, answer = api(admin, "/api/pools/app/servers/s1", "POST", bad)
        self.assertEqual(status, 400, answer)
        # The page's Drain request, with its body replaced on the way: the API's error message
        # must appear on the page, and nothing changes.
        result = self.driver("http://127.0.0.1:%d/" % admin, {
            "expect": {"app": {"s0": "up", "s1": "up"}}, "exact": True,
            "click_error": {"pool": "app", "server": "s1", "action": "drain",
                            "body": json.dumps(bad)}, "timeout_ms": 30000})
        self.assertIn("failed", result["banner"])
        self.assertIn(answer["error"], result["banner"])
        self.assertEqual(states(admin), {"app": {"s0": "up", "s1": "up"}})


    def test_rates_and_percentiles(self):
        # The page's arithmetic, on the example of the API contract: buckets are not
        # cumulative; percentiles interpolate linearly inside the bucket holding the rank.
        bs, f, admin = self.start(1)
        _, _, state = api(admin)
        bounds = json.dumps(state["buckets"])
        lat = "{count: 100, buckets: [10, 50, 30, 8, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]}"
        above = "{count: 7, buckets: [1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]}"
        a = ('{requests: {total: 100, "5xx": 2}, latency: {count: 100, buckets: %s}}' %
             json.dumps([10, 50, 30, 8, 2] + [0] * 11))
        b = ('{requests: {total: 300, "5xx": 12}, latency: {count: 300, buckets: %s}}' %
             json.dumps([10, 250, 30, 8, 2] + [0] * 11))
        restarted = '{requests: {total: 5, "5xx": 0}, latency: {count: 5, buckets: %s}}' % \
            json.dumps([5] + [0] * 15)
        result = self.driver("http://127.0.0.1:%d/" % admin, {
            "expect": {"app": {"s0": "up"}}, "timeout_ms": 30000, "evaluate": [
                "quantile(0.5, %s, %s)" % (lat, bounds),
                "quantile(0.99, %s, %s)" % (lat, bounds),
                "quantile(0.5, %s, %s)" % (above, bounds),
                "quantile(0.5, {count: 0, buckets: []}, %s)" % bounds,
                "rates(%s, %s, 2, %s)" % (a, b, bounds),
                "rates(%s, %s, 2, %s)" % (a, restarted, bounds),
                "fmtQuantile(quantile(0.5, %s, %s))" % (lat, bounds),
            ]})
        p50, p99, over, empty, r, gone, text = result["evaluated"]
        self.assertAlmostEqual(p50["value"], 0.0005 + 0.0005 * 40 / 50)   # rank 50 in bucket 1
        self.assertAlmostEqual(p99["value"], 0.005 + 0.005 * 1 / 2)       # rank 99 in bucket 4
        self.assertEqual(over, {"above": 60})
        self.assertIsNone(empty)
        self.assertAlmostEqual(r["rps"], 100.0)            # 200 requests in 2 s
        self.assertAlmostEqual(r["err"], 10 / 200)
        self.assertAlmostEqual(r["p50"]["value"], 0.0005 + 0.0005 * 100 / 200)
        self.assertEqual(gone, {"rps": None, "err": None, "p50": None, "p99": None})
        self.assertEqual(text, "0.90 ms")

    def test_follows_a_reload(self):
        bs, f, admin = self.start(2)
        b2 = self.backend("b2")
        self.traffic.append(Traffic(f.port))
        signal_path = os.path.join(tempfile.mkdtemp(prefix="fulcrum-dash-"), "ready")
        # The page stays open across the reload: s0 disappears, s2 appears, s1 is kept.
        spec = {"expect": {"app": {"s0": "up", "s1": "up"}}, "exact": True, "traffic": True,
                "then": {"signal": signal_path, "exact": True, "traffic": True,
                         "expect": {"app": {"s1": "up", "s2": "up"}}},
                "timeout_ms": 30000}
        driver = subprocess.Popen(
            [self.require_browser(), DRIVER, "http://127.0.0.1:%d/" % admin, json.dumps(spec)],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            cwd=BROWSER_DIR)
        try:
            wait_for(lambda: os.path.exists(signal_path) or driver.poll() is not None,
                     timeout=90, interval=0.05, what="the page to show s0 and s1")
            if os.path.exists(signal_path):
                with open(f.config_path, "w") as cf:
                    cf.write(config([("s1", bs[1].address), ("s2", b2.address)],
                                    extra=admin_conf(admin)).replace("{port}", str(f.port)))
                f.signal(signal.SIGHUP)
            out, err = driver.communicate(timeout=120)
        finally:
            if driver.poll() is None:
                driver.kill()
                driver.communicate()
        result = json.loads(out.strip().splitlines()[-1]) if out.strip() else {}
        if driver.returncode != 0 or not result.get("ok"):
            self.fail("dashboard.mjs failed (exit %d): %s\n%s" % (
                driver.returncode, result.get("error"), err))
        self.assertEqual(result["later"]["pools"], {"app": {"s1": "up", "s2": "up"}})
        self.assertIn("1 ok", result["later"]["header"]["reloads"])
        _, _, state = api(admin)
        self.assertEqual(state["fulcrum"]["reloads"]["ok"], 1)

    def test_shows_routes_and_their_rates(self):
        b = self.backend("b0")
        admin = free_port()
        text = ("threads: 1\nlisteners:\n  - name: web\n    bind: 127.0.0.1:{port}\n"
                "    routes:\n"
                "      - name: busy\n        match: { path_prefix: / , method: GET }\n"
                "        pool: app\n"
                "      - name: health\n        match: { path: /healthz }\n"
                "        respond: { status: 200 }\n"
                "pools:\n  - name: app\n    servers: [{name: s0, address: %s}]\n%s" %
                (b.address, admin_conf(admin, None)))
        f = self.fulcrum(text)
        wait_for(lambda: port_open(admin) or not f.alive(), what="the admin listener")
        self.traffic.append(Traffic(f.port, pause=0.005))
        # two refreshes with traffic between them give the busy route a rate
        rows = ("new Promise((done) => { const t0 = Date.now(); const poll = () => {"
                " const rows = [...document.querySelectorAll('#routes tbody tr')].map((r) =>"
                " [r.dataset.listener, r.dataset.route, ...[...r.children].map((c) =>"
                " c.textContent)]);"
                " if ((rows.length && rows[0][6] !== '–' && Number(rows[0][6]) > 0) ||"
                " Date.now() - t0 > 15000) done(rows); else setTimeout(poll, 100); }; poll(); })")
        result = self.driver("http://127.0.0.1:%d/" % admin, {
            "expect": {"app": {"s0": "up"}}, "evaluate": [rows], "timeout_ms": 30000})
        shown = result["evaluated"][0]
        self.assertEqual([(r[0], r[1]) for r in shown], [("web", "busy"), ("web", "health")])
        busy, health = shown
        self.assertEqual(busy[4], "path_prefix /, method GET")
        self.assertEqual(busy[5], "pool app")
        self.assertGreater(float(busy[6]), 0)           # its request rate
        self.assertGreater(int(busy[7].replace(",", "").replace(" ", "")), 0)
        self.assertEqual((health[4], health[5]), ("path /healthz", "answer 200"))


class DashboardBalancingTest(DashboardTestCase):
    def test_shows_the_algorithm_and_latency_estimates(self):
        bs = [self.backend("b%d" % i) for i in range(2)]
        admin = free_port()
        f = self.fulcrum(config([("s%d" % i, b.address) for i, b in enumerate(bs)],
                                balance="peak-ewma",
                                pool_extra="    sticky: {cookie: SRV}\n",
                                extra=admin_conf(admin, None)))
        wait_for(lambda: port_open(admin) or not f.alive(), what="the admin listener")
        self.traffic.append(Traffic(f.port, pause=0.005))
        shown = ("new Promise((done) => { const t0 = Date.now(); const poll = () => {"
                 " const est = [...document.querySelectorAll('tr.server')].map((r) =>"
                 " r.querySelector('[data-field=\"active-sub\"]').textContent);"
                 " const head = document.querySelector('[data-pool=\"app\"] .pool-head"
                 " [data-field=\"balance\"]').textContent;"
                 " if ((est.length === 2 && est.every((e) => /^est [0-9.]+ ms$/.test(e))) ||"
                 " Date.now() - t0 > 15000) done([head, ...est]); else setTimeout(poll, 100);"
                 " }; poll(); })")
        result = self.driver("http://127.0.0.1:%d/" % admin, {
            "expect": {"app": {"s0": "up", "s1": "up"}}, "evaluate": [shown],
            "timeout_ms": 30000})
        head, *est = result["evaluated"][0]
        self.assertEqual(head, "peak-ewma · sticky SRV")
        for e in est:
            self.assertRegex(e, r"^est [0-9.]+ ms$")


    def test_shows_discovered_servers_and_their_source(self):
        from test_discovery_etcd import Etcd, PREFIX, RegisteredBackend, etcd_config
        etcd = Etcd()
        self.addCleanup(etcd.cleanup)
        for name in ("e1", "e2"):
            self.processes.append(RegisteredBackend(name, etcd))
        admin = free_port()
        f = self.fulcrum(etcd_config([etcd.endpoint], admin_port=admin))
        wait_for(lambda: port_open(admin) or not f.alive(), what="the admin listener")
        shown = ("[document.querySelector('[data-pool=\"app\"] .pool-head"
                 " [data-field=\"discovery\"]').textContent,"
                 " ...[...document.querySelectorAll('tr.server')].map((r) =>"
                 " r.querySelector('[data-field=\"runtime\"]').textContent)]")
        result = self.driver("http://127.0.0.1:%d/" % admin, {
            "expect": {"app": {"e1": "up", "e2": "up"}}, "exact": True, "evaluate": [shown]})
        head, *tags = result["evaluated"][0]
        self.assertRegex(head, r"^discovery etcd %s ok · 2 found · answered [0-9]+s ago$" % PREFIX)
        self.assertEqual(tags, ["etcd", "etcd"])


class DashboardTokenTest(DashboardTestCase):
    def test_basic_credentials(self):
        bs, f, admin = self.start(2, token=TOKEN)
        url = "http://127.0.0.1:%d/" % admin

        # Without credentials: 401 with a Basic challenge, for the page and for the API.
        status, hdrs, _ = api(admin, "/")
        self.assertEqual(status, 401)
        self.assertIn("basic", hdrs.get("www-authenticate", "").lower())
        self.assertEqual(api(admin)[0], 401)
        self.assertEqual(api(admin, token="wrong")[0], 401)
        result = self.driver(url, {"expect_status": 401, "timeout_ms": 30000})
        self.assertEqual(result["status"], 401)
        result = self.driver(url, {"expect_status": 401, "timeout_ms": 30000,
                                   "credentials": {"username": "admin", "password": "wrong"}})
        self.assertEqual(result["status"], 401)

        # With them (any user name, the token as the password): the page works, fetches and
        # POSTs included.
        expected = {"app": {"s0": "up", "s1": "up"}}
        wait_for(lambda: states(admin, TOKEN) == expected, what="both servers up")
        result = self.driver(url, {
            "expect": expected, "exact": True,
            "click": {"pool": "app", "server": "s0", "action": "maint", "state": "maint"},
            "credentials": {"username": "admin", "password": TOKEN}, "timeout_ms": 30000})
        self.assertEqual(result["status"], 200)
        self.assertEqual(result["after"]["pools"]["app"]["s0"], "maint")
        s0 = server_info(admin, "app", "s0", TOKEN)
        self.assertEqual((s0["state"], s0["admin"]), ("maint", "maint"))


class DashboardTlsTest(DashboardTestCase):
    def test_shows_each_certificate_and_its_expiry(self):
        import tempfile as tf
        from tlspki import make_pki
        pki = make_pki(os.path.join(tf.gettempdir(), "fulcrum-e2e-pki"))
        b = self.backend("b0")
        admin = free_port()
        text = ("threads: 1\nlisteners:\n  - name: https\n    bind: 127.0.0.1:{port}\n"
                "    pool: app\n    tls:\n      certificates:\n"
                "        - { cert: %s, key: %s }\n        - { cert: %s, key: %s }\n"
                "pools:\n  - name: app\n    servers: [{name: s0, address: %s}]\n%s" %
                (pki.site_ecdsa, pki.site_ecdsa_key, pki.expiring, pki.expiring_key, b.address,
                 admin_conf(admin, None)))
        f = self.fulcrum(text)
        wait_for(lambda: port_open(admin) or not f.alive(), what="the admin listener")
        rows = "[...document.querySelectorAll('#certificates li')].map(li => " \
               "[li.dataset.certificate, li.dataset.soon, li.textContent])"
        result = self.driver("http://127.0.0.1:%d/" % admin, {
            "expect": {"app": {"s0": "up"}}, "evaluate": [rows], "timeout_ms": 30000})
        shown = result["evaluated"][0]
        self.assertEqual([(r[0], r[1]) for r in shown],
                         [(pki.site_ecdsa, "false"), (pki.expiring, "true")])
        self.assertIn("expires in 4 days", shown[1][2])
        self.assertIn("site.test, www.site.test", shown[0][2])
        self.assertIn("ECDSA", shown[0][2])
