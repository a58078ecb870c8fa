"""Pure table shaping for the pages: filters, caps, joins and counts over the engine's frames.

Nothing here scores anything: the engine's ``score``/``level``/``why`` columns are shown as they are.
Every function takes frames and returns a new frame (never mutates its input: the assessment is
cached and shared between reruns).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import numpy as np
import pandas as pd

from dnsfleet import textsafe
from dnsfleet.rules import codes as rule_codes
from dnsfleet.rules import coredns as coredns_rules
from dnsfleet.schema import LEVELS
from dnsfleet.verdicts import round_score

# Rows sent to the browser per table; the rest is summarised in a note.
TABLE_LIMIT = 1000


@dataclass(frozen=True)
class Capped:
    frame: pd.DataFrame
    total: int

    @property
    def note(self) -> str | None:
        if self.total <= len(self.frame):
            return None
        return (
            f"Showing {len(self.frame):,} of {self.total:,} rows (highest risk first). "
            "Narrow the filters to see the others, or download the full CSV on the Reports page."
        )


def cap(df: pd.DataFrame, limit: int = TABLE_LIMIT) -> Capped:
    return Capped(df.head(limit), len(df))


def filter_in(df: pd.DataFrame, column: str, values: Iterable[str] | None) -> pd.DataFrame:
    """Rows whose ``column`` is one of ``values``; no filter when ``values`` is empty or None."""
    vals = list(values or [])
    if not vals:
        return df
    return df[df[column].fillna("unknown").astype(str).isin(vals)]


def search(df: pd.DataFrame, text: str, columns: Sequence[str]) -> pd.DataFrame:
    """Rows where any of ``columns`` contains ``text`` (case-insensitive, literal, not a regex)."""
    text = (text or "").strip()
    if not text:
        return df
    mask = pd.Series(False, index=df.index)
    for c in columns:
        mask |= df[c].astype("string").str.contains(text, case=False, regex=False).fillna(False).astype(bool)
    return df[mask]


def options(df: pd.DataFrame, column: str) -> list[str]:
    """Sorted distinct values of a column for a filter widget (NA shown as 'unknown')."""
    vals = df[column].fillna("unknown").astype(str).unique().tolist()
    if column == "level":
        return [lv for lv in LEVELS if lv in vals]
    return sorted(vals)


def cluster_url(cluster: str) -> str:
    """Relative URL of the cluster page with the cluster preselected (a shareable deep link)."""
    return f"cluster?cluster={quote(str(cluster), safe='')}"


def by_risk(df: pd.DataFrame) -> pd.DataFrame:
    """Highest score first, unscored rows last, then by the first text key column for stable order.
    Clusters follow the engine's ``rank`` (known exposure before unknown-only risk)."""
    if "rank" in df.columns:
        return df.sort_values(["rank", "cluster"], na_position="last")
    keys = [c for c in ("cluster", "namespace", "name", "node") if c in df.columns]
    return df.sort_values(["score", *keys], ascending=[False] + [True] * len(keys), na_position="last")


# --- fleet overview -------------------------------------------------------------------------------


def fleet_metrics(clusters: pd.DataFrame, workloads: pd.DataFrame) -> dict[str, Any]:
    """Headline numbers: counts, share of pods exposed, clusters at high risk, failed scans."""
    pods = int(clusters["pods"].fillna(0).sum())
    exposed = int(clusters["exposed_pods"].fillna(0).sum())
    return {
        "clusters": len(clusters),
        "clusters_failed": int((clusters["status"] == "failed").sum()),
        "nodes": int(clusters["nodes"].fillna(0).sum()),
        "workloads": len(workloads),
        "pods": pods,
        "exposed_pods": exposed,
        "exposed_share": (exposed / pods) if pods else None,
        "clusters_high": int((clusters["level"] == "high").sum()),
    }


def cluster_table(clusters: pd.DataFrame) -> pd.DataFrame:
    """The ranking table: one row per cluster (failed scans included, with their reason)."""
    df = by_risk(clusters)
    pods = df["pods"].astype("Float64")
    return pd.DataFrame(
        {
            "cluster": df["cluster"],
            "open": [cluster_url(c) for c in df["cluster"]],
            "level": df["level"].fillna("unknown"),
            "score": round_score(df["score"]),
            "status": df["status"],
            "reason": df["reason"].fillna(""),
            "why": df["why"],
            "rule": rule_links(df["why"]),
            "provider": df["provider"].fillna("unknown"),
            "nodes": df["nodes"],
            "pods": df["pods"],
            "exposed_pods": df["exposed_pods"],
            "exposed_share": (df["exposed_pods"].astype("Float64") / pods.where(pods > 0)),
            "unknown_pods": df["unknown_pods"],
            "unknown_resolve": df["unknown_resolve"].fillna("") if "unknown_resolve" in df.columns else "",
            "server_version": df["server_version"].fillna("unknown"),
            "collected_at": df["collected_at"],
        }
    ).reset_index(drop=True)


# --- cluster page ---------------------------------------------------------------------------------


def cluster_row(clusters: pd.DataFrame, cluster: str) -> pd.Series | None:
    rows = clusters[clusters["cluster"] == cluster]
    return None if rows.empty else rows.iloc[0]


def cluster_factors(factors: pd.DataFrame, cluster: str) -> pd.DataFrame:
    """The cluster-scope score contributions with their plain-language text, largest first."""
    df = factors[(factors["cluster"] == cluster) & (factors["scope"] == "cluster")]
    return df.sort_values("points", ascending=False, na_position="last")[["factor", "points", "text", "rule"]]


def cluster_recommendations(recs: pd.DataFrame, cluster: str) -> pd.DataFrame:
    """Recommendations for one cluster, ranked by the score points each removes."""
    df = recs[recs["cluster"] == cluster]
    df = df.sort_values(
        ["risk_removed", "pods", "target"], ascending=[False, False, True], na_position="last"
    )
    return df[
        ["mitigation", "scope", "target", "action", "risk_removed", "pods", "note", "rule", "finding_id"]
    ]


def dns_path_facts(dns_service: pd.DataFrame, cluster: str) -> list[tuple[str, str]]:
    """The DNS service path of a cluster as (label, value) pairs, 'not known' where the scan could not see."""
    rows = dns_service[dns_service["cluster"] == cluster]
    if rows.empty:
        return []
    r = rows.iloc[0]

    def show(v: object, yes: str = "yes", no: str = "no") -> str:
        if v is None or v is pd.NA or (isinstance(v, float) and pd.isna(v)):
            return "not known"
        if isinstance(v, bool | np.bool_):
            return yes if v else no
        return str(v)

    return [
        ("Path from pod to CoreDNS", show(r["path"])),
        ("Why", show(r["path_note"])),
        ("kube-proxy mode", show(r["kube_proxy_mode"])),
        ("CNI", show(r["cni"])),
        ("eBPF service load-balancing", show(r["ebpf_service_lb"])),
        (
            "NodeLocal DNSCache",
            show(r["nodelocal"], "present", "absent")
            + (f" ({r['nodelocal_ip']})" if pd.notna(r["nodelocal_ip"]) else ""),
        ),
        ("NFQUEUE policy agent on the DNS path", show(r["nfqueue_agent"])),
        ("kube-dns Service IP", show(r["cluster_ip"])),
        ("Ready kube-dns endpoints", show(r["ready_endpoints"])),
        ("CoreDNS version", show(r["coredns_version"])),
        ("CoreDNS replicas", show(r["coredns_replicas"])),
        ("Corefile plugins", show(r["corefile_plugins"]).replace(",", ", ")),
        ("Cluster domain", show(r["cluster_domain"])),
    ]


# --- nodes ----------------------------------------------------------------------------------------


def pool_summary(nodes: pd.DataFrame) -> pd.DataFrame:
    """One row per (cluster, node pool): nodes, ready nodes, kernels, nodes with race 1, 2 or 3 open."""
    if nodes.empty:
        return pd.DataFrame(
            columns=["cluster", "pool", "nodes", "ready_nodes", "kernels", "nodes_open", "max_score"]
        )
    df = nodes.assign(
        pool=nodes["pool"].fillna("(no pool label)"),
        any_open=(nodes[["race1", "race2", "race3"]] == "open").any(axis=1),
        is_ready=nodes["ready"].fillna(False).astype(bool),
        kernel=nodes["kernel_version"].fillna("unknown"),
    )
    out = (
        df.groupby(["cluster", "pool"], sort=True)
        .agg(
            nodes=("node", "size"),
            ready_nodes=("is_ready", "sum"),
            kernels=("kernel", lambda s: ", ".join(sorted(s.astype(str).unique())[:5])),
            nodes_open=("any_open", "sum"),
            max_score=("score", "max"),
        )
        .reset_index()
    )
    out["max_score"] = round_score(out["max_score"])
    return out.sort_values(["nodes_open", "nodes"], ascending=False).reset_index(drop=True)


NODE_COLUMNS = [
    "cluster",
    "node",
    "pool",
    "level",
    "score",
    "kernel_version",
    "distro",
    "os_image",
    "race1",
    "race2",
    "race3",
    "nfqueue",
    "counters_exact",
    "ready",
    "nodelocal_ready",
    "pods",
    "exposed_pods",
    "instance_type",
    "zone",
    "why",
]


def conntrack_summary(conntrack: pd.DataFrame) -> pd.DataFrame:
    """Per cluster: nodes with conntrack stats collected, total insert_failed, and why not collected."""
    if conntrack.empty:
        return pd.DataFrame(
            columns=["cluster", "nodes_collected", "nodes", "insert_failed_increase", "not_collected"]
        )
    df = conntrack.assign(avail=conntrack["available"].fillna(False).astype(bool))
    out = (
        df.groupby("cluster", sort=True)
        .agg(
            nodes_collected=("avail", "sum"),
            nodes=("node", "size"),
            insert_failed_increase=("insert_failed_increase", lambda s: s.sum(min_count=1)),
            not_collected=("reason", lambda s: "; ".join(sorted(s.dropna().astype(str).unique())[:3])),
        )
        .reset_index()
    )
    return out


# --- workloads ------------------------------------------------------------------------------------


def workload_table(workloads: pd.DataFrame) -> pd.DataFrame:
    """Workloads with their recommended fix (decided once, by the engine), highest risk first."""
    df = by_risk(workloads)
    pods = df["pods"].astype("Float64")
    return pd.DataFrame(
        {
            "cluster": df["cluster"],
            "namespace": df["namespace"],
            "owner": df["kind"].astype(str) + "/" + df["name"].astype(str),
            "level": df["level"].fillna("unknown"),
            "score": round_score(df["score"]),
            "pods": df["pods"],
            "exposed_pods": df["exposed_pods"],
            "exposure": df["exposed_pods"].astype("Float64") / pods.where(pods > 0),
            "image": df["image"].fillna("unknown"),
            "resolver": df["resolver"].fillna("unknown"),
            "dns_policy": df["dns_policy"].fillna("unknown"),
            "dns_options": df["dns_options"],
            "ndots": df["ndots"],
            "stall_s": df["stall_s"],
            "recommended_fix": df["recommended_fix"].astype("string"),
            "why": df["why"],
            "rule": rule_links(df["why"]),
            "workload_id": df["workload_id"],
        }
    ).reset_index(drop=True)


def node_table(nodes: pd.DataFrame) -> pd.DataFrame:
    """Nodes, highest risk first, with scores rounded as everywhere else."""
    df = by_risk(nodes)
    df = df.assign(score=round_score(df["score"]), rule=rule_links(df["why"]))
    for c in ("kernel_version", "distro", "os_image", "race1", "race2", "race3", "nfqueue"):
        df[c] = df[c].fillna("unknown")
    return df[[c for c in [*NODE_COLUMNS, "rule"] if c in df.columns]].reset_index(drop=True)


# --- CoreDNS --------------------------------------------------------------------------------------


def coredns_version(dns_service: pd.DataFrame, cluster: str) -> str | None:
    rows = dns_service[dns_service["cluster"] == cluster]
    if rows.empty or pd.isna(rows.iloc[0]["coredns_version"]):
        return None
    return str(rows.iloc[0]["coredns_version"])


def rcode_caveat(dns_service: pd.DataFrame, cluster: str) -> str | None:
    """Why the rcode-over-time chart of ``cluster`` must not be shown (its CoreDNS version is known to
    report rcodes wrongly, ``rules/data/coredns_metrics.csv``), with the public source; None when it
    can be shown."""
    version = coredns_version(dns_service, cluster)
    bugs = coredns_rules.metrics_bugs(version, "rcode")
    if not bugs:
        return None
    return "; ".join(f"{b.message.format(version=version)} ({b.source})" for b in bugs)


# --- rule ids: links to their explanation on the Rules page ----------------------------------------

# A rule id as dnsfleet writes it: K0-K8, P1-P5, R1-R11, D1-D8, M1-M6, or a range such as K1-K3.
RULE_ID = re.compile(r"\b([KPRDM]\d{1,2})(?:-([KPRDM]\d{1,2}))?\b")


@dataclass(frozen=True)
class RuleSection:
    """One rule id of the registry with every code that cites it."""

    rule: str
    anchor: str
    title: str
    codes: tuple[rule_codes.Code, ...]


def _rule_key(rule: str) -> tuple[int, int, str]:
    m = RULE_ID.fullmatch(rule)
    if not m:
        return (len("KPRDM"), 0, rule)
    return ("KPRDM".index(rule[0]), int(m.group(1)[1:]), rule)


def rule_sections() -> list[RuleSection]:
    """The Rules page's content, generated from the code registry (``rules/data/codes.csv``): one
    section per rule id in K, P, R, D, M order, titled by the code named like the rule (else its first
    code), listing every code that cites it."""
    by_rule: dict[str, list[rule_codes.Code]] = {}
    for c in rule_codes.registry().values():
        by_rule.setdefault(c.rule, []).append(c)
    out = []
    for rule in sorted(by_rule, key=_rule_key):
        cs = by_rule[rule]
        own = next((c for c in cs if c.code == rule), cs[0])
        out.append(RuleSection(rule, rule_anchor(rule), own.title, tuple(cs)))
    return out


def rule_anchor(rule: str) -> str:
    return "rule-" + re.sub(r"[^a-z0-9-]", "-", rule.lower())


def expand_rules(wanted: Iterable[str]) -> list[str]:
    """The registry's rule ids a link names: ``K8``, a range ``K1-K3`` (itself and K1, K2, K3 when the
    registry has them), or a comma-separated list of those. Unknown ids are dropped."""
    known = {s.rule for s in rule_sections()}
    out: list[str] = []
    for part in ",".join(wanted).split(","):
        part = part.strip()
        m = RULE_ID.fullmatch(part)
        if not part:
            continue
        ids = [part]
        if m and m.group(2) and m.group(1)[0] == m.group(2)[0]:
            lo, hi = int(m.group(1)[1:]), int(m.group(2)[1:])
            ids += [f"{part[0]}{i}" for i in range(lo, hi + 1)]
        out += [i for i in ids if i in known and i not in out]
    return out


def rules_url(rules: Iterable[str]) -> str | None:
    """Relative URL of the Rules page opened on ``rules`` (None when there are none)."""
    ids = [r for r in dict.fromkeys(rules) if r]
    return "rules?rule=" + ",".join(quote(r, safe="-") for r in ids) if ids else None


def rule_ids(text: object) -> list[str]:
    """The rule ids a text cites, in order, without repeats (``"(D1, K7)"`` → D1, K7)."""
    if text is None or text is pd.NA or (isinstance(text, float) and pd.isna(text)):
        return []
    return list(dict.fromkeys(m.group(0) for m in RULE_ID.finditer(str(text))))


def rule_links(texts: pd.Series) -> pd.Series:
    """Per row, the Rules page URL for every rule id the row's text cites (None when it cites none),
    for a link column beside a text column."""
    return pd.Series([rules_url(rule_ids(t)) for t in texts], index=texts.index, dtype="object")


def md_escape(text: object) -> str:
    """Text safe to put in ``st.markdown`` (no emphasis, links, HTML or LaTeX from data)."""
    return textsafe.markdown(text)


_URL = re.compile(r"https?://[^\s<>()\[\]]*[^\s<>()\[\].,;:'\"]")


def linked_source(text: object) -> str:
    """A rule's public source (our own registry, ``rules/data/codes.csv``) as markdown: its URLs as
    links, the rest escaped (``dnsfleet.textsafe``)."""
    return _linked(text, _URL, lambda url: f"[{textsafe.markdown_inline(url)}]({url})")


def linked_markdown(text: object) -> str:
    """``text`` escaped for markdown (``dnsfleet.textsafe``), each rule id in it a link to its explanation."""
    return _linked(text, RULE_ID, lambda rule: f"[{rule}]({rules_url([rule])})")


def _linked(text: object, pattern: re.Pattern[str], link: Callable[[str], str]) -> str:
    """``text`` on one line, escaped for markdown, each match of ``pattern`` replaced by ``link(match)``."""
    out, last = [], 0
    s = textsafe.one_line(text)
    for m in pattern.finditer(s):
        out.append(textsafe.markdown_inline(s[last : m.start()]))
        out.append(link(m.group(0)))
        last = m.end()
    out.append(textsafe.markdown_inline(s[last:]))
    return textsafe.markdown_line_start("".join(out))
