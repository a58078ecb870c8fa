"""Resolver rules R1-R11: which resolver a workload uses and what its dnsConfig options do.

Data with sources: ``data/resolvers.csv`` (does the resolver send a same-socket parallel A+AAAA pair,
defaults, what a lost query costs), ``data/resolver_options.csv`` (which options each resolver honours
and whether an option removes the pair), ``data/images.csv`` (image reference -> resolver).

Inference order for a workload: the pod annotation ``dnsfleet.io/resolver``; a user mapping file
(image pattern -> resolver); the image rules; else ``unknown``.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path

from dnsfleet.schema import RESOLVERS
from dnsfleet.snapshot import RESOLVER_ANNOTATION

ANNOTATION = RESOLVER_ANNOTATION


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
