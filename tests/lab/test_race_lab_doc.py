"""The lab's bookkeeping: every row of the resolver option table has a lab case or the reason it has none,
and docs/race-lab.md (generated from a lab run) lists exactly the lab's cases."""

from __future__ import annotations

import csv
from pathlib import Path

from tests.lab import cases as C
from tests.lab.run import HEADER, PROBES

ROOT = Path(__file__).resolve().parents[2]
COVERAGE = Path(__file__).with_name("coverage.csv")
DOC = ROOT / "docs" / "race-lab.md"


def _coverage() -> list[dict[str, str]]:
    with COVERAGE.open(newline="") as f:
        return list(csv.DictReader(f))


def test_every_option_row_has_a_lab_case_or_a_reason() -> None:
    table = C.option_table()
    rows = _coverage()
    keys = [(r["resolver"], r["option"]) for r in rows]
    assert len(keys) == len(set(keys)), "a table row is listed twice"
    assert set(keys) == set(table), {"missing": set(table) - set(keys), "unknown": set(keys) - set(table)}
    for r in rows:
        key = (r["resolver"], r["option"])
        assert r["case"] or r["reason"].strip(), f"{key}: neither a lab case nor a reason"
        if r["case"]:
            case = C.BY_ID.get(r["case"])
            assert case is not None, f"{key}: no lab case {r['case']}"
            assert (case.resolver, r["option"]) == key and r["option"] in case.rows, (
                f"{key}: {r['case']} tests another row"
            )
            assert r["checks"].strip(), f"{key}: say what {r['case']} checks"


def test_every_row_a_case_tests_is_mapped_to_a_case() -> None:
    mapped = {(r["resolver"], r["option"]) for r in _coverage() if r["case"]}
    for c in C.CASES:
        assert {(c.resolver, o) for o in c.rows} <= mapped, c.id


def _doc_table() -> list[list[str]]:
    lines = DOC.read_text().splitlines()
    start = lines.index("| " + " | ".join(HEADER) + " |")
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        rows.append([c.strip() for c in line.strip("|").split("|")])
    return rows


def test_results_doc_lists_exactly_the_lab_cases() -> None:
    rows = _doc_table()
    assert [r[-1].strip("`") for r in rows] == [c.id for c in C.CASES], (
        "regenerate: sudo .venv/bin/python -m tests.lab.run --doc docs/race-lab.md"
    )
    for r, c in zip(rows, C.CASES, strict=True):
        assert (r[0], r[1].strip("`"), r[2], r[3]) == (
            c.resolver,
            c.options_text(),
            C.PATHS[c.path].label,
            c.name,
        )
        assert all(len(r) == len(HEADER) for r in rows)


def test_results_doc_shows_the_probe_runs_and_only_matching_cases() -> None:
    text = DOC.read_text()
    for p in PROBES:
        assert f"| {C.PATHS[p.path].label} |" in text
    assert all(r[HEADER.index("match")] == "yes" for r in _doc_table()), (
        "the doc was made from a failing lab run"
    )
