# SPDX-License-Identifier: MIT
"""The alerting rules shipped in conf/prometheus/: valid for Prometheus (`promtool check rules`)
and doing what they say on known series (`promtool test rules`: each alert fires on the case it
is for and stays quiet on its near miss)."""

import os
import shutil
import subprocess

import pytest

from conftest import SOURCE_ROOT

RULES_DIR = os.path.join(SOURCE_ROOT, "conf", "prometheus")
PROMTOOL = shutil.which("promtool")

pytestmark = pytest.mark.skipif(PROMTOOL is None, reason="promtool (Debian prometheus) is not installed")


def promtool(*args):
    return subprocess.run([PROMTOOL, *args], cwd=RULES_DIR, capture_output=True, text=True, timeout=60)


def test_the_shipped_rules_are_valid_for_prometheus():
    r = promtool("check", "rules", "switchyard.rules.yml")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "SUCCESS" in r.stdout


def test_every_alert_fires_on_its_case_and_not_on_its_near_miss():
    r = promtool("test", "rules", "switchyard.rules.test.yml")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "SUCCESS" in r.stdout


def test_every_alert_in_the_rules_has_a_unit_test():
    with open(os.path.join(RULES_DIR, "switchyard.rules.yml")) as f:
        alerts = {l.split(":", 1)[1].strip() for l in f if l.strip().startswith("- alert:")}
    with open(os.path.join(RULES_DIR, "switchyard.rules.test.yml")) as f:
        tested = {l.split(":", 1)[1].strip() for l in f if l.strip().startswith("- alertname:")}
    assert alerts, "no alert found in the rules"
    assert alerts <= tested, f"alerts without a promtool test: {sorted(alerts - tested)}"
