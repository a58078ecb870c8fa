"""The snapshot store (``dnsfleet.store``) on a local directory and on a real S3 server (versitygw on
127.0.0.1, ``tests/fleet/s3.py``): layout, latest-per-cluster through the index, concurrent writers and
compactions, retention, and every bad-input and fault case of issue 18 with its note."""

from __future__ import annotations

import gzip
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest

from dnsfleet.store import Retention, SnapshotStore, StoreError, summary_row
from dnsfleet.store.backend import default_store_dir
from dnsfleet.store.snapshots import COMPACTED, ROWS, slug
from tests.fleet.fleet import FleetError
from tests.fleet.s3 import S3Server


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    try:
        srv = S3Server(tmp_path_factory.mktemp("s3")).start()
    except FleetError as e:
        pytest.fail(f"the S3 test server could not start: {e}", pytrace=False)
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture(params=["local", "s3"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param == "local":
        return str(tmp_path / "store")
    srv: S3Server = request.getfixturevalue("s3")
    for k, v in srv.env.items():
        monkeypatch.setenv(k, v)
    return srv.url(prefix=tmp_path.name)  # a fresh prefix per test


def cluster(name: str, pods: int = 3, ready: bool = True) -> dict[str, Any]:
    return {
        "name": name,
        "status": "ok",
        "reason": None,
        "nodes": [{"name": "n1", "ready": ready}, {"name": "n2", "ready": False}],
        "pods": [{"namespace": "ns", "name": f"p{i}", "node": "n1"} for i in range(pods)],
        "metrics": {"conntrack": {"nodes": {"n1": {"insert_failed_increase": 4.0, "drop_increase": 1.0}}}},
    }


def risk(score: float, level: str, exposed: int = 1) -> dict[str, Any]:
    return {"score": score, "level": level, "exposed_pods": exposed, "unknown_pods": 0, "evidence_pts": 5.0}


def write(
    st: SnapshotStore, name: str, score: float = 40, level: str = "medium", **kw: Any
) -> dict[str, Any]:
    c = cluster(name)
    return st.write_scan(c, summary_row(c, risk(score, level)), **kw)


def test_write_then_latest_reads_the_newest_scan_of_each_cluster(store_url: str) -> None:
    st = SnapshotStore(store_url)
    t0 = datetime.now(UTC) - timedelta(seconds=30)
    write(st, "aks-weu", 20, "low", now=t0)
    newest = write(st, "aks-weu", 80, "high", now=t0 + timedelta(seconds=1))
    write(st, "eks:use1/arn@x", 10, "low")  # a name with characters keys cannot hold
    idx = st.read_index()
    assert [r["cluster"] for r in idx.rows] == ["aks-weu", "aks-weu", "eks:use1/arn@x"]
    row = idx.rows[1]
    assert row["id"] == newest["id"]
    assert (
        row["score"],
        row["level"],
        row["exposed_pods"],
        row["pods"],
        row["nodes"],
        row["nodes_ready"],
    ) == (
        80,
        "high",
        1,
        3,
        2,
        1,
    )
    assert (row["insert_failed"], row["conntrack_drops"], row["status"]) == (4.0, 1.0, "ok")
    latest = SnapshotStore(store_url).latest()
    assert [c["name"] for c in latest.snapshot["clusters"]] == ["aks-weu", "eks:use1/arn@x"]
    assert latest.rows["aks-weu"]["id"] == newest["id"]
    assert latest.notes == {} and latest.fleet_notes == []
    assert latest.snapshot["clusters"][0]["store"]["scan_id"] == newest["scan_id"]


def test_concurrent_writers_and_compactions_lose_no_row(store_url: str) -> None:
    writers, per = 6, 5
    errors: list[BaseException] = []

    def collector(i: int) -> None:
        try:
            st = SnapshotStore(store_url)
            for j in range(per):
                write(st, f"c{i}", score=j)
        except BaseException as e:
            errors.append(e)

    def compactor() -> None:
        try:
            for _ in range(3):
                SnapshotStore(store_url).compact()
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=collector, args=(i,)) for i in range(writers)]
    threads += [threading.Thread(target=compactor) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    st = SnapshotStore(store_url)
    assert len(st.read_index().rows) == writers * per
    st.compact()
    assert len(list(st.backend.list(COMPACTED))) == 1 and not list(st.backend.list(ROWS))
    idx = st.read_index()
    assert len(idx.rows) == writers * per and idx.notes == {}
    assert {c["name"] for c in st.latest().snapshot["clusters"]} == {f"c{i}" for i in range(writers)}


def test_retention_keeps_newest_scans_and_deletes_dropped_objects(store_url: str) -> None:
    st = SnapshotStore(store_url)
    now = datetime.now(UTC)
    rows = [write(st, "a", score=i, now=now - timedelta(minutes=10 - i)) for i in range(5)]
    write(st, "b", score=1)
    got = st.compact(Retention(scans=2))
    assert got["dropped_scans"] == 3
    idx = st.read_index()
    assert [r["id"] for r in idx.rows if r["cluster"] == "a"] == [r["id"] for r in rows[-2:]]
    kept = {i.key for i in st.backend.list("v1/snapshots/")}
    assert rows[0]["object"] not in kept and rows[-1]["object"] in kept
    # days: every scan stored now is younger than a day, so nothing more goes; the newest always stays
    assert st.compact(Retention(days=1))["dropped_scans"] == 0
    with pytest.raises(StoreError, match="at least 1"):
        Retention(scans=0)


def _rewrite(st: SnapshotStore, key: str, data: bytes) -> None:
    st.backend.put(key, data)


def test_truncated_latest_object_falls_back_with_a_note(store_url: str) -> None:
    st = SnapshotStore(store_url)
    t = datetime.now(UTC)
    old = write(st, "a", 30, "medium", now=t - timedelta(seconds=5))
    new = write(st, "a", 90, "high", now=t)
    write(st, "b")
    data = st.backend.get(new["object"])
    _rewrite(st, new["object"], data[: len(data) // 2])
    latest = st.latest()
    assert latest.rows["a"]["id"] == old["id"]
    note = " ".join(latest.notes["a"])
    assert f"scan {new['scan_id']} unusable" in note and "truncated or corrupt" in note
    assert "not the newest" in note
    assert "b" not in latest.notes  # the other cluster is untouched


def test_only_scan_unusable_is_a_failed_cluster_with_the_reason(store_url: str) -> None:
    st = SnapshotStore(store_url)
    r = write(st, "a")
    doc = orjson.loads(gzip.decompress(st.backend.get(r["object"])))
    doc["schema_version"] = 99
    _rewrite(st, r["object"], gzip.compress(orjson.dumps(doc)))
    c = st.latest().snapshot["clusters"][0]
    assert c["status"] == "failed" and "schema_version 99 is newer" in c["reason"]
    # unknown collector in the object
    doc["schema_version"] = 1
    doc["collector"] = {"tool": "someone-else"}
    _rewrite(st, r["object"], gzip.compress(orjson.dumps(doc)))
    assert "unknown collector 'someone-else'" in st.latest().snapshot["clusters"][0]["reason"]


def test_bad_index_rows_give_notes_on_their_cluster(store_url: str) -> None:
    st = SnapshotStore(store_url)
    good = write(st, "a")
    bad = write(st, "a")
    _rewrite(st, f"{ROWS}{bad['id']}.json", orjson.dumps(bad)[:20])  # truncated row
    foreign = dict(good, id=good["id"] + "x", collector={"tool": "other"})
    _rewrite(st, f"{ROWS}{foreign['id']}.json", orjson.dumps(foreign))
    newer = dict(good, id=good["id"] + "y", index_version=7)
    _rewrite(st, f"{ROWS}{newer['id']}.json", orjson.dumps(newer))
    latest = st.latest()
    notes = " | ".join(latest.notes["a"])
    assert f"index row {ROWS}{bad['id']}.json unusable" in notes
    assert "unknown collector 'other'" in notes and "index_version 7, newer" in notes
    assert latest.rows["a"]["id"] == good["id"]
    st.compact()  # the unreadable row stays for a person to look at; the readable ones are merged
    assert {i.key for i in st.backend.list(ROWS)} == {f"{ROWS}{bad['id']}.json"}
    assert len(st.read_index().rows) == 3


def test_two_collectors_one_name_and_clock_skew_are_noted(store_url: str) -> None:
    st = SnapshotStore(store_url)
    now = datetime.now(UTC)
    ahead = write(st, "a", 10, "low", collector_id="uid-1", now=now + timedelta(hours=2))
    time.sleep(1.1)  # S3 last-modified times have one-second resolution
    behind = write(st, "a", 70, "high", collector_id="uid-2", now=now - timedelta(hours=1))
    latest = st.latest()
    # stored last wins, whatever the collectors' clocks said
    assert latest.rows["a"]["id"] == behind["id"] != ahead["id"]
    notes = " | ".join(latest.notes["a"])
    assert "2 collectors wrote this cluster name" in notes and "uid-1, uid-2" in notes
    assert "clock was 3600 s behind" in notes or "s behind the store's" in notes


def test_store_urls_refuse_credentials_and_unknown_options(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="must not carry credentials") as e:
        SnapshotStore("s3://AKIA:s3cr3t@bucket/p")
    assert "s3cr3t" not in str(e.value)
    with pytest.raises(StoreError, match="unknown store URL option"):
        SnapshotStore("s3://bucket/p?endpiont=http://127.0.0.1:1")
    with pytest.raises(StoreError, match="unsupported store URL scheme"):
        SnapshotStore("gs://bucket")
    with pytest.raises(StoreError, match="names no bucket"):
        SnapshotStore("s3:///p")
    assert SnapshotStore(None).url == str(default_store_dir())


def test_s3_down_or_frozen_mid_run_gives_one_line_and_a_consistent_index(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    srv = S3Server(tmp_path).start()
    try:
        for k, v in srv.env.items():
            monkeypatch.setenv(k, v)
        st = SnapshotStore(srv.url("x").replace("timeout=3", "timeout=1"))
        write(st, "a")
        srv.pause()  # accepts nothing, answers nothing: "slow"
        t = datetime.now(UTC)
        with pytest.raises(StoreError) as e:
            write(st, "a")
        assert (datetime.now(UTC) - t).total_seconds() < 15
        assert "cannot write" in str(e.value) and "\n" not in str(e.value)
        assert srv.secret_key not in str(e.value)
        srv.resume()
        idx = st.read_index()  # the failed write left no row
        assert len(idx.rows) == 1
        assert all(any(i.key == r["object"] for i in st.backend.list("v1/snapshots/")) for r in idx.rows)
        srv.stop()  # down
        with pytest.raises(StoreError, match=r"cannot (list|read)"):
            st.latest()
    finally:
        srv.stop()


def test_slug_is_key_safe_and_distinct() -> None:
    a, b = slug("eks:use1/arn@x"), slug("eks_use1_arn_x")
    assert a != b and "/" not in a and ":" not in a
