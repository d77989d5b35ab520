# SPDX-License-Identifier: MIT
"""Helpers shared by the switchyard e2e tests: curl and raw-socket clients, a tiny YAML writer,
/proc readings and measurements. Stdlib only; every wait here has a deadline."""

import json
import os
import random
import re
import signal
import socket
import subprocess
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
CURL = "curl"

# Measurements ("MEASURE name=value unit") are printed, appended to $SY_MEASURE_FILE when set,
# and repeated in pytest's terminal summary by conftest.py.
MEASURES = []


def measure(name, value, unit="", note=""):
    line = "MEASURE %s=%s%s%s" % (name, value, (" " + unit) if unit else "",
                                  ("  # " + note) if note else "")
    MEASURES.append(line)
    print(line, flush=True)
    path = os.environ.get("SY_MEASURE_FILE")
    if path:
        with open(path, "a", encoding="utf-8") as f:
            f.write(line + "\n")


def free_port():
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ephemeral_low():
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


_STEADY_GIVEN = set()


def steady_port():
    """A free TCP port on 127.0.0.1 below the kernel's ephemeral range, for a server that
    stops and must come back on the same port (an etcd member: its peers know its URL). A
    port from free_port() is an ephemeral one, which any outgoing connection may take while
    the server is down ("bind: address already in use" at the restart)."""
    low = _ephemeral_low()
    top = max(1025, min(low, 65536))
    bottom = max(1024, top - 12000)
    rnd = random.Random()
    for _ in range(200):
        port = rnd.randrange(bottom, top)
        if port in _STEADY_GIVEN:  # handed out already, maybe not yet bound
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            _STEADY_GIVEN.add(port)
            return port
    return free_port()


_STARTED = re.compile(rb"main: switchyard \S+: generation \d+, ")


def wait_started(proc, log_path, offset, deadline):
    """Until switchyard's start-up line appears in its log after byte `offset`. The proxy
    writes it once every listener of the file listens (plain and TLS, on every worker), so
    no port is polled and none is reached early. Raises with the log if the process exits or
    the deadline passes."""
    while True:
        with open(log_path, "rb") as f:
            f.seek(offset)
            if _STARTED.search(f.read()):
                return
        if proc.poll() is not None:
            raise AssertionError("switchyard exited with %s before it started; log:\n%s"
                                 % (proc.returncode, _tail(log_path)))
        if time.monotonic() > deadline:
            raise AssertionError("switchyard did not start in time; log:\n%s" % _tail(log_path))
        time.sleep(0.01)  # the log is the readiness signal; there is nothing to block on


def stop_switchyard(proc, logf, log_path, deadline_s):
    """SIGTERM, then SIGKILL after `deadline_s`; closes the log file. Returns None after a
    clean exit (0), else what went wrong with the log's tail."""
    err = None
    if proc.poll() is not None:
        err = "switchyard had already exited with %s" % proc.returncode
    else:
        proc.send_signal(signal.SIGTERM)
        try:
            rc = proc.wait(timeout=deadline_s)
            if rc != 0:
                err = "switchyard exited with %s on SIGTERM" % rc
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
            err = "switchyard did not exit within %.0f s of SIGTERM" % deadline_s
    logf.close()
    if err:
        return "%s; log tail:\n%s" % (err, _tail(log_path, 4000))
    return None


def _tail(path, n=3000):
    with open(path, encoding="utf-8", errors="replace") as f:
        return f.read()[-n:]


def proc_status(pid):
    """VmRSS and VmHWM (peak RSS) of a process, in KiB."""
    out = {}
    with open("/proc/%d/status" % pid, encoding="ascii", errors="replace") as f:
        for line in f:
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(rest.split()[0])
    return out


# -- YAML -------------------------------------------------------------------------------------

_PLAIN = re.compile(r"[A-Za-z0-9_/.][A-Za-z0-9_./:-]*")


def _scalar(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return str(v)
    s = str(v)
    if _PLAIN.fullmatch(s) and not s.endswith(":") and s not in ("true", "false", "null", "~"):
        return s
    return json.dumps(s)  # a JSON string is a valid YAML double-quoted scalar


def _is_scalar(v):
    return not isinstance(v, (dict, list, tuple))


def _emit(obj, indent):
    pad = " " * indent
    lines = []
    if isinstance(obj, dict):
        for k, v in obj.items():
            if _is_scalar(v):
                lines.append("%s%s: %s" % (pad, k, _scalar(v)))
            elif isinstance(v, (list, tuple)) and all(_is_scalar(x) for x in v):
                lines.append("%s%s: [%s]" % (pad, k, ", ".join(_scalar(x) for x in v)))
            elif isinstance(v, dict) and v and all(_is_scalar(x) for x in v.values()) \
                    and len(v) <= 4:
                lines.append("%s%s: {%s}" % (pad, k, ", ".join(
                    "%s: %s" % (kk, _scalar(vv)) for kk, vv in v.items())))
            else:
                lines.append("%s%s:" % (pad, k))
                lines += _emit(v, indent + 2)
    elif isinstance(obj, (list, tuple)):
        for item in obj:
            if _is_scalar(item):
                lines.append("%s- %s" % (pad, _scalar(item)))
                continue
            sub = _emit(item, indent + 2)
            sub[0] = pad + "- " + sub[0].lstrip()
            lines += sub
    else:
        lines.append(pad + _scalar(obj))
    return lines


def to_yaml(doc):
    """Block-style YAML for dicts/lists of str/int (small scalar maps and lists in flow style)."""
    return "\n".join(_emit(doc, 0)) + "\n"


# -- curl ---------------------------------------------------------------------------------------

class Response:
    def __init__(self, status, headers, body, info=None):
        self.status = status
        self.headers = headers  # [(name, value)] as received
        self.body = body
        self.info = info or {}

    def header(self, name):
        name = name.lower()
        for n, v in self.headers:
            if n.lower() == name:
                return v
        return None

    def header_all(self, name):
        name = name.lower()
        return [v for n, v in self.headers if n.lower() == name]

    def json(self):
        return json.loads(self.body)

    @property
    def backend(self):
        return self.header("x-backend")

    def __repr__(self):
        return "<Response %s %r %r>" % (self.status, self.headers, self.body[:200])


def _parse_dump(text):
    """Splits a curl -D dump into final (non-1xx) header blocks: [(status, headers)]."""
    blocks = []
    cur = None
    for line in text.split("\n"):
        line = line.rstrip("\r")
        if line.startswith("HTTP/"):
            cur = [int(line.split()[1]), []]
            blocks.append(cur)
        elif line and cur is not None and ":" in line:
            n, _, v = line.partition(":")
            cur[1].append((n, v.strip()))
    return [(s, h) for s, h in blocks if s >= 200 or s == 101]


def curl(urls, *opts, timeout=60, check=True):
    """Runs one curl for one or more URLs (transfers reuse the connection as curl does) and
    returns one Response per URL. `opts` are extra curl options placed before the URLs."""
    if isinstance(urls, str):
        urls = [urls]
    with tempfile.TemporaryDirectory(prefix="sy-curl-") as d:
        dump = os.path.join(d, "headers")
        args = [CURL, "-sS", "--max-time", str(timeout), "-D", dump, "-w", "%{json}\\n"]
        args += list(opts)
        for i, u in enumerate(urls):
            args += ["-o", os.path.join(d, "body%d" % i), u]
        p = subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           timeout=timeout + 10)
        infos = [json.loads(x) for x in p.stdout.decode().splitlines() if x.startswith("{")]
        if check and p.returncode != 0:
            raise AssertionError("curl failed (rc %d): %s\n%s" % (
                p.returncode, " ".join(args), p.stderr.decode(errors="replace")))
        blocks = _parse_dump(open(dump, encoding="latin-1").read()) \
            if os.path.exists(dump) else []
        out = []
        for i in range(len(urls)):
            path = os.path.join(d, "body%d" % i)
            body = open(path, "rb").read() if os.path.exists(path) else b""
            status, headers = blocks[i] if i < len(blocks) else (0, [])
            info = infos[i] if i < len(infos) else {}
            out.append(Response(info.get("http_code", status) or status, headers, body, info))
        return out


def curl1(url, *opts, **kw):
    return curl([url], *opts, **kw)[0]


# -- raw sockets -------------------------------------------------------------------------------

class Raw:
    """A plain TCP client for exact bytes on the wire. Every read has a deadline."""

    def __init__(self, port, timeout=10.0):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.timeout = timeout
        self.buf = b""
        self.eof = False

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        self.sock.close()

    def send(self, data):
        self.sock.sendall(data)

    def _fill(self, deadline):
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("no data within %.1f s (have %r)" % (self.timeout, self.buf[:200]))
        self.sock.settimeout(left)
        data = self.sock.recv(65536)
        if not data:
            self.eof = True
            raise EOFError("connection closed (have %r)" % self.buf[:200])
        self.buf += data

    def _line(self, deadline):
        while b"\r\n" not in self.buf:
            self._fill(deadline)
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def _exact(self, n, deadline):
        while len(self.buf) < n:
            self._fill(deadline)
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def read_response(self, head_request=False, skip_1xx=True):
        """Reads one response. Raises EOFError when the peer closed first."""
        deadline = time.monotonic() + self.timeout
        while True:
            status_line = self._line(deadline).decode("latin-1")
            parts = status_line.split(" ", 2)
            if len(parts) < 2 or not parts[0].startswith("HTTP/1."):
                raise AssertionError("bad status line %r" % status_line)
            status = int(parts[1])
            headers = []
            while True:
                line = self._line(deadline)
                if not line:
                    break
                n, _, v = line.decode("latin-1").partition(":")
                headers.append((n, v.strip()))
            r = Response(status, headers, b"")
            r.version = parts[0]
            if 100 <= status < 200 and skip_1xx:
                continue
            break
        te = (r.header("transfer-encoding") or "").lower()
        if head_request or status < 200 or status in (204, 304):
            return r
        if "chunked" in te:
            body = []
            while True:
                size = int(self._line(deadline).split(b";")[0], 16)
                if size == 0:
                    while self._line(deadline):
                        pass
                    break
                body.append(self._exact(size, deadline))
                self._line(deadline)
            r.body = b"".join(body)
        elif r.header("content-length") is not None:
            r.body = self._exact(int(r.header("content-length")), deadline)
        else:
            try:
                while True:
                    self._fill(deadline)
            except EOFError:
                pass
            r.body, self.buf = self.buf, b""
        return r

    def closed(self, timeout=5.0):
        """True when the peer closes (EOF or reset) within `timeout` with nothing more sent.
        Returns the unexpected bytes instead when data arrives."""
        if self.buf:
            return self.buf
        if self.eof:
            return True
        deadline = time.monotonic() + timeout
        try:
            self._fill(deadline)
        except EOFError:
            return True
        except ConnectionResetError:
            return True
        except (TimeoutError, socket.timeout):
            return False
        return self.buf


def get_request(path, host="app.test", extra=b"", version=b"HTTP/1.1"):
    return b"GET " + path.encode() + b" " + version + b"\r\nHost: " + host.encode() + \
        b"\r\n" + extra + b"\r\n"


def sync_backends(proxy, host="app.test"):
    """Sends one request through the proxy and waits for its answer, so that anything the
    proxy forwarded before it has reached a backend (and its log)."""
    r = curl1(proxy.url + "/sync", "-H", "Host: " + host, timeout=10)
    assert r.status == 200, r


# -- builds and protocols -------------------------------------------------------------------------

def is_asan(path):
    """True when the binary at `path` is built with AddressSanitizer (its quarantine and shadow
    memory make RSS an order of magnitude larger, so memory bounds are wider)."""
    try:
        with open(path, "rb") as f:
            return b"__asan_init" in f.read()
    except OSError:
        return False


def wait_for(pred, timeout, what, interval=0.01):
    """Polls pred() until it is true (returns its value) or `timeout` seconds pass (raises)."""
    deadline = time.monotonic() + timeout
    for _ in range(int(timeout / interval) + 2):
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            break
        time.sleep(interval)  # polling: the condition has no event to wait on
    raise AssertionError("timed out after %.1f s waiting for %s" % (timeout, what))


def log_has(proc, text, timeout=5.0):
    """True once `text` appears in proc.log_text(): the proxy's log is written by a thread of
    its own, so a line may land a moment after the event that caused it."""
    deadline = time.monotonic() + timeout
    while True:
        if text in proc.log_text():
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)  # polling the log: nothing else says a line was written
