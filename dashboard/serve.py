"""Start the dashboard: ``python -m dashboard.serve [streamlit run options]`` (what ``make run`` does).

The same as ``streamlit run dashboard/app.py [options]``, after importing what every page needs (pandas,
pyarrow, plotly, the dnsfleet engine and collector): Streamlit runs the app script only when the first
browser connects, so without this the first visitor would also wait for ~0.4 s of imports. Only plain
modules are imported here, nothing that calls Streamlit and no data.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
APP = ROOT / "dashboard" / "app.py"
# plotly and pandas (figures, tables), the kubernetes client (live scans), pandas/pyarrow/rules (scoring)
PRELOAD = ("dashboard.charts", "dashboard.views", "dnsfleet.collect", "dnsfleet.engine")


def preload() -> None:
    """Import the modules the pages import (code only: no snapshot is read, nothing is cached)."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    for name in PRELOAD:
        importlib.import_module(name)


def main(argv: list[str] | None = None) -> int:
    preload()
    from streamlit.web import cli

    sys.argv = ["streamlit", "run", str(APP), *(sys.argv[1:] if argv is None else argv)]
    return int(cli.main() or 0)


if __name__ == "__main__":
    sys.exit(main())
