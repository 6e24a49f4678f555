"""InventoryService: flash-sale stock in Redis. Every change is one Lua step (see lua/)."""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from functools import partial
from typing import Any, cast

import msgpack
import redis.asyncio as aioredis

from . import keys
from ._batcher import (
    BATCH_WINDOW_S,
    MAX_BATCH_WINDOW_S,
    TARGET_BATCH,
    BuyBatcher,
    BuyCallback,
    BuyRequest,
)
from ._models import (
    BUY_STATUSES,
    RESERVATION_STATES,
    BuyResult,
    Hold,
    Reservation,
    ReservationState,
    Sale,
    SaleSpec,
    SaleStatus,
    StockLevel,
    sale_status,
)
from ._scripts import ScriptCalls, ScriptRunner, script_calls_for, store_errors
from ._soldout import MARK_MAX_AGE_MS, SoldOutMarks
from .exceptions import (
    HoldExpired,
    HoldNotActive,
    InvalidSale,
    InventoryError,
    NotCommitted,
    NotHolder,
    StoreUnavailable,
    UnknownReservation,
    UnknownSale,
)

__all__ = ["InventoryService", "SweepOutcome", "wall_clock_ms"]

log = logging.getLogger(__name__)

MAX_STOCK = 1_000_000
MAX_PRICE_CENTS = 100_000_000_00  # 100 million in whole units
MAX_PER_USER_LIMIT = 10_000
MAX_QTY = 10_000
MIN_HOLD_MS = 1_000
MAX_HOLD_MS = 24 * 3600 * 1000
MAX_DURATION_MS = 7 * 24 * 3600 * 1000
MAX_REQUEST_ID = 64
MAX_ID = 64
MAX_TITLE = 200
MAX_LABEL = 64
# How long the sweeper keeps visiting a listed id whose sale does not exist before it drops it.
# ``create_sale`` lists an id a moment before its script creates the sale; an id dropped in that
# moment would leave a live sale that no sweeper visits and whose hand-off entries orders stops
# reading (docs/inventory.md). Only an id whose creation never happened stays unknown this long.
UNKNOWN_SALE_GRACE_MS = 60_000
MAX_REASON = 200
# Sale ids known to be well formed (a bound on what hostile ids can make it hold).
_MAX_VALID_SALE_IDS = 4096
# While buys are confirmed by a replica, the primary's replicas are counted again at most this
# often (a replica that appears starts confirming within it), and at once after a batch that
# was not confirmed or met a lost connection (a failover).
REPLICA_CHECK_S = 1.0


def wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


class SweepOutcome:
    """What one expiry pass did to one sale."""

    __slots__ = ("done", "expired", "more", "sale_id", "stock")

    def __init__(
        self, sale_id: str, expired: int, stock: StockLevel | None, done: bool, more: bool
    ) -> None:
        self.sale_id = sale_id
        self.expired = expired
        # None when the sale no longer exists.
        self.stock = stock
        self.done = done
        self.more = more


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _stock(raw: Sequence[Any]) -> StockLevel:
    return StockLevel(
        sale_id=_text(raw[0]),
        room_id=_text(raw[1]),
        remaining=int(raw[2]),
        held=int(raw[3]),
        sold=int(raw[4]),
        status=cast(SaleStatus, _text(raw[5])),
    )


def _reservation(raw: dict[str, Any], stock: StockLevel | None = None) -> Reservation:
    state = _text(raw["state"])
    if state not in RESERVATION_STATES:
        raise InventoryError(f"corrupt reservation record: state {state!r}")
    return Reservation(
        id=raw["reservation"],
        sale_id=raw["sale"],
        room_id=raw["room"],
        product_id=raw["product"],
        anchor_id=raw["anchor"],
        user_id=raw["user"],
        qty=int(raw["qty"]),
        price_cents=int(raw["price_cents"]),
        title=raw["title"],
        category=raw["category"],
        brand=raw["brand"],
        expires_at=int(raw["expires_at"]),
        created_at=int(raw["ts"]),
        state=cast(ReservationState, state),
        stock=stock,
    )


def _settle(future: asyncio.Future[BuyResult], outcome: BuyResult | Exception) -> None:
    if future.done():  # the caller stopped waiting
        return
    if isinstance(outcome, Exception):
        future.set_exception(outcome)
    else:
        future.set_result(outcome)


def _check_id(field: str, value: object) -> str:
    if not isinstance(value, str) or not 1 <= len(value) <= MAX_ID or not value.isprintable():
        raise InvalidSale(field, f"must be a non-empty printable string of at most {MAX_ID} chars")
    return value


def _check_text(field: str, value: object, max_len: int, *, allow_empty: bool) -> str:
    if not isinstance(value, str) or len(value) > max_len or (not value and not allow_empty):
        need = "a" if allow_empty else "a non-empty"
        raise InvalidSale(field, f"must be {need} string of at most {max_len} chars")
    return value


def _check_int(field: str, value: object, low: int, high: int) -> int:
    # bool is an int subclass; True units of stock is a bug in the caller, not a number.
    if type(value) is not int or not low <= value <= high:
        raise InvalidSale(field, f"must be an integer from {low} to {high}, got {value!r}")
    return value


def _sale_id_of(reservation_id: object) -> str:
    if not isinstance(reservation_id, str):
        raise UnknownReservation(str(reservation_id))
    match = keys.RESERVATION_ID_RE.match(reservation_id)
    if match is None:
        raise UnknownReservation(str(reservation_id))
    return match.group(1)


class InventoryService:
    """Sale stock, holds and the hand-off stream.

    ``client`` must be a ``redis.asyncio.Redis`` with ``decode_responses=False``; the scripts run
    on ``script_calls`` (default: a lean connection to the same server, see ``_connection``).
    ``buy()`` needs ``start()``; ``close()`` decides the buys already accepted and stops buying;
    ``disconnect()`` then closes the script connection. ``on_stock_change`` (optional,
    synchronous, must not block) is called with the new counters after every step that changed a
    sale (or may have: a call sent twice), so the edge can coalesce ``stock`` pushes.

    With ``confirm_with_replica``, whenever the primary has a replica in sync (``INFO
    replication``, counted at start, after a failover and every ``REPLICA_CHECK_S``), each buy
    batch is followed on its connection by a fence write and ``WAIT 1 confirm_timeout_ms``: its
    ``reserved`` answers are given only once a replica has them, so a failover cannot lose a
    reservation a buyer was told of. When no replica confirms in time, those buys raise
    ``StoreUnavailable`` (the hold stays on the primary: a retry with the same request id gets
    it, confirmed, or it expires); the batch's other answers promise nothing and are given as
    they are. A commit (the sale behind an order) is confirmed the same way: unconfirmed, it
    raises ``StoreUnavailable`` and the checkout is retried.
    """

    def __init__(
        self,
        client: aioredis.Redis,
        *,
        now_ms: Callable[[], int] = wall_clock_ms,
        batch_window_s: float = BATCH_WINDOW_S,
        max_batch_window_s: float = MAX_BATCH_WINDOW_S,
        target_batch: int = TARGET_BATCH,
        max_batch: int = 512,
        max_pending: int = 20_000,
        max_inflight: int = 4,
        on_stock_change: Callable[[StockLevel], None] | None = None,
        retention_ms: int = keys.SALE_RETENTION_MS,
        script_calls: ScriptCalls | None = None,
        confirm_with_replica: bool = False,
        confirm_timeout_ms: int = 500,
        sold_out_mark_ms: int = MARK_MAX_AGE_MS,
        on_sold_out_news: Callable[[str, bool], None] | None = None,
    ) -> None:
        if confirm_timeout_ms < 1:
            raise ValueError("confirm_timeout_ms must be positive")
        self._client = client
        self._confirm = confirm_with_replica
        self._confirm_timeout_ms = confirm_timeout_ms
        self._replicas = 0  # the primary's replicas, as last counted
        self._replicas_counted: float | None = None  # loop time; None: count before next batch
        self.unconfirmed_batches = 0
        self._now_ms = now_ms
        # Scripts (every buy batch among them) go over their own lean connection to the same
        # Redis unless the caller brings its own.
        self._scripts = ScriptRunner(script_calls or script_calls_for(client))
        self._on_stock_change = on_stock_change
        self._retention_ms = retention_ms
        # Listed ids found without a sale: when this process first found each so.
        self._unknown_since: dict[str, int] = {}
        self._valid_sale_ids: set[str] = set()
        # One packer for every batch: msgpack.packb() builds a Packer, with a 256 KiB buffer,
        # per call.
        self._pack_requests = msgpack.Packer(use_bin_type=False).pack
        self._batcher = BuyBatcher(
            self._decide_group,
            window_s=batch_window_s,
            max_window_s=max_batch_window_s,
            target_batch=target_batch,
            max_batch=max_batch,
            max_pending=max_pending,
            max_inflight=max_inflight,
        )
        # Buys for a sale known to be sold out are answered here (``_soldout``); 0 turns it off.
        self._sold_out = SoldOutMarks(self._mark_of, now_ms, max_age_ms=sold_out_mark_ms)
        self._marks_sold_out = sold_out_mark_ms > 0
        self._on_sold_out_news = on_sold_out_news

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        await self._scripts.register()
        if self._confirm:
            await self._count_replicas()
        self._batcher.start()

    @property
    def confirming(self) -> bool:
        """Whether buy batches now wait for a replica's confirmation."""
        return self._confirm and self._replicas > 0

    async def _run_confirmed(self, name: str, sale: keys.SaleKeys,
                             args: list[str | int | bytes]) -> tuple[Any, bool, bool]:
        """Run a script, confirmed by a replica when that is on (see the class docstring):
        its reply, whether it may have been sent twice, and whether a replica has its effects
        (True when no confirmation is asked for)."""
        if self._confirm:
            counted = self._replicas_counted
            if counted is None or asyncio.get_running_loop().time() - counted > REPLICA_CHECK_S:
                await self._count_replicas()
        if not (self._confirm and self._replicas):
            reply, resent = await self._scripts.run_resent(name, sale, args)
            if resent:  # the primary may have changed
                self._replicas_counted = None
            return reply, resent, True
        reply, resent, replicas = await self._scripts.run_confirmed(
            name, sale, args, keys.WAIT_FENCE, 1, self._confirm_timeout_ms)
        if replicas < 1 or resent:  # the replica or the primary may have changed
            self._replicas_counted = None
        return reply, resent, replicas >= 1

    async def _count_replicas(self) -> None:
        before = self._replicas
        self._replicas = await self._scripts.replicas()
        self._replicas_counted = asyncio.get_running_loop().time()
        if (before > 0) != (self._replicas > 0):
            # Losing the replica is worth a warning; gaining one is news.
            log.log(logging.INFO if self._replicas else logging.WARNING,
                    "the Redis primary has %d replica(s) in sync: buy batches are %s",
                    self._replicas, "confirmed by a replica (WAIT)" if self._replicas else
                    "answered from the primary alone")

    async def close(self) -> None:
        """Stop taking buys and decide those already accepted. Scripts can still be run (the
        holds' sweeper, checkout) until ``disconnect()``."""
        await self._batcher.close()
        await self._sold_out.close()

    async def disconnect(self) -> None:
        """Close the script connection (after ``close()`` and everything that runs scripts)."""
        await self._scripts.close()

    @property
    def now_ms(self) -> int:
        return self._now_ms()

    # -- sales -------------------------------------------------------------------------------

    async def create_sale(self, spec: SaleSpec, *, free: bool = False) -> Sale:
        """A new sale. Only a ``free`` one (a giveaway's prize, handed to its winners' holds)
        may have a price of 0 cents."""
        now = self._now_ms()
        room_id = _check_id("room_id", spec.room_id)
        product_id = _check_id("product_id", spec.product_id)
        anchor_id = _check_id("anchor_id", spec.anchor_id)
        title = _check_text("title", spec.title, MAX_TITLE, allow_empty=False)
        category = _check_text("category", spec.category, MAX_LABEL, allow_empty=True)
        brand = _check_text("brand", spec.brand, MAX_LABEL, allow_empty=True)
        stock = _check_int("stock", spec.stock, 1, MAX_STOCK)
        price = _check_int("price_cents", spec.price_cents, 0 if free else 1,
                           MAX_PRICE_CENTS)
        limit = _check_int("per_user_limit", spec.per_user_limit, 1, MAX_PER_USER_LIMIT)
        hold_ms = _check_int("hold_ms", spec.hold_ms, MIN_HOLD_MS, MAX_HOLD_MS)
        starts_at = _check_int("starts_at_ms", spec.starts_at_ms, 0, 2**53)
        ends_at = _check_int("ends_at_ms", spec.ends_at_ms, 0, 2**53)
        if ends_at <= starts_at:
            raise InvalidSale("ends_at_ms", "the sale must end after it starts")
        if ends_at - starts_at > MAX_DURATION_MS:
            hours = MAX_DURATION_MS // 3_600_000
            raise InvalidSale("ends_at_ms", f"a sale lasts at most {hours} h")
        if ends_at <= now:
            raise InvalidSale("ends_at_ms", "the sale would already be over")
        fields: dict[str, str | int] = {
            "room": room_id,
            "product": product_id,
            "anchor": anchor_id,
            "title": title,
            "category": category,
            "brand": brand,
            "stock": stock,
            "price_cents": price,
            "per_user_limit": limit,
            "starts_at": starts_at,
            "ends_at": ends_at,
            "hold_ms": hold_ms,
            "remaining": stock,
            "held": 0,
            "sold": 0,
            "seq": 0,
            "created_at": now,
        }
        for _ in range(5):
            sale_id = "s_" + secrets.token_urlsafe(8)[:10]
            args: list[str | int] = ["id", sale_id]
            for name, value in fields.items():
                args += [name, value]
            # Registered for the sweeper before it exists: a sale that exists but is unknown to
            # the sweeper would keep expired holds forever, while an id without a sale is just
            # dropped by a sweep once UNKNOWN_SALE_GRACE_MS has passed (not at once: a sweep
            # between this and the script must not drop the sale being created).
            with store_errors():
                await self._client.sadd(keys.ACTIVE_SALES, sale_id)
                await self._client.sadd(keys.UNREAD_SALES, sale_id)
            reply = await self._scripts.run("create_sale", keys.sale_keys(sale_id), args)
            if reply[0] == "ok":
                return await self.get_sale(sale_id)
        raise InventoryError("could not allocate a fresh sale id")

    async def get_sale(self, sale_id: str) -> Sale:
        self._known_sale_id(sale_id)
        with store_errors():
            raw = await cast(
                Awaitable[dict[bytes, bytes]], self._client.hgetall(keys.sale_keys(sale_id).meta)
            )
        if not raw:
            raise UnknownSale(sale_id)
        meta = {k.decode(): v.decode() for k, v in raw.items()}
        now = self._now_ms()
        starts_at, ends_at = int(meta["starts_at"]), int(meta["ends_at"])
        remaining = int(meta["remaining"])
        status = sale_status(now, starts_at, ends_at, remaining)
        ended_reason = meta.get("ended_reason") or ("time" if status == "ended" else None)
        return Sale(
            id=sale_id,
            room_id=meta["room"],
            product_id=meta["product"],
            anchor_id=meta["anchor"],
            title=meta["title"],
            category=meta["category"],
            brand=meta["brand"],
            price_cents=int(meta["price_cents"]),
            per_user_limit=int(meta["per_user_limit"]),
            stock=int(meta["stock"]),
            remaining=remaining,
            held=int(meta["held"]),
            sold=int(meta["sold"]),
            status=status,
            starts_at=starts_at,
            ends_at=ends_at,
            hold_ms=int(meta["hold_ms"]),
            ended_reason=ended_reason,
        )

    async def end_sale(self, sale_id: str, reason: str = "anchor") -> Sale:
        """End the sale now: no new buys. Holds already made stay committable until they expire
        (the buyer was promised hold_ms); uncommitted ones return to stock as usual.
        Idempotent: ending an ended sale changes nothing and keeps the first reason."""
        self._known_sale_id(sale_id)
        reason = _check_text("reason", reason, MAX_REASON, allow_empty=False)
        reply, resent = await self._scripts.run_resent(
            "end_sale", keys.sale_keys(sale_id), [self._now_ms(), reason]
        )
        if reply[0] == "unknown_sale":
            raise UnknownSale(sale_id)
        if reply[1] or resent:
            self._notify(_stock(reply[2]))
        return await self.get_sale(sale_id)

    async def set_buyer_bans(self, sale_id: str, bans: Mapping[str, int]) -> None:
        """Bar each user of ``bans`` from buying in the sale until that time in ms (0: until
        lifted): their buys are answered ``banned``. Holds they already have stay theirs."""
        if not bans:
            return
        sale = keys.sale_keys(self._known_sale_id(sale_id))
        self._sold_out.let_through(sale_id, bans)
        with store_errors():
            async with self._client.pipeline(transaction=False) as pipe:
                pipe.hset(sale.bans, mapping={user: until for user, until in bans.items()})
                pipe.pttl(sale.meta)
                _, ttl_ms = await pipe.execute()
                if int(ttl_ms) > 0:  # an ended sale kept for its retention: keep in step
                    await self._client.pexpire(sale.bans, int(ttl_ms))

    async def lift_buyer_ban(self, sale_id: str, user_id: str) -> None:
        with store_errors():
            await self._client.hdel(keys.sale_keys(self._known_sale_id(sale_id)).bans, user_id)

    @staticmethod
    def _known_sale_id(sale_id: object) -> str:
        if not isinstance(sale_id, str) or not keys.SALE_ID_RE.match(sale_id):
            raise UnknownSale(str(sale_id))
        return sale_id

    # -- buying ------------------------------------------------------------------------------

    async def buy(self, sale_id: str, user_id: str, qty: int, request_id: str) -> BuyResult:
        """Reserve ``qty`` units for ``hold_ms``. Outcomes are statuses, not exceptions; an
        unknown sale raises UnknownSale. The same user and request_id always get the first
        answer (a ``not_started`` answer is not remembered: it took and decided nothing)."""
        future: asyncio.Future[BuyResult] = asyncio.get_running_loop().create_future()
        answer = self.buy_nowait(sale_id, user_id, qty, request_id, partial(_settle, future))
        return answer if answer is not None else await future

    def buy_nowait(self, sale_id: str, user_id: str, qty: int, request_id: str,
                   on_done: BuyCallback) -> BuyResult | None:
        """``buy()`` for a caller that would rather not wait in a coroutine (the socket edge,
        thousands of times a second). An answer known at once (``invalid``, ``rate_limited``,
        and ``sold_out`` for a sale this process has marked sold out: ``_soldout``) is
        returned; otherwise None is returned and ``on_done`` gets the BuyResult, or the
        exception ``buy()`` would raise, when its batch is decided. ``on_done`` runs in the
        batcher's task: it must be quick, and what it raises is logged, not propagated."""
        # Thousands of times a second: the sale id's pattern is matched once per sale.
        if type(sale_id) is not str or sale_id not in self._valid_sale_ids:
            if not isinstance(sale_id, str) or not keys.SALE_ID_RE.match(sale_id):
                raise UnknownSale(str(sale_id))
            if len(self._valid_sale_ids) >= _MAX_VALID_SALE_IDS:
                self._valid_sale_ids.clear()
            self._valid_sale_ids.add(sale_id)
        if (
            type(qty) is not int
            or not 1 <= qty <= MAX_QTY
            or type(request_id) is not str
            or not 1 <= len(request_id) <= MAX_REQUEST_ID
            or type(user_id) is not str
            or not 1 <= len(user_id) <= MAX_ID
            or ":" in user_id  # the request key is "user:request_id"
        ):
            return BuyResult("invalid", None, None)
        if self._sold_out.answers(sale_id, user_id, qty, request_id):
            return BuyResult("sold_out", None, 0)
        if not self._batcher.submit(sale_id, user_id, qty, request_id, on_done):
            return BuyResult("rate_limited", None, None)
        return None

    async def _decide_group(self, sale_id: str,
                            requests: Sequence[BuyRequest]) -> Sequence[BuyResult | Exception]:
        payload = self._pack_requests(requests)
        reply, resent, confirmed = await self._run_confirmed(
            "buy_batch", keys.sale_keys(sale_id), [self._now_ms(), payload])
        if not confirmed:
            self.unconfirmed_batches += 1
        if reply[0] == "unknown_sale":
            raise UnknownSale(sale_id)
        stock = _stock(reply[2])
        if not confirmed:
            return self._unconfirmed(reply, stock)
        results: list[BuyResult] = []
        append = results.append
        any_reserved = False
        remaining = stock.remaining
        # Positional arguments, no helpers: this loop runs once per buy.
        for status, reservation_id, qty, price, expires_at, replayed in reply[1]:
            if status == "reserved":
                append(BuyResult("reserved", Hold(reservation_id, qty, price, expires_at),
                                 remaining, replayed == 1, stock))
                # A batch sent twice answers its own first copy "replayed".
                any_reserved = any_reserved or not replayed or resent
            elif status in BUY_STATUSES:
                append(BuyResult(status, None, remaining, replayed == 1, stock))
            else:
                raise InventoryError(f"buy script answered an unknown status {status!r}")
        if any_reserved:
            self._notify(stock)
        else:
            self._stock_seen(stock)
        return results

    def _unconfirmed(self, reply: Any, stock: StockLevel) -> list[BuyResult | Exception]:
        """A batch no replica confirmed in time: its reservations are not promised (the buyer
        retries with the same request id); what else it answered promises nothing."""
        self._notify(stock)  # the primary's counters did change
        unavailable = StoreUnavailable(
            f"no replica confirmed the reservation within {self._confirm_timeout_ms} ms")
        results: list[BuyResult | Exception] = []
        for status, *_, replayed in reply[1]:
            if status == "reserved":
                results.append(unavailable)
            elif status in BUY_STATUSES:
                results.append(BuyResult(status, None, stock.remaining, replayed == 1, stock))
            else:
                raise InventoryError(f"buy script answered an unknown status {status!r}")
        return results

    # -- sold-out marks ----------------------------------------------------------------------

    def hear_sold_out(self, sale_id: str) -> None:
        """Another process saw ``sale_id`` sell out: mark it here too."""
        if self._marks_sold_out:
            self._sold_out.sold_out(sale_id)

    def hear_units_back(self, sale_id: str) -> None:
        """Another process saw units of ``sale_id`` come back: clear its mark here."""
        self._sold_out.forget(sale_id)

    def is_marked_sold_out(self, sale_id: str) -> bool:
        return self._sold_out.is_marked(sale_id)

    def _stock_seen(self, stock: StockLevel, sold_here: bool = False) -> None:
        """Keep the sold-out mark of ``stock``'s sale in step with its counters; tell other
        processes of a sell-out this process made and of units back where a mark stood."""
        if stock.status == "sold_out" and stock.remaining == 0:
            if self._marks_sold_out and self._sold_out.sold_out(stock.sale_id) and sold_here:
                self._tell(stock.sale_id, True)
        elif self._sold_out.forget(stock.sale_id):
            self._tell(stock.sale_id, False)

    def _tell(self, sale_id: str, sold_out: bool) -> None:
        if self._on_sold_out_news is None:
            return
        try:
            self._on_sold_out_news(sale_id, sold_out)
        except Exception:
            log.exception("on_sold_out_news failed for sale %s", sale_id)

    async def _mark_of(self, sale_id: str) -> tuple[set[str], int]:
        """What a sold-out mark needs (``_soldout``): holders and banned buyers, and the
        per-person limit."""
        sale = keys.sale_keys(sale_id)
        with store_errors():
            async with self._client.pipeline(transaction=False) as pipe:
                pipe.hkeys(sale.users)
                pipe.hkeys(sale.bans)
                pipe.hget(sale.meta, "per_user_limit")
                holders, banned, limit = await pipe.execute()
        return {user.decode() for user in (*holders, *banned)}, int(limit or 0)

    # -- holds -------------------------------------------------------------------------------

    async def get_reservation(self, reservation_id: str) -> Reservation:
        sale_id = _sale_id_of(reservation_id)
        with store_errors():
            raw = await cast(
                Awaitable[bytes | None],
                self._client.hget(keys.sale_keys(sale_id).res, reservation_id),
            )
        if raw is None:
            raise UnknownReservation(reservation_id)
        return _reservation(msgpack.unpackb(raw, raw=False))

    async def commit(self, reservation_id: str, user_id: str) -> Reservation:
        """held -> committed (sold). Idempotent for the holder. Raises HoldExpired from the
        hold's expires_at on (its stock is returned in the same step), NotHolder, HoldNotActive
        (released or restocked), UnknownReservation."""
        reservation = await self._settle("commit", reservation_id, [reservation_id, user_id])
        return reservation

    async def release(self, reservation_id: str, user_id: str) -> Reservation:
        """held -> released: the stock returns at once. Idempotent: a hold already released or
        expired is returned unchanged. Raises NotHolder, HoldNotActive (committed or
        restocked), UnknownReservation."""
        return await self._settle("release", reservation_id, [reservation_id, user_id])

    async def restock(self, reservation_id: str) -> bool:
        """committed -> restocked: a sold unit returns to the sale and the buyer's count drops.
        True when restocked (now or before); False, changing nothing, once the sale has ended.
        Raises NotCommitted (never sold), UnknownReservation."""
        sale_id = _sale_id_of(reservation_id)
        reply, resent = await self._scripts.run_resent(
            "restock", keys.sale_keys(sale_id), [reservation_id, self._now_ms()]
        )
        code = reply[0]
        if code == "unknown_reservation":
            raise UnknownReservation(reservation_id)
        if reply[3] or (resent and code == "ok"):
            self._notify(_stock(reply[2]))
        if code == "not_committed":
            raise NotCommitted(reservation_id, reply[1]["state"])
        return bool(code == "ok")

    async def _settle(self, script: str, reservation_id: str, args: list[str | int]) -> Reservation:
        sale_id = _sale_id_of(reservation_id)
        # A sale (commit) is confirmed by a replica like a reservation: an order placed on a
        # commit that a failover lost would sell a unit that returned to stock.
        if script == "commit":
            reply, resent, confirmed = await self._run_confirmed(
                script, keys.sale_keys(sale_id), [*args, self._now_ms()])
        else:
            reply, resent = await self._scripts.run_resent(
                script, keys.sale_keys(sale_id), [*args, self._now_ms()])
            confirmed = True
        code = reply[0]
        if code == "unknown_reservation":
            raise UnknownReservation(reservation_id)
        if code == "not_holder":
            raise NotHolder(reservation_id, str(args[1]))
        stock = _stock(reply[2])
        if reply[3] or resent:
            self._notify(stock)
        reservation = _reservation(reply[1], stock)
        if not confirmed and code == "ok":
            # The caller retries (the commit is idempotent for the holder) or reconciles.
            raise StoreUnavailable(
                f"no replica confirmed the sale within {self._confirm_timeout_ms} ms")
        if code == "hold_expired":
            raise HoldExpired(reservation_id, reservation.expires_at)
        if code == "hold_not_active":
            raise HoldNotActive(reservation_id, reservation.state)
        return reservation

    # -- expiry (driven by HoldSweeper) ------------------------------------------------------

    async def active_sale_ids(self) -> list[str]:
        with store_errors():
            members = await cast(Awaitable[set[bytes]], self._client.smembers(keys.ACTIVE_SALES))
        return sorted(m.decode() for m in members)

    async def expire_holds(self, sale_id: str, limit: int = 256) -> SweepOutcome:
        """Return this sale's holds whose time is up to stock, at most ``limit`` of them. Once
        the sale has ended with no hold left it leaves the active set and its keys get the
        retention TTL. A listed id without a sale leaves it once it has been found so for
        ``UNKNOWN_SALE_GRACE_MS``."""
        now = self._now_ms()
        reply = await self._scripts.run(
            "expire_holds", keys.sale_keys(sale_id), [now, limit, self._retention_ms]
        )
        if reply[0] == "unknown_sale":
            # Perhaps being created right now (listed first, then created): dropped only once
            # it has stayed unknown for the grace.
            since = self._unknown_since.setdefault(sale_id, now)
            if now - since < UNKNOWN_SALE_GRACE_MS:
                return SweepOutcome(sale_id, 0, None, done=False, more=False)
            with store_errors():
                await self._client.srem(keys.ACTIVE_SALES, sale_id)
            self._unknown_since.pop(sale_id, None)
            return SweepOutcome(sale_id, 0, None, done=True, more=False)
        self._unknown_since.pop(sale_id, None)
        _, expired, raw_stock, done, more = reply
        stock = _stock(raw_stock)
        if expired:
            self._notify(stock)
        if done:
            with store_errors():
                await self._client.srem(keys.ACTIVE_SALES, sale_id)
        return SweepOutcome(sale_id, int(expired), stock, done=bool(done), more=bool(more))

    def _notify(self, stock: StockLevel) -> None:
        self._stock_seen(stock, sold_here=True)
        if self._on_stock_change is None:
            return
        try:
            self._on_stock_change(stock)
        except Exception:
            log.exception("on_stock_change failed for sale %s", stock.sale_id)
