"""The race lab's network: a Kubernetes node in miniature, made of network namespaces.

::

    client pods (one namespace each)          node namespace                      DNS namespace
    eth0 198.18.64.x/24 ──veth── vcN ┐   br0 198.18.64.1/24                   eth0 198.18.65.2/24  CoreDNS a
                                     ├── iptables: DNAT 198.19.0.10:53          198.18.65.3/24  CoreDNS b
    eth0 198.18.64.y/24 ──veth── vcM ┘     statistic random → a | b  ── vsrv 198.18.65.1/24 ──veth── eth0
                                         NFQUEUE → tests/lab/emulator.py
                                         lo 169.254.20.10 (NOTRACK), 169.254.20.11: NodeLocal CoreDNS

- The namespaces have no link to the host namespace (no route, no veth): nothing sent in the lab can leave
  it. Addresses come from 198.18.0.0/15 (RFC 2544 benchmarking) and 169.254.20.0/24 (NodeLocal DNSCache's
  link-local default), and ``verify_routes`` checks every client reaches the ClusterIP and the NodeLocal
  addresses over its own veth and the node reaches both subnets over the lab's links.
- Clients ``198.18.64.0/25`` pass the emulator (``emulated``), clients ``198.18.64.128/25`` do not (the
  control path "no emulator").
- The node's ``kube-proxy`` part is one service chain like iptables-mode kube-proxy writes for kube-dns:
  ``-m statistic --mode random --probability 0.5`` DNAT to one of two real CoreDNS servers (the binaries
  tests/fleet/build.sh builds and caches), UDP and TCP.
- NodeLocal DNSCache runs as real node-local-dns does, in the node's network namespace (it is a hostNetwork
  DaemonSet) on a link-local address, not DNAT'd, with node-cache's NOTRACK rules for 169.254.20.10
  (``cmd/node-cache/app/cache_app.go``). The same server also listens on 169.254.20.11 *without* NOTRACK:
  the path when node-cache's iptables setup failed (``coredns_nodecache_setup_errors_total``). It is a
  CoreDNS answering from its own zone data (a warm cache); the cache's upstream hop (TCP to kube-dns,
  ``force_tcp``) is not part of the lab.
- Namespaces are named ``dnslab-<owner pid>-<tag>-<role>``; ``cleanup_stale`` removes those of owners that
  are gone (a killed run), with the processes inside them and their ``/etc/netns`` directories.
- Each client's resolv.conf is ``/etc/netns/<namespace>/resolv.conf``, which ``ip netns exec`` bind-mounts
  over ``/etc/resolv.conf`` for the processes it starts.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

CLIENT_NET = ipaddress.ip_network("198.18.64.0/24")
EMULATED = ipaddress.ip_network("198.18.64.0/25")
SERVER_NET = ipaddress.ip_network("198.18.65.0/24")
CLUSTER_IP = "198.19.0.10"
NODELOCAL_IP = "169.254.20.10"  # with NOTRACK, as node-cache installs it
NODELOCAL_TRACKED_IP = "169.254.20.11"  # the same cache without NOTRACK (node-cache setup failed)
GATEWAY = str(CLIENT_NET[1])
NODE_SRV_IP = str(SERVER_NET[1])
DNS_SERVERS = (str(SERVER_NET[2]), str(SERVER_NET[3]))
LAB_RANGES = (ipaddress.ip_network("198.18.0.0/15"), ipaddress.ip_network("169.254.20.0/24"))
QUEUE = 0
PREFIX = "dnslab"
NETNS_ETC = Path("/etc/netns")
HERE = Path(__file__).resolve().parent

ZONE_NAMES = ("kubernetes.default.svc.lab.test", "api.example.test")
SEARCH = ("default.svc.lab.test", "svc.lab.test", "lab.test")


class LabError(RuntimeError):
    """The lab could not be built or run (the message says what failed)."""


def available() -> str | None:
    """None when this process can build the lab, else why not (the lab tests' skip reason)."""
    if sys.platform != "linux":
        return "the race lab needs Linux network namespaces"
    if os.geteuid() != 0:
        return "the race lab creates network namespaces, veths and iptables rules: it must run as root"
    for tool in ("ip", "iptables-restore"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (bash tests/fleet/install-system-deps.sh installs it)"
    return None


def run(argv: list[str], timeout: float = 30, check: bool = True) -> subprocess.CompletedProcess[str]:
    r = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    if check and r.returncode != 0:
        raise LabError(f"{' '.join(argv)}: {(r.stderr or r.stdout).strip()[:300]}")
    return r


def corefile(ips: tuple[str, ...]) -> str:
    """A CoreDNS serving the lab's zone on ``ips``:53: A and AAAA for ``ZONE_NAMES``, NXDOMAIN otherwise.
    Answers carry addresses from the lab's ranges only as data (nothing ever connects to them)."""
    match = "\n".join(f'        match "^{n.replace(".", "[.]")}[.]$"' for n in ZONE_NAMES)
    return (
        ".:53 {\n"
        f"    bind {' '.join(ips)}\n"
        "    errors\n"
        f"    template IN A {{\n{match}\n"
        '        answer "{{ .Name }} 30 IN A 198.18.66.1"\n        fallthrough\n    }\n'
        f"    template IN AAAA {{\n{match}\n"
        '        answer "{{ .Name }} 30 IN AAAA 2001:db8::1"\n        fallthrough\n    }\n'
        "    template ANY ANY {\n        rcode NXDOMAIN\n    }\n"
        "}\n"
    )


def iptables_rules() -> str:
    """The node's ruleset (iptables-restore format)."""
    svc = "KUBE-SVC-LABDNS"
    return "\n".join(
        [
            "*raw",
            ":PREROUTING ACCEPT [0:0]",
            ":OUTPUT ACCEPT [0:0]",
            # node-cache's NOTRACK rules, for the NOTRACK address only
            f"-A PREROUTING -d {NODELOCAL_IP}/32 -p udp --dport 53 -j NOTRACK",
            f"-A PREROUTING -d {NODELOCAL_IP}/32 -p tcp --dport 53 -j NOTRACK",
            f"-A OUTPUT -s {NODELOCAL_IP}/32 -p udp --sport 53 -j NOTRACK",
            f"-A OUTPUT -s {NODELOCAL_IP}/32 -p tcp --sport 53 -j NOTRACK",
            "COMMIT",
            "*mangle",
            ":PREROUTING ACCEPT [0:0]",
            ":OUTPUT ACCEPT [0:0]",
            # the emulator sees tracked DNS queries of emulated clients and the answers to them
            f"-A PREROUTING -i br0 -s {EMULATED} -p udp --dport 53 -m conntrack ! --ctstate UNTRACKED "
            f"-j NFQUEUE --queue-num {QUEUE}",
            f"-A PREROUTING -i vsrv -d {EMULATED} -p udp --sport 53 -j NFQUEUE --queue-num {QUEUE}",
            f"-A OUTPUT -d {EMULATED} -p udp --sport 53 -m conntrack ! --ctstate UNTRACKED "
            f"-j NFQUEUE --queue-num {QUEUE}",
            "COMMIT",
            "*nat",
            ":PREROUTING ACCEPT [0:0]",
            f":{svc} - [0:0]",
            f"-A PREROUTING -d {CLUSTER_IP}/32 -p udp --dport 53 -j {svc}",
            f"-A PREROUTING -d {CLUSTER_IP}/32 -p tcp --dport 53 -j {svc}",
            f"-A {svc} -m statistic --mode random --probability 0.5 -j DNAT --to-destination {DNS_SERVERS[0]}",
            f"-A {svc} -j DNAT --to-destination {DNS_SERVERS[1]}",
            "COMMIT",
            "",
        ]
    )


@dataclass
class Client:
    """A client "pod": its namespace, address and resolv.conf."""

    ns: str
    ip: str
    resolv_conf: str

    @property
    def emulated(self) -> bool:
        return ipaddress.ip_address(self.ip) in EMULATED


@dataclass
class Lab:
    workdir: Path
    coredns: Path
    tag: str = field(default_factory=lambda: secrets.token_hex(3))
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    namespaces: list[str] = field(default_factory=list)
    clients: list[Client] = field(default_factory=list)
    _next: dict[bool, int] = field(default_factory=lambda: {True: 10, False: 130})

    @property
    def node(self) -> str:
        return self.ns_name("node")

    @property
    def dns(self) -> str:
        return self.ns_name("dns")

    @property
    def events_path(self) -> Path:
        return self.workdir / "emulator.jsonl"

    def ns_name(self, role: str) -> str:
        return f"{PREFIX}-{os.getpid()}-{self.tag}-{role}"

    # -- building -----------------------------------------------------------------------------------
    def _add_ns(self, name: str) -> None:
        run(["ip", "netns", "add", name])
        self.namespaces.append(name)
        run(["ip", "-n", name, "link", "set", "lo", "up"])

    def _sysctl(self, ns: str, key: str, value: str, required: bool = True) -> None:
        path = Path("/proc/sys") / key.replace(".", "/")
        r = run(["ip", "netns", "exec", ns, "sh", "-c", f"echo {value} > {path}"], check=False)
        if required and r.returncode != 0:
            raise LabError(f"sysctl {key}={value} in {ns}: {r.stderr.strip()}")

    def build(self) -> None:
        """Node, DNS servers, NodeLocal cache and emulator; clients come with ``add_client``."""
        if reason := available():
            raise LabError(reason)
        cleanup_stale()
        self.workdir.mkdir(parents=True, exist_ok=True)
        node, dns = self.node, self.dns
        self._add_ns(node)
        self._add_ns(dns)
        self._sysctl(node, "net.ipv4.ip_forward", "1")
        self._sysctl(node, "net.ipv4.conf.all.rp_filter", "0")
        self._sysctl(node, "net.bridge.bridge-nf-call-iptables", "0", required=False)
        run(["ip", "-n", node, "link", "add", "br0", "type", "bridge"])
        run(["ip", "-n", node, "addr", "add", f"{GATEWAY}/{CLIENT_NET.prefixlen}", "dev", "br0"])
        run(["ip", "-n", node, "link", "set", "br0", "up"])
        run(["ip", "-n", node, "addr", "add", f"{NODELOCAL_IP}/32", "dev", "lo"])
        run(["ip", "-n", node, "addr", "add", f"{NODELOCAL_TRACKED_IP}/32", "dev", "lo"])
        run(["ip", "-n", node, "link", "add", "vsrv", "type", "veth", "peer", "name", "eth0", "netns", dns])
        run(["ip", "-n", node, "addr", "add", f"{NODE_SRV_IP}/{SERVER_NET.prefixlen}", "dev", "vsrv"])
        run(["ip", "-n", node, "link", "set", "vsrv", "up"])
        for ip in DNS_SERVERS:
            run(["ip", "-n", dns, "addr", "add", f"{ip}/{SERVER_NET.prefixlen}", "dev", "eth0"])
        run(["ip", "-n", dns, "link", "set", "eth0", "up"])
        run(["ip", "-n", dns, "route", "add", str(CLIENT_NET), "via", NODE_SRV_IP, "dev", "eth0"])
        rules = self.workdir / "iptables.rules"
        rules.write_text(iptables_rules())
        run(["ip", "netns", "exec", node, "iptables-restore", str(rules)])
        self._start_emulator()
        for i, ip in enumerate(DNS_SERVERS):
            self._start_coredns(dns, f"coredns-{'ab'[i]}", (ip,))
        self._start_coredns(node, "nodelocal", (NODELOCAL_IP, NODELOCAL_TRACKED_IP))
        self._wait_listening(dns, [f"{ip}:53" for ip in DNS_SERVERS])
        self._wait_listening(node, [f"{NODELOCAL_IP}:53", f"{NODELOCAL_TRACKED_IP}:53"])

    def _spawn(self, ns: str, argv: list[str], log: str) -> subprocess.Popen[bytes]:
        out = open(self.workdir / log, "wb")  # noqa: SIM115 - the process owns it until it exits
        p = subprocess.Popen(
            ["ip", "netns", "exec", ns, *argv], stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
        out.close()
        self.procs.append(p)
        return p

    def _start_coredns(self, ns: str, name: str, ips: tuple[str, ...]) -> None:
        conf = self.workdir / f"{name}.Corefile"
        conf.write_text(corefile(ips))
        self._spawn(ns, [str(self.coredns), "-conf", str(conf)], f"{name}.log")

    def _start_emulator(self) -> None:
        argv = [
            sys.executable,
            str(HERE / "emulator.py"),
            "--queue",
            str(QUEUE),
            "--log",
            str(self.events_path),
        ]
        p = self._spawn(self.node, argv, "emulator.log")
        deadline = time.monotonic() + 20
        log = self.workdir / "emulator.log"
        while b"ready" not in log.read_bytes():
            if p.poll() is not None or time.monotonic() > deadline:
                raise LabError(f"the race emulator did not start: {log.read_text()[-500:]}")
            time.sleep(0.05)

    def _wait_listening(self, ns: str, addrs: list[str], timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while True:
            out = run(["ip", "netns", "exec", ns, "ss", "-Hlnu"]).stdout
            missing = [a for a in addrs if f" {a} " not in f" {' '.join(out.split())} "]
            if not missing:
                return
            dead = [p for p in self.procs if p.poll() is not None]
            if dead or time.monotonic() > deadline:
                logs = {f.name: f.read_text()[-300:] for f in self.workdir.glob("*.log")}
                raise LabError(f"DNS servers not listening on {missing} in {ns}: {logs}")
            time.sleep(0.1)

    def add_client(self, role: str, resolv_conf: str, emulated: bool) -> Client:
        """A client namespace on the node's bridge, with its own resolv.conf."""
        n = self._next[emulated]
        net = EMULATED if emulated else CLIENT_NET
        if n >= (126 if emulated else 254):
            raise LabError(f"no client address left in {net}")
        self._next[emulated] = n + 1
        ns, ip, port = self.ns_name(role), str(CLIENT_NET[n]), f"vc{n}"
        self._add_ns(ns)
        etc = NETNS_ETC / ns
        etc.mkdir(parents=True, exist_ok=True)
        (etc / "resolv.conf").write_text(resolv_conf)
        run(["ip", "-n", self.node, "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", ns])
        run(["ip", "-n", self.node, "link", "set", port, "master", "br0", "up"])
        run(["ip", "-n", ns, "addr", "add", f"{ip}/{CLIENT_NET.prefixlen}", "dev", "eth0"])
        run(["ip", "-n", ns, "link", "set", "eth0", "up"])
        for dst in (CLUSTER_IP, NODELOCAL_IP, NODELOCAL_TRACKED_IP):
            run(["ip", "-n", ns, "route", "add", f"{dst}/32", "via", GATEWAY, "dev", "eth0"])
        client = Client(ns, ip, resolv_conf)
        self.clients.append(client)
        return client

    def verify_routes(self) -> None:
        """Every lab destination is reached over the lab's own links, from every client and from the node;
        and no lab namespace has a route out of the lab ranges."""

        def via(ns: str, dst: str) -> str:
            words = run(["ip", "-n", ns, "-o", "route", "get", dst]).stdout.split()
            return words[words.index("dev") + 1] if "dev" in words else "?"

        for c in self.clients:
            for dst in (CLUSTER_IP, NODELOCAL_IP, NODELOCAL_TRACKED_IP):
                if via(c.ns, dst) != "eth0":
                    raise LabError(f"{c.ns}: {dst} is not routed over the client's veth")
        for dst, dev in ((DNS_SERVERS[0], "vsrv"), (DNS_SERVERS[1], "vsrv"), (str(CLIENT_NET[10]), "br0")):
            if via(self.node, dst) != dev:
                raise LabError(f"{self.node}: {dst} is not routed over {dev}")
        for ns in self.namespaces:
            for line in run(
                ["ip", "-n", ns, "-o", "-4", "route", "show", "table", "all"]
            ).stdout.splitlines():
                dst = line.split()[0] if line.split()[0] not in ("local", "broadcast") else line.split()[1]
                if dst == "default" or not any(
                    ipaddress.ip_network(dst, strict=False).subnet_of(r)
                    or ipaddress.ip_network(dst).is_loopback
                    for r in LAB_RANGES
                ):
                    raise LabError(f"{ns} has a route outside the lab's ranges: {line}")

    def exec(self, ns: str, argv: list[str], timeout: float = 90) -> subprocess.CompletedProcess[str]:
        return run(["ip", "netns", "exec", ns, *argv], timeout=timeout, check=False)

    # -- teardown -----------------------------------------------------------------------------------
    def close(self) -> None:
        """Stop every process the lab started, then remove its namespaces and resolv.conf files."""
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(timeout=10)
        for ns in reversed(self.namespaces):
            _remove_ns(ns)
        self.namespaces.clear()


def _remove_ns(ns: str) -> None:
    """Kill what still runs in a lab namespace (only lab namespaces reach here), then delete it."""
    pids = subprocess.run(
        ["ip", "netns", "pids", ns], capture_output=True, text=True, timeout=30
    ).stdout.split()
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, ValueError):
            os.kill(int(pid), signal.SIGKILL)
    subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=30)
    shutil.rmtree(NETNS_ETC / ns, ignore_errors=True)


def cleanup_stale() -> list[str]:
    """Remove lab namespaces whose owner process is gone (a killed run); returns their names."""
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, timeout=30).stdout
    names = [line.split()[0] for line in out.splitlines() if line.split()]
    if NETNS_ETC.is_dir():
        names += [p.name for p in NETNS_ETC.iterdir() if p.name not in names]
    gone = []
    for name in names:
        parts = name.split("-")
        if len(parts) < 4 or parts[0] != PREFIX or not parts[1].isdigit():
            continue
        try:
            os.kill(int(parts[1]), 0)
        except ProcessLookupError:
            _remove_ns(name)
            gone.append(name)
        except PermissionError:
            pass
    return gone
