#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""A backend pair that plays a singleton, for the exclusive switch tests (stdlib only).

One process serves two ports, blue and green, which share what a singleton shares: the
knowledge of whether the other side is at work. Every request is recorded with the monotonic
time it started and ended on its side. Green refuses (503, `x-refused: blue-busy`) any request
that arrives while blue still has one in flight, as a second copy of a singleton would have to;
a switch that lets green serve too early therefore shows up as failed requests, and in the
records as overlapping times.

Endpoints (on either port):
  GET /work?ms=N       answers 200 `SIDE\\n` after N ms (default 5), `x-backend: SIDE`
  GET /hang            never answers (until the client or the proxy closes the connection)
  GET /ws              WebSocket upgrade (RFC 6455 handshake), then echoes raw bytes until EOF
  GET /ready           green: 200 once blue has nothing in flight, else 503 (the ready check)
  GET /warmup          503 until the time set by /_warmup, then 200 (a ready check that waits)
  GET /_warmup?ms=N    /warmup answers 503 for the next N ms (not recorded)
  GET /gate            answers 200 once /_gate is asked (a request that ends when the test says)
  GET /_gate           opens the gate: every /gate waiting, and the next ones, answer (not recorded)
  GET /_records        JSON list of {side, path, start, end, status} (not recorded itself)
  GET /_inflight       JSON {blue: N, green: N}

Prints `ready BLUEPORT GREENPORT` on stdout once listening. SIGTERM exits.
"""

import base64
import hashlib
import json
import signal
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
HANG_MAX_S = 60.0

LOCK = threading.Lock()
INFLIGHT = {"blue": 0, "green": 0}
RECORDS = []
WARM_AT = [0.0]  # monotonic time from which /warmup answers 200
GATE = threading.Event()


def begin(side):
    with LOCK:
        INFLIGHT[side] += 1
        return time.monotonic(), INFLIGHT["blue"]


def end(side, path, start, status):
    with LOCK:
        INFLIGHT[side] -= 1
        RECORDS.append({"side": side, "path": path, "start": start, "end": time.monotonic(),
                        "status": status})


def make_handler(side):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def answer(self, status, body, extra=()):
            data = body.encode()
            self.send_response(status)
            self.send_header("x-backend", side)
            self.send_header("content-type", "text/plain")
            self.send_header("content-length", str(len(data)))
            for k, v in extra:
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(data)
            self.wfile.flush()

        def do_GET(self):
            url = urlsplit(self.path)
            if url.path == "/_records":
                with LOCK:
                    body = json.dumps(RECORDS)
                return self.answer(200, body)
            if url.path == "/_warmup":
                ms = float(parse_qs(url.query).get("ms", ["0"])[0])
                with LOCK:
                    WARM_AT[0] = time.monotonic() + ms / 1000.0
                return self.answer(200, json.dumps({"warm_in_ms": ms}))
            if url.path == "/_gate":
                GATE.set()
                return self.answer(200, json.dumps({"gate": "open"}))
            if url.path == "/warmup":
                with LOCK:
                    warm = time.monotonic() >= WARM_AT[0]
                return self.answer(200 if warm else 503, "warm\n" if warm else "warming up\n")
            if url.path == "/_inflight":
                with LOCK:
                    body = json.dumps(INFLIGHT)
                return self.answer(200, body)
            start, blue_busy = begin(side)
            status = 0
            try:
                if url.path == "/ready":
                    status = 200 if side == "green" and blue_busy == 0 else 503
                    self.answer(status, "ready\n" if status == 200 else "not yet\n")
                elif side == "green" and blue_busy > 0:
                    status = 503
                    self.answer(503, "blue is still at work\n", [("x-refused", "blue-busy")])
                elif url.path == "/gate":
                    GATE.wait(HANG_MAX_S)
                    status = 200
                    self.answer(200, side + "\n")
                elif url.path == "/hang":
                    status = 0
                    self.connection.settimeout(HANG_MAX_S)
                    try:
                        self.connection.recv(1)  # EOF (or bytes) when the other side goes
                    except OSError:
                        pass
                    self.close_connection = True
                elif url.path == "/ws":
                    status = 101
                    self.websocket()
                else:
                    ms = float(parse_qs(url.query).get("ms", ["5"])[0])
                    time.sleep(ms / 1000.0)
                    status = 200
                    self.answer(200, side + "\n")
            except OSError:
                self.close_connection = True
            finally:
                end(side, url.path, start, status)

        def websocket(self):
            key = self.headers.get("sec-websocket-key", "")
            accept = base64.b64encode(hashlib.sha1((key + WS_GUID).encode()).digest()).decode()
            self.send_response(101)
            self.send_header("upgrade", "websocket")
            self.send_header("connection", "Upgrade")
            self.send_header("sec-websocket-accept", accept)
            self.send_header("x-backend", side)
            self.end_headers()
            self.wfile.flush()
            self.connection.settimeout(HANG_MAX_S)
            while True:
                data = self.connection.recv(65536)
                if not data:
                    break
                self.connection.sendall(data)
            self.close_connection = True

    return Handler


def main():
    servers = []
    for side in ("blue", "green"):
        srv = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(side))
        srv.daemon_threads = True
        servers.append(srv)
        threading.Thread(target=srv.serve_forever, daemon=True).start()
    signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))
    print("ready %d %d" % (servers[0].server_address[1], servers[1].server_address[1]),
          flush=True)
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    main()
