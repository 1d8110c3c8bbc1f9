#!/usr/bin/env python3
"""
ws_server.py - a WebSocket server for the tunnel tests, on Debian's python3-websockets:
  ws_server.py PORT
Every text message is echoed back, except commands:
  "flood:N"   sends N bytes as binary messages of 64 KiB (a slow reader's backpressure)
  "close"     closes the connection cleanly from the server's side
A handshake to /reject is refused with 403 (an ordinary response, not a tunnel). It prints
"ready" once it listens.
"""
import asyncio
import http
import sys

try:
    import websockets
except ImportError:  # a python3 other than Debian's: use Debian's python3-websockets anyway
    sys.path.append("/usr/lib/python3/dist-packages")
    import websockets


async def handler(ws, path=None):
    async for message in ws:
        if isinstance(message, str) and message.startswith("flood:"):
            left = int(message[6:])
            while left:
                n = min(left, 65536)
                await ws.send(b"x" * n)
                left -= n
            await ws.send("flood done")
        elif message == "close":
            await ws.close()
            return
        else:
            await ws.send(message)


async def process_request(path, headers):
    if path == "/reject":
        return http.HTTPStatus.FORBIDDEN, [("X-Rejected", "yes")], b"no websocket for you\n"
    return None


async def main(port):
    async with websockets.serve(handler, "127.0.0.1", port, process_request=process_request,
                                max_size=64 << 20, compression=None):
        print("ready", flush=True)
        await asyncio.Future()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1])))
