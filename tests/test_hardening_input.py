"""Bad input: property tests for every parser the collector and the rules run on cluster-controlled text,
unicode / very long / formula-like names through frames, CSV and the dashboard, and hostile uploads.

Already covered (not repeated): hostile snapshot files through ``dnsfleet.snapshot.loads``
(``test_snapshot.py``), kernel strings never "fixed" when unrecognised (``test_kernel_rules.py``),
CLI exit codes for bad snapshots (``test_cli.py``), malformed/wrong-format uploads (``test_dashboard.py``).
"""

from __future__ import annotations

import csv
import gzip
import io
import json
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as hs

from dnsfleet.collect import cluster as CS
from dnsfleet.collect import readers as CR
from dnsfleet.collect.prom import PromClient, PromError, PromSource
from dnsfleet.collect.scrape import parse_exposition
from dnsfleet.corefile import facts as corefile_facts
from dnsfleet.engine import analyze
from dnsfleet.kube import kubeproxy as KP
from dnsfleet.report import csv_reports
from dnsfleet.rules.kernel import classify, minimum_fixed
from dnsfleet.rules.resolver import RESOLVERS, infer_resolver, option_honoured, option_table
from dnsfleet.snapshot import SCHEMA_VERSION, dumps
from tests.builders import cluster, node, pod, snapshot
from tests.test_dashboard import uploaded

FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

json_values = hs.recursive(
    hs.none() | hs.booleans() | hs.integers() | hs.floats(allow_nan=False) | hs.text(max_size=20),
    lambda inner: hs.lists(inner, max_size=4) | hs.dictionaries(hs.text(max_size=12), inner, max_size=4),
    max_leaves=25,
)


def _obj_with(keys: dict[str, Any]) -> Any:
    """Objects that look like API objects at the top but hold anything underneath."""
    return hs.fixed_dictionaries({k: hs.one_of(json_values, v) for k, v in keys.items()})


# -- collector parsers ----------------------------------------------------------------------------------


@FAST
@given(hs.text(max_size=200))
def test_kube_proxy_config_any_text_gives_a_known_mode_or_none(text: str) -> None:
    assert KP.kube_proxy_mode_from_config(text) in (None, "iptables", "ipvs", "nftables")


@FAST
@given(
    hs.dictionaries(hs.text(max_size=10), json_values, max_size=5), hs.sampled_from(["", "iptables", "ipvs"])
)
def test_kube_proxy_config_yaml_documents(doc: dict[str, Any], mode: str) -> None:
    import yaml

    doc["mode"] = mode
    assert KP.kube_proxy_mode_from_config(yaml.safe_dump(doc)) == (mode or "iptables")


def test_kube_proxy_config_hostile_yaml_is_unknown_not_a_crash() -> None:
    for text in ("[" * 5000, "a: &a [*a, *a]\nmode: *a", "mode: !!python/object:os.system x", "\x00\x01"):
        assert KP.kube_proxy_mode_from_config(text) is None


@FAST
@given(hs.text(max_size=300))
def test_corefile_plugin_parsing_never_crashes(text: str) -> None:
    f = corefile_facts(text) or {"plugins": [], "cluster_domain": None}
    for p in f["plugins"]:
        assert p == p.strip() and "\n" not in p and p in text
    assert f["cluster_domain"] is None or "\n" not in f["cluster_domain"]


def test_corefile_plugins_survive_unbalanced_braces_and_comments() -> None:
    assert corefile_facts("}}}\n.:53 {\n errors # {\n cache 30\n") == {
        "plugins": ["errors", "cache"],
        "cluster_domain": None,
    }
    assert corefile_facts(".:53 {\n kubernetes\n") == {"plugins": ["kubernetes"], "cluster_domain": None}


_LINE = hs.builds(
    lambda name, labels, value: f"{name}{{{labels}}} {value}",
    hs.sampled_from(
        [
            "coredns_dns_requests_total",
            "coredns_dns_responses_total",
            "coredns_dns_request_duration_seconds_bucket",
            "process_start_time_seconds",
            "coredns_build_info",
        ]
    ),
    hs.sampled_from(
        ['le="0.25"', 'le="+Inf"', 'le="abc"', 'rcode="NXDOMAIN"', 'version="1.11.1"', 'x="\\""', ""]
    ),
    hs.sampled_from(["1", "0", "-3", "NaN", "+Inf", "1e309", "abc", ""]),
)


@FAST
@given(hs.lists(_LINE, max_size=12) | hs.text(max_size=200).map(lambda t: [t]))
def test_prometheus_text_parsing_raises_only_value_error(lines: list[str]) -> None:
    try:
        s = parse_exposition("\n".join(lines) + "\n", now=2e9)
    except ValueError as e:
        assert "\n" not in str(e)
        return
    assert s.requests is None or isinstance(s.requests, float)


@FAST
@given(json_values)
def test_prometheus_api_answers_of_any_shape_raise_only_prom_error(data: Any) -> None:
    client = PromClient(PromSource("http://127.0.0.1:1"))
    client._post = lambda path, params: data if isinstance(data, dict) else {"result": data}  # type: ignore[method-assign]
    for call in (lambda: client.query("up", 0), lambda: client.query_range("up", 0, 60, 60)):
        try:
            out = call()
        except PromError:
            continue
        assert isinstance(out, list)


@FAST
@given(
    _obj_with(
        {
            "metadata": hs.fixed_dictionaries(
                {}, optional={"name": json_values, "ownerReferences": json_values}
            ),
            "spec": hs.fixed_dictionaries(
                {}, optional={"containers": json_values, "dnsConfig": json_values, "nodeName": json_values}
            ),
            "status": json_values,
        }
    )
)
def test_pod_and_node_projections_never_crash_on_odd_objects(obj: dict[str, Any]) -> None:
    row = CR.project_pod(obj)
    assert set(row) >= {"namespace", "name", "node", "images", "dns_config"}
    assert isinstance(row["images"], list)
    CR.project_node(obj)


@FAST
@given(hs.lists(json_values, max_size=5))
def test_endpoint_counting_never_crashes(slices: list[Any]) -> None:
    assert CS.count_ready_endpoints(slices) >= 0


@FAST
@given(hs.one_of(hs.none(), hs.text(max_size=120)))
def test_image_version_never_crashes(image: str | None) -> None:
    v = CR.image_version(image)
    assert v is None or v.count(".") == 2


# -- resolver and kernel rules ------------------------------------------------------------------------------


@FAST
@given(hs.one_of(hs.none(), hs.text(max_size=80)), hs.one_of(hs.none(), hs.text(max_size=20)))
def test_resolver_inference_never_crashes_and_stays_in_the_known_set(
    image: str | None, ann: str | None
) -> None:
    resolver, _source = infer_resolver(image, ann)
    assert resolver in (*RESOLVERS, "unknown")


@FAST
@given(hs.text(max_size=20), hs.text(max_size=30))
def test_unknown_resolver_or_option_is_never_honoured(resolver: str, option: str) -> None:
    known = option_table()
    verdict = option_honoured(resolver, option)
    if (resolver, option) not in known:
        assert verdict == "unknown"
    assert verdict in ("yes", "no", "unknown")


@FAST
@given(hs.text(max_size=80), hs.one_of(hs.none(), hs.text(max_size=40)))
def test_minimum_fixed_never_crashes(kv: str, osi: str | None) -> None:
    for race in ("race1", "race2", "race3"):
        assert minimum_fixed(race, kv, osi)


# -- unicode, long and formula-like names -----------------------------------------------------------------------

LONG = "n" * 240 + "-end"
NAMES = {
    "cluster": "prod-東京-🚀-" + "x" * 200,
    "node": "نود-1-" + LONG[:60],
    "namespace": "ünïcode-ns",
    "pod": '=HYPERLINK("http://evil","click")',
    "kernel": "💥\x00 not a kernel \u202e",
}


def _hostile_snapshot() -> dict[str, Any]:
    n = node(NAMES["node"], kernel=NAMES["kernel"], os_image="Ünknown OS \u202e")
    p = pod(NAMES["pod"], NAMES["node"], "registry.example/äpp:1", namespace=NAMES["namespace"])
    p2 = pod("+cmd|' /C calc'!A0", NAMES["node"], "@import:1", namespace="-ns")
    return snapshot(cluster(NAMES["cluster"], nodes=[n], pods=[p, p2]))


def test_unicode_long_and_formula_names_through_frames_and_csv() -> None:
    a = analyze(_hostile_snapshot())
    assert list(a.clusters["cluster"]) == [NAMES["cluster"]]
    row = a.nodes.iloc[0]
    assert row["node"] == NAMES["node"]
    for race in ("race1", "race2", "race3"):
        assert row[race] == "unknown"  # an unparsable kernel string is never called fixed
    assert classify(NAMES["kernel"]).race1 == "unknown"
    reports = csv_reports(a)
    for name, data in reports.items():
        text = data.decode("utf-8-sig")
        rows = list(csv.reader(io.StringIO(text)))
        assert len({len(r) for r in rows}) == 1, name  # no cell broke the row structure
        cells = [c for r in rows[1:] for c in r]
        assert not [c for c in cells if c[:1] in ("=", "+", "-", "@")], (name, cells)
    clusters_csv = reports["clusters.csv"].decode("utf-8-sig")
    assert NAMES["cluster"] in clusters_csv
    workloads_csv = reports["workloads.csv"].decode("utf-8-sig")
    assert "'=HYPERLINK(" in workloads_csv or "'+cmd|" in workloads_csv


def test_dashboard_pages_render_unicode_and_long_names(clean_app) -> None:
    at = uploaded("hostile.json", dumps(_hostile_snapshot()))
    assert not at.error, [e.value for e in at.error]
    assert NAMES["cluster"] in list(at.dataframe[0].value["cluster"])
    for page in ("cluster", "nodes", "workloads", "coredns", "reports", "mitigations"):
        at.switch_page(f"../pages/{page}.py").run()
        assert not at.exception, (page, [e.value for e in at.exception])


def _doc(**over: Any) -> bytes:
    d: dict[str, Any] = {"format": "dnsfleet.snapshot", "schema_version": SCHEMA_VERSION, "clusters": []}
    d.update(over)
    return orjson.dumps(d)


def _deep() -> bytes:
    deep: Any = "x"
    for _ in range(200):
        deep = [deep]
    return _doc(clusters=[{"name": "a", "metrics": {"x": deep}}])


@pytest.mark.parametrize(
    ("name", "data", "message"),
    [
        ("cut.json.gz", gzip.compress(dumps(snapshot(cluster())))[:-12], "not a valid gzip file"),
        ("future.json", _doc(schema_version=SCHEMA_VERSION + 1), "newer than this dnsfleet"),
        ("deep.json", _deep(), "nested deeper"),
        ("huge.json", _doc(clusters=[{"name": "x" * (2 << 20)}]), "longer than"),
        ("list.json", b"[]", "top level must be a JSON object"),
    ],
)
def test_dashboard_upload_of_hostile_snapshots_is_one_line(
    clean_app, name: str, data: bytes, message: str
) -> None:
    at = uploaded(name, data)
    errors = [e.value for e in at.error]
    assert len(errors) == 1 and errors[0].startswith(f"Snapshot not loaded: {name}: ")
    assert message in errors[0] and "\n" not in errors[0]


def test_dashboard_upload_over_the_size_cap(clean_app) -> None:
    import dnsfleet.snapshot as S

    clean_app.setattr(S, "MAX_BYTES", 1 << 16)
    bomb = gzip.compress(json.dumps({"format": "dnsfleet.snapshot", "pad": "0" * (1 << 20)}).encode())
    at = uploaded("bomb.json.gz", bomb)
    (err,) = [e.value for e in at.error]
    assert err.startswith("Snapshot not loaded: bomb.json.gz: ") and "limit" in err
