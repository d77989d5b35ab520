# SPDX-License-Identifier: MIT
"""The JSON access log (`access_log:`): one line per request or HTTP/2 stream, written by a
thread of its own from per-worker rings, so that a reader that stops reading never stalls a
request (the lines are dropped and counted instead).

Real clients (curl over HTTP/1.1 and h2c, Python's sockets for bad requests) against the real
backends; each test reads the lines back from the file and checks their fields."""

import json
import os
import signal
import socket
import stat
import threading
import time

import pytest

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
    finally:
        os.close(reader)
