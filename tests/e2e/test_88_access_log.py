# SPDX-License-Identifier: MIT
"""The JSON access log (`access_log:`): one line per request or HTTP/2 stream, written by a
thread of its own from per-worker rings, so that a reader that stops reading never stalls a
request (the lines are dropped and counted instead).

Real clients (curl over HTTP/1.1 and h2c, Python's sockets for bad requests) against the real
backends; each test reads the lines back from the file and checks their fields."""

import json
import os
import signal
import subprocess
import time

import helpers
from helpers import Raw, curl1, free_port, wait_for

FIELDS = ["time", "request_id", "app", "cluster", "rule", "endpoint", "client", "protocol", "tls",
          "method", "authority", "path", "status", "bytes_in", "bytes_out", "connect_ms",
          "upstream_reused", "ttfb_ms", "total_ms", "tunnel", "generated"]


def alog(path, **more):
    d = {"path": str(path)}
    d.update(more)
    return {"access_log": d}


def read_lines(path):
    if not os.path.exists(path):
        return []
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def lines_for(path, pred, n=1, timeout=5.0):
    """Waits until at least `n` lines satisfy `pred`; returns them."""
    got = []

    def ok():
        got[:] = [r for r in read_lines(path) if pred(r)]
        return len(got) >= n
    wait_for(ok, timeout, "%d access log lines in %s" % (n, path))
    return got


def by_path(p):
    return lambda r: r.get("path") == p


def check_shape(r):
    assert list(r.keys()) == FIELDS, r
    assert r["time"].endswith("Z") and len(r["time"]) == len("2026-01-01T00:00:00.000Z"), r


def test_h1_line_has_every_field(proxy, backends, tmp_path):
    log = tmp_path / "access.log"
    p = proxy(extra=alog(log))
    r = curl1(p.url + "/anything/h1-one", "--http1.1", "-H", "Host: web.test")
    assert r.status == 200
    rec = lines_for(log, by_path("/anything/h1-one"))[0]
    check_shape(rec)
    assert rec["app"] == "web" and rec["cluster"] == "blue" and rec["rule"] == "weights"
    assert rec["endpoint"] == backends.blue.addr
    assert rec["client"].startswith("127.0.0.1:") and int(rec["client"].split(":")[1]) > 0
    assert rec["protocol"] == "HTTP/1.1" and rec["tls"] is None
    assert rec["method"] == "GET" and rec["authority"] == "web.test"
    assert rec["status"] == 200 and rec["bytes_in"] == 0
    assert rec["bytes_out"] == len("blue-1\n")
    assert rec["generated"] is None and rec["tunnel"] is False
    assert rec["upstream_reused"] is False and rec["connect_ms"] is not None
    assert 0 <= rec["connect_ms"] <= rec["ttfb_ms"] <= rec["total_ms"] < 5000
    assert len(rec["request_id"]) == 16 and int(rec["request_id"], 16) >= 0


def test_reused_connection_has_no_connect_time(proxy, tmp_path):
    log = tmp_path / "access.log"
    p = proxy(extra=alog(log))
    for i in range(3):
        assert curl1(p.url + "/anything/reuse-%d" % i).status == 200
    recs = lines_for(log, lambda r: r["path"].startswith("/anything/reuse-"), n=3)
    later = [r for r in recs if r["path"] != "/anything/reuse-0"]
    assert all(r["upstream_reused"] is True and r["connect_ms"] is None for r in later), recs


def test_request_id_passed_through_and_generated(proxy, tmp_path):
    log = tmp_path / "access.log"
    p = proxy(extra=alog(log))
    mine = "abc-123_XYZ.7"
    r = curl1(p.url + "/echo-headers?id=1", "-H", "X-Request-Id: " + mine)
    seen = dict((k.lower(), v) for k, v in json.loads(r.body)["headers"])
    assert seen["x-request-id"] == mine
    r = curl1(p.url + "/echo-headers?id=2")
    gen = dict((k.lower(), v) for k, v in json.loads(r.body)["headers"])["x-request-id"]
    assert len(gen) == 16 and int(gen, 16) >= 0
    # Not sane (a space): replaced by one of ours, never forwarded as it came.
    r = curl1(p.url + "/echo-headers?id=3", "-H", "X-Request-Id: has space")
    hdrs = [(k.lower(), v) for k, v in json.loads(r.body)["headers"]]
    ids = [v for k, v in hdrs if k == "x-request-id"]
    assert len(ids) == 1 and ids[0] != "has space" and len(ids[0]) == 16
    recs = {r["path"]: r for r in lines_for(log, lambda r: "/echo-headers" in r["path"], n=3)}
    assert recs["/echo-headers?id=1"]["request_id"] == mine
    assert recs["/echo-headers?id=2"]["request_id"] == gen
    assert recs["/echo-headers?id=3"]["request_id"] == ids[0]


def test_h2c_stream_line(proxy, tmp_path):
    log = tmp_path / "access.log"
    p = proxy(extra=alog(log))
    r = curl1(p.url + "/anything/h2c-one", "--http2-prior-knowledge")
    assert r.status == 200
    rec = lines_for(log, by_path("/anything/h2c-one"))[0]
    check_shape(rec)
    assert rec["protocol"] == "h2c" and rec["status"] == 200 and rec["cluster"] == "blue"
    assert rec["authority"] == "127.0.0.1:%d" % p.port


def test_reader_that_stops_reading_never_stalls_a_request(proxy, backends, tmp_path):
    """access_log.path is a FIFO that this test opens and never reads: the pipe fills (64 KiB),
    the writer thread blocks in write(), the ring (buffer_bytes) fills, and from then on lines
    are dropped and counted while requests go on at their usual speed."""
    from test_87_metrics import get
    fifo = str(tmp_path / "access.fifo")
    os.mkfifo(fifo)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)  # held open, never read
    try:
        hport = free_port()
        p = proxy(extra=dict(alog(fifo, buffer_bytes=16384),
                             admin={"http": "127.0.0.1:%d" % hport}))
        c = Raw(p.port)
        slowest = 0.0
        n = 1500  # about 400 bytes a line: far more than the pipe and the ring hold
        for i in range(n):
            t0 = time.monotonic()
            c.send(helpers.get_request("/anything/fifo-%d" % i))
            resp = c.read_response()
            slowest = max(slowest, time.monotonic() - t0)
            assert resp.status == 200
        c.close()
        helpers.measure("access log: slowest request with a stuck reader", slowest * 1000, "ms")
        assert slowest < 1.0, slowest
        status, _, body = get(hport, "/status")
        dropped = json.loads(body)["access_log_dropped"]
        assert dropped >= n - (65536 + 16384) // 300, dropped
        # The same count in /metrics (curl, as Prometheus would scrape it).
        r = curl1("http://127.0.0.1:%d/metrics" % hport)
        samples = dict(line.rsplit(" ", 1) for line in r.body.decode().splitlines()
                       if line.startswith("switchyard_access_log_"))
        assert int(samples["switchyard_access_log_dropped_total"]) >= dropped
        assert int(samples["switchyard_access_log_lines_total"]) + \
            int(samples["switchyard_access_log_dropped_total"]) == n
    finally:
        os.close(reader)


def test_tls_h2_line_names_the_tls_version(proxy, tls_cert, tmp_path):
    log = tmp_path / "access.log"
    p = proxy(extra=alog(log), tls=tls_cert)
    r = curl1(p.tls_url + "/anything/tls-h2", "--http2", "--cacert", tls_cert[0])
    assert r.status == 200
    rec = lines_for(log, by_path("/anything/tls-h2"))[0]
    assert rec["protocol"] == "h2" and rec["tls"] in ("TLSv1.3", "TLSv1.2"), rec


def _force_sticky_apps():
    return [{"name": "web", "hosts": ["web.test"], "weights": {"blue": 100, "green": 0},
             "force": {"header": "x-sy-cluster", "cookie": "sy_force"}},
            {"name": "st", "hosts": ["st.test"], "weights": {"blue": 50, "green": 50},
             "sticky": {"header": "x-user"}}]


def test_forced_and_sticky_lines_name_their_rule(proxy, tmp_path):
    log = tmp_path / "access.log"
    p = proxy(apps=_force_sticky_apps(), extra=alog(log))
    assert curl1(p.url + "/anything/f-hdr", "-H", "Host: web.test",
                 "-H", "x-sy-cluster: green").backend == "green-1"
    assert curl1(p.url + "/anything/f-cookie", "-H", "Host: web.test",
                 "-H", "Cookie: a=1; sy_force=green").backend == "green-1"
    assert curl1(p.url + "/anything/sticky", "-H", "Host: st.test",
                 "-H", "x-user: u-42").status == 200
    assert curl1(p.url + "/anything/plain", "-H", "Host: web.test").backend == "blue-1"
    recs = {r["path"]: r for r in lines_for(log, lambda r: True, n=4)}
    assert recs["/anything/f-hdr"]["rule"] == "force_header"
    assert recs["/anything/f-hdr"]["cluster"] == "green"
    assert recs["/anything/f-cookie"]["rule"] == "force_cookie"
    assert recs["/anything/f-cookie"]["cluster"] == "green"
    assert recs["/anything/sticky"]["rule"] == "sticky"
    assert recs["/anything/sticky"]["app"] == "st"
    assert recs["/anything/plain"]["rule"] == "weights"


def test_own_400_line_before_any_routing(proxy, tmp_path):
    log = tmp_path / "access.log"
    p = proxy(extra=alog(log))
    with Raw(p.port) as c:
        c.send(b"GET /smuggle HTTP/1.1\r\nHost: web.test\r\nContent-Length: 1\r\n"
               b"Transfer-Encoding: chunked\r\n\r\n")
        assert c.read_response().status == 400
    rec = lines_for(log, lambda r: r["status"] == 400)[0]
    check_shape(rec)
    assert rec["generated"] == "bad_request" and rec["app"] is None
    assert rec["cluster"] is None and rec["rule"] is None and rec["endpoint"] is None
    assert rec["protocol"] == "HTTP/1.1" and rec["client"].startswith("127.0.0.1:")
    assert rec["request_id"] is None and rec["path"] is None


def test_own_502_for_a_closed_port_and_504_for_a_silent_backend(proxy, backends, tmp_path):
    log = tmp_path / "access.log"
    closed = "127.0.0.1:%d" % free_port()
    apps = [{"name": "dead", "hosts": ["dead.test"], "weights": {"gone": 100}},
            {"name": "web", "hosts": ["web.test"], "weights": {"blue": 100}}]
    p = proxy(apps=apps, clusters={"gone": [closed], "blue": [backends.blue.addr]},
              timeouts={"upstream_response": "300ms"}, extra=alog(log))
    assert curl1(p.url + "/anything/to-dead", "-H", "Host: dead.test").status == 502
    assert curl1(p.url + "/sleep/3", "-H", "Host: web.test").status == 504
    recs = {r["path"]: r for r in lines_for(log, lambda r: True, n=2)}
    dead, slow = recs["/anything/to-dead"], recs["/sleep/3"]
    assert dead["status"] == 502 and dead["generated"] == "upstream_connect"
    assert dead["app"] == "dead" and dead["cluster"] == "gone" and dead["endpoint"] == closed
    assert dead["ttfb_ms"] is None
    assert slow["status"] == 504 and slow["generated"] == "upstream_timeout"
    assert slow["app"] == "web" and slow["endpoint"] == backends.blue.addr
    assert 250 <= slow["total_ms"] < 2500, slow


def test_sample_0_logs_only_answers_of_our_own(proxy, backends, tmp_path):
    log = tmp_path / "access.log"
    closed = "127.0.0.1:%d" % free_port()
    apps = [{"name": "dead", "hosts": ["dead.test"], "weights": {"gone": 100}},
            {"name": "web", "hosts": ["web.test"], "weights": {"blue": 100}}]
    p = proxy(apps=apps, clusters={"gone": [closed], "blue": [backends.blue.addr]},
              extra=alog(log, sample=0))
    for i in range(20):
        assert curl1(p.url + "/anything/s0-%d" % i, "-H", "Host: web.test").status == 200
    assert curl1(p.url + "/anything/s0-dead", "-H", "Host: dead.test").status == 502
    # One worker, one ring, in order: once the 502's line is out, any earlier line would be.
    lines_for(log, by_path("/anything/s0-dead"))
    recs = read_lines(log)
    assert [r["path"] for r in recs] == ["/anything/s0-dead"], recs


def test_sample_half_logs_about_half(proxy, tmp_path):
    log = tmp_path / "access.log"
    p = proxy(extra=alog(log, sample=0.5))
    urls = [p.url + "/anything/half-%d" % i for i in range(200)]
    assert all(r.status == 200 for r in helpers.curl(urls))
    curl1(p.url + "/nope", "-H", "Content-Length: x")  # an own 400: always logged, last
    lines_for(log, lambda r: r["status"] == 400)
    n = len([r for r in read_lines(log) if r["path"] and r["path"].startswith("/anything/half-")])
    assert 60 <= n <= 140, n  # binomial(200, 0.5): 6 sigma is +-42


def test_sigusr1_reopens_the_file_after_a_rename(proxy, tmp_path):
    log = tmp_path / "access.log"
    p = proxy(extra=alog(log))
    assert curl1(p.url + "/anything/before").status == 200
    lines_for(log, by_path("/anything/before"))
    rotated = tmp_path / "access.log.1"
    os.rename(log, rotated)
    assert curl1(p.url + "/anything/between").status == 200  # still the renamed file
    lines_for(rotated, by_path("/anything/between"))
    p.proc.send_signal(signal.SIGUSR1)
    assert helpers.log_has(p, "access log reopened")
    assert curl1(p.url + "/anything/after").status == 200
    lines_for(log, by_path("/anything/after"))
    assert [r["path"] for r in read_lines(rotated)] == ["/anything/before", "/anything/between"]
    assert [r["path"] for r in read_lines(log)] == ["/anything/after"]


def test_websocket_tunnel_is_logged_when_it_closes(proxy, tmp_path):
    import asyncio
    import websockets
    from upstream_util import PYTHON, Peer
    ws = Peer([PYTHON, os.path.join(helpers.HERE, "ws_echo.py"), "--name", "ws-1"],
              str(tmp_path), "ws-1")
    try:
        log = tmp_path / "access.log"
        p = proxy(apps=[{"name": "ws", "hosts": ["*"], "weights": {"wsc": 100}}],
                  clusters={"wsc": [ws.addr]}, extra=alog(log))

        async def talk():
            async with websockets.connect("ws://127.0.0.1:%d/socket" % p.port,
                                          open_timeout=5) as c:
                await c.send("hello")
                assert await asyncio.wait_for(c.recv(), 5) == "ws-1: hello"
                await asyncio.sleep(0.3)  # the tunnel's duration, to find in the line
        asyncio.run(talk())
        rec = lines_for(log, by_path("/socket"))[0]
        assert rec["status"] == 101 and rec["tunnel"] is True and rec["app"] == "ws"
        assert rec["total_ms"] >= 300 and rec["bytes_out"] > 0 and rec["bytes_in"] > 0, rec
    finally:
        ws.stop()


def test_grpc_call_line(proxy, tmp_path):
    import grpc  # noqa: F401  (a missing python3-grpcio fails here, loudly)
    from upstream_util import PYTHON, Peer
    peer = Peer([PYTHON, os.path.join(helpers.HERE, "grpc_peer.py"), "serve"], str(tmp_path),
                "grpc")
    try:
        log = tmp_path / "access.log"
        p = proxy(apps=[{"name": "grpc", "hosts": ["*"], "weights": {"g": 100}}],
                  clusters={"g": {"endpoints": [peer.addr], "protocol": "h2c"}},
                  extra=alog(log))
        out = subprocess.run([PYTHON, os.path.join(helpers.HERE, "grpc_peer.py"), "call",
                              "--target", "127.0.0.1:%d" % p.port, "--timeout", "20", "unary"],
                             stdin=subprocess.DEVNULL, capture_output=True, text=True,
                             timeout=60)
        doc = json.loads([x for x in out.stdout.splitlines() if x.startswith("{")][-1])
        assert doc.get("ok") is True, (doc, out.stderr[-2000:])
        rec = lines_for(log, lambda r: r["method"] == "POST")[0]
        check_shape(rec)
        assert rec["protocol"] == "h2c" and rec["status"] == 200 and rec["cluster"] == "g"
        assert rec["endpoint"] == peer.addr and rec["bytes_in"] > 0 and rec["bytes_out"] > 0
        assert rec["upstream_reused"] is False and rec["connect_ms"] is not None
    finally:
        peer.stop()


def test_h2_cluster_gets_the_request_id(proxy, tmp_path):
    """An h2c cluster (the python3-h2 peer) receives x-request-id as an HTTP/2 field, the
    client's when it is sane, ours otherwise, and the line names the same id."""
    from upstream_util import Peers
    peers = Peers(tmp_path)
    try:
        peer = peers.h2peer("h2-rid")
        log = tmp_path / "access.log"
        p = proxy(apps=[{"name": "h2", "hosts": ["*"], "weights": {"h2c": 100}}],
                  clusters={"h2c": {"endpoints": [peer.addr], "protocol": "h2c"}},
                  extra=alog(log))
        r = curl1(p.url + "/echo-headers?a", "-H", "X-Request-Id: client-id-1")
        assert ["x-request-id", "client-id-1"] in r.json()["headers"]
        r = curl1(p.url + "/echo-headers?b")
        ids = [v for n, v in r.json()["headers"] if n == "x-request-id"]
        assert len(ids) == 1 and len(ids[0]) == 16
        recs = {x["path"]: x for x in lines_for(log, lambda x: "echo" in x["path"], n=2)}
        assert recs["/echo-headers?a"]["request_id"] == "client-id-1"
        assert recs["/echo-headers?b"]["request_id"] == ids[0]
        assert recs["/echo-headers?a"]["cluster"] == "h2c"
    finally:
        peers.stop_all()


def test_own_404_line_has_the_request_line_and_id(proxy, tmp_path):
    log = tmp_path / "access.log"
    p = proxy(apps=[{"name": "web", "hosts": ["web.test"], "weights": {"blue": 100}}],
              extra=alog(log))
    r = curl1(p.url + "/nowhere?x=\"1\"", "-H", "Host: other.test", "-H", "X-Request-Id: r-404")
    assert r.status == 404
    rec = lines_for(log, lambda x: x["status"] == 404)[0]
    check_shape(rec)
    assert rec["generated"] == "no_route" and rec["app"] is None and rec["rule"] is None
    assert rec["method"] == "GET" and rec["authority"] == "other.test"
    assert rec["path"] == "/nowhere?x=%221%22" or rec["path"] == '/nowhere?x="1"', rec
    assert rec["request_id"] == "r-404" and rec["protocol"] == "HTTP/1.1"


def test_explain_names_the_rule_the_pick_reported(admin_proxy):
    """explain takes the rule from the pick itself (no second pick without the cookie): a force
    header, a force cookie when the header names no cluster, sticky, weights."""
    apps = [{"name": "web", "hosts": ["web.test"], "weights": {"blue": 100, "green": 0},
             "force": {"header": "x-sy-cluster", "cookie": "sy_force"}},
            {"name": "st", "hosts": ["st.test"], "weights": {"blue": 50, "green": 50},
             "sticky": {"header": "x-user"}}]
    p = admin_proxy(apps)

    def explain(*args):
        doc = json.loads(p.ctl("--json", "explain", *args).stdout)
        assert doc["ok"] is True, doc
        return doc
    doc = explain("web.test", "/", "x-sy-cluster:green", "sy_force=blue")
    assert (doc["decided_by"], doc["cluster"]) == ("force_header", "green"), doc
    assert "force header 'x-sy-cluster'" in doc["detail"]
    doc = explain("web.test", "/", "x-sy-cluster:purple", "sy_force=green")
    assert (doc["decided_by"], doc["cluster"]) == ("force_cookie", "green"), doc
    assert "force cookie 'sy_force'" in doc["detail"]
    assert explain("st.test", "/", "x-user:u1")["decided_by"] == "sticky"
    assert explain("web.test", "/")["decided_by"] == "weights"


def test_reload_applies_sample_and_says_path_needs_a_restart(proxy, tmp_path):
    log = tmp_path / "access.log"
    p = proxy(extra=alog(log))
    assert curl1(p.url + "/anything/r-before").status == 200
    lines_for(log, by_path("/anything/r-before"))
    p.spec["extra"] = alog(tmp_path / "other.log", sample=0)
    p.reload()
    assert helpers.log_has(p, "access_log.path changes only on restart")
    assert curl1(p.url + "/anything/r-after").status == 200  # sample 0 now: not logged
    with Raw(p.port) as c:
        c.send(b"GET /r-bad HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n")
        assert c.read_response().status == 400  # an own answer: logged, to the old file
    lines_for(log, lambda r: r["status"] == 400)
    assert [r["path"] for r in read_lines(log)] == ["/anything/r-before", None]
    assert not os.path.exists(tmp_path / "other.log")
