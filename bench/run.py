"""``python -m bench.run``: the dnsfleet benchmarks (``make bench``). See bench/README.md.

For each size (default 10k, 30k, 100k pods) the bench fleet is started (seeded once, then cached) and,
``--repeat`` rounds, interleaved in a rotating order: ``dnsfleet scan`` of the three contexts, kubectl
(the three contexts concurrently), the naive Python client and the raw fetch floor, each a fresh process
(wall time, peak RSS from ``wait4``). Then risk scoring on 1,000,000 synthetic workload rows and the
dashboard in headless Chromium on the largest size's snapshot. Writes ``bench/results/latest.md``.
"""

from __future__ import annotations

import argparse
import compileall
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import orjson

from bench.fleet import BenchFleet, bench_fleet, parse_size, size_label

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "latest.md"
VENV_BIN = Path(sys.executable).parent
METHODS = ("scan", "kubectl", "naive", "floor", "floor-json")

# Targets (issue "Benchmarks").
T_KUBECTL = 1.0  # scan time / kubectl time <=
T_NAIVE = 5.0  # naive time / scan time >=
T_FLOOR = 1.5  # scan time / floor time <=
T_RSS_MB = 500.0
T_SCORE_S = 2.0
T_COLD_S = 3.0
T_WARM_S = 0.5
SCORE_ROWS = 1_000_000


class BenchError(RuntimeError):
    """A measured command failed: the numbers would be meaningless (one line)."""


@dataclass
class Run:
    wall_s: float
    rss_mb: float
    out: bytes = b""


@dataclass
class SizeResult:
    pods: int
    runs: dict[str, list[Run]] = field(default_factory=dict)
    raw_bytes: int = 0  # what the scan fetches: protobuf
    raw_json_bytes: int = 0  # the same lists as JSON
    snapshot_bytes: int = 0
    nodes: int = 0
    workloads: int = 0
    seeded_now: bool = False
    start_s: float = 0.0
    kubectl_mode: str = "one context after another"
    from_merge: bool = False


def log(msg: str) -> None:
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DNSFLEET_", "KUBECONFIG"))}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH", "")]))
    return env


LAUNCH = ROOT / "bench" / "launch.py"


def run_procs(cmds: list[list[str]], outdir: Path) -> Run:
    """Start ``cmds`` together, each through ``bench/launch.py`` (so its peak RSS is its own, not this
    runner's); wall time until the last exits; RSS is the sum of their peaks."""
    procs = []
    outs = []
    for i, cmd in enumerate(cmds):
        out, err, res = outdir / f"out-{i}", outdir / f"err-{i}", outdir / f"launch-{i}.json"
        res.unlink(missing_ok=True)
        outs.append((out, err, res))
        with open(out, "wb") as o, open(err, "wb") as e:
            launched = [sys.executable, "-S", str(LAUNCH), str(res), *cmd]
            procs.append(subprocess.Popen(launched, stdout=o, stderr=e, env=_env(), cwd=ROOT))
    codes = [p.wait() for p in procs]
    for code, cmd, (_out, err, _res) in zip(codes, cmds, outs, strict=True):
        if code != 0:
            tail = err.read_bytes().decode(errors="replace").strip().splitlines()[-1:] or ["(no stderr)"]
            raise BenchError(f"{Path(cmd[0]).name} {' '.join(cmd[1:3])} exited {code}: {tail[0][:300]}")
    measured = [orjson.loads(res.read_bytes()) for _out, _err, res in outs]
    wall = max(m["wall_s"] for m in measured)  # they start together: until the last one ends
    rss_kb = sum(m["maxrss_kb"] for m in measured)
    return Run(wall, rss_kb / 1024, outs[0][0].read_bytes() if len(cmds) == 1 else b"")


def kubectl_path() -> Path:
    out = subprocess.run(
        ["bash", str(ROOT / "tests" / "fleet" / "build.sh"), "print-kubectl"], capture_output=True, text=True
    )
    return Path(out.stdout.strip())


def ensure_kubectl() -> Path:
    path = kubectl_path()
    if not os.access(path, os.X_OK):
        log("building kubectl v1.34.4 from the Go module (once)")
        r = subprocess.run(
            ["bash", str(ROOT / "tests" / "fleet" / "build.sh"), "kubectl"], capture_output=True, text=True
        )
        if r.returncode != 0:
            raise BenchError(f"kubectl build failed: {(r.stderr.strip().splitlines() or ['?'])[-1][:300]}")
    return path


def commands(method: str, kubeconfig: Path, contexts: list[str], kubectl: Path | None) -> list[list[str]]:
    if method == "scan":
        return [
            [
                str(VENV_BIN / "dnsfleet"),
                "scan",
                "--kubeconfig",
                str(kubeconfig),
                "--all-contexts",
                "--no-scrape",
                "--timeout",
                "120",
                "-o",
                "json",
            ]
        ]
    if method == "kubectl":
        assert kubectl is not None
        # One context after another, like a shell loop: three at once need ~18 GB at 100k pods (OOM).
        loop = (
            'k=$1; c=$2; shift 2; for x; do "$k" --kubeconfig "$c" --context "$x" '
            "get nodes,pods -A -o json --chunk-size=500 > /dev/null || exit $?; done"
        )
        return [["sh", "-c", loop, "sh", str(kubectl), str(kubeconfig), *contexts]]
    return [[sys.executable, "-m", "bench.probes", method, str(kubeconfig)]]


def _check_scan(out: bytes, pods: int) -> None:
    rows = orjson.loads(out)
    bad = [r["cluster"] for r in rows if r.get("status") != "ok"]
    got = sum(int(r.get("pods") or 0) for r in rows)
    if bad or got != pods:
        raise BenchError(f"dnsfleet scan read {got} pods (expected {pods}); not ok: {bad}")


STIR_POD = "dnsfleet-bench-stir"


def stir(bf: BenchFleet) -> None:
    """Create and delete one unscheduled pod per cluster, leaving the data as it was.

    A real cluster's pods change every few seconds; the bench fleet's never do. After a while an idle
    API server no longer holds a watch-cache snapshot at the latest resourceVersion and reads every
    page after the first from etcd (KEP-4988 serves pagination from those snapshots): on the 100k
    fleet the protobuf floor went from 3.4 s to 7.4-8.2 s and the API servers' CPU from 4 s to 11 s,
    until one pod write made them fast again. Called before each measured run, so every method reads
    a server in the state real clusters are in. (Here, not in bench/fleet.py: that file is part of
    the seed cache key.)"""
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": STIR_POD},
        "spec": {"containers": [{"name": "c", "image": "registry.invalid/stir"}]},
    }
    for rc in bf.fleet.clusters.values():
        rest = rc.rest()
        try:
            rest.request("POST", "/api/v1/namespaces/default/pods", pod)
            # unscheduled (no kubelet to wait for): deleted at once, not gracefully
            rest.request("DELETE", f"/api/v1/namespaces/default/pods/{STIR_POD}", ok=(200, 202))
        finally:
            rest.close()


def measure_size(
    pods: int, methods: list[str], repeat: int, workdir: Path, kubectl: Path | None, snapshot: Path | None
) -> SizeResult:
    res = SizeResult(pods)
    log(f"{size_label(pods)}: starting the bench fleet")
    with bench_fleet(pods, workdir / f"fleet-{size_label(pods)}") as bf:
        res.seeded_now, res.start_s = bf.seeded_now, bf.seed_s
        runs = workdir / "runs"
        runs.mkdir(parents=True, exist_ok=True)
        # Warm-up (not recorded): the first lists after an apiserver start fill its caches.
        run_procs(commands("floor", bf.kubeconfig, bf.contexts, kubectl), runs)
        for m in methods:
            res.runs[m] = []
        for r in range(repeat):
            order = methods[r % len(methods) :] + methods[: r % len(methods)]
            for m in order:
                stir(bf)
                run = run_procs(commands(m, bf.kubeconfig, bf.contexts, kubectl), runs)
                if m == "scan":
                    _check_scan(run.out, pods)
                if m == "floor":
                    res.raw_bytes = int(orjson.loads(run.out)["bytes"])
                if m == "floor-json":
                    res.raw_json_bytes = int(orjson.loads(run.out)["bytes"])
                if m == "naive" and int(orjson.loads(run.out)["pods"]) != pods:
                    raise BenchError(
                        f"naive client read {orjson.loads(run.out)['pods']} pods, expected {pods}"
                    )
                res.runs[m].append(run)
                log(
                    f"{size_label(pods)} round {r + 1}/{repeat}: {m:7s} {run.wall_s:7.2f} s  {run.rss_mb:7.0f} MB"
                )
        # One more scan, saved: the projected size (and the dashboard's input for the largest size).
        snap = snapshot or runs / f"snapshot-{size_label(pods)}.json.gz"
        cmd = commands("scan", bf.kubeconfig, bf.contexts, kubectl)[0] + ["--out", str(snap)]
        run_procs([cmd], runs)
        from dnsfleet.snapshot import load

        doc = load(snap)
        res.snapshot_bytes = len(orjson.dumps(doc))
        res.nodes = sum(len(c.get("nodes") or []) for c in doc["clusters"])
    return res


# ---------------------------------------------------------------------------------------------------
# Statistics and the report


def med(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def spread(xs: list[float]) -> str:
    if len(xs) < 2:
        return "n=1"
    m = med(xs)
    return f"{min(xs):.2f}-{max(xs):.2f} (±{50 * (max(xs) - min(xs)) / m:.0f}%)" if m else "-"


def verdict(ok: bool | None) -> str:
    return "n/a" if ok is None else ("**met**" if ok else "**not met**")


def _versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for pkg in ("kubernetes", "pandas", "pyarrow", "orjson", "urllib3", "streamlit", "playwright"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = "-"
    return out


def _machine() -> str:
    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1024**3
    return f"{os.cpu_count()} CPU ({cpu}), {mem:.0f} GiB RAM, {platform.system()} {platform.release()}"


def report(
    sizes: list[SizeResult],
    scoring: list[dict[str, float]] | None,
    dash: dict[str, list[float]] | None,
    args: argparse.Namespace,
    load: tuple[str, str],
    targets: bool,
) -> str:
    v = _versions()
    lines = [
        "# dnsfleet benchmarks",
        "",
        f"Run {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} with `python -m bench.run "
        f"--sizes {args.sizes} --repeat {args.repeat}{' --quick' if args.quick else ''}"
        f"{f' --skip {args.skip}' if args.skip else ''}{f' --naive-max {args.naive_max}' if args.naive_max else ''}`"
        + (
            f"; sizes {', '.join(size_label(r.pods) for r in sizes if r.from_merge)} merged from an earlier run (`--merge`)."
            if any(r.from_merge for r in sizes)
            else "."
        ),
        "",
        f"- Machine: {_machine()}; load average {load[0]} at the start, {load[1]} at the end "
        "(shared machine: other work ran at the same time).",
        "- Servers: kube-apiserver v1.34.4 + etcd v3.6.14 (built from Go modules), three clusters per "
        "size on 127.0.0.1; kubectl v1.34.4 from the same module.",
        "- Python " + v["python"] + "; " + ", ".join(f"{k} {x}" for k, x in v.items() if k != "python"),
        "- Each figure: median of the runs, then min-max and the half-range as ± of the median. "
        "Runs are interleaved (the order rotates each round); every run is a fresh process.",
        "",
        "## Scan vs kubectl, the naive client and the raw fetch floor",
        "",
        "| pods | nodes | bytes fetched | method | wall s (median) | spread | peak RSS MB | ratio | target |",
        "|---:|---:|---:|---|---:|---|---:|---|---|",
    ]
    largest = max(sizes, key=lambda s: s.pods) if sizes else None
    verdicts: list[tuple[str, str, str]] = []
    for s in sizes:
        scan = med([r.wall_s for r in s.runs.get("scan", [])])
        for m in METHODS:
            rs = s.runs.get(m)
            if not rs:
                continue
            wall = med([r.wall_s for r in rs])
            rss = med([r.rss_mb for r in rs])
            ratio, tgt = "", ""
            ok: bool | None = None
            if m == "naive":
                ratio = f"scan {wall / scan:.1f}x faster than naive"
                ok = wall / scan >= T_NAIVE
                tgt = f">= {T_NAIVE}x"
            elif m != "scan":
                ratio = f"scan/{m} = {scan / wall:.2f}x"
                limit = {"kubectl": T_KUBECTL, "floor": T_FLOOR}.get(m)  # floor-json: a reference
                ok = None if limit is None else scan / wall <= limit
                tgt = "(reference)" if limit is None else f"<= {limit}x"
            shown = verdict(ok) if targets and ok is not None else ""
            name = f"kubectl ({s.kubectl_mode})" if m == "kubectl" else m
            fetched = s.raw_bytes if m in ("scan", "floor") else s.raw_json_bytes
            enc = "protobuf" if m in ("scan", "floor") else "JSON"
            lines.append(
                f"| {s.pods:,} | {s.nodes:,} | {fetched / 1e6:,.0f} MB {enc} | {name} | {wall:.2f} | "
                f"{spread([r.wall_s for r in rs])} | {rss:,.0f} | {ratio} | {tgt} {shown} |"
            )
            last_with_m = max((x for x in sizes if x.runs.get(m)), key=lambda x: x.pods)
            if targets and s is last_with_m and ok is not None:
                verdicts.append((f"scan vs {m} at {s.pods:,} pods", ratio, verdict(ok)))
    lines += [
        "",
        "kubectl: `kubectl get nodes,pods -A -o json --chunk-size=500 > /dev/null` per context, one after "
        "another (RSS: the largest process) or the three at once (RSS: their sum; at 100k pods three at once "
        "were killed by the OOM killer on this 24 GiB machine). scan: `dnsfleet scan --all-contexts --no-scrape -o json` "
        "(collect + frames + the clusters' risk, what it prints; no Prometheus, no CoreDNS scrape: the bench "
        "pods do not run; the big lists in protobuf). naive: kubernetes client model objects, limit=500, same "
        "rows, then the whole engine (`analyze`: ~0.3 s more than the scan's scoring at 100k pods). floor: raw paginated GETs of the same lists (nodes, pods, ReplicaSet and Job metadata), no "
        "parsing, in protobuf like the scan: the target's reference. floor-json: the same in JSON, for "
        "reference (the encoding kubectl and the naive client read).",
        "",
        "## Memory of the scan",
        "",
        "| pods | peak RSS MB | raw bytes fetched MB (protobuf) | projected snapshot MB (JSON) | RSS per pod KB | raw per pod KB |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    pts = []
    for s in sizes:
        rs = s.runs.get("scan")
        if not rs:
            continue
        rss = med([r.rss_mb for r in rs])
        pts.append((s.pods, rss, s.raw_bytes))
        lines.append(
            f"| {s.pods:,} | {rss:,.0f} | {s.raw_bytes / 1e6:,.0f} | {s.snapshot_bytes / 1e6:,.1f} | "
            f"{rss * 1024 / s.pods:.2f} | {s.raw_bytes / 1024 / s.pods:.2f} |"
        )
    if len(pts) >= 2:
        (p0, r0, b0), (p1, r1, b1) = pts[0], pts[-1]
        slope_kb = (r1 - r0) * 1024 / (p1 - p0)
        raw_kb = (b1 - b0) / 1024 / (p1 - p0)
        grows_ok = slope_kb <= 0.5 * raw_kb
        lines += [
            "",
            f"Growth from {p0:,} to {p1:,} pods: {slope_kb:.2f} KB of peak RSS per extra pod, against "
            f"{raw_kb:.2f} KB of raw protobuf fetched per extra pod (target: at most half: keeping the raw "
            "objects, even parsed, would cost more than the raw bytes).",
        ]
        if targets:
            verdicts.append(
                (
                    "RSS grows with projected rows, not raw bytes",
                    f"{slope_kb:.2f} vs {raw_kb:.2f} KB/pod",
                    verdict(grows_ok),
                )
            )
    if targets and largest is not None and largest.runs.get("scan"):
        rss = med([r.rss_mb for r in largest.runs["scan"]])
        ok = rss <= T_RSS_MB if largest.pods >= 100_000 else None
        verdicts.append(
            (f"scan peak RSS at {largest.pods:,} pods <= {T_RSS_MB:.0f} MB", f"{rss:,.0f} MB", verdict(ok))
        )
    if scoring:
        sc = [x["score_s"] for x in scoring]
        asx = [x["assess_s"] for x in scoring if "assess_s" in x]
        rows = int(scoring[0]["rows"])
        lines += [
            "",
            f"## Risk scoring on {rows:,} synthetic workload rows",
            "",
            "| what | s (median) | spread | target |",
            "|---|---:|---|---|",
            f"| risk model (`risk.placements_scored` + aggregation per workload, node, cluster) | {med(sc):.2f} | {spread(sc)} | <= {T_SCORE_S} s {verdict(med(sc) <= T_SCORE_S) if targets else ''} |",
            f"| whole engine on frames (`engine.assess`: + reasons text, recommendations, schema) | {med(asx):.2f} | {spread(asx)} | (not a target) |",
        ]
        if targets:
            verdicts.append(
                (
                    f"risk scoring of {rows:,} rows <= {T_SCORE_S} s",
                    f"{med(sc):.2f} s",
                    verdict(med(sc) <= T_SCORE_S if rows >= SCORE_ROWS else None),
                )
            )
    if dash:
        pods = largest.pods if largest else 0
        lines += [
            "",
            f"## Dashboard, {pods:,}-pod snapshot, headless Chromium",
            "",
            "| what | s (median) | spread | target |",
            "|---|---:|---|---|",
        ]
        rows_d = (
            ("cold: overview, fresh server, navigation start to script finished", "cold_s", T_COLD_S),
            ("warm: overview rerun (cached data, page drawn again)", "warm_rerun_s", T_WARM_S),
            ("warm: Workloads page, level filter changed", "warm_filter_s", None),
        )
        for what, key, tgt in rows_d:
            xs = dash.get(key) or []
            if not xs:
                continue
            ok = med(xs) <= tgt if tgt is not None else None
            t = f"<= {tgt} s {verdict(ok) if targets else ''}" if tgt is not None else "(not a target)"
            lines.append(f"| {what} | {med(xs):.2f} | {spread(xs)} | {t} |")
            if targets and tgt is not None:
                verdicts.append(
                    (
                        f"dashboard {key.split('_')[0]} at {pods:,} pods <= {tgt} s",
                        f"{med(xs):.2f} s",
                        verdict(ok if pods >= 100_000 else None),
                    )
                )
    if targets:
        lines += ["", "## Targets", "", "| target | measured | verdict |", "|---|---|---|"]
        lines += [f"| {a} | {b} | {c} |" for a, b, c in verdicts]
        if any(v == "n/a" for _, _, v in verdicts):
            lines += [
                "",
                "n/a: the size the target is about (100k pods, 1M rows) was not measured in this run.",
            ]
    seeded = [s for s in sizes if s.seeded_now]
    if seeded:
        lines += [
            "",
            "Seeded in this run (not cached yet): "
            + ", ".join(f"{size_label(s.pods)} in {s.start_s:.0f} s" for s in seeded),
        ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m bench.run", description="dnsfleet benchmarks (bench/README.md)"
    )
    ap.add_argument("--sizes", default="10k,30k,100k", help="bench fleet sizes in pods (10k,30k,100k)")
    ap.add_argument("--repeat", type=int, default=3, help="runs of each measurement (3)")
    ap.add_argument(
        "--quick", action="store_true", help="one run each; the naive client only at the smallest size"
    )
    ap.add_argument(
        "--naive-max",
        default=None,
        help="run the naive client only up to this size (it takes minutes per run at 100k pods)",
    )
    ap.add_argument(
        "--skip", default="", help="comma-separated: kubectl,naive,floor,floor-json,scoring,dashboard"
    )
    ap.add_argument(
        "--score-rows", type=int, default=SCORE_ROWS, help="synthetic workload rows scored (1000000)"
    )
    ap.add_argument(
        "--out", type=Path, default=RESULTS, help="markdown result file (bench/results/latest.md)"
    )
    ap.add_argument("--workdir", type=Path, help="scratch directory (default: a temp dir, removed after)")
    ap.add_argument(
        "--merge",
        type=Path,
        help="include the sizes of an earlier run's raw figures (bench/results/latest.json) not measured now",
    )
    ap.add_argument("--no-targets", action="store_true", help="report figures only (smoke runs)")
    args = ap.parse_args(argv)
    try:
        sizes = sorted({parse_size(x) for x in args.sizes.split(",") if x.strip()})
    except ValueError as e:
        ap.error(str(e))
    if not sizes:
        ap.error("--sizes is empty")
    try:
        naive_max = parse_size(args.naive_max) if args.naive_max else None
    except ValueError as e:
        ap.error(str(e))
    if args.quick:
        args.repeat = 1
    if args.repeat < 1:
        ap.error("--repeat must be at least 1")
    skip = {x.strip() for x in args.skip.split(",") if x.strip()}
    unknown = skip - {"kubectl", "naive", "floor", "floor-json", "scoring", "dashboard"}
    if unknown:
        ap.error(f"unknown --skip item(s): {', '.join(sorted(unknown))}")
    load0 = " ".join(os.getloadavg().__repr__().strip("()").split(", ")[:1])
    tmp = None
    if args.workdir is None:
        tmp = tempfile.TemporaryDirectory(prefix="dnsfleet-bench-")
        workdir = Path(tmp.name)
    else:
        workdir = args.workdir.resolve()
    # Every measured process starts from byte-compiled modules, as an installed (non-editable) package
    # does; with PYTHONDONTWRITEBYTECODE set, a checkout would compile its sources in each process.
    for d in ("lib", "bench", "dashboard"):
        compileall.compile_dir(ROOT / d, quiet=1)
    try:
        kubectl = None if "kubectl" in skip else ensure_kubectl()
        results: list[SizeResult] = []
        snapshot = workdir / "largest.json.gz"
        for i, n in enumerate(sizes):
            methods = [m for m in METHODS if m not in skip]
            if "naive" in methods and ((args.quick and i > 0) or (naive_max is not None and n > naive_max)):
                methods.remove("naive")
            last = i == len(sizes) - 1
            results.append(
                measure_size(n, methods, args.repeat, workdir, kubectl, snapshot if last else None)
            )
            _save_raw(args.out.with_suffix(".json"), results)
        if args.merge:
            results = sorted(_load_raw(args.merge, {r.pods for r in results}) + results, key=lambda r: r.pods)
            _save_raw(args.out.with_suffix(".json"), results)
        scoring = None
        if "scoring" not in skip:
            scoring = []
            for r in range(args.repeat):
                # the whole engine once (minutes at 1M rows; not a target), the risk model every round
                x = _in_subprocess_scoring(args.score_rows, engine=r == 0)
                scoring.append(x)
                log(
                    f"scoring {args.score_rows:,} rows round {r + 1}: "
                    + ", ".join(f"{k} {v:.2f}" for k, v in x.items())
                )
        dash = None
        if "dashboard" not in skip:
            from bench.dashboard import measure

            log(f"dashboard on the {size_label(sizes[-1])}-pod snapshot")
            dash = measure(snapshot, workdir / "dashboard", args.repeat)
            log("dashboard: " + ", ".join(f"{k} {med(v):.2f} s" for k, v in dash.items()))
    except BenchError as e:
        print(f"bench: {e}", file=sys.stderr)
        return 1
    finally:
        if tmp is not None:
            tmp.cleanup()
    load1 = f"{os.getloadavg()[0]:.1f}"
    raw = args.out.with_suffix(".json")
    raw.write_bytes(
        orjson.dumps(
            {
                "sizes": _raw_sizes(results),
                "scoring": scoring,
                "dashboard": dash,
            },
            option=orjson.OPT_INDENT_2,
        )
    )
    text = report(results, scoring, dash, args, (f"{float(load0):.1f}", load1), targets=not args.no_targets)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(text)
    log(f"written to {args.out}")
    return 0


def _save_raw(path: Path, results: list[SizeResult]) -> None:
    """Every run's figures (git-ignored), written as each size finishes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(orjson.dumps(_raw_sizes(results), option=orjson.OPT_INDENT_2))


def _raw_sizes(results: list[SizeResult]) -> list[dict[str, Any]]:
    return [
        {
            "pods": r.pods,
            "nodes": r.nodes,
            "raw_bytes": r.raw_bytes,
            "raw_json_bytes": r.raw_json_bytes,
            "snapshot_bytes": r.snapshot_bytes,
            "kubectl_mode": r.kubectl_mode,
            "runs": {m: [{"wall_s": x.wall_s, "rss_mb": x.rss_mb} for x in rs] for m, rs in r.runs.items()},
        }
        for r in results
    ]


def _load_raw(path: Path, skip: set[int]) -> list[SizeResult]:
    out = []
    doc = orjson.loads(path.read_bytes())
    for d in doc["sizes"] if isinstance(doc, dict) else doc:
        if d["pods"] in skip:
            continue
        r = SizeResult(
            d["pods"], nodes=d["nodes"], raw_bytes=d["raw_bytes"], snapshot_bytes=d["snapshot_bytes"]
        )
        r.raw_json_bytes = d.get("raw_json_bytes", 0)
        r.kubectl_mode = d.get("kubectl_mode", "the three contexts at once")
        r.from_merge = True
        r.runs = {m: [Run(x["wall_s"], x["rss_mb"]) for x in rs] for m, rs in d["runs"].items()}
        out.append(r)
    return out


def _in_subprocess_scoring(rows: int, engine: bool) -> dict[str, float]:
    """Scoring in a fresh process (no memory or caches left over from the rest of the run)."""
    code = (
        "import orjson; from bench.scoring import time_scoring; "
        f"print(orjson.dumps(time_scoring({rows}, engine={engine})).decode())"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, env=_env(), cwd=ROOT)
    if r.returncode != 0:
        raise BenchError(f"scoring failed: {(r.stderr.decode().strip().splitlines() or ['?'])[-1][:300]}")
    return orjson.loads(r.stdout.splitlines()[-1])


if __name__ == "__main__":
    sys.exit(main())
