"""Who else owns an object: Helm, Argo CD or Flux (``rules/data/managers.csv``, a source per row).

A patch made through the API to an object such a tool manages lasts only until its next upgrade, sync
or reconciliation. The mitigation plan warns and gives the manifest change to commit instead. The
evidence is what the tools write on the objects: labels, annotations and ``managedFields`` managers.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Any


@dataclass(frozen=True)
class Manager:
    tool: str  # Helm | Argo CD | Flux
    evidence: str  # e.g. 'label app.kubernetes.io/managed-by=Helm'
    undo: str  # what undoes an API patch
    source: str


@lru_cache(maxsize=1)
def _rows() -> tuple[dict[str, str], ...]:
    text = resources.files("dnsfleet.rules").joinpath("data/managers.csv").read_text()
    rows = tuple(csv.DictReader(text.splitlines()))
    for r in rows:
        if r["where"] not in ("label", "annotation") or not r["source"].strip():
            raise ValueError(f"rules/data/managers.csv: bad row {r}")
        re.compile(r["value"])
    return rows


def managed_by(obj: dict[str, Any]) -> list[Manager]:
    """The tools that manage ``obj``, one entry per tool (the first evidence found for it)."""
    meta = obj.get("metadata") if isinstance(obj.get("metadata"), dict) else {}
    labels = meta.get("labels") if isinstance(meta.get("labels"), dict) else {}
    annotations = meta.get("annotations") if isinstance(meta.get("annotations"), dict) else {}
    found: dict[str, Manager] = {}
    for r in _rows():
        if r["tool"] in found:
            continue
        values = labels if r["where"] == "label" else annotations
        value = values.get(r["key"])
        if isinstance(value, str) and re.search(r["value"], value):
            found[r["tool"]] = Manager(r["tool"], f"{r['where']} {r['key']}={value}", r["undo"], r["source"])
    return list(found.values())
