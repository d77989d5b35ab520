# SPDX-License-Identifier: MIT
"""Helpers for the upstream HTTP/2, TLS, gRPC and drain tests (test_80..test_82): real peer
processes started and stopped by PID (nghttpd, the python3-h2 peer, the TLS backend, the gRPC
peer, the WebSocket echo server), a count of the TCP connections a server port has, and a
small synchronous HTTP/2 client on python3-h2. Every wait has a deadline."""

import json
import os
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time

import helpers

HERE = helpers.HERE
PYTHON = sys.executable or "/usr/bin/python3"
START_DEADLINE = 10.0


def find_tool(name):
    """A binary on PATH, or in /usr/sbin (nghttpd lives there; PATH may lack it)."""
    path = shutil.which(name)
    if path:
        return path
    for d in ("/usr/sbin", "/usr/local/sbin", "/sbin"):
        p = os.path.join(d, name)
        if os.access(p, os.X_OK):
            return p
    return None


NGHTTPD = find_tool("nghttpd")


class Peer:
    """A process started by a test. With `ready=True` it prints `ready PORT` on stdout;
    otherwise `port` is given and the peer is ready once it accepts there. stop() sends SIGTERM
    to this PID only, then SIGKILL after 5 s."""

    def __init__(self, args, workdir, name, ready=True, port=None):
        self.name = name
        self.args = args
        self.err_path = os.path.join(workdir, "%s.stderr" % name)
        self._err = open(self.err_path, "wb")
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=self._err, cwd=workdir)
        self.pid = self.proc.pid
        try:
            if ready:
                self.port = self._read_ready()
            else:
                self.port = port
                self._wait_accept()
        except Exception:
            self.stop()
            raise
        self.addr = "127.0.0.1:%d" % self.port

    def stderr_text(self):
        with open(self.err_path, encoding="utf-8", errors="replace") as f:
            return f.read()

    def _read_ready(self):
        sel = selectors.DefaultSelector()
        sel.register(self.proc.stdout, selectors.EVENT_READ)
        try:
            line = ""
            if sel.select(timeout=START_DEADLINE):
                line = self.proc.stdout.readline().decode(errors="replace").strip()
        finally:
            sel.close()
        if not line.startswith("ready "):
            raise RuntimeError("%s did not start (%r): %s\n%s" % (
                self.name, line, " ".join(self.args), self.stderr_text()[-2000:]))
        return int(line.split()[1])

    def _wait_accept(self):
        deadline = time.monotonic() + START_DEADLINE
        for _ in range(2000):
            if self.proc.poll() is not None:
                raise RuntimeError("%s exited with %s: %s\n%s" % (
                    self.name, self.proc.returncode, " ".join(self.args),
                    self.stderr_text()[-2000:]))
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return
            except OSError:
                pass
            if time.monotonic() > deadline:
                break
            time.sleep(0.01)  # polling a port: the peer has no readiness signal
        raise RuntimeError("%s does not accept on %d within %.0f s" % (
            self.name, self.port, START_DEADLINE))

    def alive(self):
        return self.proc.poll() is None

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        if self.proc.stdout:
            self.proc.stdout.close()
        self._err.close()


class Peers:
    """Everything a test (or a module) started; stop_all() at teardown."""

    def __init__(self, workdir):
        self.workdir = str(workdir)
        self.started = []

    def add(self, peer):
        self.started.append(peer)
        return peer

    def stop_all(self):
        for p in reversed(self.started):
            p.stop()
        self.started = []

    def nghttpd(self, docroot, tls=None, args=()):
        """nghttpd on a free port of 127.0.0.1: cleartext h2c, or TLS (ALPN h2) with
        tls=(cert, key). A port taken between the choice and the bind is retried."""
        last = None
        for attempt in range(3):
            port = helpers.free_port()
            cmd = [NGHTTPD, "-a", "127.0.0.1", "-d", str(docroot)] + list(args)
            if tls:
                cmd += [str(port), tls[1], tls[0]]
            else:
                cmd += ["--no-tls", str(port)]
            try:
                return self.add(Peer(cmd, self.workdir, "nghttpd-%d" % port, ready=False,
                                     port=port))
            except RuntimeError as e:
                last = e
        raise last

    def h2peer(self, name="h2peer", args=()):
        log = os.path.join(self.workdir, "%s.log" % name)
        open(log, "w").close()
        p = self.add(Peer([PYTHON, os.path.join(HERE, "h2_goaway_server.py"), "--name", name,
                           "--log", log] + list(args), self.workdir, name))
        p.log = log
        p.records = lambda: read_jsonl(log)
        return p

    def tls_backend(self, name, cert, key, client_ca=None):
        log = os.path.join(self.workdir, "%s.log" % name)
        open(log, "w").close()
        args = [PYTHON, os.path.join(HERE, "tls_backend.py"), "--name", name, "--log", log,
                "--cert", cert, "--key", key]
        if client_ca:
            args += ["--client-ca", client_ca]
        p = self.add(Peer(args, self.workdir, name))
        p.log = log
        p.records = lambda: read_jsonl(log)
        return p

    def grpc_server(self):
        return self.add(Peer([PYTHON, os.path.join(HERE, "grpc_peer.py"), "serve"],
                             self.workdir, "grpc-server"))

    def ws_echo(self, name):
        return self.add(Peer([PYTHON, os.path.join(HERE, "ws_echo.py"), "--name", name],
                             self.workdir, name))


def read_jsonl(path):
    out = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if line:
                try:
                    out.append(json.loads(line))
                except ValueError:
                    pass  # a line being written right now
    return out


# -- connections to a port ------------------------------------------------------------------------

def established_peers(port):
    """Remote ports of the ESTABLISHED TCP connections whose local port is `port` (the server
    side of each connection to a server listening there), read from /proc/net/tcp."""
    want = ":%04X" % port
    out = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table, encoding="ascii") as f:
                next(f)
                for line in f:
                    parts = line.split()
                    if len(parts) > 3 and parts[1].endswith(want) and parts[3] == "01":
                        out.add(int(parts[2].rsplit(":", 1)[1], 16))
        except OSError:
            pass
    return out


class ConnSampler(threading.Thread):
    """Samples the connections to a server port every `interval` s until stop(): the most open
    at once and every distinct client port seen."""

    def __init__(self, port, interval=0.02, limit=60.0):
        super().__init__(daemon=True)
        self.port, self.interval, self.limit = port, interval, limit
        self.halt = threading.Event()
        self.max_open = 0
        self.seen = set()
        self.samples = 0

    def run(self):
        deadline = time.monotonic() + self.limit
        while not self.halt.is_set() and time.monotonic() < deadline:
            peers = established_peers(self.port)
            self.max_open = max(self.max_open, len(peers))
            self.seen |= peers
            self.samples += 1
            self.halt.wait(self.interval)

    def stop(self):
        self.halt.set()
        self.join(timeout=10)
        return self


# -- a small HTTP/2 client ---------------------------------------------------------------------

class GoAway:
    def __init__(self, last_stream_id, error_code, data):
        self.last_stream_id = last_stream_id
        self.error_code = error_code
        self.data = data

    def __repr__(self):
        return "<GOAWAY last %d error %d %r>" % (self.last_stream_id, self.error_code,
                                                 self.data[:100])


class H2Client:
    """One HTTP/2 connection (cleartext, prior knowledge) on python3-h2, driven synchronously:
    request() opens a stream, events() reads what arrives within a deadline. Data is
    acknowledged (flow control) only when the test calls ack(), so a test decides how fast a
    download may go."""

    def __init__(self, port, timeout=10.0, window=65535):
        import h2.config
        import h2.connection
        import h2.settings
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        cfg = h2.config.H2Configuration(client_side=True, header_encoding="utf-8")
        self.conn = h2.connection.H2Connection(config=cfg)
        self.conn.local_settings = h2.settings.Settings(
            client=True, initial_values={
                h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: window,
                h2.settings.SettingCodes.ENABLE_PUSH: 0})
        self.conn.initiate_connection()
        self.flush()
        self.closed = False
        self.goaway = None       # the first GOAWAY received (a GoAway)...
        self.goaway_at = None    # ...and when (time.monotonic())
        self.rbuf = b""
        self.port = port

    def flush(self):
        data = self.conn.data_to_send()
        if data:
            self.sock.sendall(data)

    def request(self, path, host="app.test", headers=(), end=True):
        sid = self.conn.get_next_available_stream_id()
        hdrs = [(":method", "GET"), (":scheme", "http"), (":authority", host),
                (":path", path)] + list(headers)
        self.conn.send_headers(sid, hdrs, end_stream=end)
        self.flush()
        return sid

    def ack(self, sid, n):
        """Gives back n bytes of flow-control window on the stream and the connection."""
        try:
            self.conn.acknowledge_received_data(n, sid)
        except Exception:  # the stream may be gone already
            try:
                self.conn.increment_flow_control_window(n)
            except Exception:
                pass
        self.flush()

    def events(self, timeout):
        """Whatever arrives within `timeout` seconds (at least one read attempt). An EOF sets
        `closed` and returns what was read before it. GOAWAY frames are taken out before h2
        sees them (h2 refuses every frame after a GOAWAY, while RFC 9113 lets the streams it
        spares go on): `goaway` then holds its last_stream_id, error_code and debug data."""
        if self.closed:
            return []
        self.sock.settimeout(max(timeout, 0.001))
        try:
            data = self.sock.recv(65536)
        except (socket.timeout, TimeoutError):
            return []
        except (ConnectionResetError, BrokenPipeError):
            self.closed = True
            return []
        if not data:
            self.closed = True
            return []
        self.rbuf += data
        feed = bytearray()
        while len(self.rbuf) >= 9:
            n = int.from_bytes(self.rbuf[:3], "big")
            if len(self.rbuf) < 9 + n:
                break
            frame, self.rbuf = self.rbuf[:9 + n], self.rbuf[9 + n:]
            if frame[3] == 7 and n >= 8:  # GOAWAY
                if self.goaway is None:
                    self.goaway = GoAway(int.from_bytes(frame[9:13], "big") & 0x7fffffff,
                                         int.from_bytes(frame[13:17], "big"), bytes(frame[17:]))
                    self.goaway_at = time.monotonic()
                continue
            feed += frame
        evs = self.conn.receive_data(bytes(feed)) if feed else []
        try:
            self.flush()  # SETTINGS and PING acknowledgements
        except OSError:
            self.closed = True
        return evs

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass
