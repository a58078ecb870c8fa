"""The race lab (issue 17 §3): real glibc and musl resolvers through a DNAT'd ClusterIP, with the
conntrack race emulated, assert what the option table and the stall rules claim."""

from __future__ import annotations

import os
import subprocess

import pytest

from tests.lab import cases as C
from tests.lab import net
from tests.lab.run import PROBES, LabRun

pytestmark = pytest.mark.lab


@pytest.mark.parametrize("case_id", [c.id for c in C.CASES])
def test_stall_is_what_the_rules_say(lab_run: LabRun, case_id: str) -> None:
    """Per lookup: the stall the rules predict (none where an option mitigates or the path avoids the
    race; R1's timeout for glibc; R5's resend interval per query pair for musl), or the failure."""
    case, r = C.BY_ID[case_id], lab_run.results[case_id]
    assert r.problem is None, r.problem
    assert C.problems(case, r.lookups, r.events) == [], C.expect(case).why


@pytest.mark.parametrize("case_id", [c.id for c in C.CASES if C.PATHS[c.path].exposed])
def test_wire_shows_what_the_table_says(lab_run: LabRun, case_id: str) -> None:
    """Honoured options change the queries on the wire as documented; ignored ones change nothing."""
    case, r = C.BY_ID[case_id], lab_run.results[case_id]
    b = C.behaviour(r.events)
    claims = C.claims(case)
    assert claims, "every exposed case checks at least one claim"
    failed = {claim: C.check_claim(claim, case, b) for claim, _ in claims}
    assert {k: v for k, v in failed.items() if v} == {}, claims


@pytest.mark.parametrize("case_id", [c.id for c in C.CASES if not C.PATHS[c.path].exposed])
def test_paths_without_the_race_never_reach_the_emulator(lab_run: LabRun, case_id: str) -> None:
    """The control clients and NodeLocal behind NOTRACK: not one packet queued to the emulator."""
    r = lab_run.results[case_id]
    assert r.lookups and all(not x["error"] for x in r.lookups)
    assert r.events == []


def test_the_emulator_saw_both_dns_servers(lab_run: LabRun) -> None:
    """statistic random spread the DNAT'd queries over both real servers."""
    sources = {e["src"] for r in lab_run.results.values() for e in r.events if e["qr"]}
    assert set(net.DNS_SERVERS) <= sources


def test_probe_reports_the_stalls_the_lab_makes(lab_run: LabRun) -> None:
    probe = next(p for p in PROBES if p.path == "race")
    rep = lab_run.results[probe.id].probe
    assert rep is not None, lab_run.results[probe.id].problem
    n = probe.lookups * len(probe.names)
    assert rep["format"] == "dnsfleet-probe/1" and rep["libc"].startswith("glibc")
    assert rep["resolv_conf"]["nameservers"] == [net.CLUSTER_IP]
    # kubelet's resolv.conf keeps glibc's 5 s timeout: every lookup waits it once (R1)
    assert (rep["lookups"], rep["errors"], rep["unfinished"], rep["not_started"]) == (n, 0, 0, 0)
    assert rep["ge_1s"] == rep["ge_2_5s"] == rep["ge_5s"] == n
    assert 5.0 <= rep["p50_s"] <= rep["max_s"] < 10.0  # one timeout each, never two
    assert {k: v["ge_5s"] for k, v in rep["names"].items()} == {name: probe.lookups for name in probe.names}


def test_probe_reports_no_stall_without_the_emulator(lab_run: LabRun) -> None:
    probe = next(p for p in PROBES if p.path == "clean")
    rep = lab_run.results[probe.id].probe
    assert rep is not None, lab_run.results[probe.id].problem
    n = probe.lookups * len(probe.names)
    assert (rep["lookups"], rep["errors"], rep["unfinished"]) == (n, 0, 0)
    assert rep["ge_1s"] == rep["ge_2_5s"] == rep["ge_5s"] == 0
    assert rep["max_s"] < 1.0


def test_lab_leaves_nothing_behind(lab_run: LabRun) -> None:
    """After the run: no lab namespace of this process and no /etc/netns entry of it."""
    mine = f"{net.PREFIX}-{os.getpid()}-"
    names = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert mine not in names
    leftovers = list(net.NETNS_ETC.glob(f"{mine}*")) if net.NETNS_ETC.is_dir() else []
    assert leftovers == []


def test_stale_namespaces_of_dead_runs_are_removed(lab_root: None) -> None:
    dead = subprocess.Popen(["true"])
    dead.wait()
    name = f"{net.PREFIX}-{dead.pid}-feed01-node"
    subprocess.run(["ip", "netns", "add", name], check=True)
    (net.NETNS_ETC / name).mkdir(parents=True, exist_ok=True)
    try:
        assert name in net.cleanup_stale()
        assert name not in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
        assert not (net.NETNS_ETC / name).exists()
    finally:
        subprocess.run(["ip", "netns", "del", name], capture_output=True)


def test_a_route_out_of_the_lab_is_refused_and_teardown_still_runs(lab_root: None, tmp_path) -> None:
    from tests.lab.run import coredns_binary

    lab = net.Lab(tmp_path, coredns_binary())
    try:
        lab.build()
        c = lab.add_client("c0", C.BY_ID["glibc/clean/default"].resolv_conf(), emulated=False)
        lab.verify_routes()
        net.run(["ip", "-n", c.ns, "route", "add", "10.0.0.0/8", "via", net.GATEWAY])
        with pytest.raises(net.LabError, match="outside the lab's ranges"):
            lab.verify_routes()
    finally:
        lab.close()
    names = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert lab.tag not in names
