"""Kernel rules K0-K8: is each conntrack race fixed, open, unknown or not applicable on a node?

The decisions are data (``data/kernel_fixes.csv``: per race, track and branch a version interval and
its verdict with the public source; ``data/distros.csv``: which tracks a distro family reads). This
module parses kernel strings and applies the table, in this order:

1. Windows (``osImage`` says Windows, or an NT build ``10.0.NNNNN``): *not applicable*, no netfilter.
2. No leading ``x.y[.z]``: *unknown* for every race (K8).
3. K0: the leading ``x.y[.z]`` is the upstream series the vendor forked from; a race whose mainline
   fix is at or below it is *fixed*, whatever the distro or suffix.
4. Below the mainline fix, the first row of the node's own tracks (its vendor track such as
   ``ubuntu-azure`` or ``amzn2``, then the family's shared tracks from ``distros.csv``: ``stable``
   where the ``x.y.z`` is the upstream stable sublevel, ``upstream`` where the kernel carries no known
   vendor backport of the fix) whose branch and version interval contain the kernel decides. A row
   says *fixed*, *open* or *unknown*, and every row carries its public source.
5. No row: *unknown*. "open" is only ever a sourced row, never the version alone (K0, K8).
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources

RACES = ("race1", "race2", "race3", "nfqueue")
FIXED, OPEN, UNKNOWN, NOT_APPLICABLE = "fixed", "open", "unknown", "not applicable"
VERDICTS = (FIXED, OPEN, UNKNOWN, NOT_APPLICABLE)
Version = tuple[int, ...]
_MAX_LEN = 256


@dataclass(frozen=True)
class FixRow:
    """One row of ``kernel_fixes.csv``: kernels of ``track``/``branch`` in [start, end) get ``verdict``."""

    race: str
    track: str
    branch: str
    start: str
    end: str
    verdict: str
    confidence: str
    rule: str
    source: str

    def contains(self, key: Version) -> bool:
        lo, hi = parse_version(self.start), parse_version(self.end)
        return (lo is None or _at_least(key, lo)) and (hi is None or not _at_least(key, hi))

    @property
    def interval(self) -> str:
        if self.start and self.end:
            return f"{self.start} <= kernel < {self.end}"
        if self.start:
            return f">= {self.start}"
        if self.end:
            return f"< {self.end}"
        return "every version"


@dataclass(frozen=True)
class KernelInfo:
    """A parsed kernel string."""

    raw: str
    distro: str | None  # family in distros.csv; None: no leading x.y
    base: Version | None  # upstream x.y.z
    track: str | None  # the node's own track in the fix table, e.g. ubuntu-azure, amzn2
    key: Version | None  # what rows of the node's own track compare: (4, 15, 0, 1030), (4, 14, 171, 105, 231)
    flavour: str | None = None  # Ubuntu/Debian flavour, e.g. azure, kvm, cloud-amd64

    @property
    def base_str(self) -> str | None:
        return ".".join(map(str, self.base)) if self.base else None

    @property
    def branch(self) -> str | None:
        return f"{self.base[0]}.{self.base[1]}" if self.base else None


@dataclass(frozen=True)
class Decision:
    """Why one race got its verdict: the rule, the row's public source and a one-line reading."""

    verdict: str
    rule: str
    source: str
    detail: str
    confidence: str = ""

    def as_dict(self) -> dict[str, str]:
        return {
            "verdict": self.verdict,
            "rule": self.rule,
            "source": self.source,
            "detail": self.detail,
            "confidence": self.confidence,
        }


@dataclass
class Classification:
    race1: str = UNKNOWN
    race2: str = UNKNOWN
    race3: str = UNKNOWN
    nfqueue: str = UNKNOWN
    distro: str | None = None
    base: str | None = None
    counters_exact: bool | None = None
    source: list[str] = field(default_factory=list)
    decisions: dict[str, Decision] = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {
            "kernel_base": self.base,
            "distro": self.distro or "unknown",
            "race1": self.race1,
            "race2": self.race2,
            "race3": self.race3,
            "nfqueue": self.nfqueue,
            "counters_exact": self.counters_exact,
            "decided_by": {race: d.as_dict() for race, d in self.decisions.items()},
            "source": list(self.source),
        }


def _read_csv(name: str) -> list[dict[str, str]]:
    with resources.files("dnsfleet.rules").joinpath("data", name).open(encoding="utf-8") as f:
        return list(csv.DictReader(f))


@lru_cache(maxsize=1)
def fix_table() -> tuple[FixRow, ...]:
    rows = []
    for r in _read_csv("kernel_fixes.csv"):
        rows.append(
            FixRow(
                race=r["race"],
                track=r["track"],
                branch=r["branch"],
                start=r["from"],
                end=r["to"],
                verdict=r["verdict"],
                confidence=r["confidence"],
                rule=r["rule"],
                source=r["source"],
            )
        )
    return tuple(rows)


@lru_cache(maxsize=1)
def distro_table() -> dict[str, dict[str, str]]:
    return {row["distro"]: row for row in _read_csv("distros.csv")}


def parse_version(text: str | None) -> Version | None:
    """'4.15.0-1030' -> (4, 15, 0, 1030); '4.14.171-105.231' -> (4, 14, 171, 105, 231); None if empty
    or not numeric."""
    parts = re.split(r"[.-]", (text or "").strip())
    try:
        v = tuple(int(p) for p in parts if p != "")
    except ValueError:
        return None
    return v or None


def _at_least(v: Version, w: Version) -> bool:
    n = max(len(v), len(w))
    return v + (0,) * (n - len(v)) >= w + (0,) * (n - len(w))


_LEAD = re.compile(r"^(\d{1,4})\.(\d{1,4})(?:\.(\d{1,6}))?")
_WINDOWS = re.compile(r"^10\.0\.\d{4,5}(?:\.\d+)?$")
# Ubuntu x.y.0-ABI-flavour; Debian x.y.0-ABI-flavour and backports x.y.0-0.debNN.ABI / -0.bpo.ABI.
_ABI = re.compile(r"^(\d+)\.(\d+)\.(\d+)-(?:0\.(deb\d+|bpo)\.)?(\d+)(?:\.\d+)?-([a-z][a-z0-9-]*)$")
_DEBIAN_FLAVOURS = re.compile(
    r"^(?:cloud-|rt-)?(?:amd64|arm64|686|686-pae|armmp|armmp-lpae|marvell|rpi|4kc-malta|5kc-malta"
    r"|octeon|loongson-3|powerpc64le|s390x|mips64r2el|riscv64)$"
)
# Ubuntu flavours that share the master kernel's ABI numbering (LP#1836816 applies to them).
_UBUNTU_MASTER = {"generic", "lowlatency", "generic-lpae", "generic-64k", "virtual"}
# SUSE x.y.z-build-flavour: "-default" is SUSE's alone; other flavours need SUSE's dotted build number
# (Ubuntu's "-azure" ABI is one integer).
_SUSE = re.compile(
    r"^\d+\.\d+\.\d+-(?:[\d.]+-default|\d+(?:\.\d+)+-(?:azure|gcp|kvmsmall|rt|64kb|preempt|vanilla))$"
)
_AMZN = re.compile(r"^(\d+\.\d+\.\d+-[\d.]+)\.(amzn2023|amzn2)\b")
_SUFFIXES = (
    (re.compile(r"\.el\d+"), "el"),
    (re.compile(r"\.(?:cm\d|azl\d|m2)(?:\.|$)"), "mariner"),
    (re.compile(r"\.ph\d"), "photon"),
    (re.compile(r"\.al\d"), "alinux"),
    (re.compile(r"\.oe\d"), "openeuler"),
    (re.compile(r"\.fc\d"), "fedora"),
    (re.compile(r"-flatcar$"), "flatcar"),
    (re.compile(r"-talos$"), "talos"),
    (re.compile(r"(?:-v[678]l?\+|-v8-16k\+|\+rpt-rpi-|-v7\+)"), "raspberrypi"),
)
_OS_FAMILIES = (
    ("container-optimized", "cos"),
    ("bottlerocket", "bottlerocket"),
    ("nixos", "nixos"),
    ("flatcar", "flatcar"),
    ("talos", "talos"),
    ("photon", "photon"),
    ("mariner", "mariner"),
    ("azure linux", "mariner"),
    ("suse", "suse"),
    ("sles", "suse"),
    ("red hat", "el"),
    ("centos", "el"),
    ("rocky", "el"),
    ("almalinux", "el"),
    ("oracle linux", "el"),
)


def parse_kernel(kernel_version: str | None, os_image: str | None = None) -> KernelInfo:
    """Recognise a ``nodeInfo.kernelVersion`` (with ``osImage``). Never raises."""
    raw = (kernel_version or "").strip()
    osi = (os_image or "").lower()
    if "windows" in osi or _WINDOWS.match(raw):
        return KernelInfo(raw, "windows", None, "windows", None)
    lead = _LEAD.match(raw) if len(raw) <= _MAX_LEN else None
    if lead is None:
        return KernelInfo(raw, None, None, None, None)
    base = (int(lead.group(1)), int(lead.group(2)), int(lead.group(3) or 0))

    def info(distro: str, track: str | None = None, key: Version | None = None, flavour: str | None = None):
        return KernelInfo(raw, distro, base, track or distro, key or base, flavour)

    if m := _AMZN.match(raw):
        return info(m.group(2), m.group(2), parse_version(m.group(1)))
    if _SUSE.match(raw) or (("suse" in osi or "sles" in osi) and "-" in raw):
        return info("suse")
    if m := _ABI.match(raw):
        abi, flavour, backport = int(m.group(5)), m.group(6), m.group(4)
        if backport or _DEBIAN_FLAVOURS.match(flavour) or "debian" in osi:
            return info("debian", "debian", (*base, abi), flavour)
        if base[2] == 0 or "ubuntu" in osi:
            track = "ubuntu-generic" if flavour in _UBUNTU_MASTER else f"ubuntu-{flavour}"
            return info("ubuntu", track, (*base, abi), flavour)
    for rx, distro in _SUFFIXES:
        if rx.search(raw):
            return info(distro)
    for needle, distro in _OS_FAMILIES:
        if needle in osi:
            return info(distro)
    return info("linux")


def _tracks(k: KernelInfo) -> list[str]:
    """The node's own track first, then the family's shared tracks (distros.csv)."""
    shared = (distro_table().get(k.distro or "", {}).get("tracks") or "").split()
    return [t for t in dict.fromkeys([k.track or "", *shared]) if t]


def _key_for(k: KernelInfo, track: str) -> Version | None:
    """Vendor tracks compare the vendor key (ABI, build); shared tracks compare the upstream base."""
    return k.key if track == k.track else k.base


def decide(k: KernelInfo, race: str) -> Decision:
    """The verdict for one race on a parsed kernel, with the rule and source that decided it."""
    if k.distro == "windows":
        src = distro_table()["windows"]["source"]
        return Decision(
            NOT_APPLICABLE, "K8", src, "Windows node: no netfilter conntrack, the race model does not apply"
        )
    if k.base is None or k.distro is None:
        return Decision(
            UNKNOWN,
            "K8",
            "no parseable x.y",
            f"kernel {k.raw[:60]!r} has no leading x.y: nothing can be decided",
        )
    rows = [r for r in fix_table() if r.race == race]
    mainline = next(r for r in rows if r.track == "mainline")
    fix = parse_version(mainline.start) or ()
    if _at_least(k.base, fix):
        return Decision(
            FIXED,
            "K0",
            mainline.source,
            f"base {k.base_str} >= mainline fix {mainline.start}",
            mainline.confidence,
        )
    for track in _tracks(k):
        key = _key_for(k, track)
        for r in rows:
            if r.track != track or (r.branch and r.branch != k.branch) or key is None:
                continue
            if r.contains(key):
                shown = k.raw if track == k.track else k.base_str
                return Decision(
                    r.verdict, r.rule, r.source, f"{track} {shown}: {r.interval} -> {r.verdict}", r.confidence
                )
    return Decision(
        UNKNOWN,
        "K8",
        mainline.source,
        f"{k.distro} {k.raw}: below the mainline fix {mainline.start} and no sourced row for "
        f"{k.track} {k.branch}: unknown, not open",
    )


def classify_race(k: KernelInfo, race: str) -> tuple[str, list[str]]:
    """(verdict, [reason]) for one race on a parsed kernel."""
    d = decide(k, race)
    return d.verdict, [f"{race}: {d.rule} {d.detail} ({d.source})"]


def classify(kernel_version: str | None, os_image: str | None = None) -> Classification:
    """Classify every race for one node."""
    k = parse_kernel(kernel_version, os_image)
    c = Classification(distro=k.distro, base=k.base_str)
    for race in RACES:
        d = decide(k, race)
        setattr(c, race, d.verdict)
        c.decisions[race] = d
        c.source.append(f"{race}: {d.rule} {d.detail} ({d.source})")
    if k.base is not None and k.distro != "windows":
        c.counters_exact = _at_least(k.base, (5, 10))  # K7: bc92470413f3 in ~v5.10 (§1.4)
    return c


def minimum_fixed(race: str, kernel_version: str | None, os_image: str | None = None) -> str | None:
    """The lowest kernel on the node's own track that closes ``race``: a sourced "fixed" row of its
    vendor track ("4.15.0-1030 (ubuntu-azure)"), else the mainline fix. None on Windows."""
    k = parse_kernel(kernel_version, os_image)
    if k.distro == "windows":
        return None
    rows = [r for r in fix_table() if r.race == race]
    if k.base is not None:
        for track in _tracks(k):
            for r in rows:
                if r.track == track and r.branch == k.branch and r.verdict == FIXED and r.start:
                    return r.start if track == "stable" else f"{r.start} ({track})"
    return next(r.start for r in rows if r.track == "mainline")


@dataclass(frozen=True)
class Target:
    """What to move a node to, in the words of its distro and track, and the public source."""

    text: str
    source: str


@lru_cache(maxsize=1)
def target_table() -> tuple[dict[str, str], ...]:
    return tuple(_read_csv("kernel_targets.csv"))


def kernel_target(
    races: list[str] | tuple[str, ...], kernel: str | None, os_image: str | None = None
) -> Target:
    """The target that closes ``races`` on this node: the first row of ``kernel_targets.csv`` for the
    node's distro (then any distro), track and branch that covers every race asked for."""
    k = parse_kernel(kernel, os_image)
    need = set(races)
    name = distro_table().get(k.distro or "", {}).get("name") or "this distro"
    for row in target_table():
        if row["distro"] not in (k.distro, "*"):
            continue
        if (row["track"] and row["track"] != k.track) or (row["branch"] and row["branch"] != k.branch):
            continue
        if need <= set(row["races"].split()):
            text = row["target"].format(flavour=k.flavour or "", name=name)
            return Target(text, row["source"])
    raise LookupError(f"kernel_targets.csv has no catch-all row for {sorted(need)}")
