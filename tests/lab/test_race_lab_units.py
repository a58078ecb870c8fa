"""The lab's pieces that need no root: the emulator's decision and packet parsing, the expectations drawn
from the option table, the measurements drawn from the packet log, and the probe program's arithmetic."""

from __future__ import annotations

import ast
import socket
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from dnsfleet.probe import program, program_source
from tests.lab import cases as C
from tests.lab.emulator import Race, parse_dns

ROOT = Path(__file__).resolve().parents[2]


def _q(src: str, sport: int, qid: int, qtype: str = "A", qr: bool = False) -> dict:
    if qr:
        return {"src": "198.18.65.2", "sport": 53, "dst": src, "dport": sport, "id": qid, "qr": True}
    return {
        "src": src,
        "sport": sport,
        "dst": "198.19.0.10",
        "dport": 53,
        "id": qid,
        "qr": False,
        "qtype": qtype,
    }


# -- emulator -----------------------------------------------------------------------------------------
def test_second_query_of_a_flow_is_dropped_while_the_first_is_unanswered() -> None:
    race = Race()
    assert race.decide(_q("198.18.64.10", 4000, 1), 0.0) == ("pass", True)
    assert race.decide(_q("198.18.64.10", 4000, 2, "AAAA"), 0.001) == ("drop", False)
    assert race.decide(_q("198.18.64.10", 4001, 3), 0.001) == ("pass", True)  # another socket: no race
    assert race.decide(_q("198.18.64.10", 4000, 1, qr=True), 0.002) == ("reply", False)
    # after the answer the resend passes, and the flow is not new any more (not held)
    assert race.decide(_q("198.18.64.10", 4000, 2, "AAAA"), 1.0) == ("pass", False)


def test_sequential_queries_never_race_and_lost_answers_expire() -> None:
    race = Race(ttl=5.0)
    assert race.decide(_q("198.18.64.11", 5000, 1), 0.0)[0] == "pass"
    assert race.decide(_q("198.18.64.11", 5000, 1, qr=True), 0.01)[0] == "reply"
    assert race.decide(_q("198.18.64.11", 5000, 2, "AAAA"), 0.02)[0] == "pass"  # single-request
    assert race.decide(_q("198.18.64.11", 5000, 3), 0.03)[0] == "drop"  # 2 still unanswered
    assert race.decide(_q("198.18.64.11", 5000, 3), 6.0)[0] == "pass"  # 2 forgotten after the ttl


def _packet(qname: str, qtype: int, qr: bool, src: str, sport: int, dst: str, dport: int) -> bytes:
    name = b"".join(bytes([len(p)]) + p.encode() for p in qname.rstrip(".").split(".")) + b"\0"
    dns = (
        struct.pack("!HHHHHH", 0xBEEF, 0x8180 if qr else 0x0100, 1, 0, 0, 0)
        + name
        + struct.pack("!HH", qtype, 1)
    )
    udp = struct.pack("!HHHH", sport, dport, 8 + len(dns), 0) + dns
    ip = struct.pack(
        "!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0, 64, 17, 0, socket.inet_aton(src), socket.inet_aton(dst)
    )
    return ip + udp


def test_parse_dns_reads_the_five_tuple_and_question() -> None:
    p = parse_dns(
        _packet("kubernetes.default.svc.lab.test.", 28, False, "198.18.64.10", 4000, "198.19.0.10", 53)
    )
    assert p == {
        "src": "198.18.64.10",
        "sport": 4000,
        "dst": "198.19.0.10",
        "dport": 53,
        "id": 0xBEEF,
        "qr": False,
        "qname": "kubernetes.default.svc.lab.test.",
        "qtype": "AAAA",
    }
    assert parse_dns(_packet("x.", 1, True, "198.18.65.2", 53, "198.18.64.10", 4000))["qr"] is True
    assert parse_dns(b"\x60" + b"\0" * 60) is None  # IPv6
    tcp = bytearray(_packet("x.", 1, False, "1.2.3.4", 1, "5.6.7.8", 53))
    tcp[9] = 6
    assert parse_dns(bytes(tcp)) is None


# -- expectations from the rule data ------------------------------------------------------------------
def test_expectations_follow_the_option_table(monkeypatch: pytest.MonkeyPatch) -> None:
    musl_reopen = C.BY_ID["musl/race/single-request-reopen"]
    assert C.expect(musl_reopen).stalls_s == (1.0, 1.0)  # ignored by musl: resend interval 2/2 s
    assert C.expect(C.BY_ID["glibc/race/single-request-reopen"]).stalls_s == (0.0, 0.0)
    table = C.option_table()
    flipped = dict(table)
    flipped[("musl", "single-request-reopen")] = {
        **table[("musl", "single-request-reopen")],
        "honoured": "yes",
        "mitigates_pair": "yes",
    }
    monkeypatch.setattr(C, "option_table", lambda: flipped)
    assert C.expect(musl_reopen).stalls_s == (0.0, 0.0)  # the lab asserts the data, not a copy of it
    assert [c for c, _ in C.claims(musl_reopen)] == ["search-order", "sequential-new-socket"]


def test_stall_model() -> None:
    assert C.expect(C.BY_ID["glibc/race/default"]).stalls_s == (5.0, 5.0)  # R1: timeout
    assert C.expect(C.BY_ID["musl/race/default"]).stalls_s == (2.5, 2.5)  # R5: 5/2
    assert C.expect(C.BY_ID["musl/race/ndots:5-search"]).stalls_s == (4.0, 4.0)  # 4 pairs × 2/2
    assert C.expect(C.BY_ID["glibc/race/ndots:5-search"]).stalls_s == (2.0, 2.0)  # then sequential
    assert C.expect(C.BY_ID["glibc/race/same-thread"]).stalls_s == (2.0, 0.0, 0.0)
    e = C.expect(C.BY_ID["musl/race/attempts:1"])
    assert (e.stalls_s, e.error) == ((2.0, 2.0), True)
    assert C.expect(C.BY_ID["glibc/nodelocal/default"]).stalls_s == (0.0, 0.0)
    assert C.expect(C.BY_ID["glibc/race/no-aaaa"]).stalls_s == (0.0, 0.0)  # glibc >= 2.36 here


def test_names_tried_follow_ndots() -> None:
    assert C.names_tried(C.BY_ID["glibc/race/ndots:5-search"]) == [
        "api.example.test.default.svc.lab.test.",
        "api.example.test.svc.lab.test.",
        "api.example.test.lab.test.",
        "api.example.test.",
    ]
    assert C.names_tried(C.BY_ID["glibc/race/ndots:1"]) == ["api.example.test."]
    assert C.names_tried(C.BY_ID["musl/race/default"]) == ["kubernetes.default.svc.lab.test."]


def test_case_options_merge_over_kubelets_like_kubelet() -> None:
    assert C.BY_ID["glibc/race/ndots:1"].resolv_conf().splitlines()[-1] == "options ndots:1 timeout:2"
    assert (
        "options ndots:5 timeout:2 single-request-reopen"
        in C.BY_ID["musl/race/single-request-reopen"].resolv_conf()
    )


def _ev(
    t: float, ev: str, sport: int, qtype: str = "A", qr: bool = False, held: float = 0.0, name: str = "k."
) -> dict:
    return {
        "t": t,
        "ev": ev,
        "sport": sport,
        "dport": 53 if not qr else sport,
        "dst": "198.19.0.10",
        "qr": qr,
        "qtype": qtype,
        "qname": name,
        "held_ms": held,
    }


def test_measure_and_problems_from_a_packet_log() -> None:
    lookups = [
        {"start": 100.0, "seconds": 2.3, "error": None},
        {"start": 103.0, "seconds": 0.4, "error": None},
    ]
    events = [
        _ev(100.001, "pass", 4000),
        _ev(100.001, "drop", 4000, "AAAA"),
        _ev(100.003, "reply", 4000, qr=True),
        _ev(102.004, "pass", 4000),  # glibc's retry, 2.003 s after the drop
        _ev(102.006, "pass", 4000, "AAAA"),
        _ev(103.001, "pass", 4100, held=300.0),  # sequential on a new socket: held, no drop
        _ev(103.302, "reply", 4100, qr=True),
        _ev(103.303, "pass", 4100, "AAAA"),
    ]
    m = C.measure(lookups, events)
    assert [(x["drops"], x["stall_s"], x["held_s"]) for x in m] == [(1, 2.003, 0.0), (0, 0.0, 0.3)]
    case = C.BY_ID["glibc/race/same-thread"]
    good = [*lookups, {"start": 104.0, "seconds": 0.05, "error": None}]
    assert C.problems(case, good, events) == []
    slow = [*lookups, {"start": 104.0, "seconds": 2.1, "error": None}]  # a stall where none is expected
    assert C.problems(case, slow, events) and "lookup 3" in C.problems(case, slow, events)[0]
    early = [{**lookups[0], "seconds": 1.5}, *good[1:]]  # shorter than the timeout: not R1's stall
    assert "lookup 1" in C.problems(case, early, events)[0]
    late = [{**e, "t": e["t"] + 0.7} if 102 < e["t"] < 103 else e for e in events]  # a 2.7 s wait on the wire
    assert "lookup 1" in C.problems(case, [{**lookups[0], "seconds": 2.8}, *good[1:]], late)[0]


def test_behaviour_tells_parallel_from_sequential_pairs() -> None:
    parallel = [_ev(1.0, "pass", 4000), _ev(1.0001, "drop", 4000, "AAAA"), _ev(1.001, "reply", 4000, qr=True)]
    seq = [_ev(1.0, "pass", 4000), _ev(1.001, "reply", 4000, qr=True), _ev(1.002, "pass", 4000, "AAAA")]
    reopen = [_ev(1.0, "pass", 4000), _ev(1.001, "reply", 4000, qr=True), _ev(1.002, "pass", 4001, "AAAA")]
    b = C.behaviour(parallel)
    assert (b["parallel_same_socket_pairs"], b["drops"]) == (1, 1)
    case = C.BY_ID["glibc/race/single-request"]
    assert C.check_claim("parallel-pair", case, b) is None
    assert C.check_claim("sequential-same-socket", case, C.behaviour(seq)) is None
    assert C.check_claim("sequential-same-socket", case, C.behaviour(reopen)) is not None
    assert C.check_claim("sequential-new-socket", case, C.behaviour(reopen)) is None
    assert C.check_claim("no-udp", case, C.behaviour([])) is None
    assert C.check_claim("no-aaaa-query", case, C.behaviour(seq)) is not None


# -- the probe program --------------------------------------------------------------------------------
def test_percentile_and_summary() -> None:
    assert program.percentile([], 50) is None
    vals = sorted([0.01] * 90 + [1.2] * 5 + [2.6] * 3 + [5.1] * 2)
    assert (program.percentile(vals, 50), program.percentile(vals, 90), program.percentile(vals, 99)) == (
        0.01,
        0.01,
        5.1,
    )
    s = program.summarize(
        [{"seconds": v, "error": None} for v in vals] + [{"seconds": 0.2, "error": "EAI_AGAIN"}]
    )
    assert (s["lookups"], s["ge_1s"], s["ge_2_5s"], s["ge_5s"], s["errors"]) == (101, 10, 5, 2, 1)
    assert s["error_kinds"] == {"EAI_AGAIN": 1} and s["max_s"] == 5.1
    with pytest.raises(ValueError):
        program.percentile(vals, 101)


def test_run_is_concurrent_counts_errors_and_stops_at_the_deadline() -> None:
    live, peak, lock = [0], [0], threading.Lock()

    def fake(name: str, *args: object) -> list:
        with lock:
            live[0] += 1
            peak[0] = max(peak[0], live[0])
        try:
            if name == "missing":
                raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
            time.sleep({"slow": 1.1, "stuck": 30}.get(name, 0.05))
            return []
        finally:
            with lock:
                live[0] -= 1

    rep = program.run(["fast", "slow", "missing"], lookups=4, concurrency=6, deadline=20, resolve=fake)
    assert (rep["lookups"], rep["errors"], rep["ge_1s"], rep["ge_2_5s"]) == (12, 4, 4, 0)
    assert rep["names"]["slow"]["ge_1s"] == 4 and rep["names"]["missing"]["error_kinds"] == {"EAI_NONAME": 4}
    assert 2 <= peak[0] <= 6
    t0 = time.monotonic()
    rep = program.run(["stuck"], lookups=3, concurrency=2, deadline=0.5, resolve=fake)
    assert time.monotonic() - t0 < 5
    assert (rep["unfinished"], rep["not_started"], rep["lookups"]) == (2, 1, 2)
    with pytest.raises(ValueError):
        program.run([], 1, 1, 1)


def test_program_is_standard_library_only_and_shipped() -> None:
    src = program_source()
    assert src == (ROOT / "lib" / "dnsfleet" / "probe" / "program.py").read_text()
    mods = set()
    for node in ast.walk(ast.parse(src)):
        if isinstance(node, ast.Import):
            mods |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            mods.add((node.module or "").split(".")[0])
    assert mods <= set(sys.stdlib_module_names) | {"__future__"}, mods


def test_program_from_stdin_rejects_bad_arguments() -> None:
    r = subprocess.run(
        [sys.executable, "-", "--lookups", "0", "x"], input=program_source(), capture_output=True, text=True
    )
    assert r.returncode == 2 and "--lookups" in r.stderr and r.stdout == ""


def test_lab_skip_reason_without_root(monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.lab import net

    monkeypatch.setattr(net.os, "geteuid", lambda: 1000)
    assert "must run as root" in (net.available() or "")
