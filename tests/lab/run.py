"""Run the race lab: every case of ``tests/lab/cases.py`` (and the probe program) in parallel client
namespaces of one lab node, and collect what the resolvers measured and what the emulator saw.

``python -m tests.lab.run [--doc docs/race-lab.md] [--json FILE]`` runs it once and writes the results
table (``docs/race-lab.md`` is generated this way; tests/lab/test_race_lab_doc.py checks it lists exactly
the lab's cases). Needs root (network namespaces) and the CoreDNS binaries of tests/fleet/build.sh.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.lab import cases as C
from tests.lab import net
from tests.lab.agent import DOC_SECTION
from tests.lab.emulator import HOLD_S

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
LOOKUP_C = HERE / "lookup.c"
LOOKUP_PY = HERE / "lookup.py"
PROBE = ROOT / "lib" / "dnsfleet" / "probe" / "program.py"
WORKERS = 8  # clients running at once: enough for a short wall time, few enough for 2 busy cores


@dataclass(frozen=True)
class Probe:
    """One run of the probe program (``python3 -`` with the program on stdin) in a client of a path."""

    path: str
    names: tuple[str, ...] = ("kubernetes", "api.example.test")
    lookups: int = 4
    concurrency: int = 8

    @property
    def id(self) -> str:
        return f"probe/{self.path}"

    def resolv_conf(self) -> str:
        return C.Case("glibc", self.path, "probe").resolv_conf()  # kubelet's defaults: timeout 5 s


PROBES = [Probe("race"), Probe("clean")]


def cache_dir() -> Path:
    return Path(os.environ.get("DNSFLEET_CACHE", Path.home() / ".cache" / "dnsfleet")) / "lab"


def musl_lookup() -> Path:
    """tests/lab/lookup.c built statically with Debian's musl-gcc; cached per source hash."""
    digest = hashlib.sha256(LOOKUP_C.read_bytes()).hexdigest()[:12]
    out = cache_dir() / f"lookup-musl-{digest}"
    if out.is_file():
        return out
    cc = shutil.which("musl-gcc")
    if cc is None:
        raise net.LabError(
            "musl-gcc is missing (bash tests/fleet/install-system-deps.sh installs musl-tools)"
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(f".tmp{os.getpid()}")
    r = subprocess.run([cc, "-static", "-O2", "-o", str(tmp), str(LOOKUP_C)], capture_output=True, text=True)
    if r.returncode != 0:
        raise net.LabError(f"musl-gcc failed: {r.stderr.strip()[:500]}")
    tmp.replace(out)
    return out


def coredns_binary() -> Path:
    """The newest CoreDNS tests/fleet/build.sh caches (the lab's DNS servers and NodeLocal cache)."""
    from tests.fleet.coredns import binary, built_versions

    version = built_versions()[-1]
    path = binary(version)
    if not path.is_file():
        raise net.LabError(f"CoreDNS {version} is not built at {path}: run bash tests/fleet/build.sh coredns")
    return path


def versions(coredns: Path) -> dict[str, str]:
    musl = subprocess.run(["dpkg-query", "-W", "-f=${Version}", "musl-dev"], capture_output=True, text=True)
    core = subprocess.run([str(coredns), "-version"], capture_output=True, text=True).stdout.split()
    return {
        "kernel": platform.release(),
        "glibc": os.confstr("CS_GNU_LIBC_VERSION") or "?",
        "musl": f"musl {musl.stdout.strip() or '?'} (Debian musl-dev)",
        "coredns": next((w for w in core if w.startswith("CoreDNS-")), "?"),
    }


@dataclass
class Result:
    id: str
    client: str
    lookups: list[dict[str, Any]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    probe: dict[str, Any] | None = None
    problem: str | None = None  # a client that did not run (bad exit, bad output)


@dataclass
class LabRun:
    versions: dict[str, str]
    results: dict[str, Result]
    wall_s: float
    emulator_log_lines: int


def _lookups(lab: net.Lab, client: net.Client, case: C.Case, musl: Path) -> Result:
    prog = [str(musl)] if case.resolver == "musl" else [sys.executable, str(LOOKUP_PY)]
    res = Result(case.id, client.ip)
    runs = [(case.lookups, 1)] if case.same_process else [(1, case.lookups)]
    for per_process, processes in runs:
        for _ in range(processes):
            r = lab.exec(client.ns, [*prog, case.name, str(per_process)])
            lines = [json.loads(x) for x in r.stdout.splitlines() if x.startswith("{")]
            if r.returncode != 0 or len(lines) != per_process:
                res.problem = f"exit {r.returncode}, stdout {r.stdout[-300:]!r}, stderr {r.stderr[-300:]!r}"
                return res
            res.lookups += lines
    return res


def _probe(lab: net.Lab, client: net.Client, probe: Probe) -> Result:
    res = Result(probe.id, client.ip)
    argv = ["ip", "netns", "exec", client.ns, sys.executable, "-", "--lookups", str(probe.lookups)]
    argv += ["--concurrency", str(probe.concurrency), "--deadline", "60", *probe.names]
    r = subprocess.run(argv, input=PROBE.read_text(), capture_output=True, text=True, timeout=90)
    try:
        res.probe = json.loads(r.stdout)
    except json.JSONDecodeError:
        res.problem = f"exit {r.returncode}, stdout {r.stdout[-300:]!r}, stderr {r.stderr[-300:]!r}"
    return res


def run_lab(workdir: Path, cases: list[C.Case] | None = None, probes: list[Probe] | None = None) -> LabRun:
    """Build the lab, run every case and probe at once (each in its own client), tear the lab down."""
    cases = C.CASES if cases is None else cases
    probes = PROBES if probes is None else probes
    t0 = time.monotonic()
    musl, coredns = musl_lookup(), coredns_binary()
    lab = net.Lab(workdir, coredns)
    try:
        lab.build()
        jobs: list[tuple[Any, net.Client]] = []
        for i, case in enumerate(cases):
            jobs.append((case, lab.add_client(f"c{i}", case.resolv_conf(), C.PATHS[case.path].emulated)))
        for i, probe in enumerate(probes):
            jobs.append((probe, lab.add_client(f"p{i}", probe.resolv_conf(), C.PATHS[probe.path].emulated)))
        lab.verify_routes()

        def one(job: tuple[Any, net.Client]) -> Result:
            item, client = job
            return _probe(lab, client, item) if isinstance(item, Probe) else _lookups(lab, client, item, musl)

        with ThreadPoolExecutor(max_workers=WORKERS) as ex:
            results = {r.id: r for r in ex.map(one, jobs)}
        time.sleep(0.2)  # the emulator logs a packet after its verdict
        lines = lab.events_path.read_text().splitlines() if lab.events_path.exists() else []
        events = [json.loads(x) for x in lines]
        by_ip: dict[str, list[dict[str, Any]]] = {}
        for e in events:
            by_ip.setdefault(e["dst"] if e["qr"] else e["src"], []).append(e)
        for r in results.values():
            r.events = sorted(by_ip.get(r.client, []), key=lambda e: e["t"])
        dead = [p.args for p in lab.procs if p.poll() is not None]
        if dead:
            raise net.LabError(f"lab processes died during the run: {dead}")
        return LabRun(versions(coredns), results, time.monotonic() - t0, len(events))
    finally:
        lab.close()


# -- the results table -------------------------------------------------------------------------------
def _fmt(secs: list[float]) -> str:
    return " / ".join(f"{s:.2f}" for s in secs)


def table_rows(run: LabRun) -> list[list[str]]:
    rows = []
    for case in C.CASES:
        r = run.results[case.id]
        e = C.expect(case)
        m = C.measure(r.lookups, r.events)
        errors = sorted({x["error"] for x in r.lookups if x.get("error")})
        bad = [r.problem] if r.problem else C.problems(case, r.lookups, r.events)
        exposed = C.PATHS[case.path].exposed
        rows.append(
            [
                case.resolver,
                f"`{case.options_text()}`",
                C.PATHS[case.path].label,
                case.name,
                _fmt(list(e.stalls_s)) + (" (fails)" if e.error else ""),
                _fmt([x["stall_s"] for x in m]) if exposed else "–",
                _fmt([x["seconds"] for x in m]) + (f" ({', '.join(errors)})" if errors else ""),
                str(sum(x["drops"] for x in m)),
                "yes" if not bad else "**no**",
                f"`{case.id}`",
            ]
        )
    return rows


HEADER = [
    "resolver",
    "resolv.conf options",
    "path",
    "name",
    "rules expect: stall (s)",
    "measured: stall (s)",
    "lookup (s)",
    "drops",
    "match",
    "case",
]


def markdown(run: LabRun) -> str:
    v = run.versions
    lines = [
        "# Race lab: the advice tested against real resolvers",
        "",
        "Generated by `python -m tests.lab.run --doc docs/race-lab.md` (as root) from one lab run; "
        "`tests/lab/test_race_lab_doc.py` checks that the table lists exactly the lab's cases. "
        "How the lab works: `tests/lab/net.py` (topology), `tests/lab/emulator.py` (the race), "
        "`tests/lab/cases.py` (what the rules expect and why).",
        "",
        f"Run: kernel {v['kernel']}, {v['glibc']} (Python `getaddrinfo`), {v['musl']} "
        f"(`tests/lab/lookup.c`, static), {v['coredns']} as the two DNS servers and the NodeLocal cache; "
        f"{len(C.CASES)} cases and {len(PROBES)} probe runs, each in its own client namespace, {WORKERS} at a "
        f"time, {run.wall_s:.0f} s wall.",
        "",
        "Each lookup is one `getaddrinfo(name, AF_UNSPEC)`; the columns give seconds per lookup, lookups "
        "separated by `/` (each in a fresh process, except `same-thread`: one thread, one after another). "
        "Every client starts from kubelet's `ClusterFirst` resolv.conf (search "
        f"`{' '.join(net.SEARCH)}`, `ndots:5`); `kubernetes` is found at the first search step, "
        "`api.example.test` only as an absolute name (three NXDOMAIN search steps first under `ndots:5`). "
        "*stall*: what the resolver waited, from the emulator's packet log: for every dropped query, the "
        "time until the resolver sent again on that flow (its resend or retry), summed per lookup (– where "
        "no emulator is in the path). *lookup*: the whole call, which also includes the emulator's hold "
        f"(up to {int(HOLD_S * 1000)} ms for the first query of a new flow whose pair is not sent back to "
        "back, see `tests/lab/emulator.py`) and a busy machine's scheduling. *drops*: queries the emulator "
        "dropped (the second of two same-5-tuple queries in flight). *match*: measurements agree with what "
        "the rules expect (`tests/lab/cases.py: problems`).",
        "",
        "| " + " | ".join(HEADER) + " |",
        "|" + "|".join("---" for _ in HEADER) + "|",
    ]
    lines += ["| " + " | ".join(row) + " |" for row in table_rows(run)]
    lines += [
        "",
        "## What the table shows",
        "",
        "Every row matches what the rules expect (the `match` column; the doc test refuses a table made from "
        "a failing run), so these hold on the resolvers above:",
        "",
        "- glibc waits one `timeout` per lookup (5 s by default, `glibc/race/default`), also when three "
        "NXDOMAIN search steps come first (`glibc/race/ndots:5-search`): after the timeout its thread asks "
        "sequentially, and keeps doing so for the thread's next lookups (`glibc/race/same-thread`). "
        "`attempts:1` does not turn the stall into a failure (`glibc/race/attempts:1`).",
        "- musl waits `timeout/attempts` (2.5 s by default) per query pair, and every search step is a pair "
        "on a new socket, so `ndots:5` with three search steps waits four times (`musl/race/ndots:5-search`). "
        "With `attempts:1` the dropped query is never resent and the lookup fails (`musl/race/attempts:1`).",
        "- `single-request`, `single-request-reopen`, `use-vc` and (glibc ≥ 2.36) `no-aaaa` remove the stall "
        "for glibc; musl ignores all four and `rotate`: same parallel pair, same stall.",
        "- NodeLocal DNSCache behind node-cache's NOTRACK rules never meets the race; the same cache without "
        "them (node-cache's iptables setup failed) does (`*/nodelocal-tracked/*`).",
        "",
        "The emulator makes the loss certain; whether a node's kernel loses the query at all is the kernel "
        "rules' question (K1–K6), not the lab's.",
    ]
    lines += ["", "## Probe program", ""]
    lines += [
        "`lib/dnsfleet/probe/program.py` run as `python3 -` (glibc) in a client with kubelet's defaults "
        "(timeout 5 s), 4 lookups of each of `kubernetes` and `api.example.test`, 8 at once:",
        "",
        "| path | lookups | p50 s | max s | ≥ 1 s | ≥ 2.5 s | ≥ 5 s | errors |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for p in PROBES:
        rep = run.results[p.id].probe or {}
        cells = [
            rep.get(k, "?") for k in ("lookups", "p50_s", "max_s", "ge_1s", "ge_2_5s", "ge_5s", "errors")
        ]
        lines.append(f"| {C.PATHS[p.path].label} | " + " | ".join(str(c) for c in cells) + " |")
    lines.append("")
    lines += [DOC_SECTION.rstrip("\n"), ""]  # the probe's Kubernetes side (tests/lab/agent.py)
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Run the race lab once.")
    ap.add_argument("--doc", type=Path, help="write the results table here (docs/race-lab.md)")
    ap.add_argument("--json", type=Path, help="write every lookup and emulator event here")
    args = ap.parse_args(argv)
    if reason := net.available():
        print(f"race lab: {reason}", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="dnslab-") as d:
        run = run_lab(Path(d))
    if args.json:
        args.json.write_text(
            json.dumps(
                {"versions": run.versions, "results": {k: vars(r) for k, r in run.results.items()}}, indent=1
            )
        )
    text = markdown(run)
    if args.doc:
        args.doc.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
