"""The coalesced ``stock`` pushes of liveroom/sales.py, and a sell-out's ``sale`` push riding in
the same fan-out (end to end through the real server in test_commerce_edge.py)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from inventory import SaleStatus, StockLevel
from liveroom.sales import StockBroadcaster


class Room:
    """What the broadcaster sent, fan-out by fan-out."""

    def __init__(self) -> None:
        self.fan_outs: list[list[tuple[str, Any]]] = []

    async def emit(self, event: str, data: Any, room: str) -> None:
        self.fan_outs.append([(event, data)])

    async def emit_together(self, events: Sequence[tuple[str, Any]], room: str) -> None:
        self.fan_outs.append(list(events))


def level(remaining: int, status: SaleStatus = "live") -> StockLevel:
    return StockLevel("s_AAAAAAAAAA", "r_AAAAAAAAAA", remaining, 10 - remaining, 0, status)


async def test_a_sell_out_pushes_stock_and_sale_in_one_fan_out_at_once() -> None:
    room = Room()
    asked: list[str] = []

    async def news(sale_id: str) -> dict[str, Any] | None:
        asked.append(sale_id)
        return {"id": sale_id, "status": "sold_out"}

    pusher = StockBroadcaster(room.emit, interval_s=30, emit_together=room.emit_together,
                              sold_out_news=news)
    pusher.start()
    try:
        pusher.record(level(4))
        pusher.record(level(0, "sold_out"))  # replaces the 4: one push per sale per flush
        for _ in range(100):
            if room.fan_outs:
                break
            await asyncio.sleep(0.01)
    finally:
        await pusher.close()
    # Well before the 30 s interval: a sell-out does not wait for it.
    assert room.fan_outs == [[
        ("stock", {"sale": "s_AAAAAAAAAA", "remaining": 0, "held": 10, "sold": 0,
                   "status": "sold_out"}),
        ("sale", {"id": "s_AAAAAAAAAA", "status": "sold_out"}),
    ]]
    assert asked == ["s_AAAAAAAAAA"]


async def test_stock_alone_when_not_sold_out_or_the_news_is_not_ours_or_unreadable() -> None:
    room = Room()
    answers: list[Any] = [None, RuntimeError("certificate store down")]

    async def news(sale_id: str) -> dict[str, Any] | None:
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer  # type: ignore[no-any-return]

    pusher = StockBroadcaster(room.emit, emit_together=room.emit_together, sold_out_news=news)
    pusher.record(level(3))
    await pusher.flush()
    pusher.record(level(0, "sold_out"))  # another process claimed the news
    await pusher.flush()
    pusher.record(level(0, "sold_out"))  # the news could not be built
    await pusher.flush()
    pusher.record(level(0, "ended"))  # an ended sale's push is the end's own business
    await pusher.flush()
    assert [[event for event, _ in fan_out] for fan_out in room.fan_outs] == [["stock"]] * 4
    assert answers == []


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def remaining_pushed(room: Room) -> list[int]:
    return [data["remaining"] for fan_out in room.fan_outs for event, data in fan_out
            if event == "stock"]


async def test_a_big_room_gets_counters_paced_but_a_sell_out_and_units_back_at_once() -> None:
    room, clock = Room(), Clock()
    pusher = StockBroadcaster(room.emit, interval_s=0.5, emit_together=room.emit_together,
                              room_size=lambda room_id: 10_000, clock=clock)
    pusher.record(level(9))
    await pusher.flush()
    assert remaining_pushed(room) == [9]
    for remaining, later_s in ((8, 0.5), (7, 1.0), (6, 1.5)):
        clock.now += 0.5
        pusher.record(level(remaining))
        await pusher.flush()
        assert remaining_pushed(room) == [9], later_s  # 10,000 members: every 2 s at most
    clock.now += 0.5
    await pusher.flush()
    assert remaining_pushed(room) == [9, 6]  # the latest counters, once due
    pusher.record(level(0, "sold_out"))
    await pusher.flush()
    pusher.record(level(1))  # a hold expired: buyers may press again
    await pusher.flush()
    assert remaining_pushed(room) == [9, 6, 0, 1]


async def test_a_small_room_gets_every_flush_and_close_pushes_what_waits() -> None:
    room, clock = Room(), Clock()
    sizes = {"r_AAAAAAAAAA": 50}
    pusher = StockBroadcaster(room.emit, interval_s=0.5, emit_together=room.emit_together,
                              room_size=sizes.__getitem__, clock=clock)
    for remaining in (9, 8, 7):
        pusher.record(level(remaining))
        await pusher.flush()
        clock.now += 0.5
    assert remaining_pushed(room) == [9, 8, 7]
    sizes["r_AAAAAAAAAA"] = 5_000
    pusher.record(level(6))
    await pusher.flush()
    pusher.record(level(5))
    await pusher.flush()  # not due in a room of 5,000
    assert remaining_pushed(room) == [9, 8, 7, 6]
    await pusher.close()  # nothing waiting is dropped at shutdown
    assert remaining_pushed(room) == [9, 8, 7, 6, 5]
