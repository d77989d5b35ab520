# SPDX-License-Identifier: MIT
"""A real WebSocket echo server (Debian's python3-websockets) for the tunnelling tests: every
message comes back prefixed with the server's name. Prints `ready PORT` once listening."""

import argparse
import asyncio

import websockets


async def main(name, port):
    async def echo(ws, path=None):
        async for msg in ws:
            await ws.send("%s: %s" % (name, msg))

    async with websockets.serve(echo, "127.0.0.1", port) as server:
        port = server.sockets[0].getsockname()[1]
        print("ready %d" % port, flush=True)
        await asyncio.Future()


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--name", required=True)
    ap.add_argument("--port", type=int, default=0)
    a = ap.parse_args()
    asyncio.run(main(a.name, a.port))
