"""Live scans kept on the server and shared by every session: a shared link, a reload or a new tab
opens the scan it names without scanning again.

A kept scan is a snapshot file plus a small metadata file in ``<state dir>/live-scans/`` (the state
dir is ``DNSFLEET_STATE_DIR``, else ``~/.local/state/dnsfleet``, where the audit log lives too), and the
newest few snapshots stay in memory. Files are written owner-only (0600, directory 0700): a snapshot
holds cluster data, never credentials (see ``docs/snapshot.md``).

Everything the dashboard keeps goes through ``scan_store()``; another store (a snapshot store shared
by several servers) replaces it there and nowhere else.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import threading
from collections import OrderedDict
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from dnsfleet import jsonl
from dnsfleet.snapshot import SnapshotError, load, save

SCAN_ID = re.compile(r"[A-Za-z0-9_-]{8,40}")
KEEP_FILES = 20  # kept scans on disk; the oldest are deleted first
KEEP_IN_MEMORY = 3  # snapshots held in the process (a 100,000-pod snapshot is ~1 GB in memory)


@dataclass(frozen=True)
class Kept:
    """What a kept scan is: its id (the ``scan`` URL parameter), the selection it was made for
    (``key``), when, and what the sidebar shows about it."""

    scan_id: str
    key: str
    scanned_at: str  # ISO-8601 UTC
    kubeconfig: str
    contexts: tuple[str, ...]  # the contexts asked for; empty with all_contexts
    all_contexts: bool
    prometheus: str | None
    prometheus_time: float | None
    range_s: float
    clusters: tuple[str, ...]  # the clusters the snapshot holds

    @property
    def when(self) -> datetime:
        t = datetime.fromisoformat(self.scanned_at)
        return t if t.tzinfo else t.replace(tzinfo=UTC)


def selection_key(
    kubeconfig: str,
    contexts: tuple[str, ...],
    all_contexts: bool,
    prometheus: str | None,
    prometheus_time: float | None,
    range_s: float,
) -> str:
    """One string per scan selection: scans of the same selection replace each other as "latest"."""
    return json.dumps(
        [kubeconfig, sorted(contexts), all_contexts, prometheus, prometheus_time, range_s],
        separators=(",", ":"),
    )


class ScanStore:
    """Kept scans in a directory plus an in-memory cache; safe to use from several sessions."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self._lock = threading.Lock()
        self._memory: OrderedDict[str, dict[str, Any]] = OrderedDict()

    def put(self, kept: Kept, snapshot: dict[str, Any]) -> Kept:
        with self._lock:
            self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            old = os.umask(0o077)
            try:
                save(snapshot, self.dir / f"{kept.scan_id}.json.gz")
                meta = self.dir / f"{kept.scan_id}.meta.json"
                tmp = meta.with_suffix(".tmp")
                tmp.write_text(json.dumps(asdict(kept)))
                tmp.replace(meta)  # the meta file appears only once the snapshot is complete
            finally:
                os.umask(old)
            self._remember(kept.scan_id, snapshot)
            self._prune()
        return kept

    def meta(self, scan_id: str) -> Kept | None:
        """The kept scan with this id, or None (unknown, deleted, or not an id at all)."""
        if not SCAN_ID.fullmatch(scan_id or ""):
            return None
        try:
            raw = json.loads((self.dir / f"{scan_id}.meta.json").read_text())
            raw["contexts"] = tuple(raw["contexts"])
            raw["clusters"] = tuple(raw["clusters"])
            return Kept(**raw)
        except (OSError, ValueError, TypeError, KeyError):
            return None

    def snapshot(self, scan_id: str) -> dict[str, Any] | None:
        with self._lock:
            if scan_id in self._memory:
                self._memory.move_to_end(scan_id)
                return self._memory[scan_id]
        if self.meta(scan_id) is None:
            return None
        try:
            snap = load(self.dir / f"{scan_id}.json.gz")
        except (OSError, SnapshotError):
            return None
        with self._lock:
            self._remember(scan_id, snap)
        return snap

    def latest(self, key: str | None = None, kubeconfig: str | None = None) -> Kept | None:
        """The newest kept scan of a selection (``key``), or of a kubeconfig, or of any."""
        found = [k for k in self._all() if (key is None or k.key == key)]
        if kubeconfig is not None:
            found = [k for k in found if k.kubeconfig == kubeconfig]
        return max(found, key=lambda k: k.scanned_at, default=None)

    def _all(self) -> list[Kept]:
        try:
            names = [p.name[: -len(".meta.json")] for p in self.dir.glob("*.meta.json")]
        except OSError:
            return []
        return [k for n in names if (k := self.meta(n)) is not None]

    def _remember(self, scan_id: str, snapshot: dict[str, Any]) -> None:
        self._memory[scan_id] = snapshot
        self._memory.move_to_end(scan_id)
        while len(self._memory) > KEEP_IN_MEMORY:
            self._memory.popitem(last=False)

    def _prune(self) -> None:
        kept = sorted(self._all(), key=lambda k: k.scanned_at)
        for k in kept[: max(0, len(kept) - KEEP_FILES)]:
            for suffix in (".meta.json", ".json.gz"):
                (self.dir / f"{k.scan_id}{suffix}").unlink(missing_ok=True)
            self._memory.pop(k.scan_id, None)


def new_scan_id() -> str:
    return secrets.token_urlsafe(12)


def state_dir() -> Path:
    return jsonl.state_dir()


_STORES: dict[Path, ScanStore] = {}
_STORES_LOCK = threading.Lock()


def scan_store() -> ScanStore:
    """The one place the dashboard keeps live scans (one store per directory, per process)."""
    path = state_dir() / "live-scans"
    with _STORES_LOCK:
        if path not in _STORES:
            _STORES[path] = ScanStore(path)
        return _STORES[path]
