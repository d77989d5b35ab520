# SPDX-License-Identifier: MIT
"""Requests that two parsers could read two ways (request smuggling) and heads over the limits.
Each is sent raw; the proxy must answer with the stated status and close the connection, and
the backends' logs must show that the request (or, for a bad chunked body, a complete request)
never reached them. A valid request pipelined after a rejected one must not be processed."""

import uuid

import pytest

from helpers import Raw, get_request, sync_backends

LIMITS = {"max_header_bytes": 4096, "max_request_line": 1024}
BAD = (400,)
CODING = (400, 501)


def req(method, path, headers, body=b"", version=b"HTTP/1.1"):
    head = method + b" " + path + b" " + version + b"\r\n"
    for h in headers:
        head += h + b"\r\n"
    return head + b"\r\n" + body


def post(path, headers, body):
    return req(b"POST", path, [b"Host: app.test"] + headers, body)


def smuggled(tok):
    return b"0\r\n\r\nGET /" + tok + b"-inner HTTP/1.1\r\nHost: app.test\r\n\r\n"

# (id, request built from a token, accepted statuses). The head itself is bad: nothing may
# reach a backend.
HEAD_CASES = [
    ("cl_and_te", lambda t: post(b"/%s" % t, [b"Content-Length: %d" % len(smuggled(t)),
                                              b"Transfer-Encoding: chunked"], smuggled(t)), BAD),
    ("te_and_cl", lambda t: post(b"/%s" % t, [b"Transfer-Encoding: chunked",
                                              b"Content-Length: 4"], b"0\r\n\r\n"), BAD),
    ("two_content_lengths", lambda t: post(b"/%s" % t, [b"Content-Length: 5",
                                                        b"Content-Length: 6"], b"hello!"), BAD),
    ("content_length_list", lambda t: post(b"/%s" % t, [b"Content-Length: 5, 6"], b"hello!"),
     BAD),
    ("content_length_negative", lambda t: post(b"/%s" % t, [b"Content-Length: -1"], b"x"), BAD),
    ("content_length_plus", lambda t: post(b"/%s" % t, [b"Content-Length: +5"], b"hello"), BAD),
    ("content_length_hex", lambda t: post(b"/%s" % t, [b"Content-Length: 0x5"], b"hello"), BAD),
    ("te_gzip", lambda t: post(b"/%s" % t, [b"Transfer-Encoding: gzip"], b"hello"), CODING),
    ("te_gzip_chunked", lambda t: post(b"/%s" % t, [b"Transfer-Encoding: gzip, chunked"],
                                       b"5\r\nhello\r\n0\r\n\r\n"), CODING),
    ("te_chunked_gzip", lambda t: post(b"/%s" % t, [b"Transfer-Encoding: chunked, gzip"],
                                       b"5\r\nhello\r\n0\r\n\r\n"), CODING),
    ("te_identity", lambda t: post(b"/%s" % t, [b"Transfer-Encoding: identity"], b"hello"),
     CODING),
    ("te_xchunked", lambda t: post(b"/%s" % t, [b"Transfer-Encoding: xchunked"],
                                   b"5\r\nhello\r\n0\r\n\r\n"), CODING),
    ("te_chunked_twice", lambda t: post(b"/%s" % t, [b"Transfer-Encoding: chunked, chunked"],
                                        b"5\r\nhello\r\n0\r\n\r\n"), CODING),
    ("te_on_http10", lambda t: req(b"POST", b"/%s" % t, [b"Host: app.test",
                                                         b"Transfer-Encoding: chunked"],
                                   b"5\r\nhello\r\n0\r\n\r\n", version=b"HTTP/1.0"), BAD),
    ("space_before_colon", lambda t: post(b"/%s" % t, [b"Content-Length : 5"], b"hello"), BAD),
    ("te_space_before_colon", lambda t: post(b"/%s" % t, [b"Transfer-Encoding : chunked",
                                                          b"Content-Length: 5"], b"hello"),
     BAD),
    ("tab_before_colon", lambda t: post(b"/%s" % t, [b"Content-Length\t: 5"], b"hello"), BAD),
    ("space_in_name", lambda t: req(b"GET", b"/%s" % t, [b"Host: app.test", b"X Foo: bar"]),
     BAD),
    ("empty_name", lambda t: req(b"GET", b"/%s" % t, [b"Host: app.test", b": bar"]), BAD),
    ("obs_fold", lambda t: req(b"GET", b"/%s" % t, [b"Host: app.test", b"X-Foo: a",
                                                    b" folded"]), BAD),
    ("ctl_in_value", lambda t: req(b"GET", b"/%s" % t, [b"Host: app.test", b"X-Foo: a\x01b"]),
     BAD),
    ("nul_in_value", lambda t: req(b"GET", b"/%s" % t, [b"Host: app.test", b"X-Foo: a\x00b"]),
     BAD),
    ("del_in_value", lambda t: req(b"GET", b"/%s" % t, [b"Host: app.test", b"X-Foo: a\x7fb"]),
     BAD),
    ("bare_lf_everywhere", lambda t: b"GET /%s HTTP/1.1\nHost: app.test\n\n" % t, BAD),
    ("bare_lf_in_head", lambda t: b"GET /%s HTTP/1.1\r\nHost: app.test\nX-A: b\r\n\r\n" % t,
     BAD),
    ("bare_cr_in_head", lambda t: b"GET /%s HTTP/1.1\r\nHost: app.test\rX-A: b\r\n\r\n" % t,
     BAD),
    ("missing_host_http11", lambda t: req(b"GET", b"/%s" % t, []), BAD),
    ("two_hosts", lambda t: req(b"GET", b"/%s" % t, [b"Host: app.test", b"Host: evil.test"]),
     BAD),
    ("double_space_request_line", lambda t: b"GET  /%s HTTP/1.1\r\nHost: app.test\r\n\r\n" % t,
     BAD),
    ("header_block_over_limit", lambda t: req(b"GET", b"/%s" % t, [
        b"Host: app.test", b"X-Pad: " + b"p" * 5000]), (431,)),
    ("too_many_headers", lambda t: req(b"GET", b"/%s" % t, [b"Host: app.test"] + [
        b"X-H%d: v" % i for i in range(150)]), (431,)),
    ("request_line_over_limit", lambda t: req(b"GET", b"/%s/" % t + b"a" * 2000,
                                              [b"Host: app.test"]), (414,)),
]

# The head is fine but the chunked framing is not: the head may have been forwarded, but the
# backend must never see a complete body.
BODY_CASES = [
    ("chunk_bare_lf_after_size", b"5\nhello\r\n0\r\n\r\n"),
    ("chunk_bare_lf_after_data", b"5\r\nhello\n0\r\n\r\n"),
    ("chunk_size_zz", b"zz\r\nhello\r\n0\r\n\r\n"),
    ("chunk_size_negative", b"-5\r\nhello\r\n0\r\n\r\n"),
    ("chunk_size_overflow_2_64", b"10000000000000005\r\nhello\r\n0\r\n\r\n"),
    ("chunk_size_overflow_long", b"FFFFFFFFFFFFFFFFFFFF\r\nhello\r\n0\r\n\r\n"),
    ("chunk_data_longer_than_size", b"5\r\nhelloXX\r\n0\r\n\r\n"),
    ("chunk_size_empty", b"\r\nhello\r\n0\r\n\r\n"),
]


def expect_rejected(proxy, data, statuses):
    with Raw(proxy.port) as c:
        c.send(data)
        try:
            r = c.read_response()
        except EOFError:
            pytest.fail("connection closed without an answer (want %s)" % (statuses,))
        except ConnectionResetError:
            pytest.fail("connection reset without an answer (want %s)" % (statuses,))
        assert r.version.startswith("HTTP/1."), r.version
        assert r.status in statuses, "got %d, want %s: %r" % (r.status, statuses, r)
        assert r.backend is None, "the answer came from a backend, not the proxy: %r" % r
        after = c.closed()
        assert after is True, "connection not closed after %d; then got %r" % (r.status, after)
    return r


def token():
    return "smug-" + uuid.uuid4().hex


@pytest.mark.parametrize("case", HEAD_CASES, ids=[c[0] for c in HEAD_CASES])
def test_bad_head_is_rejected_and_never_forwarded(proxy, backends, case):
    _, build, statuses = case
    p = proxy(limits=LIMITS)
    tok = token()
    expect_rejected(p, build(tok.encode()), statuses)
    sync_backends(p)
    assert not backends.saw(tok), backends.saw(tok)


@pytest.mark.parametrize("case", BODY_CASES, ids=[c[0] for c in BODY_CASES])
def test_bad_chunked_framing_is_rejected_and_never_completes_upstream(proxy, backends, case):
    _, body = case
    p = proxy(limits=LIMITS)
    tok = token()
    data = post(b"/%s" % tok.encode(), [b"Transfer-Encoding: chunked"], body)
    expect_rejected(p, data, BAD)
    sync_backends(p)
    assert not backends.saw(tok, ev="body"), backends.saw(tok)


@pytest.mark.parametrize("case", [c for c in HEAD_CASES if c[0] in (
    "cl_and_te", "two_content_lengths", "space_before_colon", "obs_fold", "bare_lf_in_head",
    "missing_host_http11", "header_block_over_limit")], ids=lambda c: c[0])
def test_valid_request_after_a_rejected_one_is_not_processed(proxy, backends, case):
    _, build, statuses = case
    p = proxy(limits=LIMITS)
    tok = token()
    follow = get_request("/%s-follow" % tok)
    r = expect_rejected(p, build(tok.encode()) + follow, statuses)
    assert b"blue-1" not in r.body
    sync_backends(p)
    assert not backends.saw(tok), backends.saw(tok)


def test_valid_request_after_bad_chunked_body_is_not_processed(proxy, backends):
    p = proxy(limits=LIMITS)
    tok = token()
    data = post(b"/%s" % tok.encode(), [b"Transfer-Encoding: chunked"], b"zz\r\nhello\r\n0\r\n\r\n")
    expect_rejected(p, data + get_request("/%s-follow" % tok), BAD)
    sync_backends(p)
    assert not backends.saw(tok + "-follow"), backends.saw(tok)


# -- controls: the same shapes, valid, pass through -------------------------------------------------

def test_valid_chunked_with_extensions_and_trailers_passes(proxy, backends):
    p = proxy(limits=LIMITS)
    tok = token()
    data = post(b"/%s" % tok.encode(), [b"Transfer-Encoding: Chunked"],
                b"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n")
    with Raw(p.port) as c:
        c.send(data + get_request("/%s-after" % tok))
        r = c.read_response()
        assert r.status == 200, r
        assert r.json()["bytes"] == 11
        assert c.read_response().status == 200
    assert backends.saw(tok + "-after")


def test_headers_just_under_the_limits_pass(proxy):
    p = proxy(limits=LIMITS)
    with Raw(p.port) as c:
        c.send(req(b"GET", b"/" + b"a" * 900, [b"Host: app.test", b"X-Pad: " + b"p" * 2500]))
        assert c.read_response().status == 200
        c.send(req(b"GET", b"/many", [b"Host: app.test"] + [b"X-H%d: v" % i for i in range(80)]))
        assert c.read_response().status == 200
