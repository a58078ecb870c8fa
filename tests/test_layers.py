"""The layer contract (pyproject.toml [tool.importlinter], run by `make lint`) holds, and breaks on a
deliberate violation: a copy of the code where the scoring imports the Kubernetes client layer and a
page imports it directly."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LINT = Path(sys.executable).with_name("lint-imports")


def _copy(tmp: Path) -> Path:
    shutil.copytree(
        ROOT / "lib" / "dnsfleet", tmp / "lib" / "dnsfleet", ignore=shutil.ignore_patterns("*.pyc")
    )
    for pkg in ("dashboard", "pages"):
        shutil.copytree(ROOT / pkg, tmp / pkg, ignore=shutil.ignore_patterns("*.pyc", "__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp / "pyproject.toml")
    return tmp


def _lint(where: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(where / "lib"), str(where)]))
    return subprocess.run(
        [str(LINT), "--no-cache"], cwd=where, env=env, capture_output=True, text=True, timeout=120
    )


def test_the_code_keeps_the_contract(tmp_path):
    p = _lint(_copy(tmp_path))
    assert p.returncode == 0, p.stdout + p.stderr
    assert "0 broken" in p.stdout


def test_a_layer_violation_fails_lint(tmp_path):
    where = _copy(tmp_path)
    frames = where / "lib" / "dnsfleet" / "frames.py"
    frames.write_text(frames.read_text() + "\nfrom dnsfleet.kube import Kube  # noqa: E402,F401\n")
    page = where / "pages" / "overview.py"
    page.write_text("import dnsfleet.kube.client  # noqa: F401\n" + page.read_text())
    p = _lint(where)
    assert p.returncode == 1, p.stdout + p.stderr
    out = " ".join(p.stdout.split())
    assert "engine, frames and risk never import collect, mitigate or kube BROKEN" in out
    assert "dnsfleet.frames -> dnsfleet.kube" in out
    assert "pages.overview -> dnsfleet.kube.client" in out
    # frames now sits above kube, which sits below collect and mitigate: the layers still hold there
    assert "2 broken" in out
