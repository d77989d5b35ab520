# SPDX-License-Identifier: MIT
"""What the status page and `switchyardctl status --watch` read (issue #15, part 3).

`status --json` carries per app its hosts and paths; at the top the last ten history records (the objects `history --json` gives), the
last refused reload with its file:line:col (kept, marked not current, after a reload that
succeeds) and the admin socket's path. `status --watch --count N` run with stdout on a pipe
prints N plain frames (no ANSI) with rates, the override, the revert command and the refused
reload; its usage errors exit 2, an unreachable socket 3."""

import json
import os
import re
import subprocess
import time

import admin_util
import helpers

APPS = [{"name": "web", "hosts": ["app.test", "*"], "paths": ["/", "/api"],
         "weights": {"blue": 90, "green": 10}}]


def status(p):
    r = p.ctl("status", json=True)
    assert r.returncode == 0, r.stdout + r.stderr
    return json.loads(r.stdout)


def watch(p, *args, timeout=30):
    return subprocess.run([admin_util.SWITCHYARDCTL, "-s", p.socket, "status", "--watch"]
                          + list(args), stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          timeout=timeout)


def break_config(p):
    """Rewrites the file with an unknown key on its last line; returns that line's number."""
    with open(p.config, encoding="utf-8") as f:
        text = f.read()
    bad = text.rstrip("\n") + "\nbogus_key: 1\n"
    with open(p.config + ".tmp", "w", encoding="utf-8") as f:
        f.write(bad)
    os.rename(p.config + ".tmp", p.config)
    return bad.count("\n")


def test_status_json_has_the_pages_fields(admin_proxy):
    p = admin_proxy(APPS, workers=2)
    s = status(p)
    web = s["apps"][0]
    assert web["hosts"] == ["app.test", "*"]
    assert web["paths"] == ["/", "/api"]
    assert s["history"] == []
    assert s["admin_socket"] == p.socket
    assert s["last_rejected_reload"] is None

    # Traffic lands in the histograms the page reads p50 and p99 from (cumulative counts).
    got = admin_util.tags(p.port, 50)
    s = status(p)
    for c in s["apps"][0]["clusters"]:
        n = got.count(c["name"] + "-1")
        assert c["requests"] == n
        cum = c["latency_counts"]
        assert cum == sorted(cum) and cum[-1] == n

    # Twelve changes: status holds the last ten, the same objects as `history --json`.
    for i in range(6):
        p.ctl_ok("weights", "web", "blue=%d" % (50 + i), "green=%d" % (50 - i))
        p.ctl_ok("revert", "web")
    s = status(p)
    h = p.ctl("history", "10", json=True)
    assert h.returncode == 0, h.stderr
    records = json.loads(h.stdout)["records"]
    assert s["history"] == records and len(records) == 10
    assert s["history"][-1]["command"] == "revert web"
    assert [r["seq"] for r in s["history"]] == list(range(3, 13))

    # A refused reload: file, line and column of the first error, kept after a good reload.
    line = break_config(p)
    r = p.ctl("reload")
    assert r.returncode != 0
    s = status(p)
    rj = s["last_rejected_reload"]
    assert rj is not None, s
    assert rj["file"] == p.config and rj["line"] == line and rj["col"] == 1, rj
    assert "bogus_key" in rj["message"] and rj["current"] is True
    assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$", rj["time"])
    assert abs(rj["time_ms"] / 1000 - time.time()) < 60
    assert s["last_reload_error"].startswith("%s:%d:1: " % (p.config, line))
    p.write_config()
    p.ctl_ok("reload")
    s = status(p)
    assert s["last_reload_error"] is None
    assert s["last_rejected_reload"]["line"] == line and s["last_rejected_reload"]["current"] is False

    # People's `status` is what it was: no history lines in it.
    text = p.ctl_ok("status")
    assert "blue=55 green=45" not in text and "web" in text


def frames(out):
    """The frames of a non-TTY watch: each starts with its `switchyard SOCKET` line."""
    parts = re.split(r"(?m)^(?=switchyard )", out)
    return [f for f in parts if f.strip()]


def row(frame, cluster):
    m = re.search(r"(?m)^\S*\s+%s +([* ]) +(\d+) +(\S+) +(\d+) +(\S+) +(\S+) +(\S+) +(\S+) +(\d+) +(\d+)$"
                  % cluster, frame)
    assert m, "no row for %s in:\n%s" % (cluster, frame)
    return m.groups()


def test_watch_prints_plain_frames_with_rates_override_and_revert(admin_proxy):
    p = admin_proxy(APPS, workers=2)
    p.ctl_ok("weights", "web", "blue=80", "green=20")
    line = break_config(p)
    assert p.ctl("reload").returncode != 0
    load = admin_util.LoadLoop(p.url, rps=100)
    load.start()
    try:
        r = watch(p, "--count", "3", "--interval", "1")
    finally:
        load.stop()
    assert r.returncode == 0, r.stdout + r.stderr
    assert "\033" not in r.stdout  # a pipe gets plain lines
    fs = frames(r.stdout)
    assert len(fs) == 3, r.stdout
    first, last = fs[0], fs[-1]
    assert first.startswith("switchyard %s  generation " % p.socket)
    stable, file_w, ov, eff, rate, share, p50, p99, fl, tu = row(first, "blue")
    assert (stable, file_w, ov, eff) == ("*", "90", "80", "80")
    assert rate == "-"  # one poll: no rate yet
    stable, file_w, ov, eff, rate, share, p50, p99, fl, tu = row(first, "green")
    assert (stable, file_w, ov, eff) == (" ", "10", "20", "20")
    blue_rate = float(row(last, "blue")[4])
    green_rate = float(row(last, "green")[4])
    assert blue_rate > 0 and green_rate > 0 and blue_rate > green_rate, last
    b = row(last, "blue")
    assert b[5].endswith("%") and b[6] != "-" and b[7] != "-", last  # 5xx share, p50, p99
    assert "hosts: app.test *  paths: / /api" in last
    assert re.search(r"OVERRIDE blue=80,green=20 by uid \d+ pid \d+ at \S+: weights web "
                     r"blue=80 green=20", last), last
    assert "to revert: switchyardctl -s %s revert web" % p.socket in last
    assert "last rejected reload: %s:%d:1: " % (p.config, line) in last
    assert re.search(r"(?m)^  seq 1 .* weights web blue=80 green=20$", last), last


def test_watch_usage_and_unreachable(admin_proxy, tmp_path):
    p = admin_proxy(APPS)
    for args in (["--count", "0"], ["--interval", "0"], ["--count", "x"], ["--bogus"]):
        r = watch(p, *args)
        assert r.returncode == 2, (args, r.stdout, r.stderr)
        assert r.stderr.strip(), args
    r = subprocess.run([admin_util.SWITCHYARDCTL, "-s", p.socket, "-s", p.socket, "status",
                        "--watch", "--count", "1"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 2 and "one instance" in r.stderr
    r = subprocess.run([admin_util.SWITCHYARDCTL, "-s", str(tmp_path / "none.sock"), "status",
                        "--watch", "--count", "1"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 3 and "unreachable" in r.stdout, r.stdout + r.stderr


def test_watch_on_a_terminal_redraws_in_place(admin_proxy):
    """On a TTY each frame starts with ANSI home + clear, so the view is redrawn in place."""
    import pty
    p = admin_proxy(APPS)
    master, slave = pty.openpty()
    try:
        proc = subprocess.run([admin_util.SWITCHYARDCTL, "-s", p.socket, "status", "--watch",
                               "--count", "2", "--interval", "0.2"], stdin=subprocess.DEVNULL,
                              stdout=slave, stderr=subprocess.PIPE, timeout=30)
        os.close(slave)
        slave = None
        out = b""
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the writer is gone and everything was read
                break
            if not chunk:
                break
            out += chunk
    finally:
        if slave is not None:
            os.close(slave)
        os.close(master)
    assert proc.returncode == 0, proc.stderr
    text = out.decode()
    assert text.count("\033[H\033[2J") == 2, repr(text[:400])
    assert text.startswith("\033[H\033[2J") and "to revert: switchyardctl -s %s revert web" % p.socket in text


def test_watch_shows_exclusive_switch_and_maintenance(admin_proxy):
    """An exclusive app's mode and its switch in progress (while a 4 s request holds blue), and
    an app in maintenance, each on a line of its own under the app."""
    import http.client
    import threading
    apps = APPS + [{"name": "jobs", "hosts": ["jobs.test"], "mode": "exclusive",
                    "weights": {"blue": 100, "green": 0}}]
    p = admin_proxy(apps, workers=2)
    p.ctl_ok("maintenance", "web", "on")

    def slow():
        c = http.client.HTTPConnection("127.0.0.1", p.port, timeout=20)
        c.request("GET", "/sleep/4", headers={"Host": "jobs.test"})
        c.getresponse().read()
        c.close()
    t = threading.Thread(target=slow)
    t.start()
    try:
        helpers.wait_for(lambda: status(p)["apps"][1]["clusters"][0]["in_flight"] == 1, 10,
                         "the slow request in flight")
        p.ctl_ok("switch", "jobs", "green")
        r = watch(p, "--count", "1")
    finally:
        t.join(timeout=15)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "   mode: exclusive\n" in r.stdout and r.stdout.count("mode: ") == 1, r.stdout
    assert re.search(r"SWITCH blue -> green in progress: phase drain, 0 held, 1 still on blue",
                     r.stdout), r.stdout
    assert re.search(r"MAINTENANCE since \S+ by uid \d+.*: maintenance web on", r.stdout), r.stdout
