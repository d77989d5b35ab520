# SPDX-License-Identifier: MIT
"""A request head that trickles in a byte at a time is still parsed right (the proxy re-parses
an incomplete head only when a line has ended), and one that trickles past a limit is still
refused as soon as it passes it."""

import socket
import time

import helpers

APPS = [{"name": "app", "hosts": ["*"], "weights": {"blue": 1}}]


def _trickle(port, data, gap=0.0005):
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    for i in range(len(data)):
        s.sendall(data[i:i + 1])
        if gap:
            time.sleep(gap)
    return s


def _read_all(s, deadline=10):
    s.settimeout(deadline)
    out = b""
    while True:
        try:
            chunk = s.recv(65536)
        except socket.timeout:
            break
        if not chunk:
            break
        out += chunk
        if b"\r\n\r\n" in out and (b"blue-1\n" in out or b"content-length: 0" in out.lower()):
            break
    return out


def test_head_sent_byte_by_byte_is_served(backends, proxy):
    p = proxy(APPS)
    req = (b"GET /trickle HTTP/1.1\r\nHost: app.test\r\nX-One: " + b"a" * 300 +
           b"\r\nX-Two: b\r\nConnection: close\r\n\r\n")
    s = _trickle(p.port, req)
    out = _read_all(s)
    s.close()
    assert out.startswith(b"HTTP/1.1 200"), out[:200]
    assert b"x-backend: blue-1" in out.lower()


def test_request_line_trickling_past_its_limit_gets_414(backends, proxy):
    p = proxy(APPS, limits={"max_request_line": 200})
    s = _trickle(p.port, b"GET /" + b"a" * 260, gap=0)
    out = _read_all(s)
    s.close()
    assert out.startswith(b"HTTP/1.1 414"), out[:200]


def test_header_block_trickling_past_its_limit_gets_431(backends, proxy):
    p = proxy(APPS, limits={"max_header_bytes": 1024})
    s = _trickle(p.port, b"GET / HTTP/1.1\r\nHost: app.test\r\nX-Long: " + b"a" * 1100, gap=0)
    out = _read_all(s)
    s.close()
    assert out.startswith(b"HTTP/1.1 431"), out[:200]
