"""Snapshot format: round trip, version checks, and one-line errors for bad or hostile files."""

from __future__ import annotations

import gzip
from pathlib import Path

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dnsfleet.demo import demo_snapshot
from dnsfleet.snapshot import SCHEMA_VERSION, SnapshotError, dumps, load, loads, save


@pytest.mark.parametrize("name", ["fleet.json", "fleet.json.gz"])
def test_round_trip(tmp_path: Path, name: str) -> None:
    snap = demo_snapshot()
    path = save(snap, tmp_path / name)
    assert (path.read_bytes()[:2] == b"\x1f\x8b") == name.endswith(".gz")
    assert load(path) == snap


def test_demo_is_deterministic_and_labelled() -> None:
    assert dumps(demo_snapshot()) == dumps(demo_snapshot())
    assert demo_snapshot()["source"] == "demo"
    assert dumps(demo_snapshot(seed=1)) != dumps(demo_snapshot(seed=2))


def _doc(**over: object) -> bytes:
    d = {"format": "dnsfleet.snapshot", "schema_version": SCHEMA_VERSION, "clusters": []}
    d.update(over)
    return orjson.dumps(d)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"{not json", "not valid JSON"),
        (b"[1, 2]", "top level must be a JSON object"),
        (_doc(format="something-else"), "not a dnsfleet snapshot"),
        (_doc(schema_version=SCHEMA_VERSION + 1), "newer than this dnsfleet"),
        (_doc(schema_version="1"), "not an integer"),
        (_doc(schema_version=0), "not a valid version"),
        (_doc(clusters={"a": 1}), "'clusters' must be a list"),
        (_doc(clusters=[{"nodes": []}]), "has no name"),
        (_doc(clusters=[{"name": "a"}, {"name": "a"}]), "appears twice"),
        (_doc(clusters=[{"name": "a", "pods": {}}]), "'pods' must be a list"),
        (_doc(clusters=[{"name": "a", "nodes": [{"kernel_version": "5"}]}]), "nodes[0] has no name"),
        (gzip.compress(_doc())[:-10], "not a valid gzip file"),
        (_doc(clusters=[{"name": "x" * (2 << 20)}]), "longer than"),
    ],
)
def test_bad_snapshots_give_one_line_errors(data: bytes, message: str) -> None:
    with pytest.raises(SnapshotError) as err:
        loads(data, name="up.json")
    text = str(err.value)
    assert message in text and "\n" not in text and text.startswith("up.json")


def test_deep_nesting_is_rejected() -> None:
    deep: object = "x"
    for _ in range(200):
        deep = [deep]
    with pytest.raises(SnapshotError, match="nested deeper"):
        loads(_doc(clusters=[{"name": "a", "metrics": {"x": deep}}]))


def test_gzip_bomb_is_capped(monkeypatch: pytest.MonkeyPatch) -> None:
    import dnsfleet.snapshot as s

    monkeypatch.setattr(s, "MAX_BYTES", 1 << 20)
    bomb = gzip.compress(b"[" + b"0," * (2 << 20) + b"0]")
    with pytest.raises(SnapshotError, match="limit"):
        loads(bomb)


def test_missing_file() -> None:
    with pytest.raises(SnapshotError, match="not found"):
        load("/nonexistent/snap.json")


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_property_random_bytes_never_crash(data: bytes) -> None:
    try:
        loads(data)
    except SnapshotError as e:
        assert "\n" not in str(e)


# Strings full of the characters the byte-level shape check must not mistake for structure.
_tricky_text = st.text(alphabet='ab"\\[]{}é\n', max_size=8)
_json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-1000, 1000) | _tricky_text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_tricky_text, inner, max_size=3),
    max_leaves=30,
)


@settings(max_examples=300, deadline=None, derandomize=True)
@given(_json_values, st.integers(min_value=0, max_value=6), st.integers(min_value=0, max_value=6))
def test_property_fast_shape_check_agrees_with_the_walk(
    value: object, max_depth: int, max_string: int
) -> None:
    """The byte-level check (used on every load) may only say "fine" when walking the parsed document
    finds nothing; and for depth, where bytes and structure correspond exactly, it says so whenever the
    walk does."""
    import dnsfleet.snapshot as s

    raw = orjson.dumps({"v": value})

    def walk_ok() -> bool:
        try:
            s._check_shape(orjson.loads(raw), "x")
        except SnapshotError:
            return False
        return True

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(s, "MAX_DEPTH", max_depth)
        mp.setattr(s, "MAX_STRING", max_string)
        assert not s._shape_ok(raw) or walk_ok()
        mp.setattr(s, "MAX_STRING", 1 << 20)
        assert s._shape_ok(raw) == walk_ok()


def test_loads_rejects_long_strings_and_deep_nesting_found_in_the_bytes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import dnsfleet.snapshot as s

    monkeypatch.setattr(s, "MAX_STRING", 20)
    with pytest.raises(SnapshotError, match="string is longer"):
        loads(_doc(clusters=[{"name": "a", "dns": {"corefile": "x" * 21}}]))
    loads(_doc(clusters=[{"name": "a", "dns": {"corefile": '"' * 20}}]))  # 20 characters in 40 bytes: fine
    deep: object = "x"
    for _ in range(s.MAX_DEPTH):
        deep = [deep]
    loads(_doc(clusters=[{"name": "a", "metrics": {"x": ['"[[[[[[[[[['] * 40}}]))  # brackets in text
    with pytest.raises(SnapshotError, match="nested deeper"):
        loads(_doc(clusters=[{"name": "a", "metrics": {"x": deep}}]))
