"""Evidence the score could not count: a cluster scored without its metrics says so, and by how much.

Two factors of the risk model (``dnsfleet.risk``) come from metrics: ``evidence`` (up to
``W_EVIDENCE`` points: conntrack ``insert_failed`` grew, from node_exporter through Prometheus) and
``query_rate`` (up to ``W_RATE``: CoreDNS queries per second, from Prometheus or one scrape). Without the
metrics both count 0, so the same cluster scores lower when Prometheus is down or its samples are old
(91 -> 78 in the run that found it: 10 evidence + 3 query-rate points). The engine keeps that rule (no
data is never evidence of a race); this module names the gap wherever the score is shown.
"""

from __future__ import annotations

import pandas as pd

from dnsfleet.risk import W_EVIDENCE, W_RATE
from dnsfleet.rules import codes

# factor -> (the reason code the engine records when its metrics are missing, points, what is missing)
MISSING: dict[str, tuple[str, float, str]] = {
    "evidence": ("D1-NONE", W_EVIDENCE, "conntrack counters"),
    "query_rate": ("D3-NONE", W_RATE, "CoreDNS query rate"),
}


def score_gaps(clusters: pd.DataFrame, factors: pd.DataFrame) -> pd.DataFrame:
    """Per scored cluster (score above 0) whose metrics are missing: ``cluster``, ``missing`` (what),
    ``up_to`` (points the score could not count) and ``text`` (one sentence from the codes registry)."""
    cols = ["cluster", "missing", "up_to", "text"]
    f = factors[(factors["scope"] == "cluster")] if len(factors) else factors
    rows = []
    scored = clusters[(clusters["status"] != "failed") & (clusters["score"].astype("Float64").fillna(0) > 0)]
    for c in scored["cluster"]:
        mine = f[f["cluster"] == c]
        missing = [
            (what, pts)
            for factor, (code, pts, what) in MISSING.items()
            if ((mine["factor"] == factor) & (mine["code"] == code)).any()
        ]
        if not missing:
            continue
        what = " and ".join(f"{w} (up to {p:.0f} points)" for w, p in missing)
        up_to = sum(p for _, p in missing)
        rows.append(
            {
                "cluster": c,
                "missing": ", ".join(w for w, _ in missing),
                "up_to": up_to,
                "text": codes.message("SCORE-GAP", what=what, points=f"{up_to:.0f}"),
            }
        )
    return pd.DataFrame(rows, columns=cols)


def gap_text(clusters: pd.DataFrame, factors: pd.DataFrame, cluster: str) -> str | None:
    """The sentence for one cluster, or None when nothing is missing."""
    g = score_gaps(clusters[clusters["cluster"] == cluster], factors)
    return None if g.empty else str(g["text"].iloc[0])
