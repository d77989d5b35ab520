# SPDX-License-Identifier: MIT
"""The admin socket and switchyardctl, end to end: dialogues for every command followed by
traffic through the proxy that proves the effect; `revert --all` under continuous h2load (h2c
and HTTP/1.1) and curl load at 50/50, where no request started after the `ok` reaches green
and none fails (with the command -> ok latency over 100 reverts measured); a revert that
survives SIGHUP, a rewrite of the file by another process and kill -9 plus a restart; another
uid refused; malformed commands that change nothing; three instances addressed at once; the
journal that stops a start when damaged; and `switchyard -t` showing the difference with the
running table. Real binaries, real clients (curl, h2load, setpriv, socat), python backends."""

import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import time
from collections import Counter

import pytest

import conftest
import helpers
from admin_util import (SWITCHYARDCTL, AdminConn, LoadLoop, Probe, ctl, h2load, h2load_result,
                        tags)
from helpers import curl1, measure

pytestmark = pytest.mark.skipif(
    not (SWITCHYARDCTL and os.access(SWITCHYARDCTL, os.X_OK)),
    reason="SWITCHYARDCTL is not an executable (path to switchyardctl; meson test sets it)")

BLUE, GREEN = "blue-1", "green-1"


def web(blue, green, **kw):
    app = {"name": "web", "hosts": ["*"], "stable": "blue",
           "weights": {"blue": blue, "green": green}}
    app.update(kw)
    return app


def chat(blue, green):
    return {"name": "chat", "hosts": ["chat.test"], "stable": "blue",
            "weights": {"blue": blue, "green": green}}


def split(port, n, host="app.test", path="/split"):
    return Counter(tags(port, n, path=path, host=host))


def journal_seq(p):
    return int(re.search(r"journal seq (\d+)", p.ctl_ok("ident")).group(1))


# -- dialogues --------------------------------------------------------------------------------

def test_help_lists_every_command_and_status_shows_the_table(admin_proxy):
    p = admin_proxy([web(20, 80), chat(50, 50)])
    out = p.ctl_ok("help")
    for word in ("status [APP | --filter GLOB | --overridden]", "weights APP CLUSTER=N...",
                 "switch APP CLUSTER", "revert APP | revert --all",
                 "release APP | release --all", "reload", "explain HOST PATH", "history [N]"):
        assert word in out, out
    assert split(p.port, 10) == {BLUE: 2, GREEN: 8}
    out = p.ctl_ok("status")
    assert "generation 1, journal seq 0 (%s)" % p.state in out, out
    # FILE, OVERRIDE, EFFECTIVE, and the requests the ten GETs made.
    assert re.search(r"^web\s+blue\s+\*\s+20\s+-\s+20\s+2\s+0\s+0\s+0$", out, re.M), out
    assert re.search(r"^\s+green\s+80\s+-\s+80\s+8\s+0\s+0\s+0$", out, re.M), out
    doc = json.loads(p.ctl("status", "--json").stdout)
    assert doc["ok"] is True and doc["generation"] == 1 and doc["journal_seq"] == 0
    webdoc = [a for a in doc["apps"] if a["name"] == "web"][0]
    assert webdoc["override"] is None
    assert [(c["name"], c["file"], c["effective"], c["requests"]) for c in webdoc["clusters"]] \
        == [("blue", 20, 20, 2), ("green", 80, 80, 8)]


def test_weights_switch_revert_release_each_proven_by_traffic(admin_proxy):
    p = admin_proxy([web(20, 80)])
    out = p.ctl_ok("weights", "web", "blue=0", "green=100")
    assert "web: blue=20,green=80 -> blue=0,green=100\ngeneration 2, journal seq 1\n" in out, out
    assert split(p.port, 20) == {GREEN: 20}

    p.ctl_ok("weights", "web", "blue=50", "green=50")
    assert split(p.port, 20) == {BLUE: 10, GREEN: 10}

    p.ctl_ok("switch", "web", "blue")
    assert split(p.port, 20) == {BLUE: 20}

    p.ctl_ok("switch", "web", "green")
    p.ctl_ok("revert", "web")  # to the stable cluster
    assert split(p.port, 20) == {BLUE: 20}

    out = p.ctl_ok("status", "web")
    assert re.search(r"override: set by uid %d pid \d+ at \S+ \(seq 5\): revert web"
                     % os.getuid(), out), out

    out = p.ctl_ok("release", "web")
    assert "(released: the file's weights)" in out
    assert split(p.port, 20) == {BLUE: 4, GREEN: 16}

    out = p.ctl_ok("history")
    cmds = re.findall(r"^\d+\s+\S+\s+uid \d+\s+pid \d+\s+(.*)$", out, re.M)
    assert cmds == ["weights web blue=0 green=100", "weights web blue=50 green=50",
                    "switch web blue", "switch web green", "revert web", "release web"], out
    assert "web: blue=0,green=100 -> blue=100,green=0" in out


def test_explain_names_the_app_the_cluster_and_the_rule(admin_proxy):
    apps = [web(50, 50, force={"header": "x-switchyard-cluster"}), chat(0, 100)]
    apps.append({"name": "api", "hosts": ["chat.test"], "paths": ["/api"],
                 "weights": {"green": 100}, "sticky": {"header": "x-user"}})
    p = admin_proxy(apps)
    out = p.ctl_ok("explain", "chat.test", "/api/v1")
    assert "app api: host 'chat.test' path '/api/v1' (rule: host chat.test, path prefix /api)" \
        in out, out
    assert "cluster green: weighted round-robin over green=100" in out, out
    out = p.ctl_ok("explain", "CHAT.test:8080", "/x")
    assert "app chat: " in out and "(rule: host chat.test, path prefix /)" in out, out
    out = p.ctl_ok("explain", "any.test", "/", "x-switchyard-cluster:green")
    assert "cluster green: force header 'x-switchyard-cluster' names it" in out, out
    r = curl1(p.url + "/forced", "-H", "Host: any.test", "-H", "x-switchyard-cluster: green")
    assert r.backend == GREEN
    out = p.ctl_ok("explain", "chat.test", "/api", "x-user: some one")
    assert "sticky header 'x-user'" in out, out
    doc = json.loads(p.ctl("--json", "explain", "nothing.test", "/").stdout)
    assert doc["ok"] is True and doc["app"] is not None  # '*' catches it
    # explain reads the round-robin position without moving it: 50/50 walks blue, green, ...
    assert tags(p.port, 3, path="/rr") == [BLUE, GREEN, BLUE]
    for _ in range(5):
        out = p.ctl_ok("explain", "any.test", "/")
        assert "the next request without a key goes to green" in out, out
    assert tags(p.port, 3, path="/rr") == [GREEN, BLUE, GREEN]


def test_reload_command_answers_the_generation_or_the_error(admin_proxy):
    p = admin_proxy([web(100, 0)])
    # The watcher may see the new file before `reload` does: either way the answer names a
    # generation and the file's weights apply.
    p.write_config([web(0, 100)])
    out = p.ctl_ok("reload")
    assert re.search(r"^generation \d+ published$", out, re.M), out
    assert split(p.port, 10) == {GREEN: 10}
    with open(p.config, "a") as f:
        f.write("bogus: [\n")
    r = p.ctl("reload")
    assert r.returncode == 1
    assert re.search(r"error: reload rejected \(generation \d+ kept\): %s:\d+:\d+: "
                     % re.escape(p.config), r.stderr), r.stderr
    assert split(p.port, 10) == {GREEN: 10}
    out = p.ctl_ok("status")
    assert "last reload rejected: %s:" % p.config in out


# -- refusals ---------------------------------------------------------------------------------

def test_a_change_says_why_with_reason_and_history_and_status_show_it(admin_proxy):
    p = admin_proxy([web(20, 80), chat(50, 50)])
    why = "green 5xx after the 14:02 deploy"
    p.ctl_ok("weights", "web", "blue=50", "green=50", "--reason", "halve green while we look")
    assert split(p.port, 20) == {BLUE: 10, GREEN: 10}
    out = p.ctl_ok("revert", "--all", "--reason", why)
    assert "web: blue=50,green=50 -> blue=100,green=0" in out, out
    assert split(p.port, 10) == {BLUE: 10}
    out = p.ctl_ok("status", "web")
    assert "revert --all --reason %s" % why in out, out
    cmds = [r["command"] for r in json.loads(p.ctl("history", "--json").stdout)["records"]]
    assert cmds == ["weights web blue=50 green=50 --reason halve green while we look",
                    "revert --all --reason %s" % why], cmds
    # It survives a restart with the journal.
    p.kill9()
    p.start()
    assert "revert --all --reason %s" % why in p.ctl_ok("history")


def test_malformed_commands_get_error_and_change_nothing(admin_proxy):
    p = admin_proxy([web(50, 50), chat(50, 50)])
    p.ctl_ok("weights", "chat", "blue=100")
    gen, seq = p.generation(), journal_seq(p)
    cases = [
        (["weights", "nope", "blue=100"], "error: unknown app 'nope'"),
        (["weights", "web", "blue=0", "green=0"], "error: the weights of app 'web' must sum "
                                                  "above 0"),
        (["weights", "web", "purple=100"], "error: unknown cluster 'purple'"),
        (["weights", "web", "blue=101"], "error: weight of 'blue' must be an integer 0..100, "
                                         "got '101'"),
        (["weights", "web", "blue=5x"], "error: weight of 'blue' must be an integer 0..100"),
        (["weights", "web", "blue=50", "blue=50"], "error: cluster 'blue' is named twice"),
        (["switch", "web", "purple"], "error: unknown cluster 'purple'"),
        (["revert", "nope"], "error: unknown app 'nope'"),
        (["release", "web"], "error: app 'web' has no override to release"),
        (["frobnicate"], "error: unknown command 'frobnicate' (try help)"),
        (["revert", "web", "--reason"], "error: --reason needs a text after it"),
        (["weights", "web", "blue=100", "--reason", ""], "error: --reason needs a text"),
        (["revert", "--all", "--reason", "--no-wait"], "error: --reason needs a text"),
    ]
    for args, want in cases:
        r = p.ctl(*args)
        assert r.returncode == 1, (args, r.stdout, r.stderr)
        assert want in r.stderr, (args, r.stderr)
    # 10 KiB of garbage on one line: refused unrun, the connection closed.
    with AdminConn(p.socket) as a:
        a.send(bytes((i * 7 + 13) % 256 or 1 for i in range(10240)).replace(b"\n", b"x"))
        assert a.read_answer() == "error: line too long\n"
        assert a.closed()
    # Garbage lines (control bytes, non-ASCII): each one an error, the connection goes on.
    with AdminConn(p.socket) as a:
        assert a.ask("revert \x01 --all").startswith("error: a command is printable ASCII")
        assert a.ask("revert --all\xff".encode("latin-1").decode("latin-1")).startswith("error:")
        assert a.ask("ident").endswith("ok\n")
    # A client closing mid-line: the half line never runs.
    for partial in (b"revert --all", b"weights web blue=0 green=100", b"rel"):
        s = socket.socket(socket.AF_UNIX)
        s.connect(p.socket)
        s.sendall(partial)
        s.close()
    s = socket.socket(socket.AF_UNIX)
    s.connect(p.socket)
    s.sendall(b"revert --all")
    s.shutdown(socket.SHUT_WR)  # EOF without the newline
    s.settimeout(5)
    assert s.recv(100) == b""
    s.close()
    assert p.generation() == gen and journal_seq(p) == seq
    assert split(p.port, 10) == {BLUE: 5, GREEN: 5}
    assert split(p.port, 10, host="chat.test") == {BLUE: 10}


def test_another_uid_is_refused(admin_proxy, tmp_path):
    if os.getuid() != 0 or not shutil.which("setpriv"):
        pytest.skip("needs root and setpriv to run a client as nobody")
    p = admin_proxy([web(50, 50)])
    assert os.stat(p.socket).st_mode & 0o777 == 0o600
    nobody = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"]
    # The socket's mode stops nobody first: connect() is refused by the kernel.
    r = ctl("revert", "--all", sockets=[p.socket], prefix=nobody)
    assert r.returncode == 3, (r.stdout, r.stderr)
    assert "%s: cannot connect: Permission denied" % p.socket in r.stderr
    # With the mode opened up (a mistake), the peer check still refuses: SO_PEERCRED.
    os.chmod(p.socket, 0o666)
    r = ctl("revert", "--all", sockets=[p.socket], prefix=nobody)
    assert r.returncode == 1, (r.stdout, r.stderr)
    assert r.stderr.strip() == "error: permission denied"
    if shutil.which("socat"):
        s = subprocess.run(nobody + ["socat", "-", "UNIX-CONNECT:" + p.socket],
                           input="revert --all\n", capture_output=True, text=True, timeout=20)
        assert s.stdout == "error: permission denied\n", s
    assert journal_seq(p) == 0
    assert split(p.port, 10) == {BLUE: 5, GREEN: 5}
    assert helpers.log_has(p, "refused uid 65534")

    # allow_uids lets nobody in (the socket is then 0666: the peer check guards it).
    q = admin_proxy([web(50, 50)], name="allowed", admin={"allow_uids": [65534]})
    assert os.stat(q.socket).st_mode & 0o777 == 0o666
    r = ctl("revert", "--all", sockets=[q.socket], prefix=nobody)
    assert r.returncode == 0, (r.stdout, r.stderr)
    assert split(q.port, 10) == {BLUE: 10}
    assert re.search(r"uid 65534 pid \d+ at \S+ \(seq 1\): revert --all",
                     q.ctl_ok("status"))


# -- durability -------------------------------------------------------------------------------

def test_revert_survives_sighup_file_rewrite_and_kill9_then_release_restores_the_file(
        admin_proxy):
    p = admin_proxy([web(0, 100), chat(0, 100)])
    assert split(p.port, 10) == {GREEN: 10}
    p.ctl_ok("revert", "--all")
    assert split(p.port, 10) == {BLUE: 10}
    assert split(p.port, 10, host="chat.test") == {BLUE: 10}

    # SIGHUP: the file is read again, the overrides apply again over it.
    gen = p.generation()
    p.proc.send_signal(signal.SIGHUP)
    helpers.wait_for(lambda: p.generation() > gen, 5, "the SIGHUP reload")
    assert split(p.port, 10) == {BLUE: 10}

    # Another process rewrites the file (GitOps): still reverted, the file's change hidden.
    gen = p.generation()
    p.write_config([web(10, 90), chat(0, 100)])
    helpers.wait_for(lambda: p.generation() > gen, 5, "the watcher's reload")
    assert split(p.port, 10) == {BLUE: 10}
    out = p.ctl_ok("status", "web")
    assert re.search(r"^web\s+blue\s+\*\s+10\s+100\s+100", out, re.M), out

    # kill -9 and a restart: the journal is replayed before the first request is served.
    p.kill9()
    p.start()
    assert helpers.log_has(p, "override of app 'web' (seq 1")
    assert split(p.port, 10) == {BLUE: 10}
    assert split(p.port, 10, host="chat.test") == {BLUE: 10}
    assert journal_seq(p) == 1

    # release hands the apps back to the file.
    p.ctl_ok("release", "--all")
    assert split(p.port, 10) == {BLUE: 1, GREEN: 9}
    assert split(p.port, 10, host="chat.test") == {GREEN: 10}
    p.kill9()
    p.start()
    assert split(p.port, 10, host="chat.test") == {GREEN: 10}


def test_damaged_journal_stops_the_start_unless_discarded(admin_proxy):
    p = admin_proxy([web(0, 100)])
    p.ctl_ok("revert", "--all")
    p.ctl_ok("weights", "web", "blue=50", "green=50")
    assert p.stop() is None
    with open(p.state, "rb") as f:
        lines = f.read().split(b"\n")
    lines[0] = lines[0].replace(b"revert", b"revers")  # the checksum no longer matches
    with open(p.state, "wb") as f:
        f.write(b"\n".join(lines))
    p.start(wait=False)
    assert p.proc.wait(timeout=10) == 1
    p._logf.close()
    p.stopped = True
    log = p.log_text()
    assert "%s:1:0: checksum mismatch" % p.state in log, log
    assert "--discard-state" in log
    # A torn last line is not damage: a crash mid-write, never acknowledged.
    lines[0] = lines[0].replace(b"revers", b"revert")
    with open(p.state, "wb") as f:
        f.write(b"\n".join(lines) + b'{"v":1,"type":"change","seq":3,"ti')
    p.start()
    assert helpers.log_has(p, "ignoring a torn last record")
    assert split(p.port, 10) == {BLUE: 5, GREEN: 5}
    assert p.stop() is None
    # The operator's explicit choice: discard. Loudly.
    with open(p.state, "wb") as f:
        f.write(b"garbage\n")
    p.start(args=["--discard-state"])
    assert helpers.log_has(p, "DISCARDED the overrides journal")
    assert split(p.port, 10) == {GREEN: 10}
    assert any(n.startswith(os.path.basename(p.state) + ".corrupt-")
               for n in os.listdir(os.path.dirname(p.state)))


# -- fleets -----------------------------------------------------------------------------------

def test_three_instances_revert_at_once_and_a_stopped_one_is_named(admin_proxy):
    ps = [admin_proxy([web(0, 100)], name="sy%d" % i) for i in range(3)]
    socks = [p.socket for p in ps]
    r = ctl("revert", "--all", sockets=socks)
    assert r.returncode == 0, (r.stdout, r.stderr)
    for p in ps:
        assert "== %s: ok (generation 2, journal seq 1)\n" % p.socket in r.stdout, r.stdout
        assert split(p.port, 10) == {BLUE: 10}
    assert r.stdout.endswith("3 of 3 instances answered ok\n"), r.stdout
    # JSON: one object per instance.
    r = ctl("status", sockets=socks, json=True)
    assert r.returncode == 0
    docs = [json.loads(x) for x in r.stdout.splitlines()]
    assert [d["socket"] for d in docs] == socks
    assert all(d["answer"]["ok"] and d["answer"]["journal_seq"] == 1 for d in docs)

    assert ps[1].stop() is None
    r = ctl("revert", "--all", sockets=socks)
    assert r.returncode == 3, (r.stdout, r.stderr)
    assert "== %s: UNREACHABLE: cannot connect: " % ps[1].socket in r.stdout, r.stdout
    assert "2 of 3 instances answered ok: failed %s (unreachable)" % ps[1].socket in r.stdout
    for p in (ps[0], ps[2]):
        assert "== %s: ok (generation 3, journal seq 2)\n" % p.socket in r.stdout, r.stdout


def test_check_shows_what_a_file_would_change_in_the_running_table(admin_proxy, tmp_path):
    p = admin_proxy([web(50, 50), chat(50, 50)])
    p.ctl_ok("revert", "chat")
    new = tmp_path / "new.yaml"
    spec = dict(p.spec)
    api = {"name": "api", "hosts": ["chat.test"], "paths": ["/api"], "weights": {"green": 100}}
    spec["apps"] = [web(20, 80), chat(10, 90), api]
    new.write_text(conftest.make_config(p.port, **spec))
    r = subprocess.run([conftest.SWITCHYARD, "-t", "-c", str(new)], capture_output=True,
                       text=True, timeout=20)
    assert r.returncode == 0, (r.stdout, r.stderr)
    out = r.stdout
    assert "against generation 2 (journal seq 1):" in out, out
    assert "~ app web: file weights blue=50,green=50 -> blue=20,green=80" in out, out
    assert "~ app web: weights in force blue=50,green=50 -> blue=20,green=80" in out, out
    assert "~ app chat: file weights blue=50,green=50 -> blue=10,green=90" in out, out
    assert "! app chat: the override blue=100 (seq 1: revert chat) hides this change until " \
           "`release chat`" in out, out
    assert "+ app api (1 hosts, 1 paths)" in out, out
    assert "~ host chat.test path /api: chat -> api" in out, out
    # Nothing changed by asking.
    assert split(p.port, 10) == {BLUE: 5, GREEN: 5}
    # No running instance: the check still passes, and says it could not compare.
    assert p.stop() is None
    r = subprocess.run([conftest.SWITCHYARD, "-t", "-c", str(new)], capture_output=True,
                       text=True, timeout=20)
    assert r.returncode == 0
    assert "not compared with a running table" in r.stdout


# -- the emergency revert under load ------------------------------------------------------------

REVERTS = int(os.environ.get("SY_ADMIN_REVERTS", "100"))


def test_revert_all_under_load_sends_every_later_request_to_blue(admin_proxy, backends):
    """h2load (h2c and HTTP/1.1) and a curl loop run throughout; 100 times the apps are
    released back to the file's 50/50 and then `revert --all` is sent on a kept admin
    connection; the time to `ok` is measured, and requests started after each `ok` (on
    keep-alive connections opened before it and on new ones; every tenth time also curl over
    HTTP/1.1 and h2c, and h2load runs of both) are tagged by path: none may reach green. No
    request of the whole run may fail."""
    p = admin_proxy([web(50, 50), chat(50, 50)], workers=2)
    loads = [LoadLoop(p.url + "/load-h2c"), LoadLoop(p.url + "/load-h1", h1=True),
             LoadLoop(p.url + "/load-curl", curl=True)]
    for x in loads:
        x.start()
    keep = [Probe(p.port) for _ in range(4)]  # opened before any revert
    lat = []
    late = []  # (iteration, backend, what) of requests started after an ok that missed blue
    after_h2load = 0
    started = time.monotonic()
    try:
        with AdminConn(p.socket) as admin:
            for i in range(REVERTS):
                assert admin.ask("release --all").endswith("ok\n")
                for k in keep:
                    k.get("/mid-%d" % i)  # 50/50 while released
                t0 = time.perf_counter()
                answer = admin.ask("revert --all")
                lat.append((time.perf_counter() - t0) * 1000)
                assert answer.endswith("ok\n"), answer
                for n, k in enumerate(keep):
                    b = k.get("/after-%d-keep%d" % (i, n))
                    if b != BLUE:
                        late.append((i, b, "keep-alive %d" % n))
                for n in range(2):
                    b = Probe(p.port).get("/after-%d-new%d" % (i, n))
                    if b != BLUE:
                        late.append((i, b, "new connection"))
                if i % 10 == 0:
                    for proto in ("--http1.1", "--http2-prior-knowledge"):
                        r = curl1(p.url + "/after-%d-curl" % i, proto)
                        if r.backend != BLUE:
                            late.append((i, r.backend, "curl " + proto))
                    for h1 in (False, True):
                        res = h2load_result(h2load(p.url + "/after-%d-h2load" % i, h1=h1, n=40,
                                                   clients=2), 30)
                        assert res["succeeded"] == 40 and res["2xx"] == 40, res["output"]
                        after_h2load += 40
        loop_s = time.monotonic() - started
    finally:
        for k in keep:
            k.close()
        for x in loads:
            x.stop()
    helpers.sync_backends(p)

    assert not late, "requests started after `ok` that did not reach blue: %r" % late[:10]
    for x in loads[:2]:
        assert x.results, "no h2load run finished"
        for res in x.results:
            assert res["failed"] == 0 and res["errored"] == 0 and res["timeout"] == 0, \
                res["output"]
            assert res["5xx"] == 0 and res["4xx"] == 0, res["output"]
    assert not loads[2].failures and loads[2].codes["200"] > 0, (loads[2].failures[:5],
                                                                 loads[2].codes)
    # Every request tagged as started after an ok is in blue's log, none in green's.
    green_after = backends.green.saw("/after-", "request")
    assert not green_after, green_after[:5]
    want = REVERTS * 6 + (REVERTS + 9) // 10 * 2 + after_h2load
    assert len(backends.blue.saw("/after-", "request")) == want
    # The load did reach green while released: the test is not vacuous.
    for path in ("/load-h2c", "/load-h1", "/load-curl"):
        assert backends.green.saw(path, "request"), path

    lat.sort()
    total = sum(x.results[i]["succeeded"] for x in loads[:2] for i in range(len(x.results)))
    measure("admin_revert_all_ack_ms_median", "%.2f" % statistics.median(lat), "ms",
            "%d reverts of 2 apps under load, fsync on" % len(lat))
    measure("admin_revert_all_ack_ms_max", "%.2f" % lat[-1], "ms")
    measure("admin_revert_all_loop_s", "%.1f" % loop_s, "s",
            "%d h2load requests and %d curl requests meanwhile, none failed"
            % (total, sum(loads[2].codes.values())))
