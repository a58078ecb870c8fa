"""Joins and group-bys on integer codes, for million-row frames with string keys.

``left_join`` is ``DataFrame.merge(how="left")`` and ``group_ids`` numbers groups as
``groupby(sort=False, dropna=False)`` does, both without hashing the same string column twice.
The risk model (``dnsfleet.risk``) uses them; its ``aggregate_reference`` is the plain-pandas
definition the fast path is tested against (``tests/test_columnar.py``).
"""

from __future__ import annotations

import weakref
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import pyarrow as pa
from pandas.api.extensions import ExtensionArray, ExtensionDtype

if TYPE_CHECKING:
    from pandas._typing import ArrayLike


# Joins and group-bys on integer codes. Hashing the 1M-row string keys was ~70% of the scoring time
# when pandas merged and grouped on the strings (each merge and group-by factorizing them again). A
# key column is factorized once, together with the table it is matched against, and the codes are
# remembered by the identity of its Arrow data (immutable), so an aggregation of the scored placements
# reuses the codes their joins computed (``risk.aggregate`` after ``risk.placements_scored``).
_FACTORIZED: dict[int, tuple[weakref.ref, np.ndarray, ExtensionArray]] = {}


def _key_values(s: pd.Series) -> ArrayLike:
    return s.array if isinstance(s.dtype, ExtensionDtype) else s.to_numpy()


def _arrow_data(values: ArrayLike) -> pa.ChunkedArray | None:
    return values.__arrow_array__() if isinstance(values, pd.arrays.ArrowStringArray) else None


def _remember(values: ArrayLike, codes: np.ndarray, uniques: ExtensionArray) -> None:
    data = _arrow_data(values)
    if data is None:
        return
    key = id(data)

    def forget(ref: weakref.ref, key: int = key) -> None:
        if _FACTORIZED.get(key, (None,))[0] is ref:
            _FACTORIZED.pop(key, None)

    codes.flags.writeable = False
    _FACTORIZED[key] = (weakref.ref(data, forget), codes, uniques)


def _recalled(values: ArrayLike) -> tuple[np.ndarray, ExtensionArray] | None:
    data = _arrow_data(values)
    hit = _FACTORIZED.get(id(data)) if data is not None else None
    if hit is None or hit[0]() is not data:
        return None
    return hit[1], hit[2]


def factorize(s: pd.Series) -> tuple[np.ndarray, ArrayLike]:
    """``pd.factorize(s, use_na_sentinel=False)`` (codes by first appearance, NA a value of its own),
    int64 codes, reusing an earlier factorization of the same data."""
    values = _key_values(s)
    known = _recalled(values)
    if known is not None:
        return known
    codes, uniques = pd.factorize(values, use_na_sentinel=False)
    codes = codes.astype(np.int64, copy=False)
    _remember(values, codes, uniques)
    return codes, uniques


def _codes_with(left: pd.Series, right: pd.Series) -> tuple[np.ndarray, np.ndarray | None, int]:
    """Codes of ``left`` and ``right`` in one numbering (equal values, NA included, equal codes) and
    the number of codes; ``left``'s are its ``factorize`` codes. ``right``'s are None when they are
    its positions: it lists the values of ``left`` in the order they first appear there."""
    lcodes, luniques = factorize(left)
    rvalues = _key_values(right)
    if (
        isinstance(luniques, ExtensionArray)
        and isinstance(rvalues, ExtensionArray)
        and len(luniques) == len(rvalues)
        and luniques.dtype == rvalues.dtype
        and luniques.equals(rvalues)
    ):
        # The usual layout (build_frames lists workloads in the order of their first placement):
        # no hashing of ``right`` at all.
        return lcodes, None, len(rvalues)
    both = pd.concat([pd.Series(luniques), right], ignore_index=True)
    codes, uniques = pd.factorize(_key_values(both), use_na_sentinel=False)
    return lcodes, codes[len(luniques) :].astype(np.int64, copy=False), len(uniques)


def positions(right: pd.DataFrame, left: pd.DataFrame, on: list[str]) -> np.ndarray | None:
    """Per ``left`` row, the position of the ``right`` row with the same ``on`` keys, -1 if none
    (NA matches NA, as in ``merge``). None unless the keys are strings and ``right``'s are unique."""
    for k in on:
        if not isinstance(right[k].dtype, pd.StringDtype) or right[k].dtype != left[k].dtype:
            return None
    codes = [_codes_with(left[k], right[k]) for k in on]
    if len(codes) == 1 and codes[0][1] is None:
        return codes[0][0]
    lcomb, rcomb, size = np.zeros(len(left), dtype=np.int64), np.zeros(len(right), dtype=np.int64), 1
    for lcodes, rcodes, n in codes:
        size *= max(n, 1)
        if size >= 2**62:
            return None
        lcomb = lcomb * n + lcodes
        rcomb = rcomb * n + (np.arange(n, dtype=np.int64) if rcodes is None else rcodes)
    if size > 4 * (len(left) + len(right)) + 1024:
        renumbered = pd.factorize(np.concatenate([rcomb, lcomb]))[0]
        rcomb, lcomb = renumbered[: len(right)], renumbered[len(right) :]
        size = int(renumbered.max()) + 1 if len(renumbered) else 0
    if len(rcomb) and np.bincount(rcomb, minlength=size).max() > 1:
        return None
    pos = np.full(size, -1, dtype=np.intp)
    pos[rcomb] = np.arange(len(rcomb), dtype=np.intp)
    return pos[lcomb]


def take(s: pd.Series, idx: np.ndarray, missing: bool) -> ArrayLike:
    """``s``'s values at ``idx``; -1 gives NA with the dtype ``merge`` would give."""
    values = _key_values(s)
    if isinstance(values, np.ndarray):
        return pd.api.extensions.take(values, idx, allow_fill=missing)
    return values.take(idx, allow_fill=missing)


def left_join(left: pd.DataFrame, right: pd.DataFrame, on: list[str]) -> pd.DataFrame:
    """``left.merge(right, on=on, how="left")``, by positional takes when ``right``'s keys are unique."""
    extra = [c for c in right.columns if c not in on]
    idx = None
    if not set(extra) & set(left.columns) and left.columns.is_unique and right.columns.is_unique:
        idx = positions(right, left, on)
    if idx is None:
        return left.merge(right, on=on, how="left")
    missing = bool((idx < 0).any())
    # Built once, without copies: left's columns as Series (copy-on-write keeps them apart from
    # ``left``), the taken ones are new arrays.
    left = left.reset_index(drop=True)
    cols: dict[str, pd.Series | ArrayLike] = {c: left[c] for c in left.columns}
    cols.update((c, take(right[c], idx, missing)) for c in extra)
    return pd.DataFrame(cols, index=left.index, copy=False)


def group_ids(keys: pd.DataFrame) -> tuple[np.ndarray, pd.DataFrame] | None:
    """Group ids as ``groupby(sort=False, dropna=False)`` numbers them (first appearance, NA a group)
    and the key values per group; None for key dtypes other than strings.

    Each key column is factorized once; the aggregation then works on integer ids.
    """
    if not all(isinstance(keys[c].dtype, pd.StringDtype) for c in keys.columns):
        return None
    comb: np.ndarray | None = None
    parts = []
    size = 1
    for c in keys.columns:
        codes, uniques = factorize(keys[c])
        parts.append((codes, uniques))
        size *= max(len(uniques), 1)
        if size >= 2**62:
            return None
        comb = codes if comb is None else comb * len(uniques) + codes
    if comb is None or len(parts) == 1:
        codes, uniques = parts[0]
        return codes, pd.DataFrame({keys.columns[0]: uniques})
    ids, firsts = pd.factorize(comb)
    values = {}
    for c, (_, uniques) in reversed(list(zip(keys.columns, parts, strict=True))):
        values[c] = uniques.take(firsts % len(uniques))
        firsts = firsts // len(uniques)
    return ids.astype(np.int64, copy=False), pd.DataFrame({c: values[c] for c in keys.columns})


def quantile_by_ids(ids: np.ndarray, ngroups: int, v: np.ndarray, w: np.ndarray, q: float) -> np.ndarray:
    """``risk.weighted_quantile`` on group ids: per group (NaN where none), in group-id order.

    Within a group the rows are in the same order as there (by value, stable), and the running and
    total weights come from the same pandas group-bys, so the values are the same.
    """
    order = np.argsort(v, kind="stable")
    order = order[np.argsort(ids[order], kind="stable")]
    sid, sv = ids[order], v[order]
    g = pd.Series(w[order]).groupby(sid, sort=False)
    cum = g.cumsum().to_numpy()
    tot = g.transform("sum").to_numpy()
    hit = (cum >= q * tot) & ~np.isnan(sv)
    hid, hv = sid[hit], sv[hit]
    first = np.r_[True, hid[1:] != hid[:-1]] if len(hid) else np.zeros(0, dtype=bool)
    out = np.full(ngroups, np.nan)
    out[hid[first]] = hv[first]
    return out
