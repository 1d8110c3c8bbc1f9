"""
test_grpc_health.py - health_check: {type: grpc, service: NAME} against real gRPC servers
(tests/e2e/grpc_peer.py on Debian's python3-grpcio), which answer grpc.health.v1.Health/Check
from a status the test changes while fulcrum runs:

- servers answering SERVING are up; one flipped to NOT_SERVING goes down with that reason, and
  comes back when it is SERVING again; each flip is one check's verdict (rise 1, fall 1);
- a service the server does not know: grpc-status 5 (NOT_FOUND), down;
- no service: the server as a whole ("");
- an HTTP/1.1 server (fulcrum-backend) in a grpc-checked pool is down: it does not speak HTTP/2;
- over TLS, offering h2 through ALPN, with the pool's tls settings (the peer's certificate is for
  IP 127.0.0.1, signed by the test root CA).
"""
import os
import tempfile
import unittest

import grpc_peer
from harness import FulcrumTestCase, free_port, port_open, wait_for
from test_admin import admin_extra, api
from tlspki import make_pki

PKI_DIR = os.path.join(tempfile.gettempdir(), "fulcrum-e2e-pki")
SERVICE = grpc_peer.SERVICE


def grpc_available():
    try:
        import grpc  # noqa: F401
    except ImportError:
        return False
    return True


@unittest.skipUnless(grpc_available(), "python3-grpcio is not installed")
class GrpcHealthTest(FulcrumTestCase):
    def peer(self, name, tls=None):
        p = grpc_peer.spawn(name, tls=tls)
        self.addCleanup(p.cleanup)
        return p

    def start(self, pools):
        """pools: {name: (check mapping text, [(server name, address)], extra pool lines)}."""
        self.aport = free_port()
        text = ("threads: 1\n"
                "listeners:\n"
                "  - name: web\n"
                "    bind: 127.0.0.1:{port}\n"
                "    pool: %s\n"
                "pools:\n" % next(iter(pools)))
        for name, (check, servers, extra) in pools.items():
            text += "  - name: %s\n    health_check: %s\n%s    servers:\n" % (name, check, extra)
            for server, address in servers:
                text += "      - { name: %s, address: \"%s\" }\n" % (server, address)
        self.f = self.fulcrum(text + admin_extra(self.aport))
        wait_for(lambda: port_open(self.aport), what="admin listener")

    def servers(self, pool):
        state = api(self.aport, "GET", "/api/state")[1]
        found = [p for p in state["pools"] if p["name"] == pool][0]
        return {s["name"]: s for s in found["servers"]}

    def wait_state(self, pool, server, state, result=None):
        def reached():
            s = self.servers(pool)[server]
            return s["state"] == state and (result is None or
                                            s["health"]["last_result"] == result)
        wait_for(reached, what="%s/%s %s (%s); it is %s" % (
            pool, server, state, result, self.servers(pool)[server]["state"]))

    def test_serving_not_serving_and_back(self):
        a, b = self.peer("a"), self.peer("b")
        check = "{type: grpc, service: %s, interval: 200ms, rise: 1, fall: 1}" % SERVICE
        self.start({"api": (check, [("a", a.target), ("b", b.target)], "")})
        self.wait_state("api", "a", "up", "SERVING")
        self.wait_state("api", "b", "up", "SERVING")
        self.assertEqual(self.f.log().count(
            'pool api: gRPC health checks of service "%s" every 200ms (rise 1, fall 1, '
            'timeout 200ms)' % SERVICE), 1, self.f.log())
        res = grpc_peer.set_health(b.target, SERVICE, "NOT_SERVING")
        self.assertTrue(res.ok, res)
        self.wait_state("api", "b", "down", "NOT_SERVING")
        self.assertEqual(self.servers("api")["a"]["state"], "up")
        grpc_peer.set_health(b.target, SERVICE, "SERVING")
        self.wait_state("api", "b", "up", "SERVING")
        # the checks are real calls: the servers counted them
        self.assertGreater(grpc_peer.stats(b.target)["calls"]["Health/Check"], 2)

    def test_unknown_service_no_service_and_a_server_without_http2(self):
        a = self.peer("a")
        http1 = self.backend("plain")
        fast = "interval: 200ms, rise: 1, fall: 1"
        self.start({
            "unknown": ("{type: grpc, service: no.such.Service, %s}" % fast,
                        [("a", a.target)], ""),
            "whole": ("{type: grpc, %s}" % fast,
                      [("a", a.target), ("plain", "127.0.0.1:%d" % http1.port)], ""),
        })
        self.wait_state("unknown", "a", "down",
                        "grpc-status 5 (NOT_FOUND): unknown service 'no.such.Service'")
        self.wait_state("whole", "a", "up", "SERVING")
        self.wait_state("whole", "plain", "down")
        reason = self.servers("whole")["plain"]["health"]["last_result"]
        self.assertTrue(reason.startswith("bad HTTP/2 from the server") or
                        reason == "connection closed before the answer", reason)

    def test_over_tls_with_alpn_h2(self):
        pki = make_pki(PKI_DIR)
        a = self.peer("a", tls=(pki.backend, pki.backend_key))
        check = "{type: grpc, service: %s, interval: 200ms, rise: 1, fall: 1}" % SERVICE
        self.start({"api": (check, [("a", a.target)],
                            "    tls: {ca: %s}\n" % pki.root_ca)})
        self.wait_state("api", "a", "up", "SERVING")
        grpc_peer.set_health(a.target, SERVICE, "NOT_SERVING", tls=pki.root_ca)
        self.wait_state("api", "a", "down", "NOT_SERVING")


if __name__ == "__main__":
    unittest.main()
