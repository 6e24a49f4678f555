"""AuctionService: live auctions in Redis, decided like buys (see docs/inventory.md, "Auctions").

An auction ``a_X`` sells the one unit of its own sale ``s_X``, whose keys share its hash tag.
Bids are batched per auction (the buys' batcher) and each batch is decided by one Lua step in
arrival order. The close is one Lua step too, whichever process runs it first: the leader gets
the sale's unit held at the winning price, a reservation like a buy's, handed to orders on the
sale's stream. If that hold lapses, the runner-up is offered the unit at their last bid, once.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, Literal, cast

import msgpack
import redis.asyncio as aioredis

from . import keys
from ._batcher import BATCH_WINDOW_S, MAX_BATCH_WINDOW_S, TARGET_BATCH, Batcher
from ._models import Hold
from ._scripts import ScriptCalls, ScriptRunner, load_script, script_calls_for, store_errors
from .exceptions import InvalidAuction, InventoryError, UnknownAuction

__all__ = [
    "INCREMENT_BANDS",
    "MAX_BID_CENTS",
    "Auction",
    "AuctionService",
    "AuctionSpec",
    "AuctionState",
    "BidResult",
    "BidStatus",
    "Closing",
    "increment_cents",
]

# The bid increment by price band: (below this price, the increment), then TOP_INCREMENT.
# inventory/lua/_auction.lua holds the same table (the one that decides); tests check they agree.
INCREMENT_BANDS: tuple[tuple[int, int], ...] = (
    (100, 5), (500, 25), (2_500, 50), (10_000, 100), (25_000, 250), (50_000, 500),
    (100_000, 1_000), (250_000, 2_500), (500_000, 5_000),
)
TOP_INCREMENT = 10_000
MAX_BID_CENTS = 100_000_000_00  # the dearest flash-sale price, 100 million in whole units
MIN_DURATION_S, MAX_DURATION_S = 5, 600
MAX_EXTEND_S = 120
MAX_START_DELAY_S = 86_400
MAX_ID = 64
MAX_NAME = 64
MAX_REQUEST_ID = 64
_MAX_VALID_IDS = 4096

BidStatus = Literal[
    "leading", "outbid", "too_low", "already_leading", "not_started", "ended", "banned",
    "not_in_room", "rate_limited", "invalid",
]
BID_STATUSES: frozenset[str] = frozenset(
    ("leading", "outbid", "too_low", "already_leading", "not_started", "ended", "banned",
     "not_in_room"))
AuctionStatus = Literal["scheduled", "live", "ended"]
SecondChance = Literal["", "none", "sold", "offered"]

AUCTION_SCRIPTS = ("create_auction", "bid_batch", "close_auction", "second_chance")


def increment_cents(price_cents: int) -> int:
    """The smallest raise over ``price_cents`` (the band table above)."""
    for below, step in INCREMENT_BANDS:
        if price_cents < below:
            return step
    return TOP_INCREMENT


@dataclass(frozen=True, slots=True)
class AuctionSpec:
    room_id: str
    product_id: str
    anchor_id: str
    title: str
    category: str
    brand: str
    start_cents: int
    starts_at_ms: int
    duration_ms: int
    # Anti-sniping: a bid in the last extend_ms moves the end to extend_ms after it (0 with
    # sudden_death, which never extends).
    extend_ms: int
    sudden_death: bool
    # How long the winner's hold lasts (their time to check out).
    hold_ms: int


@dataclass(frozen=True, slots=True)
class AuctionState:
    """An auction's moving parts, as every script reply carries them."""

    id: str
    room_id: str
    status: AuctionStatus
    closed: bool
    price_cents: int
    min_next_cents: int
    ends_at: int
    leader_id: str | None
    leader_name: str | None
    bids: int
    winner_reservation: str | None
    second_reservation: str | None
    second_chance: SecondChance

    @classmethod
    def from_reply(cls, raw: Mapping[str, Any]) -> AuctionState:
        return cls(
            id=raw["id"], room_id=raw["room"], status=raw["status"], closed=bool(raw["closed"]),
            price_cents=int(raw["price"]), min_next_cents=int(raw["min_next"]),
            ends_at=int(raw["ends_at"]), leader_id=raw["leader"] or None,
            leader_name=raw["leader_name"] or None, bids=int(raw["bids"]),
            winner_reservation=raw["winner_res"] or None,
            second_reservation=raw["second_res"] or None,
            second_chance=cast(SecondChance, raw["second_state"]),
        )


@dataclass(frozen=True, slots=True)
class Auction:
    """An auction as read: what it sells, its rules, and its state now."""

    sale_id: str
    product_id: str
    anchor_id: str
    title: str
    start_cents: int
    starts_at: int
    extend_ms: int
    sudden_death: bool
    hold_ms: int
    created_at: int
    ended_reason: str | None
    state: AuctionState

    @property
    def id(self) -> str:
        return self.state.id

    @property
    def room_id(self) -> str:
        return self.state.room_id


@dataclass(frozen=True, slots=True)
class BidResult:
    status: BidStatus
    # None when the bid was refused before it reached Redis (invalid, rate_limited).
    state: AuctionState | None
    replayed: bool = False
    # The end moved in this bid's batch (anti-sniping): worth pushing at once.
    extended: bool = False


@dataclass(frozen=True, slots=True)
class Closing:
    """What one step of the closer did to one auction: ``kind`` is ``closed`` (this call closed
    it: ``hold`` is the winner's, if any) or ``second_chance`` (``hold`` is the runner-up's);
    ``holder`` is whom the hold is for."""

    kind: Literal["closed", "second_chance"]
    state: AuctionState
    hold: Hold | None
    holder: str | None


# One bid of an auction's group, as bid_batch.lua reads it: (user, amount, request_id, name,
# the rooms the bidder has joined).
BidRequest = tuple[str, int, str, str, Sequence[str]]
BidCallback = Callable[[BidResult | Exception], None]


def _settle(future: asyncio.Future[BidResult], outcome: BidResult | Exception) -> None:
    if future.done():
        return
    if isinstance(outcome, Exception):
        future.set_exception(outcome)
    else:
        future.set_result(outcome)


def _check_id(field: str, value: object) -> str:
    if not isinstance(value, str) or not 1 <= len(value) <= MAX_ID or not value.isprintable():
        raise InvalidAuction(field, f"must be a non-empty printable string of at most {MAX_ID}")
    return value


def _check_int(field: str, value: object, low: int, high: int) -> int:
    if type(value) is not int or not low <= value <= high:
        raise InvalidAuction(field, f"must be an integer from {low} to {high}, got {value!r}")
    return value


def auction_status(now: int, starts_at: int, ends_at: int, closed: bool) -> AuctionStatus:
    """The one definition of an auction's status, as inventory/lua/_auction.lua has it."""
    if closed or now >= ends_at:
        return "ended"
    if now < starts_at:
        return "scheduled"
    return "live"


class AuctionService:
    """Auctions, their bids, their close and their second-chance offer.

    ``client``: a ``redis.asyncio.Redis`` with ``decode_responses=False``. ``now_ms`` is the
    clock every decision is made on (it is passed to the scripts)."""

    def __init__(
        self,
        client: aioredis.Redis,
        *,
        now_ms: Callable[[], int],
        retention_ms: int = keys.SALE_RETENTION_MS,
        batch_window_s: float = BATCH_WINDOW_S,
        max_batch_window_s: float = MAX_BATCH_WINDOW_S,
        target_batch: int = TARGET_BATCH,
        max_batch: int = 512,
        max_pending: int = 20_000,
        max_inflight: int = 4,
        script_calls: ScriptCalls | None = None,
    ) -> None:
        self._client = client
        self._now_ms = now_ms
        self._retention_ms = retention_ms
        scripts = [load_script(name, shared=["_auction"]) for name in AUCTION_SCRIPTS]
        self._scripts = ScriptRunner(script_calls or script_calls_for(client), scripts)
        self._valid_ids: set[str] = set()
        self._pack = msgpack.Packer(use_bin_type=False).pack
        self._batcher: Batcher[BidRequest, BidResult] = Batcher(
            self._decide_group, window_s=batch_window_s, max_window_s=max_batch_window_s,
            target_batch=target_batch, max_batch=max_batch, max_pending=max_pending,
            max_inflight=max_inflight, name="inventory-bid-batcher")

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        await self._scripts.register()
        self._batcher.start()

    async def close(self) -> None:
        """Stop taking bids and decide those already accepted."""
        await self._batcher.close()

    async def disconnect(self) -> None:
        await self._scripts.close()

    # -- auctions ----------------------------------------------------------------------------

    async def create_auction(self, spec: AuctionSpec) -> Auction:
        now = self._now_ms()
        room_id = _check_id("room_id", spec.room_id)
        product_id = _check_id("product_id", spec.product_id)
        anchor_id = _check_id("anchor_id", spec.anchor_id)
        start = _check_int("start_cents", spec.start_cents, 1, MAX_BID_CENTS)
        # The caller read the clock a moment ago: a start a little in the past is "now".
        starts_at = _check_int("starts_at_ms", spec.starts_at_ms, 0,
                               now + MAX_START_DELAY_S * 1000)
        duration = _check_int("duration_ms", spec.duration_ms, MIN_DURATION_S * 1000,
                              MAX_DURATION_S * 1000)
        if starts_at + duration <= now:
            raise InvalidAuction("starts_at_ms", "the auction would already be over")
        low_extend = 0 if spec.sudden_death else 1000
        extend = _check_int("extend_ms", spec.extend_ms, low_extend, MAX_EXTEND_S * 1000)
        if spec.sudden_death:
            extend = 0
        hold_ms = _check_int("hold_ms", spec.hold_ms, 1000, 24 * 3600 * 1000)
        for field, text in (("title", spec.title), ("category", spec.category),
                            ("brand", spec.brand)):
            if not isinstance(text, str) or len(text) > 200:
                raise InvalidAuction(field, "must be a string of at most 200 chars")
        for _ in range(5):
            suffix = secrets.token_urlsafe(8)[:10]
            auction_id, sale_id = "a_" + suffix, "s_" + suffix
            sale: dict[str, str | int] = {
                "id": sale_id, "room": room_id, "product": product_id, "anchor": anchor_id,
                "title": spec.title, "category": spec.category, "brand": spec.brand,
                "stock": 1, "price_cents": start, "per_user_limit": 1,
                # Over for buying from the start: the unit is only held by the close.
                "starts_at": now, "ends_at": now, "ended_reason": "auction",
                "hold_ms": hold_ms, "remaining": 1, "held": 0, "sold": 0, "seq": 0,
                "created_at": now, "auction": auction_id,
            }
            auction: dict[str, str | int] = {
                "id": auction_id, "sale": sale_id, "room": room_id, "product": product_id,
                "anchor": anchor_id, "title": spec.title, "status": "open",
                "starts_at": starts_at, "ends_at": starts_at + duration, "extend_ms": extend,
                "sudden": int(spec.sudden_death), "start_cents": start, "price": 0,
                "leader": "", "leader_name": "", "bids": 0, "runner": "", "runner_bid": 0,
                "winner_res": "", "second_res": "", "second_state": "", "hold_ms": hold_ms,
                "created_at": now,
            }
            reply = await self._scripts.run(
                "create_auction", keys.auction_keys(auction_id),
                [self._pack(sale), self._pack(auction)])
            if reply[0] == "ok":
                with store_errors():
                    await self._client.zadd(keys.AUCTIONS_DUE, {auction_id: starts_at + duration})
                return await self.get_auction(auction_id)
        raise InventoryError("could not allocate a fresh auction id")

    async def get_auction(self, auction_id: str) -> Auction:
        akeys = keys.auction_keys(self._known_id(auction_id))
        with store_errors():
            raw = await cast(Awaitable[dict[bytes, bytes]], self._client.hgetall(akeys.auction))
        if not raw:
            raise UnknownAuction(auction_id)
        a = {k.decode(): v.decode() for k, v in raw.items()}
        now = self._now_ms()
        closed = a["status"] == "closed"
        starts_at, ends_at = int(a["starts_at"]), int(a["ends_at"])
        price, bids = int(a["price"]), int(a["bids"])
        start = int(a["start_cents"])
        state = AuctionState(
            id=auction_id, room_id=a["room"],
            status=auction_status(now, starts_at, ends_at, closed), closed=closed,
            price_cents=price,
            min_next_cents=start if bids == 0 else price + increment_cents(price),
            ends_at=ends_at, leader_id=a["leader"] or None, leader_name=a["leader_name"] or None,
            bids=bids, winner_reservation=a["winner_res"] or None,
            second_reservation=a["second_res"] or None,
            second_chance=cast(SecondChance, a["second_state"]),
        )
        return Auction(
            sale_id=a["sale"], product_id=a["product"], anchor_id=a["anchor"],
            title=a["title"], start_cents=start, starts_at=starts_at,
            extend_ms=int(a["extend_ms"]), sudden_death=a["sudden"] == "1",
            hold_ms=int(a["hold_ms"]), created_at=int(a["created_at"]),
            ended_reason=a.get("ended_reason") or ("time" if state.status == "ended" else None),
            state=state,
        )

    async def set_bidder_bans(self, auction_id: str, bans: Mapping[str, int]) -> None:
        """Bar each user of ``bans`` from bidding until that time in ms (0: until lifted): their
        bids are answered ``banned``, and a banned runner-up gets no second-chance offer."""
        if bans:
            bans_key = keys.auction_keys(self._known_id(auction_id)).sale.bans
            with store_errors():
                await self._client.hset(bans_key, mapping={u: until for u, until in bans.items()})

    async def lift_bidder_ban(self, auction_id: str, user_id: str) -> None:
        with store_errors():
            await self._client.hdel(keys.auction_keys(self._known_id(auction_id)).sale.bans,
                                    user_id)

    def _known_id(self, auction_id: object) -> str:
        if type(auction_id) is str and auction_id in self._valid_ids:
            return auction_id
        if not isinstance(auction_id, str) or not keys.AUCTION_ID_RE.match(auction_id):
            raise UnknownAuction(str(auction_id))
        if len(self._valid_ids) >= _MAX_VALID_IDS:
            self._valid_ids.clear()
        self._valid_ids.add(auction_id)
        return auction_id

    # -- bidding -----------------------------------------------------------------------------

    async def bid(self, auction_id: str, user_id: str, name: str, amount_cents: object,
                  request_id: object, rooms: Sequence[str]) -> BidResult:
        """Bid ``amount_cents`` as ``user_id`` (shown as ``name`` while leading), who has
        joined ``rooms``: a bid is taken only from the auction's room (else ``not_in_room``).
        Outcomes are statuses; an unknown auction raises UnknownAuction. The same user and
        request_id always get the first answer (one that decided nothing, ``not_started``,
        ``banned`` or ``not_in_room``, is not remembered)."""
        future: asyncio.Future[BidResult] = asyncio.get_running_loop().create_future()
        answer = self.bid_nowait(auction_id, user_id, name, amount_cents, request_id, rooms,
                                 partial(_settle, future))
        return answer if answer is not None else await future

    def bid_nowait(self, auction_id: str, user_id: str, name: str, amount_cents: object,
                   request_id: object, rooms: Sequence[str],
                   on_done: BidCallback) -> BidResult | None:
        """``bid()`` for the socket edge: an answer known at once (``invalid``,
        ``rate_limited``) is returned, else ``on_done`` gets the answer when its batch is
        decided (in the batcher's task: quick, and what it raises is logged)."""
        self._known_id(auction_id)
        if (type(amount_cents) is not int or not 1 <= amount_cents <= MAX_BID_CENTS
                or type(request_id) is not str or not 1 <= len(request_id) <= MAX_REQUEST_ID
                or type(user_id) is not str or not 1 <= len(user_id) <= MAX_ID
                or ":" in user_id  # the request key is "user:request_id"
                or type(name) is not str or len(name) > MAX_NAME):
            return BidResult("invalid", None)
        if not self._batcher.submit_request(
                auction_id, (user_id, amount_cents, request_id, name, rooms), on_done):
            return BidResult("rate_limited", None)
        return None

    async def _decide_group(self, auction_id: str,
                            requests: Sequence[BidRequest]) -> list[BidResult]:
        reply = await self._scripts.run(
            "bid_batch", keys.auction_keys(auction_id), [self._now_ms(), self._pack(requests)])
        if reply[0] == "unknown_auction":
            raise UnknownAuction(auction_id)
        _, answers, raw_state, extended = reply
        state = AuctionState.from_reply(raw_state)
        results = []
        for status, replayed in answers:
            if status not in BID_STATUSES:
                raise InventoryError(f"bid script answered an unknown status {status!r}")
            results.append(BidResult(status, state, replayed == 1, bool(extended)))
        return results

    # -- the close and the second chance -----------------------------------------------------

    async def end_auction(self, auction_id: str, reason: str) -> Closing | None:
        """Close the auction now, before its end (the anchor stops it, the room ends): the
        leader wins at the current price, as at the end. None when it was already closed."""
        return await self._close(self._known_id(auction_id), reason, force=True)

    async def _close(self, auction_id: str, reason: str, *, force: bool) -> Closing | None:
        akeys = keys.auction_keys(auction_id)
        reply = await self._scripts.run(
            "close_auction", akeys,
            [self._now_ms(), reason, "1" if force else "0", self._retention_ms])
        if reply[0] == "unknown_auction":
            raise UnknownAuction(auction_id)
        state = AuctionState.from_reply(reply[2])
        if reply[0] == "not_due":
            with store_errors():
                await self._client.zadd(keys.AUCTIONS_DUE, {auction_id: state.ends_at})
            return None
        if not reply[1]:
            return None
        hold = None
        if state.winner_reservation is not None:
            await self._list_sale(auction_id)
            hold, _ = await self._hold(auction_id, state.winner_reservation)
        with store_errors():
            if hold is None:
                await self._client.zrem(keys.AUCTIONS_DUE, auction_id)
            else:
                await self._client.zadd(keys.AUCTIONS_DUE, {auction_id: hold.expires_at})
        return Closing("closed", state, hold, state.leader_id)

    async def _list_sale(self, auction_id: str) -> None:
        """List the auction's sale for the sweeper and orders' reader once it holds its unit.
        (Not before: an auction without a winner never needs them.) A crash between the close
        and this is mended by the next step, which lists it again before anything else."""
        with store_errors():
            await self._client.sadd(keys.ACTIVE_SALES, keys.auction_sale_id(auction_id))
            await self._client.sadd(keys.UNREAD_SALES, keys.auction_sale_id(auction_id))

    async def _hold(self, auction_id: str, reservation_id: str) -> tuple[Hold, str]:
        """The hold ``reservation_id`` of the auction's sale, and whose it is."""
        with store_errors():
            raw = await cast(Awaitable[bytes | None], self._client.hget(
                keys.auction_keys(auction_id).sale.res, reservation_id))
        if raw is None:
            raise InventoryError(f"auction {auction_id} lost its hold {reservation_id}")
        r = msgpack.unpackb(raw, raw=False)
        hold = Hold(r["reservation"], int(r["qty"]), int(r["price_cents"]), int(r["expires_at"]))
        return hold, str(r["user"])

    async def hold_of(self, auction: Auction, user_id: str) -> Hold | None:
        """The unit's hold if ``user_id`` holds it now (won, or offered the second chance),
        else None: a winner whose page missed the push finds their reservation here."""
        for reservation_id in (auction.state.second_reservation,
                               auction.state.winner_reservation):
            if reservation_id is None:
                continue
            with store_errors():
                raw = await cast(Awaitable[bytes | None], self._client.hget(
                    keys.auction_keys(auction.id).sale.res, reservation_id))
            if raw is None:
                continue
            r = msgpack.unpackb(raw, raw=False)
            if r["user"] == user_id and r["state"] == "held" and self._now_ms() < r["expires_at"]:
                return Hold(r["reservation"], int(r["qty"]), int(r["price_cents"]),
                            int(r["expires_at"]))
        return None

    async def due_ids(self, limit: int = 100) -> list[str]:
        """Auctions whose end or whose winner's hold expiry has come (by the clock)."""
        with store_errors():
            raw = await cast(Awaitable[list[bytes]], self._client.zrangebyscore(
                keys.AUCTIONS_DUE, "-inf", self._now_ms(), start=0, num=limit))
        return [member.decode() for member in raw]

    async def step(self, auction_id: str) -> Closing | None:
        """Move a due auction on: close it at its end (``not_due`` again if bids extended it),
        then, once its winner's hold has lapsed, offer the runner-up the unit (once). Safe from
        every process at once: each step is decided in Redis. Returns what this call did."""
        auction_id = self._known_id(auction_id)
        try:
            closed = await self._close(auction_id, "time", force=False)
        except UnknownAuction:  # its keys expired long ago
            with store_errors():
                await self._client.zrem(keys.AUCTIONS_DUE, auction_id)
            return None
        if closed is not None:
            return closed
        state = (await self.get_auction(auction_id)).state
        if not state.closed:
            return None
        if state.winner_reservation is not None:
            await self._list_sale(auction_id)
        reply = await self._scripts.run(
            "second_chance", keys.auction_keys(auction_id), [self._now_ms()])
        outcome = reply[0]
        if outcome == "wait":
            with store_errors():
                await self._client.zadd(keys.AUCTIONS_DUE, {auction_id: int(reply[2])})
            return None
        with store_errors():
            await self._client.zrem(keys.AUCTIONS_DUE, auction_id)
        if outcome != "offered":
            return None
        state = AuctionState.from_reply(reply[1])
        assert state.second_reservation is not None
        runner, holder = await self._hold(auction_id, state.second_reservation)
        return Closing("second_chance", state, runner, holder)
