"""dnsfleet dashboard entry point: ``streamlit run dashboard/app.py`` from the repository root.

A frame around the pages in ``pages/``: page config, navigation, the data-source sidebar
(``dashboard.sidebar``), the filters carried across pages and the source error line; each page then
renders itself.
"""

import sys
from pathlib import Path

_ROOT = str(Path(__file__).resolve().parent.parent)
if _ROOT not in sys.path:  # `streamlit run` puts dashboard/ on sys.path, the pages import `dashboard.*`
    sys.path.insert(0, _ROOT)

import streamlit as st  # noqa: E402

from dashboard import nav, sidebar  # noqa: E402

# A local file, not a :material/...: icon or an emoji: Streamlit turns those into favicon URLs on public
# font/CDN hosts, and the dashboard must work (and load nothing) without internet access.
st.set_page_config(
    page_title="dnsfleet", page_icon=str(Path(__file__).with_name("favicon.png")), layout="wide"
)
current = st.navigation(nav.pages())
sidebar.carry_filters(current.url_path)
sidebar.render_sidebar()
sidebar.render_source_error()
try:
    current.run()
finally:  # st.stop() in a page ends the run here too
    sidebar.remember_filters()
