# SPDX-License-Identifier: MIT
"""WebSocket through the proxy: the HTTP/1.1 Upgrade is routed once, the 101 is relayed, and
from then on bytes flow raw both ways (real python3-websockets server and client). The
tunnel keeps its cluster across a weight change, and an idle tunnel is closed after
timeouts.tunnel_idle."""

import asyncio
import os
import selectors
import signal
import subprocess
import sys
import time

import pytest

import helpers
from conftest import make_config

websockets = pytest.importorskip("websockets")

HERE = os.path.dirname(os.path.abspath(__file__))


class WsServer:
    def __init__(self, name):
        self.proc = subprocess.Popen([sys.executable, os.path.join(HERE, "ws_echo.py"),
                                      "--name", name], stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
        sel = selectors.DefaultSelector()
        sel.register(self.proc.stdout, selectors.EVENT_READ)
        assert sel.select(timeout=10), "ws server %s did not start" % name
        line = self.proc.stdout.readline().decode()
        assert line.startswith("ready "), line
        self.port = int(line.split()[1])

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def ws_clusters():
    blue, green = WsServer("blue-ws"), WsServer("green-ws")
    yield {"blue": {"endpoints": ["127.0.0.1:%d" % blue.port]},
           "green": {"endpoints": ["127.0.0.1:%d" % green.port]}}
    blue.stop()
    green.stop()


def _rewrite(p, clusters, apps, generation):
    """Replaces the proxy's file (atomic rename) and waits until it publishes `generation`."""
    tmp = p.config + ".tmp"
    with open(tmp, "w") as f:
        f.write(make_config(p.port, clusters, apps))
    os.rename(tmp, p.config)
    want = "generation %d published" % generation
    for _ in range(500):  # bounded: 5 s
        if want in p.log_text():
            return
        time.sleep(0.01)
    raise AssertionError("no %r in the log:\n%s" % (want, p.log_text()))


def _apps(blue, green):
    return [{"name": "ws", "hosts": ["*"], "weights": {"blue": blue, "green": green}}]


async def _talk(port, messages, hold=None):
    async with websockets.connect("ws://127.0.0.1:%d/socket" % port, open_timeout=5) as ws:
        out = []
        for i, m in enumerate(messages):
            if hold and i == 1:
                await hold()
            await ws.send(m)
            out.append(await asyncio.wait_for(ws.recv(), 5))
        return out


def test_websocket_echo_through_the_proxy(ws_clusters, proxy):
    p = proxy(_apps(100, 0), clusters=ws_clusters)
    got = asyncio.run(_talk(p.port, ["hello", "x" * 100000, "bye"]))
    assert got == ["blue-ws: hello", "blue-ws: " + "x" * 100000, "blue-ws: bye"]


def test_tunnel_keeps_its_cluster_across_a_weight_change(ws_clusters, proxy):
    p = proxy(_apps(100, 0), clusters=ws_clusters)

    async def flip():
        _rewrite(p, ws_clusters, _apps(0, 100), 2)
        # A new connection proves the new weights are in force...
        got = await _talk(p.port, ["new"])
        assert got == ["green-ws: new"]

    # ...while the tunnel opened before the change stays on blue.
    got = asyncio.run(_talk(p.port, ["one", "two", "three"], hold=flip))
    assert got == ["blue-ws: one", "blue-ws: two", "blue-ws: three"]


def test_idle_tunnel_is_closed_after_tunnel_idle(ws_clusters, proxy):
    p = proxy(_apps(100, 0), clusters=ws_clusters, timeouts={"tunnel_idle": "1s"})

    async def idle():
        async with websockets.connect("ws://127.0.0.1:%d/" % p.port, open_timeout=5,
                                      ping_interval=None) as ws:
            await ws.send("hi")
            assert await asyncio.wait_for(ws.recv(), 5) == "blue-ws: hi"
            with pytest.raises(websockets.ConnectionClosed):
                await asyncio.wait_for(ws.recv(), 5)

    asyncio.run(idle())
