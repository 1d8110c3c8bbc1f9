"""
load.py - a bounded concurrent HTTP load that records how every request ended.

    summary = run("127.0.0.1", 8080, requests=40, concurrency=8, timeout=5)

or, inside a network namespace (prints the summary as one JSON object on stdout):

    ip netns exec NS python3 -m faults.load --port 8080 --requests 40 --concurrency 8

Each request goes on a new connection. Its outcome is exactly one of:

    "200", "504", ...    a complete response with that status (the body as long as its framing
                         says: Content-Length bytes, or chunks up to the final 0-chunk)
    "reset"              the connection was reset before the response head was complete
    "closed"             the connection was closed before the response head was complete
    "reset_in_body"      a head arrived, then a reset before the body was complete
    "closed_in_body"     a head arrived, then a close before the body was complete
    "timeout"            nothing for `timeout` seconds: a hang, which tests treat as a failure
    "refused"            the connection was refused
    "error:NAME"         anything else (the exception's class name)

The summary: {"requests", "outcomes": {outcome: n}, "served_by": {X-Backend: n} for complete
responses, "max_latency": {outcome: s}, "elapsed", "results": [[outcome, x_backend, latency,
start time.time()], ...] in the order the requests started}.

Nothing is retried, and the run is bounded twice: `requests` in all, and no request starts
after `deadline` seconds.
"""
import argparse
import http.client
import json
import socket
import sys
import threading
import time


def one(host, port, method="GET", path="/", body=None, timeout=5.0, headers=None):
    """One request on a new connection. Returns (outcome, x_backend)."""
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    got_head = False
    try:
        hdrs = dict(headers or {})
        if body is not None:
            hdrs.setdefault("Content-Type", "application/octet-stream")
        conn.request(method, path, body=body, headers=hdrs)
        r = conn.getresponse()
        got_head = True
        r.read()  # raises IncompleteRead when the framing was not completed
        return str(r.status), r.getheader("X-Backend")
    except socket.timeout:
        return "timeout", None
    except ConnectionRefusedError:
        return "refused", None
    except (http.client.IncompleteRead, http.client.RemoteDisconnected):
        # (RemoteDisconnected is a ConnectionResetError too: a clean close without a head)
        return ("closed_in_body" if got_head else "closed"), None
    except (ConnectionResetError, BrokenPipeError):
        return ("reset_in_body" if got_head else "reset"), None
    except http.client.HTTPException as e:
        # e.g. a chunked body cut between chunks: http.client reports the broken framing
        return ("closed_in_body" if got_head else "error:" + type(e).__name__), None
    except OSError as e:
        return "error:" + type(e).__name__, None
    finally:
        conn.close()


def run(host, port, requests=40, concurrency=8, method="GET", path="/", body=None,
        timeout=5.0, deadline=60.0, headers=None):
    lock = threading.Lock()
    results = []
    state = {"next": 0}
    start = time.monotonic()

    def worker():
        while True:
            with lock:
                if state["next"] >= requests or time.monotonic() - start > deadline:
                    return
                i = state["next"]
                state["next"] += 1
            t0 = time.monotonic()
            wall = time.time()
            outcome, backend = one(host, port, method, path.replace("{i}", str(i)), body,
                                   timeout, headers)
            with lock:
                results.append((i, outcome, backend, round(time.monotonic() - t0, 4), wall))

    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    results.sort()
    outcomes, served, max_latency = {}, {}, {}
    for _, outcome, backend, latency, _ in results:
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
        if backend is not None:
            served[backend] = served.get(backend, 0) + 1
        max_latency[outcome] = max(max_latency.get(outcome, 0.0), latency)
    return {"requests": len(results), "outcomes": outcomes, "served_by": served,
            "max_latency": max_latency, "elapsed": round(time.monotonic() - start, 3),
            "results": [list(r[1:]) for r in results]}


def main():
    ap = argparse.ArgumentParser(description="a bounded HTTP load; prints a JSON summary")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--requests", type=int, default=40)
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--method", default="GET")
    ap.add_argument("--path", default="/")
    ap.add_argument("--body", default=None)
    ap.add_argument("--timeout", type=float, default=5.0, help="per socket operation")
    ap.add_argument("--deadline", type=float, default=60.0, help="no request starts after this")
    args = ap.parse_args()
    body = args.body.encode() if args.body is not None else None
    summary = run(args.host, args.port, args.requests, args.concurrency, args.method,
                  args.path, body, args.timeout, args.deadline)
    json.dump(summary, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
