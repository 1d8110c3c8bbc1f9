"""
test_discovery_etcd.py - a pool's servers from a real etcd (Debian's etcd-server, etcdctl from
etcd-client), on loopback ports chosen at run time with a data directory of its own:

- backends that register themselves (fulcrum-backend --register) get the traffic, and only they;
- `etcdctl put` of a server brings it in, `etcdctl del` takes it out, under load without a
  failed request;
- a backend killed with SIGKILL leaves when its lease expires, and no client sees a failure
  meanwhile (retries and passive ejection cover the gap);
- a bad value is logged once, however many changes and watch seconds follow, and ignored;
- compaction: fulcrum is cut off from etcd (through a relay the test controls) while the registry
  changes and is compacted past fulcrum's revision; back, its watch is refused as compacted and it
  reads everything again;
- etcd stopped: the set is kept and the source shows "degraded"; etcd back: "ok" again, and changes
  are followed; with hold_on_error, the set is emptied once failures lasted that long;
- two endpoints, the first one dead: the second one serves;
- etcd on https with client certificates required (--client-cert-auth): fulcrum with the wrong
  CA is refused in the handshake (degraded, the reason in its status); reloaded with the right
  one, it reads the registry and the servers take traffic.

The admin API shows the source per pool (discovery[]) and per server (source: "etcd").
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
import unittest

from harness import (BACKEND, Backend, FulcrumTestCase, Load, Process, free_port, port_open,
                     served_by, wait_for)
from test_admin import admin_extra, api
from tlspki import make_pki

PKI_DIR = os.path.join(tempfile.gettempdir(), "fulcrum-e2e-pki")

ETCD = shutil.which("etcd")
ETCDCTL = shutil.which("etcdctl")
PREFIX = "/services/app/"


class Etcd:
    """One etcd member on 127.0.0.1, its client and peer ports and data directory kept across
    stop() and start(), so a restart is the same etcd with the same data."""

    def __init__(self, pki=None):
        """With pki (tlspki.make_pki()), clients speak https and must show a certificate of
        pki.client_ca; the server's certificate is for IP 127.0.0.1, signed by pki.root_ca."""
        self.client_port = free_port()
        self.peer_port = free_port()
        self.data_dir = tempfile.mkdtemp(prefix="fulcrum-e2e-etcd-")
        self.proc = None
        self.pki = pki
        if pki:
            self._make_certificate()
        self.start()

    def _make_certificate(self):
        """etcd's own certificate: its JSON gateway connects to its gRPC side with it as a
        client certificate, so it needs clientAuth beside serverAuth, and the CAs etcd trusts
        for clients must include its issuer (the root) beside pki.client_ca."""
        d = self.tls_dir = os.path.join(self.data_dir, "..", os.path.basename(self.data_dir) +
                                        "-tls")
        os.makedirs(d)
        ext = os.path.join(d, "ext.cnf")
        with open(ext, "w") as f:
            f.write("subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\n"
                    "keyUsage=digitalSignature\nbasicConstraints=CA:FALSE\n")
        self.cert, self.key = os.path.join(d, "etcd.pem"), os.path.join(d, "etcd.key")
        csr = os.path.join(d, "etcd.csr")
        for argv in (["openssl", "req", "-new", "-newkey", "ec", "-pkeyopt",
                      "ec_paramgen_curve:P-256", "-nodes", "-keyout", self.key, "-subj",
                      "/CN=etcd", "-out", csr],
                     ["openssl", "x509", "-req", "-in", csr, "-CA", self.pki.root_ca, "-CAkey",
                      self.pki.root_ca_key, "-set_serial", str(int.from_bytes(os.urandom(8),
                                                                               "big")),
                      "-days", "2", "-extfile", ext, "-out", self.cert]):
            subprocess.run(argv, check=True, capture_output=True, timeout=30)
        self.trusted = os.path.join(d, "trusted.pem")
        with open(self.trusted, "w") as out:
            for path in (self.pki.root_ca, self.pki.client_ca):
                with open(path) as f:
                    out.write(f.read())

    @property
    def endpoint(self):
        return "%s://127.0.0.1:%d" % ("https" if self.pki else "http", self.client_port)

    def tls_args(self):
        """etcdctl's arguments for the client certificate and the CA."""
        if not self.pki:
            return []
        return ["--cacert", self.pki.root_ca, "--cert", self.pki.client, "--key",
                self.pki.client_key]

    def start(self):
        client = self.endpoint
        peer = "http://127.0.0.1:%d" % self.peer_port
        tls = []
        if self.pki:
            tls = ["--cert-file", self.cert, "--key-file", self.key, "--client-cert-auth",
                   "--trusted-ca-file", self.trusted]
        self.proc = Process([ETCD, "--name", "e2e", "--data-dir", self.data_dir,
                             "--listen-client-urls", client, "--advertise-client-urls", client,
                             "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
                             "--initial-cluster", "e2e=" + peer] + tls, "etcd")
        wait_for(lambda: self.healthy() or not self.proc.alive(), timeout=20, interval=0.1,
                 what="etcd to serve")
        if not self.proc.alive():
            raise AssertionError("etcd did not start:\n" + self.proc.log())

    def healthy(self):
        return port_open(self.client_port) and subprocess.run(
            [ETCDCTL, "--endpoints", self.endpoint] + self.tls_args() + ["endpoint", "health"],
            env=dict(os.environ, ETCDCTL_API="3"), stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL).returncode == 0

    def stop(self):
        self.proc.stop(signal.SIGTERM)
        self.proc.cleanup()

    def ctl(self, *args):
        """etcdctl with these arguments; returns its standard output (it must succeed)."""
        r = subprocess.run([ETCDCTL, "--endpoints", self.endpoint] + self.tls_args() + list(args),
                           env=dict(os.environ, ETCDCTL_API="3"), capture_output=True, text=True,
                           timeout=20)
        if r.returncode != 0:
            raise AssertionError("etcdctl %s: %s" % (" ".join(args), r.stderr))
        return r.stdout

    def put(self, key, value):
        self.ctl("put", key, value)

    def revision(self):
        return int(json.loads(self.ctl("endpoint", "status", "-w", "json"))[0]["Status"]["header"]
                   ["revision"])

    def cleanup(self):
        if self.proc:
            self.proc.cleanup()
        shutil.rmtree(self.data_dir, ignore_errors=True)
        if self.pki:
            shutil.rmtree(self.tls_dir, ignore_errors=True)


class Relay:
    """A TCP relay from a port of its own to etcd's client port, which the test can cut (every
    connection closed, the port refusing) and restore, to cut fulcrum off etcd while etcd runs."""

    def __init__(self, target_port):
        self.target_port = target_port
        self.port = free_port()
        self.lock = threading.Lock()
        self.sockets = []
        self.listener = None
        self.restore()

    def restore(self):
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", self.port))
        s.listen(16)
        self.listener = s
        threading.Thread(target=self._accept, args=(s,), daemon=True).start()

    def _accept(self, listener):
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            with self.lock:
                self.sockets += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(a, b):
        try:
            while True:
                data = a.recv(65536)
                if not data:
                    break
                b.sendall(data)
        except OSError:
            pass
        for s in (a, b):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def cut(self):
        # shutdown wakes the accept() in progress, which close alone would not (the port would
        # stay in LISTEN until then)
        try:
            self.listener.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.listener.close()
        with self.lock:
            for s in self.sockets:
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                s.close()
            self.sockets = []

    def close(self):
        self.cut()


class RegisteredBackend(Backend):
    """fulcrum-backend --register: it puts itself under PREFIX in etcd with a lease."""

    def __init__(self, name, etcd, ttl=5):
        self.name = name
        self.port = free_port()
        self.own_connections = 1
        self.own_requests = 0
        Process.__init__(self, [BACKEND, "--listen", "127.0.0.1:%d" % self.port, "--name", name,
                                "--register", etcd.endpoint + PREFIX, "--register-ttl", str(ttl)],
                         "backend-" + name)
        wait_for(lambda: port_open(self.port) or not self.alive(), what="backend " + name)
        if not self.alive():
            raise AssertionError("backend %s did not start:\n%s" % (name, self.log()))


def etcd_config(endpoints, pool_extra="", etcd_extra="", admin_port=None):
    return ("threads: 2\n"
            "listeners:\n"
            "  - name: web\n"
            "    bind: 127.0.0.1:{port}\n"
            "    pool: app\n"
            "pools:\n"
            "  - name: app\n"
            "%s"
            "    discovery:\n"
            "      etcd:\n"
            "        endpoints: [%s]\n"
            "        prefix: %s\n"
            "        timeout: 1s\n"
            "%s"
            "    servers: []\n"
            "%s" % (pool_extra, ", ".join(endpoints), PREFIX, etcd_extra,
                    admin_extra(admin_port)))


class EtcdHttp:
    """etcd's v3 JSON API on one keep-alive connection: changes as fast as etcd takes them,
    without an etcdctl process each."""

    def __init__(self, port):
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)

    def _call(self, path, body):
        self.conn.request("POST", path, json.dumps(body), {"Content-Type": "application/json"})
        r = self.conn.getresponse()
        data = r.read()
        if r.status != 200:
            raise AssertionError("etcd %s: %d %s" % (path, r.status, data))

    @staticmethod
    def _b64(text):
        return base64.b64encode(text.encode()).decode()

    def put(self, key, val):
        self._call("/v3/kv/put", {"key": self._b64(key), "value": self._b64(val)})

    def delete(self, key):
        self._call("/v3/kv/deleterange", {"key": self._b64(key)})

    def close(self):
        self.conn.close()


def quiet_while(load, n, count):
    """Does count() stay the same while the load makes n more requests?"""
    before, done = count(), sum(load.served.values())
    wait_for(lambda: sum(load.served.values()) >= done + n, what="%d more requests" % n)
    return count() == before


def value(address, name=None, weight=None):
    v = {"address": address}
    if name:
        v["name"] = name
    if weight is not None:
        v["weight"] = weight
    return json.dumps(v)


class EtcdCase(FulcrumTestCase):
    """What the etcd tests share: an etcd, fulcrum with its admin API, and reading them."""

    def setUp(self):
        super().setUp()
        self.etcd = Etcd()
        self.addCleanup(self.etcd.cleanup)
        self.aport = free_port()

    def start_fulcrum(self, endpoints=None, pool_extra="", etcd_extra=""):
        self.f = self.fulcrum(etcd_config(endpoints or [self.etcd.endpoint], pool_extra,
                                          etcd_extra, self.aport))
        wait_for(lambda: port_open(self.aport), what="admin listener")
        return self.f

    def pool(self):
        state = api(self.aport, "GET", "/api/state")[1]
        return [p for p in state["pools"] if p["name"] == "app"][0]

    def source(self):
        return [d for d in self.pool()["discovery"] if d["type"] == "etcd"][0]

    def servers(self):
        """The pool's servers from etcd: name -> address."""
        return {s["name"]: s["address"] for s in self.pool()["servers"] if s["source"] == "etcd"}

    def wait_servers(self, expected, timeout=10):
        wait_for(lambda: self.servers() == expected, timeout=timeout,
                 what="servers %s (have %s)" % (expected, self.servers()))

    def registered(self, name, ttl=5):
        b = RegisteredBackend(name, self.etcd, ttl)
        self.processes.append(b)
        return b


@unittest.skipUnless(ETCD and ETCDCTL, "etcd-server and etcd-client are not installed")
class EtcdDiscoveryTest(EtcdCase):

    def test_registered_backends_get_the_traffic_and_only_they(self):
        backends = [self.registered("b%d" % i) for i in (1, 2, 3)]
        self.backend("stray")  # running, not registered: never used
        self.start_fulcrum()
        self.wait_servers({b.name: b.address for b in backends})
        self.assertEqual(sorted(set(served_by(self.f.port, 30))), ["b1", "b2", "b3"])
        for b in backends:
            self.assertEqual(b.stats()["requests"], 10)
        src = self.source()
        self.assertEqual((src["type"], src["target"], src["health"], src["servers"], src["errors"],
                          src["last_error"]), ("etcd", PREFIX, "ok", 3, 0, ""))
        self.assertGreater(src["last_ok_unix_ms"], 0)
        self.assertGreater(src["last_change_unix_ms"], 0)
        # what each one registered: the value fulcrum read
        v = json.loads(self.etcd.ctl("get", PREFIX + "b1", "--print-value-only"))
        self.assertEqual(v, {"address": backends[0].address, "name": "b1", "weight": 1})
        # a graceful stop revokes the lease: the server leaves at once, not after its TTL
        backends[0].stop(signal.SIGTERM)
        self.wait_servers({b.name: b.address for b in backends[1:]}, timeout=3)
        self.assertEqual(self.etcd.ctl("get", PREFIX + "b1"), "")

    def test_metrics_show_sources_and_the_api_leaves_discovered_servers_to_them(self):
        b1 = self.registered("b1")
        self.start_fulcrum()
        self.wait_servers({"b1": b1.address})
        status, metrics, _ = api(self.aport, "GET", "/metrics")
        self.assertEqual(status, 200)
        lines = metrics.splitlines()
        for line in ('fulcrum_discovery_up{pool="app",source="etcd"} 1',
                     'fulcrum_discovery_servers{pool="app",source="etcd"} 1',
                     'fulcrum_discovery_errors_total{pool="app",source="etcd"} 0',
                     'fulcrum_server_source{pool="app",server="b1",source="etcd"} 1'):
            self.assertIn(line, lines)
        success = [l for l in lines
                   if l.startswith('fulcrum_discovery_last_success_timestamp_seconds{pool="app",')]
        self.assertEqual(len(success), 1)
        self.assertLess(abs(float(success[0].split()[-1]) - time.time()), 30)
        # the registry owns the server: removing it through the API would not last
        status, body, _ = api(self.aport, "DELETE", "/api/pools/app/servers/b1")
        self.assertEqual(status, 409)
        self.assertIn("etcd discovery", body["error"])
        # but an operator may take it out of rotation, and that survives its registry updates
        status, body, _ = api(self.aport, "POST", "/api/pools/app/servers/b1", {"state": "maint"})
        self.assertEqual((status, body["state"]), (200, "maint"))
        self.etcd.put(PREFIX + "b1", value(b1.address, name="b1", weight=3))
        wait_for(lambda: [s for s in self.pool()["servers"] if s["name"] == "b1"][0]["weight"] == 3,
                 what="the new weight")
        self.assertEqual([s for s in self.pool()["servers"] if s["name"] == "b1"][0]["state"],
                         "maint")

    def test_put_and_del_are_followed_under_load_without_a_failure(self):
        b1, b2 = self.registered("b1"), self.registered("b2")
        b3 = self.backend("b3")
        self.start_fulcrum()
        self.wait_servers({"b1": b1.address, "b2": b2.address})
        load = Load(self.f.port, clients=4).start()
        try:
            self.etcd.put(PREFIX + "b3", value(b3.address, weight=2))
            self.wait_servers({"b1": b1.address, "b2": b2.address, "b3": b3.address})
            wait_for(lambda: load.served.get("b3", 0) >= 20, what="traffic to b3")
            self.etcd.ctl("del", PREFIX + "b3")
            self.wait_servers({"b1": b1.address, "b2": b2.address})
            # requests picked before the change finish there; then nothing more comes
            wait_for(lambda: quiet_while(load, 100, lambda: b3.stats()["requests"]),
                     what="no more requests to b3")
            before = b3.stats()["requests"]
            self.assertTrue(quiet_while(load, 200, lambda: b3.stats()["requests"]))
            # again, under a name of its own choosing
            self.etcd.put(PREFIX + "x", value(b3.address, name="third"))
            self.wait_servers({"b1": b1.address, "b2": b2.address, "third": b3.address})
            wait_for(lambda: b3.stats()["requests"] > before, what="traffic to third")
        finally:
            counts = load.stop()
        self.assertEqual((counts["errors"], counts["bad_status"]), (0, 0), counts)
        self.assertGreater(counts["ok"], 200)

    def test_a_burst_of_changes_is_followed_to_its_last_one_and_each_change_logged_once(self):
        """Changes closer together than 50 ms go out as one set (the first at once, the rest at
        the end of the gap): the last change of a burst must still be applied with nothing after
        it to wake the source, and the log must count each server that came or went once."""
        b1 = self.registered("b1")
        self.start_fulcrum()
        self.wait_servers({"b1": b1.address})
        http = EtcdHttp(self.etcd.client_port)
        try:
            # 20 puts as fast as etcd takes them: many land within one gap
            burst = {"n%02d" % i: "127.0.0.1:%d" % (20000 + i) for i in range(20)}
            for name, address in burst.items():
                http.put(PREFIX + name, value(address, name=name))
            self.wait_servers(dict(burst, b1=b1.address))
            for name in list(burst)[:10]:
                http.delete(PREFIX + name)
            for name in list(burst)[:10]:
                del burst[name]
            self.wait_servers(dict(burst, b1=b1.address))
        finally:
            http.close()
        lines = [l for l in self.f.log().splitlines() if "pool app: etcd %s: " % PREFIX in l
                 and " joined" in l]
        joined = sum(int(re.search(r": (\d+) joined", l).group(1)) for l in lines)
        left = sum(int(re.search(r", (\d+) left", l).group(1)) for l in lines)
        self.assertEqual((joined, left), (21, 10), "\n".join(lines))
        self.assertTrue(lines[-1].endswith("; 11 discovered"), lines[-1])

    def test_killed_backend_leaves_when_its_lease_expires_and_no_client_fails(self):
        backends = [self.registered("b%d" % i, ttl=2) for i in (1, 2, 3)]
        self.start_fulcrum(pool_extra="    retries: 2\n"
                                      "    passive:\n"
                                      "      consecutive_failures: 2\n"
                                      "      ejection_time: 30s\n")
        self.wait_servers({b.name: b.address for b in backends})
        load = Load(self.f.port, clients=4).start()
        try:
            wait_for(lambda: all(load.served.get(b.name, 0) >= 10 for b in backends),
                     what="traffic to every backend")
            killed_at = time.monotonic()
            backends[0].stop(signal.SIGKILL)
            self.wait_servers({b.name: b.address for b in backends[1:]}, timeout=10)
            gone_after = time.monotonic() - killed_at
            served = sum(load.served.values())
            wait_for(lambda: sum(load.served.values()) >= served + 100, what="100 more requests")
        finally:
            counts = load.stop()
        self.assertEqual((counts["errors"], counts["bad_status"]), (0, 0), counts)
        # the lease (TTL 2 s) expired: etcd dropped the key by itself
        self.assertEqual(self.etcd.ctl("get", PREFIX + "b1"), "")
        self.assertLess(gone_after, 8)

    def test_a_bad_value_is_logged_once_and_ignored(self):
        b1 = self.backend("b1")
        self.etcd.put(PREFIX + "bad", "not json")
        self.etcd.put(PREFIX + "b1", value(b1.address))
        self.start_fulcrum()
        self.wait_servers({"b1": b1.address})
        # more changes, each one followed, and a few seconds of a standing watch
        for i in range(3):
            b = self.backend("n%d" % i)
            self.etcd.put(PREFIX + "n%d" % i, value(b.address))
            self.wait_servers({"b1": b1.address, "n%d" % i: b.address})
            self.etcd.ctl("del", PREFIX + "n%d" % i)
            self.wait_servers({"b1": b1.address})
        self.etcd.put(PREFIX + "also-bad", value("api.example.com:80"))
        wait_for(lambda: "etcd: /services/app/also-bad:" in self.f.log(), what="the second bad value")
        seen = self.source()["last_ok_unix_ms"]
        wait_for(lambda: self.source()["last_ok_unix_ms"] >= seen + 3000, timeout=10,
                 what="3 more seconds of the watch")
        log = self.f.log()
        self.assertEqual(log.count("etcd: /services/app/bad:"), 1, log)
        self.assertIn("pool app: etcd: /services/app/bad: value is not JSON: ", log)
        self.assertEqual(log.count("etcd: /services/app/also-bad:"), 1, log)
        self.assertIn("also-bad: address must be IP:port or [IPv6]:port, not a host name", log)
        self.assertEqual(self.servers(), {"b1": b1.address})
        self.assertEqual(set(served_by(self.f.port, 6)), {"b1"})

    def test_a_compacted_revision_reads_everything_again(self):
        b1, b2 = self.backend("b1"), self.backend("b2")
        relay = Relay(self.etcd.client_port)
        self.addCleanup(relay.close)
        self.etcd.put(PREFIX + "b1", value(b1.address))
        self.start_fulcrum(["http://127.0.0.1:%d" % relay.port])
        self.wait_servers({"b1": b1.address})
        relay.cut()
        wait_for(lambda: self.source()["health"] == "degraded", what="fulcrum cut off")
        # while fulcrum is away: b1 leaves, b2 comes, and the history is compacted away
        self.etcd.ctl("del", PREFIX + "b1")
        self.etcd.put(PREFIX + "b2", value(b2.address))
        self.etcd.ctl("compaction", str(self.etcd.revision()))
        relay.restore()
        self.wait_servers({"b2": b2.address}, timeout=20)
        self.assertEqual(self.source()["health"], "ok")
        self.assertIn("was compacted", self.f.log())
        self.assertEqual(set(served_by(self.f.port, 4)), {"b2"})
        # and the new watch follows changes again
        self.etcd.put(PREFIX + "b1", value(b1.address))
        self.wait_servers({"b1": b1.address, "b2": b2.address})

    def test_etcd_stopped_keeps_the_set_and_comes_back(self):
        b1, b2, b3 = self.backend("b1"), self.backend("b2"), self.backend("b3")
        self.etcd.put(PREFIX + "b1", value(b1.address))
        self.etcd.put(PREFIX + "b2", value(b2.address))
        self.start_fulcrum()
        self.wait_servers({"b1": b1.address, "b2": b2.address})
        self.etcd.stop()
        wait_for(lambda: self.source()["health"] == "degraded", what="degraded")
        src = self.source()
        self.assertGreater(src["errors"], 0)
        self.assertIn("127.0.0.1:%d" % self.etcd.client_port, src["last_error"])
        self.assertEqual(sorted(set(served_by(self.f.port, 10))), ["b1", "b2"])
        self.assertEqual(self.f.log().count("pool app: etcd: degraded"), 1)
        self.etcd.start()
        self.etcd.put(PREFIX + "b3", value(b3.address))
        self.etcd.ctl("del", PREFIX + "b1")
        # backoff after a few failed rounds is a few seconds at most
        self.wait_servers({"b2": b2.address, "b3": b3.address}, timeout=20)
        wait_for(lambda: self.source()["health"] == "ok", what="ok again")
        self.assertEqual(sorted(set(served_by(self.f.port, 10))), ["b2", "b3"])

    def test_hold_on_error_empties_the_set_once_it_ran_out(self):
        b1 = self.backend("b1")
        self.etcd.put(PREFIX + "b1", value(b1.address))
        self.start_fulcrum(etcd_extra="        hold_on_error: 2s\n")
        self.wait_servers({"b1": b1.address})
        self.etcd.stop()
        wait_for(lambda: self.source()["health"] == "degraded", what="degraded")
        self.assertEqual(self.servers(), {"b1": b1.address})
        wait_for(lambda: self.source()["health"] == "failed", timeout=10, what="failed")
        self.wait_servers({})
        self.assertEqual(self.source()["servers"], 0)
        self.etcd.start()
        self.wait_servers({"b1": b1.address}, timeout=20)
        self.assertEqual(self.source()["health"], "ok")
        self.assertEqual(set(served_by(self.f.port, 4)), {"b1"})

    def test_the_second_endpoint_serves_when_the_first_is_dead(self):
        b1 = self.backend("b1")
        self.etcd.put(PREFIX + "b1", value(b1.address))
        dead = free_port()
        self.start_fulcrum(["http://127.0.0.1:%d" % dead, self.etcd.endpoint])
        self.wait_servers({"b1": b1.address})
        src = self.source()
        self.assertEqual((src["health"], src["errors"]), ("ok", 1))
        self.assertEqual(src["last_error"], "connection refused by 127.0.0.1:%d" % dead)
        # one endpoint down while another answers is not "degraded"
        self.assertNotIn("degraded", self.f.log())
        self.assertEqual(set(served_by(self.f.port, 4)), {"b1"})
        self.etcd.put(PREFIX + "b2", value(self.backend("b2").address))
        wait_for(lambda: len(self.servers()) == 2, what="b2 through the second endpoint")



@unittest.skipUnless(ETCD and ETCDCTL, "etcd-server and etcd-client are not installed")
class EtcdTlsTest(EtcdCase):
    """etcd on https, requiring client certificates."""

    def setUp(self):
        FulcrumTestCase.setUp(self)
        self.pki = make_pki(PKI_DIR)
        self.etcd = Etcd(self.pki)
        self.addCleanup(self.etcd.cleanup)
        self.aport = free_port()

    def tls_config(self, ca):
        return etcd_config([self.etcd.endpoint], etcd_extra=(
            "        tls: {ca: %s, cert: %s, key: %s}\n" % (ca, self.pki.client,
                                                          self.pki.client_key)),
            admin_port=self.aport)

    def test_https_with_a_client_certificate(self):
        b1 = self.backend("b1")
        self.etcd.put(PREFIX + "b1", value(b1.address, name="b1"))
        # the wrong CA: etcd's certificate is refused in the handshake
        self.f = self.fulcrum(self.tls_config(self.pki.client_ca))
        wait_for(lambda: port_open(self.aport), what="admin listener")
        expected = ("TLS handshake with 127.0.0.1:%d: unable to get local issuer certificate"
                    % self.etcd.client_port)
        wait_for(lambda: self.source()["last_error"] == expected,
                 what="the handshake to fail (last error: %r)" % self.source()["last_error"])
        self.assertEqual(self.source()["health"], "degraded")
        self.assertEqual(self.servers(), {})
        # the right one, through a reload: the source restarts and reads the registry
        with open(self.f.config_path, "w") as fh:
            fh.write(self.tls_config(self.pki.root_ca).replace("{port}", str(self.f.port)))
        status, body, _ = api(self.aport, "POST", "/api/reload")
        self.assertEqual(status, 200, body)
        self.wait_servers({"b1": b1.address})
        wait_for(lambda: self.source()["health"] == "ok", what="the source to be ok")
        self.assertEqual(served_by(self.f.port, 5), ["b1"] * 5)
        # and the watch over TLS follows changes
        b2 = self.backend("b2")
        self.etcd.put(PREFIX + "b2", value(b2.address, name="b2"))
        self.wait_servers({"b1": b1.address, "b2": b2.address})


if __name__ == "__main__":
    unittest.main()
