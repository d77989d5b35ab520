# SPDX-License-Identifier: MIT
"""Issue #16, ramps (`switchyardctl ramp APP CLUSTER 10,50,100 --every 1s`, docs/guard.md): the
control thread moves the weights step by step, each step only once the interval passed and
the app's guard held over a whole window of data taken since the last step; a guard that
breaks reverts the app and ends the ramp; a ramp survives `kill -9` and `reload` and goes on
from its step (never back, never ahead), a step whose time passed while the daemon was down
waiting a whole window of fresh data. Backends, load and windows as in test_91_guard.py
(guard_util.py): a 2 s window, the 1 s tick, `--every 1s`."""

import re
import time

import helpers
from guard_util import (TICK, WINDOW, Load, app_status, effective, flaky,  # noqa: F401
                        after_publication, guard_reverts, history, start, status_json,
                        wait_guard_revert)

STEP_RE = re.compile(r"^ramp step web green (\d+)% \((\d+) of (\d+)\)$")


def steps_taken(p):
    """[(weight, time_ms)] of the ramp's step records, oldest first."""
    out = []
    for r in history(p):
        m = STEP_RE.match(r["command"])
        if m and r["changes"]:
            out.append((int(m.group(1)), r["time_ms"]))
    return out


def ramp_of(p):
    return app_status(p)["ramp"]


def wait_for(pred, timeout, what, interval=0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(interval)
    raise AssertionError("timed out waiting for %s" % what)


def wait_weight(p, weight, timeout):
    return wait_for(lambda: effective(p).get("green") == weight, timeout,
                    "green at %d%%" % weight)


# A step needs `every` since the last one and a whole window (WINDOW + the tick that fills it)
# of data taken after it; one more tick of slack for the sampling and the 100 ms ramp tick.
STEP_MAX = WINDOW + 3 * TICK
# Low enough that 10% of the load of a sanitized build fills a window (a step waits for a
# verdict: below min_requests there is none, and the ramp waits).
MIN_REQUESTS = 5


def test_ramp_completes_under_load(admin_proxy, flaky):
    p = start(admin_proxy, flaky, {"blue": 100, "green": 0}, min_requests=MIN_REQUESTS)
    load = Load(p.port)
    try:
        t0 = time.time()
        out = p.ctl_ok("ramp", "web", "green", "10,50,100", "--every", "1s")
        assert "10% now" in out, out
        assert effective(p) == {"blue": 90, "green": 10}, "the first step is taken at once"
        r = ramp_of(p)
        assert r["state"] == "running" and r["step"] == 1 and r["weight"] == 10, r
        assert r["next_step_ms"] and r["steps"] == [10, 50, 100], r
        text = p.ctl_ok("status", "web")
        assert "ramp to green running: 10% (step 1 of 3: 10,50,100, every 1 s)" in text, text
        assert "next 50% not before" in text, text
        wait_for(lambda: ramp_of(p) is None, 3 * STEP_MAX + 5, "the ramp to finish")
        elapsed = time.time() - t0
        helpers.measure("ramp 10,50,100 --every 1s (guard window 2 s) under load",
                        round(elapsed, 2), "s")
    finally:
        load.stop()
    assert effective(p) == {"blue": 0, "green": 100}
    steps = steps_taken(p)
    assert [w for w, _ in steps] == [10, 50, 100], steps
    for (_, a), (_, b) in zip(steps, steps[1:]):
        # Each step waited a whole window of data after the one before.
        assert (b - a) / 1000.0 >= WINDOW, steps
    assert any(r["command"] == "ramp done web" for r in history(p))
    assert guard_reverts(p) == []
    assert load.errors == [], load.errors[:5]
    assert all(r[2] == 200 for r in load.records), "a request failed during the ramp"
    assert sum(1 for r in load.records if r[1] == "green") > 100


def test_ramp_is_reverted_by_its_guard_when_green_fails_at_step_2(admin_proxy, flaky):
    p = start(admin_proxy, flaky, {"blue": 100, "green": 0}, min_requests=MIN_REQUESTS)
    load = Load(p.port)
    try:
        p.ctl_ok("ramp", "web", "green", "10,50,100", "--every", "1s")
        wait_weight(p, 50, STEP_MAX + 3)
        flaky["green"].fail_every = 10  # from step 2 on: 500 to one green request in ten
        t_fail = time.time()
        rec, seen = wait_guard_revert(p, WINDOW + TICK + 5)
        assert rec, "the guard did not revert; log:\n%s" % p.log_text()[-3000:]
        reaction = rec["time_ms"] / 1000.0 - t_fail
        helpers.measure("guard reaction during a ramp (green 10% 500s at step 50)",
                        round(reaction, 3), "s")
        assert reaction <= WINDOW + TICK + 0.5, reaction
        assert re.fullmatch(r"guard revert web: green 5xx [0-9.]+% > 5% over \d s, n=\d+",
                            rec["command"]), rec["command"]
        time.sleep(1.0)
        after = load.since(after_publication(rec, seen))
        assert len(after) > 50
        assert [r for r in after if r[1] != "blue"] == [], "requests reached green after it"
        wait_for(lambda: ramp_of(p) is None, 2, "the ramp to end")
    finally:
        load.stop()
    assert effective(p) == {"blue": 100, "green": 0}
    assert [w for w, _ in steps_taken(p)] == [10, 50], "the ramp went on after the revert"
    ends = [r for r in history(p) if r["command"] == "ramp end web"]
    assert ends, "no record ended the ramp"
    assert "ramp to green reverted: guard revert web: green 5xx" in p.log_text()
    time.sleep(WINDOW + TICK)
    assert effective(p) == {"blue": 100, "green": 0}, "the revert did not stay"


def test_ramp_goes_on_from_its_step_after_kill9(admin_proxy, flaky):
    p = start(admin_proxy, flaky, {"blue": 100, "green": 0}, min_requests=MIN_REQUESTS)
    load = Load(p.port)
    try:
        p.ctl_ok("ramp", "web", "green", "10,50,100", "--every", "1s")
        wait_weight(p, 50, STEP_MAX + 3)
        p.kill9()
        time.sleep(WINDOW + TICK)  # the next step's time passes while the daemon is down
        t_restart = time.time()
        p.start()
        assert effective(p) == {"blue": 50, "green": 50}, "not on its step after kill -9"
        r = ramp_of(p)
        assert r["state"] == "running" and r["step"] == 2 and r["weight"] == 50, r
        wait_for(lambda: ramp_of(p) is None, STEP_MAX + 5, "the ramp to finish")
    finally:
        load.stop()
    steps = steps_taken(p)
    assert [w for w, _ in steps] == [10, 50, 100], "went back or skipped: %s" % steps
    waited = steps[-1][1] / 1000.0 - t_restart
    helpers.measure("first step after kill -9 and restart (window 2 s)", round(waited, 2), "s")
    assert waited >= WINDOW, "a step overdue at restart was taken without a fresh window"
    assert effective(p) == {"blue": 0, "green": 100}


def test_ramp_goes_on_from_its_step_after_reload(admin_proxy, flaky):
    p = start(admin_proxy, flaky, {"blue": 100, "green": 0}, min_requests=MIN_REQUESTS)
    load = Load(p.port)
    try:
        p.ctl_ok("ramp", "web", "green", "10,50,100", "--every", "1s")
        wait_weight(p, 50, STEP_MAX + 3)
        gen = p.generation()
        # A real change of the file (the guard's window), then the reload.
        app = p.spec["apps"][0]
        app["guard"] = dict(app["guard"], max_5xx_ratio=0.06)
        p.write_config()
        p.ctl_ok("reload")
        assert p.generation() > gen
        assert effective(p) == {"blue": 50, "green": 50}
        assert ramp_of(p)["weight"] == 50
        wait_for(lambda: ramp_of(p) is None, STEP_MAX + 5, "the ramp to finish")
    finally:
        load.stop()
    assert [w for w, _ in steps_taken(p)] == [10, 50, 100]
    assert effective(p) == {"blue": 0, "green": 100}
    assert load.errors == []


def test_ramp_pause_resume_abort(admin_proxy, flaky):
    p = start(admin_proxy, flaky, {"blue": 100, "green": 0}, min_requests=MIN_REQUESTS)
    load = Load(p.port)
    try:
        p.ctl_ok("ramp", "web", "green", "10,50,100", "--every", "1s")
        p.ctl_ok("ramp", "pause", "web")
        assert ramp_of(p)["state"] == "paused"
        assert ramp_of(p)["next_step_ms"] is None
        time.sleep(STEP_MAX)
        assert effective(p)["green"] == 10, "a paused ramp took a step"
        bad = p.ctl("ramp", "pause", "web")
        assert bad.returncode != 0 and "paused already" in bad.stdout + bad.stderr
        p.ctl_ok("ramp", "resume", "web")
        t_resume = time.time()
        wait_weight(p, 50, STEP_MAX + 3)
        assert steps_taken(p)[-1][1] / 1000.0 - t_resume >= WINDOW, \
            "a resumed ramp stepped without a whole window of data after the resume"
        out = p.ctl_ok("ramp", "abort", "web")
        assert "weights stay" in out
        time.sleep(STEP_MAX)
    finally:
        load.stop()
    assert ramp_of(p) is None
    assert effective(p) == {"blue": 50, "green": 50}, "abort moved the weights"
    assert [w for w, _ in steps_taken(p)] == [10, 50]
    assert any(r["command"] == "ramp abort web" for r in history(p))


def test_bad_ramp_commands_change_nothing(admin_proxy, flaky):
    p = start(admin_proxy, flaky, {"blue": 100, "green": 0}, min_requests=MIN_REQUESTS)
    seq = status_json(p)["journal_seq"]
    cases = [
        (["ramp", "web", "green", "10,5,100", "--every", "1s"], "strictly increasing"),
        (["ramp", "web", "green", "10,50", "--every", "1s"], "the last step must be 100"),
        (["ramp", "web", "green", "0,100", "--every", "1s"], "weight 1..100"),
        (["ramp", "web", "green", "10,,100", "--every", "1s"], "weight 1..100"),
        (["ramp", "web", "green", "10,50,100,", "--every", "1s"], "missing after the last comma"),
        (["ramp", "web", "green", "10,50,101", "--every", "1s"], "weight 1..100"),
        (["ramp", "web", "green", "10,100", "--every", "1"], "--every must be a duration"),
        (["ramp", "web", "green", "10,100", "--every", "50ms"], "--every must be a duration"),
        (["ramp", "web", "green", "10,100", "--each", "1s"], "usage: ramp"),
        (["ramp", "web", "blue", "10,100", "--every", "1s"], "not one of app web's non-stable"),
        (["ramp", "nope", "green", "10,100", "--every", "1s"], "unknown app"),
        (["ramp", "web", "green"], "usage: ramp"),
        (["ramp", "abort", "web"], "no ramp of app 'web' runs"),
    ]
    for args, want in cases:
        out = p.ctl(*args)
        assert out.returncode != 0, args
        assert want in out.stdout + out.stderr, (args, out.stdout, out.stderr)
    assert status_json(p)["journal_seq"] == seq, "a refused command wrote to the journal"
    assert effective(p) == {"blue": 100, "green": 0}
    p.ctl_ok("ramp", "web", "green", "50,100", "--every", "1h")
    again = p.ctl("ramp", "web", "green", "60,100", "--every", "1s")
    assert again.returncode != 0 and "runs already" in again.stdout + again.stderr


def test_ramp_needs_a_guard(admin_proxy, flaky):
    p = start(admin_proxy, flaky, {"blue": 100, "green": 0}, guard="off")
    out = p.ctl("ramp", "web", "green", "10,100", "--every", "1s")
    assert out.returncode != 0 and "a ramp needs a guard" in out.stdout + out.stderr
    assert effective(p) == {"blue": 100, "green": 0}


def test_ramp_without_guard_key_runs_under_the_default_guard(admin_proxy, flaky):
    p = start(admin_proxy, flaky, {"blue": 100, "green": 0}, guard="none")
    assert app_status(p)["guard"] is None
    p.ctl_ok("ramp", "web", "green", "10,100", "--every", "1s")
    time.sleep(1.5 * TICK)
    g = app_status(p)["guard"]
    assert g and g["window_ms"] == 30000 and g["min_requests"] == 50, g
    p.ctl_ok("ramp", "abort", "web")
