"""A real browser opens the report from disk: the tables and figures are there, every image decodes,
nothing but the file itself and data: URIs is loaded, the console stays clean; a screenshot goes to
ci-artifacts/report.png for people to look at.

Headless Chromium is driven over the DevTools protocol on ``--remote-debugging-pipe``: NUL-separated
JSON messages on file descriptors 3 (to the browser) and 4 (from it). That needs no websocket client
and no browser download, only Debian's ``chromium``, and unlike ``--dump-dom`` or parsing
``--enable-logging`` output it reports console errors, failed loads and network requests as events."""

from __future__ import annotations

import base64
import json
import os
import select
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from test_report import make_results  # tests/ is on sys.path (rootdir conftest, no package)

from rdbench.report import render_report

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ARTIFACTS = Path(__file__).resolve().parents[1] / "ci-artifacts"
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no chromium binary on PATH (apt-get install chromium)")
# Running as root, offline, without a GPU or a desktop session: keep Chromium from reaching out.
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-default-apps", "--disable-extensions", "--hide-scrollbars", "--remote-debugging-pipe"]


class DevTools:
    """Minimal Chrome DevTools Protocol client over the debugging pipe (commands and buffered events)."""

    def __init__(self, user_data_dir: Path):
        self.log = user_data_dir.with_suffix(".log")
        to_browser_r, self._w = os.pipe()
        self._r, from_browser_w = os.pipe()
        # bash moves our two pipe ends onto fds 3 and 4 (Popen keeps fds at their own numbers only)
        script = f'exec "$0" "$@" 3<&{to_browser_r} 4>&{from_browser_w}'
        with self.log.open("wb") as log:  # a file, not a pipe: chromium's chatter can never block it
            self.proc = subprocess.Popen(["bash", "-c", script, CHROMIUM, *FLAGS, f"--user-data-dir={user_data_dir}",
                                          "about:blank"], pass_fds=(to_browser_r, from_browser_w),
                                         stdout=subprocess.DEVNULL, stderr=log)
        os.close(to_browser_r)
        os.close(from_browser_w)
        self._buf, self._id, self.events = b"", 0, []

    def _next(self, deadline: float) -> dict:
        while b"\0" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._r], [], [], left)[0]:
                raise TimeoutError("no answer from chromium")
            chunk = os.read(self._r, 1 << 20)
            if not chunk:
                raise RuntimeError(f"chromium closed the pipe: {self.log.read_text(errors='replace')[-2000:]}")
            self._buf += chunk
        msg, self._buf = self._buf.split(b"\0", 1)
        return json.loads(msg)

    def send(self, method: str, params: dict | None = None, session: str | None = None, timeout: float = 30):
        self._id += 1
        msg = {"id": self._id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        os.write(self._w, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            m = self._next(deadline)
            if m.get("id") == self._id:
                if "error" in m:
                    raise RuntimeError(f"{method}: {m['error']}")
                return m["result"]
            self.events.append(m)

    def evaluate(self, expression: str, session: str):
        result = self.send("Runtime.evaluate", {"expression": expression, "returnByValue": True}, session=session)
        return result["result"].get("value")

    def open(self, url: str, session: str, timeout: float = 30) -> None:
        """Navigate and wait until the page and all its images have loaded. Polls the page itself rather
        than waiting for a load event, which about:blank may also have sent."""
        self.send("Page.navigate", {"url": url}, session=session)
        deadline = time.monotonic() + timeout
        while self.evaluate("location.href + ' ' + document.readyState", session) != f"{url} complete":
            if time.monotonic() > deadline:
                raise TimeoutError(f"{url} did not finish loading")
            time.sleep(0.05)

    def close(self) -> None:
        try:
            self.send("Browser.close", timeout=10)
        except (RuntimeError, TimeoutError, OSError):
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self._w)
        os.close(self._r)


# What the page shows, read from the live DOM after load.
PROBE = """JSON.stringify({
  tables: document.querySelectorAll('table').length,
  paperTables: [...document.querySelectorAll('article.paper-table h3')].map(h => h.textContent),
  images: document.images.length,
  broken: [...document.images].filter(i => !i.complete || i.naturalWidth === 0).map(i => i.alt),
  sections: [...document.querySelectorAll('section[id]')].map(s => s.id),
  missing: [...document.querySelectorAll('td.missing')].length,
  width: document.documentElement.scrollWidth,
})"""


def test_report_in_headless_chromium(tmp_path):
    page = render_report(make_results(tmp_path / "results"), tmp_path / "report", title="rdbench report (browser test)")
    html = page.read_text()
    browser = DevTools(tmp_path / "profile")
    try:
        target = browser.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = browser.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Page", "Runtime", "Log", "Network"):
            browser.send(f"{domain}.enable", session=session)
        browser.send("Emulation.setDeviceMetricsOverride", {"width": 1280, "height": 1600, "deviceScaleFactor": 1,
                                                            "mobile": False}, session=session)
        browser.open(page.as_uri(), session)
        dom = json.loads(browser.evaluate(PROBE, session))
        shot = browser.send("Page.captureScreenshot", {"format": "png"}, session=session)["data"]
    finally:
        browser.close()
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "report.png").write_bytes(base64.b64decode(shot))

    assert dom["tables"] == html.count("<table") >= 20  # 1 + 3 + 5 + 1 + 3 + 3 metric tables, runs, provenance
    assert [t.split(":")[0] for t in dom["paperTables"]] == ["Table 1", "Table 2", "Table 3", "Table 5", "Table 5"]
    assert dom["images"] == html.count("<img") >= 8 and dom["broken"] == []
    assert dom["sections"] == ["warnings", "tables", "speed", "fig5", "galleries", "curves", "runs", "provenance"]
    assert dom["missing"] > 0
    events = browser.events
    requests = [e["params"]["request"]["url"] for e in events if e.get("method") == "Network.requestWillBeSent"]
    assert requests and all(u.startswith(("file:", "data:")) for u in requests), requests
    errors = [e["params"] for e in events if e.get("method") == "Runtime.exceptionThrown"
              or (e.get("method") == "Runtime.consoleAPICalled" and e["params"]["type"] in ("error", "assert"))
              or (e.get("method") == "Log.entryAdded" and e["params"]["entry"]["level"] == "error")]
    assert errors == []
