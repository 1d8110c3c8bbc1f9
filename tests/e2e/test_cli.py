"""test_cli.py - the command line: help, version, -t, quick-start flags and their errors."""
import os
import subprocess
import tempfile

from harness import FULCRUM, FulcrumTestCase, free_port, get


def run(*args, input=None):
    return subprocess.run([FULCRUM, *args], capture_output=True, text=True, timeout=30,
                          input=input)


class CliTest(FulcrumTestCase):
    def write(self, text):
        fd, path = tempfile.mkstemp(suffix=".yaml")
        with os.fdopen(fd, "w") as f:
            f.write(text)
        self.addCleanup(os.unlink, path)
        return path

    def test_help_and_version(self):
        r = run("--help")
        self.assertEqual(r.returncode, 0)
        for word in ("--listen", "--server", "-c", "-t", "--threads", "weight="):
            self.assertIn(word, r.stdout)
        r = run("--version")
        self.assertEqual(r.returncode, 0)
        self.assertRegex(r.stdout, r"^fulcrum \d+\.\d+\.\d+")

    def test_check_good_config(self):
        path = self.write("listeners:\n  - { name: web, bind: 127.0.0.1:8080, pool: app }\n"
                          "pools:\n  - name: app\n    servers:\n"
                          "      - { name: s1, address: 127.0.0.1:9001 }\n")
        r = run("-t", "-c", path)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout.strip(), "configuration OK")

    def test_check_bad_config_lists_every_error(self):
        path = self.write("listeners:\n  - { name: web, bnd: 127.0.0.1:8080, pool: app }\n"
                          "pools:\n  - name: app\n    servers:\n"
                          "      - { name: s1, address: 127.0.0.1:99999, weight: 300 }\n")
        r = run("-t", "-c", path)
        self.assertEqual(r.returncode, 1)
        self.assertNotIn("configuration OK", r.stdout)
        errors = [l for l in r.stderr.splitlines() if l.startswith(path + ":")]
        # file:line:column: key: message, for each problem
        self.assertGreaterEqual(len(errors), 3, r.stderr)
        self.assertRegex(r.stderr, r":2:\d+: listeners\[0\]\.bnd: ")
        self.assertRegex(r.stderr, r":6:\d+: pools\[0\]\.servers\[0\]\.address: ")
        self.assertRegex(r.stderr, r":6:\d+: pools\[0\]\.servers\[0\]\.weight: ")

    def test_missing_file(self):
        r = run("-t", "-c", "/nonexistent/fulcrum.yaml")
        self.assertEqual(r.returncode, 1)
        self.assertIn("/nonexistent/fulcrum.yaml", r.stderr)

    def test_flag_errors(self):
        for args, text in ((["--listen", "127.0.0.1:80"], "server"),
                           (["--listen", "nope", "--server", "127.0.0.1:1"], "nope"),
                           (["--listen", "127.0.0.1:8080", "--server", "127.0.0.1:1,weight=999"],
                            "weight"),
                           (["--listen", "127.0.0.1:8080", "--server", "127.0.0.1:1,bogus=1"],
                            "bogus"),
                           (["--threads", "0", "--listen", "127.0.0.1:1", "--server",
                             "127.0.0.1:2"], "threads"),
                           (["--no-such-flag"], ""),
                           ([], "nothing to do")):
            r = run(*args)
            self.assertNotEqual(r.returncode, 0, args)
            self.assertIn(text, r.stderr, args)

    def test_listen_address_in_use(self):
        b = self.backend("busy")
        r = run("--listen", b.address, "--server", "127.0.0.1:1")
        self.assertEqual(r.returncode, 1)
        self.assertIn("cannot listen", r.stderr)

    def test_quick_start_flags(self):
        b1 = self.backend("b1")
        b2 = self.backend("b2")
        port = free_port()
        f = self.fulcrum(args=["--listen", "127.0.0.1:%d" % port, "--server", b1.address,
                               "--server", b2.address + ",weight=3,name=heavy", "--threads", "1"],
                         port=port)
        seen = []
        import http.client
        conn = http.client.HTTPConnection("127.0.0.1", f.port, timeout=5)
        for _ in range(8):
            conn.request("GET", "/")
            r = conn.getresponse()
            r.read()
            self.assertEqual(r.status, 200)
            seen.append(r.getheader("X-Backend"))
        conn.close()
        self.assertEqual(seen.count("b1"), 2)
        self.assertEqual(seen.count("b2"), 6)
        self.assertEqual(get(f.port)[0], 200)

    def test_health_check_flags(self):
        b = self.backend("b1")
        port = free_port()
        dead = "127.0.0.1:%d" % free_port()
        f = self.fulcrum(args=["--listen", "127.0.0.1:%d" % port, "--server", b.address,
                               "--server", dead + ",name=dead", "--health-check", "/healthcheck",
                               "--health-interval", "200ms", "--threads", "1"], port=port)
        from harness import wait_for
        wait_for(lambda: "server dead: UP -> DOWN (first check failed: Connection refused)"
                 in f.log(), what="the dead server to be taken out")
        self.assertIn("health checks GET /healthcheck every 200ms", f.log())
        for _ in range(4):
            self.assertEqual(get(f.port)[1]["x-backend"], "b1")
        r = run("--listen", "127.0.0.1:1", "--server", "127.0.0.1:2", "--health-check", "nope")
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("--health-check", r.stderr)
