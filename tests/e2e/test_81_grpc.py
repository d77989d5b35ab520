# SPDX-License-Identifier: MIT
"""gRPC through switchyard (issue #7): a real python3-grpcio server behind an h2c cluster and
behind an h2 (TLS) cluster, a real grpcio client in another process talking h2c by prior
knowledge to the proxy's cleartext port (and h2 over TLS to its TLS port). No protoc: generic
handlers and bytes messages (grpc_peer.py). Unary calls; a status with its details and
trailing metadata intact; initial and trailing (also binary) metadata; 200 messages of
bidirectional streaming in order; a ping-pong that deadlocks if the proxy holds a stream until
its end; an 8 MiB message each way. With the python3-h2 peer: `te: trailers` reaches the
cluster and response trailers reach an HTTP/2 client."""

import json
import os
import subprocess
import time

import pytest

import helpers
from conftest import SWITCHYARD
from helpers import measure
from upstream_util import PYTHON, H2Client, Peer, Peers

pytest.importorskip("grpc")

GRPC_PEER = os.path.join(helpers.HERE, "grpc_peer.py")


@pytest.fixture(scope="module")
def grpc_servers(tmp_path_factory, tls_cert):
    """Two gRPC servers for the module: cleartext (for an h2c cluster) and TLS (for h2). Each
    is checked directly first, so a broken gRPC install fails here and not as a proxy bug."""
    ps = Peers(tmp_path_factory.mktemp("grpc"))
    try:
        plain = ps.add(Peer([PYTHON, GRPC_PEER, "serve"], ps.workdir, "grpc-h2c"))
        tls = ps.add(Peer([PYTHON, GRPC_PEER, "serve", "--cert", tls_cert[0], "--key",
                           tls_cert[1]], ps.workdir, "grpc-tls"))
        doc = grpc_call(plain.addr, "unary")
        assert doc.get("ok"), "the gRPC peers do not work even directly: %r" % doc
        doc = grpc_call(tls.addr, "unary", "--ca", tls_cert[0])
        assert doc.get("ok"), "the TLS gRPC peer does not work directly: %r" % doc
        yield {"h2c": plain, "h2": tls}
    finally:
        ps.stop_all()


def grpc_call(target, scenario, *args, timeout=30):
    """Runs `grpc_peer.py call` in its own process; its JSON answer."""
    cmd = [PYTHON, GRPC_PEER, "call", "--target", target, "--timeout", str(timeout)] + \
        list(args) + [scenario]
    p = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                       timeout=timeout + 30)
    lines = [x for x in p.stdout.splitlines() if x.startswith("{")]
    assert lines, "grpc client printed no result (rc %d):\n%s\n%s" % (
        p.returncode, p.stdout[-2000:], p.stderr[-3000:])
    return json.loads(lines[-1])


@pytest.fixture(params=["h2c", "h2"])
def grpc_proxy(request, grpc_servers, proxy, tls_cert):
    """switchyard in front of the gRPC server, cluster protocol h2c or h2 (TLS, verified with
    the test CA); a TLS listener too."""
    server = grpc_servers[request.param]
    cluster = {"endpoints": [server.addr], "protocol": request.param}
    if request.param == "h2":
        cluster["tls"] = {"ca": tls_cert[0]}
    p = proxy([{"name": "grpc", "hosts": ["*"], "weights": {"grpc": 100}}],
              clusters={"grpc": cluster}, tls=tls_cert)
    p.target = "127.0.0.1:%d" % p.port
    p.cluster_protocol = request.param
    return p


def ok(doc, what):
    assert doc.get("ok") is True, "%s through switchyard: %s" % (what, json.dumps(doc)[:3000])
    return doc


def test_unary_call(grpc_proxy):
    doc = ok(grpc_call(grpc_proxy.target, "unary"), "unary call")
    assert doc["reply"] == "hello through switchyard"


def test_unary_call_over_the_tls_listener(grpc_proxy, tls_cert):
    target = "127.0.0.1:%d" % grpc_proxy.tls_port
    doc = ok(grpc_call(target, "unary", "--ca", tls_cert[0]), "unary call over TLS")
    assert doc["reply"] == "hello through switchyard"


def test_error_status_details_and_trailing_metadata_arrive_intact(grpc_proxy):
    doc = grpc_call(grpc_proxy.target, "fail")
    assert doc.get("failed_as_expected"), doc
    assert doc["code"] == "NOT_FOUND", "want the server's status NOT_FOUND: %r" % doc
    assert doc["details"] == "no such thing: order-42", "details changed on the way: %r" % doc
    assert ["x-why", "missing"] in doc.get("trailing", []), \
        "the trailing metadata of a failed call is missing: %r" % doc


def test_initial_and_trailing_metadata(grpc_proxy):
    doc = ok(grpc_call(grpc_proxy.target, "meta"), "call with metadata")
    assert doc["reply"] == "abc" and doc["code"] == "OK", doc
    assert ["x-initial", "i-abc"] in doc["initial"], doc
    assert ["x-trailer", "t-abc"] in doc["trailing"], doc
    assert ["x-bin-bin", bytes(range(256)).hex()] in doc["trailing"], \
        "binary trailing metadata changed: %r" % doc["trailing"]


def test_bidirectional_stream_of_200_messages_in_order(grpc_proxy):
    doc = ok(grpc_call(grpc_proxy.target, "bidi", "--count", "200"), "bidi stream")
    assert doc["received"] == 200 and doc["in_order"], doc


def test_ping_pong_streaming_needs_no_buffering(grpc_proxy):
    """The client sends message k+1 only after reply k arrived: a proxy that waits for the
    end of either stream before forwarding deadlocks the call (DEADLINE_EXCEEDED after 20 s)."""
    doc = ok(grpc_call(grpc_proxy.target, "pingpong", "--count", "100", timeout=20),
             "ping-pong stream")
    assert doc["exchanged"] == 100 and doc["extra"] == 0, doc
    measure("grpc_pingpong_rtt_median_%s" % grpc_proxy.cluster_protocol, doc["rtt_median_ms"],
            "ms", "100 round trips, client -> switchyard -> %s -> grpcio"
            % grpc_proxy.cluster_protocol)


def test_8_mib_message_each_way(grpc_proxy):
    before = helpers.proc_status(grpc_proxy.pid).get("VmHWM", 0)
    t0 = time.monotonic()
    doc = ok(grpc_call(grpc_proxy.target, "big", "--size", str(8 * 1024 * 1024), timeout=60),
             "8 MiB message")
    elapsed = time.monotonic() - t0
    assert doc["echo_intact"] and doc["echoed_sizes"] == [8 * 1024 * 1024, 17], doc
    assert doc["server_digests"][0].startswith("8388608 "), doc
    after = helpers.proc_status(grpc_proxy.pid).get("VmHWM", 0)
    measure("grpc_8mib_seconds_%s" % grpc_proxy.cluster_protocol, round(elapsed, 3), "s",
            "8 MiB to the server (digest) and 8 MiB there and back (echo)")
    growth = max(0, after - before)
    asan = helpers.is_asan(SWITCHYARD)
    measure("grpc_8mib_proxy_peak_rss_growth_%s" % grpc_proxy.cluster_protocol, growth, "KiB",
            "ASan build: quarantine and shadow memory" if asan else "")
    if not asan:
        # A proxy that held a whole message would grow by 8 MiB at least.
        assert growth < 6 * 1024, \
            "the proxy's peak RSS grew by %d KiB for an 8 MiB message: buffered whole?" % growth


# -- te: trailers and response trailers, seen from both ends -------------------------------------

@pytest.fixture
def h2_trailer_proxy(tmp_path, proxy):
    ps = Peers(tmp_path)
    peer = ps.h2peer("trailers")
    p = proxy([{"name": "t", "hosts": ["*"], "weights": {"t": 100}}],
              clusters={"t": {"endpoints": [peer.addr], "protocol": "h2c"}})
    yield p, peer
    ps.stop_all()


def _exchange(port, path, headers=(), deadline=10.0):
    """One request on a fresh HTTP/2 connection: (response headers, body, trailers)."""
    c = H2Client(port)
    try:
        sid = c.request(path, headers=headers)
        hdrs, body, trailers = None, b"", None
        end = time.monotonic() + deadline
        while time.monotonic() < end and not c.closed:
            for ev in c.events(0.5):
                if getattr(ev, "stream_id", None) != sid:
                    continue
                name = type(ev).__name__
                if name == "ResponseReceived":
                    hdrs = ev.headers
                elif name == "DataReceived":
                    body += ev.data
                    c.ack(sid, ev.flow_controlled_length)
                elif name == "TrailersReceived":
                    trailers = ev.headers
                elif name == "StreamReset":
                    raise AssertionError("stream reset (%s) after %r" % (ev.error_code, body))
                elif name == "StreamEnded":
                    return hdrs, body, trailers
        raise AssertionError("no complete response within %.0f s: headers %r body %r"
                             % (deadline, hdrs, body[:200]))
    finally:
        c.close()


def test_te_trailers_reaches_the_cluster(h2_trailer_proxy):
    p, peer = h2_trailer_proxy
    hdrs, body, _ = _exchange(p.port, "/echo-headers", headers=[("te", "trailers")])
    assert dict(hdrs).get(":status") == "200", hdrs
    got = json.loads(body)["headers"]
    assert ["te", "trailers"] in got, "`te: trailers` did not reach the cluster: %r" % got


def test_response_trailers_reach_an_h2_client(h2_trailer_proxy):
    p, peer = h2_trailer_proxy
    hdrs, body, trailers = _exchange(p.port, "/trailers", headers=[("te", "trailers")])
    assert dict(hdrs).get(":status") == "200", hdrs
    assert body == b"body before the trailers\n", body
    assert trailers is not None, "the response trailers were dropped"
    t = dict(trailers)
    assert t.get("x-trailer-one") == "1" and t.get("grpc-status") == "0", trailers
