"""Live collection: scan kubeconfig contexts (and optionally Prometheus) into a dnsfleet snapshot.

>>> from dnsfleet.collect import scan
>>> snap = scan(kubeconfig="~/.kube/config", all_contexts=True, prometheus="http://127.0.0.1:9090")

Clusters are read concurrently (``workers`` threads). ``progress(event, cluster, detail)`` receives
``cluster_started``, ``resource_done`` and ``cluster_done`` events, always on the thread that called
``scan`` (so a UI can update its widgets from it). Without Prometheus, CoreDNS metrics come from one
scrape of each CoreDNS pod through the API server's pod proxy.
"""

from __future__ import annotations

import queue
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from dnsfleet.collect.cluster import ClusterScan, Progress, failed_cluster
from dnsfleet.collect.prom import PromError, PromSource, collect_metrics
from dnsfleet.collect.scrape import scrape_cluster
from dnsfleet.kube import Api, ClusterFailed, ConfigError, Target, new_api_client, resolve_targets
from dnsfleet.scrub import scrub_paths
from dnsfleet.snapshot import new_snapshot

__all__ = ["ConfigError", "PromError", "PromSource", "scan", "scan_cluster"]


def scan(
    kubeconfig: str | Path | list[str | Path] | None = None,
    contexts: list[str] | None = None,
    all_contexts: bool = False,
    prometheus: str | PromSource | None = None,
    progress: Progress | None = None,
    timeout: float = 10.0,
    workers: int = 8,
    scrape: bool = True,
) -> dict[str, Any]:
    """Scan clusters and return a full snapshot (``source: "live"``).

    Raises ConfigError (one line) when the kubeconfig, contexts or Prometheus settings are unusable;
    a cluster that cannot be read is a ``failed`` row in the snapshot, never an exception.
    """
    if timeout <= 0:
        raise ConfigError("timeout must be positive")
    if workers < 1:
        raise ConfigError("workers must be at least 1")
    if isinstance(prometheus, str):
        try:
            prometheus = PromSource(prometheus, timeout=timeout)
        except ValueError as e:
            raise ConfigError(str(e)) from None
    targets = resolve_targets(kubeconfig, contexts, all_contexts)

    events: queue.SimpleQueue[tuple[str, str, str] | None] = queue.SimpleQueue()

    def emit(event: str, cluster: str, detail: str) -> None:
        events.put((event, cluster, detail))

    results: dict[str, dict[str, Any]] = {}
    with ThreadPoolExecutor(max_workers=min(workers, len(targets)), thread_name_prefix="dnsfleet-scan") as ex:
        futures = {ex.submit(scan_cluster, t, prometheus, emit, timeout, scrape): t for t in targets}
        for fut in futures:
            fut.add_done_callback(lambda _f: events.put(None))
        pending = len(futures)
        while pending:
            item = events.get()
            if item is None:
                pending -= 1
            elif progress is not None:
                progress(*item)
        for fut, t in futures.items():
            results[t.name] = fut.result()
    # drain events that arrived after the last completion marker
    while progress is not None:
        try:
            item = events.get_nowait()
        except queue.Empty:
            break
        if item is not None:
            progress(*item)
    return new_snapshot([results[t.name] for t in targets], source="live")


def scan_cluster(
    target: Target,
    prometheus: PromSource | None = None,
    progress: Progress | None = None,
    timeout: float = 10.0,
    scrape: bool = True,
    page_limit: int | None = None,
) -> dict[str, Any]:
    """Read one cluster into a snapshot cluster dict. Never raises for cluster-side problems."""
    if progress:
        progress("cluster_started", target.name, target.context or "in-cluster config")
    api_client = None
    try:
        try:
            api_client = new_api_client(target, timeout)
            api = Api(api_client, timeout)
            job = ClusterScan(target.name, api, progress)
            if page_limit:
                job.page_limit = page_limit
            out = job.run()
        except ClusterFailed as e:
            out = failed_cluster(target.name, e.reason)
        else:
            try:
                out["metrics"] = _metrics(job, out, prometheus, timeout, scrape)
            except Exception as e:  # metrics are optional: a failure there must not cost the cluster
                out["metrics"]["note"] = (
                    f"not collected: internal error: {type(e).__name__}: {' '.join(str(e).split())[:160]}"
                )
            if progress:
                progress("resource_done", target.name, f"metrics {out['metrics'].get('source') or 'none'}")
    except Exception as e:  # a bug must cost one cluster, not the scan; keep it one line, no traceback
        out = failed_cluster(
            target.name, f"internal error: {type(e).__name__}: {' '.join(str(e).split())[:200]}"
        )
    finally:
        if api_client is not None:
            api_client.close()
    scrub_paths(out, _TEXTS)  # every reason and note, whatever produced it, through the one scrubber
    if progress:
        detail = out["status"] if not out.get("reason") else f"{out['status']}: {out['reason']}"
        progress("cluster_done", target.name, detail)
    return out


_TEXTS = (("reason",), ("metrics", "note"), ("metrics", "conntrack", "reason"))


def _metrics(
    job: ClusterScan, out: dict[str, Any], prometheus: PromSource | None, timeout: float, scrape: bool
) -> dict[str, Any]:
    dns = out.get("dns") or {}
    if prometheus is not None:
        return collect_metrics(
            prometheus,
            out["name"],
            node_names=[n["name"] for n in out.get("nodes") or []],
            node_addresses=job.node_addresses,
            coredns_version=dns.get("coredns_version"),
        )
    if scrape and out.get("pods") is not None:
        return scrape_cluster(job.api, job.coredns_pods, timeout=min(timeout, 5.0))
    metrics = dict(out["metrics"])
    metrics["note"] = "not collected: no Prometheus given" + ("" if scrape else " and scraping disabled")
    return metrics
