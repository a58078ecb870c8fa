"""Snapshot store: scans of many clusters kept over time in a local directory or S3-compatible storage.

``SnapshotStore(url)`` writes one object per cluster per scan plus an append-only summary index
(``write_scan``), reads the newest scan per cluster through the index (``latest``), the whole index
(``read_index``, for history and trends) and compacts it with a retention policy (``compact``).
``docs/store.md`` describes the layout, the URL scheme and how faults are reported.
"""

from dnsfleet.store.backend import Backend, StoreError, default_store_dir
from dnsfleet.store.snapshots import Heads, Index, Latest, Retention, SnapshotStore, summary_row

__all__ = [
    "Backend",
    "Heads",
    "Index",
    "Latest",
    "Retention",
    "SnapshotStore",
    "StoreError",
    "default_store_dir",
    "summary_row",
]
