# SPDX-License-Identifier: MIT
"""The admin socket under abuse by other local users (clients run as nobody, uid 65534, with
setuid in a preexec_fn; the tests run as root): a refused uid that opens many connections and
keeps sending cannot lock root out, and each of its connections is closed within the refusal's
linger however much it sends; an allow-listed uid cannot take the slots kept for root; a uid
of admin.allow_read_uids may run status, explain, history, ident and help, and a change from
it is refused and changes nothing."""

import os
import re
import subprocess
import sys
import time
from collections import Counter

import pytest

from admin_util import SWITCHYARDCTL, ctl, tags
from helpers import measure

pytestmark = [
    pytest.mark.skipif(
        not (SWITCHYARDCTL and os.access(SWITCHYARDCTL, os.X_OK)),
        reason="SWITCHYARDCTL is not an executable (path to switchyardctl; meson test sets it)"),
    pytest.mark.skipif(os.getuid() != 0, reason="needs root to run clients as nobody"),
]

NOBODY = 65534
BLUE, GREEN = "blue-1", "green-1"
LINGER_S = 2  # admin/server.c: how long a refused peer is drained, at most

# Opens N connections to an admin socket and keeps them for HOLD seconds; with TRICKLE=1 it
# sends a byte on each every 0.2 s (as a peer that wants to keep a refusal lingering would).
# Prints "open N" once connected, then "closed I T" when the server closed connection I (a
# send fails) T seconds after it was opened, and "done" at the end.
HOLDER = r"""
import socket, sys, time
path, n, hold, trickle = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), sys.argv[4] == "1"
socks, opened = [], []
for _ in range(n):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.connect(path)
    except OSError:
        s.close()
        continue
    s.setblocking(False)
    socks.append(s)
    opened.append(time.monotonic())
print("open %d" % len(socks), flush=True)
alive = set(range(len(socks)))
end = time.monotonic() + hold
while time.monotonic() < end and alive:
    for i in sorted(alive):
        try:
            while socks[i].recv(4096):
                pass
        except BlockingIOError:
            pass
        except OSError:
            pass
        if trickle:
            try:
                socks[i].send(b"x")
            except BlockingIOError:
                pass
            except OSError:
                print("closed %d %.2f" % (i, time.monotonic() - opened[i]), flush=True)
                alive.discard(i)
    time.sleep(0.2)
print("done", flush=True)
"""


def as_nobody():
    os.setgroups([])
    os.setgid(NOBODY)
    os.setuid(NOBODY)


def holder(sock, n, hold, trickle):
    p = subprocess.Popen([sys.executable, "-c", HOLDER, sock, str(n), str(hold),
                          "1" if trickle else "0"],
                         stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, text=True,
                         preexec_fn=as_nobody)
    line = p.stdout.readline()
    assert line.startswith("open "), line
    return p, int(line.split()[1])


def finish(p, timeout):
    out, _ = p.communicate(timeout=timeout)
    return out


def web(blue, green):
    return {"name": "web", "hosts": ["*"], "stable": "blue",
            "weights": {"blue": blue, "green": green}}


def status_ok(p):
    r = ctl("status", sockets=[p.socket], timeout=20)
    return r.returncode == 0 and r.stdout.endswith("ok\n"), r


def journal_seq(p):
    r = ctl("ident", sockets=[p.socket])
    return int(re.search(r"journal seq (\d+)", r.stdout).group(1))


def test_refused_uid_cannot_lock_root_out(admin_proxy):
    # An allow list for another uid makes the socket 0666: nobody can connect, and is refused.
    p = admin_proxy([web(50, 50)], admin={"allow_uids": [4242]})
    assert os.stat(p.socket).st_mode & 0o777 == 0o666
    h, opened = holder(p.socket, 100, 6, trickle=True)
    try:
        assert opened >= 64, "nobody opened only %d connections" % opened
        time.sleep(0.5)
        for _ in range(3):
            ok, r = status_ok(p)
            assert ok, "root locked out by refused peers: rc %d %r %r" % (
                r.returncode, r.stdout[-300:], r.stderr)
            time.sleep(0.5)
    finally:
        finish(h, 30)
    log = p.log_text()
    refusals = len(re.findall(r"refused uid 65534", log))
    assert 1 <= refusals <= 12, "%d refusal lines for 6 s of abuse" % refusals


def test_refusal_linger_is_a_deadline(admin_proxy):
    p = admin_proxy([web(50, 50)], admin={"allow_uids": [4242]})
    # A refused peer that sends a byte every 0.2 s: it is closed LINGER_S after the refusal
    # all the same (a timer that each byte re-arms would keep it forever).
    h, opened = holder(p.socket, 1, 4 * LINGER_S + 2, trickle=True)
    assert opened == 1
    out = finish(h, 60)
    closed = [float(line.split()[2]) for line in out.splitlines() if line.startswith("closed")]
    assert closed, "the refused peer was never closed; holder said:\n%s" % out
    measure("admin_refused_trickler_closed_after", "%.2f" % closed[0], "s",
            "a byte every 0.2 s; linger %d s" % LINGER_S)
    assert closed[0] <= LINGER_S + 2.5, "closed after %.1f s" % closed[0]


def test_allowed_uid_cannot_take_the_slots_kept_for_root(admin_proxy):
    p = admin_proxy([web(50, 50)], admin={"allow_uids": [NOBODY]})
    h, opened = holder(p.socket, 100, 5, trickle=False)
    try:
        time.sleep(0.5)
        # nobody has every slot it may have: one more is refused, root still gets in.
        ok, r = status_ok(p)
        assert ok, "root locked out by allow-listed peers: rc %d %r %r" % (
            r.returncode, r.stdout[-300:], r.stderr)
        r = subprocess.run([SWITCHYARDCTL, "-s", p.socket, "status"], capture_output=True,
                           text=True, timeout=20, preexec_fn=as_nobody)
        assert r.returncode == 1 and "too many admin connections" in r.stderr, (r.returncode,
                                                                                 r.stdout,
                                                                                 r.stderr)
    finally:
        finish(h, 30)


def test_read_only_uid_may_read_but_not_change(admin_proxy):
    p = admin_proxy([web(50, 50)], admin={"allow_read_uids": [NOBODY]})
    assert os.stat(p.socket).st_mode & 0o777 == 0o666

    def as_reader(*args):
        return subprocess.run([SWITCHYARDCTL, "-s", p.socket] + list(args),
                              capture_output=True, text=True, timeout=20, preexec_fn=as_nobody)

    for args in (["status"], ["ident"], ["help"], ["history"], ["explain", "app.test", "/"],
                 ["--json", "status"]):
        r = as_reader(*args)
        assert r.returncode == 0, (args, r.returncode, r.stdout, r.stderr)
    for args in (["revert", "--all"], ["revert", "web"], ["weights", "web", "blue=100",
                                                          "green=0"],
                 ["switch", "web", "blue"], ["release", "--all"], ["reload"]):
        r = as_reader(*args)
        assert r.returncode == 1, (args, r.returncode, r.stdout, r.stderr)
        assert "error: permission denied" in r.stderr and "may only read" in r.stderr, (
            args, r.stderr)
    assert journal_seq(p) == 0
    assert Counter(tags(p.port, 10)) == {BLUE: 5, GREEN: 5}
    assert "revert" not in ctl("history", sockets=[p.socket]).stdout
    # Root still changes what it likes.
    r = ctl("revert", "--all", sockets=[p.socket])
    assert r.returncode == 0, (r.stdout, r.stderr)
    assert Counter(tags(p.port, 10)) == {BLUE: 10}
