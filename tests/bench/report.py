#!/usr/bin/env python3
"""Markdown tables from tests/bench/run.sh's raw figures.

usage: report.py RAW.tsv MEM.tsv IDLE_COUNT
RAW columns: workers kind path target run rps p50_ms p99_ms failed requests cpu_s blue green status
             rq_wait_pct (the target's threads runnable but waiting for a CPU, % of the run)
             backends_cpu_s (both nginx backends) machine_cpu_s (every core's busy time)
MEM columns: workers proxy hwm_kib rss_kib idle_rss_kib idle_settled idle_alive status
"""
import statistics
import sys
from collections import defaultdict

PEERS = ["nginx", "haproxy", "nghttpx"]
ORDER = ["switchyard", "before", "nginx", "haproxy", "nghttpx", "backend"]  # before: SY_BEFORE
TESTS = [("h1", "/"), ("h1", "/16k"), ("h1w", "/"), ("h2", "/"), ("h2", "/16k"), ("h2w", "/")]
NAMES = {("h1", "/"): "HTTP/1.1 small", ("h1", "/16k"): "HTTP/1.1 16 KiB",
         ("h1w", "/"): "HTTP/1.1 small, 256 conns", ("h2", "/"): "h2c small",
         ("h2", "/16k"): "h2c 16 KiB", ("h2w", "/"): "h2c small, 16 conns x 32 streams"}


def num(x):
    try:
        return float(x)
    except ValueError:
        return None


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def fmt(x, nd=0):
    if x is None:
        return "-"
    return f"{x:,.{nd}f}"


def ratio(a, b):
    if a is None or b is None or b == 0:
        return "-"
    return f"{a / b:.2f}x"


def per_req(f, i, n):
    """Column i (CPU seconds) per completed request, in us; None when absent."""
    v = num(f[i]) if len(f) > i else None
    return v * 1e6 / n if v is not None and n else None


def load(raw_path):
    cells = defaultdict(list)  # (w, kind, path, target) -> rows
    for line in open(raw_path):
        f = line.rstrip("\n").split("\t")
        if len(f) < 14:
            continue
        w, kind, path, target, run = f[0], f[1], f[2], f[3], f[4]
        rps, p50, p99, fail, n, cpu = (num(x) for x in f[5:11])
        blue, green = int(f[11]), int(f[12])
        cells[(w, kind, path, target)].append(dict(
            run=run, rps=rps, p50=p50, p99=p99, fail=fail, n=n, cpu=cpu, blue=blue, green=green,
            status=f[13], rq=num(f[14]) if len(f) > 14 else None, cpu_us=per_req(f, 10, n),
            be_us=per_req(f, 15, n), mach_us=per_req(f, 16, n)))
    return cells


def summary(rows):
    rps = [r["rps"] for r in rows if r["rps"] is not None]
    blue = sum(max(r["blue"], 0) for r in rows)
    green = sum(max(r["green"], 0) for r in rows)
    return dict(
        rps=med(rps), rmin=min(rps) if rps else None, rmax=max(rps) if rps else None,
        p50=med([r["p50"] for r in rows]), p99=med([r["p99"] for r in rows]),
        fail=sum(int(r["fail"]) for r in rows if r["fail"] is not None),
        cpu_us=med([r["cpu_us"] for r in rows]),
        rq=med([r["rq"] for r in rows]),
        be_us=med([r["be_us"] for r in rows]), mach_us=med([r["mach_us"] for r in rows]),
        split=f"{100 * blue / (blue + green):.1f}/{100 * green / (blue + green):.1f}"
        if blue + green else "-",
        dead=any(r["status"] != "ok" for r in rows), runs=len(rows))


def targets(S, w, who):
    """The medians of `who` against the best peer's medians in each row, marked against the
    goal (1.10x req/s, 0.80x CPU, p99 no higher)."""
    print(f"## Targets ({w} worker each): {who} against the best peer in each row\n")
    me = "sy" if who == "switchyard" else who
    print(f"| test | best peer req/s | {me} / best (>= 1.10x) | lowest peer CPU/req | {me} / lowest "
          f"(<= 0.80x) | lowest peer p99 | {me} p99 / lowest (<= 1.00x) |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for kind, path in TESTS:
        sy = S.get((w, kind, path, who))
        peers = [(t, S[(w, kind, path, t)]) for t in PEERS if (w, kind, path, t) in S]
        if not sy or not peers:
            continue
        br = max(peers, key=lambda p: p[1]["rps"] or 0)
        bc = min(peers, key=lambda p: p[1]["cpu_us"] or 1e18)
        bp = min(peers, key=lambda p: p[1]["p99"] or 1e18)

        def mark(r, ok):
            return "-" if r is None else f"{r:.2f}x {'ok' if ok(r) else 'MISSED'}"
        r1 = sy["rps"] / br[1]["rps"] if sy["rps"] and br[1]["rps"] else None
        r2 = sy["cpu_us"] / bc[1]["cpu_us"] if sy["cpu_us"] and bc[1]["cpu_us"] else None
        r3 = sy["p99"] / bp[1]["p99"] if sy["p99"] and bp[1]["p99"] else None
        print(f"| {NAMES[(kind, path)]} | {br[0]} {fmt(br[1]['rps'])} | {mark(r1, lambda r: r >= 1.1)} "
              f"| {bc[0]} {fmt(bc[1]['cpu_us'], 1)} | {mark(r2, lambda r: r <= 0.8)} "
              f"| {bp[0]} {fmt(bp[1]['p99'], 2)} | {mark(r3, lambda r: r <= 1.0)} |")
    print()


def paired(cells, w, who):
    """Run by run: the targets of one run follow each other within seconds, so `who` against
    the best peer of the same run cancels the machine's slow swings that medians over runs
    keep. Median of the per-run ratios, and in how many runs `who` was ahead."""
    print(f"Run by run ({w} worker each): {who} against the best peer of the same run; the "
          "median of the per-run ratios, and the runs where it was ahead (req/s at least, CPU "
          "and p99 at most the peer's).\n")
    print("| test | runs | req/s vs best peer | ahead | CPU/req vs lowest peer | ahead "
          "| p99 vs lowest peer | ahead |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for kind, path in TESTS:
        mine = {r["run"]: r for r in cells.get((w, kind, path, who), [])}
        rr, cr, pr = [], [], []
        for run, m in sorted(mine.items()):
            peers = [r for t in PEERS for r in cells.get((w, kind, path, t), []) if r["run"] == run]
            rps = [p["rps"] for p in peers if p["rps"]]
            cpu = [p["cpu_us"] for p in peers if p["cpu_us"]]
            p99 = [p["p99"] for p in peers if p["p99"]]
            if m["rps"] and rps:
                rr.append(m["rps"] / max(rps))
            if m["cpu_us"] and cpu:
                cr.append(m["cpu_us"] / min(cpu))
            if m["p99"] and p99:
                pr.append(m["p99"] / min(p99))
        if not rr:
            continue

        def cell(xs, ahead):
            return f"{med(xs):.2f}x | {sum(1 for x in xs if ahead(x))}/{len(xs)}" if xs else "- | -"
        print(f"| {NAMES[(kind, path)]} | {len(rr)} | {cell(rr, lambda x: x >= 1)} "
              f"| {cell(cr, lambda x: x <= 1)} | {cell(pr, lambda x: x <= 1)} |")
    print()


def main():
    raw, mem_path, idle = sys.argv[1], sys.argv[2], int(sys.argv[3])
    cells = load(raw)
    workers = sorted({k[0] for k in cells}, key=int)
    S = {k: summary(v) for k, v in cells.items()}
    mem = {}
    for line in open(mem_path):
        f = line.rstrip("\n").split("\t")
        if len(f) >= 8:
            mem[(f[0], f[1])] = dict(hwm=int(f[2]), rss=int(f[3]), idle=int(f[4]),
                                     settled=int(f[5]), alive=int(f[6]), status=f[7])

    for w in workers:
        print(f"## {w} worker{'s' if w != '1' else ''} each\n")
        print("Ratios are switchyard / that row (req/s: higher is better for switchyard; "
              "CPU/req and p99: lower is better). Latency in ms; p50/p99 are medians over the runs.\n")
        print("Wait % = time the target's threads were runnable but waiting for a CPU, summed over "
              "its threads and processes, as a share of the run (median; can exceed 100): high "
              "values mean the scheduler, not the target, set the pace.\n")
        print("| test | target | req/s median [min-max] | p50 | p99 | failed | CPU us/req | wait % "
              "| split blue/green | sy req/s ratio | sy CPU/req ratio | sy p99 ratio |")
        print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
        for kind, path in TESTS:
            sy = S.get((w, kind, path, "switchyard"))
            for t in ORDER:
                s = S.get((w, kind, path, t))
                if not s:
                    continue
                name = t + (" (direct)" if t == "backend" else "") + (" DIED" if s["dead"] else "")
                rr = cr = pr = "-"
                if sy and t != "switchyard":
                    rr = ratio(sy["rps"], s["rps"])
                    cr = ratio(sy["cpu_us"], s["cpu_us"]) if t != "backend" else "-"
                    pr = ratio(sy["p99"], s["p99"])
                rng = f"{fmt(s['rps'])} [{fmt(s['rmin'])}-{fmt(s['rmax'])}]" if s["runs"] > 1 \
                    else fmt(s["rps"])
                print(f"| {NAMES[(kind, path)]} | {name} | {rng} | {fmt(s['p50'], 2)} "
                      f"| {fmt(s['p99'], 2)} | {s['fail']} "
                      f"| {fmt(s['cpu_us'], 1) if t != 'backend' else '-'} | {fmt(s['rq'], 0)} | {s['split']} "
                      f"| {rr} | {cr} | {pr} |")
        print()
        if any(S[k]["mach_us"] is not None for k in S if k[0] == w):
            print("Where the machine's CPU went, per request (medians over the runs, us): the proxy, "
                  "the two nginx backends, and the rest (the load generator, the kernel's softirq "
                  "work charged to no process, anything else running) out of every core's busy "
                  "time. The load generator and the backends share the 2 cores with the proxy, so "
                  "a proxy that costs them more per request is slower at the same CPU of its own.\n")
            print("| test | target | proxy | backends | rest | machine | sy machine ratio |")
            print("| --- | --- | --- | --- | --- | --- | --- |")
            for kind, path in TESTS:
                sy = S.get((w, kind, path, "switchyard"))
                for t in ORDER:
                    s_ = S.get((w, kind, path, t))
                    if not s_ or s_["mach_us"] is None:
                        continue
                    own = (s_["cpu_us"] or 0.0) if t != "backend" else 0.0
                    rest = s_["mach_us"] - own - (s_["be_us"] or 0.0)
                    mr = ratio(sy["mach_us"], s_["mach_us"]) if sy and t != "switchyard" else "-"
                    print(f"| {NAMES[(kind, path)]} | {t} | {fmt(own, 1)} | {fmt(s_['be_us'], 1)} "
                          f"| {fmt(rest, 1)} | {fmt(s_['mach_us'], 1)} | {mr} |")
            print()
        print(f"| proxy | peak RSS (MiB) | RSS after load (MiB) | RSS with {idle:,} idle h2c (MiB) "
              "| idle conns held | KiB per idle conn | sy ratio after load | sy ratio idle |")
        print("| --- | --- | --- | --- | --- | --- | --- | --- |")
        sym = mem.get((w, "switchyard"))
        for t in ORDER:
            m = mem.get((w, t))
            if not m:
                continue
            per = ((m["idle"] - m["rss"]) / m["alive"]) if m["alive"] else None
            ra = ratio(sym["rss"], m["rss"]) if sym and t != "switchyard" else "-"
            ri = ratio(sym["idle"], m["idle"]) if sym and t != "switchyard" and m["idle"] else "-"
            print(f"| {t}{' DIED' if m['status'] != 'ok' else ''} | {m['hwm'] / 1024:.1f} "
                  f"| {m['rss'] / 1024:.1f} | {m['idle'] / 1024:.1f} | {m['alive']:,} "
                  f"| {fmt(per, 1)} | {ra} | {ri} |")
        print()

    # The targets, from the first worker count (one worker each).
    w = workers[0]
    for who in ("switchyard", "before"):
        if any(k[0] == w and k[3] == who for k in S):
            targets(S, w, who)
            paired(cells, w, who)
    sym, ngm = mem.get((w, "switchyard")), mem.get((w, "nginx"))
    if sym and ngm:
        r = sym["rss"] / ngm["rss"]
        print(f"\nRSS after load: switchyard {sym['rss'] / 1024:.1f} MiB, nginx {ngm['rss'] / 1024:.1f} MiB "
              f"({r:.2f}x, target <= 1.00x: {'ok' if r <= 1 else 'MISSED'}).")

    if len(workers) > 1:
        w1, w2 = workers[0], workers[1]
        print(f"\n## Scaling: req/s with {w2} workers / with {w1}\n")
        print("| test | " + " | ".join(t for t in ORDER if t != "backend") + " |")
        print("| --- |" + " --- |" * (len(ORDER) - 1))
        for kind, path in TESTS:
            cols = []
            for t in ORDER:
                if t == "backend":
                    continue
                a, b = S.get((w2, kind, path, t)), S.get((w1, kind, path, t))
                cols.append(ratio(a["rps"], b["rps"]) if a and b else "-")
            print(f"| {NAMES[(kind, path)]} | " + " | ".join(cols) + " |")

    bad = [(k, s) for k, s in S.items() if s["fail"] or s["dead"]]
    print("\n## Errors\n")
    if not bad:
        print("No failed request, no non-2xx answer, no proxy died.")
    for k, s in sorted(bad):
        print(f"- workers={k[0]} {NAMES[(k[1], k[2])]} {k[3]}: {s['fail']} failed"
              f"{', process died' if s['dead'] else ''}")
    for k, m in sorted(mem.items()):
        if m["status"] != "ok":
            print(f"- workers={k[0]} {k[1]}: died during the idle-connection test")
        elif idle and m["alive"] < idle:
            print(f"- workers={k[0]} {k[1]}: held {m['alive']:,} of {idle:,} idle connections "
                  f"({m['settled']:,} got SETTINGS)")


if __name__ == "__main__":
    main()
