# SPDX-License-Identifier: MIT
"""Health checks, outlier ejection, endpoint and cluster failover (issue #16, the data path).

The cluster backends here are threads of the test process (CtlBackend) whose behaviour a test
changes on command: answer, answer 503 (to the health path only, or to everything), or stop
listening (every connect refused) and listen again on the same port. A black hole is a
listening socket that never accepts: the kernel completes the handshake, nothing answers.
Probe intervals are short (300 ms) so that every wait is bounded and small."""

import collections
import http.client
import json
import os
import select
import socket
import threading
import time

import pytest

import helpers
from admin_util import ctl, socket_dir
from helpers import free_port, wait_for

INTERVAL_S = 0.3
FALL = 2
RISE = 2
HEALTH = {"path": "/healthz", "interval": "300ms", "timeout": "200ms", "fall": FALL,
          "rise": RISE}


class CtlBackend:
    """An HTTP/1.1 backend on 127.0.0.1 in threads of the test. `mode` for every request:
    "ok" (200, `x-backend: NAME`) or "503"; `health_mode` overrides it for /healthz. stop()
    closes the listening socket (connects are refused), start() listens again on the same
    port."""

    def __init__(self, name):
        self.name = name
        self.mode = "ok"
        self.health_mode = None
        self.hits = 0
        self.health_hits = 0
        self.lock = threading.Lock()
        self.port = 0
        self.lsock = None
        self.conns = []
        self.start()

    def start(self):
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", self.port))
        s.listen(128)
        self.port = s.getsockname()[1]
        self.addr = "127.0.0.1:%d" % self.port
        self.lsock = s
        threading.Thread(target=self._accept, args=(s,), daemon=True).start()

    def stop(self):
        """Refuses connects from now on, and closes the connections it has."""
        if self.lsock:
            self.lsock.close()
            self.lsock = None
        with self.lock:
            conns, self.conns = self.conns, []
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
                c.close()
            except OSError:
                pass

    def _accept(self, s):
        while True:
            try:
                c, _ = s.accept()
            except OSError:
                return
            with self.lock:
                self.conns.append(c)
            threading.Thread(target=self._serve, args=(c,), daemon=True).start()

    def _serve(self, c):
        c.settimeout(30)
        buf = b""
        try:
            while True:
                while b"\r\n\r\n" not in buf:
                    d = c.recv(65536)
                    if not d:
                        return
                    buf += d
                head, buf = buf.split(b"\r\n\r\n", 1)
                lines = head.split(b"\r\n")
                length = 0
                for ln in lines[1:]:
                    k, _, v = ln.partition(b":")
                    if k.strip().lower() == b"content-length":
                        length = int(v.strip())
                while len(buf) < length:
                    d = c.recv(65536)
                    if not d:
                        return
                    buf += d
                buf = buf[length:]
                path = lines[0].split(b" ")[1].decode()
                health = path == "/healthz"
                with self.lock:
                    if health:
                        self.health_hits += 1
                    else:
                        self.hits += 1
                mode = (self.health_mode or self.mode) if health else self.mode
                if mode == "flap":  # the health path alternates 200 and 503
                    mode = "503" if self.health_hits % 2 else "ok"
                status = 503 if mode == "503" else 200
                body = (self.name + "\n").encode()
                c.sendall(b"HTTP/1.1 %d X\r\nx-backend: %s\r\ncontent-length: %d\r\n\r\n%s"
                          % (status, self.name.encode(), len(body), body))
        except OSError:
            pass
        finally:
            c.close()


@pytest.fixture
def ctl_backends():
    made = []

    def make(name):
        b = CtlBackend(name)
        made.append(b)
        return b

    yield make
    for b in made:
        b.stop()


@pytest.fixture
def black_hole():
    """host:port of a listening socket that never accepts."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(1)
    yield "127.0.0.1:%d" % s.getsockname()[1]
    s.close()


@pytest.fixture
def syn_black_hole():
    """host:port where a connect never completes: a listening socket whose accept queue the
    test fills and never accepts from, so that the kernel drops every further SYN (as a host
    that went away drops them), until the connect times out."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(0)
    addr = s.getsockname()
    fillers = []
    for _ in range(16):
        c = socket.socket()
        c.setblocking(False)
        c.connect_ex(addr)
        fillers.append(c)
        _, w, _ = select.select([], [c], [], 0.3)
        if not w:
            break  # this connect hangs: the queue is full
    else:
        pytest.fail("the accept queue never filled")
    yield "127.0.0.1:%d" % addr[1]
    for c in fillers:
        c.close()
    s.close()


def get(port, path="/x", method="GET", headers=None, body=None, timeout=10):
    """One request on its own connection: (status, x-backend or None, body)."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        c.request(method, path, body=body, headers=headers or {})
        r = c.getresponse()
        data = r.read()
        return r.status, r.getheader("x-backend"), data
    finally:
        c.close()


def burst(port, n, **kw):
    """Counter of `backend` (or `status NNN` for an answer without x-backend) over n requests."""
    out = collections.Counter()
    for _ in range(n):
        st, be, _ = get(port, **kw)
        out[be if st == 200 and be else "status %d" % st] += 1
    return out


def admin(hport, path):
    c = http.client.HTTPConnection("127.0.0.1", hport, timeout=10)
    try:
        c.request("GET", path)
        r = c.getresponse()
        return r.status, r.read().decode()
    finally:
        c.close()


def status_json(hport):
    st, body = admin(hport, "/status")
    assert st == 200, body
    return json.loads(body)


def endpoint_state(hport, cluster, address):
    for e in status_json(hport)["endpoints"]:
        if e["cluster"] == cluster and e["endpoint"] == address:
            return e
    raise AssertionError("no endpoint %s %s in status" % (cluster, address))


def metric(hport, name, **labels):
    st, body = admin(hport, "/metrics")
    assert st == 200
    total = 0.0
    for line in body.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        if all('%s="%s"' % kv in line for kv in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def settle(n_intervals):
    """Waits n probe intervals, plus the jitter (10%), the first probe's delay and a timeout."""
    time.sleep(n_intervals * INTERVAL_S * 1.1 + INTERVAL_S + 0.2)


def apps_5050(**more):
    app = {"name": "web", "hosts": ["*"], "weights": {"blue": 50, "green": 50}}
    app.update(more)
    return [app]


# -- active checks --------------------------------------------------------------------------------

def test_black_holed_endpoint_is_out_after_fall_intervals(proxy, ctl_backends, black_hole):
    """Two green endpoints, one a black hole: once `fall` probes timed out, every request is
    answered by the other one, and the state change is logged once with its reason."""
    blue, g1 = ctl_backends("blue-1"), ctl_backends("green-1")
    hport = free_port()
    p = proxy(apps=[{"name": "web", "hosts": ["*"], "weights": {"blue": 0, "green": 100}}],
              clusters={"blue": [blue.addr],
                        "green": {"endpoints": [g1.addr, black_hole], "health": HEALTH}},
              timeouts={"upstream_response": "1s"}, extra={"admin": {"http": "127.0.0.1:%d" % hport}})
    t0 = time.monotonic()
    helpers.wait_for(lambda: endpoint_state(hport, "green", black_hole)["state"] == "down",
                     5.0, "the black hole to be marked down")
    took = time.monotonic() - t0
    helpers.measure("health: black hole marked down after", "%.2f" % took, "s",
                    "fall=%d interval=%.1fs timeout 200ms" % (FALL, INTERVAL_S))
    # First probe within the first interval, then fall-1 intervals, each at most +10%.
    assert took <= INTERVAL_S + FALL * INTERVAL_S * 1.1 + 0.5, took
    got = burst(p.port, 40)
    assert got == {"green-1": 40}, got
    e = endpoint_state(hport, "green", black_hole)
    assert e["reason"] == "timeout" and e["since"], e
    assert metric(hport, "switchyard_endpoint_up", cluster="green", endpoint=black_hole) == 0
    assert metric(hport, "switchyard_endpoint_up", cluster="green", endpoint=g1.addr) == 1
    line = "cluster green endpoint %s is down: timeout" % black_hole
    assert helpers.log_has(p, line), p.log_text()[-2000:]
    assert p.log_text().count(line) == 1, p.log_text()[-2000:]


def test_before_it_is_down_a_black_hole_costs_at_most_the_connect_timeout(proxy, ctl_backends,
                                                                          syn_black_hole):
    """Before `fall` probes have marked it down, an endpoint whose connects hang costs a request
    the connect timeout and nothing more: the connect fails, and the request (whatever its
    method) goes to the other endpoint. No request fails and none is slower than
    upstream_connect plus a margin for this shared machine."""
    blue, g1 = ctl_backends("blue-1"), ctl_backends("green-1")
    slow_health = dict(HEALTH, interval="30s", timeout="10s")  # not down within the test
    p = proxy(apps=[{"name": "web", "hosts": ["*"], "weights": {"blue": 0, "green": 100}}],
              clusters={"blue": [blue.addr],
                        "green": {"endpoints": [syn_black_hole, g1.addr], "health": slow_health}},
              timeouts={"upstream_connect": "300ms"})
    worst, by = 0.0, collections.Counter()
    for i in range(16):
        t0 = time.monotonic()
        st, be, _ = get(p.port, method="POST" if i % 2 else "GET", body=b"x" * (i % 3))
        worst = max(worst, time.monotonic() - t0)
        by[be if st == 200 else "status %d" % st] += 1
    helpers.measure("health: slowest request through a black hole not yet down",
                    "%.3f" % worst, "s", "upstream_connect 300ms")
    assert by == {"green-1": 16}, by
    assert worst < 0.3 + 0.7, worst
    assert g1.hits == 16


def test_probe_status_outside_expect_and_recovery_after_rise(proxy, ctl_backends):
    """A 503 on the health path takes the endpoint down (reason `status 503`); answering 200
    again brings it back after `rise` probes, and it takes traffic again."""
    blue, g1, g2 = ctl_backends("blue-1"), ctl_backends("green-1"), ctl_backends("green-2")
    hport = free_port()
    p = proxy(apps=[{"name": "web", "hosts": ["*"], "weights": {"blue": 0, "green": 100}}],
              clusters={"blue": [blue.addr],
                        "green": {"endpoints": [g1.addr, g2.addr], "health": HEALTH}},
              extra={"admin": {"http": "127.0.0.1:%d" % hport}})
    g2.health_mode = "503"
    wait_for(lambda: endpoint_state(hport, "green", g2.addr)["state"] == "down", 5.0,
             "green-2 down")
    assert endpoint_state(hport, "green", g2.addr)["reason"] == "status 503"
    assert burst(p.port, 20) == {"green-1": 20}
    g2.health_mode = None
    t0 = time.monotonic()
    wait_for(lambda: endpoint_state(hport, "green", g2.addr)["state"] == "up", 5.0, "green-2 up")
    took = time.monotonic() - t0
    assert took <= RISE * INTERVAL_S * 1.1 + 0.5, took
    got = burst(p.port, 20)
    assert got["green-2"] >= 8 and got["green-1"] >= 8, got
    assert helpers.log_has(p, "cluster green endpoint %s is down: status 503" % g2.addr)
    assert helpers.log_has(p, "cluster green endpoint %s is up: %d probes passed" % (g2.addr, RISE))


def test_probes_that_hang_or_answer_garbage_fail_and_block_nothing(proxy, ctl_backends):
    """A health path that accepts and never answers, or answers garbage, or closes before its
    status line: each a failure with its reason, while the proxy serves the other endpoint."""
    blue, g1 = ctl_backends("blue-1"), ctl_backends("green-1")
    stop = threading.Event()
    servers = {}

    def serve(kind):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        s.listen(16)
        s.settimeout(0.2)
        servers[kind] = s

        def run():
            held = []
            while not stop.is_set():
                try:
                    c, _ = s.accept()
                except OSError:
                    continue
                if kind == "garbage":
                    c.recv(4096)
                    c.sendall(b"SSH-2.0-OpenSSH\r\n\r\n")
                    c.close()
                elif kind == "closes":
                    c.recv(4096)
                    c.sendall(b"HTTP/1.1 2")
                    c.close()
                else:
                    held.append(c)  # hangs: never answers
            for c in held:
                c.close()
            s.close()
        threading.Thread(target=run, daemon=True).start()
        return "127.0.0.1:%d" % s.getsockname()[1]

    eps = {k: serve(k) for k in ("hang", "garbage", "closes")}
    hport = free_port()
    try:
        p = proxy(apps=[{"name": "web", "hosts": ["*"], "weights": {"blue": 0, "green": 100}}],
                  clusters={"blue": [blue.addr],
                            "green": {"endpoints": [g1.addr] + list(eps.values()),
                                      "health": HEALTH}},
                  timeouts={"upstream_response": "1s"},
                  extra={"admin": {"http": "127.0.0.1:%d" % hport}})
        want = {"hang": "timeout", "garbage": "garbage", "closes": "closed"}
        for kind, addr in eps.items():
            wait_for(lambda: endpoint_state(hport, "green", addr)["state"] == "down", 5.0,
                     "%s down" % kind)
            assert endpoint_state(hport, "green", addr)["reason"] == want[kind]
        assert burst(p.port, 20) == {"green-1": 20}
        assert endpoint_state(hport, "green", g1.addr)["state"] == "up"
    finally:
        stop.set()


def test_a_flapping_endpoint_logs_at_most_six_changes_a_minute(proxy, ctl_backends):
    """rise 1, fall 1 and a health path that alternates 200 and 503 every 100 ms: the state
    changes at every probe, the log says so at most 6 times in the minute."""
    blue, g1 = ctl_backends("blue-1"), ctl_backends("green-1")
    hport = free_port()
    p = proxy(apps=[{"name": "web", "hosts": ["*"], "weights": {"blue": 50, "green": 50}}],
              clusters={"blue": [blue.addr],
                        "green": {"endpoints": [g1.addr],
                                  "health": {"interval": "100ms", "timeout": "100ms", "rise": 1,
                                             "fall": 1}}},
              extra={"admin": {"http": "127.0.0.1:%d" % hport}})
    # A flap across a minute of the clock (the damper's minute starts with its first line) is
    # unit/routing/test_health's: waiting here for the clock cost up to a minute a run.
    hits = g1.health_hits
    g1.health_mode = "flap"
    wait_for(lambda: g1.health_hits >= hits + 16, 10.0, "16 probes")
    lines = [ln for ln in p.log_text().splitlines()
             if "cluster green endpoint %s is " % g1.addr in ln]
    assert 2 <= len(lines) <= 6, lines
    # Every request still finds a cluster: green when up, blue (failover) when down.
    got = burst(p.port, 20)
    assert sum(got.values()) == got["blue-1"] + got["green-1"] == 20, got


# -- cluster failover -------------------------------------------------------------------------

def test_all_green_down_fails_over_to_blue_and_comes_back(proxy, ctl_backends, tmp_path):
    """50/50, every green endpoint refusing: after `fall` intervals 0 requests fail, blue takes
    green's share (rule `failover` in the access log, counted in /metrics and status); sticky
    users of green move to blue and come back once green passes `rise` probes."""
    blue, g1, g2 = ctl_backends("blue-1"), ctl_backends("green-1"), ctl_backends("green-2")
    hport = free_port()
    alog = tmp_path / "access.log"
    sock = os.path.join(socket_dir(), "admin.sock")
    p = proxy(apps=apps_5050(sticky={"header": "x-user"}),
              clusters={"blue": [blue.addr],
                        "green": {"endpoints": [g1.addr, g2.addr], "health": HEALTH}},
              extra={"admin": {"http": "127.0.0.1:%d" % hport, "socket": sock},
                     "access_log": {"path": str(alog)}})
    users = ["user-%d" % i for i in range(40)]

    def where():
        return {u: get(p.port, headers={"x-user": u})[1] for u in users}

    before = where()
    green_users = [u for u, be in before.items() if be.startswith("green")]
    assert 8 <= len(green_users) <= 32, before
    g1.stop()
    g2.stop()
    wait_for(lambda: all(e["state"] == "down" for e in status_json(hport)["endpoints"]
                         if e["cluster"] == "green"), 5.0, "green down")
    got = burst(p.port, 40)
    assert got == {"blue-1": 40}, got
    during = where()
    assert all(be == "blue-1" for be in during.values()), during
    r = ctl("explain", "x.test", "/", "x-user:%s" % green_users[0], sockets=[sock], json=True)
    assert r.returncode == 0, r.stderr
    ex = json.loads(r.stdout)
    assert ex["decided_by"] == "failover" and ex["cluster"] == "blue", ex
    # Round robin gives green 20 of the 40 without a key; its sticky users come on top.
    moved = 20 + len(green_users)
    assert metric(hport, "switchyard_cluster_failover_total", cluster="green") == moved
    ch = [c for c in status_json(hport)["cluster_health"] if c["cluster"] == "green"][0]
    assert ch["up"] is False and ch["failover"] == moved, ch

    def failover_lines():
        if not alog.exists():
            return []
        return [json.loads(ln) for ln in alog.read_text().splitlines()
                if ln.strip() and json.loads(ln).get("rule") == "failover"]
    wait_for(lambda: len(failover_lines()) >= moved, 5.0, "failover lines in the access log")
    assert all(ln["cluster"] == "blue" for ln in failover_lines())

    g1.start()
    g2.start()
    wait_for(lambda: all(e["state"] == "up" for e in status_json(hport)["endpoints"]
                         if e["cluster"] == "green"), 5.0, "green up again")
    after = where()
    assert after == before or all(
        after[u].startswith("green") == before[u].startswith("green") for u in users), \
        (before, after)
    got = burst(p.port, 40)
    assert 12 <= got["green-1"] + got["green-2"] <= 28 and got["blue-1"] >= 12, got


def test_all_green_down_without_failover_answers_503_with_the_reason(proxy, ctl_backends):
    blue, g1 = ctl_backends("blue-1"), ctl_backends("green-1")
    hport = free_port()
    p = proxy(apps=apps_5050(failover=False),
              clusters={"blue": [blue.addr], "green": {"endpoints": [g1.addr], "health": HEALTH}},
              extra={"admin": {"http": "127.0.0.1:%d" % hport}})
    g1.stop()
    wait_for(lambda: endpoint_state(hport, "green", g1.addr)["state"] == "down", 5.0,
             "green down")
    assert endpoint_state(hport, "green", g1.addr)["reason"] == "refused"
    statuses = collections.Counter()
    for _ in range(40):
        st, be, body = get(p.port)
        statuses[st] += 1
        if st == 503:
            assert b"cluster green has no endpoint up" in body and b"failover: false" in body
        else:
            assert be == "blue-1"
    assert statuses[503] >= 12 and statuses[200] >= 12, statuses
    assert metric(hport, "switchyard_cluster_down_rejected_total", cluster="green") == statuses[503]


# -- endpoint failover and the retry budget --------------------------------------------------------

def test_a_refused_connect_goes_to_another_endpoint_for_any_method(proxy, ctl_backends):
    """No health checks: one of two green endpoints refuses every connect. A POST (never
    retried before) and a GET both go to the other endpoint: no request fails."""
    blue, g1 = ctl_backends("blue-1"), ctl_backends("green-1")
    dead = "127.0.0.1:%d" % free_port()
    hport = free_port()
    p = proxy(apps=[{"name": "web", "hosts": ["*"], "weights": {"blue": 0, "green": 100}}],
              clusters={"blue": [blue.addr], "green": [g1.addr, dead]},
              extra={"admin": {"http": "127.0.0.1:%d" % hport}})
    got = collections.Counter()
    # 60 requests, about 30 retried: more than 20% + 3, since retries that work cost nothing.
    for i in range(60):
        st, be, _ = get(p.port, method="POST" if i % 2 else "GET", body=b"x" * 100)
        got["%d %s" % (st, be)] += 1
    assert got == {"200 green-1": 60}, got
    assert metric(hport, "switchyard_cluster_retries_total", cluster="green") >= 20


def test_retry_budget_bounds_connect_attempts_to_a_refusing_cluster(proxy):
    """Both green endpoints refuse, no checks, no ejection: each request's connect fails and
    may be retried once on the other endpoint, but only within retry_budget (20% of the
    requests, at least 3): connect attempts stay at most requests * 1.2 + 3, where without a
    budget they would be twice the requests."""
    dead = ["127.0.0.1:%d" % free_port() for _ in range(2)]
    hport = free_port()
    p = proxy(apps=[{"name": "web", "hosts": ["*"], "weights": {"green": 100}}],
              clusters={"green": {"endpoints": dead,
                                  "retry_budget": {"percent": 20, "window": "10s", "min": 3}}},
              extra={"admin": {"http": "127.0.0.1:%d" % hport}})
    n = 150
    t0 = time.monotonic()
    statuses = collections.Counter()
    for _ in range(n):
        statuses[get(p.port)[0]] += 1
        time.sleep(0.005)  # a steady 150-200 requests/s, so that the rate means something
    secs = time.monotonic() - t0
    assert statuses == {502: n}, statuses
    attempts = sum(metric(hport, "switchyard_upstream_connect_errors_total", cluster="green",
                          endpoint=ep) for ep in dead)
    retries = metric(hport, "switchyard_cluster_retries_total", cluster="green")
    denied = metric(hport, "switchyard_cluster_retries_denied_total", cluster="green")
    helpers.measure("retry budget: connect attempts per request", "%.2f" % (attempts / n), "",
                    "%d requests in %.1f s: %.0f attempts/s for %.0f requests/s (budget 20%% + 3)"
                    % (n, secs, attempts / secs, n / secs))
    assert n <= attempts <= n * 1.2 + 3, (attempts, retries, denied)
    assert retries == attempts - n and denied >= n - retries - 1, (attempts, retries, denied)


# -- outlier ejection ----------------------------------------------------------------------------

def test_consecutive_5xx_eject_with_a_growing_backoff(proxy, ctl_backends):
    """No active checks: green-2 answers 503 to everything. After 3 in a row it is ejected for
    base_ejection (1 s), and after 3 more once back, for twice that; meanwhile green-1 takes
    every request."""
    blue, g1, g2 = ctl_backends("blue-1"), ctl_backends("green-1"), ctl_backends("green-2")
    g2.mode = "503"
    hport = free_port()
    p = proxy(apps=[{"name": "web", "hosts": ["*"], "weights": {"blue": 0, "green": 100}}],
              clusters={"blue": [blue.addr],
                        "green": {"endpoints": [g1.addr, g2.addr],
                                  "outlier": {"consecutive_failures": 3, "base_ejection": "1s",
                                              "max_ejection": "8s"}}},
              extra={"admin": {"http": "127.0.0.1:%d" % hport}})
    got = burst(p.port, 6)
    assert got == {"green-1": 3, "status 503": 3}, got
    assert endpoint_state(hport, "green", g2.addr)["state"] == "ejected"
    assert endpoint_state(hport, "green", g2.addr)["reason"] == "ejected_5xx 503"
    assert burst(p.port, 20) == {"green-1": 20}
    wait_for(lambda: "cluster green endpoint %s is back: its ejection ended" % g2.addr
             in p.log_text(), 3.0, "the first ejection to end")
    got = burst(p.port, 6)
    assert got == {"green-1": 3, "status 503": 3}, got
    # The log is written by its own thread: the second line may come a little later.
    assert helpers.log_has(p, "endpoint %s ejected for 2000 ms" % g2.addr), \
        "the second ejection, twice as long: %s" % p.log_text()[-2000:]
    assert "endpoint %s ejected for 1000 ms" % g2.addr in p.log_text()
    assert metric(hport, "switchyard_endpoint_ejections_total", cluster="green",
                  endpoint=g2.addr) == 2


def test_an_endpoint_that_never_answers_is_ejected_without_checks(proxy, ctl_backends,
                                                                   black_hole):
    """No active checks: a black hole's requests end in 504 (timeouts.upstream_response), and
    after 2 of them in a row it is ejected: the requests after that all reach green-1."""
    blue, g1 = ctl_backends("blue-1"), ctl_backends("green-1")
    hport = free_port()
    p = proxy(apps=[{"name": "web", "hosts": ["*"], "weights": {"blue": 0, "green": 100}}],
              clusters={"blue": [blue.addr],
                        "green": {"endpoints": [g1.addr, black_hole],
                                  "outlier": {"consecutive_failures": 2, "base_ejection": "30s"}}},
              timeouts={"upstream_response": "300ms"},
              extra={"admin": {"http": "127.0.0.1:%d" % hport}})
    got = burst(p.port, 4)
    assert got == {"green-1": 2, "status 504": 2}, got
    e = endpoint_state(hport, "green", black_hole)
    assert e["state"] == "ejected" and e["reason"] == "ejected_5xx 504", e
    assert burst(p.port, 20) == {"green-1": 20}


def test_a_passing_probe_ends_an_ejection(proxy, ctl_backends):
    """green-2 answers 503 to requests but passes its health probe: it is ejected after 3
    5xx in a row for base_ejection (60 s), and the next passing probe brings it back long
    before that."""
    blue, g1, g2 = ctl_backends("blue-1"), ctl_backends("green-1"), ctl_backends("green-2")
    g2.mode, g2.health_mode = "503", "ok"
    hport = free_port()
    p = proxy(apps=[{"name": "web", "hosts": ["*"], "weights": {"blue": 0, "green": 100}}],
              clusters={"blue": [blue.addr],
                        "green": {"endpoints": [g1.addr, g2.addr], "health": HEALTH,
                                  "outlier": {"consecutive_failures": 3, "base_ejection": "60s"}}},
              extra={"admin": {"http": "127.0.0.1:%d" % hport}})
    settle(1)
    got = burst(p.port, 6)
    assert got == {"green-1": 3, "status 503": 3}, got
    assert endpoint_state(hport, "green", g2.addr)["state"] == "ejected"
    t0 = time.monotonic()
    wait_for(lambda: endpoint_state(hport, "green", g2.addr)["state"] == "up", 3.0,
             "the probe to end the ejection")
    assert time.monotonic() - t0 <= INTERVAL_S * 1.1 + 0.5
    assert helpers.log_has(p, "cluster green endpoint %s is back: a health probe passed" % g2.addr)


# -- reload ------------------------------------------------------------------------------------------

def test_reload_keeps_the_state_of_endpoints_that_stay(proxy, ctl_backends):
    blue, g1, g2, g3 = (ctl_backends("blue-1"), ctl_backends("green-1"), ctl_backends("green-2"),
                        ctl_backends("green-3"))
    g3.health_mode = "503"  # a new endpoint starts up: it is only taken down by its probes
    hport = free_port()
    apps = [{"name": "web", "hosts": ["*"], "weights": {"blue": 0, "green": 100}}]
    p = proxy(apps=apps,
              clusters={"blue": [blue.addr],
                        "green": {"endpoints": [g1.addr, g2.addr], "health": HEALTH}},
              extra={"admin": {"http": "127.0.0.1:%d" % hport}})
    g2.stop()
    wait_for(lambda: endpoint_state(hport, "green", g2.addr)["state"] == "down", 5.0,
             "green-2 down")
    since = endpoint_state(hport, "green", g2.addr)["since"]
    p.reload(clusters={"blue": [blue.addr],
                       "green": {"endpoints": [g1.addr, g2.addr, g3.addr], "health": HEALTH}})
    e2 = endpoint_state(hport, "green", g2.addr)
    assert e2["state"] == "down" and e2["since"] == since, e2
    e3 = endpoint_state(hport, "green", g3.addr)
    assert e3["state"] == "up" and e3["reason"] == "none", e3
    got = burst(p.port, 10)
    assert "status 502" not in got and got.get("green-2", 0) == 0, got


# -- probes in the cluster's own protocol: HTTP/1.1 over TLS, h2c, h2 --------------------------------

from test_80_upstream_h2 import nghttpd_ok, peers  # noqa: E402,F401  (fixtures)


def probe_states(hport, cluster):
    return {e["endpoint"]: (e["state"], e["reason"]) for e in status_json(hport)["endpoints"]
            if e["cluster"] == cluster}


def wait_states(hport, want, timeout=5.0):
    """Until status shows `want`: {cluster: {endpoint: (state, reason)}} for each named one."""
    def ok():
        return all(probe_states(hport, c) == eps for c, eps in want.items())
    try:
        wait_for(ok, timeout, "endpoint states %r" % want)
    except AssertionError:
        raise AssertionError("want %r, status has %r" % (
            want, {c: probe_states(hport, c) for c in want}))


def test_tls_probes_use_the_clusters_verification(proxy, peers, tls_cert):
    """HTTP/1.1 over TLS: verified against the cluster's CA the probe passes (and reaches the
    backend's health path with SNI); against the system store the self-signed certificate
    fails it (reason tls); a status outside `expect` fails it too."""
    good, bad = peers.tls_backend("tls-good", *tls_cert), peers.tls_backend("tls-bad", *tls_cert)
    ga, ba = "localhost:%d" % good.port, "127.0.0.1:%d" % bad.port
    hport = free_port()
    expect_503 = dict(HEALTH, path="/status/503", expect=["200-299", 503])
    proxy(apps=[{"name": "web", "hosts": ["*"], "weights": {"good": 50, "bad": 50}},
                {"name": "other", "hosts": ["other.test"], "weights": {"picky": 100}}],
          clusters={"good": {"endpoints": [ga], "tls": {"ca": tls_cert[0]}, "health": HEALTH},
                    "bad": {"endpoints": [ba], "tls": {"verify": True}, "health": HEALTH},
                    "picky": {"endpoints": [ga], "tls": {"ca": tls_cert[0]},
                              "health": dict(HEALTH, path="/status/503")},
                    "lenient": {"endpoints": [ga], "tls": {"ca": tls_cert[0]},
                                "health": expect_503}},
          extra={"admin": {"http": "127.0.0.1:%d" % hport}})
    settle(FALL + 1)
    wait_states(hport, {"bad": {ba: ("down", "tls")}, "picky": {ga: ("down", "status 503")},
                        "good": {ga: ("up", "none")}, "lenient": {ga: ("up", "none")}})
    probes = [r for r in good.records() if r.get("ev") == "request" and r["path"] == "/healthz"]
    assert probes, good.records()[-5:]
    tls = [r for r in good.records() if r.get("ev") == "tls"]
    assert tls and all(r["sni"] == "localhost" for r in tls), tls[-3:]


def test_h2c_and_h2_probes_speak_http2(nghttpd_ok, proxy, peers, tmp_path, tls_cert):
    """nghttpd speaks only HTTP/2. An h2c or h2 endpoint whose docroot has the health file is
    up; one without it answers 404 on its stream and is down with `status 404` (an HTTP/1.1
    probe would get no status at all from it)."""
    with_file, without = tmp_path / "with", tmp_path / "without"
    with_file.mkdir()
    without.mkdir()
    (with_file / "healthz").write_bytes(b"ok\n")
    c_ok, c_404 = peers.nghttpd(with_file), peers.nghttpd(without)
    t_ok, t_404 = peers.nghttpd(with_file, tls=tls_cert), peers.nghttpd(without, tls=tls_cert)
    hport = free_port()
    tls = {"ca": tls_cert[0]}
    p = proxy(apps=[{"name": "web", "hosts": ["*"], "weights": {"cl": 50, "tl": 50}}],
              clusters={"cl": {"endpoints": [c_ok.addr, c_404.addr], "protocol": "h2c",
                               "health": HEALTH},
                        "tl": {"endpoints": [t_ok.addr, t_404.addr], "protocol": "h2",
                               "tls": tls, "health": HEALTH}},
              extra={"admin": {"http": "127.0.0.1:%d" % hport}})
    settle(FALL + 1)
    wait_states(hport, {"cl": {c_ok.addr: ("up", "none"), c_404.addr: ("down", "status 404")},
                        "tl": {t_ok.addr: ("up", "none"), t_404.addr: ("down", "status 404")}})
    # Traffic reaches only the endpoints with the file: every request for it is a 200.
    for _ in range(8):
        st, _, body = get(p.port, path="/healthz")
        assert st == 200 and body == b"ok\n", (st, body)
