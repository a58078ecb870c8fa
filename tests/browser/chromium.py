"""How dnsfleet drives Debian's Chromium (browser tests and the dashboard benchmark share this).

Playwright never downloads a browser here: it launches ``/usr/bin/chromium`` (installed by
``tests/fleet/install-system-deps.sh``). The flags keep Chromium off the network this machine cannot
reach (background networking, component updates, sync) and let it run as root without a GPU.
"""

from __future__ import annotations

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
