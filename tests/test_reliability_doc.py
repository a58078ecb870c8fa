"""docs/reliability.md names a test for every scenario: each of them must exist."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_every_test_named_in_the_reliability_table_exists() -> None:
    doc = (ROOT / "docs" / "reliability.md").read_text()
    refs = set(re.findall(r"`(tests/[\w/]+\.py)::(\w+)`", doc))
    assert len(refs) > 50
    missing = []
    for path, name in sorted(refs):
        tree = ast.parse((ROOT / path).read_text())
        names = {n.name for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)}
        if name not in names:
            missing.append(f"{path}::{name}")
    assert missing == []
