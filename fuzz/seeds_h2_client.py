#!/usr/bin/python3
"""seeds_h2_client.py - writes fuzz/corpus/fuzz_h2_client/: servers' answers to the requests
fuzz_h2_client.c makes, as python3-h2 (Debian's python3-h2) frames them.

Each seed is byte 0 of fuzz_h2_client.c (which requests, the users' read room, FIN) and then what
a server sends: its SETTINGS, the ACK of ours, and its frames for the streams. The requests get
ids in the reverse order of their bits (the last opened is submitted first): with bits 0-2 (GET,
chunked POST, gRPC call) the gRPC call is stream 1, the POST 3, the GET 5.

Run from the repository's top: /usr/bin/python3 fuzz/seeds_h2_client.py
"""
import os

import h2.config
import h2.connection
import h2.errors
import h2.settings

OUT = "fuzz/corpus/fuzz_h2_client"

GET, POST, GRPC, HEAD = 1, 2, 4, 8
ROOM = {4096: 0x00, 1: 0x10, 2: 0x20, 5: 0x30, 13: 0x40, 100: 0x50}
FIN = 0x80

REQUESTS = {
    GET: ("GET", "/a?b=1", True),
    POST: ("POST", "/up", False),
    GRPC: ("POST", "/pkg.Svc/Call", False),
    HEAD: ("HEAD", "/h", True),
}


def server_for(mask):
    """A server that has received the requests of mask (as python3-h2 sees them) and sent its
    SETTINGS; returns it and the stream ids of each request."""
    client = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    client.initiate_connection()
    ids = {}
    next_id = 1
    for bit in (HEAD, GRPC, POST, GET):  # the last opened goes first
        if mask & bit:
            method, path, end = REQUESTS[bit]
            client.send_headers(next_id, [(":method", method), (":scheme", "http"),
                                          (":path", path), (":authority", "backend.test"),
                                          ("te", "trailers")], end_stream=end)
            ids[bit] = next_id
            next_id += 2
    server = h2.connection.H2Connection(
        h2.config.H2Configuration(client_side=False, validate_inbound_headers=False))
    server.initiate_connection()
    server.receive_data(client.data_to_send())
    return server, ids


def seed(name, flags, server):
    with open(os.path.join(OUT, name), "wb") as f:
        f.write(bytes([flags]) + server.data_to_send())


def data_and_trailers(flags, name):
    """Every request answered: gRPC with DATA and grpc-status trailers (after opening the
    windows for the rest of its body), the POST with a Content-Length body, the GET chunked with
    trailers."""
    s, ids = server_for(GET | POST | GRPC)
    s.increment_flow_control_window(1 << 20)
    s.increment_flow_control_window(1 << 20, stream_id=ids[GRPC])
    s.send_headers(ids[GRPC], [(":status", "200"), ("content-type", "application/grpc")])
    s.send_data(ids[GRPC], b"\x00\x00\x00\x00\x02\x08\x01")
    s.send_headers(ids[GRPC], [("grpc-status", "0"), ("grpc-message", "")], end_stream=True)
    s.send_headers(ids[POST], [(":status", "201"), ("content-length", "2")])
    s.send_data(ids[POST], b"ok", end_stream=True)
    s.send_headers(ids[GET], [(":status", "200"), ("x-a", "b")])
    s.send_data(ids[GET], b"hello ")
    s.send_data(ids[GET], b"world")
    s.send_headers(ids[GET], [("x-sum", "11")], end_stream=True)
    seed(name, flags, s)


def trailers_only():
    """gRPC's trailers-only answer, and a 404 that ends with its HEADERS."""
    s, ids = server_for(GET | POST | GRPC)
    s.send_headers(ids[GRPC], [(":status", "200"), ("content-type", "application/grpc"),
                               ("grpc-status", "14"), ("grpc-message", "no%20backend")],
                   end_stream=True)
    s.send_headers(ids[POST], [(":status", "404")], end_stream=True)
    s.send_headers(ids[GET], [(":status", "200"), ("content-length", "0")], end_stream=True)
    seed("trailers_only", ROOM[4096] | GET | POST | GRPC, s)


def interim():
    """100 then 200 with a body; 103 then 204."""
    s, ids = server_for(GET | POST)
    s.send_headers(ids[POST], [(":status", "100")])
    s.send_headers(ids[POST], [(":status", "200"), ("content-length", "3")])
    s.send_data(ids[POST], b"abc", end_stream=True)
    s.send_headers(ids[GET], [(":status", "103"), ("link", "</s.css>; rel=preload")])
    s.send_headers(ids[GET], [(":status", "204")], end_stream=True)
    seed("interim", ROOM[5] | GET | POST, s)


def goaway():
    """The server answers stream 1 and goes away: the later streams fail."""
    s, ids = server_for(GET | POST | GRPC)
    s.send_headers(ids[GRPC], [(":status", "200"), ("content-type", "application/grpc"),
                               ("grpc-status", "0")], end_stream=True)
    s.close_connection(error_code=h2.errors.ErrorCodes.NO_ERROR, last_stream_id=ids[GRPC])
    seed("goaway", ROOM[4096] | GET | POST | GRPC, s)


def rst_stream():
    """One request refused, one cut in the middle of its response, one answered."""
    s, ids = server_for(GET | POST | GRPC)
    s.reset_stream(ids[POST], error_code=h2.errors.ErrorCodes.REFUSED_STREAM)
    s.send_headers(ids[GRPC], [(":status", "200"), ("content-type", "application/grpc")])
    s.send_data(ids[GRPC], b"\x00\x00\x00")
    s.reset_stream(ids[GRPC], error_code=h2.errors.ErrorCodes.CANCEL)
    s.send_headers(ids[GET], [(":status", "200"), ("content-length", "5")])
    s.send_data(ids[GET], b"hello", end_stream=True)
    seed("rst_stream", ROOM[13] | GET | POST | GRPC, s)


def head_and_fin():
    """A HEAD answered with the length its body would have; then the server closes."""
    s, ids = server_for(HEAD | GET)
    s.send_headers(ids[HEAD], [(":status", "200"), ("content-length", "1234")], end_stream=True)
    s.send_headers(ids[GET], [(":status", "304"), ("etag", '"x"')], end_stream=True)
    seed("head_fin", ROOM[4096] | FIN | HEAD | GET, s)


def one_stream_at_a_time():
    """SETTINGS that allow one stream and no window, then a PING; the GET answered."""
    s, ids = server_for(GET | GRPC)
    s.update_settings({h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: 1,
                       h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 0})
    s.ping(b"12345678")
    s.send_headers(ids[GET], [(":status", "200")])
    s.send_data(ids[GET], b"x" * 300, end_stream=True)
    seed("settings_ping", ROOM[2] | GET | GRPC, s)


def main():
    os.makedirs(OUT, exist_ok=True)
    data_and_trailers(ROOM[4096] | GET | POST | GRPC, "data_trailers")
    data_and_trailers(ROOM[1] | GET | POST | GRPC, "data_trailers_room1")
    data_and_trailers(ROOM[13] | FIN | GET | POST | GRPC, "data_trailers_room13_fin")
    trailers_only()
    interim()
    goaway()
    rst_stream()
    head_and_fin()
    one_stream_at_a_time()


if __name__ == "__main__":
    main()
