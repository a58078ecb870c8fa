"""Real-browser fixtures: Debian's /usr/bin/chromium driven by Playwright (never a downloaded browser)
against ``streamlit run dashboard/app.py`` on a free 127.0.0.1 port.

Fixtures (reusable by other browser tests, e.g. the mitigations click-through):

- ``browser``: one headless Chromium for the session.
- ``start_dashboard(env=None, name="app") -> DashboardServer``: starts Streamlit with the extra
  environment (e.g. ``{"DNSFLEET_KUBECONFIG": ...}``), waits for ``/_stcore/health``, stops it at the end
  of the test module.
- ``new_page(server) -> Dash``: a fresh browser context (1600x1000, downloads on) opened on the server,
  wrapped with ``goto(page_path)``, ``wait()``, ``assert_no_exception()`` and ``screenshot(name)``.
  Every request the page makes to a host outside 127.0.0.0/8 (or ::1, localhost) is aborted before it
  leaves and fails the test at teardown, naming the URL: the dashboard must load nothing from outside.

Screenshots go to ``artifacts/screenshots/`` (git-ignored).
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, Route, expect, sync_playwright

from tests.browser.harness import CHROMIUM, CHROMIUM_ARGS, clean_env, outside_loopback, streamlit_command

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "artifacts" / "screenshots"
STARTUP_TIMEOUT_S = 60.0
RUN_TIMEOUT_MS = 90_000


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class DashboardServer:
    """One ``streamlit run dashboard/app.py`` process, stopped by its pid."""

    url: str
    proc: subprocess.Popen
    log: Path

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    def log_tail(self, n: int = 40) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return "(no log)"


def start_server(workdir: Path, env: dict[str, str] | None = None, name: str = "app") -> DashboardServer:
    port = free_port()
    log = workdir / f"streamlit-{name}-{port}.log"
    # Live scans this server keeps (dashboard.livestore) stay with it, not in the user's state dir.
    full_env = clean_env(**{"DNSFLEET_STATE_DIR": str(workdir / f"state-{name}-{port}"), **(env or {})})
    cmd = streamlit_command(port)
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=full_env, stdout=out, stderr=subprocess.STDOUT)
    server = DashboardServer(f"http://127.0.0.1:{port}", proc, log)
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"streamlit exited with {proc.returncode}:\n{server.log_tail()}")
        try:
            with urllib.request.urlopen(f"{server.url}/_stcore/health", timeout=2) as r:
                if r.read().strip() == b"ok":
                    return server
        except OSError:
            pass
        time.sleep(0.3)
    server.stop()
    raise RuntimeError(f"streamlit did not become healthy in {STARTUP_TIMEOUT_S:.0f} s:\n{server.log_tail()}")


@dataclass
class Dash:
    """A browser page on the dashboard, with the waits Streamlit's own e2e suite uses."""

    page: Page
    server: DashboardServer
    shots: list[Path] = field(default_factory=list)

    def wait(self, timeout_ms: int = RUN_TIMEOUT_MS) -> None:
        """Wait until the app is connected and the script has finished running."""
        app = self.page.locator("[data-testid='stApp']")
        expect(app).to_have_attribute("data-test-connection-state", "CONNECTED", timeout=timeout_ms)
        # A rerun can start a moment after an interaction: let it begin, then wait for it to end.
        self.page.wait_for_timeout(300)
        expect(app).to_have_attribute("data-test-script-state", "notRunning", timeout=timeout_ms)
        self.page.wait_for_timeout(300)
        expect(app).to_have_attribute("data-test-script-state", "notRunning", timeout=timeout_ms)

    def goto(self, path: str = "") -> None:
        self.page.goto(f"{self.server.url}/{path}")
        expect(self.page.get_by_test_id("stAppViewContainer")).to_be_visible(timeout=RUN_TIMEOUT_MS)
        # The first run of a fresh session starts only after the websocket connects: wait for content.
        main = self.page.get_by_test_id("stMain")
        expect(main.locator("[data-testid='stHeading'], [data-testid='stAlert']").first).to_be_visible(
            timeout=RUN_TIMEOUT_MS
        )
        self.wait()

    def nav(self, title: str) -> None:
        """Click a page in the sidebar navigation."""
        self.page.get_by_test_id("stSidebarNav").get_by_role("link", name=title).click()
        self.wait()

    def assert_no_exception(self) -> None:
        exc = self.page.get_by_test_id("stException")
        if exc.count():
            raise AssertionError(f"exception on the page: {exc.first.inner_text()[:2000]}")

    def screenshot(self, name: str, max_height: int = 5000) -> Path:
        """The whole page: Streamlit scrolls inside its main block, so the viewport is stretched to the
        content height for the shot, then restored."""
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        path = SCREENSHOTS / f"{name}.png"
        size = self.page.viewport_size or {"width": 1600, "height": 1000}
        height = self.page.evaluate(
            "() => { const m = document.querySelector('[data-testid=\"stMain\"]');"
            " return m ? m.scrollHeight : 0; }"
        )
        self.page.set_viewport_size(
            {"width": size["width"], "height": min(max(height, size["height"]), max_height)}
        )
        self.page.wait_for_timeout(700)  # let plotly re-layout at the new size
        self.page.screenshot(path=str(path))
        self.page.set_viewport_size(size)
        self.shots.append(path)
        return path


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    expect.set_options(timeout=RUN_TIMEOUT_MS)
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(f"{CHROMIUM} missing: run `make system-deps` (tests/fleet/install-system-deps.sh)")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture(scope="module")
def start_dashboard(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., DashboardServer]]:
    servers: list[DashboardServer] = []
    workdir = tmp_path_factory.mktemp("streamlit")

    def start(env: dict[str, str] | None = None, name: str = "app") -> DashboardServer:
        s = start_server(workdir, env, name)
        servers.append(s)
        return s

    yield start
    for s in servers:
        s.stop()


@pytest.fixture
def new_page(browser: Browser) -> Iterator[Callable[[DashboardServer], Dash]]:
    contexts: list[BrowserContext] = []
    blocked: list[str] = []

    def block(route: Route) -> None:
        blocked.append(route.request.url)
        route.abort("blockedbyclient")

    def open_page(server: DashboardServer) -> Dash:
        ctx = browser.new_context(viewport={"width": 1600, "height": 1000}, accept_downloads=True)
        ctx.set_default_timeout(RUN_TIMEOUT_MS)
        ctx.route(outside_loopback, block)
        contexts.append(ctx)
        return Dash(ctx.new_page(), server)

    yield open_page
    for ctx in contexts:
        ctx.close()
    assert blocked == [], f"the page requested hosts outside loopback: {sorted(set(blocked))[:5]}"
