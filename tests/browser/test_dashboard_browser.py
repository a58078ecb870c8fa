"""The dashboard in a real browser: every page on the demo fleet and on the real test fleet, no exception
element, a CSV download that parses, screenshots of every page under artifacts/screenshots/."""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path

import pytest
from playwright.sync_api import expect

from dashboard import nav
from dnsfleet.demo import demo_snapshot
from dnsfleet.engine import analyze

pytestmark = pytest.mark.browser

PAGE_HEADINGS = {
    "overview": "Fleet overview",
    "cluster": "Cluster",
    "nodes": "Nodes & kernels",
    "coredns": "CoreDNS",
    "workloads": "Workloads",
    "reports": "Reports",
}


def visit_every_page(d, prefix: str) -> list[str]:
    """Click through the navigation; each page must render its heading and no exception."""
    visited = []
    for name in nav.available():
        title = nav.PAGES[name][0]
        d.nav(title)
        if name in PAGE_HEADINGS:
            expect(d.page.get_by_role("heading", name=PAGE_HEADINGS[name], exact=True).first).to_be_visible()
        # Let plotly finish drawing before the screenshot.
        d.page.wait_for_timeout(800)
        d.assert_no_exception()
        d.screenshot(f"{prefix}-{name}")
        visited.append(name)
    return visited


def download_first_csv(d) -> tuple[str, list[dict[str, str]]]:
    button = d.page.get_by_test_id("stDownloadButton").first
    with d.page.expect_download() as info:
        button.locator("button").click()
    dl = info.value
    text = Path(dl.path()).read_text(encoding="utf-8")
    return dl.suggested_filename, list(csv.DictReader(io.StringIO(text)))


def test_demo_fleet_every_page(start_dashboard, new_page):
    top = analyze(demo_snapshot()).clusters.iloc[0]["cluster"]
    d = new_page(start_dashboard(name="demo"))
    d.goto()
    sidebar = d.page.get_by_test_id("stSidebar")
    expect(sidebar.get_by_text("DEMO FLEET", exact=True)).to_be_visible()
    expect(d.page.get_by_text(f"Highest risk: {top}")).to_be_visible()
    expect(d.page.get_by_test_id("stMetric").first).to_be_visible()

    visited = visit_every_page(d, "demo")
    assert {"overview", "cluster", "nodes", "coredns", "workloads", "reports"} <= set(visited)

    # On the reports page now: a CSV downloads and parses.
    name, rows = download_first_csv(d)
    assert name.endswith(".csv")
    assert rows, f"{name} downloaded empty"
    assert "cluster" in rows[0], f"{name} has no cluster column: {list(rows[0])}"
    assert {r["cluster"] for r in rows} & {top}


def test_demo_deep_link_to_cluster(start_dashboard, new_page):
    a = analyze(demo_snapshot())
    top, second = a.clusters.iloc[0]["cluster"], a.clusters.iloc[1]["cluster"]
    d = new_page(start_dashboard(name="deeplink"))
    d.goto()
    d.page.get_by_text(f"Highest risk: {top}").click()
    d.wait()
    expect(d.page.get_by_role("heading", name=top, exact=True)).to_be_visible()
    expect(d.page).to_have_url(re.compile(rf"/cluster\?cluster={re.escape(top)}$"))
    d.goto(f"cluster?cluster={second}")
    expect(d.page.get_by_role("heading", name=second, exact=True)).to_be_visible()
    d.assert_no_exception()
    # Changing the selection rewrites the URL, so the view can be shared.
    third = a.clusters.iloc[2]["cluster"]
    d.page.get_by_test_id("stSelectbox").first.click()
    d.page.get_by_role("option", name=third, exact=True).click()
    d.wait()
    expect(d.page).to_have_url(re.compile(rf"cluster=({re.escape(third)})"))
    expect(d.page.get_by_role("heading", name=third, exact=True)).to_be_visible()


@pytest.mark.fleet
def test_live_fleet_scan_every_page(fleet, start_dashboard, new_page):
    env = {
        "DNSFLEET_KUBECONFIG": str(fleet.kubeconfig),
        "DNSFLEET_PROMETHEUS": fleet.prometheus_url,
        "DNSFLEET_PROMETHEUS_TIME": str(fleet.metrics_end),
    }
    d = new_page(start_dashboard(env, name="live"))
    d.goto()
    sidebar = d.page.get_by_test_id("stSidebar")
    expect(d.page.get_by_text("press Scan", exact=False)).to_be_visible()
    sidebar.get_by_role("button", name="Scan").click()
    d.wait()
    expect(sidebar.get_by_text(re.compile(r"^LIVE: "))).to_be_visible()
    d.assert_no_exception()
    for ctx in fleet.contexts:
        expect(d.page.get_by_text(f"{ctx}", exact=True).first).to_be_attached()
    visit_every_page(d, "live")
    name, rows = download_first_csv(d)
    assert rows and set(fleet.contexts) <= {r["cluster"] for r in rows}, (name, rows[:3])
