"""
test_reload.py - configuration reload (SIGHUP): what changes, what must not, and that nothing is
dropped while it happens.
"""
import http.client
import os
import re
import signal
import socket
import threading

from harness import (SANITIZED, FulcrumTestCase, Load, Reader, config, connect, fd_count,
                     free_port, get, port_open, rss_kib, served_by, wait_for)


class ReloadTest(FulcrumTestCase):
    def start(self, text):
        f = self.fulcrum(text)
        self.path = f.config_path
        return f

    def reload(self, f, text):
        """Writes text as the configuration file, sends SIGHUP, waits for the outcome line."""
        before = len(re.findall(r"configuration reloaded|reload failed", f.log()))
        with open(self.path, "w") as fh:
            fh.write(text.replace("{port}", str(f.port)))
        f.signal(signal.SIGHUP)
        wait_for(lambda: len(re.findall(r"configuration reloaded|reload failed", f.log())) >
                 before, what="the reload to finish")
        return "reload failed" not in f.log().split("SIGHUP received")[-1]

    def test_servers_added_and_removed(self):
        bs = [self.backend("b%d" % i) for i in range(3)]
        two = config([("s0", bs[0].address), ("s1", bs[1].address)])
        three = config([("s0", bs[0].address), ("s1", bs[1].address), ("s2", bs[2].address)])
        f = self.start(two)
        self.assertEqual(set(served_by(f.port, 6)), {"b0", "b1"})
        self.assertTrue(self.reload(f, three))
        self.assertIn("3 servers (was 2)", f.log())
        wait_for(lambda: "b2" in served_by(f.port, 3), what="the new server to get traffic")
        self.assertEqual(sorted(set(served_by(f.port, 9))), ["b0", "b1", "b2"])
        self.assertTrue(self.reload(f, two))
        before = bs[2].stats()["requests"]
        self.assertEqual(set(served_by(f.port, 12)), {"b0", "b1"})
        self.assertEqual(bs[2].stats()["requests"], before)

    def test_bad_file_changes_nothing(self):
        b = self.backend("b0")
        good = config([("s0", b.address)])
        f = self.start(good)
        self.assertFalse(self.reload(f, good.replace("servers:", "servrs:")))
        self.assertRegex(f.log(), r"(?s)reload failed; the running configuration stays:\n.*"
                                  r"pools\[0\]\.servrs: unknown key")
        self.assertEqual(served_by(f.port, 3), ["b0"] * 3)
        # and a good file afterwards works
        self.assertTrue(self.reload(f, good))

    def test_unchanged_server_keeps_health_state(self):
        bs = [self.backend("b%d" % i) for i in range(3)]
        check = ("    health_check:\n      interval: 200ms\n      fast_interval: 100ms\n"
                 "      rise: 2\n      fall: 2\n")
        two = config([("s0", bs[0].address), ("s1", bs[1].address)], pool_extra=check)
        three = config([("s0", bs[0].address), ("s1", bs[1].address), ("s2", bs[2].address)],
                       pool_extra=check)
        f = self.start(two)
        conn = http.client.HTTPConnection("127.0.0.1", bs[1].port, timeout=5)
        conn.request("POST", "/healthcheck/fail")
        conn.getresponse().read()
        wait_for(lambda: "server s1: UP -> DOWN" in f.log(), what="s1 down")
        self.assertTrue(self.reload(f, three))
        # s1 is the same server: still down after the reload (a new one would start up)
        seen = served_by(f.port, 12)
        self.assertNotIn("b1", seen)
        self.assertIn("b2", seen)
        self.assertEqual(len(re.findall(r"server s1: UP -> DOWN", f.log())), 1)

    def test_listeners_added_and_removed(self):
        b = self.backend("b0")
        one = config([("s0", b.address)])
        port2 = free_port()
        both = one.replace("listeners:\n", "listeners:\n  - name: extra\n    bind: 127.0.0.1:%d\n"
                                           "    pool: app\n" % port2)
        f = self.start(one)
        self.assertFalse(port_open(port2))
        self.assertTrue(self.reload(f, both))
        wait_for(lambda: port_open(port2), what="the new listener")
        self.assertEqual(get(port2)[0], 200)
        self.assertTrue(self.reload(f, one))
        wait_for(lambda: not port_open(port2), what="the removed listener to close")
        self.assertEqual(get(f.port)[0], 200)

    def test_in_flight_request_finishes_on_the_old_configuration(self):
        bs = [self.backend("b%d" % i) for i in range(2)]
        f = self.start(config([("s0", bs[0].address)]))
        result = {}

        def slow():
            result["answer"] = get(f.port, "/?delay=1000&size=1000", timeout=10)
        t = threading.Thread(target=slow)
        t.start()
        wait_for(lambda: bs[0].stats()["held_requests"] >= 1, what="request in flight")
        self.assertTrue(self.reload(f, config([("s1", bs[1].address)])))  # s0 removed
        t.join()
        status, headers, body = result["answer"]
        self.assertEqual((status, headers["x-backend"], len(body)), (200, "b0", 1000))
        wait_for(lambda: served_by(f.port, 1) == ["b1"], what="new requests on the new pool")

    def test_idle_client_moves_to_the_new_configuration(self):
        bs = [self.backend("b%d" % i) for i in range(2)]
        f = self.start(config([("s0", bs[0].address)]))
        with connect(f.port) as s:
            r = Reader(s)
            s.sendall(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
            self.assertEqual(r.read_response().header("X-Backend"), "b0")
            self.assertTrue(self.reload(f, config([("s1", bs[1].address)])))

            def next_backend():
                s.sendall(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
                return r.read_response().header("X-Backend")
            wait_for(lambda: next_backend() == "b1", what="the same connection to move over")

    def test_reload_without_a_file(self):
        b = self.backend("b0")
        port = free_port()
        f = self.fulcrum(args=["--listen", "127.0.0.1:%d" % port, "--server", b.address],
                         port=port)
        f.signal(signal.SIGHUP)
        wait_for(lambda: "reload failed" in f.log(), what="the refusal")
        self.assertIn("no file to reload", f.log())
        self.assertEqual(get(port)[0], 200)


class ReloadUnderLoadTest(FulcrumTestCase):
    def start_with_two_of_three(self):
        """Three backends; fulcrum starts on the config with two of them. Returns it and both
        configs, which the tests alternate between to add and remove a server."""
        bs = [self.backend("b%d" % i) for i in range(3)]
        two = config([("s0", bs[0].address), ("s1", bs[1].address)], threads=2)
        three = config([("s0", bs[0].address), ("s1", bs[1].address), ("s2", bs[2].address)],
                       threads=2)
        return self.fulcrum(two), two, three

    def test_twenty_reloads_under_load_drop_nothing(self):
        f, two, three = self.start_with_two_of_three()
        path = f.config_path
        load = Load(f.port, clients=4, mix_new=True).start()

        def reload_with(text, log_line):
            n = f.log().count(log_line)
            with open(path, "w") as fh:
                fh.write(text.replace("{port}", str(f.port)))
            f.signal(signal.SIGHUP)
            wait_for(lambda: f.log().count(log_line) > n, what=log_line)
            # let some traffic run on what is now in force before the next change
            ok = load.counts["ok"]
            wait_for(lambda: load.counts["ok"] >= ok + 25, what="traffic after the reload")

        try:
            for i in range(20):
                reload_with(three if i % 2 == 0 else two, "configuration reloaded")
                if i % 5 == 4:  # a bad file in between changes nothing and drops nothing
                    reload_with(two.replace("servers:", "servrs:"), "reload failed")
        finally:
            counts = load.stop()
        print("\n    20 reloads and 4 refused bad files under load: %s" % counts)
        self.assertEqual(f.log().count("reload failed"), 4)
        self.assertEqual(counts["bad_status"], 0)
        self.assertEqual(counts["errors"], 0)
        self.assertGreater(counts["ok"], 500)

    def test_memory_and_fds_flat_across_200_reloads(self):
        f, two, three = self.start_with_two_of_three()
        path = f.config_path

        def reload_n(count, start):
            for i in range(count):
                n = f.log().count("configuration reloaded")
                with open(path, "w") as fh:
                    fh.write(((three if (start + i) % 2 == 0 else two)
                              .replace("{port}", str(f.port))))
                f.signal(signal.SIGHUP)
                wait_for(lambda: f.log().count("configuration reloaded") > n, what="reload")
                self.assertEqual(get(f.port)[0], 200)
        reload_n(20, 0)  # warm-up: allocator and per-thread tables settle
        fds0, rss0 = fd_count(f.pid), rss_kib(f.pid)
        reload_n(200, 20)
        fds1, rss1 = fd_count(f.pid), rss_kib(f.pid)
        print("\n    200 reloads: fds %d -> %d, RSS %d -> %d KiB" % (fds0, fds1, rss0, rss1))
        self.assertLessEqual(fds1, fds0 + 2)
        if not SANITIZED:
            self.assertLess(rss1 - rss0, 1024)
