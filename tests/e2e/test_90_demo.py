# SPDX-License-Identifier: MIT
"""The README's first command, run as a new user would: `sh conf/demo/run.sh` comes up, and
the curl lines it prints answer from blue and from green. It uses the demo's fixed ports
(8080, 9001, 9002) and stops what it started."""

import os
import re
import subprocess

import pytest

from conftest import SOURCE_ROOT

DEMO = os.path.join(SOURCE_ROOT, "conf", "demo", "run.sh")


@pytest.fixture
def demo():
    out = subprocess.run(["sh", DEMO], capture_output=True, text=True, timeout=300)
    try:
        yield out
    finally:
        subprocess.run(["sh", DEMO, "stop"], capture_output=True, timeout=30)


def test_demo_comes_up_and_its_curl_lines_reach_blue_and_green(demo):
    assert demo.returncode == 0, demo.stdout + demo.stderr
    lines = [l.strip() for l in demo.stdout.splitlines() if l.strip().startswith(("curl", "for "))]
    assert lines, demo.stdout
    seen = ""
    for line in lines:
        cmd = line.split("  #")[0]
        r = subprocess.run(["bash", "-c", cmd], capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, (cmd, r.stderr)
        seen += r.stdout
    assert "blue-1" in seen and "green-1" in seen, seen
    # The loop line splits 20 requests 90/10 exactly (one cycle of 10, twice).
    counts = dict((name, int(n)) for n, name in re.findall(r"(\d+) (\w+-1)", seen))
    assert counts.get("blue-1") == 18 and counts.get("green-1") == 2, seen


def printed(out, label):
    """The text after `label` on the demo's line that starts with it."""
    m = re.search(r"(?m)^%s:? (.+)$" % re.escape(label), out)
    assert m, "no %r line in:\n%s" % (label, out)
    return m.group(1).strip()


def test_demo_prints_the_status_page_and_a_revert_that_works(demo):
    """The demo starts with the admin socket and the status page on: the URL it prints answers
    with the page and its /status, and the revert line it prints sends every request to blue."""
    import json
    import urllib.request
    assert demo.returncode == 0, demo.stdout + demo.stderr
    url = printed(demo.stdout, "Status page").split()[0]
    assert url == "http://127.0.0.1:9901/", demo.stdout
    with urllib.request.urlopen(url, timeout=10) as r:
        assert r.status == 200 and r.headers["content-type"].startswith("text/html")
        assert b'fetch("status"' in r.read()
    with urllib.request.urlopen(url + "status", timeout=10) as r:
        s = json.loads(r.read())
    revert = printed(demo.stdout, "Revert to blue at once")
    assert revert.endswith(" -s %s revert demo" % s["admin_socket"]), (revert, s["admin_socket"])
    assert [a["name"] for a in s["apps"]] == ["demo"] and s["apps"][0]["override"] is None

    r = subprocess.run(revert.split(), capture_output=True, text=True, timeout=30)
    assert r.returncode == 0 and r.stdout.endswith("ok\n"), r.stdout + r.stderr
    seen = subprocess.run(["bash", "-c", "for i in $(seq 20); do curl -s http://127.0.0.1:8080/;"
                           " done | sort | uniq -c"], capture_output=True, text=True, timeout=60)
    assert re.findall(r"(\d+) (\w+-1)", seen.stdout) == [("20", "blue-1")], seen.stdout
    with urllib.request.urlopen(url + "status", timeout=10) as r:
        s = json.loads(r.read())
    assert s["apps"][0]["override"]["command"] == "revert demo"
    assert s["history"][-1]["command"] == "revert demo"

    watch = printed(demo.stdout, "Watch in a terminal").split() + ["--count", "1"]
    r = subprocess.run(watch, capture_output=True, text=True, timeout=30)
    assert r.returncode == 0 and "OVERRIDE blue=100 by uid" in r.stdout, r.stdout + r.stderr
    release = printed(demo.stdout, "Back to the file's weights")
    r = subprocess.run(release.split(), capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stdout + r.stderr


def test_demo_stop_then_start_at_once_comes_up(demo):
    """`run.sh stop` returns once what it started has exited, so a start right after it finds
    the ports free (a stop that only signalled left 8080 taken for shutdown.delay)."""
    assert demo.returncode == 0, demo.stdout + demo.stderr
    stopped = subprocess.run(["sh", DEMO, "stop"], capture_output=True, text=True, timeout=60)
    assert "stopped switchyard" in stopped.stdout, stopped.stdout + stopped.stderr
    again = subprocess.run(["sh", DEMO], capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stdout + again.stderr
    r = subprocess.run(["curl", "-s", "http://127.0.0.1:8080/"], capture_output=True, text=True,
                       timeout=30)
    assert r.stdout.strip() in ("blue-1", "green-1"), r.stdout
