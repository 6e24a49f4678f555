"""Live auctions seen from the room: starting and stopping them for the room's anchor, their
views, the coalesced ``auction`` pushes, and the closer that ends them on time. The bidding
itself is ``inventory``'s business (``inventory.AuctionService``)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import redis.asyncio as aioredis

from inventory import (
    Auction,
    AuctionService,
    AuctionSpec,
    AuctionState,
    Closing,
    Sale,
    UnknownAuction,
)

from . import keys
from .catalog import Catalog, Room, text_of
from .exceptions import Forbidden, InvalidInput
from .identity import User
from .loops import PeriodicLoop, cancelling
from .lots import hold_s_of, lot_view
from .payload import Payload
from .rooms import BuyerBans, bans_in_force

__all__ = [
    "AuctionBroadcaster",
    "AuctionCloser",
    "AuctionDesk",
    "BuyerBansFanout",
    "auction_push",
    "auction_view",
    "room_ender",
    "without_auction_lots",
]

log = logging.getLogger("liveroom.auctions")
Emit = Callable[[str, Any, str], Awaitable[None]]

MAX_START_DELAY_S = 86_400
# The ended_reason of an auction's one-unit sale (inventory/_auctions.py).
AUCTION_LOT = "auction"


def auction_push(state: AuctionState, server_time: int) -> dict[str, Any]:
    """The ``auction`` push: what moves while bidding (never a bidder's id)."""
    return {
        "id": state.id,
        "room": state.room_id,
        "status": state.status,
        "price_cents": state.price_cents,
        "min_next_cents": state.min_next_cents,
        "bids": state.bids,
        "leader_name": state.leader_name,
        "ends_at": state.ends_at,
        "server_time": server_time,
    }


def auction_view(auction: Auction, server_time: int) -> dict[str, Any]:
    """An auction as ``GET /api/auctions/{id}`` shows it: the push's fields, what it shares
    with a sale's view (the two agree on the push's id, room, status and end) and its rules."""
    state = auction.state
    return {
        **auction_push(state, server_time),
        **lot_view(auction, state.status, state.ends_at, server_time),
        "sale": auction.sale_id,
        "start_cents": auction.start_cents,
        "extend_s": auction.extend_ms // 1000,
        "sudden_death": auction.sudden_death,
        "second_chance": state.second_chance or None,
    }


class AuctionDesk:
    """A room's auctions: started and stopped by the room's anchor, read as clients see them,
    ended with the room, and barred to the room's banned users (``BuyerBans``)."""

    def __init__(self, redis: aioredis.Redis, catalog: Catalog, auctions: AuctionService,
                 now_ms: Callable[[], int]) -> None:
        self._redis = redis
        self._catalog = catalog
        self._auctions = auctions
        self._now_ms = now_ms

    def view(self, auction: Auction) -> dict[str, Any]:
        return auction_view(auction, self._now_ms())

    async def create(self, anchor: User, room_id: str, payload: Payload) -> Auction:
        product_id = payload.ident("product_id")
        start = payload.integer("start_cents", minimum=1)
        duration = payload.integer("duration_s", minimum=5, maximum=600)
        sudden = payload.raw("sudden_death")
        if sudden is not None and not isinstance(sudden, bool):
            raise InvalidInput("sudden_death must be true or false")
        sudden_death = bool(sudden)
        extend = payload.integer("extend_s", minimum=0 if sudden_death else 1, maximum=120,
                                 required=not sudden_death)
        starts_in = payload.integer("starts_in_s", minimum=0, maximum=MAX_START_DELAY_S,
                                    required=False, default=0)
        hold = hold_s_of(payload)
        room = await self._catalog.owned_room(anchor, room_id)
        product = await self._catalog.get_product(product_id)
        if product.anchor_id != room.anchor_id:
            raise Forbidden("an auction can only offer the anchor's own product")
        now = self._now_ms()
        auction = await self._auctions.create_auction(AuctionSpec(
            room_id=room.id, product_id=product.id, anchor_id=room.anchor_id,
            title=product.title, category=product.category, brand=product.brand,
            start_cents=start, starts_at_ms=now + starts_in * 1000,
            duration_ms=duration * 1000, extend_ms=extend * 1000, sudden_death=sudden_death,
            hold_ms=hold * 1000,
        ))
        # Before the room's index lists it, so a ban given meanwhile reaches it (ban_buyer).
        await self._auctions.set_bidder_bans(auction.id, await bans_in_force(
            self._redis, room.id, now))
        await self._redis.zadd(keys.room_auctions(room.id), {auction.id: now})
        await self._catalog.note_product_in_room(product.id, room.id)
        return auction

    async def get(self, auction_id: str) -> Auction:
        return await self._auctions.get_auction(auction_id)

    async def view_for(self, auction: Auction, user: User | None) -> dict[str, Any]:
        """``view``, with ``reservation`` when ``user`` holds the unit now (won it, or was
        offered the second chance) and has not checked it out."""
        view = self.view(auction)
        if user is not None and auction.state.closed:
            hold = await self._auctions.hold_of(auction, user.id)
            if hold is not None:
                view["reservation"] = hold.to_public()
        return view

    async def stop(self, anchor: User, auction_id: str) -> tuple[Auction, Closing | None]:
        """The anchor ends the auction now: the leader wins at the current price, as at the
        end (a bid is a binding offer). Stopping an ended auction changes nothing."""
        auction = await self._auctions.get_auction(auction_id)
        await self._catalog.owned_room(anchor, auction.room_id, must_be_live=False)
        closing = await self._auctions.end_auction(auction_id, "anchor")
        return await self._auctions.get_auction(auction_id), closing

    async def end_room_auctions(self, room_id: str) -> list[Closing]:
        """End every auction of the room still open (the room itself ended)."""
        closings = []
        for raw in await self._redis.zrange(keys.room_auctions(room_id), 0, -1):
            with contextlib.suppress(UnknownAuction):
                closing = await self._auctions.end_auction(text_of(raw), "room_ended")
                if closing is not None:
                    closings.append(closing)
        return closings

    async def room_auctions(self, room_id: str, limit: int = 20) -> list[Auction]:
        await self._catalog.get_room(room_id)
        found = []
        for raw in await self._redis.zrevrange(keys.room_auctions(room_id), 0, limit - 1):
            with contextlib.suppress(UnknownAuction):  # expired weeks after it ended
                found.append(await self._auctions.get_auction(text_of(raw)))
        return found

    async def room_state(self, room: Room) -> dict[str, Any]:
        """The ``auction`` field of the room state: the room's newest auction."""
        newest = await self.room_auctions(room.id, limit=1)
        return {"auction": self.view(newest[0]) if newest else None}

    async def ban_buyer(self, room_id: str, user_id: str, until_ms: int) -> None:
        for raw in await self._redis.zrange(keys.room_auctions(room_id), 0, -1):
            await self._auctions.set_bidder_bans(text_of(raw), {user_id: until_ms})

    async def unban_buyer(self, room_id: str, user_id: str) -> None:
        for raw in await self._redis.zrange(keys.room_auctions(room_id), 0, -1):
            await self._auctions.lift_bidder_ban(text_of(raw), user_id)


class BuyerBansFanout:
    """``BuyerBans`` that carries a room's bans to several desks (its sales, its auctions)."""

    def __init__(self, *desks: BuyerBans) -> None:
        self._desks = desks

    async def ban_buyer(self, room_id: str, user_id: str, until_ms: int) -> None:
        for desk in self._desks:
            await desk.ban_buyer(room_id, user_id, until_ms)

    async def unban_buyer(self, room_id: str, user_id: str) -> None:
        for desk in self._desks:
            await desk.unban_buyer(room_id, user_id)


def _newer(state: AuctionState, than: AuctionState | None) -> bool:
    # Batches of one auction may finish out of order; a push never goes back in time.
    return than is None or (state.closed, state.bids, state.ends_at) >= (
        than.closed, than.bids, than.ends_at)


class AuctionBroadcaster:
    """Owner of the loop that pushes ``auction`` to rooms, coalesced per auction.

    ``record`` is called after every decided bid batch (thousands of bids a second in a
    bidding war); the loop pushes the latest state of each changed auction every
    ``interval_s``. An extension, a start or an end (``urgent``) wakes the loop at once, unless
    a push went out less than ``min_gap_s`` ago, then as soon as that gap has passed: in a
    bidding war nearly every batch extends the end, and a push per batch to thousands of
    viewers would cost more than the bids (the bidder's own ack carries the new end at once)."""

    def __init__(self, emit: Emit, now_ms: Callable[[], int], interval_s: float = 0.5,
                 min_gap_s: float = 0.2) -> None:
        self._emit = emit
        self._now_ms = now_ms
        self._interval_s = interval_s
        self._min_gap_s = min_gap_s
        self._latest: dict[str, AuctionState] = {}
        self._urgent = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def record(self, state: AuctionState, urgent: bool = False) -> None:
        if _newer(state, self._latest.get(state.id)):
            self._latest[state.id] = state
        if urgent:
            self._urgent.set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="auction-broadcaster")

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._urgent.wait(),
                                       max(0.0, self._interval_s - self._min_gap_s))
            self._urgent.clear()
            try:
                await self.flush()
            except asyncio.CancelledError:
                raise
            except Exception:
                if not cancelling():
                    log.warning("auction push failed", exc_info=True)
            if cancelling():
                raise asyncio.CancelledError()
            await asyncio.sleep(self._min_gap_s)

    async def flush(self) -> None:
        if not self._latest:
            return
        latest, self._latest = self._latest, {}
        now = self._now_ms()
        for state in latest.values():
            await self._emit("auction", auction_push(state, now), state.room_id)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self.flush()


class AuctionCloser(PeriodicLoop):
    """Owner of the loop that closes auctions when their end comes and makes the second-chance
    offer when a winner's hold lapses. Every process runs one; each step is decided in Redis,
    so an auction is closed once whichever gets there first, and that one tells the room (an
    urgent ``auction`` push) and the winner (an ``auction`` push on their own sockets, with
    the ``reservation`` to check out)."""

    name = "auction-closer"

    def __init__(self, auctions: AuctionService, broadcaster: AuctionBroadcaster, emit: Emit,
                 now_ms: Callable[[], int], interval_s: float = 0.1) -> None:
        super().__init__(interval_s)
        self._auctions = auctions
        self._broadcaster = broadcaster
        self._emit = emit
        self._now_ms = now_ms

    async def tick(self) -> None:
        for auction_id in await self._auctions.due_ids():
            try:
                closing = await self._auctions.step(auction_id)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.warning("auction %s could not be moved on", auction_id, exc_info=True)
                continue
            if closing is not None:
                await self.announce(closing)

    async def announce(self, closing: Closing) -> None:
        """Tell the room (at once) and the hold's holder of a close or a second chance."""
        self._broadcaster.record(closing.state, urgent=True)
        if closing.hold is None or closing.holder is None:
            return
        news = {**auction_push(closing.state, self._now_ms()),
                "offer": "won" if closing.kind == "closed" else "second_chance",
                "reservation": closing.hold.to_public()}
        try:
            await self._emit("auction", news, f"user:{closing.holder}")
        except Exception:
            log.warning("the holder of auction %s could not be told", closing.state.id,
                        exc_info=True)


def without_auction_lots(announce: Callable[[Sale], Awaitable[object]]
                         ) -> Callable[[Sale], Awaitable[object]]:
    """``announce`` for the sales that are flash sales: an auction's one-unit sale (over for
    buying from the start, ``ended_reason`` ``auction``) is not announced to the room as a
    ``sale``, where a page would show it in place of the room's flash sale."""

    async def announce_sale(sale: Sale) -> object:
        if sale.ended_reason == AUCTION_LOT:
            return None
        return await announce(sale)

    return announce_sale


def room_ender(desk: AuctionDesk, closer: AuctionCloser) -> Callable[[str], Awaitable[None]]:
    """What ends a room's auctions when the room ends: each closes now (its leader wins) and
    its room and winner hear of it like at a close on time."""

    async def end_room(room_id: str) -> None:
        for closing in await desk.end_room_auctions(room_id):
            await closer.announce(closing)

    return end_room
