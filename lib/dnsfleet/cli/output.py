"""What the command line prints about clusters: one summary, one renderer, one ``--fail-on``.

``write_summary(df, fmt, out)`` writes a cluster summary, the same layout for ``scan`` and ``show``: a
table for people (drawn by ``rich`` when ``out`` is a terminal, wrapping long cells to its width;
plain aligned lines otherwise, for pipes, files and CI logs), JSON for scripts or CSV (through the one
CSV writer, so spreadsheets get the same formula-safe cells as ``dnsfleet report``). JSON and CSV are
the same bytes on a terminal or not. Every name and reason in a table goes through
``dnsfleet.textsafe`` (no terminal control characters). ``fail_on`` is the CI exit code: 1 when a
cluster's level is at or above the threshold (``unknown`` never is), with the clusters named on stderr;
3 when nothing could be assessed (every cluster failed), because "no cluster is at or above high"
would then be a pass nobody earned.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any, TextIO

from dnsfleet.textsafe import one_line, unwrap

if TYPE_CHECKING:
    import pandas as pd

# Risk levels, lowest first (the values of the clusters frame's ``level``; ``unknown`` ranks below all).
LEVEL_ORDER = {"low": 0, "medium": 1, "high": 2}
FORMATS = ("table", "json", "csv")
SUMMARY_COLUMNS = (
    "cluster",
    "status",
    "level",
    "score",
    "nodes",
    "pods",
    "exposed_pods",
    "unknown_pods",
    "reason",
    "why",
)
EXIT_OK, EXIT_FAIL_ON, EXIT_USAGE, EXIT_NOTHING_ASSESSED = 0, 1, 2, 3
CELL_WIDTH = 70


class CliError(Exception):
    """A user-facing error: printed as one line, exit code 2."""


def add_output_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("-o", "--output", choices=FORMATS, default="table", help="output format")
    p.add_argument(
        "--fail-on",
        choices=tuple(LEVEL_ORDER),
        default=None,
        help="exit 1 when any cluster's risk level is at or above this level (for CI)",
    )


def summary_frame(clusters: pd.DataFrame) -> pd.DataFrame:
    """The summary columns of a clusters frame (ranked as it is)."""
    cols = [c for c in SUMMARY_COLUMNS if c in clusters.columns]
    return clusters[cols].reset_index(drop=True)


def snapshot_summary(snap: dict[str, Any]) -> pd.DataFrame:
    """The summary straight from the snapshot, without scores (used when scoring is unavailable)."""
    import pandas as pd

    rows = [
        {
            "cluster": c["name"],
            "status": c.get("status"),
            "level": "unknown",
            "score": None,
            "nodes": None if c.get("nodes") is None else len(c["nodes"]),
            "pods": None if c.get("pods") is None else len(c["pods"]),
            "exposed_pods": None,
            "unknown_pods": None,
            "reason": c.get("reason"),
            "why": None,
        }
        for c in snap.get("clusters") or []
    ]
    return pd.DataFrame(rows, columns=list(SUMMARY_COLUMNS))


def render(df: pd.DataFrame, fmt: str, *, numbered: bool = True) -> str:
    """``df`` as plain ``table`` lines (``numbered``: a leading rank column), ``json`` or ``csv``."""
    if fmt == "json":
        return render_json(df)
    if fmt == "csv":
        from dnsfleet.textsafe import csv_bytes

        return csv_bytes(df).decode("utf-8-sig")
    return render_table(df, numbered=numbered)


def write_summary(df: pd.DataFrame, fmt: str, out: TextIO) -> None:
    """Write the summary to ``out``: a ``rich`` table when ``out`` is a terminal and ``fmt`` is
    ``table``, else ``render(df, fmt)``."""
    if fmt == "table" and out.isatty():
        _rich_table(df, out)
    else:
        out.write(render(df, fmt))
    out.flush()


def _cells(df: pd.DataFrame) -> tuple[list[str], list[list[str]]]:
    """The table's header and rows as one-line, control-free strings, a rank column first."""
    import pandas as pd

    def cell(v: Any, col: str) -> str:
        if v is None or v is pd.NA or (isinstance(v, float) and v != v):
            return "-"
        if col == "score":
            return f"{float(v):.0f}"
        return one_line(v)

    cols = ["#", *(str(c).upper() for c in df.columns)]
    rows = [
        [str(i), *(cell(v, c) for v, c in zip(r, df.columns, strict=True))]
        for i, r in enumerate(df.itertuples(index=False), start=1)
    ]
    return cols, rows


def render_table(df: pd.DataFrame, *, numbered: bool = True) -> str:
    """Plain aligned lines (no terminal needed); long cells are cut at ``CELL_WIDTH`` characters."""
    cols, rows = _cells(df)
    rows = [[v if len(v) <= CELL_WIDTH else v[: CELL_WIDTH - 1] + "…" for v in r] for r in rows]
    if not numbered:
        cols, rows = cols[1:], [r[1:] for r in rows]
    widths = [max([len(c)] + [len(r[i]) for r in rows]) for i, c in enumerate(cols)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(cols, widths, strict=True)).rstrip()]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    return "\n".join(lines) + "\n"


def _rich_table(df: pd.DataFrame, out: TextIO) -> None:
    """The columns of ``render_table`` drawn by rich to the terminal's width: the short columns as one
    table, then REASON and WHY per cluster (by its ``#``), wrapped, so an 80-column terminal shows every
    column without cutting text."""
    from rich.console import Console, Group
    from rich.table import Table
    from rich.text import Text

    cols, rows = _cells(df)
    long = [i for i, c in enumerate(cols) if c in ("REASON", "WHY")]
    short = [i for i in range(len(cols)) if i not in long]
    table = Table(box=None, header_style="bold", pad_edge=False, collapse_padding=True)
    for i in short:
        numeric = cols[i] in ("#", "SCORE", "NODES", "PODS", "EXPOSED_PODS", "UNKNOWN_PODS")
        table.add_column(cols[i], justify="right" if numeric else "left", overflow="fold")
    for r in rows:
        table.add_row(*(Text(r[i]) for i in short))  # Text: names are never read as rich markup
    notes = Table(box=None, header_style="bold", pad_edge=False, collapse_padding=True)
    notes.add_column("#", justify="right", no_wrap=True)
    notes.add_column(" / ".join(cols[i] for i in long), overflow="fold")
    for r in rows:
        texts = [r[i] for i in long if r[i] != "-"]
        texts = [t for t in texts if not any(t != o and t in o for o in texts)]  # "x" and "failed: x"
        if texts:
            notes.add_row(Text(r[0]), Text(" · ".join(texts)))
    parts: list[Any] = [table]
    if notes.row_count:
        parts += [Text(""), notes]
    Console(file=unwrap(out), highlight=False, markup=False, emoji=False).print(Group(*parts))


def render_json(df: pd.DataFrame) -> str:
    import orjson

    records = []
    for r in df.astype(object).where(df.notna(), None).to_dict(orient="records"):
        records.append({k: (v.item() if hasattr(v, "item") else v) for k, v in r.items()})
    return orjson.dumps(records, option=orjson.OPT_INDENT_2).decode() + "\n"


def nothing_assessed(df: pd.DataFrame) -> str | None:
    """The one-line message when no cluster of the summary could be assessed (all failed), else None."""
    if not len(df):
        return "nothing could be assessed: the snapshot has no clusters"
    if "status" in df.columns and all(str(s) == "failed" for s in df["status"]):
        names = ", ".join(str(c) for c in df["cluster"])
        return f"nothing could be assessed: all {len(df)} cluster(s) failed ({names})"
    return None


def fail_on(df: pd.DataFrame, threshold: str | None, err: TextIO) -> int:
    """``EXIT_FAIL_ON`` when a cluster is at or above ``threshold`` (named on ``err``);
    ``EXIT_NOTHING_ASSESSED`` when every cluster failed (said on ``err`` with or without a threshold,
    the code only with one); else ``EXIT_OK``."""
    nothing = nothing_assessed(df)
    if nothing:
        err.write(nothing + "\n")
        return EXIT_NOTHING_ASSESSED if threshold else EXIT_OK
    if not threshold:
        return EXIT_OK
    rank = LEVEL_ORDER[threshold]
    hits = [
        f"{c} ({lvl})"
        for c, lvl in zip(df["cluster"], df["level"], strict=True)
        if LEVEL_ORDER.get(str(lvl), -1) >= rank
    ]
    if hits:
        err.write(f"clusters at or above {threshold}: {', '.join(hits)}\n")
        return EXIT_FAIL_ON
    return EXIT_OK
