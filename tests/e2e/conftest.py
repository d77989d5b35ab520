# SPDX-License-Identifier: MIT
"""Fixtures for the switchyard e2e tests.

`backends`: blue (blue-1) and green (green-1), real HTTP/1.1 servers (backend.py) on free ports,
started once per test module. `backend_factory(name)` starts more. `proxy(...)`: starts
$SWITCHYARD -c on a temp config for one test and stops it with SIGTERM at teardown (it must exit
0 within 10 s). Every test is skipped when $SWITCHYARD is not an executable file.
"""

import json
import os
import selectors
import signal
import socket
import subprocess
import sys
import time

import pytest

import helpers

SWITCHYARD = os.environ.get("SWITCHYARD", "")
SOURCE_ROOT = os.environ.get("SY_SOURCE_ROOT",
                             os.path.dirname(os.path.dirname(os.path.dirname(
                                 os.path.abspath(__file__)))))
PYTHON = sys.executable or "/usr/bin/python3"
BACKEND_PY = os.path.join(helpers.HERE, "backend.py")
START_DEADLINE = 10.0
STOP_DEADLINE = 10.0


def _skip_reason():
    if not SWITCHYARD:
        return "SWITCHYARD is not set (path to the switchyard binary; meson test sets it)"
    if not (os.path.isfile(SWITCHYARD) and os.access(SWITCHYARD, os.X_OK)):
        return "SWITCHYARD=%s is not an executable file" % SWITCHYARD
    return None


def pytest_collection_modifyitems(config, items):
    reason = _skip_reason()
    if reason:
        mark = pytest.mark.skip(reason=reason)
        for item in items:
            item.add_marker(mark)


def pytest_terminal_summary(terminalreporter):
    if helpers.MEASURES:
        terminalreporter.write_sep("-", "switchyard measurements")
        for line in helpers.MEASURES:
            terminalreporter.write_line(line)


# -- backends -----------------------------------------------------------------------------------

class Backend:
    def __init__(self, name, workdir):
        self.name = name
        self.log_path = os.path.join(workdir, "backend-%s.log" % name)
        self.err_path = os.path.join(workdir, "backend-%s.stderr" % name)
        open(self.log_path, "w").close()
        self._err = open(self.err_path, "wb")
        self.proc = subprocess.Popen(
            [PYTHON, BACKEND_PY, "--name", name, "--port", "0", "--log", self.log_path],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=self._err)
        self.pid = self.proc.pid
        line = self._read_ready()
        if not line.startswith("ready "):
            self.stop()
            raise RuntimeError("backend %s did not start: %r\n%s" % (
                name, line, open(self.err_path, errors="replace").read()))
        self.port = int(line.split()[1])
        self.addr = "127.0.0.1:%d" % self.port

    def _read_ready(self):
        sel = selectors.DefaultSelector()
        sel.register(self.proc.stdout, selectors.EVENT_READ)
        try:
            if not sel.select(timeout=START_DEADLINE):
                return ""
            return self.proc.stdout.readline().decode(errors="replace").strip()
        finally:
            sel.close()

    def records(self):
        out = []
        with open(self.log_path, encoding="utf-8") as f:
            for line in f:
                if line.strip():
                    out.append(json.loads(line))
        return out

    def saw(self, token, ev=None):
        """Log records whose path contains `token` (optionally only events `ev`)."""
        return [r for r in self.records()
                if token in r.get("path", "") and (ev is None or r["ev"] == ev)]

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        self.proc.stdout.close()
        self._err.close()


class Backends:
    def __init__(self, blue, green):
        self.blue = blue
        self.green = green
        self.all = [blue, green]

    def saw(self, token, ev=None):
        return [r for b in self.all for r in b.saw(token, ev)]


@pytest.fixture(scope="module")
def backends(tmp_path_factory):
    d = str(tmp_path_factory.mktemp("backends"))
    started = []
    try:
        started.append(Backend("blue-1", d))
        started.append(Backend("green-1", d))
        yield Backends(*started)
    finally:
        for b in started:
            b.stop()


@pytest.fixture
def backend_factory(tmp_path):
    started = []

    def start(name):
        b = Backend(name, str(tmp_path))
        started.append(b)
        return b

    yield start
    for b in started:
        b.stop()


# -- proxy ------------------------------------------------------------------------------------

class Proxy:
    def __init__(self, config_path, port, workdir):
        self.config = config_path
        self.port = port
        self.url = "http://127.0.0.1:%d" % port
        self.log = os.path.join(workdir, "switchyard-%d.log" % port)
        self._logf = open(self.log, "wb")
        self.proc = subprocess.Popen([SWITCHYARD, "-c", config_path], stdin=subprocess.DEVNULL,
                                     stdout=self._logf, stderr=subprocess.STDOUT)
        self.pid = self.proc.pid
        self.stopped = False

    def log_text(self):
        with open(self.log, encoding="utf-8", errors="replace") as f:
            return f.read()

    def wait_ready(self):
        deadline = time.monotonic() + START_DEADLINE
        for _ in range(2000):
            if self.proc.poll() is not None:
                raise AssertionError("switchyard exited with %s before listening; log:\n%s"
                                     % (self.proc.returncode, self.log_text()))
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return
            except OSError:
                pass
            if time.monotonic() > deadline:
                break
            time.sleep(0.01)  # polling a port: there is no readiness signal to wait on
        raise AssertionError("switchyard did not accept on port %d within %.0f s; log:\n%s"
                             % (self.port, START_DEADLINE, self.log_text()))

    def status(self):
        return helpers.proc_status(self.pid)

    def stop(self):
        """SIGTERM, then SIGKILL after STOP_DEADLINE. Returns an error text or None."""
        if self.stopped:
            return None
        self.stopped = True
        err = None
        if self.proc.poll() is not None:
            err = "switchyard had already exited with %s" % self.proc.returncode
        else:
            self.proc.send_signal(signal.SIGTERM)
            try:
                rc = self.proc.wait(timeout=STOP_DEADLINE)
                if rc != 0:
                    err = "switchyard exited with %s on SIGTERM" % rc
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
                err = "switchyard did not exit within %.0f s of SIGTERM" % STOP_DEADLINE
        self._logf.close()
        if err:
            tail = self.log_text()[-4000:]
            return "%s; log tail:\n%s" % (err, tail)
        return None


def default_clusters(backends):
    return {"blue": {"endpoints": [backends.blue.addr]},
            "green": {"endpoints": [backends.green.addr]}}


def default_apps():
    return [{"name": "web", "hosts": ["*"], "weights": {"blue": 100, "green": 0}}]


def make_config(port, clusters, apps, limits=None, timeouts=None, workers=1, extra=None):
    doc = {"listen": [{"address": "127.0.0.1:%d" % port}]}
    if workers is not None:
        doc["workers"] = workers
    to = {"drain": "5s"}  # keeps teardown well inside STOP_DEADLINE
    to.update(timeouts or {})
    if limits:
        doc["limits"] = limits
    doc["timeouts"] = to
    doc["clusters"] = clusters
    doc["apps"] = apps
    if extra:
        doc.update(extra)
    return helpers.to_yaml(doc)


@pytest.fixture
def proxy(backends, tmp_path):
    """Factory: proxy(apps=None, clusters=None, limits=None, timeouts=None, workers=1,
    extra=None, config_text=None) -> Proxy (started, accepting). `clusters` maps a name to a
    list of addresses or to a full cluster dict; the default is blue/green on the backends."""
    started = []

    def start(apps=None, clusters=None, limits=None, timeouts=None, workers=1, extra=None,
              config_text=None):
        port = helpers.free_port()
        if clusters is None:
            cl = default_clusters(backends)
        else:
            cl = {k: (v if isinstance(v, dict) else {"endpoints": list(v)})
                  for k, v in clusters.items()}
        text = config_text.replace("@PORT@", str(port)) if config_text else make_config(
            port, cl, apps if apps is not None else default_apps(), limits, timeouts,
            workers, extra)
        path = tmp_path / ("switchyard-%d.yaml" % port)
        path.write_text(text)
        p = Proxy(str(path), port, str(tmp_path))
        started.append(p)
        p.wait_ready()
        return p

    yield start
    errors = [e for e in (p.stop() for p in started) if e]
    if errors:
        pytest.fail("\n".join(errors), pytrace=False)

