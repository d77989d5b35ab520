# SPDX-License-Identifier: MIT
"""Out of file descriptors: switchyard started with RLIMIT_NOFILE soft = hard = 64 (so that
raising the soft limit to the hard one at start cannot help) and 100 idle client connections
opened at once. The accept loops must not spin (the proxy's CPU time over 4 s, read from
/proc/PID/stat, stays small and the log stays short), `switchyardctl status` still answers (the
admin socket keeps descriptors of its own), and once the idle clients go, a new client is served.
"""

import os
import resource
import shutil
import socket
import time

import pytest

from admin_util import SWITCHYARDCTL, AdminProxy, ctl, socket_dir
import helpers
from helpers import curl1, measure

pytestmark = pytest.mark.skipif(
    not (SWITCHYARDCTL and os.access(SWITCHYARDCTL, os.X_OK)),
    reason="SWITCHYARDCTL is not an executable (path to switchyardctl; meson test sets it)")

NOFILE = 64
IDLE_CLIENTS = 100
WINDOW_S = 4.0
MAX_CPU_S = 0.5      # of CPU time over WINDOW_S (a spinning accept loop burns ~WINDOW_S)
MAX_LOG_LINES = 40   # over WINDOW_S (a spinning loop logs hundreds of thousands)


def low_nofile():
    resource.setrlimit(resource.RLIMIT_NOFILE, (NOFILE, NOFILE))


def cpu_seconds(pid):
    """utime + stime of a process (all its threads), in seconds."""
    with open("/proc/%d/stat" % pid, encoding="ascii") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    # fields[0] is field 3 (state): utime and stime are fields 14 and 15.
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def log_lines(p):
    return p.log_text().count("\n")


@pytest.fixture
def starved_proxy(backends, tmp_path):
    """Factory: starved_proxy(limits=None, workers=2) -> an AdminProxy (an admin socket) under
    RLIMIT_NOFILE 64, started."""
    sockdir = socket_dir()
    started = []

    def start(limits=None, workers=2):
        p = AdminProxy(tmp_path, sockdir, backends,
                       [{"name": "web", "hosts": ["*"], "weights": {"blue": 100, "green": 0}}],
                       workers=workers, preexec_fn=low_nofile)
        if limits:
            p.spec["limits"] = limits
            p.write_config()
        started.append(p)
        return p.start()

    yield start
    errors = [e for e in (p.stop() for p in started) if e]
    shutil.rmtree(sockdir, ignore_errors=True)
    if errors:
        pytest.fail("\n".join(errors), pytrace=False)


def open_idle(port, n):
    out = []
    for _ in range(n):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.settimeout(5)
        s.connect(("127.0.0.1", port))  # completes in the backlog, accepted or not
        out.append(s)
    return out


def busy_window(p):
    """(CPU seconds, log lines, elapsed) of the proxy over WINDOW_S from now."""
    cpu0, lines0, t0 = cpu_seconds(p.pid), log_lines(p), time.monotonic()
    time.sleep(WINDOW_S)
    return cpu_seconds(p.pid) - cpu0, log_lines(p) - lines0, time.monotonic() - t0


def test_out_of_descriptors_the_accept_loops_do_not_spin_and_admin_still_answers(
        starved_proxy):
    p = starved_proxy()
    idle = []
    try:
        idle = open_idle(p.port, IDLE_CLIENTS)
        time.sleep(0.5)  # the accepts that can happen have happened
        cpu, lines, elapsed = busy_window(p)
        measure("fd_exhaustion_cpu", "%.2f" % cpu, "s",
                "CPU over %.1f s, %d idle clients, RLIMIT_NOFILE %d" % (elapsed, IDLE_CLIENTS,
                                                                      NOFILE))
        measure("fd_exhaustion_log_lines", lines, "", "over %.1f s" % elapsed)

        t = time.monotonic()
        r = ctl("status", sockets=[p.socket], timeout=20)
        status_s = time.monotonic() - t
        measure("fd_exhaustion_status", "%.3f" % status_s, "s")

        assert cpu < MAX_CPU_S, "the proxy burnt %.2f s of CPU in %.1f s: accept loop spins" % (
            cpu, elapsed)
        assert lines < MAX_LOG_LINES, "%d log lines in %.1f s; tail:\n%s" % (
            lines, elapsed, p.log_text()[-2000:])
        assert r.returncode == 0 and r.stdout.endswith("ok\n"), (r.returncode, r.stdout,
                                                                 r.stderr)
        assert status_s < 5.0, "status took %.1f s" % status_s
        assert helpers.log_has(p, "out of file descriptors")
        assert helpers.log_has(p, "open files"), "the descriptor limit is not logged at start"
    finally:
        for s in idle:
            s.close()

    # The idle clients are gone: a new client is served (the paused listeners resume).
    deadline = time.monotonic() + 10
    while True:
        resp = curl1(p.url + "/after", "-H", "Host: app.test", timeout=5, check=False)
        if resp.status == 200 or time.monotonic() > deadline:
            break
        time.sleep(0.1)  # polling: the pause between accept attempts has no signal of its own
    assert resp.status == 200, resp


def test_with_no_reserve_emfile_pauses_every_accept_loop(starved_proxy):
    """limits.reserved_fds: 0 lets clients take every descriptor: the workers' accept() and
    the admin socket's then fail with EMFILE, and each must pause rather than spin."""
    p = starved_proxy(limits={"reserved_fds": 0})
    idle, admins = [], []
    try:
        idle = open_idle(p.port, IDLE_CLIENTS)
        time.sleep(0.5)
        for _ in range(4):  # admin connections waiting in the admin socket's backlog
            a = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            a.settimeout(5)
            a.connect(p.socket)
            admins.append(a)
        time.sleep(0.5)
        cpu, lines, elapsed = busy_window(p)
        measure("fd_exhaustion_no_reserve_cpu", "%.2f" % cpu, "s", "over %.1f s" % elapsed)
        measure("fd_exhaustion_no_reserve_log_lines", lines, "", "over %.1f s" % elapsed)
        log = p.log_text()
        assert cpu < MAX_CPU_S, "the proxy burnt %.2f s of CPU in %.1f s: accept loop spins" % (
            cpu, elapsed)
        assert lines < MAX_LOG_LINES, "%d log lines in %.1f s; tail:\n%s" % (
            lines, elapsed, log[-2000:])
        assert "Too many open files" in log, log[-2000:]
        assert "admin: out of file descriptors" in log, log[-2000:]
    finally:
        for s in idle + admins:
            s.close()
    deadline = time.monotonic() + 10
    while True:
        r = ctl("status", sockets=[p.socket], timeout=5)
        if r.returncode == 0 or time.monotonic() > deadline:
            break
        time.sleep(0.1)  # polling: the admin socket's pause has no signal of its own
    assert r.returncode == 0, (r.stdout, r.stderr)
    assert helpers.log_has(p, "admin: accepting again")


IDLE_UPSTREAM = 16
NEW_CLIENTS = 30


def send_get(s, path):
    s.sendall(b"GET " + path.encode() + b" HTTP/1.1\r\nHost: app.test\r\n\r\n")


def get_on(s, path):
    """Sends one GET on socket s and reads its answer whole; returns the status code, or None
    when the proxy closed the connection unanswered."""
    send_get(s, path)
    return read_answer(s)


def read_answer(s):
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = s.recv(4096)
        if not chunk:
            return None
        data += chunk
    head, body = data.split(b"\r\n\r\n", 1)
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(body) < length:
        chunk = s.recv(4096)
        if not chunk:
            return None
        body += chunk
    return int(head.split(b" ")[1])


def test_idle_upstream_connections_give_their_descriptors_to_new_clients(starved_proxy):
    """16 requests at once leave 16 idle keep-alive connections to blue (upstream_keepalive
    keeps them); then 30 new clients, each kept open, send one request each. Without room for
    them under RLIMIT_NOFILE 64 (16 kept in reserve), a client past the reserve would be closed
    unanswered while idle connections to the cluster hold descriptors nobody uses: they must
    give way."""
    p = starved_proxy(limits={"upstream_keepalive": 64}, workers=1)
    busy = [socket.create_connection(("127.0.0.1", p.port), timeout=10)
            for _ in range(IDLE_UPSTREAM)]
    try:
        for s in busy:
            send_get(s, "/sleep/1")
        statuses = [read_answer(s) for s in busy]
        assert statuses == [200] * IDLE_UPSTREAM, statuses
    finally:
        for s in busy:
            s.close()
    time.sleep(0.3)  # the proxy has seen the clients go; their cluster connections stay idle

    served, kept = 0, []
    try:
        for i in range(NEW_CLIENTS):
            s = socket.create_connection(("127.0.0.1", p.port), timeout=10)
            kept.append(s)
            try:
                status = get_on(s, "/new/%d" % i)
            except (ConnectionResetError, socket.timeout):
                status = None
            if status == 200:
                served += 1
        measure("fd_idle_upstream_clients_served", served, "",
                "of %d new clients after %d idle cluster connections, RLIMIT_NOFILE %d" % (
                    NEW_CLIENTS, IDLE_UPSTREAM, NOFILE))
        assert served == NEW_CLIENTS, "%d of %d new clients served; log tail:\n%s" % (
            served, NEW_CLIENTS, p.log_text()[-1500:])
    finally:
        for s in kept:
            s.close()
