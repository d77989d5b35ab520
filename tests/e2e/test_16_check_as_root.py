# SPDX-License-Identifier: MIT
"""`switchyard -t` run by root on a file whose journal directory belongs to the service's user
(issue 18: the Debian package's /etc/switchyard/switchyard.yaml and /var/lib/switchyard, owned
by `switchyard`).

-t cannot know which user the daemon will run as, so it passes such a file and names the user
the daemon must run as; the daemon itself, started as root on it, still refuses that directory
(so the note is true); as the owner, -t passes with no note; a directory its group may write in
is still refused by -t, whoever runs it.
"""

import os
import pwd
import shutil
import subprocess
import tempfile

import pytest

import helpers
from conftest import SWITCHYARD

OWNER = 65534  # nobody, on Debian


def config(dirname, state_dir):
    return """\
listen:
  - address: 127.0.0.1:%d
admin:
  socket: %s/admin.sock
state: %s/state.json
clusters:
  blue:
    endpoints: [127.0.0.1:9]
apps:
  - name: web
    hosts: ["*"]
    weights: { blue: 100 }
""" % (helpers.free_port(), dirname, state_dir)


@pytest.fixture
def layout():
    """A 0755 directory (others can reach it) holding the file and the admin socket's place,
    and in it a 0750 state directory owned by uid 65534."""
    if os.geteuid() != 0:
        pytest.fail("this test needs root: it is about `switchyard -t` run as root")
    top = tempfile.mkdtemp(prefix="sy-owner-")
    os.chmod(top, 0o755)
    state = os.path.join(top, "state")
    os.mkdir(state, 0o750)
    os.chown(state, OWNER, OWNER)
    path = os.path.join(top, "switchyard.yaml")
    with open(path, "w", encoding="utf-8") as f:
        f.write(config(top, state))
    os.chmod(path, 0o644)
    yield path, state
    shutil.rmtree(top, ignore_errors=True)


def run(args, uid=None):
    pre = (lambda: (os.setgroups([]), os.setgid(OWNER), os.setuid(uid))) \
        if uid is not None else None
    return subprocess.run([SWITCHYARD] + args, capture_output=True, text=True, timeout=30,
                          preexec_fn=pre)


def test_root_check_passes_and_names_the_user_the_daemon_must_run_as(layout):
    path, state = layout
    p = run(["-t", "-c", path])
    assert p.returncode == 0, "stdout:\n%s\nstderr:\n%s" % (p.stdout, p.stderr)
    assert "%s: ok: 1 apps, 1 clusters, 1 listeners" % path in p.stdout, p.stdout
    name = pwd.getpwuid(OWNER).pw_name
    note = ("note: %s (the overrides journal's directory) belongs to %s (uid %d): the daemon "
            "must run as that user (as uid 0 it would refuse to keep its journal there)"
            % (state, name, OWNER))
    assert note in p.stdout, p.stdout


def test_the_daemon_as_root_still_refuses_that_directory(layout):
    path, state = layout
    p = run(["-c", path])
    assert p.returncode == 1, "stdout:\n%s\nstderr:\n%s" % (p.stdout, p.stderr)
    assert "belongs to uid %d, not to this user (uid 0) or root" % OWNER in p.stderr, p.stderr
    assert not os.path.exists(os.path.join(state, "state.json"))


def test_the_owner_checks_it_without_a_note(layout):
    path, _ = layout
    p = run(["-t", "-c", path], uid=OWNER)
    assert p.returncode == 0, "stdout:\n%s\nstderr:\n%s" % (p.stdout, p.stderr)
    assert ": ok: " in p.stdout and "note:" not in p.stdout, p.stdout


def test_a_directory_its_group_may_write_is_still_refused(layout):
    path, state = layout
    os.chmod(state, 0o770)
    for uid in (None, OWNER):
        p = run(["-t", "-c", path], uid=uid)
        assert p.returncode == 1, "uid %s: %s" % (uid, p.stdout)
        assert "writable by its group (mode 0770)" in p.stderr, p.stderr
