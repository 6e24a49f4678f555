"""The batch window follows the arrival rate: a lone buyer is decided at once, a steady stream is
decided in full batches. (The decisions themselves are tested on real Redis in test_buy.py; here
the decider only records the batches, to observe their sizes and timing.)"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from statistics import median

import pytest

from inventory import BuyResult
from inventory._batcher import (
    BATCH_WINDOW_S,
    MAX_BATCH_WINDOW_S,
    TARGET_BATCH,
    BuyBatcher,
    BuyRequest,
)


class Recorder:
    def __init__(self) -> None:
        self.sizes: list[int] = []

    async def decide(self, sale_id: str, group: Sequence[BuyRequest]) -> list[BuyResult]:
        self.sizes.append(len(group))
        return [BuyResult(status="sold_out", reservation=None, remaining=0) for _ in group]


async def paced_buys(batcher: BuyBatcher, count: int, every_s: float,
                     moved: list[float] | None = None) -> list[float]:
    """Submits ``count`` buys on an open schedule; returns each one's wait for its answer. With
    ``moved`` (the batcher's clock), that clock says each buy came ``every_s`` after the last,
    however a busy machine bunched them up in real time."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    waits: list[float] = []

    async def one(n: int) -> None:
        sent = time.perf_counter()
        answered: asyncio.Future[BuyResult | Exception] = loop.create_future()
        if moved is not None:
            moved[0] += every_s
        assert batcher.submit("s_AAAAAAAAAA", f"u_{n}", 1, "r", answered.set_result)
        assert isinstance(await answered, BuyResult)
        waits.append(time.perf_counter() - sent)

    tasks = []
    for n in range(count):
        tasks.append(asyncio.ensure_future(one(n)))
        delay = start + (n + 1) * every_s - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
    await asyncio.gather(*tasks)
    return waits


async def test_a_lone_buyer_does_not_wait_for_company() -> None:
    recorder = Recorder()
    # The arrival rate on a clock the buys move: on a loaded machine, a late turn of the loop
    # sends several of the 20-a-second buys at once, which on the real clock is a crowd.
    now = [1000.0]
    batcher = BuyBatcher(recorder.decide, clock=lambda: now[0])
    batcher.start()
    try:
        waits = await paced_buys(batcher, 20, every_s=0.05, moved=now)
    finally:
        await batcher.close()
    assert len(waits) == 20
    # Twenty buys a second is no crowd: each batch waited the short window only (how long that
    # is on a clock is tested below, on a clock the test moves).
    assert batcher.window_s() == BATCH_WINDOW_S
    assert sum(recorder.sizes) == 20


async def test_a_steady_stream_is_decided_in_full_batches() -> None:
    recorder = Recorder()
    batcher = BuyBatcher(recorder.decide)
    batcher.start()
    try:
        waits = await paced_buys(batcher, 1500, every_s=0.0005)  # 2,000 buys a second
    finally:
        await batcher.close()
    assert len(waits) == 1500
    # The first batches find no rate yet; once it is known they hold ~32 buys. (A busy machine
    # only bunches the buys up more.)
    assert median(recorder.sizes[10:]) >= 10, recorder.sizes
    assert len(recorder.sizes) < 1500 / 8


def test_the_window_follows_the_arrival_rate_on_a_moved_clock() -> None:
    """What sizes the batches, on a clock that only moves when told: a steady stream of 2,000
    buys a second waits for ~32 buys (16 ms); a stream that pauses for longer than the longest
    window is no stream, and a lone buyer waits only the short window."""
    now = [1000.0]
    batcher = BuyBatcher(Recorder().decide, clock=lambda: now[0])
    assert batcher.window_s() == BATCH_WINDOW_S
    for _ in range(100):  # batches taken every 10 ms, 20 buys each
        now[0] += 0.010
        batcher._count_arrivals(20)
    assert batcher.window_s() == pytest.approx(TARGET_BATCH / 2000, rel=0.02)
    assert BATCH_WINDOW_S < batcher.window_s() <= MAX_BATCH_WINDOW_S
    now[0] += MAX_BATCH_WINDOW_S + 0.001  # the stream stopped
    assert batcher.window_s() == BATCH_WINDOW_S
    for _ in range(100):  # a trickle of 100 a second is no crowd
        now[0] += 0.010
        batcher._count_arrivals(1)
    assert batcher.window_s() == BATCH_WINDOW_S


async def test_a_window_asked_above_the_maximum_is_fixed() -> None:
    recorder = Recorder()
    batcher = BuyBatcher(recorder.decide, window_s=0.05)
    batcher.start()
    loop = asyncio.get_running_loop()
    started = loop.time()
    try:
        await paced_buys(batcher, 200, every_s=0.0005)
    finally:
        await batcher.close()
    took = loop.time() - started
    assert batcher.window_s() == 0.05
    # One batch per 50 ms window at most, however long the buys took to send.
    assert len(recorder.sizes) <= 2 + took / 0.05, (recorder.sizes, took)


async def test_a_lone_buyer_after_a_stream_does_not_wait_the_streams_window() -> None:
    recorder = Recorder()
    batcher = BuyBatcher(recorder.decide)
    batcher.start()
    try:
        await paced_buys(batcher, 1000, every_s=0.0005)
        # The stream's window is only kept while the stream goes on.
        await asyncio.sleep(MAX_BATCH_WINDOW_S * 4)
        assert batcher.window_s() == BATCH_WINDOW_S
        before = len(recorder.sizes)
        for _ in range(3):
            await paced_buys(batcher, 1, every_s=0.001)
    finally:
        await batcher.close()
    assert recorder.sizes[before:] == [1, 1, 1]


async def test_one_sales_crowd_does_not_hold_back_another_sales_buyer() -> None:
    """Two rooms' sales on one server: a buyer of the quiet sale, arriving behind 500 buyers of
    the busy one, is decided in the next batch, not after the whole crowd."""
    decided: list[tuple[str, int]] = []
    release = asyncio.Event()

    async def decide(sale_id: str, group: Sequence[BuyRequest]) -> list[BuyResult]:
        await release.wait()
        decided.append((sale_id, len(group)))
        return [BuyResult(status="sold_out", reservation=None, remaining=0) for _ in group]

    batcher = BuyBatcher(decide, max_batch=32, max_inflight=1)
    batcher.start()
    loop = asyncio.get_running_loop()
    answers: list[asyncio.Future[BuyResult | Exception]] = []
    try:
        for sale_id, count in (("s_BUSYBUSYBU", 500), ("s_QUIETQUIET", 1)):
            for n in range(count):
                answered: asyncio.Future[BuyResult | Exception] = loop.create_future()
                assert batcher.submit(sale_id, f"u_{n}", 1, f"r{n}", answered.set_result)
                answers.append(answered)
        release.set()
        await asyncio.gather(*answers)
    finally:
        await batcher.close()
    assert sum(size for _, size in decided) == 501
    assert max(size for _, size in decided) <= 32
    first_quiet = [sale for sale, _ in decided].index("s_QUIETQUIET")
    assert first_quiet <= 1, decided
