"""Pure helpers on API objects: a small RFC 6902 JSON patch applier (to show exactly what a patch does),
the cleaning used for diffs, YAML rendering and unified diffs."""

from __future__ import annotations

import copy
import difflib
from typing import Any

import yaml

from dnsfleet.mitigate.errors import MitigationError

# Server-owned bookkeeping that says nothing about the change; left out of diffs.
_NOISE_META = ("managedFields", "resourceVersion", "uid", "generation", "creationTimestamp", "selfLink")
_NOISE_ANNOTATIONS = ("kubectl.kubernetes.io/last-applied-configuration", "deployment.kubernetes.io/revision")


def escape(token: str) -> str:
    """Escape one JSON pointer token (RFC 6901)."""
    return token.replace("~", "~0").replace("/", "~1")


def _tokens(pointer: str) -> list[str]:
    if pointer == "":
        return []
    if not pointer.startswith("/"):
        raise MitigationError(f"bad JSON pointer {pointer!r}")
    return [t.replace("~1", "/").replace("~0", "~") for t in pointer[1:].split("/")]


def get_path(doc: Any, pointer: str) -> Any:
    """The value at ``pointer``, or None when any part is missing."""
    cur = doc
    for t in _tokens(pointer):
        if isinstance(cur, dict):
            if t not in cur:
                return None
            cur = cur[t]
        elif isinstance(cur, list):
            try:
                cur = cur[int(t)]
            except (ValueError, IndexError):
                return None
        else:
            return None
    return cur


def apply_json_patch(doc: Any, ops: list[dict[str, Any]]) -> Any:
    """Apply add/remove/replace/test operations to a copy of ``doc`` (what the API server will do)."""
    out = copy.deepcopy(doc)
    for op in ops:
        kind, path = op.get("op"), op.get("path", "")
        toks = _tokens(path)
        if kind == "test":
            if get_path(out, path) != op.get("value"):
                raise MitigationError(f"JSON patch test failed at {path}")
            continue
        if not toks:
            raise MitigationError("JSON patch on the document root is not supported")
        parent = out
        for t in toks[:-1]:
            parent = parent[int(t)] if isinstance(parent, list) else parent.get(t)
            if parent is None:
                raise MitigationError(f"JSON patch path {path} does not exist")
        last = toks[-1]
        if kind in ("add", "replace"):
            value = copy.deepcopy(op.get("value"))
            if isinstance(parent, list):
                idx = len(parent) if last == "-" else int(last)
                if kind == "add":
                    parent.insert(idx, value)
                else:
                    parent[idx] = value
            else:
                if kind == "replace" and last not in parent:
                    raise MitigationError(f"JSON patch replace: {path} does not exist")
                parent[last] = value
        elif kind == "remove":
            if isinstance(parent, list):
                del parent[int(last)]
            elif last in parent:
                del parent[last]
            else:
                raise MitigationError(f"JSON patch remove: {path} does not exist")
        else:
            raise MitigationError(f"unsupported JSON patch op {kind!r}")
    return out


def clean(obj: dict[str, Any] | None) -> dict[str, Any] | None:
    """The object without status and server bookkeeping, for before/after views."""
    if obj is None:
        return None
    out = copy.deepcopy(obj)
    out.pop("status", None)
    meta = out.get("metadata") or {}
    for k in _NOISE_META:
        meta.pop(k, None)
    ann = meta.get("annotations")
    if isinstance(ann, dict):
        for k in _NOISE_ANNOTATIONS:
            ann.pop(k, None)
        if not ann:
            meta.pop("annotations")
    return out


def project(live: Any, shape: Any) -> Any:
    """``live`` restricted to the keys present in ``shape`` (the fields a server-side apply manages);
    list items are projected pairwise when both lists have the same length."""
    if isinstance(shape, dict) and isinstance(live, dict):
        return {k: project(live[k], shape[k]) for k in shape if k in live}
    if isinstance(shape, list) and isinstance(live, list) and len(shape) == len(live):
        return [project(a, b) for a, b in zip(live, shape, strict=True)]
    return copy.deepcopy(live)


class _Dumper(yaml.SafeDumper):
    def ignore_aliases(self, data: Any) -> bool:
        # A dict shared by two places of one object (the collector's labels) is written out twice: a
        # diff shows values, never YAML anchors.
        return True


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    # Multi-line strings (the Corefile) as literal blocks, so diffs show them line by line.
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def to_yaml(obj: Any) -> str:
    """Stable YAML (sorted keys: server-side key order never shows up as a change)."""
    if obj is None:
        return ""
    return yaml.dump(obj, Dumper=_Dumper, sort_keys=True, default_flow_style=False, width=120)


def to_yaml_documents(objs: list[dict[str, Any]]) -> str:
    """Several objects as one multi-document YAML file (``kubectl apply -f`` compatible)."""
    return "".join("---\n" + to_yaml(o) for o in objs)


def unified_diff(before: Any, after: Any, label: str) -> str:
    """Unified diff of the YAML of ``before`` and ``after``; empty when they are the same."""
    a = to_yaml(before).splitlines(keepends=True)
    b = to_yaml(after).splitlines(keepends=True)
    return "".join(
        difflib.unified_diff(
            a,
            b,
            fromfile=f"{label} (live)" if before is not None else "/dev/null",
            tofile=f"{label} (planned)" if after is not None else "/dev/null",
        )
    )
