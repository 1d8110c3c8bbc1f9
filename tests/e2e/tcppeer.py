#!/usr/bin/env python3
"""
tcppeer.py - a small TCP server for the TCP mode tests (test_tcp_mode.py), run as a process of
its own so that a test can kill it with SIGKILL in the middle of a stream.

    python3 tcppeer.py PORT MODE [NAME]

Listens on 127.0.0.1:PORT and serves each connection in a thread, by MODE:
  echo    sends "NAME\\n" first if NAME is given (so a client knows which server it reached),
          then echoes every byte; at the client's end of stream it shuts down its own sending
          side once everything was echoed, and closes.
  hash    reads until the client's end of stream, then answers the SHA-256 (hex) of everything
          it read and a newline, and closes: only a client that half-closes gets an answer.
  stream  sends a byte pattern (byte i is i % 251) without end, reading nothing. Its sockets
          have SO_LINGER 0, so when the process is killed the kernel resets its connections
          instead of ending them with a FIN (as it does anyway for a socket with unread bytes).
"""
import hashlib
import socket
import struct
import sys
import threading

CHUNK = 256 * 1024


def serve_echo(conn, name):
    if name:
        conn.sendall(name.encode() + b"\n")
    while True:
        data = conn.recv(CHUNK)
        if not data:
            break
        conn.sendall(data)
    conn.shutdown(socket.SHUT_WR)


def serve_hash(conn, name):
    h = hashlib.sha256()
    while True:
        data = conn.recv(CHUNK)
        if not data:
            break
        h.update(data)
    conn.sendall(h.hexdigest().encode() + b"\n")


def serve_stream(conn, name):
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    block = bytes(i % 251 for i in range(251 * 64))
    while True:
        conn.sendall(block)


def serve(conn, mode, name):
    try:
        {"echo": serve_echo, "hash": serve_hash, "stream": serve_stream}[mode](conn, name)
    except OSError:
        pass
    finally:
        conn.close()


def main():
    port, mode = int(sys.argv[1]), sys.argv[2]
    name = sys.argv[3] if len(sys.argv) > 3 else ""
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", port))
    s.listen(128)
    while True:
        conn, _ = s.accept()
        threading.Thread(target=serve, args=(conn, mode, name), daemon=True).start()


if __name__ == "__main__":
    main()
