"""The page registry: one ``st.Page`` per file in the top-level ``pages/`` directory.

Pages link to each other through ``page(name)`` (a ``StreamlitPage``), never through string paths, so
links keep working wherever the app is started from.
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st
from streamlit.navigation.page import StreamlitPage

ROOT = Path(__file__).resolve().parent.parent
PAGES_DIR = ROOT / "pages"

# file name -> (title, icon); the order is the navigation order. The first page is the default.
PAGES: dict[str, tuple[str, str]] = {
    "overview": ("Fleet overview", ":material/dashboard:"),
    "cluster": ("Cluster", ":material/hub:"),
    "nodes": ("Nodes & kernels", ":material/memory:"),
    "coredns": ("CoreDNS", ":material/dns:"),
    "workloads": ("Workloads", ":material/apps:"),
    "mitigations": ("Mitigations", ":material/build:"),  # written by the mitigations helper; optional
    "rules": ("Rules", ":material/menu_book:"),  # what each rule id (K8, P1, R11 ...) means, with sources
    "history": ("History", ":material/timeline:"),  # the snapshot store's index (DNSFLEET_STORE)
    "reports": ("Reports", ":material/download:"),
}


def page(name: str) -> StreamlitPage:
    title, icon = PAGES[name]
    return st.Page(PAGES_DIR / f"{name}.py", title=title, icon=icon, default=name == "overview")


def available() -> list[str]:
    """Names of the pages whose file exists (the mitigations page only once it has been written)."""
    return [name for name in PAGES if (PAGES_DIR / f"{name}.py").is_file()]


def pages() -> list[StreamlitPage]:
    return [page(name) for name in available()]
