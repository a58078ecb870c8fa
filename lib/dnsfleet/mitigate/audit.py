"""The audit log: one JSON object per line, appended, never rewritten.

Default path ``audit.jsonl`` in the state directory (``jsonl.state_dir``: ``DNSFLEET_STATE_DIR``,
else ``~/.local/state/dnsfleet``); ``DNSFLEET_AUDIT_LOG`` overrides it. A record holds
time, identity (a user name, never a credential), cluster, object, mitigation, action, the patch sent,
the previous value, the value applied, the result and its message. A cluster-scoped object (the
collector's Namespace, ClusterRole, ClusterRoleBinding) is recorded with namespace ``""``.

The file is read back (the Mitigations page, undo) as untrusted input: anyone who can write to it could
otherwise make the page fail for everyone or make undo write what they chose. ``records()`` keeps only
lines that are records of the shape dnsfleet writes (``record_problem``); undo further accepts only a
resolver-options record on a kind dnsfleet patches whose ``previous``/``applied`` values are pod
``dnsConfig`` objects (``undo_record_problem``); the collector's undo has its own check
(``collector.undo_record_problem``).
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

from dnsfleet import jsonl
from dnsfleet.kube.refs import KINDS

RECORD_FIELDS = (
    "time",
    "identity",
    "cluster",
    "object",
    "mitigation",
    "action",
    "patch",
    "previous",
    "applied",
    "result",
    "message",
    "batch",
)


# The kinds whose dnsConfig the resolver-options mitigation patches (resolver_options.TEMPLATE_SPEC; a
# test keeps the two equal): the only objects an audit record can make undo write to.
RESOLVER_OPTIONS_KINDS = frozenset({"Deployment", "StatefulSet", "DaemonSet", "CronJob"})
DNS_CONFIG_KEYS = frozenset({"nameservers", "searches", "options"})
_NAME = re.compile(r"^(?=.{1,253}$)[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_NAMESPACE = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")


def record_problem(rec: Any) -> str | None:
    """Why ``rec`` is not an audit record dnsfleet could have written, or None."""
    if not isinstance(rec, dict):
        return "not a JSON object"
    for key in ("cluster", "mitigation", "result"):
        if not isinstance(rec.get(key), str) or not rec[key]:
            return f"{key} is not a non-empty string"
    obj = rec.get("object")
    if not isinstance(obj, dict) or set(obj) != {"kind", "namespace", "name"}:
        return "object is not {kind, namespace, name}"
    if obj["kind"] not in KINDS:
        return f"object kind {str(obj['kind'])[:40]!r} is not one dnsfleet changes"
    if not KINDS[obj["kind"]].namespaced:
        if obj["namespace"] != "":
            return f"a {obj['kind']} is cluster-scoped: its namespace must be empty"
    elif not isinstance(obj["namespace"], str) or not _NAMESPACE.match(obj["namespace"]):
        return "object namespace is not a Kubernetes namespace name"
    if not isinstance(obj["name"], str) or not _NAME.match(obj["name"]):
        return "object name is not a Kubernetes object name"
    return None


def dns_config_problem(value: Any) -> str | None:
    """Why ``value`` is not a pod ``dnsConfig`` (or None, meaning "no dnsConfig"), or None when it is."""
    if value is None:
        return None
    if not isinstance(value, dict) or not set(value) <= DNS_CONFIG_KEYS:
        return "not a dnsConfig (only nameservers, searches and options)"
    for key in ("nameservers", "searches"):
        v = value.get(key)
        if v is not None and not (isinstance(v, list) and all(isinstance(x, str) for x in v)):
            return f"dnsConfig.{key} is not a list of strings"
    opts = value.get("options")
    if opts is not None:
        if not isinstance(opts, list):
            return "dnsConfig.options is not a list"
        for o in opts:
            if not (isinstance(o, dict) and set(o) <= {"name", "value"} and isinstance(o.get("name"), str)):
                return "dnsConfig.options holds an entry that is not {name, value}"
            if "value" in o and not isinstance(o["value"], str):
                return "dnsConfig.options holds a value that is not a string"
    return None


def undo_record_problem(rec: Any) -> str | None:
    """Why undo must not act on ``rec`` (a resolver-options apply record), or None."""
    if (why := record_problem(rec)) is not None:
        return why
    if rec["object"]["kind"] not in RESOLVER_OPTIONS_KINDS:
        return f"dnsfleet never patches the dnsConfig of a {rec['object']['kind']}"
    for key in ("previous", "applied"):
        if key not in rec:
            return f"{key} is missing"
        if (why := dns_config_problem(rec[key])) is not None:
            return f"{key}: {why}"
    return None


def default_path() -> Path:
    env = os.environ.get("DNSFLEET_AUDIT_LOG", "").strip()
    if env:
        return Path(env).expanduser()
    return jsonl.state_dir() / "audit.jsonl"


class AuditLog:
    """Append-only JSON lines file."""

    def __init__(self, path: str | Path | None = None) -> None:
        self.path = Path(path).expanduser() if path else default_path()
        self.skipped = 0  # lines the latest records() left out

    def append(self, record: dict[str, Any]) -> None:
        missing = [f for f in RECORD_FIELDS if f not in record]
        if missing:
            raise ValueError(f"audit record lacks {', '.join(missing)}")
        jsonl.append(self.path, record)

    def records(self) -> list[dict[str, Any]]:
        """Every readable record, oldest first. A damaged line, or one that is not a record of the shape
        dnsfleet writes (``record_problem``), is skipped, not fatal; ``self.skipped`` counts them."""
        self.skipped = 0
        try:
            text = self.path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return []
        out = []
        for line in text.splitlines():
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except ValueError:
                rec = None
            if record_problem(rec) is None:
                out.append(rec)
            else:
                self.skipped += 1
        return out

    def raw_bytes(self) -> bytes:
        try:
            return self.path.read_bytes()
        except FileNotFoundError:
            return b""

    def last_applied(
        self,
        cluster: str,
        obj: dict[str, str],
        mitigation: str,
        records: list[dict[str, Any]] | None = None,
    ) -> dict[str, Any] | None:
        """The newest successful apply of ``mitigation`` on ``obj`` not yet undone, or None.

        ``records``: ``self.records()`` already read (to ask about many objects with one read)."""
        for rec in reversed(self.records() if records is None else records):
            if rec.get("cluster") != cluster or rec.get("object") != obj or rec.get("result") != "ok":
                continue
            if rec.get("mitigation") == f"undo-{mitigation}":
                return None
            if rec.get("mitigation") == mitigation:
                return rec
        return None
