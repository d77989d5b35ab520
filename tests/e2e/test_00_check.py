# SPDX-License-Identifier: MIT
"""`switchyard -t -c FILE`: exit 0 and a one-line summary for a good file; exit 1 and every
error as `file:line:column: message` (1-based) for a bad one."""

import glob
import os
import re
import socket
import subprocess

import pytest

from conftest import SOURCE_ROOT, SWITCHYARD

VALID = """\
listen:
  - address: 127.0.0.1:18080
workers: 1
limits:
  max_header_bytes: 16384
timeouts:
  upstream_response: 30s
  upstream_connect: 500ms
clusters:
  blue:
    endpoints: [127.0.0.1:9001, 127.0.0.1:9003]
  green:
    endpoints: [127.0.0.1:9002]
apps:
  - name: chat
    hosts: [chat.example.com, "*.chat.example.com"]
    paths: [/, /api]
    stable: blue
    weights: { blue: 90, green: 10 }
  - name: rest
    hosts: ["*"]
    weights:
      blue: 100
      green: 0
"""

BAD_WEIGHT = """\
listen:
  - address: 127.0.0.1:18080
clusters:
  blue:
    endpoints: [127.0.0.1:9001]
  green:
    endpoints: [127.0.0.1:9002]
apps:
  - name: chat
    hosts: [chat.example.com]
    weights:
      blue: 120
      green: 10
"""

SEVERAL = """\
listen:
  - address: 127.0.0.1:18080
clusters:
  blue:
    endpoints: [127.0.0.1:9001]
  green:
    endpoints: [127.0.0.1:70000]
apps:
  - name: a
    hosts: [a.example.com]
    weights:
      blue: 120
      green: 0
  - name: b
    hosts: [b.example.com]
    weights:
      blue: 50
      purple: 50
"""


def run_check(path, timeout=20):
    return subprocess.run([SWITCHYARD, "-t", "-c", str(path)], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, timeout=timeout,
                          text=True, errors="replace")


def position(text, needle, occurrence=1):
    """1-based (line, column) of the n-th occurrence of `needle` in `text`."""
    idx = -1
    for _ in range(occurrence):
        idx = text.index(needle, idx + 1)
    line = text.count("\n", 0, idx) + 1
    col = idx - (text.rfind("\n", 0, idx) + 1) + 1
    return line, col


def diag_lines(stderr, path):
    pat = re.compile(r"^%s:(\d+):(\d+): (.+)$" % re.escape(str(path)))
    out = []
    for line in stderr.splitlines():
        m = pat.search(line.strip())
        if m:
            out.append((int(m.group(1)), int(m.group(2)), m.group(3)))
    return out


def test_valid_file_exits_0_with_one_line_summary(tmp_path):
    f = tmp_path / "ok.yaml"
    f.write_text(VALID)
    p = run_check(f)
    assert p.returncode == 0, "stdout:\n%s\nstderr:\n%s" % (p.stdout, p.stderr)
    lines = [ln for ln in p.stdout.splitlines() if ln.strip()]
    assert len(lines) == 1, "want a one-line summary on stdout, got %r" % p.stdout
    assert not diag_lines(p.stderr, f), p.stderr


def test_check_works_while_the_listen_port_is_taken(tmp_path):
    """-t checks a file for a daemon that is already running: it must not need the port."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        port = s.getsockname()[1]
        f = tmp_path / "busy.yaml"
        f.write_text(VALID.replace("127.0.0.1:18080", "127.0.0.1:%d" % port))
        p = run_check(f)
    assert p.returncode == 0, "stdout:\n%s\nstderr:\n%s" % (p.stdout, p.stderr)


def test_weight_over_100_reports_file_line_col(tmp_path):
    f = tmp_path / "bad.yaml"
    f.write_text(BAD_WEIGHT)
    p = run_check(f)
    assert p.returncode == 1, "stdout:\n%s\nstderr:\n%s" % (p.stdout, p.stderr)
    diags = diag_lines(p.stderr, f)
    assert diags, "no `%s:line:col: message` on stderr:\n%s" % (f, p.stderr)
    line, key_col = position(BAD_WEIGHT, "blue: 120")
    val_col = key_col + len("blue: ")
    hits = [d for d in diags if d[0] == line]
    assert hits, "no error on line %d (want `blue: 120`): %r" % (line, diags)
    assert hits[0][1] in (key_col, val_col), \
        "column %d: want %d (key) or %d (value): %r" % (hits[0][1], key_col, val_col, diags)
    assert "120" in hits[0][2] or "weight" in hits[0][2].lower(), hits
    assert p.stdout.strip() == "" or "error" not in p.stdout.lower()


def test_several_errors_are_reported_at_once(tmp_path):
    f = tmp_path / "several.yaml"
    f.write_text(SEVERAL)
    p = run_check(f)
    assert p.returncode == 1, "stdout:\n%s\nstderr:\n%s" % (p.stdout, p.stderr)
    diags = diag_lines(p.stderr, f)
    want = {
        "endpoint port 70000": [position(SEVERAL, "127.0.0.1:70000")],
        "weight 120": [position(SEVERAL, "blue: 120"),
                       position(SEVERAL, "120")],
        "unknown cluster purple": [position(SEVERAL, "purple")],
    }
    missing = []
    for what, places in want.items():
        if not any((d[0], d[1]) in places for d in diags):
            missing.append("%s at %s" % (what, " or ".join("%d:%d" % pl for pl in places)))
    assert not missing, "missing diagnostics: %s\nstderr:\n%s" % (missing, p.stderr)


def test_yaml_syntax_error_has_position(tmp_path):
    text = VALID.replace('hosts: ["*"]', 'hosts: ["*"')
    f = tmp_path / "syntax.yaml"
    f.write_text(text)
    p = run_check(f)
    assert p.returncode == 1, "stdout:\n%s\nstderr:\n%s" % (p.stdout, p.stderr)
    diags = diag_lines(p.stderr, f)
    assert diags, "want `%s:line:col: message` on stderr:\n%s" % (f, p.stderr)
    start_line, _ = position(text, 'hosts: ["*"')
    assert all(d[0] >= start_line and d[1] >= 1 for d in diags), diags


def test_unknown_key_is_an_error_with_position(tmp_path):
    text = VALID.replace("    weights: { blue: 90", "    wieghts: { blue: 90")
    f = tmp_path / "typo.yaml"
    f.write_text(text)
    p = run_check(f)
    assert p.returncode == 1, "a misspelt key must not be ignored; stdout:\n%s\nstderr:\n%s" \
        % (p.stdout, p.stderr)
    line, col = position(text, "wieghts")
    assert any(d[0] == line for d in diag_lines(p.stderr, f)), \
        "want an error on line %d:\n%s" % (line, p.stderr)


GUARDED = VALID.replace("    weights: { blue: 90, green: 10 }\n",
                        "    weights: { blue: 90, green: 10 }\n    guard: GUARD\n")


@pytest.mark.parametrize("guard,needle,message", [
    ("{ max_5xx_ratio: 5 }", "5 }", "guard.max_5xx_ratio must be a number from 0 to 1"),
    ("{ max_5xx_ratio: -0.1 }", "-0.1", "guard.max_5xx_ratio must be a number from 0 to 1"),
    ("{ window: 30 }", "30 }", "guard.window must be a duration with its unit"),
    ("{ window: 2500ms }", "2500ms", "guard.window must be whole seconds"),
    ("{ max_p99: soon }", "soon", "guard.max_p99 must be a duration with its unit"),
    ("{ relative_to_stable: 0.5 }", "0.5", "guard.relative_to_stable must be 0 (off) or a "
     "factor from 1 to 1000"),
    ("{ min_requests: 0 }", "0 }", "guard.min_requests must be an integer 1..100000000"),
    ("{ windw: 30s }", "windw", "unknown key 'windw' in guard"),
    ("sometimes", "sometimes", "guard must be off, on or a mapping"),
])
def test_bad_guard_keys_are_errors_with_position(tmp_path, guard, needle, message):
    text = GUARDED.replace("GUARD", guard)
    f = tmp_path / "guard.yaml"
    f.write_text(text)
    p = run_check(f)
    assert p.returncode == 1, "stdout:\n%s\nstderr:\n%s" % (p.stdout, p.stderr)
    line, col = position(text, needle, text.count(needle, 0, text.index("guard: ")) + 1)
    diags = diag_lines(p.stderr, f)
    assert any((d[0], d[1]) == (line, col) and message in d[2] for d in diags), \
        "want %d:%d: %s...\n%s" % (line, col, message, p.stderr)


def test_guard_on_an_app_with_one_cluster_is_an_error(tmp_path):
    text = VALID.replace("      blue: 100\n      green: 0\n", "      blue: 100\n    guard: on\n")
    assert "guard: on" in text
    f = tmp_path / "guard1.yaml"
    f.write_text(text)
    p = run_check(f)
    assert p.returncode == 1, "stdout:\n%s\nstderr:\n%s" % (p.stdout, p.stderr)
    line, col = position(text, "on\n", text.count("on\n", 0, text.index("guard: on")) + 1)
    diags = diag_lines(p.stderr, f)
    assert any((d[0], d[1]) == (line, col) and "guard needs a cluster besides the stable one"
               in d[2] for d in diags), p.stderr


def test_good_guard_passes(tmp_path):
    f = tmp_path / "guard-ok.yaml"
    f.write_text(GUARDED.replace("GUARD", "{ max_5xx_ratio: 0.05, max_p99: 800ms, "
                                 "relative_to_stable: 2.0, window: 30s, min_requests: 50 }"))
    p = run_check(f)
    assert p.returncode == 0, "stdout:\n%s\nstderr:\n%s" % (p.stdout, p.stderr)


def test_missing_file_exits_1_with_clear_message(tmp_path):
    f = tmp_path / "does-not-exist.yaml"
    p = run_check(f)
    assert p.returncode == 1, "stdout:\n%s\nstderr:\n%s" % (p.stdout, p.stderr)
    assert str(f) in p.stderr, p.stderr
    assert "no such file" in p.stderr.lower(), p.stderr


def switchyard_configs():
    """conf/ files that are switchyard routing files (top-level `clusters:`), not manifests."""
    out = []
    for pat in ("*.yaml", "*.yml"):
        for p in glob.glob(os.path.join(SOURCE_ROOT, "conf", "**", pat), recursive=True):
            # The packaged default names /var/lib/switchyard and /run/switchyard, which exist
            # where the package is installed: test_18_systemd_notify.py checks it with those
            # moved to a temp dir, tests/pkg/run.sh as installed.
            if os.path.relpath(p, SOURCE_ROOT) == os.path.join("conf", "systemd", "switchyard.yaml"):
                continue
            with open(p, encoding="utf-8", errors="replace") as f:
                if re.search(r"^clusters:", f.read(), re.M):
                    out.append(p)
    return sorted(out)


CONF_FILES = switchyard_configs()


@pytest.mark.parametrize("path", CONF_FILES or [None],
                         ids=[os.path.relpath(p, SOURCE_ROOT) for p in CONF_FILES] or ["none"])
def test_every_conf_file_passes_check(path):
    if path is None:
        pytest.skip("no conf/**/*.yaml files")
    # A file whose journal lives under /tmp (the demo's: conf/demo/run.sh makes the directory
    # before it starts) is checked as the demo runs it; -t rightly refuses a missing directory,
    # and on a fresh machine nothing has made it yet.
    with open(path, encoding="utf-8") as f:
        state = re.search(r"^state:\s*(/tmp/\S+)\s*$", f.read(), re.M)
    if state:
        os.makedirs(os.path.dirname(state.group(1)), mode=0o755, exist_ok=True)
    p = run_check(path)
    assert p.returncode == 0, "stdout:\n%s\nstderr:\n%s" % (p.stdout, p.stderr)


# -- health checks, outlier ejection, retry budget, failover (issue #16) --------------------------

HEALTH_BASE = """\
listen:
  - address: 127.0.0.1:18080
clusters:
  blue:
    endpoints: [127.0.0.1:9001]
  green:
    endpoints: [127.0.0.1:9002]
    @GREEN@
apps:
  - name: chat
    hosts: ["*"]
    @APP@
    weights: { blue: 90, green: 10 }
"""

GOOD_HEALTH = [
    ("health: { path: /healthz, interval: 2s, timeout: 1s, rise: 2, fall: 3, expect: 200-399, "
     "host: green.internal }", "failover: true"),
    ("health: { expect: [200, 204-299], host: 'green.internal:8443' }", "failover: false"),
    ("health: {}", ""),
    ("outlier: { consecutive_failures: 5, base_ejection: 10s, max_ejection: 300s }", ""),
    ("retry_budget: { percent: 20, window: 10s, min: 3 }", ""),
]


@pytest.mark.parametrize("green,app", GOOD_HEALTH)
def test_health_keys_are_accepted(tmp_path, green, app):
    text = HEALTH_BASE.replace("@GREEN@", green).replace("@APP@", app)
    f = tmp_path / "good.yaml"
    f.write_text(text)
    p = run_check(f)
    assert p.returncode == 0, "stdout:\n%s\nstderr:\n%s" % (p.stdout, p.stderr)


# (green's extra line, app's extra line, the bad value as it appears, a word of the message)
BAD_HEALTH = [
    ("health: { interval: 2 seconds }", "", "2 seconds", "interval must be a duration"),
    ("health: { interval: 0s }", "", "0s", "interval must be greater than 0"),
    ("health: { interval: 5ms }", "", "5ms", "interval must be at least 100ms"),
    ("health: { timeout: -1s }", "", "-1s", "timeout must be a duration"),
    ("health: { rise: 0 }", "", "0 }", "rise must be an integer 1..100"),
    ("health: { fall: many }", "", "many", "fall must be an integer 1..100"),
    ("health: { expect: 399-200 }", "", "399-200", "expect must be a status or a range"),
    ("health: { expect: 200-700 }", "", "200-700", "expect must be a status or a range"),
    ("health: { expect: [200, ok] }", "", "ok", "expect must be a status or a range"),
    ("health: { path: healthz }", "", "healthz", "path must begin with '/'"),
    ("health: { host: 'a b' }", "", "'a b'", "bad health host"),
    ("health: { host: 'g.internal:70000' }", "", "'g.internal:70000'", "port after ':' must be"),
    ("health: { pth: /x }", "", "pth", "unknown key 'pth' in health"),
    ("health: /healthz", "", "/healthz", "health must be a mapping"),
    ("outlier: { consecutive_failures: 0 }", "", "0 }", "consecutive_failures must be"),
    ("outlier: { base_ejection: 10 minutes }", "", "10 minutes", "base_ejection must be a duration"),
    ("outlier: { base_ejection: 60s, max_ejection: 10s }", "", "10s", "max_ejection (10000ms) must be at least"),
    ("retry_budget: { percent: 150 }", "", "150", "percent must be an integer 0..100"),
    ("retry_budget: { window: 0s }", "", "0s", "window must be greater than 0"),
    ("", "failover: maybe", "maybe", "failover must be true or false"),
]


@pytest.mark.parametrize("green,app,value,message", BAD_HEALTH)
def test_bad_health_keys_report_file_line_col(tmp_path, green, app, value, message):
    text = HEALTH_BASE.replace("@GREEN@", green).replace("@APP@", app)
    f = tmp_path / "bad.yaml"
    f.write_text(text)
    p = run_check(f)
    assert p.returncode == 1, "stdout:\n%s\nstderr:\n%s" % (p.stdout, p.stderr)
    diags = diag_lines(p.stderr, f)
    line, col = position(text, value)
    assert any(d[0] == line and d[1] == col and message in d[2] for d in diags), \
        "want %d:%d: ...%s... in:\n%s" % (line, col, message, p.stderr)


# -- fleet: (issue #17) ----------------------------------------------------------------------------

FLEET_BASE = VALID + """\
fleet:
  etcd:
@ETCD@
@FLEET@
"""

GOOD_FLEET = """\
    endpoints: [127.0.0.1:2379, "https://[::1]:22379/", "https://localhost:32379"]
    prefix: /switchyard/prod
    timeout: 500ms
  instance: replica-a.eu_1
  lease_ttl: 15s
  wait: 10m"""


def test_good_fleet_passes(tmp_path):
    text = VALID + "fleet:\n  etcd:\n" + GOOD_FLEET + "\n"
    f = tmp_path / "fleet-ok.yaml"
    f.write_text(text)
    p = run_check(f)
    assert p.returncode == 0, "stdout:\n%s\nstderr:\n%s" % (p.stdout, p.stderr)
    assert not diag_lines(p.stderr, f), p.stderr


# (fleet.etcd's lines, fleet's other lines, the text the error points at, a part of the message)
BAD_FLEET = [
    ("    endpoints: [127.0.0.1:2379, 'ftp://127.0.0.1:2379']", "", "'ftp://",
     "bad fleet.etcd endpoint 'ftp://127.0.0.1:2379': the scheme must be http:// or https://"),
    ("    endpoints: ['http://127.0.0.1:2379']\n    tls: {verify: true}", "", "'http://",
     "fleet.etcd endpoint 'http://127.0.0.1:2379' is cleartext http:// but fleet.etcd.tls is "
     "written"),
    ("    endpoints: [127.0.0.1:2379]", "  lease_ttl: 2500ms", "2500ms",
     "fleet.lease_ttl must be whole seconds (etcd leases are), got 2500ms"),
    ("    endpoints: [127.0.0.1:2379]\n    prefix: switchyard/", "", "switchyard/",
     "fleet.etcd.prefix must begin with '/'"),
    ("    endpoints: [127.0.0.1:2379]", "  leasettl: 10s", "leasettl",
     "unknown key 'leasettl' in fleet"),
    ("    endpoints: ['https://127.0.0.1:2379']\n    tls: {ca: not-a-ca.pem}", "", "{ca:",
     "fleet.etcd.tls: "),
]


@pytest.mark.parametrize("etcd,rest,needle,message", BAD_FLEET,
                         ids=["scheme", "http-with-tls", "lease-not-whole-seconds", "prefix",
                              "unknown-key", "ca-not-a-certificate"])
def test_bad_fleet_reports_file_line_col(tmp_path, etcd, rest, needle, message):
    text = FLEET_BASE.replace("@ETCD@", etcd).replace("@FLEET@\n", rest + "\n" if rest else "")
    (tmp_path / "not-a-ca.pem").write_text("not a certificate\n")
    f = tmp_path / "fleet-bad.yaml"
    f.write_text(text)
    p = run_check(f)
    assert p.returncode == 1, "stdout:\n%s\nstderr:\n%s" % (p.stdout, p.stderr)
    diags = diag_lines(p.stderr, f)
    line, col = position(text, needle)
    assert any((d[0], d[1]) == (line, col) and message in d[2] for d in diags), \
        "want %d:%d: ...%s... in:\n%s" % (line, col, message, p.stderr)


def test_fleet_with_an_exclusive_app_is_refused(tmp_path):
    """An exclusive switch drains one replica; a fleet-wide change must not move a stateful
    app without it, so `fleet:` and `mode: exclusive` are refused together, at the fleet's section."""
    text = VALID.replace("apps:\n", "apps:\n  - name: db\n    hosts: [db.example]\n"
                         "    mode: exclusive\n    stable: blue\n"
                         "    weights: {blue: 100, green: 0}\n", 1) + \
        "fleet:\n  etcd:\n    endpoints: [127.0.0.1:2379]\n"
    f = tmp_path / "fleet-exclusive.yaml"
    f.write_text(text)
    p = run_check(f)
    assert p.returncode == 1, "stdout:\n%s\nstderr:\n%s" % (p.stdout, p.stderr)
    diags = diag_lines(p.stderr, f)
    line, col = position(text, "etcd:")  # the `fleet:` value
    assert any((d[0], d[1]) == (line, col) and "exclusive apps (app 'db'" in d[2]
               for d in diags), p.stderr
