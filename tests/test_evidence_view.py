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
