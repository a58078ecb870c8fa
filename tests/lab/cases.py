"""The race lab's cases and what the rules say each one must show.

A case is one resolver (glibc or musl) with one resolv.conf variant on one DNS path. Every client starts
from the resolv.conf kubelet writes for a ``ClusterFirst`` pod (the cluster search list and
``options ndots:5``); a case's options are merged over it by name, as kubelet merges ``dnsConfig.options``.

What a case must show is derived, not typed in: from the option table the product ships
(``lib/dnsfleet/rules/data/resolver_options.csv``: is the option honoured, does it keep the A/AAAA pair from
racing) and from the stall model of the facts the rules cite (R1: glibc waits ``timeout``, then its thread
sends sequentially; R5: musl resends every ``timeout/attempts``, once per query pair, as each search-list
step opens a new socket). ``expect`` turns those into seconds per lookup; ``claims`` into what the
emulator's packet log must show.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

from tests.lab import net

BASE_OPTIONS = (("ndots", "5"),)  # kubelet's ClusterFirst resolv.conf (pkg/kubelet/network/dns)
DEFAULT_TIMEOUT, DEFAULT_ATTEMPTS = 5, 2  # glibc RES_TIMEOUT / RES_DFLRETRY; musl's defaults are the same
FOUND = set(net.ZONE_NAMES)  # absolute names that exist in the lab's zone (without the trailing dot)
SLACK_S = 0.5  # how late a busy machine may fire a resolver's resend timer (see problems)


@dataclass(frozen=True)
class Path:
    label: str
    nameserver: str
    emulated: bool
    exposed: bool  # the emulator sees this path's queries (tracked UDP of an emulated client)


PATHS = {
    "race": Path("ClusterIP, DNAT, race emulated", net.CLUSTER_IP, True, True),
    "clean": Path("ClusterIP, DNAT, no emulator", net.CLUSTER_IP, False, False),
    "nodelocal": Path("NodeLocal 169.254.20.10, NOTRACK, race emulated", net.NODELOCAL_IP, True, False),
    "nodelocal-tracked": Path(
        "NodeLocal 169.254.20.11, NOTRACK missing, race emulated", net.NODELOCAL_TRACKED_IP, True, True
    ),
}


@dataclass(frozen=True)
class Case:
    resolver: str  # glibc | musl
    path: str  # a key of PATHS
    variant: str  # short name of the options under test
    options: tuple[str, ...] = ()
    name: str = "kubernetes"
    lookups: int = 2  # sequential lookups; each in a fresh process unless same_process
    same_process: bool = False
    rows: tuple[str, ...] = field(default=())  # options whose table rows this case tests

    @property
    def id(self) -> str:
        return f"{self.resolver}/{self.path}/{self.variant}"

    def merged_options(self) -> dict[str, str | None]:
        """kubelet's base options with the case's merged over them by name (later wins)."""
        out: dict[str, str | None] = dict(BASE_OPTIONS)
        for o in self.options:
            k, _, v = o.partition(":")
            out[k] = v or None
        return out

    def options_text(self) -> str:
        return " ".join(k if v is None else f"{k}:{v}" for k, v in self.merged_options().items())

    def resolv_conf(self) -> str:
        return (
            f"nameserver {PATHS[self.path].nameserver}\n"
            f"search {' '.join(net.SEARCH)}\n"
            f"options {self.options_text()}\n"
        )


def _cases() -> list[Case]:
    t2 = ("timeout:2",)  # short stalls where the option under test allows
    out: list[Case] = []
    for r in ("glibc", "musl"):
        out += [
            Case(r, "race", "default", rows=()),
            Case(r, "race", "timeout:2", t2, rows=("timeout",)),
            Case(r, "race", "attempts:1", (*t2, "attempts:1"), rows=("attempts",)),
            Case(r, "race", "single-request", (*t2, "single-request"), rows=("single-request",)),
            Case(
                r,
                "race",
                "single-request-reopen",
                (*t2, "single-request-reopen"),
                rows=("single-request-reopen",),
            ),
            Case(r, "race", "use-vc", (*t2, "use-vc"), rows=("use-vc",)),
            Case(r, "race", "no-aaaa", (*t2, "no-aaaa"), rows=("no-aaaa",)),
            Case(r, "race", "rotate", (*t2, "rotate"), rows=("rotate",)),
            Case(r, "race", "ndots:5-search", t2, name="api.example.test", rows=("ndots",)),
            Case(r, "race", "ndots:1", (*t2, "ndots:1"), name="api.example.test", rows=("ndots",)),
            Case(r, "race", "same-thread", t2, lookups=3, same_process=True),
            Case(r, "clean", "default"),
            Case(r, "clean", "ndots:5-search", t2, name="api.example.test"),
            Case(r, "nodelocal", "default"),
            Case(r, "nodelocal-tracked", "timeout:2", t2),
        ]
    return out


CASES: list[Case] = _cases()
BY_ID = {c.id: c for c in CASES}


# -- the rule data ---------------------------------------------------------------------------------
def option_table() -> dict[tuple[str, str], dict[str, str]]:
    """``lib/dnsfleet/rules/data/resolver_options.csv`` keyed by (resolver, option)."""
    text = resources.files("dnsfleet.rules").joinpath("data/resolver_options.csv").read_text(encoding="utf-8")
    return {(r["resolver"], r["option"]): r for r in csv.DictReader(text.splitlines())}


def glibc_version() -> tuple[int, int]:
    """The version of the glibc the lab's glibc client runs on (this interpreter's)."""
    v = os.confstr("CS_GNU_LIBC_VERSION") or ""
    name, _, num = v.partition(" ")
    if name != "glibc":
        raise RuntimeError(f"the lab's glibc client is not on glibc: {v!r}")
    major, minor = num.split(".")[:2]
    return int(major), int(minor)


def rule(resolver: str, option: str, table: dict | None = None) -> tuple[str, str]:
    """(honoured, mitigates_pair) for the lab's libc. The table's ``unknown`` for glibc ``no-aaaa`` is about
    images whose glibc version is not known (it needs glibc >= 2.36, R4); the lab knows its version."""
    row = (table or option_table())[(resolver, option)]
    honoured, mitigates = row["honoured"], row["mitigates_pair"]
    if (resolver, option) == ("glibc", "no-aaaa") and honoured == "unknown":
        honoured = mitigates = "yes" if glibc_version() >= (2, 36) else "no"
    return honoured, mitigates


# -- what a case must show ---------------------------------------------------------------------------
def names_tried(case: Case) -> list[str]:
    """The absolute names the resolver asks for, in order, until one exists (ndots + search list)."""
    ndots = int(case.merged_options().get("ndots") or 1)
    name = case.name.rstrip(".")
    searched = [f"{name}.{s}" for s in net.SEARCH]
    if case.name.endswith("."):
        order = [name]
    elif name.count(".") >= ndots:
        order = [name, *searched]
    else:
        order = [*searched, name]
    tried = []
    for n in order:
        tried.append(n + ".")
        if n in FOUND:
            break
    return tried


@dataclass(frozen=True)
class Expect:
    stalls_s: tuple[float, ...]  # per lookup, seconds the resolver waits for timeouts (0: none)
    error: bool  # the lookups fail
    drops: bool  # the emulator drops queries of this case
    unit_s: float  # the shortest stall this resolver.conf would show if a pair raced (timeout or resend)
    why: str


def expect(case: Case) -> Expect:
    opts = case.merged_options()
    table = option_table()
    path = PATHS[case.path]
    n = case.lookups
    timeout = int(opts.get("timeout") or DEFAULT_TIMEOUT)
    attempts = int(opts.get("attempts") or DEFAULT_ATTEMPTS)
    unit = float(timeout) if case.resolver == "glibc" or attempts <= 1 else timeout / attempts
    mitigating = [
        k for k in opts if (case.resolver, k) in table and rule(case.resolver, k, table) == ("yes", "yes")
    ]
    if not path.exposed:
        return Expect((0.0,) * n, False, False, unit, f"{path.label}: the emulator never sees these queries")
    if mitigating:
        return Expect((0.0,) * n, False, False, unit, f"{', '.join(mitigating)} keeps the pair from racing")
    pairs = len(names_tried(case))
    if case.resolver == "glibc":
        rest = (0.0,) * (n - 1) if case.same_process else (unit,) * (n - 1)
        why = f"R1: one timeout ({timeout} s) per lookup, then its thread asks sequentially"
        if case.same_process:
            why += "; later lookups of the same thread do not stall"
        return Expect((unit, *rest), False, True, unit, why)
    if attempts <= 1:
        why = "R5: resend interval timeout/attempts = timeout: no resend, the lookup fails"
        return Expect((unit,) * n, True, True, unit, why)
    why = f"R5: {pairs} query pair(s) × resend interval {timeout}/{attempts} s = {pairs * unit:g} s"
    return Expect((pairs * unit,) * n, False, True, unit, why)


def measure(lookups: list[dict[str, Any]], events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per lookup (sequential, each with wall-clock ``start`` and ``seconds``), from the emulator's events
    of its client: ``drops``; ``stall_s``, what the resolver waited on the wire: for every dropped query,
    the time until it sent its next query on that flow (its resend or retry), or until the lookup ended if
    it never did; and ``held_s``, the time the emulator held its queries. Events go to the lookup that
    started last before them."""
    starts = [lk["start"] for lk in lookups]
    mine: list[list[dict[str, Any]]] = [[] for _ in lookups]
    for e in events:
        i = max((j for j, st in enumerate(starts) if st <= e["t"] + 0.005), default=None)
        if i is not None:
            mine[i].append(e)
    out = []
    for lk, evs in zip(lookups, mine, strict=True):
        end = lk["start"] + lk["seconds"]
        queries = sorted((e for e in evs if not e["qr"]), key=lambda e: e["t"])
        stall = 0.0
        drops = [q for q in queries if q["ev"] == "drop"]
        for d in drops:
            key = (d["sport"], d["dst"])
            nxt = [q["t"] for q in queries if q["t"] > d["t"] and (q["sport"], q["dst"]) == key]
            stall += (min(nxt) if nxt else end) - d["t"]
        out.append(
            {
                "seconds": lk["seconds"],
                "error": lk.get("error"),
                "drops": len(drops),
                "stall_s": round(stall, 4),
                "held_s": round(sum(e["held_ms"] for e in evs) / 1000, 4),
            }
        )
    return out


def problems(case: Case, lookups: list[dict[str, Any]], events: list[dict[str, Any]]) -> list[str]:
    """How a case's measurements disagree with what the rules expect (empty: they agree).

    A busy machine only ever adds time, and adds it everywhere a lookup makes a round trip, so the checks
    use what load cannot move:

    - a stall of X s: the emulator dropped a query of the lookup; the resolver's wait on the wire (drop to
      resend, ``measure``; the emulator timestamps at real-time priority) is X within -0.1/+``SLACK_S``;
      and the lookup lasted at least X (a timer cannot fire early);
    - no stall: nothing dropped, and the lookup, less the emulator's holds, ended before the shortest stall
      it would have shown had a pair raced (``Expect.unit_s``); where no emulator is in the path this
      timing is the only evidence;
    - the lookups fail exactly when the rules say they fail."""
    e = expect(case)
    if len(lookups) != len(e.stalls_s):
        return [f"{len(lookups)} lookups ran, {len(e.stalls_s)} expected"]
    out = []
    for i, (m, want) in enumerate(zip(measure(lookups, events), e.stalls_s, strict=True), 1):
        if bool(m["error"]) != e.error:
            out.append(f"lookup {i}: error {m['error']!r}, expected {'an error' if e.error else 'none'}")
        if want == 0:
            if m["drops"] or m["seconds"] - m["held_s"] >= e.unit_s - 0.05:
                out.append(f"lookup {i}: expected no stall (< {e.unit_s:g} s), measured {m}")
        elif not (
            m["drops"] and want - 0.1 <= m["stall_s"] <= want + SLACK_S and m["seconds"] >= want - 0.05
        ):
            out.append(f"lookup {i}: expected a {want:g} s stall, measured {m}")
    return out


# -- the emulator's packet log -----------------------------------------------------------------------
def behaviour(events: list[dict[str, Any]]) -> dict[str, Any]:
    """What one client's resolver did on the wire (UDP, as the emulator saw it)."""
    queries = [e for e in events if not e["qr"]]
    replies = [e for e in events if e["qr"]]
    qnames: list[str] = []
    for q in queries:
        if q["qname"] not in qnames:
            qnames.append(q["qname"])
    parallel = split = 0
    for name in qnames:
        first = {}
        for q in queries:
            if q["qname"] == name and q["qtype"] not in first:
                first[q["qtype"]] = q
        if "A" not in first or "AAAA" not in first:
            continue
        a, aaaa = first["A"], first["AAAA"]
        if a["sport"] != aaaa["sport"]:
            split += 1
            continue
        later = max(a["t"], aaaa["t"])
        answered_before = any(
            r["qname"] == name and r["dport"] == a["sport"] and r["t"] < later for r in replies
        )
        parallel += not answered_before
    return {
        "udp_queries": len(queries),
        "qnames": qnames,
        "qtypes": sorted({q["qtype"] for q in queries}),
        "parallel_same_socket_pairs": parallel,
        "split_socket_pairs": split,
        "drops": sum(1 for e in events if e["ev"] == "drop"),
    }


def claims(case: Case) -> list[tuple[str, str]]:
    """(claim, rule) pairs the packet log must satisfy: how each honoured option shows on the wire, and
    that an ignored one changes nothing. Only for exposed paths (elsewhere the emulator sees nothing)."""
    if not PATHS[case.path].exposed:
        return []
    table = option_table()
    out: list[tuple[str, str]] = []
    opts = case.merged_options()
    ignored_here = [
        k for k in opts if (case.resolver, k) in table and rule(case.resolver, k, table)[0] == "no"
    ]
    for k in opts:
        if (case.resolver, k) not in table:
            continue
        honoured = rule(case.resolver, k, table)[0]
        src = f"{case.resolver},{k}: honoured={honoured}"
        if honoured != "yes":
            continue
        if k == "single-request":
            out.append(("sequential-same-socket", src))
        elif k == "single-request-reopen":
            out.append(("sequential-new-socket", src))
        elif k == "use-vc":
            out.append(("no-udp", src))
        elif k == "no-aaaa":
            out.append(("no-aaaa-query", src))
        elif k == "ndots":
            out.append(("search-order", src))
    if any(c == "no-udp" for c, _ in out):  # the emulator sees UDP only: nothing to read the order from
        out = [(c, w) for c, w in out if c != "search-order"]
    if ignored_here or not any(
        c in ("sequential-same-socket", "sequential-new-socket", "no-udp", "no-aaaa-query") for c, _ in out
    ):
        why = (
            ", ".join(f"{case.resolver},{k}: honoured=no" for k in ignored_here) or "no pair-changing option"
        )
        out.append(("parallel-pair", why))
    return out


def check_claim(claim: str, case: Case, b: dict[str, Any]) -> str | None:
    """None if the packet log ``b`` (``behaviour``) shows ``claim``, else what it shows instead."""
    if claim == "sequential-same-socket":
        ok = b["parallel_same_socket_pairs"] == 0 and b["split_socket_pairs"] == 0 and "AAAA" in b["qtypes"]
    elif claim == "sequential-new-socket":
        ok = b["parallel_same_socket_pairs"] == 0 and b["split_socket_pairs"] >= 1
    elif claim == "no-udp":
        ok = b["udp_queries"] == 0
    elif claim == "no-aaaa-query":
        ok = b["udp_queries"] > 0 and "AAAA" not in b["qtypes"]
    elif claim == "search-order":
        ok = b["qnames"] == names_tried(case)
        if not ok:
            return f"names asked {b['qnames']}, expected {names_tried(case)}"
    elif claim == "parallel-pair":
        ok = b["parallel_same_socket_pairs"] >= 1 and "AAAA" in b["qtypes"]
    else:
        raise ValueError(f"unknown claim {claim}")
    return None if ok else f"{claim} not shown: {b}"
