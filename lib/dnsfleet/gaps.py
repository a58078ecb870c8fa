"""Evidence the score could not count: a cluster scored without its metrics says so, and by how much.

Two factors of the risk model (``dnsfleet.risk``) come from metrics: ``evidence`` (up to
``W_EVIDENCE`` points: conntrack ``insert_failed`` grew, from node_exporter through Prometheus) and
``query_rate`` (up to ``W_RATE``: CoreDNS queries per second, from Prometheus or one scrape). Without the
metrics both count 0, so the same cluster scores lower when Prometheus is down or its samples are old
(91 -> 78 in the run that found it: 10 evidence + 3 query-rate points). The engine keeps that rule (no
data is never evidence of a race); this module names the gap wherever the score is shown: it reads the
snapshot's metrics, so the CLI (which scores clusters only) and the dashboard say the same.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from dnsfleet.risk import W_EVIDENCE, W_RATE
from dnsfleet.rules import codes

COLUMNS = ["cluster", "missing", "up_to", "text", "note"]


def missing_metrics(cluster: dict[str, Any]) -> list[tuple[str, float]]:
    """What a snapshot cluster lacks of the metrics the score reads, with the points each could add:
    no node with a conntrack ``insert_failed`` increase (the engine's D1 evidence), no CoreDNS query
    rate (D3)."""
    m = cluster.get("metrics") or {}
    ct = (m.get("conntrack") or {}).get("nodes") or {}
    out = []
    if not any(isinstance(n, dict) and n.get("insert_failed_increase") is not None for n in ct.values()):
        out.append(("conntrack counters", W_EVIDENCE))
    if (m.get("coredns") or {}).get("qps") is None:
        out.append(("CoreDNS query rate", W_RATE))
    return out


def score_gaps(clusters: pd.DataFrame, snapshot: dict[str, Any]) -> pd.DataFrame:
    """Per scored cluster (score above 0) whose metrics are missing: ``cluster``, ``missing`` (what),
    ``up_to`` (points the score could not count), ``text`` (one sentence from the codes registry) and
    ``note`` (the scan's metrics note: why they are missing)."""
    scored = clusters[(clusters["status"] != "failed") & (clusters["score"].astype("Float64").fillna(0) > 0)]
    by_name = {c.get("name"): c for c in snapshot.get("clusters", []) if isinstance(c, dict)}
    rows = []
    for name in scored["cluster"]:
        missing = missing_metrics(by_name.get(name) or {})
        if not missing:
            continue
        what = " and ".join(f"{w} (up to {p:.0f} points)" for w, p in missing)
        up_to = sum(p for _, p in missing)
        rows.append(
            {
                "cluster": name,
                "missing": ", ".join(w for w, _ in missing),
                "up_to": up_to,
                "text": codes.message("SCORE-GAP", what=what, points=f"{up_to:.0f}"),
                "note": ((by_name.get(name) or {}).get("metrics") or {}).get("note"),
            }
        )
    return pd.DataFrame(rows, columns=COLUMNS)


def gap_text(clusters: pd.DataFrame, snapshot: dict[str, Any], cluster: str) -> str | None:
    """The sentence for one cluster, or None when nothing is missing."""
    g = score_gaps(clusters[clusters["cluster"] == cluster], snapshot)
    return None if g.empty else str(g["text"].iloc[0])


def metrics_gap_lines(snapshot: dict[str, Any], clusters: pd.DataFrame | None) -> list[str]:
    """One line per cluster whose score lacks metrics (what, how many points, why), and per other
    cluster whose Prometheus answered but had no samples in the window: what ``dnsfleet scan`` prints
    on stderr after its table."""
    lines = []
    told = set()
    if clusters is not None:
        for g in score_gaps(clusters, snapshot).itertuples():
            told.add(g.cluster)
            lines.append(f"{g.cluster}: {g.text}" + (f"; metrics: {g.note}" if g.note else ""))
    for c in snapshot.get("clusters", []):
        note = str((c.get("metrics") or {}).get("note") or "")
        if c.get("name") not in told and "Prometheus reachable;" in note:
            lines.append(f"{c.get('name')}: metrics: {note}")
    return lines
