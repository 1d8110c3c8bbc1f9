"""
test_install.py - `make install` and `make uninstall` into a staging directory (DESTDIR).

Checks that every file lands where the packaging expects it, with the right mode; that the systemd
unit has its placeholders filled in; that the installed example configuration passes `fulcrum -t`;
that a second install never overwrites an operator's fulcrum.yaml; that the man pages render
without warnings; and that uninstall removes everything it installed except that file.

It runs make in the source tree against FULCRUM_BUILD, which `make test-e2e` has just built, so
the `all` prerequisite of install is a no-op.
"""
import filecmp
import glob
import gzip
import os
import re
import shutil
import subprocess
import tempfile
import unittest

from harness import BUILD, ROOT

# Variables that would change the layout if the environment or a parent make passed them in.
_MAKE_ENV_DROP = ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "DESTDIR", "PREFIX", "SYSCONFDIR",
                  "BINDIR", "MANDIR", "UNITDIR", "DOCDIR")
MAN_PAGES = {"man8/fulcrum.8.gz": "docs/man/fulcrum.8",
             "man5/fulcrum.yaml.5.gz": "docs/man/fulcrum.yaml.5"}


def make(*args, check=True):
    env = {k: v for k, v in os.environ.items() if k not in _MAKE_ENV_DROP}
    env["LC_ALL"] = "C"
    r = subprocess.run(["make", "--no-print-directory", "-C", ROOT,
                        "BUILD=" + os.path.relpath(BUILD, ROOT), *args],
                       capture_output=True, text=True, timeout=600, env=env)
    if check and r.returncode != 0:
        raise AssertionError("make %s failed (%d):\n%s%s" % (" ".join(args), r.returncode,
                                                             r.stdout, r.stderr))
    return r


def expected_files(prefix="/usr", sysconfdir="/etc"):
    """Every file make install creates, relative to DESTDIR, with its mode."""
    files = {
        prefix + "/bin/fulcrum": 0o755,
        prefix + "/bin/fulcrum-backend": 0o755,
        prefix + "/lib/systemd/system/fulcrum.service": 0o644,
        sysconfdir + "/fulcrum/fulcrum.yaml": 0o644,
        sysconfdir + "/fulcrum/fulcrum.yaml.example": 0o644,
    }
    for page in MAN_PAGES:
        files[prefix + "/share/man/" + page] = 0o644
    for doc in ["README.md"] + sorted(glob.glob(os.path.join(ROOT, "docs", "*.md"))):
        files[prefix + "/share/doc/fulcrum/" + os.path.basename(doc)] = 0o644
    return files


def unit_settings(text):
    """The unit's Key=value lines, as a dict of lists (keys may repeat)."""
    settings = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";", "[")):
            continue
        key, _, value = line.partition("=")
        settings.setdefault(key, []).append(value)
    return settings


def seconds(text):
    m = re.fullmatch(r"(\d+)(ms|s|min)?", text.strip())
    if not m:
        raise AssertionError("unexpected time span %r" % text)
    return int(m.group(1)) * {"ms": 0.001, "s": 1, None: 1, "min": 60}[m.group(2)]


class InstallTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        if os.path.relpath(BUILD, ROOT) == "build":
            make("all")
        elif make("-q", "all", check=False).returncode != 0:
            # install depends on all, and this make would not know the flags (sanitizers, CC)
            # that directory was built with: rebuilding it here would spoil it.
            raise unittest.SkipTest("%s is out of date; build it first (e.g. make test-asan)"
                                    % os.path.relpath(BUILD, ROOT))
        cls.destdir = tempfile.mkdtemp(prefix="fulcrum-install-")
        cls.install = make("install", "DESTDIR=" + cls.destdir, "PREFIX=/usr")

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.destdir, ignore_errors=True)

    def staged(self, path, destdir=None):
        return os.path.join(destdir or self.destdir, path.lstrip("/"))

    def fresh_destdir(self):
        d = tempfile.mkdtemp(prefix="fulcrum-install-")
        self.addCleanup(shutil.rmtree, d, True)
        return d

    def test_every_file_in_place_with_its_mode(self):
        expected = expected_files()
        for path, mode in expected.items():
            full = self.staged(path)
            self.assertTrue(os.path.isfile(full), "missing: " + path)
            self.assertEqual(os.stat(full).st_mode & 0o7777, mode,
                             "%s has mode %o, expected %o" % (path, os.stat(full).st_mode & 0o7777,
                                                              mode))
        found = set()
        for dirpath, _, names in os.walk(self.destdir):
            for name in names:
                found.add("/" + os.path.relpath(os.path.join(dirpath, name), self.destdir))
        self.assertEqual(found, set(expected), "installed files differ from the expected list")
        # The binaries are the ones just built, and the docs are copies of the sources.
        for name in ("fulcrum", "fulcrum-backend"):
            self.assertTrue(filecmp.cmp(os.path.join(BUILD, name),
                                        self.staged("/usr/bin/" + name), shallow=False))
        self.assertTrue(filecmp.cmp(os.path.join(ROOT, "docs", "configuration.md"),
                                    self.staged("/usr/share/doc/fulcrum/configuration.md"),
                                    shallow=False))

    def test_installed_binary_runs(self):
        r = subprocess.run([self.staged("/usr/bin/fulcrum"), "--version"], capture_output=True,
                           text=True, timeout=30)
        self.assertEqual(r.returncode, 0, r.stderr)
        with open(os.path.join(ROOT, "VERSION")) as f:
            version = f.read().strip()
        self.assertRegex(r.stdout, r"^fulcrum %s " % re.escape(version))
        r = subprocess.run([self.staged("/usr/bin/fulcrum-backend"), "--version"],
                           capture_output=True, text=True, timeout=30)
        self.assertEqual(r.returncode, 0, r.stderr)

    def test_example_configuration_passes_the_check(self):
        binary = self.staged("/usr/bin/fulcrum")
        for name in ("fulcrum.yaml", "fulcrum.yaml.example"):
            path = self.staged("/etc/fulcrum/" + name)
            self.assertTrue(filecmp.cmp(path, os.path.join(ROOT, "packaging", "fulcrum.yaml"),
                                        shallow=False))
            r = subprocess.run([binary, "-t", "-c", path], capture_output=True, text=True,
                               timeout=30)
            self.assertEqual((r.returncode, r.stdout.strip()), (0, "configuration OK"),
                             r.stderr)
        with open(self.staged("/etc/fulcrum/fulcrum.yaml")) as f:
            text = f.read()
        # What the unit and the man pages promise about the example.
        self.assertRegex(text, r"(?m)^  bind: 127\.0\.0\.1:9900$")
        self.assertRegex(text, r"(?m)^  path: /var/log/fulcrum/access\.log$")
        self.assertRegex(text, r"(?m)^    bind: :80$")

    def test_unit_points_at_the_installed_files(self):
        with open(self.staged("/usr/lib/systemd/system/fulcrum.service")) as f:
            text = f.read()
        self.assertNotRegex(text, r"@[A-Za-z_]+@", "a placeholder was not substituted")
        s = unit_settings(text)
        self.assertEqual(s["Type"], ["notify"])
        self.assertEqual(s["ExecStartPre"], ["/usr/bin/fulcrum -t -c /etc/fulcrum/fulcrum.yaml"])
        self.assertEqual(s["ExecStart"], ["/usr/bin/fulcrum -c /etc/fulcrum/fulcrum.yaml"])
        self.assertEqual(s["ExecReload"], ["/bin/kill -HUP $MAINPID"])
        self.assertEqual(s["KillSignal"], ["SIGTERM"])
        self.assertEqual(s["Restart"], ["on-failure"])
        self.assertEqual(s["LimitNOFILE"], ["1048576"])
        self.assertIn("CAP_NET_BIND_SERVICE", s["AmbientCapabilities"][0])
        self.assertEqual(s["LogsDirectory"], ["fulcrum"])
        self.assertEqual(s["ConfigurationDirectory"], ["fulcrum"])
        for key in ("NoNewPrivileges", "ProtectHome", "PrivateTmp", "DynamicUser"):
            self.assertEqual(s[key], ["yes"], key)
        self.assertEqual(s["ProtectSystem"], ["strict"])
        # Longer than the default shutdown_timeout (10s), so a graceful stop is not cut short.
        self.assertGreater(seconds(s["TimeoutStopSec"][0]), 10)

    def test_other_prefix_and_systemd_analyze(self):
        """PREFIX=/usr/local-like prefixes keep the configuration under PREFIX/etc."""
        prefix = os.path.join(self.fresh_destdir(), "opt")
        make("install", "PREFIX=" + prefix)
        for path, mode in expected_files(prefix, prefix + "/etc").items():
            self.assertTrue(os.path.isfile(path), "missing: " + path)
            self.assertEqual(os.stat(path).st_mode & 0o7777, mode, path)
        unit = os.path.join(prefix, "lib/systemd/system/fulcrum.service")
        with open(unit) as f:
            s = unit_settings(f.read())
        self.assertEqual(s["ExecStart"],
                         ["%s/bin/fulcrum -c %s/etc/fulcrum/fulcrum.yaml" % (prefix, prefix)])
        if not shutil.which("systemd-analyze"):
            self.skipTest("systemd-analyze is not installed: the unit was not verified")
        # verify checks the syntax, that the Exec paths exist, and (through man) Documentation=.
        env = dict(os.environ, MANPATH=os.path.join(prefix, "share/man"), SYSTEMD_LOG_LEVEL="notice")
        r = subprocess.run(["systemd-analyze", "verify", unit], capture_output=True, text=True,
                           timeout=60, env=env)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertEqual(r.stdout + r.stderr, "")

    def test_second_install_keeps_the_operator_configuration(self):
        destdir = self.fresh_destdir()
        make("install", "DESTDIR=" + destdir, "PREFIX=/usr")
        config = self.staged("/etc/fulcrum/fulcrum.yaml", destdir)
        example = self.staged("/etc/fulcrum/fulcrum.yaml.example", destdir)
        with open(config, "a") as f:
            f.write("# changed by the operator\n")
        with open(example, "a") as f:
            f.write("# a stale example\n")
        r = make("-s", "install", "DESTDIR=" + destdir, "PREFIX=/usr")
        self.assertEqual(r.stdout + r.stderr, "", "make -s install should print nothing")
        with open(config) as f:
            self.assertTrue(f.read().endswith("# changed by the operator\n"))
        # The example is always the current one.
        self.assertTrue(filecmp.cmp(example, os.path.join(ROOT, "packaging", "fulcrum.yaml"),
                                    shallow=False))

    def test_man_pages(self):
        pages = {}
        for installed, source in MAN_PAGES.items():
            path = self.staged("/usr/share/man/" + installed)
            with open(path, "rb") as f:
                head = f.read(10)
            self.assertEqual(head[:2], b"\x1f\x8b", installed + " is not gzip")
            self.assertEqual(head[4:8], b"\0\0\0\0", installed + ": gzip -n stores no time")
            with gzip.open(path, "rt") as f:
                text = f.read()
            with open(os.path.join(ROOT, source)) as f:
                self.assertEqual(text, f.read(), installed + " differs from " + source)
            self.assertRegex(text, r"(?m)^\.TH ")
            self.assertNotRegex(text, r"(?m)^\.(Dd|Dt|Nm)\b", "man(7) macros, not mdoc")
            pages[installed] = text
        for section in ("NAME", "SYNOPSIS", "DESCRIPTION", "OPTIONS", "SIGNALS", "FILES",
                        "ADMIN API", "EXIT STATUS", "EXAMPLES", "SEE ALSO"):
            self.assertRegex(pages["man8/fulcrum.8.gz"], r"(?m)^\.SH \"?%s\"?$" % section)
        for flag in ("config", "test", "listen", "server", "threads", "log\\-level", "version",
                     "help", "health\\-check", "health\\-interval", "admin", "access\\-log"):
            self.assertIn("\\-\\-" + flag, pages["man8/fulcrum.8.gz"])
        for key in ("threads", "log_level", "shutdown_timeout", "listeners", "pools", "timeouts",
                    "limits", "admin", "access_log", "error_log", "health_check", "passive",
                    "retries", "slow_start", "when_all_down", "servers", "client_header",
                    "client_idle", "server_idle", "max_connections", "max_header_bytes",
                    "max_headers", "consecutive_failures", "failure_status", "ejection_time",
                    "max_ejection_time", "max_ejected_percent", "expect_status", "expect_body",
                    "fast_interval", "down_interval", "token", "http",
                    "underscores_in_headers", "server_body_idle", "ignore_client_abort",
                    "max_backlog"):
            self.assertRegex(pages["man5/fulcrum.yaml.5.gz"], r"(?m)^\.BR? %s\b" % key)
        if not shutil.which("groff"):
            self.skipTest("groff is not installed: the pages were not rendered "
                          "(apt-get install groff-base)")
        for installed, text in pages.items():
            r = subprocess.run(["groff", "-man", "-Tutf8", "-ww", "-z"], input=text,
                               capture_output=True, text=True, timeout=60)
            self.assertEqual((r.returncode, r.stdout + r.stderr), (0, ""),
                             installed + " does not render cleanly")

    def test_uninstall_removes_what_install_added(self):
        destdir = self.fresh_destdir()
        make("install", "DESTDIR=" + destdir, "PREFIX=/usr")
        config = self.staged("/etc/fulcrum/fulcrum.yaml", destdir)
        with open(config, "a") as f:
            f.write("# changed by the operator\n")
        make("uninstall", "DESTDIR=" + destdir, "PREFIX=/usr")
        left = []
        for dirpath, _, names in os.walk(destdir):
            left += ["/" + os.path.relpath(os.path.join(dirpath, n), destdir) for n in names]
        self.assertEqual(left, ["/etc/fulcrum/fulcrum.yaml"])
        self.assertFalse(os.path.exists(self.staged("/usr/share/doc/fulcrum", destdir)))
        # Uninstalling again, or with the configuration gone too, is not an error.
        make("uninstall", "DESTDIR=" + destdir, "PREFIX=/usr")
        os.unlink(config)
        make("uninstall", "DESTDIR=" + destdir, "PREFIX=/usr")
        self.assertFalse(os.path.exists(self.staged("/etc/fulcrum", destdir)))


if __name__ == "__main__":
    unittest.main()
