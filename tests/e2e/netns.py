"""
netns.py - a small network of network namespaces for tests that need several machines.

A test that must show how several hosts behave (two fulcrum instances that agree, a backend host
whose link goes down) cannot do it on loopback alone: there is one loopback, and taking it down
takes everything down. This module builds a private network instead:

    switch namespace: bridge br0
        |-- port vNAME  <--veth-->  eth0 of host namespace NAME (10.77.0.x/24), lo up
        |-- ...

Every host is a namespace of its own whose only link is one veth pair to the bridge, so setting
the switch side of a host's pair down is that host's cable being pulled: its processes keep
running, its packets go nowhere. Nothing is created in the caller's namespace, so 10.77.0.0/24
exists only inside the network, and deleting the namespaces deletes every link.

Names carry a per-run prefix (fsc<pid>-), so runs in parallel do not collide, and what a run that
was killed left behind (its pid gone: its namespaces and the processes in them) is removed by
the next one.

Processes run in a host with `ip netns exec` and are ended by their pid. Sockets are opened in a
host from this process itself (socket_in), with setns(2) on the calling thread around the
socket() call: a socket belongs to the namespace it was created in for its whole life, and the
thread goes back to its own namespace at once. That keeps a test's clients in the test process,
where their results are, without a subprocess per request.
"""

import ctypes
import http.client
import os
import re
import shutil
import signal
import socket
import subprocess
import threading

from harness import Process

CLONE_NEWNET = 0x40000000
NETNS_DIR = "/var/run/netns"
PREFIX = "fsc"

_libc = ctypes.CDLL(None, use_errno=True)
# setns() changes the calling thread only; two threads doing it at the same time would still be
# correct, but one lock keeps each switch-and-back short and easy to reason about.
_setns_lock = threading.Lock()


def unavailable():
    """Why namespaces cannot be used here (a reason for unittest's skip), or None."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    if not shutil.which("ip"):
        return "the ip command (iproute2) is not installed"
    probe = "%s%d-probe" % (PREFIX, os.getpid())
    r = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if r.returncode != 0:
        return "ip netns add failed: " + r.stderr.strip()
    subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    return None


def ip(*args):
    """Runs one ip(8) command; raises with its message when it fails."""
    r = subprocess.run(["ip"] + list(args), capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError("ip %s: %s" % (" ".join(args), r.stderr.strip()))
    return r.stdout


def _setns(fd):
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, "setns: " + os.strerror(err))


def socket_in(ns, family=socket.AF_INET, type=socket.SOCK_STREAM):
    """A socket that lives in namespace ns (created there; usable from any thread)."""
    with _setns_lock:
        home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
        target = os.open(os.path.join(NETNS_DIR, ns), os.O_RDONLY)
        try:
            _setns(target)
            try:
                return socket.socket(family, type)
            finally:
                _setns(home)
        finally:
            os.close(target)
            os.close(home)


def connect_in(ns, host, port, timeout=5.0):
    s = socket_in(ns)
    try:
        s.settimeout(timeout)
        s.connect((host, port))
    except OSError:
        s.close()
        raise
    return s


class HTTPConnectionIn(http.client.HTTPConnection):
    """http.client's connection, from inside namespace ns."""

    def __init__(self, ns, host, port, timeout=5.0):
        super().__init__(host, port, timeout=timeout)
        self.ns = ns

    def connect(self):
        self.sock = connect_in(self.ns, self.host, self.port, self.timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def http_get(ns, host, port, path, headers=None, timeout=5.0):
    """One GET from namespace ns: (status, headers as a dict of lower-case names, body)."""
    conn = HTTPConnectionIn(ns, host, port, timeout)
    try:
        conn.request("GET", path, headers=headers or {})
        r = conn.getresponse()
        body = r.read()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, body
    finally:
        conn.close()


def port_open_in(ns, host, port):
    try:
        connect_in(ns, host, port, timeout=0.5).close()
        return True
    except OSError:
        return False


def remove_stale():
    """Removes what an earlier run left when it was killed before its clean-up (its pid, in the
    names, is gone): the processes it started in its namespaces, then the namespaces."""
    try:
        names = os.listdir(NETNS_DIR)
    except FileNotFoundError:
        return
    for name in names:
        m = re.match(r"^%s(\d+)-" % PREFIX, name)
        if not m or os.path.exists("/proc/" + m.group(1)):
            continue
        pids = subprocess.run(["ip", "netns", "pids", name], capture_output=True, text=True)
        for pid in pids.stdout.split():
            try:
                os.kill(int(pid), signal.SIGKILL)
            except (ProcessLookupError, ValueError):
                pass
        subprocess.run(["ip", "netns", "del", name], capture_output=True)


class HostProcess(Process):
    """A process running in one host (harness.Process, started through `ip netns exec`, which
    execs the command itself, so the pid is the program's)."""

    def __init__(self, host, argv, name):
        self.name = name
        super().__init__(["ip", "netns", "exec", host.ns] + argv, "netns-" + name)

    def stop(self, sig=signal.SIGTERM, timeout=10.0):
        """Ends the process (SIGKILL if sig did not within timeout); returns its exit status."""
        if self.alive():
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


class Host:
    """One namespace on the network: its address, its processes."""

    def __init__(self, net, name, address):
        self.net = net
        self.name = name
        self.address = address
        self.ns = "%s-%s" % (net.prefix, name)
        self.port = "v" + name  # the bridge port, in the switch namespace
        self.processes = []

    def run(self, argv, name=None):
        p = HostProcess(self, argv, name or self.name)
        self.processes.append(p)
        return p

    def link(self, up):
        """Plugs (up) or pulls (down) this host's cable: the switch side of its veth pair."""
        ip("-n", self.net.switch, "link", "set", self.port, "up" if up else "down")

    def get(self, host, port, path, headers=None, timeout=5.0):
        return http_get(self.ns, host, port, path, headers, timeout)


class Network:
    """The switch namespace and its hosts. close() removes everything, whatever state it is in."""

    def __init__(self, subnet="10.77.0"):
        remove_stale()
        self.subnet = subnet
        self.prefix = "%s%d" % (PREFIX, os.getpid())
        self.switch = self.prefix + "-switch"
        self.hosts = {}
        self.namespaces = []
        self._add_ns(self.switch)
        ip("-n", self.switch, "link", "add", "br0", "type", "bridge")
        ip("-n", self.switch, "link", "set", "br0", "up")

    def _add_ns(self, ns):
        ip("netns", "add", ns)
        self.namespaces.append(ns)
        ip("-n", ns, "link", "set", "lo", "up")

    def add_host(self, name, last_octet):
        """A new host `name` at SUBNET.last_octet/24, plugged into the switch."""
        host = Host(self, name, "%s.%d" % (self.subnet, last_octet))
        self._add_ns(host.ns)
        # Created from the switch namespace with its peer placed in the host's at once, so no
        # link ever exists in the caller's namespace.
        ip("-n", self.switch, "link", "add", host.port, "type", "veth", "peer", "name", "eth0",
           "netns", host.ns)
        ip("-n", self.switch, "link", "set", host.port, "master", "br0", "up")
        ip("-n", host.ns, "addr", "add", host.address + "/24", "dev", "eth0")
        ip("-n", host.ns, "link", "set", "eth0", "up")
        self.hosts[name] = host
        return host

    def close(self):
        """Kills every process still running in a host, then deletes every namespace (and with
        them, their links). Safe to call more than once and after a partial set-up."""
        for host in self.hosts.values():
            for p in host.processes:
                p.cleanup()
            host.processes = []
        for ns in reversed(self.namespaces):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        self.namespaces = []

