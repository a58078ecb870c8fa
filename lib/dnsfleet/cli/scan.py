"""``dnsfleet scan``: read live clusters, score them, print a summary, optionally save the snapshot.

Exit codes: 0 ok, 1 when a cluster is at or above ``--fail-on``, 2 usage or configuration error, 3 with
``--fail-on`` when every cluster failed (nothing could be assessed).
Progress goes to stderr (a rich bar on a terminal, one line per cluster otherwise); the summary to
stdout, in the same layout as ``dnsfleet show`` (``cli.output.write_summary``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, TextIO

from dnsfleet.cli import collector
from dnsfleet.cli.output import (
    EXIT_USAGE,
    CliError,
    add_output_args,
    fail_on,
    snapshot_summary,
    summary_frame,
    write_summary,
)
from dnsfleet.collect import ConfigError, PromSource, scan
from dnsfleet.collect.prom import credentials
from dnsfleet.perf import gc_paused
from dnsfleet.scrub import scrub
from dnsfleet.snapshot import save
from dnsfleet.textsafe import one_line, unwrap


def add_scan_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``scan`` on an ``argparse`` subparsers object."""
    p = subparsers.add_parser(
        "scan",
        help="scan live clusters from a kubeconfig",
        description="Read clusters through the Kubernetes API (and Prometheus), rank their DNS race risk.",
    )
    p.add_argument(
        "--kubeconfig", metavar="F", help="kubeconfig file(s), ':'-separated (default $KUBECONFIG)"
    )
    sel = p.add_mutually_exclusive_group()
    sel.add_argument(
        "--context", metavar="C", action="append", dest="contexts", help="context to scan (repeat)"
    )
    sel.add_argument("--all-contexts", action="store_true", help="scan every context of the kubeconfig")
    p.add_argument(
        "--prometheus", metavar="URL", help="Prometheus-compatible API for CoreDNS/conntrack metrics"
    )
    p.add_argument(
        "--prometheus-token-file",
        metavar="F",
        help="file holding a bearer token for Prometheus (or DNSFLEET_PROMETHEUS_TOKEN_FILE)",
    )
    p.add_argument("--prometheus-user", metavar="U", help="basic auth user (or DNSFLEET_PROMETHEUS_USER)")
    p.add_argument(
        "--prometheus-password-file",
        metavar="F",
        help="file holding the basic auth password (or DNSFLEET_PROMETHEUS_PASSWORD_FILE)",
    )
    p.add_argument("--prometheus-ca-file", metavar="F", help="CA bundle for an https Prometheus")
    p.add_argument(
        "--cluster-label", metavar="L", default="cluster", help="label naming the cluster (cluster)"
    )
    p.add_argument("--prometheus-time", metavar="EPOCH", type=float, help="evaluation time (default now)")
    p.add_argument("--metrics-window", metavar="S", type=float, default=3600.0, help="rate window, s (3600)")
    p.add_argument("--no-scrape", action="store_true", help="without Prometheus, do not scrape CoreDNS pods")
    p.add_argument("--out", metavar="FILE", help="save the snapshot (gzip when it ends in .gz)")
    add_output_args(p)
    p.add_argument("--timeout", metavar="S", type=float, default=10.0, help="per-request timeout, s (10)")
    p.add_argument("--workers", metavar="N", type=int, default=8, help="clusters scanned at once (8)")
    collector.add_store_scan_args(p)
    p.set_defaults(func=run_scan)
    return p


class ProgressBar:
    """Scan progress on ``stream`` (stderr). On a terminal: one ``rich`` bar, redrawn in place, with the
    cluster being read, and one finished line per cluster above it (so 3 clusters on an 80-column
    terminal take 4 lines, not one per redraw). Otherwise plain lines, one per finished cluster:
    ``[2/3] eks-prod: ok (31 nodes, 954 pods)``. Cluster names and details go through
    ``dnsfleet.textsafe`` either way. ``close()`` ends the bar."""

    def __init__(self, stream: TextIO, total: int | None = None) -> None:
        self.stream = stream
        self.tty = stream.isatty()
        self.total = total
        self.started = 0
        self.done = 0
        self._bar: Any = None
        self._task: Any = None

    def _start(self) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        console = Console(file=unwrap(self.stream), highlight=False, markup=False, emoji=False)
        self._bar = Progress(
            TextColumn("scanning"),
            BarColumn(bar_width=None),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.fields[now]}", markup=False),
            console=console,
            transient=True,
        )
        self._task = self._bar.add_task("scan", total=self.total, now="")
        self._bar.start()

    def __call__(self, event: str, cluster: str, detail: str) -> None:
        if event == "cluster_started":
            self.started += 1
        elif event == "cluster_done":
            self.done += 1
        total = self.total or self.started
        if not self.tty:
            if event == "cluster_done":
                self.stream.write(f"[{self.done}/{total}] {one_line(cluster)}: {one_line(detail)}\n")
                self.stream.flush()
            return
        from rich.text import Text

        if self._bar is None:
            self._start()
        now = f"{one_line(cluster)}: {one_line(detail)}"
        self._bar.update(self._task, total=total, completed=self.done, now=now[:60])
        if event == "cluster_done":
            self._bar.console.print(Text(f"[{self.done}/{total}] {now}"))

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None


def _prom_source(args: argparse.Namespace) -> PromSource | None:
    if not args.prometheus:
        for flag in ("token_file", "user", "password_file"):
            if getattr(args, f"prometheus_{flag}"):
                raise ConfigError(f"--prometheus-{flag.replace('_', '-')} needs --prometheus")
        return None
    if args.prometheus_ca_file and not Path(args.prometheus_ca_file).is_file():
        raise ConfigError(f"--prometheus-ca-file not found: {args.prometheus_ca_file}")
    try:
        creds = credentials(args.prometheus_token_file, args.prometheus_user, args.prometheus_password_file)
        return PromSource(
            args.prometheus,
            **creds,
            ca_file=args.prometheus_ca_file,
            cluster_label=args.cluster_label,
            time=args.prometheus_time,
            window_s=args.metrics_window,
            timeout=args.timeout,
        )
    except ValueError as e:
        raise ConfigError(str(e)) from None


def run_scan(args: argparse.Namespace, stdout: TextIO | None = None, stderr: TextIO | None = None) -> int:
    """Run ``dnsfleet scan``; returns the exit code."""
    with gc_paused():  # every pod row lives until the end: nothing for the cyclic GC to find
        return _run_scan(args, stdout, stderr)


def _run_scan(args: argparse.Namespace, stdout: TextIO | None, stderr: TextIO | None) -> int:
    out = stdout or sys.stdout
    err = stderr or sys.stderr
    try:
        if args.timeout <= 0:
            raise ConfigError("--timeout must be positive")
        prom = _prom_source(args)
        if args.out and not Path(args.out).resolve().parent.is_dir():
            raise ConfigError(f"--out directory does not exist: {Path(args.out).parent}")
        collector.check_scan_args(args)
        collector_id = None
        bar = ProgressBar(err)
        try:
            if args.in_cluster:
                snap, collector_id = collector.scan_in_cluster(args, prom, bar)
            else:
                snap = scan(
                    kubeconfig=args.kubeconfig,
                    contexts=args.contexts,
                    all_contexts=args.all_contexts,
                    prometheus=prom,
                    progress=bar,
                    timeout=args.timeout,
                    workers=args.workers,
                    scrape=not args.no_scrape,
                )
        finally:
            bar.close()
    except (ConfigError, CliError) as e:
        err.write(f"dnsfleet scan: {scrub(str(e))}\n")
        return EXIT_USAGE
    if args.out:
        try:
            path = save(snap, args.out)
        except OSError as e:
            err.write(f"dnsfleet scan: cannot write {args.out}: {e.strerror}\n")
            return EXIT_USAGE
        err.write(f"snapshot written to {path}\n")
    # Imported after the collection (pandas, pyarrow: ~0.3 s): the collection needs neither, and
    # importing them in a thread during it gains nothing on a CPU-bound scan.
    from dnsfleet.engine import cluster_risk

    scored = None
    try:
        scored = cluster_risk(snap)
        df = summary_frame(scored)
    except Exception as e:  # scoring must not hide the scan result; say why in one line
        err.write(
            f"dnsfleet scan: scoring failed ({type(e).__name__}: {scrub(' '.join(str(e).split()))[:160]})\n"
        )
        df = snapshot_summary(snap)
    if args.store:
        try:
            collector.write_to_store(args.store, snap, scored, collector_id, err)
        except CliError as e:
            err.write(f"dnsfleet scan: {scrub(str(e))}\n")
            write_summary(df, args.output, out)
            return EXIT_USAGE
    write_summary(df, args.output, out)
    from dnsfleet.gaps import metrics_gap_lines

    for line in metrics_gap_lines(snap, scored):  # on stderr: -o json|csv stay as they are
        err.write(line + "\n")
    return fail_on(df, args.fail_on, err)
