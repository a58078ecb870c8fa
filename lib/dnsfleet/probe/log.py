"""The probe log: one JSON object per probe run, appended (like the audit log), read by
``dnsfleet mitigate verify`` for the client-side before/after verdict.

Default path ``probes.jsonl`` in the state directory (``jsonl.state_dir``); ``DNSFLEET_PROBE_LOG`` overrides it. A run holds
``time`` (ISO-8601 UTC, when its results were read), ``cluster``, ``phase`` (``before``/``after`` a
change, or null), ``batch`` (the change's audit batch, or null) and ``results``: per node and resolver
``status`` (``ok`` or why not), the probe program's ``report`` and the ``image``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from dnsfleet import jsonl


def default_path() -> Path:
    env = os.environ.get("DNSFLEET_PROBE_LOG", "").strip()
    return Path(env).expanduser() if env else jsonl.state_dir() / "probes.jsonl"


class ProbeLog:
    def __init__(self, path: str | Path | None = None) -> None:
        self.path = Path(path).expanduser() if path else default_path()

    def append(self, run: dict[str, Any]) -> None:
        for key in ("time", "cluster", "results"):
            if key not in run:
                raise ValueError(f"probe run lacks {key}")
        jsonl.append(self.path, run)

    def records(self) -> list[dict[str, Any]]:
        """Every readable run, oldest first (a damaged line is skipped)."""
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
