#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""A real HTTP/2 (cleartext, prior knowledge) server on Debian's python3-h2 for the upstream
HTTP/2 tests: it can send GOAWAY after every N streams of a connection, advertise a small
SETTINGS_MAX_CONCURRENT_STREAMS and refuse the streams above it, and logs every connection
and stream so that a test can count what the proxy opened.

  --goaway-after N     after the N-th stream of a connection, GOAWAY (0: never). Mode
                       `graceful` (default) is what nghttp2 and nginx do: GOAWAY(2^31-1) and a
                       PING, then once the PING is acknowledged the final GOAWAY naming the
                       highest stream received; `abrupt` sends one GOAWAY naming the N-th
                       stream at once, so streams the client had already sent beyond it are
                       ignored (RFC 9113 6.8: not processed, safe to retry). Either way the
                       streams at or below the last id are answered in full, then the server
                       closes the connection.
  --drop-first N       close the first N connections at once after accepting them, before
                       reading or sending a byte (logged as `dropped`): the proxy's request
                       fails before any byte of it was taken
  --max-streams M      advertise SETTINGS_MAX_CONCURRENT_STREAMS M and answer each stream that
                       would make more than M open on a connection with RST_STREAM
                       REFUSED_STREAM (logged with whether the client had acknowledged the
                       SETTINGS yet: before that the RFC lets it assume the default).

Paths (any method; a request body is read and hashed first; every response carries
`x-backend: NAME`, `x-backend-conn: ID`, `x-stream: SID`):
  /delay/MS           answers after MS milliseconds (at most 60000)
  /bytes/N            N bytes of a fixed pattern (flow control respected)
  /trickle            1 KiB every 50 ms for at most 120 s, until the stream is reset
  /echo-headers       JSON {headers: [[name, value], ...], conn, stream} of the request
  /trailers           a body, then trailers `x-trailer-one: 1` and `grpc-status: 0`
  /status/N           answers with status N (200..599; HTTP/2 has no reason phrase)
  anything else       `NAME\\n`; with a body: JSON {bytes, sha256}

--log FILE appends one JSON line per event: conn (a connection accepted), stream (a request
received: open = streams then open on its connection, acked = SETTINGS acknowledged),
refused, ignored (a stream above a GOAWAY's last id), done (response complete), reset (by the
client), goaway (sent: last id), client-goaway, close (with the streams served).
Prints `ready PORT` once listening (--port 0 picks one). SIGTERM exits.
"""

import argparse
import hashlib
import itertools
import json
import os
import selectors
import signal
import socket
import socketserver
import struct
import threading
import time
from urllib.parse import urlsplit

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
import h2.settings
from hyperframe.frame import GoAwayFrame, PingFrame, SettingsFrame

PATTERN = bytes(range(256)) * 256  # 64 KiB: /bytes/N sends it repeated from offset 0
PATTERN2 = PATTERN * 2
MAX_STREAM_ID = 2 ** 31 - 1
GOAWAY_PING = b"sy-goawy"  # 8 bytes: the PING of the graceful GOAWAY
TRICKLE_CHUNK = 1024
TRICKLE_EVERY = 0.05
TRICKLE_MAX = 120.0


class Log:
    def __init__(self, path):
        self.lock = threading.Lock()
        self.f = open(path, "a", buffering=1, encoding="utf-8") if path else None

    def write(self, **rec):
        if self.f is None:
            return
        rec["t"] = round(time.monotonic(), 4)
        line = json.dumps(rec, separators=(",", ":")) + "\n"
        with self.lock:
            self.f.write(line)
            self.f.flush()


class Job:
    """One response in progress."""

    def __init__(self, sid, path, headers):
        self.sid = sid
        self.path = path
        self.req_headers = headers
        self.body_hash = hashlib.sha256()
        self.body_bytes = 0
        self.complete = False     # request fully received
        self.started = False      # response headers sent
        self.due = None           # monotonic time the next step may run
        self.left = 0             # body bytes still to send (bytes mode)
        self.total = 0
        self.body = b""           # or a fixed body
        self.trailers = None
        self.trickle_until = None
        self.status = 200
        self.done = False


class Conn:
    def __init__(self, server, sock, conn_id):
        self.srv = server
        self.sock = sock
        self.id = conn_id
        self.log = server.log
        cfg = h2.config.H2Configuration(client_side=False, header_encoding="utf-8",
                                        validate_inbound_headers=True)
        self.h2 = h2.connection.H2Connection(config=cfg)
        # h2 itself enforces its local MAX_CONCURRENT_STREAMS with a connection error; keep its
        # own limit high and enforce --max-streams here, with REFUSED_STREAM as RFC 9113 allows.
        self.h2.local_settings = h2.settings.Settings(
            client=False, initial_values={
                h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: 100000,
                h2.settings.SettingCodes.MAX_HEADER_LIST_SIZE: 65536})
        self.jobs = {}
        self.streams = 0          # streams received (and not refused/ignored)
        self.served = 0
        self.acked = False
        self.goaway_last = None   # the final GOAWAY's last stream id, once sent
        self.goaway_pending = False  # graceful: first GOAWAY sent, waiting for the PING ack
        self.extra = b""          # raw frames to send after h2's own
        self.peer_gone = False

    # -- output ---------------------------------------------------------------------------------

    def flush(self):
        data = self.h2.data_to_send() + self.extra
        self.extra = b""
        if data:
            self.sock.sendall(data)

    def raw_goaway(self, last, code=0):
        f = GoAwayFrame(0)
        f.last_stream_id = last
        f.error_code = code
        self.extra += f.serialize()

    def start(self):
        self.h2.initiate_connection()
        pre = self.h2.data_to_send()
        max_streams = self.srv.max_streams
        if max_streams:
            # Advertise --max-streams instead of h2's own (high) limit: rebuild the frame.
            f = SettingsFrame(0)
            for k, v in self.h2.local_settings.items():
                f.settings[k] = v
            f.settings[h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS] = max_streams
            pre = f.serialize()
        self.sock.sendall(pre)

    # -- GOAWAY ---------------------------------------------------------------------------------

    def begin_goaway(self, sid):
        if self.goaway_last is not None or self.goaway_pending:
            return
        if self.srv.goaway_mode == "abrupt":
            self.goaway_last = sid
            self.raw_goaway(sid)
            self.log.write(ev="goaway", conn=self.id, last=sid, mode="abrupt")
        else:
            self.goaway_pending = True
            self.raw_goaway(MAX_STREAM_ID)
            p = PingFrame(0)
            p.opaque_data = GOAWAY_PING
            self.extra += p.serialize()
            self.log.write(ev="goaway-notice", conn=self.id)

    def final_goaway(self):
        self.goaway_pending = False
        self.goaway_last = self.h2.highest_inbound_stream_id
        self.raw_goaway(self.goaway_last)
        self.log.write(ev="goaway", conn=self.id, last=self.goaway_last, mode="graceful")

    # -- events ---------------------------------------------------------------------------------

    def on_request(self, ev):
        sid = ev.stream_id
        headers = [(n, v) for n, v in ev.headers]
        path = dict(headers).get(":path", "/")
        if self.goaway_last is not None and sid > self.goaway_last:
            self.log.write(ev="ignored", conn=self.id, stream=sid, path=path)
            return
        if self.srv.max_streams and len(self.jobs) >= self.srv.max_streams:
            self.h2.reset_stream(sid, h2.errors.ErrorCodes.REFUSED_STREAM)
            self.log.write(ev="refused", conn=self.id, stream=sid, open=len(self.jobs),
                           acked=self.acked, path=path)
            return
        job = Job(sid, path, headers)
        self.jobs[sid] = job
        self.streams += 1
        self.log.write(ev="stream", conn=self.id, stream=sid, open=len(self.jobs),
                       acked=self.acked, path=path, n=self.streams)
        if self.srv.goaway_after and self.streams >= self.srv.goaway_after:
            self.begin_goaway(sid)

    def on_data(self, ev):
        self.h2.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
        job = self.jobs.get(ev.stream_id)
        if job:
            job.body_hash.update(ev.data)
            job.body_bytes += len(ev.data)

    def on_end(self, ev):
        job = self.jobs.get(ev.stream_id)
        if job:
            job.complete = True
            self.plan(job)

    def on_reset(self, ev):
        job = self.jobs.pop(ev.stream_id, None)
        if job:
            self.log.write(ev="reset", conn=self.id, stream=ev.stream_id, path=job.path,
                           code=int(ev.error_code))

    def handle(self, events):
        for ev in events:
            if isinstance(ev, h2.events.RequestReceived):
                self.on_request(ev)
            elif isinstance(ev, h2.events.DataReceived):
                self.on_data(ev)
            elif isinstance(ev, h2.events.StreamEnded):
                self.on_end(ev)
            elif isinstance(ev, h2.events.StreamReset):
                self.on_reset(ev)
            elif isinstance(ev, h2.events.SettingsAcknowledged):
                self.acked = True
            elif isinstance(ev, h2.events.PingAckReceived):
                if ev.ping_data == GOAWAY_PING and self.goaway_pending:
                    self.final_goaway()
            elif isinstance(ev, h2.events.ConnectionTerminated):
                self.log.write(ev="client-goaway", conn=self.id, code=int(ev.error_code),
                               last=ev.last_stream_id)
                self.peer_gone = True

    # -- responses ------------------------------------------------------------------------------

    def plan(self, job):
        """The request is complete: decide the response."""
        path = urlsplit(job.path).path
        now = time.monotonic()
        job.due = now
        if path.startswith("/delay/"):
            try:
                ms = min(max(int(path.split("/")[2]), 0), 60000)
            except ValueError:
                ms = 0
            job.due = now + ms / 1000.0
            job.body = self.srv.name.encode() + b"\n"
        elif path.startswith("/bytes/"):
            try:
                job.left = job.total = max(int(path.split("/")[2]), 0)
            except ValueError:
                job.left = job.total = 0
        elif path.startswith("/trickle"):
            job.trickle_until = now + TRICKLE_MAX
        elif path == "/echo-headers":
            job.body = (json.dumps({"headers": [[n, v] for n, v in job.req_headers],
                                    "conn": self.id, "stream": job.sid,
                                    "backend": self.srv.name}) + "\n").encode()
        elif path.startswith("/status/"):
            try:
                job.status = min(max(int(path.split("/")[2]), 200), 599)
            except ValueError:
                job.status = 200
            job.body = self.srv.name.encode() + b"\n"
        elif path == "/trailers":
            job.body = b"body before the trailers\n"
            job.trailers = [("x-trailer-one", "1"), ("grpc-status", "0")]
        elif job.body_bytes:
            job.body = (json.dumps({"bytes": job.body_bytes,
                                    "sha256": job.body_hash.hexdigest(),
                                    "backend": self.srv.name}) + "\n").encode()
        else:
            job.body = self.srv.name.encode() + b"\n"

    def step(self, job, now):
        """Sends what the job can now; True when the job is finished."""
        sid = job.sid
        if not job.started:
            hdrs = [(":status", str(job.status)), ("x-backend", self.srv.name),
                    ("x-backend-conn", str(self.id)), ("x-stream", str(sid))]
            if job.left:
                hdrs.append(("content-length", str(job.left)))
            elif job.trickle_until is None:
                hdrs.append(("content-length", str(len(job.body))))
            self.h2.send_headers(sid, hdrs)
            job.started = True
        if job.trickle_until is not None:
            if now >= job.trickle_until:
                self.h2.end_stream(sid)
                return True
            if self.h2.local_flow_control_window(sid) >= TRICKLE_CHUNK:
                self.h2.send_data(sid, PATTERN[:TRICKLE_CHUNK])
            job.due = now + TRICKLE_EVERY
            return False
        if job.left:
            while job.left:
                win = min(self.h2.local_flow_control_window(sid),
                          self.h2.max_outbound_frame_size, job.left)
                if win <= 0:
                    job.due = None  # wait for a WINDOW_UPDATE
                    return False
                off = (job.total - job.left) % len(PATTERN)
                piece = PATTERN2[off:off + win]
                self.h2.send_data(sid, piece)
                job.left -= win
            self.h2.end_stream(sid)
            return True
        while job.body:
            win = min(self.h2.local_flow_control_window(sid),
                      self.h2.max_outbound_frame_size, len(job.body))
            if win <= 0:
                job.due = None
                return False
            self.h2.send_data(sid, job.body[:win])
            job.body = job.body[win:]
        if job.trailers:
            self.h2.send_headers(sid, job.trailers, end_stream=True)
        else:
            self.h2.end_stream(sid)
        return True

    def run_jobs(self):
        now = time.monotonic()
        for sid, job in list(self.jobs.items()):
            if not job.complete:
                continue
            if job.due is not None and job.due > now:
                continue
            try:
                finished = self.step(job, now)
            except (h2.exceptions.StreamClosedError, h2.exceptions.ProtocolError):
                finished = True
            if finished:
                self.jobs.pop(sid, None)
                self.served += 1
                self.log.write(ev="done", conn=self.id, stream=sid, path=job.path)
            elif job.due is None:
                job.due = now + 0.005  # blocked on flow control: look again soon

    def next_timeout(self):
        dues = [j.due for j in self.jobs.values() if j.complete and j.due is not None]
        if not dues:
            return 1.0
        return max(0.0, min(dues) - time.monotonic())

    def finished(self):
        if self.goaway_last is not None and not self.jobs:
            return True
        return self.peer_gone and not self.jobs

    def serve(self):
        self.start()
        sel = selectors.DefaultSelector()
        sel.register(self.sock, selectors.EVENT_READ)
        why = "eof"
        try:
            while True:
                if sel.select(self.next_timeout()):
                    data = self.sock.recv(65536)
                    if not data:
                        break
                    self.handle(self.h2.receive_data(data))
                self.run_jobs()
                self.flush()
                if self.finished():
                    why = "goaway" if self.goaway_last is not None else "client-goaway"
                    break
        except h2.exceptions.ProtocolError as e:
            why = "protocol error: %s" % e
            try:
                self.flush()
            except OSError:
                pass
        except OSError as e:
            why = "socket: %s" % e
        finally:
            sel.close()
            self.log.write(ev="close", conn=self.id, served=self.served, why=why,
                           open=len(self.jobs))
            try:
                self.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            self.sock.close()


class Handler(socketserver.BaseRequestHandler):
    serial = itertools.count(1)

    def handle(self):
        sock = self.request
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        cid = next(Handler.serial)
        self.server.log.write(ev="conn", conn=cid, peer=self.client_address[1])
        if cid <= self.server.drop_first:
            self.server.log.write(ev="dropped", conn=cid)
            # SO_LINGER 0: the close is a reset, as from a server that gave up
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            sock.close()
            return
        Conn(self.server, sock, cid).serve()


class Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 1024


def main():
    ap = argparse.ArgumentParser(description="switchyard e2e HTTP/2 upstream peer")
    ap.add_argument("--name", default="h2peer")
    ap.add_argument("--port", type=int, default=0, help="0 picks a free port")
    ap.add_argument("--log")
    ap.add_argument("--goaway-after", type=int, default=0)
    ap.add_argument("--goaway-mode", choices=("graceful", "abrupt"), default="graceful")
    ap.add_argument("--max-streams", type=int, default=0)
    ap.add_argument("--drop-first", type=int, default=0)
    args = ap.parse_args()

    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    signal.signal(signal.SIGINT, lambda *_: os._exit(0))
    srv = Server(("127.0.0.1", args.port), Handler)
    srv.name = args.name
    srv.log = Log(args.log)
    srv.goaway_after = args.goaway_after
    srv.goaway_mode = args.goaway_mode
    srv.max_streams = args.max_streams
    srv.drop_first = args.drop_first
    print("ready %d" % srv.server_address[1], flush=True)
    srv.serve_forever(poll_interval=3600)


if __name__ == "__main__":
    main()
