"""Prometheus for the fleet: OpenMetrics generated from the specs, backfilled with promtool, served by a
real ``prometheus`` on 127.0.0.1 (recipe §6).

Series (every one carries ``cluster="<context>"``):

- Per ready CoreDNS pod (``job="coredns"``, ``namespace="kube-system"``, ``pod``, ``instance=<ip>:9153``):
  ``coredns_build_info{version}``, ``coredns_dns_requests_total{server,zone,proto,family,type}``,
  ``coredns_dns_responses_total{server,zone,rcode[,plugin]}`` (``plugin`` from CoreDNS 1.9),
  ``coredns_dns_request_duration_seconds_{bucket,sum,count}{server,zone,type}``, and the forward
  family by version: >= 1.11 ``coredns_proxy_request_duration_seconds{proxy_name="forward",to,rcode}``;
  1.7-1.10 ``coredns_forward_requests_total{to}`` + ``coredns_forward_request_duration_seconds{to,rcode}``.
- Per node when ``spec.conntrack_metrics`` (``job="node-exporter"``, ``instance`` = ``node`` = node name):
  ``node_nf_conntrack_stat_insert_failed`` (grows by the pool's, else the cluster's, ``insert_failed_per_min``
  per node, else flat),
  ``node_nf_conntrack_stat_drop``, ``node_nf_conntrack_entries``, ``node_nf_conntrack_entries_limit``.
  The first node of a growing cluster reboots mid-window (its counters reset to 0): ``increase()``
  must handle it.

Samples run from ``end - window`` to ``end`` every ``step`` seconds; timestamps are epoch SECONDS.
"""

from __future__ import annotations

import math
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

from tests.fleet import spec as S

BUCKETS = tuple(0.00025 * 2**i for i in range(16))  # CoreDNS: ExponentialBuckets(0.00025, 2, 16)
SERVER = "dns://:53"
TYPES = (("A", 0.47), ("AAAA", 0.47), ("other", 0.06))
PROTOS = (("udp", 0.96), ("tcp", 0.04))
CONNTRACK_LIMIT = 262144


def version_tuple(v: str) -> tuple[int, ...]:
    m = re.match(r"v?(\d+)\.(\d+)\.(\d+)", v)
    if not m:
        raise ValueError(f"not a CoreDNS version: {v!r}")
    return tuple(int(x) for x in m.groups())


def _labels(d: dict[str, str]) -> str:
    return "{" + ",".join(f'{k}="{v}"' for k, v in d.items()) + "}"


def _wave(t: float, seed: int) -> float:
    """A smooth load curve around 1.0 (+-25%) with a deterministic wobble; the same for a given seed."""
    return 1.0 + 0.2 * math.sin(t / 3600 * 2 * math.pi / 24 * 6 + seed) + 0.05 * math.sin(t / 97 + seed * 7)


def _lat_cdf(le: float, median_s: float, slow: float) -> float:
    """Share of requests at or under ``le`` seconds: a log-logistic body plus a slow tail in 1-4 s."""
    body = 1.0 / (1.0 + (median_s / le) ** 2.5)
    tail = 0.0 if le < 1.024 else (0.4 if le < 2.048 else (0.9 if le < 4.096 else 1.0))
    return (1 - slow) * body + slow * tail


def _stamps(start: int, end: int, step: int) -> range:
    return range(start, end + 1, step)


def _fmt(v: float) -> str:
    return repr(round(v, 6)) if v != int(v) else str(int(v))


def _histogram(
    name: str, base: dict[str, str], stamps: range, rate_of, median_s: float, slow: float
) -> Iterator[str]:
    """One histogram series: per timestamp all buckets, then sum and count (an OpenMetrics MetricPoint)."""
    cdf = [_lat_cdf(le, median_s, slow) for le in BUCKETS]
    mean = (1 - slow) * median_s * 1.3 + slow * 1.8
    total = 0.0
    prev = None
    lb = _labels(base)[1:-1]
    for t in stamps:
        if prev is not None:
            total += rate_of(t) * (t - prev)
        prev = t
        n = round(total)
        for le, c in zip(BUCKETS, cdf, strict=True):
            yield f'{name}_bucket{{{lb},le="{le:g}"}} {math.floor(n * c)} {t}\n'
        yield f'{name}_bucket{{{lb},le="+Inf"}} {n} {t}\n'
        yield f"{name}_sum{{{lb}}} {_fmt(n * mean)} {t}\n"
        yield f"{name}_count{{{lb}}} {n} {t}\n"


def _counter(name: str, labels: dict[str, str], stamps: range, rate_of) -> Iterator[str]:
    total = 0.0
    prev = None
    lb = _labels(labels)
    for t in stamps:
        if prev is not None:
            total += rate_of(t) * (t - prev)
        prev = t
        yield f"{name}{lb} {round(total)} {t}\n"


def coredns_families(spec: S.ClusterSpec, stamps: range) -> dict[str, tuple[str, list[str]]]:
    """family name -> (type, lines) for one cluster's ready CoreDNS pods."""
    ver = version_tuple(spec.coredns_version)
    ips = S.pod_ips(spec)
    pods = [p for p in S.coredns_pods(spec) if p.ready and ips.get(p.name)]
    fam: dict[str, tuple[str, list[str]]] = {}

    def add(name: str, typ: str, lines: Iterator[str]) -> None:
        fam.setdefault(name, (typ, []))[1].extend(lines)

    rcodes = (
        ("NOERROR", 1 - spec.nxdomain_share - spec.servfail_share),
        ("NXDOMAIN", spec.nxdomain_share),
        ("SERVFAIL", spec.servfail_share),
    )
    median = spec.latency_median_ms / 1000
    for k, p in enumerate(pods):
        base = {
            "cluster": spec.name,
            "job": "coredns",
            "namespace": "kube-system",
            "pod": p.name,
            "instance": f"{ips[p.name]}:9153",
        }
        per_pod = spec.qps / len(pods)

        def rate(share: float, seed: int = k, per: float = per_pod):
            return lambda when: per * share * _wave(when, seed)

        info = _labels(
            {**base, "version": spec.coredns_version, "revision": "a7ed346", "goversion": "go1.21.8"}
        )
        add("coredns_build_info", "gauge", (f"coredns_build_info{info} 1 {t}\n" for t in stamps))
        for proto, ps in PROTOS:
            for typ, ts in TYPES:
                lab = {**base, "server": SERVER, "zone": ".", "proto": proto, "family": "1", "type": typ}
                add(
                    "coredns_dns_requests",
                    "counter",
                    _counter("coredns_dns_requests_total", lab, stamps, rate(ps * ts)),
                )
        for rcode, share in rcodes:
            lab = {**base, "server": SERVER, "zone": ".", "rcode": rcode}
            if ver >= (1, 9, 0):
                lab["plugin"] = "" if rcode != "NXDOMAIN" else "kubernetes"
            add(
                "coredns_dns_responses",
                "counter",
                _counter("coredns_dns_responses_total", lab, stamps, rate(share)),
            )
        for typ, ts in TYPES:
            lab = {**base, "server": SERVER, "zone": ".", "type": typ}
            add(
                "coredns_dns_request_duration_seconds",
                "histogram",
                _histogram(
                    "coredns_dns_request_duration_seconds", lab, stamps, rate(ts), median, spec.slow_share
                ),
            )
        fwd_rate = rate(spec.forward_share)
        fwd_median = median * 8 + 0.004
        if ver >= (1, 11, 0):
            lab = {**base, "proxy_name": "forward", "to": spec.upstream_dns, "rcode": "NOERROR"}
            add(
                "coredns_proxy_request_duration_seconds",
                "histogram",
                _histogram(
                    "coredns_proxy_request_duration_seconds",
                    lab,
                    stamps,
                    fwd_rate,
                    fwd_median,
                    spec.slow_share,
                ),
            )
        elif ver >= (1, 7, 0):
            lab = {**base, "to": spec.upstream_dns}
            add(
                "coredns_forward_requests",
                "counter",
                _counter("coredns_forward_requests_total", lab, stamps, fwd_rate),
            )
            add(
                "coredns_forward_request_duration_seconds",
                "histogram",
                _histogram(
                    "coredns_forward_request_duration_seconds",
                    {**lab, "rcode": "NOERROR"},
                    stamps,
                    fwd_rate,
                    fwd_median,
                    spec.slow_share,
                ),
            )
        else:
            raise ValueError(
                f"{spec.name}: CoreDNS {spec.coredns_version} < 1.7 metric names are not generated"
            )
    return fam


def reset_at(stamps: range) -> int:
    """Timestamp at which the first node of a growing cluster reboots (counters restart from 0)."""
    return stamps[int(len(stamps) * 0.6)]


def conntrack_families(spec: S.ClusterSpec, stamps: range) -> dict[str, tuple[str, list[str]]]:
    if not spec.conntrack_metrics:
        return {}
    fam: dict[str, tuple[str, list[str]]] = {
        n: ("gauge", [])
        for n in (
            "node_nf_conntrack_stat_insert_failed",
            "node_nf_conntrack_stat_drop",
            "node_nf_conntrack_entries",
            "node_nf_conntrack_entries_limit",
        )
    }
    reboot = reset_at(stamps)
    for n in S.nodes(spec):
        per_min = S.pool_insert_failed(spec, n.pool)
        grows = per_min > 0
        lab = _labels({"cluster": spec.name, "job": "node-exporter", "instance": n.name, "node": n.name})
        failed = 0.0 if grows else float(3 + n.index % 4)  # flat, but not zero: only increase() tells
        drop = 0.0
        prev = None
        for t in stamps:
            if prev is not None and grows:
                if n.index == 0 and prev < reboot <= t:
                    failed = drop = 0.0
                else:
                    burst = 1.0 + 0.9 * math.sin(t / 420 + n.index)  # bursty but never negative
                    failed += per_min * burst * (t - prev) / 60
                    drop += per_min * 0.25 * burst * (t - prev) / 60
            prev = t
            entries = 6000 + 2500 * _wave(t, n.index) + 40 * n.index
            fam["node_nf_conntrack_stat_insert_failed"][1].append(
                f"node_nf_conntrack_stat_insert_failed{lab} {round(failed)} {t}\n"
            )
            fam["node_nf_conntrack_stat_drop"][1].append(
                f"node_nf_conntrack_stat_drop{lab} {round(drop)} {t}\n"
            )
            fam["node_nf_conntrack_entries"][1].append(
                f"node_nf_conntrack_entries{lab} {round(entries)} {t}\n"
            )
            fam["node_nf_conntrack_entries_limit"][1].append(
                f"node_nf_conntrack_entries_limit{lab} {CONNTRACK_LIMIT} {t}\n"
            )
    return fam


def openmetrics(
    specs: list[S.ClusterSpec] | tuple[S.ClusterSpec, ...], start: int, end: int, step: int = 60
) -> str:
    """The whole fleet as one OpenMetrics document (families grouped, samples time-ordered, ``# EOF``)."""
    if start >= end or end > 10**11:
        raise ValueError("start/end must be epoch SECONDS with start < end")
    stamps = _stamps(start, end, step)
    merged: dict[str, tuple[str, list[str]]] = {}
    for spec in specs:
        for fams in (coredns_families(spec, stamps), conntrack_families(spec, stamps)):
            for name, (typ, lines) in fams.items():
                merged.setdefault(name, (typ, []))[1].extend(lines)
    out: list[str] = []
    for name, (typ, lines) in merged.items():
        out.append(f"# TYPE {name} {typ}\n")
        out.extend(lines)
    out.append("# EOF\n")
    return "".join(out)


def backfill(om_file: Path, data_dir: Path, promtool: str = "promtool") -> None:
    r = subprocess.run(
        [promtool, "tsdb", "create-blocks-from", "openmetrics", "-q", str(om_file), str(data_dir)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    if r.returncode != 0:
        tail = (r.stderr or r.stdout).strip().splitlines()[-3:]
        raise RuntimeError(f"promtool backfill failed (exit {r.returncode}): {' | '.join(tail)}")


PROMETHEUS_CONFIG = "global:\n  scrape_interval: 15s\n  evaluation_interval: 15s\nscrape_configs: []\n"
