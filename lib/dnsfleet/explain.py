"""Explaining an assessment: the structured reasons ``engine.assemble`` recorded (a code from
``rules/data/codes.csv`` plus its parameters) rendered into the texts people read: each workload's,
node's and cluster's ``why``, the per-factor texts of the ``factors`` frame, the DNS path note, what
would resolve a cluster's unknown pods and its other findings (D7).

Nothing here decides or scores; every sentence comes from a code's message template.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from dnsfleet import schema
from dnsfleet.rules import codes

if TYPE_CHECKING:
    from dnsfleet.engine import Assessment

Reason = tuple[str, dict[str, Any]]


def message(code: str, params: dict[str, Any]) -> str:
    """One reason; a ``what_code`` parameter is itself rendered into ``what``."""
    params = dict(params)
    if "what_code" in params:
        params["what"] = codes.message(params.pop("what_code"), **params)
    return codes.message(code, **params)


def explain(a: Assessment) -> Assessment:
    """The assessment with every text filled in (a new object; the frames are new)."""
    r = a.reasons
    dns = path_notes(a.dns_service)
    wl = explain_workloads(a.workloads, r["workloads"])
    nodes = explain_nodes(a.nodes, r["nodes"])
    clusters = explain_clusters(a.clusters, r["clusters"], dns)
    factors = pd.concat(
        [
            _melt_clusters(clusters, r["clusters"]),
            _melt(nodes, r["nodes"], "node", "node"),
            _melt(wl, r["workloads"], "workload", "workload_id"),
        ],
        ignore_index=True,
    )
    from dnsfleet.engine import _clusters_out

    return replace(
        a,
        clusters=_clusters_out(clusters),
        nodes=schema.conform(nodes, "nodes", schema.RISK_COLUMNS),
        workloads=schema.conform(wl, "workloads", schema.RISK_COLUMNS + schema.WORKLOAD_RISK_COLUMNS),
        dns_service=schema.conform(dns, "dns_service"),
        factors=schema.conform(factors, "factors"),
    )


def path_notes(dns_service: pd.DataFrame) -> pd.DataFrame:
    d = dns_service.copy()
    d["path_note"] = codes.render(
        d["path_code"].fillna("P-UNREAD"), {"mode": d["kube_proxy_mode"].fillna("unknown")}
    )
    return d


def _texts(r: pd.DataFrame, factor: str) -> pd.Series:
    return codes.render(r[f"{factor}_code"], r)


# Reason codes that leave a row unknown -> the code that says what would decide it (and how to provide
# it). A row whose level is "unknown" gets these appended to its ``why``.
TO_DECIDE: dict[str, str] = {
    "KERNEL-UNKNOWN": "RESOLVE-ROW-KERNEL",
    "NODE-UNKNOWN": "RESOLVE-ROW-KERNEL",
    "NODES-UNKNOWN": "RESOLVE-ROW-KERNEL",
    "K8": "RESOLVE-ROW-KERNEL",
    "NODE-IPVS": "RESOLVE-ROW-IPVS",
    "IPVS-RACE3": "RESOLVE-ROW-IPVS",
    "R11": "RESOLVE-ROW-RESOLVER",
    "R9": "RESOLVE-ROW-RESOLVER",
    "RESOLVER-UNKNOWN": "RESOLVE-ROW-RESOLVER",
    "R4": "RESOLVE-ROW-GLIBC",
    "P-UNREAD": "RESOLVE-ROW-PATH",
    "P-NONE": "RESOLVE-ROW-PATH",
    "P2-IPVS": "RESOLVE-ROW-PATH",
    "P2-NFT": "RESOLVE-ROW-PATH",
    "P3-TC": "RESOLVE-ROW-PATH",
    "P3-NOSOCK": "RESOLVE-ROW-PATH",
    "P4": "RESOLVE-ROW-PATH",
    "P-LINK-UNKNOWN": "RESOLVE-ROW-PATH",
    "PATH-NODE-UNKNOWN": "RESOLVE-ROW-PATH",
}


def to_decide(r: pd.DataFrame, level: pd.Series) -> pd.Series:
    """Per row of unknown ``level``: what would decide it and how to provide it ("" for other rows, and
    for an unknown row none of whose codes is in ``TO_DECIDE``)."""
    out = pd.Series("", index=level.index, dtype="object")
    unknown = (level.astype("string").fillna("unknown") == "unknown").to_numpy()
    if not unknown.any():
        return out
    cols = [f"{f}_code" for f in ("kernel", "service_path", "resolver") if f"{f}_code" in r.columns]
    texts = {c: message(c, {}) for c in set(TO_DECIDE.values())}
    # Some of a workload's pods on nodes of unknown kernel while its kernel text names the open ones.
    idx = np.flatnonzero(unknown)
    if "k_unk" in r.columns:
        k_unk = pd.to_numeric(r["k_unk"], errors="coerce").fillna(0).to_numpy()[idx] > 0
    else:
        k_unk = np.zeros(len(idx), dtype=bool)
    # Plain arrays and one text per distinct combination of codes: a row-by-row .iloc loop took 17 s
    # on a million placements' workloads.
    arrays = [r[col].to_numpy(dtype=object)[idx] for col in cols]
    done: dict[tuple, str] = {}
    vals = np.empty(len(idx), dtype=object)
    for j, key in enumerate(zip(k_unk.tolist(), *arrays, strict=True)):
        text = done.get(key)
        if text is None:
            found = [TO_DECIDE[c] for c in key[1:] if isinstance(c, str) and c in TO_DECIDE]
            if key[0]:
                found.insert(0, "RESOLVE-ROW-KERNEL")
            text = done[key] = "; ".join(texts[c] for c in dict.fromkeys(found))
        vals[j] = text
    res = out.to_numpy(dtype=object, copy=True)
    res[idx] = vals
    return pd.Series(res, index=level.index, dtype="object")


def _with(why: pd.Series | np.ndarray, extra: pd.Series) -> pd.Series:
    why = pd.Series(why, index=extra.index, dtype="object")
    return why.where(extra == "", why.fillna("").astype(str) + "; " + extra)


def explain_workloads(wl: pd.DataFrame, r: pd.DataFrame) -> pd.DataFrame:
    wl = wl.copy()
    t = {f: _texts(r, f) for f in schema.FACTOR_NAMES}
    for f, v in t.items():
        wl[f"{f}_text"] = v
    exposed_why = t["kernel"] + "; " + t["resolver"] + "; " + t["service_path"]
    exposed_why = exposed_why + np.where(t["evidence"] != "", "; " + t["evidence"], "")
    zf = r["zero_factor"]
    zero_reason = np.select(
        [zf == "resolver", zf == "kernel", zf == "service_path"],
        [t["resolver"], t["kernel"], t["service_path"]],
        default="",
    )
    zero = codes.render(
        pd.Series(np.where(zero_reason != "", "ZERO-WORKLOAD", ""), index=wl.index),
        {"reason": pd.Series(zero_reason, index=wl.index)},
    )
    why = np.where((wl["score"].fillna(0) == 0) & (zero != ""), zero, exposed_why)
    wl["why"] = _with(np.where(zf == "not_applicable", t["service_path"], why), to_decide(r, wl["level"]))
    return wl


def explain_nodes(nodes: pd.DataFrame, r: pd.DataFrame) -> pd.DataFrame:
    nodes = nodes.copy()
    t = {f: _texts(r, f) for f in schema.FACTOR_NAMES}
    for f, v in t.items():
        nodes[f"{f}_text"] = v
    nodes["why"] = _with(
        t["kernel"] + "; " + t["service_path"] + "; " + t["evidence"], to_decide(r, nodes["level"])
    )
    return nodes


def _join(reasons: list[Reason], limit: int | None = None) -> str:
    items = reasons if limit is None else reasons[:limit]
    return "; ".join(message(c, p) for c, p in items)


def explain_clusters(cl: pd.DataFrame, r: pd.DataFrame, dns_service: pd.DataFrame) -> pd.DataFrame:
    cl = cl.copy()
    for f in schema.FACTOR_NAMES:
        cl[f"{f}_text"] = [_join(x) for x in r[f]]
    na_text = [_join(x) for x in r["not_applicable"]]
    cl["resolver_text"] = [
        t + ("; " + n if n else "") for t, n in zip(cl["resolver_text"], na_text, strict=True)
    ]
    unknown = []
    for pods, res in zip(cl["unknown_pods"], r["unknown_resolve"], strict=True):
        if pods is None or pd.isna(pods) or not pods or not res:
            unknown.append(None)
            continue
        unknown.append(message("UNKNOWN-RESOLVE", {"pods": int(pods), "what": _join(res)}))
    cl["unknown_resolve"] = pd.Series(unknown, index=cl.index, dtype="object")
    cl["findings"] = pd.Series([_join(x) or None for x in r["findings"]], index=cl.index, dtype="object")
    pts = cl[[f"{f}_pts" for f in schema.FACTOR_NAMES]].fillna(0).to_numpy()
    order = np.argsort(-pts, axis=1, kind="stable")
    names = np.array(schema.FACTOR_NAMES)
    why = []
    for i, (_, row) in enumerate(cl.iterrows()):
        if row["status"] == "failed":
            why.append(
                message("SCAN-FAILED", {"reason": row["reason"] if pd.notna(row["reason"]) else "no data"})
            )
            continue
        if row["level"] == "n/a":
            why.append(message("CLUSTER-NA", {}))
            continue
        if row.get("score") == 0:
            zero = r["zero"].iloc[i]
            reason = row[f"{zero}_text"]
            if zero == "kernel":
                reason = (
                    message("KERNEL-FIXED-ALL", {}) if "K4-ONE" not in str(r["kernel"].iloc[i]) else reason
                )
            why.append(message("ZERO-CLUSTER", {"reason": reason}))
            continue
        top = [row[f"{names[j]}_text"] for j in order[i][:3] if row[f"{names[j]}_text"]]
        if row["level"] == "unknown" and cl["unknown_resolve"].iloc[i]:
            top.append(cl["unknown_resolve"].iloc[i])  # what is missing, and how to provide it
        why.append("; ".join(top))
    cl["why"] = why
    return cl


def _melt(df: pd.DataFrame, r: pd.DataFrame, scope: str, key: str) -> pd.DataFrame:
    if not len(df):
        return pd.DataFrame()
    out = []
    for f in schema.FACTOR_NAMES:
        t = df.get(f"{f}_text")
        if t is None:
            continue
        code = r[f"{f}_code"].astype("string")
        part = pd.DataFrame(
            {
                "cluster": df["cluster"],
                "key": df[key],
                "points": df[f"{f}_pts"],
                "code": code,
                "text": t,
            }
        )
        part = part[part["text"].fillna("") != ""]
        # one lookup per distinct code, not per row (a million workloads, a dozen codes)
        rules = {c: codes.rule(c) for c in part["code"].dropna().unique() if c}
        part["rule"] = part["code"].map(rules).fillna("").astype(object)
        part["factor"], part["scope"] = f, scope
        out.append(part)
    return pd.concat(out, ignore_index=True) if out else pd.DataFrame()


def _melt_clusters(cl: pd.DataFrame, r: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for i, (_, row) in enumerate(cl.iterrows()):
        for f in schema.FACTOR_NAMES:
            text = row[f"{f}_text"]
            reasons = r[f].iloc[i]
            if not text or not reasons:
                continue
            rows.append(
                {
                    "scope": "cluster",
                    "cluster": row["cluster"],
                    "key": row["cluster"],
                    "factor": f,
                    "points": row[f"{f}_pts"],
                    "code": reasons[0][0],
                    "text": text,
                    "rule": ", ".join(dict.fromkeys(codes.rule(c) for c, _ in reasons)),
                }
            )
    return pd.DataFrame(rows)
