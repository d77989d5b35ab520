# SPDX-License-Identifier: MIT
"""A small driver for Debian's headless `chromium` over the DevTools protocol, for the status
page's tests (test_58_status_page.py): open a URL, evaluate JavaScript in the page, wait for a
condition, resize the window, take a screenshot.

Chromium runs with its own --user-data-dir under the test's tmp directory and
--remote-debugging-port on 127.0.0.1; the test talks to the page's target over a websocket
(python3-websockets, asyncio API: Debian 12 ships 10.4, without the sync client). stop()
ends the browser by its PID. Every wait has a deadline."""

import asyncio
import base64
import json
import os
import shutil
import signal
import subprocess
import time
import urllib.request

import websockets

import helpers

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


class Chromium:
    def __init__(self, workdir, width=1280, height=900):
        if not CHROMIUM:
            raise AssertionError("chromium is not installed (apt-get install chromium)")
        self.port = helpers.free_port()
        self.log = os.path.join(str(workdir), "chromium.log")
        self._logf = open(self.log, "wb")
        # New session: chromium's helpers (zygote, renderers) are in the group we end at stop().
        self.proc = subprocess.Popen(
            [CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
             "--no-default-browser-check", "--disable-extensions", "--disable-sync",
             "--disable-background-networking", "--disable-component-update", "--mute-audio",
             "--remote-debugging-address=127.0.0.1",
             "--remote-debugging-port=%d" % self.port,
             "--user-data-dir=%s" % os.path.join(str(workdir), "chromium-profile"),
             "--window-size=%d,%d" % (width, height), "about:blank"],
            stdin=subprocess.DEVNULL, stdout=self._logf, stderr=subprocess.STDOUT,
            start_new_session=True)
        self.loop = asyncio.new_event_loop()
        self.ws = None
        self.next_id = 0
        try:
            self._connect(time.monotonic() + 30)
        except BaseException:
            self.stop()
            raise

    def _targets(self):
        with urllib.request.urlopen("http://127.0.0.1:%d/json/list" % self.port, timeout=5) as r:
            return json.loads(r.read())

    def _connect(self, deadline):
        while True:
            try:
                pages = [t for t in self._targets() if t.get("type") == "page"]
                if pages:
                    break
            except OSError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError("chromium's DevTools did not answer; log:\n%s"
                                     % self.log_text()[-3000:])
            time.sleep(0.05)  # polling: DevTools has no readiness signal we can wait on
        async def connect(url):  # created inside the loop, so that it is this loop's
            return await websockets.connect(url, max_size=None, open_timeout=10)
        self.ws = self.loop.run_until_complete(connect(pages[0]["webSocketDebuggerUrl"]))
        self.call("Page.enable")
        self.call("Runtime.enable")

    def log_text(self):
        with open(self.log, encoding="utf-8", errors="replace") as f:
            return f.read()

    async def _call(self, method, params, timeout):
        self.next_id += 1
        mid = self.next_id
        await self.ws.send(json.dumps({"id": mid, "method": method, "params": params or {}}))
        while True:
            msg = json.loads(await asyncio.wait_for(self.ws.recv(), timeout))
            if msg.get("id") == mid:
                if "error" in msg:
                    raise AssertionError("%s: %s" % (method, msg["error"]))
                return msg.get("result", {})
            # events (Page.*, Runtime.consoleAPICalled ...) are not needed: dropped

    def call(self, method, params=None, timeout=15):
        """One DevTools command; its result."""
        return self.loop.run_until_complete(self._call(method, params, timeout))

    def open(self, url):
        self.call("Page.navigate", {"url": url})

    def eval(self, expr):
        """The value of a JavaScript expression in the page (JSON-able)."""
        r = self.call("Runtime.evaluate", {"expression": expr, "returnByValue": True,
                                           "awaitPromise": True})
        if "exceptionDetails" in r:
            raise AssertionError("%s: %s" % (expr, r["exceptionDetails"]))
        return r["result"].get("value")

    def wait_for(self, expr, timeout=15, what=None):
        """Until `expr` is truthy in the page; returns its value. A DOM node comes back as {}
        (falsy here): ask `!!node`."""
        deadline = time.monotonic() + timeout
        guarded = "(function () { try { return (%s); } catch (e) { return null; } })()" % expr
        while True:
            v = self.eval(guarded)  # a page still loading throws: not yet
            if v:
                return v
            if time.monotonic() > deadline:
                raise AssertionError("timed out waiting for %s" % (what or expr))
            time.sleep(0.05)  # polling the DOM: the page redraws on its own timer

    def allow_clipboard(self, origin):
        """Lets pages of `origin` write and read the clipboard, as a focused window's would."""
        self.call("Browser.grantPermissions", {"origin": origin, "permissions": [
            "clipboardReadWrite", "clipboardSanitizedWrite"]})
        self.call("Emulation.setFocusEmulationEnabled", {"enabled": True})

    def viewport(self, width, height, mobile=False):
        """Resizes the page as a laptop's or a phone's window would."""
        self.call("Emulation.setDeviceMetricsOverride",
                  {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": mobile})

    def screenshot(self, path):
        """A PNG of the whole page (beyond the window's height) at the current width."""
        m = self.call("Page.getLayoutMetrics")
        size = m.get("cssContentSize") or m["contentSize"]
        vw = m.get("cssLayoutViewport", m.get("layoutViewport", {})).get("clientWidth", size["width"])
        r = self.call("Page.captureScreenshot",
                      {"format": "png", "captureBeyondViewport": True,
                       "clip": {"x": 0, "y": 0, "width": vw, "height": size["height"],
                                "scale": 1}}, timeout=30)
        with open(path, "wb") as f:
            f.write(base64.b64decode(r["data"]))

    def stop(self):
        if self.ws is not None:
            try:
                self.loop.run_until_complete(asyncio.wait_for(self.ws.close(), 5))
            except Exception:  # the browser may already be gone
                pass
            self.ws = None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        try:  # its helpers, in the session it leads (same id as its PID)
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.loop.close()
        self._logf.close()
