"""``OrderStore`` on a PostgreSQL server shared by every node (``--database-url``).

Each guarantee of the SQLite store holds across nodes through the server's transactions and
constraints instead of SQLite's single writer:

- every change of an order (``apply``) first takes the order's row lock (``SELECT … FOR
  UPDATE``), so a payment answer and a cancel, or two after-sales claims, on one order run one
  after the other, and each one's expectations are read after the other committed;
- a checkout takes a transaction advisory lock on its reservation id (one order or intent per
  reservation) and, with a per-person limit, on the sale's delivery phone and door, in a fixed
  order (no deadlock), so two checkouts to one door cannot both fit;
- hand-off entries are recorded by ``INSERT … ON CONFLICT DO NOTHING`` on (sale, entry), and
  reservations only move forward (``ON CONFLICT … DO UPDATE … WHERE`` a higher rank);
- unique indexes keep one claim per kind, one payout per claim and one compensation per order;
  schema triggers keep a compensation and a refund from both happening (orders/pg/0001).

A server that cannot be reached, at start or mid-run, raises ``StoreUnavailable``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, TypeVar

import asyncpg

import database

from ._models import Claim, Order, OrderEvent, Payment, Payout
from ._rows import (
    CLAIM_COLUMNS,
    INTENT_SQL,
    ORDER_COLUMNS,
    ORDER_FIELDS,
    PAYMENT_COLUMNS,
    PAYOUT_COLUMNS,
    SETTLED_MARK,
    ExpectationQuery,
    check_updatable,
    claim_values,
    event_of,
    event_values,
    expectations,
    order_of,
    order_values,
    payment_values,
    payout_values,
    reservation_of,
    reservation_values,
    update_of,
)
from ._store import (
    FigureQuery,
    FigureRow,
    HandoffRecord,
    OrderChange,
    figure_rows,
    figure_sql,
)
from .exceptions import ClaimConflict, DeliveryLimitReached, StoreUnavailable
from .interfaces import ReservationInfo

__all__ = ["MIGRATIONS_COMPONENT", "PostgresOrderStore"]

T = TypeVar("T")
MIGRATIONS_COMPONENT = "orders"
_RESERVATION_COLUMNS = ("id, sale_id, room_id, product_id, anchor_id, user_id, qty, "
                        "price_cents, title, category, brand, expires_at, state")
Conn = Any  # asyncpg.Connection (the driver ships no type hints)
# What an ``Expectation`` of a change reads (``_rows.expectations``).
_EXPECTATION_SQL: Mapping[ExpectationQuery, str] = {
    "payment_status": "SELECT status FROM payments WHERE id = $1",
    "claim_status": "SELECT status FROM claims WHERE id = $1",
    "pending_charge": "SELECT 1 FROM payments WHERE order_id = $1 AND status = 'pending' "
                      "AND method = 'online' AND ($2::bigint IS NULL OR created_at < $2) LIMIT 1",
    "counterfeit_claim": "SELECT 1 FROM claims WHERE order_id = $1 AND kind = 'counterfeit' "
                         "AND status IN ('open', 'upheld') LIMIT 1",
}


class PostgresOrderStore:
    """``OrderStore`` on PostgreSQL. ``open`` connects and migrates (once across nodes)."""

    def __init__(self, url: str, *, pool_size: int = 10) -> None:
        self.url = database.check_database_url(url)
        self._pool_size = pool_size
        self._pool: asyncpg.Pool | None = None

    async def open(self) -> None:
        if self._pool is not None:
            return
        try:
            self._pool = await database.open_migrated(
                self.url, MIGRATIONS_COMPONENT, "orders", max_size=self._pool_size)
        except database.DatabaseUnavailable as exc:
            raise StoreUnavailable(exc.detail) from None

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close()

    async def _run(self, fn: Callable[[Conn], Awaitable[T]], *, write: bool = False) -> T:
        if self._pool is None:
            raise RuntimeError("order store is not open")
        pool = self._pool
        try:
            return await database.run(pool, self.url, fn, write=write)
        except database.DatabaseUnavailable as exc:
            raise StoreUnavailable(exc.detail) from None

    # -- hand-off stream -------------------------------------------------------------------

    async def record_handoff(self, records: Sequence[HandoffRecord], now: int) -> int:
        async def work(conn: Conn) -> int:
            new = 0
            for rec in records:
                if rec.reservation is None:
                    status = await conn.execute(
                        "INSERT INTO dead_letters VALUES ($1, $2, $3, $4, $5) "
                        "ON CONFLICT DO NOTHING",
                        rec.sale_id, rec.entry_id, rec.raw, rec.error, now)
                    new += _rowcount(status)
                    continue
                res = rec.reservation
                status = await conn.execute(
                    "INSERT INTO handoff_entries VALUES ($1, $2, $3, $4, $5) "
                    "ON CONFLICT DO NOTHING",
                    rec.sale_id, rec.entry_id, rec.type, res.id, now)
                if _rowcount(status) == 0:
                    continue  # redelivered entry, already applied
                new += 1
                await _upsert_reservation(conn, res, rec.type, now)
            return new

        return await self._run(work, write=True)

    async def get_reservation(self, reservation_id: str) -> ReservationInfo | None:
        async def work(conn: Conn) -> ReservationInfo | None:
            row = await conn.fetchrow(
                f"SELECT {_RESERVATION_COLUMNS} FROM reservations WHERE id = $1",
                reservation_id)
            return None if row is None else reservation_of(row)

        return await self._run(work)

    async def count_handoff_entries(self, reservation_id: str) -> int:
        async def work(conn: Conn) -> int:
            return int(await conn.fetchval(
                "SELECT COUNT(*) FROM handoff_entries WHERE reservation_id = $1",
                reservation_id))

        return await self._run(work)

    # -- orders ----------------------------------------------------------------------------

    async def insert_order(
        self,
        order: Order,
        reservation: ReservationInfo,
        events: Sequence[OrderEvent],
        payment: Payment | None,
        per_person_limit: int | None = None,
    ) -> tuple[Order, bool]:
        phone_key, door_key = order.address.phone_key, order.address.door_key

        async def work(conn: Conn) -> tuple[Order, bool]:
            # One checkout of a reservation at a time, on every node.
            await _xact_lock(conn, f"reservation:{order.reservation_id}")
            row = await conn.fetchrow(
                f"SELECT {ORDER_COLUMNS} FROM orders WHERE reservation_id = $1",
                order.reservation_id)
            if row is not None:
                return order_of(row), False
            if per_person_limit is not None:
                # Checkouts of one sale to one phone or door count one after the other.
                for key in sorted({f"sale:{order.sale_id}:phone:{phone_key}",
                                   f"sale:{order.sale_id}:door:{door_key}"}):
                    await _xact_lock(conn, key)
                taken = await conn.fetchval(
                    "SELECT COALESCE(SUM(qty), 0) FROM orders WHERE sale_id = $1 AND "
                    "status NOT IN ('voided', 'cancelled') AND "
                    "(delivery_phone_key = $2 OR delivery_door_key = $3)",
                    order.sale_id, phone_key, door_key)
                if int(taken) + order.qty > per_person_limit:
                    raise DeliveryLimitReached(order.sale_id, per_person_limit)
            await _upsert_reservation(conn, reservation, reservation.state, order.created_at)
            params = ", ".join(f"${i}" for i in range(1, len(ORDER_FIELDS) + 3))
            await conn.execute(
                f"INSERT INTO orders ({ORDER_COLUMNS}, delivery_phone_key, "
                f"delivery_door_key) VALUES ({params})",
                *order_values(order))
            for event in events:
                await _insert_event(conn, event)
            if payment is not None:
                await _upsert_payment(conn, payment)
            return order, True

        return await self._run(work, write=True)

    async def get_order(self, order_id: str) -> Order | None:
        return await self._one(f"SELECT {ORDER_COLUMNS} FROM orders WHERE id = $1", order_id)

    async def get_order_by_reservation(self, reservation_id: str) -> Order | None:
        return await self._one(
            f"SELECT {ORDER_COLUMNS} FROM orders WHERE reservation_id = $1", reservation_id)

    async def _one(self, sql: str, arg: str) -> Order | None:
        async def work(conn: Conn) -> Order | None:
            row = await conn.fetchrow(sql, arg)
            return None if row is None else order_of(row)

        return await self._run(work)

    async def _many(self, sql: str, *args: Any) -> list[Order]:
        async def work(conn: Conn) -> list[Order]:
            return [order_of(row) for row in await conn.fetch(sql, *args)]

        return await self._run(work)

    async def list_orders_by_buyer(self, buyer_id: str) -> list[Order]:
        return await self._many(
            f"SELECT {ORDER_COLUMNS} FROM orders WHERE buyer_id = $1 "
            f"AND status NOT IN ({INTENT_SQL}) ORDER BY created_at DESC, id",
            buyer_id)

    async def pending_intents(self, created_before: int) -> list[Order]:
        return await self._many(
            f"SELECT {ORDER_COLUMNS} FROM orders WHERE status = 'pending' "
            "AND created_at <= $1 ORDER BY created_at, id", created_before)

    async def committed_without_order(self, since: int, also: Sequence[str] = ()) -> list[str]:
        async def work(conn: Conn) -> list[str]:
            rows = await conn.fetch(
                "SELECT r.id FROM reservations r LEFT JOIN orders o ON o.reservation_id = r.id "
                "WHERE r.state = 'committed' AND r.updated_at >= $1 "
                "AND (o.id IS NULL OR o.status = 'voided') ORDER BY r.updated_at, r.id", since)
            found = [str(row[0]) for row in rows]
            if also:
                extra = await conn.fetch(
                    "SELECT r.id FROM reservations r LEFT JOIN orders o "
                    "ON o.reservation_id = r.id WHERE r.id = ANY($1::text[]) "
                    "AND r.state = 'committed' AND (o.id IS NULL OR o.status = 'voided')",
                    list(also))
                present = {str(row[0]) for row in extra}
                found += [rid for rid in dict.fromkeys(also)
                          if rid in present and rid not in found]
            return found

        return await self._run(work)

    async def unpaid_online_orders(self, created_before: int) -> list[Order]:
        return await self._many(
            f"SELECT {ORDER_COLUMNS} FROM orders WHERE status = 'created' "
            "AND payment_method = 'online' AND created_at <= $1 ORDER BY created_at, id",
            created_before)

    async def stale_pending_charges(self, created_before: int) -> list[Payment]:
        async def work(conn: Conn) -> list[Payment]:
            rows = await conn.fetch(
                f"SELECT {PAYMENT_COLUMNS} FROM payments WHERE status = 'pending' "
                "AND method = 'online' AND created_at <= $1 ORDER BY created_at, id",
                created_before)
            return [Payment(**dict(row)) for row in rows]

        return await self._run(work)

    async def orders_pending_restock(self) -> list[Order]:
        return await self._many(
            f"SELECT {ORDER_COLUMNS} FROM orders WHERE restock_state = 'pending'")

    async def orders_for_analytics(self, anchor_id: str | None) -> list[Order]:
        if anchor_id is None:
            return await self._many(
                f"SELECT {ORDER_COLUMNS} FROM orders WHERE placed_at IS NOT NULL")
        return await self._many(
            f"SELECT {ORDER_COLUMNS} FROM orders WHERE placed_at IS NOT NULL "
            "AND anchor_id = $1", anchor_id)

    async def figures(self, query: FigureQuery) -> list[FigureRow]:
        sums_sql, rooms_sql, args = figure_sql(query)

        async def work(conn: Conn) -> list[FigureRow]:
            sums = await conn.fetch(database.numbered(sums_sql), query.window_ms, *args)
            if query.group == "room":
                rooms: list[Any] = [(row[0], row[0]) for row in sums]
            else:
                rooms = await conn.fetch(database.numbered(rooms_sql), *args)
            return figure_rows(sums, rooms)

        return await self._run(work)

    async def apply(self, change: OrderChange) -> Order | None:
        check_updatable(change)

        async def work(conn: Conn) -> Order | None:
            # The order's row lock first: every check below reads what the other nodes'
            # changes of this order committed before us, as SQLite's single writer would.
            status = await conn.fetchval(
                "SELECT status FROM orders WHERE id = $1 FOR UPDATE", change.order_id)
            if status is None or status not in change.expected:
                return None
            for expected in expectations(change):
                if await conn.fetchval(_EXPECTATION_SQL[expected.query],
                                       *expected.args) != expected.wanted:
                    return None
            columns, values = update_of(change)
            assignments = ", ".join(f"{name} = ${i}" for i, name in enumerate(columns, 1))
            await conn.execute(f"UPDATE orders SET {assignments} WHERE id = ${len(values) + 1}",
                               *values, change.order_id)
            for event in change.events:
                await _insert_event(conn, event)
            for claim in change.claims:
                await _upsert_claim(conn, claim)
            for payment in change.payments:
                await _upsert_payment(conn, payment)
            for payout in change.payouts:
                await _insert_payout(conn, payout)
            if change.committed is not None:
                await _upsert_reservation(conn, change.committed, "committed", change.at)
            row = await conn.fetchrow(
                f"SELECT {ORDER_COLUMNS} FROM orders WHERE id = $1", change.order_id)
            return order_of(row)

        try:
            return await self._run(work, write=True)
        except asyncpg.RaiseError as exc:
            # Rolled back already; anything but the schema's settlement rule is a bug.
            if SETTLED_MARK in str(exc):
                return None
            raise

    # -- history, claims, payments ---------------------------------------------------------

    async def events(self, order_id: str) -> list[OrderEvent]:
        async def work(conn: Conn) -> list[OrderEvent]:
            rows = await conn.fetch(
                "SELECT order_id, kind, from_status, to_status, actor_id, actor_role, at, "
                "detail FROM order_events WHERE order_id = $1 ORDER BY seq", order_id)
            return [event_of(row) for row in rows]

        return await self._run(work)

    async def claims(self, order_id: str) -> list[Claim]:
        async def work(conn: Conn) -> list[Claim]:
            rows = await conn.fetch(
                f"SELECT {CLAIM_COLUMNS} FROM claims WHERE order_id = $1 "
                "ORDER BY created_at, id", order_id)
            return [Claim(**dict(row)) for row in rows]

        return await self._run(work)

    async def get_claim(self, claim_id: str) -> Claim | None:
        async def work(conn: Conn) -> Claim | None:
            row = await conn.fetchrow(f"SELECT {CLAIM_COLUMNS} FROM claims WHERE id = $1",
                                      claim_id)
            return None if row is None else Claim(**dict(row))

        return await self._run(work)

    async def payments(self, order_id: str) -> list[Payment]:
        async def work(conn: Conn) -> list[Payment]:
            rows = await conn.fetch(
                f"SELECT {PAYMENT_COLUMNS} FROM payments WHERE order_id = $1 "
                "ORDER BY created_at, seq", order_id)
            return [Payment(**dict(row)) for row in rows]

        return await self._run(work)

    async def payouts(self, order_id: str) -> list[Payout]:
        async def work(conn: Conn) -> list[Payout]:
            rows = await conn.fetch(
                f"SELECT {PAYOUT_COLUMNS} FROM payouts WHERE order_id = $1 "
                "ORDER BY created_at, id", order_id)
            return [Payout(**dict(row)) for row in rows]

        return await self._run(work)

    async def get_payment(self, payment_id: str) -> Payment | None:
        async def work(conn: Conn) -> Payment | None:
            row = await conn.fetchrow(
                f"SELECT {PAYMENT_COLUMNS} FROM payments WHERE id = $1", payment_id)
            return None if row is None else Payment(**dict(row))

        return await self._run(work)


def _rowcount(status: str) -> int:
    """The row count of a command tag (``INSERT 0 1`` → 1)."""
    return int(status.rsplit(" ", 1)[-1])


async def _xact_lock(conn: Conn, key: str) -> None:
    await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", key)


async def _upsert_reservation(conn: Conn, res: ReservationInfo, state: str, now: int) -> None:
    await conn.execute(
        "INSERT INTO reservations VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, "
        "$13, $14, $15, $16) "
        "ON CONFLICT (id) DO UPDATE SET state = excluded.state, "
        "state_rank = excluded.state_rank, updated_at = excluded.updated_at "
        "WHERE excluded.state_rank > reservations.state_rank",
        *reservation_values(res, state, now),
    )


async def _insert_event(conn: Conn, event: OrderEvent) -> None:
    await conn.execute(
        "INSERT INTO order_events "
        "(order_id, kind, from_status, to_status, actor_id, actor_role, at, detail) "
        "VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        *event_values(event),
    )


async def _upsert_payment(conn: Conn, p: Payment) -> None:
    await conn.execute(
        f"INSERT INTO payments ({PAYMENT_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, "
        "$9, $10) ON CONFLICT (id) DO UPDATE SET status = excluded.status, "
        "settled_at = excluded.settled_at, provider_ref = excluded.provider_ref, "
        "reason = excluded.reason",
        *payment_values(p),
    )


async def _insert_payout(conn: Conn, p: Payout) -> None:
    try:
        await conn.execute(
            f"INSERT INTO payouts ({PAYOUT_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7)",
            *payout_values(p))
    except asyncpg.UniqueViolationError:
        # One payout per claim, one compensation per order: this one is paid already.
        raise ClaimConflict(p.order_id, f"paid {p.kind}") from None


async def _upsert_claim(conn: Conn, c: Claim) -> None:
    try:
        await conn.execute(
            f"INSERT INTO claims ({CLAIM_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, "
            "$10) ON CONFLICT (id) DO UPDATE SET status = excluded.status, "
            "updated_at = excluded.updated_at, amount_cents = excluded.amount_cents, "
            "pickup_at = excluded.pickup_at",
            *claim_values(c),
        )
    except asyncpg.UniqueViolationError:
        raise ClaimConflict(c.order_id, c.kind) from None
