# SPDX-License-Identifier: MIT
"""Helpers for the hot-reload tests (test_40_reload.py): a switchyard process started on any
config path (a ConfigMap volume's symlink too) with debug logging, whose log is read as
reload events; the three ways a file gets replaced; a keep-alive probe client; h2load and curl
load with their results parsed; certificates; the proxy's upstream TCP connections from /proc.
Stdlib (plus python3-h2 for the HTTP/2 client); every wait has a deadline."""

import http.client
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import threading
import time

import conftest
import helpers
from helpers import CURL

DEBOUNCE_S = 0.2              # proxy/main.c WATCH_DEBOUNCE_MS
SETTLE_S = 3 * DEBOUNCE_S     # long enough that a second, debounced reload would have shown

_PUBLISHED = re.compile(r" reload: generation (\d+) published: ")
_REJECTED = re.compile(r" reload: rejected \(generation (\d+) kept, (\d+) failed so far\): (.*)$")
_UNCHANGED = re.compile(r" reload: file unchanged \(generation (\d+) kept\)")


# -- the proxy ----------------------------------------------------------------------------------

class ReloadProxy:
    """switchyard -c CONFIG -l debug (debug so that a change the watcher saw but found
    unchanged is logged too), on any config path. Same contract as conftest.Proxy: stop()
    sends SIGTERM and reports anything but exit 0 within STOP_DEADLINE."""

    def __init__(self, config_path, port, workdir, args=("-l", "debug")):
        self.config = str(config_path)
        self.port = port
        self.url = "http://127.0.0.1:%d" % port
        self.log = os.path.join(str(workdir), "switchyard-%d.log" % port)
        self._logf = open(self.log, "wb")
        self.proc = subprocess.Popen(
            [conftest.SWITCHYARD, "-c", self.config] + list(args),
            stdin=subprocess.DEVNULL, stdout=self._logf, stderr=subprocess.STDOUT)
        self.pid = self.proc.pid
        self.stopped = False
        self._off, self._lines, self._pub, self._rej, self._unch = 0, [], [], [], 0

    def log_text(self):
        with open(self.log, encoding="utf-8", errors="replace") as f:
            return f.read()

    def status(self):
        return helpers.proc_status(self.pid)

    def wait_ready(self):
        helpers.wait_started(self.proc, self.log, 0,
                             time.monotonic() + conftest.START_DEADLINE)

    def stop(self):
        """SIGTERM, then SIGKILL after STOP_DEADLINE. Returns an error text or None."""
        if self.stopped:
            return None
        self.stopped = True
        return helpers.stop_switchyard(self.proc, self._logf, self.log, conftest.STOP_DEADLINE)

    def _scan(self):
        """Reads what the log gained since the last call (complete lines only)."""
        with open(self.log, "rb") as f:
            f.seek(self._off)
            data = f.read()
        end = data.rfind(b"\n") + 1
        self._off += end
        for ln in data[:end].decode("utf-8", "replace").splitlines():
            self._lines.append(ln)
            m = _PUBLISHED.search(ln)
            if m:
                self._pub.append(int(m.group(1)))
            m = _REJECTED.search(ln)
            if m:
                self._rej.append((int(m.group(1)), int(m.group(2)), m.group(3)))
            if _UNCHANGED.search(ln):
                self._unch += 1

    def lines(self):
        self._scan()
        return list(self._lines)

    def published(self):
        """Generations published by reloads, in log order."""
        self._scan()
        return list(self._pub)

    def rejected(self):
        """[(generation kept, failures so far, 'FILE:L:C: message')] in log order."""
        self._scan()
        return list(self._rej)

    def unchanged(self):
        """How many times a reload found the file's bytes unchanged (debug log)."""
        self._scan()
        return self._unch

    def wait_for(self, cond, what, timeout=5.0):
        """Polls the log until cond() is true (the proxy has no other signal of a reload)."""
        deadline = time.monotonic() + timeout
        for _ in range(100000):
            v = cond()
            if v:
                return v
            if self.proc.poll() is not None:
                raise AssertionError("switchyard exited (%s) waiting for %s; log tail:\n%s"
                                     % (self.proc.returncode, what, self.log_text()[-3000:]))
            if time.monotonic() > deadline:
                break
            time.sleep(0.002)
        raise AssertionError("no %s within %.1f s; log tail:\n%s"
                             % (what, timeout, self.log_text()[-3000:]))

    def wait_published(self, n, timeout=5.0):
        """Waits until the n-th reload publication is in the log; returns its generation."""
        def nth():
            self._scan()
            return self._pub[n - 1] if len(self._pub) >= n else None
        return self.wait_for(nth, "publication #%d" % n, timeout)

    def wait_rejected(self, n, timeout=5.0):
        def nth():
            self._scan()
            return self._rej[n - 1] if len(self._rej) >= n else None
        return self.wait_for(nth, "rejection #%d" % n, timeout)

    def hup(self):
        self.proc.send_signal(signal.SIGHUP)


def start_proxy(started, config_path, port, workdir, text=None):
    """Writes `text` (if given) to config_path, starts a ReloadProxy and waits until it
    accepts. `started` collects it for the fixture's teardown."""
    if text is not None:
        with open(config_path, "w") as f:
            f.write(text)
    p = ReloadProxy(config_path, port, workdir)
    started.append(p)
    p.wait_ready()
    return p


# -- configs ------------------------------------------------------------------------------------

def listen(port, cert=None, key=None):
    d = {"address": "127.0.0.1:%d" % port}
    if cert:
        d["tls"] = {"cert": str(cert), "key": str(key)}
    return d


def config(listens, clusters, apps, workers=1, timeouts=None, limits=None, admin=None):
    """The YAML of a config. `listens`: ports or listen() dicts; `clusters`: name -> list of
    addresses; `apps`: (name, [hosts], {cluster: weight}) tuples or full dicts; `admin`: the
    admin socket's path."""
    doc = {"workers": workers,
           "listen": [x if isinstance(x, dict) else listen(x) for x in listens]}
    if limits:
        doc["limits"] = limits
    if admin:
        doc["admin"] = {"socket": str(admin)}
        doc["state"] = str(admin) + ".state"
    to = {"drain": "5s"}
    to.update(timeouts or {})
    doc["timeouts"] = to
    doc["shutdown"] = {"delay": "0s"}  # no 5 s of accepting on at every stop (shutdown.delay)
    doc["clusters"] = {k: {"endpoints": list(v)} for k, v in clusters.items()}
    doc["apps"] = [a if isinstance(a, dict) else
                   {"name": a[0], "hosts": list(a[1]), "weights": dict(a[2])} for a in apps]
    return helpers.to_yaml(doc)


def web(blue, green, hosts=("*",), name="web"):
    return (name, list(hosts), {"blue": blue, "green": green})


# -- replacing the file -------------------------------------------------------------------------

def write_rename(path, text):
    """A tool's atomic update: write a temporary file beside it, rename it over the file."""
    tmp = str(path) + ".tmp-%d" % os.getpid()
    with open(tmp, "w") as f:
        f.write(text)
    os.rename(tmp, str(path))


def write_inplace(path, text):
    """An editor's or a shell's `>`: open with O_TRUNC, write, close (same inode)."""
    with open(str(path), "w") as f:
        f.write(text)


class ConfigMapVolume:
    """A Kubernetes ConfigMap volume as kubelet's AtomicWriter lays it out:
        DIR/..2026_..._N/NAME   the data of one version
        DIR/..data -> ..2026_..._N
        DIR/NAME -> ..data/NAME   (the path given to the proxy)
    An update writes a new timestamped directory, points `..data_tmp` at it, renames
    `..data_tmp` over `..data` (rename(2), what `mv -T` does) and removes the old directory."""

    def __init__(self, root, name, text):
        self.root = str(root)
        self.name = name
        self.serial = 0
        os.makedirs(self.root, exist_ok=True)
        self.current = self._version(text)
        os.symlink(self.current, os.path.join(self.root, "..data"))
        os.symlink(os.path.join("..data", name), os.path.join(self.root, name))
        self.path = os.path.join(self.root, name)

    def _version(self, text):
        self.serial += 1
        ts = time.strftime("..%Y_%m_%d_%H_%M_%S", time.gmtime()) + ".%09d" % self.serial
        os.mkdir(os.path.join(self.root, ts))
        with open(os.path.join(self.root, ts, self.name), "w") as f:
            f.write(text)
        return ts

    def update(self, text):
        old = self.current
        new = self._version(text)
        tmp = os.path.join(self.root, "..data_tmp")
        os.symlink(new, tmp)
        os.rename(tmp, os.path.join(self.root, "..data"))
        shutil.rmtree(os.path.join(self.root, old))
        self.current = new

    def data_file(self):
        """The current version's file itself (inside a directory nobody watches)."""
        return os.path.join(self.root, self.current, self.name)


# -- clients ------------------------------------------------------------------------------------

class Probe:
    """Sequential GETs on one HTTP/1.1 keep-alive connection; returns x-backend tags."""

    def __init__(self, port, host="probe.test", timeout=10):
        self.port, self.host, self.timeout = port, host, timeout
        self.conn = None

    def tags(self, n, path="/probe"):
        out = []
        for _ in range(n):
            if self.conn is None:
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port,
                                                       timeout=self.timeout)
            self.conn.request("GET", path, headers={"Host": self.host})
            r = self.conn.getresponse()
            r.read()
            assert r.status == 200, (r.status, r.getheaders())
            out.append(r.getheader("x-backend"))
            if r.will_close:
                self.close()
        return out

    def count(self, n, names=("blue-1", "green-1"), path="/probe"):
        t = self.tags(n, path)
        return tuple(t.count(x) for x in names)

    def close(self):
        if self.conn is not None:
            self.conn.close()
            self.conn = None


def split(port, n=100, host="app.test"):
    """(blue, green) over n sequential requests on a fresh connection."""
    pr = Probe(port, host)
    try:
        return pr.count(n, path="/split")
    finally:
        pr.close()


_H2LOAD_REQ = re.compile(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, "
                         r"(\d+) failed, (\d+) errored, (\d+) timeout")
_H2LOAD_ST = re.compile(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx")
_H2LOAD_FIN = re.compile(r"finished in ([\d.]+)s, ([\d.]+) req/s")


class H2Load:
    """h2load in the background (bounded by -D); result() parses its summary."""

    def __init__(self, url, h1=False, duration=20, clients=4, streams=4, rps=None):
        args = ["h2load", "-D", str(duration), "-c", str(clients)]
        if h1:
            args.append("--h1")
        else:
            args += ["-m", str(streams)]
        if rps:
            args += ["--rps", str(rps)]
        args.append(url)
        self.label = "h1" if h1 else "h2c"
        self.duration = duration
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True)

    def result(self):
        try:
            out, _ = self.proc.communicate(timeout=self.duration + 30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, _ = self.proc.communicate(timeout=10)
            raise AssertionError("h2load %s did not end:\n%s" % (self.label, out[-2000:]))
        m, s, f = _H2LOAD_REQ.search(out), _H2LOAD_ST.search(out), _H2LOAD_FIN.search(out)
        assert m and s and f, "h2load %s printed no summary (rc %s):\n%s" % (
            self.label, self.proc.returncode, out[-2000:])
        keys = ("total", "started", "done", "succeeded", "failed", "errored", "timeout")
        r = dict(zip(keys, map(int, m.groups())))
        r.update(zip(("2xx", "3xx", "4xx", "5xx"), map(int, s.groups())))
        r["seconds"], r["rps"] = float(f.group(1)), float(f.group(2))
        r["output"], r["label"] = out, self.label
        return r

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)


class CurlLoop(threading.Thread):
    """curl runs, one after another, until stop() (or max_runs / max_seconds). `variants` are
    (curl options, url, n) taken in turn: each run opens one connection and sends n GETs on
    it. Default: HTTP/1.1 with 4 GETs, and h2c by prior knowledge with one (curl 7.88.1
    cannot reuse a prior-knowledge connection: curl/curl#10634, fixed in 8.0). Records every
    status code; codes other than 200 (or a curl error) are failures."""

    def __init__(self, url, variants=None, max_runs=5000, max_seconds=60):
        super().__init__(daemon=True)
        self.variants = variants or [(["--http1.1"], url, 4),
                                     (["--http2-prior-knowledge"], url, 1)]
        self.max_runs, self.max_seconds = max_runs, max_seconds
        self.halt = threading.Event()
        self.runs = 0
        self.codes = {}
        self.per_variant = [0] * len(self.variants)
        self.failures = []

    def run(self):
        deadline = time.monotonic() + self.max_seconds
        while not self.halt.is_set() and self.runs < self.max_runs \
                and time.monotonic() < deadline:
            k = self.runs % len(self.variants)
            opts, url, n = self.variants[k]
            args = [CURL, "-sS"] + list(opts) + ["--max-time", "10", "-w", "%{http_code}\\n"]
            for _ in range(n):
                args += ["-o", "/dev/null", url]
            try:
                p = subprocess.run(args, capture_output=True, text=True, timeout=20)
                codes = p.stdout.split()
                err = p.stderr.strip() if p.returncode else ""
            except subprocess.TimeoutExpired:
                codes, err = [], "curl timed out"
            self.runs += 1
            self.per_variant[k] += len(codes)
            for c in codes:
                self.codes[c] = self.codes.get(c, 0) + 1
            if err or len(codes) != n or any(c != "200" for c in codes):
                self.failures.append((opts, codes, err))

    def stop(self):
        self.halt.set()
        self.join(timeout=30)

    def requests(self):
        return sum(self.codes.values())


class H2Client:
    """A minimal h2c client (python3-h2): several streams on one connection."""

    def __init__(self, port, authority="app.test"):
        import h2.config
        import h2.connection
        import h2.events
        self._ev = h2.events
        self.authority = authority
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        self.conn.initiate_connection()
        self.sock.sendall(self.conn.data_to_send())
        self.streams = {}  # sid -> {"headers": {}, "body": b"", "ended": bool, "reset": code}

    def request(self, path):
        sid = self.conn.get_next_available_stream_id()
        self.conn.send_headers(sid, [(":method", "GET"), (":path", path), (":scheme", "http"),
                                     (":authority", self.authority)], end_stream=True)
        self.sock.sendall(self.conn.data_to_send())
        self.streams[sid] = {"headers": {}, "body": b"", "ended": False, "reset": None}
        return sid

    def response(self, sid, timeout=10.0):
        """(status, headers, body) once the stream ends; raises on a reset or a close."""
        deadline = time.monotonic() + timeout
        st = self.streams[sid]
        while not st["ended"]:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("stream %d did not end in %.1f s" % (sid, timeout))
            self.sock.settimeout(left)
            data = self.sock.recv(65536)
            if not data:
                raise EOFError("connection closed before stream %d ended" % sid)
            for ev in self.conn.receive_data(data):
                s = self.streams.get(getattr(ev, "stream_id", None))
                if isinstance(ev, self._ev.ResponseReceived) and s is not None:
                    s["headers"] = {k.decode(): v.decode() for k, v in ev.headers}
                elif isinstance(ev, self._ev.DataReceived) and s is not None:
                    s["body"] += ev.data
                    self.conn.acknowledge_received_data(ev.flow_controlled_length,
                                                        ev.stream_id)
                elif isinstance(ev, self._ev.StreamEnded) and s is not None:
                    s["ended"] = True
                elif isinstance(ev, self._ev.StreamReset) and s is not None:
                    raise AssertionError("stream %d reset: %r" % (ev.stream_id, ev.error_code))
                elif isinstance(ev, self._ev.ConnectionTerminated):
                    raise AssertionError("GOAWAY: %r" % ev)
            out = self.conn.data_to_send()
            if out:
                self.sock.sendall(out)
        return int(st["headers"].get(":status", 0)), st["headers"], st["body"]

    def close(self):
        self.sock.close()


# -- TLS ----------------------------------------------------------------------------------------

def new_cert(directory, cn, serial):
    """A self-signed certificate and key written as cert.pem.new and key.pem.new; returns
    the certificate's DER bytes. install() renames them into place."""
    d = str(directory)
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes",
                    "-keyout", os.path.join(d, "key.pem.new"),
                    "-out", os.path.join(d, "cert.pem.new"), "-days", "2",
                    "-set_serial", str(serial), "-subj", "/CN=%s" % cn],
                   check=True, capture_output=True, timeout=60)
    with open(os.path.join(d, "cert.pem.new")) as f:
        return ssl.PEM_cert_to_DER_cert(f.read())


def install(directory, *names):
    for n in names:
        os.rename(os.path.join(str(directory), n + ".pem.new"),
                  os.path.join(str(directory), n + ".pem"))


def make_cert(directory, cn, serial):
    """new_cert() renamed into place as cert.pem and key.pem; returns the DER."""
    der = new_cert(directory, cn, serial)
    install(directory, "key", "cert")
    return der


def peer_cert(port, timeout=5):
    """The DER certificate a new TLS connection to the port is shown."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as raw:
        with ctx.wrap_socket(raw, server_hostname="app.test") as s:
            return s.getpeercert(binary_form=True)


def cert_serial(der):
    out = subprocess.run(["openssl", "x509", "-inform", "DER", "-noout", "-serial"], input=der,
                         capture_output=True, timeout=10, check=True).stdout.decode()
    return out.strip().partition("=")[2]


# -- sockets of a process -----------------------------------------------------------------------

def upstream_conns(pid, port):
    """How many ESTABLISHED TCP sockets process `pid` holds to 127.0.0.1:port (from its fds
    and /proc/net/tcp)."""
    inodes = set()
    fd_dir = "/proc/%d/fd" % pid
    for fd in os.listdir(fd_dir):
        try:
            link = os.readlink(os.path.join(fd_dir, fd))
        except OSError:
            continue
        if link.startswith("socket:["):
            inodes.add(link[8:-1])
    n = 0
    with open("/proc/%d/net/tcp" % pid) as f:
        next(f)
        for line in f:
            parts = line.split()
            rem, st, inode = parts[2], parts[3], parts[9]
            if st == "01" and inode in inodes and int(rem.split(":")[1], 16) == port:
                n += 1
    return n


def refused(port, timeout=2.0):
    """True when a TCP connect to 127.0.0.1:port is refused."""
    try:
        socket.create_connection(("127.0.0.1", port), timeout=timeout).close()
        return False
    except ConnectionRefusedError:
        return True
