# SPDX-License-Identifier: MIT
"""admin.http: the read-only HTTP listener (/metrics, /status, /, /healthz, /readyz).

The long test starts a real Prometheus (Debian's `prometheus`) on loopback with its own data
directory and a 1 s scrape interval, sends a known 90/10 load with a known share of 5xx, and
reads back through Prometheus's query API that the split and the 5xx share per cluster are
what the clients sent and what the backends logged. The others are fast: errors of the
listener (403, 404, 405, 400, 431), /readyz while draining, /healthz, the histogram counts,
connect errors against a closed port, and `promtool check metrics` on a scrape."""

import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
import urllib.parse
import urllib.request

import pytest

import helpers
from conftest import SOURCE_ROOT
from helpers import Raw, free_port

PROMETHEUS = shutil.which("prometheus")
PROMTOOL = shutil.which("promtool")


def admin_extra(hport, **more):
    adm = {"http": "127.0.0.1:%d" % hport}
    adm.update(more)
    return {"admin": adm}


def get(hport, path, method="GET", source=None, headers=None):
    """One request on its own connection; (status, headers dict lower-case, body bytes)."""
    c = http.client.HTTPConnection("127.0.0.1", hport, timeout=10,
                                   source_address=(source, 0) if source else None)
    try:
        c.request(method, path, headers=headers or {})
        r = c.getresponse()
        body = r.read()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, body
    finally:
        c.close()


def parse_metrics(text):
    """{(name, frozenset(labels.items())): value} for every sample."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = re.match(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)$', line)
        assert m, "bad sample line %r" % line
        labels = dict(re.findall(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"', m.group(3) or ""))
        out[(m.group(1), frozenset(labels.items()))] = float(m.group(4))
    return out


def sample(samples, name, **labels):
    want = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and want <= set(ls))


def scrape(hport):
    status, hdrs, body = get(hport, "/metrics")
    assert status == 200, body
    assert hdrs["content-type"].startswith("text/plain; version=0.0.4")
    return body.decode()


def load(port, paths, host="app.test"):
    """Sends GETs of `paths` in order on one keep-alive connection; returns the statuses."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    out = []
    try:
        for p in paths:
            c.request("GET", p, headers={"Host": host})
            r = c.getresponse()
            r.read()
            out.append(r.status)
    finally:
        c.close()
    return out


def split(blue, green):
    return [{"name": "web", "hosts": ["*"], "weights": {"blue": blue, "green": green}}]


# -- the listener ------------------------------------------------------------------------------

def test_status_and_page_and_health(proxy):
    hport = free_port()
    p = proxy(apps=split(90, 10), workers=2, extra=admin_extra(hport))
    # Ready once both workers' loops have turned (a moment after the start-up line).
    helpers.wait_for(lambda: get(hport, "/readyz")[0] == 200, 5, "/readyz 200")
    status, hdrs, body = get(hport, "/status")
    assert status == 200 and hdrs["content-type"] == "application/json"
    doc = json.loads(body)
    assert doc["ok"] is True and doc["generation"] == 1
    assert [a["name"] for a in doc["apps"]] == ["web"]
    assert [c["file"] for c in doc["apps"][0]["clusters"]] == [90, 10]
    status, hdrs, body = get(hport, "/")
    assert status == 200 and hdrs["content-type"].startswith("text/html")
    assert b'fetch("status"' in body  # the page reads status (relative: works under a prefix)
    status, hdrs, body = get(hport, "/", method="HEAD")
    assert status == 200 and body == b"" and int(hdrs["content-length"]) > 100
    status, _, body = get(hport, "/healthz")
    assert status == 200 and b"2 workers" in body, body
    status, _, body = get(hport, "/readyz")
    assert status == 200, body


def test_status_is_switchyardctls_status(admin_proxy):
    hport = free_port()
    p = admin_proxy(split(90, 10), admin={"http": "127.0.0.1:%d" % hport})
    ctl = p.ctl("status", json=True)
    assert ctl.returncode == 0, ctl.stderr
    status, _, body = get(hport, "/status")
    assert status == 200
    # Same command, same object (nothing in it changes between the two calls: no traffic).
    assert json.loads(body) == json.loads(ctl.stdout)


def test_errors_of_the_listener(proxy):
    hport = free_port()
    proxy(apps=split(90, 10), limits={"max_header_bytes": 4096},
          extra=admin_extra(hport))
    status, hdrs, body = get(hport, "/metrics", method="POST")
    assert status == 405 and hdrs["allow"] == "GET, HEAD" and body.count(b"\n") == 1, body
    status, _, body = get(hport, "/nothing-here")
    assert status == 404 and body.count(b"\n") == 1
    with Raw(hport) as r:
        r.send(b"GET /metrics HTTP/1.1 extra\r\nHost: x\r\n\r\n")
        resp = r.read_response()
        assert resp.status == 400, resp
        assert r.closed()
    with Raw(hport) as r:
        r.send(b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 8000 + b"\r\n\r\n")
        resp = r.read_response()
        assert resp.status == 431, resp
    # The listener is still fine.
    assert get(hport, "/healthz")[0] == 200


def test_allow_list_refuses_other_peers(proxy):
    hport = free_port()
    proxy(apps=split(90, 10), extra=admin_extra(hport, http_allow=["127.0.0.2/32"]))
    status, _, body = get(hport, "/metrics", source="127.0.0.1")
    assert status == 403 and b"admin.http_allow" in body, body
    status, _, body = get(hport, "/metrics", source="127.0.0.2")
    assert status == 200, body


def test_non_loopback_address_needs_an_allow_list(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("listen: [{address: 127.0.0.1:1}]\nadmin:\n  http: 0.0.0.0:9901\n"
                   "clusters: {blue: {endpoints: [127.0.0.1:2]}}\n"
                   "apps: [{name: web, hosts: ['*'], weights: {blue: 1}}]\n")
    from conftest import SWITCHYARD
    r = subprocess.run([SWITCHYARD, "-t", "-c", str(cfg)], capture_output=True, text=True,
                       timeout=20)
    assert r.returncode == 1
    assert re.search(r"c\.yaml:3:9: admin\.http '0\.0\.0\.0:9901' is not a loopback address",
                     r.stderr), r.stderr


def test_readyz_is_503_while_draining(proxy):
    hport = free_port()
    p = proxy(apps=split(100, 0), extra=admin_extra(hport), timeouts={"drain": "8s"})
    helpers.wait_for(lambda: get(hport, "/readyz")[0] == 200, 5, "/readyz 200")
    done = []
    t = threading.Thread(target=lambda: done.append(load(p.port, ["/sleep/1.5"])))
    t.start()
    helpers.wait_for(lambda: sample(parse_metrics(scrape(hport)),
                                    "switchyard_requests_in_flight") == 1, 5, "a request in flight")
    p.proc.send_signal(signal.SIGTERM)
    helpers.wait_for(lambda: get(hport, "/readyz")[0] == 503, 5, "/readyz 503")
    status, _, body = get(hport, "/readyz")
    assert status == 503 and b"draining" in body
    assert sample(parse_metrics(scrape(hport)), "switchyard_ready") == 0
    t.join(10)
    assert done == [[200]]  # the request in flight finished
    assert p.wait_exit(10) == 0


def test_histograms_bytes_and_classes_count_every_request(proxy, backends):
    hport = free_port()
    p = proxy(apps=split(90, 10), extra=admin_extra(hport))
    statuses = load(p.port, ["/anything"] * 90 + ["/status/503"] * 10)
    assert statuses.count(200) == 90 and statuses.count(503) == 10
    s = parse_metrics(scrape(hport))
    for cluster, n in (("blue", 90), ("green", 10)):
        lab = {"app": "web", "cluster": cluster}
        assert sample(s, "switchyard_requests_total", **lab) == n
        for fam in ("switchyard_request_duration_seconds", "switchyard_response_head_duration_seconds"):
            assert sample(s, fam + "_count", **lab) == n
            assert sample(s, fam + "_bucket", le="+Inf", **lab) == n
            buckets = sorted((float(dict(ls)["le"]), v) for (nm, ls), v in s.items()
                             if nm == fam + "_bucket" and set(lab.items()) <= set(ls))
            assert [v for _, v in buckets] == sorted(v for _, v in buckets)  # cumulative
    assert sample(s, "switchyard_requests_total", code_class="5xx") == 10
    assert sample(s, "switchyard_requests_total", code_class="2xx") == 90
    # Response bytes: every body is the backend's name and a newline, 90 "blue-1\n" (7 bytes)
    # and 10 "green-1\n" (8 bytes).
    assert sample(s, "switchyard_response_bytes_total") == 90 * 7 + 10 * 8
    # One client, one request at a time: one connection to each cluster, idle now.
    for cluster in ("blue", "green"):
        assert sample(s, "switchyard_upstream_connections", cluster=cluster, state="open") == 1
        assert sample(s, "switchyard_upstream_connections", cluster=cluster, state="idle") == 1
    # The same figures in /status, for the status page (cumulative counts per bound).
    doc = json.loads(get(hport, "/status")[2])
    cl = {c["name"]: c for c in doc["apps"][0]["clusters"]}
    assert cl["blue"]["bytes_out"] == 90 * 7 and cl["green"]["bytes_out"] == 10 * 8
    for name, n in (("blue", 90), ("green", 10)):
        assert cl[name]["latency_le_ms"][-1] == "+Inf"
        assert len(cl[name]["latency_counts"]) == len(cl[name]["latency_le_ms"])
        assert cl[name]["latency_counts"][-1] == n
        assert cl[name]["head_latency_counts"][-1] == n
    # Request bytes: one upload of 1000 bytes.
    c = http.client.HTTPConnection("127.0.0.1", p.port, timeout=10)
    c.request("POST", "/anything", body=b"x" * 1000, headers={"Host": "app.test"})
    assert c.getresponse().status == 200
    c.close()
    s = parse_metrics(scrape(hport))
    assert sample(s, "switchyard_request_bytes_total") == 1000
    assert sample(s, "switchyard_weight", app="web", cluster="green", source="effective") == 10
    assert sample(s, "switchyard_app_stable", app="web", cluster="blue") == 1
    assert sample(s, "switchyard_config_generation") == 1
    assert sample(s, "switchyard_build_info") == 1
    assert sample(s, "process_open_fds") > 5


def test_connect_errors_are_counted_by_reason(proxy):
    hport = free_port()
    closed = free_port()  # nothing listens there
    p = proxy(apps=[{"name": "web", "hosts": ["*"], "weights": {"dead": 1}}],
              clusters={"dead": ["127.0.0.1:%d" % closed]}, extra=admin_extra(hport))
    assert load(p.port, ["/a", "/b", "/c"]) == [502, 502, 502]
    s = parse_metrics(scrape(hport))
    ep = "127.0.0.1:%d" % closed
    assert sample(s, "switchyard_upstream_connect_errors_total", cluster="dead", endpoint=ep,
                  reason="refused") == 3
    assert sample(s, "switchyard_generated_responses_total", app="web", code="502") == 3


@pytest.mark.skipif(PROMTOOL is None, reason="promtool (Debian prometheus) is not installed")
def test_promtool_accepts_a_scrape(proxy, tmp_path):
    hport = free_port()
    p = proxy(apps=split(90, 10), extra=admin_extra(hport))
    load(p.port, ["/anything"] * 20 + ["/nothing"])
    text = scrape(hport)
    r = subprocess.run([PROMTOOL, "check", "metrics"], input=text, capture_output=True,
                       text=True, timeout=30)
    assert r.returncode == 0, r.stdout + r.stderr
    # Every family the shipped alert rules use is exported.
    rules = open(os.path.join(os.environ.get("SY_SOURCE_ROOT", "."), "conf", "prometheus",
                              "switchyard.rules.yml")).read()
    used = set(re.findall(r"\b(switchyard_[a-z_]+?)(?:_bucket)?\b(?![:])", rules))
    exported = {n for (n, _) in parse_metrics(text)} | {
        n for n in re.findall(r"^# TYPE (\S+)", text, re.M)}
    exported |= {n[:-len("_bucket")] for n in exported if n.endswith("_bucket")}
    missing = {u for u in used if u not in exported and u + "_total" not in exported}
    assert not missing, missing


# -- a real Prometheus -----------------------------------------------------------------------

class Prometheus:
    def __init__(self, workdir, target):
        self.port = free_port()
        self.dir = os.path.join(workdir, "prom")
        os.makedirs(self.dir)
        cfg = os.path.join(self.dir, "prometheus.yml")
        with open(cfg, "w") as f:
            f.write("global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
                    "scrape_configs:\n  - job_name: switchyard\n    static_configs:\n"
                    "      - targets: ['%s']\n" % target)
        self.log = open(os.path.join(self.dir, "log"), "wb")
        self.proc = subprocess.Popen(
            [PROMETHEUS, "--config.file=" + cfg, "--storage.tsdb.path=" + self.dir + "/data",
             "--web.listen-address=127.0.0.1:%d" % self.port, "--log.level=warn"],
            stdin=subprocess.DEVNULL, stdout=self.log, stderr=subprocess.STDOUT)

    def query(self, expr):
        url = "http://127.0.0.1:%d/api/v1/query?%s" % (
            self.port, urllib.parse.urlencode({"query": expr, "time": "%.3f" % time.time()}))
        with urllib.request.urlopen(url, timeout=5) as r:
            doc = json.load(r)
        assert doc["status"] == "success", doc
        return {tuple(sorted(x["metric"].items())): float(x["value"][1])
                for x in doc["data"]["result"]}

    def ready(self):
        try:
            with urllib.request.urlopen("http://127.0.0.1:%d/-/ready" % self.port, timeout=1) as r:
                return r.status == 200
        except OSError:
            return False

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        self.log.close()


@pytest.mark.skipif(PROMETHEUS is None, reason="prometheus (Debian package) is not installed")
def test_prometheus_sees_the_split_and_the_5xx_share(proxy, backends, tmp_path):
    hport = free_port()
    p = proxy(apps=split(90, 10), workers=2, extra=admin_extra(hport))
    prom = Prometheus(str(tmp_path), "127.0.0.1:%d" % hport)
    try:
        helpers.wait_for(prom.ready, 20, "prometheus ready")
        helpers.wait_for(lambda: prom.query('up{job="switchyard"} == 1'), 10, "a first scrape")
        # Every 5th request fails. The checks read the counters as Prometheus stored them, not
        # rate(): rate() extrapolates each series from its own first sample, and a series that
        # first shows one scrape later than another (each worker, cluster and code class is its
        # own series) skews a share by a few points (stop 32 failed on 11.5% for 10%).
        tok = "t%d" % os.getpid()
        paths = ["/status/500/%s" % tok if i % 5 == 4 else "/ok/%s" % tok for i in range(50)]
        end = time.monotonic() + 3.5
        sent = 0
        while time.monotonic() < end:
            sent += len(load(p.port, paths))
        # Flat from here: a scrape sees the final counts.
        total = sent
        helpers.wait_for(lambda: sum(prom.query(
            'sum(switchyard_requests_total{app="web"})').values()) == total, 10,
            "prometheus to scrape the final counts")
        counts = {dict(k)["cluster"]: v for k, v in prom.query(
            'sum by (cluster) (switchyard_requests_total{app="web"})').items()}
        assert abs(counts["green"] / total - 0.10) <= 0.01, counts
        fails = prom.query('sum by (cluster) (switchyard_requests_total{app="web",'
                           'code_class="5xx"}) / sum by (cluster) '
                           '(switchyard_requests_total{app="web"})')
        fshare = {dict(k)["cluster"]: v for k, v in fails.items()}
        for b, cluster in ((backends.blue, "blue"), (backends.green, "green")):
            recs = b.saw(tok, "request")
            bad = [r for r in recs if r["path"].startswith("/status/500/")]
            assert counts[cluster] == len(recs), (cluster, counts, len(recs))
            assert abs(fshare[cluster] - len(bad) / len(recs)) <= 1e-9, (cluster, fshare,
                                                                         len(bad), len(recs))
        # And the per-second view a dashboard draws has both clusters in it.
        rates = prom.query('sum by (cluster) (rate(switchyard_requests_total{app="web"}[15s]))')
        assert {dict(k)["cluster"] for k, v in rates.items() if v > 0} == {"blue", "green"}
    finally:
        prom.stop()


def test_connections_and_tls_handshakes_by_listener(proxy, tls_cert):
    hport = free_port()
    p = proxy(apps=split(100, 0), tls=tls_cert, extra=admin_extra(hport))
    for _ in range(3):
        helpers.curl1(p.url + "/a", "-H", "Host: app.test")
    helpers.curl1(p.url + "/a", "--http2-prior-knowledge", "-H", "Host: app.test")
    for _ in range(2):
        helpers.curl1(p.tls_url + "/a", "-k", "--http1.1", "-H", "Host: app.test")
    helpers.curl1(p.tls_url + "/a", "-k", "--http2", "-H", "Host: app.test")
    with socket.create_connection(("127.0.0.1", p.tls_port), timeout=5) as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")  # not a ClientHello
        s.settimeout(5)
        try:
            while s.recv(4096):
                pass
        except OSError:
            pass
    plain, tls = "127.0.0.1:%d" % p.port, "127.0.0.1:%d" % p.tls_port

    def counts():
        s = parse_metrics(scrape(hport))
        return ({pr: sample(s, "switchyard_connections_total", listener=l, protocol=pr)
                 for l in (plain, tls) for pr in ("http/1.1", "h2", "h2c")
                 if sample(s, "switchyard_connections_total", listener=l, protocol=pr)},
                sample(s, "switchyard_connections_total", listener=plain, protocol="http/1.1"),
                sample(s, "switchyard_connections_total", listener=plain, protocol="h2c"),
                sample(s, "switchyard_connections_total", listener=tls, protocol="http/1.1"),
                sample(s, "switchyard_connections_total", listener=tls, protocol="h2"),
                sample(s, "switchyard_tls_handshakes_total", listener=tls, result="ok"),
                sample(s, "switchyard_tls_handshakes_total", listener=tls, result="failed"))

    helpers.wait_for(lambda: counts()[1:] == (3, 1, 2, 1, 3, 1), 5,
                     "connection counts (have %r)" % (counts(),))


def test_maintenance_and_exclusive_apps_are_exported(admin_proxy):
    """Issue #19: the metrics say which apps are exclusive and which are in maintenance."""
    hport = free_port()
    apps = [{"name": "web", "hosts": ["web.test"], "weights": {"blue": 90, "green": 10}},
            {"name": "db", "hosts": ["db.test"], "weights": {"blue": 100, "green": 0},
             "mode": "exclusive"}]
    p = admin_proxy(apps, admin={"http": "127.0.0.1:%d" % hport})
    s = parse_metrics(scrape(hport))
    assert sample(s, "switchyard_app_exclusive", app="db") == 1
    assert sample(s, "switchyard_app_exclusive", app="web") == 0
    assert sample(s, "switchyard_app_in_maintenance", app="web") == 0
    r = p.ctl("maintenance", "web", "on")
    assert r.returncode == 0, r.stderr
    s = parse_metrics(scrape(hport))
    assert sample(s, "switchyard_app_in_maintenance", app="web") == 1
    assert sample(s, "switchyard_app_in_maintenance", app="db") == 0
    text = scrape(hport)
    for family in ("switchyard_held_requests", "switchyard_held_released_total",
                   "switchyard_held_rejected_total"):
        assert "# TYPE %s " % family in text, family
    r = p.ctl("maintenance", "web", "off")
    assert r.returncode == 0, r.stderr
    assert sample(parse_metrics(scrape(hport)), "switchyard_app_in_maintenance", app="web") == 0


def test_every_exported_family_is_documented(proxy):
    """docs/metrics.md lists every family a scrape exports, with its type, and no other."""
    hport = free_port()
    p = proxy(apps=split(90, 10), extra=admin_extra(hport))
    load(p.port, ["/anything"])
    exported = dict(re.findall(r"^# TYPE (\S+) (\S+)$", scrape(hport), re.M))
    doc = open(os.path.join(SOURCE_ROOT, "docs", "metrics.md")).read()
    documented = dict(re.findall(r"^\| `([a-z0-9_]+)` \| ([a-z]+) \|", doc, re.M))
    # The fleet's families are exported only with `fleet:` (test_94_fleet checks them).
    documented = {k: v for k, v in documented.items() if not k.startswith("switchyard_fleet_")}
    assert exported == documented, (
        "exported, not in docs/metrics.md: %s; documented, not exported: %s; types differ: %s" % (
            sorted(set(exported) - set(documented)), sorted(set(documented) - set(exported)),
            sorted(k for k in exported if k in documented and exported[k] != documented[k])))
