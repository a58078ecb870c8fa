"""Dashboard timing in headless Chromium (Debian's /usr/bin/chromium through Playwright), with the
browser tests' launch arguments and "script finished" signal
(``[data-testid='stApp'][data-test-script-state='notRunning']``).

A script in the page records every change of ``data-test-script-state`` with ``performance.now()``:

- cold: a fresh ``streamlit run`` with ``DNSFLEET_SNAPSHOT`` = the snapshot, a fresh browser context;
  from navigation start to the end of the last script run (snapshot load, scoring, render), checked to
  be the overview with its clusters table;
- warm: on that loaded page, from the interaction to the end of the rerun it causes. The overview has
  no filter widget, so its warm figure is a rerun (the "r" shortcut: every cache hit, the whole page
  drawn again); the Workloads page's level filter is measured too, as the filter change.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any

from tests.browser.harness import CHROMIUM, CHROMIUM_ARGS, clean_env, streamlit_command

ROOT = Path(__file__).resolve().parents[1]
TIMEOUT_MS = 180_000

# Installed before any page script: logs [state, performance.now()] for each script-state change.
OBSERVER = """
window.__st = [];
const watch = (app) => {
  let last = app.getAttribute('data-test-script-state');
  window.__st.push([last, performance.now()]);
  new MutationObserver(() => {
    const s = app.getAttribute('data-test-script-state');
    if (s !== last) { last = s; window.__st.push([s, performance.now()]); }
  }).observe(app, {attributes: true, attributeFilter: ['data-test-script-state']});
};
new MutationObserver((_, obs) => {
  const app = document.querySelector("[data-testid='stApp']");
  if (app) { obs.disconnect(); watch(app); }
}).observe(document, {childList: true, subtree: true});
"""

SETTLED = """() => {
  const app = document.querySelector("[data-testid='stApp']");
  return !!app && app.getAttribute('data-test-connection-state') === 'CONNECTED'
    && app.getAttribute('data-test-script-state') === 'notRunning'
    && window.__st.some(([s]) => s === 'running');
}"""


class DashboardError(RuntimeError):
    """The dashboard could not be started or did not render the expected page (one line)."""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, snapshot: Path, log: Path) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = clean_env(DNSFLEET_SNAPSHOT=str(snapshot))
        cmd = streamlit_command(self.port)
        self.log = log
        with open(log, "wb") as out:
            self.proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise DashboardError(f"streamlit exited with {self.proc.returncode}; log: {log}")
            try:
                with urllib.request.urlopen(f"{self.url}/_stcore/health", timeout=2) as r:
                    if r.read().strip() == b"ok":
                        return
            except OSError:
                pass
            time.sleep(0.2)
        self.stop()
        raise DashboardError(f"streamlit did not become healthy in 90 s; log: {log}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def _settle(page: Any) -> float:
    """Wait for the script to finish and stay finished; returns the end of the last run (ms)."""
    page.wait_for_function(SETTLED, timeout=TIMEOUT_MS, polling=20)
    while True:
        n = page.evaluate("window.__st.length")
        page.wait_for_timeout(600)
        if page.evaluate("window.__st.length") == n and page.evaluate(SETTLED):
            break
        page.wait_for_function(SETTLED, timeout=TIMEOUT_MS, polling=20)
    states = page.evaluate("window.__st")
    return float(states[-1][1])


def _check_page(page: Any, heading: str) -> None:
    exc = page.locator("[data-testid='stException']")
    if exc.count():
        raise DashboardError(f"exception on the page: {exc.first.inner_text()[:300]!r}")
    seen = [t.strip() for t in page.locator("[data-testid='stHeading']").all_inner_texts()]
    if heading not in seen:
        raise DashboardError(f"the page did not show {heading!r} (headings: {seen[:3]})")


STARTED = "() => window.__st.some(([s]) => s === 'running')"


def _rerun_ms(page: Any, action: Any, tries: int = 1) -> float:
    """Milliseconds from ``action`` to the end of the run it starts. With ``tries`` > 1, an action that
    started no run within 15 s (a key press the page did not take) is repeated, timed afresh."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    for attempt in range(tries):
        t0 = page.evaluate("window.__st = []; performance.now()")
        action()
        if attempt < tries - 1:
            try:
                page.wait_for_function(STARTED, timeout=15_000, polling=20)
            except PlaywrightTimeout:
                continue
        return _settle(page) - float(t0)
    raise AssertionError("unreachable: the last try returns")


def measure(snapshot: Path, workdir: Path, repeat: int = 3) -> dict[str, list[float]]:
    """Cold and warm times in seconds, ``repeat`` of each; cold runs each use a fresh server."""
    from playwright.sync_api import sync_playwright

    if not os.access(CHROMIUM, os.X_OK):
        raise DashboardError(f"{CHROMIUM} missing: run `make system-deps`")
    out: dict[str, list[float]] = {"cold_s": [], "warm_rerun_s": [], "warm_filter_s": []}
    workdir.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            for i in range(repeat):
                server = Server(snapshot, workdir / f"streamlit-{i}.log")
                ctx = browser.new_context(viewport={"width": 1600, "height": 1000})
                try:
                    ctx.add_init_script(OBSERVER)
                    page = ctx.new_page()
                    page.goto(server.url + "/", wait_until="commit", timeout=TIMEOUT_MS)
                    out["cold_s"].append(_settle(page) / 1000)
                    _check_page(page, "Fleet overview")
                    page.get_by_role("heading", name="Fleet overview").click()  # focus the page, not a widget
                    rerun = _rerun_ms(page, lambda p=page: p.keyboard.press("r"), tries=3)
                    out["warm_rerun_s"].append(rerun / 1000)
                    _check_page(page, "Fleet overview")
                    page.goto(server.url + "/workloads", wait_until="commit", timeout=TIMEOUT_MS)
                    _settle(page)
                    _check_page(page, "Workloads")
                    box = page.locator("[data-testid='stMultiSelect']").filter(has_text="Level")
                    box.click()
                    choose = page.get_by_role("option", name="high")
                    out["warm_filter_s"].append(_rerun_ms(page, choose.click) / 1000)
                    _check_page(page, "Workloads")
                finally:
                    ctx.close()
                    server.stop()
        finally:
            browser.close()
    return out
