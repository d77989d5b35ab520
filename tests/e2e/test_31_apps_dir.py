# SPDX-License-Identifier: MIT
"""apps_dir: one routing file per tenant (issue 18), end to end.

The routing file names `apps_dir: apps.d`; three tenant files there (alpha, beta, gamma) each
hold one app. Real traffic (HTTP/1.1 keep-alive probes) against the real blue and green
backends shows:

- editing one tenant file reloads it (by the watcher alone: a rename over it, then an in-place
  write) and its traffic moves, the others' not; a touch, or an editor's hidden swap file,
  publishes nothing; `status --json` and `explain --json` say which file and line an app is
  written in;
- a broken tenant file is refused, by the watcher and by `switchyardctl reload`, with its own
  path, line and column, and the three apps keep serving as before; fixing it reloads;
- a host claimed by a second file is refused naming both files with line and column (and so
  does `switchyard -t`), and the first app keeps the host;
- removing a file removes its apps (404), adding one adds them;
- a Kubernetes ConfigMap laid out by kubelet (`NAME -> ..data/NAME`, `..data` swapped by a
  rename) reloads on the swap, a new key included.

Each reload is awaited through the proxy's "generation N published" / "rejected" log lines
(reload_util.ReloadProxy); nothing sleeps for a fixed time except where a reload must NOT
happen (reload_util.SETTLE_S, three debounce periods).
"""

import http.client
import json
import os
import shutil
import subprocess
import time

import pytest

import helpers
from admin_util import SWITCHYARDCTL, socket_dir
from conftest import SOURCE_ROOT, SWITCHYARD
from reload_util import SETTLE_S, Probe, start_proxy, write_inplace, write_rename

BLUE, GREEN = "blue-1", "green-1"


def tenant(name, host, blue, green):
    """A tenant file: a YAML list of one app."""
    return ("# tenant %s\n"
            "- name: %s\n"
            "  hosts: [%s]\n"
            "  weights: {blue: %d, green: %d}\n" % (name, name, host, blue, green))


def main_config(port, backends, sock, apps_dir="apps.d"):
    doc = {
        "workers": 1,
        "listen": [{"address": "127.0.0.1:%d" % port}],
        "admin": {"socket": sock},
        "state": sock + ".state",
        "timeouts": {"drain": "5s"},
        "shutdown": {"delay": "0s"},  # no 5 s of accepting on at every stop
        "clusters": {"blue": {"endpoints": [backends.blue.addr]},
                     "green": {"endpoints": [backends.green.addr]}},
        "apps_dir": apps_dir,
    }
    return helpers.to_yaml(doc)


def host_tags(port, host, n=4):
    pr = Probe(port, host)
    try:
        return set(pr.tags(n, path="/t"))
    finally:
        pr.close()


def status_of(port, host):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        c.request("GET", "/t", headers={"Host": host})
        r = c.getresponse()
        r.read()
        return r.status
    finally:
        c.close()


def ctl(sock, *args):
    return subprocess.run([SWITCHYARDCTL, "-s", sock] + list(args), capture_output=True,
                          text=True, timeout=20)


class Site:
    """The routing file, apps.d with three tenants, and the running proxy."""

    def __init__(self, tmp_path, backends, sy, layout=None):
        self.dir = str(tmp_path / "conf")
        os.makedirs(self.dir)
        self.apps = os.path.join(self.dir, "apps.d")
        self.sock = os.path.join(socket_dir(), "sy.sock")
        self.port = helpers.free_port()
        self.main = os.path.join(self.dir, "switchyard.yaml")
        self.files = {"a.yaml": tenant("alpha", "alpha.test", 100, 0),
                      "b.yaml": tenant("beta", "beta.test", 100, 0),
                      "c.yaml": tenant("gamma", "gamma.test", 0, 100)}
        if layout is None:
            os.makedirs(self.apps)
            for name, text in self.files.items():
                with open(self.path(name), "w") as f:
                    f.write(text)
        else:
            layout(self.apps, self.files)
        with open(self.main, "w") as f:
            f.write(main_config(self.port, backends, self.sock))
        self.proxy = sy(self.port, self.main)

    def path(self, name):
        return os.path.join(self.apps, name)

    def expect(self, **hosts):
        """host label -> backend tag (or 404) for alpha/beta/gamma/... .test."""
        for label, want in hosts.items():
            host = label + ".test"
            if want == 404:
                assert status_of(self.port, host) == 404, host
            else:
                assert host_tags(self.port, host) == {want}, host


@pytest.fixture
def sy(tmp_path):
    started = []

    def start(port, path):
        return start_proxy(started, path, port, tmp_path)

    yield start
    errors = [e for e in (p.stop() for p in started) if e]
    assert not errors, errors


def test_editing_one_tenant_file_reloads_it_and_only_its_traffic_moves(tmp_path, backends, sy):
    site = Site(tmp_path, backends, sy)
    p = site.proxy
    site.expect(alpha=BLUE, beta=BLUE, gamma=GREEN)
    # A rename over the file (what most tools do), seen by the watcher alone.
    write_rename(site.path("b.yaml"), tenant("beta", "beta.test", 0, 100))
    p.wait_published(1)
    site.expect(alpha=BLUE, beta=GREEN, gamma=GREEN)
    # An in-place write (an editor, a shell's >).
    write_inplace(site.path("a.yaml"), tenant("alpha", "alpha.test", 0, 100))
    p.wait_published(2)
    site.expect(alpha=GREEN, beta=GREEN, gamma=GREEN)
    # A touch and an editor's swap file publish nothing.
    os.utime(site.path("c.yaml"))
    with open(site.path(".c.yaml.swp"), "w") as f:
        f.write("- not: [a tenant file")
    time.sleep(SETTLE_S)
    assert p.published() == [2, 3], p.published()
    assert p.rejected() == []
    # status and explain say where each app is written.
    doc = json.loads(ctl(site.sock, "--json", "status").stdout)
    src = {a["name"]: a["source"] for a in doc["apps"]}
    assert src["beta"] == {"file": site.path("b.yaml"), "line": 2}, src
    assert src["gamma"]["file"] == site.path("c.yaml"), src
    r = ctl(site.sock, "explain", "alpha.test", "/")
    assert r.returncode == 0 and "written in %s:2" % site.path("a.yaml") in r.stdout, r.stdout
    doc = json.loads(ctl(site.sock, "--json", "explain", "alpha.test", "/").stdout)
    assert doc["source"] == {"file": site.path("a.yaml"), "line": 2}, doc


def test_a_broken_tenant_file_is_refused_with_its_own_path_and_the_others_keep_serving(
        tmp_path, backends, sy):
    site = Site(tmp_path, backends, sy)
    p = site.proxy
    write_rename(site.path("c.yaml"), "- name: gamma\n  hosts: [gamma.test]\n"
                                      "  weights: {blue: 50, purple: 50}\n")
    gen, failures, why = p.wait_rejected(1)
    assert (gen, failures) == (1, 1)
    assert why.startswith(site.path("c.yaml") + ":3:23: unknown cluster 'purple'"), why
    site.expect(alpha=BLUE, beta=BLUE, gamma=GREEN)
    # `switchyardctl reload` reads the directory too, and says why.
    r = ctl(site.sock, "reload")
    assert r.returncode != 0, r.stdout
    assert site.path("c.yaml") + ":3:23: unknown cluster 'purple'" in r.stdout + r.stderr, r
    # A change to another tenant while one is broken is refused as well: all or nothing.
    write_rename(site.path("a.yaml"), tenant("alpha", "alpha.test", 0, 100))
    p.wait_rejected(3)
    site.expect(alpha=BLUE, beta=BLUE, gamma=GREEN)
    write_rename(site.path("c.yaml"), tenant("gamma", "gamma.test", 100, 0))
    p.wait_published(1)
    site.expect(alpha=GREEN, beta=BLUE, gamma=BLUE)


def test_a_host_claimed_by_two_files_is_refused_naming_both(tmp_path, backends, sy):
    site = Site(tmp_path, backends, sy)
    p = site.proxy
    write_rename(site.path("d.yaml"), tenant("delta", "alpha.test", 0, 100))
    _, _, why = p.wait_rejected(1)
    assert why.startswith(site.path("d.yaml") + ":3:11: host 'alpha.test' with path '/' is "
                          "already claimed by app 'alpha' in %s:3:11" % site.path("a.yaml")), why
    site.expect(alpha=BLUE, beta=BLUE, gamma=GREEN)
    chk = subprocess.run([SWITCHYARD, "-t", "-c", site.main], capture_output=True, text=True,
                         timeout=20)
    assert chk.returncode == 1, chk
    assert site.path("d.yaml") + ":3:11:" in chk.stderr and site.path("a.yaml") in chk.stderr, \
        chk.stderr
    # The same app name in two files names both too.
    write_rename(site.path("d.yaml"), tenant("alpha", "delta.test", 0, 100))
    _, _, why = p.wait_rejected(2)
    assert why.startswith(site.path("d.yaml") + ":2:9: duplicate app name 'alpha' (first in "
                          "%s:2:3)" % site.path("a.yaml")), why
    write_rename(site.path("d.yaml"), tenant("delta", "delta.test", 0, 100))
    p.wait_published(1)
    site.expect(alpha=BLUE, delta=GREEN)


def test_removing_a_file_removes_its_apps(tmp_path, backends, sy):
    site = Site(tmp_path, backends, sy)
    p = site.proxy
    os.unlink(site.path("c.yaml"))
    p.wait_published(1)
    site.expect(alpha=BLUE, beta=BLUE, gamma=404)
    doc = json.loads(ctl(site.sock, "--json", "status").stdout)
    assert sorted(a["name"] for a in doc["apps"]) == ["alpha", "beta"], doc
    # Renamed to a name that does not count (a backup): gone as well.
    os.rename(site.path("b.yaml"), site.path("b.yaml.bak"))
    p.wait_published(2)
    site.expect(alpha=BLUE, beta=404)
    os.rename(site.path("b.yaml.bak"), site.path("b.yaml"))
    p.wait_published(3)
    site.expect(alpha=BLUE, beta=BLUE, gamma=404)


def test_an_override_follows_its_app_into_another_file(tmp_path, backends, sy):
    site = Site(tmp_path, backends, sy)
    p = site.proxy
    r = ctl(site.sock, "weights", "beta", "blue=0", "green=100")
    assert r.returncode == 0, r
    site.expect(beta=GREEN)
    # beta moves from b.yaml into a.yaml (one rename of a new a.yaml, then b.yaml goes): its
    # override, kept by name, still applies.
    write_rename(site.path("a.yaml"), tenant("alpha", "alpha.test", 100, 0)
                 + tenant("beta", "beta.test", 100, 0).split("\n", 1)[1])
    os.unlink(site.path("b.yaml"))
    p.wait_for(lambda: site.path("a.yaml") == beta_source(site), "beta in a.yaml", timeout=5)
    site.expect(alpha=BLUE, beta=GREEN, gamma=GREEN)
    doc = json.loads(ctl(site.sock, "--json", "status", "beta").stdout)
    assert doc["apps"][0]["override"]["state"] == "applied", doc


def beta_source(site):
    doc = json.loads(ctl(site.sock, "--json", "status", "beta").stdout)
    return doc["apps"][0]["source"]["file"] if doc.get("apps") else None


def configmap_layout(root, files):
    """kubelet's AtomicWriter: ..TS/NAME, ..data -> ..TS, NAME -> ..data/NAME."""
    os.makedirs(root)
    ts = configmap_version(root, files, 1)
    os.symlink(ts, os.path.join(root, "..data"))
    for name in files:
        os.symlink(os.path.join("..data", name), os.path.join(root, name))


def configmap_version(root, files, serial):
    ts = time.strftime("..%Y_%m_%d_%H_%M_%S", time.gmtime()) + ".%09d" % serial
    os.mkdir(os.path.join(root, ts))
    for name, text in files.items():
        with open(os.path.join(root, ts, name), "w") as f:
            f.write(text)
    return ts


def configmap_update(root, files, serial):
    old = os.readlink(os.path.join(root, "..data"))
    ts = configmap_version(root, files, serial)
    tmp = os.path.join(root, "..data_tmp")
    os.symlink(ts, tmp)
    os.rename(tmp, os.path.join(root, "..data"))
    for name in files:  # new keys get their symlink after the swap, as kubelet does
        link = os.path.join(root, name)
        if not os.path.lexists(link):
            os.symlink(os.path.join("..data", name), link)
    for name in os.listdir(root):  # removed keys lose theirs
        if not name.startswith("..") and name not in files:
            os.unlink(os.path.join(root, name))
    shutil.rmtree(os.path.join(root, old))


def test_a_configmap_data_swap_reloads_the_tenants(tmp_path, backends, sy):
    site = Site(tmp_path, backends, sy, layout=configmap_layout)
    p = site.proxy
    site.expect(alpha=BLUE, beta=BLUE, gamma=GREEN)
    files = dict(site.files)
    files["b.yaml"] = tenant("beta", "beta.test", 0, 100)
    configmap_update(site.apps, files, 2)
    p.wait_published(1)
    site.expect(alpha=BLUE, beta=GREEN, gamma=GREEN)
    # A key added and one removed in the same update.
    files["d.yaml"] = tenant("delta", "delta.test", 100, 0)
    del files["c.yaml"]
    configmap_update(site.apps, files, 3)
    p.wait_for(lambda: site_serves(site, "delta.test") and status_of(site.port, "gamma.test")
               == 404, "delta served and gamma gone", timeout=5)
    site.expect(alpha=BLUE, beta=GREEN, delta=BLUE, gamma=404)
    assert p.rejected() == []


def site_serves(site, host):
    return status_of(site.port, host) == 200


def test_the_shipped_example_checks_with_both_tenant_files():
    path = os.path.join(SOURCE_ROOT, "conf", "examples", "tenants.yaml")
    r = subprocess.run([SWITCHYARD, "-t", "-c", path], capture_output=True, text=True,
                       timeout=20)
    assert r.returncode == 0, r
    assert "tenants.yaml: ok: 5 apps, 2 clusters, 1 listeners" in r.stdout, r.stdout
    assert "apps.d: 4 apps in 2 files" in r.stdout, r.stdout
