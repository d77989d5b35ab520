#!/usr/bin/python3
"""Stands in for h2load (put a link named h2load to it first on PATH) and records h2load's own
CPU: runs /usr/bin/h2load with the same arguments, passes its output through, and appends
"URL SUCCEEDED USER_S SYSTEM_S" to $H2LOAD_CPU_LOG (default /tmp/h2cpu.log), from
getrusage(RUSAGE_CHILDREN). Used to tell whether a proxy's answers cost the client more:

    mkdir -p /tmp/h2wrap && ln -sf "$PWD/tests/bench/h2load_cpu.py" /tmp/h2wrap/h2load
    PATH=/tmp/h2wrap:$PATH RUNS=3 WORKERS_LIST=1 IDLE=0 PROXIES="switchyard nghttpx" \\
        bash tests/bench/run.sh
"""
import os
import re
import resource
import subprocess
import sys

p = subprocess.run(["/usr/bin/h2load"] + sys.argv[1:], stdout=subprocess.PIPE,
                   stderr=subprocess.STDOUT)
sys.stdout.buffer.write(p.stdout)
sys.stdout.flush()
ru = resource.getrusage(resource.RUSAGE_CHILDREN)
m = re.search(rb"(\d+) succeeded", p.stdout)
with open(os.environ.get("H2LOAD_CPU_LOG", "/tmp/h2cpu.log"), "a") as f:
    f.write("%s %s %.3f %.3f\n" % (sys.argv[-1] if len(sys.argv) > 1 else "-",
                                   m.group(1).decode() if m else 0, ru.ru_utime, ru.ru_stime))
sys.exit(p.returncode)
