# SPDX-License-Identifier: MIT
"""Big bodies stream through in bounded memory: 1 GiB up and down (Content-Length and chunked),
and a slow reader on either side does not make the proxy buffer the body. The proxy's peak RSS
(VmHWM) is measured and bounded: 64 MiB, or 768 MiB for an ASan build; SY_MAX_RSS_MIB overrides."""

import hashlib
import json
import os
import subprocess
import threading
import time

import pytest

from conftest import SWITCHYARD
from helpers import CURL, measure

GIB = 1 << 30
MIB = 1 << 20


def _asan(path):
    """True when the binary is built with AddressSanitizer (its quarantine and shadow memory
    make RSS an order of magnitude larger)."""
    try:
        with open(path, "rb") as f:
            return b"__asan_init" in f.read()
    except OSError:
        return False


ASAN = _asan(SWITCHYARD)
MAX_RSS_KIB = int(os.environ.get("SY_MAX_RSS_MIB", "768" if ASAN else "64")) * 1024
MAX_GROWTH_KIB = (256 if ASAN else 16) * 1024  # RSS growth allowed while a peer reads slowly
TRANSFER_LIMIT_S = 60
PATTERN = bytes(range(256)) * 256  # backend.py's /bytes pattern (64 KiB)


@pytest.fixture(scope="module")
def gib_file(tmp_path_factory):
    """1 GiB: 1 MiB blocks of a seeded pattern, each prefixed with its index (so a lost,
    repeated or reordered block changes the hash). Returns (path, sha256)."""
    path = tmp_path_factory.mktemp("big") / "gib.bin"
    base = hashlib.sha256(b"switchyard").digest() * (MIB // 32)
    h = hashlib.sha256()
    with open(path, "wb") as f:
        for i in range(GIB // MIB):
            block = i.to_bytes(8, "big") + base[8:]
            h.update(block)
            f.write(block)
    yield str(path), h.hexdigest()
    os.unlink(path)


def pattern_sha(n):
    h = hashlib.sha256()
    full, rest = divmod(n, len(PATTERN))
    for _ in range(full):
        h.update(PATTERN)
    h.update(PATTERN[:rest])
    return h.hexdigest()


def run_curl(args, timeout=120):
    t0 = time.monotonic()
    p = subprocess.run([CURL, "-sS", "--max-time", str(timeout)] + args, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=timeout + 10)
    took = time.monotonic() - t0
    assert p.returncode == 0, "curl rc %d: %s" % (p.returncode, p.stderr.decode(errors="replace"))
    return p.stdout.decode(), took


def check_rss(p, what):
    st = p.status()
    measure("%s_proxy_vmhwm_kib" % what, st["VmHWM"], "KiB", "peak RSS of switchyard")
    measure("%s_proxy_vmrss_kib" % what, st["VmRSS"], "KiB")
    assert st["VmHWM"] < MAX_RSS_KIB, "peak RSS %d KiB >= %d KiB after %s" % (
        st["VmHWM"], MAX_RSS_KIB, what)


def test_1gib_upload_with_content_length(proxy, gib_file):
    path, sha = gib_file
    p = proxy()
    out, took = run_curl(["--http1.1", "-T", path, p.url + "/upload-cl"])
    measure("upload_1gib_cl_seconds", "%.2f" % took, "s")
    doc = json.loads(out)
    assert doc["bytes"] == GIB and doc["sha256"] == sha, doc
    assert took < TRANSFER_LIMIT_S
    check_rss(p, "upload_1gib_cl")


def test_1gib_chunked_upload_from_a_pipe(proxy, gib_file):
    path, sha = gib_file
    p = proxy()
    t0 = time.monotonic()
    with open(path, "rb") as src:
        c = subprocess.run([CURL, "-sS", "--max-time", "120", "--http1.1", "-T", "-",
                            p.url + "/upload-chunked"], stdin=src, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, timeout=130)
    took = time.monotonic() - t0
    assert c.returncode == 0, c.stderr.decode(errors="replace")
    doc = json.loads(c.stdout)
    measure("upload_1gib_chunked_seconds", "%.2f" % took, "s")
    assert doc["bytes"] == GIB and doc["sha256"] == sha, doc
    assert took < TRANSFER_LIMIT_S
    check_rss(p, "upload_1gib_chunked")


@pytest.mark.parametrize("chunked", [False, True], ids=["content_length", "chunked"])
def test_1gib_download(proxy, chunked):
    p = proxy()
    url = p.url + "/bytes/%d%s" % (GIB, "?chunked=1" if chunked else "")
    out, took = run_curl(["--http1.1", "-o", "/dev/null", "-w", "%{http_code} %{size_download}",
                          url])
    what = "download_1gib_" + ("chunked" if chunked else "cl")
    measure(what + "_seconds", "%.2f" % took, "s")
    assert out.split() == ["200", str(GIB)], out
    assert took < TRANSFER_LIMIT_S
    check_rss(p, what)


def test_256mib_download_content_is_intact(proxy):
    n = 256 * MIB
    p = proxy()
    want = pattern_sha(n)
    proc = subprocess.Popen([CURL, "-sS", "--max-time", "60", "--http1.1",
                             p.url + "/bytes/%d" % n], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    h = hashlib.sha256()
    got = 0
    try:
        while True:
            piece = proc.stdout.read(MIB)
            if not piece:
                break
            got += len(piece)
            h.update(piece)
    finally:
        rc = proc.wait(timeout=70)
    assert rc == 0, proc.stderr.read().decode(errors="replace")
    assert got == n and h.hexdigest() == want


def test_parallel_downloads_stay_in_bounded_memory(proxy):
    p = proxy()
    n = 128 * MIB
    results = []
    lock = threading.Lock()

    def one():
        out, _ = run_curl(["--http1.1", "-o", "/dev/null", "-w", "%{size_download}",
                           p.url + "/bytes/%d" % n])
        with lock:
            results.append(int(out))

    threads = [threading.Thread(target=one) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=150)
    assert results == [n] * 8
    check_rss(p, "parallel_8x128mib_download")


def test_slow_upstream_reader_does_not_make_the_proxy_buffer(proxy, tmp_path):
    """The backend reads 64 KiB per 10 ms: the proxy must stop reading the client, not buffer."""
    n = 24 * MIB
    body = tmp_path / "slow.bin"
    body.write_bytes(os.urandom(n))
    p = proxy()
    before = p.status()["VmRSS"]
    out, took = run_curl(["--http1.1", "-T", str(body), p.url + "/slowread"])
    doc = json.loads(out)
    assert doc["bytes"] == n, doc
    grown = p.status()["VmHWM"] - before
    measure("slowread_upload_proxy_growth_kib", grown, "KiB",
            "VmHWM minus VmRSS before, 24 MiB body in %.1f s" % took)
    assert grown < MAX_GROWTH_KIB, "the proxy grew by %d KiB while the backend read slowly" % grown


def test_slow_client_reader_does_not_make_the_proxy_buffer(proxy):
    """curl reads 32 MiB at 8 MiB/s from a backend that writes as fast as it can."""
    n = 32 * MIB
    p = proxy()
    before = p.status()["VmRSS"]
    out, took = run_curl(["--http1.1", "--limit-rate", "8M", "-o", "/dev/null", "-w",
                          "%{size_download}", p.url + "/bytes/%d" % n])
    assert int(out) == n
    grown = p.status()["VmHWM"] - before
    measure("slow_client_download_proxy_growth_kib", grown, "KiB",
            "VmHWM minus VmRSS before, 32 MiB body in %.1f s" % took)
    assert grown < MAX_GROWTH_KIB, "the proxy grew by %d KiB while the client read slowly" % grown
