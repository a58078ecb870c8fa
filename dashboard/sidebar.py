"""The sidebar: the data source picker, the scan with its progress, and filters kept across pages.

``render_sidebar()`` (called by ``dashboard/app.py`` on every rerun) draws: a badge saying which data is
shown and its age, the progress of a running scan (near the top, so it is visible without scrolling),
the source picker (the demo fleet, a kubeconfig with contexts or "all contexts", an uploaded snapshot
file), Prometheus and its time range, and the Scan / Rescan button.

Served on loopback, the person at the keyboard may type a kubeconfig path and a Prometheus URL, as
before. Served on any other address, visitors only choose among the operator's contexts: the
kubeconfig (``DNSFLEET_KUBECONFIG``, else ``KUBECONFIG``) and the Prometheus URL
(``DNSFLEET_PROMETHEUS``) come from the operator's environment, so no visitor makes the server read a
file or call a URL of their choosing.

The live scan shown is named in the URL (``?scan=<id>``): a reload, a shared link or a new tab opens
it from the server's keeping (``dashboard.livestore``). A new session without one shows the newest
scan kept for the operator's kubeconfig. ``carry_filters()`` keeps the chosen cluster and filters
(``cluster``, ``level``, ``resolver``, ``ns``, ``pool``, ``q``) in the URL across page changes.
"""

from __future__ import annotations

import hashlib
import os
import time
from datetime import UTC, datetime
from typing import Any

import streamlit as st

from dashboard import sources
from dashboard.sources import (
    DEFAULT_RANGE_S,
    K_ERROR,
    K_FILE,
    K_KIND,
    K_LIVE,
    KIND_LABELS,
    KUBECONFIG,
    SNAPSHOT,
    ScanRequest,
    one_line,
)
from dashboard.ui import plain
from dnsfleet.scrub import scrub
from dnsfleet.snapshot import SnapshotError

K_KUBECONFIG = "src.kubeconfig"
K_CONTEXTS = "src.contexts"
K_ALL = "src.all_contexts"
K_PROM = "src.prometheus"
K_NOW = "src.metrics_now"
K_AT = "src.metrics_at"
K_RANGE = "src.metrics_range"
K_UPLOAD = "src.upload"
K_FILTERS = "sidebar.filters"
K_PAGE = "sidebar.page"
K_DONE = "sidebar.scan_done"  # the final progress bars of the scan just finished, drawn once
MAX_PROGRESS_BARS = 12  # per-cluster bars drawn during a scan; larger fleets get the overall bar only
# Resources the collector reports per cluster before cluster_done; only scales the per-cluster bars.
RESOURCES_PER_CLUSTER = 10
RANGES = {"1 h": 3600.0, "3 h": 3 * 3600.0, "6 h": 6 * 3600.0, "24 h": 24 * 3600.0}
STICKY = ("cluster", "level", "resolver", "ns", "pool", "q")  # URL parameters kept across pages


# --- the environment ------------------------------------------------------------------------------


def env_kubeconfig() -> str | None:
    return os.environ.get("DNSFLEET_KUBECONFIG") or os.environ.get("KUBECONFIG") or None


def prometheus_time() -> float | None:
    """``DNSFLEET_PROMETHEUS_TIME`` (epoch seconds): evaluate Prometheus queries at that time instead of
    now, to look at a past window (or a backfilled test Prometheus)."""
    raw = os.environ.get("DNSFLEET_PROMETHEUS_TIME", "").strip()
    try:
        return float(raw) if raw else None
    except ValueError:
        return None


def operator_only() -> bool:
    """True when served beyond loopback: visitors may not name files or URLs on the server."""
    from dashboard.auth import bind_address
    from dnsfleet.authz import is_loopback

    return not is_loopback(bind_address())


# --- the sidebar ----------------------------------------------------------------------------------


def render_sidebar() -> None:
    """The data source picker. Errors the user can cause are kept for ``render_source_error``."""
    _init_defaults()
    sb = st.sidebar
    badge = sb.empty()
    age = sb.empty()
    progress_box = sb.container()  # above the controls: a running scan is visible without scrolling
    if done := st.session_state.pop(K_DONE, None):
        box = progress_box.container(border=True)
        for text, frac in done:
            box.progress(frac, text=text)
    sb.radio("Data source", list(KIND_LABELS), format_func=_kind_label, key=K_KIND)
    kind = st.session_state[K_KIND]
    if kind == KUBECONFIG:
        _kubeconfig_controls(progress_box)
    elif kind == SNAPSHOT:
        _snapshot_controls()
    src = sources.current_source()
    color = {sources.DEMO: "orange", KUBECONFIG: "green", SNAPSHOT: "blue"}[src["kind"]]
    badge.badge(src["label"], color=color if src["loaded"] else "gray")
    if src["scanned_at"] is not None:
        when = src["scanned_at"]
        verb = "Scanned" if src["kind"] == KUBECONFIG else "Generated"
        age.caption(f"{verb} {when:%Y-%m-%d %H:%M:%S} UTC ({sources.ago(when)})")
    _sync_scan_param(src.get("scan_id"))


def _kind_label(kind: str) -> str:
    """The source's name in the radio: the operator's DNSFLEET_STORE is a snapshot store, not a file."""
    if kind == SNAPSHOT and os.environ.get("DNSFLEET_STORE") and not os.environ.get("DNSFLEET_SNAPSHOT"):
        return "Snapshot store (or a file)"
    return KIND_LABELS[kind]


def render_source_error() -> None:
    """Show the last source error (bad kubeconfig, failed scan, bad snapshot) as one short line."""
    err = st.session_state.get(K_ERROR)
    if err and err[0] == sources.kind():  # an error belongs to the source it came from
        st.error(plain(err[1]))  # it quotes servers, files and exceptions: shown as text, never markdown


def carry_filters(page: str) -> None:
    """Keep the cluster and filters across pages: entering another page, put the remembered sticky
    URL parameters back into the URL unless the link that led here set its own."""
    ss, qp = st.session_state, st.query_params
    mem: dict[str, list[str]] = ss.setdefault(K_FILTERS, {})
    if ss.get(K_PAGE) == page:
        return
    ss[K_PAGE] = page
    for p in STICKY:
        if p in qp:
            mem[p] = qp.get_all(p)
        elif p in mem:
            qp[p] = mem[p]


def remember_filters() -> None:
    """After the page ran (also when it stopped early): remember the sticky parameters it left in the
    URL; one it removed was cleared by the user."""
    mem: dict[str, list[str]] = st.session_state.setdefault(K_FILTERS, {})
    qp = st.query_params
    for p in STICKY:
        if p in qp:
            mem[p] = qp.get_all(p)
        else:
            mem.pop(p, None)


def _init_defaults() -> None:
    ss = st.session_state
    if K_KIND not in ss:
        remote = operator_only()
        ss[K_KUBECONFIG] = env_kubeconfig() or ("" if remote else os.path.expanduser("~/.kube/config"))
        ss[K_PROM] = scrub(os.environ.get("DNSFLEET_PROMETHEUS", ""))  # never its user:password@
        ss[K_ALL] = True
        env_time = prometheus_time()
        ss[K_NOW] = env_time is None
        ss[K_AT] = datetime.fromtimestamp(env_time if env_time is not None else _now_minute(), UTC).replace(
            tzinfo=None
        )
        ss[K_RANGE] = next(k for k, v in RANGES.items() if v == DEFAULT_RANGE_S)
        if os.environ.get("DNSFLEET_SNAPSHOT") or os.environ.get("DNSFLEET_STORE"):
            ss[K_KIND] = SNAPSHOT
        elif env_kubeconfig():
            ss[K_KIND] = KUBECONFIG
        else:
            ss[K_KIND] = sources.DEMO
        if path := os.environ.get("DNSFLEET_SNAPSHOT"):
            _load_server_snapshot(path)
        elif url := os.environ.get("DNSFLEET_STORE"):
            _load_server_snapshot(sources.STORE_PREFIX + url)
        _open_kept_scan(remote)
    # Keep the widget values when the widgets are not drawn (another source is selected).
    for k in (K_KUBECONFIG, K_PROM, K_ALL, K_CONTEXTS, K_NOW, K_AT, K_RANGE):
        if k in ss:
            ss[k] = ss[k]


def _open_kept_scan(remote: bool) -> None:
    """A new session: open the scan the URL names, else the newest kept for the operator's kubeconfig."""
    ss = st.session_state
    wanted = st.query_params.get("scan")
    store = sources.scan_store()
    kept = sources.kept_scan(wanted) if wanted else None
    if wanted and kept is None:
        ss[K_KIND] = KUBECONFIG
        _set_error(
            "The scan this link names is no longer kept on this server (newer scans replace old ones): "
            "press Scan to collect live data."
        )
        return
    if kept is None and ss[K_KIND] == KUBECONFIG and ss[K_KUBECONFIG]:
        kept = store.latest(kubeconfig=ss[K_KUBECONFIG])
    if kept is None or (remote and kept.kubeconfig != env_kubeconfig()):
        return  # a visitor never sees a scan of a kubeconfig the operator did not configure
    ss[K_KIND] = KUBECONFIG
    ss[K_LIVE] = kept.scan_id
    ss[K_KUBECONFIG] = kept.kubeconfig
    ss[K_ALL] = kept.all_contexts
    ss[K_CONTEXTS] = list(kept.contexts)
    if not remote:
        ss[K_PROM] = kept.prometheus or ""
    ss[K_NOW] = kept.prometheus_time is None
    if kept.prometheus_time is not None:
        ss[K_AT] = datetime.fromtimestamp(kept.prometheus_time, UTC).replace(tzinfo=None)
    ss[K_RANGE] = next((k for k, v in RANGES.items() if v == kept.range_s), ss[K_RANGE])


def _sync_scan_param(scan_id: str | None) -> None:
    qp = st.query_params
    if scan_id:
        if qp.get("scan") != scan_id:
            qp["scan"] = scan_id
    elif "scan" in qp and sources.kind() != KUBECONFIG:
        del qp["scan"]


def _kubeconfig_controls(progress_box: Any) -> None:
    sb = st.sidebar
    remote = operator_only()
    if remote:
        path = env_kubeconfig() or ""
        st.session_state[K_KUBECONFIG] = path
        sb.caption("Contexts of the operator's kubeconfig (set by DNSFLEET_KUBECONFIG on the server).")
        contexts, err = (
            list_contexts(path)
            if path
            else (
                [],
                "No kubeconfig is configured for this dashboard: the operator sets DNSFLEET_KUBECONFIG.",
            )
        )
    else:
        path = sb.text_input(
            "Kubeconfig path", key=K_KUBECONFIG, help="Several files may be joined with ':' like KUBECONFIG."
        ).strip()
        contexts, err = list_contexts(path)
    if err:
        sb.error(err)
    all_ctx = sb.checkbox("All contexts", key=K_ALL)
    if K_CONTEXTS in st.session_state:
        st.session_state[K_CONTEXTS] = [c for c in st.session_state[K_CONTEXTS] if c in contexts]
    chosen = sb.multiselect(
        "Contexts", contexts, key=K_CONTEXTS, disabled=all_ctx, placeholder="Choose contexts"
    )
    if remote:
        prom = scrub(os.environ.get("DNSFLEET_PROMETHEUS", "").strip())
        sb.caption(
            "Prometheus: configured by the operator (DNSFLEET_PROMETHEUS)."
            if prom
            else "Prometheus: none configured; CoreDNS is scraped once through the API server."
        )
    else:
        prom = sb.text_input(
            "Prometheus URL (optional)",
            key=K_PROM,
            placeholder="http://prometheus.monitoring:9090",
            help="CoreDNS and conntrack metrics. Without it, CoreDNS is scraped once through the API server.",
        ).strip()
    at, range_s = _time_range(bool(prom))
    if not prom:
        at, range_s = None, DEFAULT_RANGE_S
    targets = contexts if all_ctx else chosen
    req = ScanRequest(path, () if all_ctx else tuple(chosen), all_ctx, prom or None, at, range_s)
    shown = sources.shown_scan()
    label = "Rescan" if shown is not None and shown.key == req.key else "Scan"
    pressed = sb.button(
        label,
        key="src.scan",
        type="primary",
        disabled=bool(err) or not targets,
        width="stretch",
        help="Scan again and share the new result with everyone" if label == "Rescan" else None,
    )
    if not targets and not err:
        sb.caption("Choose at least one context, or tick 'All contexts'.")
    if pressed:
        _scan(req, targets, progress_box)


def _time_range(enabled: bool) -> tuple[float | None, float]:
    """The Prometheus evaluation time (None: now) and the range of the series drawn."""
    sb = st.sidebar
    with sb.expander("Metrics time range", expanded=not st.session_state.get(K_NOW, True)):
        now = st.checkbox("Up to now", key=K_NOW, disabled=not enabled)
        at = st.datetime_input(
            "Metrics up to (UTC)",
            key=K_AT,
            disabled=now or not enabled,
            step=60,
            format="YYYY-MM-DD",
            help="Evaluate Prometheus at this time instead of now (DNSFLEET_PROMETHEUS_TIME sets the default), "
            "to look at an incident or a Prometheus whose newest samples are older.",
        )
        rng = st.selectbox("Range", list(RANGES), key=K_RANGE, disabled=not enabled)
    when = None if now or at is None else at.replace(tzinfo=UTC).timestamp()
    return when, RANGES.get(rng, DEFAULT_RANGE_S)


def list_contexts(path: str) -> tuple[list[str], str | None]:
    """Context names in a kubeconfig (files joined with ':', merged like kubectl), or a one-line reason
    it cannot be used. Reads the file only; no cluster is contacted."""
    from dnsfleet.kube import ConfigError, kubeconfig_paths
    from dnsfleet.kube import list_contexts as read_contexts

    if not path:
        return [], "Enter the path of a kubeconfig file."
    try:
        names, _current = read_contexts(kubeconfig_paths(path))
    except ConfigError as e:
        return [], one_line(e)
    if not names:
        return [], f"Kubeconfig {path} has no contexts."
    return names, None


def _scan(req: ScanRequest, targets: list[str], box_parent: Any) -> None:
    _set_error(None)
    if req.prometheus and not req.prometheus.startswith(("http://", "https://")):
        _set_error(f"Prometheus URL must start with http:// or https:// (got {req.prometheus[:80]!r}).")
        return
    box = box_parent.container(border=True)
    total = max(1, len(targets))
    overall = box.progress(0.0, text=f"Scanning {len(targets)} cluster(s)…")
    bars: dict[str, Any] = {
        name: box.progress(0.0, text=f"{name}: waiting") for name in targets[:MAX_PROGRESS_BARS]
    }
    done_resources: dict[str, int] = {}
    finished: set[str] = set()
    bar_text: dict[str, str] = {name: f"{name}: waiting" for name in bars}

    def progress(event: str, cluster: str, detail: str) -> None:
        """Draws the collector's events; ``dnsfleet.collect.scan`` calls it on this (the script) thread."""
        if event == "cluster_done":
            finished.add(cluster)
            frac = 1.0
            text = f"{cluster}: {detail or 'done'}"
        else:
            done_resources[cluster] = done_resources.get(cluster, 0) + (event == "resource_done")
            frac = min(0.95, done_resources[cluster] / RESOURCES_PER_CLUSTER)
            text = f"{cluster}: {detail or event.replace('_', ' ')}"
        bar_text[cluster] = text
        if cluster in bars:
            bars[cluster].progress(frac, text=_short(text))
        elif len(bars) < MAX_PROGRESS_BARS:
            bars[cluster] = box.progress(frac, text=_short(text))
        overall.progress(min(1.0, len(finished) / total), text=f"{len(finished)} of {total} clusters scanned")

    try:
        kept = sources.run_scan(req, progress)
    except Exception as e:  # collector-level failure (bad kubeconfig content, bad Prometheus URL...)
        _set_error(f"Scan failed: {one_line(e)}")
        return
    st.session_state[K_LIVE] = kept.scan_id
    snapshot = sources.scan_store().snapshot(kept.scan_id) or {}
    if note := sources.scan_problems(snapshot, req.prometheus):
        _set_error(note)
    # Rerun so the whole page (badge, Rescan button, URL) shows the new scan; the final bars are drawn
    # once more on that run.
    st.session_state[K_DONE] = [(f"Scan finished: {len(finished) or total} cluster(s)", 1.0)] + [
        (_short(bar_text[name]), 1.0 if name in finished else 0.0) for name in bars
    ]
    st.rerun()


def _snapshot_controls() -> None:
    up = st.sidebar.file_uploader(
        "Snapshot file", type=["json", "gz"], key=K_UPLOAD, help="A file written by `dnsfleet scan --out`."
    )
    if up is None:
        return
    f = st.session_state.get(K_FILE)
    if f and f.get("file_id") == up.file_id:
        return  # already loaded: reruns do not re-read the upload
    data = up.getvalue()
    digest = hashlib.sha256(data).hexdigest()
    _set_error(None)
    try:
        snap = sources.file_snapshot(digest, up.name, data)
    except SnapshotError as e:
        _set_error(f"Snapshot not loaded: {one_line(e)}")
        return
    _remember_file(snap, digest, up.name, data)
    st.session_state[K_FILE]["file_id"] = up.file_id


def _load_server_snapshot(path: str) -> None:
    from dnsfleet.store import StoreError

    store = path.startswith(sources.STORE_PREFIX)
    try:
        mtime = time.time() // sources.STORE_REFRESH_S if store else os.path.getmtime(path)
        snap = sources.server_snapshot(path, mtime)
    except StoreError as e:
        _set_error(f"Cannot read DNSFLEET_STORE: {one_line(e)}")
        return
    except OSError as e:
        _set_error(f"Cannot read DNSFLEET_SNAPSHOT {path}: {e.strerror}")
        return
    except SnapshotError as e:
        _set_error(f"Cannot use DNSFLEET_SNAPSHOT: {one_line(e)}")
        return
    name = f"store {path.removeprefix(sources.STORE_PREFIX)}" if store else os.path.basename(path)
    _remember_file(snap, f"path:{path}:{mtime}", name, None, path=path, mtime=mtime)


def _remember_file(
    snap: dict[str, Any],
    digest: str,
    name: str,
    data: bytes | None,
    path: str | None = None,
    mtime: float | None = None,
) -> None:
    st.session_state[K_FILE] = {
        "digest": digest,
        "name": name,
        "path": path,
        "mtime": mtime,
        "data": data,
        "generated_at": sources.parse_time(snap.get("generated_at")),
        "contexts": [c.get("name") for c in snap.get("clusters", [])],
    }


def _short(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _now_minute() -> float:
    return float(int(datetime.now(UTC).timestamp()) // 60 * 60)


def _set_error(message: str | None) -> None:
    if message is None:
        st.session_state.pop(K_ERROR, None)
    else:
        st.session_state[K_ERROR] = (sources.kind(), message)
