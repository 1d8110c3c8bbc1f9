"""
faults - the tools of the fault-injection tests (tests/e2e/test_faults.py).

badserver  misbehaving HTTP servers: each does one thing wrong on every connection, and
           heal() turns it into a well-behaved one
linkemu    a user-space link emulator between two network namespaces (two TUN devices):
           delay, loss and blackholing per direction, changed at run time
load       a bounded concurrent HTTP load that reports every request's outcome; runs in this
           process or, inside a network namespace, as `python3 -m faults.load`
nsget      one HTTP GET from inside a network namespace (the admin API, readiness probes)

Standard library only. See docs/health-checks.md, "Faults, and what clients see".
"""
