"""The dnsfleet Streamlit dashboard: shell (``app.py``), what pages read (``state.py``), data sources,
caching and the scan runner (``sources.py``), live scans kept for every session (``livestore.py``), the
sidebar (``sidebar.py``), pure figure builders (``charts.py``) and pure table shaping (``views.py``).
Pages live in the top-level ``pages/`` directory and only describe the UI."""
