"""Per-row verdicts derived from the scored frames, for the dashboard's pages and charts.

The decisions stay in ``rules/`` (a race open, fixed or unknown on a kernel) and the engine (scores);
this module only summarises those columns the same way wherever they are shown.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

# The three conntrack races; the NFQUEUE path only matters where an NFQUEUE agent is on the DNS path.
CORE_RACES = ("race1", "race2", "race3")


def kernel_verdict(nodes: pd.DataFrame) -> pd.Series:
    """Per node: 'open' if race 1, 2 or 3 is open on its kernel, else 'unknown' if any of them is unknown,
    else 'fixed'; 'not applicable' when none applies (Windows). (The NFQUEUE path is left out: it matters
    only with an NFQUEUE agent.)"""
    states = nodes[list(CORE_RACES)].fillna("unknown")
    any_open = (states == "open").any(axis=1)
    any_unknown = (states == "unknown").any(axis=1)
    out = pd.Series("fixed", index=nodes.index, dtype="string")
    out[(states == "not applicable").all(axis=1)] = "not applicable"
    out[any_unknown] = "unknown"
    out[any_open] = "open"
    return out


def round_score(score: pd.Series) -> pd.Series:
    """Scores as whole points, halves rounded up (78.5 → 79), NA kept: the one rounding every table,
    chart label and badge shows, so a score reads the same wherever it appears."""
    s = pd.to_numeric(score, errors="coerce").astype("float64")
    return pd.Series(np.floor(s + 0.5), index=score.index).astype("Int64")


def score_text(score: object, na: str = "n/a") -> str:
    """One score as text, rounded as ``round_score`` rounds it."""
    if score is None or score is pd.NA or (isinstance(score, float) and math.isnan(score)):
        return na
    return str(math.floor(float(score) + 0.5))
