"""Readable tables and charts (issue 16 §4-§7): one score rounding everywhere, legends that cannot
cover a title, every heatmap row labelled, phone variants, the treemap sized by exposed pods, the
CoreDNS 1.8.7 rcode caveat, rule ids linked to a Rules page generated from the registry."""

from __future__ import annotations

import itertools

import pandas as pd
import pytest

from dashboard import charts, views
from dnsfleet.rules import codes
from dnsfleet.verdicts import round_score, score_text
from tests.test_dashboard_charts import clusters, frame

# --- one score rounding ---------------------------------------------------------------------------


def test_a_half_point_score_reads_the_same_in_chart_badge_and_table():
    cl = clusters(4)
    cl.loc[0, "score"] = 78.5
    cl.loc[1, "score"] = 2.5
    bar = charts.ranking_bar(cl)
    labels = {y: t for tr in bar.data for y, t in zip(tr.y, tr.text, strict=True)}
    table = views.cluster_table(cl).set_index("cluster")["score"]
    assert labels["c000"] == "79" == str(table["c000"]) == score_text(78.5)
    # Python's format() rounds halves to even (78.5 -> "78", 2.5 -> "2"): not what a reader expects.
    assert labels["c001"] == "3" == str(table["c001"])
    assert "score 79 / 100" in next(t for tr in bar.data for t in tr.hovertext if "c000" in t)


def test_round_score_keeps_missing_scores_missing():
    s = round_score(pd.Series([78.5, 78.49, None, 0.0]))
    assert s.tolist()[:2] == [79, 78] and pd.isna(s[2]) and s[3] == 0
    assert score_text(None) == "n/a" and score_text(float("nan"), na="-") == "-"


# --- titles and legends ---------------------------------------------------------------------------


def test_legend_sits_above_the_plot_and_the_title_is_lifted_out_for_display():
    from tests.test_dashboard_charts import series

    fig = charts.latency_quantiles(series(3), "c000")
    assert fig.layout.title.text.startswith("CoreDNS latency quantiles")
    assert fig.layout.legend.yanchor == "bottom" and fig.layout.legend.y > 1
    title, shown = charts.displayed(fig)
    assert title == fig.layout.title.text
    assert not shown.layout.title.text  # the page renders it as text above the chart
    assert fig.layout.title.text == title, "displayed() must not change the built figure"


# --- heatmap: every row labelled, phone variant ---------------------------------------------------


@pytest.mark.parametrize("n", [6, 12, 40])
def test_heatmap_labels_every_cluster_row(n):
    fig = charts.factor_heatmap(clusters(n))
    names = list(charts.ranked(clusters(n))["cluster"])
    assert fig.layout.yaxis.tickmode == "array"
    assert list(fig.layout.yaxis.tickvals) == names == list(fig.layout.yaxis.ticktext)
    assert fig.layout.height >= 26 * n  # room for every label


def test_compact_heatmap_fits_a_phone():
    wide, narrow = charts.factor_heatmap(clusters(8)), charts.factor_heatmap(clusters(8), compact=True)
    assert narrow.layout.xaxis.tickangle == -90 and narrow.layout.font.size < wide.layout.font.size
    assert max(len(x) for x in narrow.data[0].x) <= 8
    assert narrow.data[0].customdata[0][-1] == "conntrack evidence"  # the full name in the hover
    assert list(narrow.data[0].text[0]) == list(wide.data[0].text[0])  # the same numbers


# --- CoreDNS comparison stacked for a phone -------------------------------------------------------


def coredns_metrics(n: int = 5) -> pd.DataFrame:
    rows = [
        {"cluster": f"c{i}", "qps": 100.0 * i, "p99_ms": 2.0, "forward_p99_ms": 20.0, "servfail_share": 0.01}
        for i in range(n)
    ]
    return frame("coredns_metrics", rows)


def test_coredns_comparison_stacked_gives_each_panel_its_own_row_and_labels():
    wide = charts.coredns_comparison(coredns_metrics())
    tall = charts.coredns_comparison(coredns_metrics(), stacked=True)
    assert {tr.xaxis for tr in wide.data} == {"x", "x2", "x3", "x4"}
    axes = ("", 2, 3, 4)
    assert len({wide.layout[f"yaxis{i}"].domain for i in axes}) == 1  # one row, side by side
    domains = sorted(tall.layout[f"yaxis{i}"].domain for i in axes)
    assert len(set(domains)) == 4, "one row per panel"
    assert all(a[1] <= b[0] for a, b in itertools.pairwise(domains)), "panels overlap"
    assert tall.layout.height > wide.layout.height


# --- treemap sized by exposed pods ----------------------------------------------------------------


def workloads() -> pd.DataFrame:
    rows = [
        {"cluster": "big", "namespace": "a", "workload_id": "w1", "kind": "Deployment", "name": "safe",
         "pods": 1000, "exposed_pods": 0, "level": "low", "score": 0.0, "resolver": "go"},
        {"cluster": "small", "namespace": "b", "workload_id": "w2", "kind": "Deployment", "name": "risky",
         "pods": 4, "exposed_pods": 4, "level": "high", "score": 90.0, "resolver": "glibc"},
    ]  # fmt: skip
    return frame("workloads", rows, risk=True)


def test_treemap_sized_by_exposed_pods_drops_safe_workloads():
    by_pods = charts.workload_treemap(workloads()).data[0]
    by_exposed = charts.workload_treemap(workloads(), size="exposed").data[0]
    assert dict(zip(by_pods.ids, by_pods.values, strict=True))["c/big"] == 1000
    values = dict(zip(by_exposed.ids, by_exposed.values, strict=True))
    assert "c/big" not in values and values["c/small"] == 4 == values["w/w2"]
    assert "size = exposed pods" in charts.workload_treemap(workloads(), size="exposed").layout.title.text
    with pytest.raises(ValueError, match="size must be one of"):
        charts.workload_treemap(workloads(), size="cpu")


def test_treemap_by_exposed_with_nothing_exposed_says_so():
    wl = workloads()
    wl["exposed_pods"] = 0
    fig = charts.workload_treemap(wl, size="exposed")
    assert "No workloads with exposed pods" in fig.layout.annotations[0].text


# --- CoreDNS 1.8.7 rcode caveat -------------------------------------------------------------------


def test_rcode_chart_caveat_for_coredns_187_only():
    dns = frame(
        "dns_service",
        [{"cluster": "old", "coredns_version": "1.8.7"}, {"cluster": "new", "coredns_version": "v1.11.1"}],
    )
    caveat = views.rcode_caveat(dns, "old")
    assert caveat and "1.8.7" in caveat and "coredns/coredns/issues/5125" in caveat
    assert views.rcode_caveat(dns, "new") is None
    assert views.rcode_caveat(dns, "absent") is None


# --- rule ids and the Rules page ------------------------------------------------------------------


def test_rule_sections_cover_every_code_of_the_registry_once():
    sections = views.rule_sections()
    listed = [c.code for s in sections for c in s.codes]
    assert sorted(listed) == sorted(codes.registry())
    rules = [s.rule for s in sections]
    assert rules.index("K8") < rules.index("P1") < rules.index("R11") < rules.index("D1") < rules.index("M1")
    assert rules.index("R2") < rules.index("R10")  # numeric, not text order
    assert len({s.anchor for s in sections}) == len(sections)
    for s in sections:
        assert "§" not in s.title and all("§" not in c.source and "facts" not in c.source for c in s.codes)


def test_rule_ids_in_text_become_links_and_other_words_do_not():
    text = "4.15.0-1030-azure (ubuntu): fix status unknown (K8); conntrack grew (D1, K7); dc1 K8s R2/R3"
    assert views.rule_ids(text) == ["K8", "D1", "K7", "R2", "R3"]
    md = views.linked_markdown(text)
    assert "[K8](rules?rule=K8)" in md and "[D1](rules?rule=D1)" in md
    assert "dc1" in md and "K8s" in md and "[K8s" not in md
    assert views.rules_url(["K1-K3", "K8"]) == "rules?rule=K1-K3,K8"
    assert views.expand_rules(["K1-K3,K8,Z9"]) == ["K1-K3", "K1", "K2", "K3", "K8"]


def test_markdown_from_data_cannot_inject_links_html_or_latex():
    md = views.linked_markdown("[x](http://evil) <b>$a$</b> *b* _c_")
    for raw in ("[x](", "<b>", "$a$", "*b*", "_c_"):
        assert raw not in md


def test_rules_link_column_per_row():
    links = views.rule_links(pd.Series(["race open (K1-K3); (R11)", "no ids here", None]))
    assert links.tolist() == ["rules?rule=K1-K3,R11", None, None]


def test_no_notebook_references_in_the_assessment_texts():
    from dnsfleet.demo import demo_snapshot
    from dnsfleet.engine import analyze

    a = analyze(demo_snapshot())
    for name in ("clusters", "nodes", "workloads", "recommendations", "factors", "dns_service"):
        df = getattr(a, name)
        for col in df.columns:
            if df[col].dtype == object or str(df[col].dtype).startswith("string"):
                bad = df[col].dropna().astype(str)
                bad = bad[bad.str.contains("§", regex=False)]
                assert bad.empty, f"{name}.{col}: {bad.iloc[0]}"


# --- every unknown says what is missing and how to provide it ------------------------------------


def test_every_unknown_row_says_what_would_decide_it():
    from dnsfleet.demo import demo_snapshot
    from dnsfleet.engine import analyze

    a = analyze(demo_snapshot())
    for name in ("workloads", "nodes"):
        df = getattr(a, name)
        unknown = df[df["level"] == "unknown"]
        assert len(unknown), f"the demo has unknown {name}"
        assert unknown["why"].str.contains("to decide: ", regex=False).all(), unknown["why"].iloc[0]
        known = df[df["level"].isin(["high", "low"])]
        assert not known["why"].str.contains("to decide: ", regex=False).any()
    cl = a.clusters[(a.clusters["level"] == "unknown") & (a.clusters["status"] != "failed")]
    assert len(cl) and cl["why"].str.contains("would resolve it: ", regex=False).all()


def test_unknown_kernel_and_resolver_say_how_to_provide_them():
    from dnsfleet.demo import demo_snapshot
    from dnsfleet.engine import analyze

    wl = analyze(demo_snapshot()).workloads
    r11 = wl[(wl["level"] == "unknown") & wl["why"].str.contains("(R11)", regex=False)]
    assert r11["why"].str.contains("dnsfleet.io/resolver or a --resolver-map", regex=False).all()
    k8 = wl[(wl["level"] == "unknown") & wl["why"].str.contains("fix status is unknown (K8)", regex=False)]
    assert len(k8) and k8["why"].str.contains("vendor statement", regex=False).all()
