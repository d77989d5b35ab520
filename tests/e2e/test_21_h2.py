# SPDX-License-Identifier: MIT
"""HTTP/2 from clients (issue 3): TLS with ALPN, h2c by prior knowledge on the HTTP/1.1 port,
one routing decision per stream, flow control as backpressure, protocol errors answered by the
protocol, and a graceful GOAWAY on SIGTERM. Real clients: curl, nghttp, h2load, and
python3-h2 for crafted frames."""

import hashlib
import json
import os
import signal
import socket
import struct
import subprocess
import threading
import time

import pytest

import helpers
from conftest import make_config
from helpers import CURL, measure

h2 = pytest.importorskip("h2.connection")
import h2.config  # noqa: E402
import h2.events  # noqa: E402
import h2.settings  # noqa: E402

ASAN = "asan" in os.environ.get("SWITCHYARD", "")
MIB = 1 << 20
GIB = 1 << 30
MAX_RSS_KIB = (768 if ASAN else 64) * 1024


@pytest.fixture(scope="module")
def cert(tmp_path_factory):
    d = tmp_path_factory.mktemp("tls")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout",
                    str(d / "server.key"), "-out", str(d / "server.pem"), "-days", "2",
                    "-subj", "/CN=localhost"], check=True, capture_output=True, timeout=60)
    return str(d / "server.pem"), str(d / "server.key")


def _apps(blue=90, green=10):
    return [{"name": "web", "hosts": ["*"], "weights": {"blue": blue, "green": green}}]


def _tls_proxy(proxy, backends, cert, apps=None, **kw):
    tls_port = helpers.free_port()
    doc_apps = apps or _apps()
    clusters = {"blue": {"endpoints": [backends.blue.addr]},
                "green": {"endpoints": [backends.green.addr]}}
    text = make_config(1, clusters, doc_apps, **kw).replace(
        "127.0.0.1:1", "127.0.0.1:@PORT@")
    text = text.replace("listen:\n", "listen:\n  - address: 127.0.0.1:%d\n    tls:\n"
                        "      cert: %s\n      key: %s\n" % (tls_port, cert[0], cert[1]), 1)
    p = proxy(config_text=text)
    return p, tls_port


def _curl(args, timeout=60):
    r = subprocess.run([CURL, "-sS", "--max-time", str(timeout)] + args, capture_output=True,
                       text=True, timeout=timeout + 10)
    assert r.returncode == 0, r.stderr
    return r.stdout


def _backend_lines(b):
    with open(b.log_path) as f:
        return sum(1 for _ in f)


class H2Client:
    """python3-h2 over a plain socket (h2c by prior knowledge)."""

    def __init__(self, port, validate=True):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        cfg = h2.config.H2Configuration(client_side=True, validate_inbound_headers=validate,
                                        validate_outbound_headers=validate,
                                        normalize_outbound_headers=validate)
        self.conn = h2.connection.H2Connection(config=cfg)
        self.conn.initiate_connection()
        self.flush()
        self.events = []
        self.closed = False

    def flush(self):
        data = self.conn.data_to_send()
        if data:
            self.sock.sendall(data)

    def request(self, path, headers=(), body=None, end=True, method=None):
        sid = self.conn.get_next_available_stream_id()
        method = method or ("POST" if body is not None else "GET")
        hdrs = [(":method", method), (":path", path),
                (":scheme", "http"), (":authority", "app.test")] + list(headers)
        self.conn.send_headers(sid, hdrs, end_stream=end and body is None)
        self.flush()
        if body is not None:
            self.send_body(sid, body, end)
        return sid

    def send_body(self, sid, body, end=True, timeout=60):
        """Sends within the flow-control window, waiting for WINDOW_UPDATEs. Returns the
        offset at which the proxy first made it wait (None if it never did)."""
        sent, stalled_at = 0, None
        deadline = time.monotonic() + timeout
        while sent < len(body):
            assert time.monotonic() < deadline, "upload did not finish in %d s" % timeout
            window = min(self.conn.local_flow_control_window(sid),
                         self.conn.max_outbound_frame_size)
            if window <= 0:
                if stalled_at is None:
                    stalled_at = sent
                self.pump(lambda evs: self.conn.local_flow_control_window(sid) > 0,
                          timeout=max(1, deadline - time.monotonic()))
                continue
            n = min(window, len(body) - sent)
            self.conn.send_data(sid, body[sent:sent + n])
            self.flush()
            sent += n
        if end:
            self.conn.end_stream(sid)
            self.flush()
        return stalled_at

    def pump(self, until, timeout=10):
        """Reads frames until until(events) is true or the connection closes."""
        deadline = time.monotonic() + timeout
        while not until(self.events):
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("events so far: %r" % self.events[-10:])
            self.sock.settimeout(left)
            try:
                data = self.sock.recv(65536)
            except (ConnectionResetError, socket.timeout) as e:
                if isinstance(e, socket.timeout):
                    raise TimeoutError("events so far: %r" % self.events[-10:])
                data = b""
            if not data:
                self.closed = True
                return
            for ev in self.conn.receive_data(data):
                self.events.append(ev)
                if isinstance(ev, h2.events.DataReceived):
                    self.conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
            self.flush()

    def response(self, sid, timeout=10):
        def done(evs):
            return any(isinstance(e, (h2.events.StreamEnded, h2.events.StreamReset)) and
                       e.stream_id == sid for e in evs)
        self.pump(done, timeout)
        headers, body = {}, b""
        for e in self.events:
            if isinstance(e, h2.events.ResponseReceived) and e.stream_id == sid:
                headers = {k.decode(): v.decode() for k, v in e.headers}
            elif isinstance(e, h2.events.DataReceived) and e.stream_id == sid:
                body += e.data
            elif isinstance(e, h2.events.StreamReset) and e.stream_id == sid:
                headers[":reset"] = str(int(e.error_code))
        return headers, body

    def goaway(self):
        for e in self.events:
            if isinstance(e, h2.events.ConnectionTerminated):
                return e
        return None

    def close(self):
        self.sock.close()


# -- clients and translation ---------------------------------------------------------------

def test_tls_alpn_serves_h2_and_http11(backends, proxy, cert):
    p, tls = _tls_proxy(proxy, backends, cert, apps=_apps(100, 0))
    out = _curl(["-k", "--http2", "-D", "-", "-o", "/dev/null", "-w", "%{http_version}",
                 "https://127.0.0.1:%d/" % tls])
    assert out.endswith("2") and "x-backend: blue-1" in out, out
    out = _curl(["-k", "--http1.1", "-w", "%{http_version}", "https://127.0.0.1:%d/" % tls])
    assert out == "blue-1\n1.1", out


def test_h2c_prior_knowledge_and_nghttp(backends, proxy):
    p = proxy(_apps(100, 0))
    out = _curl(["--http2-prior-knowledge", "-w", "%{http_version}", p.url + "/"])
    assert out == "blue-1\n2", out
    r = subprocess.run(["nghttp", "-v", p.url + "/"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    assert "blue-1" in r.stdout and ":status: 200" in r.stdout, r.stdout[-2000:]


def test_headers_are_translated_for_http11(backends, proxy, cert):
    p, tls = _tls_proxy(proxy, backends, cert, apps=_apps(100, 0))
    c = H2Client(p.port)
    sid = c.request("/echo-headers", [("cookie", "a=1"), ("cookie", "b=2"), ("x-custom", "v")])
    headers, body = c.response(sid)
    c.close()
    assert headers[":status"] == "200"
    assert all(k == k.lower() for k in headers), headers
    seen = json.loads(body)
    hdrs = [(k.lower(), v) for k, v in seen["headers"]]
    assert ("host", "app.test") in hdrs
    assert [v for k, v in hdrs if k == "cookie"] == ["a=1; b=2"]
    assert ("x-custom", "v") in hdrs and ("via", "2 switchyard") in hdrs
    assert not any(k in ("connection", "keep-alive", "transfer-encoding") for k, _ in hdrs)
    # Over TLS the upstream learns the client used https.
    out = _curl(["-k", "--http2", "https://127.0.0.1:%d/echo-headers" % tls])
    assert ["x-forwarded-proto", "https"] in [[k.lower(), v] for k, v in
                                               json.loads(out)["headers"]]


def test_post_without_content_length_arrives_intact(backends, proxy):
    p = proxy(_apps(100, 0))
    body = os.urandom(300000)
    c = H2Client(p.port)
    sid = c.request("/up", body=body)
    headers, resp = c.response(sid)
    c.close()
    assert headers[":status"] == "200"
    seen = json.loads(resp)
    assert seen["bytes"] == len(body) and seen["sha256"] == hashlib.sha256(body).hexdigest()


# -- volume and the split --------------------------------------------------------------------

def test_h2load_20000_requests_no_failure_and_exact_split(backends, proxy):
    p = proxy(_apps(90, 10))
    b0, g0 = _backend_lines(backends.blue), _backend_lines(backends.green)
    r = subprocess.run(["h2load", "-n", "20000", "-c", "10", "-m", "10", p.url + "/"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    line = [l for l in r.stdout.splitlines() if l.startswith("requests:")][0]
    assert "20000 succeeded, 0 failed, 0 errored, 0 timeout" in line, r.stdout
    rps = [l for l in r.stdout.splitlines() if l.startswith("finished in")][0]
    measure("h2load_20000_c10_m10", rps.split(",")[1].strip(), "", "python backends")
    helpers.sync_backends(p)
    blue = _backend_lines(backends.blue) - b0
    green = _backend_lines(backends.green) - g0
    # sync_backends sent a few more requests through the same schedule.
    assert blue + green >= 20000
    extra = blue + green - 20000
    assert abs(blue - 18000) <= extra + 1 and abs(green - 2000) <= extra + 1, (blue, green)


def test_1gib_upload_and_download_over_one_stream(backends, proxy, tmp_path):
    p = proxy(_apps(100, 0))
    path = tmp_path / "gib.bin"
    with open(path, "wb") as f:
        f.truncate(GIB)  # sparse zeros: cheap to make, still 1 GiB on the wire
    t0 = time.monotonic()
    out = _curl(["--http2-prior-knowledge", "-T", str(path), p.url + "/up"], timeout=180)
    seen = json.loads(out)
    assert seen["bytes"] == GIB, seen
    up_s = time.monotonic() - t0
    t0 = time.monotonic()
    out = _curl(["--http2-prior-knowledge", "-o", "/dev/null", "-w", "%{size_download} %{http_version}",
                 p.url + "/bytes/%d" % GIB], timeout=180)
    assert out == "%d 2" % GIB, out
    down_s = time.monotonic() - t0
    st = p.status()
    measure("h2_upload_1gib_seconds", "%.2f" % up_s, "s")
    measure("h2_download_1gib_seconds", "%.2f" % down_s, "s")
    measure("h2_1gib_proxy_vmhwm_kib", st["VmHWM"], "KiB", "peak RSS of switchyard")
    assert st["VmHWM"] < MAX_RSS_KIB, st


def test_slow_backend_stalls_the_upload_on_flow_control(backends, proxy):
    p = proxy(_apps(100, 0))
    before = p.status()["VmRSS"]
    body = b"z" * (4 * MIB)
    c = H2Client(p.port)
    c.conn.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 1 << 20})
    c.flush()
    sid = c.request("/slowread", end=False, method="POST")
    stalled_at = c.send_body(sid, body, timeout=90)  # the proxy holds the client back
    headers, resp = c.response(sid, timeout=90)
    c.close()
    assert headers.get(":status") == "200", headers
    assert json.loads(resp)["bytes"] == len(body)
    assert stalled_at is not None and stalled_at < 1 * MIB, stalled_at
    growth = p.status()["VmHWM"] - before
    measure("h2_slow_backend_upload_growth_kib", growth, "KiB", "4 MiB through /slowread, python-h2 client")
    assert growth < (256 if ASAN else 16) * 1024, growth


def test_slow_backend_curl_upload_holds_memory_flat(backends, proxy, tmp_path):
    p = proxy(_apps(100, 0))
    before = p.status()["VmRSS"]
    path = tmp_path / "16m.bin"
    with open(path, "wb") as f:
        f.truncate(16 * MIB)
    out = _curl(["--http2-prior-knowledge", "-T", str(path), p.url + "/slowread"], timeout=90)
    assert json.loads(out)["bytes"] == 16 * MIB
    growth = p.status()["VmHWM"] - before
    measure("h2_slow_backend_curl_upload_growth_kib", growth, "KiB", "16 MiB through /slowread")
    assert growth < (256 if ASAN else 16) * 1024, growth


# -- protocol errors --------------------------------------------------------------------------

def _still_serves(p):
    assert _curl(["--http2-prior-knowledge", p.url + "/"]) in ("blue-1\n", "green-1\n")


def _frames(sock, timeout=5):
    """Reads raw frames until the peer closes: [(type, flags, stream, payload)]."""
    sock.settimeout(timeout)
    buf = b""
    try:
        while True:
            d = sock.recv(65536)
            if not d:
                break
            buf += d
    except (socket.timeout, ConnectionResetError):
        pass
    out = []
    while len(buf) >= 9:
        ln = int.from_bytes(buf[:3], "big")
        typ, flags = buf[3], buf[4]
        sid = int.from_bytes(buf[5:9], "big") & 0x7FFFFFFF
        out.append((typ, flags, sid, buf[9:9 + ln]))
        buf = buf[9 + ln:]
    return out


def test_invalid_preface_gets_goaway_or_close(backends, proxy, cert):
    p, tls = _tls_proxy(proxy, backends, cert, apps=_apps(100, 0))
    s = socket.create_connection(("127.0.0.1", p.port), timeout=5)
    s.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x04\x99garbage-frame-bytes")
    frames = _frames(s)
    s.close()
    goaways = [f for f in frames if f[0] == 7]
    assert goaways, frames
    code = struct.unpack(">I", goaways[0][3][4:8])[0]
    assert code == 1, code  # PROTOCOL_ERROR
    # An HTTP/1.1 request after ALPN chose h2 is not an HTTP/2 preface.
    import ssl
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.set_alpn_protocols(["h2"])
    t = ctx.wrap_socket(socket.create_connection(("127.0.0.1", tls), timeout=5))
    assert t.selected_alpn_protocol() == "h2"
    t.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    t.settimeout(5)
    data = b""
    try:
        while True:
            d = t.recv(65536)
            if not d:
                break
            data += d
    except (socket.timeout, ConnectionResetError, ssl.SSLError):
        pass
    t.close()
    assert b"HTTP/1.1 200" not in data
    _still_serves(p)


def test_rapid_reset_flood_gets_goaway(backends, proxy):
    p = proxy(_apps(100, 0))
    c = H2Client(p.port)
    for _ in range(1000):
        sid = c.conn.get_next_available_stream_id()
        c.conn.send_headers(sid, [(":method", "GET"), (":path", "/sleep/1"), (":scheme", "http"),
                                  (":authority", "app.test")])
        c.conn.reset_stream(sid)
        try:
            c.flush()
        except (BrokenPipeError, ConnectionResetError):
            break
    try:
        c.pump(lambda evs: any(isinstance(e, h2.events.ConnectionTerminated) for e in evs),
               timeout=10)
    except Exception:
        pass
    g = c.goaway()
    c.close()
    assert g is not None, "no GOAWAY after 1000 HEADERS+RST_STREAM pairs"
    assert int(g.error_code) in (0xb, 0x2), g  # ENHANCE_YOUR_CALM (or INTERNAL_ERROR)
    _still_serves(p)


def test_oversized_header_list_gets_431(backends, proxy):
    p = proxy(_apps(100, 0))
    c = H2Client(p.port)
    sid = c.request("/", [("x-big", "a" * 40000)])
    headers, body = c.response(sid)
    assert headers.get(":status") == "431", headers
    sid = c.request("/")  # the connection goes on
    headers, body = c.response(sid)
    c.close()
    assert headers.get(":status") == "200" and body == b"blue-1\n"


def test_data_beyond_the_window_is_a_flow_control_error(backends, proxy):
    # A cluster whose accept queue is full: the upstream connect hangs, so nothing takes the
    # stream's body and its window is never reopened.
    hole = socket.socket()
    hole.bind(("127.0.0.1", 0))
    hole.listen(0)
    fillers = []
    for _ in range(3):
        f = socket.socket()
        f.setblocking(False)
        f.connect_ex(hole.getsockname())
        fillers.append(f)
    time.sleep(0.1)
    clusters = {"blue": ["127.0.0.1:%d" % hole.getsockname()[1]], "green": [backends.green.addr]}
    p = proxy([{"name": "web", "hosts": ["*"], "paths": ["/"], "weights": {"blue": 1}},
               {"name": "ok", "hosts": ["*"], "paths": ["/ok"], "weights": {"green": 1}}],
              clusters=clusters, timeouts={"upstream_connect": "10s"})
    c = H2Client(p.port)
    sid = c.request("/up", end=False, method="POST")
    # Ignore the window: 160 KiB of DATA on a stream whose window is 64 KiB (hand-made frames).
    payload = b"x" * 16384
    frame = len(payload).to_bytes(3, "big") + b"\x00\x00" + sid.to_bytes(4, "big") + payload
    try:
        c.sock.sendall(frame * 10)
    except (BrokenPipeError, ConnectionResetError):
        pass
    frames = _frames(c.sock, timeout=3)
    c.close()
    for f in fillers:
        f.close()
    hole.close()
    errs = [struct.unpack(">I", f[3][:4])[0] for f in frames if f[0] == 3 and f[2] == sid]
    errs += [struct.unpack(">I", f[3][4:8])[0] for f in frames if f[0] == 7]
    assert 3 in errs, frames  # FLOW_CONTROL_ERROR, as RST_STREAM or GOAWAY
    assert _curl(["--http2-prior-knowledge", p.url + "/ok"]) == "green-1\n"


# -- routing per stream, shutdown -----------------------------------------------------------

def _rewrite(p, backends, apps, generation):
    clusters = {"blue": {"endpoints": [backends.blue.addr]},
                "green": {"endpoints": [backends.green.addr]}}
    tmp = p.config + ".tmp"
    with open(tmp, "w") as f:
        f.write(make_config(p.port, clusters, apps))
    os.rename(tmp, p.config)
    want = "generation %d published" % generation
    for _ in range(500):  # bounded: 5 s
        if want in p.log_text():
            return
        time.sleep(0.01)
    raise AssertionError("no %r in:\n%s" % (want, p.log_text()))


def test_weight_change_applies_to_the_next_stream_of_the_same_connection(backends, proxy):
    p = proxy(_apps(100, 0))
    c = H2Client(p.port)
    _, body = c.response(c.request("/"))
    assert body == b"blue-1\n"
    _rewrite(p, backends, _apps(0, 100), 2)
    _, body = c.response(c.request("/"))
    c.close()
    assert body == b"green-1\n"


def test_sigterm_sends_goaway_and_lets_streams_finish(backends, proxy):
    p = proxy(_apps(100, 0))
    c = H2Client(p.port)
    sid = c.request("/sleep/2")
    time.sleep(0.3)  # the request must be in flight at the backend before the signal
    p.proc.send_signal(signal.SIGTERM)
    # Raw frames (python-h2 refuses frames after a GOAWAY that RFC 9113 §6.8 allows).
    frames = _frames(c.sock, timeout=15)
    c.close()
    goaways = [f for f in frames if f[0] == 7]
    assert goaways, frames
    last_sid = int.from_bytes(goaways[0][3][:4], "big") & 0x7FFFFFFF
    code = struct.unpack(">I", goaways[0][3][4:8])[0]
    assert code == 0 and last_sid >= sid, (code, last_sid)
    data = b"".join(f[3] for f in frames if f[0] == 0 and f[2] == sid)
    ended = any(f[0] in (0, 1) and f[2] == sid and f[1] & 0x1 for f in frames)
    assert data == b"blue-1\n" and ended, frames
    assert not any(f[0] == 3 and f[2] == sid for f in frames)  # not reset
    assert p.proc.wait(timeout=15) == 0
    p.stopped = True


def test_bad_certificate_is_reported_by_check_with_its_position(backends, tmp_path):
    from conftest import SWITCHYARD
    bad = tmp_path / "bad.pem"
    bad.write_text("-----BEGIN CERTIFICATE-----\nnot a certificate\n-----END CERTIFICATE-----\n")
    cfg = tmp_path / "sy.yaml"
    cfg.write_text("listen:\n  - address: 127.0.0.1:1\n    tls: {cert: bad.pem, key: bad.pem}\n"
                   "clusters:\n  blue: {endpoints: [%s]}\n"
                   "apps:\n  - {name: web, hosts: ['*'], weights: {blue: 1}}\n"
                   % backends.blue.addr)
    r = subprocess.run([SWITCHYARD, "-t", "-c", str(cfg)], capture_output=True, text=True,
                       timeout=30)
    assert r.returncode == 1, r
    assert r.stderr.startswith("%s:3:10: listener 127.0.0.1:1: " % cfg), r.stderr
    assert "bad.pem" in r.stderr
