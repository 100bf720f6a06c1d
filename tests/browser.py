"""Headless Chromium driven over the DevTools protocol: what a person sees on a page, as text and a PNG.

Debian's `chromium` (installed by .ci/run) with a fresh profile and the flags this machine's closed network
needs; the protocol through the `websockets` client Airflow already brings. Stopped by its own pid.
"""

from __future__ import annotations

import base64
import itertools
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from support import scaled

CHROMIUM_FLAGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-dev-shm-usage", "--hide-scrollbars", "--window-size=1400,1000")


def chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


class Browser:
    """One page of a headless Chromium: `open(url)`, then `text()`, `evaluate(js)`, `screenshot(path)`."""

    def __init__(self):
        binary = chromium()
        if binary is None:
            raise RuntimeError("chromium is not installed (Debian: apt-get install chromium)")
        self.profile = tempfile.mkdtemp(prefix="chromium-")
        self.process = subprocess.Popen(
            [binary, *CHROMIUM_FLAGS, f"--user-data-dir={self.profile}", "--remote-debugging-port=0",
             "about:blank"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True)
        self._ids = itertools.count(1)
        deadline = time.monotonic() + scaled(60)
        endpoint = None
        while endpoint is None:
            line = self.process.stderr.readline()
            found = re.search(r"DevTools listening on (ws://\S+)", line)
            if found:
                endpoint = found.group(1)
            elif not line and self.process.poll() is not None or time.monotonic() > deadline:
                self.close()
                raise RuntimeError("chromium did not start its DevTools endpoint")
        self.port = int(re.search(r":(\d+)/", endpoint).group(1))
        self._socket = self._connect_page()
        self.call("Page.enable")
        self.call("Network.enable")

    def _connect_page(self):
        import urllib.request

        from websockets.sync.client import connect

        targets = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{self.port}/json/list", timeout=10).read())
        page = next(t for t in targets if t["type"] == "page")
        return connect(page["webSocketDebuggerUrl"], max_size=64 * 1024 * 1024, open_timeout=scaled(30))

    def call(self, method: str, **params) -> dict:
        message_id = next(self._ids)
        self._socket.send(json.dumps({"id": message_id, "method": method, "params": params}))
        while True:
            reply = json.loads(self._socket.recv(timeout=scaled(60)))
            if reply.get("id") == message_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})

    def set_cookie(self, url: str, name: str, value: str) -> None:
        self.call("Network.setCookie", name=name, value=value, url=url)

    def open(self, url: str, settle: float = 1.0) -> None:
        """Navigate and wait for the page's load, then `settle` seconds for scripts to render."""
        self.call("Page.navigate", url=url)
        deadline = time.monotonic() + scaled(60)
        while self.evaluate("document.readyState") != "complete":
            if time.monotonic() > deadline:
                raise TimeoutError(f"{url} did not finish loading")
            time.sleep(0.1)
        time.sleep(settle)

    def wait_for_text(self, fragment: str, timeout: float = 60) -> str:
        """The page's visible text once it contains `fragment` (a single-page app renders after load)."""
        deadline = time.monotonic() + scaled(timeout)
        while True:
            text = self.text()
            if fragment in text:
                return text
            if time.monotonic() > deadline:
                raise TimeoutError(f"{fragment!r} never appeared; the page shows: {text[:2000]!r}")
            time.sleep(0.3)

    def evaluate(self, expression: str):
        return self.call("Runtime.evaluate", expression=expression, returnByValue=True)["result"].get("value")

    def text(self) -> str:
        return self.evaluate("document.body ? document.body.innerText : ''") or ""

    def screenshot(self, path: str | os.PathLike, full_page: bool = True) -> Path:
        params = {"format": "png"}
        if full_page:
            size = self.call("Page.getLayoutMetrics")["cssContentSize"]
            params["clip"] = {"x": 0, "y": 0, "width": size["width"], "height": min(size["height"], 6000),
                              "scale": 1}
            params["captureBeyondViewport"] = True
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(self.call("Page.captureScreenshot", **params)["data"]))
        return path

    def close(self) -> None:
        try:
            if getattr(self, "_socket", None) is not None:
                self._socket.close()
        finally:
            if self.process.poll() is None:
                os.killpg(self.process.pid, signal.SIGTERM)
                try:
                    self.process.wait(timeout=scaled(10))
                except subprocess.TimeoutExpired:
                    os.killpg(self.process.pid, signal.SIGKILL)
                    self.process.wait()
            shutil.rmtree(self.profile, ignore_errors=True)

    def __enter__(self) -> "Browser":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
