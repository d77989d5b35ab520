# SPDX-License-Identifier: MIT
"""Helpers for the admin tests (test_50_admin.py): a switchyard with an admin socket and a
journal that can be killed with SIGKILL and started again on the same files; switchyardctl;
a raw admin connection (one command per line, answers to the `ok` / `error:` line); keep-alive
HTTP/1.1 probes; h2load in the background. Stdlib only; every wait has a deadline."""

import http.client
import os
import re
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections import Counter

import conftest
import helpers
from helpers import CURL

SWITCHYARDCTL = os.environ.get("SWITCHYARDCTL", "")
if not SWITCHYARDCTL and conftest.SWITCHYARD:
    # build/proxy/switchyard -> build/admin/switchyardctl
    SWITCHYARDCTL = os.path.join(os.path.dirname(os.path.dirname(conftest.SWITCHYARD)),
                                 "admin", "switchyardctl")


def socket_dir():
    """A directory another uid can traverse (the tests' tmp_path is 0700): for sockets."""
    d = tempfile.mkdtemp(prefix="sy-admin-")
    os.chmod(d, 0o755)
    return d


class AdminProxy:
    """switchyard -c CONFIG with `admin.socket` set. kill9() and start() again on the same
    config, socket and journal; stop() sends SIGTERM and reports anything but exit 0."""

    def __init__(self, workdir, sockdir, backends, apps, name="sy", workers=2, admin=None,
                 state=None, clusters=None, args=(), preexec_fn=None):
        self.workdir = str(workdir)
        self.port = helpers.free_port()
        self.url = "http://127.0.0.1:%d" % self.port
        self.socket = os.path.join(sockdir, name + ".sock")
        self.config = os.path.join(self.workdir, name + ".yaml")
        self.state = state or self.config + ".state"
        self.log = os.path.join(self.workdir, "%s-%d.log" % (name, self.port))
        adm = {"socket": self.socket}
        adm.update(admin or {})
        extra = {"admin": adm}
        if state:
            extra["state"] = state
        self.spec = {"clusters": clusters or conftest.default_clusters(backends), "apps": apps,
                     "workers": workers, "extra": extra}
        self.write_config()
        self.proc = None
        self.args = list(args)
        self.preexec_fn = preexec_fn  # run in the child before exec (e.g. a low RLIMIT_NOFILE)
        self.stopped = True

    def write_config(self, apps=None):
        """(Re)writes the file atomically, as another process would (temp file + rename)."""
        if apps is not None:
            self.spec["apps"] = apps
        tmp = self.config + ".tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(conftest.make_config(self.port, **self.spec))
        os.rename(tmp, self.config)

    def start(self, args=None, wait=True):
        self._logf = open(self.log, "ab")
        self._log_start = self._logf.tell()
        self.proc = subprocess.Popen(
            [conftest.SWITCHYARD, "-c", self.config] + (self.args if args is None else args),
            stdin=subprocess.DEVNULL, stdout=self._logf, stderr=subprocess.STDOUT,
            preexec_fn=self.preexec_fn)
        self.pid = self.proc.pid
        self.stopped = False
        if wait:
            self.wait_ready()
        return self

    def log_text(self):
        with open(self.log, encoding="utf-8", errors="replace") as f:
            return f.read()

    def wait_ready(self):
        """Until the start-up line is logged (every listener accepts) and the admin socket
        answers."""
        deadline = time.monotonic() + conftest.START_DEADLINE
        helpers.wait_started(self.proc, self.log, self._log_start, deadline)
        while True:
            try:
                with AdminConn(self.socket) as a:
                    a.ask("ident")
                return
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError("switchyard's admin socket did not answer; log:\n%s"
                                         % self.log_text()[-3000:])
            time.sleep(0.01)  # polling: the admin socket has no readiness signal of its own

    def generation(self):
        return int(re.search(r"generation (\d+)", self.ctl_ok("ident")).group(1))

    def kill9(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)
        self._logf.close()
        self.stopped = True

    def ctl(self, *args, **kw):
        return ctl(*args, sockets=[self.socket], **kw)

    def ctl_ok(self, *args):
        p = self.ctl(*args)
        assert p.returncode == 0, "switchyardctl %s: rc %d\n%s%s" % (
            " ".join(args), p.returncode, p.stdout, p.stderr)
        assert p.stdout.endswith("ok\n"), p.stdout
        return p.stdout

    def stop(self):
        if self.stopped:
            return None
        self.stopped = True
        return helpers.stop_switchyard(self.proc, self._logf, self.log, conftest.STOP_DEADLINE)


def ctl(*args, sockets=None, json=False, timeout=20, prefix=()):
    """Runs switchyardctl [-s S]... [--json] ARGS; returns the CompletedProcess (text)."""
    cmd = list(prefix) + [SWITCHYARDCTL]
    for s in sockets or []:
        cmd += ["-s", s]
    if json:
        cmd.append("--json")
    cmd += list(args)
    return subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          timeout=timeout)


class AdminConn:
    """A raw connection to an admin socket: send a line, read the answer up to its last line
    (`ok` / `error: ...`, or the one JSON line)."""

    def __init__(self, path, timeout=10.0):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(path)
        self.buf = b""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        self.sock.close()

    def send(self, data):
        self.sock.sendall(data)

    def read_answer(self):
        lines = []
        while True:
            while b"\n" not in self.buf:
                data = self.sock.recv(65536)
                if not data:
                    raise EOFError("closed after %r" % (lines + [self.buf]))
                self.buf += data
            line, self.buf = self.buf.split(b"\n", 1)
            text = line.decode()
            lines.append(text)
            if text == "ok" or text.startswith("error:") or text.startswith("{"):
                return "\n".join(lines) + "\n"

    def ask(self, line):
        self.send(line.encode() + b"\n")
        return self.read_answer()

    def closed(self, timeout=5.0):
        """True when the server closes the connection (EOF) within `timeout`."""
        self.sock.settimeout(timeout)
        try:
            while True:
                data = self.sock.recv(65536)
                if not data:
                    return True
                self.buf += data
        except (ConnectionResetError, BrokenPipeError):
            return True
        except socket.timeout:
            return False


class Probe:
    """One keep-alive HTTP/1.1 connection: GETs that report the backend that answered."""

    def __init__(self, port, host="app.test"):
        self.port, self.host = port, host
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)

    def get(self, path):
        self.conn.request("GET", path, headers={"Host": self.host})
        r = self.conn.getresponse()
        r.read()
        assert r.status == 200, (r.status, r.getheaders())
        return r.getheader("x-backend")

    def close(self):
        self.conn.close()


def tags(port, n, path="/", host="app.test"):
    """n GETs on one fresh keep-alive connection: the x-backend of each."""
    p = Probe(port, host)
    try:
        return [p.get(path) for _ in range(n)]
    finally:
        p.close()


_H2LOAD_REQ = re.compile(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, "
                         r"(\d+) failed, (\d+) errored, (\d+) timeout")
_H2LOAD_ST = re.compile(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx")


def h2load(url, h1=False, n=None, duration=None, clients=2, streams=4, rps=None):
    """Starts h2load (h2c by prior knowledge, or --h1) in the background."""
    args = ["h2load", "-c", str(clients)]
    if n is not None:
        args += ["-n", str(n)]
    if duration is not None:
        args += ["-D", str(duration)]
    if h1:
        args.append("--h1")
    else:
        args += ["-m", str(streams)]
    if rps:
        args += ["--rps", str(rps)]
    args.append(url)
    return subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def h2load_result(proc, timeout):
    """The summary of a finished h2load as a dict; raises when it printed none."""
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate(timeout=10)
        raise AssertionError("h2load did not end:\n%s" % out[-2000:])
    m, s = _H2LOAD_REQ.search(out), _H2LOAD_ST.search(out)
    assert m and s, "h2load printed no summary (rc %s):\n%s" % (proc.returncode, out[-2000:])
    keys = ("total", "started", "done", "succeeded", "failed", "errored", "timeout")
    r = dict(zip(keys, map(int, m.groups())))
    r.update(zip(("2xx", "3xx", "4xx", "5xx"), map(int, s.groups())))
    r["output"] = out
    return r


class LoadLoop(threading.Thread):
    """Continuous load until stop(): h2load runs of `phase` seconds back to back (their
    summaries kept), or, with curl=True, curl runs alternating HTTP/1.1 (4 GETs on one
    keep-alive connection) and h2c by prior knowledge (one GET)."""

    def __init__(self, url, h1=False, curl=False, phase=3, clients=4, streams=4, rps=150):
        super().__init__(daemon=True)
        self.url, self.h1, self.curl, self.phase = url, h1, curl, phase
        self.clients, self.streams, self.rps = clients, streams, rps
        self.halt = threading.Event()
        self.results = []     # h2load summaries
        self.codes = Counter()  # curl status codes
        self.failures = []
        self.runs = 0

    def run(self):
        while not self.halt.is_set():
            if self.curl:
                self._curl()
            else:
                self.results.append(h2load_result(h2load(
                    self.url, h1=self.h1, duration=self.phase, clients=self.clients,
                    streams=self.streams, rps=self.rps), self.phase + 30))
            self.runs += 1

    def _curl(self):
        h1 = self.runs % 2 == 0
        n = 4 if h1 else 1
        args = [CURL, "-sS", "--http1.1" if h1 else "--http2-prior-knowledge", "--max-time",
                "10", "-w", "%{http_code}\\n"]
        for _ in range(n):
            args += ["-o", "/dev/null", self.url]
        p = subprocess.run(args, capture_output=True, text=True, timeout=30)
        codes = p.stdout.split()
        for c in codes:
            self.codes[c] += 1
        if p.returncode or len(codes) != n or any(c != "200" for c in codes):
            self.failures.append((args[3], codes, p.stderr.strip()))

    def stop(self):
        self.halt.set()
        self.join(timeout=self.phase + 60)
        assert not self.is_alive(), "load loop did not end"
