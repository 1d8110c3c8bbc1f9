"""
test_scale_out.py - several fulcrum instances that agree, on a network of their own.

Issue 14's multi-instance picture, with real hosts as network namespaces (netns.py):

    registry  10.77.0.2    etcd (Debian's etcd-server), the servers' registry; and knotd
                           (Debian's knot), the DNS server of zone svc.test, whose SRV records
                           _http._tcp.api.svc.test name the same backends
    b1..b3    10.77.0.11-  fulcrum-backend each, registering itself under /services/api/
    lb1, lb2  10.77.0.21-  fulcrum each, the same configuration: balance: hash on X-User,
                           health checks, passive ejection, retries, etcd discovery (pool
                           api, port 8080); the same with DNS SRV discovery (pool dns-api,
                           port 8081)
    client    10.77.0.100  the test's HTTP clients (sockets opened in that namespace)

all on one bridge. The cases:

- agreement: both instances send each of 300 keys to the same backend;
- a dead backend host: its cable is pulled while GETs stream through both instances; both stop
  using it (checks, passive ejection, then its lease expires and it leaves their server lists)
  and no GET fails (idempotent requests are retried on another server);
- a new host: a fourth backend registers; both instances use it, and it takes about 1/4 of the
  keys, from the three others, while no key moves between two of them;
- the same from DNS: both instances find b1-b3 in the SRV records and agree on every key; an SRV
  record added for a fourth host makes both use it, with about 1/4 of the keys moving to it and
  none between two others; the record removed, both drop it and the keys go back.

Skipped when not root or when `ip netns` does not work. Every namespace and process is removed
at the end, also when a case fails.
"""

import http.client
import json
import os
import shutil
import subprocess
import tempfile
import threading
import time
import unittest

import netns
from harness import BACKEND, FULCRUM, wait_for
from test_discovery_dns import KNOTC, KNOTD, knot_available, write_knot_conf

SUBNET = "10.77.0"
REGISTRY = SUBNET + ".2"
ETCD_URL = "http://%s:2379" % REGISTRY
PREFIX = "/services/api/"
HTTP_PORT = 8080    # every balancer's listener, and every backend's
DNS_PORT = 8081     # every balancer's listener of the pool discovered from DNS
ZONE = "svc.test"
SRV_NAME = "_http._tcp.api." + ZONE
ADMIN_PORT = 9000   # every balancer's admin listener
BACKENDS = {"b1": 11, "b2": 12, "b3": 13}
NEW_BACKEND = ("b4", 14)
BALANCERS = {"lb1": 21, "lb2": 22}
CLIENT = 100
KEYS = ["user-%d" % i for i in range(300)]

# retry_on_timeout: GETs already sent to a host when its cable is pulled get no answer; they are
# tried on another server after timeouts.server instead of failing with 504.
# Registry timing: a backend's lease lives LEASE_TTL seconds after its last keep-alive. etcd
# refuses TTLs under its minimum (about 2 s with the default election timeout).
LEASE_TTL = 3

# One configuration for both instances (they bind every address of their host). The timeouts are
# short so that a pulled cable costs a request at most a second before its retry on another
# server (connect for new connections, server for requests already sent on a pooled one), but
# several times what a loaded machine needs for a round trip on the bridge, so that no server
# looks dead to one instance only: that would make the instances disagree.
CONFIG = """\
threads: 1
log_level: info
listeners:
  - name: web
    bind: 0.0.0.0:%(http)d
    pool: api
  - name: dns-web
    bind: 0.0.0.0:%(dns_http)d
    pool: dns-api
pools:
  - name: api
    balance: hash
    hash_key: header:X-User
    retries: 2
    retry_on_timeout: true
    health_check: {path: /healthcheck, interval: 250ms, timeout: 500ms, rise: 1, fall: 2}
    passive: {consecutive_failures: 2, ejection_time: 30s}
    discovery: {etcd: {endpoints: [%(etcd)s], prefix: %(prefix)s}}
    servers: []
  - name: dns-api
    balance: hash
    hash_key: header:X-User
    retries: 2
    retry_on_timeout: true
    health_check: {path: /healthcheck, interval: 250ms, timeout: 500ms, rise: 1, fall: 2}
    discovery:
      dns: {name: %(srv)s, type: SRV, resolvers: [%(dns)s], interval: 1s}
    servers: []
timeouts: {connect: 500ms, server: 1s}
admin:
  bind: 0.0.0.0:%(admin)d
"""


class Stream:
    """GETs with rotating X-User keys through each balancer, from the client namespace, one
    keep-alive connection per thread, until stop(). Records every request: when it began, the
    balancer, the key, and what came back (status and X-Backend) or the error."""

    def __init__(self, client_ns, balancers, threads_per_balancer=2):
        self.client_ns = client_ns
        self.stopping = threading.Event()
        self.lock = threading.Lock()
        self.results = []  # (start, balancer, key, status or None, backend or error text)
        self.threads = []
        for name, address in balancers.items():
            for i in range(threads_per_balancer):
                # Each thread starts at another place in the keys.
                first = i * len(KEYS) // threads_per_balancer
                self.threads.append(threading.Thread(target=self._run,
                                                     args=(name, address, first)))

    def _run(self, lb, address, n):
        conn = None
        while not self.stopping.is_set():
            key = KEYS[n % len(KEYS)]
            n += 1
            start = time.monotonic()
            try:
                if conn is None:
                    conn = netns.HTTPConnectionIn(self.client_ns, address, HTTP_PORT, timeout=10)
                conn.request("GET", "/", headers={"X-User": key})
                r = conn.getresponse()
                r.read()
                row = (start, lb, key, r.status, r.getheader("X-Backend"))
            except (OSError, http.client.HTTPException) as e:
                row = (start, lb, key, None, repr(e))
                if conn:
                    conn.close()
                conn = None
            with self.lock:
                self.results.append(row)
        if conn:
            conn.close()

    def start(self):
        for t in self.threads:
            t.start()
        return self

    def count(self, predicate):
        with self.lock:
            return sum(1 for row in self.results if predicate(row))

    def stop(self):
        self.stopping.set()
        for t in self.threads:
            t.join()
        return self.results


class ScaleOutTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        reason = netns.unavailable()
        if reason:
            raise unittest.SkipTest(reason)
        for program in ("etcd", FULCRUM, BACKEND):
            if not shutil.which(program):
                raise AssertionError("%s is not installed (scripts/install-deps test)" % program)
        if not knot_available():
            raise AssertionError("knot is not installed (scripts/install-deps test)")

    def setUp(self):
        self.net = netns.Network(SUBNET)
        self.addCleanup(self.net.close)
        self.tmp = tempfile.mkdtemp(prefix="fulcrum-scale-out-")
        self.addCleanup(shutil.rmtree, self.tmp, True)
        self.client = self.net.add_host("client", CLIENT)
        self.start_registry()
        self.backends = {}
        for name, octet in BACKENDS.items():
            self.start_backend(name, octet)
        self.balancers = {}
        self.fulcrums = {}
        for name, octet in BALANCERS.items():
            self.start_balancer(name, octet)
        for lb in self.balancers:
            self.wait_servers(lb, lambda s: set(s) == set(BACKENDS) and
                              all(v["state"] == "up" for v in s.values()),
                              "%s to have b1-b3 up" % lb)
            self.wait_servers(lb, lambda s: set(s) == {srv_server(b) for b in BACKENDS} and
                              all(v["state"] == "up" for v in s.values()),
                              "%s to have b1-b3 up from DNS" % lb, pool="dns-api")

    def run(self, result=None):
        # Kept so that tearDown can tell whether this case failed (unittest's public API).
        self.result = result
        return super().run(result)

    def tearDown(self):
        # A balancer that died during the case fails it, whatever the case asserted.
        crashed = [name for name, proc in self.fulcrums.items() if not proc.alive()]
        # The logs of every process explain a failure; they go with the network.
        if crashed or (self.result is not None and any(
                test is self for test, _ in self.result.failures + self.result.errors)):
            for host in self.net.hosts.values():
                for p in host.processes:
                    print("\n---- %s (%s) ----\n%s" % (p.name, host.ns, p.log()[-4000:]))
        self.assertEqual(crashed, [], "balancers that exited during the case")

    # ---- the hosts ----

    def start_registry(self):
        host = self.net.add_host("registry", 2)
        data = os.path.join(self.tmp, "etcd")
        peer = "http://%s:2380" % REGISTRY
        self.etcd = host.run(["etcd", "--name", "registry", "--data-dir", data,
                              "--listen-client-urls", ETCD_URL,
                              "--advertise-client-urls", ETCD_URL,
                              "--listen-peer-urls", peer,
                              "--initial-advertise-peer-urls", peer,
                              "--initial-cluster", "registry=" + peer,
                              "--logger", "zap", "--log-level", "warn"], "etcd")
        wait_for(lambda: self._etcd_healthy() or not self.etcd.alive(), timeout=20,
                 what="etcd to answer /health")
        self.assertTrue(self.etcd.alive(), "etcd exited:\n" + self.etcd.log())
        self.start_dns(host)

    def start_dns(self, host):
        """knotd on the registry host, port 53, serving ZONE with SRV records for b1-b3."""
        self.knot_dir = os.path.join(self.tmp, "knot")
        self.knot_socket = os.path.join(self.knot_dir, "knot.sock")
        conf = write_knot_conf(self.knot_dir, REGISTRY, 53, self.knot_socket, (ZONE,))
        self.serial = 0
        self.write_zone(BACKENDS)
        self.knot = host.run([KNOTD, "-c", conf], "knotd")
        wait_for(lambda: os.path.exists(self.knot_socket) or not self.knot.alive(),
                 what="knotd to start")
        self.assertTrue(self.knot.alive(), "knotd exited:\n" + self.knot.log())

    def write_zone(self, backends):
        """ZONE's file with one SRV record (weight 10, port HTTP_PORT) and one A record for each
        of these backends {name: last octet}, under a higher serial."""
        self.serial += 1
        lines = ["$ORIGIN %s." % ZONE, "$TTL 1",
                 "@ SOA ns admin %d 60 60 600 1" % self.serial, "@ NS ns", "ns A %s" % REGISTRY]
        for name, octet in sorted(backends.items()):
            lines.append("_http._tcp.api SRV 0 10 %d %s" % (HTTP_PORT, name))
            lines.append("%s A %s.%d" % (name, SUBNET, octet))
        with open(os.path.join(self.knot_dir, "zones", ZONE + ".zone"), "w") as f:
            f.write("\n".join(lines) + "\n")

    def set_dns(self, backends):
        """The SRV records of these backends, loaded by knotd (the balancers then follow)."""
        self.write_zone(backends)
        subprocess.run([KNOTC, "-s", self.knot_socket, "zone-reload", ZONE], check=True,
                       capture_output=True, timeout=10)

    def _etcd_healthy(self):
        try:
            status, _, body = self.client.get(REGISTRY, 2379, "/health", timeout=1)
            return status == 200 and json.loads(body).get("health") == "true"
        except (OSError, ValueError):
            return False

    def start_backend(self, name, octet):
        host = self.net.add_host(name, octet)
        address = "%s:%d" % (host.address, HTTP_PORT)
        # It registers itself: key PREFIX + name, value {"address": address, "name": name},
        # under a lease it keeps alive; a host that is cut off stops renewing it.
        proc = host.run([BACKEND, "--listen", address, "--name", name,
                         "--register", ETCD_URL + PREFIX, "--register-ttl", str(LEASE_TTL)], name)
        wait_for(lambda: netns.port_open_in(self.client.ns, host.address, HTTP_PORT) or
                 not proc.alive(), what="backend %s to listen" % name)
        self.assertTrue(proc.alive(), "backend %s exited:\n%s" % (name, proc.log()))
        self.backends[name] = host
        return host

    def start_balancer(self, name, octet):
        host = self.net.add_host(name, octet)
        path = os.path.join(self.tmp, "fulcrum.yaml")
        with open(path, "w") as f:
            f.write(CONFIG % {"http": HTTP_PORT, "admin": ADMIN_PORT, "etcd": ETCD_URL,
                              "prefix": PREFIX, "dns_http": DNS_PORT, "srv": SRV_NAME,
                              "dns": REGISTRY})
        proc = host.run([FULCRUM, "-c", path], name)
        wait_for(lambda: netns.port_open_in(self.client.ns, host.address, ADMIN_PORT) or
                 not proc.alive(), what="%s to listen" % name)
        self.assertTrue(proc.alive(), "%s exited:\n%s" % (name, proc.log()))
        self.balancers[name] = host
        self.fulcrums[name] = proc
        return host

    # ---- what the balancers say and do ----

    def servers(self, lb, pool="api"):
        """The pool's servers on balancer lb, by name (its admin API's GET /api/state)."""
        conn = netns.HTTPConnectionIn(self.client.ns, self.balancers[lb].address, ADMIN_PORT)
        try:
            conn.request("GET", "/api/state")
            r = conn.getresponse()
            state = json.loads(r.read())
        finally:
            conn.close()
        self.assertEqual(r.status, 200)
        found = [p for p in state["pools"] if p["name"] == pool][0]
        return {s["name"]: s for s in found["servers"]}

    def wait_servers(self, lb, condition, what, timeout=15, pool="api"):
        """Polls lb's server list until condition(servers) holds; returns that list."""
        def check():
            servers = self.servers(lb, pool)
            return servers if condition(servers) else None
        return wait_for(check, timeout=timeout, interval=0.05, what=what)

    def route(self, lb, keys=KEYS, port=HTTP_PORT):
        """Which backend answers each key through balancer lb (one keep-alive connection)."""
        conn = netns.HTTPConnectionIn(self.client.ns, self.balancers[lb].address, port)
        seen = {}
        try:
            for key in keys:
                conn.request("GET", "/", headers={"X-User": key})
                r = conn.getresponse()
                r.read()
                self.assertEqual(r.status, 200, "key %s through %s" % (key, lb))
                seen[key] = r.getheader("X-Backend")
        finally:
            conn.close()
        return seen

    def agreed_routes(self, port=HTTP_PORT):
        """The backend of each key, after checking that both balancers agree on all of them."""
        first = self.route("lb1", port=port)
        second = self.route("lb2", port=port)
        differ = {k: (first[k], second[k]) for k in KEYS if first[k] != second[k]}
        self.assertEqual(differ, {}, "keys the two balancers send to different backends")
        return first

    def assert_only_keys_to(self, newcomer, before, after):
        """A fourth host joined: the keys that moved all went to it (none between two old
        hosts), about 1/4 of them."""
        moved = [k for k in KEYS if after[k] != before[k]]
        between_old = [(k, before[k], after[k]) for k in moved if after[k] != newcomer]
        self.assertEqual(between_old, [], "keys moved between two old hosts")
        share = len(moved) / len(KEYS)
        self.assertTrue(0.15 <= share <= 0.35,
                        "%.1f%% of keys moved (expected about 25%%)" % (100 * share))

    # ---- the cases ----

    def test_agreement(self):
        routes = self.agreed_routes()
        self.assertEqual(set(routes.values()), set(BACKENDS))

    def test_dead_backend_host(self):
        dead = "b3"
        before = self.agreed_routes()
        self.assertIn(dead, before.values())
        stream = Stream(self.client.ns, {lb: h.address for lb, h in self.balancers.items()})
        stream.start()
        try:
            # Traffic reaches the victim through both balancers before its cable is pulled.
            for lb in self.balancers:
                wait_for(lambda: stream.count(lambda r: r[1] == lb and r[4] == dead) >= 20,
                         what="%s to send requests to %s" % (lb, dead))
            self.backends[dead].link(False)
            cut = time.monotonic()  # once ip(8) returned: nothing can reach the host from here

            # Both stop using it: its state leaves "up" (failed checks or an ejection), and
            # once what was on its way to it has ended (retried elsewhere), its request count
            # is final.
            counted, out_of_use = {}, {}
            for lb in self.balancers:
                s = self.wait_servers(lb, lambda s: s[dead]["state"] in ("down", "ejected") and
                                      s[dead]["active_requests"] == 0,
                                      "%s to stop using %s" % (lb, dead), timeout=10)
                counted[lb] = s[dead]["requests"]["total"]
                out_of_use[lb] = time.monotonic()

            # Its lease expires (it cannot renew it): it leaves both instances' server lists,
            # and until then it gets no request.
            def gone(lb):
                s = self.servers(lb)
                if dead not in s:
                    return True
                self.assertEqual(s[dead]["requests"]["total"], counted[lb],
                                 "%s sent requests to %s after it was out of use" % (lb, dead))
                return False
            for lb in self.balancers:
                wait_for(lambda: gone(lb), timeout=LEASE_TTL + 5, interval=0.05,
                         what="%s to drop %s when its lease expired" % (lb, dead))

            # The stream goes on for a while after that, through both balancers.
            mark = time.monotonic()
            for lb in self.balancers:
                wait_for(lambda: stream.count(lambda r: r[1] == lb and r[0] > mark) >= 300,
                         what="more requests through %s" % lb)
        finally:
            results = stream.stop()

        after_cut = [r for r in results if r[0] > cut and r[4] == dead]
        self.assertEqual(after_cut, [], "answered by %s after its link went down" % dead)
        # Its keys went elsewhere, the same way in both instances; the others' stayed.
        after = self.agreed_routes()
        self.assertNotIn(dead, after.values())
        moved = [(k, before[k], after[k]) for k in KEYS if before[k] != dead and
                 after[k] != before[k]]
        self.assertEqual(moved, [], "keys of the hosts that stayed moved")
        # And no client saw a failure. Those that could are told apart: requests for the dead
        # host's keys sent before it was out of use, which met the pulled cable (504).
        failed = [r for r in results if r[3] != 200]
        caught = [r for r in failed if r[3] == 504 and before[r[2]] == dead and
                  r[0] < out_of_use[r[1]]]
        others = [r for r in failed if r not in caught]
        self.assertEqual(others[:10], [], "%d of %d GETs failed" % (len(others), len(results)))
        self.assertEqual(caught, [], "%d GETs on their way to %s when its link went down got "
                         "504 after timeouts.server, though retry_on_timeout is on"
                         % (len(caught), dead))

    def test_new_host(self):
        before = self.agreed_routes()
        name, octet = NEW_BACKEND
        self.start_backend(name, octet)
        for lb in self.balancers:
            self.wait_servers(lb, lambda s: name in s and s[name]["state"] == "up",
                              "%s to use %s" % (lb, name))
        after = self.agreed_routes()
        self.assert_only_keys_to(name, before, after)

    def test_dns_agreement_and_a_new_record(self):
        before = self.agreed_routes(DNS_PORT)
        self.assertEqual(set(before.values()), set(BACKENDS))
        name, octet = NEW_BACKEND
        self.start_backend(name, octet)
        self.set_dns(dict(BACKENDS, **{name: octet}))
        for lb in self.balancers:
            self.wait_servers(lb, lambda s: srv_server(name) in s and
                              s[srv_server(name)]["state"] == "up",
                              "%s to use %s from DNS" % (lb, name), pool="dns-api")
        after = self.agreed_routes(DNS_PORT)
        self.assert_only_keys_to(name, before, after)
        # its record removed: both drop it, and every key is back where it was
        self.set_dns(BACKENDS)
        for lb in self.balancers:
            self.wait_servers(lb, lambda s: set(s) == {srv_server(b) for b in BACKENDS},
                              "%s to drop %s" % (lb, name), pool="dns-api")
        self.assertEqual(self.agreed_routes(DNS_PORT), before)


def srv_server(backend):
    """The name fulcrum gives the server of backend's SRV record: TARGET:PORT."""
    return "%s.%s:%d" % (backend, ZONE, HTTP_PORT)


if __name__ == "__main__":
    unittest.main()
