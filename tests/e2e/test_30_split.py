# SPDX-License-Identifier: MIT
"""Weighted split and host/path routing through the running proxy. Without a sticky key the
pick is smooth weighted round-robin shared by all workers, so the counts are exact even with
two workers and concurrent clients. The schedule's own properties (exact over every window of
sum-of-weights requests, a weight-0 cluster never chosen, 50/50 alternating) are unit tests in
tests/unit/routing/test_table.c, at a hundredth of the cost."""

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


def concurrent_tags(port, clients, n):
    """`clients` threads at once, each n GETs on one new connection; all their x-backend tags."""
    results = [None] * clients
    errors = []

    def run(i):
        try:
            results[i] = tags(port, n, per_conn=n)
        except Exception as e:  # reported below
            errors.append(repr(e))

    threads = [threading.Thread(target=run, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert not errors, errors
    assert all(r is not None for r in results), "a client did not finish"
    return [x for r in results for x in r]


def test_split_is_exact_with_two_workers_and_concurrent_clients(proxy):
    """The schedule is shared by the workers: after each round of 4 concurrent clients (one
    connection each, so the kernel spreads them over both workers) the requests so far are
    exactly 90/10. Schedules of their own per worker would each start afresh and come out
    exact only when each worker happened to take a multiple of 10; ten rounds make that
    chance small. The schedule itself (exact over every window, a weight-0 cluster never
    chosen, 50/50 alternating) is test_table.c's."""
    p = proxy(apps=split_app(90, 10), workers=2)
    total = Counter()
    for rnd in range(1, 11):
        total.update(concurrent_tags(p.port, 4, 5))
        assert total == {"blue-1": 18 * rnd, "green-1": 2 * rnd}, "after round %d" % rnd


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
