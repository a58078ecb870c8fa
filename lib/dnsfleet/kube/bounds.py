"""Bounds on time and size for every HTTP request dnsfleet makes (API servers, the pod proxy, Prometheus).

A socket timeout bounds one wait for bytes, not a request: a server that trickles one byte every
0.9 s keeps a 3 s read timeout happy for ever. So every request also gets a **wall-clock deadline**:
``Deadline`` registers the request with one watchdog thread, the connection the request uses is
recorded as it connects or sends (``track_pool_manager`` swaps in connection classes that do), and
when the deadline passes the watchdog shuts the socket down, which ends any read or write blocked on
it. ``expired`` tells the caller that this, not the server, ended the request.

Bodies are read in chunks and stop at a **byte cap** (``read_capped``): ``DNSFLEET_MAX_RESPONSE_MB``
(default 64 MiB; a page of 500 pods is 1-3 MB).

Limits (environment, read at each use):

- ``DNSFLEET_MAX_RESPONSE_MB``: largest response body read from an API server or Prometheus (64).
- ``DNSFLEET_EXEC_MAX_OUTPUT_KB``: largest output of a kubeconfig exec credential plugin (1024).
- The deadline of a request is its timeout (``--timeout`` / the dashboard's scan timeout).
"""

from __future__ import annotations

import heapq
import itertools
import os
import socket
import threading
import time
from typing import Any

import urllib3

DEFAULT_MAX_RESPONSE_MB = 64.0
DEFAULT_EXEC_MAX_OUTPUT_KB = 1024.0
CHUNK = 256 * 1024


class TooLarge(Exception):
    """A body went over its byte cap; ``str()`` is one line naming the cap and its setting."""


def _env_number(name: str, default: float) -> float:
    raw = os.environ.get(name, "").strip()
    try:
        value = float(raw) if raw else default
    except ValueError:
        return default
    return value if value > 0 else default


def max_response_bytes() -> int:
    """``DNSFLEET_MAX_RESPONSE_MB`` (default 64) in bytes."""
    return int(_env_number("DNSFLEET_MAX_RESPONSE_MB", DEFAULT_MAX_RESPONSE_MB) * (1 << 20))


def max_exec_output_bytes() -> int:
    """``DNSFLEET_EXEC_MAX_OUTPUT_KB`` (default 1024) in bytes."""
    return int(_env_number("DNSFLEET_EXEC_MAX_OUTPUT_KB", DEFAULT_EXEC_MAX_OUTPUT_KB) * 1024)


def size_text(n: int) -> str:
    return f"{n / (1 << 20):g} MiB" if n >= 1 << 20 else f"{n / 1024:g} KiB"


# -- the deadline ------------------------------------------------------------------------------------

_current = threading.local()


class Deadline:
    """``with Deadline(seconds) as d:`` around one request; ``d.expired`` afterwards (and inside)."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.at = time.monotonic() + seconds
        self.expired = False
        self.done = False
        self.conn: Any = None  # the urllib3 connection of the request, set by the tracked classes
        self._lock = threading.Lock()

    def left(self) -> float:
        return self.at - time.monotonic()

    def __enter__(self) -> Deadline:
        self._outer = getattr(_current, "deadline", None)
        _current.deadline = self
        _WATCHDOG.add(self)
        return self

    def __exit__(self, *exc: object) -> None:
        with self._lock:
            self.done = True
        _current.deadline = self._outer

    def fire(self) -> None:
        with self._lock:
            if self.done:
                return
            self.expired = True
            fd = getattr(self.conn, "_dnsfleet_fd", None)
        if fd is None or fd < 0:
            return
        # On the descriptor, not the (SSL)socket object: that one belongs to the reading thread.
        try:
            s = socket.socket(fileno=fd)
        except OSError:  # already closed: nothing left to stop
            return
        try:
            s.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        finally:
            s.detach()


class _Watchdog:
    """One daemon thread firing deadlines in time order."""

    def __init__(self) -> None:
        self._cv = threading.Condition()
        self._heap: list[tuple[float, int, Deadline]] = []
        self._seq = itertools.count()
        self._thread: threading.Thread | None = None

    def add(self, d: Deadline) -> None:
        with self._cv:
            heapq.heappush(self._heap, (d.at, next(self._seq), d))
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="dnsfleet-deadline", daemon=True)
                self._thread.start()
            self._cv.notify()

    def _run(self) -> None:
        while True:
            with self._cv:
                while self._heap and self._heap[0][2].done:
                    heapq.heappop(self._heap)
                if not self._heap:
                    self._cv.wait()
                    continue
                wait = self._heap[0][0] - time.monotonic()
                if wait > 0:
                    self._cv.wait(wait)
                    continue
                d = heapq.heappop(self._heap)[2]
            try:
                d.fire()
            except Exception:  # never let one odd socket stop every later deadline
                continue


_WATCHDOG = _Watchdog()


class _Tracked:
    """Mixin for urllib3 connection classes: tell the thread's deadline which socket is in use."""

    def _new_conn(self) -> socket.socket:
        sock = super()._new_conn()  # type: ignore[misc]
        self._dnsfleet_fd = sock.fileno()
        d = getattr(_current, "deadline", None)
        if d is not None:
            d.conn = self
        return sock

    def request(self, *args: Any, **kwargs: Any) -> Any:
        d = getattr(_current, "deadline", None)
        if d is not None:
            d.conn = self
        return super().request(*args, **kwargs)  # type: ignore[misc]


_tracked_classes: dict[type, type] = {}
_lock = threading.Lock()


def _tracked_pool(pool_cls: type) -> type:
    with _lock:
        if pool_cls not in _tracked_classes:
            conn_cls = pool_cls.ConnectionCls
            tracked_conn = type(f"Tracked{conn_cls.__name__}", (_Tracked, conn_cls), {})
            _tracked_classes[pool_cls] = type(
                f"Tracked{pool_cls.__name__}", (pool_cls,), {"ConnectionCls": tracked_conn}
            )
        return _tracked_classes[pool_cls]


def track_pool_manager(pm: urllib3.PoolManager) -> urllib3.PoolManager:
    """Make ``pm``'s connections report themselves to the thread's ``Deadline`` (idempotent)."""
    if not getattr(pm, "_dnsfleet_tracked", False):
        pm.pool_classes_by_scheme = {
            scheme: _tracked_pool(cls) for scheme, cls in pm.pool_classes_by_scheme.items()
        }
        pm._dnsfleet_tracked = True  # type: ignore[attr-defined]
    return pm


def read_capped(resp: Any, cap: int, deadline: Deadline | None = None) -> bytes:
    """Read a urllib3 response body (``preload_content=False``) up to ``cap`` bytes.

    Raises ``TooLarge`` past the cap (announced by Content-Length or read) and ``TimeoutError`` when
    the deadline expired while reading (a cut-off body is never returned as complete)."""
    length = resp.headers.get("Content-Length") if resp.headers is not None else None
    if length is not None and length.strip().isdigit() and int(length) > cap:
        raise TooLarge(f"announced {int(length)} bytes, over the {size_text(cap)} limit")
    parts: list[bytes] = []
    total = 0
    while True:
        chunk = resp.read(CHUNK)
        if deadline is not None and deadline.expired:
            raise TimeoutError("deadline")
        if not chunk:
            break
        total += len(chunk)
        if total > cap:
            raise TooLarge(f"more than the {size_text(cap)} limit")
        parts.append(chunk)
    if deadline is not None and deadline.expired:
        raise TimeoutError("deadline")
    return b"".join(parts)
