#!/usr/bin/env python3
"""
tlspki.py - a throwaway test PKI for the TLS end-to-end tests, built at run time with the
`openssl` command (OpenSSL 3.0 or later) and Python's standard library, so that no key or
certificate is ever committed and none can expire in the repository.

make_pki(dirpath) builds, in dirpath, every certificate the TLS tests need and returns a
types.SimpleNamespace of absolute paths (vars(pki) is the dict; the same dict is kept in
dirpath/pki.json). A directory that already holds a complete PKI of this module's version, built
less than CACHE_SECONDS ago, is reused as it is, so a test run can call make_pki() in every
test class for the price of one generation (about 0.5 s). fresh=True rebuilds it anyway. Two
processes must not build the same directory at the same time. The directory also keeps
openssl.cnf, the extension profiles every certificate was made with.

What it builds (attribute: what it is, and which property of fulcrum it lets a test check):

  root_ca, root_ca_key
      "Fulcrum Test Root CA", ECDSA P-256, self-signed. Signs every server certificate below
      except the chain leaf; the trust anchor of clients (and of fulcrum towards backends).
  intermediate_ca, intermediate_ca_key
      "Fulcrum Test Intermediate CA", signed by the root (CA:TRUE, pathlen 0).
  site_ecdsa, site_ecdsa_key / site_rsa, site_rsa_key
      Two certificates for the same names, site.test and www.site.test, one with an ECDSA P-256
      key and one with an RSA 2048 key, both signed by the root: serving both on one listener,
      choosing by the client's signature algorithms.
  wildcard, wildcard_key
      *.wild.test (matches a.wild.test, not wild.test nor a.b.wild.test): SNI wildcard lookup.
  api, api_key
      api.test: a second exact name for SNI selection.
  chain, chain_key, chain_leaf
      chain.test, signed by the intermediate. `chain` is the PEM file with the leaf followed by
      the intermediate (what a server must send); `chain_leaf` holds the leaf alone. A client
      trusting only the root verifies the chain only if the intermediate is sent.
  expired, expired_key
      expired.test, signed by the root, valid from 30 days ago until 1 day ago (made with
      `openssl ca -startdate/-enddate`, since OpenSSL 3.0's x509 has no -not_before).
  expiring, expiring_key
      soon.test, signed by the root, expiring 5 days after generation: expiry warnings.
  mismatch, mismatch_key
      mismatch.test: a valid certificate and a key that is NOT its key (a second, unrelated
      P-256 key): a configuration fulcrum must refuse.
  client_ca, client_ca_key / client, client_key
      "Fulcrum Test Client CA" and a client certificate CN=client-1 (extendedKeyUsage
      clientAuth) signed by it: mutual TLS.
  untrusted_ca, untrusted_ca_key / untrusted_client, untrusted_client_key
      Another client CA and a client certificate from it, also CN=client-1, so that a test
      shows it is the issuer, not the name, that makes the client certificate be refused.
  backend, backend_key
      backend.test and IP 127.0.0.1, signed by the root, extendedKeyUsage serverAuth: a TLS
      backend for re-encryption tests (verified by name or by IP address).

Every key is unencrypted (PKCS#8 PEM); every file is mode 0600. Every key is its own (none is
shared between certificates). Server leaves carry subjectAltName (the only names a TLS client
checks; the CN repeats the first name), extendedKeyUsage serverAuth, keyUsage digitalSignature
(plus keyEncipherment for RSA), and CA:FALSE. CAs carry CA:TRUE and keyCertSign/cRLSign.

    python3 tests/e2e/tlspki.py DIR [--fresh] [--no-check]

builds (or reuses) the PKI in DIR, prints the paths as JSON on stdout and then checks, on
stderr, each expectation above with `openssl verify` and friends (one "ok"/"FAIL" line each);
the exit status is 1 if any expectation failed.
"""

import datetime
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import types

VERSION = 1
CACHE_SECONDS = 24 * 3600  # reuse a PKI this young; the 5-day certificate stays 4-5 days away
MANIFEST = "pki.json"

SITE_NAMES = ("site.test", "www.site.test")
WILDCARD_NAME = "*.wild.test"
API_NAME = "api.test"
CHAIN_NAME = "chain.test"
EXPIRED_NAME = "expired.test"
EXPIRING_NAME = "soon.test"
EXPIRING_DAYS = 5
MISMATCH_NAME = "mismatch.test"
CLIENT_CN = "client-1"
BACKEND_NAME = "backend.test"
BACKEND_IP = "127.0.0.1"

CA_DAYS = 365
LEAF_DAYS = 30

EC = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"]
RSA = ["-newkey", "rsa:2048"]

# One small configuration for every `openssl req` below: no prompts, no defaults from the system
# openssl.cnf (whose x509_extensions would make every certificate a CA), and one extension
# section per kind of certificate. subjectAltName always comes from -addext.
OPENSSL_CNF = """\
[ req ]
distinguished_name = dn
prompt = no
string_mask = utf8only
default_md = sha256

[ dn ]

[ v3_root ]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash

[ v3_intermediate ]
basicConstraints = critical, CA:TRUE, pathlen:0
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always

[ v3_server_ec ]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always

[ v3_server_rsa ]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always

[ v3_client ]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always

[ v3_req ]
basicConstraints = critical, CA:FALSE
"""

# `openssl ca`, only for the expired certificate (start and end dates in the past).
CA_CNF = """\
[ ca ]
default_ca = ca_default

[ ca_default ]
dir = {work}
database = $dir/index.txt
new_certs_dir = $dir
rand_serial = yes
default_md = sha256
policy = policy_any
unique_subject = no
copy_extensions = none
email_in_dn = no

[ policy_any ]
commonName = supplied

[ v3_expired ]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
subjectAltName = DNS:{name}
"""


class PKIError(Exception):
    pass


def _openssl(args, cwd):
    r = subprocess.run(["openssl"] + args, cwd=cwd, stdin=subprocess.DEVNULL,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60)
    if r.returncode != 0:
        raise PKIError("openssl %s failed (status %d):\n%s" % (
            " ".join(args), r.returncode, r.stderr.decode("utf-8", "replace").strip()))
    return r.stdout.decode("utf-8", "replace")


def _san(names):
    parts = []
    for n in names:
        parts.append(("IP:" if n.replace(".", "").isdigit() or ":" in n else "DNS:") + n)
    return "subjectAltName=" + ",".join(parts)


def _gen_args(name, key, subject, section, days, issuer=None, names=None):
    """`openssl req` arguments that make a new key and a certificate in one go."""
    args = ["req", "-x509", "-config", "openssl.cnf", "-extensions", section,
            "-noenc", "-keyout", name + ".key", "-out", name + ".pem",
            "-subj", subject, "-days", str(days), "-sha256"] + key
    if issuer:
        args += ["-CA", issuer + ".pem", "-CAkey", issuer + ".key"]
    if names:
        args += ["-addext", _san(names)]
    return args


def _run_wave(jobs, cwd):
    """Runs independent openssl commands in parallel (each a list of arguments)."""
    procs = []
    for args in jobs:
        procs.append((args, subprocess.Popen(["openssl"] + args, cwd=cwd,
                                             stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                             stderr=subprocess.PIPE)))
    failed = []
    for args, p in procs:
        try:
            out, err = p.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            p.kill()
            out, err = p.communicate()
        if p.returncode != 0:
            failed.append("openssl %s failed (status %s):\n%s" % (
                " ".join(args), p.returncode, err.decode("utf-8", "replace").strip()))
    if failed:
        raise PKIError("\n".join(failed))


def _asn1_time(t):
    return datetime.datetime.fromtimestamp(t, datetime.timezone.utc).strftime("%Y%m%d%H%M%SZ")


def _paths(d):
    names = ["root_ca", "intermediate_ca", "site_ecdsa", "site_rsa", "wildcard", "api",
             "chain_leaf", "expired", "expiring", "mismatch", "client_ca", "client",
             "untrusted_ca", "untrusted_client", "backend"]
    p = {}
    for n in names:
        p[n] = os.path.join(d, n + ".pem")
        p[n + "_key"] = os.path.join(d, n + ".key")
    # The chain leaf's key is "chain_key" (chain_leaf.key); "chain" is leaf + intermediate.
    p["chain_key"] = p.pop("chain_leaf_key")
    p["chain"] = os.path.join(d, "chain.pem")
    # The mismatching key is not the one made with mismatch.pem.
    p["mismatch_key"] = os.path.join(d, "mismatch-other.key")
    return p


def _load_cached(d):
    try:
        with open(os.path.join(d, MANIFEST)) as f:
            m = json.load(f)
    except (OSError, ValueError):
        return None
    if not isinstance(m, dict) or m.get("version") != VERSION:
        return None
    if not 0 <= time.time() - m.get("created", 0) < CACHE_SECONDS:
        return None
    paths = m.get("paths")
    if paths != _paths(d) or not all(os.path.isfile(p) for p in paths.values()):
        return None
    return paths


def make_pki(dirpath, fresh=False):
    """Builds the test PKI in dirpath (created if missing) unless a complete one of this version,
    less than CACHE_SECONDS old, is already there; returns a SimpleNamespace of absolute paths
    (see the module docstring for each attribute)."""
    d = os.path.abspath(dirpath)
    os.makedirs(d, mode=0o700, exist_ok=True)
    if not fresh:
        cached = _load_cached(d)
        if cached:
            return types.SimpleNamespace(**cached)
    try:
        os.unlink(os.path.join(d, MANIFEST))
    except FileNotFoundError:
        pass
    old_umask = os.umask(0o077)  # every file 0600 from the start (keys are never readable)
    try:
        paths = _build(d)
    finally:
        os.umask(old_umask)
    for p in paths.values():
        os.chmod(p, 0o600)
    manifest = {"version": VERSION, "created": time.time(), "paths": paths}
    tmp = os.path.join(d, MANIFEST + ".tmp")
    with open(tmp, "w") as f:
        json.dump(manifest, f, indent=2, sort_keys=True)
    os.chmod(tmp, 0o600)
    os.replace(tmp, os.path.join(d, MANIFEST))  # the manifest last: its presence = complete
    return types.SimpleNamespace(**paths)


def _build(d):
    with open(os.path.join(d, "openssl.cnf"), "w") as f:
        f.write(OPENSSL_CNF)
    now = time.time()

    # Wave 1: the three self-signed CAs.
    _run_wave([
        _gen_args("root_ca", EC, "/O=Fulcrum tests/CN=Fulcrum Test Root CA", "v3_root",
                  CA_DAYS),
        _gen_args("client_ca", EC, "/O=Fulcrum tests/CN=Fulcrum Test Client CA", "v3_root",
                  CA_DAYS),
        _gen_args("untrusted_ca", EC, "/O=Elsewhere/CN=Untrusted Client CA", "v3_root",
                  CA_DAYS),
    ], d)

    # Wave 2: everything the CAs sign directly. The expired certificate's key and request are
    # made here too; `openssl ca` signs it afterwards.
    leaf = lambda name, key, names, section="v3_server_ec", days=LEAF_DAYS: _gen_args(
        name, key, "/CN=" + names[0], section, days, issuer="root_ca", names=names)
    _run_wave([
        _gen_args("intermediate_ca", EC, "/O=Fulcrum tests/CN=Fulcrum Test Intermediate CA",
                  "v3_intermediate", CA_DAYS, issuer="root_ca"),
        leaf("site_ecdsa", EC, SITE_NAMES),
        leaf("site_rsa", RSA, SITE_NAMES, section="v3_server_rsa"),
        leaf("wildcard", EC, (WILDCARD_NAME,)),
        leaf("api", EC, (API_NAME,)),
        leaf("expiring", EC, (EXPIRING_NAME,), days=EXPIRING_DAYS),
        leaf("mismatch", EC, (MISMATCH_NAME,)),
        ["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
         "-out", "mismatch-other.key"],
        leaf("backend", EC, (BACKEND_NAME, BACKEND_IP)),
        _gen_args("client", EC, "/CN=" + CLIENT_CN, "v3_client", LEAF_DAYS,
                  issuer="client_ca"),
        _gen_args("untrusted_client", EC, "/CN=" + CLIENT_CN, "v3_client", LEAF_DAYS,
                  issuer="untrusted_ca"),
        ["req", "-new", "-config", "openssl.cnf", "-noenc", "-keyout", "expired.key",
         "-out", "expired.csr", "-subj", "/CN=" + EXPIRED_NAME] + EC,
    ], d)

    # Wave 3: the leaf under the intermediate, and the expired certificate.
    work = tempfile.mkdtemp(prefix="ca-", dir=d)
    try:
        with open(os.path.join(work, "ca.cnf"), "w") as f:
            f.write(CA_CNF.format(work=work, name=EXPIRED_NAME))
        open(os.path.join(work, "index.txt"), "w").close()
        _run_wave([
            _gen_args("chain_leaf", EC, "/CN=" + CHAIN_NAME, "v3_server_ec", LEAF_DAYS,
                      issuer="intermediate_ca", names=(CHAIN_NAME,)),
            ["ca", "-batch", "-notext", "-config", os.path.join(work, "ca.cnf"),
             "-cert", "root_ca.pem", "-keyfile", "root_ca.key", "-in", "expired.csr",
             "-out", "expired.pem", "-extensions", "v3_expired",
             "-startdate", _asn1_time(now - 30 * 86400), "-enddate", _asn1_time(now - 86400)],
        ], d)
    finally:
        shutil.rmtree(work, ignore_errors=True)
        try:
            os.unlink(os.path.join(d, "expired.csr"))
        except FileNotFoundError:
            pass

    # The chain file: leaf first, then the intermediate (RFC 8446 4.4.2 order).
    paths = _paths(d)
    with open(paths["chain"], "w") as out:
        for part in (paths["chain_leaf"], paths["intermediate_ca"]):
            with open(part) as f:
                out.write(f.read())
    missing = [p for p in paths.values() if not os.path.isfile(p)]
    if missing:
        raise PKIError("not generated: " + ", ".join(missing))
    return paths


# ---------------------------------------------------------------------------------------------
# Self-check (run as a program)

def _ok(argv):
    r = subprocess.run(["openssl"] + argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, timeout=30)
    return r.returncode == 0, r.stdout.decode("utf-8", "replace").strip()


def _verify(ca, cert, untrusted=None, purpose="sslserver", host=None, ip=None):
    argv = ["verify", "-CAfile", ca, "-purpose", purpose]
    if untrusted:
        argv += ["-untrusted", untrusted]
    if host:
        argv += ["-verify_hostname", host]
    if ip:
        argv += ["-verify_ip", ip]
    ok, out = _ok(argv + [cert])
    return ok and out.endswith(": OK"), out


def _pubkey(path, is_key):
    argv = ["pkey", "-in", path, "-pubout"] if is_key else ["x509", "-in", path, "-pubkey",
                                                            "-noout"]
    ok, out = _ok(argv)
    return out if ok else None


def self_check(pki, out=sys.stderr):
    """Checks every expectation of the module docstring; returns the number that failed."""
    p = vars(pki)
    checks = []

    def expect(desc, want_ok, result):
        ok, detail = result
        checks.append((desc, ok == want_ok, detail))

    root, inter = p["root_ca"], p["intermediate_ca"]
    expect("root CA verifies against itself", True, _verify(root, root, purpose="any"))
    expect("intermediate CA verifies against the root", True, _verify(root, inter, purpose="any"))
    for kind in ("site_ecdsa", "site_rsa"):
        for name in SITE_NAMES:
            expect("%s verifies for %s" % (kind, name), True,
                   _verify(root, p[kind], host=name))
        expect("%s does not verify for other.test" % kind, False,
               _verify(root, p[kind], host="other.test"))
    expect("site_ecdsa has an EC key", True,
           _check_text(p["site_ecdsa"], "id-ecPublicKey", "prime256v1"))
    expect("site_rsa has an RSA 2048 key", True,
           _check_text(p["site_rsa"], "rsaEncryption", "(2048 bit)"))
    expect("wildcard verifies for a.wild.test", True,
           _verify(root, p["wildcard"], host="a.wild.test"))
    expect("wildcard does not verify for wild.test", False,
           _verify(root, p["wildcard"], host="wild.test"))
    expect("wildcard does not verify for a.b.wild.test", False,
           _verify(root, p["wildcard"], host="a.b.wild.test"))
    expect("api verifies for api.test", True, _verify(root, p["api"], host=API_NAME))
    expect("chain leaf verifies with the intermediate from the chain file", True,
           _verify(root, p["chain_leaf"], untrusted=p["chain"], host=CHAIN_NAME))
    expect("chain leaf alone does not verify against the root", False,
           _verify(root, p["chain_leaf"], host=CHAIN_NAME))
    expect("chain file holds 2 certificates, the leaf first", True,
           _chain_order(p["chain"], p["chain_leaf"], inter))
    expect("expired does not verify (expired)", False, _verify(root, p["expired"]))
    expect("expired fails for its date and nothing else", True,
           _expired_only(root, p["expired"]))
    expect("expiring verifies now", True, _verify(root, p["expiring"], host=EXPIRING_NAME))
    expect("expiring is still valid in 4 days", True,
           _ok(["x509", "-in", p["expiring"], "-noout", "-checkend", str(4 * 86400)]))
    expect("expiring has expired in 6 days", False,
           _ok(["x509", "-in", p["expiring"], "-noout", "-checkend", str(6 * 86400)]))
    expect("mismatch certificate verifies", True, _verify(root, p["mismatch"]))
    mism = (_pubkey(p["mismatch"], False), _pubkey(p["mismatch_key"], True))
    checks.append(("mismatch_key is not the key of mismatch", None not in mism and
                   mism[0] != mism[1], ""))
    for name in ("root_ca", "intermediate_ca", "site_ecdsa", "site_rsa", "wildcard", "api",
                 "expired", "expiring", "client_ca", "client", "untrusted_ca",
                 "untrusted_client", "backend"):
        pair = (_pubkey(p[name], False), _pubkey(p[name + "_key"], True))
        checks.append(("%s_key matches %s" % (name, name), None not in pair and
                       pair[0] == pair[1], ""))
    pair = (_pubkey(p["chain_leaf"], False), _pubkey(p["chain_key"], True))
    checks.append(("chain_key matches chain (its leaf)", None not in pair and
                   pair[0] == pair[1], ""))
    expect("client verifies against the client CA (sslclient)", True,
           _verify(p["client_ca"], p["client"], purpose="sslclient"))
    expect("client does not verify against the server root", False,
           _verify(root, p["client"], purpose="sslclient"))
    expect("client is not a server certificate", False,
           _verify(p["client_ca"], p["client"], purpose="sslserver"))
    expect("client has CN=client-1", True, _check_text(p["client"], "CN = " + CLIENT_CN))
    expect("untrusted_client does not verify against the client CA", False,
           _verify(p["client_ca"], p["untrusted_client"], purpose="sslclient"))
    expect("untrusted_client verifies against its own CA", True,
           _verify(p["untrusted_ca"], p["untrusted_client"], purpose="sslclient"))
    expect("untrusted_client has CN=client-1 too", True,
           _check_text(p["untrusted_client"], "CN = " + CLIENT_CN))
    expect("backend verifies for backend.test", True,
           _verify(root, p["backend"], host=BACKEND_NAME))
    expect("backend verifies for IP 127.0.0.1", True,
           _verify(root, p["backend"], ip=BACKEND_IP))
    expect("backend does not verify for IP 127.0.0.2", False,
           _verify(root, p["backend"], ip="127.0.0.2"))
    for name in ("site_ecdsa", "site_rsa", "wildcard", "api", "chain_leaf", "expired",
                 "expiring", "mismatch", "client", "untrusted_client", "backend"):
        expect("%s is not a CA (CA:FALSE)" % name, True, _check_text(p[name], "CA:FALSE"))
    for name in ("root_ca", "intermediate_ca", "client_ca", "untrusted_ca"):
        expect("%s is a CA (CA:TRUE)" % name, True, _check_text(p[name], "CA:TRUE"))
    bad_modes = [f for f in list(p.values()) + [os.path.join(os.path.dirname(root), MANIFEST)]
                 if os.stat(f).st_mode & 0o077]
    checks.append(("every file is mode 0600", not bad_modes, " ".join(bad_modes)))

    failed = 0
    for desc, good, detail in checks:
        print("%-4s %s" % ("ok" if good else "FAIL", desc), file=out)
        if not good:
            failed += 1
            if detail:
                print("       " + detail.replace("\n", "\n       "), file=out)
    print("%d of %d expectations met" % (len(checks) - failed, len(checks)), file=out)
    return failed


def _check_text(cert, *needles):
    ok, out = _ok(["x509", "-in", cert, "-noout", "-text"])
    return ok and all(n in out for n in needles), "" if ok else out


def _chain_order(chain, leaf, inter):
    with open(chain) as f:
        text = f.read()
    with open(leaf) as f:
        l = f.read()
    with open(inter) as f:
        i = f.read()
    return text == l + i and text.count("BEGIN CERTIFICATE") == 2, ""


def _expired_only(root, cert):
    ok, out = _ok(["verify", "-CAfile", root, "-purpose", "sslserver", cert])
    # "error 10 at 0 depth lookup: certificate has expired", and no other error.
    errors = [line for line in out.splitlines() if re.match(r"error \d+ at ", line)]
    return (not ok and len(errors) == 1 and errors[0].startswith("error 10 ")
            and "certificate has expired" in out), out


def main(argv):
    import argparse
    ap = argparse.ArgumentParser(description="Build (or reuse) the TLS test PKI in DIR, print "
                                             "its paths as JSON and check it.")
    ap.add_argument("dir")
    ap.add_argument("--fresh", action="store_true", help="rebuild even if DIR holds a PKI")
    ap.add_argument("--no-check", action="store_true", help="skip the self-check")
    args = ap.parse_args(argv)
    start = time.monotonic()
    try:
        pki = make_pki(args.dir, fresh=args.fresh)
    except (PKIError, OSError, subprocess.TimeoutExpired) as e:
        print("tlspki: %s" % e, file=sys.stderr)
        return 1
    print("tlspki: PKI ready in %s (%.2f s)" % (os.path.abspath(args.dir),
                                                time.monotonic() - start), file=sys.stderr)
    print(json.dumps(vars(pki), indent=2, sort_keys=True))
    sys.stdout.flush()
    if args.no_check:
        return 0
    return 1 if self_check(pki) else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
