"""One-click mitigations: plan -> diff -> server-side dry run -> apply -> audit -> undo.

- ``resolver_options``: add resolver options to workload pod templates (M1-M5).
- ``nodelocal``: render and apply NodeLocal DNSCache for a cluster's kube-proxy mode (M6).
- ``kernel``: a node upgrade plan as CSV (kernel upgrades cannot go through the API).
- ``collector``: the in-cluster collector's manifests (``dnsfleet.deploy``) applied and undone as an
  all-or-nothing plan (``dnsfleet deploy collector --apply/--undo``).
- ``plan``: the shared flow (``check_permissions``, ``dry_run``, ``apply``), ``audit``: the JSON lines log,
  ``errors``: ``MitigationError`` and the failures callers show as one line.

Clusters are reached through ``dnsfleet.kube`` (``Kube``: per-context clients, SelfSubjectAccessReview,
identity).

No Streamlit here: the dashboard page and the CLI (``dnsfleet.cli.mitigate``) both drive these
functions through ``flow.Controller``.
"""

from dnsfleet.mitigate.audit import AuditLog
from dnsfleet.mitigate.errors import FAILURES, MitigationError
from dnsfleet.mitigate.plan import (
    Change,
    Plan,
    Result,
    Skip,
    WritesDisabled,
    apply,
    check_permissions,
    dry_run,
    exclude_failed,
)

__all__ = [
    "FAILURES",
    "AuditLog",
    "Change",
    "MitigationError",
    "Plan",
    "Result",
    "Skip",
    "WritesDisabled",
    "apply",
    "check_permissions",
    "dry_run",
    "exclude_failed",
]
