# SPDX-License-Identifier: MIT
"""Caps on the connections toward a cluster (issue #22 item 3, issue #12 item 2).

`clusters.NAME.max_connections` caps the connections to each endpoint per worker; a request
that finds them all busy waits in a queue (`clusters.NAME.queue: {max, timeout}`) and is
served in arrival order as connections come free, or answered 503 with a one-line reason
when the queue is full or its wait runs out. A queued client that goes away is forgotten.
`limits.max_upstream_connections` caps the connections of a worker to every cluster
together: past it (no idle connection to give way) a request is answered 503. `status
--json` counts what waits now and the 503s. Without a cap, connections to an endpoint are
unbounded: every request in flight has its own.

The backend (backend.py) logs, with every request, how many TCP connections it has open at
that moment; one worker (`workers: 1`), so that the per-worker cap is the whole cap. Real
clients: raw sockets and http.client in threads, switchyardctl on the admin socket."""

import http.client
import json
import os
import signal
import socket
import threading
import time

import pytest

import helpers
from admin_util import SWITCHYARDCTL, AdminProxy, socket_dir
from helpers import measure
from upstream_util import H2Client, Peers

pytestmark = pytest.mark.skipif(
    not (SWITCHYARDCTL and os.access(SWITCHYARDCTL, os.X_OK)),
    reason="SWITCHYARDCTL is not an executable (path to switchyardctl; meson test sets it)")

APPS = [{"name": "web", "hosts": ["*"], "weights": {"blue": 100}}]


@pytest.fixture
def capped(backends, tmp_path):
    """Factory: capped(clusters, limits=None, apps=APPS) -> AdminProxy (one worker, started);
    stopped at teardown (exit 0 on SIGTERM required)."""
    started = []
    sockdir = socket_dir()

    def start(clusters, limits=None, apps=APPS):
        p = AdminProxy(tmp_path, sockdir, backends, apps, clusters=clusters, workers=1,
                       name="sy%d" % len(started))
        if limits:
            p.spec["limits"] = limits
            p.write_config()
        started.append(p)
        p.start()
        return p

    yield start
    errors = [e for e in (p.stop() for p in started) if e]
    if errors:
        pytest.fail("\n".join(errors), pytrace=False)


@pytest.fixture
def peers(tmp_path):
    ps = Peers(tmp_path)
    yield ps
    ps.stop_all()


def get(port, path, timeout=30.0, headers=None):
    """One GET on a new connection: (status, body text, seconds it took)."""
    t0 = time.monotonic()
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        h = {"Host": "app.test"}
        h.update(headers or {})
        c.request("GET", path, headers=h)
        r = c.getresponse()
        body = r.read().decode(errors="replace")
        return r.status, body, time.monotonic() - t0
    finally:
        c.close()


class Getter(threading.Thread):
    """get() in a thread; `result` once joined (or the exception text)."""

    def __init__(self, port, path, timeout=30.0, start_at=None):
        super().__init__(daemon=True)
        self.port, self.path, self.timeout, self.start_at = port, path, timeout, start_at
        self.result = None
        self.done_at = None

    def run(self):
        if self.start_at:
            self.start_at.wait(10)
        try:
            self.result = get(self.port, self.path, self.timeout)
        except Exception as e:  # reported by the test that joins
            self.result = ("error", repr(e), 0.0)
        self.done_at = time.monotonic()


def parallel(port, paths, timeout=30.0):
    """GETs of `paths` at once, each on its own connection: their (status, body, seconds)."""
    go = threading.Event()
    ts = [Getter(port, p, timeout, go) for p in paths]
    for t in ts:
        t.start()
    go.set()
    for t in ts:
        t.join(timeout + 10)
    return [t.result for t in ts]


def max_open(backend):
    """The most TCP connections the backend had open at once, as its requests saw it."""
    return max([r.get("open", 0) for r in backend.records() if r["ev"] == "request"] + [0])


def cluster_status(p, cluster="blue", app="web"):
    """status --json's object for `cluster` under `app`."""
    r = p.ctl("status", "--json")
    assert r.returncode == 0, "status --json: rc %d %s%s" % (r.returncode, r.stdout, r.stderr)
    doc = json.loads(r.stdout)
    a = [x for x in doc["apps"] if x["name"] == app]
    assert a, doc
    c = [x for x in a[0]["clusters"] if x["name"] == cluster]
    assert c, a[0]
    return c[0]


def wait_status(p, key, want, cluster="blue", timeout=10.0):
    try:
        helpers.wait_for(lambda: cluster_status(p, cluster).get(key) == want, timeout,
                         "status %s of %s == %r" % (key, cluster, want))
    except AssertionError as e:
        raise AssertionError("%s (it is %r)" % (e, cluster_status(p, cluster).get(key)))


def wait_seen(backend, token, timeout=10.0):
    helpers.wait_for(lambda: backend.saw(token, "request"), timeout,
                     "the backend to receive %s" % token)


# -- the fault: unbounded ------------------------------------------------------------------------

def test_without_max_connections_each_parallel_request_opens_its_own_connection(
        capped, backend_factory):
    """The default (no cap): ten requests in flight are ten connections to the endpoint."""
    b = backend_factory("free-1")
    p = capped({"blue": {"endpoints": [b.addr]}})
    res = parallel(p.port, ["/sleep/1?n=%d" % i for i in range(10)])
    assert [r[0] for r in res] == [200] * 10, res
    seen = max_open(b)
    measure("uncapped_backend_max_open", seen, "connections", "10 parallel requests")
    assert seen >= 8, "ten parallel requests held only %d connections at once" % seen


# -- max_connections and the queue ----------------------------------------------------------------

def test_max_connections_2_serves_ten_parallel_requests_on_two_connections(capped,
                                                                            backend_factory):
    b = backend_factory("cap-1")
    p = capped({"blue": {"endpoints": [b.addr], "max_connections": 2,
                         "queue": {"max": 100, "timeout": "60s"}}})
    t0 = time.monotonic()
    res = parallel(p.port, ["/sleep/0.5?n=%d" % i for i in range(10)], timeout=60)
    took = time.monotonic() - t0
    assert [r[0] for r in res] == [200] * 10, res
    seen = max_open(b)
    measure("capped_backend_max_open", seen, "connections", "max_connections 2, 10 requests")
    measure("capped_ten_requests_took", "%.2f" % took, "s", "5 rounds of 0.5 s at least")
    assert seen <= 2, "the backend had %d connections open at once (max_connections 2)" % seen
    assert len(b.saw("/sleep/0.5", "request")) == 10
    # At most two at a time: five rounds of half a second (a lower bound, not a speed).
    assert took >= 2.4, took
    st = cluster_status(p)
    assert st["queued"] == 0 and st["queue_503"] == 0 and st["requests"] == 10, st
    assert st["max_connections"] == 2, st


def test_queued_requests_are_served_in_arrival_order(capped, backend_factory):
    b = backend_factory("order-1")
    p = capped({"blue": {"endpoints": [b.addr], "max_connections": 1,
                         "queue": {"max": 10, "timeout": "60s"}}})
    first = Getter(p.port, "/sleep/4?who=first")  # long enough to queue four behind it
    first.start()
    wait_seen(b, "who=first")
    later = []
    for i in range(4):
        g = Getter(p.port, "/sleep/0.1?who=q%d" % i)
        g.start()
        later.append(g)
        wait_status(p, "queued", i + 1)
    for g in [first] + later:
        g.join(60)
        assert g.result[0] == 200, g.result
    order = [r["path"].split("who=")[1] for r in b.records()
             if r["ev"] == "request" and "who=" in r["path"]]
    assert order == ["first", "q0", "q1", "q2", "q3"], order
    assert max_open(b) == 1


def test_a_connection_coming_back_serves_the_queue_even_with_upstream_keepalive_0(
        capped, backend_factory):
    """The connection that comes back goes to the head of the queue, though the pool keeps no
    idle connection otherwise."""
    b = backend_factory("reuse-1")
    p = capped({"blue": {"endpoints": [b.addr], "max_connections": 1,
                         "queue": {"max": 10, "timeout": "60s"}}},
               limits={"upstream_keepalive": 0})
    first = Getter(p.port, "/sleep/3?who=first")
    first.start()
    wait_seen(b, "who=first")
    later = []
    for i in range(3):
        later.append(Getter(p.port, "/anything?who=q%d" % i))
        later[-1].start()
        wait_status(p, "queued", i + 1)
    for g in [first] + later:
        g.join(30)
        assert g.result[0] == 200, g.result
    conns = [r["conn"] for r in b.records() if r["ev"] == "request" and "who=" in r["path"]]
    assert len(conns) == 4 and len(set(conns)) == 1, conns


def test_a_full_queue_answers_503_with_the_reason_at_once(capped, backend_factory):
    b = backend_factory("full-1")
    p = capped({"blue": {"endpoints": [b.addr], "max_connections": 1,
                         "queue": {"max": 2, "timeout": "60s"}}})
    held = [Getter(p.port, "/sleep/4?who=held")]
    held[0].start()
    wait_seen(b, "who=held")
    for i in range(2):
        g = Getter(p.port, "/sleep/0.1?who=wait%d" % i)
        g.start()
        held.append(g)
        wait_status(p, "queued", i + 1)
    status, body, took = get(p.port, "/anything?who=extra")
    measure("queue_full_503_after", "%.3f" % took, "s", "queue.max 2 reached")
    assert status == 503, (status, body)
    assert "all 1 connections are busy" in body and "queue.max" in body, body
    assert body.count("\n") == 1, body
    assert took < 2.0, "the 503 took %.2f s: it must not wait for a connection" % took
    assert not b.saw("who=extra"), "a request refused by a full queue reached the backend"
    st = cluster_status(p)
    assert st["queued"] == 2 and st["queue_503"] == 1, st
    for g in held:
        g.join(60)
        assert g.result[0] == 200, g.result
    st = cluster_status(p)
    assert st["queued"] == 0 and st["queue_503"] == 1 and st["responses_5xx"] == 1, st
    text = p.ctl_ok("status")
    assert "blue: 0 queued now, 1 answered 503 by the queue (max_connections 1" in text, text


def test_queue_timeout_answers_503_after_about_the_timeout(capped, backend_factory):
    b = backend_factory("slow-1")
    p = capped({"blue": {"endpoints": [b.addr], "max_connections": 1,
                         "queue": {"max": 10, "timeout": "1s"}}})
    slow = Getter(p.port, "/sleep/5?who=slow")
    slow.start()
    wait_seen(b, "who=slow")
    status, body, took = get(p.port, "/anything?who=late")
    measure("queue_timeout_503_after", "%.3f" % took, "s", "queue.timeout 1s")
    assert status == 503, (status, body)
    assert "queue.timeout (1000 ms" in body, body
    assert 0.9 <= took <= 4.0, "queue.timeout 1s answered after %.2f s" % took
    assert not b.saw("who=late"), "a request whose wait ran out reached the backend"
    st = cluster_status(p)
    assert st["queue_503"] == 1 and st["queued"] == 0, st
    slow.join(30)
    assert slow.result[0] == 200, slow.result


def test_a_queued_client_that_disconnects_takes_no_slot(capped, backend_factory):
    b = backend_factory("gone-1")
    p = capped({"blue": {"endpoints": [b.addr], "max_connections": 1,
                         "queue": {"max": 10, "timeout": "60s"}}})
    first = Getter(p.port, "/sleep/3?who=first")
    first.start()
    wait_seen(b, "who=first")
    # A raw client queues, then gives up (closes its socket: a FIN, as a killed curl sends).
    s = socket.create_connection(("127.0.0.1", p.port), timeout=10)
    s.sendall(b"GET /sleep/1.5?who=gone HTTP/1.1\r\nHost: app.test\r\n\r\n")
    wait_status(p, "queued", 1)
    after = Getter(p.port, "/sleep/0.2?who=after")
    after.start()
    wait_status(p, "queued", 2)
    s.close()
    wait_status(p, "queued", 1)  # forgotten at once, not when its turn comes
    first.join(30)
    after.join(30)
    assert first.result[0] == 200 and after.result[0] == 200, (first.result, after.result)
    # The one slot went from `first` straight to `after`.
    gap = after.done_at - first.done_at
    measure("queue_after_a_gone_client", "%.3f" % gap, "s", "from the first answer to the next")
    assert not b.saw("who=gone"), "the request of a client that went away reached the backend"
    assert gap < 1.4, "the next request waited %.2f s after the first: the gone client's " \
        "1.5 s request took the slot" % gap
    st = cluster_status(p)
    assert st["queued"] == 0 and st["queue_503"] == 0 and st["in_flight"] == 0, st


def test_queue_max_0_answers_503_as_soon_as_every_connection_is_busy(capped, backend_factory):
    b = backend_factory("nowait-1")
    p = capped({"blue": {"endpoints": [b.addr], "max_connections": 1,
                         "queue": {"max": 0}}})
    busy = Getter(p.port, "/sleep/2?who=busy")
    busy.start()
    wait_seen(b, "who=busy")
    status, body, _ = get(p.port, "/anything?who=nowait")
    assert status == 503 and "queue.max" in body, (status, body)
    busy.join(30)
    assert busy.result[0] == 200
    # The connection is free (idle in the pool) again: the next request goes through.
    assert get(p.port, "/anything?who=next")[0] == 200


# -- HTTP/2 clusters: a stream slot ---------------------------------------------------------------

def test_h2_cluster_at_max_connections_waits_for_a_stream_slot(capped, peers):
    peer = peers.h2peer("h2cap", ["--max-streams", "2"])
    p = capped({"blue": {"endpoints": [peer.addr], "protocol": "h2c", "max_connections": 1,
                         "queue": {"max": 100, "timeout": "60s"}}})
    # The server's SETTINGS first, so that the stream limit is known.
    assert get(p.port, "/warm")[0] == 200
    res = parallel(p.port, ["/delay/400?n=%d" % i for i in range(8)], timeout=60)
    assert [r[0] for r in res] == [200] * 8, res
    recs = peer.records()
    conns = [r for r in recs if r["ev"] == "conn"]
    streams = [r for r in recs if r["ev"] == "stream"]
    refused = [r for r in recs if r["ev"] == "refused"]
    measure("h2_capped_connections", len(conns), "connections", "max_connections 1")
    assert len(conns) == 1, conns
    assert not refused, refused
    assert max(r["open"] for r in streams) <= 2, streams


# -- limits.max_upstream_connections -------------------------------------------------------------

def test_max_upstream_connections_refuses_with_503_and_idle_connections_give_way(
        capped, backend_factory):
    b1, b2 = backend_factory("lim-1"), backend_factory("lim-2")
    apps = [{"name": "web", "hosts": ["*"], "weights": {"blue": 100, "green": 0},
             "force": {"header": "x-sy"}}]
    p = capped({"blue": {"endpoints": [b1.addr]}, "green": {"endpoints": [b2.addr]}},
               limits={"max_upstream_connections": 1}, apps=apps)
    busy = Getter(p.port, "/sleep/2?who=busy")
    busy.start()
    wait_seen(b1, "who=busy")
    status, body, took = get(p.port, "/anything?who=over", headers={"x-sy": "green"})
    assert status == 503, (status, body)
    assert "limits.max_upstream_connections" in body and "green" in body, body
    assert took < 1.5, took
    assert not b2.saw("who=over")
    busy.join(30)
    assert busy.result[0] == 200
    # blue's connection is idle in its pool now: it gives way to a request for green.
    status, body, _ = get(p.port, "/anything?who=then", headers={"x-sy": "green"})
    assert status == 200, (status, body)
    st = cluster_status(p, "green")
    assert st["upstream_refused"] == 1 and st["responses_5xx"] == 1, st
    assert cluster_status(p, "blue")["upstream_refused"] == 0
    text = p.ctl_ok("status")
    assert "1 refused by limits.max_upstream_connections" in text, text


def test_an_h2_client_stream_reset_while_queued_takes_no_slot(capped, backend_factory):
    b = backend_factory("h2gone-1")
    p = capped({"blue": {"endpoints": [b.addr], "max_connections": 1,
                         "queue": {"max": 10, "timeout": "60s"}}})
    first = Getter(p.port, "/sleep/3?who=first")
    first.start()
    wait_seen(b, "who=first")
    c = H2Client(p.port)
    try:
        sid = c.request("/sleep/1.5?who=reset")
        wait_status(p, "queued", 1)
        c.conn.reset_stream(sid)
        c.flush()
        wait_status(p, "queued", 0)  # forgotten at once
        first.join(30)
        assert first.result[0] == 200, first.result
        # Its turn would have come by now: it must not reach the backend.
        assert get(p.port, "/anything?who=next")[0] == 200
        assert not b.saw("who=reset"), "a reset stream's request reached the backend"
    finally:
        c.close()


def test_max_upstream_connections_bounds_one_h2_client_with_many_streams(capped,
                                                                          backend_factory):
    """limits.max_connections counts client connections only: one HTTP/2 connection with ten
    streams made ten upstream connections. limits.max_upstream_connections bounds those."""
    b = backend_factory("streams-1")
    p = capped({"blue": {"endpoints": [b.addr]}},
               limits={"max_connections": 1, "max_upstream_connections": 3})
    c = H2Client(p.port, timeout=30)
    try:
        sids = [c.request("/sleep/1?n=%d" % i) for i in range(10)]
        statuses, ended = {}, set()
        deadline = time.monotonic() + 30
        while len(ended) < len(sids) and time.monotonic() < deadline:
            for ev in c.events(0.5):
                if type(ev).__name__ == "ResponseReceived":
                    statuses[ev.stream_id] = dict(ev.headers)[":status"]
                elif type(ev).__name__ == "DataReceived":
                    c.ack(ev.stream_id, ev.flow_controlled_length)
                elif type(ev).__name__ in ("StreamEnded", "StreamReset"):
                    ended.add(ev.stream_id)
    finally:
        c.close()
    got = sorted(statuses.get(s, "none") for s in sids)
    seen = max_open(b)
    measure("h2_client_streams_upstream_max_open", seen, "connections",
            "10 streams, max_upstream_connections 3")
    assert got == ["200"] * 3 + ["503"] * 7, got
    assert seen <= 3, seen
    assert cluster_status(p)["upstream_refused"] == 7


def test_sigterm_serves_what_waits_in_the_queue_and_exits_0(capped, backend_factory):
    b = backend_factory("term-1")
    p = capped({"blue": {"endpoints": [b.addr], "max_connections": 1,
                         "queue": {"max": 10, "timeout": "30s"}}})
    ts = [Getter(p.port, "/sleep/3?who=t0")]  # long enough to queue two behind it
    ts[0].start()
    wait_seen(b, "who=t0")
    for i in (1, 2):
        ts.append(Getter(p.port, "/sleep/0.5?who=t%d" % i))
        ts[-1].start()
        wait_status(p, "queued", i)
    p.proc.send_signal(signal.SIGTERM)
    for t in ts:
        t.join(30)
        assert t.result[0] == 200, t.result
    rc = p.proc.wait(timeout=15)  # the drain (5 s) ends once the clients are served
    p.stopped = True
    p._logf.close()
    assert rc == 0, "switchyard exited with %s on SIGTERM:\n%s" % (rc, p.log_text()[-3000:])


def test_a_request_queued_before_a_reload_is_served_by_the_endpoint_it_was_routed_to(
        capped, backend_factory):
    old, new = backend_factory("old-1"), backend_factory("new-1")
    p = capped({"blue": {"endpoints": [old.addr], "max_connections": 1,
                         "queue": {"max": 10, "timeout": "60s"}}})
    first = Getter(p.port, "/sleep/2?who=first")
    first.start()
    wait_seen(old, "who=first")
    queued = Getter(p.port, "/anything?who=queued")
    queued.start()
    wait_status(p, "queued", 1)
    p.spec["clusters"] = {"blue": {"endpoints": [new.addr], "max_connections": 1}}
    p.write_config()
    p.ctl_ok("reload")
    assert get(p.port, "/anything?who=after")[0] == 200  # the new endpoint has room
    for g in (first, queued):
        g.join(30)
        assert g.result[0] == 200, g.result
    assert old.saw("who=queued") and not new.saw("who=queued")
    assert new.saw("who=after")


def burst_conns(p, backend, token, n):
    """Two bursts of `n` GETs at once (each held 0.4 s by the backend, so that all `n` run
    together), the second after the first has ended: the distinct connections the backend
    saw in each burst."""
    seen = []
    for b in (1, 2):
        path = "/sleep/0.4?burst=%s-%d" % (token, b)
        res = parallel(p.port, [path] * n)
        assert all(r[0] == 200 for r in res), res
        conns = {r["conn"] for r in backend.records()
                 if r["ev"] == "request" and r.get("path") == path}
        seen.append(conns)
    return seen


def test_a_burst_wider_than_the_default_keepalive_keeps_its_connections_for_the_next(
        capped, backends):
    """#13: with the fixed default of 32 idle connections per endpoint, a burst of 48 closed
    16 connections as it ended, and the next burst opened 16 again. `upstream_keepalive: auto`
    (the default now) keeps as many idle as were busy lately: the second burst reuses every
    connection of the first and opens none."""
    p = capped({"blue": {"endpoints": [backends.blue.addr]}})
    first, second = burst_conns(p, backends.blue, "auto", 48)
    assert len(first) == 48, len(first)
    assert second <= first, "the second burst opened %d new connections" % len(second - first)


def test_a_fixed_upstream_keepalive_still_caps_the_idle_connections(capped, backends):
    """A number keeps its meaning: at most that many idle connections per endpoint, so the
    next burst reuses those and opens the rest anew."""
    p = capped({"blue": {"endpoints": [backends.blue.addr]}}, limits={"upstream_keepalive": 4})
    first, second = burst_conns(p, backends.blue, "fixed", 12)
    assert len(first) == 12, len(first)
    assert len(second & first) <= 4, "kept %d idle connections" % len(second & first)
    assert len(second - first) >= 8, len(second - first)
