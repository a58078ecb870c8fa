"""Shared fixtures: the real test fleet (tests/fleet/fleet.py documents the Fleet object).

- ``fleet`` (session): the default three-cluster fleet, started once (builds kube-apiserver/etcd first
  if needed) and stopped at the end. Never stop or restart its servers: use ``fleet_factory``.
- ``fleet_factory`` (function): ``fleet_factory([spec.small_cluster("scratch")], prometheus=False)``
  starts an extra fleet in the test's tmp dir and stops it after the test; for destructive tests.
- ``serve`` (function): ``serve(handler)`` starts a tiny HTTP server on 127.0.0.1 whose ``handler(req)``
  writes the whole answer (``req.body`` holds the request body) and returns its base URL; for what no
  real server does on demand. Stopped after the test.
- ``clean_app`` (function): a dashboard AppTest that starts from nothing: none of the operator's
  settings in ``DASHBOARD_ENV``, Streamlit's caches empty before and after; yields ``monkeypatch``.

A fleet that cannot be built or started FAILS the session's fleet tests with the reason (it is not
skipped: CI must run them). Development shortcut: run ``python -m tests.fleet up --dir D`` in another
shell and set ``DNSFLEET_FLEET_DIR=D``; the ``fleet`` fixture then attaches to it instead of starting one
(changes tests make persist in that fleet).
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.fleet.fleet import Fleet, FleetError, attach_fleet, ensure_binaries, start_fleet
from tests.fleet.spec import ClusterSpec

_TIMINGS: dict[str, float] = {}

# What the dashboard reads from the operator's environment; a dashboard test sets what it needs itself.
DASHBOARD_ENV = (
    "DNSFLEET_ALLOW_WRITES",
    "DNSFLEET_SINGLE_USER",
    "DNSFLEET_KUBECONFIG",
    "KUBECONFIG",
    "DNSFLEET_SNAPSHOT",
    "DNSFLEET_PROMETHEUS",
    "DNSFLEET_PROMETHEUS_TIME",
    "DNSFLEET_RESOLVER_MAP",
)


@pytest.fixture(autouse=True)
def _dashboard_state_dir(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Live scans the dashboard keeps (dashboard.livestore) go to a directory of this test's own."""
    monkeypatch.setenv("DNSFLEET_STATE_DIR", str(tmp_path_factory.mktemp("state")))


@pytest.fixture
def serve() -> Iterator[Callable[[Callable[[BaseHTTPRequestHandler], None]], str]]:
    servers: list[ThreadingHTTPServer] = []

    def start(handler: Callable[[BaseHTTPRequestHandler], None]) -> str:
        class H(BaseHTTPRequestHandler):
            def _any(self) -> None:
                n = int(self.headers.get("Content-Length") or 0)
                self.body = self.rfile.read(n) if n else b""
                with contextlib.suppress(OSError):  # the client hung up (it gave up, as it should)
                    handler(self)

            do_GET = do_POST = do_PATCH = do_DELETE = _any

            def log_message(self, *args: Any) -> None:
                pass

        srv = ThreadingHTTPServer(("127.0.0.1", 0), H)
        srv.daemon_threads = True
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        servers.append(srv)
        return f"http://127.0.0.1:{srv.server_address[1]}"

    yield start
    for s in servers:
        s.shutdown()
        s.server_close()


@pytest.fixture
def clean_app(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    import streamlit as st

    for k in DASHBOARD_ENV:
        monkeypatch.delenv(k, raising=False)
    st.cache_data.clear()
    st.cache_resource.clear()
    yield monkeypatch
    st.cache_data.clear()
    st.cache_resource.clear()


@pytest.fixture(scope="session")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    attach = os.environ.get("DNSFLEET_FLEET_DIR")
    try:
        if attach:
            f = attach_fleet(Path(attach))
        else:
            ensure_binaries()
            f = start_fleet(tmp_path_factory.mktemp("fleet"))
    except FleetError as e:
        pytest.fail(f"the test fleet could not start: {e}", pytrace=False)
    _TIMINGS.update(f.timings)
    try:
        yield f
    finally:
        f.stop()


@pytest.fixture
def fleet_factory(tmp_path: Path) -> Iterator[Callable[..., Fleet]]:
    started: list[Fleet] = []

    def make(clusters: list[ClusterSpec] | None = None, *, prometheus: bool = False) -> Fleet:
        from tests.fleet.spec import small_cluster

        try:
            ensure_binaries()
            f = start_fleet(
                tmp_path / f"fleet{len(started)}", clusters or [small_cluster()], prometheus=prometheus
            )
        except FleetError as e:
            pytest.fail(f"an extra test fleet could not start: {e}", pytrace=False)
        started.append(f)
        return f

    try:
        yield make
    finally:
        for f in started:
            f.stop()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not _TIMINGS:
        return
    t = _TIMINGS
    slowest = max((k for k in t if k.endswith(".seed_s")), key=t.get, default=None)
    api = max((v for k, v in t.items() if k.endswith(".servers_s")), default=0.0)
    line = f"test fleet: up in {t.get('total_s', 0):.1f}s (slowest etcd+apiserver start {api:.1f}s"
    if slowest:
        name = slowest.split(".")[0]
        how = "from the seed cache" if t.get(f"{name}.cached") else "seeding"
        line += f", {how} {name} {t[slowest]:.1f}s"
    if "prometheus_s" in t:
        line += f", Prometheus backfill+start {t['prometheus_s']:.1f}s"
    terminalreporter.write_line(line + ")")
