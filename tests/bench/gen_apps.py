#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Writes a switchyard routing file with N apps, for the scale benchmark (tests/bench/scale.sh)
and the e2e test of a big reload (tests/e2e/test_84_scale.py).

Each app is what issue #21 measured: two hosts (an exact name and a wildcard), two path
prefixes, a 90/10 split over blue and green, and a sticky cookie. The last app is the
catch-all `*` (so any host is routed), unless --no-catch-all.

    gen_apps.py N [--blue ADDR] [--green ADDR] [--listen ADDR] [--admin SOCKET]
                  [--state FILE] [--seed S] [-o FILE]

--seed changes every app's weights (blue 90-seed%50, green the rest), so that two files of one
N differ in every app: a reload then publishes a real change.
"""

import argparse
import sys


def render(n, blue="127.0.0.1:9", green="127.0.0.1:9", listen="127.0.0.1:18080", admin=None, state=None,
           seed=0, catch_all=True, workers=None, drain=None, stop_delay=None):
    out = []
    if drain:
        out.append("timeouts:\n  drain: %s\n" % drain)
    if stop_delay:
        out.append("shutdown:\n  delay: %s\n" % stop_delay)
    if workers:
        out.append("workers: %d\n" % workers)
    if listen:
        out.append("listen:\n  - address: %s\n" % listen)
    if admin:
        out.append("admin:\n  socket: %s\n" % admin)
    if state:
        out.append("state: %s\n" % state)
    out.append("clusters:\n  blue:\n    endpoints: [%s]\n  green:\n    endpoints: [%s]\n"
               % (blue, green))
    out.append("apps:\n")
    b = 90 - seed % 50
    for i in range(n):
        out.append(
            "  - name: app%d\n"
            "    hosts: [app%d.example.com, \"*.app%d.example.com\"]\n"
            "    paths: [/api/, /]\n"
            "    stable: blue\n"
            "    weights: {blue: %d, green: %d}\n"
            "    sticky: {cookie: sy_app%d}\n" % (i, i, i, b, 100 - b, i))
    if catch_all:
        out.append("  - name: catchall\n    hosts: [\"*\"]\n    weights: {blue: 100}\n")
    return "".join(out)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("n", type=int)
    ap.add_argument("--blue", default="127.0.0.1:9")
    ap.add_argument("--green", default="127.0.0.1:9")
    ap.add_argument("--listen", default="127.0.0.1:18080")
    ap.add_argument("--admin")
    ap.add_argument("--state")
    ap.add_argument("--workers", type=int)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-catch-all", action="store_true")
    ap.add_argument("-o", "--output")
    a = ap.parse_args()
    text = render(a.n, a.blue, a.green, a.listen, a.admin, a.state, a.seed,
                  not a.no_catch_all, a.workers)
    if a.output:
        with open(a.output, "w") as f:
            f.write(text)
    else:
        sys.stdout.write(text)


if __name__ == "__main__":
    main()
