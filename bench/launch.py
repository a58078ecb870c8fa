"""Run one command; write its wall time and its own peak RSS as JSON (bench/run.py starts every
measured process through this).

Why a separate small process: on Linux a process's ``ru_maxrss`` keeps the high-water mark of the
image it replaced at ``exec``, and a child started with ``fork``/``vfork`` + ``exec`` replaces a copy
(or the very memory) of its parent. Started straight from the bench runner, which seeds fleets and
loads snapshots in-process, every command reported at least the runner's own peak (221-330 MB for a
raw fetch that needs ~90 MB). Started from this interpreter (a few MB), each reports its own.

    python -S bench/launch.py RESULT.json COMMAND [ARG...]

stdin/stdout/stderr are the command's; the exit status is the command's.
"""

from __future__ import annotations

import json
import os
import sys
import time


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        print("usage: launch.py RESULT.json COMMAND [ARG...]", file=sys.stderr)
        return 2
    result, cmd = argv[0], argv[1:]
    t0 = time.perf_counter()
    pid = os.posix_spawnp(cmd[0], cmd, os.environ)
    _, status, usage = os.wait4(pid, 0)
    wall = time.perf_counter() - t0
    with open(result, "w") as f:
        json.dump({"wall_s": wall, "maxrss_kb": usage.ru_maxrss}, f)
    return os.waitstatus_to_exitcode(status)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
