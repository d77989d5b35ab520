#!/usr/bin/env python3
"""Open N idle h2c connections (prior knowledge) to HOST:PORT and hold them (--tls: HTTP/2
over TLS, ALPN h2, the certificate not checked).

Each connection sends the client preface and an empty SETTINGS frame, acknowledges the
server's SETTINGS, and then sends nothing more. Prints one line when the connections are up:
    ready opened=N settled=M failed=F seconds=S
(settled = the server's SETTINGS arrived and was acknowledged), holds them HOLD seconds while
answering PINGs, then prints
    alive=K closed_by_server=C
and exits, closing everything. Bounded in time: at most SETUP_TIMEOUT + HOLD seconds.
Used by tests/bench/run.sh to read a proxy's RSS with 10,000 idle HTTP/2 connections open.
Stdlib only (Linux epoll).
"""
import argparse
import errno
import resource
import select
import socket
import ssl
import struct
import sys
import time

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
SETTINGS = struct.pack(">I", 0)[1:] + bytes([4, 0]) + struct.pack(">I", 0)
SETTINGS_ACK = struct.pack(">I", 0)[1:] + bytes([4, 1]) + struct.pack(">I", 0)


def frame(ftype, flags, stream, payload):
    return struct.pack(">I", len(payload))[1:] + bytes([ftype, flags]) + struct.pack(">I", stream) + payload


class Conn:
    __slots__ = ("sock", "state", "buf")

    def __init__(self, sock):
        self.sock = sock
        self.state = "connecting"  # -> (handshaking ->) sent -> settled | closed
        self.buf = b""


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("host")
    ap.add_argument("port", type=int)
    ap.add_argument("-n", "--count", type=int, default=10000)
    ap.add_argument("--hold", type=float, default=5.0)
    ap.add_argument("--batch", type=int, default=256, help="connects in flight at once")
    ap.add_argument("--setup-timeout", type=float, default=60.0)
    ap.add_argument("--tls", action="store_true", help="HTTP/2 over TLS (ALPN h2)")
    a = ap.parse_args()
    tls = None
    if a.tls:
        tls = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        tls.check_hostname = False
        tls.verify_mode = ssl.CERT_NONE
        tls.set_alpn_protocols(["h2"])

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = a.count + 64
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(want, hard), hard))
        if min(want, hard) < want:
            print(f"warning: RLIMIT_NOFILE hard limit {hard} < {want}", file=sys.stderr)

    ep = select.epoll()
    conns = {}
    started = failed = settled = closed = 0
    connecting = 0

    def close(c, by_server):
        nonlocal closed
        fd = c.sock.fileno()
        try:
            ep.unregister(fd)
        except (OSError, ValueError):
            pass
        c.sock.close()
        conns.pop(fd, None)
        if by_server:
            closed += 1
        c.state = "closed"

    def on_read(c):
        nonlocal settled
        try:
            data = c.sock.recv(65536)
        except (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
            return
        except OSError:
            close(c, True)
            return
        if not data:
            close(c, True)
            return
        c.buf += data
        out = b""
        while len(c.buf) >= 9:
            ln = int.from_bytes(c.buf[0:3], "big")
            if len(c.buf) < 9 + ln:
                break
            ftype, flags = c.buf[3], c.buf[4]
            payload = c.buf[9:9 + ln]
            c.buf = c.buf[9 + ln:]
            if ftype == 4 and not flags & 1:  # SETTINGS
                out += SETTINGS_ACK
                if c.state == "sent":
                    c.state = "settled"
                    settled += 1
            elif ftype == 6 and not flags & 1:  # PING
                out += frame(6, 1, 0, payload)
            elif ftype == 7:  # GOAWAY
                close(c, True)
                return
        if out:
            try:
                c.sock.send(out)
            except OSError:
                close(c, True)

    def handshake(c):
        """Drives the TLS handshake; True once done."""
        try:
            c.sock.do_handshake()
            return True
        except ssl.SSLWantReadError:
            ep.modify(c.sock.fileno(), select.EPOLLIN)
        except ssl.SSLWantWriteError:
            ep.modify(c.sock.fileno(), select.EPOLLOUT)
        return False

    def poll(timeout):
        nonlocal connecting, failed
        for fd, ev in ep.poll(timeout):
            c = conns.get(fd)
            if c is None:
                continue
            if c.state in ("connecting", "handshaking"):
                if c.state == "connecting":
                    err = c.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                    if err:
                        connecting -= 1
                        failed += 1
                        close(c, False)
                        continue
                    if tls:
                        c.sock = tls.wrap_socket(c.sock, do_handshake_on_connect=False)
                        c.state = "handshaking"
                try:
                    if c.state == "handshaking" and not handshake(c):
                        continue
                except (ssl.SSLError, OSError):
                    connecting -= 1
                    failed += 1
                    close(c, False)
                    continue
                connecting -= 1
                try:
                    c.sock.send(PREFACE + SETTINGS)
                except OSError:
                    failed += 1
                    close(c, False)
                    continue
                c.state = "sent"
                ep.modify(fd, select.EPOLLIN)
                if not tls:
                    continue
                # TLS may hold the server's SETTINGS from the handshake's reads already
            if ev & (select.EPOLLIN | select.EPOLLHUP | select.EPOLLERR) or tls:
                on_read(c)
                # records OpenSSL read ahead make no new event
                while tls and c.state != "closed" and c.sock.pending():
                    on_read(c)
            continue

    t0 = time.monotonic()
    deadline = t0 + a.setup_timeout
    while time.monotonic() < deadline:
        while started < a.count and connecting < a.batch:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setblocking(False)
            r = s.connect_ex((a.host, a.port))
            started += 1
            if r not in (0, errno.EINPROGRESS):
                failed += 1
                s.close()
                continue
            c = Conn(s)
            conns[s.fileno()] = c
            connecting += 1
            ep.register(s.fileno(), select.EPOLLOUT)
        if started >= a.count and settled + failed + closed >= a.count:
            break
        poll(0.05)
    opened = sum(1 for c in conns.values() if c.state in ("sent", "settled"))
    print(f"ready opened={opened} settled={settled} failed={failed} "
          f"seconds={time.monotonic() - t0:.1f}", flush=True)

    end = time.monotonic() + a.hold
    while time.monotonic() < end:
        poll(max(0.0, min(0.2, end - time.monotonic())))
    # A connection the server closed shows as readable with EOF; collect those.
    poll(0)
    alive = sum(1 for c in conns.values() if c.state in ("sent", "settled"))
    print(f"alive={alive} closed_by_server={closed}", flush=True)
    for c in list(conns.values()):
        c.sock.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
