"""A real browser opens the report from disk: the tables and figures are there, every image decodes,
nothing but the file itself and data: URIs is loaded, the console stays clean; a screenshot goes to
ci-artifacts/report.png for people to look at.

Selenium drives Debian's headless ``chromium`` through Debian's ``chromium-driver``
(``/usr/bin/chromedriver``): no browser or driver download. ChromeDriver's ``goog:loggingPrefs`` logs
give what the page did: the "browser" log holds console errors, uncaught exceptions and failed or
refused loads (SEVERE), the "performance" log the DevTools Network events, so every request.

Without chromium, chromedriver or selenium the test skips, except in CI (``CI=true``), where it fails."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from test_report import make_results  # tests/ is on sys.path (rootdir conftest, no package)

from rdbench.report import render_report

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
ARTIFACTS = Path(__file__).resolve().parents[1] / "ci-artifacts"
# Running as root, offline, without a GPU or a desktop session: keep Chromium from reaching out (without
# the background-networking flags its connections are refused by the closed network and logged as errors).
FLAGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-default-apps", "--disable-extensions", "--hide-scrollbars"]

try:
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.support.ui import WebDriverWait
except ImportError:  # the "test" extra declares it; CI must have it
    webdriver = None


def _missing() -> list[str]:
    out = [] if webdriver is not None else ["selenium (pip install 'selenium>=4.15')"]
    out += [f"{path} (apt-get install {pkg})" for path, pkg in ((CHROMIUM, "chromium"),
                                                                 (CHROMEDRIVER, "chromium-driver"))
            if not (os.path.isfile(path) and os.access(path, os.X_OK))]
    return out


@pytest.fixture
def driver(tmp_path):
    missing = _missing()
    if missing:
        reason = "no browser for the report's real-browser test: missing " + ", ".join(missing)
        if os.environ.get("CI", "").lower() in ("true", "1"):
            pytest.fail(reason)  # CI installs them (.ci/run): a missing one is a broken setup, not a skip
        pytest.skip(reason)
    options = Options()
    options.binary_location = CHROMIUM
    for flag in [*FLAGS, f"--user-data-dir={tmp_path / 'profile'}"]:
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    # An explicit driver path: Selenium skips Selenium Manager altogether (no driver lookup or download).
    service = Service(executable_path=CHROMEDRIVER, log_output=str(tmp_path / "chromedriver.log"))
    drv = webdriver.Chrome(service=service, options=options)
    try:
        drv.set_page_load_timeout(30)
        yield drv
    finally:
        drv.quit()


# What the page shows, read from the live DOM after load.
PROBE = """return JSON.stringify({
  tables: document.querySelectorAll('table').length,
  paperTables: [...document.querySelectorAll('article.paper-table h3')].map(h => h.textContent),
  images: document.images.length,
  broken: [...document.images].filter(i => !i.complete || i.naturalWidth === 0).map(i => i.alt),
  sections: [...document.querySelectorAll('section[id]')].map(s => s.id),
  missing: [...document.querySelectorAll('td.missing')].length,
  width: document.documentElement.scrollWidth,
})"""


def test_report_in_headless_chromium(tmp_path, driver):
    page = render_report(make_results(tmp_path / "results"), tmp_path / "report", title="rdbench report (browser test)")
    html = page.read_text()
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {"width": 1280, "height": 1600,
                                                                  "deviceScaleFactor": 1, "mobile": False})
    url = page.as_uri()
    driver.get(url)  # returns once the page and all its images have loaded (page load strategy "normal")
    WebDriverWait(driver, 30, poll_frequency=0.05).until(
        lambda d: d.execute_script("return location.href + ' ' + document.readyState") == f"{url} complete")
    dom = json.loads(driver.execute_script(PROBE))
    shot = driver.get_screenshot_as_png()
    console = driver.get_log("browser")
    events = [json.loads(e["message"])["message"] for e in driver.get_log("performance")]
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "report.png").write_bytes(shot)

    assert dom["tables"] == html.count("<table") >= 20  # 1 + 3 + 5 + 1 + 3 + 3 metric tables, runs, provenance
    assert [t.split(":")[0] for t in dom["paperTables"]] == ["Table 1", "Table 2", "Table 3", "Table 5", "Table 5",
                                                                "Table 5"]
    assert dom["images"] == html.count("<img") >= 8 and dom["broken"] == []
    assert dom["sections"] == ["warnings", "tables", "speed", "fig5", "galleries", "curves", "runs", "provenance"]
    assert dom["missing"] > 0
    # the report's own requests: the tab's first page (chrome://new-tab-page and its chrome://resources)
    # is in the log too
    requests = [e["params"]["request"]["url"] for e in events if e.get("method") == "Network.requestWillBeSent"
                and e["params"].get("documentURL") == url]
    assert url in requests and all(u.startswith(("file:", "data:")) for u in requests), requests
    # SEVERE: console.error / console.assert, uncaught exceptions, and the browser's own errors (a load the
    # Content-Security-Policy refused, a failed request)
    errors = [e for e in console if e["level"] == "SEVERE"]
    assert errors == []
