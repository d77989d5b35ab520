# SPDX-License-Identifier: MIT
"""PROXY protocol on the listeners and trusted_proxies (issue #20), with a real balancer: HAProxy
(Debian's) in TCP mode with `send-proxy-v2` / `send-proxy` in front of switchyard, over
cleartext HTTP/1.1, h2c and TLS (passed through). Clients bind several 127.0.0.x source
addresses so that the address the header carries differs from the TCP peer (HAProxy, always
127.0.0.1). The bad inputs are written by hand: a garbage first line, a header in 1-byte writes,
a header and the request in one write, a truncated header."""

import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import time
import urllib.request

import pytest

import admin_util
import helpers
from helpers import curl1

HAPROXY = shutil.which("haproxy")
needs_haproxy = pytest.mark.skipif(HAPROXY is None, reason="haproxy is not installed")

SOURCES = ["127.0.0.%d" % i for i in range(2, 22)]
V2_SIG = b"\r\n\r\n\x00\r\nQUIT\n"


def config(backends, pp, tls=None, sticky=False, trusted=None, direct_port=None,
           listen_trusted=None, admin=None):
    """A config whose first listener (@PORT@) has `proxy_protocol: pp` (None: off)."""
    first = "  - address: 127.0.0.1:@PORT@\n"
    if pp:
        first += "    proxy_protocol: %s\n" % pp
    if listen_trusted is not None:
        first += "    trusted_proxies: [%s]\n" % ", ".join("'%s'" % t for t in listen_trusted)
    text = "workers: 1\nlisten:\n" + first
    if direct_port:
        text += "  - address: 127.0.0.1:%d\n" % direct_port
    if tls:
        text += ("  - address: 127.0.0.1:%d\n    proxy_protocol: %s\n"
                 "    tls: {cert: %s, key: %s}\n" % (tls[0], pp, tls[1], tls[2]))
    text += "timeouts: {drain: 5s, client_header: 2s}\nshutdown: {delay: 0s}\n"
    text += ("clusters:\n  blue: {endpoints: [%s]}\n  green: {endpoints: [%s]}\n"
             % (backends.blue.addr, backends.green.addr))
    if sticky:
        text += ("apps:\n  - name: web\n    hosts: ['*']\n    weights: {blue: 50, green: 50}\n"
                 "    sticky: {source_ip: true}\n")
    else:
        text += "apps:\n  - name: web\n    hosts: ['*']\n    weights: {blue: 100}\n"
    if admin:
        text += "admin: {socket: %s}\n" % admin
    if trusted is not None:
        text += "trusted_proxies: [%s]\n" % ", ".join("'%s'" % t for t in trusted)
    return text


class HAProxy:
    """haproxy -db on its own config in `workdir`: frontend `port` -> switchyard `target`,
    frontend `tls_port` -> `tls_target` (TCP, TLS passed through), both with `send`; health
    checks (HTTP, with the PROXY header: LOCAL) on the cleartext server; stats on
    `stats_port`."""

    def __init__(self, workdir, target, tls_target, send):
        self.port = helpers.free_port()
        self.tls_port = helpers.free_port()
        self.stats_port = helpers.free_port()
        self.cfg = os.path.join(workdir, "haproxy.cfg")
        with open(self.cfg, "w") as f:
            f.write("""global
    log stdout format raw local0 info
defaults
    mode tcp
    log global
    option tcplog
    timeout connect 5s
    timeout client 30s
    timeout server 30s
frontend fe
    bind 127.0.0.1:%(port)d
    default_backend be
frontend fe_tls
    bind 127.0.0.1:%(tls_port)d
    default_backend be_tls
backend be
    option httpchk
    http-check send meth GET uri /hc ver HTTP/1.1 hdr Host app.test
    http-check expect status 200
    server sy 127.0.0.1:%(target)d %(send)s check check-send-proxy inter 300ms rise 1 fall 1
backend be_tls
    server sy 127.0.0.1:%(tls_target)d %(send)s
listen stats
    mode http
    bind 127.0.0.1:%(stats)d
    stats enable
    stats uri /stats
""" % {"port": self.port, "tls_port": self.tls_port, "target": target,
       "tls_target": tls_target or target, "send": send, "stats": self.stats_port})
        self.log = os.path.join(workdir, "haproxy.log")
        self._logf = open(self.log, "wb")
        self.proc = subprocess.Popen([HAPROXY, "-db", "-f", self.cfg], stdin=subprocess.DEVNULL,
                                     stdout=self._logf, stderr=subprocess.STDOUT)
        helpers.wait_for(self._listening, 10, "haproxy listening")

    def _listening(self):
        if self.proc.poll() is not None:
            raise AssertionError("haproxy exited: %s" % open(self.log, errors="replace").read())
        try:
            socket.create_connection(("127.0.0.1", self.stats_port), timeout=1).close()
            return True
        except OSError:
            return False

    def server_status(self, backend="be"):
        with urllib.request.urlopen("http://127.0.0.1:%d/stats;csv" % self.stats_port,
                                    timeout=5) as r:
            rows = r.read().decode().splitlines()
        cols = rows[0].lstrip("# ").split(",")
        for row in rows[1:]:
            v = dict(zip(cols, row.split(",")))
            if v.get("pxname") == backend and v.get("svname") == "sy":
                return v
        raise AssertionError("no server row in %r" % rows)

    def stop(self):
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        self._logf.close()


@pytest.fixture
def haproxy(tmp_path):
    started = []

    def start(target, tls_target=None, send="send-proxy-v2"):
        h = HAProxy(str(tmp_path), target, tls_target, send)
        started.append(h)
        return h

    yield start
    for h in started:
        h.stop()


def xff(resp):
    doc = resp.json()
    vals = [v for n, v in doc["headers"] if n.lower() == "x-forwarded-for"]
    assert len(vals) == 1, doc["headers"]
    return vals[0]


def header_of(resp, name):
    return [v for n, v in resp.json()["headers"] if n.lower() == name]


def v2_header(src, dst="127.0.0.1", sport=40000, dport=80, cmd=1, tlvs=b""):
    body = socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack("!HH", sport, dport) + tlvs
    return V2_SIG + bytes([0x20 | cmd, 0x11]) + struct.pack("!H", len(body)) + body


def rejections(p):
    return p.log_text().count("closed (proxy_protocol is on")


# -- with HAProxy ------------------------------------------------------------------------------

def _through_haproxy_the_backend_sees_the_client(proxy, backends, haproxy, tls_cert, pp, send):
    tls_port = helpers.free_port()
    p = proxy(config_text=config(backends, pp, tls=(tls_port,) + tuple(tls_cert)))
    h = haproxy(p.port, tls_port, send)
    for src in SOURCES[:3]:
        r = curl1("http://127.0.0.1:%d/echo-headers" % h.port, "--http1.1", "--interface", src)
        assert r.status == 200 and xff(r) == src, r
        r = curl1("http://127.0.0.1:%d/echo-headers" % h.port, "--http2-prior-knowledge",
                  "--interface", src)
        assert r.status == 200 and r.info.get("http_version") == "2" and xff(r) == src, r
        for v in ("--http1.1", "--http2"):
            r = curl1("https://127.0.0.1:%d/echo-headers" % h.tls_port, "-k", v,
                      "--interface", src)
            assert r.status == 200 and xff(r) == src, r
            assert header_of(r, "x-forwarded-proto") == ["https"]
    assert rejections(p) == 0, p.log_text()[-2000:]


@needs_haproxy
def test_haproxy_send_proxy_v2_backend_sees_client_address_h1_h2c_tls(proxy, backends, haproxy,
                                                                        tls_cert):
    _through_haproxy_the_backend_sees_the_client(proxy, backends, haproxy, tls_cert, "v2",
                                                 "send-proxy-v2")


@needs_haproxy
def test_haproxy_send_proxy_v1_backend_sees_client_address_h1_h2c_tls(proxy, backends, haproxy,
                                                                       tls_cert):
    _through_haproxy_the_backend_sees_the_client(proxy, backends, haproxy, tls_cert, "v1",
                                                 "send-proxy")


@needs_haproxy
def test_haproxy_sticky_by_client_address_follows_the_real_client(proxy, backends, haproxy):
    """Behind one balancer address, each client is pinned by its own address: the cluster
    through HAProxy is the one a direct connection from the same address gets, and the
    sources do not all land on one cluster."""
    direct = helpers.free_port()
    p = proxy(config_text=config(backends, "any", sticky=True, direct_port=direct))
    h = haproxy(p.port)
    via, straight = {}, {}
    for src in SOURCES:
        r = curl1("http://127.0.0.1:%d/" % h.port, "--http1.1", "--interface", src)
        assert r.status == 200, r
        via[src] = r.backend
        r = curl1("http://127.0.0.1:%d/" % direct, "--http1.1", "--interface", src)
        straight[src] = r.backend
    assert via == straight
    assert set(via.values()) == {"blue-1", "green-1"}, via


@needs_haproxy
def test_haproxy_local_health_checks_pass_and_keep_the_peer_address(proxy, backends, haproxy):
    p = proxy(config_text=config(backends, "v2"))
    h = haproxy(p.port)
    helpers.wait_for(lambda: backends.saw("/hc"), 10, "a health check at the backend")
    helpers.wait_for(lambda: h.server_status()["status"] == "UP", 10, "server UP")
    assert int(h.server_status()["chkfail"] or 0) == 0, h.server_status()
    # LOCAL: no client address in the header, the check is the balancer's own (127.0.0.1).
    hc = [r for r in backends.saw("/hc")]
    assert hc
    r = curl1("http://127.0.0.1:%d/echo-headers" % h.port, "--http1.1", "--interface",
              "127.0.0.9")
    assert xff(r) == "127.0.0.9"
    assert rejections(p) == 0, p.log_text()[-2000:]


# -- bad input, by hand ------------------------------------------------------------------------

def test_proxy_protocol_garbage_first_line_is_closed_counted_and_logged_once(proxy, backends):
    sock = os.path.join(tempfile.mkdtemp(prefix="sy-pp-"), "admin.sock")
    p = proxy(config_text=config(backends, "any", admin=sock))
    for _ in range(3):
        with helpers.Raw(p.port, timeout=5) as c:
            c.send(helpers.get_request("/echo-headers"))
            with pytest.raises((EOFError, ConnectionResetError)):
                c.read_response()
            assert c.buf == b""  # closed (a reset: the request was unread) without an answer
    helpers.wait_for(lambda: rejections(p) >= 1, 5, "the rejection line")
    time.sleep(0.2)
    assert rejections(p) == 1, p.log_text()[-2000:]
    assert "no PROXY protocol header" in p.log_text()
    st = admin_util.ctl("status", sockets=[sock], json=True)
    assert st.returncode == 0, st.stderr
    assert json.loads(st.stdout)["unrouted"]["proxy_protocol_rejected"] == 3, st.stdout


@pytest.mark.parametrize("kind", ["v1", "v2"])
def test_proxy_protocol_header_in_1_byte_writes_works(proxy, backends, kind):
    p = proxy(config_text=config(backends, "any"))
    hdr = (b"PROXY TCP4 203.0.113.7 127.0.0.1 40000 80\r\n" if kind == "v1"
           else v2_header("203.0.113.7", tlvs=b"\x04\x00\x03abc"))
    with helpers.Raw(p.port) as c:
        for b in hdr:
            c.send(bytes([b]))
            time.sleep(0.005)
        c.send(helpers.get_request("/echo-headers"))
        r = c.read_response()
    assert r.status == 200 and xff(r) == "203.0.113.7", r


def test_proxy_protocol_header_and_request_in_one_write_work(proxy, backends):
    p = proxy(config_text=config(backends, "any"))
    for hdr in (b"PROXY TCP4 203.0.113.8 127.0.0.1 40000 80\r\n", v2_header("203.0.113.8"),
                b"PROXY TCP6 2001:db8::8 ::1 40000 80\r\n"):
        with helpers.Raw(p.port) as c:
            c.send(hdr + helpers.get_request("/echo-headers") * 2)
            r1, r2 = c.read_response(), c.read_response()
        want = "2001:db8::8" if b"TCP6" in hdr else "203.0.113.8"
        assert r1.status == 200 and xff(r1) == want, r1
        assert r2.status == 200 and xff(r2) == want, r2


def test_proxy_protocol_header_and_h2_preface_in_one_write_work(proxy, backends):
    import h2.connection
    import h2.events
    p = proxy(config_text=config(backends, "v2"))
    conn = h2.connection.H2Connection()
    conn.initiate_connection()
    conn.send_headers(1, [(":method", "GET"), (":scheme", "http"), (":authority", "app.test"),
                          (":path", "/echo-headers")], end_stream=True)
    with helpers.Raw(p.port) as c:
        c.send(v2_header("198.51.100.4") + conn.data_to_send())
        body, done = b"", False
        deadline = time.monotonic() + 10
        while not done and time.monotonic() < deadline:
            c.sock.settimeout(deadline - time.monotonic())
            data = c.sock.recv(65536)
            assert data, "closed"
            for ev in conn.receive_data(data):
                if isinstance(ev, h2.events.DataReceived):
                    body += ev.data
                    conn.acknowledge_received_data(len(ev.data), ev.stream_id)
                if isinstance(ev, h2.events.StreamEnded):
                    done = True
            c.send(conn.data_to_send())
    assert done
    doc = json.loads(body)
    assert [v for n, v in doc["headers"] if n.lower() == "x-forwarded-for"] == ["198.51.100.4"]


def test_proxy_protocol_truncated_header_is_closed_at_client_header(proxy, backends):
    p = proxy(config_text=config(backends, "any"))
    with helpers.Raw(p.port, timeout=10) as c:
        c.send(b"PROXY TCP4 203.0.113.9 ")
        t0 = time.monotonic()
        with pytest.raises((EOFError, ConnectionResetError)):
            c.read_response()
        took = time.monotonic() - t0
    assert 1.0 < took < 8.0, took  # client_header is 2s
    helpers.wait_for(lambda: "within timeouts.client_header" in p.log_text(), 5, "log line")


def test_proxy_protocol_v2_only_listener_refuses_v1(proxy, backends):
    p = proxy(config_text=config(backends, "v2"))
    with helpers.Raw(p.port, timeout=5) as c:
        c.send(b"PROXY TCP4 203.0.113.7 127.0.0.1 40000 80\r\n" + helpers.get_request("/"))
        with pytest.raises((EOFError, ConnectionResetError)):
            c.read_response()
    helpers.wait_for(lambda: rejections(p) == 1, 5, "the rejection line")


def test_proxy_protocol_v2_local_keeps_the_peer_address(proxy, backends):
    p = proxy(config_text=config(backends, "v2"))
    with helpers.Raw(p.port) as c:
        c.send(V2_SIG + b"\x20\x00\x00\x00" + helpers.get_request("/echo-headers"))
        r = c.read_response()
    assert r.status == 200 and xff(r) == "127.0.0.1", r


# -- trusted_proxies -----------------------------------------------------------------------------

def test_untrusted_client_x_forwarded_for_never_reaches_the_backend_as_first_hop(proxy, backends):
    p = proxy(config_text=config(backends, None))
    r = curl1(p.url + "/echo-headers", "--http1.1", "-H", "X-Forwarded-For: 1.2.3.4",
              "-H", "Forwarded: for=1.2.3.4", "-H", "X-Forwarded-Proto: https")
    assert r.status == 200
    assert xff(r) == "127.0.0.1", r.json()["headers"]
    assert header_of(r, "forwarded") == []
    assert header_of(r, "x-forwarded-proto") == ["http"]
    r = curl1(p.url + "/echo-headers", "--http2-prior-knowledge", "-H",
              "X-Forwarded-For: 1.2.3.4")
    assert xff(r) == "127.0.0.1", r.json()["headers"]


def test_trusted_proxies_keep_and_append_forwarded_headers(proxy, backends):
    p = proxy(config_text=config(backends, None, trusted=["127.0.0.0/8"]))
    r = curl1(p.url + "/echo-headers", "--http1.1", "-H", "X-Forwarded-For: 1.2.3.4",
              "-H", "Forwarded: for=1.2.3.4", "-H", "X-Forwarded-Proto: https")
    assert xff(r) == "1.2.3.4, 127.0.0.1"
    assert header_of(r, "forwarded") == ["for=1.2.3.4, for=127.0.0.1"]
    assert header_of(r, "x-forwarded-proto") == ["https"]


def test_trusted_proxies_judge_the_address_after_proxy_protocol(proxy, backends):
    """The balancer (127.0.0.1) is trusted, the client it speaks for is not: the client's own
    X-Forwarded-For is replaced by its address; a client inside the list keeps its chain.
    The listener's own list replaces the top-level one."""
    p = proxy(config_text=config(backends, "v1", trusted=["0.0.0.0/0"],
                                 listen_trusted=["127.0.0.1", "198.51.100.0/24"]))
    for src, want in (("203.0.113.7", "203.0.113.7"),
                      ("198.51.100.9", "1.2.3.4, 198.51.100.9")):
        with helpers.Raw(p.port) as c:
            c.send(("PROXY TCP4 %s 127.0.0.1 40000 80\r\n" % src).encode() +
                   helpers.get_request("/echo-headers", extra=b"X-Forwarded-For: 1.2.3.4\r\n"))
            r = c.read_response()
        assert r.status == 200 and xff(r) == want, r


def test_proxy_protocol_v2_long_tlvs_are_skipped(proxy, backends):
    """A header longer than the inline buffer (3 KiB of TLVs) arrives in pieces and is
    skipped whole; the request right behind it is the first byte HTTP sees."""
    p = proxy(config_text=config(backends, "v2"))
    tlvs = b"\xEE" + struct.pack("!H", 3000) + b"x" * 3000 + b"\x04\x00\x00"
    hdr = v2_header("192.0.2.44", tlvs=tlvs)
    with helpers.Raw(p.port) as c:
        c.send(hdr[:100])
        time.sleep(0.05)
        c.send(hdr[100:] + helpers.get_request("/echo-headers"))
        r = c.read_response()
    assert r.status == 200 and xff(r) == "192.0.2.44", r
    # A TLV that runs past the header's length: closed.
    bad = v2_header("192.0.2.45", tlvs=b"\xEE" + struct.pack("!H", 10) + b"x" * 4)
    with helpers.Raw(p.port, timeout=5) as c:
        c.send(bad + helpers.get_request("/echo-headers"))
        with pytest.raises((EOFError, ConnectionResetError)):
            c.read_response()
    helpers.wait_for(lambda: "TLV runs past the header" in p.log_text(), 5, "the TLV line")


def test_proxy_protocol_header_and_tls_client_hello_in_one_write_work(proxy, backends, tls_cert):
    import ssl
    tls_port = helpers.free_port()
    p = proxy(config_text=config(backends, "any", tls=(tls_port,) + tuple(tls_cert)))
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = ctx.wrap_bio(inc, out, server_hostname="localhost")
    with pytest.raises(ssl.SSLWantReadError):
        tls.do_handshake()
    sock = socket.create_connection(("127.0.0.1", tls_port), timeout=10)
    try:
        sock.sendall(v2_header("203.0.113.77") + out.read())  # header + ClientHello
        deadline = time.monotonic() + 10
        while True:
            try:
                tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                pending = out.read()
                if pending:
                    sock.sendall(pending)
                assert time.monotonic() < deadline
                data = sock.recv(65536)
                assert data, "closed during the handshake"
                inc.write(data)
        sock.sendall(out.read())
        tls.write(helpers.get_request("/echo-headers", extra=b"Connection: close\r\n"))
        sock.sendall(out.read())
        raw = b""
        while True:
            data = sock.recv(65536)
            if not data:
                break
            inc.write(data)
            try:
                while True:
                    raw += tls.read(65536)
            except (ssl.SSLWantReadError, ssl.SSLZeroReturnError):
                pass
            if b"\r\n\r\n" in raw and raw.rstrip().endswith(b"}"):
                break
    finally:
        sock.close()
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), raw[:300]
    doc = json.loads(body)
    assert [v for n, v in doc["headers"] if n.lower() == "x-forwarded-for"] == ["203.0.113.77"]


# -- clusters.NAME.proxy_protocol: v2 -------------------------------------------------------------

def test_cluster_proxy_protocol_v2_names_each_client_to_the_cluster(proxy, backends):
    """switchyard A sends PROXY v2 to its cluster, which is switchyard B with
    `proxy_protocol: v2` in front of the backend: B takes the client's address from the
    header, so the backend sees the original client, not A. Each connection carries one
    client: two clients in turn get two connections."""
    inner = proxy(config_text=config(backends, "v2"))
    outer = proxy(config_text=(
        "workers: 1\nlisten:\n  - address: 127.0.0.1:@PORT@\n"
        "timeouts: {drain: 5s}\nshutdown: {delay: 0s}\n"
        "clusters:\n  inner: {endpoints: ['127.0.0.1:%d'], proxy_protocol: v2}\n"
        "apps:\n  - name: web\n    hosts: ['*']\n    weights: {inner: 100}\n" % inner.port))
    for src in ("127.0.0.31", "127.0.0.32", "127.0.0.31"):
        r = curl1(outer.url + "/echo-headers", "--http1.1", "--interface", src)
        assert r.status == 200, r
        # B does not trust A's X-Forwarded-For, so the backend sees B's view: the client.
        assert xff(r) == src, r.json()["headers"]
    assert rejections(inner) == 0, inner.log_text()[-2000:]


def test_proxy_protocol_turned_on_by_reload_applies_to_new_connections(proxy, backends):
    """The listener stays (same address); the next connection follows the new file. One
    opened before the reload goes on as it began."""
    p = proxy(config_text=config(backends, None))
    before = helpers.Raw(p.port)
    try:
        with open(p.config) as f:
            text = f.read()
        new = text.replace("  - address: 127.0.0.1:%d\n" % p.port,
                           "  - address: 127.0.0.1:%d\n    proxy_protocol: v2\n" % p.port, 1)
        assert new != text
        with open(p.config + ".tmp", "w") as f:
            f.write(new)
        os.rename(p.config + ".tmp", p.config)
        os.kill(p.pid, signal.SIGHUP)
        helpers.wait_for(lambda: p.generation() >= 2, 10, "generation 2")
        before.send(helpers.get_request("/echo-headers"))
        r = before.read_response()
        assert r.status == 200 and xff(r) == "127.0.0.1", r
    finally:
        before.close()
    with helpers.Raw(p.port, timeout=5) as c:
        c.send(helpers.get_request("/echo-headers"))
        with pytest.raises((EOFError, ConnectionResetError)):
            c.read_response()
    with helpers.Raw(p.port) as c:
        c.send(v2_header("192.0.2.61") + helpers.get_request("/echo-headers"))
        r = c.read_response()
    assert r.status == 200 and xff(r) == "192.0.2.61", r
