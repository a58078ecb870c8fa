"""The ``dnsfleet`` command line, for people and for cron/CI.

Commands: ``scan`` (live clusters, ``cli.scan``), ``show`` / ``report`` / ``demo`` (a snapshot or the demo
fleet, ``cli.show``), ``mitigate`` (``cli.mitigate``) and ``kernel`` (here). What they print about
clusters goes through ``cli.output``.

Exit codes: 0 success; 1 a cluster is at or above ``--fail-on``; 2 bad input or configuration (one line
on stderr, never a traceback); 3 ``--fail-on`` given but nothing could be assessed (every cluster failed).

Everything printed goes through ``dnsfleet.textsafe.SafeStream``: no terminal control characters from
cluster names, reasons or server messages reach the terminal.
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
from collections.abc import Sequence

from dnsfleet import __version__
from dnsfleet.cli import collector, metrics, mitigate, probe, scan, show, verify
from dnsfleet.cli.output import EXIT_OK, EXIT_USAGE, CliError
from dnsfleet.perf import keep_freed_memory
from dnsfleet.scrub import scrub
from dnsfleet.textsafe import SafeStream


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    # Everything a command prints passes through one filter: names, reasons and server messages come
    # from kubeconfigs, API servers and snapshot files, and must not drive the terminal.
    stdout, stderr = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = SafeStream(stdout), SafeStream(stderr)
    try:
        return int(args.func(args))
    except CliError as e:
        print(f"dnsfleet: error: {scrub(str(e))}", file=sys.stderr)
        return EXIT_USAGE
    except ValueError as e:  # SnapshotError, MappingError: already one line
        print(f"dnsfleet: error: {scrub(str(e))}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("dnsfleet: interrupted", file=sys.stderr)
        return 130
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        sys.stdout, sys.stderr = stdout, stderr


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

    show.add_parsers(sub)
    scan.add_scan_parser(sub)
    mitigate.add_mitigate_parser(sub)
    collector.add_deploy_parser(sub)
    collector.add_store_parser(sub)
    collector.add_history_parser(sub)
    metrics.add_parsers(sub)
    verify.add_evidence_parser(sub)
    probe.add_probe_parser(sub)
    return p


def cmd_kernel(args: argparse.Namespace) -> int:
    from dnsfleet.rules.kernel import classify

    print(json.dumps(classify(args.kernel_version, args.os_image).as_dict(), indent=2, ensure_ascii=False))
    return EXIT_OK
