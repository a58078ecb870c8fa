"""Issue 16.10: every third-party package the code imports directly is declared, pinned, in the
requirements files: runtime imports (lib/, dashboard/, pages/) in requirements.txt, test and bench
imports in requirements.txt or requirements-dev.txt. A package that only arrives as another's
dependency can vanish with that package's next release."""

from __future__ import annotations

import ast
import re
import sys
from importlib.metadata import packages_distributions
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FIRST_PARTY = {"dnsfleet", "dashboard", "pages", "tests", "bench", "__future__"}
RUNTIME = ("lib", "dashboard", "pages")
DEV = ("tests", "bench")


def imported_modules(dirs: tuple[str, ...]) -> dict[str, str]:
    """Top-level third-party module -> the first file importing it."""
    found: dict[str, str] = {}
    for d in dirs:
        for f in sorted((ROOT / d).rglob("*.py")):
            for node in ast.walk(ast.parse(f.read_text(encoding="utf-8"))):
                names = []
                if isinstance(node, ast.Import):
                    names = [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                for n in names:
                    top = n.split(".")[0]
                    if top not in sys.stdlib_module_names and top not in FIRST_PARTY:
                        found.setdefault(top, str(f.relative_to(ROOT)))
    return found


def declared(*files: str) -> dict[str, str]:
    """Normalised distribution name -> its pin, from requirement files."""
    out = {}
    for name in files:
        for line in (ROOT / name).read_text().splitlines():
            line = line.split("#", 1)[0].strip()
            if not line:
                continue
            m = re.fullmatch(r"([A-Za-z0-9_.\-]+)(?:\[[^\]]*\])?\s*(==.+)?", line)
            assert m, f"{name}: cannot read requirement line {line!r}"
            out[_norm(m.group(1))] = m.group(2) or ""
    return out


def _norm(dist: str) -> str:
    return re.sub(r"[-_.]+", "-", dist).lower()


def _missing(modules: dict[str, str], have: dict[str, str]) -> list[str]:
    dists = packages_distributions()
    missing = []
    for mod, where in sorted(modules.items()):
        names = dists.get(mod)
        assert names, f"{where} imports {mod}, which no installed distribution provides"
        if not any(_norm(d) in have for d in names):
            missing.append(f"{mod} (distribution {names[0]}, imported by {where})")
    return missing


def test_runtime_imports_are_declared_in_requirements_txt():
    assert _missing(imported_modules(RUNTIME), declared("requirements.txt")) == []


def test_test_and_bench_imports_are_declared():
    assert _missing(imported_modules(DEV), declared("requirements.txt", "requirements-dev.txt")) == []


def test_every_requirement_is_pinned():
    for name, pin in declared("requirements.txt", "requirements-dev.txt").items():
        assert pin.startswith("=="), f"{name} is not pinned"


def test_the_check_sees_an_undeclared_import():
    """The scan above would catch google.protobuf arriving only through streamlit."""
    mods = imported_modules(RUNTIME)
    assert mods["google"].startswith("lib/")
    assert _missing({"google": "x.py"}, {"streamlit": "==1"}) == [
        "google (distribution protobuf, imported by x.py)"
    ]
