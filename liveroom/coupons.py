"""Coupon drops: a room's anchor drops N coupons (an amount or a percentage off the room's
sales, a minimum spend, valid for T seconds), viewers grab one each in a burst, and checkout
applies them (docs/orders.md, "Coupons").

Grabs are decided like buys: queued per drop in the inventory's batcher and decided a batch at
a time by one Lua step (``lua/coupon_grab.lua``) in arrival order, once per account, never
more than the drop's count, idempotent per request id. A drop's keys share the hash tag
``{coupon:ID}``; a coupon is ``{drop id}.{seq}``. The buyer's wallet is a sorted set of coupon
ids written after the grab (a retried grab writes it again). Orders reach the coupons through
``CouponWalletAdapter`` (``orders.interfaces.CouponWallet``): ``use`` and ``give_back`` are
atomic Lua steps on the drop's keys.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from functools import partial
from importlib import resources
from typing import Any, Literal, cast

import redis.asyncio as aioredis

import orders
from inventory import Batcher
from orders.interfaces import CouponTerms

from . import keys
from .catalog import Catalog, Room, text_of
from .exceptions import InvalidInput, LiveroomError, NotFound
from .identity import User
from .loops import PeriodicLoop
from .payload import Payload
from .rooms import bans_in_force

__all__ = [
    "GRAB_STATUSES",
    "MAX_COUNT",
    "CouponDesk",
    "CouponDrop",
    "CouponPusher",
    "CouponWalletAdapter",
    "GrabResult",
    "UnknownDrop",
]

log = logging.getLogger("liveroom.coupons")
Emit = Callable[[str, Any, str], Awaitable[None]]

MAX_COUNT = 100_000
MAX_OFF_CENTS = 100_000_000_00
MAX_PERCENT_OFF = 99
MIN_VALID_S, MAX_VALID_S = 10, 7 * 24 * 3600
MAX_REQUEST_ID = 64
# The drops whose terms this process keeps in memory (they never change once dropped).
_MAX_CACHED_DROPS = 4096

GrabStatus = Literal["granted", "already_grabbed", "gone", "expired", "unknown", "banned"]
GRAB_STATUSES: frozenset[str] = frozenset(
    ("granted", "already_grabbed", "gone", "expired", "unknown", "banned"))
# One grab of a drop's batch: (user id, request id, banned-check done by the batch).
GrabRequest = tuple[str, str]


class UnknownDrop(NotFound):
    code = "unknown_drop"

    def __init__(self, drop_id: str) -> None:
        super().__init__(f"no coupon drop {drop_id[:64]!r}")
        self.drop_id = drop_id


class UnknownCouponId(NotFound):
    code = "unknown_coupon"

    def __init__(self, coupon_id: str) -> None:
        super().__init__(f"no coupon {coupon_id[:80]!r}")
        self.coupon_id = coupon_id


class CouponError(LiveroomError):
    """A script answered something this code does not know: a bug, never the user's doing."""

    code = "coupon_error"
    http_status = 500


@dataclass(frozen=True, slots=True)
class CouponDrop:
    """A drop's terms (what never changes after it is dropped)."""

    id: str
    room_id: str
    anchor_id: str
    count: int
    off_cents: int
    percent_off: int
    min_spend_cents: int
    created_at: int
    expires_at: int

    def terms_public(self) -> dict[str, Any]:
        return {"off_cents": self.off_cents or None, "percent_off": self.percent_off or None,
                "min_spend_cents": self.min_spend_cents, "expires_at": self.expires_at}

    def status(self, left: int, now: int) -> str:
        """``live`` while coupons are left and it is valid, then ``gone`` or ``expired``."""
        if now >= self.expires_at:
            return "expired"
        return "live" if left > 0 else "gone"


@dataclass(frozen=True, slots=True)
class GrabResult:
    status: GrabStatus
    drop: CouponDrop | None
    coupon_id: str | None
    left: int
    # The answer of an earlier copy of this request (a retry): the same coupon.
    replayed: bool = False


def coupon_id_of(drop_id: str, seq: str | int) -> str:
    return f"{drop_id}.{seq}"


def split_coupon_id(coupon_id: str) -> tuple[str, str] | None:
    """(drop id, seq) of a well-formed coupon id, else None."""
    if not isinstance(coupon_id, str) or not orders_coupon_id(coupon_id):
        return None
    drop_id, _, seq = coupon_id.rpartition(".")
    return drop_id, seq


def orders_coupon_id(coupon_id: str) -> bool:
    return bool(orders.COUPON_RE.fullmatch(coupon_id))  # the one definition of the id's shape


def _settle(future: asyncio.Future[GrabResult], outcome: GrabResult | Exception) -> None:
    if future.done():
        return
    if isinstance(outcome, Exception):
        future.set_exception(outcome)
    else:
        future.set_result(outcome)


class CouponDesk:
    """Coupon drops: dropped by the room's anchor, grabbed in batches, listed in wallets."""

    # A big room's count pushes are paced like its stock pushes (liveroom/sales.py): each is a
    # write per member on the loop that answers the grabs. ``gone`` is never held back.
    BIG_ROOM_MEMBERS = 1_000
    PUSH_INTERVAL_S = 0.25
    MAX_BIG_ROOM_INTERVAL_S = 2.0

    def __init__(self, redis: aioredis.Redis, catalog: Catalog, now_ms: Callable[[], int],
                 emit: Emit, *, max_batch_window_s: float = 0.025, target_batch: int = 32,
                 max_pending: int = 50_000, room_size: Callable[[str], int] | None = None,
                 monotonic: Callable[[], float] | None = None) -> None:
        """``room_size``: a room's members served by this process (default: every room
        small); ``monotonic``: the seconds pushes are paced on (default: the event loop's)."""
        self._redis = redis
        self._room_size = room_size
        self._monotonic = monotonic
        self._next_push: dict[str, float] = {}
        self._gone_news: set[str] = set()
        self._catalog = catalog
        self._now_ms = now_ms
        self._emit = emit
        self._drops: dict[str, CouponDrop] = {}
        lua = resources.files("liveroom").joinpath("lua")
        self._grab = redis.register_script(lua.joinpath("coupon_grab.lua").read_text("utf-8"))
        self._use = redis.register_script(lua.joinpath("coupon_use.lua").read_text("utf-8"))
        self._give_back = redis.register_script(
            lua.joinpath("coupon_give_back.lua").read_text("utf-8"))
        self._batcher: Batcher[GrabRequest, GrabResult] = Batcher(
            self._decide, max_window_s=max_batch_window_s, target_batch=target_batch,
            max_pending=max_pending, name="coupon-grab-batcher")
        # Drops whose count moved here since the last push (CouponPusher).
        self.changed: set[str] = set()

    # lifecycle -------------------------------------------------------------------------------

    def start(self) -> None:
        self._batcher.start()

    async def close(self) -> None:
        """Take no more grabs; decide those already taken."""
        await self._batcher.close()

    # dropping --------------------------------------------------------------------------------

    async def create(self, anchor: User, room_id: str, payload: Payload) -> CouponDrop:
        """Drop coupons in the anchor's live room. Every field is checked before anything is
        written: a refused drop changes nothing."""
        count = payload.integer("count", minimum=1, maximum=MAX_COUNT)
        has_off = payload.raw("off_cents") is not None
        has_percent = payload.raw("percent_off") is not None
        if has_off == has_percent:
            raise InvalidInput("give exactly one of off_cents (an amount) or percent_off")
        off = payload.integer("off_cents", minimum=1, maximum=MAX_OFF_CENTS,
                              required=False) if has_off else 0
        percent = payload.integer("percent_off", minimum=1, maximum=MAX_PERCENT_OFF,
                                  required=False) if has_percent else 0
        min_spend = payload.integer("min_spend_cents", minimum=0, maximum=MAX_OFF_CENTS,
                                    required=False, default=0)
        valid_s = payload.integer("valid_s", minimum=MIN_VALID_S, maximum=MAX_VALID_S)
        room = await self._catalog.owned_room(anchor, room_id)
        now = self._now_ms()
        drop = CouponDrop(id="cd_" + secrets.token_urlsafe(8)[:10], room_id=room.id,
                          anchor_id=room.anchor_id, count=count, off_cents=off,
                          percent_off=percent, min_spend_cents=min_spend, created_at=now,
                          expires_at=now + valid_s * 1000)
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hset(keys.coupon_drop(drop.id), mapping={
                "id": drop.id, "room": drop.room_id, "anchor": drop.anchor_id, "count": count,
                "left": count, "off_cents": off, "percent_off": percent,
                "min_spend_cents": min_spend, "created_at": now,
                "expires_at": drop.expires_at})
            pipe.expire(keys.coupon_drop(drop.id), self._retention_s(drop))
            pipe.zadd(keys.room_coupon_drops(room.id), {drop.id: now})
            pipe.zadd(keys.COUPONS_DUE, {drop.id: drop.expires_at})
            await pipe.execute()
        self._remember(drop)
        await self.push(drop.id, force=True)
        return drop

    def now(self) -> int:
        return self._now_ms()

    def cached(self, drop_id: str) -> CouponDrop | None:
        """The drop if this process has read it already (its terms never change)."""
        return self._drops.get(drop_id)

    async def get(self, drop_id: str) -> CouponDrop:
        drop = self._drops.get(drop_id)
        if drop is not None:
            return drop
        if not isinstance(drop_id, str) or not drop_id.startswith("cd_") or len(drop_id) > 64:
            raise UnknownDrop(str(drop_id))
        raw = await self._redis.hgetall(keys.coupon_drop(drop_id))
        if not raw:
            raise UnknownDrop(drop_id)
        m = {text_of(k): text_of(v) for k, v in raw.items()}
        drop = CouponDrop(
            id=m["id"], room_id=m["room"], anchor_id=m["anchor"], count=int(m["count"]),
            off_cents=int(m["off_cents"]), percent_off=int(m["percent_off"]),
            min_spend_cents=int(m["min_spend_cents"]), created_at=int(m["created_at"]),
            expires_at=int(m["expires_at"]))
        self._remember(drop)
        return drop

    def _retention_s(self, drop: CouponDrop) -> int:
        """How long from now a drop's keys live: its coupons' validity and then the retention
        (a TTL on the service's clock, never an absolute time on Redis's)."""
        return max(0, drop.expires_at - self._now_ms()) // 1000 + keys.COUPON_RETENTION_S

    def _remember(self, drop: CouponDrop) -> None:
        if len(self._drops) >= _MAX_CACHED_DROPS:
            self._drops.clear()
        self._drops[drop.id] = drop

    async def left(self, drop_id: str) -> int:
        raw = await self._redis.hget(keys.coupon_drop(drop_id), "left")
        return int(raw) if raw is not None else 0

    def view(self, drop: CouponDrop, left: int) -> dict[str, Any]:
        """The drop as clients see it (the ``coupon`` push, ``GET /api/coupon-drops/{id}``)."""
        now = self._now_ms()
        return {"id": drop.id, "room": drop.room_id, "anchor": drop.anchor_id,
                "count": drop.count, "left": left, "status": drop.status(left, now),
                **drop.terms_public(), "created_at": drop.created_at, "server_time": now}

    async def view_for(self, drop: CouponDrop, user: User | None) -> dict[str, Any]:
        view = self.view(drop, await self.left(drop.id))
        if user is not None:
            seq = await self._redis.hget(keys.coupon_grabbed(drop.id), user.id)
            view["you"] = {"coupon": None if seq is None else coupon_id_of(drop.id, text_of(seq))}
        return view

    async def room_state(self, room: Room) -> dict[str, Any]:
        """The ``coupon`` field of the room state: the room's newest drop."""
        newest = await self._redis.zrevrange(keys.room_coupon_drops(room.id), 0, 0)
        if not newest:
            return {"coupon": None}
        try:
            drop = await self.get(text_of(newest[0]))
        except UnknownDrop:
            return {"coupon": None}
        return {"coupon": self.view(drop, await self.left(drop.id))}

    # grabbing --------------------------------------------------------------------------------

    def grab_nowait(self, drop: CouponDrop, user_id: str, request_id: str,
                    on_done: Callable[[GrabResult | Exception], None]) -> GrabResult | None:
        """Queue a grab of ``drop``; its answer goes to ``on_done``. A grab answered at once
        (the drop is over) is returned instead; a full queue answers ``rate_limited``."""
        now = self._now_ms()
        if now >= drop.expires_at:
            return GrabResult("expired", drop, None, 0)
        if not self._batcher.submit_request(drop.id, (user_id, request_id), on_done):
            raise GrabQueueFull()
        return None

    async def grab(self, drop: CouponDrop, user_id: str, request_id: str) -> GrabResult:
        future: asyncio.Future[GrabResult] = asyncio.get_running_loop().create_future()
        now = self.grab_nowait(drop, user_id, request_id, partial(_settle, future))
        if now is not None:
            return now
        return await future

    async def _decide(self, drop_id: str,
                      requests: Sequence[GrabRequest]) -> list[GrabResult | Exception]:
        """One batch of one drop's grabs: the room's bans read once, the rest decided by one
        script call in arrival order; the winners' wallets written after it."""
        drop = await self.get(drop_id)
        bans = await bans_in_force(self._redis, drop.room_id, self._now_ms())
        allowed = [r for r in requests if r[0] not in bans]
        answers: dict[int, tuple[str, str]] = {}
        left = 0
        if allowed:
            args: list[str | int] = [self._now_ms()]
            for user_id, request_id in allowed:
                args += [user_id, request_id]
            reply = await self._grab(
                keys=[keys.coupon_drop(drop_id), keys.coupon_grabbed(drop_id),
                      keys.coupon_requests(drop_id), keys.coupon_owners(drop_id)],
                args=args)
            left = int(reply[0])
            flat = [text_of(x) for x in reply[1]]
            for index in range(len(allowed)):
                answers[index] = (flat[2 * index], flat[2 * index + 1])
        now = self._now_ms()
        granted: dict[str, dict[str, int]] = {}
        results: list[GrabResult | Exception] = []
        it = iter(range(len(allowed)))
        for user_id, _ in requests:
            if user_id in bans:
                results.append(GrabResult("banned", drop, None, left))
                continue
            status, seq = answers[next(it)]
            coupon = coupon_id_of(drop_id, seq) if seq else None
            if status in ("granted", "replayed") and coupon is not None:
                granted.setdefault(user_id, {})[coupon] = now
                results.append(GrabResult("granted", drop, coupon, left,
                                          replayed=status == "replayed"))
            elif status in GRAB_STATUSES:
                results.append(GrabResult(status, drop, coupon, left))  # type: ignore[arg-type]
            else:
                results.append(CouponError(f"coupon_grab.lua answered {status!r}"))
        if allowed and left == 0:
            self._gone_news.add(drop_id)
        if granted:
            ttl_s = self._retention_s(drop)
            async with self._redis.pipeline(transaction=False) as pipe:
                for user_id, coupons in granted.items():
                    # NX: a replayed grab keeps the time of the first.
                    pipe.zadd(keys.coupon_wallet(user_id), coupons, nx=True)
                    pipe.expire(keys.coupon_wallet(user_id), keys.COUPON_RETENTION_S)
                for key in (keys.coupon_grabbed(drop_id), keys.coupon_requests(drop_id),
                            keys.coupon_owners(drop_id)):
                    pipe.expire(key, ttl_s)
                await pipe.execute()
            self.changed.add(drop_id)
        return results

    # wallets ---------------------------------------------------------------------------------

    async def wallet(self, user: User) -> list[dict[str, Any]]:
        """The user's coupons, newest first: each with its terms, ``state`` (``unused``,
        ``used`` by ``order``, ``expired``) and validity."""
        raw = await self._redis.zrevrange(keys.coupon_wallet(user.id), 0, 199, withscores=True)
        now = self._now_ms()
        out = []
        for member, score in cast(list[tuple[bytes, float]], raw):
            coupon_id = text_of(member)
            try:
                terms = await self.terms(coupon_id)
            except (UnknownCouponId, UnknownDrop):
                continue
            drop = await self.get(coupon_id.rpartition(".")[0])
            state = ("used" if terms.used_by is not None
                     else "expired" if now >= terms.expires_at else "unused")
            out.append({"id": coupon_id, "drop": drop.id, "room": drop.room_id,
                        "anchor": drop.anchor_id, **drop.terms_public(),
                        "granted_at": int(score), "state": state, "order": terms.used_by})
        return out

    async def terms(self, coupon_id: str) -> CouponTerms:
        parts = split_coupon_id(coupon_id)
        if parts is None:
            raise UnknownCouponId(str(coupon_id))
        drop_id, seq = parts
        try:
            drop = await self.get(drop_id)
        except UnknownDrop:
            raise UnknownCouponId(coupon_id) from None
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.hget(keys.coupon_owners(drop_id), seq)
            pipe.hget(keys.coupon_used(drop_id), seq)
            owner, used = await pipe.execute()
        if owner is None:
            raise UnknownCouponId(coupon_id)
        return CouponTerms(id=coupon_id, user_id=text_of(owner), room_id=drop.room_id,
                           off_cents=drop.off_cents, percent_off=drop.percent_off,
                           min_spend_cents=drop.min_spend_cents, expires_at=drop.expires_at,
                           used_by=None if used is None else text_of(used))

    async def usable(self, user_id: str, room_id: str, now_ms: int) -> list[CouponTerms]:
        found = []
        for member in await self._redis.zrevrange(keys.coupon_wallet(user_id), 0, 199):
            coupon_id = text_of(member)
            parts = split_coupon_id(coupon_id)
            if parts is None:
                continue
            try:
                drop = await self.get(parts[0])
            except UnknownDrop:
                continue
            if drop.room_id != room_id or now_ms >= drop.expires_at:
                continue
            with contextlib.suppress(UnknownCouponId):
                terms = await self.terms(coupon_id)
                if terms.used_by is None and terms.user_id == user_id:
                    found.append(terms)
        return found

    async def use(self, coupon_id: str, user_id: str, order_id: str, now_ms: int) -> None:
        parts = split_coupon_id(coupon_id)
        if parts is None:
            raise orders.UnknownCoupon(str(coupon_id))
        drop_id, seq = parts
        status, detail = await self._use(
            keys=[keys.coupon_drop(drop_id), keys.coupon_owners(drop_id),
                  keys.coupon_used(drop_id)],
            args=[seq, user_id, order_id, now_ms])
        status, detail = text_of(status), text_of(detail)
        if status == "ok":
            drop = await self.get(drop_id)
            await self._redis.expire(keys.coupon_used(drop_id), self._retention_s(drop))
            return
        if status == "unknown":
            raise orders.UnknownCoupon(coupon_id)
        if status == "not_yours":
            raise orders.CouponNotYours(coupon_id)
        if status == "used":
            raise orders.CouponUsed(coupon_id, detail)
        if status == "expired":
            raise orders.CouponExpired(coupon_id, int(detail))
        raise CouponError(f"coupon_use.lua answered {status!r}")

    async def give_back(self, coupon_id: str, order_id: str) -> bool:
        parts = split_coupon_id(coupon_id)
        if parts is None:
            return False
        drop_id, seq = parts
        return bool(await self._give_back(keys=[keys.coupon_used(drop_id)],
                                          args=[seq, order_id]))

    # pushes ----------------------------------------------------------------------------------

    async def push(self, drop_id: str, *, force: bool = False) -> None:
        """Push the drop to its room when what the room saw changed, whichever process gets
        here first (the count is read now, so pushes never go back)."""
        drop = await self.get(drop_id)
        left = await self.left(drop_id)
        view = self.view(drop, left)
        signature = f"{view['status']}:{left}"
        previous = await self._redis.set(keys.coupon_pushed(drop_id), signature, get=True,
                                         ex=keys.COUPON_RETENTION_S)
        if force or previous is None or text_of(previous) != signature:
            await self._emit("coupon", view, drop.room_id)

    async def push_changed(self) -> None:
        """Push the count of every drop grabbed from here since its last push, once its room's
        pace allows (a drop that is gone: at once)."""
        changed, self.changed = self.changed, set()
        gone, self._gone_news = self._gone_news, set()
        now = self._monotonic() if self._monotonic else asyncio.get_running_loop().time()
        for drop_id in sorted(changed | gone):
            if drop_id not in gone and now < self._next_push.get(drop_id, 0.0):
                self.changed.add(drop_id)  # its turn comes
                continue
            if len(self._next_push) >= _MAX_CACHED_DROPS:
                self._next_push.clear()
            drop = await self.get(drop_id)
            self._next_push[drop_id] = now + self._pace_s(drop.room_id)
            await self.push(drop_id)

    def _pace_s(self, room_id: str) -> float:
        members = self._room_size(room_id) if self._room_size is not None else 0
        if members <= self.BIG_ROOM_MEMBERS:
            return self.PUSH_INTERVAL_S
        return min(self.MAX_BIG_ROOM_INTERVAL_S, 0.5 * members / self.BIG_ROOM_MEMBERS)

    async def push_expired(self) -> None:
        """The drops whose time is up: each pushed once (``expired``), by the process that
        takes it off the due list."""
        due = await self._redis.zrangebyscore(keys.COUPONS_DUE, "-inf", self._now_ms(),
                                              start=0, num=50)
        for raw in due:
            drop_id = text_of(raw)
            if await self._redis.zrem(keys.COUPONS_DUE, drop_id):
                with contextlib.suppress(UnknownDrop):
                    await self.push(drop_id)


class GrabQueueFull(LiveroomError):
    code = "rate_limited"
    http_status = 429

    def __init__(self) -> None:
        super().__init__("too many grabs waiting; try again in a moment")


class CouponWalletAdapter:
    """``orders.CouponWallet`` over the desk: what checkout needs of the buyers' coupons."""

    def __init__(self, desk: CouponDesk) -> None:
        self._desk = desk

    async def usable(self, user_id: str, room_id: str, now_ms: int) -> list[CouponTerms]:
        return await self._desk.usable(user_id, room_id, now_ms)

    async def terms(self, coupon_id: str) -> CouponTerms:
        try:
            return await self._desk.terms(coupon_id)
        except UnknownCouponId:
            raise orders.UnknownCoupon(coupon_id) from None

    async def use(self, coupon_id: str, user_id: str, order_id: str, now_ms: int) -> None:
        await self._desk.use(coupon_id, user_id, order_id, now_ms)

    async def give_back(self, coupon_id: str, order_id: str) -> bool:
        return await self._desk.give_back(coupon_id, order_id)


class CouponPusher(PeriodicLoop):
    """Owner of the loop that pushes ``coupon`` to rooms: each drop's count at most once per
    interval however many grabs land, and each drop's end when its time is up."""

    name = "coupon-pusher"

    def __init__(self, desk: CouponDesk, interval_s: float = CouponDesk.PUSH_INTERVAL_S) -> None:
        super().__init__(interval_s)
        self.desk = desk

    async def tick(self) -> None:
        await self.desk.push_changed()
        await self.desk.push_expired()
