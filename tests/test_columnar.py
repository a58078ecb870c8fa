"""The risk model's fast aggregation equals its plain-pandas reference, and the columnar join equals merge."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dnsfleet import columnar
from dnsfleet.demo import demo_snapshot
from dnsfleet.frames import build_frames
from dnsfleet.risk import PTS, aggregate, aggregate_reference, placements_scored

GROUPINGS = [(["workload_id"], None), (["cluster", "node"], None), (["cluster"], 0.9)]


def _same(fast: pd.DataFrame, ref: pd.DataFrame) -> None:
    assert list(fast.columns) == list(ref.columns)
    assert len(fast) == len(ref)
    for c in fast.columns:
        a, b = fast[c].reset_index(drop=True), ref[c].reset_index(drop=True)
        if pd.api.types.is_float_dtype(a.dtype):
            np.testing.assert_allclose(
                a.to_numpy(float), b.to_numpy(float), rtol=0, atol=0.051, equal_nan=True
            )
        else:
            assert a.astype(object).tolist() == b.astype(object).tolist(), c


@pytest.mark.parametrize("seed", [3, 7])
@pytest.mark.parametrize(("by", "q"), GROUPINGS)
def test_aggregate_equals_reference_on_demo_fleets(seed: int, by: list[str], q: float | None) -> None:
    p = placements_scored(build_frames(demo_snapshot(seed)))
    assert p["unknown"].any() and p["exposed"].any()  # both kinds of rows take part
    _same(aggregate(p, by, q), aggregate_reference(p, by, q))


_KEY = st.sampled_from(["a", "b", "c", None])


@settings(max_examples=40, deadline=None, derandomize=True)
@given(
    st.lists(
        st.tuples(
            _KEY, _KEY, st.integers(1, 9), st.floats(0, 100), st.booleans(), st.booleans(), st.booleans()
        ),
        min_size=1,
        max_size=40,
    ),
    st.sampled_from(GROUPINGS),
)
def test_aggregate_equals_reference_on_random_placements(rows, grouping) -> None:
    by, q = grouping
    cols = {
        "cluster": pd.array([r[0] for r in rows], dtype="string"),
        "node": pd.array([r[1] for r in rows], dtype="string"),
        "workload_id": pd.array([r[1] for r in rows], dtype="string"),
        "pods": pd.array([r[2] for r in rows], dtype="int64"),
        "score": [round(r[3], 1) for r in rows],
        "unknown": [r[4] for r in rows],
        "exposed": [r[5] and not r[4] for r in rows],
        "applicable": [r[6] or i == 0 for i, r in enumerate(rows)],
    }
    for c in PTS:
        cols[c] = [round(r[3] / len(PTS), 1) for r in rows]
    p = pd.DataFrame(cols)
    _same(aggregate(p, by, q), aggregate_reference(p, by, q))


def test_left_join_equals_merge_with_missing_and_na_keys() -> None:
    left = pd.DataFrame({"k": pd.array(["x", "y", None, "z", "x"], dtype="string"), "v": range(5)})
    right = pd.DataFrame({"k": pd.array(["y", "x", None], dtype="string"), "w": [1.5, 2.5, 3.5]})
    got = columnar.left_join(left, right, ["k"])
    want = left.merge(right, on=["k"], how="left")
    pd.testing.assert_frame_equal(got, want)
    assert got["w"].isna().tolist() == [False, False, False, True, False]  # "z" has no match
