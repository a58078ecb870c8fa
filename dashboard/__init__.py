"""The dnsfleet Streamlit dashboard: shell (``app.py``), data source and caching (``state.py``), pure
figure builders (``charts.py``) and pure table shaping (``views.py``). Pages live in the top-level
``pages/`` directory and only describe the UI."""
