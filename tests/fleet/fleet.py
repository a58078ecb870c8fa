"""The real multi-cluster test fleet: per cluster one etcd + one kube-apiserver on 127.0.0.1, seeded from
``tests.fleet.spec``, a real CoreDNS behind each served CoreDNS pod, plus one Prometheus backfilled with
CoreDNS and node-exporter conntrack series. Every address a server of the fleet can be made to dial (pod
and node IPs) is in 127.0.0.0/8, except the ready CoreDNS pods': those live in a network namespace the
fleet creates (the API server will not proxy to loopback; ``tests/fleet/coredns.py``).

Start it with ``start_fleet(workdir, clusters=None)`` (the pytest fixture ``fleet`` in
``tests/conftest.py`` does this once per session), or from a shell with ``python -m tests.fleet up``.

The ``Fleet`` object (others code against it; keep it stable)::

    fleet.kubeconfig: Path          # admin contexts, one per cluster (context name = cluster name)
    fleet.contexts: list[str]       # ["aks-legacy", "eks-prod", "cilium-edge"] for the default fleet
    fleet.clusters: dict[str, RunningCluster]
        .name .server (https://127.0.0.1:PORT) .ca (Path, PEM: serving cert + its CA) .spec (ClusterSpec)
        .tokens {"admin": .., "viewer": .., "nobody": ..}   # random per run; never print them
        .etcd_pid .apiserver_pid                          # None while stopped
        .stop_apiserver() .start_apiserver() .stop_etcd() .start_etcd()
        .api_client(user="admin") -> kubernetes.client.ApiClient
    fleet.kubeconfig_for(user: str) -> Path   # same contexts, authenticated as "admin"|"viewer"|"nobody"
    fleet.prometheus_url: str       # http://127.0.0.1:PORT (None when started with prometheus=False)
    fleet.metrics_start: float      # epoch seconds of the first backfilled sample
    fleet.metrics_end: float        # epoch seconds of the last backfilled sample: pass it as `time=`
                                    # on instant queries (the data ends a few minutes before "now")
    fleet.metrics_step: int         # seconds between samples (60)
    fleet.expected(context) -> dict # what a correct collector reads back, computed from the spec:
        nodes, node_names, node_kernel, kernels {kernel: n}, os_images, pools {pool: n}, node_pool,
        pods, pods_by_phase, pods_per_node, workloads, workloads_by_kind {kind: n},
        workload_detail {workload_id: {...}}, proxy_mode, kube_proxy_configmap, service_ip,
        endpoints (ready kube-dns endpoints), coredns_replicas, coredns_version, coredns_image, cni,
        kube_proxy_replacement, nodelocal, nodelocal_ip, nodelocal_nodes, conntrack_metrics,
        insert_failed_grows, provider, server_version, qps
    fleet.stop()                    # kills every process it started, by pid; idempotent
    fleet.specs: list[ClusterSpec]  # the specs it was started from (tests.fleet.spec)
    fleet.workdir: Path             # logs: <workdir>/<cluster>/{etcd,apiserver}.log, prometheus/
    fleet.timings: dict[str, float] # start-up measurements (see "Seed cache" below)
    fleet.net: PodNet | None        # the fleet's network namespace (None without root): .routes(ip)
    fleet.coredns: list[CoreDNSPod] # every ready CoreDNS pod: .cluster .pod .ip (in fleet.net) .served
                                    # .started_at; a real CoreDNS serves :9153 behind each served one
                                    # (tests.fleet.coredns; expected_scrape(spec) is what a scrape reads)

Users (static tokens, ``--token-auth-file``): ``admin`` (group ``system:masters``), ``viewer`` (bound to
ClusterRole ``dnsfleet-viewer``: get/list/watch everything, nonResource get, create SSAR/SSRR) and
``nobody`` (no bindings; only what every authenticated user may do).

Destructive tests (stopping an apiserver or etcd) must start their own cluster so the shared fleet is
never broken: ``start_fleet(tmp_path, [spec.small_cluster("scratch")], prometheus=False)`` (or the
``fleet_factory`` fixture), then ``fleet.clusters["scratch"].stop_apiserver()``.

Every process is started through ``setpriv --pdeathsig TERM`` from one long-lived thread, so a killed
test run does not leave servers behind; ``stop()`` also runs from ``atexit``. Ports are free 127.0.0.1
ports; a server whose port was grabbed by another process first is detected (/proc socket owner) and
restarted on fresh ports.

Seed cache: seeding the 1,207-pod cluster costs ~15-70 s of CPU on a busy 2-core machine, so after a
cluster is seeded its cleanly stopped etcd data dir is kept under ``~/.cache/dnsfleet/fleet-seed/<name>-
<hash>`` (hash of the spec, the fleet code and the server versions) and later starts copy it instead of
seeding; node heartbeats and leases are refreshed. Tokens, certificates and ports are new every run
(none of them live in etcd). ``DNSFLEET_FLEET_CACHE=0`` disables the cache. ``fleet.timings`` records
per cluster ``servers_s``, ``seed_s`` and ``cached`` (1.0 on a cache hit).
"""

from __future__ import annotations

import atexit
import base64
import hashlib
import ipaddress
import json
import os
import queue
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from tests.fleet import coredns as D
from tests.fleet import metrics as M
from tests.fleet import spec as S
from tests.fleet.seed import FleetError, Rest, seed

__all__ = [
    "Fleet",
    "FleetError",
    "RunningCluster",
    "attach_fleet",
    "binary_dirs",
    "ensure_binaries",
    "start_fleet",
]

USERS = ("admin", "viewer", "nobody")
REPO = Path(__file__).resolve().parents[2]
BUILD_SH = REPO / "tests" / "fleet" / "build.sh"
READY_TIMEOUT = float(os.environ.get("DNSFLEET_FLEET_TIMEOUT", "180"))


def binary_dirs() -> tuple[Path, Path]:
    """(kube-apiserver dir, etcd dir) as tests/fleet/build.sh caches them."""
    out = subprocess.run(["bash", str(BUILD_SH), "print-dirs"], capture_output=True, text=True, check=True)
    k8s, etcd = out.stdout.split()
    return Path(k8s), Path(etcd)


def _binaries_present() -> bool:
    k8s, etcd = binary_dirs()
    return (
        os.access(k8s / "kube-apiserver", os.X_OK)
        and os.access(etcd / "etcd", os.X_OK)
        and all(os.access(D.binary(v), os.X_OK) for v in D.built_versions())
    )


def _foreign_build_running() -> bool:
    """Another process is building with tests/fleet/build.sh right now (any clone: the cache is shared)."""
    me = os.getpid()
    for d in Path("/proc").iterdir():
        if not d.name.isdigit() or int(d.name) == me:
            continue
        try:
            argv = (d / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        for i, a in enumerate(argv):
            if a.endswith(b"tests/fleet/build.sh"):
                mode = argv[i + 1] if i + 1 < len(argv) else b""
                if mode in (b"", b"all", b"apiserver", b"etcd", b"coredns"):  # not the instant `print-*`
                    return True
    return False


def ensure_binaries(timeout: float = 3600) -> None:
    """Build kube-apiserver, etcd and CoreDNS if needed (``tests/fleet/build.sh all``, idempotent).

    Serialised with a lock file so parallel test sessions never build into the same directory; a
    build already running outside any lock (e.g. started by ``make system-deps``) is waited for.
    Raises FleetError with the build log's tail when the build fails.
    """
    import fcntl

    if _binaries_present():  # build.sh would be a no-op, but it insists on `go` being installed
        return
    k8s, _ = binary_dirs()
    cache = k8s.parent.parent
    cache.mkdir(parents=True, exist_ok=True)
    log = cache / "build.log"
    with open(cache / "build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        deadline = time.monotonic() + timeout
        while not _binaries_present() and _foreign_build_running():
            if time.monotonic() > deadline:
                raise FleetError("gave up waiting for another tests/fleet/build.sh run to finish")
            time.sleep(2)
        with open(log, "wb") as out:
            r = subprocess.run(
                ["bash", str(BUILD_SH), "all"], stdout=out, stderr=subprocess.STDOUT, timeout=timeout
            )
        if r.returncode != 0:
            tail = [ln for ln in log.read_text(errors="replace").splitlines() if ln.strip()][-5:]
            raise FleetError(
                f"tests/fleet/build.sh all failed (exit {r.returncode}; full log {log}): {' | '.join(tail)}"
            )


# ---------------------------------------------------------------------------------------------------
# Processes


class _Spawner:
    """Starts children from one long-lived daemon thread: PR_SET_PDEATHSIG fires when the *thread*
    that forked a child exits, so pool threads must not fork servers that outlive them."""

    def __init__(self) -> None:
        self._q: queue.Queue = queue.Queue()
        self._t = threading.Thread(target=self._run, name="fleet-spawner", daemon=True)
        self._t.start()

    def _run(self) -> None:
        while True:
            argv, log, box, done = self._q.get()
            try:
                box.append(
                    subprocess.Popen(
                        argv,
                        stdin=subprocess.DEVNULL,
                        stdout=log,
                        stderr=subprocess.STDOUT,
                        start_new_session=True,
                    )
                )
            except BaseException as e:
                box.append(e)
            done.set()

    def popen(self, argv: list[str], log: Any) -> subprocess.Popen:
        box: list[Any] = []
        done = threading.Event()
        self._q.put((argv, log, box, done))
        done.wait()
        if isinstance(box[0], BaseException):
            raise box[0]
        return box[0]


_SPAWNER: _Spawner | None = None
_SPAWNER_LOCK = threading.Lock()


def _spawner() -> _Spawner:
    global _SPAWNER
    with _SPAWNER_LOCK:
        if _SPAWNER is None:
            _SPAWNER = _Spawner()
        return _SPAWNER


_PDEATHSIG = ["setpriv", "--pdeathsig", "TERM", "--"] if shutil.which("setpriv") else []


class _Proc:
    """One server process: started with a log file, stopped by pid (TERM, then KILL)."""

    def __init__(self, name: str, argv: list[str], log: Path, foreign_pid: int | None = None) -> None:
        self.name, self.argv, self.log = name, argv, log
        self.p: subprocess.Popen | None = None
        self.foreign_pid = foreign_pid  # a process another `tests.fleet up` owns (attached fleet)

    @property
    def pid(self) -> int | None:
        if self.foreign_pid is not None:
            return self.foreign_pid if _alive(self.foreign_pid) else None
        return self.p.pid if self.p is not None and self.p.poll() is None else None

    def _own(self) -> None:
        if self.foreign_pid is not None:
            raise FleetError(f"{self.name} belongs to an attached fleet; start your own (fleet_factory)")

    def start(self) -> None:
        self._own()
        if self.pid is not None:
            return
        with open(self.log, "ab") as log:
            self.p = _spawner().popen(_PDEATHSIG + self.argv, log)

    def exited(self) -> int | None:
        return None if self.p is None else self.p.poll()

    def stop(self, timeout: float = 20) -> None:
        self._own()
        p, self.p = self.p, None
        if p is None or p.poll() is not None:
            return
        try:
            p.send_signal(signal.SIGTERM)
            p.wait(timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(10)
        except ProcessLookupError:
            pass

    def log_tail(self, n: int = 4) -> str:
        try:
            lines = [ln for ln in self.log.read_text(errors="replace").splitlines() if ln.strip()]
        except OSError:
            return ""
        return " | ".join(ln[:300] for ln in lines[-n:])


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def running(pid: int) -> bool:
    """``pid`` exists and is not a zombie (a zombie still answers kill(0) until it is reaped)."""
    if not _alive(pid):
        return False
    try:  # the state follows the command name, which may hold spaces: "pid (comm) S ..."
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0] != "Z"
    except (OSError, IndexError):
        return False


_PORT_LOCK = threading.Lock()
_USED_PORTS: set[int] = set()


def free_port() -> int:
    """A free 127.0.0.1 port not handed out before in this process."""
    with _PORT_LOCK:
        for _ in range(100):
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                port = s.getsockname()[1]
            if port not in _USED_PORTS:
                _USED_PORTS.add(port)
                return port
    raise FleetError("no free 127.0.0.1 port found")


def _insecure_ctx() -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def _wait_http(url: str, proc: _Proc, timeout: float, ctx: ssl.SSLContext | None = None) -> None:
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        code = proc.exited()
        if code is not None:
            raise FleetError(f"{proc.name} exited with code {code} before {url} was ready: {proc.log_tail()}")
        try:
            with urllib.request.urlopen(url, timeout=3, context=ctx) as r:
                if r.status == 200:
                    return
        except urllib.error.HTTPError as e:
            last = f"HTTP {e.code}"
        except (urllib.error.URLError, OSError) as e:
            last = str(getattr(e, "reason", e))
        time.sleep(0.25)
    raise FleetError(f"{proc.name} not ready at {url} after {timeout:.0f}s ({last}): {proc.log_tail()}")


# ---------------------------------------------------------------------------------------------------
# Clusters


@dataclass
class RunningCluster:
    name: str
    spec: S.ClusterSpec
    dir: Path
    server: str
    ca: Path
    tokens: dict[str, str] = field(repr=False)
    _etcd: _Proc = field(repr=False)
    _apiserver: _Proc = field(repr=False)
    _etcd_url: str = field(repr=False)
    _new_procs: Any = field(default=None, repr=False)

    @property
    def etcd_pid(self) -> int | None:
        return self._etcd.pid

    @property
    def apiserver_pid(self) -> int | None:
        return self._apiserver.pid

    def start_etcd(self, timeout: float = READY_TIMEOUT) -> None:
        self._etcd.start()
        _wait_http(f"{self._etcd_url}/health", self._etcd, timeout)

    def stop_etcd(self) -> None:
        self._etcd.stop()

    def start_apiserver(self, timeout: float = READY_TIMEOUT) -> None:
        self._apiserver.start()
        _wait_http(f"{self.server}/readyz", self._apiserver, timeout, _insecure_ctx())

    def stop_apiserver(self) -> None:
        self._apiserver.stop()

    def stop(self) -> None:
        self._apiserver.stop()
        self._etcd.stop()

    def rest(self, user: str = "admin", workers: int = 8) -> Rest:
        return Rest(self.server, self.ca, self.tokens[user], workers)

    def api_client(self, user: str = "admin") -> Any:
        """A ``kubernetes.client.ApiClient`` for this cluster as ``user`` (verifies the server cert)."""
        from kubernetes import client

        cfg = client.Configuration()
        cfg.host = self.server
        cfg.ssl_ca_cert = str(self.ca)
        cfg.api_key = {"authorization": self.tokens[user]}
        cfg.api_key_prefix = {"authorization": "Bearer"}
        return client.ApiClient(cfg)


def _write_private(path: Path, text: str) -> Path:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    return path


def _prepare_cluster(spec: S.ClusterSpec, root: Path, bins: tuple[Path, Path]) -> RunningCluster:
    d = root / spec.name
    (d / "pki").mkdir(parents=True, exist_ok=True)
    (d / "etcd").mkdir(exist_ok=True)
    d.chmod(0o700)
    tokens = {u: secrets.token_hex(24) for u in USERS}
    groups = {"admin": "system:masters", "viewer": "dnsfleet:viewers", "nobody": ""}
    lines = [
        f'{tokens[u]},{u},uid-{u},"{groups[u]}"' if groups[u] else f"{tokens[u]},{u},uid-{u}" for u in USERS
    ]
    tokens_csv = _write_private(d / "pki" / "tokens.csv", "\n".join(lines) + "\n")
    sa_key = d / "pki" / "sa.key"
    if not sa_key.exists():
        r = subprocess.run(["openssl", "genrsa", "-out", str(sa_key), "2048"], capture_output=True, text=True)
        if r.returncode != 0:
            raise FleetError(f"openssl genrsa failed: {r.stderr.strip()[:200]}")
    k8s_dir, etcd_dir = bins
    member = spec.name

    def make_procs() -> tuple[_Proc, _Proc, str, str]:
        """Server processes on fresh ports (called again if a port was taken before a server bound it)."""
        ec, ep, ap = free_port(), free_port(), free_port()
        etcd_url = f"http://127.0.0.1:{ec}"
        etcd = _Proc(
            f"{spec.name} etcd",
            [
                str(etcd_dir / "etcd"),
                f"--name={member}",
                f"--data-dir={d / 'etcd'}",
                f"--listen-client-urls={etcd_url}",
                f"--advertise-client-urls={etcd_url}",
                f"--listen-peer-urls=http://127.0.0.1:{ep}",
                f"--initial-advertise-peer-urls=http://127.0.0.1:{ep}",
                f"--initial-cluster={member}=http://127.0.0.1:{ep}",
                "--unsafe-no-fsync",
                "--log-level=warn",
            ],
            d / "etcd.log",
        )
        api = _Proc(
            f"{spec.name} kube-apiserver",
            [
                str(k8s_dir / "kube-apiserver"),
                f"--etcd-servers={etcd_url}",
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                f"--secure-port={ap}",
                f"--cert-dir={d / 'pki'}",
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                f"--service-account-key-file={sa_key}",
                f"--service-account-signing-key-file={sa_key}",
                f"--service-cluster-ip-range={spec.service_cidr}",
                "--authorization-mode=Node,RBAC",
                f"--token-auth-file={tokens_csv}",
                "--disable-admission-plugins=ServiceAccount,TaintNodesByCondition",
                "--endpoint-reconciler-type=none",
                # node proxy/logs/exec dial the node's InternalIP (loopback in the fleet), never a
                # Hostname the API server would have to resolve
                "--kubelet-preferred-address-types=InternalIP",
                "--allow-privileged=true",
                "--profiling=false",
                "--v=1",
            ],
            d / "apiserver.log",
        )
        return etcd, api, f"https://127.0.0.1:{ap}", etcd_url

    etcd, api, server, etcd_url = make_procs()
    return RunningCluster(
        name=spec.name,
        spec=spec,
        dir=d,
        server=server,
        ca=d / "pki" / "apiserver.crt",
        tokens=tokens,
        _etcd=etcd,
        _apiserver=api,
        _etcd_url=etcd_url,
        _new_procs=make_procs,
    )


def _owns_port(pid: int | None, url: str) -> bool:
    """The LISTEN socket on ``url``'s port belongs to ``pid`` (read from /proc, no tools needed)."""
    if pid is None:
        return False
    port = int(url.rsplit(":", 1)[1].split("/")[0])
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            rows = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            f = row.split()
            if f[3] == "0A" and int(f[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(f"socket:[{f[9]}]")
    try:
        fds = list(Path(f"/proc/{pid}/fd").iterdir())
    except OSError:
        return False
    for fd in fds:
        try:
            if os.readlink(fd) in inodes:
                return True
        except OSError:
            continue
    return False


def _check_owner(proc: _Proc, url: str) -> None:
    """Another session may grab a port between free_port() and our server's bind: make sure the
    server that answered is ours."""
    if not _owns_port(proc.pid, url):
        raise FleetError(f"{proc.name}: {url} is served by another process: address already in use")


def _start_servers(rc: RunningCluster, attempts: int = 3) -> None:
    """Start etcd then the apiserver; on a port collision, stop, take fresh ports and retry."""
    for attempt in range(attempts):
        try:
            rc.start_etcd()
            _check_owner(rc._etcd, rc._etcd_url)
            rc.start_apiserver()
            _check_owner(rc._apiserver, rc.server)
            return
        except FleetError as e:
            if attempt == attempts - 1 or "address already in use" not in str(e):
                raise
            rc.stop()
            rc._etcd, rc._apiserver, rc.server, rc._etcd_url = rc._new_procs()


def seed_cache_dir() -> Path | None:
    """Where seeded etcd data dirs are kept between runs (None when DNSFLEET_FLEET_CACHE=0)."""
    if os.environ.get("DNSFLEET_FLEET_CACHE", "1") == "0":
        return None
    return binary_dirs()[0].parent.parent / "fleet-seed"


def seed_key(spec: S.ClusterSpec) -> str:
    """Changes whenever what seeding would write could change: the spec, the code, the server versions."""
    from tests.fleet import objects
    from tests.fleet import seed as seed_mod

    h = hashlib.sha256(repr(spec).encode())
    for mod in (S, objects, seed_mod):
        h.update(Path(mod.__file__).read_bytes())
    h.update(" ".join(map(str, binary_dirs())).encode())
    return f"{spec.name}-{h.hexdigest()[:16]}"


def _store_seed(rc: RunningCluster, cache: Path, key: str) -> None:
    """Copy the (cleanly stopped) etcd data dir into the cache, atomically; drop older keys."""
    cache.mkdir(parents=True, exist_ok=True)
    tmp = cache / f".{key}.{os.getpid()}.{secrets.token_hex(4)}"
    shutil.copytree(rc.dir / "etcd", tmp / "etcd")
    try:
        tmp.rename(cache / key)
    except OSError:  # another session stored the same key first
        shutil.rmtree(tmp, ignore_errors=True)
    for old in cache.glob(f"{rc.spec.name}-*"):  # stale keys nobody can be copying any more
        if old.name != key and len(old.name) == len(key) and time.time() - old.stat().st_mtime > 3600:
            shutil.rmtree(old, ignore_errors=True)


def _refresh_heartbeats(rest: Rest, spec: S.ClusterSpec) -> None:
    """Cached data has old heartbeats: make nodes and node leases look alive now."""
    from tests.fleet import objects

    now = datetime.now(UTC)
    for n in S.nodes(spec):
        item = objects.node_item(spec, n, now)
        conds = {"status": {"conditions": item.status["conditions"]}}
        rest.request("PATCH", item.path() + "/status", conds, "application/merge-patch+json", ok=(200,))
        lease = objects.lease_item(n, now)
        rest.request(
            "PATCH", lease.path(), {"spec": lease.body["spec"]}, "application/merge-patch+json", ok=(200,)
        )


def _boot_and_seed(rc: RunningCluster, cache: Path | None) -> dict[str, float]:
    """Start the cluster's servers and seed it, from the seed cache when it holds this spec."""
    t0 = time.monotonic()
    key = seed_key(rc.spec) if cache else ""
    hit = cache is not None and (cache / key / "etcd").is_dir()
    if hit:
        shutil.rmtree(rc.dir / "etcd")
        shutil.copytree(cache / key / "etcd", rc.dir / "etcd")
    _start_servers(rc)
    t1 = time.monotonic()
    rest = rc.rest("admin")
    try:
        _wait_bootstrap(rest)
        if hit:
            _refresh_heartbeats(rest, rc.spec)
        else:
            seed(rest, rc.spec)
    finally:
        rest.close()
    if cache is not None and not hit:
        rc.stop()  # a clean stop leaves a consistent data dir to copy
        _store_seed(rc, cache, key)
        _start_servers(rc)
    return {"servers_s": t1 - t0, "seed_s": time.monotonic() - t1, "cached": float(hit)}


def _boot_seed_and_serve(fleet: Fleet, rc: RunningCluster, cache: Path | None) -> dict[str, float]:
    out = _boot_and_seed(rc, cache)
    t0 = time.monotonic()
    fleet._start_coredns(rc)
    out["coredns_s"] = time.monotonic() - t0
    return out


def _wait_bootstrap(rest: Rest, timeout: float = 60) -> None:
    """/readyz can pass a moment before the RBAC bootstrap roles and kube-system exist."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            rest.request("GET", "/api/v1/namespaces/kube-system")
            rest.request("GET", "/apis/rbac.authorization.k8s.io/v1/clusterroles/system:basic-user")
            return
        except FleetError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.3)


# ---------------------------------------------------------------------------------------------------
# Fleet


class Fleet:
    """A running fleet. See the module docstring for the interface."""

    def __init__(self, workdir: Path, specs: list[S.ClusterSpec]) -> None:
        self.workdir = workdir
        self.specs = list(specs)
        self.contexts = [s.name for s in specs]
        self.clusters: dict[str, RunningCluster] = {}
        self.kubeconfig = workdir / "kubeconfig"
        self.prometheus_url: str | None = None
        self.metrics_start = 0.0
        self.metrics_end = 0.0
        self.metrics_step = 60
        self.timings: dict[str, float] = {}
        self._prometheus: _Proc | None = None
        self.coredns: list[D.CoreDNSPod] = []
        self.net: D.PodNet | None = None  # the namespace behind the CoreDNS pods' addresses (needs root)
        self._coredns_procs: list[_Proc] = []
        self._stopped = False
        self.attached = False  # True: processes belong to another `python -m tests.fleet up`
        atexit.register(self.stop)

    def __repr__(self) -> str:
        return f"Fleet({self.contexts}, prometheus={self.prometheus_url})"

    @property
    def prometheus_pid(self) -> int | None:
        return self._prometheus.pid if self._prometheus else None

    def expected(self, context: str) -> dict[str, Any]:
        try:
            spec = next(s for s in self.specs if s.name == context)
        except StopIteration:
            raise KeyError(f"no cluster {context!r} in this fleet (have {self.contexts})") from None
        return S.expected(spec)

    def kubeconfig_for(self, user: str) -> Path:
        if user not in USERS:
            raise ValueError(f"unknown user {user!r}; the fleet has {', '.join(USERS)}")
        path = self.kubeconfig if user == "admin" else self.workdir / f"kubeconfig-{user}"
        clusters, users, contexts = [], [], []
        for name in self.contexts:
            rc = self.clusters[name]
            ca = base64.b64encode(rc.ca.read_bytes()).decode()
            clusters.append(
                {"name": name, "cluster": {"server": rc.server, "certificate-authority-data": ca}}
            )
            users.append({"name": f"{name}-{user}", "user": {"token": rc.tokens[user]}})
            contexts.append({"name": name, "context": {"cluster": name, "user": f"{name}-{user}"}})
        doc = {
            "apiVersion": "v1",
            "kind": "Config",
            "preferences": {},
            "clusters": clusters,
            "users": users,
            "contexts": contexts,
            "current-context": self.contexts[0],
        }
        return _write_private(path, yaml.safe_dump(doc, sort_keys=False))

    def state_file(self) -> Path:
        return self.workdir / "fleet.json"

    def write_state(self) -> Path:
        """Write ``fleet.json`` (0600: it holds the tokens, like the kubeconfigs) for attach_fleet()."""
        state = {
            "owner_pid": os.getpid(),
            "contexts": self.contexts,
            "prometheus_url": self.prometheus_url,
            "prometheus_pid": self.prometheus_pid,
            "metrics_start": self.metrics_start,
            "metrics_end": self.metrics_end,
            "metrics_step": self.metrics_step,
            "coredns": [vars(c) for c in self.coredns],
            "net": None
            if self.net is None
            else {
                "name": self.net.name,
                "host_if": self.net.host_if,
                "peer": self.net.peer,
                "subnet": str(self.net.subnet),
            },
            "clusters": {
                n: {
                    "server": rc.server,
                    "ca": str(rc.ca),
                    "tokens": rc.tokens,
                    "etcd_pid": rc.etcd_pid,
                    "apiserver_pid": rc.apiserver_pid,
                }
                for n, rc in self.clusters.items()
            },
        }
        return _write_private(self.state_file(), json.dumps(state, indent=1))

    def stop(self) -> None:
        """Stop every process this fleet started (by pid). Safe to call twice and from atexit.
        An attached fleet owns no process: stop() only forgets it."""
        if self._stopped:
            return
        self._stopped = True
        if self.attached:
            atexit.unregister(self.stop)
            return
        procs = [rc.stop for rc in self.clusters.values()] + [p.stop for p in self._coredns_procs]
        if self._prometheus:
            procs.append(self._prometheus.stop)
        with ThreadPoolExecutor(max_workers=max(1, len(procs))) as ex:
            list(ex.map(lambda f: f(), procs))
        if self.net is not None:  # last: no process may still dial into it
            self.net.delete()
        atexit.unregister(self.stop)

    # -- start-up ----------------------------------------------------------------------------------

    def _start_coredns(self, rc: RunningCluster) -> None:
        """Give the cluster's ready CoreDNS pods their loopback addresses, start a real CoreDNS behind
        each served one, and send it the fixed query mix (``tests.fleet.coredns``)."""
        pods = [c for c in self.coredns if c.cluster == rc.name]
        if not pods or self.net is None:
            return
        rest = rc.rest("admin")
        try:
            for c in pods:
                D.patch_pod_ip(rest, c)
        finally:
            rest.close()
        exe = D.binary(rc.spec.coredns_version)
        started = []
        for c in pods:
            if not c.served:
                continue
            conf = rc.dir / f"Corefile-{c.pod}"
            conf.write_text(D.corefile(c.ip))
            proc = _Proc(
                f"{rc.name} coredns {c.pod}",
                self.net.exec_argv([str(exe), "-conf", str(conf)]),
                rc.dir / f"coredns-{c.pod}.log",
            )
            c.started_at = time.time()
            proc.start()
            self._coredns_procs.append(proc)
            started.append((c, proc))
        for c, proc in started:
            try:
                D.wait_ready(c, lambda p=proc: p.exited() is None)
            except RuntimeError as e:
                raise FleetError(f"{e}: {proc.log_tail()}") from None
        D.send_traffic(pods, self.net)

    def _start_prometheus(self) -> None:
        t0 = time.monotonic()
        end = int(time.time()) // 60 * 60 - 180  # a few minutes before now (recipe §6.3)
        start = end - 3 * 3600
        self.metrics_start, self.metrics_end = float(start), float(end)
        pdir = self.workdir / "prometheus"
        data = pdir / "data"
        data.mkdir(parents=True, exist_ok=True)
        om = pdir / "fleet.om"
        om.write_text(M.openmetrics(self.specs, start, end, self.metrics_step))
        M.backfill(om, data)
        om.unlink()  # 20 MB; the blocks hold it now
        self._prometheus, url = prometheus_process(pdir, data)
        _wait_http(f"{url}/-/ready", self._prometheus, READY_TIMEOUT)
        _check_owner(self._prometheus, url)
        self.prometheus_url = url
        self.timings["prometheus_s"] = time.monotonic() - t0


def prometheus_process(workdir: Path, data: Path) -> tuple[_Proc, str]:
    """Prometheus serving the TSDB blocks in ``data`` on a free 127.0.0.1 port (its config and log in
    ``workdir``), started but not yet ready; and its URL."""
    cfg = workdir / "prometheus.yml"
    cfg.write_text(M.PROMETHEUS_CONFIG)
    port = free_port()
    proc = _Proc(
        "prometheus",
        [
            shutil.which("prometheus") or "prometheus",
            f"--config.file={cfg}",
            f"--storage.tsdb.path={data}",
            "--storage.tsdb.retention.time=100y",
            f"--web.listen-address=127.0.0.1:{port}",
            "--log.level=warn",
        ],
        workdir / "prometheus.log",
    )
    proc.start()
    return proc, f"http://127.0.0.1:{port}"


def start_fleet(
    workdir: Path,
    clusters: list[S.ClusterSpec] | None = None,
    *,
    prometheus: bool = True,
) -> Fleet:
    """Start (concurrently) and seed every cluster, and Prometheus; return the running Fleet.

    On any failure everything already started is stopped and ``FleetError`` is raised (one line, with
    the failing server's log tail; logs stay in ``workdir/<cluster>/``).
    """
    specs = list(clusters) if clusters is not None else list(S.FLEET)
    if not specs:
        raise ValueError("start_fleet needs at least one cluster spec")
    S.validate(specs)
    for tool in ("openssl", *(("prometheus", "promtool") if prometheus else ())):
        if shutil.which(tool) is None:
            raise FleetError(f"'{tool}' is not installed; run: bash tests/fleet/install-system-deps.sh")
    bins = binary_dirs()
    for b in (bins[0] / "kube-apiserver", bins[1] / "etcd", *(D.binary(s.coredns_version) for s in specs)):
        if not os.access(b, os.X_OK):
            raise FleetError(f"{b} is missing; build it with: bash tests/fleet/build.sh all")
    workdir = Path(workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    fleet = Fleet(workdir, specs)
    t0 = time.monotonic()
    try:
        try:
            fleet.net = D.PodNet.create()
        except PermissionError:  # not root: CoreDNS pods keep their loopback IPs, nothing listens
            fleet.net = None
        fleet.coredns = D.assign_addresses(specs, fleet.net) if fleet.net else []
        for s in specs:
            fleet.clusters[s.name] = _prepare_cluster(s, workdir, bins)
        with ThreadPoolExecutor(max_workers=len(specs) + 1, thread_name_prefix="fleet") as ex:
            prom = ex.submit(fleet._start_prometheus) if prometheus else None
            cache = seed_cache_dir()
            futs = {
                name: ex.submit(_boot_seed_and_serve, fleet, rc, cache) for name, rc in fleet.clusters.items()
            }
            errors = []
            for name, f in futs.items():
                try:
                    for k, v in f.result().items():
                        fleet.timings[f"{name}.{k}"] = v
                except Exception as e:
                    errors.append(f"{name}: {e}")
            if prom is not None:
                try:
                    prom.result()
                except Exception as e:
                    errors.append(f"prometheus: {e}")
        if errors:
            raise FleetError("; ".join(errors))
        fleet.kubeconfig_for("admin")
        fleet.write_state()
        fleet.timings["total_s"] = time.monotonic() - t0
    except BaseException:
        fleet.stop()
        raise
    return fleet


def attach_fleet(workdir: Path) -> Fleet:
    """The fleet a running ``python -m tests.fleet up --dir WORKDIR`` serves (development shortcut:
    set ``DNSFLEET_FLEET_DIR`` and the ``fleet`` fixture attaches instead of starting its own).

    Only the default fleet's specs (and ``small_cluster`` names) are known. The attached Fleet cannot
    stop or restart servers; tests that mutate objects leave their changes for the next run.
    """
    workdir = Path(workdir).resolve()
    try:
        state = json.loads((workdir / "fleet.json").read_text())
    except (OSError, ValueError) as e:
        raise FleetError(f"no usable fleet state in {workdir}: {e}") from None
    if not _alive(int(state["owner_pid"])):
        raise FleetError(
            f"the fleet in {workdir} is not running (its owner pid {state['owner_pid']} is gone)"
        )
    known = {s.name: s for s in S.FLEET}
    specs = [known.get(n) or S.small_cluster(n) for n in state["contexts"]]
    fleet = Fleet(workdir, specs)
    fleet.attached = True
    for spec in specs:
        c = state["clusters"][spec.name]
        rc = RunningCluster(
            name=spec.name,
            spec=spec,
            dir=workdir / spec.name,
            server=c["server"],
            ca=Path(c["ca"]),
            tokens=c["tokens"],
            _etcd=_Proc(f"{spec.name} etcd", [], workdir / spec.name / "etcd.log", foreign_pid=c["etcd_pid"]),
            _apiserver=_Proc(
                f"{spec.name} kube-apiserver",
                [],
                workdir / spec.name / "apiserver.log",
                foreign_pid=c["apiserver_pid"],
            ),
            _etcd_url="",
        )
        _wait_http(f"{rc.server}/readyz", rc._apiserver, 10, _insecure_ctx())
        fleet.clusters[spec.name] = rc
    fleet.prometheus_url = state["prometheus_url"]
    if state.get("prometheus_pid"):
        fleet._prometheus = _Proc(
            "prometheus", [], workdir / "prometheus" / "prometheus.log", state["prometheus_pid"]
        )
    fleet.metrics_start = float(state["metrics_start"])
    fleet.metrics_end = float(state["metrics_end"])
    fleet.metrics_step = int(state["metrics_step"])
    fleet.coredns = [D.CoreDNSPod(**c) for c in state.get("coredns", [])]
    if state.get("net"):
        n = state["net"]
        fleet.net = D.PodNet(n["name"], n["host_if"], n["peer"], ipaddress.ip_network(n["subnet"]))
    return fleet
