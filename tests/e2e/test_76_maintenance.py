# SPDX-License-Identifier: MIT
"""Maintenance mode (issue #19, part 2): `switchyardctl maintenance APP on|off`. Under
continuous HTTP/1.1 keep-alive load, every request that starts after `on` answered ok and
before `off` is sent gets 503 with Retry-After and Cache-Control: no-store from the proxy and
none of them reaches a cluster (the backends' own request logs); after `off` traffic flows again.
A request body is dropped and the connection goes on. Browsers (Accept: text/html) get the
app's maintenance_page, other clients one line, over
HTTP/1.1 and h2c (curl, and h2load's 400 streams), HEAD with no body; other apps are unaffected. The state survives a SIGHUP
reload, a revert and release (which do not end it), kill -9 and a restart (journal), and
`history` and `status --json` show it. Bad commands change nothing; a missing or oversized
page is refused with file:line:col. Real switchyard, switchyardctl, curl and python backends."""

import http.client
import json
import os
import re
import signal
import subprocess
import threading
import time

import pytest

import conftest
import helpers
from admin_util import SWITCHYARDCTL, h2load, h2load_result
from helpers import CURL

pytestmark = pytest.mark.skipif(
    not (SWITCHYARDCTL and os.access(SWITCHYARDCTL, os.X_OK)),
    reason="SWITCHYARDCTL is not an executable (path to switchyardctl; meson test sets it)")

PAGE = b"<!doctype html><title>down</title><p>web is down for maintenance</p>\n"


def apps(tmp_path, **kw):
    page = tmp_path / "page.html"
    page.write_bytes(PAGE)
    web = {"name": "web", "hosts": ["*"], "stable": "blue",
           "weights": {"blue": 50, "green": 50}, "maintenance_page": str(page)}
    web.update(kw)
    other = {"name": "other", "hosts": ["other.test"], "weights": {"blue": 100}}
    return [web, other]


def reached(backends, token):
    """Requests whose path holds `token` that reached either backend."""
    return [r for b in backends.all for r in b.saw(token, ev="request")]


def get(url, *opts, http2=False, head=False):
    """(status, headers {lower name: value}, body) of one curl request."""
    args = [CURL, "-sS", "--max-time", "10", "-o", "-"]
    args.append("--http2-prior-knowledge" if http2 else "--http1.1")
    # -I writes the head to the output itself; otherwise -D - puts it before the body.
    args += ["-I"] if head else ["-D", "-"]
    p = subprocess.run(args + list(opts) + [url], capture_output=True, timeout=20)
    assert p.returncode == 0, (args, p.stderr)
    raw = p.stdout
    head_end = raw.index(b"\r\n\r\n")
    lines = raw[:head_end].decode().split("\r\n")
    status = int(lines[0].split()[1])
    hdrs = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        hdrs[k.strip().lower()] = v.strip()
    return status, hdrs, raw[head_end + 4:]


class Load(threading.Thread):
    """GETs on one keep-alive HTTP/1.1 connection, back to back, until stop() or `limit`
    requests: (path, start, end, status, x-backend) of each."""

    def __init__(self, port, limit=20000):
        super().__init__(daemon=True)
        self.port, self.limit = port, limit
        self.halt = threading.Event()
        self.done = []
        self.errors = []

    def run(self):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        for i in range(self.limit):
            if self.halt.is_set():
                break
            path = "/load-%d" % i
            t0 = time.monotonic()
            try:
                conn.request("GET", path, headers={"Host": "app.test"})
                r = conn.getresponse()
                r.read()
            except (OSError, http.client.HTTPException) as e:
                self.errors.append((path, repr(e)))
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
                continue
            self.done.append((path, t0, time.monotonic(), r.status, r.getheader("x-backend"),
                              r.getheader("retry-after")))
        conn.close()

    def stop(self):
        self.halt.set()
        self.join(timeout=30)
        assert not self.is_alive(), "load did not end"


def wait_requests(load, n, timeout=10):
    start = len(load.done)
    helpers.wait_for(lambda: len(load.done) >= start + n, timeout, "%d more requests" % n)


def test_maintenance_under_load_answers_503_and_nothing_reaches_a_cluster(admin_proxy, backends,
                                                                         tmp_path):
    p = admin_proxy(apps(tmp_path, maintenance_retry_after="90s"))
    load = Load(p.port)
    load.start()
    try:
        wait_requests(load, 50)
        t_before_on = time.monotonic()
        out = p.ctl_ok("maintenance", "web", "on")
        assert "Retry-After 90" in out, out
        t_on = time.monotonic()
        wait_requests(load, 200)

        # One client of each kind while it is on, on paths of their own.
        st, h, body = get(p.url + "/m-h1-html", "-H", "Accept: text/html,*/*;q=0.8")
        assert (st, h["retry-after"], h["cache-control"], body) == (503, "90", "no-store", PAGE)
        assert h["content-type"].startswith("text/html"), h
        st, h, body = get(p.url + "/m-h1-text")
        assert st == 503 and h["retry-after"] == "90" and h["cache-control"] == "no-store"
        assert body == b"web is down for maintenance: try again in 90 seconds\n", body
        assert h["content-type"].startswith("text/plain"), h
        st, h, body = get(p.url + "/m-h2-html", "-H", "Accept: text/html", http2=True)
        assert (st, h["retry-after"], h["cache-control"], body) == (503, "90", "no-store", PAGE)
        st, h, body = get(p.url + "/m-h2-text", "-H", "Accept: application/json", http2=True)
        assert st == 503 and body.startswith(b"web is down"), (st, body)
        for http2 in (False, True):
            st, h, body = get(p.url + "/m-head", "-H", "Accept: text/html", http2=http2,
                              head=True)
            assert (st, h["retry-after"], body) == (503, "90", b""), (http2, st, h, body)
            assert h["content-length"] == str(len(PAGE)), h
        st, h, body = get(p.url + "/m-post", "--data-binary", "x" * 1000)
        assert st == 503 and h["retry-after"] == "90", (st, h)
        # A request body is read and dropped: the connection goes on (same socket), chunked
        # too; a 2 MiB upload gets its answer whole (no reset) and the connection closes.
        c = http.client.HTTPConnection("127.0.0.1", p.port, timeout=10)
        c.request("POST", "/m-post-ka", body=b"y" * 5000, headers={"Host": "app.test"})
        r = c.getresponse()
        assert (r.status, r.read()) == (503, b"web is down for maintenance: try again in 90 "
                                             b"seconds\n")
        sock = c.sock
        c.request("POST", "/m-post-chunked", body=iter([b"a" * 100, b"b" * 100]),
                  headers={"Host": "app.test", "Transfer-Encoding": "chunked"},
                  encode_chunked=True)
        r = c.getresponse()
        r.read()
        assert r.status == 503 and c.sock is sock and sock is not None
        c.close()
        big = tmp_path / "big.bin"
        big.write_bytes(b"z" * (2 << 20))
        st, h, body = get(p.url + "/m-post-big", "--data-binary", "@" + str(big), "-H",
                          "Expect:")
        assert st == 503 and body.startswith(b"web is down"), (st, h, body)
        # h2c under h2load: 400 requests on 2 connections, 4 streams each, all answered 503.
        r = h2load_result(h2load(p.url + "/m-h2load", n=400, clients=2, streams=4), 60)
        assert (r["done"], r["5xx"], r["errored"]) == (400, 400, 0), r["output"][-1500:]
        # Another app is not in maintenance.
        st, h, _ = get(p.url + "/m-other", "-H", "Host: other.test")
        assert st == 200 and h["x-backend"] == "blue-1", (st, h)

        t_off = time.monotonic()
        p.ctl_ok("maintenance", "web", "off")
        t_after_off = time.monotonic()
        wait_requests(load, 100)
    finally:
        load.stop()

    assert not load.errors, load.errors[:5]
    during = [d for d in load.done if d[1] > t_on and d[2] < t_off]
    after = [d for d in load.done if d[1] > t_after_off]
    before = [d for d in load.done if d[2] < t_before_on]
    assert len(during) >= 200 and len(after) >= 50 and before, (len(during), len(after))
    assert all(d[3] == 503 and d[4] is None and d[5] == "90" for d in during), \
        [d for d in during if d[3] != 503][:5]
    assert all(d[3] == 200 and d[4] in ("blue-1", "green-1") for d in after), \
        [d for d in after if d[3] != 200][:5]
    assert all(d[3] == 200 for d in before)
    # The backends' own logs: no request answered 503 got there, nor any of the curl ones.
    seen = {r["path"] for b in backends.all for r in b.records() if r["ev"] == "request"}
    leaked = [d[0] for d in load.done if d[3] == 503 and d[0] in seen]
    assert not leaked, leaked[:5]
    assert not reached(backends, "/m-h") and not reached(backends, "/m-post"), \
        reached(backends, "/m-")
    assert reached(backends, "/m-other")
    helpers.measure("maintenance_503_under_load", len(during), "requests",
                    "all 503 from the proxy, 0 reached a cluster")


def test_maintenance_survives_reload_revert_and_restart_and_shows_in_history(admin_proxy,
                                                                           backends, tmp_path):
    p = admin_proxy(apps(tmp_path))
    p.ctl_ok("maintenance", "web", "on", "--retry-after", "5m", "--message",
             "upgrading the database, back at 04:00")

    def check(tag):
        st, h, body = get(p.url + "/s-" + tag)
        assert st == 503, (tag, st, body)
        assert h["retry-after"] == "300", (tag, h)
        assert body == b"upgrading the database, back at 04:00\n", (tag, body)

    check("on")
    out = p.ctl_ok("explain", "app.test", "/")
    assert "maintenance: app web is in maintenance: the proxy answers 503 (Retry-After 300)" in out
    assert json.loads(p.ctl("explain", "app.test", "/", "--json").stdout)["maintenance"] == \
        {"retry_after": 300}
    doc = json.loads(p.ctl("status", "--json").stdout)
    web = [a for a in doc["apps"] if a["name"] == "web"][0]
    m = web["in_maintenance"]
    assert m["retry_after"] == 300 and m["message"].startswith("upgrading"), m
    assert m["uid"] == os.geteuid() and m["since"].endswith("Z"), m
    assert m["who"].startswith("uid %d pid " % os.geteuid()), m
    assert m["command"].startswith("maintenance web on --retry-after 5m"), m
    assert [a for a in doc["apps"] if a["name"] == "other"][0]["in_maintenance"] is None
    since = m["since"]

    # A repeated `on` is fine: it keeps the start time.
    p.ctl_ok("maintenance", "web", "on", "--retry-after", "300", "--message",
             "upgrading the database, back at 04:00")
    doc = json.loads(p.ctl("status", "--json").stdout)
    assert [a for a in doc["apps"] if a["name"] == "web"][0]["in_maintenance"]["since"] == since

    # Weights, revert and release change where traffic goes afterwards, not maintenance.
    p.ctl_ok("revert", "web")
    check("revert")
    p.ctl_ok("release", "web")
    check("release")

    # A reload of a changed file (SIGHUP), and one through the admin socket.
    new = apps(tmp_path)
    new[0]["weights"] = {"blue": 100, "green": 0}
    p.write_config(new)
    gen = p.generation()
    p.proc.send_signal(signal.SIGHUP)
    helpers.wait_for(lambda: p.generation() > gen, 10, "the reload")
    check("sighup")
    p.ctl_ok("reload")
    check("reload")

    # kill -9 and a restart on the same journal.
    p.kill9()
    p.start()
    check("restart")
    assert helpers.log_has(p, "app 'web' is in maintenance (seq 2")
    assert not reached(backends, "/s-")

    text = p.ctl_ok("history")
    assert re.search(r"maintenance web on --retry-after 5m --message .*\n\s+web: maintenance "
                     r"on \(Retry-After: 300 s\): \"upgrading", text), text
    recs = json.loads(p.ctl("history", "--json").stdout)["records"]
    ms = [r["maintenance"] for r in recs if "maintenance" in r]
    assert ms and ms[0] == {"app": "web", "on": True, "retry_after": 300,
                            "message": "upgrading the database, back at 04:00"}, ms

    p.ctl_ok("maintenance", "web", "off")
    st, h, _ = get(p.url + "/s-off")
    assert st == 200 and h["x-backend"] == "blue-1", (st, h)
    assert "web: maintenance off" in p.ctl_ok("history")
    # Off is durable too.
    p.kill9()
    p.start()
    st, h, _ = get(p.url + "/s-off-restart")
    assert st == 200, st
    assert len(reached(backends, "/s-off")) == 2


def test_bad_maintenance_commands_change_nothing(admin_proxy, tmp_path):
    p = admin_proxy(apps(tmp_path))
    seq = p.ctl_ok("ident")
    bad = [
        (("maintenance", "nope", "on"), "unknown app 'nope'"),
        (("maintenance", "web", "on", "--retry-after", "0"), "--retry-after must be"),
        (("maintenance", "web", "on", "--retry-after", "soon"), "--retry-after must be"),
        (("maintenance", "web", "on", "--retry-after"), "unexpected '--retry-after'"),
        (("maintenance", "web", "sideways"), "expected on or off"),
        (("maintenance", "web"), "usage: maintenance"),
        (("maintenance", "web", "off", "--message", "x"), "unexpected '--message'"),
    ]
    for args, why in bad:
        r = p.ctl(*args)
        assert r.returncode == 1 and why in r.stderr, (args, r.returncode, r.stdout, r.stderr)
    # Off for an app not in maintenance: ok, and nothing is recorded.
    r = p.ctl_ok("maintenance", "web", "off")
    assert "was not in maintenance" in r, r
    assert p.ctl_ok("ident") == seq
    st, _, _ = get(p.url + "/b-still")
    assert st == 200


def test_maintenance_page_errors_name_file_line_col(backends, tmp_path):
    page = tmp_path / "big.html"
    page.write_bytes(b"x" * 2000)
    cfg = tmp_path / "sy.yaml"
    for limits, page_path, want in (
            ({"maintenance_page_bytes": 1000}, str(page),
             r"sy\.yaml:\d+:\d+: maintenance_page '.*big\.html' is 2000 bytes, more than "
             r"limits\.maintenance_page_bytes \(1000\)"),
            (None, str(tmp_path / "missing.html"),
             r"sy\.yaml:\d+:\d+: cannot read maintenance_page '.*missing\.html': No such file")):
        app = {"name": "web", "hosts": ["*"], "weights": {"blue": 100},
               "maintenance_page": page_path, "maintenance_retry_after": "2m"}
        cfg.write_text(conftest.make_config(helpers.free_port(),
                                            conftest.default_clusters(backends), [app],
                                            limits=limits))
        r = subprocess.run([conftest.SWITCHYARD, "-t", "-c", str(cfg)], capture_output=True,
                           text=True, timeout=20)
        assert r.returncode == 1 and re.search(want, r.stdout + r.stderr), (r.stdout, r.stderr)
    app = {"name": "web", "hosts": ["*"], "weights": {"blue": 100}, "maintenance_page": str(page),
           "maintenance_retry_after": "1500ms"}
    cfg.write_text(conftest.make_config(helpers.free_port(), conftest.default_clusters(backends),
                                        [app]))
    r = subprocess.run([conftest.SWITCHYARD, "-t", "-c", str(cfg)], capture_output=True,
                       text=True, timeout=20)
    assert r.returncode == 1 and re.search(r"sy\.yaml:\d+:\d+: maintenance_retry_after must be "
                                           r"whole seconds", r.stdout + r.stderr), r.stdout
    app["maintenance_retry_after"] = "90"
    cfg.write_text(conftest.make_config(helpers.free_port(), conftest.default_clusters(backends),
                                        [app]))
    r = subprocess.run([conftest.SWITCHYARD, "-t", "-c", str(cfg)], capture_output=True,
                       text=True, timeout=20)
    assert r.returncode == 0, (r.stdout, r.stderr)
