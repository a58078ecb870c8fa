"""Mitigations: plan -> diff -> server-side dry run -> apply (typed confirmation) -> result -> audit -> undo.

Widgets only: every step goes through ``dnsfleet.mitigate.flow.Controller`` (clients, undo from the
audit log, the apply gate), which the command line drives too. Apply is disabled, with the reasons the
controller gives, while the write decision (``dnsfleet.authz``) says no, while a SelfSubjectAccessReview
denies the action, before a dry run passed, or until the cluster name is typed; the library's write
guard refuses the same way whatever the button shows.
"""

import pandas as pd
import streamlit as st

from dashboard import evidence_view, ui
from dashboard.auth import render_identity, write_decision
from dashboard.state import current_assessment, current_source
from dnsfleet.authz import WRITES_OFF
from dnsfleet.mitigate import kernel as kernel_plan
from dnsfleet.mitigate import nodelocal, offline, resolver_options
from dnsfleet.mitigate.audit import AuditLog
from dnsfleet.mitigate.errors import FAILURES, MitigationError
from dnsfleet.mitigate.flow import Controller
from dnsfleet.mitigate.objects import to_yaml_documents
from dnsfleet.mitigate.plan import Plan

K_PLAN, K_DRY, K_RESULT = "mit.plan", "mit.dry", "mit.result"
KINDS = ("Resolver options", "NodeLocal DNSCache", "Kernel upgrades")
# recommendations.mitigation -> the section that applies it (used by deep links from other pages)
LINK_KINDS = {
    "single-request-reopen": KINDS[0],
    "use-vc": KINDS[0],
    "lower-ndots": KINDS[0],
    "resolver-options": KINDS[0],
    "nodelocal-dnscache": KINDS[1],
    "kernel-upgrade": KINDS[2],
}

st.title("Mitigations")
a = current_assessment()  # under the title: a store source draws its cluster choice here
src = current_source()
ss = st.session_state
audit = AuditLog()
decision = write_decision()  # env + sign-in + bind address (dnsfleet.authz)
writes_on = decision.may_write
live = src.get("kind") == "kubeconfig" and src.get("loaded", True)
kubeconfig = src.get("kubeconfig")  # the file the shown scan read

st.caption(
    "Every change is planned from the live object, shown as a diff, checked by a server-side dry run and "
    "applied only with writes enabled and the cluster name typed. Each object gets an audit record; "
    "undo restores the previous state."
)
if writes_on:
    st.warning(
        f"Writes are **enabled** (DNSFLEET_ALLOW_WRITES=1): Apply changes the clusters; {decision.reason}.",
        icon="⚠️",
    )
elif decision.reason == WRITES_OFF:
    st.info(
        "Writes are **off**: plans, diffs and dry runs work; to apply, restart the dashboard with "
        "`DNSFLEET_ALLOW_WRITES=1`.",
        icon="🔒",
    )
else:
    st.info(f"Writes are **off**: plans, diffs and dry runs work; {decision.reason}.", icon="🔒")
render_identity(decision)
if not live:
    st.info(
        f"This is {'the demo fleet' if src.get('kind') == 'demo' else 'a snapshot file'}: plans and diffs "
        "are computed from the snapshot's own objects. A dry run, apply and undo need the live cluster: "
        "choose **Kubeconfig (live scan)** in the sidebar and scan.",
        icon=":material/description:",
    )


def _reset() -> None:
    """A new plan starts over: its dry run, result and the typed confirmation are dropped."""
    for k in (K_PLAN, K_DRY, K_RESULT, "mit.confirm"):
        ss.pop(k, None)


def _run(what: str, fn):
    """``fn()``; anything the library refuses (unreachable server, bad input, unreadable kubeconfig)
    becomes one short error line."""
    try:
        return fn()
    except FAILURES as e:
        st.error(f"{what}: {ui.plain(e)}")
    return None


clusters = list(a.clusters["cluster"])
if not clusters:
    st.info("No clusters in the current data source.")
    st.stop()
# Deep links from other pages: ?cluster=..&mitigation=<recommendation mitigation>&workload=<workload_id>...
qp = st.query_params
if "mit.cluster" not in ss and qp.get("cluster") in clusters:
    ss["mit.cluster"] = qp.get("cluster")
if "mit.kind" not in ss and qp.get("mitigation") in LINK_KINDS:
    ss["mit.kind"] = LINK_KINDS[qp.get("mitigation")]
c1, c2 = st.columns([2, 3])
cluster = c1.selectbox("Cluster", clusters, key="mit.cluster", on_change=_reset)
if qp.get("cluster") != cluster:
    qp["cluster"] = cluster
kind = c2.radio("Mitigation", KINDS, horizontal=True, key="mit.kind", on_change=_reset)
ctrl = Controller(cluster, kubeconfig, decision=decision, audit=audit)
plan_reason = None  # live: from the live objects; else from the snapshot's own (dnsfleet.mitigate.offline)
cluster_reason = (
    None if live and kubeconfig else "dry run, apply and undo need the live cluster: scan a kubeconfig"
)

recs = a.recommendations[a.recommendations["cluster"] == cluster]
if len(recs):
    with st.expander(f"Recommendations for {cluster} ({len(recs)})", expanded=False):
        st.dataframe(
            recs[["mitigation", "target", "action", "pods", "risk_removed", "note"]],
            hide_index=True,
            width="stretch",
        )

dns = a.dns_service[a.dns_service["cluster"] == cluster]
dns_row = dns.iloc[0].to_dict() if len(dns) else {}


def _text(v: object, default: str = "") -> str:
    return default if v is None or pd.isna(v) else str(v)


# --- choose and plan ---------------------------------------------------------------------------------
if kind == "Resolver options":
    wl = a.workloads[a.workloads["cluster"] == cluster].copy()
    wl["label"] = wl["namespace"] + "/" + wl["kind"] + "/" + wl["name"] + " (" + wl["resolver"] + ")"
    wl = wl.sort_values("score", ascending=False, na_position="last")
    rec_ids = set(
        recs.loc[recs["mitigation"].isin(["single-request-reopen", "use-vc"]), "target"].dropna().astype(str)
    )
    recommended = list(wl.loc[wl["workload_id"].isin(rec_ids), "label"])

    def _pick_recommended() -> None:
        _reset()
        ss["mit.workloads"] = recommended

    if "mit.workloads" not in ss and (linked := set(qp.get_all("workload"))):
        ss["mit.workloads"] = list(wl.loc[wl["workload_id"].isin(linked), "label"])
        if qp.get("mitigation") == "lower-ndots":
            ss["mit.pair"], ss["mit.ndots"] = "none", 2
    picked = st.multiselect("Workloads", list(wl["label"]), key="mit.workloads", on_change=_reset)
    st.button(
        f"Select the {len(recommended)} workload(s) recommended for single-request-reopen / use-vc",
        key="mit.pick_recs",
        on_click=_pick_recommended,
        disabled=not recommended,
    )
    o1, o2, o3, o4 = st.columns(4)
    pair = o1.radio("Parallel-pair fix", ["single-request-reopen", "use-vc", "none"], key="mit.pair")
    ndots = o2.number_input("ndots (0 = leave)", 0, 15, 0, key="mit.ndots")
    timeout = o3.number_input("timeout s (0 = leave)", 0, 30, 0, key="mit.timeout")
    attempts = o4.number_input("attempts (0 = leave)", 0, 5, 0, key="mit.attempts")
    options: dict[str, str | None] = {} if pair == "none" else {pair: None}
    options |= {k: str(v) for k, v in (("ndots", ndots), ("timeout", timeout), ("attempts", attempts)) if v}
    st.caption(
        "Options are offered only where the workload's resolver honours them: musl ignores "
        "single-request-reopen and use-vc (use NodeLocal DNSCache there). The whole dnsConfig is written "
        "back with existing options, nameservers and searches kept; the change triggers a rollout."
    )
    reason = plan_reason or (None if picked else "choose at least one workload")
    if st.button("Plan", key="mit.plan_btn", disabled=reason is not None, help=reason, type="primary"):
        targets = resolver_options.targets_from_workloads(wl[wl["label"].isin(picked)], cluster)
        _reset()
        if live:
            ss[K_PLAN] = _run("Plan", lambda: ctrl.plan_resolver_options(targets, options))
        else:
            ss[K_PLAN] = _run(
                "Plan", lambda: offline.plan_resolver_options(a.snapshot, cluster, targets, options)
            )
    if reason:
        st.caption(f"Plan disabled: {reason}.")

elif kind == "NodeLocal DNSCache":
    modes = list(nodelocal.MODES)
    detected = _text(dns_row.get("kube_proxy_mode"), "unknown")
    n1, n2, n3, n4 = st.columns(4)
    mode = n1.selectbox(
        "kube-proxy mode",
        modes,
        index=modes.index(detected) if detected in modes else None,  # unknown: ask, never assume iptables
        key="mit.mode",
        placeholder="choose: mode not detected",
        help=f"detected: {detected}",
        on_change=_reset,
    )
    cluster_ip = n2.text_input("kube-dns ClusterIP", _text(dns_row.get("cluster_ip")), key="mit.ip")
    domain = n3.text_input(
        "Cluster domain", _text(dns_row.get("cluster_domain"), "cluster.local"), key="mit.dom"
    )
    local_ip = n4.text_input("Link-local IP", nodelocal.DEFAULT_LOCAL_IP, key="mit.local")
    if detected not in modes:
        st.warning(
            f"kube-proxy mode here is **{detected}**: read it (ConfigMap kube-system/kube-proxy, or "
            "GET :10249/proxyMode on a node) and choose it above; NodeLocal DNSCache manifests assume kube-proxy."
        )
    present = dns_row.get("nodelocal")
    if present is not None and not pd.isna(present) and bool(present):
        st.info(
            "NodeLocal DNSCache is already present in this cluster; dnsfleet will not take its objects over."
        )
    rendered = None
    if mode is None:
        st.info("Choose the kube-proxy mode to render the manifests.")
    else:
        try:
            rendered = nodelocal.render(cluster_ip, mode, cluster_domain=domain, local_ip=local_ip)
        except MitigationError as e:
            st.error(f"Cannot render: {ui.plain(e)}")
    if rendered:
        st.download_button(
            "Download rendered YAML",
            to_yaml_documents(rendered),
            file_name=f"nodelocaldns-{cluster}-{mode}.yaml",
            mime="application/yaml",
            key="mit.yaml",
        )
    st.markdown("**Outside the API**")
    for step in nodelocal.outside_api_steps(mode or "", local_ip):
        st.markdown(f"- {step}")
    st.markdown("**CNI caveats**")
    for cav in nodelocal.cni_caveats(_text(dns_row.get("cni"), "unknown")):
        st.markdown(f"- {cav}")
    reason = plan_reason or (None if rendered else "choose the mode and fix the inputs above")
    if st.button("Plan", key="mit.plan_btn", disabled=reason is not None, help=reason, type="primary"):
        _reset()
        inputs = {
            "proxy_mode": mode,
            "cluster_ip": cluster_ip,
            "cluster_domain": domain,
            "local_ip": local_ip,
            "cni": _text(dns_row.get("cni"), "unknown"),
        }
        if live:
            ss[K_PLAN] = _run("Plan", lambda: ctrl.plan_nodelocal(**inputs))
        else:
            ss[K_PLAN] = _run("Plan", lambda: offline.plan_nodelocal(a.snapshot, cluster, **inputs))
    if reason:
        st.caption(f"Plan disabled: {reason}.")

else:
    st.caption(
        "Kernel upgrades cannot go through the Kubernetes API: download the node upgrade plan (pools, "
        "current kernel, the races still open, the minimum kernel that closes them, drain order)."
    )
    up = kernel_plan.upgrade_plan(a.nodes, a.dns_service)
    mine = up[up["cluster"] == cluster]
    st.metric("Nodes to upgrade or verify", len(mine))
    st.dataframe(mine, hide_index=True, width="stretch")
    st.download_button(
        "Download upgrade plan (CSV, all clusters)",
        kernel_plan.upgrade_plan_csv(up),
        file_name="node-upgrade-plan.csv",
        mime="text/csv",
        key="mit.kernel_csv",
    )

# --- the current plan: diff, dry run, apply ------------------------------------------------------------
plan: Plan | None = ss.get(K_PLAN)
if plan is not None and plan.cluster == cluster:
    st.subheader(
        f"Plan: {plan.mitigation} on {ui.plain(plan.cluster)}" + ("" if live else " (from the snapshot)")
    )
    rows = [
        {
            "object": c.ref.label(),
            "action": c.action,
            "why": c.why,
            "blocked": c.blocked or "",
            "permission": "allowed" if c.allowed else (c.permission or "not checked"),
            "notes": "; ".join(c.notes),
        }
        for c in plan.changes
    ]
    st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch")
    if plan.skipped:
        st.markdown("**Not touched**")
        for s in plan.skipped:
            st.markdown(f"- {ui.plain(s.target)}: {ui.plain(s.reason)}")
    for n in plan.notes:
        st.caption(n)
    for c in plan.changes:
        with st.expander(f"Diff: {c.ref.label()}", expanded=len(plan.changes) == 1):
            st.code(c.diff() or "(no change)", language="diff")
            if c.commit_instead:
                st.caption("Managed by a GitOps tool or Helm: commit this to its manifest instead")
                st.code(c.commit_instead, language="yaml")

    actionable = bool(plan.actionable)
    dry_reason = cluster_reason or (None if actionable else "nothing in this plan can be sent")
    if st.button("Dry run", key="mit.dry_btn", disabled=dry_reason is not None, help=dry_reason):
        ss[K_DRY] = _run("Dry run", lambda: ctrl.dry_run(plan))
        ss.pop(K_RESULT, None)
    if dry_reason:
        st.caption(f"Dry run disabled: {dry_reason}.")
    dry = ss.get(K_DRY)
    if dry:
        st.markdown("**Server-side dry run** (`dryRun=All`)")
        st.dataframe(
            pd.DataFrame([{"object": r.ref.label(), "result": r.status, "message": r.message} for r in dry]),
            hide_index=True,
            width="stretch",
        )

    confirm = st.text_input(f"Type **{cluster}** to confirm", key="mit.confirm")
    apply_reason = (
        cluster_reason
        or "; ".join(ctrl.apply_blockers(plan, dry, confirm, applied=bool(ss.get(K_RESULT))))
        or None
    )
    if st.button(
        "Apply", key="mit.apply_btn", type="primary", disabled=apply_reason is not None, help=apply_reason
    ):
        bar = st.progress(0.0, text="applying…")

        def _progress(i: int, n: int, r) -> None:
            bar.progress(i / max(n, 1), text=f"{i}/{n} {r.ref.label()}: {r.status}")

        ss[K_RESULT] = _run("Apply", lambda: ctrl.apply(plan, dry, confirm, progress=_progress))
        if ss[K_RESULT] is not None:
            st.rerun()  # refresh the undo choices and the audit log with the new records
    if apply_reason:
        st.caption(f"Apply disabled: {apply_reason}.")
    result = ss.get(K_RESULT)
    if result:
        ok = sum(r.ok for r in result)
        (st.success if ok == len(result) else st.warning)(f"{ok} of {len(result)} object(s) applied.")
        st.dataframe(
            pd.DataFrame(
                [{"object": r.ref.label(), "result": r.status, "message": r.message} for r in result]
            ),
            hide_index=True,
            width="stretch",
        )

# --- undo ----------------------------------------------------------------------------------------------
if kind != "Kernel upgrades":
    st.subheader("Undo")
    undo_reason = cluster_reason
    if kind == "Resolver options":
        undoable = ctrl.undoable()
        choice = st.multiselect("Workloads changed by dnsfleet", list(undoable), key="mit.undo_pick")
        undo_reason = undo_reason or (None if choice else "choose a workload dnsfleet changed")
        if st.button("Plan undo", key="mit.undo_btn", disabled=undo_reason is not None, help=undo_reason):
            _reset()
            ss[K_PLAN] = _run(
                "Plan undo", lambda: ctrl.plan_undo_resolver_options(undoable[k] for k in choice)
            )
            st.rerun()  # the plan section is drawn above this one
    else:
        st.caption("Deletes only the NodeLocal DNSCache objects dnsfleet created (label and field manager).")
        if st.button("Plan undo", key="mit.undo_btn", disabled=undo_reason is not None, help=undo_reason):
            _reset()
            ss[K_PLAN] = _run("Plan undo", ctrl.plan_undo_nodelocal)
            st.rerun()  # the plan section is drawn above this one
    if undo_reason:
        st.caption(f"Undo disabled: {undo_reason}.")

evidence_view.render_verify(a)

# --- audit log -----------------------------------------------------------------------------------------
st.subheader("Audit log")
records = audit.records()
st.caption(f"{audit.path} · {len(records)} record(s), append-only JSON lines")
if records:
    log = pd.DataFrame(
        [
            {
                "time": r.get("time"),
                "identity": r.get("identity"),
                "cluster": r.get("cluster"),
                "object": "{kind} {namespace}/{name}".format(**(r.get("object") or {})),
                "mitigation": r.get("mitigation"),
                "action": r.get("action"),
                "result": r.get("result"),
                "message": r.get("message"),
            }
            for r in reversed(records[-500:])
        ]
    )
    st.dataframe(log, hide_index=True, width="stretch")
st.download_button(
    "Download audit log (JSON lines)",
    audit.raw_bytes(),
    file_name="dnsfleet-audit.jsonl",
    mime="application/x-ndjson",
    key="mit.audit_dl",
    disabled=not records,
)
