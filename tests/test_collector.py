"""Full garbage collections owned by the server (liveroom/collector.py): never automatic while it
runs, due every interval, put off while buys pour in but not past the maximum delay, and
CPython's own schedule back once it stops."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from liveroom.collector import FullCollections
from liveroom.metrics import Histogram


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Buys:
    """The activity counter: buys answered so far."""

    def __init__(self) -> None:
        self.count = 0

    def __call__(self) -> int:
        return self.count


@pytest.fixture
def restore_gc() -> Iterator[None]:
    threshold = gc.get_threshold()
    yield
    gc.set_threshold(*threshold)
    gc.unfreeze()


def _collector(clock: Clock, buys: Buys, **kw: float) -> FullCollections:
    return FullCollections(interval_s=kw.pop("interval_s", 60), activity=buys, clock=clock,
                           pauses=Histogram("pauses", "test", [0.1, 1]), **kw)


def _run(collector: FullCollections, clock: Clock, buys: Buys, seconds: int,
         buys_per_s: int = 0) -> list[float]:
    """Advance one second at a time; the times at which a full collection ran."""
    ran = []
    for _ in range(seconds):
        clock.now += 1
        buys.count += buys_per_s
        if collector.check():
            ran.append(clock.now)
    return ran


async def test_running_turns_off_automatic_full_collections_and_stopping_restores_them(
        restore_gc: None) -> None:
    before = gc.get_threshold()
    collector = _collector(Clock(), Buys())
    collector.start()
    try:
        young, middle, full = gc.get_threshold()
        assert (young, middle) == before[:2]
        assert full > 10**6  # generation 1 would have to be collected a million times
        assert gc.get_freeze_count() > 0  # what was alive at start is out of every collection
    finally:
        await collector.close()
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0


def test_a_full_collection_is_due_every_interval_when_the_server_is_quiet(
        restore_gc: None) -> None:
    clock, buys = Clock(), Buys()
    collector = _collector(clock, buys, interval_s=60)
    start = clock.now
    # A trickle of buys (a popular room) is not "busy".
    assert _run(collector, clock, buys, 200, buys_per_s=5) == [start + 60, start + 120,
                                                              start + 180]
    assert collector._pauses is not None
    assert collector._pauses.count == 3


def test_a_burst_of_buys_puts_it_off_until_quiet_but_never_past_the_maximum_delay(
        restore_gc: None) -> None:
    clock, buys = Clock(), Buys()
    collector = _collector(clock, buys, interval_s=60, quiet_s=5, max_delay_s=240)
    start = clock.now
    # A flash sale from second 50 to second 100: the collection due at 60 waits for 5 quiet
    # seconds after the sale.
    assert _run(collector, clock, buys, 49) == []
    assert _run(collector, clock, buys, 51, buys_per_s=2000) == []
    ran = _run(collector, clock, buys, 20)
    assert ran == [start + 105]
    # A sale that never ends: collected anyway once the maximum delay is reached.
    ran = _run(collector, clock, buys, 300, buys_per_s=2000)
    assert ran == [start + 105 + 240]


async def test_cyclic_garbage_made_while_automatic_full_collections_are_off_is_still_collected(
        restore_gc: None) -> None:
    clock, buys = Clock(), Buys()
    collector = _collector(clock, buys, interval_s=60)
    collector.start()

    class Node:
        other: object = None

    first, second = Node(), Node()
    first.other, second.other = second, first
    gone = weakref.ref(first)
    # Push the cycle into the oldest generation, where only a full collection finds it.
    gc.collect(1)
    gc.collect(1)
    del first, second
    gc.collect(1)
    assert gone() is not None
    _run(collector, clock, buys, 60)
    assert gone() is None
    assert collector.collections == 1
    await collector.close()


def test_a_non_positive_interval_is_refused() -> None:
    with pytest.raises(ValueError, match="interval_s"):
        FullCollections(interval_s=0, activity=lambda: 0)
