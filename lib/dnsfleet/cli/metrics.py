"""``dnsfleet exporter`` (risk as Prometheus metrics: a textfile, or HTTP ``/metrics``) and
``dnsfleet alerts`` (the rules file or PrometheusRule that alerts on them)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from dnsfleet.cli.output import EXIT_OK, CliError

DEFAULT_LISTEN = "127.0.0.1:9842"


def add_parsers(sub: Any) -> None:
    e = sub.add_parser(
        "exporter",
        help="risk as Prometheus metrics (per cluster and node, never per pod)",
        description="Serve /metrics over HTTP (default 127.0.0.1:9842), or with --textfile write the "
        "exposition once for node-exporter's textfile collector and exit.",
    )
    g = e.add_mutually_exclusive_group(required=True)
    g.add_argument("--store", metavar="URL", help="the newest scan of each cluster in a snapshot store")
    g.add_argument("--snapshot", metavar="FILE", help="a snapshot file")
    g.add_argument("--demo", action="store_true", help="the bundled demo fleet")
    e.add_argument("--textfile", metavar="PATH", help="write the metrics to this .prom file and exit")
    e.add_argument(
        "--listen", default=DEFAULT_LISTEN, metavar="HOST:PORT", help=f"HTTP address ({DEFAULT_LISTEN})"
    )
    e.add_argument(
        "--refresh", type=float, default=60.0, metavar="S", help="re-read the source after S seconds (60)"
    )
    e.set_defaults(func=cmd_exporter)

    a = sub.add_parser("alerts", help="print Prometheus alerting rules for the DNS race (YAML)")
    a.add_argument("--format", choices=("rules", "prometheusrule"), default="rules", help="rules file or CRD")
    a.add_argument("--namespace", default="monitoring", help="PrometheusRule namespace (monitoring)")
    a.add_argument("--node-label", default="node", help="node-exporter's label naming the node (node)")
    a.add_argument("--cluster-label", default="cluster", help="the label naming the cluster (cluster)")
    a.add_argument("--rate-window", default="15m", help="insert_failed increase window (15m)")
    a.add_argument("--high-for", default="24h", help="how long high risk lasts before it alerts (24h)")
    a.add_argument(
        "--stale-after", type=int, default=3 * 3600, metavar="S", help="scan age that alerts (10800)"
    )
    a.set_defaults(func=cmd_alerts)


def _source(args: argparse.Namespace) -> Any:
    """A function returning a fresh assessment of the chosen source."""

    def load() -> Any:
        from dnsfleet.engine import analyze

        if args.store:
            from dnsfleet.cli.collector import load_store_snapshot

            return analyze(load_store_snapshot(args.store, sys.stderr))
        if args.snapshot:
            from dnsfleet.snapshot import load

            return analyze(load(args.snapshot))
        from dnsfleet.demo import demo_snapshot

        return analyze(demo_snapshot())

    return load


def _listen(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise CliError(f"--listen {value!r}: expected HOST:PORT")
    return host.strip("[]") or "127.0.0.1", int(port)


def cmd_exporter(args: argparse.Namespace) -> int:
    from dnsfleet.exporter import Exporter, render, write_textfile

    if args.refresh <= 0:
        raise CliError("--refresh must be positive")
    load = _source(args)
    if args.textfile:
        try:
            path = write_textfile(args.textfile, render(load()))
        except OSError as e:
            raise CliError(f"cannot write {args.textfile}: {e.strerror}") from None
        print(path)
        return EXIT_OK
    host, port = _listen(args.listen)
    exp = Exporter(load, args.refresh)
    exp.text()  # fail before listening when the source is unusable
    if exp.errors:
        raise CliError(f"exporter source unusable: {exp.last_error}")
    try:
        server = exp.server(host, port)
    except OSError as e:
        raise CliError(f"cannot listen on {host}:{port}: {e.strerror}") from None
    sys.stderr.write(f"serving http://{host}:{server.server_address[1]}/metrics\n")
    sys.stderr.flush()
    try:
        server.serve_forever()
    finally:
        server.server_close()
    return EXIT_OK


def cmd_alerts(args: argparse.Namespace) -> int:
    import yaml

    from dnsfleet.alerts import AlertsError, prometheus_rule, rules

    try:
        spec = rules(
            node_label=args.node_label,
            cluster_label=args.cluster_label,
            rate_window=args.rate_window,
            high_for=args.high_for,
            stale_after_s=args.stale_after,
        )
    except AlertsError as e:
        raise CliError(str(e)) from None
    doc = prometheus_rule(spec, namespace=args.namespace) if args.format == "prometheusrule" else spec
    sys.stdout.write(yaml.safe_dump(doc, sort_keys=False, width=1000))
    return EXIT_OK
