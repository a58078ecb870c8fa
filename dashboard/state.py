"""Where the dashboard's data comes from, and how it is cached.

Pages call two functions and nothing else::

    from dashboard.state import current_assessment, current_source
    a = current_assessment()   # dnsfleet.engine.Assessment of the data source chosen in the sidebar
    src = current_source()     # {"kind", "label", "scanned_at", "contexts", "prometheus_url"}

``render_sidebar()`` (called by ``dashboard/app.py`` on every rerun) draws the source picker: the demo
fleet (default), a kubeconfig with a context multi-select or "all contexts", an uploaded snapshot file,
an optional Prometheus URL, the Scan button with a progress bar per cluster, the time of the last scan
and a badge saying which data is shown.

Caching, so widget interactions never re-collect:

- the demo snapshot and its assessment are cached globally (they hold no cluster data);
- a live scan is cached per (kubeconfig, contexts, Prometheus URL, Scan press) with
  ``scope="session"``: data read with one user's credentials is never served to another session;
- an uploaded snapshot is cached per file digest, also per session;
- snapshots and the assessment are cached with ``st.cache_resource`` (per session for live and
  uploaded data), so neither storing nor a rerun costs a copy; pages must treat both as read-only.

Every cache has a ``ttl`` and ``max_entries``. The operator can preselect a source with environment
variables: ``DNSFLEET_KUBECONFIG`` (else ``KUBECONFIG``) selects kubeconfig mode with that path;
``DNSFLEET_SNAPSHOT`` loads a snapshot file from the server's disk; ``DNSFLEET_PROMETHEUS`` fills the
Prometheus URL; ``DNSFLEET_PROMETHEUS_TIME`` (epoch seconds) evaluates Prometheus queries at that time.
"""

from __future__ import annotations

import hashlib
import os
import queue
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import streamlit as st
from streamlit.runtime.scriptrunner import add_script_run_ctx, get_script_run_ctx

from dashboard.ui import plain
from dnsfleet.perf import gc_paused
from dnsfleet.snapshot import SnapshotError, load, loads

if TYPE_CHECKING:
    from dnsfleet.engine import Assessment

DEMO, KUBECONFIG, SNAPSHOT = "demo", "kubeconfig", "snapshot"
KIND_LABELS = {DEMO: "Demo fleet", KUBECONFIG: "Kubeconfig (live scan)", SNAPSHOT: "Snapshot file"}
DEMO_SEED = 7
SCAN_TTL_S = 15 * 60
SCAN_TIMEOUT_S = 10.0
MAX_PROGRESS_BARS = 12  # per-cluster bars drawn during a scan; larger fleets get the overall bar only
# Resources the collector reports per cluster before cluster_done; only scales the per-cluster bars.
RESOURCES_PER_CLUSTER = 10

_K_KIND = "src.kind"
_K_KUBECONFIG = "src.kubeconfig"
_K_CONTEXTS = "src.contexts"
_K_ALL = "src.all_contexts"
_K_PROM = "src.prometheus"
_K_UPLOAD = "src.upload"
_K_LIVE = "dnsfleet.live"  # params of the last successful scan in this session
_K_FILE = "dnsfleet.file"  # digest/name of the last successfully loaded snapshot file
_K_ERROR = "dnsfleet.source_error"


# --- cached loaders -------------------------------------------------------------------------------


@st.cache_resource(ttl="1h", max_entries=2, show_spinner=False)
def _demo_snapshot(seed: int) -> dict[str, Any]:
    from dnsfleet.demo import demo_snapshot

    return demo_snapshot(seed)


# Assessments are cached as resources, not data: st.cache_data would unpickle a copy on every rerun
# (0.7 s for a 100,000-pod fleet). Pages must treat the frames as read-only.
@st.cache_resource(ttl="1h", max_entries=2, show_spinner="Scoring the demo fleet…")
def _demo_assessment(seed: int, mapping: MappingKey) -> Assessment:
    return _analyze(_demo_snapshot(seed), mapping)


# Snapshots are cached as resources too: st.cache_data pickles a copy when storing and unpickles one on
# every read (1 s for a 100,000-pod snapshot, twice on the first page load). Nothing mutates them.
@st.cache_resource(ttl=SCAN_TTL_S, max_entries=4, scope="session", show_spinner=False)
def _scan_snapshot(
    kubeconfig: str,
    contexts: tuple[str, ...],
    all_contexts: bool,
    prometheus: str | None,
    scan_id: str,
    _progress: Callable[[str, str, str], None] | None = None,
) -> dict[str, Any]:
    """One live scan (``scan_id`` changes with each Scan press). Errors are not cached."""
    from dnsfleet.collect import PromSource, scan

    prom = None
    if prometheus:
        try:
            prom = PromSource(prometheus, time=_prometheus_time(), timeout=SCAN_TIMEOUT_S)
        except ValueError as e:
            raise ValueError(f"Prometheus: {one_line(e)}") from None
    return scan(
        kubeconfig=kubeconfig,
        contexts=list(contexts) or None,
        all_contexts=all_contexts,
        prometheus=prom,
        progress=_progress,
        timeout=SCAN_TIMEOUT_S,
    )


@st.cache_resource(ttl="1h", max_entries=4, scope="session", show_spinner=False)
def _file_snapshot(digest: str, name: str, _data: bytes) -> dict[str, Any]:
    with gc_paused(freeze=True):  # kept until evicted: see dnsfleet.perf
        return loads(_data, name=name)


@st.cache_resource(ttl="1h", max_entries=2, show_spinner=False)
def _server_snapshot(path: str, mtime: float) -> dict[str, Any]:
    with gc_paused(freeze=True):
        return load(path)


@st.cache_resource(ttl=SCAN_TTL_S, max_entries=4, scope="session", show_spinner="Scoring the fleet…")
def _assessment(
    source_key: tuple[Any, ...], mapping: MappingKey, _snapshot: Callable[[], dict[str, Any]]
) -> Assessment:
    return _analyze(_snapshot(), mapping)


# The operator's DNSFLEET_SNAPSHOT is the same for every visitor: scored once, not once per session.
@st.cache_resource(ttl="1h", max_entries=2, show_spinner="Scoring the fleet…")
def _server_assessment(path: str, mtime: float, mapping: MappingKey) -> Assessment:
    return _analyze(_server_snapshot(path, mtime), mapping)


# The operator's resolver mapping (DNSFLEET_RESOLVER_MAP, the CLI's --resolver-map): (path, mtime) or
# None. Part of every assessment's cache key, so editing the file re-scores on the next rerun.
MappingKey = tuple[str, float] | None


def _mapping_key() -> MappingKey:
    """The mapping to score with; a file that cannot be read or parsed is said on the page (every
    rerun) and scoring goes on without it."""
    from dnsfleet.rules.resolver import MappingError

    path = os.environ.get("DNSFLEET_RESOLVER_MAP")
    if not path:
        return None
    try:
        key = (path, os.stat(path).st_mtime)
        _mapping(*key)
    except OSError as e:
        st.warning(f"DNSFLEET_RESOLVER_MAP: cannot read {path}: {e.strerror}; scoring without it.")
        return None
    except MappingError as e:
        st.warning(f"DNSFLEET_RESOLVER_MAP: {e}; scoring without it.")
        return None
    return key


@st.cache_resource(ttl="1h", max_entries=2, show_spinner=False)
def _mapping(path: str, mtime: float) -> tuple[Any, ...]:
    from dnsfleet.rules.resolver import load_mapping

    return load_mapping(path)


def _analyze(snapshot: dict[str, Any], mapping: MappingKey) -> Assessment:
    from dnsfleet.engine import analyze

    rules = _mapping(*mapping) if mapping is not None else ()
    with gc_paused(freeze=True):  # a bulk build of long-lived frames: see dnsfleet.perf
        return analyze(snapshot, rules)


def clear_caches() -> None:
    """Drop every cached snapshot and assessment (tests; the 'Clear cache' menu does the same)."""
    for f in (
        _demo_snapshot,
        _demo_assessment,
        _scan_snapshot,
        _file_snapshot,
        _server_snapshot,
        _server_assessment,
        _assessment,
        _mapping,
    ):
        f.clear()


# --- public API -----------------------------------------------------------------------------------


def current_source() -> dict[str, Any]:
    """What the pages show: ``kind`` (demo|kubeconfig|snapshot), ``label``, ``scanned_at`` (datetime UTC
    or None), ``contexts`` (list), ``prometheus_url`` (str or None), ``kubeconfig`` (the path the shown
    scan read, kubeconfig kind only, else None) and ``loaded`` (False while a kubeconfig is not scanned
    yet or no snapshot is loaded)."""
    kind = _kind()
    if kind == KUBECONFIG:
        live = st.session_state.get(_K_LIVE)
        if not live:
            return _src(
                KUBECONFIG, "LIVE: not scanned yet", None, [], _prom_url(), loaded=False, kubeconfig=None
            )
        return _src(
            KUBECONFIG,
            f"LIVE: {live['label']}",
            live["scanned_at"],
            live["contexts"],
            live["prometheus"],
            kubeconfig=live["args"][0],
        )
    if kind == SNAPSHOT:
        f = st.session_state.get(_K_FILE)
        if not f:
            return _src(SNAPSHOT, "SNAPSHOT: none loaded", None, [], None, loaded=False)
        return _src(SNAPSHOT, f"SNAPSHOT: {f['name']}", f["generated_at"], f["contexts"], None)
    snap = _demo_snapshot(DEMO_SEED)
    return _src(DEMO, "DEMO FLEET", _parse_time(snap.get("generated_at")), [], None)


def current_snapshot() -> dict[str, Any]:
    """The snapshot dict behind the current assessment (for the snapshot download)."""
    kind = _kind()
    if kind == KUBECONFIG and (live := st.session_state.get(_K_LIVE)):
        return _scan_snapshot(*live["args"])
    if kind == SNAPSHOT and (f := st.session_state.get(_K_FILE)):
        return _file_loader(f)()
    return _demo_snapshot(DEMO_SEED)


def source_key() -> str:
    """A string naming the loaded data (kind plus scan or file digest): a cache key for derived data."""
    kind = _kind()
    if kind == KUBECONFIG and (live := st.session_state.get(_K_LIVE)):
        return "live|" + "|".join(map(str, live["args"]))
    if kind == SNAPSHOT and (f := st.session_state.get(_K_FILE)):
        return "file|" + f["digest"]
    return f"demo|{DEMO_SEED}"


def current_assessment() -> Assessment:
    """The engine's assessment of the current source. When nothing is loaded yet (kubeconfig not
    scanned, no snapshot uploaded), says what to do and stops the page."""
    kind = _kind()
    if kind == KUBECONFIG:
        live = st.session_state.get(_K_LIVE)
        if not live:
            st.info("Choose the contexts in the sidebar and press **Scan** to collect live data.")
            st.stop()
        return _assessment(("live", *live["args"]), _mapping_key(), lambda: _scan_snapshot(*live["args"]))
    if kind == SNAPSHOT:
        f = st.session_state.get(_K_FILE)
        if not f:
            st.info("Upload a dnsfleet snapshot (.json or .json.gz) in the sidebar.")
            st.stop()
        if f.get("path"):
            return _server_assessment(f["path"], f["mtime"], _mapping_key())
        return _assessment(("file", f["digest"]), _mapping_key(), _file_loader(f))
    return _demo_assessment(DEMO_SEED, _mapping_key())


# --- sidebar --------------------------------------------------------------------------------------


def _prometheus_time() -> float | None:
    """``DNSFLEET_PROMETHEUS_TIME`` (epoch seconds): evaluate Prometheus queries at that time instead of
    now, to look at a past window (or a backfilled test Prometheus)."""
    raw = os.environ.get("DNSFLEET_PROMETHEUS_TIME", "").strip()
    try:
        return float(raw) if raw else None
    except ValueError:
        return None


def env_kubeconfig() -> str | None:
    return os.environ.get("DNSFLEET_KUBECONFIG") or os.environ.get("KUBECONFIG") or None


def render_sidebar() -> None:
    """The data source picker. Errors the user can cause are kept for ``render_source_error``."""
    _init_defaults()
    sb = st.sidebar
    badge = sb.empty()
    sb.radio("Data source", list(KIND_LABELS), format_func=KIND_LABELS.get, key=_K_KIND)
    kind = st.session_state[_K_KIND]
    if kind == KUBECONFIG:
        _kubeconfig_controls()
    elif kind == SNAPSHOT:
        _snapshot_controls()
    src = current_source()
    color = {DEMO: "orange", KUBECONFIG: "green", SNAPSHOT: "blue"}[src["kind"]]
    badge.badge(src["label"], color=color if src["loaded"] else "gray")
    if src["scanned_at"] is not None:
        when = src["scanned_at"]
        verb = "Scanned" if src["kind"] == KUBECONFIG else "Generated"
        sb.caption(f"{verb} {when:%Y-%m-%d %H:%M:%S} UTC ({_ago(when)})")


def render_source_error() -> None:
    """Show the last source error (bad kubeconfig, failed scan, bad snapshot) as one short line."""
    err = st.session_state.get(_K_ERROR)
    if err and err[0] == _kind():  # an error belongs to the source it came from
        st.error(err[1])


def _init_defaults() -> None:
    ss = st.session_state
    if _K_KIND not in ss:
        if os.environ.get("DNSFLEET_SNAPSHOT"):
            ss[_K_KIND] = SNAPSHOT
        elif env_kubeconfig():
            ss[_K_KIND] = KUBECONFIG
        else:
            ss[_K_KIND] = DEMO
        ss[_K_KUBECONFIG] = env_kubeconfig() or os.path.expanduser("~/.kube/config")
        ss[_K_PROM] = os.environ.get("DNSFLEET_PROMETHEUS", "")
        ss[_K_ALL] = True
        if path := os.environ.get("DNSFLEET_SNAPSHOT"):
            _load_server_snapshot(path)
    # Keep the widget values when the widgets are not drawn (another source is selected).
    for k in (_K_KUBECONFIG, _K_PROM, _K_ALL, _K_CONTEXTS):
        if k in ss:
            ss[k] = ss[k]


def _kubeconfig_controls() -> None:
    sb = st.sidebar
    path = sb.text_input(
        "Kubeconfig path", key=_K_KUBECONFIG, help="Several files may be joined with ':' like KUBECONFIG."
    ).strip()
    contexts, err = list_contexts(path)
    if err:
        sb.error(err)
    all_ctx = sb.checkbox("All contexts", key=_K_ALL)
    if _K_CONTEXTS in st.session_state:
        st.session_state[_K_CONTEXTS] = [c for c in st.session_state[_K_CONTEXTS] if c in contexts]
    chosen = sb.multiselect(
        "Contexts", contexts, key=_K_CONTEXTS, disabled=all_ctx, placeholder="Choose contexts"
    )
    prom = sb.text_input(
        "Prometheus URL (optional)",
        key=_K_PROM,
        placeholder="http://prometheus.monitoring:9090",
        help="CoreDNS and conntrack metrics. Without it, CoreDNS is scraped once through the API server.",
    ).strip()
    targets = contexts if all_ctx else chosen
    pressed = sb.button("Scan", type="primary", disabled=bool(err) or not targets, width="stretch")
    if not targets and not err:
        sb.caption("Choose at least one context, or tick 'All contexts'.")
    if pressed:
        _scan(path, targets, all_ctx, prom)


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


def _scan(path: str, targets: list[str], all_ctx: bool, prom: str) -> None:
    ss = st.session_state
    _set_error(None)
    if prom and not prom.startswith(("http://", "https://")):
        _set_error(f"Prometheus URL must start with http:// or https:// (got {prom[:80]!r}).")
        return
    args = (path, () if all_ctx else tuple(targets), all_ctx, prom or None, f"{time.time():.6f}")
    try:
        snapshot = _run_scan_with_progress(args, targets)
    except Exception as e:  # collector-level failure (bad kubeconfig content, bad Prometheus URL...)
        _set_error(f"Scan failed: {plain(one_line(e))}")
        return
    clusters = [c.get("name", "?") for c in snapshot.get("clusters", [])]
    label = ", ".join(clusters[:3]) + (f" +{len(clusters) - 3} more" if len(clusters) > 3 else "")
    ss[_K_LIVE] = {
        "args": args,
        "label": label or "no clusters",
        "contexts": clusters,
        "prometheus": prom or None,
        "scanned_at": _parse_time(snapshot.get("generated_at")) or datetime.now(UTC),
    }
    failed = [c for c in snapshot.get("clusters", []) if c.get("status") == "failed"]
    if failed and len(failed) == len(clusters):
        _set_error(
            f"Every cluster failed to scan; first reason: {plain(failed[0].get('reason') or 'unknown')}"
        )
    elif prom and (note := _prometheus_problem(snapshot)):
        _set_error(note)


def _prometheus_problem(snapshot: dict[str, Any]) -> str | None:
    """A short message when the Prometheus URL given could not be used for any cluster."""
    notes = []
    for c in snapshot.get("clusters", []):
        m = c.get("metrics") or {}
        if m.get("source") == "prometheus":
            return None
        if m.get("note"):
            notes.append(str(m["note"]))
    if not notes:
        return None
    return f"Prometheus not used: {plain(one_line(notes[0]))}"


def _run_scan_with_progress(args: tuple[Any, ...], targets: list[str]) -> dict[str, Any]:
    """Run the cached scan in a worker thread and draw its progress events in the sidebar.

    ``dnsfleet.collect.scan`` already delivers its events on the thread that called it, but that thread
    cannot be the script thread: inside the cached ``_scan_snapshot`` Streamlit refuses element calls on
    containers made outside it (``CacheReplayClosureError``). So the scan runs in a worker and its events
    go through a queue that the script thread drains.
    """
    events: queue.Queue[tuple[str, str, str]] = queue.Queue()
    result: dict[str, Any] = {}

    def work() -> None:
        try:
            result["snapshot"] = _scan_snapshot(*args, _progress=lambda e, c, d: events.put((e, c, d)))
        except Exception as e:
            result["error"] = e

    box = st.sidebar.container(border=True)
    total = max(1, len(targets))
    overall = box.progress(0.0, text=f"Scanning {len(targets)} cluster(s)…")
    bars: dict[str, Any] = {}
    done_resources: dict[str, int] = {}
    finished: set[str] = set()
    for name in targets[:MAX_PROGRESS_BARS]:
        bars[name] = box.progress(0.0, text=f"{name}: waiting")

    def handle(event: str, cluster: str, detail: str) -> None:
        if event == "cluster_done":
            finished.add(cluster)
            frac = 1.0
            text = f"{cluster}: {detail or 'done'}"
        else:
            done_resources[cluster] = done_resources.get(cluster, 0) + (event == "resource_done")
            frac = min(0.95, done_resources[cluster] / RESOURCES_PER_CLUSTER)
            text = f"{cluster}: {detail or event.replace('_', ' ')}"
        if cluster in bars:
            bars[cluster].progress(frac, text=_short(text))
        elif len(bars) < MAX_PROGRESS_BARS:
            bars[cluster] = box.progress(frac, text=_short(text))
        overall.progress(min(1.0, len(finished) / total), text=f"{len(finished)} of {total} clusters scanned")

    t = threading.Thread(target=work, name="dnsfleet-scan", daemon=True)
    add_script_run_ctx(t, get_script_run_ctx())
    t.start()
    while True:
        t.join(0.1)
        while True:
            try:
                handle(*events.get_nowait())
            except queue.Empty:
                break
        if not t.is_alive():
            break
    if "error" in result:
        raise result["error"]
    overall.progress(1.0, text=f"Scan finished: {len(finished) or total} cluster(s)")
    return result["snapshot"]


def _snapshot_controls() -> None:
    up = st.sidebar.file_uploader(
        "Snapshot file", type=["json", "gz"], key=_K_UPLOAD, help="A file written by `dnsfleet scan --out`."
    )
    if up is None:
        return
    f = st.session_state.get(_K_FILE)
    if f and f.get("file_id") == up.file_id:
        return  # already loaded: reruns do not re-read the upload
    data = up.getvalue()
    digest = hashlib.sha256(data).hexdigest()
    _set_error(None)
    try:
        snap = _file_snapshot(digest, up.name, data)
    except SnapshotError as e:
        _set_error(f"Snapshot not loaded: {plain(one_line(e))}")
        return
    _remember_file(snap, digest, up.name, lambda: data)
    st.session_state[_K_FILE]["file_id"] = up.file_id


def _load_server_snapshot(path: str) -> None:
    try:
        mtime = os.path.getmtime(path)
        snap = _server_snapshot(path, mtime)
    except OSError as e:
        _set_error(f"Cannot read DNSFLEET_SNAPSHOT {path}: {e.strerror}")
        return
    except SnapshotError as e:
        _set_error(f"Cannot use DNSFLEET_SNAPSHOT: {plain(one_line(e))}")
        return
    _remember_file(snap, f"path:{path}:{mtime}", os.path.basename(path), None, path=path, mtime=mtime)


def _remember_file(
    snap: dict[str, Any],
    digest: str,
    name: str,
    data: Callable[[], bytes] | None,
    path: str | None = None,
    mtime: float | None = None,
) -> None:
    st.session_state[_K_FILE] = {
        "digest": digest,
        "name": name,
        "path": path,
        "mtime": mtime,
        "data": data() if data else None,
        "generated_at": _parse_time(snap.get("generated_at")),
        "contexts": [c.get("name") for c in snap.get("clusters", [])],
    }


def _file_loader(f: dict[str, Any]) -> Callable[[], dict[str, Any]]:
    if f.get("path"):
        return lambda: _server_snapshot(f["path"], f["mtime"])
    return lambda: _file_snapshot(f["digest"], f["name"], f["data"])


# --- small helpers --------------------------------------------------------------------------------


def one_line(e: BaseException | str, limit: int = 240) -> str:
    """First line of an error message, shortened: what the user sees, never a traceback."""
    text = str(e).strip() or type(e).__name__
    line = text.splitlines()[0].strip()
    return line if len(line) <= limit else line[: limit - 1] + "…"


def _short(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _set_error(message: str | None) -> None:
    if message is None:
        st.session_state.pop(_K_ERROR, None)
    else:
        st.session_state[_K_ERROR] = (_kind(), message)


def _kind() -> str:
    return st.session_state.get(_K_KIND, DEMO)


def _prom_url() -> str | None:
    return (st.session_state.get(_K_PROM) or "").strip() or None


def _src(
    kind: str,
    label: str,
    scanned_at: datetime | None,
    contexts: list[str],
    prom: str | None,
    loaded: bool = True,
    kubeconfig: str | None = None,
) -> dict[str, Any]:
    return {
        "kind": kind,
        "label": label,
        "scanned_at": scanned_at,
        "contexts": list(contexts),
        "prometheus_url": prom,
        "kubeconfig": kubeconfig,
        "loaded": loaded,
    }


def _parse_time(value: object) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        t = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return t if t.tzinfo else t.replace(tzinfo=UTC)


def _ago(when: datetime) -> str:
    s = max(0, int((datetime.now(UTC) - when).total_seconds()))
    if s < 90:
        return f"{s} s ago"
    if s < 90 * 60:
        return f"{s // 60} min ago"
    if s < 48 * 3600:
        return f"{s // 3600} h ago"
    return f"{s // 86400} days ago"
