"""The DNS probe program: what a probe pod runs (issue 17 §2), standard library only.

It fires ``getaddrinfo(name, None, AF_UNSPEC, SOCK_STREAM)`` lookups through the local resolver (the libc
of the interpreter that runs it: glibc in a Debian image, musl in an Alpine one) and prints one JSON object
on stdout: lookups, p50/p90/p99/max seconds, how many took >= 1 s / >= 2.5 s / >= 5 s, errors by kind, the
same per name, and the resolv.conf the lookups went through. A stock Python image runs it unchanged::

    python3 - --lookups 20 --concurrency 10 kubernetes.default.svc.cluster.local. < program.py

Each lookup runs on a thread of its own (at most ``--concurrency`` at once). That matters for glibc: after a
lookup times out with one of its two answers received, glibc switches *that thread's* resolver state to
sequential queries, so a thread pool would hide every stall after the first one per thread; fresh threads
see what a fresh process sees. ``AF_UNSPEC`` without ``AI_ADDRCONFIG`` makes both libcs ask for A and AAAA
in parallel, the pair the conntrack race drops one of.

Lookups still running at ``--deadline`` are reported as ``unfinished``; their durations are lower bounds
(the time they had run) and count in the percentiles and thresholds like finished ones. Exit code 0 when
the probe ran (whatever it measured), 2 on bad arguments.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import socket
import sys
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

FORMAT = "dnsfleet-probe/1"
THRESHOLDS = ((1.0, "ge_1s"), (2.5, "ge_2_5s"), (5.0, "ge_5s"))
_EAI_NAMES = {getattr(socket, n): n for n in dir(socket) if n.startswith("EAI_")}


def percentile(sorted_values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile (``q`` in 0..100) of an ascending sequence; None when it is empty."""
    if not sorted_values:
        return None
    if not 0 <= q <= 100:
        raise ValueError(f"percentile {q} is outside 0..100")
    rank = max(1, math.ceil(q / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


def summarize(results: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Statistics of lookup results (``{"seconds": float, "error": str | None, "unfinished": bool}``)."""
    secs = sorted(float(r["seconds"]) for r in results)
    kinds: dict[str, int] = {}
    for r in results:
        if r.get("error"):
            kinds[r["error"]] = kinds.get(r["error"], 0) + 1
    out: dict[str, Any] = {
        "lookups": len(results),
        "errors": sum(1 for r in results if r.get("error")),
        "error_kinds": kinds,
        "unfinished": sum(1 for r in results if r.get("unfinished")),
    }
    for q in (50, 90, 99):
        p = percentile(secs, q)
        out[f"p{q}_s"] = None if p is None else round(p, 4)
    out["max_s"] = round(secs[-1], 4) if secs else None
    for limit, key in THRESHOLDS:
        out[key] = sum(1 for s in secs if s >= limit)
    return out


def error_kind(exc: BaseException) -> str:
    """A stable name for a failed lookup: the EAI_* constant of a gaierror, else the exception type."""
    if isinstance(exc, socket.gaierror) and exc.args and isinstance(exc.args[0], int):
        return _EAI_NAMES.get(exc.args[0], f"EAI_{exc.args[0]}")
    return type(exc).__name__


def lookup(name: str, resolve: Callable[..., Any] = socket.getaddrinfo) -> dict[str, Any]:
    """One timed ``getaddrinfo(AF_UNSPEC)`` of ``name``."""
    t0 = time.monotonic()
    error = None
    try:
        resolve(name, None, socket.AF_UNSPEC, socket.SOCK_STREAM)
    except Exception as e:  # every failure is a result, never a crash of the probe
        error = error_kind(e)
    return {"name": name, "seconds": time.monotonic() - t0, "error": error, "unfinished": False}


def run(
    names: Sequence[str],
    lookups: int,
    concurrency: int,
    deadline: float,
    resolve: Callable[..., Any] = socket.getaddrinfo,
) -> dict[str, Any]:
    """``lookups`` lookups of every name (interleaved), each on a fresh thread, ``concurrency`` at a time,
    for at most ``deadline`` seconds; the summary over all names and per name."""
    if not names:
        raise ValueError("no names to look up")
    if lookups < 1 or concurrency < 1 or deadline <= 0:
        raise ValueError("lookups and concurrency must be >= 1 and deadline > 0")
    jobs = [n for _ in range(lookups) for n in names]
    results: list[dict[str, Any] | None] = [None] * len(jobs)
    started: list[float | None] = [None] * len(jobs)
    slots = threading.Semaphore(concurrency)
    t0 = time.monotonic()
    end = t0 + deadline

    def work(i: int) -> None:
        try:
            started[i] = time.monotonic()
            results[i] = lookup(jobs[i], resolve)
        finally:
            slots.release()

    threads = []
    for i in range(len(jobs)):
        if not slots.acquire(timeout=max(0.0, end - time.monotonic())):
            break
        t = threading.Thread(target=work, args=(i,), daemon=True)
        threads.append(t)
        t.start()
    for t in threads:
        t.join(max(0.0, end - time.monotonic()))
    now = time.monotonic()
    done: list[dict[str, Any]] = []
    for i, r in enumerate(results):
        if r is not None:
            done.append(r)
        elif started[i] is not None:
            done.append({"name": jobs[i], "seconds": now - started[i], "error": None, "unfinished": True})
    report = summarize(done)
    report["not_started"] = len(jobs) - sum(1 for s in started if s is not None)
    report["names"] = {n: summarize([r for r in done if r["name"] == n]) for n in names}
    report["elapsed_s"] = round(now - t0, 3)
    return report


def libc() -> str:
    """The C library the interpreter resolves through, e.g. ``glibc 2.36`` or ``musl``."""
    try:
        v = os.confstr("CS_GNU_LIBC_VERSION")  # glibc only; musl has no such name (ValueError)
        if v:
            return v
    except (ValueError, OSError, AttributeError):
        pass
    try:
        if any(f.startswith("ld-musl-") for f in os.listdir("/lib")):
            return "musl"
    except OSError:
        pass
    name, version = platform.libc_ver()
    return f"{name} {version}".strip() or "unknown"


def read_resolv_conf(path: str = "/etc/resolv.conf") -> dict[str, Any] | None:
    """Nameservers, search list and options of a resolv.conf; None when it cannot be read."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    conf: dict[str, Any] = {"nameservers": [], "search": [], "options": []}
    for line in lines:
        words = line.split("#", 1)[0].split(";", 1)[0].split()
        if not words:
            continue
        key, rest = words[0], words[1:]
        if key == "nameserver" and rest:
            conf["nameservers"].append(rest[0])
        elif key in ("search", "domain"):
            conf["search"] = rest
        elif key == "options":
            conf["options"].extend(rest)
    return conf


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="dnsfleet-probe", description="Timed getaddrinfo(AF_UNSPEC) lookups; one JSON object on stdout."
    )
    p.add_argument("names", nargs="+", help="names to look up (a trailing dot skips the search list)")
    p.add_argument("--lookups", type=int, default=20, help="lookups per name (default 20)")
    p.add_argument("--concurrency", type=int, default=10, help="lookups in flight at once (default 10)")
    p.add_argument("--deadline", type=float, default=120.0, help="stop after this many seconds (default 120)")
    p.add_argument(
        "--termination-log",
        default=None,
        help="also write the JSON here (a pod's /dev/termination-log: read back when logs cannot be)",
    )
    return p


TERMINATION_LIMIT = 4096  # bytes the kubelet keeps of a termination message


def termination_text(report: dict[str, Any]) -> str:
    """The report as compact JSON that fits a termination message (per-name detail and resolv.conf are
    left out when the whole does not)."""
    text = json.dumps(report, sort_keys=True, separators=(",", ":"))
    if len(text.encode()) > TERMINATION_LIMIT:
        slim = {k: v for k, v in report.items() if k not in ("names", "resolv_conf")}
        text = json.dumps(slim, sort_keys=True, separators=(",", ":"))
    return text


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.lookups < 1 or args.concurrency < 1 or not args.deadline > 0:
        parser.error("--lookups and --concurrency must be >= 1 and --deadline > 0")
    report: dict[str, Any] = {"format": FORMAT, "libc": libc(), "resolv_conf": read_resolv_conf()}
    report.update(run(args.names, args.lookups, args.concurrency, args.deadline))
    json.dump(report, sys.stdout, sort_keys=True)
    sys.stdout.write("\n")
    sys.stdout.flush()
    if args.termination_log:
        try:
            with open(args.termination_log, "w", encoding="utf-8") as f:
                f.write(termination_text(report))
        except OSError as e:  # the log still has it
            sys.stderr.write(f"could not write {args.termination_log}: {e}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
