"""Kernel rules K1-K8: real nodeInfo.kernelVersion strings, every row of the fix table, unknown inputs."""

from __future__ import annotations

import csv
import json
from importlib import resources

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dnsfleet.rules.kernel import classify, fix_table, minimum_fixed, parse_kernel

# (kernelVersion, osImage, race1, race2, race3, distro) — strings as reported by real nodes.
REAL = [
    (
        "4.15.0-1029-azure",
        "Ubuntu 18.04.1 LTS",
        "open",
        "open",
        "open",
        "ubuntu",
    ),  # AKS 2018 (Azure/AKS#667 era)
    ("4.15.0-1030-azure", "Ubuntu 18.04.1 LTS", "fixed", "open", "open", "ubuntu"),
    ("4.15.0-1092-azure", "Ubuntu 18.04.5 LTS", "fixed", "open", "open", "ubuntu"),
    ("4.18.0-1005-azure", "Ubuntu 18.04.2 LTS", "open", "open", "open", "ubuntu"),
    ("4.18.0-1006-azure", "Ubuntu 18.04.2 LTS", "fixed", "open", "open", "ubuntu"),
    ("4.15.0-55-generic", "Ubuntu 18.04.2 LTS", "open", "open", "open", "ubuntu"),
    ("4.15.0-58-generic", "Ubuntu 18.04.3 LTS", "fixed", "fixed", "open", "ubuntu"),
    ("5.4.0-1103-aws", "Ubuntu 20.04.6 LTS", "fixed", "fixed", "open", "ubuntu"),
    ("5.15.0-1057-azure", "Ubuntu 22.04.4 LTS", "fixed", "fixed", "fixed", "ubuntu"),
    ("5.15.0-1049-gke", "Ubuntu 22.04.3 LTS", "fixed", "fixed", "fixed", "ubuntu"),
    ("6.8.0-1015-aws", "Ubuntu 24.04 LTS", "fixed", "fixed", "fixed", "ubuntu"),
    ("4.14.146-119.123.amzn2.x86_64", "Amazon Linux 2", "open", "open", "open", "amzn"),
    ("4.14.173-137.229.amzn2.x86_64", "Amazon Linux 2", "fixed", "open", "open", "amzn"),
    ("4.14.225-168.357.amzn2.x86_64", "Amazon Linux 2", "fixed", "fixed", "open", "amzn"),
    ("5.10.215-203.850.amzn2.x86_64", "Amazon Linux 2", "fixed", "fixed", "fixed", "amzn"),
    ("6.1.84-99.169.amzn2023.x86_64", "Amazon Linux 2023", "fixed", "fixed", "fixed", "amzn"),
    ("3.10.0-1160.el7.x86_64", "CentOS Linux 7 (Core)", "open", "open", "open", "el"),
    ("4.18.0-513.5.1.el8_9.x86_64", "Red Hat Enterprise Linux 8.9 (Ootpa)", "open", "open", "open", "el"),
    ("5.14.0-362.8.1.el9_3.x86_64", "Rocky Linux 9.3 (Blue Onyx)", "fixed", "fixed", "fixed", "el"),
    ("5.4.17-2136.330.7.1.el8uek.x86_64", "Oracle Linux Server 8.9", "fixed", "fixed", "open", "el"),
    ("5.15.133+", "Container-Optimized OS from Google", "fixed", "fixed", "fixed", "cos"),
    ("5.4.89+", "Container-Optimized OS from Google", "fixed", "fixed", "open", "cos"),
    ("5.10.186", "Bottlerocket OS 1.14.1 (aws-k8s-1.27)", "fixed", "fixed", "fixed", "bottlerocket"),
    (
        "5.15.133-flatcar",
        "Flatcar Container Linux by Kinvolk 3602.2.1 (Oklo)",
        "fixed",
        "fixed",
        "fixed",
        "flatcar",
    ),
    ("6.1.58-talos", "Talos (v1.5.5)", "fixed", "fixed", "fixed", "talos"),
    ("5.15.61-v8+", "Debian GNU/Linux 11 (bullseye)", "fixed", "fixed", "fixed", "raspberrypi"),
    ("6.6.20+rpt-rpi-v8", "Debian GNU/Linux 12 (bookworm)", "fixed", "fixed", "fixed", "raspberrypi"),
    ("4.19.0-18-amd64", "Debian GNU/Linux 10 (buster)", "fixed", "unknown", "open", "debian"),
    ("6.1.0-18-cloud-amd64", "Debian GNU/Linux 12 (bookworm)", "fixed", "fixed", "fixed", "debian"),
    ("5.15.153.1-2.cm2", "CBL-Mariner/Linux", "fixed", "fixed", "fixed", "mariner"),
    (
        "4.19.90-2112.8.0.0131.oe1.x86_64",
        "openEuler 20.03 (LTS-SP3)",
        "fixed",
        "unknown",
        "fixed",
        "openeuler",
    ),
]


@pytest.mark.parametrize(("kv", "osi", "r1", "r2", "r3", "distro"), REAL)
def test_real_kernel_strings(kv: str, osi: str, r1: str, r2: str, r3: str, distro: str) -> None:
    c = classify(kv, osi)
    assert (c.race1, c.race2, c.race3, c.distro) == (r1, r2, r3, distro)
    assert c.source, "every classification names its sources"


@pytest.mark.parametrize(
    ("kv", "osi"),
    [
        ("10.0.17763.5696", "Windows Server 2019 Datacenter"),
        ("10.0.20348.2340", "Windows Server 2022 Datacenter"),
        ("5.15.0-custom", "Acme Linux"),
        ("6.6.30", "Acme Linux"),  # plain version, unknown vendor: never decided on major.minor (K8)
        ("5.15.133+", "Acme OS"),  # COS form without COS os image
        ("", "Ubuntu 22.04"),
        ("not a kernel", None),
        ("9" * 400, None),
    ],
)
def test_unknown_kernels_are_unknown_never_fixed(kv: str, osi: str | None) -> None:
    c = classify(kv, osi)
    assert {c.race1, c.race2, c.race3, c.nfqueue} == {"unknown"}
    assert c.counters_exact is None


def _bump(version: str) -> str:
    parts = version.split(".")
    parts[-1] = str(int(parts[-1].split("-")[0]) + 1) if "-" not in parts[-1] else parts[-1]
    return ".".join(parts)


# One real-format kernel string per fix-table row: (row) -> (at the fix, just below the fix).
ROW_KERNELS = {
    ("race1", "mainline", ""): (("4.19.0-1-amd64", "Debian"), ("4.18.0-25-generic", "Ubuntu 18.04")),
    ("race1", "stable", "4.14"): (
        ("4.14.173-1.amzn2.x86_64", "Amazon Linux 2"),
        ("4.14.172-1.amzn2.x86_64", "Amazon Linux 2"),
    ),
    ("race1", "ubuntu", "4.15"): (
        ("4.15.0-58-generic", "Ubuntu 18.04"),
        ("4.15.0-57-generic", "Ubuntu 18.04"),
    ),
    ("race1", "ubuntu-azure", "4.15"): (
        ("4.15.0-1030-azure", "Ubuntu 18.04"),
        ("4.15.0-1029-azure", "Ubuntu 18.04"),
    ),
    ("race1", "ubuntu-azure", "4.18"): (
        ("4.18.0-1006-azure", "Ubuntu 18.04"),
        ("4.18.0-1005-azure", "Ubuntu 18.04"),
    ),
    ("race1", "openeuler", "4.19"): (("4.19.90-1.oe1.x86_64", "openEuler"), None),
    ("race2", "mainline", ""): (("5.0.0-1-generic", "Ubuntu"), ("4.20.17-1.fc29.x86_64", "Fedora")),
    ("race2", "stable", "4.14"): (
        ("4.14.222-1.amzn2.x86_64", "Amazon Linux 2"),
        ("4.14.221-1.amzn2.x86_64", "Amazon Linux 2"),
    ),
    ("race2", "stable", "4.19"): (("4.19.29-flatcar", "Flatcar"), ("4.19.28-flatcar", "Flatcar")),
    ("race2", "stable", "4.9"): (("4.9.163-talos", "Talos"), ("4.9.162-talos", "Talos")),
    ("race2", "ubuntu", "4.15"): (
        ("4.15.0-58-generic", "Ubuntu 18.04"),
        ("4.15.0-57-generic", "Ubuntu 18.04"),
    ),
    ("race3", "mainline", ""): (("5.6.0-1.fc32.x86_64", "Fedora"), ("5.5.19-1.fc31.x86_64", "Fedora")),
    ("race3", "openeuler", "4.19"): (("4.19.90-1.oe1.x86_64", "openEuler"), None),
    ("nfqueue", "mainline", ""): (("6.12.1-talos", "Talos"), ("6.11.11-talos", "Talos")),
}


def test_every_fix_table_row_has_a_source_and_a_test() -> None:
    rows = fix_table()
    assert {(r.race, r.track, r.branch) for r in rows} == set(ROW_KERNELS)
    for r in rows:
        assert r.source.strip() and r.rule.startswith("K") and r.confidence in ("C", "S")


@pytest.mark.parametrize("key", sorted(ROW_KERNELS))
def test_fix_table_row_boundaries(key: tuple[str, str, str]) -> None:
    race = key[0]
    at, below = ROW_KERNELS[key]
    assert getattr(classify(*at), race) == "fixed"
    if below is not None:
        assert getattr(classify(*below), race) == "open"


def test_kernel_cli_contract(capsys: pytest.CaptureFixture[str]) -> None:
    from dnsfleet.cli import main

    assert main(["kernel", "4.15.0-1029-azure", "--os-image", "Ubuntu 18.04.1 LTS"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert (out["race1"], out["race2"], out["race3"]) == ("open", "open", "open")
    assert isinstance(out["source"], list) and any("LP#1795493" in s for s in out["source"])


def test_minimum_fixed_uses_the_nodes_track() -> None:
    assert minimum_fixed("race1", "4.15.0-1029-azure", "Ubuntu") == "4.15.0-1030 (ubuntu-azure)"
    assert minimum_fixed("race2", "4.14.209-1.amzn2.x86_64", "Amazon Linux 2") == "4.14.222"
    assert minimum_fixed("race3", "3.10.0-1160.el7.x86_64", "CentOS") == "5.6"


def test_distro_table_covers_every_recognised_family() -> None:
    with resources.files("dnsfleet.rules").joinpath("data", "distros.csv").open() as f:
        distros = {r["distro"] for r in csv.DictReader(f)}
    for kv, osi, *_ in REAL:
        assert parse_kernel(kv, osi).distro in distros


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=80), st.one_of(st.none(), st.text(max_size=60)))
def test_property_never_crashes_and_unrecognised_is_never_fixed(kv: str, osi: str | None) -> None:
    c = classify(kv, osi)
    states = {c.race1, c.race2, c.race3, c.nfqueue}
    assert states <= {"fixed", "open", "unknown"}
    if parse_kernel(kv, osi).distro is None:
        assert states == {"unknown"}


@settings(max_examples=200, deadline=None)
@given(
    st.integers(3, 6),
    st.integers(0, 20),
    st.integers(0, 300),
    st.integers(0, 2000),
    st.sampled_from(["generic", "azure", "aws", "gke"]),
)
def test_property_newer_ubuntu_abi_never_reopens_a_race(
    major: int, minor: int, sub: int, abi: int, flavour: str
) -> None:
    older = classify(f"{major}.{minor}.{sub}-{abi}-{flavour}", "Ubuntu")
    newer = classify(f"{major}.{minor}.{sub}-{abi + 1}-{flavour}", "Ubuntu")
    for race in ("race1", "race2", "race3"):
        if getattr(older, race) == "fixed":
            assert getattr(newer, race) == "fixed"
