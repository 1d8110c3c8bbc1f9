"""
test_discovery_dns.py - a pool's servers from DNS (discovery.dns, docs/discovery.md), against a
real DNS server: Knot DNS (knotd from Debian's knot package), started by each test on a loopback
port chosen at run time, with its configuration, zone, database and control socket in a
directory of its own.

The tests change the zone while fulcrum runs: the zone file is written again with a higher SOA
serial and knotc tells knotd to reload it; a change counts as made once knotd answers with the
new serial. Every record has a TTL of 1 s and fulcrum re-resolves every second, so fulcrum
follows within about two seconds; the tests poll the admin API for it, never sleep for it.

- SRV: three servers of the lowest priority take the traffic, in the proportion of their SRV
  weights; the backup record of a higher priority value takes none.
- A: an address added takes traffic, an address removed stops taking it, and a stream of GETs
  during both changes sees no failure.
- An empty answer (NODATA) and NXDOMAIN empty the pool (503); the records back, 200 again.
- The resolver killed: the last set is kept and the source shows as degraded; after
  hold_on_error the set is emptied (failed, 503); the resolver back, the source recovers.
- The resolver frozen (SIGSTOP): timeouts, the set kept, "timeout after" in the status.
- The zone expired in knotd (knotc zone-purge +expire): SERVFAIL, the set kept, logged once.
- A+AAAA with `port`: one server per address, IPv4 and IPv6.
"""
import os
import shutil
import signal
import subprocess
import tempfile
import unittest

import harness
from harness import (FulcrumTestCase, Load, Process, free_port, get, port_open, served_by,
                     wait_for)
from test_admin import admin_extra, api

KNOTD = shutil.which("knotd") or "/usr/sbin/knotd"
KNOTC = shutil.which("knotc") or "/usr/sbin/knotc"
KDIG = shutil.which("kdig") or "/usr/bin/kdig"
ZONE = "example.test"
OTHER = "other.test"  # a second zone: knotd adds no addresses from it to ZONE's SRV answers

# waits: a change reaches fulcrum in about 1-2 s (TTL 1 s, interval 1 s); sanitizer builds are
# slower
CHANGE = 20.0 if harness.SANITIZED else 10.0


def knot_available():
    return all(os.access(p, os.X_OK) for p in (KNOTD, KNOTC, KDIG))


def write_knot_conf(directory, address, port, socket_path, zones):
    """knotd's configuration in directory/knot.conf (with its db/ and zones/ folders): listening
    on address@port, controlled through socket_path, serving each of zones from
    zones/ZONE.zone. The zone files are the truth: knotd never writes them back, and keeps no
    journal, so a reload reads exactly what the test wrote."""
    for sub in ("db", "zones"):
        os.makedirs(os.path.join(directory, sub), exist_ok=True)
    with open(os.path.join(directory, "knot.conf"), "w") as f:
        f.write("server:\n"
                "    rundir: \"%(dir)s\"\n"
                "    listen: %(address)s@%(port)d\n"
                "control:\n"
                "    listen: \"%(sock)s\"\n"
                "database:\n"
                "    storage: \"%(dir)s/db\"\n"
                "log:\n"
                "  - target: stderr\n"
                "    any: info\n"
                "template:\n"
                "  - id: default\n"
                "    storage: \"%(dir)s/zones\"\n"
                "    zonefile-sync: -1\n"
                "    journal-content: none\n"
                "zone:\n"
                % {"dir": directory, "address": address, "port": port, "sock": socket_path})
        for zone in zones:
            f.write("  - domain: %s\n    file: \"%s.zone\"\n" % (zone, zone))
    return os.path.join(directory, "knot.conf")


class Knot(Process):
    """knotd serving ZONE (and OTHER) from a temporary directory, on 127.0.0.1:port (UDP and
    TCP)."""

    def __init__(self, records, port=None, workdir=None, other=()):
        self.dir = workdir or tempfile.mkdtemp(prefix="fulcrum-e2e-knot-")
        self.port = port or free_port()
        self.socket = os.path.join(self.dir, "knot.sock")
        self.serial = getattr(self, "serial", 0)
        write_knot_conf(self.dir, "127.0.0.1", self.port, self.socket, (ZONE, OTHER))
        self._write_zone(OTHER, other, 1)
        self._write_zone(ZONE, records)
        super().__init__([KNOTD, "-c", os.path.join(self.dir, "knot.conf")], "knotd")
        wait_for(lambda: self.answered_serial() == self.serial or not self.alive(),
                 what="knotd to answer")
        if not self.alive():
            raise AssertionError("knotd did not start:\n" + self.log())

    def _write_zone(self, zone, records, serial=None):
        if serial is None:
            self.serial += 1
            serial = self.serial
        lines = ["$ORIGIN %s." % zone, "$TTL 1",
                 "@ SOA ns admin %d 60 60 600 1" % serial,
                 "@ NS ns", "ns A 127.0.0.1"]
        with open(os.path.join(self.dir, "zones", zone + ".zone"), "w") as f:
            f.write("\n".join(lines + list(records)) + "\n")

    def answered_serial(self):
        """The zone's serial as knotd answers it now, or None."""
        try:
            out = subprocess.run([KDIG, "@127.0.0.1", "-p", str(self.port), "+short", "+time=1",
                                  "+retry=0", ZONE, "SOA"], capture_output=True, text=True,
                                 timeout=5).stdout.split()
        except subprocess.TimeoutExpired:
            return None
        return int(out[2]) if len(out) >= 3 and out[2].isdigit() else None

    def set_records(self, records):
        """The zone with these records (and a higher serial), once knotd answers with it."""
        self._write_zone(ZONE, records)
        subprocess.run([KNOTC, "-s", self.socket, "zone-reload", ZONE], check=True,
                       capture_output=True, timeout=10)
        wait_for(lambda: self.answered_serial() == self.serial, what="knotd to load serial %d"
                 % self.serial)

    def restart(self, records):
        """A new knotd on the same port and directory (after kill())."""
        self.log_file.close()
        os.unlink(self.log_path)
        Knot.__init__(self, records, port=self.port, workdir=self.dir)

    def cleanup(self):
        super().cleanup()
        shutil.rmtree(self.dir, ignore_errors=True)


class Listener(Process):
    """fulcrum-backend on an address the harness's Backend does not use (127.0.0.2, [::1])."""

    def __init__(self, name, ip, port):
        self.name = name
        self.port = port
        host = "[%s]" % ip if ":" in ip else ip
        super().__init__([harness.BACKEND, "--listen", "%s:%d" % (host, port), "--name", name],
                         "backend-" + name)
        wait_for(lambda: port_open(port, ip) or not self.alive(), what="backend " + name)
        if not self.alive():
            raise AssertionError("backend %s did not start:\n%s" % (name, self.log()))


def dns_config(aport, dns, extra_pool=""):
    """One listener on {port}, pool app with no written servers and a discovery.dns block."""
    return ("threads: 2\n"
            "listeners:\n"
            "  - name: web\n"
            "    bind: 127.0.0.1:{port}\n"
            "    pool: app\n"
            "pools:\n"
            "  - name: app\n"
            "    servers: []\n"
            "%s"
            "    discovery:\n"
            "      dns:\n"
            "%s"
            "%s" % (extra_pool, "".join("        %s: %s\n" % kv for kv in dns),
                    admin_extra(aport)))


@unittest.skipUnless(knot_available(), "knotd, knotc and kdig (Debian's knot, knot-dnsutils)")
class DnsDiscoveryTest(FulcrumTestCase):
    def knot(self, records):
        k = Knot(records)
        self.processes.append(k)
        return k

    def listener(self, name, ip, port):
        b = Listener(name, ip, port)
        self.processes.append(b)
        return b

    def start(self, knot, dns, extra_pool=""):
        self.aport = free_port()
        settings = [("resolvers", "[127.0.0.1:%d]" % knot.port), ("interval", "1s")] + dns
        self.f = self.fulcrum(dns_config(self.aport, settings, extra_pool))
        wait_for(lambda: port_open(self.aport), what="admin listener")

    def pool(self):
        state = api(self.aport, "GET", "/api/state")[1]
        return [p for p in state["pools"] if p["name"] == "app"][0]

    def source(self):
        found = self.pool()["discovery"]
        self.assertEqual(len(found), 1)
        return found[0]

    def servers(self):
        """{name: server} of the pool as the admin API shows it."""
        return {s["name"]: s for s in self.pool()["servers"]}

    def wait_servers(self, names, what):
        names = set(names)
        wait_for(lambda: set(self.servers()) == names and self.source()["servers"] == len(names),
                 timeout=CHANGE, what=what)

    # ---- SRV ----

    def test_srv_lowest_priority_with_its_weights(self):
        backends = [self.backend("b%d" % i) for i in range(1, 5)]
        # b1-b3 at priority 10 with weights 1, 2, 3; b4 at 20, a backup fulcrum leaves alone
        records = ["_http._tcp.api SRV 10 %d %d b%d" % (w, b.port, i)
                   for i, (w, b) in enumerate(zip((1, 2, 3), backends), 1)]
        records.append("_http._tcp.api SRV 20 100 %d b4" % backends[3].port)
        records += ["b%d A 127.0.0.1" % i for i in range(1, 5)]
        knot = self.knot(records)
        self.start(knot, [("name", "_http._tcp.api.%s" % ZONE), ("type", "SRV")])
        names = ["b%d.%s:%d" % (i, ZONE, backends[i - 1].port) for i in (1, 2, 3)]
        self.wait_servers(names, "the three servers of priority 10")
        servers = self.servers()
        for i, name in enumerate(names, 1):
            s = servers[name]
            self.assertEqual(s["weight"], i)
            self.assertEqual(s["source"], "dns")
            self.assertEqual(s["address"], "127.0.0.1:%d" % backends[i - 1].port)
        source = self.source()
        self.assertEqual((source["type"], source["target"], source["health"], source["errors"]),
                         ("dns", "_http._tcp.api.%s" % ZONE, "ok", 0))
        self.assertEqual(source["last_error"], "")
        self.assertGreater(source["last_ok_unix_ms"], 0)
        self.assertGreater(source["last_change_unix_ms"], 0)
        # smooth weighted round-robin: 60 requests are 10 rotations of 1 + 2 + 3
        seen = served_by(self.f.port, 60)
        self.assertEqual({n: seen.count(n) for n in set(seen)}, {"b1": 10, "b2": 20, "b3": 30})
        self.assertEqual(backends[3].stats()["requests"], 0)

    def test_srv_targets_without_addresses_are_resolved_by_follow_up_queries(self):
        b1, b2 = self.backend("b1"), self.backend("b2")
        port = free_port()
        self.listener("six", "::1", port)
        # targets in another zone: knotd's SRV answer carries none of their addresses
        records = ["_x._tcp SRV 0 10 %d b1.%s." % (b1.port, OTHER),
                   "_x._tcp SRV 0 20 %d b2.%s." % (b2.port, OTHER),
                   "_x._tcp SRV 0 30 %d six.%s." % (port, OTHER),
                   "_x._tcp SRV 0 40 9 nowhere.%s." % OTHER]
        other = ["b1 A 127.0.0.1",
                 "b2 AAAA ::1", "b2 A 127.0.0.1",  # both families: IPv4 is used
                 "six AAAA ::1"]
        knot = Knot(records, other=other)
        self.processes.append(knot)
        self.start(knot, [("name", "_x._tcp.%s" % ZONE)])
        names = ["b1.%s:%d" % (OTHER, b1.port), "b2.%s:%d" % (OTHER, b2.port),
                 "six.%s:%d" % (OTHER, port)]
        self.wait_servers(names, "the three targets with addresses")
        servers = self.servers()
        self.assertEqual([servers[n]["address"] for n in names],
                         ["127.0.0.1:%d" % b1.port, "127.0.0.1:%d" % b2.port, "[::1]:%d" % port])
        self.assertEqual([servers[n]["weight"] for n in names], [10, 20, 30])
        seen = served_by(self.f.port, 60)
        self.assertEqual({n: seen.count(n) for n in set(seen)}, {"b1": 10, "b2": 20, "six": 30})
        # the target without an address is said once, not at every answer
        answers = self.source()["answers"]
        wait_for(lambda: self.source()["answers"] >= answers + 2, timeout=CHANGE,
                 what="two more answers")
        self.assertEqual(self.f.log().count(
            "pool app: dns _x._tcp.%s: SRV target nowhere.%s has no address (ignored)"
            % (ZONE, OTHER)), 1)

    # ---- A records changing under load ----

    def test_a_record_added_then_removed_without_a_failed_request(self):
        port = free_port()
        a = self.listener("a", "127.0.0.1", port)
        b = self.listener("b", "127.0.0.2", port)
        c = self.listener("c", "127.0.0.3", port)
        knot = self.knot(["api A 127.0.0.1", "api A 127.0.0.2"])
        self.start(knot, [("name", "api.%s" % ZONE), ("type", "A"), ("port", port)])
        self.wait_servers(["127.0.0.1:%d" % port, "127.0.0.2:%d" % port], "a and b")
        self.assertEqual(sorted(set(served_by(self.f.port, 10))), ["a", "b"])
        load = Load(self.f.port, clients=4, mix_new=True).start()
        try:
            # added: c takes traffic
            knot.set_records(["api A 127.0.0.1", "api A 127.0.0.2", "api A 127.0.0.3"])
            self.wait_servers(["127.0.0.%d:%d" % (i, port) for i in (1, 2, 3)], "c added")
            wait_for(lambda: load.served.get("c", 0) > 0, timeout=CHANGE, what="c's traffic")
            # removed: a takes no more
            knot.set_records(["api A 127.0.0.2", "api A 127.0.0.3"])
            self.wait_servers(["127.0.0.2:%d" % port, "127.0.0.3:%d" % port], "a removed")
            after = load.served.get("a", 0)
            wait_for(lambda: load.served.get("b", 0) > 50 and load.served.get("c", 0) > 50,
                     timeout=CHANGE, what="more traffic after a left")
            with load.lock:
                # a request picked just before the snapshot changed may still have been
                # answering when the admin API showed the change; none after
                late = load.served.get("a", 0) - after
            self.assertLessEqual(late, 4)
        finally:
            counts = load.stop()
        self.assertEqual((counts["errors"], counts["bad_status"]), (0, 0), counts)
        self.assertNotIn("a", served_by(self.f.port, 20))
        self.assertEqual(self.source()["health"], "ok")

    # ---- empty answers ----

    def test_nodata_and_nxdomain_empty_the_pool(self):
        b = self.backend("b1")
        srv = ["_http._tcp.api SRV 0 1 %d b1" % b.port, "b1 A 127.0.0.1"]
        knot = self.knot(srv)
        self.start(knot, [("name", "_http._tcp.api.%s" % ZONE)])
        name = "b1.%s:%d" % (ZONE, b.port)
        self.wait_servers([name], "b1")
        self.assertEqual(get(self.f.port)[0], 200)
        # NODATA: the name exists, with no SRV record
        knot.set_records(["_http._tcp.api TXT \"nothing here\"", "b1 A 127.0.0.1"])
        self.wait_servers([], "an empty answer to empty the pool")
        self.assertEqual(self.source()["health"], "ok")
        self.assertEqual(get(self.f.port)[0], 503)
        knot.set_records(srv)
        self.wait_servers([name], "b1 back")
        self.assertEqual(get(self.f.port)[0], 200)
        # NXDOMAIN: no such name at all
        knot.set_records(["b1 A 127.0.0.1"])
        self.wait_servers([], "NXDOMAIN to empty the pool")
        source = self.source()
        self.assertEqual((source["health"], source["errors"]), ("ok", 0))
        self.assertEqual(get(self.f.port)[0], 503)
        knot.set_records(srv)
        self.wait_servers([name], "b1 back again")
        self.assertEqual(get(self.f.port)[0], 200)

    # ---- failures ----

    def test_dead_resolver_keeps_the_set_then_empties_it_after_hold(self):
        b1, b2 = self.backend("b1"), self.backend("b2")
        records = ["_x._tcp SRV 0 1 %d b1" % b1.port, "_x._tcp SRV 0 1 %d b2" % b2.port,
                   "b1 A 127.0.0.1", "b2 A 127.0.0.1"]
        knot = self.knot(records)
        self.start(knot, [("name", "_x._tcp.%s" % ZONE), ("hold_on_error", "4s"),
                          ("timeout", "500ms")])
        names = ["b1.%s:%d" % (ZONE, b1.port), "b2.%s:%d" % (ZONE, b2.port)]
        self.wait_servers(names, "b1 and b2")
        knot.signal(signal.SIGKILL)
        knot.wait()
        # the last set is kept: degraded, requests still served
        wait_for(lambda: self.source()["health"] in ("degraded", "failed"), timeout=CHANGE,
                 what="the source to degrade")
        source = self.source()
        self.assertEqual(source["health"], "degraded")
        self.assertEqual(source["servers"], 2)
        self.assertEqual(source["last_error"], "connection refused by 127.0.0.1:%d" % knot.port)
        self.assertEqual(sorted(set(served_by(self.f.port, 10))), ["b1", "b2"])
        # four seconds after the last good answer: emptied, once
        wait_for(lambda: self.source()["health"] == "failed", timeout=CHANGE,
                 what="hold_on_error to run out")
        self.wait_servers([], "the set to be emptied")
        self.assertEqual(get(self.f.port)[0], 503)
        log = self.f.log()
        self.assertEqual(log.count(
            "pool app: dns _x._tcp.%s: resolver failing (connection refused by 127.0.0.1:%d), "
            "keeping 2 servers for 4s" % (ZONE, knot.port)), 1, log)
        self.assertEqual(log.count("pool app: dns _x._tcp.%s: resolver failing for 4s" % ZONE),
                         1, log)
        # the resolver back: answering again, servers back
        knot.restart(records)
        self.wait_servers(names, "the servers back")
        self.assertEqual(self.source()["health"], "ok")
        self.assertEqual(sorted(set(served_by(self.f.port, 10))), ["b1", "b2"])
        self.assertEqual(self.f.log().count("pool app: dns _x._tcp.%s: answering again (2 servers)"
                                            % ZONE), 1)

    def test_refused_is_a_failure_not_an_answer(self):
        b1 = self.backend("b1")
        knot = self.knot([])
        # a name in a zone knotd does not serve: it answers REFUSED
        self.start(knot, [("name", "api.elsewhere.test"), ("type", "A"), ("port", b1.port)])
        wait_for(lambda: self.source()["errors"] >= 1, timeout=CHANGE, what="a failed answer")
        source = self.source()
        self.assertEqual((source["health"], source["answers"], source["servers"]),
                         ("degraded", 0, 0))
        self.assertEqual(source["last_error"], "REFUSED from 127.0.0.1:%d" % knot.port)
        self.assertEqual(get(self.f.port)[0], 503)

    def test_servfail_is_a_failure_and_the_set_stays(self):
        b1 = self.backend("b1")
        knot = self.knot(["api A 127.0.0.1"])
        self.start(knot, [("name", "api.%s" % ZONE), ("type", "A"), ("port", b1.port)])
        self.wait_servers(["127.0.0.1:%d" % b1.port], "b1")
        # the zone expired in knotd: it answers SERVFAIL for it (it serves it, and has no data)
        subprocess.run([KNOTC, "-s", knot.socket, "zone-purge", "-f", "+expire", ZONE],
                       check=True, capture_output=True, timeout=10)
        expected = "SERVFAIL from 127.0.0.1:%d" % knot.port
        wait_for(lambda: self.source()["last_error"] == expected, timeout=CHANGE,
                 what="a SERVFAIL answer (last error: %s)" % self.source()["last_error"])
        source = self.source()
        self.assertEqual((source["health"], source["servers"]), ("degraded", 1))
        self.assertEqual(served_by(self.f.port, 5), ["b1"] * 5)
        # more SERVFAILs, still one line in the log
        errors = source["errors"]
        wait_for(lambda: self.source()["errors"] >= errors + 2, timeout=CHANGE,
                 what="two more failed answers")
        self.assertEqual(self.f.log().count("pool app: dns api.%s: resolver failing (%s), keeping "
                                            "1 server for 5m" % (ZONE, expected)), 1,
                         self.f.log())

    def test_frozen_resolver_times_out_and_the_set_stays(self):
        b1 = self.backend("b1")
        records = ["api A 127.0.0.1"]
        knot = self.knot(records)
        self.start(knot, [("name", "api.%s" % ZONE), ("type", "A"), ("port", b1.port),
                          ("timeout", "300ms"), ("hold_on_error", "5m")])
        self.wait_servers(["127.0.0.1:%d" % b1.port], "b1")
        errors_before = self.source()["errors"]
        knot.signal(signal.SIGSTOP)
        try:
            wait_for(lambda: self.source()["errors"] >= errors_before + 2, timeout=CHANGE,
                     what="two timeouts")
            source = self.source()
            self.assertEqual((source["health"], source["servers"]), ("degraded", 1))
            self.assertEqual(source["last_error"], "timeout after 300ms")
            self.assertEqual(served_by(self.f.port, 5), ["b1"] * 5)
        finally:
            knot.signal(signal.SIGCONT)
        wait_for(lambda: self.source()["health"] == "ok", timeout=CHANGE, what="answers again")
        self.assertEqual(set(self.servers()), {"127.0.0.1:%d" % b1.port})
        self.assertEqual(self.f.log().count("resolver failing (timeout after 300ms), keeping 1 "
                                            "server for 5m"), 1)

    # ---- reloads ----

    def reload(self, text):
        with open(self.f.config_path, "w") as fh:
            fh.write(text.replace("{port}", str(self.f.port)))
        status, body, _ = api(self.aport, "POST", "/api/reload")
        self.assertEqual(status, 200, body)

    def test_reloads_keep_the_set_until_the_new_source_answers_and_end_a_removed_one(self):
        b1, b2 = self.backend("b1"), self.backend("b2")
        knot = self.knot(["_x._tcp SRV 0 1 %d b1" % b1.port, "b1 A 127.0.0.1"])
        self.start(knot, [("name", "_x._tcp.%s" % ZONE)])
        name = "b1.%s:%d" % (ZONE, b1.port)
        self.wait_servers([name], "b1")
        load = Load(self.f.port, clients=2).start()
        try:
            # other settings: a new source, started from the old one's set
            self.reload(dns_config(self.aport, [
                ("name", "_x._tcp.%s" % ZONE), ("resolvers", "[127.0.0.1:%d]" % knot.port),
                ("interval", "2s"), ("timeout", "1s")]))
            wait_for(lambda: "dns discovery settings changed: restarted" in self.f.log(),
                     what="the source restarted")
            self.assertEqual(set(self.servers()), {name})
            wait_for(lambda: self.source()["answers"] >= 1, timeout=CHANGE,
                     what="the new source's first answer")
            self.assertEqual(set(self.servers()), {name})
            # no more discovery: the source ends, its server leaves, the written one serves
            self.reload("threads: 2\n"
                        "listeners:\n"
                        "  - name: web\n"
                        "    bind: 127.0.0.1:{port}\n"
                        "    pool: app\n"
                        "pools:\n"
                        "  - name: app\n"
                        "    servers:\n"
                        "      - { name: s2, address: %s }\n"
                        "%s" % (b2.address, admin_extra(self.aport)))
            wait_for(lambda: set(self.servers()) == {"s2"}, what="only s2")
            self.assertEqual(self.pool()["discovery"], [])
            wait_for(lambda: load.served.get("b2", 0) > 10, what="traffic to b2")
        finally:
            counts = load.stop()
        self.assertEqual((counts["errors"], counts["bad_status"]), (0, 0), counts)
        self.assertIn("dns discovery removed from the configuration", self.f.log())

    # ---- A+AAAA ----

    def test_a_and_aaaa_with_port(self):
        port = free_port()
        v4 = self.listener("v4", "127.0.0.1", port)
        v6 = self.listener("v6", "::1", port)
        knot = self.knot(["api A 127.0.0.1", "api AAAA ::1"])
        self.start(knot, [("name", "api.%s" % ZONE), ("type", "A+AAAA"), ("port", port)])
        self.wait_servers(["127.0.0.1:%d" % port, "[::1]:%d" % port], "both families")
        servers = self.servers()
        self.assertEqual(servers["[::1]:%d" % port]["address"], "[::1]:%d" % port)
        self.assertEqual({s["weight"] for s in servers.values()}, {1})
        self.assertEqual(sorted(set(served_by(self.f.port, 10))), ["v4", "v6"])
        # the AAAA record gone: the IPv6 server leaves
        knot.set_records(["api A 127.0.0.1"])
        self.wait_servers(["127.0.0.1:%d" % port], "the IPv6 server gone")
        self.assertEqual(served_by(self.f.port, 4), ["v4"] * 4)


if __name__ == "__main__":
    unittest.main()
