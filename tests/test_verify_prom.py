"""Verify a mitigation against a real Prometheus with backfilled series (issue 17 §1): the drop rate falls
at the audit record's time, does not fall, and falls with a counter reset and gaps."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from dnsfleet.collect.prom import PromClient, PromSource
from dnsfleet.evidence import query, verify
from dnsfleet.evidence.verify import IMPROVED, NO_DATA, UNCHANGED, iso
from tests import evidence_prom
from tests.builders import audit_record


@pytest.fixture(scope="module")
def prom(tmp_path_factory: pytest.TempPathFactory) -> Iterator[evidence_prom.Backfilled]:
    try:
        p = evidence_prom.start(tmp_path_factory.mktemp("evprom"))
    except RuntimeError as e:
        pytest.fail(f"backfilled Prometheus could not start: {e}", pytrace=False)
    try:
        yield p
    finally:
        p.stop()


def _records(t0: float, clusters: tuple[str, ...] = ("falls", "flat", "reset")) -> list[dict]:
    return [audit_record(c, iso(t0).replace("Z", ".000000Z"), f"b-{c}") for c in clusters]


def _fetch(url: str):
    def fetch(cluster: str, start: float, end: float) -> dict:
        return query.fetch(PromClient(PromSource(url)), cluster, start, end)

    return fetch


@pytest.fixture(scope="module")
def results(prom: evidence_prom.Backfilled) -> dict[str, dict]:
    res = verify.verify(_records(prom.t0), _fetch(prom.url), now=prom.end + 60)
    return {r["change"].cluster: r for r in res}


def test_drop_rate_falls_at_the_change_is_improved(results: dict[str, dict]) -> None:
    r = results["falls"]
    c = r["prometheus"]["cluster"]
    assert r["prometheus_verdict"] == IMPROVED
    assert c["nodes_compared"] == 3
    before, after, v = c["insert_failed"]
    assert v == IMPROVED and after == 0
    assert 3 * 40 * 0.8 <= before <= 3 * 40 * 1.2  # ~40/h per node on 3 nodes
    assert c["servfail_share"][2] == UNCHANGED
    assert c["servfail_share"][0] == pytest.approx(0.004, rel=0.05)
    text = r["prometheus_summary"]
    assert "→ 0/h on 3 nodes" in text and "CoreDNS SERVFAIL 0.4% → 0.4%" in text
    assert all(n["verdict"] == IMPROVED for n in r["prometheus"]["nodes"].values())


def test_no_change_at_the_change_is_unchanged(results: dict[str, dict]) -> None:
    r = results["flat"]
    c = r["prometheus"]["cluster"]
    assert r["prometheus_verdict"] == UNCHANGED
    b, a, v = c["insert_failed"]
    assert v == UNCHANGED and a == pytest.approx(b, rel=0.2) and b > 90


def test_counter_reset_and_gaps(results: dict[str, dict]) -> None:
    r = results["reset"]
    cmp = r["prometheus"]
    nodes = cmp["nodes"]
    # the reboot restarts reset-a's counter at 0: no negative or huge increase, after stays 0
    assert nodes["reset-a"]["insert_failed"][1] == 0 and nodes["reset-a"]["verdict"] == IMPROVED
    # a 10-minute gap before the change keeps enough samples; its growth lands after the gap, not lost
    assert nodes["reset-b"]["verdict"] == IMPROVED
    assert nodes["reset-b"]["insert_failed"][0] == pytest.approx(40, rel=0.25)
    # a 40-minute gap after it does not
    assert nodes["reset-c"]["verdict"] == NO_DATA
    assert cmp["cluster"]["nodes_compared"] == 2
    assert r["prometheus_verdict"] == IMPROVED
    assert "1 node(s) without enough samples in both windows left out" in r["prometheus_summary"]


def test_after_window_not_over_yet_is_not_enough_data(prom: evidence_prom.Backfilled) -> None:
    res = verify.verify(_records(prom.t0, ("falls",)), _fetch(prom.url), now=prom.t0 + 1200)
    assert res[0]["prometheus_verdict"] == NO_DATA
    assert "min from now" in res[0]["prometheus_summary"]


def test_evidence_section_is_bounded_and_counts_increases(prom: evidence_prom.Backfilled) -> None:
    ev = query.fetch(PromClient(PromSource(prom.url)), "reset", prom.start, prom.end, max_points=60)
    n = len(ev["cluster"]["insert_failed"])
    assert n <= 60 and ev["step"] % 60 == 0
    assert all(len(v) == n for d in ev["nodes"].values() for v in d.values())
    inc = [v for d in ev["nodes"].values() for v in d["insert_failed"] if v is not None]
    assert inc and min(inc) >= 0  # the reboot is no negative increase
    assert "clash_resolve not collected" in ev["clash_resolve"]
    assert ev["cluster"]["servfail_share"][-1] == pytest.approx(0.004, rel=0.05)
    assert len(json.dumps(ev)) < 20_000


def test_cli_verify_table_and_csv(prom: evidence_prom.Backfilled, tmp_path: Path, capsys) -> None:
    from dnsfleet.cli import main

    log = tmp_path / "audit.jsonl"
    log.write_text("".join(json.dumps(r) + "\n" for r in _records(prom.t0)))
    out_csv = tmp_path / "verify.csv"
    code = main(
        [
            "mitigate",
            "verify",
            "--audit-log",
            str(log),
            "--prometheus",
            prom.url,
            "--csv",
            str(out_csv),
            "--now",
            str(prom.end + 60),
        ]
    )
    text = capsys.readouterr().out
    assert code == 0
    assert "improved" in text and "unchanged" in text and "insert_failed" in text
    rows = list(csv.DictReader(io.StringIO(out_csv.read_bytes().decode("utf-8-sig"))))
    cluster_rows = {r["cluster"]: r for r in rows if r["scope"] == "cluster" and r["source"] == "prometheus"}
    assert cluster_rows["falls"]["verdict"] == "improved"
    assert cluster_rows["flat"]["verdict"] == "unchanged"
    assert float(cluster_rows["falls"]["insert_failed_per_hour_after"]) == 0


def test_cli_verify_bad_window_is_one_line(tmp_path: Path, capsys) -> None:
    from dnsfleet.cli import main

    code = main(["mitigate", "verify", "--audit-log", str(tmp_path / "none.jsonl"), "--window=-5m"])
    err = capsys.readouterr().err
    assert code == 2 and "window" in err and "Traceback" not in err
