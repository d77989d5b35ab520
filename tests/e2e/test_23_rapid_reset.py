# SPDX-License-Identifier: MIT
"""Rapid reset toward the clusters (issue #22): a stream the client resets right after its
HEADERS must not cost a connection to the cluster. The cluster here is a small HTTP/1.1
server that counts the connections it accepts; the pool is warmed with one ordinary request
first, so every connection beyond that one was opened for a stream that was already gone.
Then a client that resets its requests after they went to the cluster (HEADERS and
RST_STREAM in separate reads) is closed with GOAWAY(ENHANCE_YOUR_CALM) after
limits.h2_early_resets of them. Bounded: 500 streams over 5 connections, 60 slow pairs."""

import socket
import threading
import time

import pytest

import helpers
from upstream_util import H2Client

pytest.importorskip("h2.connection")
import h2.events  # noqa: E402
import h2.exceptions  # noqa: E402

CANCEL, ENHANCE_YOUR_CALM = 0x8, 0xB


class CountingBackend(threading.Thread):
    """HTTP/1.1 keep-alive server answering every request `200 ok`; counts accepted
    connections and requests."""

    def __init__(self):
        super().__init__(daemon=True)
        self.lsock = socket.socket()
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(1024)
        self.lsock.settimeout(0.2)
        self.port = self.lsock.getsockname()[1]
        self.addr = "127.0.0.1:%d" % self.port
        self.accepted = 0
        self.requests = 0
        self.paths = []
        self.lock = threading.Lock()
        self.stopping = False

    def run(self):
        while not self.stopping:
            try:
                s, _ = self.lsock.accept()
            except (socket.timeout, TimeoutError):
                continue
            except OSError:
                return
            with self.lock:
                self.accepted += 1
            threading.Thread(target=self.serve, args=(s,), daemon=True).start()

    def serve(self, s):
        s.settimeout(10)
        buf = b""
        try:
            while True:
                while b"\r\n\r\n" not in buf:
                    d = s.recv(65536)
                    if not d:
                        return
                    buf += d
                head, buf = buf.split(b"\r\n\r\n", 1)  # GET only: no body
                path = head.split(b" ", 2)[1]
                with self.lock:
                    self.requests += 1
                    self.paths.append(path.decode(errors="replace"))
                if path.startswith(b"/slow"):
                    time.sleep(2)  # the client resets before the answer
                s.sendall(b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\nok\n")
        except OSError:
            pass
        finally:
            s.close()

    def stop(self):
        self.stopping = True
        self.lsock.close()
        self.join(timeout=5)


@pytest.fixture
def counting():
    b = CountingBackend()
    b.start()
    yield b
    b.stop()


def _start(proxy, counting, limits=None):
    clusters = {"blue": [counting.addr], "green": [counting.addr]}
    apps = [{"name": "web", "hosts": ["*"], "weights": {"blue": 100, "green": 0}}]
    return proxy(apps=apps, clusters=clusters, limits=limits, workers=1)


def _warm(p, counting):
    r = helpers.curl1(p.url + "/warm", "--http2-prior-knowledge", timeout=10)
    assert r.status == 200 and r.body == b"ok\n", r
    helpers.wait_for(lambda: counting.accepted >= 1, 5, "the warming connection")
    return counting.accepted


def _pump(c, until, timeout):
    """Reads events until `until(c, events)` is true, the connection closes, or `timeout`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not c.closed:
        if until(c, c.events(0.1)):
            return True
    return False


def _get(c, path, timeout=10):
    """One GET on client `c`: its status (None if it was reset or not answered)."""
    sid = c.request(path)
    got = {}

    def done(c, evs):
        for e in evs:
            if isinstance(e, h2.events.ResponseReceived) and e.stream_id == sid:
                got["status"] = int(dict(e.headers)[":status"])
            if isinstance(e, h2.events.DataReceived) and e.stream_id == sid:
                c.ack(sid, e.flow_controlled_length)
            if isinstance(e, (h2.events.StreamEnded, h2.events.StreamReset)) and \
                    e.stream_id == sid:
                return True
        return False
    _pump(c, done, timeout)
    return got.get("status")


def _headers(sid, path):
    return sid, [(":method", "GET"), (":scheme", "http"), (":path", path),
                 (":authority", "app.test")]


def test_headers_and_rst_pairs_open_no_cluster_connection(proxy, counting):
    p = _start(proxy, counting)
    warm = _warm(p, counting)
    assert warm == 1, warm
    sent_total = 0
    for _ in range(5):
        c = H2Client(p.port)
        sent = 0
        try:
            for _batch in range(10):
                for _ in range(10):
                    sid = c.conn.get_next_available_stream_id()
                    c.conn.send_headers(*_headers(sid, "/rapid-reset"))
                    c.conn.reset_stream(sid, error_code=CANCEL)
                    sent += 1
                c.flush()  # ten HEADERS + RST_STREAM pairs per write
        except (BrokenPipeError, ConnectionResetError, h2.exceptions.ProtocolError):
            pass
        # The proxy has read everything once it answers a PING sent after the pairs.
        try:
            c.conn.ping(b"12345678")
            c.flush()
            _pump(c, lambda c, evs: any(isinstance(e, h2.events.PingAckReceived) for e in evs)
                  or c.goaway is not None, 10)
        except (OSError, h2.exceptions.ProtocolError):
            pass
        c.close()
        sent_total += sent
    assert sent_total >= 400, sent_total
    r = helpers.curl1(p.url + "/after", "--http2-prior-knowledge", timeout=10)
    assert r.status == 200 and r.body == b"ok\n", r
    time.sleep(0.3)  # a connection opened for a reset stream would be accepted by now
    extra = counting.accepted - warm
    assert extra == 0, ("%d HEADERS+RST_STREAM pairs made the cluster accept %d connections "
                        "beyond the warm one (requests seen: %r)"
                        % (sent_total, extra, counting.paths))


def test_requests_reset_after_they_reached_the_cluster_get_enhance_your_calm(proxy, counting):
    # nghttp2's own rate limit is raised out of the way: only our count can end this.
    p = _start(proxy, counting, limits={"h2_reset_rate": 1000, "h2_early_resets": 20})
    _warm(p, counting)
    c = H2Client(p.port)
    sent = 0
    try:
        for _ in range(60):
            if c.goaway is not None or c.closed:
                break
            sid = c.conn.get_next_available_stream_id()
            c.conn.send_headers(*_headers(sid, "/slow-reset"), end_stream=True)
            c.flush()
            # Let the proxy take the HEADERS alone and hand the request on (or, past the
            # limit, answer the last reset with GOAWAY).
            deadline = time.monotonic() + 5
            while counting.requests < sent + 2 and c.goaway is None and not c.closed and \
                    time.monotonic() < deadline:
                c.events(0.01)
            if c.goaway is not None or c.closed:
                break
            assert counting.requests >= sent + 2, "request %d never reached the cluster" % (
                sent + 1)
            c.conn.reset_stream(sid, error_code=CANCEL)
            c.flush()
            sent += 1
            c.events(0.005)
    except (BrokenPipeError, ConnectionResetError, h2.exceptions.ProtocolError, OSError):
        pass
    try:
        _pump(c, lambda c, evs: c.goaway is not None, 5)
    except (OSError, h2.exceptions.ProtocolError):
        pass
    c.close()
    assert c.goaway is not None, "no GOAWAY after %d requests reset at the cluster" % sent
    assert c.goaway.error_code == ENHANCE_YOUR_CALM, c.goaway
    assert 20 <= sent <= 25, sent
    assert helpers.log_has(p, "ENHANCE_YOUR_CALM") or helpers.log_has(p, "early resets", 0)
    r = helpers.curl1(p.url + "/after", "--http2-prior-knowledge", timeout=10)
    assert r.status == 200, r


def test_a_client_that_rarely_resets_is_not_penalised(proxy, counting):
    p = _start(proxy, counting, limits={"h2_early_resets": 5})
    c = H2Client(p.port)
    # 40 complete requests, then 10 reset after they reached the cluster: 10 of 50 is not
    # more than half, so the connection goes on.
    for i in range(40):
        assert _get(c, "/ok-%d" % i) == 200
    for i in range(10):
        before = counting.requests
        sid = c.request("/slow-cancel-%d" % i)
        helpers.wait_for(lambda: counting.requests > before, 5, "the request at the cluster")
        c.conn.reset_stream(sid, error_code=CANCEL)
        c.flush()
        c.events(0.01)
    status = _get(c, "/still")
    c.close()
    assert c.goaway is None and status == 200, (c.goaway, status)
