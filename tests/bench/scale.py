#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""How switchyard's control path grows with the number of apps (issue #21). Never part of the
test suite: it measures and prints, it asserts nothing about speed.

    /usr/bin/python3 tests/bench/scale.py [--bin build/proxy/switchyard] [--sizes 100,1000,...]
                                          [--runs 3] [--reloads 100] [--markdown]
                                          [--split K]

Per size N (files from tests/bench/gen_apps.py: two hosts, two paths, a sticky cookie each):
- `-t`: wall time of `switchyard -t -c FILE` (no daemon running), median of --runs;
- the daemon (workers: 2) started on the file: RSS (VmRSS of the process) once it answers;
- reload-to-published: `reload` on the admin socket after the file changed in every app's
  weights, until its `ok` (which waits until every worker installed the generation), median;
  and its CPU: the time every thread of the daemon spent on a CPU meanwhile (schedstat), which
  a loaded machine does not inflate the way it inflates the wall time;
- revert-to-ok: `weights appK blue=50 green=50`, then `revert appK` timed until its `ok`
  (journal fsync and every worker's install included), median of 20;
- RSS after those reloads (3 s later), and for the largest N up to 10,000 RSS after --reloads reloads
  (alternating two files), to show that a reload gives its memory back.
With --split K the same apps are written as `apps_dir: apps.d` and K tenant files there (the
apps dealt out in order, the catch-all in the last), every file rewritten for each reload.
Bytes per app (config, snapshot, worker counters) are tests/bench/memory.c's: RSS cannot
tell them apart.
The machine's load shows in wall times: compare medians of one run, not runs of two days.
"""

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

SETTLE_S = 3.0  # RSS is read this long after the last reload (the daemon trims 2 s after one)
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import gen_apps  # noqa: E402


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def cpu_ns(pid):
    """CPU time of every thread of the process so far, in ns (schedstat: time on a CPU)."""
    total = 0
    for tid in os.listdir("/proc/%d/task" % pid):
        try:
            with open("/proc/%d/task/%s/schedstat" % (pid, tid)) as f:
                total += int(f.read().split()[0])
        except OSError:
            pass
    return total


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


class Admin:
    def __init__(self, path, timeout=600.0):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(path)
        self.buf = b""

    def ask(self, line):
        self.sock.sendall(line.encode() + b"\n")
        lines = []
        while True:
            while b"\n" not in self.buf:
                data = self.sock.recv(1 << 20)
                if not data:
                    raise EOFError(lines)
                self.buf += data
            line_b, self.buf = self.buf.split(b"\n", 1)
            text = line_b.decode()
            lines.append(text)
            if text == "ok" or text.startswith("error:"):
                if text != "ok":
                    raise RuntimeError("\n".join(lines[-5:]))
                return lines

    def close(self):
        self.sock.close()


def write_split(path, text, k):
    """`text` (gen_apps.render) as a routing file at `path` naming `apps_dir: apps.d`, and its
    apps dealt out in order over k files there (each rewritten by a rename)."""
    head, body = text.split("apps:\n", 1)
    blocks = ["  - name:" + b for b in body.split("  - name:")[1:]]
    apps = os.path.join(os.path.dirname(path), "apps.d")
    os.makedirs(apps, exist_ok=True)
    per = -(-len(blocks) // k)
    for i in range(k):
        name = os.path.join(apps, "t%04d.yaml" % i)
        with open(name + ".tmp", "w") as f:
            f.write("".join(blocks[i * per:(i + 1) * per]) or "[]\n")
        os.rename(name + ".tmp", name)
    with open(path + ".tmp", "w") as f:
        f.write(head + "apps_dir: apps.d\n")
    os.rename(path + ".tmp", path)


class Daemon:
    def __init__(self, binary, workdir, n, workers, split=0):
        self.dir = tempfile.mkdtemp(prefix="sy-scale-", dir=workdir)
        self.sock = os.path.join(self.dir, "admin.sock")
        self.cfg = os.path.join(self.dir, "apps.yaml")
        self.port = free_port()
        self.n = n
        self.workers = workers
        self.split = split
        self.write(0)
        self.log = open(os.path.join(self.dir, "log"), "wb")
        self.proc = subprocess.Popen([binary, "-c", self.cfg], stdin=subprocess.DEVNULL,
                                     stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 600
        while True:
            try:
                self.admin = Admin(self.sock)
                self.admin.ask("ident")
                break
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("switchyard did not start (log in %s)" % self.dir)
                time.sleep(0.05)

    def write(self, seed):
        text = gen_apps.render(self.n, listen="127.0.0.1:%d" % self.port, admin=self.sock,
                               seed=seed, workers=self.workers)
        if self.split:
            write_split(self.cfg, text, self.split)
            return
        tmp = self.cfg + ".tmp"
        with open(tmp, "w") as f:
            f.write(text)
        os.rename(tmp, self.cfg)

    def timed(self, line):
        t0 = time.perf_counter()
        self.admin.ask(line)
        return time.perf_counter() - t0

    def stop(self):
        self.admin.close()
        self.proc.terminate()
        self.proc.wait(timeout=120)
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)


def check_time(binary, path, runs):
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        p = subprocess.run([binary, "-t", "-c", path], stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
        times.append(time.perf_counter() - t0)
        if p.returncode != 0:
            raise RuntimeError("-t failed on %s" % path)
    return statistics.median(times)


def measure(binary, workdir, n, runs, reloads, split=0):
    row = {"n": n}
    path = os.path.join(workdir, "check-%d.yaml" % n)
    text = gen_apps.render(n, listen="127.0.0.1:%d" % free_port())
    if split:
        write_split(path, text, split)
    else:
        with open(path, "w") as f:
            f.write(text)
    row["check_s"] = check_time(binary, path, runs)
    os.unlink(path)
    shutil.rmtree(os.path.join(workdir, "apps.d"), ignore_errors=True)

    d = Daemon(binary, workdir, n, 2, split)
    row["rss_kib"] = rss_kib(d.proc.pid)
    rel, cpu = [], []
    for i in range(runs):
        d.write(i + 1)
        c0 = cpu_ns(d.proc.pid)
        rel.append(d.timed("reload"))
        cpu.append(cpu_ns(d.proc.pid) - c0)
    row["reload_s"] = statistics.median(rel)
    row["reload_cpu_s"] = statistics.median(cpu) / 1e9
    time.sleep(SETTLE_S)
    row["rss_reload_kib"] = rss_kib(d.proc.pid)
    rev = []
    for i in range(20):
        app = "app%d" % ((i * 7919) % n)
        d.timed("weights %s blue=50 green=50" % app)
        rev.append(d.timed("revert %s" % app))
    row["revert_s"] = statistics.median(rev)
    if reloads and n <= 10000:
        for i in range(reloads):
            d.write(100 + i % 2)
            d.admin.ask("reload")
        time.sleep(SETTLE_S)
        row["rss_many_kib"] = rss_kib(d.proc.pid)
        row["many"] = reloads
    d.stop()
    return row


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default="build/proxy/switchyard")
    ap.add_argument("--sizes", default="100,1000,10000,50000")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--reloads", type=int, default=100)
    ap.add_argument("--split", type=int, default=0,
                    help="write the apps as K apps_dir files instead of one file")
    a = ap.parse_args()
    workdir = tempfile.mkdtemp(prefix="sy-scale-")
    os.chmod(workdir, 0o755)
    rows = []
    try:
        for n in [int(x) for x in a.sizes.split(",")]:
            row = measure(a.bin, workdir, n, a.runs, a.reloads, a.split)
            rows.append(row)
            print("measured %s" % row, file=sys.stderr, flush=True)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print("binary: %s, %d runs (medians), load average %s%s" % (
        a.bin, a.runs, open("/proc/loadavg").read().split()[0],
        ", apps in %d apps_dir files" % a.split if a.split else ", apps in one file"))
    print()
    print("| apps | `-t` | reload to published | its CPU | revert to ok | RSS "
          "| RSS 3 s after the reloads | RSS after many reloads |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        many = "%.1f MiB (%d reloads)" % (r["rss_many_kib"] / 1024, r["many"]) \
            if "rss_many_kib" in r else "-"
        print("| %d | %.3f s | %.1f ms | %.1f ms | %.2f ms | %.1f MiB | %.1f MiB | %s |" % (
            r["n"], r["check_s"], r["reload_s"] * 1000, r["reload_cpu_s"] * 1000,
            r["revert_s"] * 1000,
            r["rss_kib"] / 1024, r["rss_reload_kib"] / 1024, many))
    print()
    print("RSS is a high-water mark of pages touched: it does not tell one structure from "
          "another (freed parse memory is reused); bytes per app come from tests/bench/memory.c.")


if __name__ == "__main__":
    main()
