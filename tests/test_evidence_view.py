"""AppTest: the Mitigations page's before/after section and the Nodes page's evidence section (demo fleet,
no Prometheus): verdicts from probe runs, and "not collected" said plainly."""

from __future__ import annotations

import json

import pytest
from streamlit.testing.v1 import AppTest

from tests.builders import audit_record
from tests.test_mitigate_page import APP, PAGE


@pytest.fixture(autouse=True)
def _clean(clean_app, tmp_path):
    audit, probes = tmp_path / "audit.jsonl", tmp_path / "probes.jsonl"
    audit.write_text(json.dumps(audit_record("aks-weu", "2026-01-01T10:00:00.000000Z", "b1")) + "\n")

    def run(t: str, slow: int) -> str:
        res = {"node": "n1", "resolver": "glibc", "status": "ok", "report": {"lookups": 40, "ge_2_5s": slow}}
        return json.dumps({"time": t, "cluster": "aks-weu", "results": [res]}) + "\n"

    probes.write_text(run("2026-01-01T09:50:00Z", 12) + run("2026-01-01T10:20:00Z", 0))
    clean_app.setenv("DNSFLEET_AUDIT_LOG", str(audit))
    clean_app.setenv("DNSFLEET_PROBE_LOG", str(probes))


def test_mitigations_page_shows_probe_verdict_and_csv():
    at = AppTest.from_file(APP, default_timeout=120)
    at.run()
    at.switch_page(PAGE).run()
    assert not at.exception, [e.value for e in at.exception]
    text = "\n".join(m.value for m in at.markdown)
    assert "Probe **improved**: probe lookups >= 2.5 s 12/40 → 0/40 on 1 node" in text
    assert "Prometheus **not enough data**: no Prometheus configured" in text
    assert "Download verdicts (CSV)" in [d.proto.label for d in at.get("download_button")]


def test_nodes_page_says_evidence_is_not_collected_without_prometheus():
    at = AppTest.from_file(APP, default_timeout=120)
    at.run()
    at.switch_page("../pages/nodes.py").run()
    assert not at.exception, [e.value for e in at.exception]
    assert any("no Prometheus URL and no evidence in the snapshot" in i.value for i in at.info)


def _section(start: float, end: float) -> dict:
    return {"source": "prometheus", "start": start, "end": end, "step": 60, "cluster": {}, "nodes": {}}


def test_evidence_comes_from_the_snapshot_first_and_prometheus_only_for_the_rest(clean_app):
    from dashboard import sources

    snap = {"clusters": [{"name": "a", "evidence": _section(600.0, 4200.0)}, {"name": "b"}]}
    assert sources.evidence_window(snap) == (600.0, 4200.0)
    # no Prometheus URL: what the snapshot has, nothing invented for "b"
    assert list(sources.evidence_sections(snap, ["a", "b"], 600.0, 4200.0)) == ["a"]
    asked = []

    def fake(url, clusters, start, end):
        asked.append((url, clusters, start, end))
        return {c: _section(start, end) for c in clusters}

    clean_app.setattr(sources, "_prometheus_evidence", fake)
    clean_app.setenv("DNSFLEET_PROMETHEUS", "http://127.0.0.1:9")
    got = sources.evidence_sections(snap, ["a", "b"], 601.5, 4259.9)
    assert sorted(got) == ["a", "b"] and got["a"]["start"] == 600.0
    # only the missing cluster is queried, over whole minutes (a rerun seconds later hits the cache)
    assert asked == [("http://127.0.0.1:9", ("b",), 600.0, 4200.0)]


def test_evidence_window_without_a_snapshot_window_is_three_hours_up_to_the_replay_time(clean_app):
    from dashboard import sources

    clean_app.setenv("DNSFLEET_PROMETHEUS_TIME", "1767268800")
    assert sources.evidence_window({"clusters": [{"name": "a"}]}) == (1767268800.0 - 3 * 3600, 1767268800.0)
    assert sources.evidence_window(None) == (1767268800.0 - 3 * 3600, 1767268800.0)


def test_evidence_reads_the_operators_prometheus_with_its_credentials(clean_app, tmp_path):
    """The evidence and verify sections query the operator's DNSFLEET_PROMETHEUS as the scan does: with
    its token; a URL a visitor typed gets none; unusable settings are one line, not a traceback."""
    from dashboard.sources import evidence_prom_source

    clean_app.setenv("DNSFLEET_PROMETHEUS", "http://127.0.0.1:9090")
    clean_app.setenv("DNSFLEET_PROMETHEUS_TOKEN", "t0ken")
    assert evidence_prom_source("http://127.0.0.1:9090").token == "t0ken"
    assert evidence_prom_source("http://127.0.0.1:9091").token is None  # not the operator's
    clean_app.delenv("DNSFLEET_PROMETHEUS_TOKEN")
    clean_app.setenv("DNSFLEET_PROMETHEUS_TOKEN_FILE", str(tmp_path / "missing"))
    with pytest.raises(ValueError, match=r"^Prometheus: ") as e:
        evidence_prom_source("http://127.0.0.1:9090")
    assert "\n" not in str(e.value)
