"""The bench fleet: three real kube-apiserver + etcd clusters at 10k / 30k / 100k pods (3 nodes per 100
pods), seeded once through the test fleet's own seeder (``tests.fleet.seed.seed``) and kept in a cache.

Specs come from ``bench_specs(pods)``: the three default test-fleet clusters (AKS-like legacy kernel with
calico + iptables, EKS-like with ipvs + NodeLocal DNSCache, GKE-like Cilium without kube-proxy) scaled to
the size, with generated application workloads (Deployments, StatefulSets, CronJobs, Jobs, bare Pods, an
app DaemonSet). ``full_size(waves, ...)`` turns the seeder's minimal objects into pods and nodes of real
size: several containers, env, volumes, probes, labels, annotations, affinity; the API server adds
``managedFields`` itself, so a pod read back is 5-10 KB of JSON (``fleet_stats`` measures it).

Cache: ``$DNSFLEET_CACHE/bench/<label>-<key>/<cluster>/etcd`` (default ``~/.cache/dnsfleet``), where the
key hashes the specs, this file, the test-fleet seeding code and the server binaries; a size is reused
while its key matches and it holds a ``complete`` marker. etcd runs on the cached data dir in place
(benchmarks only read), with ``--quota-backend-bytes`` raised for the 100k-pod clusters. One process uses
a size at a time (``flock``).
"""

from __future__ import annotations

import dataclasses
import fcntl
import hashlib
import os
import random
import shutil
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tests.fleet import objects as O
from tests.fleet import spec as S
from tests.fleet.fleet import (
    Fleet,
    FleetError,
    RunningCluster,
    _prepare_cluster,
    _start_servers,
    _wait_bootstrap,
    binary_dirs,
    ensure_binaries,
)
from tests.fleet.seed import Rest, seed

SEED_VERSION = "1"  # bump to force a reseed when something outside the hashed files changes
NODES_PER_100_PODS = 3
POOL_NODES = 40
ETCD_QUOTA_BYTES = 8 * 1024**3
BASES = (S.AKS_LEGACY, S.EKS_PROD, S.CILIUM_EDGE)
NAMES = ("bench-aks", "bench-eks", "bench-gke")

# (image, share of workloads): a mix of glibc, musl, Go, JVM, Node and unknown images.
IMAGES = (
    ("debian:12-slim", 14),
    ("ubuntu:22.04", 8),
    ("python:3.12-slim", 12),
    ("node:20-alpine", 9),
    ("alpine:3.19", 8),
    ("nginx:1.25", 10),
    ("golang:1.22", 6),
    ("gcr.io/distroless/static:nonroot", 8),
    ("eclipse-temurin:21-jre", 9),
    ("redis:7-alpine", 4),
    ("registry.example.com/team/service:3.4.1", 12),
)
SIDECARS = (("envoy", "envoyproxy/envoy:v1.29.1"), ("log-shipper", "fluent/fluent-bit:3.0.7"))
REPLICAS = (1, 1, 2, 2, 3, 3, 3, 4, 5, 6, 8, 10, 12, 16, 24, 40)


def parse_size(text: str) -> int:
    """'10k' -> 10000, '300' -> 300. Raises ValueError with one line."""
    t = text.strip().lower()
    mult = 1000 if t.endswith("k") else 1
    try:
        n = int(float(t.removesuffix("k")) * mult)
    except ValueError:
        raise ValueError(f"not a pod count: {text!r} (use e.g. 10k, 30k, 100k or 300)") from None
    if n < 60:
        raise ValueError(f"bench size {text!r} is too small (at least 60 pods)")
    return n


def size_label(pods: int) -> str:
    return f"{pods // 1000}k" if pods % 1000 == 0 else str(pods)


# ---------------------------------------------------------------------------------------------------
# Specs


def _split(total: int, parts: int) -> list[int]:
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


def _scale_pools(base: S.ClusterSpec, nodes: int) -> tuple[S.NodePool, ...]:
    """The base cluster's pools scaled to ``nodes``, split into pools of at most POOL_NODES nodes (the
    spec places a workload's pods round-robin from a name-derived offset: small pools spread them)."""
    weights = [p.count for p in base.pools]
    counts = [max(1, nodes * w // sum(weights)) for w in weights]
    counts[0] += nodes - sum(counts)
    out = []
    for p, c in zip(base.pools, counts, strict=True):
        for j, part in enumerate(_split(c, -(-c // POOL_NODES))):
            out.append(dataclasses.replace(p, name=f"{p.name}-{j}", count=part))
    return tuple(out)


def _pods_of(spec: S.ClusterSpec, w: S.Workload) -> int:
    """Pods ``tests.fleet.spec.workload_pods`` creates for ``w``, counted without building them (that
    walks every node per workload: minutes for a 4,000-workload, 1,000-node spec)."""
    if w.kind == "DaemonSet":
        eligible = sum(p.count for p in spec.pools if w.pool is None or p.name == w.pool)
        return eligible - w.skip_nodes
    if w.kind == "Pod":
        return 1
    if w.kind == "CronJob":
        return w.replicas * w.jobs
    return w.replicas


def cluster_spec(index: int, pods: int, nodes: int) -> S.ClusterSpec:
    """Cluster ``index`` (0-2) of a bench fleet with exactly ``pods`` pods on ``nodes`` nodes."""
    base = BASES[index]
    spec = dataclasses.replace(
        base,
        name=NAMES[index],
        pools=_scale_pools(base, nodes),
        # loopback (the API server dials pod and node IPs); rewritten to valid addresses by full_size()
        node_cidr_prefix=f"127.{100 + index}.0",
        pod_prefix=f"127.{16 + index * 16}",
        coredns_replicas=max(2, min(10, nodes // 100)),
        coredns_ready=max(2, min(10, nodes // 100)) - (1 if index == 1 else 0),
        nodelocal_missing=min(base.nodelocal_missing, nodes - 1),
        workloads=(),
    )
    rng = random.Random(f"dnsfleet-bench/{index}/{pods}")
    app: list[S.Workload] = []
    if nodes >= 3:
        app.append(
            S.Workload(
                "DaemonSet", "logging", "log-agent", (S.Container("agent", "fluent/fluent-bit:3.0.7"),)
            )
        )
    system = sum(_pods_of(spec, w) for w in spec.all_workloads()) + sum(_pods_of(spec, w) for w in app)
    left = pods - system
    if left < 1:
        raise ValueError(f"{pods} pods on {nodes} nodes leaves no room for applications in {spec.name}")
    namespaces = [f"team-{i:02d}" for i in range(max(1, pods // 2000))]
    images = [img for img, share in IMAGES for _ in range(share)]
    i = 0
    while left > 0:
        i += 1
        ns = namespaces[i % len(namespaces)]
        main = rng.choice(images)
        containers = [S.Container("app", main)]
        if rng.random() < 0.4:  # one sidecar at most: pods stay within 5-10 KB
            containers.append(S.Container(*rng.choice(SIDECARS)))
        r = rng.random()
        opts: tuple[tuple[str, str | None], ...] = ()
        if r < 0.15:
            opts = (("ndots", "2"),)
        elif r < 0.2:
            opts = (("single-request-reopen", None),)
        elif r < 0.22:
            opts = (("use-vc", None),)
        annotation = "musl" if main.startswith("registry.example.com") and rng.random() < 0.2 else None
        kind_roll = rng.random()
        kw: dict[str, Any] = {
            "dns_options": opts,
            "resolver_annotation": annotation,
            "pool": rng.choice(spec.pools).name,
        }
        if kind_roll < 0.04 and left >= 1:
            w = S.Workload("Pod", ns, f"debug-{i:05d}", tuple(containers[:1]), **kw)
        elif kind_roll < 0.09:
            reps = min(left, rng.choice((1, 2, 3)))
            jobs = 1 if reps == left else min(2, max(1, left // reps))
            w = S.Workload(
                "CronJob", ns, f"cron-{i:05d}", tuple(containers[:1]), replicas=reps, jobs=jobs, **kw
            )
        elif kind_roll < 0.12:
            w = S.Workload("Job", ns, f"job-{i:05d}", tuple(containers[:1]), replicas=min(left, 2), **kw)
        elif kind_roll < 0.2:
            w = S.Workload(
                "StatefulSet",
                ns,
                f"db-{i:05d}",
                tuple(containers),
                replicas=min(left, rng.choice((1, 3, 5))),
                **kw,
            )
        else:
            w = S.Workload(
                "Deployment",
                ns,
                f"svc-{i:05d}",
                tuple(containers),
                replicas=min(left, rng.choice(REPLICAS)),
                **kw,
            )
        n = _pods_of(spec, w)
        if n > left:  # a CronJob's jobs overshot: fall back to a Deployment of exactly what is left
            w = S.Workload("Deployment", ns, f"svc-{i:05d}", tuple(containers), replicas=left, **kw)
            n = left
        app.append(w)
        left -= n
    spec = dataclasses.replace(spec, workloads=tuple(app))
    got = sum(_pods_of(spec, w) for w in spec.all_workloads())
    if got != pods:
        raise AssertionError(f"{spec.name}: built {got} pods, wanted {pods}")
    return spec


def bench_specs(pods: int) -> list[S.ClusterSpec]:
    """The three clusters of a ``pods``-pod bench fleet (3 nodes per 100 pods, at least 1 per cluster)."""
    nodes = max(3, pods * NODES_PER_100_PODS // 100)
    specs = [
        cluster_spec(i, p, n) for i, (p, n) in enumerate(zip(_split(pods, 3), _split(nodes, 3), strict=True))
    ]
    return specs


# ---------------------------------------------------------------------------------------------------
# Full-size objects


class _Addresses:
    """Rewrite the spec convention's node/pod addresses (``prefix.k`` breaks past 245 nodes) to valid ones,
    all in 127.0.0.0/8 (kube-dns EndpointSlice addresses, which may not be loopback, in the same 10.x
    image that ``tests.fleet.spec.endpoint_ip`` gives)."""

    def __init__(self, spec: S.ClusterSpec, index: int) -> None:
        self.node_prefix = spec.node_cidr_prefix + "."
        self.pod_prefix = spec.pod_prefix + "."
        self.index = index

    def node_ip(self, k: int) -> str:
        return f"127.{100 + self.index}.{k // 250}.{k % 250 + 2}"

    def pod_net(self, k: int) -> str:
        return f"127.{16 + self.index * 16 + k // 256}.{k % 256}"

    def __call__(self, value: str) -> str:
        if value.startswith(self.node_prefix):
            last = value[len(self.node_prefix) :]
            if last.isdigit():
                return self.node_ip(int(last) - 10)
        elif value.startswith(self.pod_prefix):
            rest = value[len(self.pod_prefix) :].split(".")
            if len(rest) == 2 and rest[0].isdigit():
                if rest[1] == "0/24":
                    return f"{self.pod_net(int(rest[0]))}.0/24"
                if rest[1].isdigit():
                    return f"{self.pod_net(int(rest[0]))}.{rest[1]}"
        return value


def _rewrite(obj: Any, fix: _Addresses) -> Any:
    if isinstance(obj, dict):
        return {k: _rewrite(v, fix) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_rewrite(v, fix) for v in obj]
    if isinstance(obj, str):
        if obj[:4] == "127.":
            return fix(obj)
        if obj[:3] == "10.":  # an endpoint address: S.endpoint_ip of a pod IP
            return S.endpoint_ip(fix("127." + obj[3:]))
    return obj


def _digest(text: str, n: int = 64) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:n]


def _full_container(c: dict[str, Any], app: str, idx: int) -> None:
    c.setdefault("env", [])
    c["env"] += [
        {"name": "POD_NAME", "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.name"}}},
        {
            "name": "API_KEY",
            "valueFrom": {"secretKeyRef": {"name": f"{app}-secrets", "key": "api-key", "optional": True}},
        },
    ]
    c["ports"] = c.get("ports") or [{"name": "http", "containerPort": 8080 + idx, "protocol": "TCP"}]
    c["resources"] = {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": "512Mi"}}
    c["livenessProbe"] = {"httpGet": {"path": "/healthz", "port": 8080 + idx}, "periodSeconds": 10}
    c["volumeMounts"] = [
        {"name": "config", "mountPath": f"/etc/{c['name']}", "readOnly": True},
        {
            "name": "kube-api-access",
            "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount",
            "readOnly": True,
        },
    ]


def full_size_pod(item: O.Item) -> None:
    """Grow one seeder Pod item (in place) to a realistic pod: what the collector reads is unchanged."""
    meta, ps = item.body["metadata"], item.body["spec"]
    ns, name = meta["namespace"], meta["name"]
    app = meta.get("labels", {}).get("app.kubernetes.io/name") or name.rsplit("-", 1)[0]
    meta["labels"] = {
        **meta.get("labels", {}),
        "app.kubernetes.io/instance": f"{app}-prod",
        "app.kubernetes.io/part-of": ns,
        "app.kubernetes.io/managed-by": "Helm",
        "helm.sh/chart": f"{app}-3.4.1",
        "team": ns,
    }
    meta["annotations"] = {
        **meta.get("annotations", {}),
        "prometheus.io/scrape": "true",
        "prometheus.io/port": "9090",
        "prometheus.io/path": "/metrics",
        "checksum/config": _digest(f"{ns}/{app}/config"),
        "cluster-autoscaler.kubernetes.io/safe-to-evict": "true",
        "kubectl.kubernetes.io/default-container": ps["containers"][0]["name"],
    }
    for idx, c in enumerate(ps["containers"]):
        _full_container(c, app, idx)
    ps["volumes"] = [
        {"name": "config", "configMap": {"name": f"{app}-config", "defaultMode": 420}},
        {"name": "tmp", "emptyDir": {"sizeLimit": "256Mi"}},
        {
            "name": "kube-api-access",
            "projected": {
                "defaultMode": 420,
                "sources": [
                    {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
                    {
                        "configMap": {
                            "name": "kube-root-ca.crt",
                            "items": [{"key": "ca.crt", "path": "ca.crt"}],
                        }
                    },
                    {
                        "downwardAPI": {
                            "items": [
                                {
                                    "path": "namespace",
                                    "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"},
                                }
                            ]
                        }
                    },
                ],
            },
        },
    ]
    ps["serviceAccountName"] = "default"
    ps["securityContext"] = {"fsGroup": 2000, "runAsUser": 1000, "runAsGroup": 3000}
    ps.setdefault("tolerations", [])
    ps["tolerations"] += [
        {
            "key": "node.kubernetes.io/not-ready",
            "operator": "Exists",
            "effect": "NoExecute",
            "tolerationSeconds": 300,
        },
        {
            "key": "node.kubernetes.io/unreachable",
            "operator": "Exists",
            "effect": "NoExecute",
            "tolerationSeconds": 300,
        },
    ]
    status = item.status or {}
    status["qosClass"] = "Burstable"


def full_size_node(item: O.Item) -> None:
    """Real nodes carry the images they hold: the bulk of a node object."""
    images = [img for img, _ in IMAGES] + [s for _, s in SIDECARS]
    item.status = dict(item.status or {})
    item.status["images"] = [
        {
            "names": [
                f"{img.split(':')[0]}@sha256:{_digest(img)}",
                img if "/" in img.split(":")[0] else f"docker.io/library/{img}",
            ],
            "sizeBytes": 20_000_000 + int(_digest(img, 6), 16),
        }
        for img in images
    ]


def full_size(spec: S.ClusterSpec, index: int, waves: list[list[O.Item]]) -> list[list[O.Item]]:
    """The seeder's waves with valid addresses, full-size pods and nodes."""
    fix = _Addresses(spec, index)
    out = []
    for wave in waves:
        new = []
        for it in wave:
            it = O.Item(it.kind, _rewrite(it.body, fix), _rewrite(it.status, fix), it.owner)
            if it.kind == "Pod":
                full_size_pod(it)
            elif it.kind == "Node":
                full_size_node(it)
            new.append(it)
        out.append(new)
    return out


# ---------------------------------------------------------------------------------------------------
# Cache and servers


def cache_root() -> Path:
    return Path(os.environ.get("DNSFLEET_CACHE") or Path.home() / ".cache" / "dnsfleet") / "bench"


def seed_key(specs: list[S.ClusterSpec]) -> str:
    h = hashlib.sha256(SEED_VERSION.encode())
    h.update(repr(specs).encode())
    for mod in (S, O, sys.modules[seed.__module__], sys.modules[__name__]):
        h.update(Path(mod.__file__ or "").read_bytes())
    h.update(" ".join(map(str, binary_dirs())).encode())
    return h.hexdigest()[:12]


class CountingRest(Rest):
    """The seeder's REST client, counting objects written (for progress lines)."""

    def __init__(self, *a: Any, **kw: Any) -> None:
        super().__init__(*a, **kw)
        self.posts = 0

    def request(self, method: str, path: str, *a: Any, **kw: Any) -> tuple[int, Any]:
        out = super().request(method, path, *a, **kw)
        if method == "POST":
            self.posts += 1
        return out


@dataclasses.dataclass
class BenchFleet:
    pods: int
    fleet: Fleet
    cache_dir: Path
    seeded_now: bool
    seed_s: float

    @property
    def kubeconfig(self) -> Path:
        return self.fleet.kubeconfig

    @property
    def contexts(self) -> list[str]:
        return self.fleet.contexts

    def stop(self) -> None:
        self.fleet.stop()


def _log(msg: str) -> None:
    print(f"[bench fleet] {msg}", file=sys.stderr, flush=True)


def _with_quota(rc: RunningCluster, quota: int) -> None:
    flag = f"--quota-backend-bytes={quota}"
    rc._etcd.argv.append(flag)
    make = rc._new_procs

    def remake() -> Any:
        etcd, api, server, url = make()
        etcd.argv.append(flag)
        return etcd, api, server, url

    rc._new_procs = remake


@contextmanager
def bench_fleet(pods: int, workdir: Path, workers: int = 6) -> Iterator[BenchFleet]:
    """Start (seeding first if the cache does not hold it) the ``pods``-pod bench fleet; stop it after."""
    ensure_binaries()
    specs = bench_specs(pods)
    root = cache_root()
    root.mkdir(parents=True, exist_ok=True)
    label = size_label(pods)
    cdir = root / f"{label}-{seed_key(specs)}"
    with open(root / f"{label}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        complete = (cdir / "complete").exists()
        if not complete:
            shutil.rmtree(cdir, ignore_errors=True)
            for old in root.glob(f"{label}-*"):
                if old.is_dir():
                    _log(f"dropping stale seed {old.name}")
                    shutil.rmtree(old, ignore_errors=True)
            _check_disk(root, pods)
            S.validate(specs)  # slow at 100k pods (walks nodes per workload): only before seeding
        bins = binary_dirs()
        workdir = Path(workdir).resolve()
        workdir.mkdir(parents=True, exist_ok=True)
        fleet = Fleet(workdir, specs)
        t0 = time.monotonic()
        try:
            for s in specs:
                (cdir / s.name / "etcd").mkdir(parents=True, exist_ok=True)
                (workdir / s.name).mkdir(parents=True, exist_ok=True)
                link = workdir / s.name / "etcd"
                if not link.is_symlink():
                    link.symlink_to(cdir / s.name / "etcd", target_is_directory=True)
                rc = _prepare_cluster(s, workdir, bins)
                _with_quota(rc, ETCD_QUOTA_BYTES)
                fleet.clusters[s.name] = rc
            _boot_all(fleet, specs, seed_now=not complete, workers=workers)
            if not complete:
                (cdir / "complete").write_text(time.strftime("%Y-%m-%dT%H:%M:%SZ\n", time.gmtime()))
            fleet.kubeconfig_for("admin")
        except BaseException:
            fleet.stop()
            raise
        bf = BenchFleet(pods, fleet, cdir, not complete, time.monotonic() - t0)
        try:
            yield bf
        finally:
            fleet.stop()


def _check_disk(root: Path, pods: int) -> None:
    need = pods * 40_000  # etcd data + WAL per pod, generously
    free = shutil.disk_usage(root).free
    if free < need + 2 * 1024**3:
        raise FleetError(f"not enough disk for the {pods}-pod bench fleet in {root}: {free >> 30} GiB free")


def _boot_all(fleet: Fleet, specs: list[S.ClusterSpec], seed_now: bool, workers: int) -> None:
    rests: dict[str, CountingRest] = {}
    totals: dict[str, int] = {}
    errors: list[str] = []
    done = threading.Event()

    def one(i: int, s: S.ClusterSpec) -> None:
        rc = fleet.clusters[s.name]
        try:
            _start_servers(rc)
            rest = CountingRest(rc.server, rc.ca, rc.tokens["admin"], workers)
            rests[s.name] = rest
            _wait_bootstrap(rest)
            if seed_now:
                waves = full_size(s, i, O.build(s))
                totals[s.name] = sum(len(w) for w in waves)
                seed(rest, s, workers=workers, waves=waves)
            rest.close()
        except Exception as e:
            errors.append(f"{s.name}: {e}")

    threads = [threading.Thread(target=one, args=(i, s), daemon=True) for i, s in enumerate(specs)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    if seed_now:
        _log(
            f"seeding {sum(len(S.all_pods(s)) for s in specs):,} pods into {len(specs)} clusters (once; cached)"
        )

        def progress() -> None:
            while not done.wait(15):
                parts = [f"{n} {r.posts:,}/{totals.get(n, 0):,}" for n, r in rests.items()]
                _log(f"{time.monotonic() - t0:.0f}s objects created: " + ", ".join(parts))

        threading.Thread(target=progress, daemon=True).start()
    for t in threads:
        t.join()
    done.set()
    if errors:
        raise FleetError("; ".join(errors))
    if seed_now:
        _log(f"seeded in {time.monotonic() - t0:.0f}s")
