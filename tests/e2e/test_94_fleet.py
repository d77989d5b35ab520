# SPDX-License-Identifier: MIT
"""A fleet that reverts as one (#17): replicas of switchyard with `fleet:` keep their overrides
in a real etcd cluster (Debian's etcd-server, started on loopback by etcd_util) and apply every
change in etcd's revision order. Real daemons, real backends (blue-1, green-1, which name
themselves in x-backend), real switchyardctl."""

import json
import os
import re
import signal
import subprocess
import statistics
import threading
import time
import urllib.error
import urllib.request

import helpers
from admin_util import Probe
from etcd_util import ETCD, etcd1, etcd3  # noqa: F401 (fixtures)

PREFIX = "/sy/test/"
GREEN = [{"name": "web", "hosts": ["*"], "stable": "blue",
          "weights": {"blue": 0, "green": 100}}]


def replica(admin_proxy, etcd, name, endpoints=None, http=False, wait=True, lease="2s",
            wait_for="5s"):
    """A replica named `name` of the fleet on `etcd` (all its members, or `endpoints`)."""
    p = admin_proxy(GREEN, name=name, start=False, workers=1,
                    admin={"http": "127.0.0.1:%d" % helpers.free_port()} if http else None)
    p.spec["extra"]["fleet"] = {
        "etcd": {"endpoints": endpoints or etcd.endpoints(), "prefix": PREFIX,
                 "timeout": "1s"},
        "instance": name, "lease_ttl": lease, "wait": wait_for}
    p.spec["extra"]["shutdown"] = {"delay": "0s"}
    p.write_config()
    if wait:
        p.start()
        wait_connected(p)
    return p


def http_status(url):
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code
    except OSError:
        return None


def fleet_status(p):
    out = p.ctl("--json", "status")
    assert out.returncode == 0, out.stdout + out.stderr
    return json.loads(out.stdout)["fleet"]


def wait_connected(p, timeout=10.0):
    helpers.wait_for(lambda: fleet_status(p)["connected"], timeout,
                     "%s connected to etcd" % p.socket)


def backend_of(p):
    probe = Probe(p.port)
    try:
        return probe.get("/")
    finally:
        probe.close()


def change(p, *args):
    """A change through replica p; its JSON answer. The fleet flags go after the command's
    words (before them, switchyardctl would take them for its own options)."""
    flags = [a for a in args if a in ("--no-wait", "--wait", "--local")]
    r = p.ctl("--json", *[a for a in args if a not in flags], *flags)
    return r.returncode, json.loads(r.stdout.strip().splitlines()[-1])


def history_revs(p, app="web"):
    r = p.ctl("--json", "history", "1000")
    assert r.returncode == 0, r.stdout + r.stderr
    recs = json.loads(r.stdout)["records"]
    return [h["fleet_revision"] for h in recs
            if h.get("fleet_revision") and any(c["app"] == app for c in h["changes"])]


def effective(p, app="web"):
    st = json.loads(p.ctl("--json", "status").stdout)
    a = next(a for a in st["apps"] if a["name"] == app)
    return {c["name"]: c["effective"] for c in a["clusters"]}


def etcd_override(etcd, app="web"):
    value, rev = etcd.get_prefix(PREFIX + "apps/" + app)[PREFIX + "apps/" + app]
    return json.loads(value)["override"], rev


def test_revert_through_one_replica_reaches_every_replica_before_its_ok(admin_proxy, etcd3,
                                                                        tmp_path):
    reps = [replica(admin_proxy, etcd3, n) for n in ("a", "b", "c")]
    a, b, c = reps
    helpers.wait_for(lambda: len(json.loads(a.ctl("--json", "fleet").stdout)["fleet"]["members"]) == 3,
                     10, "three members")
    assert all(backend_of(p) == "green-1" for p in reps)
    delays, commits, answered = [], [], []
    for i in range(50):
        t0 = time.monotonic()
        rc, ans = change(a, "revert", "web")
        answered.append((time.monotonic() - t0) * 1000)
        assert rc == 0 and ans["ok"], ans
        fl = ans["fleet"]
        assert fl["waited"] and {m["instance"] for m in fl["members"]} == {"a", "b", "c"}
        assert all(m["applied"] for m in fl["members"]), fl
        # A member that confirmed has applied the change's revision, the one that made it too
        # (its own member key can lag what it applied: the answer says what it holds).
        assert all(m["revision"] >= fl["revision"] for m in fl["members"]), fl
        delays += [m["delay_ms"] for m in fl["members"] if m["instance"] != "a"]
        commits.append(fl["commit_ms"])
        # Every replica routes blue from the first request after A's ok.
        assert [backend_of(p) for p in (b, c)] == ["blue-1", "blue-1"], "round %d" % i
        rc, ans = change(a, "--no-wait", "weights", "web", "blue=0", "green=100")
        assert rc == 0, ans
        helpers.wait_for(lambda: all(backend_of(p) == "green-1" for p in (b, c)), 5,
                         "b and c back on green")
    fig = ("FLEET-FIGURE revert via A, 50 rounds: B and C confirmed median %.1f ms max %.1f ms; "
           "etcd commit median %.1f ms max %.1f ms; A's answer (3 members) median %.1f ms "
           "max %.1f ms" % (statistics.median(delays), max(delays), statistics.median(commits),
                            max(commits), statistics.median(answered), max(answered)))
    print(fig)
    helpers.measure("fleet revert, confirmations of B and C (median)", statistics.median(delays),
                    "ms", "max %.1f ms over 50 reverts" % max(delays))
    (tmp_path / "fleet-figures.txt").write_text(fig + "\n")
    assert max(delays) <= 100, fig  # the issue: B and C within 100 ms of the commit


def test_wait_names_the_members_that_did_not_confirm_and_fails(admin_proxy, etcd1):
    a, b, c = [replica(admin_proxy, etcd1, n, lease="10s", wait_for="1s") for n in "abc"]
    helpers.wait_for(lambda: len(json.loads(a.ctl("--json", "fleet").stdout)["fleet"]["members"])
                     == 3, 10, "three members")
    os.kill(c.pid, signal.SIGSTOP)  # alive to etcd (its lease runs 10 s), applying nothing
    try:
        t0 = time.monotonic()
        r = a.ctl("revert", "web")
        took = time.monotonic() - t0
    finally:
        os.kill(c.pid, signal.SIGCONT)
    assert r.returncode != 0, r.stdout + r.stderr
    assert "not confirmed within 1000 ms by: c" in r.stderr, r.stdout + r.stderr
    assert "a: applied in" in r.stdout and "b: applied in" in r.stdout, r.stdout
    assert "c: NOT confirmed" in r.stdout, r.stdout
    assert took < 5, took
    # The change itself is made: a and b route blue, and c catches up once it runs again.
    assert backend_of(b) == "blue-1"
    helpers.wait_for(lambda: backend_of(c) == "blue-1", 5, "c caught up")


def test_new_replica_starts_on_the_fleet_state_and_a_restart_without_etcd_on_its_cache(
        admin_proxy, etcd3):
    a = replica(admin_proxy, etcd3, "a")
    b = replica(admin_proxy, etcd3, "b")
    why = "green 5xx after the deploy"
    a.ctl_ok("revert", "web", "--reason", why)
    # The record in etcd carries who, when, the command and its reason.
    value, _ = etcd3.get_prefix(PREFIX + "apps/web")[PREFIX + "apps/web"]
    rec = json.loads(value)
    assert rec["cmd"] == "revert web --reason " + why and rec["instance"] == "a", rec
    assert rec["uid"] == os.getuid() and rec["time"] > 0 and rec["override"] == {"blue": 100}, \
        rec
    # D has no journal: it is not ready until it has read etcd, then routes blue at once.
    d = replica(admin_proxy, etcd3, "d", http=True, wait=False)
    d.start()
    ready_url = "http://%s/readyz" % d.spec["extra"]["admin"]["http"]
    helpers.wait_for(lambda: http_status(ready_url) == 200, 10, "d ready")
    assert backend_of(d) == "blue-1"
    assert "revert web --reason " + why in d.ctl_ok("history")
    # B restarted while every etcd member is down: it starts from its journal.
    assert b.stop() is None
    etcd3.stop_all()
    b.start()
    st = fleet_status(b)
    assert not st["connected"] and st["ready"], st
    assert [backend_of(b) for _ in range(5)] == ["blue-1"] * 5
    assert "UNREACHABLE" in b.ctl("status").stdout
    # E starts with no journal and no etcd: it is not ready, and says why.
    e = replica(admin_proxy, etcd3, "e", http=True, wait=False)
    e.start()
    e_ready = "http://%s/readyz" % e.spec["extra"]["admin"]["http"]
    assert http_status(e_ready) == 503
    assert "NOT READY" in e.ctl("status").stdout
    etcd3.start_all()
    wait_connected(b, 15)
    helpers.wait_for(lambda: http_status(e_ready) == 200, 15, "e ready once etcd answers")
    assert backend_of(e) == "blue-1"


def test_leader_killed_during_200_changes_every_replica_ends_as_etcd(admin_proxy, etcd3):
    reps = [replica(admin_proxy, etcd3, n) for n in ("a", "b", "c")]
    leader = etcd3.leader()
    retries, killed = 0, False
    sent = []
    for i in range(200):
        if i == 60:
            etcd3.kill(leader)
            killed = True
        blue = (i * 37) % 101
        args = ("--no-wait", "weights", "web", "blue=%d" % blue, "green=%d" % (100 - blue or 1))
        deadline = time.monotonic() + 20
        while True:
            rc, ans = change(reps[i % 3], *args)
            if rc == 0:
                break
            assert "etcd is unreachable" in ans.get("error", "") or "losing" in ans.get(
                "error", ""), ans
            assert time.monotonic() < deadline, ans
            retries += 1
        sent.append(ans["fleet"]["revision"])
    assert killed
    want, last_rev = etcd_override(etcd3)
    assert sent == sorted(sent) and len(set(sent)) == 200 and sent[-1] == last_rev
    for p in reps:
        helpers.wait_for(lambda: history_revs(p)[-1:] == [last_rev], 10, "%s caught up" % p.socket)
    histories = [history_revs(p) for p in reps]
    assert histories[0] == histories[1] == histories[2] == sent, \
        "replicas disagree with etcd's revisions"
    for p in reps:
        eff = effective(p)
        assert {k: v for k, v in eff.items() if v} == want, (eff, want)
    print("FLEET-FIGURE leader killed at change 60 of 200: %d changes retried during the "
          "election" % retries)
    etcd3.restart(leader)


def test_two_operators_at_once_lose_no_update(admin_proxy, etcd3):
    a = replica(admin_proxy, etcd3, "a")
    b = replica(admin_proxy, etcd3, "b")
    oks = {"a": 0, "b": 0}
    errors = []

    def operator(p, name, odd):
        for i in range(100):
            blue = 2 * (i % 50) + (1 if odd else 0)
            rc, ans = change(p, "--no-wait", "weights", "web", "blue=%d" % blue,
                             "green=%d" % (100 - blue))
            if rc == 0:
                oks[name] += 1
            else:
                errors.append(ans)

    ts = [threading.Thread(target=operator, args=(a, "a", True)),
          threading.Thread(target=operator, args=(b, "b", False))]
    for t in ts:
        t.start()
    for t in ts:
        t.join(timeout=120)
    assert not errors, errors[:3]
    assert oks == {"a": 100, "b": 100}
    _, last = etcd_override(etcd3)
    for p in (a, b):
        helpers.wait_for(lambda: history_revs(p)[-1:] == [last], 10, "caught up")
    ha, hb = history_revs(a), history_revs(b)
    assert ha == hb and len(ha) == 200 and len(set(ha)) == 200


def test_etcd_down_traffic_goes_on_changes_refused_local_works_and_watch_resumes(
        admin_proxy, etcd3):
    a = replica(admin_proxy, etcd3, "a")
    b = replica(admin_proxy, etcd3, "b")
    a.ctl_ok("revert", "web")
    etcd3.stop_all()
    helpers.wait_for(lambda: not fleet_status(a)["connected"], 10, "a sees etcd down")
    assert [backend_of(a) for _ in range(5)] == ["blue-1"] * 5
    r = a.ctl("weights", "web", "blue=0", "green=100")
    assert r.returncode != 0 and "etcd is unreachable" in r.stderr, r.stdout + r.stderr
    assert backend_of(a) == "blue-1"  # nothing changed
    out = a.ctl_ok("weights", "web", "blue=0", "green=100", "--local")
    assert "--local: this replica only" in out
    assert backend_of(a) == "green-1" and backend_of(b) == "blue-1"
    assert "LOCAL" in a.ctl("status").stdout
    assert "UNREACHABLE" in a.ctl("fleet").stdout
    etcd3.start_all()
    wait_connected(a, 15)
    wait_connected(b, 15)
    # A change by B: A keeps its --local override (it wins until released), B follows etcd.
    b.ctl_ok("weights", "web", "blue=100", "green=0")
    assert backend_of(a) == "green-1"
    a.ctl_ok("release", "web", "--local")
    helpers.wait_for(lambda: backend_of(a) == "blue-1", 5, "a back on the fleet's state")


def test_replica_behind_a_stopped_member_catches_up_in_order(admin_proxy, etcd3):
    a = replica(admin_proxy, etcd3, "a", endpoints=etcd3.endpoints([0, 1]))
    b = replica(admin_proxy, etcd3, "b", endpoints=etcd3.endpoints([2]))
    etcd3.stop(2)
    helpers.wait_for(lambda: not fleet_status(b)["connected"], 10, "b's only member down")
    revs = []
    for blue in (10, 20, 30):
        rc, ans = change(a, "--no-wait", "weights", "web", "blue=%d" % blue,
                         "green=%d" % (100 - blue))
        assert rc == 0, ans
        revs.append(ans["fleet"]["revision"])
    assert backend_of(b) == "green-1"  # b still serves its last state
    etcd3.start(2)
    helpers.wait_for(lambda: history_revs(b)[-3:] == revs, 15, "b caught up")
    assert effective(b) == {"blue": 30, "green": 70}


def test_fleet_ramp_is_advanced_by_one_leader_and_continues_when_it_dies(admin_proxy, etcd1):
    a = replica(admin_proxy, etcd1, "a")
    b = replica(admin_proxy, etcd1, "b")
    a.ctl_ok("revert", "web")
    leader = json.loads(a.ctl("--json", "fleet").stdout)["fleet"]["ramp_leader"]
    assert leader in ("a", "b")
    out = a.ctl_ok("ramp", "web", "green", "10,50,100", "--every", "100ms")
    assert "ramp to green begun" in out
    helpers.wait_for(lambda: effective(b).get("green") == 10, 5, "b at the first step")
    # The leader goes: its lease (2 s) lapses, the other replica takes the lead.
    (a if leader == "a" else b).kill9()
    other, name = (b, "b") if leader == "a" else (a, "a")
    helpers.wait_for(lambda: json.loads(other.ctl("--json", "fleet").stdout)["fleet"]
                     ["ramp_leader"] == name, 10, "a new leader")
    # The ramp goes on from the stored step on the new leader's ticks (the step stays 10 %
    # until the guard has a window of data; the ramp itself is still there).
    st = json.loads(other.ctl("--json", "status").stdout)
    assert "ramp" in json.dumps(st), st


def test_fleet_metrics_are_exported_and_documented(admin_proxy, etcd1):
    a = replica(admin_proxy, etcd1, "a", http=True)
    rc, ans = change(a, "revert", "web")
    assert rc == 0, ans
    url = "http://%s/metrics" % a.spec["extra"]["admin"]["http"]
    text = urllib.request.urlopen(url, timeout=5).read().decode()
    exported = dict(re.findall(r"^# TYPE (switchyard_fleet_\S+) (\S+)$", text, re.M))
    doc = open(os.path.join(os.environ["SY_SOURCE_ROOT"], "docs", "metrics.md")).read()
    documented = dict(re.findall(r"^\| `(switchyard_fleet_[a-z_]+)` \| ([a-z]+) \|", doc, re.M))
    assert exported == documented and len(exported) == 5, (exported, documented)
    assert "switchyard_fleet_connected 1" in text
    assert 'switchyard_fleet_changes_total{result="committed"} 1' in text, text[-2000:]
    m = re.search(r"^switchyard_fleet_revision (\d+)$", text, re.M)
    assert m and int(m.group(1)) >= ans["fleet"]["revision"], text[-2000:]


def test_fleet_flags_and_command_without_a_fleet_say_why(admin_proxy):
    p = admin_proxy(GREEN, name="solo")
    r = p.ctl("revert", "web", "--local")
    assert r.returncode != 0 and "is for a fleet" in r.stderr, r.stdout + r.stderr
    assert backend_of(p) == "green-1"
    r = p.ctl("fleet")
    assert r.returncode != 0 and "no fleet" in r.stderr, r.stdout + r.stderr


def test_fleet_over_tls_with_a_client_certificate(admin_proxy, tls_cert, tmp_path):
    """etcd serving https only to clients whose certificate its CA signed (the certificate is
    self-signed: it is the CA, the server's and the client's): a replica with fleet.etcd.tls
    {ca, cert, key} works; one with the CA alone is refused by etcd and says etcd is
    unreachable."""
    cert, key = tls_cert
    cport, pport = helpers.free_port(), helpers.free_port()
    url = "https://127.0.0.1:%d" % cport
    log = open(str(tmp_path / "etcd-tls.log"), "wb")
    etcd = subprocess.Popen(
        [ETCD, "--name", "t", "--data-dir", str(tmp_path / "etcd-tls"),
         "--listen-client-urls", url, "--advertise-client-urls", url,
         "--listen-peer-urls", "http://127.0.0.1:%d" % pport,
         "--initial-advertise-peer-urls", "http://127.0.0.1:%d" % pport,
         "--initial-cluster", "t=http://127.0.0.1:%d" % pport,
         "--cert-file", cert, "--key-file", key, "--client-cert-auth",
         "--trusted-ca-file", cert], stdin=subprocess.DEVNULL, stdout=log, stderr=log)
    try:
        good = replica(admin_proxy, None, "a", endpoints=[url], wait=False)
        bad = replica(admin_proxy, None, "b", endpoints=[url], wait=False)
        good.spec["extra"]["fleet"]["etcd"]["tls"] = {"ca": cert, "cert": cert, "key": key}
        bad.spec["extra"]["fleet"]["etcd"]["tls"] = {"ca": cert}
        for p in (good, bad):
            p.write_config()
            p.start()
        wait_connected(good, 15)
        rc, ans = change(good, "revert", "web")
        assert rc == 0 and ans["fleet"]["revision"] > 0, ans
        assert backend_of(good) == "blue-1"
        assert not fleet_status(bad)["connected"]
        r = bad.ctl("revert", "web")
        assert r.returncode != 0 and "etcd is unreachable" in r.stderr, r.stdout + r.stderr
        assert backend_of(bad) == "green-1"
    finally:
        etcd.kill()
        etcd.wait(timeout=10)
        log.close()


def test_replica_whose_revision_was_compacted_reads_the_prefix_again(admin_proxy, etcd3):
    a = replica(admin_proxy, etcd3, "a", endpoints=etcd3.endpoints([0, 1]))
    b = replica(admin_proxy, etcd3, "b", endpoints=etcd3.endpoints([2]))
    etcd3.stop(2)
    helpers.wait_for(lambda: not fleet_status(b)["connected"], 10, "b's only member down")
    for blue in (10, 20, 30):
        rc, ans = change(a, "weights", "web", "blue=%d" % blue, "green=%d" % (100 - blue),
                         "--no-wait")
        assert rc == 0, ans
    etcd3.compact(ans["fleet"]["revision"])  # b's next revision is gone from etcd's history
    etcd3.start(2)
    helpers.wait_for(lambda: effective(b) == {"blue": 30, "green": 70}, 15, "b resynced")
    assert "watch canceled by etcd (compacted" in b.log_text()
    assert fleet_status(b)["connected"]


def test_a_local_override_survives_a_restart_against_this_replicas_own_older_record(
        admin_proxy, etcd1):
    """The fleet's record of web was written by A itself; A's later `--local` must not be
    replaced by that older record when A reads the prefix again at its restart (found by the
    docs review: a record counted as A's own replaced the local override whatever its age)."""
    a = replica(admin_proxy, etcd1, "a")
    a.ctl_ok("weights", "web", "blue=90", "green=10")
    a.ctl_ok("revert", "web", "--local")
    assert a.stop() is None
    a.start()
    wait_connected(a)
    assert effective(a) == {"blue": 100, "green": 0}
    assert "LOCAL" in a.ctl("status").stdout
