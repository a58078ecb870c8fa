"""Kernel rules K1-K8: is each conntrack race fixed, open or unknown on a node?

The decisions are data (``data/kernel_fixes.csv``, ``data/distros.csv``, each row with its source in
``dns-race-facts.md``); this module only parses kernel strings and applies the table:

1. Recognise the kernel family from ``status.nodeInfo.kernelVersion`` and ``osImage`` (K8). An
   unrecognised or unparsable kernel is ``unknown`` for every race, never ``fixed``.
2. Base version >= the mainline fix -> ``fixed`` (the fix is in the base).
3. Else a row for the kernel's own track and branch (a vendor ABI like ``4.15.0-1030`` for linux-azure,
   or a stable sublevel like ``4.14.173``) decides: at or above it -> ``fixed``, below -> ``open``.
   Stable rows apply only to families whose x.y.z follows upstream stable (``distros.csv``); where the
   sublevel is hidden (Ubuntu, Debian, RHEL) a stable row cannot be checked -> ``unknown``.
4. Else ``open``: rules K1-K3 say "fixed iff ... otherwise open".
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources

RACES = ("race1", "race2", "race3", "nfqueue")
Version = tuple[int, ...]


@dataclass(frozen=True)
class FixRow:
    race: str
    track: str
    branch: str
    fixed_in: str
    confidence: str
    rule: str
    source: str


@dataclass(frozen=True)
class KernelInfo:
    """A parsed kernel string."""

    raw: str
    distro: str | None  # None: not recognised
    base: Version | None  # upstream x.y.z
    track: str | None  # fix-table track: mainline, ubuntu, ubuntu-azure, ...
    abi: Version | None  # vendor ABI version compared against track rows, e.g. (4, 15, 0, 1030)
    sublevel_is_stable: bool = False

    @property
    def base_str(self) -> str | None:
        return ".".join(map(str, self.base)) if self.base else None


@dataclass
class Classification:
    race1: str = "unknown"
    race2: str = "unknown"
    race3: str = "unknown"
    nfqueue: str = "unknown"
    distro: str | None = None
    base: str | None = None
    counters_exact: bool | None = None
    source: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {
            "kernel_base": self.base,
            "distro": self.distro or "unknown",
            "race1": self.race1,
            "race2": self.race2,
            "race3": self.race3,
            "nfqueue": self.nfqueue,
            "counters_exact": self.counters_exact,
            "source": list(self.source),
        }


def _read_csv(name: str) -> list[dict[str, str]]:
    with resources.files("dnsfleet.rules").joinpath("data", name).open(encoding="utf-8") as f:
        return list(csv.DictReader(f))


@lru_cache(maxsize=1)
def fix_table() -> tuple[FixRow, ...]:
    return tuple(FixRow(**row) for row in _read_csv("kernel_fixes.csv"))


@lru_cache(maxsize=1)
def distro_table() -> dict[str, dict[str, str]]:
    return {row["distro"]: row for row in _read_csv("distros.csv")}


def parse_version(text: str) -> Version | None:
    """'4.15.0-1030' -> (4, 15, 0, 1030); '5.6' -> (5, 6). None if not numeric."""
    parts = re.split(r"[.-]", text.strip())
    try:
        return tuple(int(p) for p in parts if p != "")
    except ValueError:
        return None


_UBUNTU = re.compile(r"^(\d+)\.(\d+)\.(\d+)-(\d+)(?:\.\d+)?-([a-z][a-z0-9-]*)$")
_EL = re.compile(r"^(\d+)\.(\d+)\.(\d+)-[\d.]+\.(?:el\d+[_\d]*|el\d+uek)(?:\.[a-z0-9_]+)?$")
_AMZN = re.compile(r"^(\d+)\.(\d+)\.(\d+)-[\d.]+\.amzn(?:2|2023)(?:\.[a-z0-9_]+)?$")
_DEBIAN = re.compile(r"^(\d+)\.(\d+)\.0-(\d+)-(?:cloud-|rt-)?(amd64|arm64|686-pae|armmp|rpi)$")
_COS = re.compile(r"^(\d+)\.(\d+)\.(\d+)\+$")
_FLATCAR = re.compile(r"^(\d+)\.(\d+)\.(\d+)-flatcar$")
_TALOS = re.compile(r"^(\d+)\.(\d+)\.(\d+)-talos$")
_RPI = re.compile(r"^(\d+)\.(\d+)\.(\d+)(?:-v[78]l?\+|-v8-16k\+|\+rpt-rpi-[a-z0-9-]+|-v7\+|\+)$")
_MARINER = re.compile(r"^(\d+)\.(\d+)\.(\d+)(?:\.\d+)?-\d+\.(?:cm\d|azl\d)$")
_FEDORA = re.compile(r"^(\d+)\.(\d+)\.(\d+)-\d+\.fc\d+(?:\.[a-z0-9_]+)?$")
_SUSE = re.compile(r"^(\d+)\.(\d+)\.(\d+)-[\d.]+-(default|azure|cloud)$")
_OPENEULER = re.compile(r"^(\d+)\.(\d+)\.(\d+)-[\d.]+\.oe\d+(?:\.[a-z0-9_]+)?$")
_PLAIN = re.compile(r"^(\d+)\.(\d+)\.(\d+)$")
_MAX_LEN = 256


def _v(m: re.Match, n: int = 3) -> Version:
    return tuple(int(m.group(i)) for i in range(1, n + 1))


def parse_kernel(kernel_version: str | None, os_image: str | None = None) -> KernelInfo:
    """Recognise a ``nodeInfo.kernelVersion`` (with ``osImage``). Never raises."""
    raw = (kernel_version or "").strip()
    osi = (os_image or "").lower()
    unknown = KernelInfo(raw=raw, distro=None, base=None, track=None, abi=None)
    if not raw or len(raw) > _MAX_LEN or "windows" in osi:
        return unknown

    def info(distro: str, base: Version, track: str | None = None, abi: Version | None = None) -> KernelInfo:
        stable = distro_table().get(distro, {}).get("sublevel_is_stable") == "yes"
        return KernelInfo(raw, distro, base, track or distro, abi or base, stable)

    if m := _UBUNTU.match(raw):
        base = _v(m)
        flavour = m.group(5)
        abi = (*base, int(m.group(4)))
        if "debian" in osi and flavour in ("amd64", "arm64", "cloud-amd64", "cloud-arm64"):
            return info("debian", base, "debian", abi)
        if flavour in ("generic", "lowlatency", "virtual", "kvm"):
            return info("ubuntu", base, "ubuntu", abi)
        return info("ubuntu", base, f"ubuntu-{flavour}", abi)
    if m := _EL.match(raw):
        return info("el", _v(m))
    if m := _AMZN.match(raw):
        return info("amzn", _v(m))
    if m := _DEBIAN.match(raw):
        return info("debian", (int(m.group(1)), int(m.group(2)), 0), "debian")
    if m := _OPENEULER.match(raw):
        return info("openeuler", _v(m))
    if m := _MARINER.match(raw):
        return info("mariner", _v(m))
    if m := _FEDORA.match(raw):
        return info("fedora", _v(m))
    if m := _SUSE.match(raw):
        return info("suse", _v(m))
    if m := _FLATCAR.match(raw):
        return info("flatcar", _v(m))
    if m := _TALOS.match(raw):
        return info("talos", _v(m))
    if (m := _COS.match(raw)) and ("container-optimized" in osi or "cos" in osi.split()):
        return info("cos", _v(m))
    if (m := _RPI.match(raw)) and ("raspbian" in osi or "debian" in osi or "raspberry" in osi):
        return info("raspberrypi", _v(m))
    if (m := _PLAIN.match(raw)) and "bottlerocket" in osi:
        return info("bottlerocket", _v(m))
    return unknown


def _at_least(v: Version, w: Version) -> bool:
    n = max(len(v), len(w))
    return v + (0,) * (n - len(v)) >= w + (0,) * (n - len(w))


def classify_race(k: KernelInfo, race: str) -> tuple[str, list[str]]:
    """(state, sources) for one race on a parsed kernel."""
    if k.distro is None or k.base is None:
        return "unknown", [f"K8: kernel {k.raw!r} with this OS image is not a recognised kernel family"]
    rows = [r for r in fix_table() if r.race == race]
    mainline = next(r for r in rows if r.track == "mainline")
    fix = parse_version(mainline.fixed_in) or ()
    if _at_least(k.base, fix):
        return "fixed", [f"{mainline.rule}: base {k.base_str} >= {mainline.fixed_in} ({mainline.source})"]
    branch = f"{k.base[0]}.{k.base[1]}"
    for r in rows:
        if r.track == k.track and r.branch == branch and k.abi is not None:
            want = parse_version(r.fixed_in) or ()
            state = "fixed" if _at_least(k.abi, want) else "open"
            cmp = ">=" if state == "fixed" else "<"
            return state, [f"{r.rule}: {k.track} {k.raw} {cmp} {r.fixed_in} [{r.confidence}] ({r.source})"]
    stable = [r for r in rows if r.track == "stable" and r.branch == branch]
    if stable:
        r = stable[0]
        if not k.sublevel_is_stable:
            return "unknown", [
                f"{r.rule}: {branch}.y has the fix from {r.fixed_in}, but a {k.distro} kernel string does not "
                f"show its stable sublevel (K8)"
            ]
        state = "fixed" if _at_least(k.base, parse_version(r.fixed_in) or ()) else "open"
        cmp = ">=" if state == "fixed" else "<"
        return state, [f"{r.rule}: {k.base_str} {cmp} {r.fixed_in} [{r.confidence}] ({r.source})"]
    return "open", [f"{mainline.rule}: {k.raw} is below {mainline.fixed_in} with no known backport"]


def classify(kernel_version: str | None, os_image: str | None = None) -> Classification:
    """Classify every race for one node."""
    k = parse_kernel(kernel_version, os_image)
    c = Classification(distro=k.distro, base=k.base_str)
    for race in RACES:
        state, src = classify_race(k, race)
        setattr(c, race, state)
        c.source += [s for s in src if s not in c.source]
    if k.base is not None:
        c.counters_exact = _at_least(k.base, (5, 10))  # K7: bc92470413f3 in ~v5.10 (§1.4)
    return c


def minimum_fixed(race: str, kernel_version: str | None, os_image: str | None = None) -> str | None:
    """The lowest kernel on the node's own track that closes ``race`` (for upgrade plans)."""
    k = parse_kernel(kernel_version, os_image)
    rows = [r for r in fix_table() if r.race == race]
    if k.base is not None:
        branch = f"{k.base[0]}.{k.base[1]}"
        for r in rows:
            if r.track == k.track and r.branch == branch:
                return f"{r.fixed_in} ({k.track})"
            if r.track == "stable" and r.branch == branch and k.sublevel_is_stable:
                return r.fixed_in
    return next(r.fixed_in for r in rows if r.track == "mainline")
