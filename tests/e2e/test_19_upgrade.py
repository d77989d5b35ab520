# SPDX-License-Identifier: MIT
"""Zero-downtime upgrade (issue #18): `switchyard -c FILE --upgrade`, and SIGUSR2 to the
running process, start a new process that takes the listening sockets (SCM_RIGHTS), the
overrides journal and the admin socket of the running one, which drains once the new one
serves. Real binaries, wrk and h2load against the test backends on loopback."""

import http.client
import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import time

import pytest

import conftest
import helpers
from admin_util import SWITCHYARDCTL, socket_dir

WRK = shutil.which("wrk")
H2LOAD = shutil.which("h2load")


class Sy:
    """One switchyard process of this test's own: the new process of an upgrade outlives the
    one it replaced, so the fixtures' one-process-per-proxy bookkeeping does not fit."""

    def __init__(self, cfg, log, args=(), extra_env=None):
        self.log = log
        self._logf = open(log, "ab")
        self.offset = self._logf.tell()
        env = dict(os.environ, **(extra_env or {}))
        self.proc = subprocess.Popen([conftest.SWITCHYARD, "-c", cfg] + list(args),
                                     stdin=subprocess.DEVNULL, stdout=self._logf,
                                     stderr=subprocess.STDOUT, env=env)
        self.pid = self.proc.pid

    def text(self):
        with open(self.log, encoding="utf-8", errors="replace") as f:
            f.seek(self.offset)
            return f.read()

    def wait_log(self, pattern, timeout=10):
        def seen():
            if re.search(pattern, self.text()):
                return True
            if self.proc.poll() is not None:
                raise AssertionError("switchyard %d exited (%s) before logging %r:\n%s"
                                     % (self.pid, self.proc.returncode, pattern, self.text()))
            return False
        helpers.wait_for(seen, timeout, pattern)

    def wait_exit(self, timeout=15):
        rc = self.proc.wait(timeout=timeout)
        self._logf.close()
        return rc

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.wait_exit()


@pytest.fixture
def env(backends, tmp_path, tls_cert):
    """Writes a config (workers 2, admin socket, admin.http, journal) and yields a dict with
    its paths, ports and the Sy processes started (SIGTERM'd at teardown)."""
    sockdir = socket_dir()
    e = {"dir": tmp_path, "port": helpers.free_port(), "port2": helpers.free_port(),
         "hport": helpers.free_port(), "sock": os.path.join(sockdir, "admin.sock"),
         "tls_port": helpers.free_port(),
         "state": str(tmp_path / "sy.state"), "cfg": str(tmp_path / "sy.yaml"), "procs": []}

    def write(ports, path=None):
        doc = {"workers": 2,
               "listen": [{"address": "127.0.0.1:%d" % p} for p in ports] +
                         [{"address": "127.0.0.1:%d" % e["tls_port"],
                           "tls": {"cert": tls_cert[0], "key": tls_cert[1]}}],
               "admin": {"socket": e["sock"], "http": "127.0.0.1:%d" % e["hport"]},
               "state": e["state"],
               "shutdown": {"delay": "0s", "grace": "10s"},
               "clusters": conftest.default_clusters(backends),
               "apps": [{"name": "web", "hosts": ["*"], "weights": {"blue": 100, "green": 0}}]}
        path = path or e["cfg"]
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            f.write(helpers.to_yaml(doc))
        os.rename(tmp, path)
        return path

    def start(args=(), extra_env=None, cfg=None):
        p = Sy(cfg or e["cfg"], str(tmp_path / "sy.log"), args, extra_env)
        e["procs"].append(p)
        return p

    e["write"], e["start"] = write, start
    write([e["port"]])
    yield e
    for p in e["procs"]:
        if p.proc.poll() is None:
            p.stop()
    for pid in e.get("foreign", []):  # started by SIGUSR2: not our children
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            continue
        helpers.wait_for(lambda: not os.path.exists("/proc/%d" % pid) or
                         "zombie" in open("/proc/%d/status" % pid).read(), 15, "exit")
    shutil.rmtree(sockdir, ignore_errors=True)


def ctl(sock, *words):
    p = subprocess.run([SWITCHYARDCTL, "-s", sock] + list(words), capture_output=True,
                       text=True, timeout=20)
    assert p.returncode == 0, (words, p.stdout, p.stderr)
    return p.stdout


def backend_of(port):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        c.request("GET", "/anything")
        r = c.getresponse()
        r.read()
        assert r.status == 200
        return r.getheader("x-backend").split("-")[0]  # blue-1 -> blue
    finally:
        c.close()


def readyz(hport):
    c = http.client.HTTPConnection("127.0.0.1", hport, timeout=5)
    try:
        c.request("GET", "/readyz")
        return c.getresponse().status
    finally:
        c.close()


def refused(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
        return False
    except ConnectionRefusedError:
        return True


def journal_holders(path, pids):
    """The pids (in the order given) that have `path` open, each read from /proc."""
    out = []
    for pid in pids:
        try:
            for fd in os.listdir("/proc/%d/fd" % pid):
                try:
                    if os.readlink("/proc/%d/fd/%s" % (pid, fd)) == path:
                        out.append(pid)
                        break
                except OSError:
                    continue
        except OSError:
            continue
    return out


def flock_count(path):
    """How many flock() locks /proc/locks lists on the file at `path`."""
    st = os.stat(path)
    dev = "%02x:%02x:%d" % (os.major(st.st_dev), os.minor(st.st_dev), st.st_ino)
    with open("/proc/locks") as f:
        return sum(1 for line in f if " FLOCK " in line and dev in line)


def upgrade(e, old, cfg=None):
    """One `--upgrade` (of `cfg`, default the same file) under a journal watch; returns the
    new process, once the old exited 0. The watch reads the new process's descriptors first,
    then the old one's: if both hold the journal in one sample, they held it at the same
    moment."""
    t0 = time.monotonic()
    new = e["start"](["--upgrade"], cfg=cfg)
    both, stop = [], threading.Event()

    def watch():
        while not stop.is_set():
            if journal_holders(e["state"], [new.pid, old.pid]) == [new.pid, old.pid]:
                both.append(time.monotonic())
            time.sleep(0.001)

    t = threading.Thread(target=watch)
    t.start()
    try:
        new.wait_log(r"upgrade: took over from pid %d: serving" % old.pid)
        e.setdefault("took_over_s", []).append(time.monotonic() - t0)
        assert old.wait_exit() == 0
        e.setdefault("old_gone_s", []).append(time.monotonic() - t0)
    finally:
        stop.set()
        t.join()
    assert both == [], "the journal was open in both processes"
    assert journal_holders(e["state"], [new.pid]) == [new.pid]
    assert flock_count(e["state"]) == 1
    return new


def test_upgrade_hands_over_sockets_journal_and_admin(env):
    e = env
    old = e["start"]()
    old.wait_log(r"upgrade: upgrades .* through %s\.upgrade" % re.escape(e["sock"]))
    ctl(e["sock"], "weights", "web", "blue=0", "green=100")
    assert backend_of(e["port"]) == "green"
    # The new file keeps port and adds port2: bound fresh; the old one never had it (another
    # file, with the same admin socket and journal: the old process does not reload it).
    new = upgrade(e, old, e["write"]([e["port"], e["port2"]], str(e["dir"] / "sy2.yaml")))
    assert re.search(r"sent 4 listening sockets, the admin socket, admin.http", old.text())
    assert "journal: %s: released (closed, unlocked)" % e["state"] in old.text()
    assert backend_of(e["port"]) == "green" and backend_of(e["port2"]) == "green"
    assert readyz(e["hport"]) == 200  # the new process's (the old one's exited)
    out = ctl(e["sock"], "status")
    assert re.search(r"web\s+blue\s+.*100\s+0\s+0", out) or "override" in out, out
    # The journal is the new process's: a change is written and applied.
    ctl(e["sock"], "weights", "web", "blue=100", "green=0")
    assert backend_of(e["port"]) == "blue"
    # A listener the next file drops is closed.
    newer = upgrade(e, new, e["write"]([e["port2"]], str(e["dir"] / "sy3.yaml")))
    assert helpers.wait_for(lambda: refused(e["port"]), 5, "port closed")
    assert backend_of(e["port2"]) == "blue"
    assert newer.stop() == 0
    assert not os.path.exists(e["sock"]) and not os.path.exists(e["sock"] + ".upgrade")


def test_failed_upgrade_leaves_the_old_process_serving(env):
    e = env
    old = e["start"]()
    old.wait_log(r"upgrade: upgrades")
    # The new file adds an address that cannot be bound (someone else's, no SO_REUSEPORT).
    squatter = socket.socket()
    squatter.bind(("127.0.0.1", 0))
    squatter.listen(1)
    squatter_port = squatter.getsockname()[1]
    cfg2 = e["write"]([e["port"], squatter_port], str(e["dir"] / "sy2.yaml"))
    new = e["start"](["--upgrade"], cfg=cfg2)
    assert new.wait_exit() == 1
    squatter.close()
    old.wait_log(r"upgrade: pid %d did not take over: cannot listen on every address of its "
                 r"file \(see its log\); this process serves on" % new.pid)
    assert re.search(r"cannot bind 127\.0\.0\.1:%d" % squatter_port, new.text())
    old.wait_log(r"journal: .*: taken back")
    assert backend_of(e["port"]) == "blue"
    ctl(e["sock"], "weights", "web", "blue=0", "green=100")  # the journal is writable again
    assert backend_of(e["port"]) == "green"
    assert readyz(e["hport"]) == 200
    assert journal_holders(e["state"], [old.pid]) == [old.pid]
    assert old.stop() == 0


class Notify:
    """A datagram socket where systemd's would be, with each sender's pid (SO_PASSCRED)."""

    def __init__(self, path):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        self.path = path

    def wait(self, key, timeout=10):
        """(sender pid, {key: value}) of the next message that sets `key`."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.sock.settimeout(max(deadline - time.monotonic(), 0.001))
            try:
                data, anc, _, _ = self.sock.recvmsg(4096, socket.CMSG_SPACE(12))
            except socket.timeout:
                break
            pid = next((int.from_bytes(d[:4], "little") for lvl, typ, d in anc
                        if lvl == socket.SOL_SOCKET and typ == socket.SCM_CREDENTIALS), 0)
            fields = dict(x.split("=", 1) for x in data.decode().splitlines() if "=" in x)
            if key in fields:
                return pid, fields
        raise AssertionError("no %s= within %.1f s" % (key, timeout))


def test_sigusr2_execs_the_binary_with_upgrade_and_tells_systemd(env):
    e = env
    lst = Notify(str(e["dir"] / "notify.sock"))
    old = e["start"](extra_env={"NOTIFY_SOCKET": lst.path})
    assert lst.wait("READY")[0] == old.pid
    idle = helpers.Raw(e["port"])  # a keep-alive client of the old process
    idle.send(helpers.get_request("/anything"))
    assert idle.read_response().status == 200
    old.proc.send_signal(signal.SIGUSR2)
    old.wait_log(r"upgrade: pid (\d+) serves")
    pid = int(re.search(r"upgrade: pid (\d+) serves", old.text()).group(1))
    e["foreign"] = [pid]
    # The old process (still the main one) names the new one; then the new one is READY.
    sender, fields = lst.wait("MAINPID")
    assert sender == old.pid and fields["MAINPID"] == str(pid), fields
    sender, fields = lst.wait("READY")
    assert sender == pid and fields.get("MAINPID") in (None, str(pid)), fields
    assert old.wait_exit() == 0
    # Closed with the old process: the new one holds none of its descriptors.
    assert idle.closed(timeout=5) is True
    with open("/proc/%d/cmdline" % pid, "rb") as f:
        argv = f.read().split(b"\0")
    assert b"--upgrade" in argv and os.path.realpath(e["cfg"]).encode() in argv
    assert backend_of(e["port"]) == "blue"
    assert journal_holders(e["state"], [pid]) == [pid]


def h2load_loop(url, stop, totals):
    """Runs h2load (bounded by count) again and again until `stop`; sums its request line."""
    while not stop.is_set():
        p = subprocess.run([H2LOAD, "-n", "600", "-c", "2", "-m", "4", url],
                           capture_output=True, text=True, timeout=60)
        m = re.search(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, "
                      r"(\d+) failed, (\d+) errored, (\d+) timeout", p.stdout)
        assert m, p.stdout + p.stderr
        for i, k in enumerate(("total", "started", "done", "succeeded", "failed", "errored",
                               "timeout")):
            totals[k] = totals.get(k, 0) + int(m.group(i + 1))
        totals["runs"] = totals.get("runs", 0) + 1


def test_five_upgrades_under_wrk_and_h2load_lose_nothing(env):
    e = env
    n_upgrades = int(os.environ.get("SY_UPGRADES", "5"))
    old = e["start"]()
    old.wait_log(r"upgrade: upgrades")
    ctl(e["sock"], "weights", "web", "blue=0", "green=100")
    url = "http://127.0.0.1:%d/anything" % e["port"]
    dur = "%ds" % (3 + 2 * n_upgrades)
    wrk = subprocess.Popen([WRK, "-t", "2", "-c", "8", "-d", dur, url],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    # TLS too: a client whose handshake is under way when the old process drains finishes it.
    wrk_tls = subprocess.Popen([WRK, "-t", "1", "-c", "4", "-d", dur,
                                "https://127.0.0.1:%d/anything" % e["tls_port"]],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    stop, totals = threading.Event(), {}
    h2 = threading.Thread(target=h2load_loop, args=(url, stop, totals))
    h2.start()
    try:
        time.sleep(1)  # both loads running against the first process
        cur = old
        for _ in range(n_upgrades):
            cur = upgrade(e, cur)
    finally:
        stop.set()
        h2.join(60)
        out, _ = wrk.communicate(timeout=60)
        out_tls, _ = wrk_tls.communicate(timeout=60)
    helpers.measure("upgrades_under_load", n_upgrades)
    helpers.measure("upgrade_take_over_max_s", "%.3f" % max(e["took_over_s"]),
                    note="--upgrade started -> the new process serves")
    helpers.measure("upgrade_old_exit_max_s", "%.3f" % max(e["old_gone_s"]),
                    note="--upgrade started -> the old process exited, drained")
    for name, text in (("upgrade_wrk_requests", out), ("upgrade_wrk_tls_requests", out_tls)):
        m = re.search(r"(\d+) requests in", text)
        assert m and int(m.group(1)) > 500, text
        assert "Socket errors" not in text and "Non-2xx" not in text, text
        helpers.measure(name, int(m.group(1)), note="0 errors")
    assert totals["runs"] >= 2 and totals["failed"] == 0 and totals["errored"] == 0, totals
    assert totals["succeeded"] == totals["total"], totals
    helpers.measure("upgrade_h2load_requests", totals["succeeded"], note="0 failed")
    # The override set before the first upgrade is still in force after the last.
    assert backend_of(e["port"]) == "green"
    assert re.search(r"override of app 'web' .* applied", cur.text())
    assert cur.stop() == 0
