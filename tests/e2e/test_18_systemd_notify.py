# SPDX-License-Identifier: MIT
"""systemd's notify protocol (issue #18), spoken to a listener of our own on $NOTIFY_SOCKET as
systemd would be: READY=1 only once every worker has its first snapshot, RELOADING=1 (with
MONOTONIC_USEC) and READY=1 around a SIGHUP reload, STOPPING=1 on SIGTERM, and WATCHDOG=1 at
half of $WATCHDOG_USEC, only while every worker answers (one worker thread is stopped with
ptrace to show it). Nothing is sent without NOTIFY_SOCKET."""

import ctypes
import os
import signal
import socket
import subprocess
import time

import pytest

import helpers
from conftest import SOURCE_ROOT, SWITCHYARD, default_clusters, make_config

DEADLINE = 10.0


class Listener:
    """A datagram socket where systemd's would be: every message with its arrival time."""

    def __init__(self, path):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path)
        self.name = path if path[0] != "\0" else "@" + path[1:]
        self.msgs = []  # (monotonic time, {key: value}, raw text)

    def _take(self, timeout):
        self.sock.settimeout(max(timeout, 0.001))
        try:
            data = self.sock.recv(65536)
        except socket.timeout:
            return None
        text = data.decode()
        fields = dict(line.split("=", 1) for line in text.splitlines() if line)
        m = (time.monotonic(), fields, text)
        self.msgs.append(m)
        return m

    def wait(self, key, value=None, timeout=DEADLINE):
        """The next message (after those already read) that sets `key` (to `value`)."""
        deadline = time.monotonic() + timeout
        while True:
            m = self._take(deadline - time.monotonic())
            if m is None:
                raise AssertionError("no %s=%s within %.1f s; got %r" % (
                    key, value or "*", timeout, [x[2] for x in self.msgs]))
            if key in m[1] and (value is None or m[1][key] == value):
                return m

    def drain_for(self, seconds):
        """Every message that arrives in the next `seconds`."""
        out = []
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            m = self._take(deadline - time.monotonic())
            if m:
                out.append(m)
        return out

    def close(self):
        self.sock.close()


class Daemon:
    def __init__(self, tmp_path, backends, env, workers=2, apps=None, port=None):
        self.port = port or helpers.free_port()
        self.url = "http://127.0.0.1:%d/" % self.port
        self.config = str(tmp_path / "sy.yaml")
        self.backends = backends
        self.workers = workers
        self.write(apps or [{"name": "web", "hosts": ["*"], "weights": {"blue": 100, "green": 0}}])
        self.log = str(tmp_path / "sy.log")
        self.logf = open(self.log, "wb")
        full = dict(os.environ)
        for k in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"):
            full.pop(k, None)
        full.update(env)
        self.done = False
        self.started = time.monotonic()
        self.proc = subprocess.Popen([SWITCHYARD, "-c", self.config], stdin=subprocess.DEVNULL,
                                     stdout=self.logf, stderr=subprocess.STDOUT, env=full)

    def write(self, apps, text=None):
        tmp = self.config + ".tmp"
        with open(tmp, "w") as f:
            f.write(text if text is not None else make_config(
                self.port, default_clusters(self.backends), apps, workers=self.workers))
        os.rename(tmp, self.config)

    def log_text(self):
        with open(self.log, errors="replace") as f:
            return f.read()

    def wait_exit(self):
        """For a test that stopped it: the exit status (and nothing left for stop())."""
        rc = self.proc.wait(timeout=DEADLINE)
        self.done = True
        self.logf.close()
        return rc

    def stop(self):
        if self.done:
            return None
        self.done = True
        return helpers.stop_switchyard(self.proc, self.logf, self.log, DEADLINE)


@pytest.fixture
def notify(tmp_path, backends):
    """Factory: notify(env=..., abstract=False, **daemon) -> (Listener, Daemon) with
    NOTIFY_SOCKET naming the listener."""
    made = []

    def start(env=None, abstract=False, **kw):
        if abstract:
            path = "\0switchyard-test-%d-%d" % (os.getpid(), len(made))
        else:
            path = str(tmp_path / ("notify-%d.sock" % len(made)))
        lst = Listener(path)
        e = {"NOTIFY_SOCKET": lst.name}
        e.update(env or {})
        d = Daemon(tmp_path, backends, e, **kw)
        made.append((lst, d))
        return lst, d

    yield start
    errors = [e for e in (d.stop() for _, d in made) if e]
    for lst, _ in made:
        lst.close()
    if errors:
        pytest.fail("\n".join(errors), pytrace=False)


def _x_backend(url):
    return helpers.curl1(url, timeout=5).backend


def test_ready_waits_for_every_worker(notify):
    # Each worker's loop starts 700 ms late: READY=1 must wait for them, not for main().
    lst, d = notify(env={"SWITCHYARD_TEST_WORKER_START_DELAY_MS": "700"}, workers=3)
    t, fields, text = lst.wait("READY", "1")
    assert t - d.started >= 0.7, "READY=1 %.3f s after the start, before the workers ran" % (
        t - d.started)
    assert "serving generation 1: 1 apps, 2 clusters, 1 listeners" in fields.get("STATUS", ""), text
    assert lst.msgs[0][1].get("READY") == "1", "READY=1 is the first message: %r" % lst.msgs
    # Every worker serves as soon as READY is out: three connections at once, all answered.
    for r in helpers.curl([d.url] * 3, "--parallel", "--parallel-immediate", timeout=5):
        assert r.status == 200
    helpers.measure("notify_ready_after_start_s", "%.3f" % (t - d.started),
                    note="3 workers, each 700 ms late")


def test_abstract_socket_name(notify):
    lst, d = notify(abstract=True, workers=1)
    lst.wait("READY", "1")
    assert _x_backend(d.url) == "blue-1"


def test_reload_is_reloading_then_ready(notify):
    lst, d = notify(workers=2)
    lst.wait("READY", "1")
    d.write([{"name": "web", "hosts": ["*"], "weights": {"blue": 0, "green": 100}}])
    before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    d.proc.send_signal(signal.SIGHUP)
    t1, f1, text1 = lst.wait("RELOADING", "1")
    after = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    usec = int(f1["MONOTONIC_USEC"])
    assert before <= usec <= after, (before, usec, after)
    t2, f2, text2 = lst.wait("READY", "1")
    assert "serving generation 2" in f2.get("STATUS", ""), text2
    # READY=1 means published on every worker: the next request follows the new table.
    assert _x_backend(d.url) == "green-1"

    # A refused file: RELOADING, then READY with the old generation and the error's place.
    d.write(None, text=open(d.config).read().replace("green: 100", "green: 120"))
    d.proc.send_signal(signal.SIGHUP)
    lst.wait("RELOADING", "1")
    t3, f3, text3 = lst.wait("READY", "1")
    status = f3.get("STATUS", "")
    assert "serving generation 2" in status and "reload rejected: " in status, text3
    assert "sy.yaml:" in status, text3
    assert _x_backend(d.url) == "green-1"


def test_stopping_on_term(notify):
    lst, d = notify(workers=2)
    lst.wait("READY", "1")
    d.proc.send_signal(signal.SIGTERM)
    t, fields, text = lst.wait("STOPPING", "1")
    assert fields.get("STATUS", "").startswith("draining"), text
    assert d.wait_exit() == 0


# -- the watchdog ------------------------------------------------------------------------------

libc = ctypes.CDLL(None, use_errno=True)
libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]
libc.ptrace.restype = ctypes.c_long
PTRACE_DETACH, PTRACE_SEIZE, PTRACE_INTERRUPT = 17, 0x4206, 0x4207


def worker_tid(pid, name="sy-worker-0"):
    for tid in os.listdir("/proc/%d/task" % pid):
        with open("/proc/%d/task/%s/comm" % (pid, tid)) as f:
            if f.read().strip() == name:
                return int(tid)
    raise AssertionError("no thread %s in %d" % (name, pid))


def ptrace(req, tid):
    if libc.ptrace(req, tid, None, None) == -1:
        err = ctypes.get_errno()
        raise OSError(err, "ptrace(%d, %d): %s" % (req, tid, os.strerror(err)))


def count(msgs, key):
    return sum(1 for _, f, _ in msgs if key in f)


def test_watchdog_fed_only_while_workers_answer(notify):
    lst, d = notify(env={"WATCHDOG_USEC": "200000"}, workers=2)  # a ping every 100 ms
    lst.wait("READY", "1")
    fed = lst.drain_for(1.5)
    n = count(fed, "WATCHDOG")
    # About 15 (every 100 ms); at the whole period it would be about 7.
    assert 11 <= n <= 17, "%d WATCHDOG=1 in 1.5 s at a 100 ms period" % n
    helpers.measure("notify_watchdog_pings_in_1_5_s", n, note="WATCHDOG_USEC=200000")

    # Stop one worker thread (ptrace stops only the thread it is attached to): the pings stop.
    tid = worker_tid(d.proc.pid)
    ptrace(PTRACE_SEIZE, tid)
    try:
        ptrace(PTRACE_INTERRUPT, tid)
        os.waitpid(tid, 0x40000000)  # __WALL: until it is stopped
        lst.drain_for(0.25)  # a ping already under way may still land
        stalled = lst.drain_for(1.0)
        assert count(stalled, "WATCHDOG") == 0, "fed while a worker is stopped: %r" % stalled
    finally:
        ptrace(PTRACE_DETACH, tid)
    again = lst.drain_for(1.0)
    assert count(again, "WATCHDOG") >= 5, "not fed again once the worker runs: %r" % again
    assert "watchdog not fed" in d.log_text()
    assert _x_backend(d.url) == "blue-1"


def test_watchdog_for_another_pid_is_ignored(notify):
    lst, d = notify(env={"WATCHDOG_USEC": "200000", "WATCHDOG_PID": "1"}, workers=1)
    lst.wait("READY", "1")
    assert count(lst.drain_for(0.5), "WATCHDOG") == 0


def test_nothing_without_notify_socket(tmp_path, backends):
    # The same daemon without NOTIFY_SOCKET: it serves, and the socket hears nothing.
    lst = Listener(str(tmp_path / "unused.sock"))
    d = Daemon(tmp_path, backends, {"WATCHDOG_USEC": "200000"}, workers=1)
    try:
        helpers.wait_started(d.proc, d.log, 0, time.monotonic() + DEADLINE)
        assert _x_backend(d.url) == "blue-1"
        assert lst.drain_for(0.3) == []
    finally:
        err = d.stop()
        lst.close()
    assert err is None, err


# -- the unit and the packaged config ------------------------------------------------------------

UNIT = os.path.join(SOURCE_ROOT, "conf", "systemd", "switchyard.service")
DEFAULT_CONFIG = os.path.join(SOURCE_ROOT, "conf", "systemd", "switchyard.yaml")


def test_unit_file_verifies(tmp_path):
    """systemd-analyze verify, with ExecStart pointed at this build (the installed unit, man
    pages and all, is verified by tests/pkg/run.sh): no error and no warning."""
    text = open(UNIT).read()
    for line in ("Type=notify", "ExecReload=/bin/kill -HUP $MAINPID", "User=switchyard",
                 "RuntimeDirectory=switchyard", "StateDirectory=switchyard", "WatchdogSec=",
                 "AmbientCapabilities=CAP_NET_BIND_SERVICE",
                 "CapabilityBoundingSet=CAP_NET_BIND_SERVICE", "NoNewPrivileges=yes",
                 "ProtectSystem=strict"):
        assert "\n" + line in text, line
    unit = tmp_path / "switchyard.service"
    unit.write_text(text.replace("/usr/bin/switchyard", SWITCHYARD))
    p = subprocess.run(["systemd-analyze", "verify", "--man=no", str(unit)],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0 and not (p.stdout + p.stderr).strip(), p.stdout + p.stderr
    # The same check sees a mistake (so that the empty output above means something).
    unit.write_text(text.replace("/usr/bin/switchyard", SWITCHYARD)
                    .replace("ProtectSystem=strict", "ProtectSystem=very"))
    p = subprocess.run(["systemd-analyze", "verify", "--man=no", str(unit)],
                       capture_output=True, text=True, timeout=60)
    assert "protect system value, ignoring: very" in p.stdout + p.stderr


def test_default_config_checks_and_serves(tmp_path, backends):
    """The packaged default passes -t with its admin socket and journal directories present
    (moved into a temp dir here), and starts: READY, and the admin socket answers."""
    run, lib = tmp_path / "run", tmp_path / "lib"
    run.mkdir()
    lib.mkdir(mode=0o750)
    port = helpers.free_port()
    text = (open(DEFAULT_CONFIG).read()
            .replace("/run/switchyard/", str(run) + "/")
            .replace("/var/lib/switchyard/", str(lib) + "/")
            .replace('":80"', '"127.0.0.1:%d"' % port)
            .replace("127.0.0.1:8081", backends.blue.addr)
            .replace("127.0.0.1:8082", backends.green.addr))
    text += "shutdown: {delay: 0s}\n"  # the test stops it: no 5 s of accepting on
    cfg = tmp_path / "switchyard.yaml"
    cfg.write_text(text)
    p = subprocess.run([SWITCHYARD, "-t", "-c", str(cfg)], capture_output=True, text=True,
                       timeout=30)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "ok: 1 apps, 2 clusters, 1 listeners" in p.stdout
    lst = Listener(str(tmp_path / "notify.sock"))
    logf = open(tmp_path / "sy.log", "wb")
    env = dict(os.environ, NOTIFY_SOCKET=lst.name)
    proc = subprocess.Popen([SWITCHYARD, "-c", str(cfg)], stdin=subprocess.DEVNULL,
                            stdout=logf, stderr=subprocess.STDOUT, env=env)
    try:
        lst.wait("READY", "1")
        assert helpers.curl1("http://127.0.0.1:%d/" % port, timeout=5).backend == "blue-1"
        assert os.path.exists(str(run / "admin.sock"))
        assert os.path.exists(str(lib / "state.json"))
    finally:
        err = helpers.stop_switchyard(proc, logf, str(tmp_path / "sy.log"), DEADLINE)
        lst.close()
    assert err is None, err
