"""Did a mitigation work? A verdict per applied change, from Prometheus and from probe runs.

For every change in the audit log (records with ``result == "ok"``, grouped by ``batch``; the change's
time is its last record's), two windows of the same length ``window_s`` are compared: ``before`` ends at
the change, ``after`` starts ``settle_s`` later (the rollout period: pods restarting, a DaemonSet coming
up) and must have ended before the data does.

Per node with enough samples in *both* windows (``MIN_COVERAGE`` of the steps), conntrack
``insert_failed`` and ``drop`` increases; per cluster their sum over those nodes and CoreDNS's SERVFAIL and
REFUSED shares (p99 latency is shown, not judged: a query the race drops never reaches CoreDNS).

A metric is *improved* (*worse*) when it fell (rose) by at least ``MIN_RELATIVE`` and the change is larger
than chance: counts (Poisson) differ by more than ``Z`` standard deviations, shares by a two-proportion z
test above ``Z`` and at least ``MIN_SHARE_DELTA``. *unchanged* otherwise; *not enough data* without the
samples. A change is *worse* when any metric is, else *improved* when any is, else *unchanged*.

Probe runs (``dnsfleet.probe``) give the client-side verdict: per node and resolver, the share of lookups
that stalled (took >= 2.5 s: musl's default retry interval, half glibc's timeout) in the nearest run
before the change against the nearest run after it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from dnsfleet.times import parse_iso

IMPROVED, UNCHANGED, WORSE, NO_DATA = "improved", "unchanged", "worse", "not enough data"
MIN_COVERAGE = 0.8
MIN_RELATIVE = 0.25
MIN_SHARE_DELTA = 0.001
Z = 2.0
DEFAULT_WINDOW_S = 3600.0
DEFAULT_SETTLE_S = 600.0


def parse_time(text: Any) -> float | None:
    """Epoch seconds of an audit record's ``time`` (ISO-8601 UTC), None when unreadable."""
    t = parse_iso(text)
    return None if t is None else t.timestamp()


def iso(t: float | None) -> str:
    return "" if t is None else datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Change:
    """One applied change: the audit records of one batch that succeeded."""

    cluster: str
    time: float
    mitigation: str
    batch: str
    objects: list[dict[str, str]] = field(default_factory=list)

    def label(self) -> str:
        objs = ", ".join(f"{o.get('kind')} {o.get('namespace')}/{o.get('name')}" for o in self.objects[:3])
        more = f" +{len(self.objects) - 3}" if len(self.objects) > 3 else ""
        return f"{self.mitigation} on {self.cluster} at {iso(self.time)} ({objs}{more})"


def changes(records: Iterable[dict[str, Any]]) -> list[Change]:
    """Applied changes from audit records, oldest first (failed, dry-run or unreadable records skipped)."""
    out: dict[tuple[str, str], Change] = {}
    for r in records:
        t = parse_time(r.get("time"))
        if r.get("result") != "ok" or t is None or not r.get("cluster") or not r.get("mitigation"):
            continue
        batch = str(r.get("batch") or r.get("time"))
        key = (str(r["cluster"]), batch)
        c = out.get(key)
        if c is None:
            c = out[key] = Change(str(r["cluster"]), t, str(r["mitigation"]), batch)
        c.time = max(c.time, t)
        if isinstance(r.get("object"), dict):
            c.objects.append({k: str(v) for k, v in r["object"].items()})
    return sorted(out.values(), key=lambda c: c.time)


def affected_nodes(change: Change, snapshot: dict[str, Any] | None) -> tuple[set[str] | None, str]:
    """The nodes a change can act on: the nodes running the patched workloads' pods (from a snapshot),
    else every node (None), with a sentence saying which."""
    if change.mitigation not in ("resolver-options", "undo-resolver-options"):
        return None, "every node of the cluster"
    cl = next((c for c in (snapshot or {}).get("clusters") or [] if c.get("name") == change.cluster), None)
    if cl is None:
        return None, "every node (no snapshot of the cluster to find the workloads' nodes)"
    owners = (cl.get("owners") or {}).get("ReplicaSet") or {}
    wanted = {(o.get("namespace"), o.get("kind"), o.get("name")) for o in change.objects}
    nodes: set[str] = set()
    for p in cl.get("pods") or []:
        kind, name = p.get("owner_kind"), p.get("owner_name")
        if kind == "ReplicaSet":
            up = owners.get(f"{p.get('namespace')}/{name}")
            if up:
                kind, name = up[0], up[1]
        if (p.get("namespace"), kind, name) in wanted and p.get("node"):
            nodes.add(p["node"])
    if not nodes:
        return None, "every node (the snapshot has no pods of the patched workloads)"
    return nodes, f"the {len(nodes)} node(s) running the patched workloads"


# -- statistics ----------------------------------------------------------------------------------------


def count_verdict(before: float | None, after: float | None) -> str:
    """Counts over equal durations (Poisson)."""
    if before is None or after is None:
        return NO_DATA
    diff = after - before
    if diff == 0:
        return UNCHANGED
    sd = math.sqrt(before + after)
    if abs(diff) <= Z * sd or abs(diff) < MIN_RELATIVE * max(before, after):
        return UNCHANGED
    return IMPROVED if diff < 0 else WORSE


def share_verdict(
    part_b: float | None, whole_b: float | None, part_a: float | None, whole_a: float | None
) -> str:
    """Shares ``part/whole`` before and after (two-proportion z test)."""
    if None in (part_b, whole_b, part_a, whole_a) or not whole_b or not whole_a:
        return NO_DATA
    pb, pa = part_b / whole_b, part_a / whole_a  # type: ignore[operator]
    if pa == pb:
        return UNCHANGED
    pooled = (part_b + part_a) / (whole_b + whole_a)  # type: ignore[operator]
    se = math.sqrt(max(pooled * (1 - pooled), 0.0) * (1 / whole_b + 1 / whole_a))
    z = abs(pa - pb) / se if se > 0 else math.inf
    if z <= Z or abs(pa - pb) < MIN_SHARE_DELTA or abs(pa - pb) < MIN_RELATIVE * max(pa, pb):
        return UNCHANGED
    return IMPROVED if pa < pb else WORSE


def overall(verdicts: Iterable[str]) -> str:
    vs = [v for v in verdicts if v != NO_DATA]
    if not vs:
        return NO_DATA
    if WORSE in vs:
        return WORSE
    return IMPROVED if IMPROVED in vs else UNCHANGED


# -- windows over an evidence section ------------------------------------------------------------------


def _indices(ev: dict[str, Any], start: float, end: float) -> list[int]:
    """Steps whose increase falls in (start, end]."""
    n = len(next(iter(ev.get("cluster", {}).values()), []) or [])
    if not n:
        n = max((len(v) for d in (ev.get("nodes") or {}).values() for v in d.values()), default=0)
    return [i for i in range(n) if start < ev["start"] + i * ev["step"] <= end]


def _sum(values: list[float | None], idx: list[int]) -> tuple[float | None, float]:
    got = [values[i] for i in idx if i < len(values) and values[i] is not None]
    cov = len(got) / len(idx) if idx else 0.0
    return (float(sum(got)) if got else None), cov  # type: ignore[arg-type]


def compare_prometheus(
    ev: dict[str, Any], change_time: float, window_s: float, settle_s: float, nodes: set[str] | None
) -> dict[str, Any]:
    """Before/after numbers and verdicts of one change from an evidence section spanning both windows."""
    before = _indices(ev, change_time - window_s, change_time)
    after = _indices(ev, change_time + settle_s, change_time + settle_s + window_s)
    expected = max(1, round(window_s / ev["step"]))
    out: dict[str, Any] = {
        "before": (change_time - window_s, change_time),
        "after": (change_time + settle_s, change_time + settle_s + window_s),
        "nodes": {},
        "note": [],
    }
    hours = window_s / 3600.0
    totals = {"insert_failed": [0.0, 0.0], "drop": [0.0, 0.0]}
    used = 0
    skipped = 0
    for node, data in sorted((ev.get("nodes") or {}).items()):
        if nodes is not None and node not in nodes:
            continue
        row: dict[str, Any] = {}
        ok = True
        for key in ("insert_failed", "drop"):
            vals = data.get(key) or []
            b, cb = _sum(vals, before)
            a, ca = _sum(vals, after)
            cb, ca = cb * len(before) / expected, ca * len(after) / expected
            if cb < MIN_COVERAGE or ca < MIN_COVERAGE or b is None or a is None:
                ok = False
                row[key] = (None, None, NO_DATA)
                continue
            row[key] = (b / hours, a / hours, count_verdict(b, a))
        if ok:
            used += 1
            for key in totals:
                totals[key][0] += row[key][0] * hours
                totals[key][1] += row[key][1] * hours
        else:
            skipped += 1
        row["verdict"] = overall(v[2] for k, v in row.items() if k in ("insert_failed", "drop"))
        out["nodes"][node] = row
    if nodes is not None:
        missing = nodes - set(ev.get("nodes") or {})
        if missing:
            out["note"].append(f"{len(missing)} affected node(s) have no conntrack series")
    if skipped:
        out["note"].append(f"{skipped} node(s) without enough samples in both windows left out")
    cluster: dict[str, Any] = {"nodes_compared": used}
    for key, (b, a) in totals.items():
        cluster[key] = (b / hours, a / hours, count_verdict(b, a)) if used else (None, None, NO_DATA)
    c = ev.get("cluster") or {}
    qps = c.get("qps") or []
    step = float(ev["step"])
    for key in ("servfail_share", "refused_share"):
        sh = c.get(key) or []
        parts = {}
        for name, idx in (("b", before), ("a", after)):
            pairs = [
                (qps[i], sh[i])
                for i in idx
                if i < len(qps) and i < len(sh) and qps[i] is not None and sh[i] is not None
            ]
            cov = len(pairs) / expected
            whole = sum(q for q, _ in pairs) * step
            part = sum(q * s for q, s in pairs) * step
            parts[name] = (part, whole) if cov >= MIN_COVERAGE and whole > 0 else (None, None)
        (pb, wb), (pa, wa) = parts["b"], parts["a"]
        cluster[key] = (
            None if pb is None else pb / wb,
            None if pa is None else pa / wa,
            share_verdict(pb, wb, pa, wa),
        )
    for key in ("qps", "p99_ms"):
        vals = c.get(key) or []
        means = []
        for idx in (before, after):
            got = [vals[i] for i in idx if i < len(vals) and vals[i] is not None]
            means.append(sum(got) / len(got) if got and len(got) / expected >= MIN_COVERAGE else None)
        cluster[key] = (means[0], means[1], None)
    judged = [cluster[k][2] for k in ("insert_failed", "drop", "servfail_share", "refused_share")]
    cluster["verdict"] = overall(judged)
    out["cluster"] = cluster
    return out


def _rate(v: float | None) -> str:
    if v is None:
        return "?"
    return f"{v:.0f}/h" if v >= 10 or v == 0 else f"{v:.1f}/h"


def _pct(v: float | None) -> str:
    return "?" if v is None else f"{100 * v:.1f}%" if v >= 0.001 or v == 0 else f"{100 * v:.2f}%"


def summary(result: dict[str, Any]) -> str:
    """One line with the numbers: ``insert_failed 41/h → 0/h on 6 nodes; CoreDNS SERVFAIL 0.4% → 0.4%``."""
    c = result["cluster"]
    parts = []
    n = c["nodes_compared"]
    if n:
        for key in ("insert_failed", "drop"):
            b, a, _ = c[key]
            parts.append(
                f"{key} {_rate(b)} → {_rate(a)}"
                + (f" on {n} node{'s' if n != 1 else ''}" if key == "insert_failed" else "")
            )
    else:
        parts.append("conntrack: no node with enough samples in both windows")
    for key, name in (("servfail_share", "SERVFAIL"), ("refused_share", "REFUSED")):
        b, a, v = c[key]
        if v != NO_DATA:
            parts.append(f"CoreDNS {name} {_pct(b)} → {_pct(a)}")
    b, a, _ = c["p99_ms"]
    if b is not None and a is not None:
        parts.append(f"p99 {b:.0f} ms → {a:.0f} ms")
    return "; ".join(parts)


# -- probe runs ----------------------------------------------------------------------------------------


def compare_probes(
    runs: list[dict[str, Any]], change: Change, nodes: set[str] | None
) -> dict[tuple[str, str], dict[str, Any]]:
    """Per (node, resolver): lookups and lookups >= 2.5 s in the nearest probe run before the change and the
    nearest after it (runs as ``dnsfleet.probe.log`` records them), with a verdict."""
    mine = [r for r in runs if r.get("cluster") == change.cluster and parse_time(r.get("time")) is not None]
    before = [r for r in mine if parse_time(r["time"]) < change.time]  # type: ignore[operator]
    after = [r for r in mine if parse_time(r["time"]) > change.time]  # type: ignore[operator]
    out: dict[tuple[str, str], dict[str, Any]] = {}

    def per(run: dict[str, Any] | None) -> dict[tuple[str, str], dict[str, Any]]:
        got = {}
        for res in (run or {}).get("results") or []:
            if res.get("status") == "ok" and isinstance(res.get("report"), dict):
                got[(res["node"], res["resolver"])] = res["report"]
        return got

    b_run = before[-1] if before else None
    a_run = after[0] if after else None
    b, a = per(b_run), per(a_run)
    for key in sorted(set(b) | set(a)):
        if nodes is not None and key[0] not in nodes:
            continue
        rb, ra = b.get(key), a.get(key)
        row = {
            "before_time": b_run and b_run.get("time"),
            "after_time": a_run and a_run.get("time"),
            "lookups_before": rb and rb.get("lookups"),
            "slow_before": rb and rb.get("ge_2_5s"),
            "lookups_after": ra and ra.get("lookups"),
            "slow_after": ra and ra.get("ge_2_5s"),
        }
        row["verdict"] = share_verdict(
            row["slow_before"], row["lookups_before"], row["slow_after"], row["lookups_after"]
        )
        out[key] = row
    return out


def probe_summary(rows: dict[tuple[str, str], dict[str, Any]]) -> str:
    if not rows:
        return "no probe run before and after"
    lb = sum(r["lookups_before"] or 0 for r in rows.values())
    sb = sum(r["slow_before"] or 0 for r in rows.values())
    la = sum(r["lookups_after"] or 0 for r in rows.values())
    sa = sum(r["slow_after"] or 0 for r in rows.values())
    nodes = len({k[0] for k in rows})
    return f"probe lookups >= 2.5 s {sb}/{lb} → {sa}/{la} on {nodes} node{'s' if nodes != 1 else ''}"


FetchFn = Callable[[str, float, float], dict[str, Any]]


def verify(
    records: Iterable[dict[str, Any]],
    fetch: FetchFn | None,
    *,
    now: float,
    window_s: float = DEFAULT_WINDOW_S,
    settle_s: float = DEFAULT_SETTLE_S,
    snapshot: dict[str, Any] | None = None,
    probe_runs: list[dict[str, Any]] | None = None,
    clusters: set[str] | None = None,
) -> list[dict[str, Any]]:
    """One result per applied change. ``fetch(cluster, start, end)`` returns an evidence section
    (``evidence.query.fetch``); None: Prometheus not configured."""
    if window_s <= 0 or settle_s < 0:
        raise ValueError("the window must be > 0 s and the settle time >= 0 s")
    out = []
    for ch in changes(records):
        if clusters and ch.cluster not in clusters:
            continue
        nodes, scope = affected_nodes(ch, snapshot)
        res: dict[str, Any] = {"change": ch, "scope": scope, "prometheus": None, "probe": None}
        end = ch.time + settle_s + window_s
        if fetch is None:
            res["prometheus_verdict"], res["prometheus_summary"] = NO_DATA, "no Prometheus configured"
        elif end > now:
            res["prometheus_verdict"] = NO_DATA
            res["prometheus_summary"] = (
                f"the after window ends at {iso(end)}, {round((end - now) / 60)} min from now"
            )
        else:
            ev = fetch(ch.cluster, ch.time - window_s, end)
            if ev.get("source") is None:
                res["prometheus_verdict"], res["prometheus_summary"] = (
                    NO_DATA,
                    ev.get("note") or "not collected",
                )
            else:
                cmp = compare_prometheus(ev, ch.time, window_s, settle_s, nodes)
                res["prometheus"] = cmp
                res["prometheus_verdict"] = cmp["cluster"]["verdict"]
                res["prometheus_summary"] = summary(cmp) + "".join(f" ({n})" for n in cmp["note"])
        rows = compare_probes(probe_runs or [], ch, nodes)
        res["probe"] = rows
        res["probe_verdict"] = overall(r["verdict"] for r in rows.values())
        res["probe_summary"] = probe_summary(rows)
        out.append(res)
    return out


def rows(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Flat rows (one per change and scope: the cluster, each node, each probed node and resolver) for a
    table or CSV."""
    out: list[dict[str, Any]] = []
    for r in results:
        ch: Change = r["change"]
        base = {
            "change_time_utc": iso(ch.time),
            "cluster": ch.cluster,
            "mitigation": ch.mitigation,
            "batch": ch.batch,
            "objects": "; ".join(f"{o.get('kind')} {o.get('namespace')}/{o.get('name')}" for o in ch.objects),
        }
        cmp = r["prometheus"]
        win = {}
        if cmp:
            win = {
                "before_utc": f"{iso(cmp['before'][0])}/{iso(cmp['before'][1])}",
                "after_utc": f"{iso(cmp['after'][0])}/{iso(cmp['after'][1])}",
            }
        row = {**base, "source": "prometheus", "scope": "cluster", "node": "", "resolver": "", **win}
        row["verdict"] = r["prometheus_verdict"]
        row["summary"] = r["prometheus_summary"]
        if cmp:
            c = cmp["cluster"]
            row["nodes_compared"] = c["nodes_compared"]
            for key, col in (
                ("insert_failed", "insert_failed_per_hour"),
                ("drop", "drop_per_hour"),
                ("servfail_share", "servfail_share"),
                ("refused_share", "refused_share"),
                ("qps", "coredns_queries_per_second"),
                ("p99_ms", "coredns_p99_ms"),
            ):
                row[f"{col}_before"], row[f"{col}_after"] = c[key][0], c[key][1]
        out.append(row)
        for node, nrow in (cmp or {}).get("nodes", {}).items():
            out.append(
                {
                    **base,
                    "source": "prometheus",
                    "scope": "node",
                    "node": node,
                    "resolver": "",
                    **win,
                    "verdict": nrow["verdict"],
                    "insert_failed_per_hour_before": nrow["insert_failed"][0],
                    "insert_failed_per_hour_after": nrow["insert_failed"][1],
                    "drop_per_hour_before": nrow["drop"][0],
                    "drop_per_hour_after": nrow["drop"][1],
                }
            )
        out.append(
            {
                **base,
                "source": "probe",
                "scope": "cluster",
                "node": "",
                "resolver": "",
                "verdict": r["probe_verdict"],
                "summary": r["probe_summary"],
            }
        )
        for (node, resolver), prow in r["probe"].items():
            out.append(
                {
                    **base,
                    "source": "probe",
                    "scope": "node",
                    "node": node,
                    "resolver": resolver,
                    "verdict": prow["verdict"],
                    "before_utc": prow["before_time"] or "",
                    "after_utc": prow["after_time"] or "",
                    "probe_lookups_before": prow["lookups_before"],
                    "probe_slow_before": prow["slow_before"],
                    "probe_lookups_after": prow["lookups_after"],
                    "probe_slow_after": prow["slow_after"],
                }
            )
    return out


CSV_COLUMNS = (
    "change_time_utc",
    "cluster",
    "mitigation",
    "batch",
    "objects",
    "source",
    "scope",
    "node",
    "resolver",
    "verdict",
    "summary",
    "before_utc",
    "after_utc",
    "nodes_compared",
    "insert_failed_per_hour_before",
    "insert_failed_per_hour_after",
    "drop_per_hour_before",
    "drop_per_hour_after",
    "servfail_share_before",
    "servfail_share_after",
    "refused_share_before",
    "refused_share_after",
    "coredns_queries_per_second_before",
    "coredns_queries_per_second_after",
    "coredns_p99_ms_before",
    "coredns_p99_ms_after",
    "probe_lookups_before",
    "probe_slow_before",
    "probe_lookups_after",
    "probe_slow_after",
)
