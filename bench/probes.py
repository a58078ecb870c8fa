"""The competitors of ``dnsfleet scan``, each run as its own process by ``bench.run`` (so wall time and
peak RSS are per run): ``python -m bench.probes floor|naive KUBECONFIG``.

- ``floor``: raw paginated GETs of the lists the scan reads (nodes, pods, ReplicaSet and Job metadata),
  the three clusters concurrently, over one pooled HTTPS connection each, with no parsing (the
  ``continue`` token is cut out of the list header). What this machine needs just to move the bytes.
  In protobuf, as the scan asks for them (``floor``), and in JSON (``floor-json``, as kubectl and most
  clients read them).
- ``naive``: the kubernetes client the usual way: ``CoreV1Api().list_node()`` /
  ``list_pod_for_all_namespaces()`` (and the ReplicaSet / Job lists) into model objects, chunked like
  the scan (``limit=500``), projected to the same snapshot rows and fed to the same engine
  (``dnsfleet.engine.analyze``): the same frames, built the obvious way.

Each prints one JSON line on stdout: elapsed seconds inside the process and what it read.
"""

from __future__ import annotations

import re
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import orjson

from dnsfleet.kube.proto import continue_token

PAGE = 500
_META = "as=PartialObjectMetadataList;g=meta.k8s.io;v=v1"
LISTS = {
    "json": (
        ("/api/v1/nodes", "application/json"),
        ("/api/v1/pods", "application/json"),
        ("/apis/apps/v1/replicasets", f"application/json;{_META}"),
        ("/apis/batch/v1/jobs", f"application/json;{_META}"),
    ),
    "protobuf": (
        ("/api/v1/nodes", "application/vnd.kubernetes.protobuf"),
        ("/api/v1/pods", "application/vnd.kubernetes.protobuf"),
        ("/apis/apps/v1/replicasets", f"application/vnd.kubernetes.protobuf;{_META}"),
        ("/apis/batch/v1/jobs", f"application/vnd.kubernetes.protobuf;{_META}"),
    ),
}
_CONTINUE = re.compile(rb'"continue":"([^"]*)"')
T = TypeVar("T")


def _each_context(kubeconfig: str, one: Callable[[str], T]) -> list[T]:
    """``one(context)`` for every context of the kubeconfig, the contexts concurrently."""
    from dnsfleet.kube import kubeconfig_paths, list_contexts

    names, _ = list_contexts(kubeconfig_paths(kubeconfig))
    with ThreadPoolExecutor(len(names)) as ex:
        return list(ex.map(one, names))


def floor(kubeconfig: str, encoding: str = "protobuf") -> dict[str, Any]:
    """Raw bytes of every page, per context, the contexts in parallel; ``encoding`` protobuf or json."""
    import urllib3
    from kubernetes import config as k8s_config

    def one(ctx: str) -> dict[str, int]:
        client = k8s_config.new_client_from_config(config_file=kubeconfig, context=ctx, persist_config=False)
        cfg = client.configuration
        host, port = cfg.host.removeprefix("https://").rsplit(":", 1)
        pool = urllib3.HTTPSConnectionPool(
            host, int(port), maxsize=1, cert_reqs="CERT_REQUIRED", ca_certs=cfg.ssl_ca_cert, retries=False
        )
        auth = cfg.api_key["BearerToken"]  # "Bearer <token>" as the client sends it
        counts = {"bytes": 0, "pages": 0}
        for path, accept in LISTS[encoding]:
            token = b""
            while True:
                url = f"{path}?limit={PAGE}" + (f"&continue={token.decode()}" if token else "")
                r = pool.urlopen("GET", url, headers={"Authorization": auth, "Accept": accept})
                if r.status != 200:
                    raise SystemExit(f"floor: GET {path}: HTTP {r.status}")
                body = r.data
                counts["bytes"] += len(body)
                counts["pages"] += 1
                if encoding == "json":
                    m = _CONTINUE.search(body, 0, 400)  # the list header comes before the items
                    token = m.group(1) if m else b""
                else:
                    token = continue_token(body).encode()
                if not token:
                    break
        pool.close()
        client.close()
        return counts

    t0 = time.perf_counter()
    res = _each_context(kubeconfig, one)
    return {
        "elapsed_s": time.perf_counter() - t0,
        "bytes": sum(r["bytes"] for r in res),
        "pages": sum(r["pages"] for r in res),
    }


# ---------------------------------------------------------------------------------------------------
# The naive client


def _naive_pod(p: Any) -> dict[str, Any]:
    meta, spec = p.metadata, p.spec
    refs = meta.owner_references or []
    ref = next((r for r in refs if r.controller), refs[0] if refs else None)
    dc = spec.dns_config
    return {
        "namespace": meta.namespace,
        "name": meta.name,
        "node": spec.node_name or None,
        "owner_kind": ref.kind if ref else None,
        "owner_name": ref.name if ref else None,
        "phase": p.status.phase if p.status else None,
        "host_network": bool(spec.host_network),
        "dns_policy": spec.dns_policy,
        "dns_config": None
        if dc is None
        else {
            "nameservers": list(dc.nameservers or []),
            "searches": list(dc.searches or []),
            "options": [{"name": o.name, "value": o.value} for o in dc.options or []],
        },
        "images": [c.image for c in spec.containers if c.image],
        "resolver_annotation": (meta.annotations or {}).get("dnsfleet.io/resolver"),
    }


def _naive_node(n: Any) -> dict[str, Any]:
    from dnsfleet.collect.readers import NODE_LABELS

    labels = n.metadata.labels or {}
    info = n.status.node_info
    ready = None
    for c in n.status.conditions or []:
        if c.type == "Ready":
            ready = {"True": True, "False": False}.get(c.status)
    return {
        "name": n.metadata.name,
        "labels": {k: labels[k] for k in NODE_LABELS if k in labels},
        "kernel_version": info.kernel_version,
        "os_image": info.os_image,
        "container_runtime": info.container_runtime_version,
        "kubelet_version": info.kubelet_version,
        "ready": ready,
    }


def _pages(fn: Any, **kw: Any) -> list[Any]:
    out: list[Any] = []
    token = None
    while True:
        resp = fn(limit=PAGE, _continue=token, **kw) if token else fn(limit=PAGE, **kw)
        out.extend(resp.items)
        token = resp.metadata._continue
        if not token:
            return out


def naive(kubeconfig: str) -> dict[str, Any]:
    from kubernetes import client as k8s
    from kubernetes import config as k8s_config

    from dnsfleet.collect.cluster import ClusterScan, base_cluster
    from dnsfleet.collect.readers import provider_hint
    from dnsfleet.engine import analyze
    from dnsfleet.kube import Api
    from dnsfleet.snapshot import new_snapshot, now_iso

    def one(ctx: str) -> dict[str, Any]:
        api_client = k8s_config.new_client_from_config(
            config_file=kubeconfig, context=ctx, persist_config=False
        )
        v1, apps, batch = k8s.CoreV1Api(api_client), k8s.AppsV1Api(api_client), k8s.BatchV1Api(api_client)
        nodes = [_naive_node(n) for n in _pages(v1.list_node)]
        job = ClusterScan(ctx, Api(api_client, 30.0))  # reads the kube-system DNS path (a few GETs)
        pods = []
        for p in _pages(v1.list_pod_for_all_namespaces):
            row = _naive_pod(p)
            pods.append(row)
            if row["namespace"] == "kube-system":  # what the DNS part needs from kube-system pods
                conds = [{"type": c.type, "status": c.status} for c in p.status.conditions or []]
                obj = {"metadata": {"labels": p.metadata.labels or {}}, "status": {"conditions": conds}}
                job._note_system_pod(obj, row)
        owners: dict[str, dict[str, list[str]]] = {"ReplicaSet": {}, "Job": {}}
        for kind, items, parent in (
            ("ReplicaSet", _pages(apps.list_replica_set_for_all_namespaces), "Deployment"),
            ("Job", _pages(batch.list_job_for_all_namespaces), "CronJob"),
        ):
            for o in items:
                ref = next((r for r in o.metadata.owner_references or [] if r.controller), None)
                if ref is not None and ref.kind == parent:
                    owners[kind][f"{o.metadata.namespace}/{o.metadata.name}"] = [parent, ref.name]
        out = base_cluster(ctx)
        version = k8s.VersionApi(api_client).get_code().git_version
        out.update(
            status="ok",
            collected_at=now_iso(),
            server_version=version,
            nodes=nodes,
            pods=pods,
            owners=owners,
            dns=job._dns(pods),
            provider=provider_hint(nodes, version),
        )
        api_client.close()
        return out

    t0 = time.perf_counter()
    clusters = _each_context(kubeconfig, one)
    a = analyze(new_snapshot(clusters, source="live"))
    return {
        "elapsed_s": time.perf_counter() - t0,
        "pods": int(a.clusters["pods"].sum()),
        "workloads": len(a.workloads),
    }


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2 or args[0] not in ("floor", "floor-json", "naive") or not Path(args[1]).is_file():
        print("usage: python -m bench.probes floor|floor-json|naive KUBECONFIG", file=sys.stderr)
        return 2
    if args[0] == "naive":
        res = naive(args[1])
    else:
        res = floor(args[1], "json" if args[0] == "floor-json" else "protobuf")
    sys.stdout.write(orjson.dumps(res).decode() + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
