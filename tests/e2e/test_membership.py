"""
test_membership.py - the membership rules every source shares (docs/discovery.md), played through
the admin API and reloads, which need no DNS server or registry:

- a server that appears while fulcrum runs, in a pool with active checks, takes no request until
  its first check passed;
- a server that disappears finishes its requests in flight, and its idle connections close;
- a server that leaves and comes back under the same name and address keeps its counters.
"""
import http.client
import os
import threading

from harness import FulcrumTestCase, config, free_port, get, port_open, served_by, wait_for
from test_admin import admin_extra, api, server

CHECKED = ("    health_check:\n"
           "      path: /healthcheck\n"
           "      interval: 300ms\n")


def state_of(aport, name):
    return server(api(aport, "GET", "/api/state")[1], "app", name)


class MembershipTest(FulcrumTestCase):
    def start(self, pool_extra=CHECKED):
        self.b0 = self.backend("b0")
        self.aport = free_port()
        self.f = self.fulcrum(config([("s0", self.b0.address)], pool_extra=pool_extra,
                                     extra=admin_extra(self.aport)))
        wait_for(lambda: port_open(self.aport), what="admin listener")
        if pool_extra:
            wait_for(lambda: state_of(self.aport, "s0")["health"]["checked"],
                     what="s0's first check")

    def test_newcomer_through_the_api_takes_no_request_before_its_first_check_passed(self):
        self.start()
        sick = self.backend("b1")
        get(sick.port, "/healthcheck/fail", method="POST")
        status, body, _ = api(self.aport, "POST", "/api/pools/app/servers",
                              {"name": "s1", "address": sick.address})
        self.assertEqual(status, 201)
        # it starts down, and its first check (which runs at once) keeps it there
        self.assertEqual(body["state"], "down")
        wait_for(lambda: state_of(self.aport, "s1")["health"]["checked"], what="s1's first check")
        self.assertEqual(state_of(self.aport, "s1")["state"], "down")
        self.assertEqual(set(served_by(self.f.port, 20)), {"b0"})
        # fulcrum sent it nothing but checks
        self.assertEqual(state_of(self.aport, "s1")["requests"]["total"], 0)
        # healthy now: the next check brings it in, at once (one pass, not rise)
        get(sick.port, "/healthcheck/ok", method="POST")
        wait_for(lambda: state_of(self.aport, "s1")["state"] == "up", what="s1 up")
        self.assertIn("b1", served_by(self.f.port, 4))
        log = self.f.log()
        self.assertEqual(log.count("server s1: DOWN -> UP (1/2 checks passed)"), 0)
        self.assertEqual(log.count("server s1: DOWN -> UP"), 1)

    def test_healthy_newcomer_comes_up_after_one_check(self):
        self.start()
        b1 = self.backend("b1")
        status, body, _ = api(self.aport, "POST", "/api/pools/app/servers",
                              {"name": "s1", "address": b1.address})
        self.assertEqual((status, body["state"]), (201, "down"))
        self.assertEqual(body["health"]["last_result"], "awaiting its first health check")
        wait_for(lambda: state_of(self.aport, "s1")["state"] == "up", what="s1 up")
        self.assertEqual(self.f.log().count("server s1: DOWN -> UP (first check passed)"), 1)
        self.assertEqual(sorted(set(served_by(self.f.port, 4))), ["b0", "b1"])

    def test_without_checks_a_newcomer_takes_traffic_at_once(self):
        self.start(pool_extra="")
        b1 = self.backend("b1")
        status, body, _ = api(self.aport, "POST", "/api/pools/app/servers",
                              {"name": "s1", "address": b1.address})
        self.assertEqual((status, body["state"]), (201, "up"))
        self.assertEqual(sorted(set(served_by(self.f.port, 4))), ["b0", "b1"])

    def test_newcomer_of_a_reload_awaits_its_first_check(self):
        self.start()
        sick = self.backend("b1")
        get(sick.port, "/healthcheck/fail", method="POST")
        with open(self.f.config_path, "w") as fh:
            fh.write(config([("s0", self.b0.address), ("s1", sick.address)], pool_extra=CHECKED,
                            extra=admin_extra(self.aport)).replace("{port}", str(self.f.port)))
        status, body, _ = api(self.aport, "POST", "/api/reload")
        self.assertEqual(status, 200, body)
        wait_for(lambda: state_of(self.aport, "s1")["health"]["checked"], what="s1's first check")
        self.assertEqual(set(served_by(self.f.port, 20)), {"b0"})
        # fulcrum sent it nothing but checks
        self.assertEqual(state_of(self.aport, "s1")["requests"]["total"], 0)

    def test_a_server_that_leaves_finishes_its_requests_and_closes_its_idle_connections(self):
        self.start(pool_extra="")
        b1 = self.backend("b1")
        self.assertEqual(api(self.aport, "POST", "/api/pools/app/servers",
                             {"name": "s1", "address": b1.address})[0], 201)
        # idle connections to b1 from earlier requests, and one slow request in flight
        wait_for(lambda: "b1" in served_by(self.f.port, 4), what="traffic to b1")
        result = {}

        def slow():
            conn = http.client.HTTPConnection("127.0.0.1", self.f.port, timeout=10)
            conn.request("GET", "/?delay=800", headers={"X-Test-Delay": "800"})
            r = conn.getresponse()
            result["answer"] = (r.status, r.getheader("X-Backend"), r.read())
            conn.close()

        # send slow requests until one is held by b1 (round-robin alternates)
        threads = []
        for _ in range(2):
            t = threading.Thread(target=slow)
            t.start()
            threads.append(t)
        wait_for(lambda: b1.stats()["held_requests"] == 1, what="a request held by b1")
        status, _, _ = api(self.aport, "DELETE", "/api/pools/app/servers/s1")
        self.assertEqual(status, 200)
        for t in threads:
            t.join(10)
        self.assertEqual(result["answer"][0], 200)
        # nothing new goes to b1, and its idle connections from fulcrum close (the one left
        # open is the stats call's own)
        self.assertEqual(set(served_by(self.f.port, 6)), {"b0"})
        wait_for(lambda: b1.stats()["active_connections"] == 1,
                 what="fulcrum's idle connections to b1 to close")

    def test_a_server_that_comes_back_keeps_its_counters(self):
        self.start(pool_extra="")
        b1 = self.backend("b1")
        add = {"name": "s1", "address": b1.address}
        self.assertEqual(api(self.aport, "POST", "/api/pools/app/servers", add)[0], 201)
        served_by(self.f.port, 10)
        before = state_of(self.aport, "s1")["requests"]["2xx"]
        self.assertEqual(before, 5)
        self.assertEqual(api(self.aport, "DELETE", "/api/pools/app/servers/s1")[0], 200)
        self.assertEqual(api(self.aport, "POST", "/api/pools/app/servers", add)[0], 201)
        self.assertEqual(state_of(self.aport, "s1")["requests"]["2xx"], 5)
        self.assertEqual(state_of(self.aport, "s1")["source"], "api")
        self.assertEqual(state_of(self.aport, "s0")["source"], "file")
