"""Kernel rules K0-K8 over real nodeInfo.kernelVersion strings, the fix table's rows, targets and plans.

``tests/data/kernel_strings.csv`` holds real kernel strings (EKS AMI changelog, AKS node image release
notes, public GitHub issues), each with the URL it was taken from and the per-race verdicts the facts
allow. Besides matching the table, every verdict is checked against what may justify it: "open" only
from a sourced "open" row, "fixed" only from K0 or a sourced "fixed" row.
"""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dnsfleet.mitigate import kernel as K
from dnsfleet.rules.kernel import (
    FIXED,
    NOT_APPLICABLE,
    OPEN,
    RACES,
    UNKNOWN,
    classify,
    decide,
    distro_table,
    fix_table,
    kernel_target,
    minimum_fixed,
    parse_kernel,
    target_table,
)

DATA = Path(__file__).parent / "data" / "kernel_strings.csv"
STRINGS = list(csv.DictReader(DATA.open(encoding="utf-8")))
MAINLINE = {r.race: r.start for r in fix_table() if r.track == "mainline"}
PUBLIC = re.compile(r"https?://|Message-ID|@[a-z0-9.-]+\.(?:de|org|com)|LP#\d+|\b[0-9a-f]{12}\b")


def test_the_table_has_150_real_strings_each_with_its_source() -> None:
    assert len(STRINGS) >= 150
    assert len({r["kernel"] for r in STRINGS}) == len(STRINGS), "each string once"
    for r in STRINGS:
        assert r["source_url"].startswith("https://"), r
        assert {r[x] for x in RACES} <= {FIXED, OPEN, UNKNOWN, NOT_APPLICABLE}
    families = {parse_kernel(r["kernel"], r["os_image"] or None).distro for r in STRINGS}
    assert {
        "ubuntu",
        "amzn2",
        "amzn2023",
        "el",
        "suse",
        "debian",
        "cos",
        "bottlerocket",
        "windows",
    } <= families


@pytest.mark.parametrize("row", STRINGS, ids=[r["kernel"] for r in STRINGS])
def test_real_kernel_strings(row: dict[str, str]) -> None:
    c = classify(row["kernel"], row["os_image"] or None)
    got = {race: getattr(c, race) for race in RACES}
    assert got == {race: row[race] for race in RACES}, row["source_url"]
    for race in RACES:
        d = c.decisions[race]
        assert d.rule and d.source, "every verdict names its rule and source"
        _assert_justified(row["kernel"], row["os_image"] or None, race, d)


def _assert_justified(kernel: str, os_image: str | None, race: str, d) -> None:
    """No "fixed" where the facts say open or unknown, no "open" without a source."""
    k = parse_kernel(kernel, os_image)
    rows_by_source = {(r.verdict, r.source) for r in fix_table() if r.race == race}
    if d.verdict == OPEN:
        assert d.rule not in ("K0", "K8"), "open never comes from the version alone"
        assert (OPEN, d.source) in rows_by_source and PUBLIC.search(d.source)
    if d.verdict == FIXED and d.rule != "K0":
        assert (FIXED, d.source) in rows_by_source and PUBLIC.search(d.source)
    if d.verdict == FIXED and d.rule == "K0":
        assert k.base is not None and k.base >= tuple(int(x) for x in MAINLINE[race].split("."))


# Facts that hold whatever the table says (dns-race-facts §1.3, K0, K8): checked on every real string.
def _facts_forbid(kernel: str, os_image: str | None, race: str, verdict: str) -> str | None:
    k = parse_kernel(kernel, os_image)
    below = k.base is not None and k.base < tuple(int(x) for x in MAINLINE[race].split("."))
    if k.distro == "windows":
        return None if verdict == NOT_APPLICABLE else "Windows is not applicable"
    if verdict == NOT_APPLICABLE:
        return "only Windows is not applicable"
    if k.distro in ("el", "suse", "alinux") and below and verdict != UNKNOWN:
        return "RHEL/SUSE/Alibaba below the mainline fix: no public source either way"
    if (
        k.distro == "ubuntu"
        and race != "nfqueue"
        and below
        and k.track not in ("ubuntu-generic", "ubuntu-azure")
        and verdict != UNKNOWN
    ):
        return "Ubuntu flavour without a sourced row: its ABI is not comparable with -generic's"
    if race == "race3" and k.branch == "5.4" and verdict == FIXED:
        return "race 3 on 5.4: no backport found"
    if race == "race2" and k.branch == "4.14" and k.base and 106 <= k.base[2] < 222 and verdict == FIXED:
        return "4.14.222 is an upper bound for race 2"
    return None


@pytest.mark.parametrize("row", STRINGS, ids=[r["kernel"] for r in STRINGS])
def test_real_strings_respect_the_facts(row: dict[str, str]) -> None:
    for race in RACES:
        why = _facts_forbid(row["kernel"], row["os_image"] or None, race, row[race])
        assert why is None, f"{row['kernel']} {race}={row[race]}: {why}"


# Strings named in issue 13 (from public bug reports) and the verdicts the facts give them.
ISSUE_13 = [
    ("6.6.44-talos", None, FIXED, FIXED, FIXED),  # K0 without an OS image
    ("5.10.0-0.deb10.16-amd64", None, FIXED, FIXED, FIXED),  # Debian backport parsed
    ("5.10.0-0.bpo.15-amd64", "Debian GNU/Linux 10 (buster)", FIXED, FIXED, FIXED),
    ("5.10.134-16.al8.x86_64", None, FIXED, FIXED, FIXED),  # Alibaba Cloud Linux 3
    ("5.10.175-1.ph4", None, FIXED, FIXED, FIXED),  # Photon OS 4
    ("6.6.44", "NixOS 24.05 (Uakari)", FIXED, FIXED, FIXED),
    ("5.15.157.mshv1-2.cm2", None, FIXED, FIXED, FIXED),  # Mariner mshv build, 4-part version
    ("4.18.0-513.5.1.el8_9.x86_64", "Rocky Linux 8.9 (Green Obsidian)", UNKNOWN, UNKNOWN, UNKNOWN),
    ("4.12.14-122.37-default", "SUSE Linux Enterprise Server 12 SP5", UNKNOWN, UNKNOWN, UNKNOWN),
    ("4.15.0-1001-kvm", "Ubuntu 18.04 LTS", UNKNOWN, UNKNOWN, UNKNOWN),  # own ABI: never vs generic's 58
    ("4.15.0-1060-aws", "Ubuntu 18.04.3 LTS", UNKNOWN, UNKNOWN, UNKNOWN),
    ("4.15.0-1044-gcp", "Ubuntu 18.04.3 LTS", UNKNOWN, UNKNOWN, UNKNOWN),
    ("4.15.0-1059-oracle", "Ubuntu 18.04.5 LTS", UNKNOWN, UNKNOWN, UNKNOWN),
    ("4.14.171-105.231.amzn2.x86_64", "Amazon Linux 2", FIXED, UNKNOWN, UNKNOWN),  # AL2 patch queue
    ("4.14.146-119.123.amzn2.x86_64", "Amazon Linux 2", OPEN, OPEN, OPEN),  # before AMI v20200312
    ("4.14.209-160.339.amzn2.x86_64", "Amazon Linux 2", FIXED, UNKNOWN, UNKNOWN),  # < 4.14.222 upper bound
    ("4.15.0-55-generic", "Ubuntu 18.04.2 LTS", OPEN, OPEN, OPEN),
    ("4.15.0-58-generic", "Ubuntu 18.04.3 LTS", FIXED, FIXED, OPEN),
    ("4.15.0-1029-azure", "Ubuntu 18.04.1 LTS", OPEN, UNKNOWN, UNKNOWN),
    ("10.0.17763.5696", "Windows Server 2019 Datacenter", NOT_APPLICABLE, NOT_APPLICABLE, NOT_APPLICABLE),
    ("10.0.20348.2340", None, NOT_APPLICABLE, NOT_APPLICABLE, NOT_APPLICABLE),  # NT build without osImage
]


@pytest.mark.parametrize(("kv", "osi", "r1", "r2", "r3"), ISSUE_13)
def test_strings_named_in_the_issue(kv: str, osi: str | None, r1: str, r2: str, r3: str) -> None:
    c = classify(kv, osi)
    assert (c.race1, c.race2, c.race3) == (r1, r2, r3)
    for race in RACES:
        _assert_justified(kv, osi, race, c.decisions[race])
        assert _facts_forbid(kv, osi, race, getattr(c, race)) is None


def test_suse_default_is_not_ubuntu_and_ubuntu_flavours_keep_their_track() -> None:
    assert parse_kernel("4.12.14-23-default").distro == "suse"
    assert parse_kernel("5.14.21-150500.55.19-azure").distro == "suse"
    assert parse_kernel("5.15.0-1057-azure").track == "ubuntu-azure"
    assert parse_kernel("4.15.0-1001-kvm").track == "ubuntu-kvm"
    assert parse_kernel("4.15.0-58-lowlatency").track == "ubuntu-generic"
    assert parse_kernel("5.10.0-0.deb10.16-amd64").key == (5, 10, 0, 16)
    assert parse_kernel("5.15.157.mshv1-2.cm2").base == (5, 15, 157)


@pytest.mark.parametrize(
    ("kv", "osi"),
    [("", "Ubuntu 22.04"), ("not a kernel", None), ("9" * 400, None), ("v5.10", None), (None, None)],
)
def test_unparseable_kernels_are_unknown(kv: str | None, osi: str | None) -> None:
    c = classify(kv, osi)
    assert {c.race1, c.race2, c.race3, c.nfqueue} == {UNKNOWN}
    assert c.counters_exact is None
    assert {d.rule for d in c.decisions.values()} == {"K8"}


def test_unknown_vendor_gets_k0_and_nothing_else() -> None:
    c = classify("6.6.30", "Acme Linux")  # base above every race fix but NFQUEUE's
    assert (c.race1, c.race2, c.race3, c.nfqueue) == (FIXED, FIXED, FIXED, UNKNOWN)
    c = classify("4.9.0-custom", "Acme Linux")  # below every fix, no row: unknown, never open
    assert {c.race1, c.race2, c.race3} == {UNKNOWN}


def test_every_fix_table_row_cites_a_public_source() -> None:
    for r in fix_table():
        assert r.verdict in (FIXED, OPEN, UNKNOWN) and r.rule.startswith("K") and r.confidence in "CS"
        assert PUBLIC.search(r.source), r
        assert "§" not in r.source and "facts" not in r.source.lower() and "../shared" not in r.source
    for name, row in distro_table().items():
        assert row["source"].strip() and "§" not in row["source"], name
    for row in target_table():
        assert row["source"].strip() and "§" not in row["source"]
    assert set(MAINLINE) == set(RACES)


# One kernel on each side of every bounded row: (row key) -> (inside the row, expected verdict).
ROW_PROBES = [
    (("race1", "amzn2", "4.14", "4.14.171-105.231"), "4.14.171-105.231.amzn2.x86_64", FIXED),
    (("race1", "amzn2", "4.14", ""), "4.14.171-105.230.amzn2.x86_64", OPEN),
    (("race1", "stable", "4.14", "4.14.173"), "4.14.173-talos", FIXED),
    (("race1", "stable", "4.14", ""), "4.14.172-talos", OPEN),
    (("race1", "ubuntu-generic", "4.15", "4.15.0-58"), "4.15.0-58-generic", FIXED),
    (("race1", "ubuntu-generic", "4.15", "4.15.0-56"), "4.15.0-57-generic", UNKNOWN),
    (("race1", "ubuntu-generic", "4.15", ""), "4.15.0-55-generic", OPEN),
    (("race1", "ubuntu-azure", "4.15", "4.15.0-1030"), "4.15.0-1030-azure", FIXED),
    (("race1", "ubuntu-azure", "4.15", ""), "4.15.0-1029-azure", OPEN),
    (("race1", "ubuntu-azure", "4.18", "4.18.0-1006"), "4.18.0-1006-azure", FIXED),
    (("race1", "ubuntu-azure", "4.18", ""), "4.18.0-1005-azure", OPEN),
    (("race2", "amzn2", "4.14", "4.14.222"), "4.14.222-1.amzn2.x86_64", FIXED),
    (("race2", "amzn2", "4.14", "4.14.171-105.231"), "4.14.221-1.amzn2.x86_64", UNKNOWN),
    (("race2", "amzn2", "4.14", ""), "4.14.171-105.230.amzn2.x86_64", OPEN),
    (("race2", "stable", "4.14", "4.14.222"), "4.14.222-talos", FIXED),
    (("race2", "stable", "4.14", "4.14.106"), "4.14.221-talos", UNKNOWN),
    (("race2", "stable", "4.14", ""), "4.14.105-talos", OPEN),
    (("race2", "stable", "4.19", "4.19.177"), "4.19.177-flatcar", FIXED),
    (("race2", "stable", "4.19", "4.19.29"), "4.19.176-flatcar", UNKNOWN),
    (("race2", "stable", "4.19", ""), "4.19.28-flatcar", OPEN),
    (("race2", "stable", "4.9", "4.9.163"), "4.9.163-talos", UNKNOWN),
    (("race2", "stable", "4.9", ""), "4.9.162-talos", OPEN),
    (("race2", "ubuntu-generic", "4.15", "4.15.0-58"), "4.15.0-58-generic", FIXED),
    (("race2", "ubuntu-generic", "4.15", "4.15.0-56"), "4.15.0-56-generic", UNKNOWN),
    (("race2", "ubuntu-generic", "4.15", ""), "4.15.0-55-generic", OPEN),
    (("race3", "openeuler", "4.19", ""), "4.19.90-2112.8.0.0131.oe1.x86_64", FIXED),
    (("race3", "amzn2", "4.14", ""), "4.14.171-105.230.amzn2.x86_64", OPEN),
    (("race3", "ubuntu-generic", "4.15", ""), "4.15.0-58-generic", OPEN),
    (("nfqueue", "upstream", "", ""), "6.11.11-talos", OPEN),
]


def test_every_bounded_row_is_probed() -> None:
    probed = {key for key, _, _ in ROW_PROBES}
    for r in fix_table():
        if r.track != "mainline":
            assert (r.race, r.track, r.branch, r.start) in probed, r


@pytest.mark.parametrize(
    ("key", "kv", "verdict"), ROW_PROBES, ids=[f"{k[0]}-{k[1]}-{v}" for k, v, _ in ROW_PROBES]
)
def test_row_boundaries(key: tuple[str, str, str, str], kv: str, verdict: str) -> None:
    assert getattr(classify(kv), key[0]) == verdict
    d = decide(parse_kernel(kv), key[0])
    row = next(r for r in fix_table() if (r.race, r.track, r.branch, r.start) == key and r.verdict == verdict)
    assert d.source == row.source


def test_mainline_boundaries_apply_to_any_family() -> None:
    for race, fix in MAINLINE.items():
        x, y = (int(p) for p in fix.split("."))
        assert getattr(classify(f"{x}.{y}.0-1-generic", "Ubuntu"), race) == FIXED
        assert getattr(classify(f"{x}.{y}.0-1.el9.x86_64", "Rocky Linux"), race) == FIXED
    assert classify("6.11.0-1018-azure").nfqueue == OPEN  # below 8af79d3edb5f on a non-backporting family
    assert classify("5.14.0-362.8.1.el9_3.x86_64").nfqueue == UNKNOWN  # RHEL backports: no source


def test_kernel_cli_names_rule_and_source_per_race(capsys: pytest.CaptureFixture[str]) -> None:
    from dnsfleet.cli import main

    assert main(["kernel", "4.15.0-1029-azure", "--os-image", "Ubuntu 18.04.1 LTS"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert (out["race1"], out["race2"], out["race3"]) == (OPEN, UNKNOWN, UNKNOWN)
    by = out["decided_by"]
    assert by["race1"]["rule"] == "K1" and "LP#1795493" in by["race1"]["source"]
    assert by["race2"]["rule"] == "K8" and by["race2"]["verdict"] == UNKNOWN
    assert all(by[r]["source"] for r in RACES)
    assert main(["kernel", "10.0.17763.5696", "--os-image", "Windows Server 2019 Datacenter"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert {out[r] for r in RACES} == {NOT_APPLICABLE} and out["counters_exact"] is None


def test_minimum_fixed_uses_the_nodes_track() -> None:
    assert minimum_fixed("race1", "4.15.0-1029-azure", "Ubuntu") == "4.15.0-1030 (ubuntu-azure)"
    assert minimum_fixed("race1", "4.14.146-119.123.amzn2.x86_64") == "4.14.171-105.231 (amzn2)"
    assert minimum_fixed("race2", "4.14.209-1-talos") == "4.14.222"
    assert minimum_fixed("race3", "3.10.0-1160.el7.x86_64", "CentOS") == "5.6"
    assert minimum_fixed("race1", "10.0.17763.5696", "Windows") is None


@pytest.mark.parametrize(
    ("races", "kv", "osi", "expect"),
    [
        (["race1", "race2"], "4.15.0-55-generic", "Ubuntu", "Ubuntu 18.04 generic >= 4.15.0-58"),
        (["race1"], "4.15.0-1029-azure", "Ubuntu", "linux-azure >= 4.15.0-1030.31"),
        (
            ["race1", "race2"],
            "4.14.146-119.123.amzn2.x86_64",
            "Amazon Linux 2",
            "AL2: AMI v20200312 or later",
        ),
        (["race2", "race3"], "4.18.0-513.5.1.el8_9.x86_64", "RHEL", "RHEL 8: no public source"),
        (["race1", "race2", "race3"], "3.10.0-1160.el7.x86_64", "CentOS Linux 7", "RHEL/CentOS 7"),
        (["race1", "race2", "race3"], "4.15.0-1001-kvm", "Ubuntu", "Ubuntu linux-kvm"),
        (["nfqueue"], "6.6.44-talos", None, "Talos: a kernel >= 6.12"),
    ],
)
def test_kernel_targets_name_distro_and_track(
    races: list[str], kv: str, osi: str | None, expect: str
) -> None:
    t = kernel_target(races, kv, osi)
    assert expect in t.text and t.source
    assert not re.fullmatch(r"[\d.]+", t.text), "never a bare mainline number"


def test_every_string_in_the_table_gets_a_target_with_a_source() -> None:
    for r in STRINGS:
        races = [x for x in RACES if r[x] in (OPEN, UNKNOWN)]
        if races:
            t = kernel_target(races, r["kernel"], r["os_image"] or None)
            assert t.text and t.source and not re.fullmatch(r"[\d. >=]+", t.text)


def _nodes(rows: list[tuple]) -> pd.DataFrame:
    cols = ["cluster", "node", "pool", "kernel_version", "os_image", "score"]
    df = pd.DataFrame(rows, columns=cols)
    for race in RACES:
        df[race] = [
            getattr(classify(kv, osi), race) for kv, osi in zip(df.kernel_version, df.os_image, strict=True)
        ]
    return df


def test_upgrade_plan_targets_windows_and_socket_lb() -> None:
    nodes = _nodes(
        [
            ("aks", "lin-0", "p1", "4.15.0-1029-azure", "Ubuntu 18.04.1 LTS", 90.0),
            ("aks", "win-0", "win", "10.0.17763.5696", "Windows Server 2019 Datacenter", 0.0),
            ("eks", "al2-0", "ng", "4.14.146-119.123.amzn2.x86_64", "Amazon Linux 2", 80.0),
            (
                "rhel",
                "r8-0",
                "w",
                "4.18.0-513.5.1.el8_9.x86_64",
                "Red Hat Enterprise Linux 8.9 (Ootpa)",
                50.0,
            ),
            ("cilium", "c-0", "w", "4.15.0-55-generic", "Ubuntu 18.04.2 LTS", 0.0),
            ("nfq", "n-0", "w", "6.6.44-talos", "Talos (v1.7.6)", 40.0),
        ]
    )
    dns = pd.DataFrame(
        [
            {"cluster": "aks", "ready_endpoints": 2, "nfqueue_agent": False, "path": "netfilter-dnat"},
            {"cluster": "eks", "ready_endpoints": 2, "nfqueue_agent": False, "path": "netfilter-dnat"},
            {"cluster": "rhel", "ready_endpoints": 2, "nfqueue_agent": False, "path": "netfilter-dnat"},
            {"cluster": "cilium", "ready_endpoints": 2, "nfqueue_agent": False, "path": "socket-lb"},
            {"cluster": "nfq", "ready_endpoints": 2, "nfqueue_agent": True, "path": "netfilter-dnat"},
        ]
    )
    plan = K.upgrade_plan(nodes, dns).set_index("node")
    assert "win-0" not in plan.index and "c-0" not in plan.index
    assert (
        plan.loc["lin-0", "action"] == "upgrade"
        and "linux-azure >= 4.15.0-1030.31" in plan.loc["lin-0", "target"]
    )
    assert "race 2: unknown" in plan.loc["lin-0", "per_race"]
    assert plan.loc["al2-0", "target"].startswith("AL2:")
    assert plan.loc["r8-0", "action"] == "verify" and plan.loc["r8-0", "target"].startswith(
        "RHEL 8: no public source"
    )
    assert plan.loc["n-0", "open_races"] == "NFQUEUE clash path" and "6.12" in plan.loc["n-0", "target"]
    for _, row in plan.iterrows():
        assert row["target"] and row["target_source"], "no blank target"
        assert not re.fullmatch(r"[\d.]+", row["target"])


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=80), st.one_of(st.none(), st.text(max_size=60)))
def test_property_never_crashes_and_unparseable_is_unknown(kv: str, osi: str | None) -> None:
    c = classify(kv, osi)
    states = {c.race1, c.race2, c.race3, c.nfqueue}
    assert states <= set(K.RACE_NAMES) | {FIXED, OPEN, UNKNOWN, NOT_APPLICABLE}
    if parse_kernel(kv, osi).base is None and c.distro != "windows":
        assert states == {UNKNOWN}
    for race in RACES:
        _assert_justified(kv, osi, race, c.decisions[race])


@settings(max_examples=200, deadline=None)
@given(
    st.integers(3, 6),
    st.integers(0, 20),
    st.integers(0, 2000),
    st.sampled_from(["generic", "azure", "aws", "gke", "kvm"]),
)
def test_property_newer_ubuntu_abi_never_reopens_a_race(
    major: int, minor: int, abi: int, flavour: str
) -> None:
    order = {OPEN: 0, UNKNOWN: 1, FIXED: 2}
    older = classify(f"{major}.{minor}.0-{abi}-{flavour}", "Ubuntu")
    newer = classify(f"{major}.{minor}.0-{abi + 1}-{flavour}", "Ubuntu")
    for race in RACES:
        assert order[getattr(newer, race)] >= order[getattr(older, race)]


def test_dashboard_reads_windows_as_not_applicable() -> None:
    from dashboard import charts
    from dnsfleet.verdicts import kernel_verdict

    nodes = _nodes(
        [
            ("c", "win-0", "win", "10.0.20348.2340", "Windows Server 2022 Datacenter", 0.0),
            ("c", "lin-0", "p1", "4.15.0-55-generic", "Ubuntu 18.04.2 LTS", 90.0),
        ]
    ).assign(distro=["windows", "ubuntu"])
    assert list(kernel_verdict(nodes)) == [NOT_APPLICABLE, OPEN]
    names = {t.name for t in charts.kernel_bars(nodes).data}
    assert "not applicable (Windows)" in names
