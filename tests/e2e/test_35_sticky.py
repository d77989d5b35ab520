# SPDX-License-Identifier: MIT
"""Sticky, forced and deterministic cluster choice (issue 4, docs/routing.md), through the real
proxy with curl and http.client. The sticky bucket is recomputed here by an independent Python
SipHash-2-4, so every key is checked against the documented hash, not only for consistency."""

import hashlib
import hmac
import http.client
import re
import shutil
import socket
import subprocess
import time
from collections import Counter

import pytest

import helpers
from helpers import curl, curl1

FORCE_HEADER = "x-switchyard-cluster"
SECRET = "e2e-force-secret-0123456789"  # 27 bytes; force.secret needs at least 16
SET_COOKIE_RE = re.compile(r"^sy_web=([0-9a-f]{16}); Path=/; Max-Age=3600; HttpOnly; "
                           r"SameSite=Lax$")


# -- the documented hash, written again from the SipHash paper -------------------------------

_MASK = (1 << 64) - 1


def _rotl(x, b):
    return ((x << b) | (x >> (64 - b))) & _MASK


def siphash24(key, data):
    k0 = int.from_bytes(key[:8], "little")
    k1 = int.from_bytes(key[8:16], "little")
    v = [k0 ^ 0x736F6D6570736575, k1 ^ 0x646F72616E646F6D,
         k0 ^ 0x6C7967656E657261, k1 ^ 0x7465646279746573]

    def rounds(n):
        v0, v1, v2, v3 = v
        for _ in range(n):
            v0 = (v0 + v1) & _MASK
            v1 = _rotl(v1, 13) ^ v0
            v0 = _rotl(v0, 32)
            v2 = (v2 + v3) & _MASK
            v3 = _rotl(v3, 16) ^ v2
            v0 = (v0 + v3) & _MASK
            v3 = _rotl(v3, 21) ^ v0
            v2 = (v2 + v1) & _MASK
            v1 = _rotl(v1, 17) ^ v2
            v2 = _rotl(v2, 32)
        v[:] = [v0, v1, v2, v3]

    full = len(data) - len(data) % 8
    words = [int.from_bytes(data[i:i + 8], "little") for i in range(0, full, 8)]
    words.append(int.from_bytes(data[full:], "little") | ((len(data) & 0xFF) << 56))
    for m in words:
        v[3] ^= m
        rounds(2)
        v[0] ^= m
    v[2] ^= 0xFF
    rounds(4)
    return v[0] ^ v[1] ^ v[2] ^ v[3]


def bucket(app, key):
    """docs/routing.md: SipHash-2-4 under "switchyard.stick" of app, 0x00, key; mod 10000."""
    if isinstance(key, str):
        key = key.encode()
    return siphash24(b"switchyard.stick", app.encode() + b"\0" + key) % 10000


def expected(app, key, blue, green):
    """The cluster's backend tag for `key` with blue listed before green in `clusters:`."""
    return "blue-1" if bucket(app, key) < 10000 * blue // (blue + green) else "green-1"


def test_python_siphash_matches_the_reference_and_regression_vectors():
    k = bytes(range(16))
    assert siphash24(k, b"") == 0x726FDB47DD0E0E31
    assert siphash24(k, bytes(range(15))) == 0xA129CA6149BE45E5
    assert bucket("chat", "user-42") == 8806
    assert bucket("chat", bytes([192, 0, 2, 1])) == 600


# -- clients ----------------------------------------------------------------------------------

def web(blue, green, **extra):
    a = {"name": "web", "hosts": ["*"], "weights": {"blue": blue, "green": green}}
    a.update(extra)
    return [a]


def get_many(port, header_sets, path="/", per_conn=200):
    """One GET per dict of extra headers, on keep-alive connections; returns the responses as
    (x-backend, [(name, value)]) pairs."""
    out = []
    i = 0
    while i < len(header_sets):
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        try:
            for hs in header_sets[i:i + per_conn]:
                h = {"Host": "app.test"}
                h.update(hs)
                c.request("GET", path, headers=h)
                r = c.getresponse()
                r.read()
                assert r.status == 200, (r.status, r.getheaders())
                out.append((r.getheader("x-backend"), r.getheaders()))
                i += 1
        finally:
            c.close()
    return out


def tags_for_keys(port, keys, header="x-user"):
    return [tag for tag, _ in get_many(port, [{header: k} for k in keys])]


def mint(cluster, expiry, secret=SECRET):
    msg = "%s.%d" % (cluster, expiry)
    return msg + "." + hmac.new(secret.encode(), msg.encode(), hashlib.sha256).hexdigest()


# -- sticky cookie ----------------------------------------------------------------------------

def test_cookieless_client_gets_set_cookie_then_keeps_its_cluster(proxy, tmp_path):
    # 50/50: without stickiness consecutive requests would alternate between the clusters.
    p = proxy(apps=web(50, 50, sticky={"cookie": "sy_web", "max_age": "1h"}))
    jar = str(tmp_path / "cookies.txt")
    url = p.url + "/echo-headers"
    first = curl(url, "--http1.1", "-c", jar, "-b", jar)[0]
    assert first.status == 200, first
    sc = first.header_all("set-cookie")
    assert len(sc) == 1, first.headers
    m = SET_COOKIE_RE.match(sc[0])
    assert m, "Set-Cookie %r" % sc[0]  # no Secure on a cleartext listener
    key = m.group(1)
    cluster = first.backend
    assert cluster == expected("web", key, 50, 50)
    assert not any(n.lower() == "cookie" for n, _ in first.json()["headers"])

    # 100 more, over two curl runs (two connections), sending the cookie from the jar.
    rest = curl([url] * 50, "--http1.1", "-c", jar, "-b", jar)
    rest += curl([url] * 50, "--http1.1", "-c", jar, "-b", jar)
    assert len(rest) == 100
    for r in rest:
        assert r.status == 200, r
        assert r.backend == cluster, "moved from %s to %s" % (cluster, r.backend)
        assert r.header("set-cookie") is None, r.headers
        sent = [v for n, v in r.json()["headers"] if n.lower() == "cookie"]
        assert sent == ["sy_web=" + key], sent


def test_new_clients_get_distinct_keys_spread_by_their_buckets(proxy):
    p = proxy(apps=web(50, 50, sticky={"cookie": "sy_web", "max_age": "1h"}))
    res = get_many(p.port, [{}] * 200)
    keys = []
    for tag, headers in res:
        sc = [v for n, v in headers if n.lower() == "set-cookie"]
        assert len(sc) == 1, headers
        m = SET_COOKIE_RE.match(sc[0])
        assert m, sc[0]
        keys.append(m.group(1))
        assert tag == expected("web", m.group(1), 50, 50)
    assert len(set(keys)) == 200
    counts = Counter(tag for tag, _ in res)
    # Random keys: P(fewer than 60 of 200 on one side at 50/50) is below 1e-8.
    assert counts["blue-1"] >= 60 and counts["green-1"] >= 60, counts


# -- sticky header and source address ---------------------------------------------------------

def test_1000_header_keys_split_within_3_points_of_80_20(proxy):
    p = proxy(apps=web(80, 20, sticky={"header": "x-user"}))
    keys = ["user-%d" % i for i in range(1000)]
    tags = tags_for_keys(p.port, keys)
    green = tags.count("green-1") / 10.0
    helpers.measure("sticky_80_20_green_share", green, "%", "1000 keys user-0..999")
    assert abs(green - 20) <= 3, "green share %.1f%%" % green
    wrong = [(k, t) for k, t in zip(keys, tags) if t != expected("web", k, 80, 20)]
    assert not wrong, "keys not on their documented bucket's cluster: %r" % wrong[:5]
    # And again: every key stays where it was.
    assert tags_for_keys(p.port, keys) == tags


def test_two_processes_agree_for_each_of_1000_keys(proxy, backends):
    doc = {"listen": [{"address": "127.0.0.1:@PORT@"}], "workers": 2,
           "timeouts": {"drain": "5s"}, "shutdown": {"delay": "0s"},
           "clusters": {"blue": {"endpoints": [backends.blue.addr]},
                        "green": {"endpoints": [backends.green.addr]}},
           "apps": web(50, 50, sticky={"header": "x-user"})}
    text = helpers.to_yaml(doc)
    a = proxy(config_text=text)
    b = proxy(config_text=text)
    assert a.port != b.port
    keys = ["k%04d-%s" % (i, hashlib.sha256(b"%d" % i).hexdigest()[:8]) for i in range(1000)]
    ta = tags_for_keys(a.port, keys)
    tb = tags_for_keys(b.port, keys)
    diff = [(k, x, y) for k, x, y in zip(keys, ta, tb) if x != y]
    assert not diff, "%d keys disagree, e.g. %r" % (len(diff), diff[:5])
    assert set(ta) == {"blue-1", "green-1"}
    assert ta == [expected("web", k, 50, 50) for k in keys]


def test_source_ip_sticky_keeps_one_client_on_one_cluster(proxy):
    p = proxy(apps=web(50, 50, sticky={"source_ip": True}))
    tags = [tag for tag, _ in get_many(p.port, [{}] * 50, per_conn=10)]
    want = expected("web", socket.inet_aton("127.0.0.1"), 50, 50)
    assert tags == [want] * 50, Counter(tags)


# -- force ------------------------------------------------------------------------------------

def test_forced_header_and_cookie_reach_a_weight_0_cluster(proxy):
    p = proxy(apps=web(100, 0, force={"header": FORCE_HEADER, "cookie": "sy_force"}))
    r = curl1(p.url + "/", "--http1.1", "-H", FORCE_HEADER + ": green")
    assert r.status == 200 and r.backend == "green-1", r
    r = curl1(p.url + "/", "--http1.1", "-b", "a=1; sy_force=green")
    assert r.status == 200 and r.backend == "green-1", r
    res = get_many(p.port, [{FORCE_HEADER: "green"}] * 20 + [{}] * 20 +
                   [{FORCE_HEADER: "purple"}] * 5 + [{FORCE_HEADER: "Green"}] * 5)
    tags = [t for t, _ in res]
    assert tags[:20] == ["green-1"] * 20
    assert tags[20:] == ["blue-1"] * 30  # no value, or one naming no cluster of the app


def test_with_force_secret_only_signed_unexpired_values_force(proxy):
    p = proxy(apps=web(100, 0, force={"header": FORCE_HEADER, "secret": SECRET}))
    now = int(time.time())
    good = mint("green", now + 3600)
    tampered = good[:-1] + ("0" if good[-1] != "0" else "1")
    ignored = {
        "unsigned": "green",
        "expired": mint("green", now - 60),
        "tampered": tampered,
        "other secret": mint("green", now + 3600, secret="not-the-secret-0123456789"),
        "upper-case mac": good.upper().replace("GREEN", "green"),
        "expiry changed": "green.%d.%s" % (now + 7200, good.rsplit(".", 1)[1]),
    }
    for why, value in ignored.items():
        r = curl1(p.url + "/", "--http1.1", "-H", "%s: %s" % (FORCE_HEADER, value))
        assert r.status == 200, r
        assert r.backend == "blue-1", "%s value %r was accepted" % (why, value)
    r = curl1(p.url + "/", "--http1.1", "-H", "%s: %s" % (FORCE_HEADER, good))
    assert r.status == 200 and r.backend == "green-1", r


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")
def test_token_minted_with_the_documented_openssl_command_forces(proxy):
    """The one-liner of docs/routing.md, run by a shell exactly as an operator would."""
    p = proxy(apps=web(100, 0, force={"header": FORCE_HEADER, "secret": SECRET}))
    cmd = ("SECRET='%s' C=green E=$(( $(date +%%s) + 86400 )); echo \"$C.$E.$(printf '%%s.%%s' "
           "\"$C\" \"$E\" | openssl dgst -sha256 -hmac \"$SECRET\" -r | cut -d' ' -f1)\"" % SECRET)
    out = subprocess.run(["sh", "-c", cmd], stdout=subprocess.PIPE, check=True, timeout=10,
                         text=True).stdout.strip()
    assert re.fullmatch(r"green\.\d+\.[0-9a-f]{64}", out), out
    r = curl1(p.url + "/", "--http1.1", "-H", "%s: %s" % (FORCE_HEADER, out))
    assert r.status == 200 and r.backend == "green-1", (out, r)
