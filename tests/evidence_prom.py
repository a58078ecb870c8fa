"""A real Prometheus with backfilled conntrack and CoreDNS series around an audit record's time, for the
evidence and verify tests (issue 17 §1). Three clusters, same audit time ``t0``:

- ``falls``: three nodes whose insert_failed grows ~40/h and drop ~10/h each until ``t0``, not after;
  CoreDNS SERVFAIL 0.4 % throughout.
- ``flat``: the same growth before and after ``t0`` (the change did nothing).
- ``reset``: like ``falls``, but node ``reset-a`` reboots 30 min after ``t0`` (its counters restart at
  0 from a high value), ``reset-b`` has a 10-minute gap before ``t0`` (still enough samples) and
  ``reset-c`` a 40-minute gap after it (not enough: left out).

Samples every 60 s from ``t0 - 3 h`` to ``end`` (a few minutes before now); epoch seconds.
"""

from __future__ import annotations

import math
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.fleet.fleet import _Proc, _wait_http, prometheus_process
from tests.fleet.metrics import backfill

STEP = 60
PER_HOUR = 40.0
DROP_PER_HOUR = 10.0
QPS = 50.0
SERVFAIL = 0.004


@dataclass
class Backfilled:
    url: str
    t0: float
    start: float
    end: float
    proc: _Proc

    def stop(self) -> None:
        self.proc.stop()


def _lab(d: dict[str, str]) -> str:
    return "{" + ",".join(f'{k}="{v}"' for k, v in d.items()) + "}"


def _node_lines(
    cluster: str,
    node: str,
    stamps: range,
    t0: float,
    falls: bool,
    idx: int,
    reboot: float | None = None,
    gap: tuple[float, float] | None = None,
) -> Iterator[tuple[str, str]]:
    lab = _lab({"cluster": cluster, "job": "node-exporter", "instance": f"{node}:9100", "node": node})
    failed = 1000.0 + 100 * idx  # counters that have been running for a while
    drop = 200.0
    prev = None
    for t in stamps:
        if prev is not None:
            dt = t - prev
            grows = not (falls and t > t0)
            if reboot is not None and prev < reboot <= t:
                failed = drop = 0.0
            elif grows:
                burst = 1.0 + 0.5 * math.sin(t / 300 + idx)
                failed += PER_HOUR * burst * dt / 3600
                drop += DROP_PER_HOUR * burst * dt / 3600
        prev = t
        if gap and gap[0] <= t < gap[1]:
            continue
        yield (
            "node_nf_conntrack_stat_insert_failed",
            f"node_nf_conntrack_stat_insert_failed{lab} {math.floor(failed)} {t}\n",
        )
        yield "node_nf_conntrack_stat_drop", f"node_nf_conntrack_stat_drop{lab} {math.floor(drop)} {t}\n"


def _coredns_lines(cluster: str, stamps: range) -> Iterator[tuple[str, str]]:
    base = {"cluster": cluster, "job": "coredns", "instance": "198.18.0.10:9153", "server": "dns://:53"}
    req = ok = fail = 0.0
    for i, t in enumerate(stamps):
        if i:
            req += QPS * STEP
            fail += QPS * SERVFAIL * STEP
            ok += QPS * (1 - SERVFAIL) * STEP
        yield "coredns_build_info", f"coredns_build_info{_lab({**base, 'version': '1.11.3'})} 1 {t}\n"
        yield (
            "coredns_dns_requests_total",
            f"coredns_dns_requests_total{_lab({**base, 'type': 'A'})} {req:.0f} {t}\n",
        )
        yield (
            "coredns_dns_responses_total",
            (
                f"coredns_dns_responses_total{_lab({**base, 'rcode': 'NOERROR'})} {ok:.0f} {t}\n"
                f"coredns_dns_responses_total{_lab({**base, 'rcode': 'SERVFAIL'})} {fail:.0f} {t}\n"
            ),
        )


def openmetrics(t0: float, start: int, end: int) -> str:
    stamps = range(start, end + 1, STEP)
    fams: dict[str, list[str]] = {}
    for cluster, falls in (("falls", True), ("flat", False)):
        for i in range(3):
            for fam, line in _node_lines(cluster, f"{cluster}-{'abc'[i]}", stamps, t0, falls, i):
                fams.setdefault(fam, []).append(line)
    for fam, line in _node_lines("reset", "reset-a", stamps, t0, True, 0, reboot=t0 + 1800):
        fams.setdefault(fam, []).append(line)
    for fam, line in _node_lines("reset", "reset-b", stamps, t0, True, 1, gap=(t0 - 1800, t0 - 1200)):
        fams.setdefault(fam, []).append(line)
    for fam, line in _node_lines("reset", "reset-c", stamps, t0, True, 2, gap=(t0 + 900, t0 + 3300)):
        fams.setdefault(fam, []).append(line)
    for cluster in ("falls", "flat", "reset"):
        for fam, line in _coredns_lines(cluster, stamps):
            fams.setdefault(fam, []).append(line)
    out = []
    for fam, lines in fams.items():
        out.append(f"# TYPE {fam} gauge\n")
        out.extend(lines)
    out.append("# EOF\n")
    return "".join(out)


def start(workdir: Path) -> Backfilled:
    """Backfill and serve; the caller stops it."""
    if not (shutil.which("prometheus") and shutil.which("promtool")):
        raise RuntimeError("prometheus/promtool missing: run tests/fleet/install-system-deps.sh")
    end = int(time.time()) // 60 * 60 - 180
    t0 = float(end - 100 * 60)
    start_s = int(t0) - 3 * 3600
    data = workdir / "data"
    data.mkdir(parents=True, exist_ok=True)
    om = workdir / "evidence.om"
    om.write_text(openmetrics(t0, start_s, end))
    backfill(om, data)
    proc, url = prometheus_process(workdir, data)
    try:
        _wait_http(f"{url}/-/ready", proc, 60)
    except Exception:
        proc.stop()
        raise
    return Backfilled(url, t0, float(start_s), float(end), proc)
