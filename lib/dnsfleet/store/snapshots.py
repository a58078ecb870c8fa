"""The snapshot store: one object per cluster per scan, and a summary index that concurrent
collectors append to without a lock.

Layout (under the store URL, ``docs/store.md``)::

    v1/snapshots/<slug>/<scan_id>.json.gz   one cluster's snapshot (a normal snapshot, one cluster)
    v1/index/rows/<scan_id>.<slug>.json     one index row per write, created, never overwritten
    v1/index/compacted/<time>-<rand>.json.gz  rows merged by ``compact`` (which also applies retention)

A writer puts the snapshot object first and its index row second, both create-only, under names no
other writer can pick (scan time + random suffix): two collectors can never overwrite each other, and
a row never names an object that was not written. ``compact`` writes a new compacted object holding
every row it read (the other compacted objects included) before deleting exactly what it read, so a
reader, which takes the union of all compacted objects and loose rows (deduplicated by row id),
never misses a row, even while two compactions run at once.

Times: ``collected_at`` is the collector's clock; ``stored_at`` is the store's (the object's
last-modified time, one clock for every collector). The latest scan of a cluster is the one the store
received last; a collector whose clock is off by more than ``SKEW_S`` gets a note.
"""

from __future__ import annotations

import gzip
import hashlib
import re
import secrets
import zlib
from collections import defaultdict
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from dnsfleet import __version__
from dnsfleet.snapshot import SnapshotError, dumps, loads, new_snapshot
from dnsfleet.store.backend import Backend, ObjectExists, ObjectInfo, ObjectMissing, StoreError

INDEX_VERSION = 1
INDEX_FORMAT = "dnsfleet.store-index"
TOOL = "dnsfleet"
SNAPSHOTS = "v1/snapshots/"
ROWS = "v1/index/rows/"
COMPACTED = "v1/index/compacted/"
SKEW_S = 300.0  # a collector clock this far from the store's gets a note
SAME_NAME_WINDOW = timedelta(days=1)  # two collectors writing one name within this get a note
FALLBACK_SCANS = 3  # older scans tried when the latest object of a cluster is unusable
READ_WORKERS = 16
ROW_FIELDS = (
    "status",
    "reason",
    "score",
    "level",
    "exposed_pods",
    "unknown_pods",
    "pods",
    "nodes",
    "nodes_ready",
    "insert_failed",
    "conntrack_drops",
    "evidence_pts",
)


def slug(name: str) -> str:
    """A key-safe, collision-free folder name for a cluster name (names may hold ``:``, ``/``, ``@``)."""
    safe = re.sub(r"[^A-Za-z0-9_-]", "_", name)[:60]
    return f"{safe}-{hashlib.sha256(name.encode()).hexdigest()[:10]}"


def iso(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(v: Any) -> datetime | None:
    if not isinstance(v, str):
        return None
    try:
        t = datetime.fromisoformat(v.replace("Z", "+00:00"))
    except ValueError:
        return None
    return t if t.tzinfo else t.replace(tzinfo=UTC)


@dataclass(frozen=True)
class Retention:
    """Keep a cluster's scans for ``days`` and/or its newest ``scans`` (its newest scan always stays)."""

    days: float | None = None
    scans: int | None = None

    def __post_init__(self) -> None:
        if self.days is not None and self.days <= 0:
            raise StoreError("retention days must be positive")
        if self.scans is not None and self.scans < 1:
            raise StoreError("retention scans must be at least 1")


@dataclass
class Index:
    """Every readable row (sorted by cluster, then store time) and the notes about what was not."""

    rows: list[dict[str, Any]]
    notes: dict[str, list[str]] = field(default_factory=dict)  # cluster name -> notes
    fleet_notes: list[str] = field(default_factory=list)  # what names no known cluster
    sources: list[str] = field(default_factory=list)  # the keys read (compaction deletes these)


@dataclass
class Latest:
    snapshot: dict[str, Any]
    rows: dict[str, dict[str, Any]]  # cluster -> the row whose object is in the snapshot
    notes: dict[str, list[str]]
    fleet_notes: list[str]


def summary_row(cluster: Mapping[str, Any], risk: Mapping[str, Any] | None) -> dict[str, Any]:
    """The index row's figures for one scanned cluster: ``risk`` is its row of the clusters frame
    (``engine.cluster_risk``), None when scoring failed. Evidence totals are the conntrack counters'
    increases over the metrics window, summed over nodes (None when no node had them)."""

    def num(v: Any) -> float | int | None:
        if v is None or isinstance(v, bool):
            return None
        try:
            f = float(v)
        except (TypeError, ValueError):
            return None
        if f != f:
            return None
        return int(f) if f.is_integer() and not isinstance(v, float) else f

    nodes = cluster.get("nodes")
    conn = ((cluster.get("metrics") or {}).get("conntrack") or {}).get("nodes") or {}

    def total(key: str) -> float | None:
        vals = [n.get(key) for n in conn.values() if isinstance(n, dict) and n.get(key) is not None]
        return float(sum(vals)) if vals else None

    risk = risk or {}
    level = risk.get("level")
    return {
        "status": cluster.get("status"),
        "reason": cluster.get("reason"),
        "score": num(risk.get("score")),
        "level": level if isinstance(level, str) else "unknown",
        "exposed_pods": num(risk.get("exposed_pods")),
        "unknown_pods": num(risk.get("unknown_pods")),
        "pods": None if cluster.get("pods") is None else len(cluster["pods"]),
        "nodes": None if nodes is None else len(nodes),
        "nodes_ready": None if nodes is None else sum(1 for n in nodes if n.get("ready") is True),
        "insert_failed": total("insert_failed_increase"),
        "conntrack_drops": total("drop_increase"),
        "evidence_pts": num(risk.get("evidence_pts")),
    }


class SnapshotStore:
    """A snapshot store at ``url`` (``None``: the local default directory)."""

    def __init__(self, url: str | None = None, *, timeout: float | None = None) -> None:
        self.backend = Backend(url, timeout=timeout)

    @property
    def url(self) -> str:
        return self.backend.url

    # -- writing ---------------------------------------------------------------------------------
    def write_scan(
        self,
        cluster: dict[str, Any],
        summary: Mapping[str, Any],
        *,
        collector_id: str | None = None,
        now: datetime | None = None,
    ) -> dict[str, Any]:
        """Store one scanned cluster (a snapshot's cluster dict) and its index row; returns the row.

        ``collector_id`` names the writer (the in-cluster collector uses the kube-system namespace
        UID, so two deployments with one ``--cluster-name`` are told apart)."""
        name = cluster.get("name")
        if not isinstance(name, str) or not name:
            raise StoreError("a stored cluster needs a name")
        now = (now or datetime.now(UTC)).astimezone(UTC)
        scan_id = f"{now:%Y%m%dT%H%M%S}Z-{secrets.token_hex(4)}"
        s = slug(name)
        collector = {"tool": TOOL, "version": __version__, "id": collector_id}
        doc = new_snapshot([cluster], "store")
        doc["generated_at"] = iso(now)
        doc["collector"] = collector
        data = dumps(doc)
        obj = f"{SNAPSHOTS}{s}/{scan_id}.json.gz"
        self.backend.put(obj, data, create=True)  # first: a row never names an unwritten object
        row = {f: summary.get(f) for f in ROW_FIELDS}
        row.update(
            index_version=INDEX_VERSION,
            id=f"{scan_id}.{s}",
            cluster=name,
            scan_id=scan_id,
            collected_at=iso(now),
            object=obj,
            bytes=len(data),
            collector=collector,
        )
        self.backend.put(f"{ROWS}{row['id']}.json", orjson.dumps(row), create=True)
        return row

    # -- reading the index -----------------------------------------------------------------------
    def read_index(self) -> Index:
        """All rows: the compacted objects' and the loose ones', deduplicated by row id."""
        compacted = list(self.backend.list(COMPACTED))
        loose = list(self.backend.list(ROWS))
        rows: dict[str, dict[str, Any]] = {}
        by_slug: dict[str, list[str]] = defaultdict(list)  # notes about rows we could not read
        fleet: list[str] = []
        sources: list[str] = []

        def fetch(info: ObjectInfo) -> tuple[ObjectInfo, bytes | Exception]:
            try:
                return info, self.backend.get(info.key)
            except StoreError as e:
                return info, e

        with ThreadPoolExecutor(READ_WORKERS) as pool:
            results = list(pool.map(fetch, sorted(compacted, key=lambda i: i.key) + loose))
        for info, data in results:
            is_loose = info.key.startswith(ROWS)
            if isinstance(data, ObjectMissing):
                continue  # compacted away between the listing and the read: its rows are elsewhere
            if isinstance(data, Exception):
                raise StoreError(f"cannot read the store index: {data}") from None
            try:
                got = _parse_rows(data, info, is_loose)
            except _BadObject as e:
                if is_loose:
                    by_slug[_slug_of_row_key(info.key)].append(f"index row {info.key} unusable: {e}")
                else:
                    fleet.append(f"compacted index {info.key} unusable: {e}")
                continue
            sources.append(info.key)
            for r in got:
                rows.setdefault(r["id"], r)
        notes: dict[str, list[str]] = defaultdict(list)
        names_by_slug = {slug(r["cluster"]): r["cluster"] for r in rows.values()}
        for s, msgs in by_slug.items():
            if s in names_by_slug:
                notes[names_by_slug[s]].extend(msgs)
            else:
                fleet.extend(msgs)
        ordered = sorted(
            rows.values(), key=lambda r: (r["cluster"], r["stored_at"], r["collected_at"], r["id"])
        )
        for r in ordered:
            if r.get("_note"):
                notes[r["cluster"]].append(r["_note"])
        return Index(ordered, dict(notes), fleet, sources)

    # -- the latest scan per cluster ----------------------------------------------------------------
    def latest(self, clusters: Iterable[str] | None = None) -> Latest:
        """A snapshot of each cluster's newest usable scan, read through the index (one object per
        cluster). A cluster whose newest object is unusable falls back to an older scan, with a note;
        a cluster with no usable scan is a ``failed`` cluster whose reason says why."""
        idx = self.read_index()
        wanted = set(clusters) if clusters is not None else None
        per: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for r in idx.rows:
            if wanted is None or r["cluster"] in wanted:
                per[r["cluster"]].append(r)
        notes: dict[str, list[str]] = {c: list(idx.notes.get(c, [])) for c in per}

        def pick(name: str) -> tuple[dict[str, Any], dict[str, Any] | None, list[str]]:
            rows = per[name]
            msgs = _collector_notes(rows)
            candidates = [r for r in reversed(rows) if not r.get("_skip")]
            for r in candidates[:FALLBACK_SCANS]:
                try:
                    c = self._load_cluster(r)
                except (StoreError, SnapshotError) as e:
                    msgs.append(f"scan {r['scan_id']} unusable: {e}")
                    continue
                if r is not rows[-1]:
                    msgs.append(f"showing the scan stored at {iso(r['stored_at'])}, not the newest")
                msgs.extend(_skew_note(r))
                return c, r, msgs
            if not candidates:
                msgs.append("no usable scan in the store index")
            reason = "; ".join(msgs) or "no usable scan in the store"
            return {"name": name, "status": "failed", "reason": f"store: {reason}"}, None, msgs

        names = sorted(per)
        with ThreadPoolExecutor(READ_WORKERS) as pool:
            picked = list(pool.map(pick, names))
        out_clusters, used = [], {}
        for name, (c, r, msgs) in zip(names, picked, strict=True):
            notes[name].extend(msgs)
            c["store"] = {
                "scan_id": r["scan_id"] if r else None,
                "stored_at": iso(r["stored_at"]) if r else None,
                "collected_at": r["collected_at"] if r else None,
                "notes": notes[name],
            }
            out_clusters.append(c)
            if r:
                used[name] = r
        snap = new_snapshot(out_clusters, "store")
        if used:  # the snapshot is as new as its newest scan, not the moment it was read
            snap["generated_at"] = iso(max(r["stored_at"] for r in used.values()))
        return Latest(snap, used, {k: v for k, v in notes.items() if v}, idx.fleet_notes)

    def _load_cluster(self, row: Mapping[str, Any]) -> dict[str, Any]:
        data = self.backend.get(row["object"])
        doc = loads(data, name=row["object"])
        col = doc.get("collector") or {}
        if col.get("tool") != TOOL:
            raise SnapshotError(f"written by an unknown collector {col.get('tool')!r}")
        cs = doc["clusters"]
        if len(cs) != 1 or cs[0]["name"] != row["cluster"]:
            raise SnapshotError(f"holds {[c['name'] for c in cs]!r}, not cluster {row['cluster']!r}")
        return cs[0]

    # -- compaction and retention ------------------------------------------------------------------
    def compact(self, retention: Retention | None = None, *, now: datetime | None = None) -> dict[str, int]:
        """Merge every readable index object into one compacted object, then delete what was merged;
        with ``retention``, drop the rows (and snapshot objects) of scans it does not keep. Unreadable
        index objects are left where they are (a reader notes them)."""
        now = (now or datetime.now(UTC)).astimezone(UTC)
        idx = self.read_index()
        keep, drop = _apply_retention(idx.rows, retention, now)
        doc = {
            "format": INDEX_FORMAT,
            "index_version": INDEX_VERSION,
            "written_at": iso(now),
            "rows": [_row_out(r) for r in keep],
        }
        key = f"{COMPACTED}{now:%Y%m%dT%H%M%S}Z-{secrets.token_hex(4)}.json.gz"
        self.backend.put(key, gzip.compress(orjson.dumps(doc), compresslevel=6, mtime=0), create=True)
        for k in idx.sources:
            self.backend.delete(k)
        for r in drop:
            self.backend.delete(r["object"])
        return {"rows": len(keep), "merged_objects": len(idx.sources), "dropped_scans": len(drop)}


class _BadObject(Exception):
    pass


def _slug_of_row_key(key: str) -> str:
    name = key.rsplit("/", 1)[-1].removesuffix(".json")
    return name.split(".", 1)[1] if "." in name else name


def _parse_rows(data: bytes, info: ObjectInfo, loose: bool) -> list[dict[str, Any]]:
    if data[:2] == b"\x1f\x8b":
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError, zlib.error):
            raise _BadObject("not a valid gzip object (truncated or corrupt)") from None
    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError:
        raise _BadObject("not valid JSON (truncated or corrupt)") from None
    if loose:
        items = [doc]
    else:
        if not isinstance(doc, dict) or doc.get("format") != INDEX_FORMAT:
            raise _BadObject("not a dnsfleet store index")
        if not isinstance(doc.get("index_version"), int) or doc["index_version"] > INDEX_VERSION:
            raise _BadObject(
                f"index_version {doc.get('index_version')!r} is newer than this dnsfleet ({__version__}) reads"
            )
        items = doc.get("rows")
        if not isinstance(items, list):
            raise _BadObject("'rows' is not a list")
    out = []
    for r in items:
        if (
            not isinstance(r, dict)
            or not isinstance(r.get("cluster"), str)
            or not isinstance(r.get("id"), str)
        ):
            raise _BadObject("a row has no cluster or id")
        r = dict(r)
        ver = r.get("index_version")
        if not isinstance(ver, int) or ver > INDEX_VERSION:
            r["_skip"] = True
            r["_note"] = (
                f"row {r['id']} has index_version {ver!r}, newer than this dnsfleet ({__version__}) reads"
            )
        col = r.get("collector") if isinstance(r.get("collector"), dict) else {}
        if col.get("tool") != TOOL:
            r["_skip"] = True
            r["_note"] = f"row {r['id']} was written by an unknown collector {col.get('tool')!r}"
        if not isinstance(r.get("object"), str) or not r["object"].startswith(SNAPSHOTS):
            r["_skip"] = True
            r["_note"] = f"row {r['id']} names no snapshot object"
        collected = parse_time(r.get("collected_at"))
        stored = parse_time(r.get("stored_at")) if not loose else None
        r["stored_at"] = stored or info.last_modified.astimezone(UTC)
        r["collected_at"] = iso(collected) if collected else iso(r["stored_at"])
        r["scan_id"] = str(r.get("scan_id") or r["id"])
        out.append(r)
    return out


def _row_out(r: Mapping[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in r.items() if not k.startswith("_")}
    out["stored_at"] = iso(r["stored_at"])
    return out


def _collector_notes(rows: list[dict[str, Any]]) -> list[str]:
    if not rows:
        return []
    newest = rows[-1]["stored_at"]
    ids = sorted(
        {
            str((r.get("collector") or {}).get("id"))
            for r in rows
            if r["stored_at"] >= newest - SAME_NAME_WINDOW and (r.get("collector") or {}).get("id")
        }
    )
    if len(ids) > 1:
        return [
            f"{len(ids)} collectors wrote this cluster name within a day (ids {', '.join(ids)}): "
            "two deployments share one --cluster-name; the newest scan is shown"
        ]
    return []


def _skew_note(r: Mapping[str, Any]) -> list[str]:
    collected = parse_time(r.get("collected_at"))
    if collected is None:
        return []
    d = (collected - r["stored_at"]).total_seconds()
    if abs(d) <= SKEW_S:
        return []
    side = "ahead of" if d > 0 else "behind"
    return [f"the collector's clock was {abs(d):.0f} s {side} the store's; scan times use the store's clock"]


def _apply_retention(
    rows: list[dict[str, Any]], retention: Retention | None, now: datetime
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    if retention is None or (retention.days is None and retention.scans is None):
        return rows, []
    per: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        per[r["cluster"]].append(r)
    keep, drop = [], []
    for rs in per.values():
        n = len(rs)
        for i, r in enumerate(rs):  # oldest first
            newest_pos = n - 1 - i
            ok = newest_pos == 0
            if not ok:
                ok = True
                if retention.scans is not None and newest_pos >= retention.scans:
                    ok = False
                if retention.days is not None and r["stored_at"] < now - timedelta(days=retention.days):
                    ok = False
            (keep if ok else drop).append(r)
    return keep, drop


__all__ = [
    "Index",
    "Latest",
    "ObjectExists",
    "Retention",
    "SnapshotStore",
    "StoreError",
    "summary_row",
]
