"""Where the dashboard's data comes from: cached loaders, the live scan runner, and what is shown.

Pages use ``dashboard.state`` (``current_assessment``, ``current_source``, ...), which reads from here;
``dashboard.sidebar`` draws the widgets that choose the source.

- The demo snapshot and its assessment are cached globally (they hold no cluster data).
- A live scan is kept server-side (``dashboard.livestore.scan_store``) and shared by every session: a
  link with ``?scan=<id>``, a reload or a new tab opens it without scanning again. Its assessment is
  cached globally per scan id. Every visitor reads the clusters with the operator's kubeconfig
  identity (served beyond loopback, visitors only choose among the operator's contexts); writes
  impersonate the signed-in user (``dnsfleet.authz``).
- An uploaded snapshot is cached per file digest, per session.
- Snapshots and assessments are cached with ``st.cache_resource``, so neither storing nor a rerun
  costs a copy; pages must treat both as read-only.

Every cache has a ``ttl`` and ``max_entries``.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import streamlit as st

from dashboard.livestore import Kept, new_scan_id, scan_store, selection_key
from dnsfleet.perf import gc_paused
from dnsfleet.scrub import scrub
from dnsfleet.snapshot import load, loads

if TYPE_CHECKING:
    import pandas as pd

    from dnsfleet.engine import Assessment
    from dnsfleet.store import Heads, Latest

DEMO, KUBECONFIG, SNAPSHOT = "demo", "kubeconfig", "snapshot"
KIND_LABELS = {DEMO: "Demo fleet", KUBECONFIG: "Kubeconfig (live scan)", SNAPSHOT: "Snapshot file"}
DEMO_SEED = 7
SCAN_TIMEOUT_S = 10.0
DEFAULT_RANGE_S = 3 * 3600.0  # CoreDNS and conntrack series drawn on the pages
RATE_WINDOW_S = 3600.0  # rates and increases behind the scores (PromSource.window_s)

# Session keys shared by the sidebar (which writes them) and the loaders here (which read them).
K_KIND = "src.kind"
K_LIVE = "dnsfleet.live"  # scan id of the live scan this session shows
K_FILE = "dnsfleet.file"  # digest/name of the last successfully loaded snapshot file
K_ERROR = "dnsfleet.source_error"

# The operator's resolver mapping (DNSFLEET_RESOLVER_MAP, the CLI's --resolver-map): (path, mtime) or
# None. Part of every assessment's cache key, so editing the file re-scores on the next rerun.
MappingKey = tuple[str, float] | None
Progress = Callable[[str, str, str], None]


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


# A kept live scan is the same for every visitor: scored once per scan id, not once per session.
@st.cache_resource(ttl="1h", max_entries=4, show_spinner="Scoring the fleet…")
def _live_assessment(scan_id: str, mapping: MappingKey) -> Assessment:
    snap = scan_store().snapshot(scan_id)
    if snap is None:
        raise LookupError(f"scan {scan_id} is no longer kept on this server")
    return _analyze(snap, mapping)


# Snapshots are cached as resources too: st.cache_data pickles a copy when storing and unpickles one on
# every read (1 s for a 100,000-pod snapshot, twice on the first page load). Nothing mutates them.
@st.cache_resource(ttl="1h", max_entries=4, scope="session", show_spinner=False)
def file_snapshot(digest: str, name: str, _data: bytes) -> dict[str, Any]:
    with gc_paused(freeze=True):  # kept until evicted: see dnsfleet.perf
        return loads(_data, name=name)


@st.cache_resource(ttl="1h", max_entries=2, show_spinner=False)
def server_snapshot(path: str, mtime: float) -> dict[str, Any]:
    if path.startswith(STORE_PREFIX):
        return store_skeleton(path, mtime)
    with gc_paused(freeze=True):
        return load(path)


# --- DNSFLEET_STORE: a snapshot store (dnsfleet.store) -----------------------------------------------
# It rides the server-side snapshot path (sidebar: kind SNAPSHOT, path "store+" + URL, "mtime" the
# minute it was opened): one session sees one reading of the index. Nothing here reads every cluster
# object unless the user asks for the whole fleet:
# - the Fleet overview ranks the clusters from their newest index rows (``store_overview``);
# - the Cluster page loads and scores the one cluster chosen (``store_assessment((name,))``);
# - the pages that need every cluster's pods (Nodes, Workloads, CoreDNS, Mitigations, Reports) get,
#   from ``current_assessment``, the clusters the user chose (the ``cluster`` link parameter, else the
#   last ones chosen) or, on request, the whole fleet; ``store_scope_box`` says which on the page.
STORE_PREFIX, STORE_REFRESH_S = "store+", 60
K_STORE_SCOPE = "store.scope"  # the clusters fleet-wide pages load (list), remembered per session
K_STORE_ALL = "store.all"  # True: the user asked for every cluster
K_STORE_PICK = "store.pick"


@st.cache_resource(ttl="1h", max_entries=4, show_spinner="Reading the store index…")
def store_heads(path: str, mtime: float) -> Heads:
    """The newest index rows of every cluster (no snapshot object read)."""
    from dnsfleet.store import SnapshotStore

    return SnapshotStore(path.removeprefix(STORE_PREFIX)).read_heads()


def store_skeleton(path: str, mtime: float) -> dict[str, Any]:
    """What the sidebar remembers of a store: its cluster names and the newest store time; no pods."""
    heads = store_heads(path, mtime)
    newest = [r[-1]["stored_at"] for r in heads.rows.values() if r]
    gen = max(newest).isoformat() if newest else None
    return {"generated_at": gen, "clusters": [{"name": n} for n in heads.rows]}


@st.cache_resource(ttl="1h", max_entries=4, show_spinner=False)
def _store_overview(path: str, mtime: float) -> pd.DataFrame:
    from dnsfleet.store.overview import overview_frame

    return overview_frame(store_heads(path, mtime))


@st.cache_resource(ttl="1h", max_entries=16, show_spinner=False)
def _store_latest(path: str, mtime: float, clusters: tuple[str, ...] | None) -> Latest:
    from dnsfleet.store import SnapshotStore

    store = SnapshotStore(path.removeprefix(STORE_PREFIX))
    with gc_paused(freeze=True):
        return store.latest(clusters, heads=store_heads(path, mtime))


@st.cache_resource(ttl="1h", max_entries=16, show_spinner=False)
def _store_assessment(
    path: str, mtime: float, clusters: tuple[str, ...] | None, mapping: MappingKey
) -> Assessment:
    return _analyze(_store_latest(path, mtime, clusters).snapshot, mapping)


def store_path() -> tuple[str, float] | None:
    """(path, mtime) of the store shown, None when the source is not a store."""
    f = st.session_state.get(K_FILE) if kind() == SNAPSHOT else None
    if f and str(f.get("path") or "").startswith(STORE_PREFIX):
        return f["path"], f["mtime"]
    return None


def store_overview() -> pd.DataFrame:
    """The overview frame of the store shown (``dnsfleet.store.overview``): index rows only."""
    sp = store_path()
    if sp is None:
        raise LookupError("the data source is not a snapshot store")
    return _store_overview(*sp)


def store_heads_shown() -> Heads:
    sp = store_path()
    if sp is None:
        raise LookupError("the data source is not a snapshot store")
    return store_heads(*sp)


def store_assessment(clusters: tuple[str, ...] | None) -> tuple[Assessment, Latest]:
    """The newest objects of ``clusters`` (None: every cluster) scored together, and what was read
    (``Latest``: the notes per cluster)."""
    sp = store_path()
    if sp is None:
        raise LookupError("the data source is not a snapshot store")
    key = tuple(sorted(clusters)) if clusters is not None else None
    n = len(key) if key is not None else len(store_heads(*sp).rows)
    with st.spinner(f"Reading {n:,} cluster object(s) from the store and scoring them…"):
        latest = _store_latest(*sp, key)
        return _store_assessment(*sp, key, _mapping_key()), latest


def store_scope() -> tuple[str, ...] | None:
    """The clusters the fleet-wide pages load: every cluster (None) when the user asked for the whole
    fleet, else the ``cluster`` link parameter's store clusters (then remembered), else the last ones
    chosen; empty when none was chosen yet."""
    ss = st.session_state
    if ss.get(K_STORE_ALL):
        return None
    names = store_heads_shown().rows
    linked = [c for c in st.query_params.get_all("cluster") if c in names]
    if linked and not set(linked) <= set(ss.get(K_STORE_SCOPE) or ()):
        ss[K_STORE_SCOPE] = list(dict.fromkeys(linked))
    return tuple(c for c in ss.get(K_STORE_SCOPE) or () if c in names)


def _set_scope(chosen: list[str]) -> None:
    ss = st.session_state
    ss[K_STORE_SCOPE] = list(chosen)
    ss[K_STORE_ALL] = False
    if chosen:
        st.query_params["cluster"] = list(chosen)
    elif "cluster" in st.query_params:
        del st.query_params["cluster"]
    ss.pop("url.cluster", None)  # the page's own cluster filter re-reads the link


def _on_pick() -> None:
    _set_scope(list(st.session_state.get(K_STORE_PICK) or []))


def _on_all(value: bool) -> None:
    st.session_state[K_STORE_ALL] = value
    st.session_state.pop("url.cluster", None)


def store_scope_box(scope: tuple[str, ...] | None) -> None:
    """Says on the page which clusters of the store it shows, with the controls to change that."""
    heads = store_heads_shown()
    total = len(heads.rows)
    pods = sum(int((heads.usable(c) or {}).get("pods") or 0) for c in heads.rows)
    with st.container(border=True, key="store-scope"):
        if scope is None:
            st.markdown(f"**Snapshot store: every cluster ({total:,}) is loaded and scored on this page.**")
            st.button("Back to the chosen clusters", key="store.back", on_click=_on_all, args=(False,))
            return
        if scope:
            st.markdown(
                f"**Snapshot store: this page shows {len(scope):,} of {total:,} clusters**, the ones "
                "chosen below; its figures are not the fleet's. The Fleet overview ranks every cluster."
            )
        else:
            st.markdown(
                f"**Snapshot store: choose the clusters this page shows.** It needs every pod of each "
                f"cluster, read from the cluster's newest object; the Fleet overview ranks all {total:,} "
                "clusters from the index without that."
            )
        if st.session_state.get(K_STORE_PICK) != list(scope):
            st.session_state[K_STORE_PICK] = list(scope)
        st.multiselect(
            "Clusters loaded from the store",
            list(heads.rows),
            key=K_STORE_PICK,
            on_change=_on_pick,
            placeholder="Choose clusters",
        )
        st.button(
            f"Load the whole fleet: {total:,} clusters, {pods:,} pods (reads and scores every cluster object)",
            key="store.all.button",
            on_click=_on_all,
            args=(True,),
        )


@st.cache_resource(ttl="1h", max_entries=4, scope="session", show_spinner="Scoring the fleet…")
def _file_assessment(digest: str, mapping: MappingKey, _snapshot: Callable[[], dict[str, Any]]) -> Assessment:
    return _analyze(_snapshot(), mapping)


# The operator's DNSFLEET_SNAPSHOT is the same for every visitor: scored once, not once per session.
@st.cache_resource(ttl="1h", max_entries=2, show_spinner="Scoring the fleet…")
def _server_assessment(path: str, mtime: float, mapping: MappingKey) -> Assessment:
    return _analyze(server_snapshot(path, mtime), mapping)


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
        _live_assessment,
        file_snapshot,
        server_snapshot,
        store_heads,
        _store_overview,
        _store_latest,
        _store_assessment,
        _server_assessment,
        _file_assessment,
        _mapping,
        _prometheus_evidence,
    ):
        f.clear()


# --- the live scan runner -------------------------------------------------------------------------


@dataclass(frozen=True)
class ScanRequest:
    """What a Scan press asks for: the kubeconfig and contexts, Prometheus and its time range."""

    kubeconfig: str
    contexts: tuple[str, ...]  # empty with all_contexts
    all_contexts: bool
    prometheus: str | None
    prometheus_time: float | None  # evaluation time, epoch s (None: now)
    range_s: float = DEFAULT_RANGE_S

    @property
    def key(self) -> str:
        return selection_key(
            self.kubeconfig,
            self.contexts,
            self.all_contexts,
            self.prometheus,
            self.prometheus_time,
            self.range_s,
        )


def run_scan(req: ScanRequest, progress: Progress | None = None) -> Kept:
    """Scan, keep the result server-side and return what was kept. ``progress`` receives the
    collector's events on this thread (``dnsfleet.collect.scan`` relays them from its workers), so it
    may draw Streamlit elements. Raises ValueError or ConfigError (one line) for unusable settings."""
    from dnsfleet import collect
    from dnsfleet.collect.prom import operator_credentials as prom_credentials

    prom = None
    if req.prometheus:
        try:
            creds = prom_credentials(req.prometheus)  # only for the operator's DNSFLEET_PROMETHEUS
            prom = collect.PromSource(
                req.prometheus,
                time=req.prometheus_time,
                timeout=SCAN_TIMEOUT_S,
                window_s=min(RATE_WINDOW_S, req.range_s),
                series_range_s=req.range_s,
                **creds,
            )
        except ValueError as e:
            raise ValueError(f"Prometheus: {one_line(e)}") from None
    snapshot = collect.scan(
        kubeconfig=req.kubeconfig,
        contexts=list(req.contexts) or None,
        all_contexts=req.all_contexts,
        prometheus=prom,
        progress=progress,
        timeout=SCAN_TIMEOUT_S,
    )
    kept = Kept(
        scan_id=new_scan_id(),
        key=req.key,
        scanned_at=(parse_time(snapshot.get("generated_at")) or datetime.now(UTC)).isoformat(),
        kubeconfig=req.kubeconfig,
        contexts=req.contexts,
        all_contexts=req.all_contexts,
        prometheus=scrub(req.prometheus) if req.prometheus else req.prometheus,
        prometheus_time=req.prometheus_time,
        range_s=req.range_s,
        clusters=tuple(str(c.get("name", "?")) for c in snapshot.get("clusters", [])),
    )
    return scan_store().put(kept, snapshot)


def kept_scan(scan_id: str | None) -> Kept | None:
    return scan_store().meta(scan_id) if scan_id else None


def scan_problems(snapshot: dict[str, Any], prometheus: str | None) -> str | None:
    """One line for the page when a scan is not usable as a whole: every cluster failed, or the
    Prometheus URL given could not be used for any cluster."""
    clusters = snapshot.get("clusters", [])
    failed = [c for c in clusters if c.get("status") == "failed"]
    if failed and len(failed) == len(clusters):
        return f"Every cluster failed to scan; first reason: {failed[0].get('reason') or 'unknown'}"
    if not prometheus:
        return None
    notes = []
    for c in clusters:
        m = c.get("metrics") or {}
        if m.get("source") == "prometheus":
            return None
        if m.get("note"):
            notes.append(str(m["note"]))
    return f"Prometheus not used: {one_line(notes[0])}" if notes else None


# --- what is shown --------------------------------------------------------------------------------


def kind() -> str:
    return st.session_state.get(K_KIND, DEMO)


def shown_scan() -> Kept | None:
    """The kept live scan this session shows (kubeconfig source), if any."""
    return kept_scan(st.session_state.get(K_LIVE)) if kind() == KUBECONFIG else None


def current_source() -> dict[str, Any]:
    """What the pages show: ``kind`` (demo|kubeconfig|snapshot), ``label``, ``scanned_at`` (datetime UTC
    or None), ``contexts`` (list), ``prometheus_url`` (str or None), ``kubeconfig`` (the path the shown
    scan read, kubeconfig kind only, else None), ``loaded`` (False while a kubeconfig is not scanned
    yet or no snapshot is loaded) and ``scan_id`` (the kept live scan, else None)."""
    k = kind()
    if k == KUBECONFIG:
        live = shown_scan()
        if live is None:
            prom = (st.session_state.get("src.prometheus") or "").strip() or None
            return _src(KUBECONFIG, "LIVE: not scanned yet", None, [], prom, loaded=False)
        clusters = list(live.clusters)
        label = ", ".join(clusters[:3]) + (f" +{len(clusters) - 3} more" if len(clusters) > 3 else "")
        return _src(
            KUBECONFIG,
            f"LIVE: {label or 'no clusters'}",
            live.when,
            clusters,
            live.prometheus,
            kubeconfig=live.kubeconfig,
            scan_id=live.scan_id,
        )
    if k == SNAPSHOT:
        f = st.session_state.get(K_FILE)
        if not f:
            return _src(SNAPSHOT, "SNAPSHOT: none loaded", None, [], None, loaded=False)
        if store_path() is not None:
            return _src(
                SNAPSHOT,
                f"STORE: {f['path'].removeprefix(STORE_PREFIX)}",
                f["generated_at"],
                f["contexts"],
                None,
            )
        return _src(SNAPSHOT, f"SNAPSHOT: {f['name']}", f["generated_at"], f["contexts"], None)
    snap = _demo_snapshot(DEMO_SEED)
    return _src(DEMO, "DEMO FLEET", parse_time(snap.get("generated_at")), [], None)


def current_snapshot() -> dict[str, Any]:
    """The snapshot dict behind the current assessment (for the snapshot download)."""
    k = kind()
    if k == KUBECONFIG and (live := shown_scan()) and (snap := scan_store().snapshot(live.scan_id)):
        return snap
    if store_path() is not None:
        return store_assessment(store_scope())[1].snapshot
    if k == SNAPSHOT and (f := st.session_state.get(K_FILE)):
        return file_loader(f)()
    return _demo_snapshot(DEMO_SEED)


def source_key() -> str:
    """A string naming the loaded data (kind plus scan id or file digest): a cache key for derived data."""
    k = kind()
    if k == KUBECONFIG and (live := shown_scan()):
        return "live|" + live.scan_id
    if (sp := store_path()) is not None:
        scope = store_scope()
        return f"store|{sp[0]}|{sp[1]}|" + ("*" if scope is None else "\x1f".join(sorted(scope)))
    if k == SNAPSHOT and (f := st.session_state.get(K_FILE)):
        return "file|" + f["digest"]
    return f"demo|{DEMO_SEED}"


def current_assessment() -> Assessment:
    """The engine's assessment of the current source. When nothing is loaded yet (kubeconfig not
    scanned, no snapshot uploaded), says what to do and stops the page."""
    k = kind()
    if k == KUBECONFIG:
        live = shown_scan()
        if live is None:
            st.info("Choose the contexts in the sidebar and press **Scan** to collect live data.")
            st.stop()
        try:
            return _live_assessment(live.scan_id, _mapping_key())
        except LookupError as e:
            st.info(f"The {e}: press **Scan** to collect live data.")
            st.stop()
    if k == SNAPSHOT:
        f = st.session_state.get(K_FILE)
        if not f:
            st.info("Upload a dnsfleet snapshot (.json or .json.gz) in the sidebar.")
            st.stop()
        if store_path() is not None:
            scope = store_scope()
            store_scope_box(scope)
            if scope == ():
                st.stop()
            return store_assessment(scope)[0]
        if f.get("path"):
            return _server_assessment(f["path"], f["mtime"], _mapping_key())
        return _file_assessment(f["digest"], _mapping_key(), file_loader(f))
    return _demo_assessment(DEMO_SEED, _mapping_key())


def file_loader(f: dict[str, Any]) -> Callable[[], dict[str, Any]]:
    if f.get("path"):
        return lambda: server_snapshot(f["path"], f["mtime"])
    return lambda: file_snapshot(f["digest"], f["name"], f["data"])


# --- small helpers --------------------------------------------------------------------------------


def one_line(e: BaseException | str, limit: int = 240) -> str:
    """First line of an error message, shortened: what the user sees, never a traceback."""
    text = scrub(str(e).strip()) or type(e).__name__
    line = text.splitlines()[0].strip()
    return line if len(line) <= limit else line[: limit - 1] + "…"


def parse_time(value: object) -> datetime | None:
    """A snapshot's ISO-8601 time as an aware datetime, None when there is none (``dnsfleet.times``)."""
    from dnsfleet.times import parse_iso

    return parse_iso(value)


def ago(when: datetime) -> str:
    s = max(0, int((datetime.now(UTC) - when).total_seconds()))
    if s < 90:
        return f"{s} s ago"
    if s < 90 * 60:
        return f"{s // 60} min ago"
    if s < 48 * 3600:
        return f"{s // 3600} h ago"
    return f"{s // 86400} days ago"


def _src(
    kind: str,
    label: str,
    scanned_at: datetime | None,
    contexts: list[str],
    prom: str | None,
    loaded: bool = True,
    kubeconfig: str | None = None,
    scan_id: str | None = None,
) -> dict[str, Any]:
    return {
        "kind": kind,
        "label": label,
        "scanned_at": scanned_at,
        "contexts": list(contexts),
        "prometheus_url": prom,
        "kubeconfig": kubeconfig,
        "loaded": loaded,
        "scan_id": scan_id,
    }


# --- evidence over time (Prometheus range queries) ------------------------------------------------
# The Nodes, CoreDNS and Mitigations pages draw conntrack and CoreDNS series over a window: from the
# snapshot's ``evidence`` sections when it has them, else from the Prometheus URL (sidebar or
# DNSFLEET_PROMETHEUS) through ``dnsfleet.evidence.query``. ``dashboard.evidence_view`` draws them.

if TYPE_CHECKING:
    import pandas as pd

EVIDENCE_SPAN_S = 3 * 3600.0  # the window without a snapshot window: 3 hours up to now
EVIDENCE_MAX_CLUSTERS = 10  # range queries per page view: the first clusters of the selection


def replay_time() -> float | None:
    """``DNSFLEET_PROMETHEUS_TIME`` (epoch s) when set and a number: "now" for the evidence window."""
    raw = os.environ.get("DNSFLEET_PROMETHEUS_TIME", "").strip()
    try:
        return float(raw) if raw else None
    except ValueError:
        return None


def prometheus_url() -> str | None:
    """The Prometheus the evidence is read from: the shown source's, else ``DNSFLEET_PROMETHEUS``."""
    return current_source().get("prometheus_url") or os.environ.get("DNSFLEET_PROMETHEUS", "").strip() or None


def evidence_window(snapshot: dict[str, Any] | None) -> tuple[float, float]:
    """The window the data source gives: the snapshot's evidence window, else 3 h up to now."""
    spans = [
        (c["evidence"]["start"], c["evidence"]["end"])
        for c in (snapshot or {}).get("clusters") or []
        if isinstance(c.get("evidence"), dict) and c["evidence"].get("start") is not None
    ]
    if spans:
        return min(s for s, _ in spans), max(e for _, e in spans)
    import time

    end = replay_time() or time.time()
    return end - EVIDENCE_SPAN_S, end


@st.cache_data(ttl=300, max_entries=32, show_spinner="Querying Prometheus for the window…")
def _prometheus_evidence(
    url: str, clusters: tuple[str, ...], start: float, end: float
) -> dict[str, dict[str, Any]]:
    from dnsfleet.collect.prom import PromClient
    from dnsfleet.evidence import query

    src = evidence_prom_source(url)
    return {c: query.fetch(PromClient(src), c, start, end) for c in clusters}


def evidence_prom_source(url: str) -> Any:
    """A ``PromSource`` for ``url`` with the operator's credentials when ``url`` is the operator's
    ``DNSFLEET_PROMETHEUS`` (as the scan gets them; a visitor's URL never does). Raises ValueError (one
    line) when the environment's credential settings are unusable."""
    from dnsfleet.collect.prom import PromSource, operator_credentials

    try:
        return PromSource(url, **operator_credentials(url))
    except ValueError as e:
        raise ValueError(f"Prometheus: {one_line(e)}") from None


def evidence_sections(
    snapshot: dict[str, Any] | None, clusters: list[str], start: float, end: float
) -> dict[str, dict[str, Any]]:
    """Evidence sections per cluster: from the snapshot, else from Prometheus for [start, end]."""
    out = {
        c["name"]: c["evidence"]
        for c in (snapshot or {}).get("clusters") or []
        if c.get("name") in clusters and isinstance(c.get("evidence"), dict)
    }
    url = prometheus_url()
    missing = tuple(sorted(set(clusters) - set(out)))
    if url and missing:
        # whole minutes: a rerun a few seconds later hits the cache
        whole = float(int(start) // 60 * 60), float(int(end) // 60 * 60)
        out.update(_prometheus_evidence(url, missing, *whole))
    return out


def verify_frame(window_min: int, settle_min: int, snapshot: dict[str, Any] | None) -> pd.DataFrame:
    """The before/after verdicts (``dnsfleet.evidence.verify``, one row per change and scope, the CSV's
    columns) of every applied change in the audit log, from Prometheus (when a URL is set) and from
    probe runs. Raises ValueError for unusable settings."""
    import time

    import pandas as pd

    from dnsfleet.collect.prom import PromClient
    from dnsfleet.evidence import query, verify
    from dnsfleet.mitigate.audit import AuditLog
    from dnsfleet.probe.log import ProbeLog

    url = prometheus_url()
    fetch = None
    if url:
        src = evidence_prom_source(url)

        def fetch(cluster: str, start: float, end: float) -> dict[str, Any]:
            return query.fetch(PromClient(src), cluster, start, end, max_points=query.fine_points(start, end))

    results = verify.verify(
        AuditLog().records(),
        fetch,
        now=replay_time() or time.time(),
        window_s=window_min * 60.0,
        settle_s=settle_min * 60.0,
        snapshot=snapshot,
        probe_runs=ProbeLog().records(),
    )
    return pd.DataFrame(verify.rows(results), columns=list(verify.CSV_COLUMNS))
