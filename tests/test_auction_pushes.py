"""The ``auction`` push: coalesced per auction, never going back in time, and woken at once by
an extension or an end."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import Any

from inventory import AuctionState
from liveroom.auctions import AuctionBroadcaster
from tests.clock import Clock

STATE = AuctionState(
    id="a_0123456789", room_id="r_room000001", status="live", closed=False, price_cents=10_000,
    min_next_cents=10_250, ends_at=60_000, leader_id="u_a", leader_name="Ann", bids=1,
    winner_reservation=None, second_reservation=None, second_chance="")


class Pushes:
    def __init__(self) -> None:
        self.sent: list[tuple[str, dict[str, Any], str]] = []
        self.arrived = asyncio.Event()

    async def emit(self, event: str, data: dict[str, Any], room: str) -> None:
        self.sent.append((event, data, room))
        self.arrived.set()


async def test_many_batches_make_one_push_of_the_latest_state() -> None:
    pushes = Pushes()
    broadcaster = AuctionBroadcaster(pushes.emit, Clock())
    broadcaster.record(STATE)
    broadcaster.record(replace(STATE, bids=3, price_cents=10_500, leader_name="Cy"))
    # A batch that finished late, with an older state, does not undo the newer one.
    broadcaster.record(replace(STATE, bids=2, price_cents=10_250, leader_name="Bo"))
    other = replace(STATE, id="a_9876543210", room_id="r_room000002")
    broadcaster.record(other)
    await broadcaster.flush()
    assert [(e, d["id"], d["bids"], d["leader_name"], room) for e, d, room in pushes.sent] == [
        ("auction", STATE.id, 3, "Cy", STATE.room_id),
        ("auction", other.id, 1, "Ann", other.room_id)]
    assert not {"leader", "leader_id"} & set(pushes.sent[0][1])
    await broadcaster.flush()
    assert len(pushes.sent) == 2  # nothing new, nothing sent


async def test_an_extension_is_pushed_without_waiting_for_the_interval() -> None:
    pushes = Pushes()
    # An interval far longer than the test: only the wake-up can send the push.
    broadcaster = AuctionBroadcaster(pushes.emit, Clock(), interval_s=3600, min_gap_s=0)
    broadcaster.start()
    try:
        await asyncio.sleep(0)
        broadcaster.record(replace(STATE, bids=2, ends_at=70_000), urgent=True)
        await asyncio.wait_for(pushes.arrived.wait(), 30)
        assert pushes.sent[0][1]["ends_at"] == 70_000
    finally:
        await broadcaster.close()
