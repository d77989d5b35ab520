# SPDX-License-Identifier: MIT
"""Parked HTTP/2 connections (issue #13, idle HTTP/2 memory; proxy/h2_server.c session_park).

An HTTP/2 client connection that has only exchanged SETTINGS, PINGs and connection
WINDOW_UPDATEs, and has nothing to send, is held without its nghttp2 session (about 25 KB);
its next bytes find a new session built to be the same one. These tests drive real sockets
frame by frame (python3-hpack for the header blocks) against the real proxy and real
backends, and read `switchyard_h2_parked_connections` from /metrics to know a connection is
parked. What they check is what a client can see: the settings it sent (stream window, header
table size), the connection window it gave, the settings it was sent (across a reload that
changes them), PING, and the idle GOAWAY."""

import re
import struct
import time
import urllib.request

import helpers
from test_20_h2 import (ACK, DATA, END_STREAM, GOAWAY, HEADERS, PATTERN, PING,  # noqa: F401
                        SETTINGS, WINDOW_UPDATE, RawH2, frame, settings_payload)

HEADER_TABLE_SIZE, INITIAL_WINDOW_SIZE = 0x1, 0x4


def parked(hport):
    with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % hport, timeout=10) as r:
        text = r.read().decode()
    vals = re.findall(r'^switchyard_h2_parked_connections\{[^}]*\} (\d+)$', text, re.M)
    assert vals, "no switchyard_h2_parked_connections in /metrics"
    return sum(int(v) for v in vals)


def wait_parked(hport, n, what):
    helpers.wait_for(lambda: parked(hport) == n, 10, "%d parked connections (%s)" % (n, what),
                     0.02)


def start(proxy, **kw):
    hport = helpers.free_port()
    p = proxy(extra={"admin": {"http": "127.0.0.1:%d" % hport}}, **kw)
    return p, hport


def settled(c):
    """The server's SETTINGS came (RawH2 acknowledges them) and so did its ACK of ours."""
    assert c.read(lambda fr: c.server_settings() is not None and any(
        f[0] == SETTINGS and f[1] & ACK for f in fr), 10), c.summary()


def window_update(sid, inc):
    return frame(WINDOW_UPDATE, 0, sid, struct.pack(">I", inc))


def data_len(c, sid):
    return len(c.body(sid))


def test_idle_connections_park_and_wake_with_the_settings_and_window_they_gave(proxy):
    p, hport = start(proxy)
    # A: a 100-byte stream window and no header table (every header block literal).
    a = RawH2(p.port, settings=[(HEADER_TABLE_SIZE, 0), (INITIAL_WINDOW_SIZE, 100)])
    a.dec.header_table_size = 0
    a.dec.max_allowed_table_size = 0
    settled(a)
    wait_parked(hport, 1, "A after its SETTINGS exchange")
    # B: 1 MiB stream windows and a 1 MiB connection window, given before it is parked.
    b = RawH2(p.port, settings=[(INITIAL_WINDOW_SIZE, 1 << 20)])
    b.send(window_update(0, (1 << 20) - 65535))
    settled(b)
    wait_parked(hport, 2, "B after its WINDOW_UPDATE")
    # C: two SETTINGS frames; only one replays exactly, so C keeps its session.
    c = RawH2(p.port, settings=[(INITIAL_WINDOW_SIZE, 1000)])
    c.send(frame(SETTINGS, 0, 0, settings_payload([(INITIAL_WINDOW_SIZE, 2000)])))
    assert c.read(lambda fr: sum(1 for f in fr if f[0] == SETTINGS and f[1] & ACK) >= 2, 10)
    time.sleep(0.3)
    assert parked(hport) == 2, "a connection with two SETTINGS frames was parked"

    # A PING wakes A; it is answered with its payload, and A parks again.
    a.send(frame(PING, 0, 0, b"parked!!"))
    assert a.read(lambda fr: any(f[0] == PING and f[1] & ACK for f in fr), 10), a.summary()
    assert [f[3] for f in a.frames if f[0] == PING] == [b"parked!!"]
    wait_parked(hport, 2, "A again after its PING")

    # A request on A: the new session keeps A's 100-byte window...
    a.headers(1, "/bytes/1000")
    assert a.read(lambda fr: data_len(a, 1) >= 100, 10), a.summary()
    a.read(timeout=0.5)
    assert data_len(a, 1) == 100, "sent %d bytes into a 100-byte window" % data_len(a, 1)
    a.send(window_update(1, 900) + window_update(0, 900))
    assert a.read(a.done(1), 10), a.summary()
    assert a.status(1) == 200 and a.body(1) == PATTERN[:1000], (a.status(1), data_len(a, 1))
    # ...and its header table of 0: a second answer decodes with no dynamic table either.
    a.headers(3, "/anything")
    assert a.read(a.done(3), 10), a.summary()
    assert a.status(3) == 200 and a.body(3) in (b"blue-1\n", b"green-1\n"), a.summary()
    assert parked(hport) == 1, "A opened streams and is parked again"

    # B: 512 KiB with no WINDOW_UPDATE from the client: the 1 MiB windows it gave still hold.
    b.headers(1, "/bytes/524288")
    assert b.read(b.done(1), 20), "stalled at %d of 524288 bytes: %s" % (data_len(b, 1),
                                                                         b.summary()[-4:])
    assert b.status(1) == 200 and data_len(b, 1) == 524288
    assert parked(hport) == 0
    assert a.goaways() == [] and b.goaways() == [] and c.goaways() == []
    for x in (a, b, c):
        x.close()


def test_a_parked_connection_keeps_the_settings_it_was_sent_across_a_reload(proxy):
    """Our SETTINGS told the client a 64 KiB stream window. A reload lowers limits.buffer_bytes
    to 16 KiB while the connection is parked: its new session must still take the 64 KiB the
    client was allowed to send at once, not reset the stream for a flow-control error."""
    p, hport = start(proxy, limits={"buffer_bytes": 65536})
    a = RawH2(p.port)
    settled(a)
    assert a.server_settings()[INITIAL_WINDOW_SIZE] == 65536
    wait_parked(hport, 1, "after the SETTINGS exchange")
    p.spec["limits"] = {"buffer_bytes": 16384}
    p.reload()
    fresh = RawH2(p.port)
    settled(fresh)
    assert fresh.server_settings()[INITIAL_WINDOW_SIZE] == 16384, "the reload changed nothing"
    fresh.close()

    body = bytes(range(256)) * 256  # 65,536 bytes: the whole window the client was given
    a.headers(1, "/anything", method="POST", end_stream=False,
              extra=[("content-length", str(len(body)))])
    for off in range(0, len(body), 16384):
        a.send(frame(DATA, END_STREAM if off + 16384 >= len(body) else 0, 1,
                     body[off:off + 16384]))
    assert a.read(a.done(1), 15), a.summary()
    assert a.resets(1) == [] and a.goaways() == [], a.summary()
    assert a.status(1) == 200, a.summary()
    assert b'"bytes": 65536' in a.body(1) or b'"bytes":65536' in a.body(1), a.body(1)
    a.close()


def test_a_parked_connection_is_closed_with_goaway_at_its_idle_timeout(proxy):
    p, hport = start(proxy, timeouts={"client_idle": "1s"})
    a = RawH2(p.port)
    settled(a)
    wait_parked(hport, 1, "after the SETTINGS exchange")
    t0 = time.monotonic()
    a.read_until_closed(5)
    took = time.monotonic() - t0
    assert a.goaways() == [(0, 0)], a.summary()
    assert took < 3, "closed after %.1f s" % took
    wait_parked(hport, 0, "after the idle close")


def test_a_parked_tls_connection_wakes_for_its_requests(proxy, tls_cert):
    hport = helpers.free_port()
    p = proxy(extra={"admin": {"http": "127.0.0.1:%d" % hport}}, tls=tls_cert)
    a = RawH2(p.tls_port, cert=tls_cert[0])
    settled(a)
    wait_parked(hport, 1, "a TLS h2 connection after its SETTINGS exchange")
    for sid in (1, 3, 5):
        a.headers(sid, "/bytes/60000")
        assert a.read(a.done(sid), 10), a.summary()
        assert a.status(sid) == 200 and a.body(sid) == PATTERN[:60000], a.summary()
        # The connection window: what it took is given back, as a client does.
        a.send(window_update(0, 60000))
    assert parked(hport) == 0 and a.goaways() == []
    a.close()


def test_half_a_frame_keeps_the_session_and_eight_wakes_end_parking(proxy):
    p, hport = start(proxy)
    a = RawH2(p.port)
    settled(a)
    wait_parked(hport, 1, "after the SETTINGS exchange")
    # Half a PING wakes the session, which must not park again with the rest unread.
    ping = frame(PING, 0, 0, b"halfhalf")
    a.send(ping[:12])
    wait_parked(hport, 0, "woken by half a frame")
    time.sleep(0.3)
    assert parked(hport) == 0, "parked with half a frame read"
    a.send(ping[12:])
    assert a.read(lambda fr: any(f[0] == PING and f[1] & ACK for f in fr), 10), a.summary()
    wait_parked(hport, 1, "once the PING is whole and answered")
    # That was one wake; a client that keeps waking it (8 wakes) keeps its session after.
    for i in range(7):
        a.send(frame(PING, 0, 0, b"ping-%03d" % i))
        assert a.read(lambda fr: sum(1 for f in fr if f[0] == PING and f[1] & ACK) == i + 2,
                      10), a.summary()
        if i < 6:
            wait_parked(hport, 1, "parked again after wake %d" % (i + 2))
    time.sleep(0.3)
    assert parked(hport) == 0, "parked again after 8 wakes"
    a.headers(1, "/anything")
    assert a.read(a.done(1), 10) and a.status(1) == 200, a.summary()
    a.close()
