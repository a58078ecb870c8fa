"""dnsfleet.perf.gc_paused: the collector is paused and restored; ``freeze`` keeps a bulk build out of
later collections, which is only safe because snapshots and assessments hold no reference cycles."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Callable, Iterator

import pytest

from dnsfleet import engine, snapshot
from dnsfleet.demo import demo_snapshot
from dnsfleet.perf import gc_paused


@pytest.fixture
def collector() -> Iterator[None]:
    """Leave the collector as found: enabled, nothing frozen, no debug flags."""
    gc.collect()
    yield
    gc.set_debug(0)
    gc.garbage.clear()
    gc.unfreeze()
    gc.enable()


def test_pause_restores_the_previous_state(collector: None) -> None:
    with gc_paused():
        assert not gc.isenabled()
        with gc_paused():
            assert not gc.isenabled()
        assert not gc.isenabled()  # the inner use does not turn it back on
    assert gc.isenabled()
    gc.disable()
    with gc_paused():
        pass
    assert not gc.isenabled()  # was off before: stays off


def test_freeze_moves_the_build_out_of_later_collections(collector: None) -> None:
    gc.unfreeze()
    with gc_paused():
        kept = [{"pod": [i]} for i in range(1000)]
    assert gc.get_freeze_count() == 0
    with gc_paused(freeze=True):
        kept += [{"pod": [i]} for i in range(1000)]
    assert gc.get_freeze_count() >= 2000
    assert gc.isenabled()


def test_freeze_frees_young_garbage_cycles_first(collector: None) -> None:
    """A cycle that was already garbage is collected before the freeze, not kept forever with it."""

    class Node:
        pass

    gc.collect()  # counts reset: no automatic collection can run before the block below
    node = Node()
    node.self = node  # type: ignore[attr-defined]
    gone = weakref.ref(node)
    del node
    assert gone() is not None  # only the collector can free it
    with gc_paused(freeze=True):
        pass
    assert gone() is None


def test_freeze_only_when_the_outermost_use_ends(collector: None) -> None:
    gc.unfreeze()
    with gc_paused():
        with gc_paused(freeze=True):
            pass
        assert gc.get_freeze_count() == 0
    assert gc.get_freeze_count() == 0


def _cyclic_garbage_after_dropping(make: Callable[[], object]) -> list[object]:
    """Build with ``make``, drop the only reference, and return what only the collector could free."""
    gc.collect()
    gc.set_debug(gc.DEBUG_SAVEALL)  # keep what the collector would free, to look at it
    build = make()
    del build
    gc.collect()
    found = list(gc.garbage)
    gc.garbage.clear()
    gc.set_debug(0)
    return found


def test_snapshots_and_assessments_have_no_reference_cycles(collector: None) -> None:
    """Frozen objects are never collected as cycles: if a snapshot or an assessment ever grew one, the
    dashboard's frozen cache entries would stay in memory after eviction. Reference counting alone
    must free them."""
    data = snapshot.dumps(demo_snapshot(7))
    assert _cyclic_garbage_after_dropping(lambda: snapshot.loads(data)) == []
    snap = snapshot.loads(data)
    assert len(engine.analyze(snap).recommendations)  # the assessment below is a full one
    assert _cyclic_garbage_after_dropping(lambda: engine.analyze(snap)) == []


def test_the_cycle_check_finds_a_cycle(collector: None) -> None:
    """The check above can fail: a structure with a cycle is reported."""

    def make() -> dict[str, object]:
        node: dict[str, object] = {"name": "a"}
        node["self"] = node
        return node

    assert _cyclic_garbage_after_dropping(make)


def test_keep_freed_memory_on_glibc_and_without_mallopt(monkeypatch: pytest.MonkeyPatch) -> None:
    import ctypes

    from dnsfleet import perf

    assert perf.keep_freed_memory() is True  # this machine's glibc takes M_TOP_PAD

    def no_libc(_name: object) -> object:
        raise OSError("no C library")

    monkeypatch.setattr(ctypes, "CDLL", no_libc)
    assert perf.keep_freed_memory() is False  # elsewhere: nothing changed, no error
