"""Start the dashboard: ``python -m dashboard.serve [streamlit run options]`` (what ``make run`` does).

The same as ``streamlit run dashboard/app.py [options]``, plus:

- **Preload**: what every page needs (pandas, pyarrow, plotly, the dnsfleet engine and collector) is
  imported first: Streamlit runs the app script only when the first browser connects, so without this
  the first visitor would also wait for ~0.4 s of imports. Only plain modules, nothing that calls
  Streamlit and no data.
- **Host check (DNS rebinding)**: every HTTP request and WebSocket handshake whose ``Host`` header
  ``dnsfleet.authz.host_allowed`` refuses (not localhost, a loopback address, the bound address or a
  name in ``DNSFLEET_ALLOWED_HOSTS``) is answered 403 before Streamlit sees it. Streamlit's own options
  (``server.enableCORS``, ``server.enableXsrfProtection``) never look at Host, so a page on a name
  rebound to 127.0.0.1 would otherwise get a same-origin WebSocket to the dashboard.
- **Sign-in configuration check**: a ``[dnsfleet.auth]`` section that cannot be used (for example
  ``mode = "proxy-header"`` without its shared secret) stops the start with one line and exit code 2.
"""

from __future__ import annotations

import importlib
import sys
import tomllib
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
APP = ROOT / "dashboard" / "app.py"
# plotly and pandas (figures, tables), the kubernetes client (live scans), pandas/pyarrow/rules (scoring)
PRELOAD = ("dashboard.charts", "dashboard.views", "dnsfleet.collect", "dnsfleet.engine")
REFUSED_HOST = (
    b"dnsfleet: this Host is not served here. Open the dashboard under localhost, its bound address, or a "
    b"name listed in DNSFLEET_ALLOWED_HOSTS.\n"
)

Scope = MutableMapping[str, Any]
ASGIApp = Callable[[Scope, Callable[[], Awaitable[Any]], Callable[[Any], Awaitable[None]]], Awaitable[None]]


def preload() -> None:
    """Import the modules the pages import (code only: no snapshot is read, nothing is cached)."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    for name in PRELOAD:
        importlib.import_module(name)


class HostCheck:
    """ASGI middleware: a request or WebSocket handshake with a Host ``host_allowed`` refuses gets 403."""

    def __init__(self, app: ASGIApp, bind_address: str | None) -> None:
        self.app = app
        self.bind_address = bind_address

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        from dnsfleet.authz import host_allowed

        if scope.get("type") in ("http", "websocket"):
            hosts = [v for k, v in scope.get("headers") or () if k.lower() == b"host"]
            host = hosts[0].decode("latin-1") if len(hosts) == 1 else None
            if not host_allowed(host, self.bind_address):
                from starlette.responses import PlainTextResponse

                await PlainTextResponse(REFUSED_HOST, status_code=403)(scope, receive, send)
                return
        await self.app(scope, receive, send)


def install_host_check() -> None:
    """Wrap the ASGI app Streamlit's server builds in ``HostCheck`` (raises if Streamlit's server module
    no longer has the factory: the dashboard must not start without the check)."""
    from streamlit import config
    from streamlit.web.server.starlette import starlette_server

    build = starlette_server.create_starlette_app
    if getattr(build, "dnsfleet_host_check", False):
        return

    def create_starlette_app(runtime: Any) -> Any:
        return HostCheck(build(runtime), config.get_option("server.address"))

    create_starlette_app.dnsfleet_host_check = True  # type: ignore[attr-defined]
    starlette_server.create_starlette_app = create_starlette_app


def secrets_files() -> list[Path]:
    """Streamlit's secrets files, in the order it reads them (later files win)."""
    from streamlit import config

    return [Path(p).expanduser() for p in config.get_option("secrets.files") or ()]


def auth_problem(files: list[Path] | None = None) -> str | None:
    """Why ``[dnsfleet.auth]`` in the secrets files cannot be used, or None."""
    from dnsfleet.authz import settings_from_secrets

    merged: dict[str, Any] = {}
    for path in secrets_files() if files is None else files:
        try:
            doc = tomllib.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            continue
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
            return f"cannot read {path}: {type(e).__name__}"
        merged.update(doc)  # Streamlit merges top-level keys, later files winning
    return settings_from_secrets(merged).problem


def main(argv: list[str] | None = None) -> int:
    preload()
    from streamlit.web import cli

    if (problem := auth_problem()) is not None:
        print(f"dnsfleet: not starting: {problem}", file=sys.stderr)
        return 2
    install_host_check()
    sys.argv = ["streamlit", "run", str(APP), *(sys.argv[1:] if argv is None else argv)]
    return int(cli.main() or 0)


if __name__ == "__main__":
    sys.exit(main())
