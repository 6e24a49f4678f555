"""The coalesced ``stock`` pushes of liveroom/sales.py, and a sell-out's ``sale`` push riding in
the same fan-out (end to end through the real server in test_commerce_edge.py)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from inventory import Sale, SaleStatus, StockLevel
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
        for _ in range(1000):  # at least 10 s: a busy machine may be slow, the interval is 30 s
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
    assert remaining_pushed(room) == []  # a sale's first counters wait a pace too
    clock.now += 2.0
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


def sale(status: SaleStatus = "live", room_id: str = "r_AAAAAAAAAA") -> Sale:
    return Sale("s_AAAAAAAAAA", room_id, "p_AAAAAAAAAA", "u_anchor00001", "Ring", "jewelry",
                "Acme", 100, 1, 10, 10, 0, 0, status, 1_000, 61_000, 120_000, None)


class Views:
    """``SaleDesk.claimed_view`` as the broadcaster sees it: a view, or None when another
    process claimed the push."""

    def __init__(self) -> None:
        self.claimed = True

    async def __call__(self, sale: Sale) -> dict[str, Any] | None:
        if not self.claimed:
            return None
        return {"id": sale.id, "status": sale.status, "server_time": 5}


def pushed(room: Room) -> list[list[tuple[str, Any]]]:
    return [[(event, data.get("status")) for event, data in fan_out] for fan_out in room.fan_outs]


async def test_a_big_room_hears_the_opening_with_the_next_paced_stock_push() -> None:
    """At a popular opening the room's sockets are busy answering buys: the opening (which
    every client counts down to) rides with the sale's first paced ``stock`` push instead of
    being a fan-out of its own, stamped with the server time it is sent at."""
    room, clock = Room(), Clock()
    ms = iter(range(10_000, 20_000))
    pusher = StockBroadcaster(room.emit, interval_s=0.5, emit_together=room.emit_together,
                              claimed_view=Views(), room_size=lambda room_id: 10_000,
                              clock=clock, now_ms=lambda: next(ms))
    await pusher.announce(sale("live"))
    pusher.record(level(9))
    await pusher.flush()
    assert room.fan_outs == []
    clock.now += 1.9
    await pusher.flush()
    assert room.fan_outs == []
    clock.now += 0.1
    await pusher.flush()
    assert pushed(room) == [[("sale", "live"), ("stock", "live")]]
    [[(_, view), (_, counters)]] = room.fan_outs
    assert view["server_time"] == 10_000  # when sent, not when the sweeper saw the opening
    assert counters["remaining"] == 9


async def test_a_sell_out_supersedes_the_held_opening_push() -> None:
    room, clock = Room(), Clock()

    async def news(sale_id: str) -> dict[str, Any] | None:
        return {"id": sale_id, "status": "sold_out"}

    pusher = StockBroadcaster(room.emit, interval_s=0.5, emit_together=room.emit_together,
                              sold_out_news=news, claimed_view=Views(),
                              room_size=lambda room_id: 10_000, clock=clock)
    await pusher.announce(sale("live"))
    pusher.record(level(4))
    await pusher.flush()
    pusher.record(level(0, "sold_out"))
    await pusher.flush()
    await pusher.close()
    # One fan-out in the whole buy second; the stale "live" view is never sent.
    assert pushed(room) == [[("stock", "sold_out"), ("sale", "sold_out")]]


async def test_without_stock_changes_a_held_push_goes_out_when_due_or_at_close() -> None:
    room, clock = Room(), Clock()
    pusher = StockBroadcaster(room.emit, interval_s=0.5, emit_together=room.emit_together,
                              claimed_view=Views(), room_size=lambda room_id: 10_000,
                              clock=clock)
    await pusher.announce(sale("live"))
    await pusher.flush()
    assert room.fan_outs == []
    clock.now += 2.0
    await pusher.flush()
    assert pushed(room) == [[("sale", "live")]]
    clock.now += 0.5
    await pusher.announce(sale("live"))  # units back from expired holds, a pace later
    await pusher.close()
    assert pushed(room) == [[("sale", "live")], [("sale", "live")]]


async def test_small_rooms_ended_sales_and_claimed_pushes_are_not_held() -> None:
    room, clock = Room(), Clock()
    views = Views()
    sizes = {"r_AAAAAAAAAA": 10_000, "r_BBBBBBBBBB": 50}
    pusher = StockBroadcaster(room.emit, interval_s=0.5, emit_together=room.emit_together,
                              claimed_view=views, room_size=sizes.__getitem__, clock=clock)
    await pusher.announce(sale("live", "r_BBBBBBBBBB"))
    assert pushed(room) == [[("sale", "live")]]  # a small room hears it at once
    await pusher.announce(sale("live"))
    await pusher.announce(sale("ended"))  # the anchor's end is news in any room
    assert pushed(room) == [[("sale", "live")], [("sale", "ended")]]
    await pusher.flush(everything=True)
    assert len(room.fan_outs) == 2, "the held live view was superseded by the end"
    views.claimed = False  # another process pushes this change
    await pusher.announce(sale("ended"))
    assert len(room.fan_outs) == 2
