# SPDX-License-Identifier: MIT
"""A slow reader of the log never stalls the data path.

switchyard runs with stderr on a pipe (shrunk to one page) that the test stops reading right
after the start-up line, so that the pipe is full after a few dozen lines. Requests that log
(malformed ones, 404s) and good ones must all still be answered promptly: the workers only
queue their lines, and a writer thread waits for the pipe. Lines that do not fit are dropped
and counted, client-caused lines are rate-limited per worker, and both are reported once the
reader comes back. At exit the queue is written out, within a bound even when nobody reads."""

import fcntl
import json
import os
import re
import select
import signal
import subprocess
import threading
import time

import admin_util
import helpers

APPS = [{"name": "app", "hosts": ["app.test"], "weights": {"blue": 1}}]
PIPE_BYTES = 4096
ANSWER_S = 5.0  # each request must be answered within this (the machine is loaded)
F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)


class PipedProxy:
    """switchyard with stdout and stderr on one pipe that is read only when asked."""

    def __init__(self, backends, tmp_path, limits=None, admin=False):
        self.port = helpers.free_port()
        doc = {"listen": [{"address": "127.0.0.1:%d" % self.port}], "workers": 1,
               "timeouts": {"drain": "5s"}, "shutdown": {"delay": "0s"},
               "clusters": {"blue": {"endpoints": [backends.blue.addr]}}, "apps": APPS}
        if limits:
            doc["limits"] = limits
        self.socket = None
        if admin:
            self.socket = os.path.join(admin_util.socket_dir(), "sy.sock")
            doc["admin"] = {"socket": self.socket}
            doc["state"] = str(tmp_path / "state.json")
        cfg = tmp_path / "switchyard.yaml"
        cfg.write_text(helpers.to_yaml(doc))
        r, w = os.pipe()
        fcntl.fcntl(w, F_SETPIPE_SZ, PIPE_BYTES)
        self.proc = subprocess.Popen([os.environ["SWITCHYARD"], "-c", str(cfg)],
                                     stdin=subprocess.DEVNULL, stdout=w, stderr=w)
        os.close(w)
        self.rfd = r
        self.text = b""
        self.reader = None
        self.read_until(re.compile(rb"main: switchyard \S+: generation 1, "), 10)

    def read_until(self, pattern, timeout):
        """Reads the pipe until `pattern` shows in what was read (returns the match)."""
        deadline = time.monotonic() + timeout
        while True:
            m = pattern.search(self.text)
            if m:
                return m
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError("no %r in the log within %.0f s; log:\n%s"
                                     % (pattern.pattern, timeout,
                                        self.text[-3000:].decode(errors="replace")))
            ready, _, _ = select.select([self.rfd], [], [], left)
            if ready:
                data = os.read(self.rfd, 65536)
                if not data:
                    raise AssertionError("the log closed; log:\n%s"
                                         % self.text[-3000:].decode(errors="replace"))
                self.text += data

    def drain_in_background(self):
        """From now on a thread reads the pipe into self.text as fast as it can."""
        def run():
            while True:
                try:
                    data = os.read(self.rfd, 65536)
                except OSError:
                    return
                if not data:
                    return
                self.text += data
        self.reader = threading.Thread(target=run, daemon=True)
        self.reader.start()

    def wait_log(self, pattern, timeout):
        return helpers.wait_for(lambda: pattern.search(self.text), timeout,
                                "%r in the log" % pattern.pattern)

    def stop(self, timeout=10):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait(timeout=10)
            if self.reader:
                self.reader.join(timeout=5)
            os.close(self.rfd)


def _one(port, i):
    """One request on its own connection: a malformed one, a 404 or a good one, by turns.
    Returns its status; raises when no answer comes within ANSWER_S."""
    kind = i % 3
    if kind == 0:
        req = b"GET /bad%d HTTP/1.1\r\nHost: app.test\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n" % i
        want = 400
    elif kind == 1:
        req = helpers.get_request("/nobody%d" % i, host="nowhere.test")
        want = 404
    else:
        req = helpers.get_request("/anything", extra=b"Connection: close\r\n")
        want = 200
    t0 = time.monotonic()
    with helpers.Raw(port, timeout=ANSWER_S) as c:
        c.send(req)
        try:
            r = c.read_response()
        except (TimeoutError, OSError) as e:
            raise AssertionError("request %d (%d expected) got no answer within %.0f s: the "
                                 "worker is stuck behind the log (%s)" % (i, want, ANSWER_S, e))
    assert r.status == want, (i, r)
    return time.monotonic() - t0


def _flood(port, n, budget_s):
    start = time.monotonic()
    for i in range(n):
        _one(port, i)
        if time.monotonic() - start > budget_s:
            return i + 1
    return n


def test_requests_that_log_are_answered_while_nobody_reads_stderr(backends, tmp_path):
    p = PipedProxy(backends, tmp_path)
    try:
        # A full pipe takes about 40 lines; two thirds of these requests log one each.
        done = _flood(p.port, 450, 60)
        assert done >= 150, done
        # The reader comes back: what was suppressed or dropped is reported.
        p.drain_in_background()
        p.wait_log(re.compile(rb"suppressed \d+ similar client-caused lines|"
                              rb"\d+ log lines dropped"), 5)
        _one(p.port, 2)  # still serving
    finally:
        rc = p.stop()
    assert rc == 0, (rc, p.text[-2000:])
    assert b"main: stopped" in p.text, p.text[-2000:]


def test_lines_beyond_the_buffer_are_dropped_and_counted(backends, tmp_path):
    # No rate limit: every line goes to the queue, which fills up behind the full pipe.
    p = PipedProxy(backends, tmp_path, limits={"log_client_lines": 0})
    try:
        done = _flood(p.port, 6000, 120)  # about 430 KB of lines for a 256 KiB queue
        p.drain_in_background()
        m = p.wait_log(re.compile(rb"(\d+) log lines dropped"), 5)
        assert int(m.group(1)) > 0
        # What was not dropped came through whole and in order: every line is complete.
        for line in p.text.splitlines():
            assert re.match(rb"\d{4}-\d\d-\d\dT[\d:.]+Z (debug|info|warn|error) \S+: ", line), \
                line
        assert done > 0
    finally:
        rc = p.stop()
    assert rc == 0, rc


def test_client_lines_over_the_rate_are_suppressed_and_summed_up(backends, tmp_path):
    p = PipedProxy(backends, tmp_path, limits={"log_client_lines": 5}, admin=True)
    p.drain_in_background()
    try:
        for i in range(60):
            _one(p.port, 3 * i)  # 60 malformed requests
        m = p.wait_log(re.compile(rb"suppressed (\d+) similar client-caused lines"), 5)
        logged = len(re.findall(rb"conn \d+: 400 Bad Request", p.text))
        assert logged < 60, logged
        total = sum(int(n) for n in
                    re.findall(rb"suppressed (\d+) similar client-caused lines", p.text))
        assert m and total >= 1
        st = admin_util.ctl("status", sockets=[p.socket], json=True)
        assert st.returncode == 0, st
        doc = json.loads(st.stdout)
        assert doc["log_lines_suppressed"] >= total and doc["log_lines_dropped"] == 0, doc
    finally:
        rc = p.stop()
    assert rc == 0, rc
    total = sum(int(n) for n in re.findall(rb"suppressed (\d+) similar client-caused lines",
                                           p.text))
    assert logged + total == 60, (logged, total)


def test_exit_is_not_held_by_a_stderr_nobody_reads(backends, tmp_path):
    p = PipedProxy(backends, tmp_path)
    try:
        _flood(p.port, 150, 30)
        p.proc.send_signal(signal.SIGTERM)
        t0 = time.monotonic()
        try:
            rc = p.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            rc = None
        took = time.monotonic() - t0
    finally:
        p.stop()
    assert rc is not None, "still running 15 s after SIGTERM with its stderr full"
    assert took < 10, took
