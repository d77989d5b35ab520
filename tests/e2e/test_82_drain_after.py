# SPDX-License-Identifier: MIT
"""`drain_after` (issue #7): once a cluster's weight for an app drops to 0 (by revert, switch,
weights or a reload of the file), what still runs on it is closed after the delay. A WebSocket
tunnel to green survives a weight change that leaves green above 0, keeps working during the
delay after green drops to 0, and is closed once the delay has passed, while a tunnel on blue
stays; `status --json` counts open tunnels per cluster. Without drain_after the tunnel stays
open; a tunnel forced to green by the force header stays too (docs/architecture.md). An HTTP/2
client whose connection carries a long download from green (an HTTP/1.1 backend read slowly,
or an h2c cluster that trickles) gets GOAWAY and that stream is reset after the delay, while a
stream to blue on the same connection finishes; an HTTP/1.1 exchange on green (waiting for its
answer, or receiving a trickle) is cut then. Real python3-websockets server and client,
python3-h2 client, raw sockets, switchyardctl on the admin socket."""

import asyncio
import json
import os
import socket
import time

import pytest

import helpers
from admin_util import SWITCHYARDCTL
from helpers import curl1, measure
from upstream_util import H2Client, Peers

websockets = pytest.importorskip("websockets")

pytestmark = pytest.mark.skipif(
    not (SWITCHYARDCTL and os.access(SWITCHYARDCTL, os.X_OK)),
    reason="SWITCHYARDCTL is not an executable (path to switchyardctl; meson test sets it)")

DRAIN = 1.0            # drain_after in these tests, seconds
EARLY = 0.3            # a close this much before DRAIN is "early" (timer and ctl latency)
LATE = 5.0             # a close later than DRAIN + LATE is "late" (a loaded 2-core machine)


@pytest.fixture
def peers(tmp_path):
    ps = Peers(tmp_path)
    yield ps
    ps.stop_all()


def app(name, blue, green, drain=True):
    a = {"name": name, "hosts": ["*"], "stable": "blue",
         "weights": {"blue": blue, "green": green},
         "force": {"header": "x-switchyard-cluster"}}
    if drain:
        a["drain_after"] = "%gs" % DRAIN
    return a


def counts(p, app_name, key):
    """{cluster: status --json's `key`} for one app."""
    r = p.ctl("status", "--json")
    assert r.returncode == 0, "status --json: rc %d %s%s" % (r.returncode, r.stdout, r.stderr)
    doc = json.loads(r.stdout)
    a = [x for x in doc["apps"] if x["name"] == app_name]
    assert a, "no app %s in %s" % (app_name, r.stdout)
    missing = [c["name"] for c in a[0]["clusters"] if key not in c]
    assert not missing, "status --json has no %r for %s: %s" % (key, missing, a[0])
    return {c["name"]: c[key] for c in a[0]["clusters"]}


def wait_counts(p, app_name, key, want, timeout=5.0):
    last = [None]

    def pred():
        last[0] = counts(p, app_name, key)
        return all(last[0].get(k) == v for k, v in want.items())

    try:
        helpers.wait_for(pred, timeout, "%s %r" % (key, want), interval=0.05)
    except AssertionError:
        raise AssertionError("status --json %s of app %s: want %r, still %r after %.0f s"
                             % (key, app_name, want, last[0], timeout)) from None


def drop_green(p, trigger, name):
    """Sends green's weight for app `name` to 0 in one of the four ways."""
    if trigger == "revert":
        p.ctl_ok("revert", name)
    elif trigger == "switch":
        p.ctl_ok("switch", name, "blue")
    elif trigger == "weights":
        p.ctl_ok("weights", name, "blue=100", "green=0")
    elif trigger == "reload":
        p.write_config([app(name, 100, 0, drain=True)])
        out = p.ctl_ok("reload")
        assert "published" in out, out
    else:
        raise AssertionError(trigger)


# -- WebSocket tunnels ----------------------------------------------------------------------------

@pytest.fixture
def ws_clusters(peers):
    blue, green = peers.ws_echo("blue-ws"), peers.ws_echo("green-ws")
    return {"blue": {"endpoints": [blue.addr]}, "green": {"endpoints": [green.addr]}}


async def connect(port, force=None):
    headers = {"x-switchyard-cluster": force} if force else None
    return await websockets.connect("ws://127.0.0.1:%d/socket" % port, open_timeout=5,
                                    ping_interval=None, close_timeout=2,
                                    extra_headers=headers)


async def echo(ws, msg, timeout=5.0):
    await asyncio.wait_for(ws.send(msg), timeout)
    return await asyncio.wait_for(ws.recv(), timeout)


async def wait_closed(ws, timeout):
    """Seconds until the peer closes the tunnel (a message instead is an error)."""
    t0 = time.monotonic()
    try:
        msg = await asyncio.wait_for(ws.recv(), timeout)
    except websockets.ConnectionClosed:
        return time.monotonic() - t0
    except asyncio.TimeoutError:
        raise AssertionError("the tunnel was still open %.1f s later" % timeout) from None
    raise AssertionError("a message arrived instead of the close: %r" % msg)


@pytest.mark.parametrize("trigger", ["revert", "switch", "weights", "reload"])
def test_tunnel_to_green_closed_drain_after_green_drops_to_zero(admin_proxy, ws_clusters,
                                                                trigger):
    p = admin_proxy([app("ws", 0, 100)], ws_clusters)

    async def scenario():
        a = await connect(p.port)  # green, by weight
        b = None
        try:
            assert await echo(a, "a1") == "green-ws: a1"
            await asyncio.to_thread(wait_counts, p, "ws", "tunnels", {"green": 1, "blue": 0})

            # A weight change that leaves green above 0 drains nothing.
            await asyncio.to_thread(p.write_config, [app("ws", 60, 40)])
            await asyncio.to_thread(p.ctl_ok, "reload")
            b = await connect(p.port, force="blue")
            assert await echo(b, "b1") == "blue-ws: b1"
            await asyncio.sleep(DRAIN + 0.5)
            assert await echo(a, "a2") == "green-ws: a2", "a weight change to 40 closed it"
            await asyncio.to_thread(wait_counts, p, "ws", "tunnels", {"green": 1, "blue": 1})

            # Green to 0: the tunnel works on during drain_after, then closes.
            await asyncio.to_thread(drop_green, p, trigger, "ws")
            t0 = time.monotonic()
            assert await echo(a, "a3") == "green-ws: a3", \
                "the tunnel must keep working during drain_after"
            quick = time.monotonic() - t0
            closed_in = quick + await wait_closed(a, DRAIN + LATE + 1)
            measure("ws_drain_close_after_%s" % trigger, round(closed_in, 3), "s",
                    "drain_after %gs" % DRAIN)
            assert closed_in >= DRAIN - EARLY, \
                "closed %.2f s after the %s, before drain_after %gs" % (closed_in, trigger,
                                                                      DRAIN)
            assert closed_in <= DRAIN + LATE, \
                "closed only %.2f s after the %s (drain_after %gs)" % (closed_in, trigger,
                                                                     DRAIN)

            # Blue's tunnel is untouched, and the count follows.
            assert await echo(b, "b2") == "blue-ws: b2"
            await asyncio.to_thread(wait_counts, p, "ws", "tunnels", {"green": 0, "blue": 1})
        finally:
            await a.close()
            if b is not None:
                await b.close()

    asyncio.run(scenario())
    wait_counts(p, "ws", "tunnels", {"green": 0, "blue": 0})


def test_without_drain_after_the_tunnel_stays_open_after_revert(admin_proxy, ws_clusters):
    p = admin_proxy([app("ws", 0, 100, drain=False)], ws_clusters)

    async def scenario():
        a = await connect(p.port)
        try:
            assert await echo(a, "a1") == "green-ws: a1"
            await asyncio.to_thread(p.ctl_ok, "revert", "ws")
            await asyncio.sleep(DRAIN + 2.0)
            assert await echo(a, "a2") == "green-ws: a2", \
                "without drain_after a revert must not close the tunnel"
            await asyncio.to_thread(wait_counts, p, "ws", "tunnels", {"green": 1, "blue": 0})
            # New tunnels follow the revert.
            c = await connect(p.port)
            try:
                assert await echo(c, "c1") == "blue-ws: c1"
            finally:
                await c.close()
        finally:
            await a.close()

    asyncio.run(scenario())
    wait_counts(p, "ws", "tunnels", {"green": 0, "blue": 0})


def test_a_switch_back_within_drain_after_keeps_the_tunnel(admin_proxy, ws_clusters):
    """Revert, then change one's mind before drain_after runs out: green has weight again
    when the timer fires, so nothing is closed."""
    p = admin_proxy([app("ws", 0, 100)], ws_clusters)

    async def scenario():
        a = await connect(p.port)
        try:
            assert await echo(a, "a1") == "green-ws: a1"
            await asyncio.to_thread(p.ctl_ok, "revert", "ws")
            await asyncio.to_thread(p.ctl_ok, "release", "ws")  # the file's 0/100 again
            await asyncio.sleep(DRAIN + 2.0)
            assert await echo(a, "a2") == "green-ws: a2", \
                "a switch back within drain_after must cancel the close"
            await asyncio.to_thread(wait_counts, p, "ws", "tunnels", {"green": 1, "blue": 0})
        finally:
            await a.close()

    asyncio.run(scenario())


def test_a_tunnel_forced_to_green_is_not_drained(admin_proxy, ws_clusters):
    """docs/architecture.md: drain_after cuts what reached the cluster by weight or sticky
    key; a tester's forced tunnel stays, as force values still apply after a revert."""
    p = admin_proxy([app("ws", 0, 100)], ws_clusters)

    async def scenario():
        w = await connect(p.port)
        f = await connect(p.port, force="green")
        try:
            assert await echo(w, "w1") == "green-ws: w1"
            assert await echo(f, "f1") == "green-ws: f1"
            await asyncio.to_thread(wait_counts, p, "ws", "tunnels", {"green": 2})
            await asyncio.to_thread(p.ctl_ok, "revert", "ws")
            closed_in = await wait_closed(w, DRAIN + LATE + 1)
            assert closed_in >= DRAIN - EARLY - 0.1, closed_in
            assert await echo(f, "f2") == "green-ws: f2", "the forced tunnel was drained"
            await asyncio.to_thread(wait_counts, p, "ws", "tunnels", {"green": 1})
        finally:
            await w.close()
            await f.close()

    asyncio.run(scenario())


# -- HTTP/2 client connections ------------------------------------------------------------------

ACK_EVERY = 0.1       # the slow reader gives back window this often...
ACK_BYTES = 64 * 1024  # ...this much: about 640 KB/s, so a 1 GiB download never ends here


@pytest.mark.parametrize("green_kind", ["http1", "h2c"])
def test_h2_client_stream_to_green_gets_goaway_and_reset_after_drain(admin_proxy, backends,
                                                                     peers, green_kind):
    if green_kind == "h2c":
        peer = peers.h2peer("green-h2")
        green = {"endpoints": [peer.addr], "protocol": "h2c"}
        path, green_name = "/trickle", "green-h2"
    else:
        peer = None
        green = {"endpoints": [backends.green.addr]}
        path, green_name = "/bytes/%d" % (1 << 30), "green-1"
    clusters = {"blue": {"endpoints": [backends.blue.addr]}, "green": green}
    p = admin_proxy([app("web", 0, 100)], clusters)

    c = H2Client(p.port)
    try:
        sid = c.request(path)
        state = {"headers": None, "bytes": 0, "reset": None, "ended": False,
                 "last_data": None, "pending": 0}
        other = {"sid": None, "headers": None, "ended": None, "reset": None, "body": b""}

        def pump(until, stop):
            """Reads events until `stop()` or the deadline; gives window back slowly on the
            green stream and at once on the other."""
            next_ack = time.monotonic() + ACK_EVERY
            while time.monotonic() < until and not stop():
                if c.closed:
                    return
                for ev in c.events(0.05):
                    name = type(ev).__name__
                    s = getattr(ev, "stream_id", None)
                    if s == sid:
                        if name == "ResponseReceived":
                            state["headers"] = dict(ev.headers)
                        elif name == "DataReceived":
                            state["bytes"] += len(ev.data)
                            state["pending"] += ev.flow_controlled_length
                            state["last_data"] = time.monotonic()
                        elif name == "StreamReset":
                            state["reset"] = (time.monotonic(), int(ev.error_code))
                        elif name == "StreamEnded":
                            state["ended"] = True
                    elif s is not None and s == other["sid"]:
                        if name == "ResponseReceived":
                            other["headers"] = dict(ev.headers)
                        elif name == "DataReceived":
                            other["body"] += ev.data
                            c.ack(s, ev.flow_controlled_length)
                        elif name == "StreamEnded":
                            other["ended"] = time.monotonic()
                        elif name == "StreamReset":
                            other["reset"] = int(ev.error_code)
                if time.monotonic() >= next_ack and state["pending"]:
                    n = min(state["pending"], ACK_BYTES)
                    state["pending"] -= n
                    c.ack(sid, n)
                    next_ack = time.monotonic() + ACK_EVERY

        pump(time.monotonic() + 10, lambda: state["headers"] and state["bytes"] >= 4096)
        assert state["headers"], "no response headers from green within 10 s: %r" % state
        assert state["headers"].get(":status") == "200", state["headers"]
        assert state["headers"].get("x-backend") == green_name, state["headers"]
        wait_counts(p, "web", "in_flight", {"green": 1})

        p.ctl_ok("revert", "web")
        t0 = time.monotonic()
        # A new stream on the same connection goes to blue and outlives the drain.
        other["sid"] = c.request("/sleep/%g" % (DRAIN + 1.5))
        at_revert = state["bytes"]
        pump(t0 + DRAIN + LATE + 1,
             lambda: c.goaway is not None and (state["reset"] or state["ended"])
             and (other["ended"] or other["reset"] is not None))
        if c.closed and not state["reset"]:
            state["reset"] = (time.monotonic(), None)  # the connection closed under it
        goaway_at = c.goaway_at

        assert not state["ended"], "the green download ended normally: %r" % state
        assert c.goaway is not None, \
            "no GOAWAY within %.0f s of the revert (drain_after %gs); stream %r" % (
                DRAIN + LATE + 1, DRAIN, state)
        assert state["reset"], "the green stream was not reset: %r" % state
        reset_in = state["reset"][0] - t0
        measure("h2_drain_reset_after_revert_%s" % green_kind, round(reset_in, 3), "s",
                "drain_after %gs" % DRAIN)
        assert reset_in >= DRAIN - EARLY, \
            "the green stream was reset %.2f s after the revert, before drain_after" % reset_in
        assert reset_in <= DRAIN + LATE, "reset only %.2f s after the revert" % reset_in
        if goaway_at is not None:
            assert goaway_at - t0 >= DRAIN - EARLY, goaway_at - t0
        moved = state["bytes"] - at_revert
        assert moved > 0, "no byte of the download arrived during drain_after"
        # GOAWAY is graceful: the blue stream on that connection completes.
        assert other["reset"] is None and other["ended"], \
            "the blue stream on the drained connection did not complete: %r" % other
        assert other["headers"].get(":status") == "200" and \
            other["headers"].get("x-backend") == "blue-1", other
        assert c.goaway.last_stream_id >= other["sid"], \
            "GOAWAY's last stream %d excludes the blue stream %d" % (
                c.goaway.last_stream_id, other["sid"])
    finally:
        c.close()

    wait_counts(p, "web", "in_flight", {"green": 0})
    r = curl1(p.url + "/after", "--http2-prior-knowledge", timeout=10)
    assert r.status == 200 and r.backend == "blue-1", r
    if peer is not None:
        # The cluster's stream was given up too (reset, or its connection closed).
        helpers.wait_for(lambda: [x for x in peer.records()
                                  if x["ev"] in ("reset", "close")], 5,
                         "the h2c cluster to see the trickle stream reset or closed")


# -- HTTP/1.1 client connections ----------------------------------------------------------------

@pytest.mark.parametrize("kind", ["waiting-http1", "trickle-h2c"])
def test_h1_client_exchange_on_green_is_cut_after_drain(admin_proxy, backends, peers, kind):
    """An HTTP/1.1 exchange still on green when drain_after passes is cut: a request waiting
    for its answer (/sleep/30 on the HTTP/1.1 backend) or a response still arriving (a trickle
    from an h2c cluster, relayed chunked). The client sees the connection end then, never a
    complete 200."""
    if kind == "trickle-h2c":
        peer = peers.h2peer("green-h2")
        green = {"endpoints": [peer.addr], "protocol": "h2c"}
        path = "/trickle"
    else:
        green = {"endpoints": [backends.green.addr]}
        path = "/sleep/30"
    clusters = {"blue": {"endpoints": [backends.blue.addr]}, "green": green}
    p = admin_proxy([app("web", 0, 100)], clusters)

    sock = socket.create_connection(("127.0.0.1", p.port), timeout=10)
    try:
        sock.sendall(b"GET " + path.encode() + b" HTTP/1.1\r\nHost: app.test\r\n\r\n")
        buf = b""
        if kind == "trickle-h2c":
            end = time.monotonic() + 10
            while time.monotonic() < end and (b"\r\n\r\n" not in buf or len(buf) < 4096):
                sock.settimeout(max(0.01, end - time.monotonic()))
                d = sock.recv(65536)
                assert d, "closed before the trickle started: %r" % buf
                buf += d
            head = buf.split(b"\r\n\r\n", 1)[0].lower()
            assert head.startswith(b"http/1.1 200") and b"x-backend: green-h2" in head, head
        wait_counts(p, "web", "in_flight", {"green": 1})

        p.ctl_ok("revert", "web")
        t0 = time.monotonic()
        deadline = t0 + DRAIN + LATE + 1
        eof, during = False, 0
        while time.monotonic() < deadline:
            sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                d = sock.recv(65536)
            except (socket.timeout, TimeoutError):
                break
            except ConnectionResetError:
                eof = True
                break
            if not d:
                eof = True
                break
            buf += d
            if time.monotonic() - t0 < DRAIN - EARLY:
                during += len(d)
        closed_in = time.monotonic() - t0
    finally:
        sock.close()
    assert eof, "the connection was still open %.1f s after the revert" % (DRAIN + LATE + 1)
    measure("h1_drain_cut_after_revert_%s" % kind, round(closed_in, 3), "s",
            "drain_after %gs" % DRAIN)
    assert closed_in >= DRAIN - EARLY, "cut %.2f s after the revert, before drain_after" \
        % closed_in
    assert closed_in <= DRAIN + LATE, "cut only %.2f s after the revert" % closed_in
    if kind == "trickle-h2c":
        assert during > 0, "the trickle stopped at the revert instead of after drain_after"
        assert not buf.endswith(b"0\r\n\r\n"), "the response ended normally"
    else:
        assert not buf.lower().startswith(b"http/1.1 200"), buf[:300]
    wait_counts(p, "web", "in_flight", {"green": 0})
