# SPDX-License-Identifier: MIT
"""Weighted split and host/path routing. Without a sticky key the pick is smooth weighted
round-robin shared by all workers, so the counts are exact: over any window of
sum-of-weights consecutive requests every cluster gets exactly its weight."""

import http.client
import threading
from collections import Counter

import pytest

from helpers import curl1


def tags(port, n, path="/", host="app.test", per_conn=250):
    """n sequential GETs on keep-alive connections (per_conn requests each); x-backend tags."""
    out = []
    while len(out) < n:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        try:
            for _ in range(min(per_conn, n - len(out))):
                c.request("GET", path, headers={"Host": host})
                r = c.getresponse()
                r.read()
                assert r.status == 200, (r.status, r.getheaders())
                out.append(r.getheader("x-backend"))
        finally:
            c.close()
    return out


def split_app(blue, green):
    return [{"name": "web", "hosts": ["*"], "weights": {"blue": blue, "green": green}}]


def test_90_10_split_is_exact_over_1000_requests_and_every_window(proxy):
    p = proxy(apps=split_app(90, 10))
    seq = tags(p.port, 1000)
    assert Counter(seq) == {"blue-1": 900, "green-1": 100}
    bad = []
    for i in range(len(seq) - 100 + 1):
        c = Counter(seq[i:i + 100])
        if c["blue-1"] != 90:
            bad.append((i, dict(c)))
    assert not bad, "windows of 100 not 90/10 (first 5): %r" % bad[:5]


def test_split_is_exact_with_two_workers_and_concurrent_clients(proxy):
    p = proxy(apps=split_app(90, 10), workers=2)
    results = [None] * 4
    errors = []

    def run(i):
        try:
            results[i] = tags(p.port, 250, per_conn=50)
        except Exception as e:  # reported below
            errors.append(repr(e))

    threads = [threading.Thread(target=run, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors, errors
    total = Counter(x for r in results for x in r)
    assert total == {"blue-1": 900, "green-1": 100}


def test_0_100_sends_everything_to_green(proxy):
    p = proxy(apps=split_app(0, 100))
    assert Counter(tags(p.port, 200)) == {"green-1": 200}


def test_100_0_sends_everything_to_blue(proxy):
    p = proxy(apps=split_app(100, 0))
    assert Counter(tags(p.port, 200)) == {"blue-1": 200}


def test_50_50_alternates(proxy):
    p = proxy(apps=split_app(50, 50))
    seq = tags(p.port, 100)
    assert Counter(seq) == {"blue-1": 50, "green-1": 50}
    assert all(seq[i] != seq[i + 1] for i in range(len(seq) - 1)), seq[:10]


@pytest.fixture
def routing_proxy(proxy, backends, backend_factory):
    wild = backend_factory("wild-1")
    anyb = backend_factory("any-1")
    clusters = {"blue": [backends.blue.addr], "green": [backends.green.addr],
                "wild": [wild.addr], "any": [anyb.addr]}
    apps = [
        {"name": "api", "hosts": ["api.example.com"], "paths": ["/"],
         "weights": {"blue": 100}},
        {"name": "api-v2", "hosts": ["api.example.com"], "paths": ["/v2"],
         "weights": {"green": 100}},
        {"name": "special", "hosts": ["only.example.com"], "paths": ["/special"],
         "weights": {"blue": 100}},
        {"name": "wild", "hosts": ["*.example.com"], "weights": {"wild": 100}},
        {"name": "eu", "hosts": ["*.eu.example.com"], "weights": {"green": 100}},
        {"name": "catch-all", "hosts": ["*"], "weights": {"any": 100}},
    ]
    return proxy(apps=apps, clusters=clusters)


@pytest.mark.parametrize("host,path,want", [
    ("api.example.com", "/", "blue-1"),
    ("api.example.com", "/users", "blue-1"),
    ("api.example.com", "/v2", "green-1"),
    ("api.example.com", "/v2/users", "green-1"),
    ("API.Example.COM:8080", "/v2/x", "green-1"),
    ("api.example.com.", "/", "blue-1"),
    ("www.example.com", "/", "wild-1"),
    ("a.eu.example.com", "/", "green-1"),
    ("only.example.com", "/special/x", "blue-1"),
    ("only.example.com", "/other", "wild-1"),
    ("example.com", "/", "any-1"),
    ("other.org", "/v2", "any-1"),
])
def test_host_and_path_routing(routing_proxy, host, path, want):
    r = curl1(routing_proxy.url + path, "--http1.1", "-H", "Host: " + host)
    assert r.status == 200, r
    assert r.backend == want, "%s%s went to %s" % (host, path, r.backend)
