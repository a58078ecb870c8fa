"""Guard: every address a server of the test fleet or the bench fleet can be made to dial is loopback,
or inside the network namespace the fleet itself created.

A real kube-apiserver dials pod IPs (pod proxy, used by the CoreDNS scrape) and node addresses (node
proxy, logs, exec). Tests may only send traffic to 127.0.0.0/8 or into namespaces they created, so pod
``status.podIP(s)``/``hostIP(s)`` and node ``status.addresses`` are loopback in the objects the seeders
build; in the running fleet the ready CoreDNS pods alone carry addresses inside the fleet's own
namespace (the API server refuses to proxy to loopback; ``tests/fleet/coredns.py``), routed over its
veth. EndpointSlice addresses may not be loopback (the API server refuses them) and are never dialed;
Service ClusterIPs are never dialed either.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

from bench import fleet as BF
from tests.fleet import coredns as D
from tests.fleet import objects as O
from tests.fleet import spec as S

REPO = Path(__file__).resolve().parents[1]


def _dialable(kind: str, obj: dict[str, Any]) -> list[str]:
    """The addresses a server may dial for this object (IP-typed fields only; Hostname is not used:
    the fleet's API servers prefer InternalIP, which the test below checks)."""
    st = obj.get("status") or {}
    if kind == "Pod":
        out = [st.get("podIP"), st.get("hostIP")]
        out += [p.get("ip") for p in st.get("podIPs") or []] + [h.get("ip") for h in st.get("hostIPs") or []]
        return [a for a in out if a]
    if kind == "Node":
        return [a["address"] for a in st.get("addresses") or [] if a.get("type") != "Hostname"]
    return []


def _not_loopback(waves: list[list[O.Item]]) -> list[str]:
    bad = []
    for wave in waves:
        for it in wave:
            obj = {**it.body, "status": it.status or it.body.get("status") or {}}
            for a in _dialable(it.kind, obj):
                if not ipaddress.ip_address(a).is_loopback:
                    bad.append(f"{it.kind} {it.body['metadata']['name']}: {a}")
    return bad


def _endpoint_addresses(waves: list[list[O.Item]]) -> list[str]:
    out = []
    for wave in waves:
        for it in wave:
            if it.kind == "EndpointSlice":
                out += [a for ep in it.body.get("endpoints", []) for a in ep["addresses"]]
            elif it.kind == "Endpoints":
                for sub in it.body.get("subsets", []):
                    out += [a["ip"] for k in ("addresses", "notReadyAddresses") for a in sub.get(k, [])]
    return out


@pytest.mark.parametrize("spec", [*S.FLEET, S.small_cluster()], ids=lambda s: s.name)
def test_fleet_objects_carry_only_loopback_dialable_addresses(spec):
    waves = O.build(spec)
    assert _not_loopback(waves) == []
    # the guard sees what it guards: pods and nodes with addresses exist in every cluster
    assert (
        sum(len(_dialable(it.kind, {**it.body, "status": it.status or {}})) for w in waves for it in w) > 10
    )
    eps = _endpoint_addresses(waves)
    assert eps and all(not ipaddress.ip_address(a).is_loopback for a in eps)


def test_bench_fleet_objects_carry_only_loopback_dialable_addresses():
    """The bench's full-size rewrite (valid octets past 255 nodes) keeps every dialable address loopback."""
    spec = BF.cluster_spec(1, pods=2500, nodes=300)
    waves = BF.full_size(spec, 1, O.build(spec))
    assert _not_loopback(waves) == []
    nodes = [it for w in waves for it in w if it.kind == "Node"]
    assert len(nodes) == 300
    ips = [a["address"] for n in nodes for a in n.status["addresses"] if a["type"] == "InternalIP"]
    assert len(set(ips)) == 300  # still distinct after the rewrite
    eps = _endpoint_addresses(waves)
    assert eps and all(not ipaddress.ip_address(a).is_loopback for a in eps)


def test_the_guard_catches_a_non_loopback_address():
    spec = S.small_cluster()
    waves = O.build(spec)
    pod = next(it for w in waves for it in w if it.kind == "Pod" and it.status.get("podIP"))
    pod.status["podIP"] = "10.1.2.3"
    assert _not_loopback(waves) == [f"Pod {pod.body['metadata']['name']}: 10.1.2.3"]


@pytest.mark.parametrize(("field", "value"), [("pod_prefix", "10.61"), ("node_cidr_prefix", "192.168.10")])
def test_a_spec_with_non_loopback_addresses_is_refused(field, value):
    bad = dataclasses.replace(S.small_cluster(), **{field: value})
    with pytest.raises(ValueError, match=r"127\.0\.0\.0/8"):
        S.validate([bad])


def test_coredns_queries_refuse_non_loopback_targets():
    with pytest.raises(ValueError, match="neither loopback nor inside"):
        D.query("10.0.0.10", "ok.test")


def test_every_fleet_coredns_version_is_built():
    """build.sh builds the CoreDNS versions the fleet's images name (each pod serves its own version)."""
    assert {s.coredns_version for s in [*S.FLEET, S.small_cluster()]} <= set(D.built_versions())


def test_apiservers_dial_nodes_by_internal_ip_only():
    """A Hostname address would make the API server resolve a name, then dial whatever it resolves to."""
    text = (REPO / "tests" / "fleet" / "fleet.py").read_text()
    assert '"--kubelet-preferred-address-types=InternalIP"' in text


_IP = re.compile(r"\b(?:\d{1,3}\.){3}\d{1,3}\b")


def test_docs_that_start_the_fleet_name_no_dialable_address_outside_loopback():
    """README and docs: commands a user runs against the fleet target 127.0.0.1 (URLs, --prometheus...)."""
    files = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md")), REPO / "bench" / "README.md"]
    bad = []
    for f in files:
        for line in f.read_text().splitlines():
            if "tests.fleet" not in line and "http://" not in line and "https://" not in line:
                continue
            for ip in _IP.findall(line):
                if not ipaddress.ip_address(ip).is_loopback:
                    bad.append(f"{f.name}: {line.strip()}")
    assert bad == []


def _inside(fleet, addr: str) -> bool:
    """Loopback, or an address of the fleet's own namespace that the host routes over its veth."""
    return _loopback(addr) or (fleet.net is not None and fleet.net.routes(addr))


@pytest.mark.fleet
def test_running_fleet_serves_only_loopback_pod_and_node_addresses(fleet):
    """What the real API servers hold (after the per-run CoreDNS addresses were patched in)."""
    if os.geteuid() == 0:
        assert fleet.net is not None  # CI runs as root: the scrape path is served for real there
    for name, rc in fleet.clusters.items():
        rest = rc.rest("viewer")
        try:
            pods = rest.request("GET", "/api/v1/pods")[1]["items"]
            nodes = rest.request("GET", "/api/v1/nodes")[1]["items"]
        finally:
            rest.close()
        addrs = [a for p in pods for a in _dialable("Pod", p)] + [
            a for n in nodes for a in _dialable("Node", n)
        ]
        assert len(addrs) > len(pods), name
        assert [a for a in addrs if not _inside(fleet, a)] == [], name
        coredns = {c.pod: c.ip for c in fleet.coredns if c.cluster == name}
        live = {p["metadata"]["name"]: p["status"].get("podIP") for p in pods}
        assert all(live[pod] == ip for pod, ip in coredns.items())
        # only the CoreDNS pods live in the namespace; every other address is loopback
        assert {a for a in addrs if not _loopback(a)} <= set(coredns.values())


@pytest.mark.fleet
def test_no_fleet_process_has_a_connection_outside_loopback(fleet):
    """One sample of every TCP socket of the fleet's servers (etcd, kube-apiserver, CoreDNS, Prometheus)."""
    pids = [pid for rc in fleet.clusters.values() for pid in (rc.etcd_pid, rc.apiserver_pid) if pid]
    pids += [p.pid for p in fleet._coredns_procs if p.pid] + [fleet.prometheus_pid or 0]
    out = subprocess.run(["ss", "-Htanp"], capture_output=True, text=True, check=True).stdout
    mine = [ln for ln in out.splitlines() if any(f"pid={pid}," in ln for pid in pids if pid)]
    assert mine  # the sample sees the fleet's listeners
    peers = [ln.split()[4].rsplit(":", 1)[0].strip("[]").split("%")[0] for ln in mine]
    assert [p for p in peers if p not in ("*", "0.0.0.0", "::") and not _inside(fleet, p)] == []


def _loopback(addr: str) -> bool:
    ip = ipaddress.ip_address(addr)
    mapped = getattr(ip, "ipv4_mapped", None)
    return (mapped or ip).is_loopback


@pytest.mark.parametrize(
    ("url", "outside"),
    [
        ("http://127.0.0.1:8501/_stcore/health", False),
        ("ws://localhost:8501/_stcore/stream", False),
        ("http://[::1]:8501/", False),
        ("data:image/png;base64,AAAA", False),
        ("https://fonts.gstatic.com/s/i/x.svg", True),
        ("http://10.0.0.1/", True),
        ("https://[2001:db8::1]/", True),
    ],
)
def test_browser_tests_block_every_request_outside_loopback(url, outside):
    from tests.browser.harness import outside_loopback

    assert outside_loopback(url) is outside
