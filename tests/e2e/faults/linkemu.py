"""
linkemu.py - a user-space link emulator between two network namespaces.

This kernel has no sch_netem, tc classifiers or iptables, but it has network namespaces and
/dev/net/tun. So the link is made of two TUN devices, one in each namespace, and this program
(in the root namespace) carries IP packets between their file descriptors. On the way it can,
per direction, add a delay, drop a fraction of the packets (loss), or drop all of them
(blackhole).

    link = NetnsLink()            # namespaces fx-PID-N-a and fx-PID-N-b, 10.253.X.1 <-> .2
    link.start()                  # raises Unavailable(reason) when namespaces or TUN fail
    link.set("both", delay_ms=50)
    link.set("ab", blackhole=True)          # "ab": packets from namespace a to namespace b
    link.set("both", loss=0.3)
    link.reset()                            # a clean link again
    link.argv("a", ["build/fulcrum", ...])  # ["ip", "netns", "exec", NS_A, ...]
    link.close()                            # stops the emulator, deletes both namespaces

The emulator process itself:

    python3 -m faults.linkemu --dev-a DEV --dev-b DEV --netns-a NS --netns-b NS

opens the two TUN devices (TUNSETIFF, IFF_TUN | IFF_NO_PI), moves each into its namespace,
prints {"ready": true} and then reads commands, one JSON object per line, on stdin:

    {"cmd": "set", "dir": "ab"|"ba"|"both", "delay_ms": 50, "loss": 0.3, "blackhole": false}
        keys left out keep their value
    {"cmd": "reset"}      no delay, no loss, no blackhole, both ways
    {"cmd": "stats"}      packets forwarded, dropped and queued, per direction

and answers each with one JSON line ({"ok": true, ...}). It exits when stdin closes or its
parent dies (PR_SET_PDEATHSIG), and its TUN devices vanish with it.

Addresses live only inside the two namespaces, which have no other interface and no default
route: nothing reaches any other network.
"""
import argparse
import atexit
import collections
import ctypes
import fcntl
import json
import os
import random
import re
import select
import shutil
import signal
import struct
import subprocess
import sys
import time

TUNSETIFF = 0x400454CA
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000
PR_SET_PDEATHSIG = 1


class Unavailable(Exception):
    """Namespaces or TUN devices cannot be used here; the reason says why."""


# ---- the emulator process ----

class Direction:
    def __init__(self, name):
        self.name = name
        self.delay = 0.0
        self.loss = 0.0
        self.blackhole = False
        self.queue = collections.deque()  # (due, packet), due never decreasing
        self.forwarded = 0
        self.dropped = 0

    def state(self):
        return {"delay_ms": round(self.delay * 1000, 3), "loss": self.loss,
                "blackhole": self.blackhole, "forwarded": self.forwarded,
                "dropped": self.dropped, "queued": len(self.queue)}


def open_tun(name):
    fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK)
    fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", name.encode(), IFF_TUN | IFF_NO_PI))
    return fd


def emulate(fa, fb, seed):
    rng = random.Random(seed)
    ab, ba = Direction("ab"), Direction("ba")
    out_fd = {id(ab): fb, id(ba): fa}
    pending = b""

    def reply(obj):
        sys.stdout.write(json.dumps(obj) + "\n")
        sys.stdout.flush()

    def command(line):
        try:
            c = json.loads(line)
            if c.get("cmd") == "reset":
                for d in (ab, ba):
                    d.delay, d.loss, d.blackhole = 0.0, 0.0, False
            elif c.get("cmd") == "set":
                dirs = {"ab": [ab], "ba": [ba], "both": [ab, ba]}[c.get("dir", "both")]
                for d in dirs:
                    if "delay_ms" in c:
                        d.delay = max(0.0, float(c["delay_ms"]) / 1000.0)
                    if "loss" in c:
                        d.loss = min(1.0, max(0.0, float(c["loss"])))
                    if "blackhole" in c:
                        d.blackhole = bool(c["blackhole"])
            elif c.get("cmd") != "stats":
                raise ValueError("unknown command")
            reply({"ok": True, "ab": ab.state(), "ba": ba.state()})
        except (ValueError, KeyError, TypeError) as e:
            reply({"ok": False, "error": "%s: %r" % (e, line)})

    def take(d, packet, now):
        if d.blackhole or (d.loss and rng.random() < d.loss):
            d.dropped += 1
            return
        if d.delay <= 0 and not d.queue:
            send(d, packet)
            return
        due = now + d.delay
        if d.queue and d.queue[-1][0] > due:
            due = d.queue[-1][0]  # a shorter new delay never reorders packets
        d.queue.append((due, packet))

    def send(d, packet):
        try:
            os.write(out_fd[id(d)], packet)
            d.forwarded += 1
        except OSError:
            d.dropped += 1  # the device is down or its queue is full: the packet is lost

    while True:
        now = time.monotonic()
        for d in (ab, ba):
            while d.queue and d.queue[0][0] <= now:
                send(d, d.queue.popleft()[1])
        dues = [d.queue[0][0] for d in (ab, ba) if d.queue]
        timeout = max(0.0, min(dues) - now) if dues else None
        ready, _, _ = select.select([fa, fb, 0], [], [], timeout)
        now = time.monotonic()
        for fd in ready:
            if fd == 0:
                data = os.read(0, 65536)
                if not data:
                    return  # our parent closed the pipe, or is gone
                pending += data
                while b"\n" in pending:
                    line, pending = pending.split(b"\n", 1)
                    if line.strip():
                        command(line.decode())
                continue
            d = ab if fd == fa else ba
            for _ in range(256):
                try:
                    packet = os.read(fd, 65536)
                except BlockingIOError:
                    break
                except OSError:
                    break
                take(d, packet, now)


def main():
    ap = argparse.ArgumentParser(description="TUN link emulator (see the module text)")
    ap.add_argument("--dev-a", required=True)
    ap.add_argument("--dev-b", required=True)
    ap.add_argument("--netns-a", required=True)
    ap.add_argument("--netns-b", required=True)
    ap.add_argument("--seed", default="linkemu")
    args = ap.parse_args()
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
        if os.getppid() == 1:
            return 1
    except OSError:
        pass
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        fa = open_tun(args.dev_a)
        fb = open_tun(args.dev_b)
        for dev, ns in ((args.dev_a, args.netns_a), (args.dev_b, args.netns_b)):
            r = subprocess.run(["ip", "link", "set", dev, "netns", ns], capture_output=True,
                               text=True)
            if r.returncode:
                raise OSError("ip link set %s netns %s: %s" % (dev, ns, r.stderr.strip()))
    except OSError as e:
        sys.stdout.write(json.dumps({"ready": False, "error": str(e)}) + "\n")
        sys.stdout.flush()
        return 1
    sys.stdout.write(json.dumps({"ready": True}) + "\n")
    sys.stdout.flush()
    emulate(fa, fb, args.seed)
    return 0


# ---- the test side: namespaces, addresses and the emulator process ----

_instances = 0


def _ip(*args, check=True):
    r = subprocess.run(["ip"] + list(args), capture_output=True, text=True, timeout=10)
    if check and r.returncode:
        raise Unavailable("ip %s: %s" % (" ".join(args), (r.stderr or r.stdout).strip()))
    return r


def sweep_stale():
    """Deletes fx-PID-N-{a,b} namespaces left by test runs whose process is gone."""
    r = _ip("netns", "list", check=False)
    for line in r.stdout.splitlines():
        m = re.match(r"^(fx-(\d+)-\d+-[ab])\b", line.strip())
        if m and not os.path.exists("/proc/%s" % m.group(2)):
            _ip("netns", "del", m.group(1), check=False)


class NetnsLink:
    """Two namespaces joined by the emulator: a (10.253.X.1) and b (10.253.X.2)."""

    def __init__(self):
        global _instances
        _instances += 1
        pid = os.getpid()
        self.ns = {"a": "fx-%d-%d-a" % (pid, _instances), "b": "fx-%d-%d-b" % (pid, _instances)}
        self.dev = {"a": "fx%da%d" % (pid, _instances), "b": "fx%db%d" % (pid, _instances)}
        net = 1 + (pid + _instances) % 250
        self.addr = {"a": "10.253.%d.1" % net, "b": "10.253.%d.2" % net}
        self.proc = None
        self.created = []

    @staticmethod
    def usable():
        """None if this machine can run the link, else the reason it cannot."""
        if os.geteuid() != 0:
            return "needs root (network namespaces and TUN devices)"
        if not shutil.which("ip"):
            return "needs the ip command (iproute2)"
        if not os.path.exists("/dev/net/tun"):
            return "no /dev/net/tun"
        return None

    def start(self, python=sys.executable):
        reason = self.usable()
        if reason:
            raise Unavailable(reason)
        atexit.register(self.close)  # even if the test runner never gets to close()
        try:
            sweep_stale()
            for side in ("a", "b"):
                _ip("netns", "add", self.ns[side])
                self.created.append(self.ns[side])
                _ip("-n", self.ns[side], "link", "set", "lo", "up")
            here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
            env = dict(os.environ, PYTHONPATH=here)
            self.proc = subprocess.Popen(
                [python, "-m", "faults.linkemu", "--dev-a", self.dev["a"], "--dev-b",
                 self.dev["b"], "--netns-a", self.ns["a"], "--netns-b", self.ns["b"]],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env)
            answer = self._read(10.0)
            if not answer.get("ready"):
                raise Unavailable("link emulator: %s" % answer.get("error", answer))
            for side in ("a", "b"):
                _ip("-n", self.ns[side], "addr", "add", self.addr[side] + "/30", "dev",
                    self.dev[side])
                _ip("-n", self.ns[side], "link", "set", self.dev[side], "up")
        except BaseException:
            self.close()
            raise
        return self

    def _read(self, timeout):
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        if not ready:
            raise Unavailable("link emulator did not answer within %.0fs" % timeout)
        line = self.proc.stdout.readline()
        if not line:
            raise Unavailable("link emulator exited (status %s)" % self.proc.poll())
        return json.loads(line)

    def command(self, **cmd):
        self.proc.stdin.write((json.dumps(cmd) + "\n").encode())
        self.proc.stdin.flush()
        answer = self._read(5.0)
        if not answer.get("ok"):
            raise AssertionError("link emulator: %s" % answer.get("error"))
        return answer

    def set(self, direction="both", **params):
        """delay_ms=, loss= (0-1), blackhole= for "ab", "ba" or "both"."""
        return self.command(cmd="set", dir=direction, **params)

    def reset(self):
        return self.command(cmd="reset")

    def stats(self):
        return self.command(cmd="stats")

    def argv(self, side, argv):
        return ["ip", "netns", "exec", self.ns[side]] + list(argv)

    def close(self):
        if self.proc is not None:
            try:
                self.proc.stdin.close()
            except OSError:
                pass
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.proc.stdout.close()
            self.proc = None
        for ns in self.created:
            _ip("netns", "del", ns, check=False)
        self.created = []


if __name__ == "__main__":
    sys.exit(main())
