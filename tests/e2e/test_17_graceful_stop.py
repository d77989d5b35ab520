# SPDX-License-Identifier: MIT
"""Graceful stop on SIGTERM (issue #18): /readyz turns 503 at once, the listeners keep accepting
for `shutdown.delay`, then they close, idle keep-alive connections close, HTTP/1.1 answers carry
`Connection: close`, what is in flight finishes within `shutdown.grace` and what is left then
is cut. A second SIGTERM stops at once. Real curl and raw sockets against the real binary and
the test backend on loopback."""

import http.client
import signal
import socket
import subprocess
import threading
import time
import uuid

import helpers
from helpers import Raw, free_port, get_request

DOWNLOAD = 40 * 1000 * 1000  # far more than loopback's socket buffers hold


def admin_extra(hport, delay, grace):
    return {"admin": {"http": "127.0.0.1:%d" % hport},
            "shutdown": {"delay": delay, "grace": grace}}


def readyz(hport):
    c = http.client.HTTPConnection("127.0.0.1", hport, timeout=5)
    try:
        c.request("GET", "/readyz")
        return c.getresponse().status
    finally:
        c.close()


def slow_download(port, rate, token, out):
    """curl of DOWNLOAD bytes at `rate` (curl's --limit-rate) on its own connection; appends
    (curl's exit status, bytes received, seconds) to `out`."""
    t0 = time.monotonic()
    p = subprocess.run([helpers.CURL, "-sS", "--max-time", "60", "--limit-rate", rate, "-o", "-",
                        "http://127.0.0.1:%d/bytes/%d?t=%s" % (port, DOWNLOAD, token)],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=70)
    out.append((p.returncode, len(p.stdout), time.monotonic() - t0))


def start_download(p, rate):
    out = []
    token = uuid.uuid4().hex
    t = threading.Thread(target=slow_download, args=(p.port, rate, token, out))
    t.start()
    # In flight once the backend has the request (its log line comes with the head).
    helpers.wait_for(lambda: p.backends.blue.saw(token), 5, "the download started")
    return t, out


def refused(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return False
    except ConnectionRefusedError:
        return True


def test_term_readyz_at_once_serves_through_the_delay_then_drains(proxy, backends):
    hport = free_port()
    p = proxy(extra=admin_extra(hport, "2s", "20s"))
    p.backends = backends
    # The start-up line comes once the listeners accept; /readyz turns 200 once every worker's
    # loop has turned, a moment later.
    helpers.wait_for(lambda: readyz(hport) == 200, 5, "/readyz 200")
    idle = Raw(p.port)  # a keep-alive connection with nothing in flight when the drain begins
    idle.send(get_request("/anything"))
    assert idle.read_response().status == 200
    busy = Raw(p.port)  # its answer is written after the delay: it must say close
    dl, dl_out = start_download(p, "8M")

    t_term = time.monotonic()
    p.proc.send_signal(signal.SIGTERM)
    helpers.wait_for(lambda: readyz(hport) == 503, 2, "/readyz 503", interval=0.002)
    assert time.monotonic() - t_term < 0.1, "/readyz took %.3f s" % (time.monotonic() - t_term)

    # The delay: new connections are accepted and served as before.
    served = 0
    while time.monotonic() - t_term < 1.4:
        r = helpers.curl1(p.url + "/anything", timeout=5)
        assert r.status == 200, r
        served += 1
    assert served >= 3
    busy.send(get_request("/sleep/1.2"))

    # Then the listeners close (no later than a moment after the delay) ...
    helpers.wait_for(lambda: refused(p.port), 3, "listeners closed", interval=0.02)
    assert time.monotonic() - t_term >= 1.9, "closed after %.2f s" % (time.monotonic() - t_term)
    # ... the idle connection is closed, the answer in flight says close and is whole ...
    assert idle.closed(timeout=2) is True
    r = busy.read_response()
    assert r.status == 200 and (r.header("connection") or "").lower() == "close", r
    assert busy.closed(timeout=2) is True
    # ... and the download in flight finishes; then the process exits 0.
    dl.join(30)
    assert dl_out and dl_out[0][0] == 0 and dl_out[0][1] == DOWNLOAD, dl_out
    assert dl_out[0][2] > 2.5  # it really ran past the delay
    assert p.wait_exit(10) == 0
    log = p.log_text()
    assert "stopping (/readyz 503; accepting for 2000 ms more" in log
    assert "listeners closed: draining (at most 20000 ms)" in log


def test_grace_cuts_what_still_runs(proxy, backends):
    hport = free_port()
    p = proxy(extra=admin_extra(hport, "300ms", "1s"))
    p.backends = backends
    dl, dl_out = start_download(p, "2M")  # 20 s of transfer: far beyond the grace
    t_term = time.monotonic()
    p.proc.send_signal(signal.SIGTERM)
    assert p.wait_exit(10) == 0
    took = time.monotonic() - t_term
    assert 1.2 <= took < 4, "exited %.2f s after TERM" % took
    dl.join(10)
    assert dl_out and dl_out[0][0] != 0 and dl_out[0][1] < DOWNLOAD, dl_out
    assert "drain timeout, closing 1 connections" in p.log_text()


def test_second_term_stops_at_once(proxy, backends):
    hport = free_port()
    p = proxy(extra=admin_extra(hport, "2s", "30s"))
    p.backends = backends
    dl, dl_out = start_download(p, "2M")
    p.proc.send_signal(signal.SIGTERM)
    helpers.wait_for(lambda: readyz(hport) == 503, 2, "/readyz 503", interval=0.002)
    t0 = time.monotonic()
    p.proc.send_signal(signal.SIGTERM)
    assert p.wait_exit(5) == 1
    assert time.monotonic() - t0 < 1.0
    dl.join(10)
    assert dl_out and dl_out[0][1] < DOWNLOAD
    assert "second signal: stopping now" in p.log_text()


class H2c:
    """An HTTP/2 client with prior knowledge (python h2) on one connection."""

    def __init__(self, port):
        import h2.config
        import h2.connection
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        self.conn.initiate_connection()
        self.sock.sendall(self.conn.data_to_send())
        self.events = []

    def get(self, path):
        sid = self.conn.get_next_available_stream_id()
        self.conn.send_headers(sid, [(":method", "GET"), (":path", path), (":scheme", "http"),
                                     (":authority", "app.test")], end_stream=True)
        self.sock.sendall(self.conn.data_to_send())
        return sid

    def pump(self, until, timeout=5):
        """Reads until until(events) is true; returns the time it became true."""
        deadline = time.monotonic() + timeout
        while not until(self.events):
            self.sock.settimeout(max(deadline - time.monotonic(), 0.01))
            data = self.sock.recv(65536)
            if not data:
                raise EOFError("closed; events %r" % self.events)
            for ev in self.conn.receive_data(data):
                self.events.append((time.monotonic(), ev))
            self.sock.sendall(self.conn.data_to_send())
        return time.monotonic()


def test_h2_client_is_served_through_the_delay_then_gets_goaway(proxy, backends):
    import h2.events
    hport = free_port()
    p = proxy(extra=admin_extra(hport, "1500ms", "10s"))
    c = H2c(p.port)
    sid = c.get("/anything")
    def ended(evs):
        return any(isinstance(e, h2.events.StreamEnded) and e.stream_id == sid for _, e in evs)

    c.pump(ended)
    t_term = time.monotonic()
    p.proc.send_signal(signal.SIGTERM)
    helpers.wait_for(lambda: readyz(hport) == 503, 2, "/readyz 503", interval=0.002)
    sid = c.get("/anything")  # during the delay: served on the same connection
    c.pump(ended)
    assert not any(isinstance(e, h2.events.ConnectionTerminated) for _, e in c.events)
    t_goaway = c.pump(lambda evs: any(isinstance(e, h2.events.ConnectionTerminated)
                                      for _, e in evs), timeout=5)
    assert t_goaway - t_term >= 1.4, "GOAWAY %.2f s after TERM" % (t_goaway - t_term)
    goaway = [e for _, e in c.events if isinstance(e, h2.events.ConnectionTerminated)][0]
    assert goaway.error_code == 0 and goaway.last_stream_id == sid, goaway
    assert p.wait_exit(10) == 0


def test_tunnel_is_served_through_the_drain_and_cut_at_the_grace(proxy):
    from test_70_websocket import WsServer
    ws = WsServer("blue-ws")
    try:
        hport = free_port()
        p = proxy(clusters={"blue": ["127.0.0.1:%d" % ws.port]},
                  apps=[{"name": "ws", "hosts": ["*"], "weights": {"blue": 100}}],
                  extra=admin_extra(hport, "300ms", "1500ms"))
        c = Raw(p.port)
        c.send(b"GET /socket HTTP/1.1\r\nHost: app.test\r\nUpgrade: websocket\r\n"
               b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
               b"Sec-WebSocket-Version: 13\r\n\r\n")
        assert c.read_response(head_request=True, skip_1xx=False).status == 101
        ping = b"\x89\x84abcd" + bytes(x ^ y for x, y in zip(b"ping", b"abcd"))  # masked
        t_term = time.monotonic()
        p.proc.send_signal(signal.SIGTERM)
        # The tunnel still carries bytes after the listeners closed (a WebSocket PING is
        # answered with a PONG by the server behind it) ...
        helpers.wait_for(lambda: refused(p.port), 3, "listeners closed", interval=0.02)
        c.send(ping)
        c._fill(time.monotonic() + 3)
        assert c.buf[:1] == b"\x8a", c.buf  # PONG
        c.buf = b""
        # ... and is cut at the grace, after which the process exits 0.
        assert c.closed(timeout=5) is True
        took = time.monotonic() - t_term
        assert 1.6 <= took < 3.5, "tunnel cut %.2f s after TERM" % took
        assert p.wait_exit(10) == 0
    finally:
        ws.stop()
