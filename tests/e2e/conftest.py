# SPDX-License-Identifier: MIT
"""Fixtures for the switchyard e2e tests.

`backends`: blue (blue-1) and green (green-1), real HTTP/1.1 servers (backend.py) on free ports,
started once per test module. `backend_factory(name)` starts more. `proxy(...)`: starts
$SWITCHYARD -c on a temp config for one test and stops it with SIGTERM at teardown (it must exit
0 within 10 s); `proxy(tls=tls_cert)` adds a TLS listener (`p.tls_port`, `p.tls_url`) and
`p.reload(apps)` rewrites the file and sends SIGHUP. `tls_cert`: a self-signed certificate and
key made with the openssl CLI for the session. Every test is skipped when $SWITCHYARD is not an
executable file.
"""

import json
import os
import re
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
    def __init__(self, config_path, port, workdir, tls_port=None, spec=None):
        self.config = config_path
        self.port = port
        self.url = "http://127.0.0.1:%d" % port
        self.tls_port = tls_port
        self.tls_url = "https://127.0.0.1:%d" % tls_port if tls_port else None
        self.spec = spec  # make_config's arguments, for reload(); None for config_text
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
        """Until the start-up line is logged: every listener (the TLS one too) accepts."""
        helpers.wait_started(self.proc, self.log, 0, time.monotonic() + START_DEADLINE)

    def generation(self):
        """The highest generation the log says was published (1 at start-up)."""
        gens = [int(g) for g in re.findall(r"generation (\d+) published", self.log_text())]
        return max(gens + [1])

    def reload(self, apps=None, clusters=None, timeout=5.0):
        """Rewrites the config file (atomically, same listeners and limits) with new `apps`
        and/or `clusters`, sends SIGHUP and waits until the log says a newer generation was
        published. Returns that generation."""
        assert self.spec is not None, "reload() needs a proxy started without config_text"
        if apps is not None:
            self.spec["apps"] = apps
        if clusters is not None:
            self.spec["clusters"] = _clusters_doc(clusters)
        before = self.generation()
        tmp = self.config + ".tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(make_config(self.port, **self.spec))
        os.rename(tmp, self.config)
        self.proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + timeout
        for _ in range(10000):
            gen = self.generation()
            if gen > before:
                return gen
            if self.proc.poll() is not None or time.monotonic() > deadline:
                break
            time.sleep(0.005)  # polling the log: the proxy has no other reload signal
        raise AssertionError("no generation after %d published within %.1f s; log tail:\n%s"
                             % (before, timeout, self.log_text()[-3000:]))

    def status(self):
        return helpers.proc_status(self.pid)

    def wait_exit(self, timeout):
        """For a test that stopped the proxy itself: waits for the exit, returns its status
        (None after `timeout` seconds, the proxy still running) and, once it exited, leaves
        nothing for the teardown to do."""
        try:
            rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None
        if not self.stopped:
            self.stopped = True
            self._logf.close()
        return rc

    def stop(self):
        """SIGTERM, then SIGKILL after STOP_DEADLINE. Returns an error text or None."""
        if self.stopped:
            return None
        self.stopped = True
        return helpers.stop_switchyard(self.proc, self._logf, self.log, STOP_DEADLINE)


def default_clusters(backends):
    return {"blue": {"endpoints": [backends.blue.addr]},
            "green": {"endpoints": [backends.green.addr]}}


def default_apps():
    return [{"name": "web", "hosts": ["*"], "weights": {"blue": 100, "green": 0}}]


def make_config(port, clusters, apps, limits=None, timeouts=None, workers=1, extra=None,
                tls=None):
    """`tls`: None, or {"port": N, "cert": PATH, "key": PATH} for a second, TLS listener."""
    doc = {"listen": [{"address": "127.0.0.1:%d" % port}]}
    if tls:
        doc["listen"].append({"address": "127.0.0.1:%d" % tls["port"],
                              "tls": {"cert": tls["cert"], "key": tls["key"]}})
    if workers is not None:
        doc["workers"] = workers
    to = {"drain": "5s"}  # keeps teardown well inside STOP_DEADLINE
    to.update(timeouts or {})
    if limits:
        doc["limits"] = limits
    doc["timeouts"] = to
    # No 5 s of accepting on at every stop (the default shutdown.delay): `extra` may set it.
    doc["shutdown"] = {"delay": "0s"}
    doc["clusters"] = clusters
    doc["apps"] = apps
    if extra:
        doc.update(extra)
    return helpers.to_yaml(doc)


@pytest.fixture(scope="session")
def tls_cert(tmp_path_factory):
    """(cert, key): a self-signed RSA 2048 certificate for CN=localhost (SAN localhost and
    127.0.0.1), made at test time with the openssl CLI."""
    d = tmp_path_factory.mktemp("tls")
    cert, key = str(d / "cert.pem"), str(d / "key.pem")
    p = subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes",
                        "-keyout", key, "-out", cert, "-days", "2", "-subj", "/CN=localhost",
                        "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
                       stdin=subprocess.DEVNULL, capture_output=True, timeout=60)
    if p.returncode != 0:
        raise AssertionError("openssl req failed: %s" % p.stderr.decode(errors="replace"))
    return cert, key


def _clusters_doc(clusters):
    return {k: (v if isinstance(v, dict) else {"endpoints": list(v)})
            for k, v in clusters.items()}


@pytest.fixture
def proxy(backends, tmp_path):
    """Factory: proxy(apps=None, clusters=None, limits=None, timeouts=None, workers=1,
    extra=None, config_text=None, tls=None) -> Proxy (started, accepting). `clusters` maps a
    name to a list of addresses or to a full cluster dict; the default is blue/green on the
    backends. `tls=(cert, key)` adds a TLS listener on another free port (p.tls_port)."""
    started = []

    def start(apps=None, clusters=None, limits=None, timeouts=None, workers=1, extra=None,
              config_text=None, tls=None):
        port = helpers.free_port()
        tls_port = helpers.free_port() if tls else None
        while tls_port == port:
            tls_port = helpers.free_port()
        cl = default_clusters(backends) if clusters is None else _clusters_doc(clusters)
        spec = None
        if config_text:
            text = config_text.replace("@PORT@", str(port))
        else:
            spec = {"clusters": cl, "apps": apps if apps is not None else default_apps(),
                    "limits": limits, "timeouts": timeouts, "workers": workers,
                    "extra": extra,
                    "tls": {"port": tls_port, "cert": tls[0], "key": tls[1]} if tls else None}
            text = make_config(port, **spec)
        path = tmp_path / ("switchyard-%d.yaml" % port)
        path.write_text(text)
        p = Proxy(str(path), port, str(tmp_path), tls_port=tls_port, spec=spec)
        started.append(p)
        p.wait_ready()
        return p

    yield start
    errors = [e for e in (p.stop() for p in started) if e]
    if errors:
        pytest.fail("\n".join(errors), pytrace=False)



@pytest.fixture
def admin_proxy(backends, tmp_path):
    """Factory: admin_proxy(apps, clusters=None, name="sy", start=True, limits=None,
    timeouts=None, **kw) -> AdminProxy (admin socket and journal; started unless start=False;
    `kw` goes to AdminProxy: workers, admin, state, args, ...). All are stopped at teardown,
    where anything but exit 0 on SIGTERM fails the test."""
    import shutil
    from admin_util import AdminProxy, socket_dir
    started = []
    sockdir = socket_dir()

    def start(apps, clusters=None, name="sy", start=True, limits=None, timeouts=None, **kw):
        p = AdminProxy(tmp_path, sockdir, backends, apps, name=name, clusters=clusters, **kw)
        if limits or timeouts:
            p.spec["limits"] = limits
            p.spec["timeouts"] = timeouts
            p.write_config()
        started.append(p)
        if start:
            p.start()
        return p

    yield start
    errors = [e for e in (p.stop() for p in started) if e]
    shutil.rmtree(sockdir, ignore_errors=True)
    if errors:
        pytest.fail("\n".join(errors), pytrace=False)
