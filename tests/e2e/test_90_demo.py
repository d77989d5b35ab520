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
