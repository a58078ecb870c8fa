"""The audit log: one JSON object per line, appended, never rewritten.

Default path ``~/.local/state/dnsfleet/audit.jsonl``; ``DNSFLEET_AUDIT_LOG`` overrides it. A record holds
time, identity (a user name, never a credential), cluster, object, mitigation, action, the patch sent,
the previous value, the value applied, the result and its message.
"""

from __future__ import annotations

import fcntl
import json
import os
from pathlib import Path
from typing import Any

RECORD_FIELDS = (
    "time",
    "identity",
    "cluster",
    "object",
    "mitigation",
    "action",
    "patch",
    "previous",
    "applied",
    "result",
    "message",
    "batch",
)


def default_path() -> Path:
    env = os.environ.get("DNSFLEET_AUDIT_LOG", "").strip()
    if env:
        return Path(env).expanduser()
    return Path("~/.local/state/dnsfleet/audit.jsonl").expanduser()


class AuditLog:
    """Append-only JSON lines file."""

    def __init__(self, path: str | Path | None = None) -> None:
        self.path = Path(path).expanduser() if path else default_path()

    def append(self, record: dict[str, Any]) -> None:
        missing = [f for f in RECORD_FIELDS if f not in record]
        if missing:
            raise ValueError(f"audit record lacks {', '.join(missing)}")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        line = json.dumps(record, sort_keys=True, default=str) + "\n"
        # O_APPEND + one write per record: concurrent writers never interleave lines.
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            os.write(fd, line.encode())
        finally:
            os.close(fd)

    def records(self) -> list[dict[str, Any]]:
        """Every readable record, oldest first (a damaged line is skipped, not fatal)."""
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return []
        out = []
        for line in text.splitlines():
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            if isinstance(rec, dict):
                out.append(rec)
        return out

    def raw_bytes(self) -> bytes:
        try:
            return self.path.read_bytes()
        except FileNotFoundError:
            return b""

    def last_applied(
        self,
        cluster: str,
        obj: dict[str, str],
        mitigation: str,
        records: list[dict[str, Any]] | None = None,
    ) -> dict[str, Any] | None:
        """The newest successful apply of ``mitigation`` on ``obj`` not yet undone, or None.

        ``records``: ``self.records()`` already read (to ask about many objects with one read)."""
        for rec in reversed(self.records() if records is None else records):
            if rec.get("cluster") != cluster or rec.get("object") != obj or rec.get("result") != "ok":
                continue
            if rec.get("mitigation") == f"undo-{mitigation}":
                return None
            if rec.get("mitigation") == mitigation:
                return rec
        return None
