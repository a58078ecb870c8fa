"""Reports: every table as CSV, and the snapshot itself, each with a preview."""

import io

import pandas as pd
import streamlit as st

from dashboard import ui
from dashboard.state import current_assessment, current_snapshot, current_source, source_key
from dnsfleet.report import csv_reports
from dnsfleet.snapshot import dumps

PREVIEW_ROWS = 20


@st.cache_data(ttl="15m", max_entries=4, scope="session", show_spinner="Writing the CSV reports…")
def _reports(key: str, _a: object) -> dict[str, bytes]:
    return csv_reports(_a)


@st.cache_data(ttl="15m", max_entries=4, scope="session", show_spinner="Packing the snapshot…")
def _snapshot_bytes(key: str, _snapshot: dict) -> bytes:
    return dumps(_snapshot, compress=True)


st.title("Reports")
a = current_assessment()  # under the title: a store source draws its cluster choice here
src = current_source()
key = source_key()

st.caption(f"Data: **{src['label']}**. Credentials are never part of a report or the snapshot.")

if len(a.clusters) and (a.clusters["status"] == "failed").all():
    st.warning(
        "Nothing could be assessed: every cluster failed to scan. clusters.csv lists them with their "
        "reasons; the node, workload and recommendation reports have a header only."
    )
files = _reports(key, a)
for name, data in files.items():
    with st.container(border=True):
        left, right = st.columns([3, 1])
        left.markdown(f"**{name}** · {len(data):,} bytes")
        right.download_button(
            f"Download {name}", data, file_name=name, mime="text/csv", key=f"dl.{name}", width="stretch"
        )
        preview = pd.read_csv(io.BytesIO(data), nrows=PREVIEW_ROWS)
        st.dataframe(preview, hide_index=True, width="stretch", height=min(38 + 35 * len(preview), 300))
        if len(preview) == PREVIEW_ROWS:
            st.caption(f"First {PREVIEW_ROWS} rows; the download has them all.")

st.subheader("Snapshot")
snap = getattr(a, "snapshot", None) or current_snapshot()
blob = _snapshot_bytes(key, snap)
stamp = str(snap.get("generated_at") or "").replace(":", "").replace("-", "")
with st.container(border=True):
    left, right = st.columns([3, 1])
    left.markdown(
        f"**dnsfleet-snapshot-{stamp}.json.gz** · {len(blob):,} bytes gzip · "
        f"{len(snap.get('clusters', []))} clusters. Load it later with *Snapshot file* in the sidebar."
    )
    right.download_button(
        "Download snapshot",
        blob,
        file_name=f"dnsfleet-snapshot-{stamp}.json.gz",
        mime="application/gzip",
        key="dl.snapshot",
        width="stretch",
    )
    st.dataframe(
        pd.DataFrame(
            [
                {
                    "cluster": c.get("name"),
                    "status": c.get("status"),
                    "reason": c.get("reason"),
                    "nodes": len(c.get("nodes") or []),
                    "pods": len(c.get("pods") or []),
                    "metrics": (c.get("metrics") or {}).get("source") or "not collected",
                    "collected_at": c.get("collected_at"),
                }
                for c in snap.get("clusters", [])
            ]
        ),
        hide_index=True,
        width="stretch",
        column_config={
            k: ui.COLUMNS[k] for k in ("cluster", "status", "reason", "nodes", "pods") if k in ui.COLUMNS
        },
    )
