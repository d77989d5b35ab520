# SPDX-License-Identifier: MIT
"""The Kubernetes manifests of conf/k8s/ (issue 18), checked against the real binary.

- They parse (PyYAML, every document), and hold together: a Deployment of 3 replicas whose
  labels the Service (LoadBalancer) and the PodDisruptionBudget select, a Service targetPort
  and probe ports that name container ports, pod anti-affinity, a termination grace above the
  drain, the ConfigMap volume mounted whole (a subPath mount is never updated by kubelet), and
  the admin socket's directory shared with the `ctl` sidecar.
- Every routing table in a ConfigMap passes `switchyard -t` inside the pod's file system as
  the manifests lay it out (the ConfigMap volume as kubelet writes it, the emptyDirs with
  their 0777 mode, the init containers run), moved under a temp dir; the bare emptyDir, without
  the `state-dir` init container, is refused (which is why that container exists).
- That pod's switchyard, started on the ConfigMap volume (listen and admin ports moved to free
  loopback ports, endpoints to real backends), answers 200 on every probe's path and port; then
  a ConfigMap update exactly as kubelet's AtomicWriter makes it (a new `..TIMESTAMP` directory,
  a `..data_tmp` symlink renamed over `..data`, the old directory removed) is reloaded by the
  file watch with no signal, and the next request follows the new weights.
"""

import glob
import os
import re
import shutil
import subprocess
import tempfile
import time

import pytest
import yaml

import helpers
from conftest import SOURCE_ROOT, SWITCHYARD
from reload_util import ConfigMapVolume

K8S = os.path.join(SOURCE_ROOT, "conf", "k8s")


def manifests():
    """Every document of every conf/k8s/*.yaml file, with the file it came from."""
    out = []
    for path in sorted(glob.glob(os.path.join(K8S, "*.yaml"))):
        with open(path, encoding="utf-8") as f:
            for doc in yaml.safe_load_all(f):
                if doc is not None:
                    out.append((os.path.basename(path), doc))
    return out


def one(kind):
    found = [d for _, d in manifests() if d.get("kind") == kind]
    assert len(found) == 1, "want one %s in conf/k8s, found %d" % (kind, len(found))
    return found[0]


def routing_tables():
    """(ConfigMap name, key, text) of every ConfigMap entry that is a routing table."""
    out = []
    for _, d in manifests():
        if d.get("kind") != "ConfigMap":
            continue
        for key, text in (d.get("data") or {}).items():
            if re.search(r"^clusters:", text, re.M):
                out.append((d["metadata"]["name"], key, text))
    return out


def pod_spec():
    return one("Deployment")["spec"]["template"]["spec"]


def container(name):
    found = [c for c in pod_spec()["containers"] if c["name"] == name]
    assert len(found) == 1, "no container %r in the Deployment" % name
    return found[0]


def container_port(c, port):
    """The number a probe's or a Service's port (a name or a number) means in container c."""
    if isinstance(port, int):
        assert any(p["containerPort"] == port for p in c.get("ports", [])), (port, c["ports"])
        return port
    named = [p["containerPort"] for p in c.get("ports", []) if p.get("name") == port]
    assert named, "container %s has no port named %r" % (c["name"], port)
    return named[0]


def duration_s(text):
    m = re.fullmatch(r"(\d+)(ms|s|m|h)", str(text))
    assert m, text
    return int(m.group(1)) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[m.group(2)]


# -- 1. the manifests parse and hold together -----------------------------------------------------

def test_manifests_parse_and_select_the_same_pods():
    kinds = sorted(d["kind"] for _, d in manifests())
    assert kinds == ["ConfigMap", "Deployment", "Kustomization", "PodDisruptionBudget",
                     "Service"], kinds
    dep = one("Deployment")
    labels = dep["spec"]["template"]["metadata"]["labels"]
    selects = lambda sel: all(labels.get(k) == v for k, v in sel.items())  # noqa: E731
    assert dep["spec"]["replicas"] == 3
    assert selects(dep["spec"]["selector"]["matchLabels"])

    svc = one("Service")
    assert svc["spec"]["type"] == "LoadBalancer"
    assert selects(svc["spec"]["selector"])
    proxy = container("switchyard")
    for p in svc["spec"]["ports"]:
        container_port(proxy, p["targetPort"])

    pdb = one("PodDisruptionBudget")
    assert selects(pdb["spec"]["selector"]["matchLabels"])
    assert 0 < pdb["spec"]["minAvailable"] < dep["spec"]["replicas"]

    anti = pod_spec()["affinity"]["podAntiAffinity"]
    terms = [t["podAffinityTerm"] for t in
             anti.get("preferredDuringSchedulingIgnoredDuringExecution", [])]
    terms += anti.get("requiredDuringSchedulingIgnoredDuringExecution", [])
    assert any(selects(t["labelSelector"]["matchLabels"]) for t in terms), anti

    listed = sorted(yaml.safe_load(open(os.path.join(K8S, "kustomization.yaml")))["resources"])
    assert listed == sorted(os.path.basename(p) for p in glob.glob(os.path.join(K8S, "*.yaml"))
                            if not p.endswith("kustomization.yaml"))


def test_grace_covers_the_drain_and_the_socket_is_shared():
    spec = pod_spec()
    proxy = container("switchyard")
    (_, _, text), = routing_tables()
    cfg = yaml.safe_load(text)
    # switchyard's defaults: shutdown.delay 5s, shutdown.grace 30s (timeouts.drain its older
    # name); a preStop pause adds to them.
    sd = cfg.get("shutdown", {})
    delay = duration_s(sd.get("delay", "5s"))
    grace = duration_s(sd.get("grace", cfg.get("timeouts", {}).get("drain", "30s")))
    pre = proxy.get("lifecycle", {}).get("preStop", {}).get("exec", {}).get("command", [])
    pause = int(pre[1]) if pre[:1] == ["sleep"] else 0
    assert spec["terminationGracePeriodSeconds"] > delay + grace + pause, (delay, grace, pause)

    for probe in ("readinessProbe", "livenessProbe"):
        assert probe in proxy, "the switchyard container has no %s" % probe

    # The routing table's volume is mounted whole where -c points: kubelet never updates a
    # subPath mount, so a ConfigMap change would not reach the file.
    volumes = {v["name"]: v for v in spec["volumes"]}
    conf_dir = os.path.dirname(proxy["args"][proxy["args"].index("-c") + 1])
    mounts = {m["mountPath"]: m for m in proxy["volumeMounts"]}
    assert conf_dir in mounts and "subPath" not in mounts[conf_dir]
    assert "configMap" in volumes[mounts[conf_dir]["name"]]

    # The init containers see each volume where the proxy does (the test's Pod below lays the
    # volumes out by the proxy's mount paths).
    by_volume = {m["name"]: m["mountPath"] for m in proxy["volumeMounts"]}
    for c in spec.get("initContainers", []):
        for m in c.get("volumeMounts", []):
            assert by_volume.get(m["name"]) == m["mountPath"], (c["name"], m)

    # switchyardctl in the sidecar reaches the admin socket: same volume, same directory.
    sock_dir = os.path.dirname(cfg["admin"]["socket"])
    ctl_mounts = {m["mountPath"]: m["name"] for m in container("ctl")["volumeMounts"]}
    assert ctl_mounts.get(sock_dir) == mounts[sock_dir]["name"]


# -- the pod's file system, moved under a temp dir ------------------------------------------------

class Pod:
    """The switchyard container's mounts under `root`: the ConfigMap volume laid out as kubelet
    writes it (reload_util.ConfigMapVolume), each emptyDir as kubelet makes it (mode 0777).
    `relocate` moves the mount paths in a text or an argument under root."""

    def __init__(self, root, text_of=None):
        self.root = str(root)
        spec = pod_spec()
        volumes = {v["name"]: v for v in spec["volumes"]}
        self.mounts = sorted((m["mountPath"], volumes[m["name"]])
                             for c in spec["containers"] for m in c["volumeMounts"])
        self.configmaps = {}
        for path, vol in self.mounts:
            if "emptyDir" in vol and not os.path.isdir(self.root + path):
                os.makedirs(self.root + path)
                os.chmod(self.root + path, 0o777)
        for path, vol in self.mounts:
            if "configMap" in vol and self.root + path not in self.configmaps:
                (name, key, text), = [t for t in routing_tables()
                                      if t[0] == vol["configMap"]["name"]]
                text = self.relocate(text_of(text) if text_of else text)
                self.configmaps[self.root + path] = ConfigMapVolume(self.root + path, key, text)

    def relocate(self, s):
        for path, _ in sorted(self.mounts, key=lambda m: -len(m[0])):
            s = re.sub(r"(?<![\w/])%s(?=/|\b)" % re.escape(path), self.root + path, s)
        return s

    def config_path(self):
        args = container("switchyard")["args"]
        return self.relocate(args[args.index("-c") + 1])

    def run_init_containers(self):
        for c in pod_spec().get("initContainers", []):
            subprocess.run([self.relocate(a) for a in c["command"] + c.get("args", [])],
                           check=True, timeout=10)


@pytest.fixture
def pod_root():
    """A short path (the admin socket's must fit in sun_path) for the pod's file system."""
    d = tempfile.mkdtemp(prefix="sy-pod-")
    yield d
    shutil.rmtree(d, ignore_errors=True)


def check(path):
    return subprocess.run([SWITCHYARD, "-t", "-c", path], capture_output=True, text=True,
                          timeout=30)


# -- 2. every routing table passes -t in the pod --------------------------------------------------

def test_every_routing_table_passes_check_in_the_pod(pod_root):
    tables = routing_tables()
    assert tables, "no routing table in any ConfigMap of conf/k8s"
    pod = Pod(pod_root)
    pod.run_init_containers()
    p = check(pod.config_path())
    assert p.returncode == 0, "stdout:\n%s\nstderr:\n%s" % (p.stdout, p.stderr)
    assert ": ok: " in p.stdout, p.stdout


def test_without_the_init_container_the_emptydir_is_refused(pod_root):
    """The `state-dir` init container is what makes the journal's directory: an emptyDir is
    writable by every user, and switchyard refuses to keep its journal in such a directory
    (here: the journal's directory does not exist at all, or is that emptyDir)."""
    pod = Pod(pod_root)
    p = check(pod.config_path())
    assert p.returncode == 1, p.stdout
    assert "overrides journal" in p.stderr, p.stderr


# -- 3. the pod's switchyard: probes, then a ConfigMap update -------------------------------------

def local_ports(text, proxy_port, admin_port, backends, weights=None):
    """The routing table with its listen and admin.http ports moved to free loopback ports
    (after checking that they are the container's `http` and `admin` ports), its clusters on
    the test's backends and, optionally, every app's weights replaced."""
    cfg = yaml.safe_load(text)
    proxy = container("switchyard")
    http_port, admin_http = container_port(proxy, "http"), container_port(proxy, "admin")
    assert any(l["address"].endswith(":%d" % http_port) for l in cfg["listen"]), cfg["listen"]
    assert cfg["admin"]["http"].endswith(":%d" % admin_http), cfg["admin"]
    cfg["listen"] = [{"address": "127.0.0.1:%d" % proxy_port}]
    cfg["admin"]["http"] = "127.0.0.1:%d" % admin_port
    cfg["shutdown"] = {"delay": "0s"}  # the test stops it: no 5 s of accepting on
    cfg["clusters"]["blue"]["endpoints"] = [backends.blue.addr]
    cfg["clusters"]["green"]["endpoints"] = [backends.green.addr]
    if weights:
        for app in cfg["apps"]:
            app["weights"] = dict(weights)
    return yaml.safe_dump(cfg, sort_keys=False)


class Running:
    def __init__(self, pod, workdir):
        self.log = os.path.join(str(workdir), "switchyard.log")
        self.logf = open(self.log, "wb")
        self.proc = subprocess.Popen([SWITCHYARD, "-l", "debug", "-c", pod.config_path()],
                                     stdin=subprocess.DEVNULL, stdout=self.logf,
                                     stderr=subprocess.STDOUT)
        helpers.wait_started(self.proc, self.log, 0, time.monotonic() + 10)

    def text(self):
        with open(self.log, encoding="utf-8", errors="replace") as f:
            return f.read()

    def published(self):
        return [int(g) for g in re.findall(r"generation (\d+) published", self.text())]

    def stop(self):
        return helpers.stop_switchyard(self.proc, self.logf, self.log, 10)


@pytest.fixture
def pod_proxy(tmp_path, pod_root, backends):
    ports = (helpers.free_port(), helpers.free_port())
    pod = Pod(pod_root, lambda t: local_ports(t, *ports, backends))
    pod.run_init_containers()
    run = Running(pod, tmp_path)
    yield pod, run, ports
    err = run.stop()
    assert err is None, err


def test_probes_answer_and_a_configmap_swap_reloads(pod_proxy, backends):
    pod, run, (port, admin_port) = pod_proxy
    proxy = container("switchyard")
    mapped = {container_port(proxy, "http"): port, container_port(proxy, "admin"): admin_port}
    for probe in ("readinessProbe", "livenessProbe"):
        get = proxy[probe]["httpGet"]
        url = "http://127.0.0.1:%d%s" % (mapped[container_port(proxy, get["port"])], get["path"])
        r = helpers.curl1(url)
        assert r.status == 200, "%s %s: %r" % (probe, url, r)

    chat = ["-H", "Host: chat.example.com"]
    r = helpers.curl1("http://127.0.0.1:%d/" % port, *chat)
    assert r.status == 200 and r.backend == "blue-1", r

    # kubelet's AtomicWriter: ..NEW/ written, ..data_tmp -> ..NEW renamed over ..data, ..OLD
    # removed. No signal: the watch alone must see it.
    vol = pod.configmaps[os.path.dirname(pod.config_path())]
    (_, _, text), = routing_tables()
    vol.update(pod.relocate(local_ports(text, port, admin_port, backends,
                                        weights={"blue": 0, "green": 100})))
    assert not os.path.exists(os.path.join(vol.root, "..data_tmp"))
    helpers.wait_for(lambda: 2 in run.published(), 5, "generation 2 after the ..data swap")
    r = helpers.curl1("http://127.0.0.1:%d/" % port, *chat)
    assert r.status == 200 and r.backend == "green-1", r
    assert run.published() == [2], run.text()[-2000:]

    # A second swap (the directory the first one made is the one removed now).
    vol.update(pod.relocate(local_ports(text, port, admin_port, backends)))
    helpers.wait_for(lambda: 3 in run.published(), 5, "generation 3 after the second swap")
    assert helpers.curl1("http://127.0.0.1:%d/" % port, *chat).backend == "blue-1"
