# SPDX-License-Identifier: MIT
"""HTTP/1.1 through the proxy with real clients: forwarding, added and removed headers,
keep-alive on both sides, pipelining, uploads, and the proxy's own 404/502/504."""

import hashlib
import random
import time
import uuid

import pytest

from helpers import Raw, curl, curl1, free_port, get_request, sync_backends

H11 = "--http1.1"


def echo(proxy, *opts, path="/echo-headers"):
    r = curl1(proxy.url + path, H11, *opts)
    assert r.status == 200, r
    return r.json()


def names(doc):
    return [n.lower() for n, _ in doc["headers"]]


def values(doc, name):
    return [v for n, v in doc["headers"] if n.lower() == name.lower()]


@pytest.fixture(scope="module")
def upload_file(tmp_path_factory):
    """3 MiB of seeded random bytes and their sha256."""
    data = random.Random(20240601).randbytes(3 * 1024 * 1024)
    path = tmp_path_factory.mktemp("upload") / "body.bin"
    path.write_bytes(data)
    return str(path), len(data), hashlib.sha256(data).hexdigest()


def test_get_returns_the_backend_body(proxy):
    p = proxy()
    r = curl1(p.url + "/hello", H11)
    assert r.status == 200
    assert r.body == b"blue-1\n"
    assert r.backend == "blue-1"
    assert r.info["http_version"] == "1.1"


def test_host_header_reaches_the_backend_unchanged(proxy):
    p = proxy()
    doc = echo(p, "-H", "Host: Shop.Example.com:8080")
    assert values(doc, "host") == ["Shop.Example.com:8080"]
    assert doc["method"] == "GET" and doc["path"] == "/echo-headers"


def test_forwarding_headers_are_added(proxy):
    p = proxy()
    doc = echo(p, "-H", "Host: shop.example.com")
    xff = values(doc, "x-forwarded-for")
    assert xff and xff[-1].split(",")[-1].strip() == "127.0.0.1", doc["headers"]
    assert values(doc, "x-forwarded-proto") == ["http"], doc["headers"]
    assert values(doc, "x-forwarded-host") == ["shop.example.com"], doc["headers"]
    via = values(doc, "via")
    assert via and via[-1].split(",")[-1].strip().startswith("1.1 "), doc["headers"]


def test_x_forwarded_for_ends_with_the_client_address(proxy):
    p = proxy()
    doc = echo(p, "-H", "X-Forwarded-For: 203.0.113.7")
    xff = ", ".join(values(doc, "x-forwarded-for"))
    assert xff.split(",")[-1].strip() == "127.0.0.1", doc["headers"]


@pytest.mark.parametrize("header,name", [
    ("Connection: foo", "foo"),
    ("Keep-Alive: timeout=5, max=100", "keep-alive"),
    ("Proxy-Authorization: Basic Zm9vOmJhcg==", "proxy-authorization"),
    ("TE: gzip", "te"),
    ("Upgrade: websocket", "upgrade"),
    ("Proxy-Connection: keep-alive", "proxy-connection"),
])
def test_hop_by_hop_headers_are_not_forwarded(proxy, header, name):
    p = proxy()
    opts = ["-H", header]
    if name == "foo":
        opts += ["-H", "foo: bar"]  # named by Connection: a hop-by-hop field of this hop only
    doc = echo(p, *opts, "-H", "X-Keep-Me: yes")
    assert values(doc, "x-keep-me") == ["yes"], doc["headers"]
    assert name not in names(doc), "%s was forwarded: %r" % (name, doc["headers"])
    for v in values(doc, "connection"):
        assert "foo" not in v.lower(), doc["headers"]


def test_absolute_form_with_a_query_and_no_path_is_sent_as_slash_query(proxy, backends):
    # origin_form("http://a?x") used to give the authority's last byte and the query.
    p = proxy()
    with Raw(p.port) as c:
        c.send(b"GET http://app.test?q=abs HTTP/1.1\r\nHost: app.test\r\n"
               b"Connection: close\r\n\r\n")
        r = c.read_response()
    assert r.status == 200 and r.body == b"blue-1\n", r
    sync_backends(p)
    assert backends.blue.saw("/?q=abs"), backends.blue.records()[-3:]


def test_http10_client_is_served(proxy):
    p = proxy()
    r = curl1(p.url + "/", "--http1.0")
    assert r.status == 200 and r.body == b"blue-1\n", r


def test_http10_without_host_is_served_and_closed(proxy):
    p = proxy()
    with Raw(p.port) as c:
        c.send(b"GET /h10 HTTP/1.0\r\n\r\n")
        r = c.read_response()
        assert r.status == 200 and r.body == b"blue-1\n", r
        assert c.closed() is True


def test_client_keep_alive_serves_several_requests_on_one_connection(proxy):
    p = proxy()
    rs = curl([p.url + "/a", p.url + "/b", p.url + "/c"], H11)
    assert [r.status for r in rs] == [200, 200, 200]
    assert [r.body for r in rs] == [b"blue-1\n"] * 3
    assert [r.info["num_connects"] for r in rs] == [1, 0, 0], [r.info for r in rs]


def test_upstream_connection_is_reused_on_one_client_connection(proxy):
    p = proxy()
    rs = curl([p.url + "/conn"] * 5, H11)
    ids = [r.json()["conn"] for r in rs]
    assert len(set(ids)) == 1, ids


def test_upstream_connection_is_reused_across_client_connections(proxy):
    p = proxy()
    ids = [curl1(p.url + "/conn", H11).json()["conn"] for _ in range(4)]
    assert len(set(ids)) == 1, ids


def test_pipelined_requests_are_answered_in_order(proxy):
    p = proxy()
    tok = uuid.uuid4().hex
    reqs = b"".join(get_request("/echo-headers?n=%d&t=%s" % (i, tok)) for i in range(3))
    with Raw(p.port) as c:
        c.send(reqs)  # one write: three requests
        got = [c.read_response() for _ in range(3)]
    assert [r.status for r in got] == [200, 200, 200]
    assert [r.json()["path"] for r in got] == \
        ["/echo-headers?n=%d&t=%s" % (i, tok) for i in range(3)]


def check_upload(r, size, sha):
    assert r.status == 200, r
    doc = r.json()
    assert doc["bytes"] == size, doc
    assert doc["sha256"] == sha, doc
    assert doc["backend"] == "blue-1"


def test_post_with_content_length(proxy, upload_file):
    path, size, sha = upload_file
    p = proxy()
    r = curl1(p.url + "/upload", H11, "-H", "Expect:", "--data-binary", "@" + path)
    check_upload(r, size, sha)


def test_chunked_upload(proxy, upload_file):
    path, size, sha = upload_file
    p = proxy()
    r = curl1(p.url + "/upload", H11, "-H", "Expect:", "-H", "Transfer-Encoding: chunked",
              "--data-binary", "@" + path)
    check_upload(r, size, sha)


def test_expect_100_continue_upload(proxy, upload_file):
    path, size, sha = upload_file
    p = proxy()
    t0 = time.monotonic()
    r = curl1(p.url + "/upload", H11, "-H", "Expect: 100-continue", "--expect100-timeout", "8",
              "--data-binary", "@" + path)
    took = time.monotonic() - t0
    check_upload(r, size, sha)
    assert took < 5, "curl waited %.1f s: no 100 Continue came back" % took


def test_put_upload_from_file(proxy, upload_file):
    path, size, sha = upload_file
    p = proxy()
    r = curl1(p.url + "/put", H11, "-T", path)
    check_upload(r, size, sha)
    assert r.json()["method"] == "PUT"


def test_unknown_host_gets_404_from_the_proxy(proxy, backends):
    p = proxy(apps=[{"name": "shop", "hosts": ["shop.example.com"],
                     "weights": {"blue": 100, "green": 0}}])
    tok = uuid.uuid4().hex
    r = curl1(p.url + "/nohost-" + tok, H11, "-H", "Host: other.example.org")
    assert r.status == 404, r
    assert len(r.body) < 512, r.body
    assert r.backend is None, r.headers
    sync_backends(p, host="shop.example.com")
    assert not backends.saw(tok)


def test_cluster_with_nothing_listening_gives_502(proxy):
    closed = "127.0.0.1:%d" % free_port()
    p = proxy(clusters={"blue": [closed]},
              apps=[{"name": "web", "hosts": ["*"], "weights": {"blue": 100}}])
    t0 = time.monotonic()
    r = curl1(p.url + "/", H11)
    assert r.status == 502, r
    assert time.monotonic() - t0 < 5


def test_upstream_response_timeout_gives_504(proxy):
    p = proxy(timeouts={"upstream_response": "1s"})
    t0 = time.monotonic()
    r = curl1(p.url + "/sleep/3", H11, timeout=20)
    took = time.monotonic() - t0
    assert r.status == 504, r
    assert 0.8 <= took < 2.8, "504 after %.2f s, want about 1 s" % took


def test_response_without_body_statuses(proxy):
    p = proxy()
    for status in (204, 304):
        r = curl1(p.url + "/status/%d" % status, H11)
        assert r.status == status and r.body == b"", r
    with Raw(p.port) as c:  # HEAD: Content-Length but no body; the next response follows
        c.send(b"HEAD /bytes/1000 HTTP/1.1\r\nHost: app.test\r\n\r\n" + get_request("/next"))
        r = c.read_response(head_request=True)
        assert r.status == 200 and r.header("content-length") == "1000", r
        r = c.read_response()
        assert r.status == 200 and r.body == b"blue-1\n", r


def test_post_after_keep_alive_get_on_same_connection(proxy, upload_file):
    """A body on a reused client connection: framing carries over correctly."""
    path, size, sha = upload_file
    p = proxy()
    with Raw(p.port) as c:
        body = open(path, "rb").read()
        c.send(get_request("/first"))
        assert c.read_response().body == b"blue-1\n"
        c.send(b"POST /second HTTP/1.1\r\nHost: app.test\r\nContent-Length: %d\r\n\r\n"
               % len(body) + body + get_request("/third"))
        r = c.read_response()
        assert r.status == 200 and r.json()["sha256"] == sha, r
        assert c.read_response().body == b"blue-1\n"


def test_many_downloads_stay_on_one_client_connection(proxy):
    p = proxy()
    rs = curl([p.url + "/bytes/100000"] * 20, H11)
    assert all(r.status == 200 and len(r.body) == 100000 for r in rs)
    assert sum(r.info["num_connects"] for r in rs) == 1
