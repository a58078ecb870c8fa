"""The Mitigations page in a real browser against the real test fleet, writes enabled:
scan -> plan -> diff -> dry run -> type the cluster name -> apply -> plan undo -> dry run -> apply undo.
The Deployment ends exactly as it started; the audit log holds one record per step and object."""

from __future__ import annotations

import json

import pytest
from playwright.sync_api import TimeoutError as PlaywrightTimeout
from playwright.sync_api import expect

from dnsfleet.kube import Kube, ObjectRef

pytestmark = [pytest.mark.browser, pytest.mark.fleet]

CLUSTER = "aks-legacy"
CHECKOUT = ObjectRef("Deployment", "shop", "checkout")


def _pick(d, testid: str, label: str, option: str) -> None:
    """Choose ``option`` in the selectbox/multiselect whose label is ``label``. A rerun that lands while
    the dropdown is open can swallow the click or close the list (seen under load and right after Apply,
    which reruns the page): pick again until it shows."""
    widget = d.page.get_by_test_id(testid).filter(has=d.page.get_by_text(label, exact=True))
    for _ in range(3):
        widget.locator("input").first.click()
        try:  # a rerun (Apply reruns the page to refresh the undo choices) can close the open dropdown
            d.page.get_by_role("option", name=option, exact=True).click(timeout=20_000)
        except PlaywrightTimeout:
            d.page.keyboard.press("Escape")
            d.wait()
            continue
        d.page.keyboard.press("Escape")
        d.wait()
        # a multiselect shows its chosen values as tags (a selectbox's value is not in its text)
        if testid != "stMultiSelect" or option in widget.inner_text():
            return
    raise AssertionError(f"{label}: {option!r} not selected after 3 tries: {widget.inner_text()[:200]!r}")


def _click(d, name: str) -> None:
    button = d.page.get_by_role("button", name=name, exact=True)
    expect(button).to_be_enabled()
    button.click()
    d.wait()


def _confirm(d) -> None:
    box = d.page.get_by_test_id("stTextInput").filter(has_text="to confirm").locator("input")
    box.fill(CLUSTER)
    box.press("Enter")
    d.wait()


def test_plan_dry_run_apply_undo_click_through(fleet, start_dashboard, new_page, tmp_path):
    kube = Kube.from_kubeconfig(fleet.kubeconfig, CLUSTER)
    original = kube.get(CHECKOUT)
    audit = tmp_path / "audit.jsonl"
    server = start_dashboard(
        {
            "DNSFLEET_KUBECONFIG": str(fleet.kubeconfig),
            "DNSFLEET_ALLOW_WRITES": "1",
            "DNSFLEET_SINGLE_USER": "1",
            "DNSFLEET_AUDIT_LOG": str(audit),
        },
        name="mitigations",
    )
    d = new_page(server)
    try:
        d.goto()
        sidebar = d.page.get_by_test_id("stSidebar")
        sidebar.get_by_role("button", name="Scan").click()
        d.wait()
        d.nav("Mitigations")
        d.assert_no_exception()
        expect(d.page.get_by_text("Writes are enabled", exact=False)).to_be_visible()
        _pick(d, "stSelectbox", "Cluster", CLUSTER)
        _pick(d, "stMultiSelect", "Workloads", "shop/Deployment/checkout (glibc)")

        # plan + diff
        _click(d, "Plan")
        d.assert_no_exception()
        expect(d.page.get_by_role("heading", name=f"Plan: resolver-options on {CLUSTER}")).to_be_visible()
        expect(d.page.get_by_test_id("stCode").first).to_contain_text("single-request-reopen")
        apply_button = d.page.get_by_role("button", name="Apply", exact=True)
        expect(apply_button).to_be_disabled()
        # dry run, then the typed confirmation enables Apply
        _click(d, "Dry run")
        expect(d.page.get_by_text("Server-side dry run", exact=True)).to_be_visible()
        expect(d.page.get_by_text("run the dry run first", exact=False)).to_have_count(0)
        expect(apply_button).to_be_disabled()
        _confirm(d)
        d.screenshot("mitigations-planned")
        _click(d, "Apply")
        d.assert_no_exception()
        expect(d.page.get_by_text("1 of 1 object(s) applied.")).to_be_visible()
        live = kube.get(CHECKOUT)
        options = live["spec"]["template"]["spec"]["dnsConfig"]["options"]
        assert options == [{"name": "ndots", "value": "2"}, {"name": "single-request-reopen"}]
        d.screenshot("mitigations-applied")

        # undo goes through the same plan -> dry run -> confirm -> apply steps
        _pick(d, "stMultiSelect", "Workloads changed by dnsfleet", "shop/Deployment/checkout")
        _click(d, "Plan undo")
        expect(
            d.page.get_by_role("heading", name=f"Plan: undo-resolver-options on {CLUSTER}")
        ).to_be_visible()
        expect(apply_button).to_be_disabled()  # the confirmation was reset with the new plan
        _click(d, "Dry run")
        _confirm(d)
        _click(d, "Apply")
        d.assert_no_exception()
        expect(d.page.get_by_text("1 of 1 object(s) applied.")).to_be_visible()
        after = kube.get(CHECKOUT)
        assert after["spec"] == original["spec"]
        assert after["metadata"].get("annotations") == original["metadata"].get("annotations")
        records = [json.loads(line) for line in audit.read_text().splitlines()]
        assert [(r["mitigation"], r["result"], r["identity"]) for r in records] == [
            ("resolver-options", "ok", "admin"),
            ("undo-resolver-options", "ok", "admin"),
        ]
        expect(d.page.get_by_text("2 record(s)", exact=False)).to_be_visible()
        d.screenshot("mitigations-undone")
    finally:
        live = kube.get(CHECKOUT)
        if live is not None and live["spec"] != original["spec"]:
            kube.json_patch(CHECKOUT, [{"op": "replace", "path": "/spec", "value": original["spec"]}])
        kube.close()
