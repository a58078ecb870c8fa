"""CoreDNS metrics without Prometheus: one scrape of each CoreDNS pod's ``:9153/metrics``.

The scrape goes through the API server's pod proxy
(``/api/v1/namespaces/kube-system/pods/<pod>:9153/proxy/metrics``), so it needs ``get`` on
``pods/proxy`` and nothing on the nodes. The text format is parsed with
``prometheus_client.parser.text_string_to_metric_families``.

A scrape is a single point in time: counters hold totals since each pod started, so the figures are
averages since start-up (rates use ``process_start_time_seconds``), there is no time series and no
node conntrack data. ``metrics.note`` says so.
"""

from __future__ import annotations

import math
import time as _time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from dnsfleet.collect.cluster import KUBE_SYSTEM
from dnsfleet.collect.prom import rcode_shares, share_over, version_tuple
from dnsfleet.kube import Api, ClusterFailed, ResourceError
from dnsfleet.kube.refs import pod_proxy_path
from dnsfleet.snapshot_schema import metrics_record

METRICS_PORT = 9153
MAX_PODS = 10


@dataclass
class CoreDNSSample:
    """Totals read from one or more CoreDNS expositions, summed over pods."""

    version: str | None = None
    requests: float | None = None
    rates: float | None = None  # requests/s averaged since each pod's start (needs process_start_time)
    uptime_s: float | None = None  # longest pod uptime
    rcodes: dict[str, float] = field(default_factory=dict)
    duration: dict[float, float] = field(default_factory=dict)  # le -> cumulative count
    forward: dict[float, float] = field(default_factory=dict)


def parse_exposition(text: str, now: float | None = None) -> CoreDNSSample:
    """Parse one CoreDNS ``/metrics`` text. Raises ValueError on text that is not the exposition format."""
    try:
        return merge([_parse_one(text, now if now is not None else _time.time())])
    except ValueError:
        raise
    except Exception as e:  # prometheus_client raises IndexError, KeyError... on some garbage
        raise ValueError(f"{type(e).__name__}: {' '.join(str(e).split())[:120]}") from None


def _parse_one(text: str, now: float) -> CoreDNSSample:
    s = CoreDNSSample()
    requests_new: float | None = None
    requests_old: float | None = None
    fwd_proxy: dict[float, float] = {}
    fwd_old: dict[float, float] = {}
    start: float | None = None
    # imported here: a scan without scraping (--no-scrape, or Prometheus) never needs the parser
    from prometheus_client.parser import text_string_to_metric_families

    for fam in text_string_to_metric_families(text):
        for sm in fam.samples:
            name, labels, value = sm.name, sm.labels, float(sm.value)
            if math.isnan(value):
                continue
            if name == "coredns_build_info" and labels.get("version"):
                s.version = labels["version"]
            elif name == "coredns_dns_requests_total":
                requests_new = (requests_new or 0.0) + value
            elif name == "coredns_dns_request_count_total":
                requests_old = (requests_old or 0.0) + value
            elif name in ("coredns_dns_responses_total", "coredns_dns_response_rcode_count_total"):
                rc = labels.get("rcode", "")
                s.rcodes[rc] = s.rcodes.get(rc, 0.0) + value
            elif name == "coredns_dns_request_duration_seconds_bucket":
                _add_bucket(s.duration, labels.get("le"), value)
            elif name == "coredns_proxy_request_duration_seconds_bucket":
                if labels.get("proxy_name", "forward") == "forward":
                    _add_bucket(fwd_proxy, labels.get("le"), value)
            elif name == "coredns_forward_request_duration_seconds_bucket":
                _add_bucket(fwd_old, labels.get("le"), value)
            elif name == "process_start_time_seconds":
                start = value
    s.requests = requests_new if requests_new is not None else requests_old
    s.forward = fwd_proxy or fwd_old
    if start is not None and s.requests is not None and now > start:
        s.uptime_s = now - start
        s.rates = s.requests / s.uptime_s
    return s


def _add_bucket(b: dict[float, float], le: str | None, value: float) -> None:
    if le is None:
        return
    try:
        bound = math.inf if le in ("+Inf", "Inf") else float(le)
    except ValueError:
        return  # a bucket bound that is not a number: skip the sample, keep the rest
    if math.isnan(bound) or math.isnan(value):
        return
    b[bound] = b.get(bound, 0.0) + value


def merge(samples: Iterable[CoreDNSSample]) -> CoreDNSSample:
    out = CoreDNSSample()
    rates_ok = True
    any_rate = False
    for s in samples:
        if s.version and (
            out.version is None or (version_tuple(s.version) or ()) > (version_tuple(out.version) or ())
        ):
            out.version = s.version
        if s.requests is not None:
            out.requests = (out.requests or 0.0) + s.requests
            if s.rates is None:
                rates_ok = False
            else:
                any_rate = True
                out.rates = (out.rates or 0.0) + s.rates
        if s.uptime_s is not None:
            out.uptime_s = max(out.uptime_s or 0.0, s.uptime_s)
        for k, v in s.rcodes.items():
            out.rcodes[k] = out.rcodes.get(k, 0.0) + v
        for k, v in s.duration.items():
            out.duration[k] = out.duration.get(k, 0.0) + v
        for k, v in s.forward.items():
            out.forward[k] = out.forward.get(k, 0.0) + v
    if not (rates_ok and any_rate):
        out.rates = None
    return out


def quantile(q: float, buckets: dict[float, float]) -> float | None:
    """``histogram_quantile`` over cumulative buckets {le: count}, as Prometheus computes it."""
    if math.inf not in buckets or not buckets[math.inf]:
        return None
    bounds = sorted(buckets)
    total = buckets[math.inf]
    rank = q * total
    prev_bound, prev_count = 0.0, 0.0
    for b in bounds:
        count = buckets[b]
        if count >= rank:
            if b == math.inf:
                return prev_bound
            if count == prev_count:
                return b
            return prev_bound + (b - prev_bound) * (rank - prev_count) / (count - prev_count)
        prev_bound, prev_count = b, count
    return None


def summary(s: CoreDNSSample) -> dict[str, Any]:
    """The snapshot ``metrics.coredns`` dict from a (merged) scrape sample."""
    servfail, nxdomain = rcode_shares(s.rcodes)
    p50, p99, fwd = quantile(0.5, s.duration), quantile(0.99, s.duration), quantile(0.99, s.forward)
    return {
        "qps": s.rates,
        "p50_ms": None if p50 is None else p50 * 1000.0,
        "p99_ms": None if p99 is None else p99 * 1000.0,
        "share_over_1s": share_over(s.duration),
        "servfail_share": servfail,
        "nxdomain_share": nxdomain,
        "forward_p99_ms": None if fwd is None else fwd * 1000.0,
        "version": (s.version or "").lstrip("v") or None,
    }


def scrape_cluster(api: Api, coredns_pods: list[dict[str, Any]], timeout: float = 5.0) -> dict[str, Any]:
    """The snapshot ``metrics`` section from one scrape of the cluster's CoreDNS pods."""
    out = metrics_record(
        conntrack={"reason": "not collected: scraping CoreDNS gives no node conntrack data", "nodes": {}}
    )
    pods = [p for p in coredns_pods if p.get("ready")][:MAX_PODS]
    if not pods:
        out["note"] = "not collected: no ready CoreDNS pod (label k8s-app=kube-dns) to scrape"
        return out
    # No retries: a CoreDNS pod the proxy cannot reach answers 503 every time, and metrics are optional.
    scrape_api = Api(api.client, min(timeout, api.timeout), max_retries=0)

    def one(pod: dict[str, Any]) -> CoreDNSSample | str:
        path = pod_proxy_path(KUBE_SYSTEM, pod["name"], METRICS_PORT, "metrics")
        try:
            text = scrape_api.get_bytes(path, accept="text/plain").decode("utf-8", "replace")
            return _parse_one(text, _time.time())
        except ResourceError as e:
            return f"{pod['name']}: HTTP {e.status} {' '.join(e.message().split())[:160]}"
        except ClusterFailed as e:
            return f"{pod['name']}: {e.reason}"
        except Exception as e:  # the parser raises ValueError, IndexError, KeyError... on garbage
            why = " ".join(str(e).split())[:120] or type(e).__name__
            return f"{pod['name']}: not the Prometheus text format ({why})"

    with ThreadPoolExecutor(max_workers=min(4, len(pods))) as ex:
        results = list(ex.map(one, pods))
    ok = [r for r in results if isinstance(r, CoreDNSSample)]
    errors = [r for r in results if isinstance(r, str)]
    if not ok:
        out["note"] = (
            f"not collected: CoreDNS metrics not reachable through the API server pod proxy "
            f"({len(errors)} pod(s) tried; {errors[0]})"
        )
        return out
    merged = merge(ok)
    out["source"] = "scrape"
    out["window_s"] = merged.uptime_s
    out["coredns"] = summary(merged)
    at = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    note = (
        f"single scrape of {len(ok)} CoreDNS pod(s) at {at}: a point in time, figures are averages "
        "since each pod started; no time series"
    )
    if errors:
        note += f"; {len(errors)} pod(s) not reachable ({errors[0]})"
    if merged.rates is None:
        note += "; qps unknown (no process_start_time_seconds)"
    out["note"] = note
    return out
