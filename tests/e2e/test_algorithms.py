"""
test_algorithms.py - the balancing algorithms with real backends (docs/balancing.md): one
round-robin rotation for every thread, least-conn and peak-ewma against a slow server, the power
of two choices by weight, Maglev hashing (same key, same server; only a down server's keys move;
two processes agree; bounded load spreads a hot key), sticky cookies, --balance, and what the
access log, the admin API and the metrics say about it.
"""
import http.client
import json
import os
import signal
import subprocess
import tempfile
import threading
import time

import harness
from harness import FulcrumTestCase, config, free_port, get, port_open, served_by, wait_for
from test_admin import admin_extra, api


def slow(backend, ms):
    """Makes a fulcrum-backend answer every request ms later (0: at once again)."""
    conn = http.client.HTTPConnection("127.0.0.1", backend.port, timeout=5)
    conn.request("POST", "/slow?delay=%d" % ms)
    r = conn.getresponse()
    r.read()
    conn.close()
    assert r.status == 200, r.status


class Clients:
    """n threads, each sending requests on its own keep-alive connection until stopped or until
    each has sent per_client; records (time, backend) of every answer."""

    def __init__(self, port, n, per_client=None, headers=None):
        self.port, self.n, self.per_client = port, n, per_client
        self.headers = headers or {}
        self.seen = []
        self.errors = []
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.threads = [threading.Thread(target=self._run, daemon=True) for _ in range(n)]

    def _run(self):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        sent = 0
        try:
            while not self.stopping.is_set() and (self.per_client is None or
                                                  sent < self.per_client):
                conn.request("GET", "/", headers=self.headers)
                r = conn.getresponse()
                r.read()
                sent += 1
                with self.lock:
                    if r.status != 200:
                        self.errors.append(r.status)
                    self.seen.append((time.monotonic(), r.getheader("X-Backend")))
        except Exception as e:  # recorded: the test asserts there was none
            with self.lock:
                self.errors.append(repr(e))
        finally:
            conn.close()

    def __enter__(self):
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc):
        self.stopping.set()
        for t in self.threads:
            t.join(60)

    def join(self):
        for t in self.threads:
            t.join(120)

    def since(self, t0):
        with self.lock:
            return [b for t, b in self.seen if t >= t0]


def share(names, who):
    return names.count(who) / max(1, len(names))


def key_owner(port, key, header="X-User"):
    status, hdrs, _ = get(port, "/", headers={header: key})
    assert status == 200, status
    return hdrs["x-backend"]


def owners(port, keys, header="X-User"):
    """The backend of each key, over one keep-alive connection."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    out = {}
    try:
        for k in keys:
            conn.request("GET", "/", headers={header: k})
            r = conn.getresponse()
            r.read()
            assert r.status == 200, r.status
            out[k] = r.getheader("X-Backend")
    finally:
        conn.close()
    return out


class RoundRobinTest(FulcrumTestCase):
    def test_one_rotation_across_threads(self):
        """Two worker threads, a new connection per request (as six curls): 1, 2, 3, 1, 2, 3."""
        bs = [self.backend("b%d" % i) for i in range(3)]
        f = self.fulcrum(config([("s%d" % i, b.address) for i, b in enumerate(bs)], threads=2))
        seen = [get(f.port)[1]["x-backend"] for _ in range(12)]
        self.assertEqual(seen, ["b0", "b1", "b2"] * 4)

    def test_weighted_interleaving_across_threads(self):
        bs = [self.backend("b%d" % i) for i in range(3)]
        f = self.fulcrum(config([("s0", bs[0].address, 1), ("s1", bs[1].address, 1),
                                 ("s2", bs[2].address, 2)], threads=2))
        seen = [get(f.port)[1]["x-backend"] for _ in range(40)]
        for start in range(len(seen) - 3):
            window = seen[start:start + 4]
            self.assertEqual((window.count("b0"), window.count("b1"), window.count("b2")),
                             (1, 1, 2), window)

    def test_slow_start_ramps_the_shared_rotation_without_log_noise(self):
        """A server back from down starts with almost no share and grows to its full one: the
        control thread rebuilds the rotation while the ramp lasts, and says so nowhere (each
        state change is logged once, the checks' description once)."""
        bs = [self.backend("b%d" % i) for i in range(2)]
        f = self.fulcrum(config([("s%d" % i, b.address) for i, b in enumerate(bs)], threads=2,
                                pool_extra="    slow_start: 3s\n"
                                           "    health_check: {interval: 100ms, rise: 1, fall: 1}\n"))
        control = http.client.HTTPConnection("127.0.0.1", bs[1].port, timeout=5)
        control.request("POST", "/healthcheck/fail")
        control.getresponse().read()
        wait_for(lambda: "s1: UP -> DOWN" in f.log(), what="s1 down")
        control.request("POST", "/healthcheck/ok")
        control.getresponse().read()
        control.close()
        wait_for(lambda: "s1: DOWN -> UP" in f.log(), what="s1 up")
        early = served_by(f.port, 200).count("b1")
        wait_for(lambda: served_by(f.port, 200).count("b1") == 100, timeout=10, interval=0.2,
                 what="an even share once the ramp is over")
        print("\n    s1's share of 200 requests just after coming back: %d" % early)
        self.assertLess(early, 60)
        log = f.log()
        self.assertEqual(log.count("pool app: health checks"), 1, log)
        self.assertEqual(log.count("s1: UP -> DOWN"), 1)
        self.assertEqual(log.count("s1: DOWN -> UP"), 1)

    def test_balance_flag(self):
        bs = [self.backend("b%d" % i) for i in range(2)]
        aport = free_port()
        port = free_port()
        f = self.fulcrum(args=["--listen", "127.0.0.1:%d" % port, "--server", bs[0].address,
                               "--server", bs[1].address, "--balance", "least-conn",
                               "--admin", "127.0.0.1:%d" % aport], port=port)
        _, state, _ = api(aport, "GET", "/api/state")
        self.assertEqual(state["pools"][0]["balance"], "least-conn")
        self.assertEqual(sorted(served_by(f.port, 4)), ["b0", "b0", "b1", "b1"])


class DemoTest(FulcrumTestCase):
    def test_make_run_answers_one_two_three(self):
        """What a new user sees: `make run` (scripts/run-demo, two worker threads on this
        machine's two cores or more) and six curls, each a new connection: 1, 2, 3, 1, 2, 3."""
        ports = (8080, 9001, 9002, 9003, 9900)
        if any(port_open(p) for p in ports):
            self.skipTest("make run's ports are in use: %s" % (ports,))
        env = dict(os.environ, FULCRUM_BUILD=os.path.relpath(harness.BUILD, harness.ROOT))
        demo = subprocess.Popen([os.path.join(harness.ROOT, "scripts", "run-demo")],
                                cwd=harness.ROOT, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, start_new_session=True)
        try:
            out = b""
            deadline = time.monotonic() + 20
            while b"Press Ctrl-C" not in out and time.monotonic() < deadline:
                chunk = demo.stdout.read1(4096)
                if not chunk:
                    break
                out += chunk
            self.assertIn(b"Press Ctrl-C", out, out.decode(errors="replace"))
            seen = [get(8080)[2].decode().strip() for _ in range(6)]
            self.assertEqual(seen, ["Hello from backend-%d" % i for i in (1, 2, 3, 1, 2, 3)])
        finally:
            os.killpg(demo.pid, signal.SIGINT)
            demo.wait(20)
        wait_for(lambda: not any(port_open(p) for p in ports), what="the demo to stop")


class LoadAwareTest(FulcrumTestCase):
    def slow_share(self, balance, extra=""):
        bs = [self.backend("b%d" % i) for i in range(3)]
        slow(bs[0], 300)
        f = self.fulcrum(config([("s%d" % i, b.address) for i, b in enumerate(bs)],
                                balance=balance, pool_extra=extra, threads=2))
        with Clients(f.port, 20, per_client=12) as c:
            c.join()
        self.assertEqual(c.errors, [])
        names = [b for _, b in c.seen]
        self.assertEqual(len(names), 240)
        return share(names, "b0")

    def test_least_conn_sends_less_to_a_slow_server(self):
        """One server answers in 300 ms, two at once, 20 concurrent clients: round-robin gives
        the slow one a third, least-conn far less."""
        rr = self.slow_share("round-robin")
        lc = self.slow_share("least-conn")
        print("\n    slow server's share: round-robin %.1f%%, least-conn %.1f%%" % (
            100 * rr, 100 * lc))
        self.assertAlmostEqual(rr, 1 / 3, delta=0.02)
        self.assertLess(lc, 0.12)

    def test_random_two_choices_sends_less_to_a_slow_server(self):
        self.assertLess(self.slow_share("random"), 0.15)

    def test_random_follows_weights(self):
        bs = [self.backend("b%d" % i) for i in range(3)]
        f = self.fulcrum(config([("s0", bs[0].address, 1), ("s1", bs[1].address, 1),
                                 ("s2", bs[2].address, 2)], balance="random"))
        seen = served_by(f.port, 1200)
        # sequential requests: nothing in flight, so the draws alone decide (by weight)
        for name, want in (("b0", 300), ("b1", 300), ("b2", 600)):
            self.assertAlmostEqual(seen.count(name), want, delta=75, msg=name)

    def test_peak_ewma_avoids_a_slow_server_and_takes_it_back(self):
        bs = [self.backend("b%d" % i) for i in range(3)]
        aport = free_port()
        f = self.fulcrum(config([("s%d" % i, b.address) for i, b in enumerate(bs)],
                                balance="peak-ewma", pool_extra="    ewma_decay: 1s\n",
                                extra=admin_extra(aport), threads=2))
        with Clients(f.port, 20) as c:
            wait_for(lambda: len(c.seen) > 600, timeout=20, what="traffic")
            slow(bs[0], 200)
            t_slow = time.monotonic()
            # within seconds the slow server gets under 5% of requests (counted from a second
            # after it slowed down: its first slow answers set its estimate)

            def settled():
                window = c.since(t_slow + 1.0)
                return len(window) > 1500 and share(window, "b0") < 0.05
            wait_for(settled, timeout=20, interval=0.2, what="the slow server under 5%")
            window = c.since(t_slow + 1.0)
            slow_share = share(window, "b0")
            _, state, _ = api(aport, "GET", "/api/state")
            est = {s["name"]: s["latency_estimate_ms"] for s in state["pools"][0]["servers"]}
            self.assertGreater(est["s0"], 50)
            self.assertLess(est["s1"], 50)
            slow(bs[0], 0)
            t_back = time.monotonic()

            def recovered():
                window = c.since(max(t_back + 0.5, time.monotonic() - 2.0))
                return len(window) > 500 and share(window, "b0") > 0.2
            wait_for(recovered, timeout=30, interval=0.2, what="the server's share back")
            back = share(c.since(time.monotonic() - 2.0), "b0")
        self.assertEqual(c.errors, [])
        print("\n    slow server's share: %.1f%% while slow, %.1f%% after" % (
            100 * slow_share, 100 * back))
        status, text, _ = api(aport, "GET", "/metrics")
        self.assertIn('fulcrum_server_latency_estimate_seconds{pool="app",server="s0"}', text)


class HashTest(FulcrumTestCase):
    def hash_config(self, servers, extra="", pool_extra=""):
        return config(servers, balance="hash",
                      pool_extra="    hash_key: header:X-User\n" + pool_extra, extra=extra)

    def test_same_key_same_server(self):
        bs = [self.backend("b%d" % i) for i in range(4)]
        f = self.fulcrum(self.hash_config([("s%d" % i, b.address) for i, b in enumerate(bs)]))
        keys = ["user%d" % i for i in range(400)]
        first = owners(f.port, keys)
        self.assertEqual(owners(f.port, keys), first)
        counts = [list(first.values()).count(b.name) for b in bs]
        self.assertTrue(all(c > 50 for c in counts), counts)  # every server has keys

    def test_down_server_moves_only_its_keys(self):
        bs = [self.backend("b%d" % i) for i in range(4)]
        aport = free_port()
        f = self.fulcrum(self.hash_config([("s%d" % i, b.address) for i, b in enumerate(bs)],
                                          extra=admin_extra(aport)))
        keys = ["user%d" % i for i in range(1000)]
        before = owners(f.port, keys)
        _, state, _ = api(aport, "GET", "/api/state")
        self.assertEqual(state["pools"][0]["hash"], {"key": "header:X-User", "balance_factor": 0,
                                                     "spilled": 0, "table_size": 65537,
                                                     "table_bytes": 131074})
        status, _, _ = api(aport, "POST", "/api/pools/app/servers/s2", {"state": "maint"})
        self.assertEqual(status, 200)
        after = owners(f.port, keys)
        moved = [k for k in keys if before[k] != after[k]]
        self.assertEqual(sorted(moved), sorted(k for k in keys if before[k] == "b2"))
        self.assertEqual(len({after[k] for k in moved}), 3)  # spread over the three others
        api(aport, "POST", "/api/pools/app/servers/s2", {"state": "ready"})
        wait_for(lambda: owners(f.port, keys) == before, timeout=10, what="keys back")

    def test_servers_added_and_removed_through_the_api(self):
        """A server added at runtime takes about 1/N of the keys (Maglev moves a few more between
        the others), and removing it puts every key back where it was."""
        bs = [self.backend("b%d" % i) for i in range(5)]
        aport = free_port()
        f = self.fulcrum(self.hash_config([("s%d" % i, b.address) for i, b in enumerate(bs[:4])],
                                          extra=admin_extra(aport)))
        keys = ["user%d" % i for i in range(2000)]
        before = owners(f.port, keys)
        status, _, _ = api(aport, "POST", "/api/pools/app/servers",
                           {"name": "s4", "address": bs[4].address})
        self.assertEqual(status, 201)
        after = owners(f.port, keys)
        moved = [k for k in keys if before[k] != after[k]]
        to_new = sum(after[k] == "b4" for k in moved)
        print("\n    a fifth server: %.1f%% of the keys moved, %.1f%% to it" % (
            100 * len(moved) / len(keys), 100 * to_new / len(keys)))
        # Maglev is nearly, not perfectly, minimal: a few keys also move between the others
        self.assertAlmostEqual(to_new / len(keys), 0.2, delta=0.04)
        self.assertLess(len(moved) - to_new, 0.03 * len(keys))
        status, _, _ = api(aport, "DELETE", "/api/pools/app/servers/s4")
        self.assertEqual(status, 200)
        self.assertEqual(owners(f.port, keys), before)
        # its idle connections were closed (active_connections counts the /stats call itself)
        wait_for(lambda: bs[4].stats()["active_connections"] == 1, what="idle connections closed")

    def test_two_instances_agree(self):
        """Two processes with the servers listed in different orders send each of 10,000 keys
        to the same server."""
        bs = [self.backend("b%d" % i) for i in range(5)]
        servers = [("s%d" % i, b.address) for i, b in enumerate(bs)]
        f1 = self.fulcrum(self.hash_config(servers))
        f2 = self.fulcrum(self.hash_config(list(reversed(servers))))
        keys = ["key-%d" % i for i in range(10000)]
        a = owners(f1.port, keys)
        b = owners(f2.port, keys)
        self.assertEqual(sum(a[k] != b[k] for k in keys), 0)

    def test_request_without_key(self):
        bs = [self.backend("b%d" % i) for i in range(2)]
        f = self.fulcrum(self.hash_config([("s0", bs[0].address), ("s1", bs[1].address)]))
        self.assertEqual(sorted(served_by(f.port, 4)), ["b0", "b0", "b1", "b1"])  # round-robin
        g = self.fulcrum(self.hash_config([("s0", bs[0].address), ("s1", bs[1].address)],
                                          pool_extra="    hash_key_required: true\n"))
        status, hdrs, _ = get(g.port, "/")
        self.assertEqual(status, 503)
        status, _, _ = get(g.port, "/", headers={"X-User": "u"})
        self.assertEqual(status, 200)

    def test_bounded_load_spreads_a_hot_key(self):
        bs = [self.backend("b%d" % i) for i in range(3)]
        for b in bs:
            slow(b, 100)
        log = tempfile.NamedTemporaryFile(prefix="fulcrum-e2e-", suffix=".log", delete=False)
        log.close()
        self.addCleanup(os.unlink, log.name)
        servers = [("s%d" % i, b.address) for i, b in enumerate(bs)]
        extra = "access_log:\n  path: %s\n" % log.name
        f = self.fulcrum(self.hash_config(servers, extra=extra,
                                          pool_extra="    hash_balance_factor: 125\n"))
        with Clients(f.port, 12, per_client=5, headers={"X-User": "hot"}) as c:
            c.join()
        self.assertEqual(c.errors, [])
        names = [b for _, b in c.seen]
        counts = sorted(names.count(b.name) for b in bs)
        print("\n    one hot key, 12 clients: %s" % counts)
        self.assertEqual(len(names), 60)
        self.assertGreater(counts[1], 0)  # it spread
        wait_for(lambda: len(open(log.name).read().splitlines()) == 60, what="60 log lines")
        lines = [json.loads(l) for l in open(log.name).read().splitlines()]
        self.assertTrue(all(l["balance"] == "hash" for l in lines))
        spilled = [l for l in lines if l.get("spilled")]
        self.assertGreater(len(spilled), 0)
        # without the bound, every request of the key goes to one server
        g = self.fulcrum(self.hash_config(servers))
        with Clients(g.port, 12, per_client=2, headers={"X-User": "hot"}) as c:
            c.join()
        self.assertEqual(len({b for _, b in c.seen}), 1)


class StickyTest(FulcrumTestCase):
    def test_cookie_pins_and_moves_when_drained(self):
        bs = [self.backend("b%d" % i) for i in range(3)]
        aport = free_port()
        f = self.fulcrum(config([("s%d" % i, b.address) for i, b in enumerate(bs)],
                                pool_extra="    sticky: {cookie: SRV, max_age: 600}\n",
                                extra=admin_extra(aport), threads=2))
        status, hdrs, _ = get(f.port, "/")
        self.assertEqual(status, 200)
        first = hdrs["x-backend"]
        cookie = hdrs["set-cookie"]
        value = cookie.split(";")[0]
        self.assertRegex(cookie, r"^SRV=[0-9a-f]{16}; Path=/; Max-Age=600; HttpOnly; "
                                 r"SameSite=Lax$")
        _, state, _ = api(aport, "GET", "/api/state")
        ids = {s["name"]: s["sticky_cookie"] for s in state["pools"][0]["servers"]}
        self.assertEqual("SRV=" + ids["s" + first[1:]], value)
        for _ in range(10):  # new connections, either thread: the same server, no new cookie
            status, hdrs, _ = get(f.port, "/", headers={"Cookie": "a=1; " + value})
            self.assertEqual(hdrs["x-backend"], first)
            self.assertNotIn("set-cookie", hdrs)
        api(aport, "POST", "/api/pools/app/servers/s" + first[1:], {"state": "drain"})
        status, hdrs, _ = get(f.port, "/", headers={"Cookie": value})
        self.assertEqual(status, 200)
        self.assertNotEqual(hdrs["x-backend"], first)
        moved = hdrs["set-cookie"].split(";")[0]
        self.assertNotEqual(moved, value)
        status, hdrs2, _ = get(f.port, "/", headers={"Cookie": moved})
        self.assertEqual(hdrs2["x-backend"], hdrs["x-backend"])
        # a cookie naming no server is chosen anew
        status, hdrs, _ = get(f.port, "/", headers={"Cookie": "SRV=0123456789abcdef"})
        self.assertIn("set-cookie", hdrs)
