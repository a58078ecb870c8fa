"""The rule and reason codes as data: ``data/codes.csv`` maps each code to its rule id, a title, the
public source behind it and a message template (``str.format`` fields, e.g. ``{kernel}``).

Everything dnsfleet says about a cluster, node or workload is a code plus parameters until it is
shown (``dnsfleet.explain`` renders them); the K/P/R/D/M rule ids and their wording live here only.
"""

from __future__ import annotations

import csv
import string
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Any

import pandas as pd


@dataclass(frozen=True)
class Code:
    code: str
    rule: str
    title: str
    source: str
    message: str

    @property
    def fields(self) -> tuple[str, ...]:
        return tuple(f for _, f, _, _ in string.Formatter().parse(self.message) if f)


class UnknownCode(KeyError):
    """A reason code that is not in ``data/codes.csv``."""


@lru_cache(maxsize=1)
def registry() -> dict[str, Code]:
    with resources.files("dnsfleet.rules").joinpath("data", "codes.csv").open(encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    out: dict[str, Code] = {}
    for r in rows:
        if None in r or len(r) != 5:
            raise ValueError(
                f"codes.csv: row {r.get('code')!r} does not have exactly 5 columns (quote commas)"
            )
        c = Code(r["code"], r["rule"], r["title"], r["source"], r["message"])
        if c.code in out:
            raise ValueError(f"codes.csv: code {c.code} appears twice")
        if not (c.rule and c.title and c.source and c.message):
            raise ValueError(f"codes.csv: code {c.code} lacks a rule, title, source or message")
        out[c.code] = c
    return out


def get(code: str) -> Code:
    try:
        return registry()[code]
    except KeyError:
        raise UnknownCode(code) from None


def rule(code: str) -> str:
    return get(code).rule


def message(code: str, **params: Any) -> str:
    """One reason as text; a missing or NA parameter reads ``?``."""
    c = get(code)
    values = {f: _text(params.get(f)) for f in c.fields}
    return c.message.format(**values)


def _text(v: Any) -> str:
    if v is None or (not isinstance(v, str | list | dict | tuple) and pd.isna(v)):
        return "?"
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v)


def render(codes: pd.Series, params: Mapping[str, pd.Series]) -> pd.Series:
    """Vectorised ``message``: per row the template of ``codes`` filled from the ``params`` columns
    (each indexed like ``codes``). Rows with an NA or empty code render as ``""``."""
    out = pd.Series("", index=codes.index, dtype="object")
    c = codes.astype("string").fillna("")
    for code in c.unique():
        if not code:
            continue
        tpl = get(code)
        mask = (c == code).to_numpy()
        parts = list(string.Formatter().parse(tpl.message))
        acc = pd.Series("", index=codes.index[mask], dtype="object")
        for literal, field, _, _ in parts:
            acc = acc + literal
            if field:
                if field not in params:
                    raise KeyError(f"code {code}: parameter {field!r} not given")
                v = params[field][mask]
                acc = acc + _text_series(v)
        out[mask] = acc.to_numpy()
    return out


def _text_series(v: pd.Series) -> pd.Series:
    if pd.api.types.is_float_dtype(v.dtype):
        f = v.astype("float64")
        whole = f.notna() & (f % 1 == 0)
        s = f.astype(str).where(~whole, f.fillna(0).astype("int64").astype(str))
        return s.where(f.notna(), "?").astype(object)
    return v.astype("string").fillna("?").astype(object)
