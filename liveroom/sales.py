"""Flash sales seen from the room: creating them for a room's anchor, the room's sale state, and
the coalesced ``stock`` / ``sale`` pushes. The stock itself is ``inventory``'s business."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import redis.asyncio as aioredis

from inventory import InventoryService, Sale, SaleSpec, StockLevel, UnknownSale

from . import keys
from .bus import ControlBus
from .catalog import Catalog, Room, text_of
from .exceptions import Forbidden
from .identity import User
from .loops import cancelling
from .lots import hold_s_of, lot_view
from .payload import Payload
from .rooms import bans_in_force

__all__ = ["SaleDesk", "SoldOutRelay", "StockBroadcaster", "sale_view"]

log = logging.getLogger("liveroom.sales")
Emit = Callable[[str, Any, str], Awaitable[None]]
EmitTogether = Callable[[Sequence[tuple[str, Any]], str], Awaitable[None]]
# The ``sale`` push for a sale that just sold out, or None when it is not this process's to send.
SoldOutNews = Callable[[str], Awaitable[dict[str, Any] | None]]
# The ``sale`` push of a sale's change, or None when it is not this process's to send.
ClaimedView = Callable[[Sale], Awaitable[dict[str, Any] | None]]

# The control-bus message that carries sold-out marks between processes (``SoldOutRelay``).
SOLD_OUT_MESSAGE = "sale_sold_out"
# Sales whose last stock push the broadcaster remembers (for pacing and "units back").
MAX_PACED_SALES = 4_096
MAX_COUNTDOWN_S = 86_400
MAX_DURATION_S = 86_400


def sale_view(sale: Sale, server_time: int) -> dict[str, Any]:
    return {
        **lot_view(sale, sale.status, sale.ends_at, server_time),
        "category": sale.category,
        "brand": sale.brand,
        "stock": sale.stock,
        "remaining": sale.remaining,
        "held": sale.held,
        "sold": sale.sold,
        "price_cents": sale.price_cents,
        "per_user_limit": sale.per_user_limit,
    }


def _loop_time() -> float:
    return asyncio.get_running_loop().time()


class SaleDesk:
    """A room's flash sales: creating and ending them for the room's anchor, reading them as
    clients see them, announcing their changes to the room once, and carrying the room's bans
    to them (``BuyerBans``)."""

    def __init__(self, redis: aioredis.Redis, catalog: Catalog, inventory: InventoryService,
                 now_ms: Callable[[], int], emit: Emit) -> None:
        self._redis = redis
        self._catalog = catalog
        self._inventory = inventory
        self._now_ms = now_ms
        self._emit = emit

    async def view(self, sale: Sale) -> dict[str, Any]:
        """The sale as clients see it, with its product's trust badges read now: a badge
        granted, revoked or expired since the sale began shows in every later read (the
        ``badges`` push carries each change live)."""
        return (await self.views([sale]))[0]

    async def views(self, sales: Sequence[Sale]) -> list[dict[str, Any]]:
        """``view`` of each sale, with the badges of all their products read in one trip to the
        certificate store (a sale keeps its product's id, anchor and category, which never
        change)."""
        now = self._now_ms()
        subjects = {sale.product_id: (sale.product_id, sale.anchor_id, sale.category)
                    for sale in sales}
        badges = await self._catalog.badges_of(list(subjects.values()))
        views = []
        for sale in sales:
            view = sale_view(sale, now)
            view["badges"] = badges.get(sale.product_id, [])
            views.append(view)
        return views

    async def push_view(self, sale: Sale) -> dict[str, Any]:
        """``view`` for the ``sale`` push of a status change, which must reach the room even
        when the badges cannot be read now: then the push carries ``badges: []`` (the next read
        or ``badges`` push brings them back)."""
        try:
            return await self.view(sale)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.warning("badges of sale %s unreadable; pushing it without them", sale.id,
                        exc_info=True)
            view = sale_view(sale, self._now_ms())
            view["badges"] = []
            return view

    async def create(self, anchor: User, room_id: str, payload: Payload) -> Sale:
        product_id = payload.ident("product_id")
        stock = payload.integer("stock", minimum=1, maximum=1_000_000)
        price = payload.integer("price_cents", minimum=1)
        limit = payload.integer("per_user_limit", minimum=1, maximum=1_000_000)
        starts_in = payload.integer("starts_in_s", minimum=0, maximum=MAX_COUNTDOWN_S,
                                    required=False, default=0)
        duration = payload.integer("duration_s", minimum=1, maximum=MAX_DURATION_S)
        hold = hold_s_of(payload)
        room = await self._catalog.owned_room(anchor, room_id)
        product = await self._catalog.get_product(product_id)
        if product.anchor_id != room.anchor_id:
            raise Forbidden("a sale can only offer the anchor's own product")
        now = self._now_ms()
        starts_at = now + starts_in * 1000
        sale = await self._inventory.create_sale(SaleSpec(
            room_id=room.id, product_id=product.id, anchor_id=room.anchor_id,
            title=product.title, category=product.category, brand=product.brand,
            stock=stock, price_cents=price, per_user_limit=limit,
            starts_at_ms=starts_at, ends_at_ms=starts_at + duration * 1000, hold_ms=hold * 1000,
        ))
        # Before the room's index lists it, so a ban given meanwhile reaches it (ban_buyer).
        await self._inventory.set_buyer_bans(sale.id, await bans_in_force(
            self._redis, room.id, now))
        await self._redis.zadd(keys.room_sales(room.id), {sale.id: now})
        await self._catalog.note_product_in_room(product.id, room.id)
        return sale

    async def end(self, anchor: User, sale_id: str) -> Sale:
        sale = await self._inventory.get_sale(sale_id)
        await self._catalog.owned_room(anchor, sale.room_id, must_be_live=False)
        return await self._inventory.end_sale(sale_id, "anchor")

    async def end_room_sales(self, room_id: str) -> list[Sale]:
        """End every sale of the room that has not ended (the room itself ended)."""
        ended = []
        for raw in await self._redis.zrange(keys.room_sales(room_id), 0, -1):
            try:
                sale = await self._inventory.get_sale(text_of(raw))
            except UnknownSale:
                continue
            if sale.status != "ended":
                ended.append(await self._inventory.end_sale(sale.id, "room_ended"))
        return ended

    async def ban_buyer(self, room_id: str, user_id: str, until_ms: int) -> None:
        for sale_id in await self._redis.zrange(keys.room_sales(room_id), 0, -1):
            await self._inventory.set_buyer_bans(text_of(sale_id), {user_id: until_ms})

    async def unban_buyer(self, room_id: str, user_id: str) -> None:
        for sale_id in await self._redis.zrange(keys.room_sales(room_id), 0, -1):
            await self._inventory.lift_buyer_ban(text_of(sale_id), user_id)

    async def announce(self, sale: Sale) -> dict[str, Any]:
        """Push ``sale`` to its room now (once, whichever process gets here first) and return
        its view: a sale created or ended by its anchor. The sweeper's changes go through
        ``StockBroadcaster.announce``, which may pace them."""
        view = await self.push_view(sale)
        if await self.claim_push(sale):
            await self._emit("sale", view, sale.room_id)
        return view

    async def claimed_view(self, sale: Sale) -> dict[str, Any] | None:
        """The ``sale`` push of ``sale``'s change, or None when another process (or this one's
        other path) already has it: every sweeper of every process sees a status move, and the
        room should hear of it once. The view is built before the claim: one failing after the
        claim was won would leave the room without the news."""
        view = await self.push_view(sale)
        return view if await self.claim_push(sale) else None

    async def sold_out_news(self, sale_id: str) -> dict[str, Any] | None:
        """``claimed_view`` of a sale that just sold out: whichever path reports the sell-out
        first (a batch's answer or a sweep) pushes it."""
        return await self.claimed_view(await self._inventory.get_sale(sale_id))

    async def claim_push(self, sale: Sale) -> bool:
        """True if this process should push ``sale`` as it is now. A sale the room does not
        list (a lucky bag's prize sale, ``liveroom/lucky.py``) is never pushed as the room's
        sale."""
        if await self._redis.zscore(keys.room_sales(sale.room_id), sale.id) is None:
            return False
        signature = f"{sale.status}:{sale.remaining}:{sale.held}:{sale.sold}:{sale.ends_at}"
        previous = await self._redis.set(keys.sale_pushed(sale.id), signature, get=True,
                                         ex=keys.SALE_PUSHED_TTL_S)
        return previous is None or text_of(previous) != signature

    async def room_sales(self, room_id: str, limit: int = 20) -> list[Sale]:
        await self._catalog.get_room(room_id)
        ids = await self._redis.zrevrange(keys.room_sales(room_id), 0, limit - 1)
        sales = []
        for raw in ids:
            # A sale's keys expire some weeks after it ends; the room's index may outlive them.
            with contextlib.suppress(UnknownSale):
                sales.append(await self._inventory.get_sale(text_of(raw)))
        return sales

    async def room_state(self, room: Room) -> dict[str, Any]:
        """The ``sale`` field of the room state: the room's newest sale."""
        newest = await self._redis.zrevrange(keys.room_sales(room.id), 0, 0)
        if not newest:
            return {"sale": None}
        try:
            sale = await self._inventory.get_sale(text_of(newest[0]))
        except UnknownSale:
            return {"sale": None}
        return {"sale": await self.view(sale)}


class StockBroadcaster:
    """Owner of the loop that pushes ``stock`` to rooms, coalesced per sale.

    ``record`` is called synchronously after every stock change (thousands per second under a
    spike); the loop pushes the latest counters of each changed sale a few times per second. A
    sell-out, and units coming back to a sold-out sale, wake the loop at once, so buyers stop
    pressing a button that cannot succeed, or start again when it can.

    A big room is paced: each push to it is one write per member, on the same event loop that
    answers buys, and a viewer needs "a few left" and "sold out", not every unit. A sale whose
    room has ``room_size`` members gets a counters-only push at most every
    ``interval_s * room_size / BIG_ROOM_MEMBERS`` seconds (at least ``interval_s``, at most
    ``MAX_BIG_ROOM_INTERVAL_S``); the changes of status above are never held back.

    With ``sold_out_news`` (``SaleDesk.sold_out_news``) and ``emit_together``, a sell-out's
    ``sale`` push goes out with its ``stock`` push, in the same write to each member, instead of
    in a second fan-out a sweep later: in a big spike each fan-out is a loopback send per member
    while buys still wait.

    ``announce`` pushes a sale's other changes (the sweeper's: opening, holds expired, ended).
    In a big room a ``sale`` push of a live sale is paced like the counters and rides with the
    sale's next ``stock`` push: its news is only the opening, which every client already counts
    down to from ``starts_at`` and the server's clock, and at a popular opening the room's
    sockets are busy with the buys that opening starts. The first counters of a sale in a big
    room also wait one pace, so the buy second holds one fan-out (the sell-out), not three.
    """

    BIG_ROOM_MEMBERS = 1_000
    MAX_BIG_ROOM_INTERVAL_S = 2.0

    def __init__(self, emit: Emit, interval_s: float = 0.5, *,
                 emit_together: EmitTogether | None = None,
                 sold_out_news: SoldOutNews | None = None,
                 claimed_view: ClaimedView | None = None,
                 room_size: Callable[[str], int] | None = None,
                 clock: Callable[[], float] | None = None,
                 now_ms: Callable[[], int] | None = None) -> None:
        """``clock``: monotonic seconds the pacing is measured on (default: the event loop's);
        ``room_size``: a room's members served by this process (default: every room small);
        ``claimed_view``: ``SaleDesk.claimed_view``, for ``announce``; ``now_ms``: the server's
        clock, stamped as ``server_time`` on a ``sale`` push that was held back."""
        self._emit = emit
        self._emit_together = emit_together
        self._sold_out_news = sold_out_news
        self._claimed_view = claimed_view
        self._now_ms = now_ms
        self._room_size = room_size
        self._clock = clock or _loop_time
        self._interval_s = interval_s
        self._latest: dict[str, StockLevel] = {}
        # Per sale: when its room may next get a counters-only push, and what it last got.
        self._next_push: dict[str, float] = {}
        self._pushed_remaining: dict[str, int] = {}
        # Per sale of a big room: the ``sale`` push waiting to ride with its next ``stock`` push.
        self._carried: dict[str, tuple[str, dict[str, Any]]] = {}
        self._urgent = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def record(self, level: StockLevel) -> None:
        self._latest[level.sale_id] = level
        if self._is_news(level):
            self._urgent.set()

    def _is_news(self, level: StockLevel) -> bool:
        if level.remaining == 0:
            return level.status in ("sold_out", "ended")
        return self._pushed_remaining.get(level.sale_id) == 0  # units back after a sell-out

    async def announce(self, sale: Sale) -> None:
        """Push ``sale``'s change to its room once (whichever process claims it): at once, or
        in a big room while the sale is live, with its next paced ``stock`` push."""
        if self._claimed_view is None:
            raise RuntimeError("StockBroadcaster.announce needs claimed_view")
        view = await self._claimed_view(sale)
        if view is None:
            return
        if sale.status == "live" and self._is_big(sale.room_id):
            self._carried[sale.id] = (sale.room_id, view)
            self._first_seen(sale.id, sale.room_id)
            return
        self._carried.pop(sale.id, None)  # this view is newer
        await self._emit("sale", view, sale.room_id)

    def _is_big(self, room_id: str) -> bool:
        members = self._room_size(room_id) if self._room_size is not None else 0
        return members > self.BIG_ROOM_MEMBERS

    def _first_seen(self, sale_id: str, room_id: str) -> None:
        if sale_id not in self._next_push and self._is_big(room_id):
            self._next_push[sale_id] = self._clock() + self._pace_s(room_id)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="stock-broadcaster")

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._urgent.wait(), self._interval_s)
            self._urgent.clear()
            try:
                await self.flush()
            except asyncio.CancelledError:
                raise
            except Exception:
                if not cancelling():
                    log.warning("stock push failed", exc_info=True)
            if cancelling():  # a cancellation a library swallowed (see liveroom/loops.py)
                raise asyncio.CancelledError()

    async def flush(self, *, everything: bool = False) -> None:
        """Push what is due (with ``everything``, all that is waiting)."""
        if not self._latest and not self._carried:
            return
        latest, self._latest = self._latest, {}
        now = self._clock()
        for sale_id in [*latest, *(s for s in self._carried if s not in latest)]:
            level = latest.get(sale_id)
            if level is not None:
                self._first_seen(sale_id, level.room_id)
            if not (everything or (level is not None and self._is_news(level))
                    # (a timer may fire a little early: a tenth of the interval's slack)
                    or now + self._interval_s / 10 >= self._next_push.get(sale_id, 0.0)):
                if level is not None:
                    self._latest.setdefault(sale_id, level)  # newer counters may replace it
                continue
            await self._push(sale_id, level, now)

    async def _push(self, sale_id: str, level: StockLevel | None, now: float) -> None:
        carried = self._carried.pop(sale_id, None)
        if level is None:
            assert carried is not None
            room_id, view = carried
            self._next_push[sale_id] = now + self._pace_s(room_id)
            await self._emit("sale", self._restamped(view), room_id)
            return
        self._next_push[sale_id] = now + self._pace_s(level.room_id)
        self._pushed_remaining[sale_id] = level.remaining
        if len(self._pushed_remaining) > MAX_PACED_SALES:
            self._forget_oldest()
        events: list[tuple[str, Any]] = [("stock", level.to_public())]
        news = await self._news_of(level)
        if news is not None:
            events.append(("sale", news))  # the sell-out supersedes a carried view
        elif carried is not None:
            # The view first: the counters after it are the newer ones.
            events.insert(0, ("sale", self._restamped(carried[1])))
        if len(events) == 1:
            await self._emit("stock", events[0][1], level.room_id)
        elif self._emit_together is not None:
            await self._emit_together(events, level.room_id)
        else:
            for event, data in events:
                await self._emit(event, data, level.room_id)

    def _restamped(self, view: dict[str, Any]) -> dict[str, Any]:
        # Held back for a pace: a client adopting its ``server_time`` must not fall behind.
        return view if self._now_ms is None else {**view, "server_time": self._now_ms()}

    def _pace_s(self, room_id: str) -> float:
        members = self._room_size(room_id) if self._room_size is not None else 0
        if members <= self.BIG_ROOM_MEMBERS:
            return self._interval_s
        return min(max(self._interval_s, self.MAX_BIG_ROOM_INTERVAL_S),
                   self._interval_s * members / self.BIG_ROOM_MEMBERS)

    def _forget_oldest(self) -> None:
        for table in (self._pushed_remaining, self._next_push):
            for sale_id in list(table)[:len(table) - MAX_PACED_SALES]:
                del table[sale_id]

    async def _news_of(self, level: StockLevel) -> dict[str, Any] | None:
        if (self._sold_out_news is None or self._emit_together is None
                or level.status != "sold_out" or level.remaining != 0):
            return None
        try:
            return await self._sold_out_news(level.sale_id)
        except asyncio.CancelledError:
            raise
        except Exception:
            # The sweeper's next pass still pushes the status change.
            log.warning("sold-out news of sale %s unavailable", level.sale_id, exc_info=True)
            return None

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self.flush(everything=True)


class SoldOutRelay:
    """Carries sold-out marks between processes over the control bus.

    The process that sells a sale's last unit marks it at once (``inventory``'s sold-out
    marks) and tells the others, so their buyers hear ``sold_out`` without Redis too; a process
    whose mark is cleared by units coming back tells the others to clear theirs. A message that
    is lost costs at most a mark's age (``inventory._soldout``).
    """

    def __init__(self, bus: ControlBus, inventory: InventoryService, origin: str) -> None:
        self._bus = bus
        self._inventory = inventory
        self._origin = origin
        self._sending: set[asyncio.Task[None]] = set()
        bus.on(SOLD_OUT_MESSAGE, self._heard)

    def tell(self, sale_id: str, sold_out: bool) -> None:
        task = asyncio.get_running_loop().create_task(self._bus.publish(SOLD_OUT_MESSAGE, {
            "sale": sale_id, "sold_out": sold_out, "origin": self._origin}))
        self._sending.add(task)
        task.add_done_callback(self._sent)

    def _sent(self, task: asyncio.Task[None]) -> None:
        self._sending.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning("sold-out news not sent", exc_info=task.exception())

    async def _heard(self, payload: dict[str, Any]) -> None:
        sale_id = payload.get("sale")
        if payload.get("origin") == self._origin or type(sale_id) is not str:
            return
        if payload.get("sold_out") is True:
            self._inventory.hear_sold_out(sale_id)
        else:
            self._inventory.hear_units_back(sale_id)

    async def close(self) -> None:
        sending = list(self._sending)
        for task in sending:
            task.cancel()
        for task in sending:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
