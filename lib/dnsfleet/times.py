"""Reading back the ISO-8601 times dnsfleet writes (snapshots, audit and probe logs)."""

from __future__ import annotations

from datetime import UTC, datetime


def parse_iso(value: object) -> datetime | None:
    """An ISO-8601 time (``Z`` or an offset; UTC when it has neither) as an aware datetime; None for
    anything else (not a string, empty, not a time)."""
    if not isinstance(value, str) or not value:
        return None
    try:
        t = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return t if t.tzinfo else t.replace(tzinfo=UTC)
