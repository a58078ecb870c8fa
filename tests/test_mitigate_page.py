"""AppTest of the Mitigations page through the app (st.navigation): buttons are disabled with the reason
when writes are off, when SelfSubjectAccessReview denies, and on data that is not live."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

APP = str(Path(__file__).resolve().parents[1] / "dashboard" / "app.py")
PAGE = "../pages/mitigations.py"
CHECKOUT = "shop/Deployment/checkout (glibc)"


@pytest.fixture(autouse=True)
def _clean(monkeypatch, tmp_path):
    for k in ("DNSFLEET_ALLOW_WRITES", "DNSFLEET_SINGLE_USER", "DNSFLEET_KUBECONFIG", "KUBECONFIG"):
        monkeypatch.delenv(k, raising=False)
    for k in ("DNSFLEET_SNAPSHOT",):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("DNSFLEET_AUDIT_LOG", str(tmp_path / "audit.jsonl"))
    st.cache_data.clear()
    st.cache_resource.clear()
    yield
    st.cache_data.clear()


def _button(at: AppTest, key: str):
    return next(b for b in at.button if b.key == key)


def _captions(at: AppTest) -> str:
    return "\n".join(c.value for c in at.caption)


def _live_page(monkeypatch, kubeconfig: Path, cluster: str = "aks-legacy") -> AppTest:
    monkeypatch.setenv("DNSFLEET_KUBECONFIG", str(kubeconfig))
    at = AppTest.from_file(APP, default_timeout=120)
    at.run()
    at.checkbox(key="src.all_contexts").uncheck().run()
    at.multiselect(key="src.contexts").set_value([cluster]).run()
    next(b for b in at.sidebar.button if b.label == "Scan").click().run()
    assert not at.exception, [e.value for e in at.exception]
    at.switch_page(PAGE).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def test_demo_fleet_page_plans_from_the_snapshot_and_disables_dry_run_and_apply():
    at = AppTest.from_file(APP, default_timeout=60)
    at.run()
    at.switch_page(PAGE).run()
    assert not at.exception
    assert at.title[0].value == "Mitigations"
    assert "Writes are **off**" in at.info[0].value
    assert "plans and diffs are computed from the snapshot's own objects" in at.info[1].value
    assert _button(at, "mit.undo_btn").disabled
    _button(at, "mit.pick_recs").click().run()
    picked = at.multiselect(key="mit.workloads").value
    assert picked and all(p.endswith("(glibc)") for p in picked)  # the engine recommends SRR for glibc only
    assert not _button(at, "mit.plan_btn").disabled
    _button(at, "mit.plan_btn").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert at.subheader[0].value.endswith("(from the snapshot)")
    diff = at.code[0].value
    assert re.search(r"^\+\s+- name: single-request-reopen$", diff, re.M), diff
    assert _button(at, "mit.dry_btn").disabled and _button(at, "mit.apply_btn").disabled
    assert "Dry run disabled: dry run, apply and undo need the live cluster" in _captions(at)
    headers = [h.value for h in at.subheader]
    assert headers.index("Undo") > 0  # the plan renders above the Undo section
    at.radio(key="mit.kind").set_value("NodeLocal DNSCache").run()
    assert not at.exception
    assert "Download rendered YAML" in [d.proto.label for d in at.get("download_button")]
    at.radio(key="mit.kind").set_value("Kernel upgrades").run()
    assert not at.exception
    assert any(d.proto.label.startswith("Download upgrade plan") for d in at.get("download_button"))


@pytest.mark.fleet
def test_writes_off_plan_and_dry_run_work_apply_is_disabled(fleet, monkeypatch):
    at = _live_page(monkeypatch, fleet.kubeconfig)
    assert _button(at, "mit.plan_btn").disabled  # no workload chosen yet
    at.multiselect(key="mit.workloads").set_value([CHECKOUT]).run()
    _button(at, "mit.plan_btn").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert any(s.value == "Plan: resolver-options on aks-legacy" for s in at.subheader)
    assert "+        - name: single-request-reopen" in at.code[0].value
    dry = _button(at, "mit.dry_btn")
    assert not dry.disabled
    dry.click().run()
    (results,) = [d.value for d in at.dataframe if list(d.value.columns) == ["object", "result", "message"]]
    assert list(results["result"]) == ["ok"] and list(results["object"]) == ["Deployment shop/checkout"]
    at.text_input(key="mit.confirm").input("aks-legacy").run()
    apply = _button(at, "mit.apply_btn")
    assert apply.disabled
    assert "writes are off (start with DNSFLEET_ALLOW_WRITES=1)" in _captions(at)


@pytest.mark.fleet
def test_viewer_with_writes_on_is_disabled_by_ssar(fleet, monkeypatch):
    monkeypatch.setenv("DNSFLEET_ALLOW_WRITES", "1")
    monkeypatch.setenv("DNSFLEET_SINGLE_USER", "1")  # one person's local dashboard
    at = _live_page(monkeypatch, fleet.kubeconfig_for("viewer"))
    assert "Writes are **enabled**" in at.warning[0].value
    at.multiselect(key="mit.workloads").set_value([CHECKOUT]).run()
    _button(at, "mit.plan_btn").click().run()
    assert not at.exception
    _button(at, "mit.dry_btn").click().run()
    at.text_input(key="mit.confirm").input("aks-legacy").run()
    assert _button(at, "mit.apply_btn").disabled
    caps = _captions(at)
    assert "not allowed to patch deployments.apps in namespace shop on aks-legacy" in caps
    assert "writes are off" not in caps


@pytest.mark.fleet
def test_nodelocal_plan_apply_undo_on_the_page(fleet, monkeypatch):
    from dnsfleet.kube import Kube, ObjectRef
    from dnsfleet.mitigate import nodelocal as N

    monkeypatch.setenv("DNSFLEET_ALLOW_WRITES", "1")
    monkeypatch.setenv("DNSFLEET_SINGLE_USER", "1")  # one person's local dashboard
    kube = Kube.from_kubeconfig(fleet.kubeconfig, "aks-legacy")
    try:
        at = _live_page(monkeypatch, fleet.kubeconfig)
        at.radio(key="mit.kind").set_value("NodeLocal DNSCache").run()
        assert at.selectbox(key="mit.mode").value == "iptables"  # from the scan's kube-proxy mode
        assert at.text_input(key="mit.ip").value == fleet.expected("aks-legacy")["service_ip"]
        assert "NOTRACK" in "\n".join(m.value for m in at.markdown)  # calico caveat
        for step in ("mit.plan_btn", "mit.dry_btn"):
            _button(at, step).click().run()
            assert not at.exception and not at.error
        (dry,) = [d.value for d in at.dataframe if list(d.value.columns) == ["object", "result", "message"]]
        assert list(dry["result"]) == ["ok"] * 5
        at.text_input(key="mit.confirm").input("aks-legacy").run()
        _button(at, "mit.apply_btn").click().run()
        assert "5 of 5 object(s) applied." in [s.value for s in at.success]
        assert len(kube.list("DaemonSet", "kube-system", N.SELECTOR)) == 1
        assert "5 record(s)" in _captions(at)

        _button(at, "mit.undo_btn").click().run()
        assert any(s.value == "Plan: undo-nodelocal-dnscache on aks-legacy" for s in at.subheader)
        assert _button(at, "mit.apply_btn").disabled  # new plan: dry run and confirmation again
        _button(at, "mit.dry_btn").click().run()
        at.text_input(key="mit.confirm").input("aks-legacy").run()
        _button(at, "mit.apply_btn").click().run()
        assert "5 of 5 object(s) applied." in [s.value for s in at.success]
        for kind, name in N.OBJECTS:
            assert kube.get(ObjectRef(kind, "kube-system", name)) is None
    finally:
        for kind, _ in N.OBJECTS:
            for o in kube.list(kind, "kube-system", N.SELECTOR):
                kube.request("DELETE", ObjectRef(kind, "kube-system", o["metadata"]["name"]).path())


def test_deep_link_preselects_cluster_section_and_workload():
    from dnsfleet.demo import demo_snapshot
    from dnsfleet.engine import analyze

    recs = analyze(demo_snapshot()).recommendations
    rec = recs[recs["mitigation"] == "single-request-reopen"].iloc[-1]
    at = AppTest.from_file(APP, default_timeout=60)
    at.run()
    at.query_params["cluster"] = rec["cluster"]
    at.query_params["mitigation"] = "single-request-reopen"
    at.query_params["workload"] = rec["target"]
    at.switch_page(PAGE).run()
    assert not at.exception
    assert at.selectbox(key="mit.cluster").value == rec["cluster"]
    assert at.radio(key="mit.kind").value == "Resolver options"
    ns, kind, name = rec["target"].split("/")[1:]
    (picked,) = at.multiselect(key="mit.workloads").value
    assert picked.startswith(f"{ns}/{kind}/{name} (")
