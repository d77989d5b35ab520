# SPDX-License-Identifier: MIT
"""A real etcd cluster on 127.0.0.1 for the fleet tests (#17): `EtcdCluster(workdir, size)` starts
`size` members (3, or 1) on free ports with their own data directories and log files under
`workdir`, fast elections (heartbeat 50 ms, election timeout 500 ms), and waits until every
member is healthy. It stops, kills and restarts members by index (a restart keeps the data
directory), finds the leader, and reads and writes keys through etcdctl. It only ever signals
the processes it started, by PID. The fixtures `etcd3` and `etcd1` give a started cluster per
test and stop every member at teardown, whatever the test did. Stdlib only; needs `etcd` and
`etcdctl` (Debian: etcd-server, etcd-client)."""

import base64
import json
import os
import shutil
import signal
import subprocess
import time

import pytest

import helpers

ETCD = shutil.which("etcd") or "/usr/bin/etcd"
ETCDCTL = shutil.which("etcdctl") or "/usr/bin/etcdctl"
START_DEADLINE = 15.0
STOP_DEADLINE = 5.0


class Member:
    def __init__(self, index, workdir):
        self.index = index
        self.name = "m%d" % index
        # Below the ephemeral range: a stopped member comes back on the same ports.
        self.client_port = helpers.steady_port()
        self.peer_port = helpers.steady_port()
        self.client_url = "http://127.0.0.1:%d" % self.client_port
        self.peer_url = "http://127.0.0.1:%d" % self.peer_port
        self.endpoint = "127.0.0.1:%d" % self.client_port
        self.data_dir = os.path.join(workdir, "etcd-%s" % self.name)
        self.log_path = os.path.join(workdir, "etcd-%s.log" % self.name)
        self.proc = None

    @property
    def running(self):
        return self.proc is not None and self.proc.poll() is None


class EtcdCluster:
    def __init__(self, workdir, size=3, heartbeat_ms=50, election_ms=500):
        if not (os.access(ETCD, os.X_OK) and os.access(ETCDCTL, os.X_OK)):
            pytest.skip("etcd and etcdctl are needed (Debian: etcd-server etcd-client)")
        self.workdir = workdir
        self.heartbeat_ms = heartbeat_ms
        self.election_ms = election_ms
        self.members = [Member(i, workdir) for i in range(size)]
        self.initial_cluster = ",".join("%s=%s" % (m.name, m.peer_url) for m in self.members)
        try:
            self.start_all()
        except Exception:
            self.stop_all(kill=True)
            raise

    # -- addresses --------------------------------------------------------------------------------

    def endpoints(self, order=None):
        """host:port of each member's client listener (in `order`, a list of indexes)."""
        order = range(len(self.members)) if order is None else order
        return [self.members[i].endpoint for i in order]

    def running(self):
        return [m.index for m in self.members if m.running]

    # -- processes --------------------------------------------------------------------------------

    def _spawn(self, m):
        assert not m.running, "%s runs already" % m.name
        state = "existing" if os.path.isdir(m.data_dir) else "new"
        args = [ETCD, "--name", m.name, "--data-dir", m.data_dir,
                "--listen-client-urls", m.client_url, "--advertise-client-urls", m.client_url,
                "--listen-peer-urls", m.peer_url, "--initial-advertise-peer-urls", m.peer_url,
                "--initial-cluster", self.initial_cluster, "--initial-cluster-state", state,
                "--initial-cluster-token", "sy-test",
                "--heartbeat-interval", str(self.heartbeat_ms),
                "--election-timeout", str(self.election_ms),
                "--logger", "zap", "--log-outputs", "stderr"]
        with open(m.log_path, "ab") as log:
            m.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=log, stderr=log)

    def start(self, i, wait=True):
        self._spawn(self.members[i])
        if wait:
            self.wait_healthy([i])

    def restart(self, i, wait=True):
        """Starts member i again on its data directory (after stop or kill)."""
        if self.members[i].running:
            self.stop(i)
        self.start(i, wait)

    def start_all(self):
        for m in self.members:
            if not m.running:
                self._spawn(m)
        self.wait_healthy()

    def kill(self, i):
        """SIGKILL to member i (by PID), and waits for it to be gone."""
        m = self.members[i]
        if m.running:
            os.kill(m.proc.pid, signal.SIGKILL)
        if m.proc is not None:
            m.proc.wait(timeout=STOP_DEADLINE)

    def stop(self, i):
        """SIGTERM to member i (SIGKILL when it takes longer than 5 s)."""
        m = self.members[i]
        if m.running:
            os.kill(m.proc.pid, signal.SIGTERM)
            try:
                m.proc.wait(timeout=STOP_DEADLINE)
            except subprocess.TimeoutExpired:
                os.kill(m.proc.pid, signal.SIGKILL)
                m.proc.wait(timeout=STOP_DEADLINE)

    def stop_all(self, kill=False):
        for m in self.members:
            if kill:
                self.kill(m.index)
            else:
                self.stop(m.index)

    def log(self, i):
        with open(self.members[i].log_path, errors="replace") as f:
            return f.read()

    # -- state ----------------------------------------------------------------------------------

    def _ctl(self, endpoints, *args, timeout=10.0, check=True):
        cmd = [ETCDCTL, "--endpoints", ",".join(endpoints), "--dial-timeout", "1s",
               "--command-timeout", "2s"] + list(args)
        env = dict(os.environ, ETCDCTL_API="3")
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
        if check and r.returncode != 0:
            raise RuntimeError("etcdctl %s: %s" % (" ".join(args), r.stderr.strip()))
        return r

    def _live(self):
        eps = [m.endpoint for m in self.members if m.running]
        if not eps:
            raise RuntimeError("no etcd member runs")
        return eps

    def wait_healthy(self, indexes=None, timeout=START_DEADLINE):
        """Until every member in `indexes` (default: all) says it is healthy (it has a leader
        and commits a read)."""
        indexes = range(len(self.members)) if indexes is None else indexes
        deadline = time.monotonic() + timeout
        pending = list(indexes)
        while pending:
            i = pending[0]
            m = self.members[i]
            if not m.running:
                raise RuntimeError("etcd %s exited at start:\n%s" % (m.name, self.log(i)[-3000:]))
            r = self._ctl([m.endpoint], "endpoint", "health", check=False)
            if r.returncode == 0:
                pending.pop(0)
                continue
            if time.monotonic() > deadline:
                raise RuntimeError("etcd %s not healthy in %.0f s: %s\n%s" % (
                    m.name, timeout, r.stderr.strip(), self.log(i)[-3000:]))
            time.sleep(0.05)

    def leader(self, timeout=10.0):
        """The index of the member that is the leader (waits for one, among running members)."""
        deadline = time.monotonic() + timeout
        while True:
            r = self._ctl(self._live(), "endpoint", "status", "-w", "json", check=False)
            try:
                for st in json.loads(r.stdout or "[]"):
                    s = st.get("Status", {})
                    if s.get("leader") and s.get("leader") == s.get("header", {}).get("member_id"):
                        for m in self.members:
                            if m.endpoint == st["Endpoint"] and m.running:
                                return m.index
            except ValueError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("no etcd leader in %.0f s: %s" % (timeout, r.stderr.strip()))
            time.sleep(0.05)

    def put(self, key, value, timeout=10.0):
        """Writes key=value through the running members; retries (an election may be under way)
        until `timeout`. Returns the revision of the write."""
        deadline = time.monotonic() + timeout
        while True:
            r = self._ctl(self._live(), "put", key, value, "-w", "json", check=False)
            if r.returncode == 0:
                return int(json.loads(r.stdout)["header"]["revision"])
            if time.monotonic() > deadline:
                raise RuntimeError("etcdctl put %s: %s" % (key, r.stderr.strip()))
            time.sleep(0.05)

    def get_prefix(self, prefix):
        """{key: (value, mod_revision)} of every key starting with `prefix` (str)."""
        r = self._ctl(self._live(), "get", "--prefix", prefix, "-w", "json")
        out = {}
        for kv in json.loads(r.stdout).get("kvs", []):
            key = base64.b64decode(kv["key"]).decode()
            value = base64.b64decode(kv.get("value", "")).decode()
            out[key] = (value, int(kv["mod_revision"]))
        return out

    def compact(self, revision):
        self._ctl(self._live(), "compact", str(revision))


def _cluster(request, tmp_path, size):
    c = EtcdCluster(str(tmp_path), size=size)
    request.addfinalizer(lambda: c.stop_all(kill=True))
    return c


@pytest.fixture
def etcd3(request, tmp_path):
    """A healthy 3-member cluster for one test, every member SIGKILLed at teardown."""
    return _cluster(request, tmp_path, 3)


@pytest.fixture
def etcd1(request, tmp_path):
    """A healthy 1-member cluster for one test, SIGKILLed at teardown."""
    return _cluster(request, tmp_path, 1)
