# SPDX-License-Identifier: MIT
"""The status page (admin.http `/`, issue #15) as a browser draws it: Debian's headless
chromium, driven over the DevTools protocol (chromium.py), loads the page from switchyard's
admin listener; the test reads the rendered DOM and checks it against `/status`.

`web` has 50/50 in the file and an operator's override of 90/10 in force while h2load sends it
a steady load; `api` sits at 100/0 with no traffic, and a reload was refused. The page must
show the file / override / effective splits with the stable cluster marked, the override
banner (who, when, the command), per cluster a request rate (from two polls) in the 90/10
ratio that `/status`'s counters grow by, p50 <= p99, the refused reload's file:line:col, the
mode (`jobs` is exclusive, and its switch to green is in progress while an 8 s request holds
blue; `api` is in maintenance), the
last changes and the exact revert command, and nothing sticks out sideways at 390 px. Then `revert web`: the banner names the revert and
the effective split is 100/0; `release web`: the banner is gone and the file's 50/50 is back.

With SY_SCREENSHOTS=DIR it also saves DIR/status-page.png (1280 px) and
DIR/status-page-phone.png (390 px) of the page under load, as docs/ has them."""

import http.client
import json
import os
import subprocess
import threading
import time
import urllib.request

import pytest

import admin_util
import helpers
from chromium import Chromium

APPS = [{"name": "web", "hosts": ["shop.example.com", "*.shop.example.com"],
         "paths": ["/", "/cart"], "weights": {"blue": 50, "green": 50}},
        {"name": "api", "hosts": ["api.example.com"], "paths": ["/v1"],
         "weights": {"blue": 100, "green": 0}},
        {"name": "jobs", "hosts": ["jobs.example.com"], "mode": "exclusive",
         "weights": {"blue": 100, "green": 0}}]


def status(hport):
    with urllib.request.urlopen("http://127.0.0.1:%d/status" % hport, timeout=10) as r:
        return json.loads(r.read())


def app_of(s, name):
    return next(a for a in s["apps"] if a["name"] == name)


SEL = "document.querySelector('[data-app=\"%s\"]')"


def page_app(chrome, app):
    """What the page shows of one app, read from the DOM."""
    js = """(function () {
      var a = %s;
      if (!a) return null;
      function q(s) { return a.querySelector(s); }
      function bar(kind) {
        var r = {}, b = q('[data-split="' + kind + '"]');
        if (!b) return null;
        b.querySelectorAll('[data-cluster]').forEach(function (s) {
          r[s.dataset.cluster] = {weight: +s.dataset.weight, stable: s.classList.contains('stable')};
        });
        return r;
      }
      var rows = {};
      a.querySelectorAll('tr[data-cluster]').forEach(function (tr) {
        var r = {};
        tr.querySelectorAll('[data-field]').forEach(function (td) {
          r[td.dataset.field] = td.dataset.value === undefined ? td.textContent : td.dataset.value;
        });
        rows[tr.dataset.cluster] = r;
      });
      var o = q('[data-field="override"]');
      return {hosts: q('[data-field="hosts"]').textContent, paths: q('[data-field="paths"]').textContent,
              file: bar('file'), override: bar('override'), effective: bar('effective'), rows: rows,
              banner: o ? {state: o.dataset.state, uid: o.dataset.uid, pid: o.dataset.pid,
                           time: o.dataset.time, command: o.dataset.command, text: o.textContent} : null,
              revert: q('[data-field="revert"]').textContent, mode: q('[data-field="mode"]').textContent,
              maintenance: !!q('[data-field="maintenance"]'),
              "switch": q('[data-field="switch"]') ? q('[data-field="switch"]').dataset.phase : null};
    })()""" % (SEL % app)
    return chrome.eval(js)


def polls(chrome):
    return int(chrome.eval("document.getElementById('conn').dataset.polls || '0'"))


def wait_polls(chrome, n, timeout=15):
    """Until the page has drawn n more answers of /status than now."""
    target = polls(chrome) + n
    chrome.wait_for("(+document.getElementById('conn').dataset.polls || 0) >= %d" % target,
                    timeout=timeout, what="%d polls of /status" % n)


def break_config(p):
    with open(p.config, encoding="utf-8") as f:
        text = f.read().rstrip("\n") + "\nbogus_key: 1\n"
    with open(p.config + ".tmp", "w", encoding="utf-8") as f:
        f.write(text)
    os.rename(p.config + ".tmp", p.config)
    return text.count("\n")


@pytest.fixture(scope="module")
def chrome(tmp_path_factory):
    """One browser for the file (starting one takes seconds): each test opens its own page."""
    c = Chromium(tmp_path_factory.mktemp("chromium"))
    yield c
    c.stop()


def check_weights(shown, cl):
    for c in cl:
        assert shown["file"][c["name"]]["weight"] == c["file"], (shown, c)
        assert shown["effective"][c["name"]]["weight"] == c["effective"], (shown, c)
        assert shown["file"][c["name"]]["stable"] == c["stable"]


def test_page_shows_split_override_rates_and_revert(admin_proxy, chrome):
    hport = helpers.free_port()
    p = admin_proxy(APPS, workers=2, admin={"http": "127.0.0.1:%d" % hport})
    p.ctl_ok("weights", "web", "blue=90", "green=10")
    line = break_config(p)
    assert p.ctl("reload").returncode != 0
    p.write_config()  # the good file back (the file watch reloads it: `current` turns false)
    p.ctl_ok("maintenance", "api", "on")
    # An 8 s request on blue keeps jobs' exclusive switch in its drain phase meanwhile.
    slow = threading.Thread(target=slow_get, args=(p.port, "jobs.example.com", "/sleep/8"))
    slow.start()
    helpers.wait_for(lambda: app_of(status(hport), "jobs")["clusters"][0]["in_flight"] == 1, 10,
                     "the slow request in flight")
    p.ctl_ok("switch", "jobs", "green")

    # A steady load: 2 clients x 60 req/s for at most 25 s (killed by PID at the end).
    load = subprocess.Popen(["h2load", "-c", "2", "-m", "2", "--rps", "60", "-D", "25",
                             "-H", ":authority: shop.example.com", p.url + "/cart/x"],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        chrome.open("http://127.0.0.1:%d/?interval=1" % hport)  # 2 s by default
        chrome.wait_for("document.getElementById('conn').dataset.state === 'ok'",
                        what="the first poll of /status")
        jobs = page_app(chrome, "jobs")
        assert jobs["mode"] == "exclusive" and jobs["switch"] == "drain", jobs
        assert jobs["rows"]["blue"]["in_flight"] == "1", jobs
        wait_polls(chrome, 3)  # rates need two polls, the window a few
        s0 = status(hport)
        t0 = time.monotonic()
        wait_polls(chrome, 2)
        web = page_app(chrome, "web")
        s1 = status(hport)
        t1 = time.monotonic()

        # Weights as /status has them: file 50/50, override 90/10 in force, blue stable.
        cl = app_of(s1, "web")["clusters"]
        check_weights(web, cl)
        assert {k: v["weight"] for k, v in web["effective"].items()} == {"blue": 90, "green": 10}
        assert {k: v["weight"] for k, v in web["override"].items()} == {"blue": 90, "green": 10}
        assert web["file"]["blue"]["stable"] and not web["file"]["green"]["stable"]
        o = app_of(s1, "web")["override"]
        assert web["banner"] == {"state": "applied", "uid": str(o["uid"]), "pid": str(o["pid"]),
                                 "time": o["time"], "command": "weights web blue=90 green=10",
                                 "text": web["banner"]["text"]}
        assert web["hosts"] == "shop.example.com *.shop.example.com" and web["paths"] == "/ /cart"
        assert web["revert"] == "switchyardctl -s %s revert web" % p.socket
        # The copy button puts exactly that line on the clipboard.
        chrome.allow_clipboard("http://127.0.0.1:%d" % hport)
        chrome.eval(SEL % "web" + ".querySelector('[data-field=\"copy\"]').click()")
        chrome.wait_for(SEL % "web" + ".querySelector('[data-field=\"copy\"]').textContent"
                        " === 'copied'", what="the copy button to say so")
        assert chrome.eval("navigator.clipboard.readText()") == web["revert"]
        assert web["mode"] == "weighted"

        # Rates: 90/10, and together what /status's counters grew by (within the noise of
        # when each poll fell).
        rates = {c: float(r["rate"]) for c, r in web["rows"].items()}
        assert rates["blue"] > 0 and rates["green"] > 0, web["rows"]
        grown = sum(c["requests"] for c in app_of(s1, "web")["clusters"]) - \
            sum(c["requests"] for c in app_of(s0, "web")["clusters"])
        measured = grown / (t1 - t0)
        assert 0.6 * measured < rates["blue"] + rates["green"] < 1.5 * measured, (rates, measured)
        assert 0.8 < rates["blue"] / (rates["blue"] + rates["green"]) < 0.97, rates
        for c in ("blue", "green"):
            r = web["rows"][c]
            assert float(r["share5xx"]) == 0.0, r
            assert 0 < float(r["p50"]) <= float(r["p99"]), r
            assert r["in_flight"].isdigit() and r["tunnels"] == "0", r
        api = page_app(chrome, "api")
        assert api["maintenance"] and not web["maintenance"] and api["switch"] is None
        api = page_app(chrome, "api")
        assert api["banner"] is None and api["override"] is None
        assert api["rows"]["blue"]["rate"] == "0.000" and api["rows"]["blue"]["p50"] == ""

        # The refused reload with its place, and the last changes.
        rj = chrome.eval("(function (d) { return d.hidden ? null : Object.assign({text: d.textContent},"
                         " d.dataset); })(document.getElementById('rejected'))")
        assert rj and rj["file"] == p.config and rj["line"] == str(line) and rj["col"] == "1", rj
        assert "%s:%d:1" % (p.config, line) in rj["text"] and "bogus_key" in rj["text"]
        # The exclusive switch is journaled when it completes (the slow request ends at 8 s).
        chrome.wait_for("document.querySelectorAll('#history li[data-seq]').length === 3",
                        what="three changes in the history")
        hist = chrome.eval("Array.from(document.querySelectorAll('#history li')).map("
                           "function (l) { return [l.dataset.seq, l.textContent]; })")
        assert [h[0] for h in hist] == ["3", "2", "1"], hist  # newest first
        assert "weights web blue=90 green=10" in hist[2][1] and "maintenance api on" in hist[1][1]
        assert "switch jobs green" in hist[0][1], hist

        # At a phone's width (390 px) nothing sticks out sideways.
        shoot(chrome, os.environ.get("SY_SCREENSHOTS"))

        # revert: the banner names it, and the effective split is the stable cluster's.
        p.ctl_ok("revert", "web")
        chrome.wait_for(SEL % "web" + ".querySelector('[data-field=\"override\"]')"
                        ".dataset.command === 'revert web'", what="the revert's banner")
        web = page_app(chrome, "web")
        assert {k: v["weight"] for k, v in web["effective"].items()} == {"blue": 100, "green": 0}
        check_weights(web, app_of(status(hport), "web")["clusters"])

        # release: no banner, the file's weights.
        p.ctl_ok("release", "web")
        chrome.wait_for("!" + SEL % "web" + ".querySelector('[data-field=\"override\"]')",
                        what="the banner to go")
        web = page_app(chrome, "web")
        assert web["banner"] is None and web["override"] is None
        assert {k: v["weight"] for k, v in web["effective"].items()} == {"blue": 50, "green": 50}
        check_weights(web, app_of(status(hport), "web")["clusters"])
        assert "release web" in chrome.eval("document.querySelector('#history li').textContent")
    finally:
        load.kill()
        load.wait(timeout=10)
        slow.join(timeout=15)


def slow_get(port, host, path):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
    try:
        c.request("GET", path, headers={"Host": host})
        c.getresponse().read()
    finally:
        c.close()


def shoot(chrome, outdir):
    """Checks the page at 390 px; with `outdir`, saves both screenshots there."""
    if outdir:
        chrome.viewport(1280, 900)
        wait_polls(chrome, 1)
        chrome.screenshot(os.path.join(outdir, "status-page.png"))
    chrome.viewport(390, 844, mobile=True)
    wait_polls(chrome, 1)
    assert chrome.eval("document.documentElement.scrollWidth") <= 390
    assert chrome.eval("document.documentElement.clientWidth") == 390
    if outdir:
        chrome.screenshot(os.path.join(outdir, "status-page-phone.png"))
    chrome.viewport(1280, 900)


def test_many_apps_show_what_needs_an_eye_and_the_filter_finds_the_rest(admin_proxy, chrome):
    """Past 50 apps the page draws those with an override, maintenance, a switch or traffic
    since the last poll; the filter box finds any other by name or host (50 at most)."""
    hport = helpers.free_port()
    apps = [{"name": "app-%d" % i, "hosts": ["app-%d.example.com" % i],
             "weights": {"blue": 100, "green": 0}} for i in range(120)]
    p = admin_proxy(apps, workers=1, admin={"http": "127.0.0.1:%d" % hport})
    p.ctl_ok("revert", "app-77")
    p.ctl_ok("maintenance", "app-3", "on")
    chrome.open("http://127.0.0.1:%d/?interval=0.5" % hport)
    chrome.wait_for("document.getElementById('conn').dataset.state === 'ok'", what="a poll")
    wait_polls(chrome, 2)

    def shown():
        return chrome.eval("[document.getElementById('shown').dataset.shown,"
                           " document.getElementById('shown').dataset.total,"
                           " Array.from(document.querySelectorAll('[data-app]'))"
                           ".map(function (a) { return a.dataset.app; })]")
    assert shown() == ["2", "120", ["app-3", "app-77"]]

    # Traffic makes an app worth showing (until a poll sees none).
    n = admin_util.tags(p.port, 5, host="app-42.example.com")
    assert n == ["blue-1"] * 5
    chrome.wait_for("!!document.querySelector('[data-app=\"app-42\"]')", what="app-42 drawn")

    def type_filter(text):
        chrome.eval("(function (f) { f.value = %s; f.dispatchEvent(new Event('input')); })"
                    "(document.getElementById('filter'))" % json.dumps(text))
        return shown()
    s = type_filter("app-11")
    assert s[0] == "11" and s[2] == ["app-11"] + ["app-%d" % i for i in range(110, 120)], s
    s = type_filter("APP-119.EXAMPLE")  # a host, whatever the case
    assert s[2] == ["app-119"], s
    assert type_filter("app-")[0] == "50"
    assert type_filter("nothing-like-it")[:2] == ["0", "120"]


def test_page_window_and_quantiles_agree_with_watch(admin_proxy, chrome):
    """The page's own arithmetic, run in the browser: the quantiles of status --watch's unit
    test (tests/unit/admin/test_watch.c) come out the same, and polls every 2 s for 5 minutes
    leave a window of 60..70 s held by at most 9 polls."""
    hport = helpers.free_port()
    admin_proxy(APPS[:1], workers=1, admin={"http": "127.0.0.1:%d" % hport})
    chrome.open("http://127.0.0.1:%d/?interval=60" % hport)
    chrome.wait_for("document.getElementById('conn').dataset.state === 'ok'", what="a poll")
    le = '["1", "2.5", "5", "+Inf"]'
    cases = [("[10, 20, 30, 30]", "null", 0.5, 1.75), ("[10, 20, 30, 30]", "null", 2 / 30, 0.2),
             ("[10, 20, 30, 30]", "[10, 10, 10, 10]", 0.5, 2.5),
             ("[10, 20, 30, 30]", "[10, 10, 10, 10]", 0.75, 3.75),
             ("[1, 1, 1, 5]", "null", 0.99, 5), ("[1, 1, 1, 5]", "null", 0.1, 0.5)]
    for now, old, q, want in cases:
        got = chrome.eval("quantile({latency_le_ms: %s, latency_counts: %s}, %s, %r)"
                          % (le, now, "null" if old == "null" else "{latency_counts: %s}" % old, q))
        assert abs(got - want) < 1e-9, (now, old, q, got, want)
    assert chrome.eval("quantile({latency_le_ms: %s, latency_counts: [1, 2, 3, 3]},"
                       " {latency_counts: [1, 2, 3, 3]}, 0.5)" % le) is None
    spans = chrome.eval("""(function () {
      samples.length = 0;
      var out = [];
      for (var at = 0; at <= 300000; at += 2000) {
        var w = pollWindow(at);
        if (w.oldest) out.push([at - w.oldest.at, samples.length]);
        samples.push({at: at, c: {}});
      }
      return out;
    })()""")
    late = [s for s in spans[40:]]  # after the first 80 s
    assert all(60000 <= span <= 70000 for span, _ in late), late
    assert max(n for _, n in spans) <= 9, spans
