"""The snapshot store at fleet scale (issue 18's Speed section), on a local directory and on a real S3
server (versitygw on 127.0.0.1, ``tests/fleet/s3.py``), side by side.

A synthetic store of ``clusters`` x ``scans``: the newest scan of each cluster holds ``pods`` pods (the
demo fleet's largest cluster, its pods repeated under new names, nodes scaled to 1 per 30 pods); older
scans hold a 20-pod cluster (only their index rows are read by the history), written with the real
``write_scan`` by 8 concurrent writers, then compacted as a deployment's ``dnsfleet store compact``
would. Measured, median of ``repeat`` runs, each with a fresh ``SnapshotStore`` (no cache):

- ``write_5k``: one collector write of a ``write_pods``-pod cluster (serialise + gzip + two create-only
  puts): target <= 1 s to the S3 server.
- ``index``: read the whole index (every row of every scan: what the History page and ``compact`` read).
- ``overview_cold``: the dashboard's overview data on a cold cache, as ``dashboard.sources`` gets it:
  the index heads (each cluster's newest rows, ``read_heads``) and the overview frame; no cluster
  object. ``overview_page_cold`` / ``overview_page_warm``: the Fleet overview page itself run by
  Streamlit's ``AppTest`` with ``DNSFLEET_STORE`` (server side: the script, its caches, the table and
  chart built; not a browser's drawing), caches cleared / a rerun of the same session: targets
  <= 3 s cold and <= 0.5 s warm.
- ``history``: read the index and build the history frame with regressions (the History page's data,
  its charts not included); ``history_page``: the History page in ``AppTest``, cold: target <= 2 s.
- ``drilldown_read``: the newest scan of one cluster through the index heads (heads + one object);
  ``drilldown``: that plus its assessment (``engine.analyze`` of that one cluster), cold: target
  <= 1 s; ``drilldown_warm``: the same with the heads already read (the dashboard after the overview).
- ``latest_all``: the newest object of every cluster (what ``report --store`` and the dashboard's
  "Load the whole fleet" read), without scoring.

Not measured here: the dashboard in a browser (``bench/dashboard.py`` does that for snapshot files).

    .venv/bin/python -m bench.store --clusters 100 --scans 30 --pods 1000   # reduced size
    .venv/bin/python -m bench.store                                          # issue size: 1000 x 30
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from dnsfleet.demo import demo_snapshot
from dnsfleet.engine import analyze
from dnsfleet.store import SnapshotStore, summary_row
from dnsfleet.store.history import history_frame

TARGETS_S = {
    "write_5k": 1.0,
    "overview_page_cold": 3.0,
    "overview_page_warm": 0.5,
    "history_page": 2.0,
    "drilldown": 1.0,
}
KEYS = (
    "write_5k",
    "index",
    "overview_cold",
    "overview_page_cold",
    "overview_page_warm",
    "history",
    "history_page",
    "drilldown_read",
    "drilldown",
    "drilldown_warm",
    "latest_all",
)
APP = str(Path(__file__).resolve().parent.parent / "dashboard" / "app.py")


def synthetic_cluster(name: str, pods: int) -> dict[str, Any]:
    """The demo's largest cluster grown (or cut) to ``pods`` pods on ``max(3, pods // 30)`` nodes."""
    base = max(demo_snapshot()["clusters"], key=lambda c: len(c.get("pods") or []))
    c = copy.deepcopy(base)
    nodes0 = c["nodes"]
    n_nodes = max(3, pods // 30)
    c["nodes"] = [dict(nodes0[i % len(nodes0)], name=f"node-{i}") for i in range(n_nodes)]
    src = base["pods"]
    c["pods"] = [
        dict(src[i % len(src)], name=f"{src[i % len(src)]['name']}-{i}", node=f"node-{i % n_nodes}")
        for i in range(pods)
    ]
    c["name"] = name
    if c.get("metrics", {}).get("conntrack"):
        c["metrics"]["conntrack"] = None  # per-node series of the original nodes would not match
    return c


def populate(url: str, clusters: int, scans: int, pods: int) -> float:
    """Write the synthetic store; returns the seconds it took (writes + compaction)."""
    t0 = time.perf_counter()
    small = synthetic_cluster("x", 20)
    big = synthetic_cluster("x", pods)
    start = datetime.now(UTC) - timedelta(minutes=30 * (scans - 1))  # the newest scans: now

    def one(i: int) -> None:
        st = SnapshotStore(url)
        name = f"cluster-{i:04d}"
        for s in range(scans):
            c = dict(big if s == scans - 1 else small, name=name)
            score = 20 + (i * 7 + s * 3) % 70
            risk = {"score": score, "level": "high" if score >= 70 else "medium" if score >= 40 else "low"}
            risk.update(exposed_pods=len(c["pods"]) // 3, unknown_pods=len(c["pods"]) // 10, evidence_pts=1.0)
            st.write_scan(
                c, summary_row(c, risk), now=start + timedelta(minutes=30 * s), collector_id=f"uid-{i}"
            )

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(one, range(clusters)))
    SnapshotStore(url).compact()
    return time.perf_counter() - t0


def timed(fn: Callable[[], Any], repeat: int) -> list[float]:
    out = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


def _pages(url: str) -> Callable[[str, bool], float]:
    """A runner of a dashboard page in ``AppTest`` with ``DNSFLEET_STORE=url``: ``run(page, cold)``
    times one run (cold: every Streamlit cache cleared and a new session first)."""
    import streamlit as st
    from streamlit.testing.v1 import AppTest

    os.environ["DNSFLEET_STORE"] = url
    os.environ["DNSFLEET_AUDIT_LOG"] = os.path.join(tempfile.gettempdir(), "dnsfleet-bench-no-audit.jsonl")
    for k in ("DNSFLEET_SNAPSHOT", "DNSFLEET_KUBECONFIG", "KUBECONFIG", "DNSFLEET_PROMETHEUS"):
        os.environ.pop(k, None)
    state: dict[str, Any] = {}

    def run(page: str, cold: bool) -> float:
        if cold or "at" not in state:
            st.cache_data.clear()
            st.cache_resource.clear()
            state["at"] = AppTest.from_file(APP, default_timeout=600)
            if page != "overview":
                state["at"].switch_page(f"../pages/{page}.py")
        at = state["at"]
        t = time.perf_counter()
        at.run()
        took = time.perf_counter() - t
        if at.exception:
            raise RuntimeError(f"{page}: {[e.value for e in at.exception]}")
        return took

    return run


def measure(url: str, clusters: int, write_pods: int, repeat: int) -> dict[str, list[float]]:
    """Every measurement on the store at ``url``; the environment the pages ran with is restored."""
    saved = dict(os.environ)
    try:
        return _measure(url, clusters, write_pods, repeat)
    finally:
        os.environ.clear()
        os.environ.update(saved)


def _measure(url: str, clusters: int, write_pods: int, repeat: int) -> dict[str, list[float]]:
    from dnsfleet.store.overview import overview_frame

    five_k = synthetic_cluster("bench-write", write_pods)
    summary = summary_row(five_k, {"score": 50.0, "level": "medium", "exposed_pods": 10})
    one = f"cluster-{clusters // 2:04d}"
    analyze(demo_snapshot())  # imports and rule tables once: a running dashboard has them loaded
    heads = SnapshotStore(url).read_heads()
    page = _pages(url)
    page("overview", True)  # the page's own imports once: a running dashboard has them loaded

    def drill() -> None:
        latest = SnapshotStore(url).latest([one])
        analyze(latest.snapshot)

    def drill_warm() -> None:
        analyze(SnapshotStore(url).latest([one], heads=heads).snapshot)

    out = {
        "overview_cold": timed(lambda: overview_frame(SnapshotStore(url).read_heads()), repeat),
        "overview_page_cold": [page("overview", True) for _ in range(repeat)],
        "overview_page_warm": [page("overview", False) for _ in range(repeat)],
        "history_page": [page("history", True) for _ in range(repeat)],
        "index": timed(lambda: SnapshotStore(url).read_index(), repeat),
        "history": timed(lambda: history_frame(SnapshotStore(url).read_index()), repeat),
        "drilldown_read": timed(lambda: SnapshotStore(url).latest([one]), repeat),
        "drilldown": timed(drill, repeat),
        "drilldown_warm": timed(drill_warm, repeat),
        "latest_all": timed(lambda: SnapshotStore(url).latest(), max(1, repeat // 2)),
    }
    # Last: each write adds a loose index row the reads above would also read.
    out["write_5k"] = timed(lambda: SnapshotStore(url).write_scan(five_k, summary), repeat)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.store", description=__doc__.split("\n\n")[0])
    ap.add_argument("--clusters", type=int, default=1000)
    ap.add_argument("--scans", type=int, default=30)
    ap.add_argument("--pods", type=int, default=1000, help="pods per cluster in the newest scans (1000)")
    ap.add_argument(
        "--write-pods", type=int, default=5000, help="pods of the collector write measured (5000)"
    )
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--only", choices=("local", "s3"), help="one backend only")
    args = ap.parse_args(argv)

    from tests.fleet.s3 import S3Server

    results: dict[str, dict[str, list[float]]] = {}
    populate_s: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="dnsfleet-bench-store-") as tmp:
        backends = [b for b in ("local", "s3") if args.only in (None, b)]
        server = None
        try:
            for b in backends:
                if b == "local":
                    url = str(Path(tmp) / "local")
                else:
                    server = S3Server(Path(tmp) / "s3").start()
                    os.environ.update(server.env)
                    url = server.url("bench").replace("timeout=3", "timeout=30")
                print(f"[bench.store] {b}: writing {args.clusters} x {args.scans} scans…", file=sys.stderr)
                populate_s[b] = populate(url, args.clusters, args.scans, args.pods)
                results[b] = measure(url, args.clusters, args.write_pods, args.repeat)
        finally:
            if server is not None:
                server.stop()

    total_pods = args.clusters * args.pods
    print(
        f"\nSnapshot store: {args.clusters} clusters x {args.scans} scans, {total_pods:,} pods in the newest scans; "
        f"medians of {args.repeat} (latest_all: {max(1, args.repeat // 2)})\n"
    )
    head = "| | " + " | ".join(f"{b}, s" for b in results) + " | target |"
    print(head)
    print("|---|" + "---:|" * len(results) + "---|")
    print(
        "| populate (writes + compaction) | " + " | ".join(f"{populate_s[b]:.1f}" for b in results) + " | |"
    )
    for key in KEYS:
        cells = []
        for b in results:
            xs = results[b][key]
            cells.append(f"{statistics.median(xs):.3f} ({min(xs):.3f}-{max(xs):.3f})")
        target = TARGETS_S.get(key)
        verdict = ""
        if target is not None:
            verdict = f"<= {target:g} s: " + ", ".join(
                f"{b} {'met' if statistics.median(results[b][key]) <= target else '**NOT met**'}"
                for b in results
            )
        label = {"write_5k": f"collector write, {args.write_pods:,} pods"}.get(key, key)
        print(f"| {label} | " + " | ".join(cells) + f" | {verdict} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
