#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""backend.py over TLS (Python's ssl module, ALPN http/1.1): the same endpoints and the same
--log, plus one {"ev": "tls", sni, version, reused, alpn, client_cert} line per handshake, so a test
can see which server name the proxy sent (null: none) and which client certificate it showed.
`--client-ca PEM` requires a client certificate signed by (or equal to) PEM: mutual TLS.
(`/bytes/N?chunked=1` is not available: it writes with sendmsg, which TLS sockets lack.)
Prints `ready PORT` once listening. SIGTERM exits."""

import argparse
import os
import signal
import ssl

import backend

HANDSHAKE_TIMEOUT = 10.0


class TlsHandler(backend.Handler):
    def setup(self):
        self.tls_ok = False
        sock = self.request
        sock.settimeout(HANDSHAKE_TIMEOUT)
        try:
            sock.do_handshake()
        except (OSError, ValueError) as e:
            self.server.log.write(ev="tls-fail", why=str(e))
            return
        sock.settimeout(None)
        cert = sock.getpeercert()
        subject = None
        if cert:
            subject = ",".join("%s=%s" % kv for rdn in cert.get("subject", ()) for kv in rdn)
        self.server.log.write(ev="tls", sni=getattr(sock, "sy_sni", None),
                              version=sock.version(), reused=sock.session_reused,
                              alpn=sock.selected_alpn_protocol(), client_cert=subject)
        self.tls_ok = True
        super().setup()

    def handle(self):
        if self.tls_ok:
            super().handle()


class TlsServer(backend.Server):
    def get_request(self):
        sock, addr = self.socket.accept()
        return self.ctx.wrap_socket(sock, server_side=True,
                                    do_handshake_on_connect=False), addr


def main():
    ap = argparse.ArgumentParser(description="switchyard e2e TLS backend")
    ap.add_argument("--name", required=True)
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--log")
    ap.add_argument("--cert", required=True)
    ap.add_argument("--key", required=True)
    ap.add_argument("--client-ca")
    a = ap.parse_args()

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(a.cert, a.key)
    ctx.set_alpn_protocols(["http/1.1"])
    if a.client_ca:
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.load_verify_locations(a.client_ca)

    def on_sni(sslsock, name, _ctx):
        sslsock.sy_sni = name

    ctx.sni_callback = on_sni

    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    signal.signal(signal.SIGINT, lambda *_: os._exit(0))
    srv = TlsServer(("127.0.0.1", a.port), TlsHandler)
    srv.ctx = ctx
    srv.name = a.name
    srv.log = backend.Log(a.log)
    print("ready %d" % srv.server_address[1], flush=True)
    srv.serve_forever(poll_interval=3600)


if __name__ == "__main__":
    main()
