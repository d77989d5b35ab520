# SPDX-License-Identifier: MIT
"""HTTP/2 and TLS towards the clusters (issue #7), end to end with real servers: nghttpd
(Debian nghttp2-server) as an h2c cluster and as an h2-over-TLS cluster; the test backend over
TLS (python ssl) as an HTTP/1.1-over-TLS cluster, with SNI (none for an IP, the endpoint's name
or `sni:`) and mutual TLS; certificate verification on by default (a self-signed certificate
without `ca:` is a 502 with a reason); h2load through switchyard multiplexed on a few upstream
connections; a python3-h2 server (h2_goaway_server.py) that sends GOAWAY after every N streams
(gracefully and abruptly), one that refuses streams above SETTINGS_MAX_CONCURRENT_STREAMS 2
(nghttpd -m 2 too), both under load with no failed request, and one that resets its first
connections (a request is retried once, not more); a WebSocket request to an HTTP/2 cluster
answered 502; and `switchyard -t` on the new keys."""

import hashlib
import os
import re
import socket
import subprocess
import time

import pytest

from admin_util import h2load, h2load_result
from conftest import SWITCHYARD
from helpers import Raw, curl, curl1, measure
from upstream_util import NGHTTPD, ConnSampler, Peers

PATTERN = bytes(range(256)) * 256  # what backend.py's and h2_goaway_server.py's /bytes/N send


def pattern_bytes(n):
    return (PATTERN * (n // len(PATTERN) + 1))[:n]


# -- fixtures -----------------------------------------------------------------------------------

@pytest.fixture
def peers(tmp_path):
    ps = Peers(tmp_path)
    yield ps
    ps.stop_all()


@pytest.fixture
def nghttpd_ok():
    if not NGHTTPD:
        pytest.skip("nghttpd not installed (Debian package nghttp2-server)")


@pytest.fixture(scope="module")
def docroot(tmp_path_factory):
    """hello.txt and big.bin (3 MiB + 123 bytes of random data) for nghttpd."""
    d = tmp_path_factory.mktemp("htdocs")
    (d / "hello.txt").write_bytes(b"hello from nghttpd\n")
    (d / "big.bin").write_bytes(os.urandom(3 * 1024 * 1024 + 123))
    return d


@pytest.fixture(scope="module")
def client_cert(tmp_path_factory):
    """(cert, key): a self-signed client certificate, CN=switchyard-client."""
    d = tmp_path_factory.mktemp("client-tls")
    cert, key = str(d / "client.pem"), str(d / "client-key.pem")
    p = subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes",
                        "-keyout", key, "-out", cert, "-days", "2",
                        "-subj", "/CN=switchyard-client"],
                       stdin=subprocess.DEVNULL, capture_output=True, timeout=60)
    assert p.returncode == 0, "openssl req failed: %s" % p.stderr.decode(errors="replace")
    return cert, key


def fetch(urls, mode, **kw):
    """curl of several URLs: on one kept-alive connection for HTTP/1.1; one curl per URL for
    h2c, since Debian 12's curl 7.88.1 fails a second transfer on a reused prior-knowledge
    connection with "Error in the HTTP2 framing layer" (it does so against nghttpd too)."""
    if mode == "--http2-prior-knowledge":
        return [curl1(u, mode, **kw) for u in urls]
    return curl(urls, mode, **kw)


def one_cluster(proxy, cluster, **kw):
    """A proxy whose only app sends everything to the one cluster `up`."""
    return proxy([{"name": "up", "hosts": ["*"], "weights": {"up": 100}}],
                 clusters={"up": cluster}, **kw)


def assert_own_502(r, what):
    assert r.status == 502, "%s: want a 502 from the proxy, got %s %r" % (what, r.status, r.body)
    assert r.body.strip(), "%s: the 502 must say why in its body, got an empty body" % what


# -- switchyard -t ------------------------------------------------------------------------------

GOOD = """\
listen:
  - address: 127.0.0.1:18080
clusters:
  blue:
    endpoints: [127.0.0.1:9001]
  green:
    endpoints: [127.0.0.1:9002]
    protocol: h2c
  secure:
    endpoints: [127.0.0.1:9443]
    protocol: h2
    tls:
      ca: @CA@
      sni: localhost
      verify: true
  mtls:
    endpoints: [127.0.0.1:9444]
    tls:
      ca: @CA@
      cert: @CERT@
      key: @KEY@
  plain:
    endpoints: [127.0.0.1:9445]
    protocol: http1
    tls:
      verify: false
apps:
  - name: shop
    hosts: [shop.example.com]
    weights: {blue: 50, green: 50}
    drain_after: 30s
  - name: other
    hosts: ["*"]
    weights: {secure: 50, mtls: 40, plain: 10}
"""

# (id, old, new, needles: the error must be on a line between the first and last needle's
# lines (inclusive) of the bad text, words: one of them must be in the message)
BAD = [
    ("unknown-protocol", "    protocol: h2c\n", "    protocol: h3\n",
     ["protocol: h3"], ["h3", "protocol"]),
    ("h2c-with-tls", "    protocol: h2c\n",
     "    protocol: h2c\n    tls:\n      sni: green.example\n",
     ["  green:", "      sni: green.example"], ["tls", "h2c"]),
    ("cert-without-key", "      key: @KEY@\n", "",
     ["  mtls:", "      cert: "], ["key"]),
    ("missing-ca-file", "      ca: @CA@\n      sni: localhost",
     "      ca: /nonexistent/sy-ca.pem\n      sni: localhost",
     ["ca: /nonexistent/sy-ca.pem"], ["/nonexistent/sy-ca.pem", "no such file"]),
    ("drain-after-negative", "drain_after: 30s", "drain_after: -1",
     ["drain_after: -1"], ["drain_after", "-1"]),
    ("drain-after-garbage", "drain_after: 30s", "drain_after: soon",
     ["drain_after: soon"], ["drain_after", "soon"]),
]


def good_text(tls_cert, client_cert):
    return GOOD.replace("@CA@", tls_cert[0]).replace("@CERT@", client_cert[0]) \
        .replace("@KEY@", client_cert[1])


def run_check(path):
    return subprocess.run([SWITCHYARD, "-t", "-c", str(path)], capture_output=True, text=True,
                          errors="replace", stdin=subprocess.DEVNULL, timeout=20)


def line_of(text, needle):
    assert text.count(needle) == 1, "needle %r must be unique in the test's file" % needle
    return text.count("\n", 0, text.index(needle)) + 1


def test_check_accepts_protocol_tls_and_drain_after(tmp_path, tls_cert, client_cert):
    f = tmp_path / "good.yaml"
    f.write_text(good_text(tls_cert, client_cert))
    p = run_check(f)
    assert p.returncode == 0, "a file with protocol/tls/drain_after must pass -t:\n%s%s" % (
        p.stdout, p.stderr)
    assert "ok" in p.stdout, p.stdout


@pytest.mark.parametrize("case", BAD, ids=[c[0] for c in BAD])
def test_check_rejects_bad_upstream_keys_with_file_line_col(tmp_path, tls_cert, client_cert,
                                                            case):
    name, old, new, needles, words = case
    text = GOOD.replace(old, new)
    assert text != GOOD, "the case's replacement did not apply"
    text = text.replace("@CA@", tls_cert[0]).replace("@CERT@", client_cert[0]) \
        .replace("@KEY@", client_cert[1])
    f = tmp_path / ("%s.yaml" % name)
    f.write_text(text)
    p = run_check(f)
    assert p.returncode == 1, "%s: want exit 1, got %d\nstdout:\n%s\nstderr:\n%s" % (
        name, p.returncode, p.stdout, p.stderr)
    diags = re.findall(r"^%s:(\d+):(\d+): (.+)$" % re.escape(str(f)), p.stderr, re.M)
    assert diags, "%s: no `%s:line:col: message` on stderr:\n%s" % (name, f, p.stderr)
    lines = [line_of(text, n) for n in needles]
    lo, hi = min(lines), max(lines)
    hits = [d for d in diags if lo <= int(d[0]) <= hi and int(d[1]) >= 1]
    assert hits, "%s: want an error on lines %d..%d, got:\n%s" % (name, lo, hi, p.stderr)
    assert any(w.lower() in h[2].lower() for h in hits for w in words), \
        "%s: the message should name one of %r:\n%s" % (name, words, p.stderr)


# -- nghttpd as an h2c cluster ------------------------------------------------------------------

def test_h2c_cluster_serves_nghttpd_files_exactly_to_h1_and_h2c_clients(
        nghttpd_ok, peers, proxy, docroot):
    ng = peers.nghttpd(docroot)
    p = one_cluster(proxy, {"endpoints": [ng.addr], "protocol": "h2c"})
    hello = (docroot / "hello.txt").read_bytes()
    big = (docroot / "big.bin").read_bytes()
    for mode in ("--http1.1", "--http2-prior-knowledge"):
        rs = fetch([p.url + "/hello.txt", p.url + "/big.bin", p.url + "/missing"], mode)
        assert rs[0].status == 200 and rs[0].body == hello, (mode, rs[0])
        assert rs[1].status == 200, (mode, rs[1])
        assert len(rs[1].body) == len(big) and rs[1].body == big, \
            "%s: big.bin differs: %d bytes, sha256 %s, want %d bytes %s" % (
                mode, len(rs[1].body), hashlib.sha256(rs[1].body).hexdigest(), len(big),
                hashlib.sha256(big).hexdigest())
        assert rs[2].status == 404, "%s: nghttpd's own 404 must pass through: %r" % (mode, rs[2])


def test_h2c_cluster_request_bodies_reach_nghttpd_whole(nghttpd_ok, peers, proxy, docroot):
    """nghttpd --echo-upload returns the body it received: Content-Length and chunked uploads
    from HTTP/1.1 clients and DATA from h2c clients arrive whole."""
    ng = peers.nghttpd(docroot, args=["--echo-upload"])
    p = one_cluster(proxy, {"endpoints": [ng.addr], "protocol": "h2c"})
    path = str(docroot / "big.bin")
    big = (docroot / "big.bin").read_bytes()
    for opts in (["--http1.1"], ["--http1.1", "-H", "Transfer-Encoding: chunked"],
                 ["--http2-prior-knowledge"]):
        r = curl1(p.url + "/upload", "--data-binary", "@" + path, "-H",
                  "Content-Type: application/octet-stream", *opts)
        assert r.status == 200, (opts, r)
        assert r.body == big, "%s: echoed %d bytes (sha256 %s), sent %d" % (
            opts, len(r.body), hashlib.sha256(r.body).hexdigest(), len(big))


# -- nghttpd as an h2 (TLS) cluster ---------------------------------------------------------------

@pytest.mark.parametrize("sni", [None, "localhost"], ids=["ip-san", "sni-localhost"])
def test_h2_tls_cluster_verified_with_ca(nghttpd_ok, peers, proxy, docroot, tls_cert, sni):
    ng = peers.nghttpd(docroot, tls=tls_cert)
    tls = {"ca": tls_cert[0]}
    if sni:
        tls["sni"] = sni
    p = one_cluster(proxy, {"endpoints": [ng.addr], "protocol": "h2", "tls": tls})
    big = (docroot / "big.bin").read_bytes()
    for mode in ("--http1.1", "--http2-prior-knowledge"):
        r = curl1(p.url + "/big.bin", mode)
        assert r.status == 200 and r.body == big, "%s: %s, %d bytes (want %d)" % (
            mode, r.status, len(r.body), len(big))


@pytest.mark.parametrize("case", ["no-ca", "wrong-sni", "verify-false"])
def test_h2_tls_cluster_certificate_verification(nghttpd_ok, peers, proxy, docroot, tls_cert,
                                                 case):
    """Verification is on by default: nghttpd's self-signed certificate is not in the system
    store (502), nor valid for another name (502); `verify: false` accepts it."""
    ng = peers.nghttpd(docroot, tls=tls_cert)
    tls = {"no-ca": None, "wrong-sni": {"ca": tls_cert[0], "sni": "wrong.example"},
           "verify-false": {"verify": False}}[case]
    cluster = {"endpoints": [ng.addr], "protocol": "h2"}
    if tls:
        cluster["tls"] = tls
    p = one_cluster(proxy, cluster)
    r = curl1(p.url + "/hello.txt", "--http1.1")
    if case == "verify-false":
        assert r.status == 200 and r.body == b"hello from nghttpd\n", r
        return
    assert_own_502(r, case)
    said = (r.body.decode(errors="replace") + p.log_text()).lower()
    assert any(w in said for w in ("certif", "verif", "tls", "handshake")), \
        "%s: neither the 502 nor the log says the TLS check failed: %r\nlog:\n%s" % (
            case, r.body, p.log_text()[-2000:])
    # An h2c client gets the same answer on its stream.
    r = curl1(p.url + "/hello.txt", "--http2-prior-knowledge")
    assert_own_502(r, case + " (h2c client)")


# -- HTTP/1.1 over TLS clusters -------------------------------------------------------------------

@pytest.mark.parametrize("sni", [None, "localhost"], ids=["ip-no-sni", "sni-localhost"])
def test_https_h1_cluster_through_http_and_https_listeners(peers, proxy, tls_cert, sni):
    tb = peers.tls_backend("tls-1", *tls_cert)
    tls = {"ca": tls_cert[0]}
    if sni:
        tls["sni"] = sni
    p = one_cluster(proxy, {"endpoints": [tb.addr], "tls": tls}, tls=tls_cert)
    n = 1_000_000
    r = curl1(p.url + "/bytes/%d" % n, "--http1.1")
    assert r.status == 200 and r.backend == "tls-1", r
    assert r.body == pattern_bytes(n), "cleartext client: %d bytes, want %d" % (len(r.body), n)
    # https/1.1 and h2 (ALPN) from the client, TLS to the cluster.
    for mode in ("--http1.1", "--http2"):
        r = curl1(p.tls_url + "/bytes/%d" % n, mode, "--cacert", tls_cert[0])
        assert r.status == 200 and r.backend == "tls-1", (mode, r)
        assert r.body == pattern_bytes(n), "%s over TLS: %d bytes" % (mode, len(r.body))
    hs = [x for x in tb.records() if x["ev"] == "tls"]
    assert hs, "the TLS backend logged no handshake: %r" % tb.records()
    if sni:
        assert all(x["sni"] == sni for x in hs), "want SNI %r on every handshake: %r" % (sni, hs)
    else:
        assert all(x["sni"] is None for x in hs), \
            "an IP endpoint without `sni:` must send no SNI: %r" % hs
    assert not [x for x in tb.records() if x["ev"] == "tls-fail"], tb.records()


def test_https_h1_cluster_endpoint_by_name_sends_and_verifies_that_name(peers, proxy,
                                                                         tls_cert):
    """An endpoint written `localhost:PORT` with no `sni:` sends SNI localhost and verifies
    the certificate for it (DNS:localhost)."""
    tb = peers.tls_backend("tls-1", *tls_cert)
    first = socket.getaddrinfo("localhost", tb.port, type=socket.SOCK_STREAM)[0][4][0]
    if first != "127.0.0.1":
        pytest.skip("localhost resolves to %s first here; the backend listens on 127.0.0.1"
                    % first)
    p = one_cluster(proxy, {"endpoints": ["localhost:%d" % tb.port],
                            "tls": {"ca": tls_cert[0]}})
    r = curl1(p.url + "/anything", "--http1.1")
    assert r.status == 200 and r.backend == "tls-1", r
    hs = [x for x in tb.records() if x["ev"] == "tls"]
    assert hs and all(x["sni"] == "localhost" for x in hs), \
        "want SNI localhost (the endpoint's host): %r" % hs


def test_new_tls_connections_to_a_cluster_resume_the_session(peers, proxy, tls_cert):
    """Each pool keeps the last session the cluster gave it: with no idle connection kept
    (limits.upstream_keepalive: 0), every request makes a new TLS connection, and all but the
    first resume instead of a full handshake."""
    tb = peers.tls_backend("tls-1", *tls_cert)
    p = one_cluster(proxy, {"endpoints": [tb.addr], "tls": {"ca": tls_cert[0]}},
                    limits={"upstream_keepalive": 0})
    for i in range(5):
        r = curl1(p.url + "/resume-%d" % i, "--http1.1")
        assert r.status == 200 and r.backend == "tls-1", r
    hs = [x for x in tb.records() if x["ev"] == "tls"]
    assert len(hs) == 5, "want one handshake per request: %r" % hs
    assert not hs[0]["reused"], hs[0]
    assert all(x["reused"] for x in hs[1:]), "later connections must resume: %r" % hs


def test_h2_cluster_that_does_not_agree_to_h2_is_502(peers, proxy, tls_cert):
    """protocol h2 against a TLS server that offers only http/1.1 in ALPN: a 502 that says
    so, never HTTP/2 frames sent to an HTTP/1.1 server."""
    tb = peers.tls_backend("tls-1", *tls_cert)
    p = one_cluster(proxy, {"endpoints": [tb.addr], "protocol": "h2",
                            "tls": {"ca": tls_cert[0]}})
    r = curl1(p.url + "/hello", "--http1.1")
    assert_own_502(r, "h2 cluster without ALPN h2")
    assert b"ALPN" in r.body, r.body
    assert not [x for x in tb.records() if x.get("ev") == "request"], tb.records()


def test_https_h1_cluster_without_ca_is_502_and_sends_nothing(peers, proxy, tls_cert):
    tb = peers.tls_backend("tls-1", *tls_cert)
    p = one_cluster(proxy, {"endpoints": [tb.addr], "tls": {"verify": True}})
    r = curl1(p.url + "/never", "--http1.1")
    assert_own_502(r, "self-signed cluster certificate, no ca")
    assert not [x for x in tb.records() if x["ev"] == "request"], \
        "a request went to a cluster whose certificate failed verification: %r" % tb.records()


def test_mutual_tls_client_certificate(peers, proxy, tls_cert, client_cert):
    tb = peers.tls_backend("mtls-1", *tls_cert, client_ca=client_cert[0])
    p = one_cluster(proxy, {"endpoints": [tb.addr],
                            "tls": {"ca": tls_cert[0], "cert": client_cert[0],
                                    "key": client_cert[1]}})
    r = curl1(p.url + "/anything", "--http1.1")
    assert r.status == 200 and r.backend == "mtls-1", r
    hs = [x for x in tb.records() if x["ev"] == "tls"]
    assert hs and all(x["client_cert"] == "commonName=switchyard-client" for x in hs), hs

    p2 = one_cluster(proxy, {"endpoints": [tb.addr], "tls": {"ca": tls_cert[0]}})
    r = curl1(p2.url + "/anything", "--http1.1")
    assert_own_502(r, "mutual TLS server, no client certificate configured")


# -- WebSocket to an HTTP/2 cluster ----------------------------------------------------------------

@pytest.mark.parametrize("protocol", ["h2c", "h2"])
def test_websocket_to_an_h2_cluster_is_502(nghttpd_ok, peers, proxy, docroot, tls_cert,
                                           protocol):
    if protocol == "h2":
        ng = peers.nghttpd(docroot, tls=tls_cert)
        cluster = {"endpoints": [ng.addr], "protocol": "h2", "tls": {"ca": tls_cert[0]}}
    else:
        ng = peers.nghttpd(docroot)
        cluster = {"endpoints": [ng.addr], "protocol": "h2c"}
    p = one_cluster(proxy, cluster)
    with Raw(p.port) as c:
        c.send(b"GET /socket HTTP/1.1\r\nHost: app.test\r\nUpgrade: websocket\r\n"
               b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
               b"Sec-WebSocket-Version: 13\r\n\r\n")
        r = c.read_response()
    assert_own_502(r, "WebSocket to an %s cluster" % protocol)
    # Plain requests on the same cluster still work.
    assert curl1(p.url + "/hello.txt").status == 200


# -- multiplexing under load -----------------------------------------------------------------------

@pytest.mark.parametrize("client", ["h2c", "h1"])
def test_h2load_through_switchyard_shares_few_upstream_connections(nghttpd_ok, peers, proxy,
                                                                   docroot, client):
    """2 s of h2load (10 clients; h2c with 10 streams each, or HTTP/1.1) through switchyard to
    nghttpd (100 streams per connection): no failure, and the upstream connections, sampled
    every 20 ms, stay a handful."""
    ng = peers.nghttpd(docroot)
    p = one_cluster(proxy, {"endpoints": [ng.addr], "protocol": "h2c"})
    sampler = ConnSampler(ng.port)
    sampler.start()
    try:
        proc = h2load(p.url + "/hello.txt", h1=(client == "h1"), duration=2, clients=10,
                      streams=10)
        res = h2load_result(proc, 60)
    finally:
        sampler.stop()
    summary = {k: v for k, v in res.items() if k != "output"}
    assert res["total"] >= 100, "h2load made only %d requests: %s" % (res["total"], summary)
    assert res["failed"] == 0 and res["errored"] == 0 and res["2xx"] == res["total"], \
        "h2load (%s clients) through switchyard: %s\n%s" % (client, summary,
                                                             res["output"][-1500:])
    note = "h2load -D 2 -c 10%s: %d requests; nghttpd (100 streams per connection)" % (
        " -m 10" if client == "h2c" else " --h1", res["total"])
    measure("h2c_upstream_conns_max_open_%s_c10" % client, sampler.max_open, "connections",
            note)
    measure("h2c_upstream_conns_distinct_%s_c10" % client, len(sampler.seen), "connections",
            "%d samples" % sampler.samples)
    assert sampler.samples >= 10, "the sampler ran only %d times" % sampler.samples
    assert 1 <= sampler.max_open <= 4, \
        "%d upstream connections open at once for 10 clients (want <= 4: streams share them)" \
        % sampler.max_open
    assert len(sampler.seen) <= 6, \
        "%d distinct upstream connections over the run (want <= 6)" % len(sampler.seen)


# -- GOAWAY from the cluster -----------------------------------------------------------------------

def _h2_cluster(peer):
    return {"endpoints": [peer.addr], "protocol": "h2c"}


def _count(records, ev):
    return sum(1 for r in records if r["ev"] == ev)


def test_upstream_goaway_graceful_every_50_streams_under_h2load(peers, proxy):
    peer = peers.h2peer("goaway-50", ["--goaway-after", "50"])
    p = one_cluster(proxy, _h2_cluster(peer))
    n = 2000
    res = h2load_result(h2load(p.url + "/", n=n, clients=4, streams=8), 120)
    recs = peer.records()
    # A GOAWAY begins with the notice; the final one is sent only if the proxy has not closed
    # the connection by the time its PING comes back (it may once its streams are done).
    conns, goaways = _count(recs, "conn"), _count(recs, "goaway-notice")
    streams, ignored = _count(recs, "stream"), _count(recs, "ignored")
    assert res["failed"] == 0 and res["2xx"] == n, \
        "requests failed across upstream GOAWAYs: %s\n%s" % (
            {k: v for k, v in res.items() if k != "output"}, res["output"][-1500:])
    measure("goaway_graceful_upstream_conns", conns, "connections",
            "%d requests, GOAWAY after 50 streams each" % n)
    assert goaways >= 5, "the peer sent only %d GOAWAYs for %d streams" % (goaways, streams)
    assert ignored == 0, ("%d streams were opened on a connection after its GOAWAY had been "
                          "read (RFC 9113 6.8: MUST NOT)" % ignored)
    assert streams == n, "the peer received %d streams for %d requests (lost or duplicated)" \
        % (streams, n)
    assert conns >= goaways, (conns, goaways)


def test_upstream_goaway_abrupt_unprocessed_streams_are_retried(peers, proxy):
    """A GOAWAY naming the 20th stream at once: streams already sent beyond it are ignored by
    the server (not processed, RFC 9113 6.8 and 8.7), and the proxy must send them again on a
    fresh connection: no client sees an error. 8 streams at a time, fewer than 20, so a
    request sent again on a fresh connection is never beyond that connection's GOAWAY too
    (the proxy retries once)."""
    peer = peers.h2peer("goaway-20", ["--goaway-after", "20", "--goaway-mode", "abrupt"])
    p = one_cluster(proxy, _h2_cluster(peer))
    n = 1000
    res = h2load_result(h2load(p.url + "/delay/2", n=n, clients=2, streams=4), 120)
    recs = peer.records()
    done, ignored, conns = _count(recs, "done"), _count(recs, "ignored"), _count(recs, "conn")
    measure("goaway_abrupt_upstream_conns", conns, "connections", "%d requests" % n)
    measure("goaway_abrupt_streams_ignored_and_retried", ignored, "streams")
    assert res["failed"] == 0 and res["2xx"] == n, \
        "requests failed across abrupt upstream GOAWAYs (%d streams ignored by the server): " \
        "%s\n%s" % (ignored, {k: v for k, v in res.items() if k != "output"},
                    res["output"][-1500:])
    assert done == n, "the server answered %d streams for %d requests" % (done, n)


def test_upstream_goaway_under_curl_keepalive(peers, proxy):
    peer = peers.h2peer("goaway-7", ["--goaway-after", "7"])
    p = one_cluster(proxy, _h2_cluster(peer))
    for mode in ("--http1.1", "--http2-prior-knowledge"):
        rs = fetch([p.url + "/n/%d" % i for i in range(60)], mode, timeout=60)
        bad = [(i, r.status, r.body[:80]) for i, r in enumerate(rs)
               if r.status != 200 or r.body != b"goaway-7\n"]
        assert not bad, "%s: failed across GOAWAYs: %r" % (mode, bad)
    conns = _count(peer.records(), "conn")
    measure("goaway_curl_upstream_conns", conns, "connections", "120 requests, GOAWAY after 7")
    assert conns >= 120 // 7 - 1, "only %d upstream connections for 120 requests" % conns


def test_request_failing_before_any_byte_was_taken_is_retried_once(peers, proxy):
    """The cluster resets its first connection at once: the GET goes once more on a new
    connection and succeeds. When it resets the first two, the client gets a 502 and the
    cluster saw exactly two connections: one retry, not more."""
    peer = peers.h2peer("drop-1", ["--drop-first", "1"])
    p = one_cluster(proxy, _h2_cluster(peer))
    for mode in ("--http1.1", "--http2-prior-knowledge"):
        r = curl1(p.url + "/first", mode)
        assert r.status == 200 and r.body == b"drop-1\n", (mode, r)
    recs = peer.records()
    assert _count(recs, "dropped") == 1, recs
    assert [x["path"] for x in recs if x["ev"] == "stream"] == ["/first", "/first"], recs

    peer2 = peers.h2peer("drop-2", ["--drop-first", "2"])
    p2 = one_cluster(proxy, _h2_cluster(peer2))
    r = curl1(p2.url + "/second", "--http1.1")
    assert_own_502(r, "a cluster that reset the first two connections")
    time.sleep(0.5)  # a third attempt, if any, would show by now
    recs = peer2.records()
    assert _count(recs, "conn") == 2, \
        "want exactly 2 connections (the request and one retry), got: %r" % recs


# -- SETTINGS_MAX_CONCURRENT_STREAMS ---------------------------------------------------------------

def test_max_concurrent_streams_2_python_peer_more_connections_no_failures(peers, proxy):
    peer = peers.h2peer("max2", ["--max-streams", "2"])
    p = one_cluster(proxy, _h2_cluster(peer))
    n = 200
    res = h2load_result(h2load(p.url + "/delay/50", n=n, clients=4, streams=4), 120)
    recs = peer.records()
    conns = _count(recs, "conn")
    refused = [r for r in recs if r["ev"] == "refused"]
    late = [r for r in refused if r["acked"]]
    measure("max_streams_2_upstream_conns", conns, "connections",
            "h2load -c 4 -m 4, 16 streams at once, server allows 2 per connection")
    measure("max_streams_2_refused_before_settings_ack", len(refused) - len(late), "streams")
    assert res["failed"] == 0 and res["2xx"] == n, \
        "%s (%d streams refused by the server)\n%s" % (
            {k: v for k, v in res.items() if k != "output"}, len(refused),
            res["output"][-1500:])
    assert not late, ("%d streams opened beyond SETTINGS_MAX_CONCURRENT_STREAMS 2 after the "
                      "proxy had acknowledged it: %r" % (len(late), late[:5]))
    assert conns >= 2, "16 concurrent streams at 2 per connection used %d connection(s)" % conns
    assert _count(recs, "done") == n, "the server answered %d of %d" % (
        _count(recs, "done"), n)


def test_max_concurrent_streams_2_nghttpd_more_connections_no_failures(nghttpd_ok, peers, proxy,
                                                                       docroot):
    ng = peers.nghttpd(docroot, args=["-m", "2"])
    p = one_cluster(proxy, {"endpoints": [ng.addr], "protocol": "h2c"})
    n = 60
    sampler = ConnSampler(ng.port)
    sampler.start()
    try:
        res = h2load_result(h2load(p.url + "/big.bin", n=n, clients=3, streams=4), 180)
    finally:
        sampler.stop()
    measure("nghttpd_m2_upstream_conns_distinct", len(sampler.seen), "connections",
            "h2load -c 3 -m 4 of a 3 MiB file, nghttpd -m 2")
    measure("nghttpd_m2_upstream_conns_max_open", sampler.max_open, "connections")
    assert res["failed"] == 0 and res["2xx"] == n, "%s\n%s" % (
        {k: v for k, v in res.items() if k != "output"}, res["output"][-1500:])
    assert len(sampler.seen) >= 2, \
        "12 concurrent streams to a server allowing 2 used %d connection(s)" % len(sampler.seen)


# -- /metrics for an HTTP/2 cluster --------------------------------------------------------------

def test_h2c_cluster_connections_and_connect_errors_in_metrics(nghttpd_ok, peers, proxy, docroot):
    """An HTTP/2 cluster's pooled connections (open, idle: no stream) and its connect errors
    are exported per endpoint as an HTTP/1.1 cluster's are."""
    from test_87_metrics import admin_extra, parse_metrics, sample, scrape
    from helpers import free_port
    ng = peers.nghttpd(docroot)
    closed = "127.0.0.1:%d" % free_port()  # nothing listens there
    hport = free_port()
    p = proxy([{"name": "up", "hosts": ["up.test"], "weights": {"up": 100}},
               {"name": "dead", "hosts": ["dead.test"], "weights": {"dead": 100}}],
              clusters={"up": {"endpoints": [ng.addr], "protocol": "h2c"},
                        "dead": {"endpoints": [closed], "protocol": "h2c"}},
              extra=admin_extra(hport))
    rs = curl([p.url + "/hello.txt"] * 3, "--http1.1", "-H", "Host: up.test")
    assert [r.status for r in rs] == [200] * 3, rs
    rs = curl([p.url + "/a", p.url + "/b"], "--http1.1", "-H", "Host: dead.test")
    assert [r.status for r in rs] == [502] * 2, rs
    s = parse_metrics(scrape(hport))
    assert sample(s, "switchyard_upstream_connections", cluster="up", endpoint=ng.addr,
                  state="open") == 1
    assert sample(s, "switchyard_upstream_connections", cluster="up", endpoint=ng.addr,
                  state="idle") == 1
    # Each request is tried once more on a fresh connection (nothing of it was processed):
    # four connects, four refusals.
    assert sample(s, "switchyard_upstream_connect_errors_total", cluster="dead", endpoint=closed,
                  reason="refused") == 4


def test_relayed_h2_status_gets_its_own_reason_phrase_on_http1(peers, proxy):
    """HTTP/2 has no reason phrase, so an HTTP/1.1 client's status line is written by the
    proxy: it names the status (RFC 9110's phrase), never a wrong word, and an unregistered
    code gets none (the phrase is optional, RFC 9112 4)."""
    peer = peers.h2peer("statuses")
    p = one_cluster(proxy, _h2_cluster(peer))
    want = {201: "Created", 301: "Moved Permanently", 302: "Found", 409: "Conflict",
            429: "Too Many Requests", 500: "Internal Server Error", 299: ""}
    for status, phrase in want.items():
        s = socket.create_connection(("127.0.0.1", p.port), timeout=10)
        try:
            s.sendall(b"GET /status/%d HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n"
                      % status)
            data = b""
            while b"\r\n" not in data:
                chunk = s.recv(4096)
                if not chunk:
                    break
                data += chunk
        finally:
            s.close()
        line = data.split(b"\r\n", 1)[0].decode()
        assert line == ("HTTP/1.1 %d %s" % (status, phrase)).rstrip(" ") or \
            line == "HTTP/1.1 %d %s" % (status, phrase), (status, line)
