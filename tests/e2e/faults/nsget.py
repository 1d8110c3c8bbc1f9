"""
nsget.py - one HTTP GET, for use inside a network namespace where the test process cannot
connect: prints {"status": N, "body": "..."} (or {"error": "..."}) as JSON on stdout.

    ip netns exec NS python3 -m faults.nsget 127.0.0.1:9900 /api/state
    ip netns exec NS python3 -m faults.nsget --wait 5 127.0.0.1:8080     # until it accepts
"""
import argparse
import http.client
import json
import socket
import sys
import time


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("address", help="HOST:PORT")
    ap.add_argument("path", nargs="?", default=None)
    ap.add_argument("--wait", type=float, default=0.0,
                    help="first wait up to this many seconds for the port to accept")
    ap.add_argument("--timeout", type=float, default=5.0)
    args = ap.parse_args()
    host, _, port = args.address.rpartition(":")
    port = int(port)
    deadline = time.monotonic() + args.wait
    while True:
        try:
            socket.create_connection((host, port), timeout=1).close()
            break
        except OSError as e:
            if time.monotonic() > deadline:
                json.dump({"error": "cannot connect: %s" % e}, sys.stdout)
                return 1
            time.sleep(0.02)
    if args.path is None:
        json.dump({"status": 0, "body": ""}, sys.stdout)
        return 0
    try:
        conn = http.client.HTTPConnection(host, port, timeout=args.timeout)
        conn.request("GET", args.path)
        r = conn.getresponse()
        body = r.read().decode("utf-8", "replace")
        json.dump({"status": r.status, "body": body}, sys.stdout)
        return 0
    except (OSError, http.client.HTTPException) as e:
        json.dump({"error": "%s: %s" % (type(e).__name__, e)}, sys.stdout)
        return 1


if __name__ == "__main__":
    sys.exit(main())
