"""The active DNS probe (issue 17 §2). ``program.py`` is the program a probe pod runs; it uses the standard
library only, so it can be passed to a stock Python image as text (``program_source``)."""

from __future__ import annotations

from importlib import resources


def program_source() -> str:
    """The probe program's source, to run as ``python3 -`` with it on stdin."""
    return resources.files(__package__).joinpath("program.py").read_text(encoding="utf-8")
