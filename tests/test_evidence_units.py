"""Counter arithmetic, bounds and verdict statistics of the evidence module (no I/O)."""

from __future__ import annotations

import pytest

from dnsfleet.evidence import series as S
from dnsfleet.evidence import verify as V


def test_increases_handle_reset_and_gap() -> None:
    # 10 -> 15 (+5), reboot to 2 (+2), gap, 6 (+4 across the gap)
    assert S.increases([10, 15, 2, None, 6]) == [None, 5, 2, None, 4]
    assert S.total_increase([10, 15, 2, None, 6]) == 11
    assert S.total_increase([None, 3]) is None
    assert S.coverage([1, None, 2, None]) == 0.5


def test_step_keeps_points_bounded() -> None:
    for span in (600, 3 * 3600, 7 * 86400, 365 * 86400):
        step = S.step_for(0, span)
        assert step % 60 == 0 and span / step + 1 <= S.MAX_POINTS
    with pytest.raises(ValueError, match="end after it starts"):
        S.step_for(10, 10)


def test_downsample_and_sum() -> None:
    assert S.downsample([1, 2, None, None, 5], 2) == [3, None, 5]
    assert S.downsample([1, 3, None, None], 2, "mean") == [2, None]
    assert S.sum_series([[1, None], [2, None]]) == [3, None]
    assert S.compact([123456.0, 0, None]) == [123500.0, 0.0, None]


def test_count_verdicts() -> None:
    assert V.count_verdict(120, 0) == V.IMPROVED
    assert V.count_verdict(120, 118) == V.UNCHANGED
    assert V.count_verdict(0, 0) == V.UNCHANGED
    assert V.count_verdict(3, 0) == V.UNCHANGED  # too few to tell from chance
    assert V.count_verdict(10, 60) == V.WORSE
    assert V.count_verdict(None, 0) == V.NO_DATA


def test_share_verdicts() -> None:
    assert V.share_verdict(40, 10_000, 41, 10_000) == V.UNCHANGED
    assert V.share_verdict(400, 10_000, 40, 10_000) == V.IMPROVED
    assert V.share_verdict(8, 8, 0, 8) == V.IMPROVED  # a probe: every lookup stalled, then none
    assert V.share_verdict(0, 8, 8, 8) == V.WORSE
    assert V.share_verdict(None, 8, 0, 8) == V.NO_DATA


def test_changes_group_batches_and_skip_failures() -> None:
    recs = [
        {
            "time": "2026-01-01T10:00:00.000000Z",
            "cluster": "c",
            "mitigation": "nodelocal",
            "result": "ok",
            "batch": "b1",
            "object": {"kind": "DaemonSet", "namespace": "kube-system", "name": "x"},
        },
        {
            "time": "2026-01-01T10:00:05.000000Z",
            "cluster": "c",
            "mitigation": "nodelocal",
            "result": "ok",
            "batch": "b1",
            "object": {"kind": "ConfigMap", "namespace": "kube-system", "name": "y"},
        },
        {
            "time": "2026-01-01T11:00:00Z",
            "cluster": "c",
            "mitigation": "nodelocal",
            "result": "forbidden",
            "batch": "b2",
            "object": {},
        },
        {"time": "garbage", "cluster": "c", "mitigation": "nodelocal", "result": "ok", "batch": "b3"},
    ]
    ch = V.changes(recs)
    assert len(ch) == 1 and len(ch[0].objects) == 2
    assert V.iso(ch[0].time) == "2026-01-01T10:00:05Z"


def test_affected_nodes_of_a_workload_change() -> None:
    ch = V.Change(
        "c", 0.0, "resolver-options", "b", [{"kind": "Deployment", "namespace": "shop", "name": "web"}]
    )
    snap = {
        "clusters": [
            {
                "name": "c",
                "owners": {"ReplicaSet": {"shop/web-1": ["Deployment", "web"]}},
                "pods": [
                    {
                        "namespace": "shop",
                        "name": "p1",
                        "owner_kind": "ReplicaSet",
                        "owner_name": "web-1",
                        "node": "n1",
                    },
                    {
                        "namespace": "shop",
                        "name": "p2",
                        "owner_kind": "ReplicaSet",
                        "owner_name": "other",
                        "node": "n2",
                    },
                ],
            }
        ]
    }
    nodes, why = V.affected_nodes(ch, snap)
    assert nodes == {"n1"} and "1 node" in why
    assert V.affected_nodes(ch, None)[0] is None


def test_probe_comparison_per_node_and_resolver() -> None:
    ch = V.Change("c", 1000.0, "nodelocal", "b")

    def run(t: str, slow: int) -> dict:
        return {
            "time": t,
            "cluster": "c",
            "results": [
                {
                    "node": "n1",
                    "resolver": "glibc",
                    "status": "ok",
                    "report": {"lookups": 40, "ge_2_5s": slow},
                }
            ],
        }

    runs = [run("1970-01-01T00:10:00Z", 40), run("1970-01-01T00:20:00Z", 0)]
    rows = V.compare_probes(runs, ch, None)
    assert rows[("n1", "glibc")]["verdict"] == V.IMPROVED
    assert V.probe_summary(rows) == "probe lookups >= 2.5 s 40/40 → 0/40 on 1 node"


def test_times_written_by_dnsfleet_read_back_as_utc() -> None:
    from datetime import UTC, datetime

    from dnsfleet.cli.output import CliError
    from dnsfleet.cli.verify import when
    from dnsfleet.times import parse_iso

    noon = datetime(2026, 1, 1, 12, tzinfo=UTC)
    for text in (
        "2026-01-01T12:00:00Z",
        "2026-01-01T12:00:00+00:00",
        "2026-01-01T12:00:00",
        "2026-01-01T13:00+01:00",
    ):
        assert parse_iso(text) == noon, text
        assert V.parse_time(text) == noon.timestamp() == when(text, 0.0), text
    for bad in ("", "yesterday", None, 1767268800, "2026-13-01T00:00:00Z"):
        assert parse_iso(bad) is None and V.parse_time(bad) is None, bad
    with pytest.raises(CliError, match="bad time 'yesterday'"):
        when("yesterday", 0.0)
