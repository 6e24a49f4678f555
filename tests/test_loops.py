"""Background loops stop when their owner closes them, even if a library swallowed the
cancellation (redis-py does while it opens a connection)."""

from __future__ import annotations

import asyncio

from liveroom.loops import PeriodicLoop


class SwallowingTick(PeriodicLoop):
    name = "swallowing"

    def __init__(self) -> None:
        super().__init__(0.001)
        self.ticks = 0
        self.in_tick = asyncio.Event()

    async def tick(self) -> None:
        self.ticks += 1
        self.in_tick.set()
        try:
            await asyncio.Event().wait()  # a call that answers only if not cancelled
        except asyncio.CancelledError:
            raise RuntimeError("connection reset") from None  # a library's own error instead


async def test_a_loop_whose_tick_swallows_the_cancel_still_stops() -> None:
    loop = SwallowingTick()
    loop.start()
    await asyncio.wait_for(loop.in_tick.wait(), 30)
    closing = asyncio.ensure_future(loop.close())
    # A loop that went on ticking would never let close() return: the bound is for failing.
    done, _ = await asyncio.wait([closing], timeout=30)
    assert done, "the loop went on ticking after close()"
    assert loop.ticks == 1
