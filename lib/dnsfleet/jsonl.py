"""Append-only JSON-lines files that several processes write at once (the audit log, the probe log)."""

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
