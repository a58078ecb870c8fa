"""Recommendations: for each cluster and workload, the mitigation that would actually work (M1-M6),
ranked by the risk it removes. Never an option the workload's resolver ignores.

- glibc (pair racing): ``single-request-reopen`` on the owner's pod template (R2, M1, M2, M5); and
  ``options no-aaaa`` where the image's glibc is known to be >= 2.36 and the cluster is IPv4-only (R4;
  glibc versions per image tag in ``rules/data/glibc_images.csv``).
- Go built with cgo: ``GODEBUG=netdns=go`` (the pure-Go resolver uses one socket per query, R6/R7).
- musl, JVM and unknown resolvers: NodeLocal DNSCache (R5, M5); a musl image that may hold a Go binary
  is told how to say so (annotation).
- Go pure resolver: nothing needed (R6).
- nodes with open races: a kernel upgrade per node pool, to the minimum that closes them (K1-K3).
- ndots >= 5: lower ndots when the workload mostly resolves external names (R10); for musl with its
  caveat (names with ndots or more dots are tried only as absolute names).
- D7: busy pre-5.10 nodes with flat counters while CoreDNS errs: a "not-this-race" finding listing
  what to look at instead.
Pods that do not use cluster DNS (D8) have no score and get no recommendation.
"""

from __future__ import annotations

import csv
import hashlib
import re
from functools import lru_cache
from importlib import resources
from typing import Any

import numpy as np
import pandas as pd

from dnsfleet import schema
from dnsfleet.frames import Frames
from dnsfleet.rules import codes as reason_codes
from dnsfleet.rules.kernel import kernel_target
from dnsfleet.rules.resolver import option_honoured

CODES = {
    "single-request-reopen": "SRR",
    "no-aaaa": "NOAAAA",
    "godebug-netdns-go": "GODEBUG",
    "nodelocal-dnscache": "NODELOCAL",
    "kernel-upgrade": "KERNEL",
    "lower-ndots": "NDOTS",
    "not-this-race": "D7",
}
# Which fix a workload is pointed at when several remove the same risk: the one that works on any
# version of its resolver first.
PRIORITY = {
    "single-request-reopen": 0,
    "godebug-netdns-go": 1,
    "no-aaaa": 2,
    "nodelocal-dnscache": 3,
    "lower-ndots": 4,
    "kernel-upgrade": 5,
    "not-this-race": 6,
}
NO_AAAA_GLIBC = (2, 36)
ROLL_OUT = "patching the pod template triggers a rollout (M2)"
NODELOCAL_CAVEATS = (
    "allow hostNetwork egress to the kube-dns IP by ipBlock under NetworkPolicy (M6); "
    "Calico policies can conflict with its NOTRACK rules (kubernetes#98758)"
)


@lru_cache(maxsize=1)
def glibc_images() -> tuple[tuple[re.Pattern[str], str, str], ...]:
    """(image pattern, glibc version, source) rows of ``rules/data/glibc_images.csv``."""
    with resources.files("dnsfleet.rules").joinpath("data", "glibc_images.csv").open(encoding="utf-8") as f:
        return tuple(
            (re.compile(r["pattern"], re.IGNORECASE), r["glibc"], r["source"]) for r in csv.DictReader(f)
        )


@lru_cache(maxsize=16384)
def glibc_version(image: str | None) -> str | None:
    """The glibc version an image tag pins, when a sourced row says so; None otherwise. Cached: a fleet
    runs a few hundred distinct images in thousands of workloads, and each lookup tries every row."""
    img = (image or "").strip()[:512]
    return next((v for rx, v, _ in glibc_images() if rx.search(img)), None)


def _at_least(version: str | None, want: tuple[int, ...]) -> bool:
    if not isinstance(version, str) or not version:
        return False
    return tuple(int(x) for x in version.split(".")[:2]) >= want


def finding_id(code: str, cluster: str, target: str) -> str:
    h = hashlib.sha1(f"{cluster}|{target}".encode()).hexdigest()[:10]
    return f"DNSF-{code}-{h}"


def recommendations(frames: Frames, p: pd.DataFrame, nx: pd.DataFrame, wl: pd.DataFrame) -> pd.DataFrame:
    parts = [_workload_recs(wl, frames), _nodelocal_recs(frames, p, wl), _kernel_recs(p, nx, wl)]
    parts = [x for x in parts if len(x)]
    if not parts:
        return schema.empty("recommendations")
    out = pd.concat(parts, ignore_index=True)
    # Rank on one scale: points of the cluster's score the action removes (weighted by the pods that
    # use cluster DNS, D8).
    pods_total = _applicable(p).groupby("cluster")["pods"].sum().astype("float64")
    wl_rows = out["scope"] == "workload"
    share = out["pods"].astype("float64") / out["cluster"].map(pods_total).replace(0.0, np.nan)
    out.loc[wl_rows, "risk_removed"] = (
        out.loc[wl_rows, "risk_removed"].astype("float64") * share[wl_rows]
    ).round(2)
    out["finding_id"] = [
        finding_id(CODES[m], c, t)
        for m, c, t in zip(out["mitigation"], out["cluster"], out["target"], strict=True)
    ]
    out["finding_type"] = "mitigation"
    out["_prio"] = out["mitigation"].map(PRIORITY).fillna(9)
    out = out.sort_values(["risk_removed", "_prio", "finding_id"], ascending=[False, True, True])
    return out.drop(columns="_prio").reset_index(drop=True)


def not_this_race(clusters: pd.DataFrame, reasons: pd.DataFrame) -> pd.DataFrame:
    """D7 findings: one row per cluster whose busy pre-5.10 nodes kept their counters flat while
    CoreDNS shows errors (or users report timeouts): probably not this race, look elsewhere."""
    rows = []
    for cluster, d7 in zip(clusters["cluster"], reasons["d7"], strict=True):
        if not d7:
            continue
        params: dict[str, Any] = {k: v for k, v in d7.items() if k != "nodes"}
        nodes = sorted(d7["nodes"])
        rows.append(
            {
                "finding_id": finding_id(CODES["not-this-race"], cluster, cluster),
                "cluster": cluster,
                "finding_type": "not-this-race",
                "scope": "cluster",
                "target": cluster,
                "mitigation": "not-this-race",
                "action": reason_codes.message("D7-FINDING", **params),
                "risk_removed": 0.0,
                "pods": pd.NA,
                "rule": "D7, K7",
                "note": "flat nodes: "
                + ", ".join(nodes[:10])
                + (f" (+{len(nodes) - 10} more)" if len(nodes) > 10 else ""),
            }
        )
    return pd.DataFrame(rows)


def _workload_recs(wl: pd.DataFrame, frames: Frames) -> pd.DataFrame:
    at_risk = wl["score"].fillna(0) > 0
    racing = wl["sends_parallel_pair"] == "yes"
    glibc = at_risk & racing & (wl["resolver"] == "glibc")
    assert option_honoured("glibc", "single-request-reopen") == "yes"
    g = wl[glibc]
    bare = g["kind"] == "Pod"
    srr = pd.DataFrame(
        {
            "cluster": g["cluster"],
            "scope": "workload",
            "target": g["workload_id"],
            "mitigation": "single-request-reopen",
            "action": np.where(
                bare,
                "bare Pod: recreate it from a template with dnsConfig option single-request-reopen (or use-vc)",
                "add dnsConfig option single-request-reopen to "
                + g["kind"]
                + " "
                + g["namespace"]
                + "/"
                + g["name"]
                + " (keeps its other options; use-vc is the TCP alternative)",
            ),
            "risk_removed": g["score"],
            "pods": g["pods"],
            "rule": "R1, R2, M1, M2, M5",
            "note": np.where(bare, "Pod dnsConfig is immutable: recreate needed (M2)", ROLL_OUT),
        }
    )
    ipv4_only = wl["cluster"].map(frames.dns_service.set_index("cluster")["ipv4_only"]).astype("boolean")
    glibc_v = g["image"].astype(object).map(glibc_version)
    new_glibc = glibc_v.map(lambda v: _at_least(v, NO_AAAA_GLIBC)).astype(bool)
    na = g[new_glibc & (ipv4_only[g.index] == True).fillna(False)]  # noqa: E712
    no_aaaa = pd.DataFrame(
        {
            "cluster": na["cluster"],
            "scope": "workload",
            "target": na["workload_id"],
            "mitigation": "no-aaaa",
            "action": "add dnsConfig option no-aaaa to "
            + na["kind"]
            + " "
            + na["namespace"]
            + "/"
            + na["name"]
            + ": image "
            + na["image"].fillna("?")
            + " has glibc "
            + na["image"].astype(object).map(glibc_version).fillna("?")
            + " (>= 2.36) and the cluster is IPv4-only, so only A queries are sent",
            "risk_removed": na["score"],
            "pods": na["pods"],
            "rule": "R4, M1, M2",
            "note": ROLL_OUT
            + "; no-aaaa also drops IPv6 answers (resolv.conf(5): meant for diagnostics), and a cgo Go binary "
            "in the pod switches to libc on an option it does not know (R7)",
        }
    )
    cg = wl[at_risk & racing & (wl["resolver"] == "go-cgo")]
    godebug = pd.DataFrame(
        {
            "cluster": cg["cluster"],
            "scope": "workload",
            "target": cg["workload_id"],
            "mitigation": "godebug-netdns-go",
            "action": "set env GODEBUG=netdns=go on the containers of "
            + cg["kind"]
            + " "
            + cg["namespace"]
            + "/"
            + cg["name"]
            + ": its Go binary then uses the pure-Go resolver, one socket per query",
            "risk_removed": cg["score"],
            "pods": cg["pods"],
            "rule": "R6, R7, M2",
            "note": ROLL_OUT
            + "; the pure-Go resolver does not implement every nsswitch.conf source (Go net package docs)",
        }
    )
    other = at_risk & (racing | (wl["sends_parallel_pair"] == "unknown")) & (wl["resolver"] != "glibc")
    o = wl[other]
    why = np.select(
        [o["resolver"] == "musl", o["resolver"] == "go-cgo", o["resolver"] == "jvm"],
        [
            "musl ignores single-request-reopen and use-vc",
            "Go with cgo uses libc getaddrinfo",
            "the JVM uses the libc of its base image",
        ],
        default="its resolver is unknown",
    )
    image_rule = o["resolver_source"].fillna("").str.startswith("IMG-")
    nl = pd.DataFrame(
        {
            "cluster": o["cluster"],
            "scope": "workload",
            "target": o["workload_id"],
            "mitigation": "nodelocal-dnscache",
            "action": why
            + ": protect it with NodeLocal DNSCache on cluster "
            + o["cluster"]
            + np.where(o["resolver"] == "musl", " (or move it to a glibc base image)", ""),
            "risk_removed": o["score"],
            "pods": o["pods"],
            "rule": np.where(o["resolver"] == "musl", "R5, M5, P2", "R7, R8, R11, M5, P2"),
            "note": np.where(
                (o["resolver"] == "musl") & image_rule,
                "a Go binary on this image does not use musl's resolver: if it is one, annotate the workload "
                "dnsfleet.io/resolver=go (or go-cgo); " + NODELOCAL_CAVEATS,
                NODELOCAL_CAVEATS,
            ),
        }
    )
    nd = wl[at_risk & wl["resolver"].isin(["glibc", "go", "musl"]) & (wl["ndots"].astype("Float64") >= 5)]
    musl_nd = nd["resolver"] == "musl"
    ndots = pd.DataFrame(
        {
            "cluster": nd["cluster"],
            "scope": "workload",
            "target": nd["workload_id"],
            "mitigation": "lower-ndots",
            "action": "if it mostly resolves external names: set dnsConfig option ndots:2 on "
            + nd["kind"]
            + " "
            + nd["namespace"]
            + "/"
            + nd["name"]
            + " or use FQDNs with a trailing dot",
            "risk_removed": (nd["ndots_pts"].astype("float64") * (1 - 2 / 5)).round(1),
            "pods": nd["pods"],
            "rule": "R10",
            "note": np.where(
                musl_nd,
                ROLL_OUT
                + "; musl caveat: names with ndots or more dots are tried only as absolute names (no search "
                "fallback), so a short in-cluster name with a dot such as svc.namespace stops resolving; "
                "use full names (svc.namespace.svc.cluster.local) in this workload first",
                ROLL_OUT + "; in-cluster short names still resolve through the search list",
            ),
        }
    )
    parts = [x for x in (srr, no_aaaa, godebug, nl, ndots) if len(x)]
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()


def _applicable(p: pd.DataFrame) -> pd.DataFrame:
    return p[p["applicable"].to_numpy(dtype=bool)] if "applicable" in p.columns else p


def _nodelocal_recs(frames: Frames, p: pd.DataFrame, wl: pd.DataFrame) -> pd.DataFrame:
    rows = []
    d = frames.dns_service.set_index("cluster")
    pods_total = _applicable(p).groupby("cluster")["pods"].sum()
    at = p[(p["path_gate"] == 1) & (p["score"] > 0)]
    for cluster, grp in at.groupby("cluster"):
        if d["path"].get(cluster) != "netfilter-dnat" and d["path"].get(cluster) != "nodelocal":
            continue
        removed = float((grp["score"] * grp["pods"]).sum() / max(1, pods_total.get(cluster, 1)))
        mode = d["kube_proxy_mode"].get(cluster)
        present = bool(d["nodelocal"].get(cluster)) if not pd.isna(d["nodelocal"].get(cluster)) else False
        if present:
            action = "NodeLocal DNSCache is installed but not ready on every node: make node-local-dns run everywhere"
        elif mode in ("iptables", "ipvs", "nftables"):
            action = f"install NodeLocal DNSCache (kube-proxy {mode} variant): pods then skip conntrack DNAT"
        else:
            action = (
                "install NodeLocal DNSCache: pods then skip conntrack DNAT. kube-proxy's mode is unknown, so "
                "first read it (ConfigMap kube-system/kube-proxy, or GET :10249/proxyMode on a node) and pick "
                "the iptables or ipvs variant; the ipvs one also needs kubelet clusterDNS changed"
            )
        note = NODELOCAL_CAVEATS
        if mode == "ipvs":
            note = "ipvs mode: kubelet clusterDNS must also be set to the link-local IP (M6); " + note
        rows.append(
            {
                "cluster": cluster,
                "scope": "cluster",
                "target": cluster,
                "mitigation": "nodelocal-dnscache",
                "action": action,
                "risk_removed": round(removed, 1),
                "pods": int(grp["pods"].sum()),
                "rule": "P2, M5, M6",
                "note": note,
            }
        )
    return pd.DataFrame(rows)


def _kernel_recs(p: pd.DataFrame, nx: pd.DataFrame, wl: pd.DataFrame) -> pd.DataFrame:
    p = _applicable(p)
    pods_total = p.groupby("cluster")["pods"].sum()
    per_node = (
        p.assign(w=p["score"] * p["pods"]).groupby(["cluster", "node"], as_index=False)[["w", "pods"]].sum()
    )
    nodes = nx[(nx["kernel_gate"] == 1) & ~nx["d6"]][
        ["cluster", "node", "pool", "kernel_version", "os_image", "open_races"]
    ]
    nodes = nodes.merge(per_node, on=["cluster", "node"], how="left").fillna({"w": 0.0, "pods": 0})
    nodes["pool"] = nodes["pool"].fillna("(no pool)")
    keys = nodes[["kernel_version", "os_image", "open_races"]].astype("object").fillna("")
    nodes["mkey"] = list(zip(keys["kernel_version"], keys["os_image"], keys["open_races"], strict=True))
    labels = {"1": "race1", "2": "race2", "3": "race3", "NFQUEUE": "nfqueue"}
    mins = {  # the target in the words of the node's distro and track (mitigate.kernel, with its source)
        key: {
            kernel_target(
                [labels[x] for x in key[2].split(",") if x in labels], key[0] or None, key[1] or None
            ).text
        }
        for key in set(nodes["mkey"])
    }
    g = nodes.groupby(["cluster", "pool"], sort=False).agg(
        n=("node", "size"),
        w=("w", "sum"),
        pods=("pods", "sum"),
        mkeys=("mkey", lambda x: set(x)),
        kernels=("kernel_version", lambda x: ", ".join(sorted(x.fillna("?").unique()))),
    )
    rows = []
    for (cluster, pool), r in g.iterrows():
        need = set().union(*(mins[k] for k in r["mkeys"]))
        removed = float(r["w"] / max(1, pods_total.get(cluster, 1)))
        rows.append(
            {
                "cluster": cluster,
                "scope": "node_pool",
                "target": f"{cluster}/{pool}",
                "mitigation": "kernel-upgrade",
                "action": f"upgrade {r['n']} node(s) of pool {pool} from {r['kernels']} to: {'; '.join(sorted(need))}",
                "risk_removed": round(removed, 1),
                "pods": int(r["pods"]),
                "rule": "K1, K2, K3",
                "note": "not possible through the API: drain and replace nodes (see the node upgrade plan)",
            }
        )
    df = pd.DataFrame(rows)
    return df[df["risk_removed"] > 0] if len(df) else df
