"""Append-only JSON-lines files that several processes write at once (the audit log, the probe log),
and the state directory they live in."""

from __future__ import annotations

import fcntl
import json
import os
from pathlib import Path
from typing import Any


def append(path: Path, record: dict[str, Any]) -> None:
    """Append ``record`` as one line, the file owner-only (0600). O_APPEND, an exclusive lock and one
    write per record: concurrent writers never interleave lines."""
    path.parent.mkdir(parents=True, exist_ok=True)
    line = json.dumps(record, sort_keys=True, default=str) + "\n"
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        os.write(fd, line.encode())
    finally:
        os.close(fd)


def state_dir() -> Path:
    """Where dnsfleet keeps what it writes for later (audit log, probe log, kept live scans, the
    default snapshot store): ``DNSFLEET_STATE_DIR``, else ``$XDG_STATE_HOME/dnsfleet``, else
    ``~/.local/state/dnsfleet``."""
    env = os.environ.get("DNSFLEET_STATE_DIR", "").strip()
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_STATE_HOME", "").strip() or str(Path.home() / ".local" / "state")
    return Path(base) / "dnsfleet"
