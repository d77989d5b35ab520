# SPDX-License-Identifier: MIT
"""Helpers of the guard and ramp tests (test_91_guard.py, test_92_ramp.py): two HTTP/1.1
backends in the test's own process whose share of 500 answers the test sets while they run,
keep-alive load that records every request (start time, backend, status), and the admin
questions both files ask. Stdlib only."""

import http.client
import json
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

HOST = "app.test"
TICK = 1.0
WINDOW = 2.0


class FlakyServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, name):
        super().__init__(("127.0.0.1", 0), Handler)
        self.name = name
        self.fail_every = 0  # 0: never; N: every Nth request answers 500
        self.count = 0
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self.serve_forever, daemon=True)
        self.thread.start()

    @property
    def port(self):
        return self.server_address[1]

    def stop(self):
        self.shutdown()
        self.server_close()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        srv = self.server
        with srv.lock:
            srv.count += 1
            fail = srv.fail_every and srv.count % srv.fail_every == 0
        status = 500 if fail else 200
        body = ("%s %d\n" % (srv.name, status)).encode()
        self.send_response(status)
        self.send_header("x-backend", srv.name)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def flaky():
    servers = {"blue": FlakyServer("blue"), "green": FlakyServer("green")}
    yield servers
    for s in servers.values():
        s.stop()


class Load:
    """`clients` keep-alive loops through switchyard: (start wall time, backend, status)."""

    def __init__(self, port, clients=4):
        self.port = port
        self.halt = threading.Event()
        self.records = []
        self.errors = []
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self.loop, daemon=True) for _ in range(clients)]
        for t in self.threads:
            t.start()

    def loop(self):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        while not self.halt.is_set():
            t0 = time.time()
            try:
                conn.request("GET", "/", headers={"Host": HOST})
                r = conn.getresponse()
                r.read()
                rec = (t0, r.getheader("x-backend"), r.status)
            except (OSError, http.client.HTTPException) as e:
                with self.lock:
                    self.errors.append(repr(e))
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
                continue
            with self.lock:
                self.records.append(rec)
            time.sleep(0.002)  # ~ a few hundred requests a second in all: the test's 2 cores
        conn.close()

    def stop(self):
        self.halt.set()
        for t in self.threads:
            t.join(timeout=15)

    def since(self, t):
        with self.lock:
            return [r for r in self.records if r[0] >= t]


def guarded_app(weights, guard=None, **limits):
    """App `web` on blue and green; `guard`: "off", "none" (no key: the default guard), or
    None (a guard of a 2 s window and 20 requests, with `limits` over it)."""
    app = {"name": "web", "hosts": [HOST], "stable": "blue", "weights": weights}
    if guard == "off":
        app["guard"] = "off"
    elif guard is None:
        g = {"max_5xx_ratio": 0.05, "window": "2s", "min_requests": 20}
        g.update(limits)
        app["guard"] = g
    return app


def start(admin_proxy, flaky, weights, http_port=None, guard=None, **limits):
    clusters = {name: {"endpoints": ["127.0.0.1:%d" % s.port]} for name, s in flaky.items()}
    admin = {"http": "127.0.0.1:%d" % http_port} if http_port else None
    return admin_proxy([guarded_app(weights, guard, **limits)], clusters=clusters, admin=admin)


def status_json(p):
    out = p.ctl("--json", "status", "web")
    assert out.returncode == 0, out.stdout + out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def app_status(p):
    return [a for a in status_json(p)["apps"] if a["name"] == "web"][0]


def effective(p):
    return {c["name"]: c["effective"] for c in app_status(p)["clusters"]}


def guard_reverts(p):
    out = p.ctl("--json", "history", "50")
    doc = json.loads(out.stdout.strip().splitlines()[-1])
    return [r for r in doc["records"] if r["command"].startswith("guard revert web")]


def wait_guard_revert(p, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        recs = guard_reverts(p)
        if recs:
            return recs[-1], time.time()
        time.sleep(0.05)
    return None, time.time()


# The revert's record carries the time of the guard's decision; the snapshot that routes to
# blue is published right after it is written, and every worker installs it at its next loop
# turn. Requests started this long after the decision must all be on blue: much later than
# publication takes, much earlier than the test's own polling of `history` saw the record.
PUBLISH_MARGIN = 0.25


def after_publication(rec, seen):
    """The start time from which no request may reach a reverted cluster."""
    return min(seen, rec["time_ms"] / 1000.0 + PUBLISH_MARGIN)


def history(p, n=100):
    out = p.ctl("--json", "history", str(n))
    assert out.returncode == 0, out.stdout + out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])["records"]


def metrics(http_port):
    with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % http_port, timeout=10) as r:
        return r.read().decode()


