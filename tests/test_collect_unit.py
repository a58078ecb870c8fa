"""Collector pieces needing no server: kubeconfig merging, projections, the scrape parser, PromQL helpers."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import yaml

from dnsfleet import kube as K
from dnsfleet.collect import ConfigError, PromSource
from dnsfleet.collect import cluster as CS
from dnsfleet.collect import prom as P
from dnsfleet.collect import readers as CR
from dnsfleet.collect import scrape as SC
from dnsfleet.kube import kubeproxy as KP

FIXTURES = Path(__file__).parent / "test_collect_fixtures"


def _kubeconfig(
    path: Path, contexts: list[str], current: str | None, server: str = "https://127.0.0.1:1"
) -> Path:
    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": c, "cluster": {"server": server}} for c in contexts],
        "users": [{"name": c, "user": {"token": f"tok-{c}"}} for c in contexts],
        "contexts": [{"name": c, "context": {"cluster": c, "user": c}} for c in contexts],
    }
    if current:
        doc["current-context"] = current
    path.write_text(yaml.safe_dump(doc))
    return path


# -- kubeconfig ---------------------------------------------------------------------------------------


def test_kubeconfig_env_merges_files_like_kubectl(tmp_path, monkeypatch):
    a = _kubeconfig(tmp_path / "a", ["one", "shared"], "one")
    b = _kubeconfig(tmp_path / "b", ["shared", "two"], "two")
    monkeypatch.setenv("KUBECONFIG", f"{a}:{tmp_path / 'absent'}:{b}")
    targets = K.resolve_targets(all_contexts=True)
    assert [t.name for t in targets] == ["one", "shared", "two"]
    assert all(t.config_file == f"{a}:{b}" for t in targets)
    # the first file that sets current-context wins, as in kubectl
    assert [t.name for t in K.resolve_targets()] == ["one"]
    assert [t.name for t in K.resolve_targets(contexts=["two", "one", "two"])] == ["two", "one"]


def test_kubeconfig_errors_are_one_line(tmp_path, monkeypatch):
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    with pytest.raises(ConfigError, match="kubeconfig file not found"):
        K.resolve_targets(kubeconfig=tmp_path / "nope")
    a = _kubeconfig(tmp_path / "a", ["one"], None)
    with pytest.raises(ConfigError, match=r"context 'x' not in kubeconfig \(available: one\)"):
        K.resolve_targets(kubeconfig=a, contexts=["x"])
    with pytest.raises(ConfigError, match="no current-context"):
        K.resolve_targets(kubeconfig=a)
    with pytest.raises(ConfigError, match="not both"):
        K.resolve_targets(kubeconfig=a, contexts=["one"], all_contexts=True)
    bad = tmp_path / "bad"
    bad.write_text("clusters: [\n")
    with pytest.raises(ConfigError, match="not valid YAML") as e:
        K.resolve_targets(kubeconfig=bad)
    assert "\n" not in str(e.value)
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "absent"))
    with pytest.raises(ConfigError, match="no kubeconfig found"):
        K.resolve_targets()


def test_in_cluster_when_no_kubeconfig(tmp_path, monkeypatch):
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "absent"))
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1")
    monkeypatch.setenv("DNSFLEET_CLUSTER_NAME", "prod-eu")
    assert K.resolve_targets() == [K.Target("prod-eu", None, None)]


def test_bad_credentials_file_fails_that_cluster_only(tmp_path):
    path = tmp_path / "kc"
    path.write_text(
        yaml.safe_dump(
            {
                "clusters": [
                    {
                        "name": "c",
                        "cluster": {"server": "https://127.0.0.1:1", "certificate-authority": "/nope/ca"},
                    }
                ],
                "users": [{"name": "u", "user": {"token": "t"}}],
                "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}],
            }
        )
    )
    with pytest.raises(K.ClusterFailed) as e:
        K.new_api_client(K.Target("c", str(path), "c"), 1.0)
    assert e.value.reason.startswith("kubeconfig: ") and "\n" not in e.value.reason


# -- projections --------------------------------------------------------------------------------------


def test_pod_projection_keeps_only_what_rules_read():
    pod = {
        "metadata": {
            "name": "web-1",
            "namespace": "shop",
            "labels": {"app": "web"},
            "annotations": {"dnsfleet.io/resolver": "musl", "secret-ish": "x-do-not-keep"},
            "ownerReferences": [
                {"kind": "Other", "name": "o"},
                {"kind": "ReplicaSet", "name": "web-5d8f", "controller": True},
            ],
        },
        "spec": {
            "nodeName": "n1",
            "hostNetwork": True,
            "dnsPolicy": "ClusterFirstWithHostNet",
            "dnsConfig": {"options": [{"name": "ndots", "value": "2"}, {"name": "single-request-reopen"}]},
            "containers": [
                {
                    "name": "a",
                    "image": "debian:12",
                    "env": [{"name": "DB_PASSWORD", "value": "hunter2-do-not-leak"}],
                },
                {"name": "b", "image": "alpine:3.19", "envFrom": [{"secretRef": {"name": "s"}}]},
            ],
        },
        "status": {"phase": "Running"},
    }
    row = CR.project_pod(pod)
    assert row == {
        "namespace": "shop",
        "name": "web-1",
        "node": "n1",
        "owner_kind": "ReplicaSet",
        "owner_name": "web-5d8f",
        "phase": "Running",
        "host_network": True,
        "dns_policy": "ClusterFirstWithHostNet",
        "dns_config": {
            "nameservers": [],
            "searches": [],
            "options": [{"name": "ndots", "value": "2"}, {"name": "single-request-reopen", "value": None}],
        },
        "images": ["debian:12", "alpine:3.19"],
        "resolver_annotation": "musl",
    }
    bare = CR.project_pod({"metadata": {"name": "p", "namespace": "d"}, "spec": {}})
    assert bare["owner_kind"] is None and bare["dns_config"] is None and bare["node"] is None


def test_node_projection_ready_and_label_subset():
    node = {
        "metadata": {
            "name": "n1",
            "labels": {"agentpool": "np1", "team": "payments", "kubernetes.io/os": "linux"},
        },
        "status": {
            "nodeInfo": {"kernelVersion": "4.15.0-1029-azure", "osImage": "Ubuntu 18.04.6 LTS"},
            "conditions": [{"type": "Ready", "status": "Unknown"}],
        },
    }
    row = CR.project_node(node)
    assert row["labels"] == {"agentpool": "np1", "kubernetes.io/os": "linux"}
    assert (
        row["ready"] is None
        and row["kernel_version"] == "4.15.0-1029-azure"
        and row["kubelet_version"] is None
    )
    node["status"]["conditions"][0]["status"] = "False"
    assert CR.project_node(node)["ready"] is False


@pytest.mark.parametrize(
    ("image", "version"),
    [
        ("registry.k8s.io/coredns/coredns:v1.11.1", "1.11.1"),
        ("602401143452.dkr.ecr.us-west-2.amazonaws.com/eks/coredns:v1.10.1-eksbuild.7", "1.10.1"),
        ("mcr.microsoft.com/oss/kubernetes/coredns:v1.9.4-hotfix.20240704", "1.9.4"),
        ("coredns/coredns:1.6.7", "1.6.7"),
        ("localhost:5000/coredns", None),
        ("registry.k8s.io/coredns/coredns@sha256:abc", None),
        (None, None),
    ],
)
def test_coredns_image_version(image, version):
    assert CR.image_version(image) == version


@pytest.mark.parametrize(
    ("text", "mode"),
    [
        (
            'apiVersion: kubeproxy.config.k8s.io/v1alpha1\nkind: KubeProxyConfiguration\nmode: ""\n',
            "iptables",
        ),
        ("kind: KubeProxyConfiguration\n", "iptables"),
        ("kind: KubeProxyConfiguration\nmode: IPVS\n", "ipvs"),
        ("kind: KubeProxyConfiguration\nmode: nftables\n", "nftables"),
        ("kind: KubeProxyConfiguration\nmode: kernelspace\n", None),
        ("{not yaml", None),
        (None, None),
    ],
)
def test_kube_proxy_mode(text, mode):
    assert KP.kube_proxy_mode_from_config(text) == mode


def test_ready_endpoints_dedup_and_dual_stack():
    def ep(name, ready):
        return {
            "addresses": [f"10.0.0.{len(name)}"],
            "targetRef": {"name": name},
            "conditions": ready,
        }

    slices = [
        {
            "addressType": "IPv4",
            "endpoints": [ep("a", {"ready": True}), ep("bb", {}), ep("ccc", {"ready": False})],
        },
        {"addressType": "IPv4", "endpoints": [ep("a", {"ready": True})]},  # same pod in a second slice
        {"addressType": "IPv6", "endpoints": [ep("a", {"ready": True})]},
    ]
    assert CS.count_ready_endpoints(slices) == 2
    assert CS.count_ready_endpoints([]) == 0


def test_forbidden_reason_is_plain():
    body = (
        b'{"kind":"Status","message":"nodes is forbidden: User \\"nobody\\" cannot list resource \\"nodes\\" '
        b'in API group \\"\\" at the cluster scope","reason":"Forbidden","code":403}'
    )
    assert CS.forbidden_reason(K.ResourceError(403, "Forbidden", body), "nodes") == (
        'forbidden: user "nobody" cannot list nodes'
    )
    assert (
        CS.forbidden_reason(K.ResourceError(403, "Forbidden", b"<html>"), "pods")
        == "forbidden: cannot read pods"
    )


def test_provider_hints():
    assert CR.provider_hint([{"labels": {"eks.amazonaws.com/nodegroup": "ng"}}], "v1.30.1") == "eks"
    assert CR.provider_hint([], "v1.29.4-gke.1043002") == "gke"
    assert CR.provider_hint([{"labels": {"agentpool": "np"}}], "v1.29.4") == "aks"
    assert CR.provider_hint([{"labels": {}}], "v1.34.4") is None


# -- scrape parser (real CoreDNS exposition text) -----------------------------------------------------


def test_scrape_parser_coredns_1_11():
    text = (FIXTURES / "coredns-1.11.1.metrics").read_text()
    s = SC.parse_exposition(text, now=1.7e9 + 1000)
    assert s.version == "1.11.1"
    assert s.requests == 10000
    assert s.rcodes == {"NOERROR": 6500, "NXDOMAIN": 3400, "SERVFAIL": 100}
    out = SC.summary(s)
    assert out["qps"] == pytest.approx(10.0)  # 10,000 requests over 1,000 s of uptime
    # p50: rank 5,000 falls in (0.5 ms, 1 ms] holding 3,000..6,000 -> 0.5 + 0.5 * 2/3 ms
    assert out["p50_ms"] == pytest.approx(0.8333, abs=1e-3)
    assert out["p99_ms"] == pytest.approx(256.0)
    assert out["share_over_1s"] == pytest.approx(0.005)  # above the 1.024 s bound: 50 of 10,000
    assert out["servfail_share"] == pytest.approx(0.01)
    assert out["nxdomain_share"] == pytest.approx(0.34)
    # forward latency from the 1.11+ proxy family, both upstreams summed: rank 990 in (256, 512] ms
    assert out["forward_p99_ms"] == pytest.approx(320.0)


def test_scrape_parser_pre_1_7_names_and_missing_uptime():
    s = SC.parse_exposition((FIXTURES / "coredns-1.6.7.metrics").read_text())
    out = SC.summary(s)
    assert s.version == "1.6.7" and s.requests == 4000
    assert out["qps"] is None  # no process_start_time_seconds: unknown, not 0
    assert out["p50_ms"] == pytest.approx(1.0)
    assert out["nxdomain_share"] == pytest.approx(0.25) and out["servfail_share"] == 0.0
    assert out["forward_p99_ms"] == pytest.approx(256.0)  # coredns_forward_request_duration_seconds


def test_scrape_merge_sums_pods():
    text = (FIXTURES / "coredns-1.11.1.metrics").read_text()
    a = SC._parse_one(text, 1.7e9 + 1000)
    b = SC._parse_one(text, 1.7e9 + 500)
    m = SC.merge([a, b])
    assert m.requests == 20000 and m.rates == pytest.approx(10 + 20)
    assert m.uptime_s == 1000 and m.duration[math.inf] == 20000
    assert SC.summary(m)["p99_ms"] == pytest.approx(256.0)


def test_scrape_parser_rejects_garbage():
    with pytest.raises(ValueError):
        SC.parse_exposition("<html><body>502 Bad Gateway</body></html>\n")


def test_empty_exposition_is_unknown_not_zero():
    out = SC.summary(SC.parse_exposition("# nothing here\n"))
    assert all(out[k] is None for k in out)


# -- Prometheus helpers -------------------------------------------------------------------------------


def test_coredns_names_by_version():
    assert P.names_for("1.11.1") == [P.NEW_NAMES]
    assert [n.forward for n in P.names_for("1.8.7")] == ["coredns_forward_request_duration_seconds"]
    assert P.names_for("1.8.7")[0].requests == "coredns_dns_requests_total"
    assert P.names_for("1.6.7") == [P.OLD_NAMES]
    assert len(P.names_for(None)) == 3


def test_share_and_rcodes_unknown_when_empty():
    assert P.share_over({}) is None
    assert P.share_over({0.5: 5, math.inf: 0}) is None
    assert P.rcode_shares({}) == (None, None)
    assert P.share_over({0.512: 90, 1.024: 99, math.inf: 100}) == pytest.approx(0.01)


def test_prom_source_validation_and_no_secret_in_repr():
    with pytest.raises(ValueError, match="http"):
        PromSource("127.0.0.1:9090")
    with pytest.raises(ValueError, match="label"):
        PromSource("http://p:9090", cluster_label="bad-label")
    src = PromSource("http://p:9090", token="s3cr3t-token", password="pw")
    assert "s3cr3t" not in repr(src) and "pw" not in repr(src)
    cl = P.PromClient(PromSource("http://p:9090", username="u", password="p"))
    assert cl.headers["Authorization"] == "Basic dTpw"


def test_cluster_selector_escapes_the_name():
    src = PromSource("http://p:9090", cluster_label="k8s_cluster")
    assert src.selector("eks-prod") == 'k8s_cluster="eks-prod"'
    assert src.selector('a"b\\c') == 'k8s_cluster="a\\"b\\\\c"'


def test_samples_on_the_grid_leave_gaps_and_non_finite_values_unknown():
    points = [(100.0, 1.0), (160.0, math.nan), (220.0, None), (280.0, 4.0), (400.0, 5.0), (40.0, 0.5)]
    assert P.on_grid(points, 100.0, 60.0, 4) == [1.0, None, None, 4.0]
    assert P.on_grid(points, 100.0, 60.0, 4, scale=1000.0) == [1000.0, None, None, 4000.0]


def test_node_label_matching():
    nodes = {"n1", "n2"}
    assert P.node_of({"node": "n1"}, nodes, {}) == "n1"
    assert P.node_of({"instance": "n2:9100"}, nodes, {}) == "n2"
    assert P.node_of({"instance": "10.0.0.7:9100"}, nodes, {"10.0.0.7": "n1"}) == "n1"
    assert P.node_of({"instance": "elsewhere:9100"}, nodes, {}) is None


def test_an_odd_pod_in_a_typed_page_falls_back_to_the_generic_parse() -> None:
    """A page the typed decoder rejects (one pod with a wrong field type) is parsed generically:
    the other pods are kept and the odd one is projected defensively, never failing the cluster."""
    import orjson

    from dnsfleet.collect import readers
    from dnsfleet.kube import lists, typed

    good = {
        "metadata": {"name": "a", "namespace": "ns"},
        "spec": {"nodeName": "n1", "containers": [{"image": "alpine:3.18"}]},
    }
    odd = {"metadata": {"name": "b", "namespace": "ns"}, "spec": {"nodeName": ["not", "a", "string"]}}
    page = orjson.dumps({"kind": "PodList", "metadata": {"continue": ""}, "items": [good, odd]})

    class OnePage:
        server = "https://127.0.0.1:1"

        def get_bytes(self, path, query, accept):
            return page

    import pytest as _pytest

    with _pytest.raises(typed.DecodeError):
        typed.pods_page(page)
    pages = list(lists.list_pages(OnePage(), "/api/v1/pods", decode=typed.pods_page))
    assert [len(p) for p in pages] == [2]
    projected = [readers.project_pod(p) for p in pages[0]]
    assert projected[0]["images"] == ["alpine:3.18"] and projected[0]["node"] == "n1"
    assert projected[1]["name"] == "b"


def test_a_protobuf_page_that_does_not_decode_is_read_again_as_json() -> None:
    """A server (or a proxy in front of it) that mangles protobuf must not cost the cluster: the page
    is asked for again, same continue token, in JSON only, and parsed generically."""
    import orjson

    from dnsfleet.kube import lists, typed

    pod = {"metadata": {"name": "a", "namespace": "ns"}, "spec": {"nodeName": "n1"}}
    pages = {
        "": {"metadata": {"continue": "t1"}, "items": [pod]},
        "t1": {"metadata": {}, "items": [dict(pod, metadata={"name": "b", "namespace": "ns"})]},
    }
    asked: list[tuple[str, str]] = []

    class Mangled:
        server = "https://127.0.0.1:1"

        def get_bytes(self, path, query, accept):
            token = query.get("continue", "")
            asked.append((token, accept))
            if "protobuf" in accept:
                return b"k8s\x00\xff\xff not protobuf"
            return orjson.dumps(pages[token])

    got = list(lists.list_pages(Mangled(), "/api/v1/pods", accept=lists.PROTOBUF, decode=typed.pods_page))
    assert [[p["metadata"]["name"] for p in page] for page in got] == [["a"], ["b"]]
    assert asked == [
        ("", lists.PROTOBUF),
        ("", "application/json"),
        ("t1", lists.PROTOBUF),
        ("t1", "application/json"),
    ]
    assert lists.json_only(lists.METADATA_ONLY_PROTOBUF) == lists.METADATA_ONLY


def test_protobuf_schema_matches_the_upstream_proto_files(tmp_path: Path) -> None:
    """kube/proto.py declares subsets of the Kubernetes messages by field number: each number and
    type must be the upstream one (k8s.io/api and apimachinery v0.34.4 through the Go module proxy, the
    versions of the test fleet's API server)."""
    import json
    import re
    import subprocess

    from dnsfleet.kube.proto import SCHEMA

    out = subprocess.run(
        ["go", "mod", "download", "-json", "k8s.io/api@v0.34.4", "k8s.io/apimachinery@v0.34.4"],
        capture_output=True,
        text=True,
        check=True,
        cwd=tmp_path,
    ).stdout
    dirs = [Path(m["Dir"]) for m in json.loads("[" + out.replace("}\n{", "},{") + "]")]
    files = [
        dirs[0] / "core/v1/generated.proto",
        dirs[1] / "pkg/apis/meta/v1/generated.proto",
        dirs[1] / "pkg/runtime/generated.proto",
    ]
    upstream: dict[str, dict[str, tuple[int, str]]] = {}
    for f in files:
        for name, body in re.findall(r"^message (\w+) \{(.*?)^\}", f.read_text(), re.S | re.M):
            fields = upstream.setdefault(name, {})
            for label, typ, fname, num in re.findall(
                r"^\s*(optional|repeated|map<string, string>)\s*([\w.]*)\s+(\w+) = (\d+);", body, re.M
            ):
                kind = "map" if label.startswith("map") else typ.rsplit(".", 1)[-1]
                fields[fname] = (int(num), kind + ("[]" if label == "repeated" else ""))
    # Our one merged message: PodCondition and NodeCondition share their first two fields.
    merged = {"Condition": ("PodCondition", "NodeCondition")}
    checked = 0
    for name, fields in SCHEMA.items():
        for up in merged.get(name, (name,)):
            for fname, (num, typ) in fields.items():
                up_num, up_typ = upstream[up][fname]
                for ours, theirs in merged.items():
                    up_typ = up_typ.replace(theirs[0], ours).replace(theirs[1], ours)
                assert (up_num, up_typ) == (num, typ), (up, fname)
                checked += 1
    assert checked > 40


def test_protobuf_continue_token_is_read_from_the_list_header() -> None:
    from dnsfleet.kube import proto

    C = proto._C
    pods = [C["Pod"](metadata=C["ObjectMeta"](name=f"p{i}", namespace="ns")) for i in range(3)]
    lst = C["PodList"](metadata=C["ListMeta"](**{"continue": "tok-123"}), items=pods)
    type_meta = b"\x0a\x0a\x0a\x02v1\x12\x04List"  # runtime.Unknown field 1 comes first on the wire
    body = proto.MAGIC + type_meta + C["Unknown"](raw=lst.SerializeToString()).SerializeToString()
    assert proto.continue_token(body) == "tok-123"
    assert proto.pods_page(body)[1] == "tok-123"
    last = C["PodList"](metadata=C["ListMeta"](), items=pods)
    body = proto.MAGIC + C["Unknown"](raw=last.SerializeToString()).SerializeToString()
    assert proto.continue_token(body) == ""
    with pytest.raises(proto.ProtoDecodeError):
        proto.continue_token(proto.MAGIC + b"\x12\xff")  # a length running past the end


def test_dns_facts_keep_flag_names_not_values() -> None:
    from dnsfleet.collect import dnsfacts

    ds = {
        "metadata": {
            "name": "dns-cache-node-local-dns",
            "labels": {"app.kubernetes.io/name": "node-local-dns"},
        },
        "spec": {
            "template": {
                "spec": {
                    "containers": [
                        {
                            "image": "registry.k8s.io/dns/k8s-dns-node-cache:1.26.4",
                            "args": ["-localip", "169.254.20.10,10.0.0.10", "-conf", "/etc/Corefile"],
                        },
                        {"image": "sidecar:1", "args": ["--token=hunter2", "--password", "s3cret"]},
                    ],
                    "volumes": [
                        {"name": "c", "configMap": {"name": "dns-cache-node-local-dns"}},
                        {"name": "x"},
                    ],
                }
            }
        },
    }
    f = dnsfacts.project_daemonset(ds)
    assert f["flags"] == ["-localip", "-conf", "--token", "--password"]
    assert f["localip"] == "169.254.20.10,10.0.0.10" and f["configmaps"] == ["dns-cache-node-local-dns"]
    assert "hunter2" not in repr(f) and "s3cret" not in repr(f)
    assert dnsfacts.project_daemonset({"spec": "junk"})["images"] == []
    cm = dnsfacts.configmap_fact({"Corefile": "bind 169.254.25.10 10.0.0.10", "other": "x"})
    assert cm == {"keys": ["Corefile", "other"], "link_local": "169.254.25.10"}
    assert dnsfacts.configmap_fact(None) == {"keys": [], "link_local": None}


def test_coredns_1_8_7_rcode_shares_are_unknown_not_low():
    import pandas as pd

    """coredns/coredns#5125: 1.8.7 counts written answers as NOERROR, so its rcode shares are not used."""
    from dnsfleet.frames import build_frames
    from dnsfleet.rules.coredns import metrics_bugs
    from tests.builders import cluster, snapshot

    assert [b.fixed for b in metrics_bugs("1.8.7", "rcode")] == [(1, 9, 0)]
    assert metrics_bugs("v1.9.0", "rcode") == [] and metrics_bugs("1.8.6", "rcode") == []
    assert metrics_bugs(None, "rcode") == [] and metrics_bugs("latest", "rcode") == []
    core = {"qps": 10.0, "servfail_share": 0.0, "nxdomain_share": 0.0, "p99_ms": 3.0}
    old, new = cluster("old"), cluster("new")
    old["metrics"] = {"source": "scrape", "coredns": {**core, "version": "1.8.7"}, "note": "single scrape"}
    new["metrics"] = {"source": "scrape", "coredns": {**core, "version": "1.9.0"}, "note": "single scrape"}
    m = build_frames(snapshot(old, new)).coredns_metrics.set_index("cluster")
    assert pd.isna(m.loc["old", "nxdomain_share"]) and pd.isna(m.loc["old", "servfail_share"])
    assert m.loc["old", "qps"] == 10.0 and "coredns/coredns/issues/5125" in m.loc["old", "note"]
    assert m.loc["new", "nxdomain_share"] == 0.0 and "5125" not in m.loc["new", "note"]
