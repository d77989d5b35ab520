# SPDX-License-Identifier: MIT
"""Issue #19, part 1: the exclusive switch of a stateful app (apps[].mode: exclusive).

The backends are singleton_backend.py: blue and green share one process, every request is
recorded with its start and end, and green refuses (503) any request that arrives while blue
still has one in flight. Under steady load (HTTP/1.1 keep-alive threads, then h2load over h2c)
`switchyardctl switch web green` must give 0 failed requests and no green request that started
before blue's last one ended. Then: a WebSocket on blue cut at exclusive.drain, hold expiry
(503 + Retry-After), kill -9 during a switch (back on the journal's side), abort, and the
refusals (split weights in the file and by admin, a second switch, a forced request to the
cluster that is not live)."""

import http.client
import json
import os
import re
import socket
import subprocess
import threading
import time

import pytest

import conftest
import helpers

HERE = os.path.dirname(os.path.abspath(__file__))
SINGLETON_PY = os.path.join(HERE, "singleton_backend.py")
HOST = "app.test"


class Singleton:
    def __init__(self):
        self.proc = subprocess.Popen([conftest.PYTHON, SINGLETON_PY], stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE)
        line = self.proc.stdout.readline().decode().split()
        assert line and line[0] == "ready", line
        self.blue_port, self.green_port = int(line[1]), int(line[2])

    def get(self, path):
        c = http.client.HTTPConnection("127.0.0.1", self.blue_port, timeout=10)
        c.request("GET", path)
        data = c.getresponse().read()
        c.close()
        return json.loads(data)

    def records(self):
        return self.get("/_records")

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=10)
        self.proc.stdout.close()


@pytest.fixture
def singleton():
    s = Singleton()
    yield s
    s.stop()


def start_proxy(admin_proxy, singleton, exclusive=None, workers=2, weights=None, extra_app=None):
    app = {"name": "web", "hosts": ["*"], "mode": "exclusive",
           "weights": weights or {"blue": 100, "green": 0}}
    app.update(extra_app or {})
    clusters = {"blue": {"endpoints": ["127.0.0.1:%d" % singleton.blue_port]},
                "green": {"endpoints": ["127.0.0.1:%d" % singleton.green_port]}}
    p = admin_proxy([app], clusters=clusters, workers=workers, start=False)
    if exclusive:
        p.spec["extra"]["exclusive"] = exclusive
    p.write_config()
    p.start()
    return p


def status_app(p):
    out = p.ctl("--json", "status", "web")
    doc = json.loads(out.stdout.strip().splitlines()[-1])
    return [a for a in doc["apps"] if a["name"] == "web"][0]


def effective(p):
    return {c["name"]: c["effective"] for c in status_app(p)["clusters"]}


def wait_switch_done(p, timeout):
    helpers.wait_for(lambda: status_app(p)["switch"] is None, timeout, "the switch to complete",
                     interval=0.02)


def wait_phase(p, timeout):
    helpers.wait_for(lambda: status_app(p)["switch"] is not None, timeout, "a switch to run",
                     interval=0.02)


class Load:
    """`n` threads of keep-alive HTTP/1.1 GETs, each bounded by `max_requests` and `seconds`.
    Records (status, backend, started, latency) for every request."""

    def __init__(self, port, n=6, seconds=3.0, max_requests=400):
        self.port = port
        self.deadline = time.monotonic() + seconds
        self.max_requests = max_requests
        self.results = []
        self.errors = []
        self.lock = threading.Lock()
        self.stop_now = threading.Event()
        # Requests of different lengths, so that the clients never move in step and blue has
        # one in flight at any moment: a switch that did not wait for blue would be seen.
        self.threads = [threading.Thread(target=self.run, args=("/work?ms=%d" % ms,))
                        for ms in (7, 13, 23, 31, 41, 53)[:n]]
        for t in self.threads:
            t.start()

    def run(self, path):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=20)
        for _ in range(self.max_requests):
            if self.stop_now.is_set() or time.monotonic() > self.deadline:
                break
            t0 = time.monotonic()
            try:
                conn.request("GET", path, headers={"Host": HOST})
                r = conn.getresponse()
                r.read()
                rec = (r.status, r.getheader("x-backend"), t0, time.monotonic() - t0)
                if r.getheader("connection", "").lower() == "close":
                    conn.close()
                    conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=20)
            except (OSError, http.client.HTTPException) as e:
                rec = (0, repr(e), t0, time.monotonic() - t0)
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=20)
            with self.lock:
                self.results.append(rec)
        conn.close()

    def join(self):
        for t in self.threads:
            t.join(timeout=30)

    def count(self):
        with self.lock:
            return len(self.results)


def assert_no_overlap(records):
    """No green request started before the last blue one (that began before it) ended."""
    blue = [r for r in records if r["side"] == "blue" and r["path"] != "/ready"]
    green = [r for r in records if r["side"] == "green" and r["path"] != "/ready"]
    assert blue and green, "both sides must have served: %d blue, %d green" % (
        len(blue), len(green))
    first_green = min(r["start"] for r in green)
    last_blue_end = max(r["end"] for r in blue if r["start"] < first_green)
    assert first_green >= last_blue_end, (
        "green served at %.4f while blue was busy until %.4f" % (first_green, last_blue_end))
    late_blue = [r for r in blue if r["start"] >= first_green]
    assert not late_blue, "blue served after green began: %r" % late_blue[:3]
    refused = [r for r in green if r["status"] == 503]
    assert not refused, "green refused %d request(s) (blue was busy)" % len(refused)
    return first_green, last_blue_end


def test_switch_under_h1_load_never_overlaps_and_fails_nothing(admin_proxy, singleton):
    p = start_proxy(admin_proxy, singleton, exclusive={"hold": "10s", "drain": "5s"})
    load = Load(p.port, seconds=4.0)
    helpers.wait_for(lambda: load.count() >= 40, 5, "load on blue")
    t0 = time.monotonic()
    out = p.ctl_ok("switch", "web", "green")
    assert "exclusive switch to green begun" in out
    wait_switch_done(p, 10)
    switch_s = time.monotonic() - t0
    n_at_switch = load.count()
    helpers.wait_for(lambda: load.count() >= n_at_switch + 40, 5, "load on green")
    load.stop_now.set()
    load.join()
    bad = [r for r in load.results if r[0] != 200]
    assert not bad, "%d of %d requests failed: %r" % (len(bad), len(load.results), bad[:5])
    assert {r[1] for r in load.results} == {"blue", "green"}
    assert_no_overlap(singleton.records())
    assert effective(p) == {"blue": 0, "green": 100}
    # The switch is in the journal, with its phases.
    hist = p.ctl_ok("history")
    m = re.search(r"exclusive switch blue -> green: hold_ms=(\d+) drain_ms=(\d+) ready_ms=(\d+) "
                  r"held=(\d+) answered_503=(\d+)", hist)
    assert m, hist
    assert int(m.group(5)) == 0
    longest = max(r[3] for r in load.results if r[1] == "green")
    helpers.measure("exclusive switch, 6 HTTP/1.1 clients, 7..53 ms requests: longest wait",
                    "%.1f" % (longest * 1000), "ms",
                    "switch took %.0f ms by status; hold %s ms, %s held" % (
                        switch_s * 1000, m.group(1), m.group(4)))


def h2load(port, n, seconds_hint, path="/work?ms=20"):
    return subprocess.Popen(["h2load", "-n", str(n), "-c", "2", "-m", "4",
                             "-H", "host: " + HOST, "http://127.0.0.1:%d%s" % (port, path)],
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def open_ws(port):
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.sendall(b"GET /ws HTTP/1.1\r\nHost: app.test\r\nUpgrade: websocket\r\n"
              b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
              b"Sec-WebSocket-Version: 13\r\n\r\n")
    head = b""
    while b"\r\n\r\n" not in head:
        data = s.recv(4096)
        assert data, head
        head += data
    assert head.startswith(b"HTTP/1.1 101"), head
    assert b"x-backend: blue" in head.lower(), head
    s.sendall(b"ping")
    assert s.recv(4) == b"ping"
    return s


def test_switch_with_h2_clients_and_a_websocket_cut_at_drain(admin_proxy, singleton):
    p = start_proxy(admin_proxy, singleton, exclusive={"hold": "10s", "drain": "1s"})
    ws = open_ws(p.port)
    h2 = h2load(p.port, 400, 3)
    helpers.wait_for(lambda: len(singleton.records()) >= 20, 5, "h2 load on blue")
    t0 = time.monotonic()
    p.ctl_ok("switch", "web", "green")
    # The tunnel is cut at exclusive.drain: the proxy closes it.
    ws.settimeout(10)
    data = b""
    try:
        while True:
            chunk = ws.recv(4096)
            if not chunk:
                break
            data += chunk
    except ConnectionResetError:
        pass
    cut_s = time.monotonic() - t0
    ws.close()
    wait_switch_done(p, 10)
    out, _ = h2.communicate(timeout=30)
    m = re.search(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, "
                  r"(\d+) failed, (\d+) errored", out)
    assert m, out
    assert int(m.group(4)) == 400 and int(m.group(5)) == 0, out
    st = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", out)
    assert st and int(st.group(1)) == 400, out
    recs = singleton.records()
    ws_rec = [r for r in recs if r["path"] == "/ws"]
    assert len(ws_rec) == 1 and ws_rec[0]["side"] == "blue"
    first_green, last_blue = assert_no_overlap(recs)
    assert first_green >= ws_rec[0]["end"]
    assert 0.9 <= cut_s < 5, "websocket cut after %.2f s (exclusive.drain 1s)" % cut_s
    helpers.measure("exclusive switch with a WebSocket on blue: tunnel cut after",
                    "%.0f" % (cut_s * 1000), "ms", "exclusive.drain 1s, h2load 400 requests, 0 failed")


def curl_status(url, *opts):
    p = subprocess.run(["curl", "-s", "-o", "/dev/null", "-D", "-", "-H", "Host: " + HOST,
                        "--max-time", "20"] + list(opts) + [url],
                       capture_output=True, text=True, timeout=30)
    return p.stdout


def test_hold_expiry_answers_503_with_retry_after_and_the_switch_completes(admin_proxy,
                                                                           singleton):
    p = start_proxy(admin_proxy, singleton, exclusive={"hold": "1s", "drain": "3s"})
    hang = socket.create_connection(("127.0.0.1", p.port), timeout=10)
    hang.sendall(b"GET /hang HTTP/1.1\r\nHost: app.test\r\n\r\n")
    helpers.wait_for(lambda: singleton.get("/_inflight")["blue"] == 1, 5, "blue busy")
    t0 = time.monotonic()
    p.ctl_ok("switch", "web", "green")
    results = []

    def one():
        t = time.monotonic()
        head = curl_status(p.url + "/work")
        results.append((head, time.monotonic() - t))

    threads = [threading.Thread(target=one) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    for head, waited in results:
        assert head.startswith("HTTP/1.1 503"), head
        assert re.search(r"(?im)^retry-after: 1\r?$", head), head
        assert 0.8 <= waited < 2.5, "held %.2f s (exclusive.hold 1s)" % waited
    wait_switch_done(p, 10)
    took = time.monotonic() - t0
    assert 2.5 <= took < 6, "switch completed after %.2f s (exclusive.drain 3s)" % took
    hang.close()
    assert effective(p) == {"blue": 0, "green": 100}
    hist = p.ctl_ok("history")
    assert re.search(r"held=3 answered_503=3 drain_cut", hist), hist
    head = curl_status(p.url + "/work")
    assert head.startswith("HTTP/1.1 200") and "x-backend: green" in head, head


def test_kill9_during_a_switch_restarts_on_the_journal_side(admin_proxy, singleton):
    p = start_proxy(admin_proxy, singleton, exclusive={"hold": "5s", "drain": "20s"})
    hang = socket.create_connection(("127.0.0.1", p.port), timeout=10)
    hang.sendall(b"GET /hang HTTP/1.1\r\nHost: app.test\r\n\r\n")
    helpers.wait_for(lambda: singleton.get("/_inflight")["blue"] == 1, 5, "blue busy")
    p.ctl_ok("switch", "web", "green")
    assert status_app(p)["switch"]["phase"] == "drain"
    p.kill9()
    hang.close()
    p.start()
    assert status_app(p)["switch"] is None
    assert effective(p) == {"blue": 100, "green": 0}
    for _ in range(5):
        head = curl_status(p.url + "/work")
        assert head.startswith("HTTP/1.1 200") and "x-backend: blue" in head, head
    assert not [r for r in singleton.records() if r["side"] == "green"]


def test_abort_returns_held_requests_to_the_old_cluster(admin_proxy, singleton):
    p = start_proxy(admin_proxy, singleton, exclusive={"hold": "10s", "drain": "20s"})
    hang = socket.create_connection(("127.0.0.1", p.port), timeout=10)
    hang.sendall(b"GET /hang HTTP/1.1\r\nHost: app.test\r\n\r\n")
    helpers.wait_for(lambda: singleton.get("/_inflight")["blue"] == 1, 5, "blue busy")
    p.ctl_ok("switch", "web", "green")
    results = []
    t = threading.Thread(target=lambda: results.append(curl_status(p.url + "/work")))
    t.start()
    helpers.wait_for(lambda: status_app(p)["switch"]["held"] == 1, 5, "one held request")
    # A second switch meanwhile is refused.
    second = p.ctl("switch", "web", "green")
    assert second.returncode != 0 and "error: switch in progress" in second.stderr, second
    p.ctl_ok("switch", "--abort", "web")
    t.join(timeout=10)
    assert results and results[0].startswith("HTTP/1.1 200"), results
    assert "x-backend: blue" in results[0], results
    assert status_app(p)["switch"] is None
    assert effective(p) == {"blue": 100, "green": 0}
    hang.close()
    assert not [r for r in singleton.records() if r["side"] == "green"]
    assert "exclusive switch" not in p.ctl_ok("history")


def test_refusals_split_weights_and_force_to_the_idle_cluster(admin_proxy, singleton,
                                                                tmp_path):
    p = start_proxy(admin_proxy, singleton,
                    extra_app={"force": {"header": "x-cluster"}})
    # Split weights by admin: refused, nothing changes.
    out = p.ctl("weights", "web", "blue=50", "green=50")
    assert out.returncode != 0
    assert "app 'web' is exclusive: its weights must be 100 on one cluster" in out.stdout + out.stderr
    assert effective(p) == {"blue": 100, "green": 0}
    # Forced to green, which is not live: 503 with a reason.
    head = curl_status(p.url + "/work", "-H", "x-cluster: green")
    assert head.startswith("HTTP/1.1 503"), head
    assert not [r for r in singleton.records() if r["side"] == "green"]
    # Split weights in the file: refused with file:line:col by a reload and by -t.
    cfg = open(p.config).read()
    bad = re.sub(r"green: 0", "green: 10", cfg).replace("blue: 100", "blue: 90")
    path = tmp_path / "bad.yaml"
    path.write_text(bad)
    chk = subprocess.run([conftest.SWITCHYARD, "-t", "-c", str(path)], capture_output=True,
                         text=True, timeout=30)
    assert chk.returncode != 0
    assert re.search(r"bad\.yaml:\d+:\d+: an exclusive app's weights must be 100 on one "
                     r"cluster and 0 on the others", chk.stdout + chk.stderr), chk


def test_force_while_exclusive_lets_testers_reach_the_idle_cluster(admin_proxy, singleton):
    p = start_proxy(admin_proxy, singleton,
                    extra_app={"force": {"header": "x-cluster"}, "force_while_exclusive": True})
    head = curl_status(p.url + "/work", "-H", "x-cluster: green")
    assert head.startswith("HTTP/1.1 200") and "x-backend: green" in head, head
