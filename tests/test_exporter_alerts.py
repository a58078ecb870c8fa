"""``dnsfleet exporter`` and ``dnsfleet alerts``: bounded cardinality (no pod ever becomes a series),
the exposition passes ``promtool check metrics``, HTTP on 127.0.0.1 and the textfile; the rules pass
``promtool check rules`` and ``promtool test rules`` on series taken from the exporter's own output."""

from __future__ import annotations

import copy
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from threading import Thread

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from dnsfleet.alerts import AlertsError, rules
from dnsfleet.cli import main
from dnsfleet.demo import demo_snapshot
from dnsfleet.engine import analyze
from dnsfleet.exporter import Exporter, render

ROOT = Path(__file__).resolve().parents[1]
PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None, reason="promtool missing: tests/fleet/install-system-deps.sh installs it"
)


def samples(text: bytes) -> list:
    return [s for fam in text_string_to_metric_families(text.decode()) for s in fam.samples]


@pytest.fixture(scope="module")
def demo_text() -> bytes:
    return render(analyze(demo_snapshot()))


def test_series_are_per_cluster_and_node_never_per_pod(demo_text: bytes) -> None:
    snap = demo_snapshot()
    ss = samples(demo_text)
    assert all("pod" not in s.labels and "namespace" not in s.labels for s in ss)
    n_clusters = len(snap["clusters"])
    n_nodes = sum(len(c.get("nodes") or []) for c in snap["clusters"])
    assert len(ss) <= 5 + 16 * n_clusters + 9 * n_nodes
    # three times the pods, same nodes: the same series
    bigger = copy.deepcopy(snap)
    for c in bigger["clusters"]:
        pods = c.get("pods") or []
        c["pods"] = pods + [dict(p, name=p["name"] + f"-x{i}") for i in (1, 2) for p in pods]
    assert {(s.name, tuple(sorted(s.labels.items()))) for s in samples(render(analyze(bigger)))} == {
        (s.name, tuple(sorted(s.labels.items()))) for s in ss
    }
    by = {(s.name, s.labels.get("cluster"), s.labels.get("level")): s.value for s in ss}
    a = analyze(snap)
    top = a.clusters.iloc[0]
    assert by[("dnsfleet_cluster_risk_level", top["cluster"], top["level"])] == 1.0
    assert by[("dnsfleet_cluster_risk_score", top["cluster"], None)] == pytest.approx(float(top["score"]))


@needs_promtool
def test_exposition_passes_promtool_check_metrics(demo_text: bytes) -> None:
    p = subprocess.run([PROMTOOL, "check", "metrics"], input=demo_text, capture_output=True, timeout=60)
    assert p.returncode == 0, p.stdout + p.stderr


def test_exporter_http_on_loopback_and_textfile(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    calls = []

    def source():
        calls.append(1)
        if len(calls) > 1:
            raise RuntimeError("store went away")
        return analyze(demo_snapshot())

    exp = Exporter(source, refresh=0.0)
    srv = exp.server("127.0.0.1", 0)
    t = Thread(target=srv.serve_forever, daemon=True)
    t.start()
    try:
        base = f"http://127.0.0.1:{srv.server_address[1]}"
        with urllib.request.urlopen(base + "/metrics", timeout=30) as r:
            first = r.read()
        assert b"dnsfleet_cluster_risk_score" in first
        with urllib.request.urlopen(base + "/metrics", timeout=30) as r:
            second = r.read()  # the refresh failed: the last good data, and the error counted
        assert (
            b"dnsfleet_cluster_risk_score" in second and b"dnsfleet_exporter_refresh_errors_total 1" in second
        )
        with pytest.raises(urllib.error.HTTPError):
            urllib.request.urlopen(base + "/", timeout=30)
    finally:
        srv.shutdown()
        srv.server_close()
    out = tmp_path / "dnsfleet.prom"
    assert main(["exporter", "--demo", "--textfile", str(out)]) == 0
    assert out.read_bytes().startswith(b"# HELP") and not list(tmp_path.glob(".*.tmp"))
    assert main(["exporter", "--demo", "--listen", "nope"]) == 2


def _alerts(fmt: str = "rules", *extra: str) -> str:
    argv = [sys.executable, "-m", "dnsfleet.cli", "alerts", "--format", fmt, *extra]
    p = subprocess.run(argv, capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert p.returncode == 0, p.stderr
    return p.stdout


@needs_promtool
@pytest.mark.parametrize("node_label", ["node", "instance"])
def test_rules_pass_promtool_check_and_unit_tests(demo_text: bytes, tmp_path: Path, node_label: str) -> None:
    (tmp_path / "rules.yml").write_text(_alerts("rules", "--node-label", node_label))
    p = subprocess.run(
        [PROMTOOL, "check", "rules", str(tmp_path / "rules.yml")], capture_output=True, text=True
    )
    assert p.returncode == 0, p.stdout + p.stderr

    # Real node names and DNS client counts from the exporter's output.
    clients = [s for s in samples(demo_text) if s.name == "dnsfleet_node_dns_client_pods" and s.value > 0]
    a, b = clients[0].labels, clients[1].labels
    high = next(
        s.labels["cluster"]
        for s in samples(demo_text)
        if s.name == "dnsfleet_cluster_risk_level" and s.labels["level"] == "high" and s.value == 1
    )

    def node_sel(labels: dict[str, str]) -> str:
        node = labels["node"] if node_label == "node" else f"{labels['node']}:9100"
        return f'cluster="{labels["cluster"]}",{node_label}="{node}"'

    z = {"cluster": a["cluster"], "node": "node-without-dns-clients"}
    series = [
        # insert_failed grows on a (DNS clients) and on z (none); b has no conntrack series at all
        {"series": f"node_nf_conntrack_stat_insert_failed{{{node_sel(a)}}}", "values": "0+3x120"},
        {"series": f"node_nf_conntrack_stat_insert_failed{{{node_sel(z)}}}", "values": "0+3x120"},
        {
            "series": f'dnsfleet_node_dns_client_pods{{cluster="{a["cluster"]}",node="{a["node"]}"}}',
            "values": "5x120",
        },
        {
            "series": f'dnsfleet_node_dns_client_pods{{cluster="{b["cluster"]}",node="{b["node"]}"}}',
            "values": "3x120",
        },
        {
            "series": f'dnsfleet_node_dns_client_pods{{cluster="{z["cluster"]}",node="{z["node"]}"}}',
            "values": "0x120",
        },
    ]
    alerts = [
        {
            "eval_time": "60m",
            "alertname": "DNSFleetConntrackInsertFailed",
            "exp_alerts": [
                {
                    "exp_labels": {"severity": "warning", "cluster": a["cluster"], "node": a["node"]},
                    "exp_annotations": {
                        "summary": f"conntrack insert_failed grows on {a['cluster']}/{a['node']}, which runs DNS clients",
                        "description": "45 insert failures in 15m: DNS queries lost to the conntrack/DNAT race wait a "
                        "resolver timeout (5 s glibc, 2.5 s musl). See dnsfleet's recommendations for this node.",
                    },
                }
            ],
        },
        {
            "eval_time": "60m",
            "alertname": "DNSFleetConntrackMetricsAbsent",
            "exp_alerts": [
                {
                    "exp_labels": {"severity": "info", "cluster": b["cluster"], "node": b["node"]},
                    "exp_annotations": {
                        "summary": f"no conntrack counters from {b['cluster']}/{b['node']}",
                        "description": "The node runs DNS client pods but no node_nf_conntrack_stat_insert_failed "
                        "series exists for it: node-exporter is missing there or its conntrack collector is off, "
                        "so the race's evidence is unknown.",
                    },
                }
            ],
        },
    ]
    risk = {
        "interval": "1m",  # samples further apart than the 5m lookback would read as gaps
        "input_series": [
            {"series": f'dnsfleet_cluster_risk_level{{cluster="{high}",level="high"}}', "values": "1x1560"},
            {
                "series": 'dnsfleet_cluster_risk_level{cluster="flapping",level="high"}',
                "values": "1x12 0 1x17",
            },
        ],
        "alert_rule_test": [
            {"eval_time": "23h", "alertname": "DNSFleetRiskHigh", "exp_alerts": []},
            {
                "eval_time": "25h",
                "alertname": "DNSFleetRiskHigh",
                "exp_alerts": [
                    {
                        "exp_labels": {"severity": "warning", "cluster": high, "level": "high"},
                        "exp_annotations": {
                            "summary": f"DNS race risk of {high} has been high for 24h",
                            "description": "Apply the mitigations dnsfleet recommends (resolver options, "
                            "NodeLocal DNSCache or a kernel upgrade).",
                        },
                    }
                ],
            },
        ],
    }
    doc = {
        "rule_files": ["rules.yml"],
        "evaluation_interval": "1m",
        "tests": [{"interval": "1m", "input_series": series, "alert_rule_test": alerts}, risk],
    }
    (tmp_path / "test.yml").write_text(yaml.safe_dump(doc, sort_keys=False, width=1000))
    p = subprocess.run(
        [PROMTOOL, "test", "rules", str(tmp_path / "test.yml")], capture_output=True, text=True
    )
    assert p.returncode == 0, p.stdout + p.stderr


@needs_promtool
def test_prometheusrule_wraps_the_same_groups(tmp_path: Path) -> None:
    doc = yaml.safe_load(_alerts("prometheusrule", "--namespace", "obs"))
    assert doc["kind"] == "PrometheusRule" and doc["metadata"]["namespace"] == "obs"
    assert doc["spec"] == rules()
    (tmp_path / "r.yml").write_text(yaml.safe_dump(doc["spec"]))
    assert (
        subprocess.run([PROMTOOL, "check", "rules", str(tmp_path / "r.yml")], capture_output=True).returncode
        == 0
    )


def test_bad_alert_settings() -> None:
    with pytest.raises(AlertsError, match="label name"):
        rules(node_label="bad-label")
    with pytest.raises(AlertsError, match="duration"):
        rules(high_for="one day")
