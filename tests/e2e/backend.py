#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""A small real HTTP/1.1 backend for the switchyard end-to-end tests (stdlib only).

One thread per connection, keep-alive, pipelining, and bodies streamed both ways in bounded
memory (a 1 GiB upload or download never sits in memory). Every response carries
`x-backend: NAME` (and `x-backend-conn: ID`, the id of the TCP connection it came on).

Endpoints (any method unless stated; a request body is always read, counted and hashed first):
  GET  /anything          200 `NAME\\n`
  GET  /bytes/N           N bytes of a fixed 64 KiB pattern in 64 KiB writes, Content-Length set;
                          `?chunked=1` sends them chunked instead (one chunk per write)
       /sleep/S           answers after S seconds (float, at most 120)
       /status/N          answers with status N (no body for 1xx/204/304)
       /close             answers with `Connection: close` and closes
       /echo-headers      JSON {backend, method, path, version, headers: [[name, value], ...], conn}
       /conn              JSON {backend, conn, request}: conn is a per-process connection id
                          (`SERIAL-PEERPORT`), request counts requests on that connection
  POST/PUT /anything      JSON {backend, method, path, bytes, sha256} of the body received
       /slowread          reads the body slowly (64 KiB per 10 ms), then as POST

The body is Content-Length or chunked (decoded, extensions and trailers skipped);
`Expect: 100-continue` is answered with `100 Continue` before the body is read.

--log FILE appends JSON lines: {"ev": "request", method, path, version, headers: [names], conn,
open} as soon as a request head arrives (`open`: the TCP connections open at that moment, this
one included, so the highest `open` is the most connections the backend had at once), and for requests with a body {"ev": "body", path, bytes}
once the body is complete or {"ev": "body-abort", path, bytes, why} when it is not. A test that
finds no line with its path proves the request never reached the backend.

Prints `ready PORT` on stdout once listening (`--port 0` picks a free port). SIGTERM exits.
"""

import argparse
import hashlib
import itertools
import json
import os
import signal
import socket
import socketserver
import sys
import threading
import time
from urllib.parse import parse_qs, urlsplit

READ_SIZE = 256 * 1024
WRITE_SIZE = 64 * 1024
MAX_HEAD = 1 << 20
MAX_LINE = 64 * 1024
PATTERN = bytes(range(256)) * (WRITE_SIZE // 256)  # what /bytes/N sends, repeated
REASONS = {100: "Continue", 200: "OK", 201: "Created", 204: "No Content", 304: "Not Modified",
           400: "Bad Request", 404: "Not Found", 500: "Internal Server Error",
           502: "Bad Gateway", 503: "Service Unavailable"}


class BadRequest(Exception):
    pass


class PeerClosed(Exception):
    pass


class Log:
    def __init__(self, path):
        self.lock = threading.Lock()
        self.f = open(path, "a", buffering=1, encoding="utf-8") if path else None

    def write(self, **rec):
        if self.f is None:
            return
        line = json.dumps(rec, separators=(",", ":")) + "\n"
        with self.lock:
            self.f.write(line)
            self.f.flush()


class Request:
    def __init__(self, method, target, version, headers):
        self.method = method
        self.target = target
        self.version = version
        self.headers = headers  # [(name, value)] in order, as received
        parts = urlsplit(target)
        self.path = parts.path or target
        self.query = parse_qs(parts.query)

    def get(self, name):
        vals = [v for n, v in self.headers if n.lower() == name]
        return ", ".join(vals) if vals else None

    def tokens(self, name):
        v = self.get(name)
        return [t.strip().lower() for t in v.split(",") if t.strip()] if v else []


class Conn:
    """Buffered reads from one socket; body bytes bypass the buffer once it is empty."""

    def __init__(self, sock):
        self.sock = sock
        self.buf = bytearray()
        self.scratch = None  # allocated by the first body that needs it

    def _fill(self):
        data = self.sock.recv(READ_SIZE)
        if not data:
            raise PeerClosed("eof")
        self.buf += data

    def read_head(self):
        """Returns the head's bytes (through the blank line), or None on EOF between requests."""
        start = 0
        while True:
            end = -1
            for sep in (b"\r\n\r\n", b"\n\n", b"\n\r\n"):
                i = self.buf.find(sep, start)
                if i >= 0 and (end < 0 or i + len(sep) < end):
                    end = i + len(sep)
            if end >= 0:
                head = bytes(self.buf[:end])
                del self.buf[:end]
                return head
            if len(self.buf) > MAX_HEAD:
                raise BadRequest("head too large")
            start = max(0, len(self.buf) - 3)
            try:
                self._fill()
            except PeerClosed:
                if self.buf.strip():
                    raise
                return None

    def readline(self):
        while True:
            i = self.buf.find(b"\n")
            if i >= 0:
                line = bytes(self.buf[:i + 1])
                del self.buf[:i + 1]
                return line
            if len(self.buf) > MAX_LINE:
                raise BadRequest("line too long")
            self._fill()

    def stream(self, n, sink, slow=False):
        """Passes exactly n body bytes to sink, in pieces, never reading past them."""
        step = WRITE_SIZE if slow else READ_SIZE
        while n > 0:
            if self.buf:
                take = min(n, len(self.buf), step)
                sink(self.buf[:take])
                del self.buf[:take]
            else:
                if self.scratch is None:
                    self.scratch = bytearray(READ_SIZE)
                take = self.sock.recv_into(self.scratch, min(n, step))
                if take == 0:
                    raise PeerClosed("eof in body")
                sink(memoryview(self.scratch)[:take])
            n -= take
            if slow:
                time.sleep(0.01)


def parse_head(head):
    lines = head.split(b"\n")
    lines = [ln[:-1] if ln.endswith(b"\r") else ln for ln in lines]
    while lines and lines[-1] == b"":
        lines.pop()
    if not lines:
        raise BadRequest("empty head")
    parts = lines[0].decode("latin-1").split(" ")
    if len(parts) != 3:
        raise BadRequest("bad request line")
    method, target, version = parts
    headers = []
    for ln in lines[1:]:
        name, sep, value = ln.decode("latin-1").partition(":")
        if not sep:
            raise BadRequest("bad header line")
        headers.append((name, value.strip(" \t")))
    return Request(method, target, version, headers)


class Handler(socketserver.BaseRequestHandler):
    serial = itertools.count(1)
    open_lock = threading.Lock()
    open_now = 0

    def setup(self):
        with Handler.open_lock:
            Handler.open_now += 1
        self.sock = self.request
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.conn = Conn(self.sock)
        self.conn_id = "%d-%d" % (next(Handler.serial), self.client_address[1])
        self.nreq = 0
        self.name = self.server.name
        self.log = self.server.log

    def finish(self):
        with Handler.open_lock:
            Handler.open_now -= 1

    def handle(self):
        try:
            while self.serve_one():
                pass
        except (PeerClosed, ConnectionError, TimeoutError, OSError):
            pass
        except BadRequest as e:
            try:
                self.respond(400, b"bad request: %s\n" % str(e).encode(), close=True)
            except OSError:
                pass

    # -- one exchange ------------------------------------------------------------------------

    def serve_one(self):
        head = self.conn.read_head()
        if head is None:
            return False
        req = parse_head(head)
        self.nreq += 1
        self.log.write(ev="request", method=req.method, path=req.target, version=req.version,
                       headers=[n for n, _ in req.headers], conn=self.conn_id,
                       open=Handler.open_now)

        conn_tokens = req.tokens("connection")
        if req.version == "HTTP/1.1":
            keep = "close" not in conn_tokens
        else:
            keep = "keep-alive" in conn_tokens

        te = req.tokens("transfer-encoding")
        cl = req.get("content-length")
        chunked = bool(te) and te[-1] == "chunked"
        if te and not chunked:
            raise BadRequest("unsupported transfer-encoding")
        length = None
        if not chunked and cl is not None:
            try:
                length = int(cl.split(",")[0])
            except ValueError:
                raise BadRequest("bad content-length")
        has_body = chunked or (length or 0) > 0

        if has_body and "100-continue" in req.tokens("expect"):
            self.sock.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")

        h = hashlib.sha256()
        count = [0]

        def sink(piece):
            h.update(piece)
            count[0] += len(piece)

        slow = req.path.startswith("/slowread")
        try:
            if chunked:
                self.read_chunked(sink, slow)
            elif length:
                self.conn.stream(length, sink, slow)
        except (PeerClosed, BadRequest, OSError) as e:
            self.log.write(ev="body-abort", path=req.target, bytes=count[0], why=str(e),
                           conn=self.conn_id)
            raise
        if has_body:
            self.log.write(ev="body", path=req.target, bytes=count[0], conn=self.conn_id)

        return self.dispatch(req, keep, count[0], h.hexdigest())

    def read_chunked(self, sink, slow):
        while True:
            line = self.conn.readline().rstrip(b"\r\n")
            size_s = line.split(b";", 1)[0].strip()
            try:
                size = int(size_s, 16)
            except ValueError:
                raise BadRequest("bad chunk size %r" % size_s[:20])
            if size < 0:
                raise BadRequest("bad chunk size")
            if size == 0:
                while self.conn.readline().rstrip(b"\r\n"):  # trailers
                    pass
                return
            self.conn.stream(size, sink, slow)
            if self.conn.readline().rstrip(b"\r\n"):
                raise BadRequest("missing CRLF after chunk data")

    def dispatch(self, req, keep, nbytes, sha):
        path = req.path
        head_only = req.method == "HEAD"
        if path.startswith("/sleep/"):
            try:
                secs = min(float(path.split("/")[2]), 120.0)
            except ValueError:
                secs = 0.0
            time.sleep(max(secs, 0.0))
        if path == "/echo-headers":
            doc = {"backend": self.name, "method": req.method, "path": req.target,
                   "version": req.version, "headers": [[n, v] for n, v in req.headers],
                   "conn": self.conn_id, "bytes": nbytes}
            return self.respond_json(doc, keep, head_only)
        if path == "/conn":
            doc = {"backend": self.name, "conn": self.conn_id, "request": self.nreq}
            return self.respond_json(doc, keep, head_only)
        if path == "/close":
            self.respond(200, self.name.encode() + b"\n", close=True, head_only=head_only)
            return False
        if path.startswith("/status/"):
            try:
                status = int(path.split("/")[2])
            except ValueError:
                status = 400
            no_body = status < 200 or status in (204, 304)
            body = b"" if no_body else self.name.encode() + b"\n"
            return self.respond(status, body, close=not keep, head_only=head_only,
                                no_length=no_body)
        if path.startswith("/bytes/") and req.method in ("GET", "HEAD"):
            try:
                n = int(path.split("/")[2])
            except ValueError:
                raise BadRequest("bad byte count")
            chunked = req.query.get("chunked", ["0"])[0] not in ("0", "")
            return self.send_bytes(n, chunked, keep, head_only)
        if req.method in ("POST", "PUT"):
            doc = {"backend": self.name, "method": req.method, "path": req.target,
                   "bytes": nbytes, "sha256": sha}
            return self.respond_json(doc, keep, head_only)
        return self.respond(200, self.name.encode() + b"\n", close=not keep, head_only=head_only)

    # -- responses -----------------------------------------------------------------------------

    def head_bytes(self, status, headers, close):
        lines = ["HTTP/1.1 %d %s" % (status, REASONS.get(status, "Status"))]
        lines.append("x-backend: %s" % self.name)
        lines.append("x-backend-conn: %s" % self.conn_id)
        lines += ["%s: %s" % (n, v) for n, v in headers]
        if close:
            lines.append("Connection: close")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    def respond(self, status, body, close=False, head_only=False, ctype="text/plain",
                no_length=False):
        headers = [("Content-Type", ctype)]
        if not no_length:
            headers.append(("Content-Length", str(len(body))))
        out = self.head_bytes(status, headers, close)
        if not head_only:
            out += body
        self.sock.sendall(out)
        return not close

    def respond_json(self, doc, keep, head_only):
        body = (json.dumps(doc) + "\n").encode()
        return self.respond(200, body, close=not keep, head_only=head_only,
                            ctype="application/json")

    def send_bytes(self, n, chunked, keep, head_only):
        headers = [("Content-Type", "application/octet-stream")]
        headers.append(("Transfer-Encoding", "chunked") if chunked
                       else ("Content-Length", str(n)))
        self.sock.sendall(self.head_bytes(200, headers, not keep))
        if head_only:
            return keep
        block = memoryview(PATTERN)
        left = n
        while left > 0:
            piece = block[:min(left, len(block))]
            if chunked:
                self.sock.sendmsg([b"%x\r\n" % len(piece), piece, b"\r\n"])
            else:
                self.sock.sendall(piece)
            left -= len(piece)
        if chunked:
            self.sock.sendall(b"0\r\n\r\n")
        return keep


class Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 1024


def main():
    ap = argparse.ArgumentParser(description="switchyard e2e test backend")
    ap.add_argument("--name", required=True)
    ap.add_argument("--port", type=int, required=True, help="0 picks a free port")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--log", help="append one JSON line per request to this file")
    args = ap.parse_args()

    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    signal.signal(signal.SIGINT, lambda *_: os._exit(0))
    srv = Server((args.host, args.port), Handler)
    srv.name = args.name
    srv.log = Log(args.log)
    print("ready %d" % srv.server_address[1], flush=True)
    srv.serve_forever(poll_interval=3600)


if __name__ == "__main__":
    sys.exit(main())
