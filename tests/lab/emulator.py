"""The race emulator: an NFQUEUE program that drops what the conntrack race drops.

The kernels that lose a DNS query to the conntrack/DNAT insertion race (mainline < 5.6 for race 3) drop the
second of two UDP packets of the same 5-tuple sent while the first has no conntrack entry confirmed by a
reply — glibc's A+AAAA pair sent with one ``sendmmsg`` on one socket, musl's pair sent with two ``sendto`` on
one socket. This machine's kernel has every fix, so the lab queues tracked DNS packets of the lab node to
this program, which keeps, per 5-tuple (client address and port, server address and port), the DNS ids of
queries not yet answered and

- drops a query whose 5-tuple already has an unanswered query (logged ``drop``),
- accepts any other query and remembers its id (``pass``),
- accepts every answer and forgets the id it answers (``reply``); an answer is matched by the client's
  address, port and DNS id, since after DNAT it comes from the real server, not from the ClusterIP.

The race window. In the kernel the second packet races only while the first one's conntrack entry is
unconfirmed: microseconds, which a resolver sending its pair back to back hits only sometimes; on a busy
machine the sender can even be preempted between the two packets long enough for the first to be answered.
So the emulator holds the first query of a new flow (a 5-tuple not seen for ``FLOW_TTL``, conntrack's UDP
timeout) until the second query of that flow arrives (which it drops, releasing the first at once) or
``HOLD_S`` passes. Every pair sent back to back (within ``HOLD_S``) then loses its second query; a query
sent only after the answer to the first (``single-request``) never does, and pays the hold once per new
flow. Each logged query carries ``held_ms``, the time it was held, so a lookup's stall can be told apart
from the emulator's own delay.

Unanswered ids are forgotten after ``PENDING_TTL`` seconds so a lost answer cannot block a socket forever.
Packets the kernel does not track (NodeLocal DNSCache's NOTRACK rules) never reach the queue (the lab's
iptables rule says ``! --ctstate UNTRACKED``), as they cannot race in conntrack.

Standard library only (AF_NETLINK/NETLINK_NETFILTER speaking the nfnetlink_queue protocol of
``include/uapi/linux/netfilter/nfnetlink_queue.h``), so it needs no binding and no build step. Run inside
the lab's node namespace::

    python3 emulator.py --queue 0 --log events.jsonl

It prints ``ready`` on stdout once bound, writes one JSON object per packet to the log, and stops on SIGTERM.
"""

from __future__ import annotations

import argparse
import errno
import ipaddress
import json
import select
import signal
import socket
import struct
import sys
import time
from typing import Any, BinaryIO

NETLINK_NETFILTER = 12
NFNL_SUBSYS_QUEUE = 3
NFQNL_MSG_PACKET, NFQNL_MSG_VERDICT, NFQNL_MSG_CONFIG = 0, 1, 2
NFQA_CFG_CMD, NFQA_CFG_PARAMS = 1, 2
NFQNL_CFG_CMD_BIND = 1
NFQNL_COPY_PACKET = 2
NFQA_PACKET_HDR, NFQA_VERDICT_HDR, NFQA_PAYLOAD = 1, 2, 10
NF_DROP, NF_ACCEPT = 0, 1
NLM_F_REQUEST, NLM_F_ACK = 1, 4
NLMSG_ERROR = 2
NLA_TYPE_MASK = 0x3FFF
PENDING_TTL = 30.0
HOLD_S = 0.3  # the longest the first query of a new flow waits for its pair
FLOW_TTL = 30.0  # a 5-tuple unseen this long is a new flow again (nf_conntrack_udp_timeout's default)
QTYPES = {1: "A", 28: "AAAA", 33: "SRV", 12: "PTR"}


def _attr(kind: int, data: bytes) -> bytes:
    length = 4 + len(data)
    return struct.pack("=HH", length, kind) + data + b"\0" * (-length % 4)


def _attrs(buf: bytes) -> dict[int, bytes]:
    out: dict[int, bytes] = {}
    i = 0
    while i + 4 <= len(buf):
        length, kind = struct.unpack_from("=HH", buf, i)
        if length < 4:
            break
        out[kind & NLA_TYPE_MASK] = buf[i + 4 : i + length]
        i += (length + 3) & ~3
    return out


def parse_dns(payload: bytes) -> dict[str, Any] | None:
    """The 5-tuple and DNS header fields of an IPv4 UDP packet, or None if it is not one."""
    if len(payload) < 20 or payload[0] >> 4 != 4 or payload[9] != socket.IPPROTO_UDP:
        return None
    ihl = (payload[0] & 0x0F) * 4
    if len(payload) < ihl + 8 + 12:
        return None
    src, dst = str(ipaddress.IPv4Address(payload[12:16])), str(ipaddress.IPv4Address(payload[16:20]))
    sport, dport = struct.unpack_from("!HH", payload, ihl)
    dns = payload[ihl + 8 :]
    qid, flags = struct.unpack_from("!HH", dns, 0)
    labels, i = [], 12
    while i < len(dns) and dns[i] and dns[i] < 64 and len(labels) < 64:
        labels.append(dns[i + 1 : i + 1 + dns[i]].decode("ascii", "replace"))
        i += 1 + dns[i]
    qtype = struct.unpack_from("!H", dns, i + 1)[0] if i + 3 <= len(dns) else 0
    return {
        "src": src,
        "sport": sport,
        "dst": dst,
        "dport": dport,
        "id": qid,
        "qr": bool(flags & 0x8000),
        "qname": ".".join(labels) + ".",
        "qtype": QTYPES.get(qtype, str(qtype)),
    }


class Race:
    """The drop decision, apart from the netlink plumbing (so it can be reasoned about on its own)."""

    def __init__(self, ttl: float = PENDING_TTL, flow_ttl: float = FLOW_TTL) -> None:
        self.ttl, self.flow_ttl = ttl, flow_ttl
        self.pending: dict[tuple[str, int, str, int], dict[int, float]] = {}
        self.last_seen: dict[tuple[str, int, str, int], float] = {}

    def decide(self, p: dict[str, Any], now: float) -> tuple[str, bool]:
        """(``pass`` | ``drop`` | ``reply``, whether this query opens a new flow)."""
        if p["qr"]:
            for key, ids in self.pending.items():
                if key[0] == p["dst"] and key[1] == p["dport"]:
                    ids.pop(p["id"], None)
            return "reply", False
        key = flow(p)
        ids = self.pending.setdefault(key, {})
        for qid in [q for q, t in ids.items() if now - t > self.ttl]:
            del ids[qid]
        new_flow = now - self.last_seen.get(key, -1e18) > self.flow_ttl
        self.last_seen[key] = now
        if ids:
            return "drop", False
        ids[p["id"]] = now
        return "pass", new_flow


def flow(p: dict[str, Any]) -> tuple[str, int, str, int]:
    return (p["src"], p["sport"], p["dst"], p["dport"])


class Queue:
    """One bound nfnetlink queue."""

    def __init__(self, num: int) -> None:
        self.num = num
        self.seq = 0
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        self.sock.bind((0, 0))
        self._config(_attr(NFQA_CFG_CMD, struct.pack("!BBH", NFQNL_CFG_CMD_BIND, 0, socket.AF_INET)))
        self._config(_attr(NFQA_CFG_PARAMS, struct.pack("!IB", 0xFFFF, NFQNL_COPY_PACKET)))

    def _send(self, msg_type: int, flags: int, body: bytes) -> None:
        self.seq += 1
        payload = struct.pack("!BBH", socket.AF_UNSPEC, 0, self.num) + body
        header = struct.pack(
            "=IHHII", 16 + len(payload), (NFNL_SUBSYS_QUEUE << 8) | msg_type, flags, self.seq, 0
        )
        self.sock.send(header + payload)

    def _config(self, body: bytes) -> None:
        self._send(NFQNL_MSG_CONFIG, NLM_F_REQUEST | NLM_F_ACK, body)
        data = self.sock.recv(65536)
        _length, kind = struct.unpack_from("=IH", data, 0)
        if kind == NLMSG_ERROR:
            code = struct.unpack_from("=i", data, 16)[0]
            if code != 0:
                raise OSError(
                    -code, f"nfnetlink_queue config of queue {self.num}: {errno.errorcode.get(-code)}"
                )

    def receive(self) -> list[tuple[int, bytes]]:
        """(packet id, payload) of every packet in one netlink read."""
        data = self.sock.recv(1 << 17)
        out = []
        i = 0
        while i + 16 <= len(data):
            length, kind = struct.unpack_from("=IH", data, i)
            if length < 16:
                break
            if kind == (NFNL_SUBSYS_QUEUE << 8) | NFQNL_MSG_PACKET:
                attrs = _attrs(data[i + 20 : i + length])
                if NFQA_PACKET_HDR in attrs:
                    pid = struct.unpack_from("!I", attrs[NFQA_PACKET_HDR], 0)[0]
                    out.append((pid, attrs.get(NFQA_PAYLOAD, b"")))
            i += (length + 3) & ~3
        return out

    def verdict(self, pid: int, accept: bool) -> None:
        hdr = struct.pack("!II", NF_ACCEPT if accept else NF_DROP, pid)
        self._send(NFQNL_MSG_VERDICT, NLM_F_REQUEST, _attr(NFQA_VERDICT_HDR, hdr))


def serve(queue: Queue, log: BinaryIO, hold: float = HOLD_S) -> None:
    race = Race()
    held: dict[
        tuple[str, int, str, int], tuple[float, int, dict[str, Any]]
    ] = {}  # flow -> (since, id, event)

    def write(p: dict[str, Any]) -> None:
        log.write(json.dumps(p, sort_keys=True).encode() + b"\n")

    def release(key: tuple[str, int, str, int], now: float) -> None:
        since, pid, p = held.pop(key)
        queue.verdict(pid, True)
        p["held_ms"] = round((now - since) * 1000, 1)
        write(p)

    while True:
        now = time.monotonic()
        for key in [k for k, (since, _, _) in held.items() if now - since >= hold]:
            release(key, now)
        wait = min((since + hold - now for since, _, _ in held.values()), default=None)
        if select.select([queue.sock], [], [], None if wait is None else max(0.0, wait))[0]:
            for pid, payload in queue.receive():
                p = parse_dns(payload)
                now = time.monotonic()
                if p is None:
                    queue.verdict(pid, True)
                    continue
                verdict, new_flow = race.decide(p, now)
                p.update(ev=verdict, held_ms=0.0, t=round(time.time(), 6))
                if new_flow:
                    held[flow(p)] = (now, pid, p)  # logged when released
                    continue
                queue.verdict(pid, verdict != "drop")
                write(p)
                if verdict == "drop" and flow(p) in held:
                    release(flow(p), now)
        log.flush()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--queue", type=int, default=0)
    ap.add_argument("--log", required=True)
    args = ap.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    queue = Queue(args.queue)
    print("ready", flush=True)
    with open(args.log, "ab") as log:
        serve(queue, log)
    return 0


if __name__ == "__main__":
    sys.exit(main())
