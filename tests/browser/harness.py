"""How dnsfleet's real-browser runs start things (browser tests and the dashboard benchmark share this).

Playwright never downloads a browser here: it launches ``/usr/bin/chromium`` (installed by
``tests/fleet/install-system-deps.sh``). The flags keep Chromium off the network this machine cannot
reach (background networking, component updates, sync) and let it run as root without a GPU.
The dashboard is started with ``streamlit_command`` from the repository root (so
``.streamlit/config.toml`` applies) in ``clean_env`` (no DNSFLEET_*/KUBECONFIG from the caller).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def streamlit_command(port: int) -> list[str]:
    """The dashboard as ``make run`` starts it (``python -m dashboard.serve``, i.e. ``streamlit run
    dashboard/app.py`` with the page modules imported up front) on 127.0.0.1:``port``, headless, no
    file watcher."""
    return [
        sys.executable,
        "-m",
        "dashboard.serve",
        "--server.address",
        "127.0.0.1",
        "--server.port",
        str(port),
        "--server.headless",
        "true",
        "--server.fileWatcherType",
        "none",
        "--browser.gatherUsageStats",
        "false",
    ]


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without dnsfleet/kubeconfig settings, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DNSFLEET_", "KUBECONFIG"))}
    env.update(extra, PYTHONUNBUFFERED="1")
    return env
