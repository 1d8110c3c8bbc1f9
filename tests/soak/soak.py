#!/usr/bin/env python3
"""
soak.py - `make soak`: a long mixed load (keep-alive, new connections, uploads, downloads,
pipelining, misbehaving backends, bad requests) against fulcrum, sampling its RSS and file
descriptors. It reports the figures and fails if either grows: after a warm-up, the last
third of the run must not use more than the first third (plus a small allowance).

    make soak                      # 10 minutes
    SOAK_SECONDS=120 make soak     # shorter
Runs on demand; it is not part of make test.
"""
import os
import random
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "e2e"))

from harness import Backend, Fulcrum, config, fd_count, rss_kib  # noqa: E402
from test_chaos import Client, Tally  # noqa: E402

SECONDS = float(os.environ.get("SOAK_SECONDS", 600))
SAMPLE = 5.0


def main():
    backends = [Backend("b%d" % i) for i in range(3)]
    f = Fulcrum(config([("s%d" % i, b.address) for i, b in enumerate(backends)], threads=2,
                       pool_extra="    health_check:\n      interval: 1s\n",
                       extra="timeouts:\n  server: 5s\n  server_idle: 2s\n"))
    tally = Tally()
    stop = threading.Event()

    def worker(seed):
        c = Client(f.port, tally, random.Random(seed))
        while not stop.is_set():
            c.run_one()
        c.drop()

    workers = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for t in workers:
        t.start()
    samples = []
    start = time.monotonic()
    try:
        while time.monotonic() - start < SECONDS:
            time.sleep(SAMPLE)  # the sampling period
            if f.proc.poll() is not None:
                print("soak: fulcrum exited:\n" + f.log())
                return 1
            samples.append((time.monotonic() - start, rss_kib(f.pid), fd_count(f.pid)))
            t, rss, fds = samples[-1]
            print("soak: %5.0fs  RSS %6d KiB  fds %4d  %s" % (t, rss, fds, tally.counts),
                  flush=True)
    finally:
        stop.set()
        for t in workers:
            t.join()
    third = max(1, len(samples) // 3)
    first, last = samples[:third], samples[-third:]
    rss_first, rss_last = max(s[1] for s in first), max(s[1] for s in last)
    fds_first, fds_last = max(s[2] for s in first), max(s[2] for s in last)
    print("soak: %.0f s, %s" % (SECONDS, tally.counts))
    print("soak: RSS max first third %d KiB, last third %d KiB; fds %d -> %d" % (
        rss_first, rss_last, fds_first, fds_last))
    ok = True
    if tally.counts["wrong"]:
        print("soak: FAIL: wrong answers:\n  " + "\n  ".join(tally.wrong))
        ok = False
    if rss_last > rss_first + 2048:
        print("soak: FAIL: RSS grew by %d KiB" % (rss_last - rss_first))
        ok = False
    if fds_last > fds_first + 16:
        print("soak: FAIL: file descriptors grew by %d" % (fds_last - fds_first))
        ok = False
    code = f.stop()
    for b in backends:
        b.cleanup()
    f.cleanup()
    if code != 0:
        print("soak: FAIL: fulcrum exited with %d" % code)
        ok = False
    print("soak: %s" % ("PASS" if ok else "FAIL"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
