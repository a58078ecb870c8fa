"""Counter arithmetic and downsampling for evidence series, without any I/O.

node_exporter exports the conntrack statistics as gauges although they only grow (until the node
reboots), so increases are computed here from the raw samples: a sample lower than the one before is a
counter reset (the new value is what accumulated since the reset), and steps without a sample are gaps
(unknown, never 0). ``coverage`` is the share of expected samples present.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

# A snapshot keeps at most this many points per series; longer windows get a coarser step.
MAX_POINTS = 240
# Steps are whole minutes (a scrape interval of up to 60 s still gives one sample per step).
MIN_STEP_S = 60


def step_for(start: float, end: float, max_points: int = MAX_POINTS) -> int:
    """The step (seconds, a multiple of 60) that gives at most ``max_points`` points over [start, end]."""
    if not end > start:
        raise ValueError(f"the window must end after it starts (start {start:g}, end {end:g})")
    raw = (end - start) / max(1, max_points - 1)
    return max(MIN_STEP_S, MIN_STEP_S * math.ceil(raw / MIN_STEP_S))


def increases(values: Sequence[float | None]) -> list[float | None]:
    """Per-step increases of a counter sampled on a grid: ``out[i]`` is what the counter grew between the
    previous present sample and sample ``i``; a drop is a reset (the new value counts); the first sample
    and every step without a sample are None. After a gap the whole growth across the gap lands on the
    first sample after it."""
    out: list[float | None] = [None] * len(values)
    prev: float | None = None
    for i, v in enumerate(values):
        if v is None:
            continue
        if prev is not None:
            out[i] = v - prev if v >= prev else v
        prev = v
    return out


def total_increase(values: Sequence[float | None]) -> float | None:
    """The counter's total growth over the samples (resets handled); None without two samples."""
    inc = [x for x in increases(values) if x is not None]
    return float(sum(inc)) if inc else None


def coverage(values: Sequence[float | None]) -> float:
    """Share of grid steps with a sample (0.0 for an empty grid)."""
    return sum(1 for v in values if v is not None) / len(values) if values else 0.0


def downsample(values: Sequence[float | None], factor: int, how: str = "sum") -> list[float | None]:
    """Merge every ``factor`` consecutive points: ``sum`` (increases) or ``mean`` (rates, shares);
    a bucket with no point is None."""
    if factor < 1:
        raise ValueError("downsample factor must be >= 1")
    if how not in ("sum", "mean", "max"):
        raise ValueError(f"unknown downsample method {how!r}")
    out: list[float | None] = []
    for i in range(0, len(values), factor):
        chunk = [v for v in values[i : i + factor] if v is not None]
        if not chunk:
            out.append(None)
        elif how == "sum":
            out.append(float(sum(chunk)))
        elif how == "mean":
            out.append(sum(chunk) / len(chunk))
        else:
            out.append(max(chunk))
    return out


def sum_series(series: Sequence[Sequence[float | None]]) -> list[float | None]:
    """Point-wise sum of equal-length series; a point where no series has a value is None."""
    if not series:
        return []
    n = len(series[0])
    out: list[float | None] = []
    for i in range(n):
        vals = [s[i] for s in series if s[i] is not None]
        out.append(float(sum(vals)) if vals else None)  # type: ignore[arg-type]
    return out


def compact(values: Sequence[float | None], digits: int = 4) -> list[float | None]:
    """Values rounded to ``digits`` significant digits (bounded snapshot size; None kept)."""
    out: list[float | None] = []
    for v in values:
        if v is None or v == 0:
            out.append(v if v is None else 0.0)
        else:
            out.append(float(f"{v:.{digits}g}"))
    return out
