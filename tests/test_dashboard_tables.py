"""AppTest of the readable tables (issue 16 §4, §5, §7): main tables show a few columns, a selected row
opens every column in full with rule ids linked, the CSV keeps every column; the Rules page opens on
the rules a link names; Level and Resolver filters are wide enough; CoreDNS 1.8.7's rcode chart is
not drawn."""

from __future__ import annotations

import copy

import pytest
from streamlit.testing.v1 import AppTest

from dashboard import views
from dnsfleet.demo import demo_snapshot
from dnsfleet.engine import analyze
from dnsfleet.rules import codes
from dnsfleet.snapshot import dumps
from tests.test_dashboard import APP, texts

pytestmark = pytest.mark.usefixtures("clean_app")


def run(page: str, query: dict[str, str] | None = None, select: tuple[str, int] | None = None) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=180)
    at.switch_page(f"../pages/{page}.py")
    for k, v in (query or {}).items():
        at.query_params[k] = v
    at.run()
    if select:  # what a click on a row sends back (AppTest cannot click a grid row)
        key, row = select
        at.session_state[key] = {"selection": {"rows": [row], "columns": [], "cells": []}}
        at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def test_workloads_table_shows_few_columns_and_the_selected_row_in_full():
    a = analyze(demo_snapshot())
    at = run("workloads", select=("workloads", 0))
    table = at.dataframe[0].value
    assert list(table.columns) == [
        "cluster", "namespace", "owner", "level", "score", "exposed_pods", "resolver", "recommended_fix", "rule"
    ]  # fmt: skip
    full = views.workload_table(a.workloads)
    first = full.iloc[0]
    body = texts(at)
    # Every column of the selected row in full, its rule ids linked to the Rules page.
    assert views.linked_markdown(first["why"]) in body
    for label in ("Image", "dnsConfig options", "Stall per lost query", "Why", "Recommended fix"):
        assert f"**{label}:**" in body
    assert "](rules?rule=" in body
    # The CSV under the table keeps every column.
    csv = [b for b in at.get("download_button") if "CSV" in b.proto.label]
    assert csv and f"all {len(full.columns)} columns" in csv[0].proto.label


def test_without_a_selection_the_table_says_how_to_see_a_row_in_full():
    at = run("nodes")
    assert "Select a node to see all its columns in full." in texts(at)
    nodes = at.dataframe[1].value
    assert "os_image" not in nodes.columns and {"kernel_version", "why", "rule"} <= set(nodes.columns)
    assert nodes["rule"].dropna().str.startswith("rules?rule=").all()


def test_cluster_recommendations_put_what_to_do_in_view_and_caveats_in_details():
    at = run("cluster", select=("recs", 0))
    factors, recs = at.dataframe[0].value, at.dataframe[1].value
    assert list(recs.columns) == ["mitigation", "target", "action", "risk_removed", "rule"]
    assert list(factors.columns) == ["factor", "points", "text", "rule"]
    assert factors["rule"].str.startswith("rules?rule=").all()
    assert "**Caveats:**" in texts(at) and "§" not in texts(at)


def test_rules_page_opens_on_the_linked_rules_and_lists_every_code():
    at = run("rules", query={"rule": "K1-K3,K8"})
    assert at.subheader[0].value == "You followed a link to K1-K3, K1, K2, K3, K8"
    labels = [e.label for e in at.expander]
    assert [lb.split("**")[1] for lb in labels[:5]] == ["K1", "K1-K3", "K2", "K3", "K8"]
    body = texts(at)
    for c in codes.registry().values():
        assert f"**{views.md_escape(c.code)}**" in body, c.code
    assert "https://github.com/golang/go/issues/35521" in body  # the public source, as written
    assert "§" not in body


def test_rules_page_without_a_link_lists_all_rules_collapsed():
    at = run("rules")
    assert len(at.expander) == len(views.rule_sections())
    assert not [s for s in at.subheader if s.value.startswith("You followed")]


def test_level_and_resolver_filters_get_half_a_row_each():
    at = run("workloads", query={"level": "high", "resolver": "glibc"})
    level = next(m for m in at.multiselect if m.label == "Level")
    resolver = next(m for m in at.multiselect if m.label == "Resolver")
    assert level.value == ["high"] and resolver.value == ["glibc"]
    pairs = [c for c in at.columns if any(m.label in ("Level", "Resolver") for m in c.multiselect)]
    assert len(pairs) == 2 and {round(c.proto.weight, 3) for c in pairs} == {0.5}


def test_coredns_187_rcode_chart_is_replaced_by_its_caveat(tmp_path, monkeypatch):
    snap = copy.deepcopy(demo_snapshot())
    target = next(c for c in snap["clusters"] if c["name"] == "onprem-dc1")
    target["dns"]["coredns_version"] = "1.8.7"
    path = tmp_path / "fleet.json.gz"
    path.write_bytes(dumps(snap))
    monkeypatch.setenv("DNSFLEET_SNAPSHOT", str(path))
    at = run("coredns", query={"focus": "onprem-dc1"})
    assert "rcodes" not in [c.key for c in at.get("plotly_chart")]
    note = next(i.value for i in at.info if i.value.startswith("Not drawn"))
    assert "1.8.7" in note and "coredns/coredns/issues/5125" in note
    other = run("coredns", query={"focus": "gke-analytics"})
    assert "rcodes" in [c.key for c in other.get("plotly_chart")]


def test_cluster_page_rounds_a_half_point_score_as_the_tables_do():
    snap = demo_snapshot()
    a = analyze(snap)
    half = a.clusters[a.clusters["score"].notna() & ((a.clusters["score"] * 2) % 2 == 1)]
    assert len(half), "the demo has a cluster whose score ends in .5"
    row = half.iloc[0]
    at = run("cluster", query={"cluster": row["cluster"]})
    shown = next(m.value for m in at.metric if m.label == "Risk score")
    assert shown == f"{int(row['score'] + 0.5)} / 100"  # 91.5 -> 92, as in the overview table
    assert f"· {int(row['score'] + 0.5)}/100" in texts(at)  # the level badge
