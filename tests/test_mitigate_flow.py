"""The mitigation controller without a cluster: the write decision is obeyed by the library (not only by
a disabled button), the apply gate's reasons, and undo bookkeeping from the audit log."""

from __future__ import annotations

import pytest

from dnsfleet.authz import AuthSettings, Identity, decide, local_decision
from dnsfleet.kube import ObjectRef
from dnsfleet.mitigate.audit import AuditLog
from dnsfleet.mitigate.flow import Controller
from dnsfleet.mitigate.plan import Change, Plan, Result, WritesDisabled, apply


class _NoCluster:
    """Fails any API call: a refused write must not reach the API."""

    cluster = "c1"

    def __getattr__(self, name):  # pragma: no cover - reaching it fails the test
        raise AssertionError(f"no API call expected ({name})")


def _plan() -> Plan:
    plan = Plan(cluster="c1", mitigation="resolver-options")
    plan.changes.append(Change(ObjectRef("Deployment", "n", "w"), "json-patch", "why", {}, {}, []))
    return plan


def test_library_guard_obeys_the_decision_even_with_the_env_switch_on(tmp_path, monkeypatch):
    """A dashboard served on all interfaces without sign-in is read-only; DNSFLEET_ALLOW_WRITES=1 must
    not let a caller that skips the button write anyway."""
    monkeypatch.setenv("DNSFLEET_ALLOW_WRITES", "1")
    decision = decide(None, AuthSettings(), bind_address="0.0.0.0")
    assert not decision.may_write
    log = AuditLog(tmp_path / "audit.jsonl")
    with pytest.raises(WritesDisabled, match=r"served on all interfaces \(0\.0\.0\.0\) without sign-in"):
        apply(_NoCluster(), _plan(), allow_writes=True, confirm="c1", audit=log, decision=decision)
    ctrl = Controller("c1", decision=decision, audit=log)
    dry = [Result(ObjectRef("Deployment", "n", "w"), "ok", "dry run passed")]
    with pytest.raises(WritesDisabled, match="without sign-in"):
        ctrl.apply(_plan(), dry, "c1")
    assert log.records() == []


def test_apply_gate_lists_every_reason_and_clears_when_ready():
    off = Controller("c1", decision=local_decision(False, {}))
    plan = _plan()
    reasons = off.apply_blockers(plan, None, "c2")
    assert reasons[0].startswith("writes are off")
    assert "permissions not checked yet" in reasons and "run the dry run first" in reasons
    assert reasons[-1] == "type the cluster name 'c1' to confirm"
    on = Controller("c1", decision=local_decision(True, {}))
    plan.changes[0].allowed = True
    dry = [Result(plan.changes[0].ref, "ok", "dry run passed")]
    assert on.apply_blockers(plan, dry, "c1") == []
    assert on.apply_blockers(plan, dry, "c1", applied=True) == [
        "this plan was applied; plan again for another change"
    ]
    assert on.refusal("c1") is None and off.refusal("c1") is not None


def test_cli_impersonation_is_part_of_the_decision():
    who = Identity("alice", ("sre",), "command line")
    d = local_decision(True, {}, impersonate=who)
    assert d.may_write and d.impersonate and d.identity == who


def test_undoable_follows_the_newest_record_per_object(tmp_path):
    log = AuditLog(tmp_path / "audit.jsonl")

    def rec(name: str, mitigation: str, result: str = "ok", cluster: str = "c1") -> None:
        log.append(
            {
                "time": "t",
                "identity": "me",
                "cluster": cluster,
                "object": {"kind": "Deployment", "namespace": "n", "name": name},
                "mitigation": mitigation,
                "action": "json-patch",
                "patch": [],
                "previous": None,
                "applied": {},
                "result": result,
                "message": "",
                "batch": "b",
            }
        )

    rec("a", "resolver-options")
    rec("b", "resolver-options")
    rec("b", "undo-resolver-options")
    rec("c", "resolver-options", result="forbidden")
    rec("d", "resolver-options", cluster="c2")
    rec("b", "resolver-options")  # changed again after the undo
    rec("a", "undo-resolver-options", result="conflict")  # a failed undo leaves it undoable
    assert Controller("c1", audit=log).undoable() == {
        "n/Deployment/a": ObjectRef("Deployment", "n", "a"),
        "n/Deployment/b": ObjectRef("Deployment", "n", "b"),
    }
