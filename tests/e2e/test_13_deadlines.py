# SPDX-License-Identifier: MIT
"""Deadlines are deadlines: a total time from the start of a state, not an idle timer that a
client can re-arm by sending one byte now and then.

- the TLS handshake must end within timeouts.client_header of the accept, however slowly the
  ClientHello trickles in;
- the lingering close after an error answer (400, 413) ends at timeouts.linger, however long
  the client goes on trickling body bytes;
- a second SIGTERM while a drain waits for a long request stops the daemon at once;
- a private key readable by group or others is reported at load."""

import os
import shutil
import signal
import socket
import ssl
import subprocess
import time

import pytest

import helpers

APPS = [{"name": "app", "hosts": ["*"], "weights": {"blue": 1}}]

GAP = 0.4  # seconds between two trickled bytes: far below every deadline under test


def _client_hello():
    """The bytes of a real TLS ClientHello, made with Python's ssl module in memory."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(inc, out, server_hostname="localhost")
    with pytest.raises(ssl.SSLWantReadError):
        obj.do_handshake()
    hello = out.read()
    assert len(hello) > 100 and hello[0] == 0x16, hello[:16]
    return hello


def _trickle_until_closed(sock, data, limit_s, eof_is_close=True):
    """Sends `data` one byte every GAP seconds until the peer closes the connection or
    `limit_s` seconds pass. Returns the seconds from the first byte to the close (None if the
    connection was still open at the limit) and the bytes sent. With eof_is_close=False only
    a reset counts (a lingering close shuts down its writing side first and reads on)."""
    start = time.monotonic()
    sent = 0
    eof = False
    sock.settimeout(GAP)
    while time.monotonic() - start < limit_s:
        try:
            if sent < len(data):
                sock.sendall(data[sent:sent + 1])
                sent += 1
            if eof:
                time.sleep(GAP)
                continue
            chunk = sock.recv(65536)  # waits at most GAP for the peer's answer or close
            if not chunk:
                if eof_is_close:
                    return time.monotonic() - start, sent
                eof = True
        except socket.timeout:
            continue
        except (ConnectionResetError, BrokenPipeError):
            return time.monotonic() - start, sent
    return None, sent


def test_tls_handshake_trickled_a_byte_at_a_time_is_cut_at_client_header(backends, proxy,
                                                                          tls_cert):
    p = proxy(APPS, timeouts={"client_header": "2s"}, tls=tls_cert)
    hello = _client_hello()
    with socket.create_connection(("127.0.0.1", p.tls_port), timeout=10) as s:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        took, sent = _trickle_until_closed(s, hello, 10.0)
    # Every byte came GAP after the one before, so an idle timer of 2 s never fired.
    assert took is not None, ("the TLS handshake was still open after 10 s of a ClientHello "
                              "trickled a byte every %.1f s (%d bytes sent)" % (GAP, sent))
    assert 1.5 <= took <= 6.0, took


def test_tls_handshake_that_completes_in_time_still_serves(backends, proxy, tls_cert):
    p = proxy(APPS, timeouts={"client_header": "2s"}, tls=tls_cert)
    r = helpers.curl1(p.tls_url + "/anything", "-k", timeout=20)
    assert r.status == 200 and b"blue-1" in r.body, r


@pytest.mark.parametrize("kind", ["400", "413"])
def test_lingering_close_after_an_error_ends_at_the_linger_deadline(backends, proxy, kind):
    p = proxy(APPS, limits={"max_body_bytes": 1000})
    if kind == "413":
        head = b"POST /big HTTP/1.1\r\nHost: app.test\r\nContent-Length: 1000000\r\n\r\n"
    else:
        head = (b"POST /bad HTTP/1.1\r\nHost: app.test\r\nContent-Length: 1000000\r\n"
                b"Content-Length: 7\r\n\r\n")
    with helpers.Raw(p.port, timeout=10) as c:
        c.send(head)
        r = c.read_response()
        assert r.status == int(kind), r
        took, sent = _trickle_until_closed(c.sock, b"x" * 1000, 12.0, eof_is_close=False)
    # The default timeouts.linger is 2 s from the answer; each byte came GAP after the last.
    assert took is not None, ("the connection still lingered after 12 s of body bytes "
                              "trickled every %.1f s (%d sent)" % (GAP, sent))
    assert took <= 6.0, took


def test_linger_deadline_follows_its_config_key(backends, proxy):
    p = proxy(APPS, limits={"max_body_bytes": 1000}, timeouts={"linger": "5s"})
    with helpers.Raw(p.port, timeout=10) as c:
        c.send(b"POST /big HTTP/1.1\r\nHost: app.test\r\nContent-Length: 1000000\r\n\r\n")
        assert c.read_response().status == 413
        took, _ = _trickle_until_closed(c.sock, b"x" * 1000, 15.0, eof_is_close=False)
    assert took is not None and 4.0 <= took <= 10.0, took


def test_second_sigterm_during_a_drain_stops_at_once(backends, proxy):
    p = proxy(APPS, timeouts={"drain": "60s"})
    with helpers.Raw(p.port, timeout=30) as c:
        c.send(helpers.get_request("/sleep/40"))
        # The request is at the backend: the drain would wait for it.
        helpers.wait_for(lambda: backends.blue.saw("/sleep/40"), 5, "the request at the backend")
        p.proc.send_signal(signal.SIGTERM)
        helpers.wait_for(lambda: "draining" in p.log_text(), 5, "the drain to start")
        assert p.wait_exit(0.5) is None, "the first SIGTERM did not wait for the request"
        p.proc.send_signal(signal.SIGTERM)
        t0 = time.monotonic()
        rc = p.wait_exit(5)
        took = time.monotonic() - t0
    assert rc is not None, "still running 5 s after a second SIGTERM; log:\n" + p.log_text()[-2000:]
    assert took < 3.0, took
    assert rc != 0  # a cut drain is not a clean stop


def _key_copy(tls_cert, tmp_path, mode):
    key = str(tmp_path / ("key-%o.pem" % mode))
    shutil.copyfile(tls_cert[1], key)
    os.chmod(key, mode)
    return (tls_cert[0], key)


def test_private_key_readable_by_others_is_warned_about(backends, proxy, tls_cert, tmp_path):
    cert = _key_copy(tls_cert, tmp_path, 0o644)
    p = proxy(APPS, tls=cert)
    helpers.wait_for(lambda: "key-644.pem" in p.log_text(), 5, "a warning about the key")
    line = [ln for ln in p.log_text().splitlines() if "key-644.pem" in ln][0]
    assert " warn " in line and "readable" in line, line


def test_private_key_readable_by_owner_only_is_not_warned_about(backends, proxy, tls_cert,
                                                                 tmp_path):
    cert = _key_copy(tls_cert, tmp_path, 0o600)
    p = proxy(APPS, tls=cert)
    helpers.sync_backends(p)
    assert "key-600.pem" not in p.log_text(), p.log_text()


def test_check_mode_warns_about_a_readable_client_key(backends, tls_cert, tmp_path):
    """Cluster client keys (mutual TLS) are checked the same way, here by `switchyard -t`."""
    cert, key = _key_copy(tls_cert, tmp_path, 0o640)
    cfg = tmp_path / "c.yaml"
    cfg.write_text(helpers.to_yaml({
        "listen": [{"address": "127.0.0.1:%d" % helpers.free_port()}],
        "clusters": {"blue": {"endpoints": [backends.blue.addr],
                              "tls": {"cert": cert, "key": key, "verify": False}}},
        "apps": APPS}))
    out = subprocess.run([os.environ["SWITCHYARD"], "-t", "-c", str(cfg)], capture_output=True,
                         stdin=subprocess.DEVNULL, timeout=30)
    assert out.returncode == 0, out
    err = out.stderr.decode(errors="replace")
    assert "key-640.pem" in err and "readable" in err, err
