"""Build the documented frames (``dnsfleet.schema``) from a fleet snapshot (``dnsfleet.snapshot``).

Pods are rolled up to their owning workload (Deployment via ReplicaSet, CronJob via Job, StatefulSet,
DaemonSet, bare Pod). Kernel strings are classified once per distinct (kernelVersion, osImage); DNS
settings once per pod. Unknown inputs stay NA.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
import pandas as pd

from dnsfleet import corefile, schema
from dnsfleet.rules import coredns as coredns_rules
from dnsfleet.rules import kernel as kernel_rules
from dnsfleet.rules import path as path_rules
from dnsfleet.rules import resolver as resolver_rules

POOL_LABELS = (
    "agentpool",
    "kubernetes.azure.com/agentpool",
    "eks.amazonaws.com/nodegroup",
    "alpha.eksctl.io/nodegroup-name",
    "karpenter.sh/nodepool",
    "cloud.google.com/gke-nodepool",
    "node.kubernetes.io/pool",
    "pool",
)


@dataclass
class Frames:
    clusters: pd.DataFrame
    nodes: pd.DataFrame
    workloads: pd.DataFrame
    placements: pd.DataFrame
    dns_service: pd.DataFrame
    coredns_metrics: pd.DataFrame
    coredns_series: pd.DataFrame
    conntrack: pd.DataFrame
    conntrack_series: pd.DataFrame

    def names(self) -> list[str]:
        return [f.name for f in fields(self)]


def build_frames(snapshot: dict[str, Any], mapping: tuple[resolver_rules.ImageRule, ...] = ()) -> Frames:
    """Rows are gathered as plain records across all clusters and turned into frames once."""
    acc = _Acc()
    for c in snapshot.get("clusters") or []:
        _cluster_rows(c, mapping, acc)
    out = {name: schema.conform(pd.DataFrame(rows), name) for name, rows in acc.rows.items()}
    out["coredns_series"] = schema.conform(acc.series_frame("coredns"), "coredns_series")
    out["conntrack_series"] = schema.conform(acc.series_frame("conntrack"), "conntrack_series")
    return Frames(**out)


class _Acc:
    """Accumulates records per frame and time series as numpy columns."""

    def __init__(self) -> None:
        names = (
            "clusters",
            "nodes",
            "workloads",
            "placements",
            "dns_service",
            "coredns_metrics",
            "conntrack",
        )
        self.rows: dict[str, list[dict[str, Any]]] = {n: [] for n in names}
        self.series: dict[str, dict[str, list[np.ndarray]]] = {"coredns": {}, "conntrack": {}}

    def add_series(self, kind: str, start: float, step: float, values: list, **labels: str) -> None:
        try:
            v = np.array([np.nan if x is None else x for x in values], dtype="float64")
        except (TypeError, ValueError):
            v = pd.to_numeric(pd.Series(values, dtype="object"), errors="coerce").to_numpy(dtype="float64")
        cols = self.series[kind]
        cols.setdefault("ts", []).append(start + step * np.arange(len(v), dtype="float64"))
        cols.setdefault("value", []).append(v)
        for k, lab in labels.items():
            cols.setdefault(k, []).append(np.full(len(v), lab, dtype=object))

    def series_frame(self, kind: str) -> pd.DataFrame:
        cols = self.series[kind]
        if not cols:
            return pd.DataFrame()
        df = pd.DataFrame({k: np.concatenate(v) for k, v in cols.items()})
        df["ts"] = pd.to_datetime(df["ts"], unit="s", utc=True)
        if kind == "conntrack":
            df = df.rename(columns={"value": "insert_failed_rate"})
        return df


def _cluster_rows(c: dict[str, Any], mapping: tuple, acc: _Acc) -> None:
    name = c["name"]
    dns = c.get("dns") or {}
    metrics = c.get("metrics") or {}
    decided = path_rules.decide(c)
    node_rows = _nodes(name, c.get("nodes") or [], decided)
    wl_rows, pl_rows = _workloads(name, c.get("pods") or [], c.get("owners") or {}, dns, decided, mapping)
    pods_per_node: dict[str, int] = {}
    for r in pl_rows:
        if r["node"] is not None:
            pods_per_node[r["node"]] = pods_per_node.get(r["node"], 0) + r["pods"]
    for r in node_rows:
        r["pods"] = pods_per_node.get(r["node"], 0)
    failed = c.get("status") == "failed"
    acc.rows["clusters"].append(
        {
            "cluster": name,
            "provider": decided.provider,
            "status": c.get("status") or "ok",
            "reason": c.get("reason"),
            "missing": ",".join(c.get("missing") or []) or None,
            "server_version": c.get("server_version"),
            "collected_at": c.get("collected_at"),
            "nodes": None if failed else len(node_rows),
            "pods": None if failed else sum(r["pods"] for r in wl_rows),
            "workloads": None if failed else len(wl_rows),
        }
    )
    acc.rows["nodes"] += node_rows
    acc.rows["workloads"] += wl_rows
    acc.rows["placements"] += pl_rows
    acc.rows["dns_service"].append(_dns_service(name, dns, c, decided))
    version = dns.get("coredns_version") or ((metrics.get("coredns") or {}).get("version"))
    acc.rows["coredns_metrics"].append(_coredns(name, metrics, acc, version))
    acc.rows["conntrack"] += _conntrack(name, metrics, [n.get("name") for n in c.get("nodes") or []], acc)


@dataclass(frozen=True)
class _K:
    race1: str
    race2: str
    race3: str
    nfqueue: str
    distro: str | None
    base: str | None
    counters_exact: bool | None
    source: str


def _classify_cached(cache: dict, kv: str | None, osi: str | None) -> _K:
    key = (kv, osi)
    if key not in cache:
        c = kernel_rules.classify(kv, osi)
        cache[key] = _K(
            c.race1, c.race2, c.race3, c.nfqueue, c.distro, c.base, c.counters_exact, "; ".join(c.source)
        )
    return cache[key]


def _nodes(cluster: str, nodes: list[dict], decided: path_rules.ClusterPath) -> list[dict[str, Any]]:
    cache: dict = {}
    rows = []
    for n in nodes:
        labels = n.get("labels") or {}
        k = _classify_cached(cache, n.get("kernel_version"), n.get("os_image"))
        pool = next((labels[p] for p in POOL_LABELS if labels.get(p)), None)
        itype = labels.get("node.kubernetes.io/instance-type") or labels.get(
            "beta.kubernetes.io/instance-type"
        )
        nl_ready = path_rules.node_nodelocal_ready(decided.nodelocal, n["name"])
        rows.append(
            {
                "cluster": cluster,
                "node": n["name"],
                "pool": pool or itype,
                "os_image": n.get("os_image"),
                "kernel_version": n.get("kernel_version"),
                "distro": k.distro or "unknown",
                "kernel_base": k.base,
                "race1": k.race1,
                "race2": k.race2,
                "race3": k.race3,
                "nfqueue": k.nfqueue,
                "counters_exact": k.counters_exact,
                "kernel_source": k.source,
                "ready": n.get("ready"),
                "nodelocal_ready": nl_ready,
                "container_runtime": n.get("container_runtime"),
                "kubelet_version": n.get("kubelet_version"),
                "instance_type": itype,
                "zone": labels.get("topology.kubernetes.io/zone"),
            }
        )
    return rows


def _owner(pod: dict, owners: dict) -> tuple[str, str]:
    kind, oname = pod.get("owner_kind"), pod.get("owner_name")
    if not kind or not oname:
        return "Pod", pod["name"]
    if kind in ("ReplicaSet", "Job"):
        parent = (owners.get(kind) or {}).get(f"{pod.get('namespace')}/{oname}")
        if isinstance(parent, list | tuple) and len(parent) == 2 and parent[0] and parent[1]:
            return str(parent[0]), str(parent[1])
    return kind, oname


def _opt_str(options: Iterable[dict]) -> str | None:
    items = []
    for o in options:
        if not isinstance(o, dict) or not o.get("name"):
            continue
        v = o.get("value")
        items.append(f"{o['name']}:{v}" if v not in (None, "") else str(o["name"]))
    return ",".join(items) or None


def _num(v: Any) -> float | None:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if f == f and f >= 0 else None


def _workload_dns(
    pod: dict, resolver: str, cluster_ip: str | None, nodelocal_ip: str | None
) -> dict[str, Any]:
    """The workload's effective DNS settings; who uses cluster DNS is rule D8 (``rules.path``)."""
    policy = pod.get("dns_policy") or "ClusterFirst"
    host_net = bool(pod.get("host_network"))
    cfg = pod.get("dns_config") or {}
    options = cfg.get("options") or []
    nameservers = [str(x) for x in cfg.get("nameservers") or []]
    opts = {str(o.get("name")): o.get("value") for o in options if isinstance(o, dict) and o.get("name")}
    uses_cluster, via = path_rules.uses_cluster_dns(policy, host_net, nameservers, cluster_ip, nodelocal_ip)
    rt = resolver_rules.resolver_table().get(resolver, {})
    ndots = _num(opts.get("ndots")) if "ndots" in opts else (5.0 if uses_cluster else None)
    timeout = _num(opts.get("timeout")) if "timeout" in opts else _num(rt.get("default_timeout_s"))
    attempts = _num(opts.get("attempts")) if "attempts" in opts else _num(rt.get("default_attempts"))
    if timeout is None:
        stall = None
    elif rt.get("stall") == "timeout/attempts" and attempts:
        stall = timeout / attempts
    else:
        stall = timeout
    pair = rt.get("parallel_pair", "unknown")
    if pair == "yes":
        mit = [resolver_rules.option_mitigates(resolver, o) for o in opts]
        if "yes" in mit:
            pair = "no"
        elif "unknown" in mit:
            pair = "unknown"
    return {
        "dns_policy": policy,
        "host_network": host_net,
        "uses_cluster_dns": uses_cluster,
        "dns_via": via,
        "dns_options": _opt_str(options),
        "nameservers": ",".join(nameservers) or None,
        "ndots": None if ndots is None else int(min(ndots, 15)),
        "timeout_s": timeout,
        "attempts": None if attempts is None else int(attempts),
        "stall_s": stall,
        "sends_parallel_pair": pair,
    }


def _workloads(
    cluster: str, pods: list[dict], owners: dict, dns: dict, decided: path_rules.ClusterPath, mapping: tuple
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    cluster_ip = dns.get("service_ip")
    nl_ip = decided.nodelocal.ip if decided.nodelocal.present else None
    first: dict[str, dict] = {}
    counts: dict[str, int] = {}
    images: dict[str, dict[tuple, None]] = {}  # distinct image lists per workload, first seen first
    place: dict[tuple[str, str | None], int] = {}
    wid_of: dict[tuple, str] = {}  # (namespace, owner kind, owner name) -> workload id
    for p in pods:
        ns_raw, okind, oname = p.get("namespace"), p.get("owner_kind"), p.get("owner_name")
        okey = (ns_raw, okind, oname)
        wid = wid_of.get(okey) if okind and oname else None
        if wid is None:
            kind, name = _owner(p, owners)
            ns = ns_raw or ""
            wid = f"{cluster}/{ns}/{kind}/{name}"
            if okind and oname:
                wid_of[okey] = wid
            if wid not in first:
                first[wid] = {"p": p, "ns": ns, "kind": kind, "name": name}
                counts[wid] = 0
                images[wid] = {}
        counts[wid] += 1
        imgs = p.get("images")
        if imgs:
            images[wid][tuple(imgs)] = None
        key = (wid, p.get("node"))
        place[key] = place.get(key, 0) + 1
    rows = []
    for wid, f in first.items():
        p = f["p"]
        imgs = list(dict.fromkeys(img for lst in images[wid] for img in lst))
        main = imgs[0] if imgs else None
        resolver, rsrc = resolver_rules.infer_resolver(main, p.get("resolver_annotation"), mapping)
        row = {
            "cluster": cluster,
            "namespace": f["ns"],
            "kind": f["kind"],
            "name": f["name"],
            "workload_id": wid,
            "pods": counts[wid],
            "image": main,
            "images": ",".join(imgs) or None,
            "resolver": resolver,
            "resolver_source": rsrc,
        }
        row.update(_workload_dns(p, resolver, cluster_ip, nl_ip))
        rows.append(row)
    nodes_per: dict[str, int] = {}
    for w, n in place:
        if n is not None:
            nodes_per[w] = nodes_per.get(w, 0) + 1
    for row in rows:
        row["nodes"] = nodes_per.get(row["workload_id"], 0)
    pl = [{"cluster": cluster, "workload_id": w, "node": n, "pods": c} for (w, n), c in place.items()]
    return rows, pl


def _dns_service(cluster: str, dns: dict, c: dict, d: path_rules.ClusterPath) -> dict[str, Any]:
    core = corefile.of_dns(dns)  # what a snapshot keeps of the Corefile (older ones: the whole text)
    if c.get("status") == "failed":
        return {"cluster": cluster, "path": "unknown", "path_code": d.code}
    nl = d.nodelocal
    return {
        "cluster": cluster,
        "cluster_ip": dns.get("service_ip"),
        "ready_endpoints": dns.get("ready_endpoints"),
        "coredns_version": dns.get("coredns_version")
        or ((c.get("metrics") or {}).get("coredns") or {}).get("version"),
        "coredns_replicas": dns.get("coredns_replicas"),
        "corefile_plugins": (",".join(core.get("plugins") or []) or None) if core else None,
        "cluster_domain": (core.get("cluster_domain") or "cluster.local") if core else None,
        "kube_proxy_mode": d.kube_proxy_mode,
        "cni": d.cni,
        "ebpf_service_lb": d.ebpf_service_lb,
        "nodelocal": nl.present,
        "nodelocal_how": nl.how,
        "nodelocal_ip": nl.ip if nl.present else None,
        "nfqueue_agent": d.nfqueue_agent,
        "ipv4_only": d.ipv4_only,
        "path": d.path,
        "path_code": d.code,
    }


def _coredns(cluster: str, metrics: dict, acc: _Acc, version: str | None = None) -> dict[str, Any]:
    core = metrics.get("coredns") if isinstance(metrics.get("coredns"), dict) else None
    source = metrics.get("source") if core else "not collected"
    row = {"cluster": cluster, "source": source or "not collected", "window_s": metrics.get("window_s")}
    if core:
        for k in (
            "qps",
            "p50_ms",
            "p99_ms",
            "share_over_1s",
            "servfail_share",
            "nxdomain_share",
            "forward_p99_ms",
        ):
            row[k] = _num(core.get(k))
    row["note"] = metrics.get("note") or (None if core else "CoreDNS metrics not collected")
    if core:
        for bug in coredns_rules.metrics_bugs(core.get("version") or version, "rcode"):
            row["servfail_share"] = row["nxdomain_share"] = None  # unknown, never "low"
            caveat = bug.message.format(version=core.get("version") or version) + f" ({bug.source})"
            row["note"] = f"{row['note']}; {caveat}" if row["note"] else caveat
    series = metrics.get("coredns_series")
    if isinstance(series, dict) and isinstance(series.get("metrics"), dict):
        start, step = _num(series.get("start")), _num(series.get("step"))
        if start is not None and step:
            for name, values in series["metrics"].items():
                if isinstance(values, list) and values:
                    acc.add_series("coredns", start, step, values, cluster=cluster, metric=str(name))
    return row


def _conntrack(cluster: str, metrics: dict, node_names: list, acc: _Acc) -> list[dict[str, Any]]:
    ct = metrics.get("conntrack") if isinstance(metrics.get("conntrack"), dict) else None
    per_node = (ct or {}).get("nodes") if isinstance((ct or {}).get("nodes"), dict) else {}
    reason = (ct or {}).get("reason") or ("conntrack stats not collected" if not per_node else None)
    rows = []
    start, step = _num((ct or {}).get("start")), _num((ct or {}).get("step"))
    for n in node_names:
        d = per_node.get(n)
        if isinstance(d, dict):
            rows.append(
                {
                    "cluster": cluster,
                    "node": n,
                    "available": True,
                    "window_s": metrics.get("window_s"),
                    "insert_failed_increase": _num(d.get("insert_failed_increase")),
                    "drop_increase": _num(d.get("drop_increase")),
                    "entries": _num(d.get("entries")),
                    "entries_limit": _num(d.get("entries_limit")),
                }
            )
            rate = d.get("insert_failed_rate")
            if isinstance(rate, list) and rate and start is not None and step:
                acc.add_series("conntrack", start, step, rate, cluster=cluster, node=str(n))
        else:
            rows.append(
                {"cluster": cluster, "node": n, "available": False, "reason": reason or "node not in metrics"}
            )
    return rows
