"""Recommendations: for each cluster and workload, the mitigation that would actually work (M1-M6),
ranked by the risk it removes. Never an option the workload's resolver ignores.

- glibc (pair racing): ``single-request-reopen`` on the owner's pod template (R2, M1, M2, M5).
- musl, libc-via-runtime (go-cgo, jvm) and unknown resolvers: NodeLocal DNSCache (R5, M5).
- Go pure resolver: nothing needed (R6).
- nodes with open races: a kernel upgrade per node pool, to the minimum that closes them (K1-K3).
- glibc/Go with ndots >= 5: lower ndots when it mostly resolves external names (R10). Not for musl,
  whose search semantics differ (anchors.md §3).
"""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd

from dnsfleet import schema
from dnsfleet.frames import Frames
from dnsfleet.rules.kernel import kernel_target
from dnsfleet.rules.resolver import option_honoured

CODES = {
    "single-request-reopen": "SRR",
    "nodelocal-dnscache": "NODELOCAL",
    "kernel-upgrade": "KERNEL",
    "lower-ndots": "NDOTS",
}
ROLL_OUT = "patching the pod template triggers a rollout (M2)"
NODELOCAL_CAVEATS = (
    "allow hostNetwork egress to the kube-dns IP by ipBlock under NetworkPolicy (§4); "
    "Calico policies can conflict with its NOTRACK rules (kubernetes#98758)"
)


def finding_id(code: str, cluster: str, target: str) -> str:
    h = hashlib.sha1(f"{cluster}|{target}".encode()).hexdigest()[:10]
    return f"DNSF-{code}-{h}"


def recommendations(frames: Frames, p: pd.DataFrame, nx: pd.DataFrame, wl: pd.DataFrame) -> pd.DataFrame:
    parts = [_workload_recs(wl), _nodelocal_recs(frames, p, wl), _kernel_recs(p, nx, wl)]
    parts = [x for x in parts if len(x)]
    if not parts:
        return schema.empty("recommendations")
    out = pd.concat(parts, ignore_index=True)
    # Rank on one scale: points of the cluster's score the action removes (pod-weighted).
    pods_total = p.groupby("cluster")["pods"].sum().astype("float64")
    wl_rows = out["scope"] == "workload"
    share = out["pods"].astype("float64") / out["cluster"].map(pods_total).replace(0.0, np.nan)
    out.loc[wl_rows, "risk_removed"] = (
        out.loc[wl_rows, "risk_removed"].astype("float64") * share[wl_rows]
    ).round(2)
    out["finding_id"] = [
        finding_id(CODES[m], c, t)
        for m, c, t in zip(out["mitigation"], out["cluster"], out["target"], strict=True)
    ]
    return out.sort_values(["risk_removed", "finding_id"], ascending=[False, True]).reset_index(drop=True)


def _workload_recs(wl: pd.DataFrame) -> pd.DataFrame:
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
            "note": np.where(bare, "Pod dnsConfig is immutable: recreate needed (§3)", ROLL_OUT),
        }
    )
    other = at_risk & (racing | (wl["sends_parallel_pair"] == "unknown")) & (wl["resolver"] != "glibc")
    o = wl[other]
    why = np.select(
        [o["resolver"] == "musl", o["resolver"].isin(["go-cgo", "jvm"])],
        [
            "musl ignores single-request-reopen and use-vc",
            "the libc behind " + o["resolver"] + " is not known",
        ],
        default="its resolver is unknown",
    )
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
            "note": NODELOCAL_CAVEATS,
        }
    )
    nd = wl[at_risk & wl["resolver"].isin(["glibc", "go"]) & (wl["ndots"].astype("Float64") >= 5)]
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
            "note": ROLL_OUT + "; in-cluster short names still resolve through the search list",
        }
    )
    return (
        pd.concat([x for x in (srr, nl, ndots) if len(x)], ignore_index=True)
        if (len(srr) or len(nl) or len(ndots))
        else pd.DataFrame()
    )


def _nodelocal_recs(frames: Frames, p: pd.DataFrame, wl: pd.DataFrame) -> pd.DataFrame:
    rows = []
    d = frames.dns_service.set_index("cluster")
    pods_total = p.groupby("cluster")["pods"].sum()
    at = p[(p["path_gate"] == 1) & (p["score"] > 0)]
    for cluster, grp in at.groupby("cluster"):
        if d["path"].get(cluster) != "netfilter-dnat" and d["path"].get(cluster) != "nodelocal":
            continue
        removed = float((grp["score"] * grp["pods"]).sum() / max(1, pods_total.get(cluster, 1)))
        mode = d["kube_proxy_mode"].get(cluster)
        present = bool(d["nodelocal"].get(cluster)) if not pd.isna(d["nodelocal"].get(cluster)) else False
        if present:
            action = "NodeLocal DNSCache is installed but not ready on every node: make node-local-dns run everywhere"
        else:
            action = f"install NodeLocal DNSCache (kube-proxy {mode} variant): pods then skip conntrack DNAT"
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
    pods_total = p.groupby("cluster")["pods"].sum()
    per_node = (
        p.assign(w=p["score"] * p["pods"]).groupby(["cluster", "node"], as_index=False)[["w", "pods"]].sum()
    )
    nodes = nx[nx["kernel_gate"] == 1][
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
