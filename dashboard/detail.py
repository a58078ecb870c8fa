"""Tables that answer a page's question in a few columns, with everything else one click away: select a
row and a details panel shows every column in full (rule ids linked to the Rules page); the CSV under
the table keeps every column."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd
import streamlit as st

from dashboard import ui, views
from dnsfleet.report import to_csv_bytes


def label(column: str) -> str:
    """A column's label as the tables show it (its column config), else the column name."""
    cfg = ui.COLUMNS.get(column)
    return str(cfg.get("label") or column) if isinstance(cfg, dict) else column


# What an empty cell means where it does not mean "unknown".
EMPTY: dict[str, str] = {
    "dns_options": "none set",
    "note": "none",
    "reason": "none",
    "unknown_resolve": "nothing unknown",
    "findings": "none",
    "not_collected": "nothing missing",
}


def _value(v: Any, empty: str = "unknown") -> str:
    if v is None or v is pd.NA or (isinstance(v, float) and pd.isna(v)) or (isinstance(v, str) and not v):
        return empty
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, pd.Timestamp):
        return v.strftime("%Y-%m-%d %H:%M UTC")
    if isinstance(v, float):
        return f"{v:.3g}" if abs(v) < 1 else f"{v:,.1f}".rstrip("0").rstrip(".")
    return str(v)


def details_markdown(row: pd.Series, columns: Sequence[str]) -> str:
    """One row as a markdown list, ``label: value``, every value in full; rule ids become links."""
    lines = []
    for c in columns:
        if c not in row.index or ui.COLUMNS.get(c, True) is None:
            continue
        v = row[c]
        if isinstance(v, str) and v.startswith(("cluster?", "rules?")):
            continue  # a link column: the page link is shown elsewhere
        if (c.endswith("share") or c == "exposure") and isinstance(v, float) and not pd.isna(v):
            v = f"{100 * v:.1f} %"
        text = _value(v, EMPTY.get(c, "unknown"))
        lines.append(f"- **{views.md_escape(label(c))}:** {views.linked_markdown(text)}")
    return "\n".join(lines)


def csv_button(full: pd.DataFrame, name: str, *, key: str) -> None:
    """A download of ``full`` as CSV, every column (the table above shows a few)."""
    st.download_button(
        f"CSV, all {len(full.columns)} columns",
        to_csv_bytes(full),
        file_name=name,
        mime="text/csv",
        key=f"{key}.csv",
        icon=":material/download:",
    )


def table_with_details(
    full: pd.DataFrame,
    main: Sequence[str],
    *,
    key: str,
    title: Sequence[str],
    csv_name: str,
    what: str = "row",
) -> pd.Series | None:
    """``full`` shown with the ``main`` columns only; selecting a row opens a panel with all of
    ``full``'s columns (``title`` names the row); a download button gives the table as CSV with every
    column. Returns the selected row, if any."""
    event = ui.table(full, main, key=key, select=True)
    rows = event.selection.rows if event is not None else []
    csv_button(full, csv_name, key=key)
    if not rows:
        st.caption(f"Select a {what} to see all its columns in full.")
        return None
    row = full.iloc[rows[0]]
    with st.container(border=True, key=f"{key}-details"):
        st.markdown("**" + views.md_escape(" · ".join(_value(row[c]) for c in title)) + "**")
        st.markdown(details_markdown(row, list(full.columns)))
    return row
