# SPDX-License-Identifier: MIT
"""switchyardctl's own output, byte for byte where scripts read it: the --json line it writes
for each instance of a fan-out (the socket path escaped as JSON, an unreachable instance as
reachable:false with the reason), one unreachable instance alone (the object on stdout, the
reason on stderr, exit 3), and its usage errors (exit 2) before any socket is asked. The
real switchyardctl against a real switchyard's admin socket."""

import json
import os

import pytest

from admin_util import SWITCHYARDCTL, ctl

pytestmark = pytest.mark.skipif(
    not (SWITCHYARDCTL and os.access(SWITCHYARDCTL, os.X_OK)),
    reason="SWITCHYARDCTL is not an executable (path to switchyardctl; meson test sets it)")

# No such directory: connect fails with ENOENT whatever the machine. A quote, a backslash
# and a tab in the name: each is escaped in the JSON line.
MISSING = '/nonexistent-sy/no "such"\\\tsock'
MISSING_JSON = '"/nonexistent-sy/no \\"such\\"\\\\\\u0009sock"'
CANNOT = "cannot connect: No such file or directory"


def web():
    return {"name": "web", "hosts": ["*"], "stable": "blue", "weights": {"blue": 100}}


def test_fanout_json_names_each_instance_and_escapes_its_socket(admin_proxy):
    p = admin_proxy([web()])
    r = ctl("status", sockets=[p.socket, MISSING], json=True)
    assert r.returncode == 3, (r.stdout, r.stderr)
    lines = r.stdout.splitlines()
    assert len(lines) == 2, r.stdout
    first = json.loads(lines[0])
    assert first["socket"] == p.socket and first["reachable"] is True
    assert first["answer"]["ok"] is True and first["answer"]["generation"] == 1
    assert [a["name"] for a in first["answer"]["apps"]] == ["web"]
    # The exact bytes of the unreachable one, and what a JSON reader makes of them.
    assert lines[1] == ('{"socket":%s,"reachable":false,"ok":false,"error":"%s"}'
                        % (MISSING_JSON, CANNOT)), lines[1]
    assert json.loads(lines[1])["socket"] == MISSING


def test_fanout_text_names_the_unreachable_and_counts(admin_proxy):
    p = admin_proxy([web()])
    r = ctl("ident", sockets=[MISSING, p.socket])
    assert r.returncode == 3, (r.stdout, r.stderr)
    assert "== %s: UNREACHABLE: %s\n" % (MISSING, CANNOT) in r.stdout, r.stdout
    assert "== %s: ok (generation 1, journal seq 0)\n" % p.socket in r.stdout, r.stdout
    assert r.stdout.endswith("1 of 2 instances answered ok: failed %s (unreachable)\n"
                             % MISSING), r.stdout


def test_one_unreachable_instance(tmp_path):
    r = ctl("status", sockets=[MISSING], json=True)
    assert r.returncode == 3
    assert r.stdout == ('{"socket":%s,"reachable":false,"ok":false,"error":"%s"}\n'
                        % (MISSING_JSON, CANNOT)), r.stdout
    assert r.stderr == "switchyardctl: %s: %s\n" % (MISSING, CANNOT), r.stderr
    r = ctl("status", sockets=[MISSING])
    assert r.returncode == 3 and r.stdout == ""
    assert r.stderr == "switchyardctl: %s: %s\n" % (MISSING, CANNOT), r.stderr


def test_json_answer_of_one_instance_is_passed_through(admin_proxy):
    p = admin_proxy([web()])
    # `json` as the first word and --json after the command ask the same.
    for args in (("json", "ident"), ("ident", "--json")):
        r = ctl(*args, sockets=[p.socket])
        assert r.returncode == 0, (r.stdout, r.stderr)
        assert r.stdout.startswith('{"ok":true,"generation":1,"journal_seq":0,"version":"')
        assert r.stdout.count("\n") == 1 and r.stdout.endswith("}\n"), r.stdout


def test_usage_errors_exit_2_before_asking(tmp_path):
    sock = [str(tmp_path / "never-asked.sock")]
    r = ctl(sockets=sock)
    assert r.returncode == 2 and r.stderr.startswith("usage: switchyardctl"), r.stderr
    r = ctl("--timeout", "0", "status", sockets=sock)
    assert r.returncode == 2 and "bad timeout '0'" in r.stderr, r.stderr
    r = ctl("--bogus", "status", sockets=sock)
    assert r.returncode == 2, r.stderr
    r = ctl("weights", "web", "x" * 5000, sockets=sock)
    assert r.returncode == 2 and "the command is longer than 4096 bytes" in r.stderr, r.stderr
    r = ctl("status", "--watch", "--count", "0", sockets=sock)
    assert r.returncode == 2 and "--count must be a positive integer" in r.stderr, r.stderr
    r = ctl("-V")
    assert r.returncode == 0 and r.stdout.startswith("switchyardctl "), r.stdout
    r = ctl("--help")
    assert r.returncode == 0 and r.stdout.startswith("usage: switchyardctl"), r.stdout
