"""The lab's glibc client: the call tests/lab/lookup.c makes, through the interpreter's libc (Debian's
glibc). One or more timed ``getaddrinfo(name, None, AF_UNSPEC, SOCK_STREAM)`` calls in one thread of one
process, one JSON line each. Usage: ``python3 lookup.py NAME [COUNT]``."""

from __future__ import annotations

import json
import socket
import sys
import time


def main(argv: list[str]) -> int:
    if len(argv) not in (1, 2):
        print("usage: lookup.py NAME [COUNT]", file=sys.stderr)
        return 2
    for _ in range(int(argv[1]) if len(argv) == 2 else 1):
        start, t0 = time.time(), time.monotonic()
        error, v4, v6 = None, 0, 0
        try:
            infos = socket.getaddrinfo(argv[0], None, socket.AF_UNSPEC, socket.SOCK_STREAM)
            v4 = sum(1 for i in infos if i[0] == socket.AF_INET)
            v6 = sum(1 for i in infos if i[0] == socket.AF_INET6)
        except socket.gaierror as e:
            error = e.strerror
        print(
            json.dumps(
                {
                    "start": round(start, 6),
                    "seconds": round(time.monotonic() - t0, 6),
                    "error": error,
                    "v4": v4,
                    "v6": v6,
                }
            ),
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
