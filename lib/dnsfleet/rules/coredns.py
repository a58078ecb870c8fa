"""What CoreDNS's own metrics can be trusted for, per version (``rules/data/coredns_metrics.csv``, a
public source per row). A figure a release is known to report wrongly is unknown, never low."""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources


@dataclass(frozen=True)
class MetricsBug:
    first: tuple[int, ...]  # first affected release
    fixed: tuple[int, ...]  # first release without it
    affects: str  # rcode: the rcode label of coredns_dns_responses_total
    message: str  # with {version}
    source: str


def _version(text: str | None) -> tuple[int, ...] | None:
    m = re.match(r"v?(\d+)\.(\d+)(?:\.(\d+))?", (text or "").strip())
    return tuple(int(x or 0) for x in m.groups()) if m else None


@lru_cache(maxsize=1)
def bugs() -> tuple[MetricsBug, ...]:
    text = resources.files("dnsfleet.rules").joinpath("data/coredns_metrics.csv").read_text()
    out = []
    for r in csv.DictReader(text.splitlines()):
        first, fixed = _version(r["first"]), _version(r["fixed"])
        if first is None or fixed is None or not r["source"].strip():
            raise ValueError(f"rules/data/coredns_metrics.csv: bad row {r}")
        out.append(MetricsBug(first, fixed, r["affects"], r["message"], r["source"]))
    return tuple(out)


def metrics_bugs(version: str | None, affects: str) -> list[MetricsBug]:
    """The known bugs of CoreDNS ``version`` in what ``affects`` names (none for an unknown version)."""
    v = _version(version)
    if v is None:
        return []
    return [b for b in bugs() if b.affects == affects and b.first <= v < b.fixed]
