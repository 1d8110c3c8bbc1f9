#!/usr/bin/env python3
"""
run.py - runs the end-to-end tests: every tests/e2e/test_*.py, against FULCRUM_BUILD (default
build/). Extra arguments select tests by name substring, e.g. `run.py keepalive pipelin`.
Long tests marked @slow run too; FULCRUM_E2E_QUICK=1 skips them while developing.
"""
import os
import sys
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)


def iter_tests(suite):
    for t in suite:
        if isinstance(t, unittest.TestSuite):
            yield from iter_tests(t)
        else:
            yield t


def main():
    loader = unittest.TestLoader()
    suite = loader.discover(HERE, pattern="test_*.py", top_level_dir=HERE)
    wanted = sys.argv[1:]
    if wanted:
        suite = unittest.TestSuite(t for t in iter_tests(suite)
                                   if any(w in t.id() for w in wanted))
    start = time.monotonic()
    result = unittest.TextTestRunner(verbosity=2, stream=sys.stdout).run(suite)
    elapsed = time.monotonic() - start
    print("e2e: %d run, %d failed, %d errors, %d skipped in %.0fs (build: %s)" % (
        result.testsRun, len(result.failures), len(result.errors), len(result.skipped),
        elapsed, os.environ.get("FULCRUM_BUILD", "build")))
    return 0 if result.wasSuccessful() else 1


if __name__ == "__main__":
    sys.exit(main())
