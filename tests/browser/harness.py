"""How dnsfleet's real-browser runs start things (browser tests and the dashboard benchmark share this).

Playwright never downloads a browser here: it launches ``/usr/bin/chromium`` (installed by
``tests/fleet/install-system-deps.sh``). The flags keep Chromium off the network this machine cannot
reach (background networking, component updates, sync) and let it run as root without a GPU.
The dashboard is started with ``streamlit_command`` from the repository root (so
``.streamlit/config.toml`` applies) in ``clean_env`` (no DNSFLEET_*/KUBECONFIG from the caller).
"""

from __future__ import annotations

import ipaddress
import os
import sys
import urllib.parse
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


def outside_loopback(url: str) -> bool:
    """An http(s)/ws URL whose host is not loopback (data:, blob: and about: URLs never leave)."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https", "ws", "wss"):
        return False
    host = (parts.hostname or "").strip("[]")
    if host == "localhost":
        return False
    try:
        return not ipaddress.ip_address(host).is_loopback
    except ValueError:
        return True  # a name would be resolved, then dialed
