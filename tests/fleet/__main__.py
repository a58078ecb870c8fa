"""``python -m tests.fleet up [--dir D] [--clusters a,b] [--no-prometheus]``: start the test fleet and keep
it running until Ctrl-C or SIGTERM (browser tests, manual runs, ``DNSFLEET_FLEET_DIR`` attach).

Prints ``KEY=value`` lines then ``READY`` on stdout (flushed): KUBECONFIG, KUBECONFIG_VIEWER,
KUBECONFIG_NOBODY, PROMETHEUS_URL, METRICS_START, METRICS_END, CONTEXTS, FLEET_DIR. Tokens are never
printed; they live only in the 0600 kubeconfig files and ``D/fleet.json``.
"""

from __future__ import annotations

import argparse
import shutil
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path

from tests.fleet import spec as S
from tests.fleet.fleet import FleetError, ensure_binaries, start_fleet


def _specs(names: str | None) -> list[S.ClusterSpec]:
    if not names:
        return list(S.FLEET)
    known = {s.name: s for s in S.FLEET}
    out = []
    for n in (x.strip() for x in names.split(",") if x.strip()):
        if n in known:
            out.append(known[n])
        elif n == "scratch" or n.startswith("scratch-"):
            out.append(S.small_cluster(n))
        else:
            raise SystemExit(f"error: unknown cluster {n!r}; choose from {', '.join(known)}, scratch[-NAME]")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tests.fleet", description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    up = sub.add_parser("up", help="start the fleet and wait for Ctrl-C / SIGTERM")
    up.add_argument("--dir", type=Path, help="work directory (must be new or empty; default: a temp dir)")
    up.add_argument("--clusters", help="comma-separated cluster names (default: the whole fleet)")
    up.add_argument("--no-prometheus", action="store_true", help="do not start Prometheus")
    args = ap.parse_args(argv)

    specs = _specs(args.clusters)
    own_dir = args.dir is None
    if own_dir:
        workdir = Path(tempfile.mkdtemp(prefix="dnsfleet-fleet-"))
    else:
        workdir = args.dir
        if workdir.exists() and any(workdir.iterdir()):
            print(f"error: --dir {workdir} is not empty; use a new directory", file=sys.stderr)
            return 2

    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    t0 = time.monotonic()
    try:
        ensure_binaries()
        fleet = start_fleet(workdir, specs, prometheus=not args.no_prometheus)
    except FleetError as e:
        print(f"error: {e}", file=sys.stderr)
        if own_dir:
            print(f"logs kept in {workdir}", file=sys.stderr)
        return 1
    try:
        lines = {
            "KUBECONFIG": fleet.kubeconfig,
            "KUBECONFIG_VIEWER": fleet.kubeconfig_for("viewer"),
            "KUBECONFIG_NOBODY": fleet.kubeconfig_for("nobody"),
            "PROMETHEUS_URL": fleet.prometheus_url or "",
            "METRICS_START": int(fleet.metrics_start),
            "METRICS_END": int(fleet.metrics_end),
            "CONTEXTS": ",".join(fleet.contexts),
            "FLEET_DIR": fleet.workdir,
        }
        for k, v in lines.items():
            print(f"{k}={v}")
        print(f"# started in {time.monotonic() - t0:.1f}s; Ctrl-C or SIGTERM stops it", file=sys.stderr)
        print("READY", flush=True)
        while not stop.wait(1):
            pass
    finally:
        fleet.stop()
        if own_dir:  # a temp dir we made: etcd data and Prometheus blocks are ~200 MB
            shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
