"""The index heads (``SnapshotStore.read_heads``): each cluster's newest rows read from a small object
per compacted index, and the overview built from them (``dnsfleet.store.overview``). Every test runs
against a local directory and the real S3 server (versitygw on 127.0.0.1)."""

from __future__ import annotations

import gzip
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pandas as pd
import pytest

from dnsfleet.store import SnapshotStore, summary_row
from dnsfleet.store.backend import Backend
from dnsfleet.store.overview import overview_frame, overview_rows
from dnsfleet.store.snapshots import COMPACTED, FALLBACK_SCANS, HEADS, heads_key
from tests import test_store as base

s3, store_url = base.s3, base.store_url  # the same fixtures: a local directory and the S3 server
cluster, risk, write = base.cluster, base.risk, base.write


def newest_by_index(st: SnapshotStore) -> dict[str, str]:
    """Each cluster's newest row id as the full index says."""
    out: dict[str, str] = {}
    for r in st.read_index().rows:  # sorted by cluster, then store time
        out[r["cluster"]] = r["id"]
    return out


def newest_by_heads(st: SnapshotStore) -> dict[str, str]:
    h = st.read_heads()
    return {c: rows[-1]["id"] for c, rows in h.rows.items()}


def keys(st: SnapshotStore, prefix: str) -> list[str]:
    return sorted(i.key for i in st.backend.list(prefix))


def test_heads_hold_the_newest_rows_and_compaction_pairs_them(store_url: str) -> None:
    st = SnapshotStore(store_url)
    t0 = datetime.now(UTC) - timedelta(hours=2)
    for i in range(6):
        for name in ("a", "b"):
            write(st, name, score=10 * i, now=t0 + timedelta(minutes=10 * i))
    st.compact()
    [compacted] = keys(st, COMPACTED)
    assert keys(st, HEADS) == [heads_key(compacted)]
    h = st.read_heads()
    assert sorted(h.rows) == ["a", "b"]
    assert all(len(rows) == FALLBACK_SCANS for rows in h.rows.values())  # not all six
    assert h.newest("a")["score"] == 50 and newest_by_heads(st) == newest_by_index(st)
    write(st, "a", score=90)  # a loose row after the compaction is newer than the heads
    assert SnapshotStore(store_url).read_heads().newest("a")["score"] == 90
    st.compact()  # the old pair goes, the new pair stays
    assert len(keys(st, COMPACTED)) == 1 and keys(st, HEADS) == [heads_key(keys(st, COMPACTED)[0])]
    assert newest_by_heads(st) == newest_by_index(st)


def test_two_writers_and_compactions_at_once_lose_no_newest_row(store_url: str) -> None:
    st = SnapshotStore(store_url)
    errors: list[BaseException] = []

    def writer(w: int) -> None:
        try:
            s = SnapshotStore(store_url)
            for i in range(8):
                write(s, f"c{i % 4}", score=w * 10 + i, collector_id=f"w{w}")
        except BaseException as e:
            errors.append(e)

    def compactor() -> None:
        try:
            s = SnapshotStore(store_url)
            for _ in range(3):
                s.compact()
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=writer, args=(w,)) for w in (1, 2)]
    threads += [threading.Thread(target=compactor) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert len(st.read_index().rows) == 16  # every write is in the index
    assert newest_by_heads(st) == newest_by_index(st)
    st.compact()
    assert newest_by_heads(st) == newest_by_index(st)
    notes = st.read_heads().cluster_notes("c0")
    assert any("2 collectors wrote this cluster name" in n for n in notes)  # w1 and w2, one name


def test_a_truncated_or_newer_heads_object_is_read_around_with_a_note(store_url: str) -> None:
    st = SnapshotStore(store_url)
    for name in ("a", "b", "c"):
        write(st, name)
    st.compact()
    want = newest_by_index(st)
    [hk] = keys(st, HEADS)
    good = st.backend.get(hk)
    st.backend.put(hk, good[: len(good) // 2])
    h = st.read_heads()
    assert {c: r[-1]["id"] for c, r in h.rows.items()} == want
    assert any("truncated or corrupt" in n and "in full instead" in n for n in h.fleet_notes)
    newer = orjson.loads(gzip.decompress(good))
    newer["index_version"] = 99
    st.backend.put(hk, gzip.compress(orjson.dumps(newer)))
    h = st.read_heads()
    assert {c: r[-1]["id"] for c, r in h.rows.items()} == want
    assert any("index_version 99" in n for n in h.fleet_notes)
    st.backend.delete(hk)  # a compaction that stopped between its two writes
    h = st.read_heads()
    assert {c: r[-1]["id"] for c, r in h.rows.items()} == want and not h.fleet_notes


def test_a_compaction_between_listing_and_reading_makes_the_reader_read_again(
    store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    st = SnapshotStore(store_url)
    for name in ("a", "b"):
        write(st, name)
    st.compact()
    write(st, "c")
    want = newest_by_index(st)
    real = Backend.get
    done: list[str] = []

    def get(self: Backend, key: str) -> bytes:
        if key.startswith(HEADS) and not done:
            done.append(key)
            SnapshotStore(store_url).compact()  # deletes the pair the reader listed
        return real(self, key)

    monkeypatch.setattr(Backend, "get", get)
    h = SnapshotStore(store_url).read_heads()
    assert done and {c: r[-1]["id"] for c, r in h.rows.items()} == want
    assert not h.fleet_notes


def test_the_newest_row_unusable_shows_the_newest_usable_with_a_note(store_url: str) -> None:
    st = SnapshotStore(store_url)
    t0 = datetime.now(UTC) - timedelta(minutes=30)
    write(st, "a", score=20, level="low", now=t0)
    row = write(st, "a", score=80, level="high")
    key = f"v1/index/rows/{row['id']}.json"
    bad = dict(orjson.loads(st.backend.get(key)), collector={"tool": "other"})
    st.backend.delete(key)
    st.backend.put(key, orjson.dumps(bad))
    st.compact()
    h = st.read_heads()
    assert h.newest("a")["id"] == row["id"] and h.usable("a")["score"] == 20
    [rec] = overview_rows(h)
    assert rec["score"] == 20 and rec["level"] == "low"
    assert "newest index row unusable" in rec["note"] and "unknown collector 'other'" in rec["note"]


def test_overview_marks_failed_partial_stale_and_ranks_like_the_engine(store_url: str) -> None:
    st = SnapshotStore(store_url)
    write(st, "exposed-low", score=30, level="medium")  # exposed pods: first tier
    c = cluster("scored-only")
    r = risk(60, "high", exposed=0)
    st.write_scan(c, summary_row(c, r))  # higher score, no exposed pod: second tier
    failed = {"name": "down", "status": "failed", "reason": "apiserver unreachable"}
    st.write_scan(failed, summary_row(failed, None))
    partial: dict[str, Any] = dict(cluster("half"), status="partial", reason="nodes unreadable")
    st.write_scan(partial, summary_row(partial, risk(40, "medium")))
    df = overview_frame(st.read_heads())
    assert list(df["cluster"][:2]) == ["half", "exposed-low"]  # exposed first, by score
    assert list(df["cluster"][2:]) == ["scored-only", "down"]
    notes = dict(zip(df["cluster"], df["note"], strict=True))
    assert notes["down"].startswith("scan failed: apiserver unreachable")
    assert notes["half"].startswith("partial scan: nodes unreadable")
    assert pd.isna(notes["exposed-low"]) and not df["stale"].any()
    later = overview_frame(st.read_heads(), now=datetime.now(UTC) + timedelta(hours=7))
    assert later["stale"].all() and all("stale: no scan stored for 7 h" in n for n in later["note"])


def test_a_compaction_between_listing_and_reading_the_full_index_loses_no_row(
    store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    st = SnapshotStore(store_url)
    for name in ("a", "b"):
        write(st, name)
    st.compact()
    write(st, "c")
    want = sorted(r["id"] for r in st.read_index().rows)
    real = Backend.get
    done: list[str] = []

    def get(self: Backend, key: str) -> bytes:
        if key.startswith(COMPACTED) and not done:
            done.append(key)
            SnapshotStore(store_url).compact()  # deletes the compacted object the reader listed
        return real(self, key)

    monkeypatch.setattr(Backend, "get", get)
    idx = SnapshotStore(store_url).read_index()
    assert done and sorted(r["id"] for r in idx.rows) == want and not idx.fleet_notes


def test_a_row_has_one_store_time_whether_read_loose_or_compacted(store_url: str) -> None:
    """The store's time of a row read from its loose object equals the one read back from the compacted
    index (to the microsecond): otherwise two same-second scans of one cluster sort differently in the full
    index and in the heads, and the two name different newest scans (seen once under load)."""
    st = SnapshotStore(store_url)
    write(st, "a", score=10)
    loose = {r["id"]: r["stored_at"] for r in st.read_index().rows}
    st.compact()
    compacted = {r["id"]: r["stored_at"] for r in st.read_index().rows}
    assert loose == compacted
