# SPDX-License-Identifier: MIT
"""Issue #19, part 2: the other ways an exclusive app moves, and the switch's limits.

test_75 drives the exclusive switch with `switchyardctl switch`. Here: a reload whose file moves
an exclusive app (100/0 -> 0/100, no override) goes through the same hold, drain and release
(under load, with the singleton backend: 0 failed, no overlap in the backends' records), and a
reload during that switch (the newer target wins); `revert --all` switches each exclusive app
on its own, concurrently; `exclusive.ready` holds the release until the new side is ready, and
says in `history` when it gave up; `exclusive.max_held` answers 503 + Retry-After beyond it
while the others stay held; a held client that goes away is forgotten."""

import http.client
import json
import re
import socket
import subprocess
import threading
import time

import conftest
import helpers
from test_75_exclusive import (HOST, Singleton, assert_no_overlap, curl_status, effective,
                               singleton, start_proxy, status_app, wait_switch_done)

assert singleton  # a fixture, used by name


class Load:
    """`n` threads of keep-alive HTTP/1.1 GETs to `host`, each bounded by `max_requests` and by
    stop(). Records (status, backend) of every request."""

    def __init__(self, port, host=HOST, max_requests=600):
        self.port, self.host, self.max_requests = port, host, max_requests
        self.results = []
        self.lock = threading.Lock()
        self.stop_now = threading.Event()
        # Requests of different lengths: blue always has one in flight.
        self.threads = [threading.Thread(target=self.run, args=("/work?ms=%d" % ms,))
                        for ms in (7, 13, 23, 31)]
        for t in self.threads:
            t.start()

    def run(self, path):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=20)
        for _ in range(self.max_requests):
            if self.stop_now.is_set():
                break
            try:
                conn.request("GET", path, headers={"Host": self.host})
                r = conn.getresponse()
                r.read()
                rec = (r.status, r.getheader("x-backend"))
            except (OSError, http.client.HTTPException) as e:
                rec = (0, repr(e))
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=20)
            with self.lock:
                self.results.append(rec)
        conn.close()

    def count(self):
        with self.lock:
            return len(self.results)

    def stop(self):
        self.stop_now.set()
        for t in self.threads:
            t.join(timeout=30)
        bad = [r for r in self.results if r[0] != 200]
        assert not bad, "%d of %d requests failed: %r" % (len(bad), len(self.results), bad[:5])
        return {r[1] for r in self.results}


def exclusive_app(name, hosts, live, idle, extra=None):
    app = {"name": name, "hosts": hosts, "mode": "exclusive", "weights": {live: 100, idle: 0}}
    app.update(extra or {})
    return app


def ctl_json(p, *args):
    out = p.ctl("--json", *args)
    assert out.returncode == 0, out
    return json.loads(out.stdout.strip().splitlines()[-1])


def busy_blue(p, s, path=b"/hang"):
    """A request that keeps blue busy: /hang never ends, /work?ms=N after N ms, /gate when the
    test asks the backend for /_gate."""
    conn = socket.create_connection(("127.0.0.1", p.port), timeout=10)
    conn.sendall(b"GET " + path + b" HTTP/1.1\r\nHost: " + HOST.encode() + b"\r\n\r\n")
    helpers.wait_for(lambda: s.get("/_inflight")["blue"] == 1, 5, "blue busy")
    return conn


def held(p):
    sw = status_app(p)["switch"]
    return sw["held"] if sw else None


def test_reload_that_moves_an_exclusive_app_holds_drains_and_releases(admin_proxy, singleton,
                                                                      tmp_path):
    p = start_proxy(admin_proxy, singleton, exclusive={"hold": "10s", "drain": "5s"})
    green = [exclusive_app("web", ["*"], "green", "blue")]
    # `switchyard -t` says that the file would switch it, and how.
    nxt = tmp_path / "next.yaml"
    nxt.write_text(conftest.make_config(p.port, **dict(p.spec, apps=green)))
    chk = subprocess.run([conftest.SWITCHYARD, "-t", "-c", str(nxt)], capture_output=True,
                         text=True, timeout=30)
    assert chk.returncode == 0, chk
    assert ("! app web is exclusive: an exclusive switch moves it from blue to green"
            in chk.stdout), chk.stdout
    # One request on blue that ends when the test says (the singleton's work in flight), then
    # steady load.
    slow = busy_blue(p, singleton, b"/gate")
    load = Load(p.port)
    helpers.wait_for(lambda: load.count() >= 30, 5, "load on blue")
    t0 = time.monotonic()
    p.write_config(apps=green)
    out = p.ctl_ok("reload")
    assert re.search(r"web: exclusive switch blue -> green (begun|in progress)", out), out
    # The clients' requests wait (a green one now would be refused: blue is busy) ...
    helpers.wait_for(lambda: (held(p) or 0) >= 2, 5, "held requests")
    singleton.get("/_gate")  # ... until blue's last request is done
    wait_switch_done(p, 10)
    took = time.monotonic() - t0
    n = load.count()
    helpers.wait_for(lambda: load.count() >= n + 30, 5, "load on green")
    assert load.stop() == {"blue", "green"}
    assert slow.recv(4096).startswith(b"HTTP/1.1 200")
    slow.close()
    assert_no_overlap(singleton.records())
    app = status_app(p)
    assert effective(p) == {"blue": 0, "green": 100}
    assert app["override"] is None, app  # the file put it there: nothing to release
    hist = p.ctl_ok("history")
    m = re.search(r"reload \(the file moves web\) \[exclusive switch blue -> green: hold_ms=(\d+) "
                  r"drain_ms=(\d+) ready_ms=0 held=(\d+) answered_503=0\]", hist)
    assert m, hist
    assert "web: blue=100,green=0 -> blue=0,green=100 (released)" in hist, hist
    helpers.measure("exclusive switch by reload, 4 HTTP/1.1 clients, a request on blue to wait for",
                    m.group(1), "ms hold", "reload to switch done %.0f ms by status, %s held" % (
                        took * 1000, m.group(3)))
    # Restarted, it comes back where the file says, with no switch.
    p.stop()
    p.start()
    assert effective(p) == {"blue": 0, "green": 100}
    assert status_app(p)["switch"] is None


def test_a_reload_during_its_switch_wins_back_to_the_old_cluster(admin_proxy, singleton):
    p = start_proxy(admin_proxy, singleton, exclusive={"hold": "10s", "drain": "20s"})
    hang = busy_blue(p, singleton)
    p.write_config(apps=[exclusive_app("web", ["*"], "green", "blue")])
    p.ctl_ok("reload")
    sw = status_app(p)["switch"]
    assert (sw["to"], sw["by_reload"]) == ("green", True), sw
    results = []
    t = threading.Thread(target=lambda: results.append(curl_status(p.url + "/work")))
    t.start()
    helpers.wait_for(lambda: held(p) == 1, 5, "one held request")
    # The file goes back to blue before the switch is done: the newer target wins, the
    # switch is aborted, the held request (routed to green under the file before) is answered
    # 503 + Retry-After, and the next ones go to blue, where the app still runs.
    p.write_config(apps=[exclusive_app("web", ["*"], "blue", "green")])
    out = p.ctl_ok("reload")
    assert "exclusive switch" not in out, out
    t.join(timeout=10)
    assert results and results[0].startswith("HTTP/1.1 503"), results
    assert re.search(r"(?im)^retry-after: 1\r?$", results[0]), results
    assert status_app(p)["switch"] is None
    head = curl_status(p.url + "/work")
    assert head.startswith("HTTP/1.1 200") and "x-backend: blue" in head, head
    assert effective(p) == {"blue": 100, "green": 0}
    hang.close()
    assert not [r for r in singleton.records() if r["side"] == "green"]
    assert "switch blue -> green aborted by a reload: the file puts it back where it runs" in \
        p.log_text()


def test_an_operators_switch_goes_on_through_a_reload(admin_proxy, singleton):
    p = start_proxy(admin_proxy, singleton, exclusive={"hold": "10s", "drain": "20s"})
    slow = busy_blue(p, singleton, b"/gate")
    p.ctl_ok("switch", "web", "green")
    results = []
    t = threading.Thread(target=lambda: results.append(curl_status(p.url + "/work")))
    t.start()
    helpers.wait_for(lambda: held(p) == 1, 5, "one held request")
    # A reload that changes the file elsewhere (the file still says blue): the switch, its
    # hold and its held request stay as they were.
    p.write_config(apps=[exclusive_app("web", ["*", "web.test"], "blue", "green")])
    p.ctl_ok("reload")
    sw = status_app(p)["switch"]
    assert (sw["to"], sw["held"]) == ("green", 1), sw
    # Weights or a release now would let the held request go before blue is quiet: refused.
    for cmd in (("weights", "web", "blue=0", "green=100"), ("release", "web")):
        out = p.ctl(*cmd)
        assert out.returncode != 0 and "switch in progress" in out.stderr, out
    assert held(p) == 1
    singleton.get("/_gate")  # blue is quiet: the switch completes
    t.join(timeout=10)
    assert results and results[0].startswith("HTTP/1.1 200"), results
    assert "x-backend: green" in results[0], results
    wait_switch_done(p, 5)
    slow.close()
    assert effective(p) == {"blue": 0, "green": 100}
    assert status_app(p)["override"] is not None  # the operator's: it outlives the file
    assert not [r for r in singleton.records() if r["status"] == 503]


def test_kill9_during_a_reload_switch_restarts_on_the_files_side(admin_proxy, singleton):
    p = start_proxy(admin_proxy, singleton, exclusive={"hold": "5s", "drain": "20s"})
    hang = busy_blue(p, singleton)
    p.write_config(apps=[exclusive_app("web", ["*"], "green", "blue")])
    p.ctl_ok("reload")
    assert status_app(p)["switch"]["phase"] == "drain"
    p.kill9()
    hang.close()
    helpers.wait_for(lambda: singleton.get("/_inflight")["blue"] == 0, 5, "blue quiet")
    # The journal has nothing of the move: the restart follows the file, on green only.
    p.start()
    assert status_app(p)["switch"] is None
    assert effective(p) == {"blue": 0, "green": 100}
    for _ in range(3):
        head = curl_status(p.url + "/work")
        assert head.startswith("HTTP/1.1 200") and "x-backend: green" in head, head
    assert [r["path"] for r in singleton.records() if r["side"] == "blue"] == ["/hang"]


def test_revert_all_switches_each_exclusive_app_on_its_own(admin_proxy, tmp_path):
    a, b = Singleton(), Singleton()
    try:
        clusters = {"blue": {"endpoints": ["127.0.0.1:%d" % a.blue_port]},
                    "green": {"endpoints": ["127.0.0.1:%d" % a.green_port]},
                    "blue2": {"endpoints": ["127.0.0.1:%d" % b.blue_port]},
                    "green2": {"endpoints": ["127.0.0.1:%d" % b.green_port]}}
        apps = [exclusive_app("web", ["web.test"], "green", "blue", {"stable": "blue"}),
                exclusive_app("api", ["api.test"], "green2", "blue2", {"stable": "blue2"})]
        p = admin_proxy(apps, clusters=clusters, workers=2, start=False)
        p.spec["extra"]["exclusive"] = {"hold": "10s", "drain": "5s"}
        p.write_config()
        p.start()
        loads = [Load(p.port, host="web.test"), Load(p.port, host="api.test")]
        helpers.wait_for(lambda: min(x.count() for x in loads) >= 30, 5, "load on green")
        t0 = time.monotonic()
        out = p.ctl_ok("revert", "--all")
        assert "web: exclusive switch to blue begun" in out, out
        assert "api: exclusive switch to blue2 begun" in out, out
        helpers.wait_for(lambda: all(x["switch"] is None for x in ctl_json(p, "status")["apps"]),
                         10, "both switches to complete", interval=0.02)
        took = time.monotonic() - t0
        counts = [x.count() for x in loads]
        helpers.wait_for(lambda: all(x.count() >= c + 30 for x, c in zip(loads, counts)), 5,
                         "load on blue")
        assert loads[0].stop() == {"green", "blue"}
        assert loads[1].stop() == {"green", "blue"}
        # Green then blue on each pair: no blue request began before green's last one ended.
        for s in (a, b):
            recs = s.records()
            blue = [r for r in recs if r["side"] == "blue"]
            green = [r for r in recs if r["side"] == "green"]
            assert blue and green
            assert min(r["start"] for r in blue) >= max(r["end"] for r in green)
        doc = ctl_json(p, "status")
        eff = {x["name"]: {c["name"]: c["effective"] for c in x["clusters"]} for x in doc["apps"]}
        assert eff["web"]["blue"] == 100 and eff["api"]["blue2"] == 100, eff
        hist = p.ctl_ok("history")
        holds = []
        for name, frm, to in (("web", "green", "blue"), ("api", "green2", "blue2")):
            m = re.search(r"revert --all \[exclusive switch %s -> %s: hold_ms=(\d+)" % (frm, to),
                          hist)
            assert m, hist
            holds.append(m.group(1))
        helpers.measure("revert --all of two exclusive apps under load: both switched after",
                        "%.0f" % (took * 1000), "ms", "hold_ms %s (4 clients each, 7..31 ms)" %
                        " and ".join(holds))
    finally:
        a.stop()
        b.stop()


def test_ready_check_waits_for_the_new_side_and_gives_up_at_its_timeout(admin_proxy,
                                                                       singleton):
    ready = {"url": "http://127.0.0.1:%d/warmup" % singleton.green_port, "expect": 200,
             "timeout": "5s"}
    p = start_proxy(admin_proxy, singleton,
                    exclusive={"hold": "10s", "drain": "5s", "ready": ready})
    singleton.get("/_warmup?ms=1000")
    t0 = time.monotonic()
    p.ctl_ok("switch", "web", "green")
    helpers.wait_for(lambda: (status_app(p)["switch"] or {}).get("phase") == "ready", 5,
                     "the ready phase", interval=0.02)
    head = curl_status(p.url + "/work")  # held until green is ready, then released there
    waited = time.monotonic() - t0
    assert head.startswith("HTTP/1.1 200") and "x-backend: green" in head, head
    assert 0.9 <= waited < 3.5, "released after %.2f s (green ready after 1 s)" % waited
    helpers.measure("exclusive.ready: held request released after", "%.0f" % (waited * 1000),
                    "ms", "the ready URL answered 200 from 1,000 ms, polled every 200 ms")
    hist = p.ctl_ok("history")
    m = re.search(r"exclusive switch blue -> green: hold_ms=\d+ drain_ms=\d+ ready_ms=(\d+) "
                  r"held=1 answered_503=0\]", hist)
    assert m and 700 <= int(m.group(1)) < 3500, hist
    # Never ready within exclusive.ready.timeout: released all the same, and history says so.
    singleton.get("/_warmup?ms=600000")
    p.spec["extra"]["exclusive"]["ready"]["timeout"] = "1s"
    p.write_config()
    p.ctl_ok("reload")
    t0 = time.monotonic()
    p.ctl_ok("revert", "web")
    wait_switch_done(p, 10)
    took = time.monotonic() - t0
    assert 0.9 <= took < 4, "switch took %.2f s (exclusive.ready.timeout 1s)" % took
    hist = p.ctl_ok("history")
    assert re.search(r"exclusive switch green -> blue: hold_ms=\d+ drain_ms=\d+ ready_ms=\d+ "
                     r"held=0 answered_503=0 ready_timed_out\]", hist), hist
    assert effective(p) == {"blue": 100, "green": 0}


def metric(p, name, labels):
    text = helpers.curl1("http://%s/metrics" % p.spec["extra"]["admin"]["http"]).body.decode()
    m = re.search(r"(?m)^%s\{%s\} (\d+)$" % (re.escape(name), re.escape(labels)), text)
    assert m, "%s{%s} not in /metrics" % (name, labels)
    return int(m.group(1))


def test_beyond_max_held_503_with_retry_after_while_the_rest_are_held(admin_proxy, singleton):
    clusters = {"blue": {"endpoints": ["127.0.0.1:%d" % singleton.blue_port]},
                "green": {"endpoints": ["127.0.0.1:%d" % singleton.green_port]}}
    p = admin_proxy([exclusive_app("web", ["*"], "blue", "green")], clusters=clusters,
                    workers=1, admin={"http": "127.0.0.1:%d" % helpers.free_port()}, start=False)
    p.spec["extra"]["exclusive"] = {"hold": "10s", "drain": "20s", "max_held": 2}
    p.write_config()
    p.start()
    assert status_app(p)["mode"] == "exclusive"
    assert metric(p, "switchyard_app_switching", 'app="web"') == 0
    slow = busy_blue(p, singleton, b"/gate")
    p.ctl_ok("switch", "web", "green")
    results = []
    lock = threading.Lock()

    def one():
        head = curl_status(p.url + "/work")
        with lock:
            results.append(head)

    threads = [threading.Thread(target=one) for _ in range(2)]
    for t in threads:
        t.start()
    helpers.wait_for(lambda: held(p) == 2, 5, "two held requests")
    # The third and fourth: answered at once.
    for _ in range(2):
        head = curl_status(p.url + "/work")
        assert head.startswith("HTTP/1.1 503"), head
        assert re.search(r"(?im)^retry-after: 10\r?$", head), head
    assert held(p) == 2 and len(results) == 0
    sw = status_app(p)["switch"]
    assert (sw["phase"], sw["held"], sw["answered_503"]) == ("drain", 2, 2), sw
    assert metric(p, "switchyard_app_switching", 'app="web"') == 1
    assert metric(p, "switchyard_held_requests", 'app="web",cluster="green"') == 2
    assert metric(p, "switchyard_held_rejected_total", 'app="web",cluster="green"') == 2
    singleton.get("/_gate")
    # Blue is quiet once its request is done: the switch completes, the two held go to green.
    for t in threads:
        t.join(timeout=10)
    assert len(results) == 2, results
    for head in results:
        assert head.startswith("HTTP/1.1 200") and "x-backend: green" in head, head
    wait_switch_done(p, 5)
    slow.close()
    hist = p.ctl_ok("history")
    assert re.search(r"held=4 answered_503=2\]", hist), hist
    assert metric(p, "switchyard_app_switching", 'app="web"') == 0
    assert metric(p, "switchyard_held_released_total", 'app="web",cluster="green"') == 2


def test_a_held_client_that_goes_away_is_forgotten(admin_proxy, singleton):
    p = start_proxy(admin_proxy, singleton, workers=1,
                    exclusive={"hold": "10s", "drain": "20s"})
    slow = busy_blue(p, singleton, b"/gate")
    p.ctl_ok("switch", "web", "green")
    gone = socket.create_connection(("127.0.0.1", p.port), timeout=10)
    gone.sendall(b"GET /work?ms=1 HTTP/1.1\r\nHost: app.test\r\n\r\n")
    helpers.wait_for(lambda: held(p) == 1, 5, "one held request")
    gone.close()
    helpers.wait_for(lambda: held(p) == 0, 1, "the held count to drop", interval=0.02)
    assert status_app(p)["switch"]["answered_503"] == 0
    singleton.get("/_gate")
    wait_switch_done(p, 5)
    slow.close()
    assert not [r for r in singleton.records() if r["side"] == "green"], singleton.records()
    assert "answered_503=0" in p.ctl_ok("history")


def test_h2_streams_are_held_one_by_one_and_a_reset_one_is_forgotten(admin_proxy, singleton):
    import h2.config
    import h2.connection
    import h2.events
    p = start_proxy(admin_proxy, singleton, workers=1,
                    exclusive={"hold": "10s", "drain": "20s"})
    slow = busy_blue(p, singleton, b"/gate")
    p.ctl_ok("switch", "web", "green")
    sock = socket.create_connection(("127.0.0.1", p.port), timeout=10)
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    conn.initiate_connection()
    hdrs = [(":method", "GET"), (":scheme", "http"), (":authority", HOST), (":path", "/work")]
    conn.send_headers(1, hdrs, end_stream=True)
    conn.send_headers(3, hdrs, end_stream=True)
    sock.sendall(conn.data_to_send())
    helpers.wait_for(lambda: held(p) == 2, 5, "two held streams")
    conn.reset_stream(1)
    sock.sendall(conn.data_to_send())
    helpers.wait_for(lambda: held(p) == 1, 2, "the reset stream forgotten", interval=0.02)
    singleton.get("/_gate")
    status, backend, ended = None, None, set()
    deadline = time.monotonic() + 10
    while 3 not in ended and time.monotonic() < deadline:
        data = sock.recv(65536)
        assert data, "the proxy closed the connection"
        for ev in conn.receive_data(data):
            if isinstance(ev, h2.events.ResponseReceived) and ev.stream_id == 3:
                h = dict((k.decode(), v.decode()) for k, v in ev.headers)
                status, backend = h[":status"], h.get("x-backend")
            elif isinstance(ev, h2.events.StreamEnded):
                ended.add(ev.stream_id)
        sock.sendall(conn.data_to_send())
    sock.close()
    slow.close()
    assert (status, backend) == ("200", "green")
    wait_switch_done(p, 5)
    hist = p.ctl_ok("history")
    assert re.search(r"held=1 answered_503=0\]", hist), hist
    assert len([r for r in singleton.records() if r["side"] == "green"]) == 1


def test_release_of_an_override_that_moves_the_app_goes_through_a_switch(admin_proxy,
                                                                         singleton):
    p = start_proxy(admin_proxy, singleton, exclusive={"hold": "10s", "drain": "20s"})
    p.ctl_ok("switch", "web", "green")
    wait_switch_done(p, 5)
    # Green at work; the file says blue, so `release web` moves the app: through a switch.
    gated = socket.create_connection(("127.0.0.1", p.port), timeout=10)
    gated.sendall(b"GET /gate HTTP/1.1\r\nHost: " + HOST.encode() + b"\r\n\r\n")
    helpers.wait_for(lambda: singleton.get("/_inflight")["green"] == 1, 5, "green busy")
    out = p.ctl_ok("release", "web")
    assert "web: exclusive switch to the file's cluster begun" in out, out
    sw = status_app(p)["switch"]
    assert (sw["from"], sw["to"]) == ("green", "blue"), sw
    results = []
    t = threading.Thread(target=lambda: results.append(curl_status(p.url + "/work")))
    t.start()
    helpers.wait_for(lambda: held(p) == 1, 5, "one held request")
    singleton.get("/_gate")
    t.join(timeout=10)
    gated.close()
    assert results and results[0].startswith("HTTP/1.1 200"), results
    assert "x-backend: blue" in results[0], results
    wait_switch_done(p, 5)
    app = status_app(p)
    assert app["override"] is None and effective(p) == {"blue": 100, "green": 0}, app
    recs = singleton.records()
    gate_end = [r["end"] for r in recs if r["path"] == "/gate"][0]
    first_green = min(r["start"] for r in recs if r["side"] == "green")
    assert all(r["start"] >= gate_end for r in recs if r["side"] == "blue"
               and r["start"] > first_green)
    hist = p.ctl_ok("history")
    assert re.search(r"release web \[exclusive switch green -> blue: hold_ms=\d+ drain_ms=\d+ "
                     r"ready_ms=0 held=1 answered_503=0\]", hist), hist
