# SPDX-License-Identifier: MIT
"""HTTP/2 clients that misbehave (issue 12, "Hold under abuse and faults"), end to end.

Crafted frames (RawH2 from test_20_h2: exact bytes out, every frame in, no automatic
WINDOW_UPDATE) against the real binary and real backends on loopback:

- a stream whose request body never comes is reset after timeouts.client_body, and one whose
  client never opens its flow-control window after timeouts.client_send; its upstream
  connection is closed, and the other streams of the connection go on;
- a request whose upload stops makes upstream_response run (it no longer re-arms just
  because the upload is unfinished);
- request DATA dropped when a stream ends early (502: the cluster refuses connections) is
  given back to the connection window, so a long-lived connection keeps uploading;
- a `host` field with no `:authority` and many cookie crumbs is routed by its host (the
  crumbs once moved the arena the host was read from: a use after free under ASan);
- a HEADERS frame on a stream id lower than one already used closes the connection with
  GOAWAY PROTOCOL_ERROR (RFC 9113 §5.1.1), while trailers on an open stream are served.

Error codes (RFC 9113 §7): 0 NO_ERROR, 1 PROTOCOL_ERROR, 8 CANCEL.
"""

import json
import socket
import threading
import time

import pytest

import helpers
import upstream_util
from test_20_h2 import (DATA, END_HEADERS, END_STREAM, HEADERS, PROTOCOL_ERROR, WINDOW_UPDATE,
                        RawH2, black_hole, frame)  # noqa: F401 (a fixture)

pytest.importorskip("h2.connection")

SETTINGS_INITIAL_WINDOW_SIZE = 0x4


def _apps(cluster="blue"):
    return [{"name": "web", "hosts": ["*"], "weights": {cluster: 1}}]


def _odd_cluster(backends, addr):
    """Apps and clusters for a test whose cluster `blue` is a special backend at `addr`:
    /still-serving goes to the real green backend."""
    apps = [{"name": "check", "hosts": ["*"], "paths": ["/still-serving"],
             "weights": {"green": 1}},
            {"name": "web", "hosts": ["*"], "paths": ["/"], "weights": {"blue": 1}}]
    return apps, {"blue": [addr], "green": [backends.green.addr]}


def _no_asan_report(p):
    log = p.log_text()
    assert "AddressSanitizer" not in log and "runtime error:" not in log, log[-4000:]
    assert p.proc.poll() is None, "switchyard exited:\n" + log[-4000:]


def _still_serves(p):
    r = helpers.curl1(p.url + "/still-serving", "--http2-prior-knowledge", timeout=10)
    assert r.status == 200 and r.info.get("http_version") == "2", r
    _no_asan_report(p)


def _closed_port():
    """A loopback port nobody listens on (connects are refused)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class HoldingBackend:
    """A raw HTTP/1.1 backend on a thread: reads a request head, then either holds the
    connection without reading or answering (`mode="hold"`), or answers 200 with an endless
    body, written until the socket fails (`mode="flood"`). `closed` is set once the proxy
    closes the connection (seen as EOF, a reset or a failed write)."""

    def __init__(self, mode):
        self.mode = mode
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self.addr = "127.0.0.1:%d" % self.port
        self.heads = 0
        self.closed = threading.Event()
        self.halt = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        self.sock.settimeout(0.2)
        while not self.halt.is_set():
            try:
                conn, _ = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn):
        conn.settimeout(0.2)
        head = b""
        deadline = time.monotonic() + 60
        try:
            while b"\r\n\r\n" not in head and time.monotonic() < deadline:
                try:
                    piece = conn.recv(65536)
                except socket.timeout:
                    continue
                if not piece:
                    self.closed.set()
                    return
                head += piece
            self.heads += 1
            if self.mode == "flood":
                conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-length: 1073741824\r\n\r\n")
                block = b"x" * 65536
                while not self.halt.is_set() and time.monotonic() < deadline:
                    try:
                        conn.send(block)
                    except socket.timeout:
                        continue
                return
            # hold: never read the body, never answer. Unread bytes hide an EOF from recv, so
            # the close is seen in the kernel's table (the connection leaves ESTABLISHED).
            while not self.halt.is_set() and time.monotonic() < deadline:
                if not upstream_util.established_peers(self.port):
                    self.closed.set()
                    return
                self.halt.wait(0.05)  # polling /proc/net/tcp: there is no event for it
        except OSError:
            self.closed.set()
        finally:
            conn.close()

    def stop(self):
        self.halt.set()
        self.sock.close()
        self.thread.join(timeout=5)


@pytest.fixture
def holding_backend():
    started = []

    def start(mode):
        b = HoldingBackend(mode)
        started.append(b)
        return b

    yield start
    for b in started:
        b.stop()


def _settings_ready(c):
    assert c.read(lambda fr: c.server_settings() is not None, timeout=5), c.summary()


# -- item 1: per-stream deadlines -----------------------------------------------------------------

def test_silent_request_body_resets_the_stream_after_client_body(backends, proxy):
    p = proxy(_apps(), timeouts={"client_body": "1s"})
    c = RawH2(p.port)
    _settings_ready(c)
    # A POST whose body never comes: HEADERS without END_STREAM, then silence.
    c.headers(1, "/anything?silent-body", method="POST", end_stream=False)
    t0 = time.monotonic()
    # The backend has the head (the exchange reached it) before the clock matters.
    helpers.wait_for(lambda: backends.blue.saw("silent-body", "request"), 10,
                     "the backend to get the silent request's head")
    # Meanwhile another stream on the same connection is served.
    c.headers(3, "/anything?other-stream")
    assert c.read(c.done(3), timeout=10), c.summary()
    assert c.status(3) == 200 and c.body(3) == b"blue-1\n", c.summary()
    assert c.read(lambda fr: bool(c.resets(1)), timeout=15), \
        "the silent stream was not reset: %s" % c.summary()
    waited = time.monotonic() - t0
    helpers.measure("h2_reset_after_silent_body", "%.2f" % waited, "s", "client_body 1s")
    assert waited >= 0.8, "reset after %.2f s, before timeouts.client_body" % waited
    # Not at client_header (10s by default), whose timer was pending when the head ended.
    assert waited < 5, "reset after %.2f s, long after timeouts.client_body" % waited
    assert not c.goaways() and not c.closed, c.summary()
    # Its upstream connection was closed: the backend saw the body end short.
    helpers.wait_for(lambda: backends.blue.saw("silent-body", "body-abort"), 10,
                     "the backend to see the upstream connection closed")
    # The connection goes on.
    c.headers(5, "/anything?after-reset")
    assert c.read(c.done(5), timeout=10), c.summary()
    assert c.status(5) == 200, c.summary()
    c.close()
    _still_serves(p)


def test_client_body_longer_than_client_header_still_runs_its_full_time(backends, proxy):
    """The head's timer fires first (client_header 1s) on a stream whose head is complete: it
    must only look, and the silent body is reset at client_body (3s), on the same connection."""
    p = proxy(_apps(), timeouts={"client_header": "1s", "client_body": "3s"})
    c = RawH2(p.port)
    _settings_ready(c)
    c.headers(1, "/anything?silent-body-3s", method="POST", end_stream=False)
    t0 = time.monotonic()
    assert c.read(lambda fr: bool(c.resets(1)), timeout=15), \
        "the silent stream was not reset: %s" % c.summary()
    waited = time.monotonic() - t0
    helpers.measure("h2_reset_after_silent_body_past_client_header", "%.2f" % waited, "s",
                    "client_header 1s, client_body 3s")
    assert 2.5 <= waited < 8, "reset after %.2f s, not at timeouts.client_body" % waited
    assert not c.goaways() and not c.closed, c.summary()
    c.close()
    _still_serves(p)


def test_head_block_never_finished_closes_the_connection_after_client_header(backends, proxy):
    p = proxy(_apps(), timeouts={"client_header": "1s"})
    c = RawH2(p.port)
    _settings_ready(c)
    block = c.enc.encode([(":method", "GET"), (":scheme", "http"), (":path", "/anything"),
                          (":authority", "app.test")])
    # HEADERS without END_HEADERS: a CONTINUATION must follow, and never does.
    c.send(frame(HEADERS, END_STREAM, 1, block))
    t0 = time.monotonic()
    assert c.read(lambda fr: bool(c.goaways()), timeout=15) is not None, \
        "the connection stayed open: %s" % c.summary()
    assert time.monotonic() - t0 >= 0.8, c.summary()
    c.close()
    _still_serves(p)


def test_client_that_never_opens_its_window_is_reset_after_client_send(backends, proxy,
                                                                       holding_backend):
    flood = holding_backend("flood")
    apps, clusters = _odd_cluster(backends, flood.addr)
    p = proxy(apps, clusters=clusters,
              timeouts={"client_send": "1s", "client_body": "30s", "client_idle": "30s"})
    # 100 bytes of stream window, and never a WINDOW_UPDATE: the endless body stalls at once.
    c = RawH2(p.port, settings=[(SETTINGS_INITIAL_WINDOW_SIZE, 100)])
    _settings_ready(c)
    c.headers(1, "/endless")
    assert c.read(lambda fr: c.status(1) is not None, timeout=10), c.summary()
    t0 = time.monotonic()
    assert c.read(lambda fr: bool(c.resets(1)), timeout=15), \
        "the stalled stream was not reset: %s" % c.summary()
    waited = time.monotonic() - t0
    helpers.measure("h2_reset_after_shut_window", "%.2f" % waited, "s", "client_send 1s")
    assert waited >= 0.5, "reset after %.2f s, before timeouts.client_send" % waited
    assert len(c.body(1)) <= 100, len(c.body(1))
    assert not c.goaways() and not c.closed, c.summary()
    # The upstream connection is closed, not kept streaming into a full buffer.
    assert flood.closed.wait(10), "the backend's connection stayed open"
    c.close()
    _still_serves(p)


def test_stalled_reader_does_not_block_other_streams_of_its_connection(backends, proxy):
    p = proxy(_apps(), timeouts={"client_send": "1s"})
    c = RawH2(p.port, settings=[(SETTINGS_INITIAL_WINDOW_SIZE, 100)])
    _settings_ready(c)
    c.headers(1, "/bytes/1048576")
    assert c.read(lambda fr: c.status(1) is not None, timeout=10), c.summary()
    # Small answers fit the window and still come while stream 1 is stuck.
    c.headers(3, "/anything?beside-a-stalled-stream")
    assert c.read(c.done(3), timeout=10), c.summary()
    assert c.status(3) == 200 and c.body(3) == b"blue-1\n", c.summary()
    assert c.read(lambda fr: bool(c.resets(1)), timeout=15), c.summary()
    assert not c.goaways(), c.summary()
    c.close()
    _still_serves(p)


def test_upstream_response_runs_while_the_upload_makes_no_progress(backends, proxy,
                                                                   holding_backend):
    # The backend takes the head and then neither reads nor answers; the client sends part of
    # its body and stops. client_body is long, so only upstream_response can end it.
    hold = holding_backend("hold")
    apps, clusters = _odd_cluster(backends, hold.addr)
    p = proxy(apps, clusters=clusters,
              timeouts={"upstream_response": "2s", "client_body": "60s"})
    c = RawH2(p.port)
    _settings_ready(c)
    c.headers(1, "/upload", method="POST", end_stream=False)
    c.send(frame(DATA, 0, 1, b"u" * 1000))
    t0 = time.monotonic()
    assert c.read(c.done(1), timeout=20), \
        "upstream_response never ran while the upload was unfinished: %s" % c.summary()
    waited = time.monotonic() - t0
    helpers.measure("h2_504_after_stalled_upload_h1_cluster", "%.2f" % waited, "s",
                    "upstream_response 2s: one to two periods")
    assert waited >= 1.5, "ended after %.2f s, before timeouts.upstream_response" % waited
    assert c.status(1) == 504 or c.resets(1), c.summary()
    assert hold.closed.wait(10), "the backend's connection stayed open"
    c.close()
    _still_serves(p)


def test_upstream_response_runs_for_an_h2c_cluster_while_the_upload_makes_no_progress(
        backends, proxy, tmp_path):
    # nghttpd answers once the request is complete, and the upload never completes.
    if not upstream_util.NGHTTPD:
        pytest.skip("nghttpd not installed (Debian package nghttp2-server)")
    (tmp_path / "hello.txt").write_bytes(b"hello from nghttpd\n")
    peers = upstream_util.Peers(tmp_path)
    try:
        ng = peers.nghttpd(tmp_path)
        apps, clusters = _odd_cluster(backends, "127.0.0.1:%d" % ng.port)
        clusters["blue"] = {"endpoints": clusters["blue"], "protocol": "h2c"}
        # A stream's first check comes after upstream_connect + upstream_response.
        p = proxy(apps, clusters=clusters,
                  timeouts={"upstream_response": "2s", "upstream_connect": "1s",
                            "client_body": "60s"})
        c = RawH2(p.port)
        _settings_ready(c)
        c.headers(1, "/hello.txt", method="POST", end_stream=False)
        c.send(frame(DATA, 0, 1, b"u" * 1000))
        t0 = time.monotonic()
        assert c.read(c.done(1), timeout=20), \
            "upstream_response never ran while the upload was unfinished: %s" % c.summary()
        waited = time.monotonic() - t0
        helpers.measure("h2_504_after_stalled_upload_h2c_cluster", "%.2f" % waited, "s",
                        "upstream_connect 1s + one to two upstream_response periods of 2s")
        assert waited >= 1.5, "ended after %.2f s, before timeouts.upstream_response" % waited
        assert c.status(1) == 504 or c.resets(1), c.summary()
        c.close()
        _still_serves(p)
    finally:
        peers.stop_all()


# -- item 3: the connection window after early ends -----------------------------------------------

class CountingH2(RawH2):
    """RawH2 that counts the DATA it sends, to know its flow-control credit."""

    def __init__(self, port, stream_window):
        super().__init__(port)
        self.stream_window = stream_window  # the server's SETTINGS_INITIAL_WINDOW_SIZE
        self.sent = {0: 0}

    def data(self, sid, payload, end=False):
        self.send(frame(DATA, END_STREAM if end else 0, sid, payload))
        self.sent[sid] = self.sent.get(sid, 0) + len(payload)
        self.sent[0] += len(payload)

    def _updates(self, sid):
        return sum(int.from_bytes(f[3][:4], "big") & 0x7FFFFFFF
                   for f in self.frames if f[0] == WINDOW_UPDATE and f[2] == sid)

    def credit(self, sid):
        """The smaller of the connection's and the stream's send windows."""
        conn = 65535 + self._updates(0) - self.sent[0]
        stream = self.stream_window + self._updates(sid) - self.sent.get(sid, 0)
        return min(conn, stream)


def test_dropped_upload_bytes_are_given_back_to_the_connection_window(backends, proxy,
                                                                     black_hole):
    # A 64 KiB connection window (16 KiB per stream x 4 streams). /hold goes to a cluster
    # whose connects hang: each upload's DATA waits in the proxy until the 502
    # (upstream_connect), and is dropped then. 12 such uploads drop three times the window.
    p = proxy([{"name": "hold", "hosts": ["*"], "paths": ["/hold"], "weights": {"down": 1}},
               {"name": "web", "hosts": ["*"], "paths": ["/"], "weights": {"blue": 1}}],
              clusters={"down": [black_hole], "blue": [backends.blue.addr]},
              limits={"buffer_bytes": 16384, "h2_max_streams": 4},
              timeouts={"upstream_connect": "1s"})
    c = CountingH2(p.port, 16384)
    _settings_ready(c)
    assert c.read(lambda fr: c._updates(0) > 0, timeout=5), c.summary()
    sid = 1
    for rnd in range(3):
        sids = []
        for i in range(4):
            n = min(c.credit(sid), 16384)
            assert n > 0, "no window left in round %d: %s" % (rnd, c.summary())
            block = c.enc.encode([(":method", "POST"), (":scheme", "http"),
                                  (":path", "/hold/%d" % sid), (":authority", "app.test")])
            c.send(frame(HEADERS, END_HEADERS, sid, block))
            c.data(sid, b"r" * n)
            sids.append(sid)
            sid += 2
        assert c.read(lambda fr: all(c.done(s)(fr) for s in sids), timeout=20), c.summary()
        assert all(c.status(s) == 502 for s in sids), c.summary()
    # An upload of 64 KiB on the same connection still completes: the connection window is
    # back (the proxy gives it back as the backend takes the body).
    body = b"k" * 65536
    block = c.enc.encode([(":method", "POST"), (":scheme", "http"), (":path", "/anything"),
                          (":authority", "app.test"), ("content-length", str(len(body)))])
    c.send(frame(HEADERS, END_HEADERS, sid, block))
    sent = 0
    deadline = time.monotonic() + 20
    while sent < len(body):
        assert time.monotonic() < deadline, \
            "upload stuck at %d of %d bytes (connection window %d): %s" % (
                sent, len(body), 65535 + c._updates(0) - c.sent[0], c.summary())
        credit = c.credit(sid)
        if credit <= 0:
            c.read(lambda fr: c.credit(sid) > 0, timeout=1)
            continue
        n = min(credit, 16384, len(body) - sent)
        c.data(sid, body[sent:sent + n], end=sent + n == len(body))
        sent += n
    assert c.read(c.done(sid), timeout=20), c.summary()
    assert c.status(sid) == 200 and b'"bytes": 65536' in c.body(sid), c.summary()
    c.close()
    _still_serves(p)


# -- item 5: host without :authority ------------------------------------------------------------

def test_host_without_authority_beside_many_cookie_crumbs_routes_by_host(backends, proxy):
    p = proxy([{"name": "crumbs", "hosts": ["crumbs.test"], "weights": {"blue": 1}},
               {"name": "rest", "hosts": ["*"], "weights": {"green": 1}}])
    c = RawH2(p.port)
    _settings_ready(c)
    # nghttp2 accepts a request with `host` and no `:authority`; joining the crumbs grows the
    # stream's arena past its capacity, so it moves.
    fields = [(":method", "GET"), (":scheme", "http"), (":path", "/echo-headers"),
              ("host", "crumbs.test")]
    fields += [("cookie", "crumb%03d=%s" % (i, "v" * 24)) for i in range(300)]
    c.send(frame(HEADERS, END_HEADERS | END_STREAM, 1, c.enc.encode(fields)))
    assert c.read(c.done(1), timeout=10), c.summary()
    _no_asan_report(p)
    assert c.status(1) == 200, c.summary()
    doc = json.loads(c.body(1))
    assert doc["backend"] == "blue-1", doc
    hdrs = {n.lower(): v for n, v in doc["headers"]}
    assert hdrs.get("host") == "crumbs.test", hdrs.get("host")
    assert hdrs.get("cookie", "").count("crumb") == 300, hdrs.get("cookie", "")[:200]
    c.close()
    _still_serves(p)


# -- item 6: stream ids ---------------------------------------------------------------------------

def test_headers_on_a_lower_stream_id_get_goaway_protocol_error(backends, proxy):
    p = proxy(_apps())
    for end_stream in (True, False):
        c = RawH2(p.port)
        _settings_ready(c)
        c.headers(5, "/anything?s5")
        assert c.read(c.done(5), timeout=10) and c.status(5) == 200, c.summary()
        # Stream 3 was never opened, and 5 was: 3 is no longer a new stream id.
        c.headers(3, "/anything?lower-id", method="GET" if end_stream else "POST",
                  end_stream=end_stream)
        c.read_until_closed(timeout=10)
        assert c.goaways() and c.goaways()[-1] == (5, PROTOCOL_ERROR), c.summary()
        assert c.status(3) is None, c.summary()
        c.close()
    assert not backends.blue.saw("lower-id")
    _still_serves(p)


def test_trailers_on_an_open_lower_stream_are_served(backends, proxy):
    p = proxy(_apps())
    c = RawH2(p.port)
    _settings_ready(c)
    c.headers(1, "/anything", method="POST", end_stream=False)
    c.send(frame(DATA, 0, 1, b"trailer-body"))
    c.headers(3, "/anything?s3")
    assert c.read(c.done(3), timeout=10) and c.status(3) == 200, c.summary()
    # Trailers for stream 1, now lower than 3 but still open.
    c.send(frame(HEADERS, END_HEADERS | END_STREAM, 1, c.enc.encode([("x-check", "1")])))
    assert c.read(c.done(1), timeout=10), c.summary()
    assert c.status(1) == 200 and not c.goaways(), c.summary()
    c.close()
    _still_serves(p)


def test_trailers_that_cross_our_reset_do_not_close_the_connection(backends, proxy):
    p = proxy([{"name": "web", "hosts": ["*"], "paths": ["/anything", "/still-serving"],
                "weights": {"blue": 1}}])
    c = RawH2(p.port)
    _settings_ready(c)
    # No app for this path: 404, and the unread request is reset once the answer is out.
    c.headers(1, "/nowhere", method="POST", end_stream=False)
    assert c.read(lambda fr: bool(c.resets(1)), timeout=10), c.summary()
    assert c.status(1) == 404, c.summary()
    c.headers(3, "/anything?s3")
    assert c.read(c.done(3), timeout=10) and c.status(3) == 200, c.summary()
    # The client's trailers were on their way: not a new stream below 3.
    c.send(frame(HEADERS, END_HEADERS | END_STREAM, 1, c.enc.encode([("x-check", "1")])))
    c.headers(5, "/anything?s5")
    assert c.read(c.done(5), timeout=10) and c.status(5) == 200, c.summary()
    assert not c.goaways(), c.summary()
    c.close()
    _still_serves(p)


# -- the same send rule for HTTP/1.1 ------------------------------------------------------------

def test_http11_client_that_does_not_read_is_closed_after_client_send(backends, proxy,
                                                                      holding_backend):
    flood = holding_backend("flood")
    apps, clusters = _odd_cluster(backends, flood.addr)
    p = proxy(apps, clusters=clusters,
              timeouts={"client_send": "1s", "client_body": "60s"})
    s = socket.create_connection(("127.0.0.1", p.port), timeout=10)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.sendall(helpers.get_request("/endless"))
    t0 = time.monotonic()
    # Nothing is read: the proxy's output fills, then it gives up on this client.
    assert flood.closed.wait(20), "the proxy kept the connection of a client that reads nothing"
    assert time.monotonic() - t0 >= 0.8
    helpers.wait_for(lambda: "client timed out writing" in p.log_text(), 10,
                     "the proxy to log the write timeout")
    s.close()
    _still_serves(p)
