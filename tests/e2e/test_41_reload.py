# SPDX-License-Identifier: MIT
"""Hot reload of the routing table (issue 5): under load, 200 reloads lose no request and the
new split is what the backends see; a request in flight finishes on the snapshot it started
with; every way a file is replaced triggers exactly one reload (and a touch none); a broken
file is refused with its line and column while traffic goes on; memory stays flat over 1,000
reloads; listen addresses, TLS certificates and endpoints follow the file."""

import os
import signal
import socket
import ssl
import subprocess
import threading
import time

import pytest

import helpers
from conftest import make_config
from helpers import CURL, measure

ASAN = "asan" in os.environ.get("SWITCHYARD", "")


def _apps(blue, green):
    return [{"name": "web", "hosts": ["*"], "weights": {"blue": blue, "green": green}}]


def _clusters(backends):
    return {"blue": {"endpoints": [backends.blue.addr]},
            "green": {"endpoints": [backends.green.addr]}}


def _published(p):
    return p.log_text().count("published:")


def _wait_published(p, n, timeout=5.0):
    deadline = time.monotonic() + timeout
    while _published(p) < n:
        assert time.monotonic() < deadline, "only %d of %d reloads published:\n%s" % (
            _published(p), n, p.log_text()[-3000:])
        time.sleep(0.005)


def _write(path, text, how="rename"):
    if how == "rename":
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            f.write(text)
        os.rename(tmp, path)
    else:  # in place, as an editor that rewrites the file does
        with open(path, "r+") as f:
            f.seek(0)
            f.truncate()
            f.write(text)


def _split(p, n=100):
    out = helpers.curl([p.url + "/"] * n)
    names = [r.header("x-backend") for r in out]
    return names.count("blue-1"), names.count("green-1")


def test_200_reloads_under_load_lose_no_request(backends, proxy):
    p = proxy(_apps(90, 10))
    cl = _clusters(backends)
    loads = [subprocess.Popen(["h2load", "-D", "24", "-c", "4", "-m", "4", p.url + "/"],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True),
             subprocess.Popen(["h2load", "--h1", "-D", "24", "-c", "4", p.url + "/"],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)]
    curl_fail = []
    curl_done = [0]
    stop = threading.Event()

    def curl_loop():
        while not stop.is_set() and curl_done[0] < 5000:
            r = subprocess.run([CURL, "-s", "-o", "/dev/null", "-w", "%{http_code}",
                                "--max-time", "10", p.url + "/"], capture_output=True,
                               text=True, timeout=20)
            curl_done[0] += 1
            if r.stdout != "200":
                curl_fail.append(r.stdout + r.stderr)

    t = threading.Thread(target=curl_loop)
    t.start()
    try:
        time.sleep(1)
        base = _published(p)
        t0 = time.monotonic()
        for i in range(200):
            weights = (10, 90) if i % 2 == 0 else (90, 10)
            _write(p.config, make_config(p.port, cl, _apps(*weights)))
            p.proc.send_signal(signal.SIGHUP)  # a forced reload; the watcher sees the rename too
            _wait_published(p, base + i + 1)
            time.sleep(max(0.0, t0 + (i + 1) * 0.1 - time.monotonic()))
        took = time.monotonic() - t0
    finally:
        stop.set()
        t.join(timeout=30)
        outs = [l.communicate(timeout=60)[0] for l in loads]
    measure("reload_200_seconds", "%.1f" % took, "s")
    assert took < 22, took
    for out in outs:
        line = [l for l in out.splitlines() if l.startswith("requests:")][0]
        assert " 0 failed, 0 errored, 0 timeout" in line, out[-1500:]
        measure("reload_under_load_h2load", line.split("requests:")[1].strip()[:60])
    assert not curl_fail, curl_fail[:5]
    assert curl_done[0] > 20
    # The last reload set 90/10 (i = 199 is odd): the backends see it exactly.
    time.sleep(0.5)  # let the watcher's debounced look at the last rename pass (unchanged)
    assert _split(p) == (90, 10)


def test_request_in_flight_finishes_on_its_snapshot(backends, proxy):
    p = proxy(_apps(100, 0))
    result = {}

    def slow():
        result["r"] = helpers.curl1(p.url + "/sleep/2")

    t = threading.Thread(target=slow)
    t.start()
    time.sleep(0.3)
    _write(p.config, make_config(p.port, _clusters(backends), _apps(0, 100)))
    p.proc.send_signal(signal.SIGHUP)
    _wait_published(p, 1)
    assert _split(p, 10) == (0, 10)  # new requests follow the new weights
    t.join(timeout=10)
    r = result["r"]
    assert r.status == 200 and r.header("x-backend") == "blue-1", r


def _settle(p, n):
    """Waits past the debounce and checks exactly n publications happened."""
    time.sleep(0.6)
    assert _published(p) == n, p.log_text()[-2000:]


def test_each_way_of_replacing_the_file_reloads_exactly_once(backends, proxy, tmp_path):
    cl = _clusters(backends)
    # A ConfigMap volume: cfg.yaml -> ..data/cfg.yaml, ..data -> a timestamped directory.
    vol = tmp_path / "configmap"
    vol.mkdir()
    port = helpers.free_port()
    (vol / "ts1").mkdir()
    (vol / "ts1" / "cfg.yaml").write_text(make_config(port, cl, _apps(100, 0)))
    os.symlink("ts1", vol / "..data")
    os.symlink("..data/cfg.yaml", vol / "cfg.yaml")
    text = (vol / "cfg.yaml").read_text().replace(str(port), "@PORT@")
    p = proxy(config_text=text)
    # The factory wrote its own file; point the proxy at the ConfigMap instead.
    p.stop()
    from conftest import Proxy
    (vol / "ts1" / "cfg.yaml").write_text(text.replace("@PORT@", str(p.port)))
    q = Proxy(str(vol / "cfg.yaml"), p.port, str(tmp_path))
    try:
        q.wait_ready()
        assert _split(q, 10) == (10, 0)
        # 1. kubelet's atomic swap of ..data
        (vol / "ts2").mkdir()
        (vol / "ts2" / "cfg.yaml").write_text(make_config(q.port, cl, _apps(0, 100)))
        os.symlink("ts2", vol / "..data_tmp")
        os.rename(vol / "..data_tmp", vol / "..data")
        _settle(q, 1)
        assert _split(q, 10) == (0, 10)
        # 2. a rename over the file's target
        _write(str(vol / "ts2" / "cfg.yaml"), make_config(q.port, cl, _apps(100, 0)))
        # (the rename happened inside ts2, which the watcher does not watch; the file seen
        # through the symlink changed all the same, so a forced reload is the operator's tool
        # there: this is why Kubernetes swaps ..data instead)
        q.proc.send_signal(signal.SIGHUP)
        _settle(q, 2)
        assert _split(q, 10) == (10, 0)
    finally:
        err = q.stop()
    assert err is None, err


def test_rename_in_place_write_and_touch(backends, proxy):
    p = proxy(_apps(100, 0))
    cl = _clusters(backends)
    _write(p.config, make_config(p.port, cl, _apps(0, 100)), how="rename")
    _settle(p, 1)
    assert _split(p, 10) == (0, 10)
    _write(p.config, make_config(p.port, cl, _apps(100, 0)), how="inplace")
    _settle(p, 2)
    assert _split(p, 10) == (10, 0)
    os.utime(p.config)  # a touch changes nothing
    _write(p.config, make_config(p.port, cl, _apps(100, 0)), how="inplace")  # same bytes
    _settle(p, 2)


@pytest.mark.parametrize("bad,token,what", [
    ("apps:\n  - name: web\n    hosts: [\"*\"\n", None, "yaml"),
    (None, "purple", "unknown cluster 'purple'"),
    (None, "101", "got 101"),
])
def test_broken_file_is_refused_and_traffic_goes_on(backends, proxy, bad, token, what):
    p = proxy(_apps(90, 10))
    cl = _clusters(backends)
    good = make_config(p.port, cl, _apps(90, 10))
    if bad is None and "purple" in what:
        bad = make_config(p.port, cl, [{"name": "web", "hosts": ["*"],
                                        "weights": {"blue": 90, "purple": 10}}])
    elif bad is None:
        bad = make_config(p.port, cl, _apps(101, 10))
    else:
        bad = good.split("apps:")[0] + bad
    _write(p.config, bad)
    time.sleep(0.6)
    log = p.log_text()
    rejected = [l for l in log.splitlines() if "rejected" in l]
    assert rejected, log[-2000:]
    assert p.config in rejected[0] and what in rejected[0].lower(), rejected
    if token:
        # The reported position is the offending node's, 1-based.
        lines = bad.splitlines()
        line = next(i for i, l in enumerate(lines) if token in l)
        col = lines[line].index(token)
        assert ("%s:%d:%d:" % (p.config, line + 1, col + 1)) in rejected[0], (rejected[0], bad)
    assert _published(p) == 0
    assert _split(p) == (90, 10)  # the running table stays
    _write(p.config, make_config(p.port, cl, _apps(10, 90)))
    _settle(p, 1)
    assert _split(p) == (10, 90)


def test_memory_stays_flat_over_1000_reloads(backends, proxy):
    p = proxy(_apps(90, 10))
    cl = _clusters(backends)
    texts = [make_config(p.port, cl, _apps(90, 10)), make_config(p.port, cl, _apps(10, 90))]
    # Warm up: the first reloads allocate pools and caches that stay.
    for i in range(20):
        _write(p.config, texts[i % 2])
        p.proc.send_signal(signal.SIGHUP)
        _wait_published(p, i + 1)
    before = p.status()["VmRSS"]
    for i in range(20, 1020):
        _write(p.config, texts[i % 2])
        p.proc.send_signal(signal.SIGHUP)
        _wait_published(p, i + 1, timeout=10)
        if i % 100 == 0:
            helpers.curl1(p.url + "/")
    after = p.status()["VmRSS"]
    growth = after - before
    measure("rss_growth_over_1000_reloads_kib", growth, "KiB")
    if ASAN:
        # ASan's quarantine holds freed memory back, so RSS says nothing there; LeakSanitizer
        # checks at exit (the proxy fixture requires exit 0) that every snapshot was freed.
        return
    assert growth < 4 * 1024, (before, after)


def test_listen_addresses_follow_the_file(backends, proxy):
    p = proxy(_apps(100, 0))
    cl = _clusters(backends)
    extra = helpers.free_port()
    text = make_config(p.port, cl, _apps(100, 0)).replace(
        "listen:\n", "listen:\n  - address: 127.0.0.1:%d\n" % extra, 1)
    _write(p.config, text)
    _settle(p, 1)
    assert helpers.curl1("http://127.0.0.1:%d/" % extra).body == b"blue-1\n"
    _write(p.config, make_config(p.port, cl, _apps(100, 0)))
    _settle(p, 2)
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", extra), timeout=2).close()
    assert helpers.curl1(p.url + "/").body == b"blue-1\n"


def _cert(d, cn):
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout",
                    str(d / "server.key.new"), "-out", str(d / "server.pem.new"), "-days", "2",
                    "-subj", "/CN=%s" % cn], check=True, capture_output=True, timeout=60)
    os.rename(d / "server.key.new", d / "server.key")
    os.rename(d / "server.pem.new", d / "server.pem")


def _peer_cn(port):
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with ctx.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=5)) as s:
        der = s.getpeercert(binary_form=True)
    out = subprocess.run(["openssl", "x509", "-inform", "DER", "-noout", "-subject"],
                         input=der, capture_output=True, timeout=10).stdout.decode()
    return out.strip()


def test_renewed_tls_certificate_reaches_new_connections(backends, proxy, tmp_path):
    _cert(tmp_path, "first.test")
    tls = helpers.free_port()
    cl = _clusters(backends)

    def text(port):
        return make_config(port, cl, _apps(100, 0)).replace(
            "listen:\n", "listen:\n  - address: 127.0.0.1:%d\n    tls:\n      cert: %s\n"
            "      key: %s\n" % (tls, tmp_path / "server.pem", tmp_path / "server.key"), 1)

    p = proxy(config_text=text(1).replace("127.0.0.1:1\n", "127.0.0.1:@PORT@\n"))
    assert "first.test" in _peer_cn(tls)
    _cert(tmp_path, "second.test")
    p.proc.send_signal(signal.SIGHUP)
    _wait_published(p, 1)
    assert "second.test" in _peer_cn(tls)


def test_endpoint_change_moves_new_requests_and_lets_old_ones_finish(backends, backend_factory,
                                                                    proxy):
    other = backend_factory("blue-2")
    p = proxy(_apps(100, 0))
    result = {}

    def slow():
        result["r"] = helpers.curl1(p.url + "/sleep/2")

    t = threading.Thread(target=slow)
    t.start()
    time.sleep(0.3)
    cl = {"blue": {"endpoints": [other.addr]}, "green": {"endpoints": [backends.green.addr]}}
    _write(p.config, make_config(p.port, cl, _apps(100, 0)))
    _settle(p, 1)
    assert helpers.curl1(p.url + "/").header("x-backend") == "blue-2"
    t.join(timeout=10)
    assert result["r"].status == 200 and result["r"].header("x-backend") == "blue-1"
