"""The race lab runs once per session (``lab_run``); tests marked ``lab`` read its results.

Skipped, with the reason, only where network namespaces cannot be made (not root, not Linux, no ``ip`` or
``iptables``); a lab that can be made but fails to build or run FAILS the tests with what went wrong.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.lab import net
from tests.lab.run import LabRun, run_lab


@pytest.fixture(scope="session")
def lab_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabRun]:
    if reason := net.available():
        pytest.skip(reason)
    try:
        yield run_lab(tmp_path_factory.mktemp("race-lab"))
    except net.LabError as e:
        pytest.fail(f"the race lab could not run: {e}", pytrace=False)


@pytest.fixture
def lab_root() -> None:
    if reason := net.available():
        pytest.skip(reason)
