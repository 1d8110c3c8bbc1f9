"""
test_tls_audit.py - an external audit of fulcrum's TLS listener with testssl.sh (Debian package
testssl.sh, whose command is `testssl`; TESTSSL=PATH selects another one).

make test runs a subset of testssl.sh, chosen to take well under a minute on two cores:
--protocols, --std (cipher categories) and --vulnerable (every vulnerability check), over
sockets, not --fast (which tests with the local OpenSSL, and Debian's OpenSSL cannot even offer
RC4, SSLv2 or export suites, so those checks would report "not tested" at best). It asserts that
only TLS 1.2 and 1.3 are offered, no weak cipher category is, and every vulnerability check ran and
came back OK or INFO. `make tls-audit` (scripts/tls-audit) runs the full default audit and reuses
the functions below.

The evaluation is a pure function of testssl's flat JSON report (--jsonfile: a list of
{"id", "severity", "finding", ...}), so AuditEvaluationTest checks, without testssl, that a report
with a weak protocol, a weak cipher category, a vulnerable or untested check, a missing check or
a scan error does fail.
"""
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import unittest

from harness import FulcrumTestCase
from tlspki import make_pki

PKI_DIR = os.path.join(tempfile.gettempdir(), "fulcrum-e2e-pki")  # shared with test_tls.py
SERVER_NAME = "site.test"  # a name of both site certificates, sent as SNI

# The subset make test runs; `testssl URI` with none of them runs every default check.
SUBSET_FLAGS = ["--protocols", "--std", "--vulnerable"]
# Flags of every run: no banner, no colours, stop on a scan warning instead of asking, loopback
# only (no DNS: the machine may have none), bounded waits.
COMMON_FLAGS = ["--quiet", "--color", "0", "--warnings", "batch", "--ip", "127.0.0.1",
                "--nodns", "none", "--connect-timeout", "10", "--openssl-timeout", "10"]

SEVERE = ("MEDIUM", "HIGH", "CRITICAL")
PASSING = ("OK", "INFO")
# Findings about the machine running testssl, not the server (ip "/"): testssl 3.0.8 with
# Debian's OpenSSL 3 always reports engine_problem (no GOST engine), severity WARN.
LOCAL_IDS = ("engine_problem",)

OFF_PROTOCOLS = ("SSLv2", "SSLv3", "TLS1", "TLS1_1")
ON_PROTOCOLS = ("TLS1_2", "TLS1_3")
# Cipher categories (--std) that must be "not offered"; each entry lists the ids one category has
# had in testssl versions (3.0: cipherlist_AVERAGE for "Obsolete CBC ciphers", 3.1+: OBSOLETED).
OFF_CIPHER_CATEGORIES = (("cipherlist_NULL",), ("cipherlist_aNULL",), ("cipherlist_EXPORT",),
                         ("cipherlist_LOW",), ("cipherlist_3DES_IDEA",),
                         ("cipherlist_AVERAGE", "cipherlist_OBSOLETED"))
# Every check of --vulnerable (and of the default run), as the id family of its findings: a family
# is the id itself plus ids that extend it ("DROWN_hint", "LOGJAM-common_primes", "BEAST_CBC_TLS1").
VULN_FAMILIES = ("heartbleed", "CCS", "ticketbleed", "ROBOT", "secure_renego",
                 "secure_client_renego", "CRIME_TLS", "BREACH", "POODLE_SSL", "fallback_SCSV",
                 "SWEET32", "FREAK", "DROWN", "LOGJAM", "BEAST", "LUCKY13", "RC4")


class AuditError(Exception):
    """testssl did not run, or its report cannot be read."""


# ---- testssl ----

def find_testssl():
    path = os.environ.get("TESTSSL")
    if path:
        return path if os.access(path, os.X_OK) else None
    return shutil.which("testssl") or shutil.which("testssl.sh")


def ensure_testssl():
    """(path, None) for an installed testssl, installing Debian's package if it is missing;
    (None, reason) if it is missing and cannot be installed."""
    path = find_testssl()
    if path:
        return path, None
    if os.environ.get("TESTSSL"):
        raise AuditError("TESTSSL=%s is not an executable" % os.environ["TESTSSL"])
    if not shutil.which("apt-get"):
        return None, "testssl.sh is not installed and there is no apt-get to install it"
    if os.geteuid() == 0:
        prefix = []
    elif shutil.which("sudo"):
        prefix = ["sudo", "-n"]
    else:
        return None, "testssl.sh is not installed, and installing it needs root (no sudo)"
    install = prefix + ["apt-get", "install", "-y", "--no-install-recommends", "testssl.sh"]
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    errors = ""
    for argv_list in ([install], [prefix + ["apt-get", "update"], install]):
        try:
            for argv in argv_list:
                out = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True,
                                     env=env, timeout=600)
                if out.returncode != 0:
                    errors = out.stderr.decode("utf-8", "replace").strip()[-300:]
                    break
        except (OSError, subprocess.TimeoutExpired) as e:
            errors = str(e)
        path = find_testssl()
        if path:
            return path, None
    return None, "testssl.sh is not installed and `apt-get install testssl.sh` failed: " + errors


class Run:
    def __init__(self, argv, returncode, seconds, output, json_path):
        self.argv, self.returncode, self.seconds = argv, returncode, seconds
        self.output, self.json_path = output, json_path


def run_testssl(testssl, uri, json_path, flags=(), timeout=900):
    """Runs testssl on uri (host:port, tested at 127.0.0.1) with a flat JSON report at json_path.
    Its temporary files go to the report's directory; a run over timeout is killed."""
    argv = [testssl] + COMMON_FLAGS + list(flags) + ["--jsonfile", json_path, uri]
    env = dict(os.environ, TMPDIR=os.path.dirname(os.path.abspath(json_path)))
    start = time.monotonic()
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, env=env, start_new_session=True)
    try:
        output, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # testssl's own group: openssl children too
        proc.communicate()
        raise AuditError("testssl did not finish within %ds: %s" % (timeout, " ".join(argv)))
    return Run(argv, proc.returncode, time.monotonic() - start,
               output.decode("utf-8", "replace"), json_path)


def load_findings(json_path):
    """The findings of a flat JSON report (--jsonfile), as a list of dicts."""
    try:
        with open(json_path) as f:
            findings = json.load(f)
    except (OSError, ValueError) as e:
        raise AuditError("no readable testssl report at %s: %s" % (json_path, e))
    if not isinstance(findings, list) or not all(isinstance(x, dict) for x in findings):
        raise AuditError("%s is not a flat testssl report (--jsonfile)" % json_path)
    return findings


# ---- evaluation ----

def describe(f):
    return "%s %s: %s" % (f.get("id"), f.get("severity"), f.get("finding"))


def by_id(findings, *ids):
    """The first finding whose id is one of ids, or None."""
    for f in findings:
        if f.get("id") in ids:
            return f
    return None


def family(findings, name):
    return [f for f in findings if f.get("id") == name or
            str(f.get("id", "")).startswith((name + "_", name + "-"))]


def scan_problems(findings):
    """What says that the scan itself failed: a testssl FATAL (scanProblem), an interrupted scan,
    an empty report."""
    problems = []
    if not [f for f in findings if f.get("id") not in LOCAL_IDS]:
        problems.append("the report holds no finding about the server")
    for f in findings:
        if f.get("severity") == "FATAL" or f.get("id") == "scanProblem":
            problems.append("scan problem: " + describe(f))
        elif f.get("id") in ("scanTime", "optimal_proto") and f.get("severity") == "WARN":
            problems.append("scan problem: " + describe(f))  # "Scan interrupted", no connection
    return problems


def protocol_and_cipher_problems(findings):
    problems = []
    for ident in OFF_PROTOCOLS:
        f = by_id(findings, ident)
        if f is None:
            problems.append("%s: not tested (no finding)" % ident)
        elif not str(f.get("finding", "")).startswith("not offered"):
            problems.append("protocol below TLS 1.2 offered: " + describe(f))
    for ident in ON_PROTOCOLS:
        f = by_id(findings, ident)
        if f is None:
            problems.append("%s: not tested (no finding)" % ident)
        elif not str(f.get("finding", "")).startswith("offered"):
            problems.append("%s not offered: %s" % (ident, describe(f)))
    for ids in OFF_CIPHER_CATEGORIES:
        f = by_id(findings, *ids)
        if f is None:
            problems.append("%s: not tested (no finding)" % "/".join(ids))
        elif not str(f.get("finding", "")).startswith("not offered"):
            problems.append("weak cipher category offered: " + describe(f))
    return problems


def vulnerability_problems(findings):
    """Every check must have run, and every finding of it must be OK or INFO (a WARN means that
    testssl could not test it)."""
    problems = []
    for name in VULN_FAMILIES:
        found = family(findings, name)
        if not found:
            problems.append("%s: not tested (no finding)" % name)
        for f in found:
            if f.get("severity") not in PASSING:
                problems.append("vulnerability check: " + describe(f))
    return problems


def severe(findings):
    return [f for f in findings if f.get("severity") in SEVERE and f.get("id") not in LOCAL_IDS]


def subset_problems(findings):
    """Everything wrong in the report of the subset (or of a full run): [] if it passes."""
    problems = scan_problems(findings) + protocol_and_cipher_problems(findings) + \
        vulnerability_problems(findings)
    for f in severe(findings):
        line = "severity %s: %s" % (f.get("severity"), describe(f))
        if not any(describe(f) in p for p in problems):
            problems.append(line)
    return problems


# Findings of the full audit that are about the test setup, not about fulcrum: they are printed
# but do not fail `make tls-audit` (scripts/tls-audit --strict makes them fail too). Each is
# (id family, text the finding must contain, why).
WAIVERS = (
    ("cert_revocation", "Neither CRL nor OCSP URI provided",
     "the throwaway test PKI's certificates carry no CRL or OCSP URI"),
    ("security_headers", "",
     "HTTP response headers are the demo backend's; fulcrum forwards them as they are"),
)


def waiver_for(f):
    ident = str(f.get("id", "")).split(" <cert#")[0]
    for name, text, why in WAIVERS:
        if ident == name and text in str(f.get("finding", "")):
            return why
    return None


def full_problems(findings, strict=False):
    """(problems, waived) for the report of a full run: problems are the subset's checks plus any
    other MEDIUM/HIGH/CRITICAL finding; waived lists (finding, reason) set aside by WAIVERS."""
    waived = []
    kept = []
    for f in findings:
        why = None if strict or f.get("severity") not in SEVERE else waiver_for(f)
        if why:
            waived.append((f, why))
        else:
            kept.append(f)
    return subset_problems(kept), waived


def noteworthy(findings):
    """Findings above OK/INFO, LOW and WARN included, for a summary."""
    return [f for f in findings if f.get("severity") not in PASSING]


# ---- the listener under audit ----

def listener_config(pki, backend_address):
    """fulcrum's YAML ({port} left for harness.Fulcrum): one TLS listener serving the ECDSA and the
    RSA site certificates."""
    return ("threads: 1\n"
            "listeners:\n"
            "  - name: https\n"
            "    bind: 127.0.0.1:{port}\n"
            "    pool: app\n"
            "    tls:\n"
            "      certificates:\n"
            "        - { cert: %s, key: %s }\n"
            "        - { cert: %s, key: %s }\n"
            "pools:\n"
            "  - name: app\n"
            "    servers:\n"
            "      - { name: s0, address: %s }\n" % (pki.site_ecdsa, pki.site_ecdsa_key,
                                                    pki.site_rsa, pki.site_rsa_key,
                                                    backend_address))


class TestsslSubsetTest(FulcrumTestCase):
    """testssl.sh --protocols --std --vulnerable against a fulcrum TLS listener."""

    @classmethod
    def setUpClass(cls):
        cls.testssl, reason = ensure_testssl()
        if not cls.testssl:
            raise unittest.SkipTest(reason)

    def setUp(self):
        super().setUp()
        self.dir = tempfile.mkdtemp(prefix="fulcrum-tls-audit-")
        pki = make_pki(PKI_DIR)
        b = self.backend("b0")
        self.f = self.fulcrum(listener_config(pki, b.address))

    def tearDown(self):
        try:
            super().tearDown()
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)

    def test_only_modern_protocols_strong_ciphers_and_no_vulnerability(self):
        run = run_testssl(self.testssl, "%s:%d" % (SERVER_NAME, self.f.port),
                          os.path.join(self.dir, "report.json"), SUBSET_FLAGS, timeout=300)
        tail = run.output[-3000:]
        self.assertEqual(run.returncode, 0, "testssl failed:\n" + tail)
        findings = load_findings(run.json_path)
        problems = subset_problems(findings)
        self.assertEqual(problems, [], "testssl found (in %.0fs):\n  %s\n\n%s" % (
            run.seconds, "\n  ".join(problems), tail))
        # The probes (heartbleed, ROBOT, ticketbleed...) left fulcrum serving.
        self.assertTrue(self.f.alive(), self.f.log())
        out = subprocess.run(
            ["curl", "-sS", "--cacert", make_pki(PKI_DIR).root_ca, "--resolve",
             "%s:%d:127.0.0.1" % (SERVER_NAME, self.f.port),
             "https://%s:%d/" % (SERVER_NAME, self.f.port)], capture_output=True, timeout=20)
        self.assertEqual(out.returncode, 0, out.stderr)


def _finding(ident, severity, finding):
    return {"id": ident, "ip": "127.0.0.1/127.0.0.1", "port": "443", "severity": severity,
            "finding": finding}


def clean_report():
    """A report as testssl 3.0.8 writes it for fulcrum's subset (abridged to what is evaluated)."""
    r = [{"id": "engine_problem", "ip": "/", "port": "443", "severity": "WARN",
          "finding": "No engine or GOST support via engine with your /usr/bin/openssl"}]
    r += [_finding(p, "OK", "not offered") for p in ("SSLv2", "SSLv3")]
    r += [_finding(p, "INFO", "not offered") for p in ("TLS1", "TLS1_1")]
    r += [_finding("TLS1_2", "OK", "offered"), _finding("TLS1_3", "OK", "offered with final")]
    r += [_finding(ids[0], "OK", "not offered") for ids in OFF_CIPHER_CATEGORIES]
    r += [_finding("cipherlist_STRONG", "OK", "offered")]
    r += [_finding(name, "OK", "not vulnerable") for name in VULN_FAMILIES]
    r += [_finding("LOGJAM-common_primes", "INFO", "RFC3526/Oakley Group 14"),
          _finding("DROWN_hint", "INFO", "Make sure you don't use this certificate elsewhere")]
    return r


def replaced(report, ident, severity, finding):
    out = [f for f in report if f["id"] != ident]
    return out + [_finding(ident, severity, finding)]


class AuditEvaluationTest(unittest.TestCase):
    """The evaluation fails reports that should fail (no testssl needed)."""

    def test_clean_report_passes(self):
        self.assertEqual(subset_problems(clean_report()), [])
        self.assertEqual(full_problems(clean_report()), ([], []))

    def test_each_weakness_fails(self):
        cases = [
            ("TLS1", "LOW", "offered (deprecated)"),
            ("SSLv3", "HIGH", "offered (NOT ok)"),
            ("TLS1_3", "INFO", "not offered"),
            ("cipherlist_LOW", "HIGH", "offered (NOT ok)"),
            ("cipherlist_AVERAGE", "LOW", "offered"),
            ("cipherlist_3DES_IDEA", "MEDIUM", "offered"),
            ("heartbleed", "CRITICAL", "VULNERABLE"),
            ("secure_client_renego", "MEDIUM", "VULNERABLE, potential DoS threat"),
            ("secure_renego", "HIGH", "VULNERABLE"),
            ("ROBOT", "HIGH", "VULNERABLE, uses Oracle"),
            ("RC4", "WARN", "RC4 ciphers not supported by local OpenSSL (/usr/bin/openssl)"),
            ("SWEET32", "LOW", "uses 64 bit block ciphers"),
            ("BEAST_CBC_TLS1", "MEDIUM", "ECDHE-RSA-AES128-SHA"),
            ("TLS_session_ticket", "MEDIUM", "lifetime (100 days) > 24 hours"),
            ("cert_expirationStatus <cert#1>", "HIGH", "expires < 30 days (29)"),
            ("scanProblem", "FATAL", "Can't connect to '127.0.0.1:443'"),
            ("scanTime", "WARN", "Scan interrupted"),
        ]
        for ident, severity, text in cases:
            report = replaced(clean_report(), ident, severity, text)
            self.assertNotEqual(subset_problems(report), [], ident)
            self.assertNotEqual(full_problems(report)[0], [], ident)

    def test_missing_checks_fail(self):
        for name in ("TLS1_1", "cipherlist_NULL", "cipherlist_AVERAGE", "heartbleed", "LUCKY13"):
            report = [f for f in clean_report() if f["id"] != name]
            problems = subset_problems(report)
            self.assertTrue(any("not tested" in p for p in problems), (name, problems))
        self.assertNotEqual(subset_problems(clean_report()[:1]), [])

    def test_waivers_are_narrow(self):
        report = clean_report() + [
            _finding("cert_revocation <cert#1>", "HIGH", "Neither CRL nor OCSP URI provided"),
            _finding("security_headers", "MEDIUM", "--"),
            _finding("HSTS", "LOW", "not offered")]
        problems, waived = full_problems(report)
        self.assertEqual((problems, len(waived)), ([], 2))
        self.assertEqual(len(full_problems(report, strict=True)[0]), 2)
        # the same id with another text is not waived
        other = clean_report() + [_finding("cert_revocation <cert#1>", "HIGH", "revoked")]
        self.assertNotEqual(full_problems(other)[0], [])

    def test_report_file(self):
        d = tempfile.mkdtemp(prefix="fulcrum-tls-audit-")
        try:
            path = os.path.join(d, "r.json")
            with open(path, "w") as f:
                json.dump(clean_report(), f)
            self.assertEqual(subset_problems(load_findings(path)), [])
            with open(path, "w") as f:
                f.write('[ {"id": "SSLv2", "severity": "OK", "finding": "not offered"}\n,')
            with self.assertRaises(AuditError):
                load_findings(path)  # a run cut short leaves a truncated list
            with self.assertRaises(AuditError):
                load_findings(os.path.join(d, "none.json"))
        finally:
            shutil.rmtree(d)


if __name__ == "__main__":
    unittest.main()
