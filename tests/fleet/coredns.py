"""Real CoreDNS behind the fleet's CoreDNS pods, so the scrape path (API server pod proxy to
``<podIP>:9153/metrics``) reads a real exposition.

Why a network namespace: every pod and node of the fleet carries a loopback address, and the API
server refuses to proxy to loopback ("address not allowed": its proxy dials only global unicast
addresses). So, per fleet run, the fleet creates its own network namespace joined to the host by a
veth pair, with a free ``198.18.X.0/24`` (RFC 2544's benchmarking range, never a real network) on the
link. Every ready CoreDNS pod gets an address in it (the seeded pods' ``status.podIP(s)`` are
patched, which keeps the seed cache valid), and behind each one, except the last
``spec.coredns_dark`` ready pods (the "nothing listening" case), a CoreDNS built from the upstream Go
module at the version the pod's image names (``tests/fleet/build.sh coredns``) runs inside the
namespace: DNS on ``<ip>:1053``, metrics on ``<ip>:9153``. Traffic to those addresses goes over the
veth into the namespace and nowhere else; deleting the namespace (after every process is stopped)
removes the link and its route. Creating a namespace needs root (CI runs as root); without it the
pods keep their loopback addresses and nothing listens.

Each served pod then answers a fixed query mix (``TRAFFIC``) sent by the fleet itself, so what a
correct scrape reads is known exactly (``expected_scrape``): request and rcode counts, and a latency
histogram with ``slow.test`` answered after 100 ms (the ``erratic`` plugin) and the rest at once.
Nothing else sends DNS queries to them.
"""

from __future__ import annotations

import ipaddress
import os
import random
import secrets
import socket
import struct
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.fleet import spec as S

DNS_PORT = 1053  # any port: only the fleet's own traffic uses it; the scrape reads METRICS_PORT
METRICS_PORT = 9153  # what the scraper asks the pod proxy for (dnsfleet.collect.scrape.METRICS_PORT)
SLOW_DELAY_S = 0.1  # the erratic plugin's delay for slow.test
# name -> (rcode CoreDNS answers, queries per served pod). 100 in all: shares read off directly.
TRAFFIC: dict[str, tuple[str, int]] = {
    "ok.test": ("NOERROR", 60),
    "nx.test": ("NXDOMAIN", 30),
    "fail.test": ("SERVFAIL", 5),
    "slow.test": ("NOERROR", 5),
}
_RCODES = {0: "NOERROR", 2: "SERVFAIL", 3: "NXDOMAIN", 5: "REFUSED"}
# Releases whose metrics count every answer a plugin *wrote* as NOERROR in coredns_dns_responses_total
# (the metrics Recorder dropped the rcode): https://github.com/coredns/coredns/issues/5125, fixed by
# https://github.com/coredns/coredns/pull/5126. Answers no plugin wrote (SERVFAIL here) keep their code.
RCODE_METRICS_BUG = frozenset({"1.8.7"})


def corefile(ip: str) -> str:
    """One pod's Corefile: both server blocks report to the same metrics listener, as CoreDNS allows."""
    return (
        f".:{DNS_PORT} {{\n"
        f"    bind {ip}\n"
        f"    prometheus {ip}:{METRICS_PORT}\n"
        "    errors\n"
        '    template IN A ok.test {\n        answer "{{ .Name }} 60 IN A 127.0.0.1"\n    }\n'
        "    template ANY ANY nx.test {\n        rcode NXDOMAIN\n    }\n"
        "    template ANY ANY fail.test {\n        rcode SERVFAIL\n    }\n"
        "}\n"
        f"slow.test:{DNS_PORT} {{\n"
        f"    bind {ip}\n"
        f"    prometheus {ip}:{METRICS_PORT}\n"
        f"    erratic {{\n        delay 1 {int(SLOW_DELAY_S * 1000)}ms\n    }}\n"
        "}\n"
    )


def query(ip: str, name: str, net: PodNet | None = None, port: int = DNS_PORT, timeout: float = 5.0) -> str:
    """Send one A query over UDP and return the answer's rcode name (raises OSError on timeout). Only to
    loopback or to an address inside ``net``, the namespace this fleet created."""
    if not (ipaddress.ip_address(ip).is_loopback or (net is not None and net.routes(ip))):
        raise ValueError(f"refusing to send DNS to {ip}: neither loopback nor inside this fleet's namespace")
    qid = random.randrange(1 << 16)
    qname = b"".join(bytes([len(p)]) + p.encode() for p in name.rstrip(".").split(".")) + b"\0"
    packet = struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, 0) + qname + struct.pack(">HH", 1, 1)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        s.sendto(packet, (ip, port))
        while True:
            data, _ = s.recvfrom(4096)
            if len(data) >= 4 and data[:2] == packet[:2]:
                return _RCODES.get(data[3] & 0x0F, str(data[3] & 0x0F))


def ready_pods(spec: S.ClusterSpec) -> list[S.PodFacts]:
    """The CoreDNS pods a scrape tries (ready and scheduled), in the order addresses are given out."""
    return [p for p in S.coredns_pods(spec) if p.ready and p.node is not None]


def served_pods(spec: S.ClusterSpec) -> list[S.PodFacts]:
    pods = ready_pods(spec)
    return pods[: len(pods) - spec.coredns_dark]


def expected_scrape(spec: S.ClusterSpec) -> dict[str, Any]:
    """What a scrape of this cluster's ready CoreDNS pods reads, from the traffic the fleet sent."""
    n = len(served_pods(spec))
    rcodes: dict[str, int] = {}
    for rcode, count in TRAFFIC.values():
        counted = "NOERROR" if spec.coredns_version in RCODE_METRICS_BUG and rcode != "SERVFAIL" else rcode
        rcodes[counted] = rcodes.get(counted, 0) + count * n
    total = sum(rcodes.values())
    return {
        "pods": n,
        "dark": [p.name for p in ready_pods(spec)[n:]],
        "requests": total,
        "rcodes": rcodes,
        "slow": TRAFFIC["slow.test"][1] * n,
        "version": spec.coredns_version,
    }


@dataclass
class CoreDNSPod:
    cluster: str
    pod: str
    ip: str
    served: bool
    started_at: float | None = None  # epoch seconds just before the process was spawned


def _build_info() -> tuple[Path, list[str]]:
    """(cache dir, versions) as tests/fleet/build.sh builds CoreDNS (``COREDNS_VERSIONS``)."""
    from tests.fleet.fleet import BUILD_SH

    out = subprocess.run(["bash", str(BUILD_SH), "print-coredns"], capture_output=True, text=True, check=True)
    cache, *versions = out.stdout.split()
    return Path(cache), [v.lstrip("v") for v in versions]


def binary(version: str) -> Path:
    """Where tests/fleet/build.sh caches the CoreDNS binary of ``version`` (with or without ``v``)."""
    return _build_info()[0] / ("v" + version.lstrip("v")) / "coredns"


def built_versions() -> list[str]:
    """The versions tests/fleet/build.sh builds, without the leading ``v``."""
    return _build_info()[1]


POD_NET = ipaddress.ip_network("198.18.0.0/15")  # RFC 2544 benchmarking range


def _ip(*argv: str) -> str:
    r = subprocess.run(["ip", *argv], capture_output=True, text=True, timeout=30)
    if r.returncode != 0:
        raise RuntimeError(f"ip {' '.join(argv)}: {(r.stderr or r.stdout).strip()[:200]}")
    return r.stdout


def _disable_ipv6(interface: str) -> None:
    Path(f"/proc/sys/net/ipv6/conf/{interface}/disable_ipv6").write_text("1")


# the same inside the namespace (/proc/sys/net is the reading process's namespace)
_DISABLE_IPV6 = "import sys; open(f'/proc/sys/net/ipv6/conf/{sys.argv[1]}/disable_ipv6', 'w').write('1')"


@dataclass
class PodNet:
    """A network namespace of this fleet joined to the host by a veth pair on one 198.18.X.0/24."""

    name: str  # the namespace: dnsfleet-<owner pid>-<hex>
    host_if: str  # dfh<hex> on the host; its peer dfn<hex> lives in the namespace
    peer: str
    subnet: ipaddress.IPv4Network
    next_host: int = 10

    @classmethod
    def create(cls) -> PodNet:
        if os.geteuid() != 0:
            raise PermissionError("creating a network namespace needs root")
        cleanup_stale()
        tag = secrets.token_hex(3)
        used = {ipaddress.ip_network(w, strict=False) for w in _ip("-o", "-4", "route").split() if "/" in w}
        free = [n for n in POD_NET.subnets(new_prefix=24) if not any(n.overlaps(u) for u in used)]
        if not free:
            raise RuntimeError(f"no free /24 in {POD_NET} for the fleet's pod network")
        net = cls(f"dnsfleet-{os.getpid()}-{tag}", f"dfh{tag}", f"dfn{tag}", random.choice(free))
        peer = net.peer
        gw, ns_ip = net.subnet[1], net.subnet[2]
        _ip("netns", "add", net.name)
        try:
            _ip("link", "add", net.host_if, "type", "veth", "peer", "name", peer)
            _ip("link", "set", peer, "netns", net.name)
            # IPv4 only: no IPv6 link-local address, so no router solicitations or MLD reports either
            _disable_ipv6(net.host_if)
            _ip("netns", "exec", net.name, sys.executable, "-c", _DISABLE_IPV6, peer)
            _ip("addr", "add", f"{gw}/24", "dev", net.host_if)
            _ip("link", "set", net.host_if, "up")
            _ip("-n", net.name, "link", "set", "lo", "up")
            _ip("-n", net.name, "addr", "add", f"{ns_ip}/24", "dev", peer)
            _ip("-n", net.name, "link", "set", peer, "up")
        except BaseException:
            net.delete()
            raise
        return net

    def allocate(self) -> str:
        """A new pod address, up on the namespace's end of the link."""
        ip = str(self.subnet[self.next_host])
        self.next_host += 1
        _ip("-n", self.name, "addr", "add", f"{ip}/32", "dev", self.peer)
        return ip

    def routes(self, ip: str) -> bool:
        """``ip`` is in this namespace's subnet and the host routes it over this fleet's veth, so traffic
        to it ends inside the namespace."""
        if ipaddress.ip_address(ip) not in self.subnet:
            return False
        return f" dev {self.host_if} " in _ip("route", "get", ip)

    def exec_argv(self, argv: list[str]) -> list[str]:
        return ["ip", "netns", "exec", self.name, *argv]

    def delete(self) -> None:
        """Remove the namespace (its veth and route go with it once no process is left inside)."""
        subprocess.run(["ip", "netns", "del", self.name], capture_output=True, timeout=30)
        subprocess.run(["ip", "link", "del", self.host_if], capture_output=True, timeout=30)


def cleanup_stale() -> None:
    """Namespaces of fleets whose owner process is gone (a killed test run)."""
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, timeout=30).stdout
    for line in out.splitlines():
        name = line.split()[0] if line.split() else ""
        parts = name.split("-")
        if len(parts) == 3 and parts[0] == "dnsfleet" and parts[1].isdigit():
            try:
                os.kill(int(parts[1]), 0)
            except ProcessLookupError:
                subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=30)
                subprocess.run(["ip", "link", "del", f"dfh{parts[2]}"], capture_output=True, timeout=30)
            except PermissionError:
                pass


def assign_addresses(specs: list[S.ClusterSpec], net: PodNet) -> list[CoreDNSPod]:
    """An address in the fleet's namespace for every ready CoreDNS pod of every cluster."""
    return [
        CoreDNSPod(spec.name, p.name, net.allocate(), p in served_pods(spec))
        for spec in specs
        for p in ready_pods(spec)
    ]


def patch_pod_ip(rest: Any, pod: CoreDNSPod) -> None:
    body = {"status": {"podIP": pod.ip, "podIPs": [{"ip": pod.ip}]}}
    rest.request(
        "PATCH",
        f"/api/v1/namespaces/kube-system/pods/{pod.pod}/status",
        body,
        "application/merge-patch+json",
        ok=(200,),
    )


def wait_ready(pod: CoreDNSPod, alive: Any, timeout: float = 30.0) -> None:
    """Until the pod's metrics listener answers (``alive()`` False: the process died, raise)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((pod.ip, METRICS_PORT), timeout=1):
                return
        except OSError:
            if not alive() or time.monotonic() > deadline:
                raise RuntimeError(f"CoreDNS for {pod.cluster}/{pod.pod} not listening on {pod.ip}") from None
            time.sleep(0.1)


def send_traffic(pods: list[CoreDNSPod], net: PodNet) -> None:
    """The fixed query mix to every served pod; every answer must carry the rcode the Corefile gives."""
    jobs = [
        (p.ip, name, rcode)
        for p in pods
        if p.served
        for name, (rcode, n) in TRAFFIC.items()
        for _ in range(n)
    ]

    def one(job: tuple[str, str, str]) -> None:
        ip, name, want = job
        got = query(ip, name, net)
        if got != want:
            raise RuntimeError(f"CoreDNS at {ip} answered {name} with {got}, expected {want}")

    with ThreadPoolExecutor(max_workers=16) as ex:
        list(ex.map(one, jobs))
