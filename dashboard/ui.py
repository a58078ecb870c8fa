"""Small Streamlit building blocks shared by the pages: filters kept in the URL, capped tables with
column config, level badges and headline numbers, and ``plain`` for untrusted text in markdown."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from urllib.parse import quote

import pandas as pd
import streamlit as st

from dashboard import charts, views
from dnsfleet import textsafe
from dnsfleet.verdicts import score_text

LEVEL_BADGE = {"high": "red", "medium": "orange", "low": "green", "unknown": "gray", "n/a": "gray"}

# --- column config (one definition per column name, used by every table) ---------------------------

_CC = st.column_config
COLUMNS: dict[str, Any] = {
    "cluster": _CC.TextColumn("Cluster", pinned=True),
    "open": _CC.LinkColumn("Open", display_text="details ↗", help="Open the cluster page (deep link)"),
    "level": _CC.TextColumn(
        "Level", help="high | medium | low | unknown (inputs missing) | n/a (does not use cluster DNS)"
    ),
    "score": _CC.ProgressColumn("Risk score", min_value=0, max_value=100, format="%.0f", help="0-100 points"),
    "max_score": _CC.ProgressColumn("Worst node score", min_value=0, max_value=100, format="%.0f"),
    "status": _CC.TextColumn("Scan", help="ok | partial (some resources unreadable) | failed"),
    "reason": _CC.TextColumn("Scan problem", width="medium"),
    "why": _CC.TextColumn("Why", width="large"),
    "provider": _CC.TextColumn("Provider"),
    "nodes": _CC.NumberColumn("Nodes", format="localized"),
    "pods": _CC.NumberColumn("Pods", format="localized"),
    "exposed_pods": _CC.NumberColumn("Exposed pods", format="localized"),
    "exposed_share": _CC.ProgressColumn("Exposed share", min_value=0, max_value=1, format="percent"),
    "unknown_pods": _CC.NumberColumn("Unknown pods", format="localized", help="not decided: inputs missing"),
    "unknown_resolve": _CC.TextColumn("What would resolve the unknown", width="medium"),
    "exposure": _CC.ProgressColumn("Exposed share", min_value=0, max_value=1, format="percent"),
    "server_version": _CC.TextColumn("Kubernetes"),
    "collected_at": _CC.DatetimeColumn("Scanned (UTC)", format="YYYY-MM-DD HH:mm"),
    "namespace": _CC.TextColumn("Namespace"),
    "owner": _CC.TextColumn("Owner", width="medium"),
    "image": _CC.TextColumn("Image", width="medium"),
    "resolver": _CC.TextColumn(
        "Resolver", help="inferred from the image, or the dnsfleet.io/resolver annotation"
    ),
    "dns_policy": _CC.TextColumn("dnsPolicy"),
    "dns_options": _CC.TextColumn("dnsConfig options"),
    "ndots": _CC.NumberColumn("ndots", format="%d"),
    "stall_s": _CC.NumberColumn("Stall per lost query", format="%.1f s"),
    "recommended_fix": _CC.TextColumn("Recommended fix"),
    "workload_id": None,
    "node": _CC.TextColumn("Node", pinned=True),
    "pool": _CC.TextColumn("Pool"),
    "kernel_version": _CC.TextColumn("Kernel", width="medium"),
    "distro": _CC.TextColumn("Distro"),
    "os_image": _CC.TextColumn("OS image", width="medium"),
    "race1": _CC.TextColumn("Race 1"),
    "race2": _CC.TextColumn("Race 2"),
    "race3": _CC.TextColumn("Race 3"),
    "nfqueue": _CC.TextColumn("NFQUEUE"),
    "counters_exact": _CC.CheckboxColumn("insert_failed exact", help="kernel >= 5.10 (K7)"),
    "ready": _CC.CheckboxColumn("Ready"),
    "nodelocal_ready": _CC.CheckboxColumn("NodeLocal DNS ready"),
    "instance_type": _CC.TextColumn("Instance type"),
    "zone": _CC.TextColumn("Zone"),
    "kernels": _CC.TextColumn("Kernels", width="large"),
    "ready_nodes": _CC.NumberColumn("Ready", format="localized"),
    "nodes_open": _CC.NumberColumn("Nodes with a race open", format="localized"),
    "nodes_collected": _CC.NumberColumn("Nodes with conntrack stats", format="localized"),
    "insert_failed_increase": _CC.NumberColumn("insert_failed increase", format="%.0f"),
    "not_collected": _CC.TextColumn("Why not collected", width="large"),
    "factor": _CC.TextColumn("Factor"),
    "points": _CC.ProgressColumn("Points", min_value=0, max_value=100, format="%.1f"),
    "text": _CC.TextColumn("Reason", width="large"),
    "rule": _CC.LinkColumn(
        "Rules", display_text=r"rule=(.*)", help="The rules behind this row: opens their explanation"
    ),
    "mitigation": _CC.TextColumn("Mitigation"),
    "scope": _CC.TextColumn("Scope"),
    "target": _CC.TextColumn("Target", width="medium"),
    "action": _CC.TextColumn("What to do", width="large"),
    "risk_removed": _CC.NumberColumn("Score points removed", format="%.1f"),
    "note": _CC.TextColumn("Caveats", width="large"),
    "finding_id": _CC.TextColumn("Finding"),
    "source": _CC.TextColumn("Metrics source"),
    "window_s": _CC.NumberColumn("Window", format="%.0f s"),
    "qps": _CC.NumberColumn("Queries/s", format="%.1f"),
    "p50_ms": _CC.NumberColumn("p50", format="%.1f ms"),
    "p99_ms": _CC.NumberColumn("p99", format="%.1f ms"),
    "share_over_1s": _CC.NumberColumn("> 1 s", format="percent"),
    "servfail_share": _CC.NumberColumn("SERVFAIL", format="percent"),
    "nxdomain_share": _CC.NumberColumn("NXDOMAIN", format="percent"),
    "forward_p99_ms": _CC.NumberColumn("Forward p99", format="%.1f ms"),
}


def table(
    df: pd.DataFrame,
    columns: Sequence[str] | None = None,
    *,
    key: str | None = None,
    limit: int = views.TABLE_LIMIT,
    height: int | str = "auto",
    select: bool = False,
) -> Any:
    """A capped ``st.dataframe`` with the shared column config; says plainly when rows were left out.
    With ``select``, a single row can be selected and the selection event is returned."""
    if columns is not None:
        df = df[[c for c in columns if c in df.columns]]
    if "open" in df.columns and (scan := st.query_params.get("scan")):  # links open the same live scan
        df = df.assign(open=df["open"].astype(str) + "&scan=" + quote(scan, safe=""))
    capped = views.cap(df, limit)
    if capped.note:
        st.caption(capped.note)
    kw: dict[str, Any] = {}
    if select:
        kw = {"on_select": "rerun", "selection_mode": "single-row"}
    return st.dataframe(
        capped.frame,
        column_config={c: COLUMNS[c] for c in capped.frame.columns if c in COLUMNS},
        hide_index=True,
        width="stretch",
        height=height,
        key=key,
        **kw,
    )


def chart(fig: Any, key: str | None = None) -> None:
    """A figure under its title as page text (wraps on a phone; a legend cannot cover it)."""
    title, fig = charts.displayed(fig)
    if title:
        st.markdown(f"**{views.md_escape(title)}**")
    st.plotly_chart(fig, width="stretch", key=key, config={"displaylogo": False})


def chart_pair(left: tuple[Any, str], right: tuple[Any, str]) -> None:
    """Two ``(figure, key)`` charts side by side, each under its title (``chart``)."""
    for column, (fig, key) in zip(st.columns(2), (left, right), strict=True):
        with column:
            chart(fig, key=key)


def level_badge(level: object, score: object = None) -> None:
    lv = "unknown" if level is None or pd.isna(level) else str(level)
    text = f"{lv.upper()} risk" + ("" if score is None or pd.isna(score) else f" · {score_text(score)}/100")
    st.badge(text, color=LEVEL_BADGE.get(lv, "gray"))


def level_legend() -> None:
    """The colour key used by every chart."""
    st.caption(
        " · ".join(
            f'<span style="color:{charts.LEVEL_COLORS[lv]}">■</span> {lv}' for lv in charts.LEVEL_COLORS
        ),
        unsafe_allow_html=True,
    )


def md_text(v: object) -> str:
    """Text from a cluster, a snapshot or a server, for use inside markdown: shown as typed, never as
    links, images or formatting (``plain``)."""
    return textsafe.markdown(v)


def fmt_int(v: object) -> str:
    return "n/a" if v is None or pd.isna(v) else f"{int(v):,}"


def fmt_share(v: object) -> str:
    return "n/a" if v is None or pd.isna(v) else f"{100 * float(v):.1f} %"


# --- filters kept in st.query_params --------------------------------------------------------------


def _sync(param: str, value: str | list[str] | None) -> None:
    """Write a filter to the URL (and drop it when empty) so the view can be shared as a link."""
    qp = st.query_params
    if value in (None, "", []):
        if param in qp:
            del qp[param]
        return
    if isinstance(value, list):
        if qp.get_all(param) != value:
            qp[param] = value
    elif qp.get(param) != value:
        qp[param] = value


def url_multiselect(label: str, choices: list[str], param: str, *, help: str | None = None) -> list[str]:
    key = f"url.{param}"
    if not isinstance(st.session_state.get(key), list):  # unset, or a single choice from another page
        st.session_state[key] = [v for v in st.query_params.get_all(param) if v in choices]
    else:
        st.session_state[key] = [v for v in st.session_state[key] if v in choices]
    value = st.multiselect(label, choices, key=key, help=help, placeholder="All")
    _sync(param, value)
    return value


def url_text(label: str, param: str, *, placeholder: str = "", help: str | None = None) -> str:
    key = f"url.{param}"
    if key not in st.session_state:
        st.session_state[key] = st.query_params.get(param, "")
    value = st.text_input(label, key=key, placeholder=placeholder, help=help).strip()
    _sync(param, value)
    return value


def url_select(label: str, choices: list[str], param: str, *, default: str | None = None) -> str | None:
    """A selectbox whose value lives in the URL; an unknown value in the URL falls back to ``default``."""
    key = f"url.{param}"
    if not choices:
        return None
    if key not in st.session_state or st.session_state[key] not in choices:
        wanted = st.query_params.get(param) or default
        st.session_state[key] = wanted if wanted in choices else choices[0]
    value = st.selectbox(label, choices, key=key)
    _sync(param, value)
    return value


def plain(text: object) -> str:
    """``text`` (a cluster, node or file name, a scan reason, a server message: anything a server or a
    snapshot controls) as markdown that renders as exactly that text, one line
    (``dnsfleet.textsafe.markdown``, the one escaper)."""
    return textsafe.markdown(text)
