"""Per-row verdicts derived from the scored frames, for the dashboard's pages and charts.

The decisions stay in ``rules/`` (a race open, fixed or unknown on a kernel) and the engine (scores);
this module only summarises those columns the same way wherever they are shown.
"""

from __future__ import annotations

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
