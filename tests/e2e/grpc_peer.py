#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""A real gRPC server and client (Debian's python3-grpcio, no protoc: generic handlers and
raw bytes messages) for the gRPC-through-switchyard tests. Each runs in its own process, so
that gRPC's threads never live inside pytest.

  grpc_peer.py serve [--port 0] [--cert PEM --key PEM]
        prints `ready PORT`, serves service test.Echo (cleartext h2c, or TLS with ALPN h2)
  grpc_peer.py call --target H:P [--ca PEM] [--count N] [--size B] [--timeout S] SCENARIO
        runs one scenario (unary fail meta bidi pingpong big), prints one line of JSON

Service test.Echo (messages are bytes; what each returns):
  Unary(b)          b
  Fail(b)           aborts NOT_FOUND with details `no such thing: B`, trailing metadata
                    x-why: missing
  Meta(b)           b, initial metadata x-initial: i-<b>, trailing x-trailer: t-<b> and
                    x-bin-bin: bytes 0..255
  Bidi(stream)      each message, as soon as it arrives, in order
  PingPong(stream)  like Bidi; the client waits for reply k before it sends message k+1,
                    so a proxy that holds either stream until its end deadlocks it
  Digest(stream)    for each message its length and sha256 as `LEN HEX` (big messages)

Scenarios print {"ok": true, ...} or {"ok": false, "code": NAME, "details": ...}.
"""

import argparse
import hashlib
import json
import os
import queue
import signal
import sys
import threading
import time
from concurrent import futures

import grpc

MAX_MESSAGE = 64 * 1024 * 1024
OPTIONS = [("grpc.max_receive_message_length", MAX_MESSAGE),
           ("grpc.max_send_message_length", MAX_MESSAGE),
           ("grpc.enable_http_proxy", 0),
           ("grpc.enable_retries", 0)]
SERVICE = "test.Echo"


# -- server ---------------------------------------------------------------------------------------

def unary(request, context):
    return request


def fail(request, context):
    context.set_trailing_metadata((("x-why", "missing"),))
    context.abort(grpc.StatusCode.NOT_FOUND, "no such thing: %s" % request.decode(errors="replace"))


def meta(request, context):
    text = request.decode(errors="replace")
    context.send_initial_metadata((("x-initial", "i-" + text),))
    context.set_trailing_metadata((("x-trailer", "t-" + text), ("x-bin-bin", bytes(range(256)))))
    return request


def bidi(request_iterator, context):
    for msg in request_iterator:
        yield msg


def digest(request_iterator, context):
    for msg in request_iterator:
        yield b"%d %s" % (len(msg), hashlib.sha256(msg).hexdigest().encode())


def serve(port, cert=None, key=None):
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=16), options=OPTIONS)
    handlers = {
        "Unary": grpc.unary_unary_rpc_method_handler(unary),
        "Fail": grpc.unary_unary_rpc_method_handler(fail),
        "Meta": grpc.unary_unary_rpc_method_handler(meta),
        "Bidi": grpc.stream_stream_rpc_method_handler(bidi),
        "PingPong": grpc.stream_stream_rpc_method_handler(bidi),
        "Digest": grpc.stream_stream_rpc_method_handler(digest),
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
    if cert:
        with open(cert, "rb") as f:
            chain = f.read()
        with open(key, "rb") as f:
            pkey = f.read()
        creds = grpc.ssl_server_credentials([(pkey, chain)])
        port = server.add_secure_port("127.0.0.1:%d" % port, creds)
    else:
        port = server.add_insecure_port("127.0.0.1:%d" % port)
    if not port:
        print("error: cannot bind", flush=True)
        sys.exit(1)
    server.start()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    print("ready %d" % port, flush=True)
    while not stop.wait(3600):
        pass
    server.stop(grace=1).wait(5)


# -- client ---------------------------------------------------------------------------------------

def error_doc(e, **extra):
    doc = {"ok": False, "code": e.code().name if e.code() else None, "details": e.details()}
    try:
        doc["trailing"] = [[k, v if isinstance(v, str) else v.hex()]
                           for k, v in (e.trailing_metadata() or ())]
    except Exception:  # an error raised before any metadata has none
        pass
    doc.update(extra)
    return doc


def md(pairs):
    return [[k, v if isinstance(v, str) else v.hex()] for k, v in (pairs or ())]


def pattern(n, seed):
    """n deterministic pseudo-random bytes (sha256 in counter mode)."""
    out = bytearray()
    i = 0
    while len(out) < n:
        out += hashlib.sha256(b"%d-%d" % (seed, i)).digest() * 64  # 2 KiB per step
        i += 1
    return bytes(out[:n])


def call(target, scenario, count, size, timeout, ca=None):
    if ca:
        with open(ca, "rb") as f:
            creds = grpc.ssl_channel_credentials(root_certificates=f.read())
        ch = grpc.secure_channel(target, creds, options=OPTIONS)
    else:
        ch = grpc.insecure_channel(target, options=OPTIONS)
    try:
        grpc.channel_ready_future(ch).result(timeout=timeout)
    except grpc.FutureTimeoutError:
        return {"ok": False, "code": "CHANNEL_NOT_READY", "details": "no connection to %s within "
                "%.0f s" % (target, timeout)}
    path = "/%s/" % SERVICE
    t0 = time.monotonic()
    try:
        if scenario == "unary":
            payload = b"hello through switchyard"
            reply = ch.unary_unary(path + "Unary")(payload, timeout=timeout)
            return {"ok": reply == payload, "reply": reply.decode(errors="replace")}

        if scenario == "fail":
            try:
                ch.unary_unary(path + "Fail")(b"order-42", timeout=timeout)
            except grpc.RpcError as e:
                return error_doc(e, failed_as_expected=True)
            return {"ok": False, "details": "Fail returned a message"}

        if scenario == "meta":
            reply, c = ch.unary_unary(path + "Meta").with_call(b"abc", timeout=timeout)
            return {"ok": True, "reply": reply.decode(errors="replace"),
                    "code": c.code().name, "initial": md(c.initial_metadata()),
                    "trailing": md(c.trailing_metadata())}

        if scenario == "bidi":
            msgs = [b"msg-%05d" % i for i in range(count)]
            replies = list(ch.stream_stream(path + "Bidi")(iter(msgs), timeout=timeout))
            return {"ok": replies == msgs, "sent": len(msgs), "received": len(replies),
                    "in_order": replies == msgs, "seconds": round(time.monotonic() - t0, 3)}

        if scenario == "pingpong":
            q = queue.Queue()
            done = object()

            def requests():
                while True:
                    m = q.get()
                    if m is done:
                        return
                    yield m

            it = ch.stream_stream(path + "PingPong")(requests(), timeout=timeout)
            got = []
            rtts = []
            try:
                for i in range(count):
                    m = b"ping-%05d" % i
                    s = time.monotonic()
                    q.put(m)
                    r = next(it)  # bounded by the call's deadline
                    rtts.append(time.monotonic() - s)
                    got.append(r)
                    if r != m:
                        break
            finally:
                q.put(done)
            rest = list(it)
            ok = got == [b"ping-%05d" % i for i in range(count)] and not rest
            rtts.sort()
            return {"ok": ok, "exchanged": len(got), "extra": len(rest),
                    "rtt_median_ms": round(1000 * rtts[len(rtts) // 2], 3) if rtts else None,
                    "rtt_max_ms": round(1000 * rtts[-1], 3) if rtts else None,
                    "seconds": round(time.monotonic() - t0, 3)}

        if scenario == "big":
            big = pattern(size, 7)
            small = b"after the big one"
            want_big = b"%d %s" % (len(big), hashlib.sha256(big).hexdigest().encode())
            want_small = b"%d %s" % (len(small), hashlib.sha256(small).hexdigest().encode())
            # Digest proves the server got it whole; Bidi brings it back whole.
            digests = list(ch.stream_stream(path + "Digest")(iter([big, small]),
                                                             timeout=timeout))
            echoed = list(ch.stream_stream(path + "Bidi")(iter([big, small]), timeout=timeout))
            ok = digests == [want_big, want_small] and echoed == [big, small]
            return {"ok": ok, "size": size,
                    "server_digests": [d.decode() for d in digests],
                    "echoed_sizes": [len(e) for e in echoed],
                    "echo_intact": echoed == [big, small],
                    "seconds": round(time.monotonic() - t0, 3)}

        return {"ok": False, "details": "unknown scenario %s" % scenario}
    except grpc.RpcError as e:
        return error_doc(e, seconds=round(time.monotonic() - t0, 3))
    finally:
        ch.close()


def main():
    ap = argparse.ArgumentParser(description="gRPC peer for the switchyard e2e tests")
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("serve")
    s.add_argument("--port", type=int, default=0)
    s.add_argument("--cert", help="serve over TLS (ALPN h2) with this certificate...")
    s.add_argument("--key", help="...and this key")
    c = sub.add_parser("call")
    c.add_argument("--target", required=True)
    c.add_argument("--count", type=int, default=200)
    c.add_argument("--size", type=int, default=8 * 1024 * 1024)
    c.add_argument("--timeout", type=float, default=30.0)
    c.add_argument("--ca", help="connect over TLS, trusting this CA bundle")
    c.add_argument("scenario")
    a = ap.parse_args()
    if a.cmd == "serve":
        serve(a.port, a.cert, a.key)
        return
    print(json.dumps(call(a.target, a.scenario, a.count, a.size, a.timeout, a.ca)), flush=True)
    os._exit(0)  # do not wait for gRPC's threads


if __name__ == "__main__":
    main()
