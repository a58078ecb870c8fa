"""Process-level speed settings shared by the CLI and the dashboard."""

from __future__ import annotations

import ctypes
import gc
from collections.abc import Iterator
from contextlib import contextmanager

M_TOP_PAD = -2  # glibc <malloc.h>
TOP_PAD_BYTES = 64 << 20


def keep_freed_memory(pad_bytes: int = TOP_PAD_BYTES) -> bool:
    """Let glibc's malloc keep up to ``pad_bytes`` of freed memory on each heap (``M_TOP_PAD``).

    A scan receives and decodes hundreds of MB in page-sized buffers on several threads. By default
    glibc hands freed heap tops back to the kernel almost at once, and takes fresh zeroed pages from
    it for the next page: at 100,000 pods 230,000-280,000 page faults, ~1.4 s of system CPU. With a
    64 MB pad per heap: ~90,000 faults, ~0.95 s, peak RSS +30 MB (bench/README.md). Returns False,
    changing nothing, where the C library has no ``mallopt`` (musl ignores it, macOS lacks it)."""
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    return bool(mallopt(M_TOP_PAD, pad_bytes))


@contextmanager
def gc_paused(freeze: bool = False) -> Iterator[None]:
    """Pause the cyclic garbage collector for a bulk build (a scan, a snapshot load, scoring).

    These build a dozen small objects per pod that all stay alive until the end; the collector would
    traverse the growing heap again and again and free nothing (at 100,000 pods: 0.6 s of a scan's
    CPU, 0.2 s of scoring). Reference counting still frees everything as usual; the collector is back
    on afterwards. Nested uses are fine; the outermost restores the previous state.

    ``freeze``: the build is kept (a long-lived server's cached snapshot or assessment). Everything
    built is then moved to the collector's permanent generation (``gc.freeze``); otherwise the next
    collections would promote the million new objects from generation to generation, traversing all
    of them each time (0.2 s per pass at 100,000 pods, landing in whatever page runs next). Frozen
    objects are still freed by reference counting when their cache drops them: snapshots and
    assessments hold no reference cycles (tests/test_perf.py checks both), so nothing is kept longer
    than before. The freeze happens when the outermost use ends, if that use asked for it; the young
    generations are collected on entering, so the unreachable cycles other code left there are freed,
    not frozen with the build."""
    was_enabled = gc.isenabled()
    if freeze and was_enabled:
        gc.collect(1)
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            if freeze:
                gc.freeze()
            gc.enable()
