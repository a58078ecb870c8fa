"""The ``dnsfleet`` command line, for people and for cron/CI.

Exit codes: 0 success; 1 a cluster is at or above ``--fail-on``; 2 bad input or configuration (one line
on stderr, never a traceback).
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from dnsfleet import __version__
from dnsfleet.perf import keep_freed_memory

LEVEL_ORDER = {"low": 0, "medium": 1, "high": 2}
EXIT_OK, EXIT_FAIL_ON, EXIT_USAGE = 0, 1, 2


class CliError(Exception):
    """A user-facing error: printed as one line, exit code 2."""


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    try:
        return int(args.func(args))
    except CliError as e:
        print(f"dnsfleet: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except ValueError as e:  # SnapshotError, MappingError: already one line
        print(f"dnsfleet: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("dnsfleet: interrupted", file=sys.stderr)
        return 130


def entry() -> None:
    """The ``dnsfleet`` console script: ``main()``, then exit.

    Before exiting, everything still alive (mostly the imported modules: pandas, pyarrow, the
    kubernetes client) is moved out of the cyclic collector's reach (``gc.freeze``): the interpreter's
    last collection would otherwise traverse all of it just before the process ends, 0.2 s after a
    100,000-pod scan. Objects are still finalised as before; only that traversal is skipped. Freed
    memory is kept for reuse rather than returned to the kernel at once (``keep_freed_memory``)."""
    keep_freed_memory()
    code = main()
    gc.freeze()
    sys.exit(code)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="dnsfleet",
        description="Fleet-wide risk of the conntrack/DNAT DNS race (5-second DNS delays) on Kubernetes.",
    )
    p.add_argument("--version", action="version", version=f"dnsfleet {__version__}")
    sub = p.add_subparsers(title="commands", metavar="COMMAND")

    k = sub.add_parser("kernel", help="classify a node kernel per race (JSON)")
    k.add_argument("kernel_version", metavar="VERSION", help="status.nodeInfo.kernelVersion")
    k.add_argument(
        "--os-image", default=None, help="status.nodeInfo.osImage (needed for COS, Bottlerocket...)"
    )
    k.set_defaults(func=cmd_kernel)

    s = sub.add_parser("show", help="rank clusters from a snapshot or the demo fleet")
    _add_source(s)
    _add_output(s)
    s.set_defaults(func=cmd_show)

    r = sub.add_parser("report", help="write CSV reports (clusters, nodes, workloads, recommendations)")
    _add_source(r)
    r.add_argument("--out", required=True, metavar="DIR", help="directory for the CSV files")
    r.set_defaults(func=cmd_report)

    d = sub.add_parser("demo", help="write the bundled demo fleet as a snapshot file")
    d.add_argument("--out", required=True, metavar="FILE", help="snapshot path (.json or .json.gz)")
    d.set_defaults(func=cmd_demo)

    _add_optional_commands(sub)
    return p


def _add_optional_commands(sub: Any) -> None:
    """Commands whose modules live in their own packages (live scan, mitigations)."""
    try:
        from dnsfleet.collect.cli_scan import add_scan_parser
    except ImportError:
        pass
    else:
        add_scan_parser(sub)
    try:
        from dnsfleet.mitigate.cli_mitigate import add_mitigate_parser
    except ImportError:
        pass
    else:
        add_mitigate_parser(sub)


def _add_source(p: argparse.ArgumentParser) -> None:
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--snapshot", metavar="FILE", help="a snapshot written by 'dnsfleet scan --out'")
    g.add_argument("--demo", action="store_true", help="use the bundled demo fleet")
    p.add_argument("--resolver-map", metavar="FILE", help="CSV 'pattern,resolver' overriding image inference")


def add_output_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("-o", "--output", choices=("table", "json", "csv"), default="table", help="output format")
    p.add_argument(
        "--fail-on",
        choices=tuple(LEVEL_ORDER),
        default=None,
        help="exit 1 when any cluster's risk level is at or above this level (for CI)",
    )


_add_output = add_output_args


def load_assessment(args: argparse.Namespace) -> Any:
    from dnsfleet.engine import analyze
    from dnsfleet.rules.resolver import load_mapping
    from dnsfleet.snapshot import load

    if args.demo:
        from dnsfleet.demo import demo_snapshot

        snap = demo_snapshot()
    else:
        snap = load(args.snapshot)
    mapping = load_mapping(args.resolver_map) if getattr(args, "resolver_map", None) else ()
    return analyze(snap, mapping)


def cmd_kernel(args: argparse.Namespace) -> int:
    from dnsfleet.rules.kernel import classify

    print(json.dumps(classify(args.kernel_version, args.os_image).as_dict(), indent=2, ensure_ascii=False))
    return EXIT_OK


def cmd_show(args: argparse.Namespace) -> int:
    a = load_assessment(args)
    emit_clusters(a, args.output)
    return fail_on_code(a, args.fail_on)


def cmd_report(args: argparse.Namespace) -> int:
    from dnsfleet.report import write_reports

    a = load_assessment(args)
    try:
        paths = write_reports(a, args.out)
    except OSError as e:
        raise CliError(f"cannot write reports to {args.out}: {e.strerror}") from None
    for p in paths:
        print(p)
    return EXIT_OK


def cmd_demo(args: argparse.Namespace) -> int:
    from dnsfleet.demo import demo_snapshot
    from dnsfleet.snapshot import save

    try:
        print(save(demo_snapshot(), args.out))
    except OSError as e:
        raise CliError(f"cannot write {args.out}: {e.strerror}") from None
    return EXIT_OK


def fail_on_code(a: Any, fail_on: str | None) -> int:
    if not fail_on:
        return EXIT_OK
    threshold = LEVEL_ORDER[fail_on]
    hit = [lvl for lvl in a.clusters["level"].dropna() if LEVEL_ORDER.get(lvl, -1) >= threshold]
    return EXIT_FAIL_ON if hit else EXIT_OK


def emit_clusters(a: Any, output: str, stream: Any = None) -> None:
    """Print the cluster ranking as a table, JSON or CSV."""
    out = stream or sys.stdout
    cols = ["cluster", "status", "score", "level", "nodes", "pods", "exposed_pods", "unknown_pods", "why"]
    df = a.clusters[cols]
    if output == "json":
        out.write(df.to_json(orient="records", force_ascii=False, indent=2) + "\n")
    elif output == "csv":
        from dnsfleet.report import report_frames, to_csv_bytes

        out.write(to_csv_bytes(report_frames(a)["clusters.csv"]).decode("utf-8-sig"))
    else:
        out.write(format_table(df) + "\n")


def format_table(df: Any, why_width: int = 90) -> str:
    rows = [["#", "CLUSTER", "STATUS", "SCORE", "LEVEL", "NODES", "PODS", "EXPOSED", "UNKNOWN", "WHY"]]
    for i, r in enumerate(df.itertuples(index=False), start=1):

        def fmt(v: Any) -> str:
            return "-" if v is None or (isinstance(v, float) and v != v) or str(v) == "<NA>" else str(v)

        why = fmt(r.why)
        rows.append(
            [
                str(i),
                fmt(r.cluster),
                fmt(r.status),
                fmt(r.score),
                fmt(r.level).upper(),
                fmt(r.nodes),
                fmt(r.pods),
                fmt(r.exposed_pods),
                fmt(r.unknown_pods),
                why if len(why) <= why_width else why[: why_width - 1] + "…",
            ]
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(row[:-1], widths, strict=True)) + "  " + row[-1] for row in rows
    )


def write_snapshot(snapshot: dict[str, Any], path: str | Path) -> Path:
    from dnsfleet.snapshot import save

    try:
        return save(snapshot, path)
    except OSError as e:
        raise CliError(f"cannot write snapshot {path}: {e.strerror}") from None


if __name__ == "__main__":
    entry()
