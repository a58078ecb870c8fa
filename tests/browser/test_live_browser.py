"""Issue 16 in a real browser: a live scan's link opens the same data in another browser context
without scanning; the demo's Mitigations page shows a plan and its diff; a Prometheus whose samples
are older than the query time is named on the CoreDNS page."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from playwright.sync_api import expect

pytestmark = pytest.mark.browser


def kept_scans(server, name: str) -> list[Path]:
    """The scans a server keeps (its state dir is set by tests/browser/conftest.py's start_server)."""
    state = server.log.parent / f"state-{name}-{server.url.rsplit(':', 1)[1]}"
    return sorted((state / "live-scans").glob("*.meta.json"))


@pytest.mark.fleet
def test_a_live_scan_link_opens_the_same_data_in_a_new_browser_context(fleet, start_dashboard, new_page):
    env = {
        "DNSFLEET_KUBECONFIG": str(fleet.kubeconfig),
        "DNSFLEET_PROMETHEUS": fleet.prometheus_url,
        "DNSFLEET_PROMETHEUS_TIME": str(fleet.metrics_end),
    }
    server = start_dashboard(env, name="shared")
    first = new_page(server)
    first.goto()
    sidebar = first.page.get_by_test_id("stSidebar")
    sidebar.get_by_role("button", name="Scan", exact=True).click()
    first.wait()
    expect(sidebar.get_by_role("button", name="Rescan", exact=True)).to_be_visible()
    expect(first.page).to_have_url(re.compile(r"[?&]scan=[A-Za-z0-9_-]{8,}"))
    link = first.page.url
    scan_id = re.search(r"scan=([A-Za-z0-9_-]+)", link).group(1)
    badge = sidebar.get_by_text(re.compile(r"^LIVE: ")).inner_text()
    first.screenshot("live-scanned")
    assert len(kept_scans(server, "shared")) == 1

    # A colleague opens the link: a new browser context, a new session, the same data, no scan.
    other = new_page(server)
    other.goto(link.removeprefix(server.url + "/"))
    other_sidebar = other.page.get_by_test_id("stSidebar")
    expect(other_sidebar.get_by_text(badge, exact=True)).to_be_visible()
    expect(
        other_sidebar.get_by_text(re.compile(r"^Scanned \d{4}-\d\d-\d\d .* UTC \(.* ago\)$"))
    ).to_be_visible()
    expect(other_sidebar.get_by_role("button", name="Rescan", exact=True)).to_be_visible()
    expect(other.page.get_by_text("press Scan", exact=False)).to_have_count(0)
    for ctx in fleet.contexts:
        expect(other.page.get_by_text(ctx, exact=True).first).to_be_attached()
    other.assert_no_exception()
    other.screenshot("live-shared-link")
    # "details ↗" and page links carry the scan: the Cluster page of that scan, still no new scan
    other.goto(f"cluster?cluster={fleet.contexts[0]}&scan={scan_id}")
    expect(other.page.get_by_role("heading", name=fleet.contexts[0], exact=True)).to_be_visible()
    expect(other.page.get_by_role("link", name=f"Nodes of {fleet.contexts[0]}")).to_be_visible()
    other.assert_no_exception()
    assert len(kept_scans(server, "shared")) == 1


def test_demo_mitigations_plan_and_diff(start_dashboard, new_page):
    d = new_page(start_dashboard(name="demo-plan"))
    d.goto("mitigations")
    d.assert_no_exception()
    expect(
        d.page.get_by_text("plans and diffs are computed from the snapshot's own objects", exact=False)
    ).to_be_visible()
    d.page.get_by_role("button", name=re.compile(r"^Select the \d+ workload\(s\) recommended")).click()
    d.wait()
    plan = d.page.get_by_role("button", name="Plan", exact=True)
    expect(plan).to_be_enabled()
    plan.click()
    d.wait()
    d.assert_no_exception()
    expect(
        d.page.get_by_role(
            "heading", name=re.compile(r"^Plan: resolver-options on .* \(from the snapshot\)$")
        )
    ).to_be_visible()
    expect(d.page.get_by_test_id("stCode").first).to_contain_text("single-request-reopen")
    expect(d.page.get_by_role("button", name="Dry run", exact=True)).to_be_disabled()
    expect(d.page.get_by_role("button", name="Apply", exact=True)).to_be_disabled()
    expect(
        d.page.get_by_text("Dry run disabled: dry run, apply and undo need the live cluster", exact=False)
    ).to_be_visible()
    # the plan comes before the Undo section
    plan_box = d.page.get_by_role("heading", name=re.compile(r"^Plan: ")).bounding_box()
    undo_box = d.page.get_by_role("heading", name="Undo", exact=True).bounding_box()
    assert plan_box and undo_box and plan_box["y"] < undo_box["y"]
    d.screenshot("demo-mitigations-plan")


@pytest.mark.fleet
def test_stale_prometheus_is_named_on_the_coredns_page(fleet, start_dashboard, new_page):
    env = {
        "DNSFLEET_KUBECONFIG": str(fleet.kubeconfig),
        "DNSFLEET_PROMETHEUS": fleet.prometheus_url,
        "DNSFLEET_PROMETHEUS_TIME": str(fleet.metrics_end + 2 * 3600),  # two hours after the newest sample
    }
    d = new_page(start_dashboard(env, name="stale"))
    d.goto()
    d.page.get_by_test_id("stSidebar").get_by_role("button", name="Scan", exact=True).click()
    d.wait()
    d.nav("CoreDNS")
    d.assert_no_exception()
    warning = d.page.get_by_test_id("stAlert").filter(has_text="CoreDNS metrics missing")
    expect(warning).to_contain_text("Prometheus reachable; newest CoreDNS sample at")
    expect(warning).to_contain_text("outside the window")
    expect(d.page.get_by_text("Scores computed without metrics", exact=False)).to_be_visible()
    expect(d.page.get_by_text("need a Prometheus URL", exact=False)).to_have_count(0)
    d.screenshot("stale-prometheus-coredns")
