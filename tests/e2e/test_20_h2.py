# SPDX-License-Identifier: MIT
"""HTTP/2 from clients (issue 3), end to end.

Real clients first: curl --http2 over TLS (ALPN h2) and --http1.1 on the same TLS port (ALPN
http/1.1), curl --http2-prior-knowledge and HTTP/1.1 on the cleartext port, nghttp, and h2load
for volume (20,000 requests over 10 connections x 10 streams, the 90/10 split exact). Then
python3-h2 for what the tools cannot show: the head the HTTP/1.1 upstream gets, bodies without
content-length, an upload held back by flow control, and per-stream routing across a reload on
one connection. Crafted frames (RawH2 below: exact bytes out, every frame in) for the protocol's
answers: invalid prefaces, a rapid-reset flood, an oversized header list, DATA beyond the
window, a CONTINUATION flood, too many streams, idle and SIGTERM GOAWAYs. Each crafted case ends
with another client being served.

Error codes (RFC 9113 §7): 0 NO_ERROR, 1 PROTOCOL_ERROR, 2 INTERNAL_ERROR,
3 FLOW_CONTROL_ERROR, 7 REFUSED_STREAM, 8 CANCEL.
"""

import hashlib
import json
import os
import random
import re
import signal
import socket
import ssl
import struct
import subprocess
import time

import pytest

import helpers
from conftest import SWITCHYARD
from helpers import CURL, measure

h2 = pytest.importorskip("h2.connection")
import h2.config  # noqa: E402
import h2.errors  # noqa: E402
import h2.events  # noqa: E402
import h2.exceptions  # noqa: E402
import h2.settings  # noqa: E402
import hpack  # noqa: E402  (python3-hpack, a dependency of python3-h2)

ASAN = helpers.is_asan(SWITCHYARD)
KIB = 1 << 10
MIB = 1 << 20
GIB = 1 << 30
# Peak RSS allowed for the proxy around 1 GiB transfers, and growth allowed while a slow
# backend holds an upload (ASan's quarantine and shadow memory need far more).
MAX_RSS_KIB = int(os.environ.get("SY_MAX_RSS_MIB", "768" if ASAN else "64")) * KIB
MAX_SLOW_GROWTH_KIB = (256 if ASAN else 4) * KIB
PATTERN = bytes(range(256)) * 256  # backend.py's /bytes pattern (64 KiB)

NO_ERROR, PROTOCOL_ERROR, INTERNAL_ERROR, FLOW_CONTROL_ERROR = 0x0, 0x1, 0x2, 0x3
REFUSED_STREAM, CANCEL = 0x7, 0x8
DATA, HEADERS, RST_STREAM, SETTINGS, PING, GOAWAY, WINDOW_UPDATE, CONTINUATION = \
    0x0, 0x1, 0x3, 0x4, 0x6, 0x7, 0x8, 0x9
END_STREAM, ACK, END_HEADERS = 0x1, 0x1, 0x4
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


def _apps(blue=90, green=10):
    return [{"name": "web", "hosts": ["*"], "weights": {"blue": blue, "green": green}}]


def _tls_context(cert, alpn=("h2",)):
    """A client context that verifies the test certificate (SAN 127.0.0.1 and localhost)."""
    ctx = ssl.create_default_context(cafile=cert)
    if alpn:
        ctx.set_alpn_protocols(list(alpn))
    return ctx


def _connect(port, cert=None, alpn=("h2",), timeout=10.0):
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if cert:
        sock = _tls_context(cert, alpn).wrap_socket(sock, server_hostname="localhost")
    return sock


def _run(args, timeout=60, check=True):
    p = subprocess.run(args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=timeout + 10)
    if check and p.returncode != 0:
        raise AssertionError("%s failed (rc %d): %s" % (
            " ".join(args), p.returncode, p.stderr.decode(errors="replace")[-3000:]))
    return p


def _curl_text(args, timeout=60):
    return _run([CURL, "-sS", "--max-time", str(timeout)] + args, timeout).stdout.decode()


def _still_serves(p, cert=None):
    """Another client gets its answer: h2c, and h2 over TLS when the proxy has a TLS port."""
    r = helpers.curl1(p.url + "/still-serving", "--http2-prior-knowledge", timeout=10)
    assert r.status == 200 and r.info.get("http_version") == "2" and \
        r.body in (b"blue-1\n", b"green-1\n"), r
    if cert and p.tls_port:
        r = helpers.curl1(p.tls_url + "/still-serving", "--http2", "--cacert", cert, timeout=10)
        assert r.status == 200 and r.info.get("http_version") == "2", r
    assert p.proc.poll() is None, "switchyard exited"


def _requests_seen(backend, path):
    return [r for r in backend.records() if r["ev"] == "request" and r["path"] == path]


# -- python3-h2 client --------------------------------------------------------------------------

class H2Client:
    """python3-h2 on a socket (h2c by prior knowledge, or TLS with ALPN h2). Every wait has a
    deadline. `validate=False` lets the test send and receive what a strict client would not."""

    def __init__(self, port, cert=None, validate=True, timeout=10.0):
        self.sock = _connect(port, cert, timeout=timeout)
        if cert:
            assert self.sock.selected_alpn_protocol() == "h2"
        self.scheme = "https" if cert else "http"
        cfg = h2.config.H2Configuration(client_side=True, header_encoding=None,
                                        validate_inbound_headers=validate,
                                        validate_outbound_headers=validate,
                                        normalize_inbound_headers=validate,
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

    def request(self, path, headers=(), method="GET", end=True, authority="app.test"):
        sid = self.conn.get_next_available_stream_id()
        hdrs = [(":method", method), (":scheme", self.scheme), (":path", path),
                (":authority", authority)] + list(headers)
        self.conn.send_headers(sid, hdrs, end_stream=end)
        self.flush()
        return sid

    def send_body(self, sid, body, end=True, piece=None, timeout=60.0):
        """Sends `body` within the flow-control windows, waiting for WINDOW_UPDATEs. Returns
        (stalls, t_last_byte): how often it had to wait for the proxy, and when it sent the
        last byte."""
        sent, stalls = 0, 0
        view = memoryview(body)
        deadline = time.monotonic() + timeout
        while sent < len(body):
            if time.monotonic() > deadline:
                raise AssertionError("upload stuck at %d of %d bytes after %.0f s"
                                     % (sent, len(body), timeout))
            window = min(self.conn.local_flow_control_window(sid),
                         self.conn.max_outbound_frame_size)
            if window <= 0:
                stalls += 1
                self.pump(lambda evs: self.conn.local_flow_control_window(sid) > 0,
                          max(0.1, deadline - time.monotonic()))
                continue
            n = min(window, len(body) - sent, piece or window)
            self.conn.send_data(sid, view[sent:sent + n].tobytes())
            self.flush()
            sent += n
        t_last = time.monotonic()
        if end:
            self.conn.end_stream(sid)
            self.flush()
        return stalls, t_last

    def pump(self, until, timeout=10.0):
        """Reads and processes frames until until(events) is true; raises on timeout and
        returns False when the connection closes first."""
        deadline = time.monotonic() + timeout
        while not until(self.events):
            if self.closed:
                return False
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError("timed out; last events: %r" % self.events[-8:])
            self.sock.settimeout(left)
            try:
                data = self.sock.recv(65536)
            except socket.timeout:
                continue
            except (ConnectionResetError, ssl.SSLError):
                data = b""
            if not data:
                self.closed = True
                continue
            for ev in self.conn.receive_data(data):
                self.events.append(ev)
                if isinstance(ev, h2.events.DataReceived) and ev.flow_controlled_length:
                    self.conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
            self.flush()
        return True

    def response(self, sid, timeout=10.0):
        """(status, [(name, value)] as received, body, reset code or None) of stream sid."""
        def done(evs):
            return any(isinstance(e, (h2.events.StreamEnded, h2.events.StreamReset)) and
                       e.stream_id == sid for e in evs) or \
                any(isinstance(e, h2.events.ConnectionTerminated) for e in evs)
        self.pump(done, timeout)
        status, headers, body, reset = None, [], b"", None
        for e in self.events:
            if getattr(e, "stream_id", None) != sid:
                continue
            if isinstance(e, h2.events.ResponseReceived):
                headers = [(bytes(n).decode("latin-1"), bytes(v).decode("latin-1"))
                           for n, v in e.headers]
                status = int(dict(headers)[":status"])
            elif isinstance(e, h2.events.DataReceived):
                body += e.data
            elif isinstance(e, h2.events.StreamReset):
                reset = int(e.error_code)
        return status, headers, body, reset

    def terminated(self):
        for e in self.events:
            if isinstance(e, h2.events.ConnectionTerminated):
                return e
        return None

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


# -- HTTP/2 by hand -----------------------------------------------------------------------------

def frame(ftype, flags, sid, payload=b""):
    return len(payload).to_bytes(3, "big") + bytes([ftype, flags]) + \
        (sid & 0x7FFFFFFF).to_bytes(4, "big") + payload


def settings_payload(pairs):
    return b"".join(struct.pack(">HI", k, v) for k, v in pairs)


class RawH2:
    """Exact frames out, every frame in. The server's SETTINGS are acknowledged and its
    header blocks decoded (in order, so the HPACK state stays right); nothing else is
    automatic: no WINDOW_UPDATE is sent unless the test sends one."""

    def __init__(self, port, cert=None, preface=True, settings=(), timeout=10.0):
        self.sock = _connect(port, cert, timeout=timeout)
        self.enc = hpack.Encoder()
        self.dec = hpack.Decoder()
        self.buf = b""
        self.frames = []  # (type, flags, stream, payload, decoded headers or None)
        self.closed = False
        self._block = None  # (stream, flags, fragments) of a header block being continued
        if preface:
            self.send(PREFACE + frame(SETTINGS, 0, 0, settings_payload(settings)))

    def send(self, data):
        self.sock.sendall(data)

    def headers(self, sid, path, method="GET", end_stream=True, extra=(), authority="app.test"):
        scheme = "https" if isinstance(self.sock, ssl.SSLSocket) else "http"
        block = self.enc.encode([(":method", method), (":scheme", scheme), (":path", path),
                                 (":authority", authority)] + list(extra))
        self.send(frame(HEADERS, END_HEADERS | (END_STREAM if end_stream else 0), sid, block))

    def _parse(self):
        while len(self.buf) >= 9:
            n = int.from_bytes(self.buf[:3], "big")
            if len(self.buf) < 9 + n:
                return
            ftype, flags = self.buf[3], self.buf[4]
            sid = int.from_bytes(self.buf[5:9], "big") & 0x7FFFFFFF
            payload, self.buf = self.buf[9:9 + n], self.buf[9 + n:]
            decoded = None
            if ftype == HEADERS:
                self._block = (sid, flags, [payload])
            elif ftype == CONTINUATION and self._block:
                self._block[2].append(payload)
            if ftype in (HEADERS, CONTINUATION) and flags & END_HEADERS and self._block:
                decoded = [(bytes(k).decode(), bytes(v).decode())
                           for k, v in self.dec.decode(b"".join(self._block[2]), raw=True)]
                if ftype == CONTINUATION:
                    sid, flags = self._block[0], self._block[1] | END_HEADERS
                    ftype = HEADERS
                self._block = None
            elif ftype in (HEADERS, CONTINUATION):
                continue
            if ftype == SETTINGS and not flags & ACK:
                try:
                    self.send(frame(SETTINGS, ACK, 0))
                except OSError:
                    pass
            self.frames.append((ftype, flags, sid, payload, decoded))

    def read(self, until=lambda frames: False, timeout=10.0):
        """Reads until until(frames) is true (returns True), the peer closes (False) or the
        time is up (None)."""
        deadline = time.monotonic() + timeout
        while True:
            if until(self.frames):
                return True
            if self.closed:
                return False
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            self.sock.settimeout(left)
            try:
                data = self.sock.recv(65536)
            except socket.timeout:
                continue
            except (ConnectionResetError, BrokenPipeError, ssl.SSLError):
                data = b""
            if not data:
                self.closed = True
                continue
            self.buf += data
            self._parse()

    def read_until_closed(self, timeout=10.0):
        r = self.read(timeout=timeout)
        assert r is False, "the connection stayed open for %.0f s; frames: %s" % (
            timeout, self.summary())
        return self.frames

    def goaways(self):
        """[(last_stream_id, error_code)]"""
        return [(int.from_bytes(f[3][:4], "big") & 0x7FFFFFFF,
                 int.from_bytes(f[3][4:8], "big")) for f in self.frames if f[0] == GOAWAY]

    def resets(self, sid):
        return [int.from_bytes(f[3][:4], "big") for f in self.frames
                if f[0] == RST_STREAM and f[2] == sid]

    def status(self, sid):
        for f in self.frames:
            if f[0] == HEADERS and f[2] == sid and f[4]:
                d = dict(f[4])
                if ":status" in d and not d[":status"].startswith("1"):
                    return int(d[":status"])
        return None

    def body(self, sid):
        return b"".join(f[3] for f in self.frames if f[0] == DATA and f[2] == sid)

    def ended(self, sid):
        return any(f[0] in (DATA, HEADERS) and f[2] == sid and f[1] & END_STREAM
                   for f in self.frames)

    def done(self, sid):
        return lambda frames: self.ended(sid) or bool(self.resets(sid)) or bool(self.goaways())

    def server_settings(self):
        for f in self.frames:
            if f[0] == SETTINGS and not f[1] & ACK:
                p = f[3]
                return {int.from_bytes(p[i:i + 2], "big"): int.from_bytes(p[i + 2:i + 6], "big")
                        for i in range(0, len(p) - 5, 6)}
        return None

    def summary(self):
        names = {0: "DATA", 1: "HEADERS", 3: "RST_STREAM", 4: "SETTINGS", 6: "PING",
                 7: "GOAWAY", 8: "WINDOW_UPDATE"}
        return ["%s(s%d,f%x,%s)" % (names.get(f[0], f[0]), f[2], f[1],
                                    f[4] if f[4] else f[3][:16]) for f in self.frames][-30:]

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


# -- real clients over TLS and cleartext --------------------------------------------------------

def test_curl_http2_over_tls_negotiates_h2_by_alpn(proxy, tls_cert):
    p = proxy(_apps(100, 0), tls=tls_cert)
    r = helpers.curl1(p.tls_url + "/anything", "--http2", "--cacert", tls_cert[0])
    assert r.info["http_version"] == "2", r.info
    assert r.status == 200 and r.body == b"blue-1\n" and r.backend == "blue-1", r
    names = [n for n, _ in r.headers]
    assert names and all(n == n.lower() for n in names), names


def test_curl_http11_over_the_same_tls_port_by_alpn(proxy, tls_cert):
    p = proxy(_apps(100, 0), tls=tls_cert)
    r = helpers.curl1(p.tls_url + "/anything", "--http1.1", "--cacert", tls_cert[0])
    assert r.info["http_version"] == "1.1", r.info
    assert r.status == 200 and r.body == b"blue-1\n" and r.backend == "blue-1", r
    # The server's preference is h2 when the client offers both, in either order; a client
    # offering only http/1.1 gets it; one offering neither goes on without ALPN.
    for offer, want in ((["http/1.1", "h2"], "h2"), (["h2", "http/1.1"], "h2"),
                        (["http/1.1"], "http/1.1"), (["spdy/3"], None)):
        s = _connect(p.tls_port, tls_cert[0], alpn=offer)
        try:
            assert s.selected_alpn_protocol() == want, (offer, s.selected_alpn_protocol())
            assert s.version() in ("TLSv1.2", "TLSv1.3"), s.version()
        finally:
            s.close()


def test_h2c_prior_knowledge_and_http11_share_the_cleartext_port(proxy):
    p = proxy(_apps(100, 0))
    r = helpers.curl1(p.url + "/anything", "--http2-prior-knowledge")
    assert r.info["http_version"] == "2" and r.status == 200 and r.body == b"blue-1\n", r
    assert r.backend == "blue-1"
    r = helpers.curl1(p.url + "/anything", "--http1.1")
    assert r.info["http_version"] == "1.1" and r.status == 200 and r.body == b"blue-1\n", r
    # Several streams on one h2c connection. (curl 7.88.1 cannot reuse a prior-knowledge
    # connection, curl/curl#10634; nghttp sends all its URIs on one connection.)
    r = _run(["nghttp", "-v", "-t", "20", p.url + "/a", p.url + "/b", p.url + "/c"], 30)
    out = r.stdout.decode(errors="replace")
    assert out.count("] Connected") == 1, out[-3000:]
    assert len(re.findall(r"recv \(stream_id=\d+\) :status: 200", out)) == 3, out[-3000:]
    assert len(re.findall(r"recv \(stream_id=\d+\) x-backend: blue-1", out)) == 3


def test_nghttp_shows_the_http2_exchange(proxy, tls_cert):
    p = proxy(_apps(100, 0), tls=tls_cert)
    for url, proto in ((p.url, None), (p.tls_url, "h2")):
        r = _run(["nghttp", "-v", "-t", "20", url + "/nghttp"], timeout=30, check=False)
        out = r.stdout.decode(errors="replace")
        assert r.returncode == 0, (url, r.returncode, out[-3000:], r.stderr)
        if proto:
            assert "The negotiated protocol: h2" in out, out[-3000:]
        for want in ("recv SETTINGS frame", "send HEADERS frame", ":path: /nghttp",
                     "[SETTINGS_INITIAL_WINDOW_SIZE(0x04):65536]",
                     "[SETTINGS_MAX_CONCURRENT_STREAMS(0x03):100]", "blue-1\n"):
            assert want in out, (want, out[-3000:])
        # nghttp's request stream (13: it opens idle streams 3..11 for priorities first).
        sid = re.search(r"recv \(stream_id=(\d+)\) :status: 200", out)
        assert sid, out[-3000:]
        assert "recv (stream_id=%s) x-backend: blue-1" % sid.group(1) in out, out[-3000:]


def test_request_head_is_translated_for_the_http11_upstream(backends, proxy, tls_cert):
    p = proxy(_apps(100, 0), tls=tls_cert)
    c = H2Client(p.tls_port, cert=tls_cert[0])
    sid = c.request("/echo-headers", authority="shop.example",
                    headers=[("cookie", "a=1"), ("x-custom", "v1"), ("cookie", "b=2"),
                             ("cookie", "c=3"), ("user-agent", "h2-test")])
    status, headers, body, reset = c.response(sid)
    c.close()
    assert status == 200 and reset is None, (status, reset, body)
    seen = json.loads(body)
    assert seen["version"] == "HTTP/1.1" and seen["method"] == "GET", seen
    assert seen["path"] == "/echo-headers"
    fields = [(n.lower(), v) for n, v in seen["headers"]]
    names = [n for n, _ in fields]
    # :authority becomes Host, once.
    assert [v for n, v in fields if n == "host"] == ["shop.example"], fields
    # Cookie crumbs from several fields are one field, joined with "; " (RFC 9113 §8.2.3).
    assert [v for n, v in fields if n == "cookie"] == ["a=1; b=2; c=3"], fields
    assert ("x-custom", "v1") in fields and ("user-agent", "h2-test") in fields, fields
    assert ("x-forwarded-proto", "https") in fields, fields
    # No pseudo-header and no connection-specific field reaches HTTP/1.1.
    assert not [n for n in names if n.startswith(":")], names
    for hop in ("connection", "keep-alive", "proxy-connection", "upgrade", "transfer-encoding",
                "te", "http2-settings"):
        assert hop not in names, (hop, fields)
    # Crumbs long enough that joining them must move the stream's field storage: every other
    # field still arrives intact.
    crumbs = [("cookie", "k%d=%s" % (i, chr(97 + i) * 3000)) for i in range(4)]
    c = H2Client(p.tls_port, cert=tls_cert[0])
    status, _, body, reset = c.response(c.request("/echo-headers", method="GET",
                                                  authority="shop.example", headers=crumbs))
    c.close()
    assert status == 200 and reset is None, (status, reset, body)
    seen = json.loads(body)
    assert seen["method"] == "GET" and seen["path"] == "/echo-headers", seen
    fields = [(n.lower(), v) for n, v in seen["headers"]]
    assert [v for n, v in fields if n == "cookie"] == ["; ".join(v for _, v in crumbs)]
    assert [v for n, v in fields if n == "host"] == ["shop.example"], fields
    # Cleartext h2c says http.
    c = H2Client(p.port)
    status, _, body, _ = c.response(c.request("/echo-headers"))
    c.close()
    fields = [(n.lower(), v) for n, v in json.loads(body)["headers"]]
    assert status == 200 and ("x-forwarded-proto", "http") in fields, fields
    assert [v for n, v in fields if n == "host"] == ["app.test"], fields


def test_connection_specific_field_from_an_h2_client_resets_only_that_stream(backends, proxy):
    p = proxy(_apps(100, 0))
    c = H2Client(p.port, validate=False)
    sid = c.request("/conn-field", headers=[("connection", "keep-alive")])
    status, _, _, reset = c.response(sid)
    assert status is None and reset == PROTOCOL_ERROR, (status, reset)  # RFC 9113 §8.2.2
    status, _, body, reset = c.response(c.request("/after-conn-field"))
    c.close()
    assert status == 200 and body == b"blue-1\n", (status, reset, body)
    helpers.sync_backends(p)
    assert not _requests_seen(backends.blue, "/conn-field")


def test_response_heads_arrive_lowercase_with_the_backend_status(backends, proxy):
    p = proxy(_apps(100, 0))
    c = H2Client(p.port, validate=False)  # see the fields exactly as sent
    got = {}
    for path in ("/status/404", "/status/503", "/status/204", "/close", "/anything"):
        got[path] = c.response(c.request(path))
    assert c.terminated() is None
    c.close()
    for path, want in (("/status/404", 404), ("/status/503", 503), ("/status/204", 204),
                       ("/close", 200), ("/anything", 200)):
        status, headers, body, reset = got[path]
        assert status == want and reset is None, (path, got[path])
        names = [n for n, _ in headers]
        assert names[0] == ":status", headers  # pseudo-header first
        assert all(n == n.lower() for n in names), headers
        assert ("x-backend", "blue-1") in headers, headers
        # backend.py writes "Content-Type"; HTTP/2 carries it lower-case.
        if want != 204:
            assert ("content-type", "text/plain") in headers, headers
            assert body == b"blue-1\n", (path, body)
        else:
            assert body == b"", body
        for hop in ("connection", "keep-alive", "transfer-encoding", "upgrade",
                    "proxy-connection"):
            assert hop not in names, (path, headers)


def test_server_opts_out_of_rfc7540_priorities_and_priority_signals_change_nothing(backends,
                                                                                    proxy):
    """RFC 9218 §2.1: the proxy's SETTINGS carry NO_RFC7540_PRIORITIES = 1 (nghttp2 then keeps
    no priority tree, and frees a stream when it closes). A client that still sends RFC 7540
    priorities, in HEADERS and in PRIORITY frames, is served as any other."""
    p = proxy(_apps(100, 0))
    c = H2Client(p.port)
    c.pump(lambda evs: any(isinstance(e, h2.events.RemoteSettingsChanged) for e in evs))
    changed = next(e for e in c.events if isinstance(e, h2.events.RemoteSettingsChanged))
    got = {int(k): v.new_value for k, v in changed.changed_settings.items()}
    assert got.get(0x9) == 1, got
    first = c.conn.get_next_available_stream_id()
    c.conn.send_headers(first, [(":method", "GET"), (":scheme", "http"), (":path", "/pri-1"),
                                (":authority", "app.test")],
                        end_stream=True, priority_weight=200, priority_exclusive=True)
    c.flush()
    c.conn.prioritize(first + 2, weight=8, depends_on=first)  # a stream not opened yet
    c.flush()
    second = c.request("/pri-2")
    got1, got2 = c.response(first), c.response(second)
    assert c.terminated() is None
    c.close()
    for got in (got1, got2):
        status, _, body, reset = got
        assert status == 200 and body == b"blue-1\n" and reset is None, got


def test_post_bodies_arrive_intact_with_and_without_content_length(backends, proxy, tls_cert,
                                                                    tmp_path):
    p = proxy(_apps(100, 0), tls=tls_cert)
    rnd = random.Random(20)
    body = rnd.randbytes(3 * MIB + 12345)
    digest = hashlib.sha256(body).hexdigest()
    path = tmp_path / "body.bin"
    path.write_bytes(body)

    # curl sends content-length.
    r = helpers.curl1(p.url + "/upload-cl", "--http2-prior-knowledge",
                      "--data-binary", "@%s" % path)
    assert r.info["http_version"] == "2" and r.status == 200, r
    assert r.json()["bytes"] == len(body) and r.json()["sha256"] == digest, r.json()

    # nghttp --no-content-length: the body's length is known only at END_STREAM.
    out = _run(["nghttp", "--no-content-length", "-t", "30", "-d", str(path),
                p.tls_url + "/upload-nocl-nghttp"], timeout=40).stdout
    seen = json.loads(out)
    assert seen["bytes"] == len(body) and seen["sha256"] == digest, seen

    # python3-h2 over TLS in odd-sized DATA frames, END_STREAM on an empty frame.
    c = H2Client(p.tls_port, cert=tls_cert[0])
    sid = c.request("/upload-nocl-h2", method="POST", end=False)
    c.send_body(sid, body, end=False, piece=7777)
    c.conn.end_stream(sid)
    c.flush()
    status, _, resp, reset = c.response(sid, timeout=30)
    c.close()
    assert status == 200 and reset is None, (status, reset)
    seen = json.loads(resp)
    assert seen["bytes"] == len(body) and seen["sha256"] == digest, seen

    for name, framing in (("/upload-cl", "content-length"),
                          ("/upload-nocl-nghttp", "transfer-encoding"),
                          ("/upload-nocl-h2", "transfer-encoding")):
        recs = _requests_seen(backends.blue, name)
        assert len(recs) == 1, (name, recs)
        assert framing in [h.lower() for h in recs[0]["headers"]], (name, recs[0])


# -- volume: h2load and the split ---------------------------------------------------------------

@pytest.mark.parametrize("workers", [1, 2])
def test_h2load_20000_requests_10x10_no_failure_and_exact_90_10_split(backends, proxy, workers):
    p = proxy(_apps(90, 10), workers=workers)
    # The start-up line may follow the first accepted connection by a moment.
    helpers.wait_for(lambda: " %d workers" % workers in p.log_text(), 5,
                     "the start-up line with %d workers" % workers)
    path = "/h2load-w%d" % workers
    r = _run(["h2load", "-n", "20000", "-c", "10", "-m", "10", "-T", "30", "-N", "30",
              p.url + path], timeout=300)
    out = r.stdout.decode()
    assert "Application protocol: h2c" in out, out
    reqs = [ln for ln in out.splitlines() if ln.startswith("requests:")]
    assert reqs == ["requests: 20000 total, 20000 started, 20000 done, 20000 succeeded, "
                    "0 failed, 0 errored, 0 timeout"], out
    assert "status codes: 20000 2xx, 0 3xx, 0 4xx, 0 5xx" in out, out
    fin = [ln for ln in out.splitlines() if ln.startswith("finished in")][0]
    measure("h2load_n20000_c10_m10_w%d_req_per_s" % workers,
            fin.split(",")[1].split()[0], "req/s", "h2c, python backends")
    helpers.sync_backends(p)
    blue = len(_requests_seen(backends.blue, path))
    green = len(_requests_seen(backends.green, path))
    # Smooth weighted round-robin shared by all workers: every 100 consecutive picks are
    # exactly 90/10, and 20,000 is a multiple of 100.
    assert (blue, green) == (18000, 2000), (blue, green)


# -- big transfers and flow control ---------------------------------------------------------------

def _zeros_sha(n):
    h = hashlib.sha256()
    block = bytes(MIB)
    for _ in range(n // MIB):
        h.update(block)
    return h.hexdigest()


def _pattern_sha(n):
    h = hashlib.sha256()
    full, rest = divmod(n, len(PATTERN))
    for _ in range(full):
        h.update(PATTERN)
    h.update(PATTERN[:rest])
    return h.hexdigest()


def test_1gib_upload_and_download_over_one_stream_in_bounded_memory(proxy, tmp_path):
    p = proxy(_apps(100, 0))
    path = tmp_path / "gib.bin"
    with open(path, "wb") as f:
        f.truncate(GIB)  # sparse zeros: nothing to write, still 1 GiB on the wire

    t0 = time.monotonic()
    out = _curl_text(["--http2-prior-knowledge", "-T", str(path), "-w", "\n%{http_version}",
                      p.url + "/upload-gib"], timeout=300)
    up_s = time.monotonic() - t0
    doc, version = out.rsplit("\n", 1)
    assert version == "2", out
    seen = json.loads(doc)
    assert seen["bytes"] == GIB and seen["sha256"] == _zeros_sha(GIB), seen
    up_hwm = p.status()["VmHWM"]

    t0 = time.monotonic()
    proc = subprocess.Popen([CURL, "-sS", "--max-time", "300", "--http2-prior-knowledge",
                             "-w", "%{stderr}%{http_version} %{size_download}",
                             p.url + "/bytes/%d" % GIB],
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    h = hashlib.sha256()
    n = 0
    try:
        for _ in range(GIB // (64 * KIB) + 100000):
            chunk = proc.stdout.read(MIB)
            if not chunk:
                break
            h.update(chunk)
            n += len(chunk)
        err = proc.stderr.read().decode(errors="replace")
        rc = proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
    down_s = time.monotonic() - t0
    assert rc == 0, err
    assert err.split() == ["2", str(GIB)], err
    assert n == GIB and h.hexdigest() == _pattern_sha(GIB), n
    st = p.status()
    measure("h2_upload_1gib_s", "%.2f" % up_s, "s", "curl --http2-prior-knowledge -T")
    measure("h2_download_1gib_s", "%.2f" % down_s, "s", "curl --http2-prior-knowledge")
    measure("h2_upload_1gib_proxy_vmhwm_kib", up_hwm, "KiB", "peak RSS after the upload")
    measure("h2_1gib_up_down_proxy_vmhwm_kib", st["VmHWM"], "KiB",
            "peak RSS after upload and download" + (" (ASan)" if ASAN else ""))
    assert st["VmHWM"] < MAX_RSS_KIB, (st, MAX_RSS_KIB)


def test_slow_backend_stalls_the_upload_on_flow_control(backends, proxy):
    """/slowread takes 64 KiB per 10 ms: 32 MiB take the backend about 5 s. With flow control
    as the backpressure the client is held back all along and finishes sending only shortly
    before the answer; the proxy's memory does not grow with the upload."""
    p = proxy(_apps(100, 0))
    c = H2Client(p.port)
    # Warm up (first-use allocations are not growth), then take the baseline.
    status, _, _, _ = c.response(c.request("/warm-up"))
    assert status == 200
    before = p.status()["VmHWM"]
    size = 32 * MIB
    body = bytes(random.Random(32).randbytes(MIB)) * 32
    t0 = time.monotonic()
    # With content-length the upstream body is one stretch that /slowread reads at its pace.
    sid = c.request("/slowread", method="POST", end=False,
                    headers=[("content-length", str(size))])
    stalls, t_sent = c.send_body(sid, body, timeout=120)
    status, _, resp, reset = c.response(sid, timeout=60)
    t_done = time.monotonic()
    c.close()
    assert status == 200 and reset is None, (status, reset)
    seen = json.loads(resp)
    assert seen["bytes"] == size and seen["sha256"] == hashlib.sha256(body).hexdigest(), seen
    growth = p.status()["VmHWM"] - before
    total, tail = t_done - t0, t_done - t_sent
    measure("h2_slowread_32mib_proxy_vmhwm_growth_kib", growth, "KiB",
            "python-h2 upload into /slowread" + (" (ASan)" if ASAN else ""))
    measure("h2_slowread_32mib_client_stalls", stalls, "", "waits for WINDOW_UPDATE")
    measure("h2_slowread_32mib_s", "%.2f" % total, "s", "last byte sent %.2f s before the end"
            % tail)
    # The client waited for window updates hundreds of times (a 64 KiB window, 32 MiB).
    assert stalls >= 100, stalls
    # It could not run ahead of the backend: when its last byte left, at most what kernel
    # buffers hold between proxy and backend (a few MiB, < 2 s at /slowread's pace) remained.
    assert total > 2.5 and tail < 0.6 * total, (total, tail)
    assert growth < MAX_SLOW_GROWTH_KIB, (growth, MAX_SLOW_GROWTH_KIB)


def test_slow_backend_curl_upload_holds_memory_flat(backends, proxy, tmp_path):
    """The same backpressure with curl as the client: 16 MiB into /slowread, and the proxy's
    peak RSS does not grow with the upload."""
    p = proxy(_apps(100, 0))
    assert _curl_text(["--http2-prior-knowledge", p.url + "/warm-up"]) == "blue-1\n"
    before = p.status()["VmHWM"]
    path = tmp_path / "16m.bin"
    with open(path, "wb") as f:
        f.truncate(16 * MIB)
    out = _curl_text(["--http2-prior-knowledge", "-T", str(path), p.url + "/slowread"], 90)
    assert json.loads(out)["bytes"] == 16 * MIB
    growth = p.status()["VmHWM"] - before
    measure("h2_slow_backend_curl_upload_growth_kib", growth, "KiB", "16 MiB through /slowread")
    assert growth < MAX_SLOW_GROWTH_KIB, (growth, MAX_SLOW_GROWTH_KIB)


# -- crafted bad input --------------------------------------------------------------------------

def test_http11_bytes_after_alpn_h2_get_goaway_protocol_error(backends, proxy, tls_cert):
    p = proxy(_apps(100, 0), tls=tls_cert)
    c = RawH2(p.tls_port, cert=tls_cert[0], preface=False)
    assert c.sock.selected_alpn_protocol() == "h2"
    c.send(b"GET /not-a-preface HTTP/1.1\r\nHost: app.test\r\n\r\n")
    c.read_until_closed(timeout=5)
    c.close()
    assert c.goaways() and c.goaways()[-1] == (0, PROTOCOL_ERROR), c.summary()
    assert b"HTTP/1.1" not in b"".join(f[3] for f in c.frames), c.summary()
    helpers.sync_backends(p)
    assert not _requests_seen(backends.blue, "/not-a-preface")
    _still_serves(p, tls_cert[0])


def test_cleartext_preface_then_no_settings_gets_goaway_protocol_error(backends, proxy):
    p = proxy(_apps(100, 0))
    # The preface must be followed by SETTINGS (RFC 9113 §3.4); a PING is not that.
    c = RawH2(p.port, preface=False)
    c.send(PREFACE + frame(PING, 0, 0, b"12345678"))
    c.read_until_closed(timeout=5)
    c.close()
    assert c.goaways() and c.goaways()[-1] == (0, PROTOCOL_ERROR), c.summary()
    assert not [f for f in c.frames if f[0] == PING], c.summary()
    # Garbage after a valid preface and SETTINGS: a frame type on stream 0 that must not be
    # there (DATA on stream 0 is a connection error of type PROTOCOL_ERROR, §6.1).
    c = RawH2(p.port)
    c.send(frame(DATA, 0, 0, b"garbage!" * 8))
    c.read_until_closed(timeout=5)
    c.close()
    assert c.goaways() and c.goaways()[-1][1] == PROTOCOL_ERROR, c.summary()
    _still_serves(p)


def test_a_preface_with_a_wrong_byte_is_not_served(backends, proxy):
    p = proxy(_apps(100, 0))
    with helpers.Raw(p.port, timeout=5) as r:
        r.send(b"PRI * HTTP/2.0\r\n\r\nXM\r\n\r\n" + frame(SETTINGS, 0, 0))
        got = r.closed(timeout=5)
        # Not the HTTP/2 preface, so not HTTP/2: closed, or an HTTP/1.1 error answer for the
        # PRI request (400 or 505), then closed; never served.
        if got is not True:
            assert isinstance(got, bytes) and got[:12] in (b"HTTP/1.1 400", b"HTTP/1.1 505"), got
            r.buf = b""
            assert r.closed(timeout=5) is True
    _still_serves(p)


def _rapid_reset(port, pairs, timeout=10.0):
    """Opens and cancels `pairs` streams as fast as the socket takes them (batches of 50)."""
    c = H2Client(port)
    sent = 0
    try:
        for batch in range(pairs // 50):
            for _ in range(50):
                sid = c.conn.get_next_available_stream_id()
                c.conn.send_headers(sid, [(":method", "GET"), (":scheme", "http"),
                                          (":path", "/rapid-reset"),
                                          (":authority", "app.test")])
                c.conn.reset_stream(sid, error_code=CANCEL)
                sent += 1
            c.flush()
    except (BrokenPipeError, ConnectionResetError, h2.exceptions.ProtocolError):
        pass
    return c, sent


def test_rapid_reset_flood_gets_goaway_and_the_proxy_serves_on(backends, proxy):
    p = proxy(_apps(100, 0))
    c, sent = _rapid_reset(p.port, 1000)
    try:
        c.pump(lambda evs: c.terminated() is not None, timeout=10)
    except AssertionError:
        pass
    g = c.terminated()
    c.close()
    assert g is not None, "no GOAWAY after %d HEADERS+RST_STREAM pairs" % sent
    # libnghttp2's stream reset rate limit (limits.h2_reset_rate 50/s, burst 100) ends the
    # connection with GOAWAY(INTERNAL_ERROR) (its choice; not NO_ERROR, not PROTOCOL_ERROR).
    assert int(g.error_code) == INTERNAL_ERROR, g
    # It stopped the flood early, about the burst in: later streams were never taken up.
    assert 2 * 50 < g.last_stream_id <= 2 * 150 + 1, g
    _still_serves(p)


def test_reset_rate_limit_follows_limits_h2_reset_rate(backends, proxy):
    p = proxy(_apps(100, 0), limits={"h2_reset_rate": 1000})  # burst 2,000
    c, sent = _rapid_reset(p.port, 300)
    assert sent == 300
    status, _, body, reset = c.response(c.request("/after-resets"), timeout=10)
    c.close()
    assert c.terminated() is None and status == 200 and body == b"blue-1\n", (
        c.terminated(), status, reset)


def test_oversized_header_list_gets_431_and_the_connection_goes_on(backends, proxy):
    p = proxy(_apps(100, 0))
    c = H2Client(p.port)
    big = [("x-big-%02d" % i, "b" * 4000) for i in range(17)]  # 17 x 4,039 > 64 KiB
    assert sum(len(n) + len(v) + 32 for n, v in big) > 64 * KIB
    status, headers, body, reset = c.response(c.request("/too-big", headers=big))
    assert status == 431 and reset is None, (status, reset, body)
    assert b"max_header_bytes" in body, body
    # Just under limits.max_header_bytes (32768) passes, on the same connection.
    fits = [("x-fit-%d" % i, "f" * 4000) for i in range(7)]
    status, _, body, reset = c.response(c.request("/echo-headers", headers=fits))
    assert status == 200 and reset is None, (status, reset)
    got = [(n.lower(), v) for n, v in json.loads(body)["headers"]]
    assert all(f in got for f in fits)
    status, _, body, _ = c.response(c.request("/after-too-big"))
    assert status == 200 and body == b"blue-1\n" and c.terminated() is None
    c.close()
    helpers.sync_backends(p)
    assert not _requests_seen(backends.blue, "/too-big")
    _still_serves(p)


@pytest.fixture
def black_hole():
    """An address whose TCP connects hang: a listener with a full accept queue (backlog 0
    holds one connection; the kernel drops further SYNs). Yields "127.0.0.1:PORT"."""
    hole = socket.socket()
    hole.bind(("127.0.0.1", 0))
    hole.listen(0)
    fillers = []
    try:
        for _ in range(3):
            f = socket.socket()
            f.setblocking(False)
            f.connect_ex(hole.getsockname())
            fillers.append(f)
        time.sleep(0.1)  # let the handshakes land in the queue
        yield "127.0.0.1:%d" % hole.getsockname()[1]
    finally:
        for f in fillers:
            f.close()
        hole.close()


def test_data_beyond_the_stream_window_is_a_flow_control_error(backends, proxy, black_hole):
    # /hold routes to a cluster whose connect hangs, so nothing takes the stream's body and
    # the proxy never reopens its window; /ok routes to green.
    p = proxy([{"name": "hold", "hosts": ["*"], "paths": ["/hold"], "weights": {"blue": 1}},
               {"name": "ok", "hosts": ["*"], "paths": ["/"], "weights": {"green": 1}}],
              clusters={"blue": [black_hole], "green": [backends.green.addr]},
              timeouts={"upstream_connect": "20s"})
    c = RawH2(p.port)
    assert c.read(lambda fr: c.server_settings() is not None, timeout=5)
    window = c.server_settings().get(0x4, 65535)  # SETTINGS_INITIAL_WINDOW_SIZE
    assert window == 65536, c.server_settings()  # limits.buffer_bytes
    c.headers(1, "/hold", method="POST", end_stream=False)
    # 5 x 16 KiB = 80 KiB of DATA without waiting for a WINDOW_UPDATE.
    c.send(frame(DATA, 0, 1, b"x" * 16384) * 5)
    c.read(c.done(1), timeout=5)
    assert c.resets(1) == [FLOW_CONTROL_ERROR] or \
        (c.goaways() and c.goaways()[-1][1] == FLOW_CONTROL_ERROR), c.summary()
    if not c.goaways():
        # A stream error: the connection goes on.
        c.headers(3, "/ok")
        assert c.read(c.done(3), timeout=10), c.summary()
        assert c.status(3) == 200 and c.body(3) == b"green-1\n", c.summary()
    c.close()
    _still_serves(p)


def _continuation_flood(c, sid, n_continuations, path):
    block = c.enc.encode([(":method", "GET"), (":scheme", "http"), (":path", path),
                          (":authority", "app.test")] +
                         [("x-crumb-%d" % i, "v%d" % i) for i in range(n_continuations + 1)])
    step = max(1, len(block) // (n_continuations + 1))
    pieces = [block[i * step:(i + 1) * step] for i in range(n_continuations)]
    pieces.append(block[n_continuations * step:])
    out = frame(HEADERS, END_STREAM, sid, pieces[0])
    for i, piece in enumerate(pieces[1:], 1):
        out += frame(CONTINUATION, END_HEADERS if i == n_continuations else 0, sid, piece)
    c.send(out)


def test_continuation_flood_gets_goaway(backends, proxy):
    p = proxy(_apps(100, 0))  # limits.h2_max_continuations: 8
    c = RawH2(p.port)
    try:
        _continuation_flood(c, 1, 40, "/cont-flood")
    except (BrokenPipeError, ConnectionResetError):
        pass
    c.read_until_closed(timeout=5)
    c.close()
    assert c.status(1) is None, c.summary()
    assert c.goaways(), c.summary()
    # libnghttp2 stops at the 9th CONTINUATION (NGHTTP2_ERR_TOO_MANY_CONTINUATIONS) and the
    # proxy ends the connection with GOAWAY(PROTOCOL_ERROR).
    assert c.goaways()[-1][1] == PROTOCOL_ERROR, c.summary()
    helpers.sync_backends(p)
    assert not _requests_seen(backends.blue, "/cont-flood")
    _still_serves(p)


def test_continuations_within_limits_h2_max_continuations_are_served(backends, proxy):
    p = proxy(_apps(100, 0), limits={"h2_max_continuations": 64})
    c = RawH2(p.port)
    _continuation_flood(c, 1, 40, "/cont-ok")
    assert c.read(c.done(1), timeout=10), c.summary()
    c.close()
    assert c.status(1) == 200 and c.body(1) == b"blue-1\n", c.summary()


def test_more_streams_than_h2_max_streams_are_refused(backends, proxy):
    p = proxy(_apps(100, 0), limits={"h2_max_streams": 4})
    c = RawH2(p.port)
    assert c.read(lambda fr: c.server_settings() is not None, timeout=5)
    st = c.server_settings()
    assert st.get(0x3) == 4 and st.get(0x6) == 32768, st  # MAX_CONCURRENT_STREAMS, HEADER_LIST
    # The limit applies once the server has our ACK of its SETTINGS: a PING round trip after
    # the ACK proves it was read.
    c.send(frame(PING, 0, 0, b"pingpong"))
    assert c.read(lambda fr: any(f[0] == PING and f[1] & ACK for f in fr), timeout=5)
    # Four at once are served.
    for sid in (1, 3, 5, 7):
        c.headers(sid, "/sleep/0.5")
    assert c.read(lambda fr: all(c.ended(s) for s in (1, 3, 5, 7)), timeout=10), c.summary()
    for sid in (1, 3, 5, 7):
        assert c.status(sid) == 200 and c.body(sid) == b"blue-1\n", (sid, c.summary())
    # A fifth while four are open is refused: a stream error (REFUSED_STREAM or
    # PROTOCOL_ERROR, RFC 9113 §5.1.2), or, as libnghttp2 does, a connection error
    # (GOAWAY PROTOCOL_ERROR) whose last stream id leaves the fifth out.
    for sid in (9, 11, 13, 15, 17):
        c.headers(sid, "/sleep/0.5")
    c.read(lambda fr: c.ended(17) or bool(c.resets(17)) or bool(c.goaways()), timeout=10)
    c.close()
    assert c.status(17) is None, c.summary()
    refused = c.resets(17) or [g[1] for g in c.goaways() if g[0] < 17]
    assert refused and refused[0] in (REFUSED_STREAM, PROTOCOL_ERROR), c.summary()
    _still_serves(p)


def test_idle_h2_connection_gets_goaway_then_close(backends, proxy):
    p = proxy(_apps(100, 0), timeouts={"client_idle": "1s"})
    c = RawH2(p.port)
    c.headers(1, "/before-idle")
    assert c.read(c.done(1), timeout=5) and c.status(1) == 200, c.summary()
    t0 = time.monotonic()
    c.read_until_closed(timeout=5)
    idle = time.monotonic() - t0
    c.close()
    assert c.goaways() == [(1, NO_ERROR)], c.summary()
    assert 0.5 < idle < 4, idle


# -- routing per stream and shutdown --------------------------------------------------------------

def test_weight_change_applies_to_the_next_stream_on_the_same_connection(backends, proxy,
                                                                         tls_cert):
    p = proxy(_apps(100, 0), tls=tls_cert)
    c = H2Client(p.tls_port, cert=tls_cert[0])
    status, headers, body, _ = c.response(c.request("/wc-1"))
    assert status == 200 and body == b"blue-1\n", (status, body)
    # A slow stream in flight across the reload finishes where it started.
    slow = c.request("/sleep/1.5")
    helpers.wait_for(lambda: _requests_seen(backends.blue, "/sleep/1.5"), 5,
                     "the slow request at blue")
    gen = p.reload(_apps(0, 100))
    assert gen >= 2
    status, _, body, _ = c.response(c.request("/wc-2"))
    assert status == 200 and body == b"green-1\n", (status, body)
    status, _, body, _ = c.response(slow, timeout=10)
    assert status == 200 and body == b"blue-1\n", (status, body)
    # And back, still on the one connection.
    p.reload(_apps(100, 0))
    status, _, body, _ = c.response(c.request("/wc-3"))
    assert status == 200 and body == b"blue-1\n", (status, body)
    assert c.terminated() is None and not c.closed
    c.close()
    assert len(_requests_seen(backends.blue, "/wc-1")) == 1
    assert len(_requests_seen(backends.green, "/wc-2")) == 1
    assert not _requests_seen(backends.blue, "/wc-2")
    assert len(_requests_seen(backends.blue, "/wc-3")) == 1


def test_sigterm_sends_goaway_finishes_the_stream_in_flight_and_exits_0(backends, proxy):
    p = proxy(_apps(100, 0))
    c = RawH2(p.port)
    c.headers(1, "/sleep/2")
    helpers.wait_for(lambda: _requests_seen(backends.blue, "/sleep/2"), 5,
                     "the slow request at blue")
    t0 = time.monotonic()
    p.proc.send_signal(signal.SIGTERM)
    assert c.read(lambda fr: bool(c.goaways()), timeout=5), c.summary()
    last, code = c.goaways()[0]
    assert code == NO_ERROR and last >= 1, c.goaways()
    assert c.status(1) is None, "GOAWAY came before the answer (the stream was in flight)"
    # A stream opened after the GOAWAY is not served (id above its last stream id).
    c.headers(3, "/after-goaway")
    c.read_until_closed(timeout=15)
    c.close()
    assert c.status(1) == 200 and c.body(1) == b"blue-1\n" and c.ended(1), c.summary()
    assert not c.resets(1), c.summary()
    assert all(g[1] == NO_ERROR for g in c.goaways()), c.goaways()
    assert 3 > max(g[0] for g in c.goaways()), c.goaways()
    assert c.status(3) is None and set(c.resets(3)) <= {REFUSED_STREAM}, c.summary()
    assert p.wait_exit(15) == 0, p.log_text()[-3000:]
    took = time.monotonic() - t0
    assert took < 5, took  # the stream's 2 s, well inside timeouts.drain (5 s)
    assert not _requests_seen(backends.blue, "/after-goaway")


def test_bad_certificate_is_reported_by_check_with_its_position(backends, tmp_path):
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
