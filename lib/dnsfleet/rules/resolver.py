"""Resolver rules R1-R11: which resolver a workload uses and what its dnsConfig options do.

Data with sources: ``data/resolvers.csv`` (does the resolver send a same-socket parallel A+AAAA pair,
defaults, what a lost query costs and whether the resolver adapts after one), ``data/resolver_options.csv`` (which options each resolver honours
and whether an option removes the pair), ``data/images.csv`` (image reference -> resolver).

Inference order for a workload: the pod annotation ``dnsfleet.io/resolver``; a user mapping file
(image pattern -> resolver); the image rules; else ``unknown``.

What a lost query costs (``lost_query_cost``, vectorised as ``loss_factor``/``cost_phrase`` for the
risk model): one race hit stalls the lookup for ``stall_s`` (glibc: ``timeout``; musl: the retry
interval ``timeout/attempts``). What happens next differs: glibc switches that resolver state to
sequential A/AAAA after the timeout (``after_loss = sequential``), so later lookups on it no longer race;
musl keeps sending the pair (``parallel``) and pays the stall at every hit. The model counts the
seconds one resolver state loses to its first two race hits (the smallest horizon where adaptation
shows): glibc ``stall + 0``, musl ``stall + stall``, unknown adaptation ``stall + stall`` (worst case);
the risk factor is that over ``REFERENCE_S`` (glibc's default 5 s), capped at 1. With the defaults glibc
(5 s once) and musl (2.5 s twice) cost the same 5 s: neither is scored above the other by its timeout.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd

from dnsfleet.schema import RESOLVERS
from dnsfleet.snapshot import RESOLVER_ANNOTATION

ANNOTATION = RESOLVER_ANNOTATION
REFERENCE_S = 5.0  # glibc's default first stall (RES_TIMEOUT): the cost the factor is measured against
HORIZON_HITS = 2  # race hits on one resolver state the cost is counted over


@dataclass(frozen=True)
class ImageRule:
    pattern: re.Pattern[str]
    resolver: str
    rule: str
    source: str


def _read_csv(name: str) -> list[dict[str, str]]:
    with resources.files("dnsfleet.rules").joinpath("data", name).open(encoding="utf-8") as f:
        return list(csv.DictReader(f))


@lru_cache(maxsize=1)
def resolver_table() -> dict[str, dict[str, str]]:
    return {r["resolver"]: r for r in _read_csv("resolvers.csv")}


@lru_cache(maxsize=1)
def option_table() -> dict[tuple[str, str], dict[str, str]]:
    return {(r["resolver"], r["option"]): r for r in _read_csv("resolver_options.csv")}


@lru_cache(maxsize=1)
def image_rules() -> tuple[ImageRule, ...]:
    return tuple(
        ImageRule(re.compile(r["pattern"], re.IGNORECASE), r["resolver"], r["rule"], r["source"])
        for r in _read_csv("images.csv")
    )


def option_honoured(resolver: str, option: str) -> str:
    """'yes' | 'no' | 'unknown': does ``resolver`` read this resolv.conf option?"""
    row = option_table().get((resolver, option))
    return row["honoured"] if row else "unknown"


def option_mitigates(resolver: str, option: str) -> str:
    """'yes' | 'no' | 'unknown': does the option stop the same-socket parallel pair for ``resolver``?"""
    row = option_table().get((resolver, option))
    return row["mitigates_pair"] if row else "unknown"


def normalise_resolver(value: str | None) -> str | None:
    v = (value or "").strip().lower()
    aliases = {
        "alpine": "musl",
        "gnu": "glibc",
        "golang": "go",
        "go-pure": "go",
        "java": "jvm",
        "cares": "c-ares",
    }
    v = aliases.get(v, v)
    return v if v in RESOLVERS else None


class MappingError(ValueError):
    """A user mapping file that cannot be used; one line naming the problem."""


def load_mapping(path: str | Path) -> tuple[ImageRule, ...]:
    """A user mapping file: CSV with columns ``pattern,resolver`` (regex on the image reference)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise MappingError(f"cannot read resolver mapping {path}: {e.strerror}") from None
    rules = []
    for n, row in enumerate(csv.DictReader(text.splitlines()), start=2):
        pattern, resolver = (row.get("pattern") or "").strip(), normalise_resolver(row.get("resolver"))
        if not pattern or resolver is None:
            raise MappingError(
                f"{path.name} line {n}: need 'pattern' and a resolver among {', '.join(RESOLVERS)}"
            )
        try:
            rx = re.compile(pattern, re.IGNORECASE)
        except re.error as e:
            raise MappingError(f"{path.name} line {n}: bad pattern {pattern!r}: {e}") from None
        rules.append(ImageRule(rx, resolver, "mapping", f"user mapping {path.name} line {n}"))
    return tuple(rules)


def infer_resolver(
    image: str | None, annotation: str | None = None, mapping: tuple[ImageRule, ...] = ()
) -> tuple[str, str]:
    """(resolver, source) for a workload's main image."""
    if (r := normalise_resolver(annotation)) is not None:
        return r, "annotation"
    img = (image or "").strip()[:512]
    for rule in mapping:
        if rule.pattern.search(img):
            return rule.resolver, "mapping"
    for rule in image_rules():
        if rule.pattern.search(img):
            return rule.resolver, rule.rule
    return "unknown", "unknown"


@dataclass(frozen=True)
class LossCost:
    """What one lost query costs a resolver, as modelled from its data row."""

    resolver: str
    stall_s: float | None  # seconds the lookup waits after one race hit
    after_loss: str  # sequential | parallel | separate-sockets | unknown
    horizon_s: float | None  # seconds one resolver state loses to its first HORIZON_HITS hits
    factor: float  # 0..1: horizon_s / REFERENCE_S, capped; 1 (worst case) when the stall is unknown
    text: str


def _later_hits(after_loss: str) -> int:
    """How many of the later HORIZON_HITS - 1 hits still stall: none once the resolver went sequential."""
    return 0 if after_loss in ("sequential", "separate-sockets") else HORIZON_HITS - 1


def lost_query_cost(resolver: str, stall_s: float | None) -> LossCost:
    """The modelled cost of a lost query for ``resolver`` with a stall of ``stall_s`` seconds."""
    row = resolver_table().get(resolver) or resolver_table()["unknown"]
    after = row["after_loss"]
    if stall_s is None or stall_s != stall_s:
        return LossCost(
            resolver, None, after, None, 1.0, f"stall unknown: counted as the worst case ({row['rule']})"
        )
    horizon = stall_s * (1 + _later_hits(after))
    factor = min(1.0, horizon / REFERENCE_S)
    text = (
        f"a lost query costs {stall_s:.1f} s {row['cost_note']}; {horizon:.1f} s over the first "
        f"{HORIZON_HITS} race hits ({row['rule']})"
    )
    return LossCost(resolver, stall_s, after, horizon, factor, text)


@lru_cache(maxsize=1)
def _adapting() -> tuple[str, ...]:
    return tuple(r for r, row in resolver_table().items() if _later_hits(row["after_loss"]) == 0)


def loss_factor(resolver: pd.Series, stall_s: np.ndarray) -> np.ndarray:
    """``lost_query_cost(r, s).factor`` for columns of resolvers and stalls (NaN stall: worst case 1)."""
    stall = np.asarray(stall_s, dtype="float64")
    later = np.where(resolver.isin(_adapting()).to_numpy(dtype=bool), 0.0, HORIZON_HITS - 1.0)
    factor = np.minimum(1.0, stall * (1.0 + later) / REFERENCE_S)
    return np.where(np.isnan(stall), 1.0, factor)


def cost_phrase(resolver: pd.Series, stall_s: pd.Series) -> pd.Series:
    """``lost_query_cost(r, s).text`` without the rule id, for columns ("?" where the stall is unknown)."""
    notes = {r: row["cost_note"] for r, row in resolver_table().items()}
    later = np.where(resolver.isin(_adapting()).to_numpy(dtype=bool), 0.0, HORIZON_HITS - 1.0)
    stall = stall_s.astype("float64")
    horizon = pd.Series(stall.to_numpy() * (1.0 + later), index=stall_s.index)
    fmt = lambda v: v.round(1).astype("string").fillna("?")  # noqa: E731
    note = resolver.map(notes).fillna(notes["unknown"]).astype("string")
    return (
        "a lost query costs "
        + fmt(stall)
        + " s "
        + note
        + "; "
        + fmt(horizon)
        + f" s over the first {HORIZON_HITS} race hits"
    )
