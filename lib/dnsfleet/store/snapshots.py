"""The snapshot store: one object per cluster per scan, and a summary index that concurrent
collectors append to without a lock.

Layout (under the store URL, ``docs/store.md``)::

    v1/snapshots/<slug>/<scan_id>.json.gz   one cluster's snapshot (a normal snapshot, one cluster)
    v1/index/rows/<scan_id>.<slug>.json     one index row per write, created, never overwritten
    v1/index/compacted/<time>-<rand>.json.gz  rows merged by ``compact`` (which also applies retention)
    v1/index/heads/<time>-<rand>.json.gz      the newest rows of each cluster in the compacted object of
                                             the same name (written right after it, deleted right before it)

A writer puts the snapshot object first and its index row second, both create-only, under names no
other writer can pick (scan time + random suffix): two collectors can never overwrite each other, and
a row never names an object that was not written. ``compact`` writes a new compacted object holding
every row it read (the other compacted objects included) before deleting exactly what it read, so a
reader, which takes the union of all compacted objects and loose rows (deduplicated by row id),
never misses a row, even while two compactions run at once.

The newest scan per cluster (``read_heads``: the overview, ``latest``, a drill-down) reads the small
heads object of each compacted object instead of the compacted object itself (1,000 clusters: a few
thousand rows instead of every scan), plus the loose rows; a compacted object without a usable heads
object is read in full, so a missing or truncated heads object costs time, never a row.

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
from dnsfleet.times import parse_iso

INDEX_VERSION = 1
INDEX_FORMAT = "dnsfleet.store-index"
TOOL = "dnsfleet"
SNAPSHOTS = "v1/snapshots/"
ROWS = "v1/index/rows/"
COMPACTED = "v1/index/compacted/"
HEADS = "v1/index/heads/"
HEADS_FORMAT = "dnsfleet.store-heads"
READ_ATTEMPTS = 3  # a compaction deleting what a reader listed: the reader lists and reads again
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


_CANONICAL = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")


parse_time = parse_iso  # the index's and objects' times: ISO-8601 as dnsfleet writes them


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
class Heads:
    """The newest rows of each cluster, read without the full index: per cluster its newest row and
    older ones until ``FALLBACK_SCANS`` usable rows (oldest first, as in ``Index``), the collectors
    that wrote its name with the newest store time of each, and the notes about what was not read."""

    rows: dict[str, list[dict[str, Any]]]
    collectors: dict[str, dict[str, datetime]] = field(default_factory=dict)
    notes: dict[str, list[str]] = field(default_factory=dict)
    fleet_notes: list[str] = field(default_factory=list)

    def newest(self, cluster: str) -> dict[str, Any] | None:
        rows = self.rows.get(cluster)
        return rows[-1] if rows else None

    def usable(self, cluster: str) -> dict[str, Any] | None:
        """The newest row whose scan this dnsfleet can read (None: none of the newest is)."""
        return next((r for r in reversed(self.rows.get(cluster, [])) if not r.get("_skip")), None)

    def cluster_notes(self, cluster: str) -> list[str]:
        """What the index says about ``cluster``: unreadable or skipped rows among its newest, two
        collectors on one name; not the object's faults (only reading it tells)."""
        msgs = list(self.notes.get(cluster, []))
        msgs += [r["_note"] for r in self.rows.get(cluster, []) if r.get("_note")]
        newest = self.newest(cluster)
        if newest is not None:
            msgs += _collector_note(self.collectors.get(cluster, {}), newest["stored_at"])
        return msgs


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
        """All rows: the compacted objects' and the loose ones', deduplicated by row id. A compacted
        object deleted by a concurrent compaction between the listing and the read makes the reader
        list and read again (its rows are in the new compacted object)."""
        for attempt in range(READ_ATTEMPTS):
            got = self._read_index_once(last=attempt == READ_ATTEMPTS - 1)
            if got is not None:
                return got
        raise AssertionError("unreachable")  # the last attempt always returns

    def _read_index_once(self, *, last: bool) -> Index | None:
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
                if is_loose:
                    continue  # compacted away: its row is in a compacted object
                if not last:
                    return None
                fleet.append(
                    f"index object {info.key} was deleted while it was read; run again to see its rows"
                )
                continue
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
        names_by_slug = {slug(n): n for n in {r["cluster"] for r in rows.values()}}
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

    # -- the newest rows per cluster ---------------------------------------------------------------
    def read_heads(self) -> Heads:
        """The newest rows of every cluster: the heads object of each compacted object (the compacted
        object itself when its heads object is missing or unusable) and every loose row. A compacted
        object deleted by a concurrent compaction between the listing and the read makes the reader
        list and read again (its rows are in the new compacted object)."""
        for attempt in range(READ_ATTEMPTS):
            got = self._read_heads_once(last=attempt == READ_ATTEMPTS - 1)
            if got is not None:
                return got
        raise AssertionError("unreachable")  # the last attempt always returns

    def _read_heads_once(self, *, last: bool) -> Heads | None:
        compacted = {i.key: i for i in self.backend.list(COMPACTED)}
        heads_listed = {i.key: i for i in self.backend.list(HEADS)}
        loose = list(self.backend.list(ROWS))
        jobs: list[tuple[ObjectInfo, ObjectInfo | None]] = []  # (what to read, its compacted object)
        for key in sorted(compacted):
            h = heads_listed.get(heads_key(key))
            jobs.append((h, compacted[key]) if h is not None else (compacted[key], None))
        jobs += [(i, None) for i in loose]

        def fetch(job: tuple[ObjectInfo, ObjectInfo | None]) -> bytes | Exception:
            try:
                return self.backend.get(job[0].key)
            except StoreError as e:
                return e

        with ThreadPoolExecutor(READ_WORKERS) as pool:
            results = list(pool.map(fetch, jobs))
        rows: dict[str, dict[str, Any]] = {}
        collectors: dict[str, dict[str, datetime]] = defaultdict(dict)
        by_slug: dict[str, list[str]] = defaultdict(list)
        fleet: list[str] = []
        for (info, of), data in zip(jobs, results, strict=True):
            is_loose = info.key.startswith(ROWS)
            if isinstance(data, ObjectMissing):
                if is_loose:
                    continue  # compacted away: its row is in a compacted object
                if not last:
                    return None
                fleet.append(
                    f"index object {info.key} was deleted while it was read; run again to see its rows"
                )
                continue
            if isinstance(data, Exception):
                raise StoreError(f"cannot read the store index: {data}") from None
            got: list[dict[str, Any]] = []
            try:
                if of is not None:
                    got, cols = _parse_heads(data, info)
                    for name, ids in cols.items():
                        _merge_collectors(collectors[name], ids)
                else:
                    got = _parse_rows(data, info, is_loose)
            except _BadObject as e:
                if is_loose:
                    by_slug[_slug_of_row_key(info.key)].append(f"index row {info.key} unusable: {e}")
                    continue
                if of is None:
                    fleet.append(f"compacted index {info.key} unusable: {e}")
                    continue
                fleet.append(f"index heads {info.key} unusable ({e}): read {of.key} in full instead")
                try:  # its compacted object has every row
                    got = _parse_rows(self.backend.get(of.key), of, False)
                except ObjectMissing:
                    if not last:
                        return None
                    continue
                except _BadObject as e2:
                    fleet.append(f"compacted index {of.key} unusable: {e2}")
                    continue
            for r in got:
                rows.setdefault(r["id"], r)
        per: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for r in rows.values():
            per[r["cluster"]].append(r)
        out: dict[str, list[dict[str, Any]]] = {}
        for name, rs in per.items():
            rs.sort(key=_row_order)
            _merge_collectors(collectors[name], _collectors_of(rs))
            out[name] = _newest_rows(rs)
        notes: dict[str, list[str]] = defaultdict(list)
        for s_, msgs in by_slug.items():
            match = next((n for n in out if slug(n) == s_), None)
            if match is not None:
                notes[match].extend(msgs)
            else:
                fleet.extend(msgs)
        return Heads(
            dict(sorted(out.items())),
            {k: v for k, v in collectors.items() if k in out},
            dict(notes),
            fleet,
        )

    # -- the latest scan per cluster ----------------------------------------------------------------
    def latest(self, clusters: Iterable[str] | None = None, *, heads: Heads | None = None) -> Latest:
        """A snapshot of each cluster's newest usable scan, read through the index heads (one object per
        cluster). A cluster whose newest object is unusable falls back to an older scan, with a note;
        a cluster with no usable scan is a ``failed`` cluster whose reason says why. ``heads``: a
        ``read_heads()`` result to use instead of reading the index again (a dashboard's cached one)."""
        heads = heads if heads is not None else self.read_heads()
        wanted = set(clusters) if clusters is not None else None
        per = {c: rows for c, rows in heads.rows.items() if wanted is None or c in wanted}
        notes: dict[str, list[str]] = {c: list(heads.notes.get(c, [])) for c in per}
        for c, rows in per.items():
            notes[c] += [r["_note"] for r in rows if r.get("_note")]

        def pick(name: str) -> tuple[dict[str, Any], dict[str, Any] | None, list[str]]:
            rows = per[name]
            msgs = _collector_note(heads.collectors.get(name, {}), rows[-1]["stored_at"])
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
        return Latest(snap, used, {k: v for k, v in notes.items() if v}, heads.fleet_notes)

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
        # Second, its heads: a reader that finds no heads object reads the compacted one in full.
        self.backend.put(heads_key(key), heads_object(keep, key, now), create=True)
        for k in idx.sources:
            if k.startswith(COMPACTED):
                self.backend.delete(heads_key(k))  # before its compacted object: never heads alone
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
    return _rows_of(items, info, loose)


def _rows_of(items: list[Any], info: ObjectInfo, loose: bool) -> list[dict[str, Any]]:
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
        stored = parse_time(r.get("stored_at")) if not loose else None
        r["stored_at"] = stored or info.last_modified.astimezone(UTC)
        c = r.get("collected_at")
        if not (isinstance(c, str) and _CANONICAL.fullmatch(c)):  # as iso() writes it: kept as it is
            collected = parse_time(c)
            r["collected_at"] = iso(collected) if collected else iso(r["stored_at"])
        r["scan_id"] = str(r.get("scan_id") or r["id"])
        out.append(r)
    return out


def _parse_heads(
    data: bytes, info: ObjectInfo
) -> tuple[list[dict[str, Any]], dict[str, dict[str, datetime]]]:
    """A heads object's rows (checked as a compacted object's are) and its collectors per cluster."""
    try:
        doc = orjson.loads(gzip.decompress(data))
    except (OSError, EOFError, zlib.error):
        raise _BadObject("not a valid gzip object (truncated or corrupt)") from None
    except orjson.JSONDecodeError:
        raise _BadObject("not valid JSON (truncated or corrupt)") from None
    if not isinstance(doc, dict) or doc.get("format") != HEADS_FORMAT:
        raise _BadObject("not a dnsfleet store heads object")
    if not isinstance(doc.get("index_version"), int) or doc["index_version"] > INDEX_VERSION:
        raise _BadObject(f"index_version {doc.get('index_version')!r} is newer than this dnsfleet reads")
    clusters = doc.get("clusters")
    if not isinstance(clusters, dict) or not all(isinstance(v, dict) for v in clusters.values()):
        raise _BadObject("'clusters' is not a mapping")
    items, cols = [], {}
    for name, c in clusters.items():
        rs = c.get("rows")
        if not isinstance(rs, list):
            raise _BadObject(f"cluster {name!r} has no row list")
        items += rs
        ids = c.get("collectors") if isinstance(c.get("collectors"), dict) else {}
        cols[name] = {str(k): t for k, v in ids.items() if (t := parse_time(v)) is not None}
    return _rows_of(items, info, False), cols


def _row_out(r: Mapping[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in r.items() if not k.startswith("_")}
    # With the object's sub-second time, as a loose row is read: rounded to seconds, a row read back from
    # a compacted object sorted before a same-second loose row, so the full index and the heads could
    # name different newest rows for one cluster.
    out["stored_at"] = (
        r["stored_at"].astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")
    )
    return out


def heads_key(compacted_key: str) -> str:
    """The heads object of a compacted index object (same name under ``HEADS``)."""
    return HEADS + compacted_key.removeprefix(COMPACTED)


def heads_object(rows: Iterable[Mapping[str, Any]], compacted_key: str, now: datetime) -> bytes:
    """The heads of ``rows`` (sorted by cluster, then store time): per cluster its newest rows
    (``_newest_rows``) and each collector id with its newest store time."""
    per: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    for r in rows:
        per[r["cluster"]].append(r)
    clusters = {
        name: {
            "rows": [_row_out(r) for r in _newest_rows(rs)],
            "collectors": {k: iso(v) for k, v in _collectors_of(rs).items()},
        }
        for name, rs in per.items()
    }
    doc = {
        "format": HEADS_FORMAT,
        "index_version": INDEX_VERSION,
        "written_at": iso(now),
        "compacted": compacted_key,
        "clusters": clusters,
    }
    return gzip.compress(orjson.dumps(doc), compresslevel=6, mtime=0)


def _row_order(r: Mapping[str, Any]) -> tuple[Any, ...]:
    return (r["stored_at"], r["collected_at"], r["id"])


def _newest_rows(rows: list[Any]) -> list[Any]:
    """The newest rows of one cluster (``rows`` oldest first) until ``FALLBACK_SCANS`` usable ones."""
    out, usable = [], 0
    for r in reversed(rows):
        out.append(r)
        usable += not r.get("_skip")
        if usable >= FALLBACK_SCANS:
            break
    return out[::-1]


def _collectors_of(rows: Iterable[Mapping[str, Any]]) -> dict[str, datetime]:
    out: dict[str, datetime] = {}
    for r in rows:
        cid = (r.get("collector") or {}).get("id") if isinstance(r.get("collector"), dict) else None
        if cid:
            cid = str(cid)
            if cid not in out or r["stored_at"] > out[cid]:
                out[cid] = r["stored_at"]
    return out


def _merge_collectors(into: dict[str, datetime], more: Mapping[str, datetime]) -> None:
    for k, t in more.items():
        if k not in into or t > into[k]:
            into[k] = t


def _collector_note(collectors: Mapping[str, datetime], newest: datetime) -> list[str]:
    ids = sorted(k for k, t in collectors.items() if t >= newest - SAME_NAME_WINDOW)
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
    "Heads",
    "Index",
    "Latest",
    "ObjectExists",
    "Retention",
    "SnapshotStore",
    "StoreError",
    "summary_row",
]
