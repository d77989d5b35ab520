# SPDX-License-Identifier: MIT
"""The overrides journal when its disk fails, end to end: a state file on a full file system
(a 64 KiB tmpfs this test mounts and fills), on a file system that turns read-only under the
running daemon (ext4 on a loop device, errors=remount-ro, with an error triggered through
sysfs), and on a tmpfs remounted read-only while switchyard is stopped. A change the journal
cannot make durable answers `error:` with the reason, publishes nothing (traffic proves it) and
leaves the journal readable; once the disk is back the next change works, and a restart
replays every acknowledged change and none of the refused ones. Also: a state directory that
others can write stops the start and `switchyard -t`. Needs root (mount); skips, with the
reason, where mounting is impossible."""

import json
import os
import re
import shutil
import subprocess
from collections import Counter

import pytest

import conftest
from admin_util import SWITCHYARDCTL, AdminProxy, socket_dir, tags

pytestmark = pytest.mark.skipif(
    not (SWITCHYARDCTL and os.access(SWITCHYARDCTL, os.X_OK)),
    reason="SWITCHYARDCTL is not an executable (path to switchyardctl; meson test sets it)")

BLUE, GREEN = "blue-1", "green-1"
ENOSPC_TEXT = os.strerror(28)   # "No space left on device"
EROFS_TEXT = os.strerror(30)    # "Read-only file system"


def web(blue, green):
    return {"name": "web", "hosts": ["*"], "stable": "blue",
            "weights": {"blue": blue, "green": green}}


def split(p, n=20):
    return Counter(tags(p.port, n, path="/split"))


def run(*args, check=True):
    p = subprocess.run(list(args), stdin=subprocess.DEVNULL, capture_output=True, text=True,
                       timeout=60)
    if check and p.returncode != 0:
        raise AssertionError("%s: rc %d\n%s%s" % (" ".join(args), p.returncode, p.stdout,
                                                  p.stderr))
    return p


def mount_or_skip(args, what):
    """Runs mount ARGS; skips the test, saying why, when this machine cannot mount."""
    if os.geteuid() != 0:
        pytest.skip("%s: needs root to mount (uid %d)" % (what, os.geteuid()))
    p = run("mount", *args, check=False)
    if p.returncode != 0:
        pytest.skip("%s: cannot mount here: %s" % (what, (p.stderr or p.stdout).strip()))


def umount(path):
    if os.path.ismount(path):
        p = run("umount", path, check=False)
        if p.returncode != 0:
            run("umount", "-l", path, check=False)


def fill(directory):
    """Writes a file until the file system has no block left; returns its path."""
    path = os.path.join(directory, "filler")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        for _ in range(1 << 16):  # far more than 64 KiB in 4 KiB blocks
            try:
                os.write(fd, b"x" * 4096)
            except OSError as e:
                assert e.errno == 28, e
                break
        while True:  # the last partial block
            try:
                if os.write(fd, b"x") == 0:
                    break
            except OSError as e:
                assert e.errno == 28, e
                break
    finally:
        os.close(fd)
    return path


def records(path):
    """The journal's records: every line must be whole JSON (a torn tail is a failure here:
    after a refused write the file must be exactly as it was)."""
    with open(path, "rb") as f:
        data = f.read()
    assert data == b"" or data.endswith(b"\n"), data[-200:]
    return [json.loads(line) for line in data.split(b"\n") if line]


def commands(path):
    return [r["cmd"] for r in records(path)]


def journal_seq(p):
    return int(re.search(r"journal seq (\d+)", p.ctl_ok("ident")).group(1))


def refused(p, *args, reason):
    """switchyardctl ARGS must answer `error:` naming `reason`."""
    r = p.ctl(*args)
    out = r.stdout + r.stderr
    assert r.returncode != 0, out
    assert "error:" in out and reason in out, out
    return out


def start_fails(p):
    """Starts switchyard, which must exit 1; returns its log."""
    p.start(wait=False)
    try:
        rc = p.proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        p.stop()
        raise AssertionError("switchyard started; log:\n%s" % p.log_text()[-2000:])
    p._logf.close()
    p.stopped = True
    assert rc == 1, p.log_text()
    return p.log_text()


@pytest.fixture
def proxies(backends, tmp_path):
    started = []
    sockdir = socket_dir()

    def make(apps, state):
        p = AdminProxy(tmp_path, sockdir, backends, apps, state=state)
        started.append(p)
        return p

    yield make
    # Stopped here too (a failing test may leave one running), before the mounts go.
    for p in started:
        p.stop()
    shutil.rmtree(sockdir, ignore_errors=True)


# -- a full disk ------------------------------------------------------------------------------

def test_change_on_a_full_disk_is_refused_publishes_nothing_and_is_never_replayed(
        proxies, tmp_path):
    mnt = str(tmp_path / "state")
    os.mkdir(mnt)
    mount_or_skip(["-t", "tmpfs", "-o", "size=64k,mode=0700", "tmpfs", mnt], "full disk")
    p = None
    try:
        state = os.path.join(mnt, "state.jsonl")
        p = proxies([web(0, 100)], state)
        p.start()
        assert os.path.getsize(state) == 0  # the new journal holds no block yet
        assert split(p) == {GREEN: 20}

        # Not one block left: the first record cannot be written.
        filler = fill(mnt)
        refused(p, "revert", "web", reason=ENOSPC_TEXT)
        assert split(p) == {GREEN: 20}  # nothing published
        assert journal_seq(p) == 0
        assert records(state) == []
        assert "seq 0" in p.ctl_ok("ident")

        # Space is back: the next revert works.
        os.unlink(filler)
        p.ctl_ok("revert", "web")
        assert split(p) == {BLUE: 20}
        p.ctl_ok("weights", "web", "blue=50", "green=50")
        acked = ["revert web", "weights web blue=50 green=50"]

        # Full again, with room left in the journal's last block: changes are taken until
        # one does not fit, which is then cut off whole (it may have been half written).
        filler = fill(mnt)
        out = None
        for i in range(60):
            cmd = ["switch", "web", "green"] if i % 2 == 0 else ["revert", "web"]
            size = os.path.getsize(state)
            r = p.ctl(*cmd)
            if r.returncode == 0:
                acked.append(" ".join(cmd))
                continue
            out = r.stdout + r.stderr
            assert "error:" in out and ENOSPC_TEXT in out, out
            assert os.path.getsize(state) == size
            break
        assert out is not None, "60 changes fit on a full 64 KiB file system?"
        assert commands(state) == acked
        # Traffic still goes by the last acknowledged change.
        last = acked[-1]
        want = {GREEN: 20} if last == "switch web green" else \
            {BLUE: 20} if last == "revert web" else {BLUE: 10, GREEN: 10}
        assert split(p) == want
        assert journal_seq(p) == len(acked)

        os.unlink(filler)
        p.ctl_ok("revert", "web")
        acked.append("revert web")
        p.ctl_ok("switch", "web", "green")
        acked.append("switch web green")

        # A crash, and a start on the same journal: every acknowledged change, no other.
        p.kill9()
        p.start()
        assert journal_seq(p) == len(acked)
        assert commands(state) == acked
        assert split(p) == {GREEN: 20}
        assert p.stop() is None
    finally:
        if p:
            p.stop()
        umount(mnt)


# -- a read-only disk -------------------------------------------------------------------------

def test_change_on_a_disk_turned_read_only_is_refused_and_never_replayed(proxies, tmp_path):
    """The file system goes read-only under the running daemon, as the kernel does it after
    an I/O error (errors=remount-ro). An ordinary `mount -o remount,ro` cannot do that: it
    is refused with EBUSY while the journal is open for writing (see the next test)."""
    if not (shutil.which("mkfs.ext4") and shutil.which("e2fsck")):
        pytest.skip("read-only disk: mkfs.ext4 and e2fsck (e2fsprogs) are not installed")
    image = str(tmp_path / "ext4.img")
    mnt = str(tmp_path / "state")
    os.mkdir(mnt)
    with open(image, "wb") as f:
        f.truncate(8 << 20)
    run("mkfs.ext4", "-q", "-F", image)
    mount_or_skip(["-o", "loop,errors=remount-ro", image, mnt], "read-only disk")
    p = None
    try:
        dev = os.path.basename(run("findmnt", "-n", "-o", "SOURCE", mnt).stdout.strip())
        trigger = "/sys/fs/ext4/%s/trigger_fs_error" % dev
        if not os.path.exists(trigger):
            pytest.skip("read-only disk: this kernel has no %s" % trigger)
        os.chmod(mnt, 0o700)
        state = os.path.join(mnt, "state.jsonl")
        p = proxies([web(50, 50)], state)
        p.start()
        p.ctl_ok("switch", "web", "green")
        assert split(p) == {GREEN: 20}

        with open(trigger, "w") as f:
            f.write("switchyard test: the disk turns read-only\n")
        refused(p, "revert", "web", reason=EROFS_TEXT)
        assert split(p) == {GREEN: 20}  # nothing published
        assert journal_seq(p) == 1
        assert commands(state) == ["switch web green"]  # readable, and as it was
        # The failed write could not be undone on a read-only disk: every later change is
        # refused too (the journal asks for a restart) rather than risk a replay of it.
        refused(p, "revert", "web", reason="restart switchyard")
        assert split(p) == {GREEN: 20}
        assert p.stop() is None

        # A start on the read-only disk is refused, loudly; nothing is lost.
        log = start_fails(p)
        assert "%s: cannot open the overrides journal: %s" % (state, EROFS_TEXT) in log, log

        # The disk repaired (fsck) and mounted again: the acknowledged change, and only it.
        umount(mnt)
        fsck = run("e2fsck", "-fy", image, check=False)
        assert fsck.returncode in (0, 1), fsck.stdout + fsck.stderr
        run("mount", "-o", "loop,errors=remount-ro", image, mnt)
        p.start()
        assert journal_seq(p) == 1
        assert split(p) == {GREEN: 20}
        p.ctl_ok("revert", "web")
        assert split(p) == {BLUE: 20}
        p.kill9()
        p.start()
        assert commands(state) == ["switch web green", "revert web"]
        assert split(p) == {BLUE: 20}
        assert p.stop() is None
    finally:
        if p:
            p.stop()
        umount(mnt)


def test_read_only_remount_waits_for_the_journal_and_a_start_on_it_is_refused(
        proxies, tmp_path):
    mnt = str(tmp_path / "state")
    os.mkdir(mnt)
    mount_or_skip(["-t", "tmpfs", "-o", "size=64k,mode=0700", "tmpfs", mnt], "read-only tmpfs")
    p = None
    try:
        state = os.path.join(mnt, "state.jsonl")
        p = proxies([web(50, 50)], state)
        p.start()
        p.ctl_ok("switch", "web", "green")
        # The kernel will not make a file system read-only under a file open for writing.
        r = run("mount", "-o", "remount,ro", mnt, check=False)
        assert r.returncode != 0, "remounted read-only under the open journal"
        p.ctl_ok("weights", "web", "blue=10", "green=90")
        assert p.stop() is None

        run("mount", "-o", "remount,ro", mnt)
        log = start_fails(p)
        assert "%s: cannot open the overrides journal: %s" % (state, EROFS_TEXT) in log, log
        assert "cannot use the overrides journal: not starting" in log, log

        run("mount", "-o", "remount,rw", mnt)
        p.start()
        assert commands(state) == ["switch web green", "weights web blue=10 green=90"]
        assert journal_seq(p) == 2
        assert split(p) == {BLUE: 2, GREEN: 18}
        assert p.stop() is None
    finally:
        if p:
            p.stop()
        umount(mnt)


# -- a state directory others can write -------------------------------------------------------

@pytest.mark.parametrize("mode", [0o777, 0o1777, 0o770])
def test_state_dir_writable_by_others_stops_the_start_and_the_check(proxies, tmp_path, mode):
    d = tmp_path / "shared"
    d.mkdir()
    os.chmod(d, mode)
    state = str(d / "state.jsonl")
    p = proxies([web(50, 50)], state)
    want = "the directory %s of the overrides journal is writable by" % d
    want_mode = "(mode %04o)" % mode
    log = start_fails(p)
    assert want in log and want_mode in log, log
    assert not os.path.exists(state)
    check = run(conftest.SWITCHYARD, "-t", "-c", p.config, check=False)
    assert check.returncode == 1, check.stdout + check.stderr
    assert want in check.stderr and want_mode in check.stderr, check.stderr
    # Made private, it starts.
    os.chmod(d, 0o700)
    assert run(conftest.SWITCHYARD, "-t", "-c", p.config).returncode == 0
    p.start()
    p.ctl_ok("switch", "web", "green")
    assert split(p) == {GREEN: 20}
    assert p.stop() is None
