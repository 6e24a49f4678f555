"""Durable order storage: the ``OrderStore`` protocol and its embedded SQLite implementation.

SQLite runs in WAL mode with ``synchronous=FULL`` (a committed order survives a power cut) on one
dedicated thread, so the event loop never blocks on disk. A server database can replace it by
implementing ``OrderStore``.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Literal, Protocol, TypeVar

from database.sqlite import use_wal

from ._models import (
    Claim,
    ClaimStatus,
    Order,
    OrderEvent,
    Payment,
    PaymentStatus,
    Payout,
    StoredStatus,
)
from ._rows import (
    CLAIM_COLUMNS,
    INTENT_SQL,
    ORDER_COLUMNS,
    ORDER_FIELDS,
    PAYMENT_COLUMNS,
    PAYOUT_COLUMNS,
    SETTLED_MARK,
    STATE_RANK,
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
from .exceptions import ClaimConflict, DeliveryLimitReached
from .interfaces import ReservationInfo

__all__ = [
    "STATE_RANK",
    "FigureQuery",
    "FigureRow",
    "HandoffRecord",
    "OrderChange",
    "OrderStore",
    "SqliteOrderStore",
]

T = TypeVar("T")

# (version, resource name); applied in order, each once, recorded in schema_migrations.
MIGRATIONS: tuple[tuple[int, str], ...] = (
    (1, "schema_v1.sql"), (2, "schema_v2.sql"), (3, "schema_v3.sql"), (4, "schema_v4.sql"),
    (5, "schema_v5.sql"), (6, "schema_v6.sql"), (7, "schema_v7.sql"), (8, "schema_v8.sql"),
)
# What an ``Expectation`` of a change reads (``_rows.expectations``).
_EXPECTATION_SQL: Mapping[ExpectationQuery, str] = {
    "payment_status": "SELECT status FROM payments WHERE id = ?1",
    "claim_status": "SELECT status FROM claims WHERE id = ?1",
    "pending_charge": "SELECT 1 FROM payments WHERE order_id = ?1 AND status = 'pending' "
                      "AND method = 'online' AND (?2 IS NULL OR created_at < ?2) LIMIT 1",
    "counterfeit_claim": "SELECT 1 FROM claims WHERE order_id = ?1 AND kind = 'counterfeit' "
                         "AND status IN ('open', 'upheld') LIMIT 1",
}


@dataclass(frozen=True, slots=True)
class HandoffRecord:
    """One hand-off stream entry, decoded (``reservation``) or not (``error`` set)."""

    sale_id: str
    entry_id: str
    type: str
    reservation: ReservationInfo | None
    raw: bytes = b""
    error: str = ""


@dataclass(frozen=True, slots=True)
class OrderChange:
    """One atomic change of one order: applied only if the order is in ``expected`` (and the
    payment in ``payment_expected``, the claim in ``claim_expected``, no charge pending with
    ``no_pending_charge``), else nothing is written."""

    order_id: str
    expected: frozenset[StoredStatus]
    status: StoredStatus
    at: int
    fields: Mapping[str, int | str | None] = field(default_factory=dict)
    events: Sequence[OrderEvent] = ()
    claims: Sequence[Claim] = ()
    payments: Sequence[Payment] = ()
    payment_expected: tuple[str, PaymentStatus] | None = None
    claim_expected: tuple[str, ClaimStatus] | None = None
    payouts: Sequence[Payout] = ()
    # Recorded as ``committed`` in the same transaction (a checkout intent becoming an order).
    committed: ReservationInfo | None = None
    # Applied only if none of the order's online charges is still waiting for its answer...
    no_pending_charge: bool = False
    # ...counting, when set, only the charges started before this time.
    charges_started_before: int | None = None
    # Applied only if the order has no counterfeit claim open or upheld (a return or refund).
    no_counterfeit_claim: bool = False


FigureScope = Literal["room", "anchor", "brand"]


@dataclass(frozen=True, slots=True)
class FigureQuery:
    """Which placed, not cancelled, orders count (each filter None: all), grouped by ``group``;
    a buyer repeats when two of their orders in one group are at most ``window_ms`` apart."""

    group: FigureScope
    window_ms: int
    room_id: str | None = None
    anchor_id: str | None = None
    brand: str | None = None
    since_ms: int | None = None
    until_ms: int | None = None


@dataclass(frozen=True, slots=True)
class FigureRow:
    """One group's sums as the database computed them; ``rooms``: the rooms its orders came
    from (to add up their viewers)."""

    key: str
    gmv_cents: int
    orders: int
    buyers: int
    repeat_buyers: int
    rooms: tuple[str, ...]
    coupon_cost_cents: int = 0


_GROUP_COLUMN: Mapping[str, str] = {"room": "room_id", "anchor": "anchor_id", "brand": "brand"}


def figure_sql(query: FigureQuery, *, sqlite: bool = False) -> tuple[str, str, list[Any]]:
    """The two statements of ``query`` (``?`` placeholders, the same SQL on both backends):
    the sums per group, and the distinct (group, room) pairs; and their arguments. Every order
    is read from an index that holds the group, buyer and time in order (schema v7), never
    loaded into Python."""
    column = _GROUP_COLUMN[query.group]
    where = ["placed_at IS NOT NULL", "status <> 'cancelled'"]
    args: list[Any] = []
    for name, value, test in (("room_id", query.room_id, "room_id = ?"),
                              ("anchor_id", query.anchor_id, "anchor_id = ?"),
                              ("brand", query.brand, "brand = ?"),
                              ("since", query.since_ms, "placed_at >= ?"),
                              ("until", query.until_ms, "placed_at < ?")):
        del name
        if value is not None:
            where.append(test)
            args.append(value)
    condition = " AND ".join(where)
    source = "orders"
    if sqlite and (query.anchor_id is not None or query.room_id is not None):
        # With a million orders SQLite's planner prefers orders_by_anchor (anchor, created_at),
        # which is not covering: a table lookup per order, 6x slower than this one.
        source += (" INDEXED BY orders_placed_by_anchor" if query.anchor_id is not None
                   else " INDEXED BY orders_placed_by_room")
    sums = (
        "SELECT grp, SUM(total_cents), COUNT(*), COUNT(DISTINCT buyer_id), "
        "COUNT(DISTINCT CASE WHEN gap <= ? THEN buyer_id END), SUM(discount_cents) FROM ("
        f"SELECT {column} AS grp, buyer_id, total_cents, discount_cents, "
        "placed_at - LAG(placed_at) OVER "
        f"(PARTITION BY {column}, buyer_id ORDER BY placed_at) AS gap "
        f"FROM {source} WHERE {condition}) AS placed GROUP BY grp"
    )
    rooms = f"SELECT DISTINCT {column}, room_id FROM {source} WHERE {condition}"
    return sums, rooms, args


def figure_rows(sums: Sequence[Sequence[Any]],
                rooms: Sequence[Sequence[Any]]) -> list[FigureRow]:
    by_group: dict[str, list[str]] = {}
    for group, room in rooms:
        by_group.setdefault(str(group), []).append(str(room))
    return sorted(
        (FigureRow(str(g), int(gmv), int(n), int(buyers), int(repeat),
                   tuple(sorted(by_group.get(str(g), ()))), int(coupons or 0))
         for g, gmv, n, buyers, repeat, coupons in sums),
        key=lambda row: row.key,
    )


class OrderStore(Protocol):
    async def open(self) -> None: ...
    async def close(self) -> None: ...
    async def record_handoff(self, records: Sequence[HandoffRecord], now: int) -> int:
        """Apply stream entries in one transaction; returns how many were new."""
        ...
    async def get_reservation(self, reservation_id: str) -> ReservationInfo | None: ...
    async def insert_order(
        self,
        order: Order,
        reservation: ReservationInfo,
        events: Sequence[OrderEvent],
        payment: Payment | None,
        per_person_limit: int | None = None,
    ) -> tuple[Order, bool]:
        """Insert unless the reservation already has an order (or intent); returns (row,
        created). The reservation is recorded in its ``state`` in the same transaction. With
        ``per_person_limit``, raises ``DeliveryLimitReached`` (and inserts nothing) when the
        sale's live orders to the order's delivery phone or door, and this one, would exceed
        it."""
        ...
    async def get_order(self, order_id: str) -> Order | None: ...
    async def get_order_by_reservation(self, reservation_id: str) -> Order | None: ...
    async def list_orders_by_buyer(self, buyer_id: str) -> list[Order]:
        """The buyer's orders, newest first; checkout intents are not orders and are left out."""
        ...
    async def pending_intents(self, created_before: int) -> list[Order]:
        """Checkout intents (``pending``) written at or before ``created_before``, oldest first."""
        ...
    async def committed_without_order(self, since: int, also: Sequence[str] = ()) -> list[str]:
        """Reservation ids recorded as committed (sold) whose reservation has no order, or only a
        voided intent: those updated at or after ``since``, and those of ``also``."""
        ...
    async def unpaid_online_orders(self, created_before: int) -> list[Order]:
        """Online orders still ``created`` (unpaid) that were created at or before the time."""
        ...
    async def stale_pending_charges(self, created_before: int) -> list[Payment]:
        """Online payments still ``pending`` that were started at or before the time."""
        ...
    async def apply(self, change: OrderChange) -> Order | None:
        """The changed order, or None when the expectation did not hold (also when the change
        would both compensate and refund the order: the settlement written first holds)."""
        ...
    async def events(self, order_id: str) -> list[OrderEvent]: ...
    async def claims(self, order_id: str) -> list[Claim]: ...
    async def get_claim(self, claim_id: str) -> Claim | None: ...
    async def payments(self, order_id: str) -> list[Payment]: ...
    async def payouts(self, order_id: str) -> list[Payout]: ...
    async def get_payment(self, payment_id: str) -> Payment | None: ...
    async def orders_pending_restock(self) -> list[Order]: ...
    async def orders_for_analytics(self, anchor_id: str | None) -> list[Order]: ...
    async def figures(self, query: FigureQuery) -> list[FigureRow]:
        """GMV, orders, buyers and repeat buyers per group, computed by the database."""
        ...
    async def count_handoff_entries(self, reservation_id: str) -> int: ...


class SqliteOrderStore:
    """``OrderStore`` on an embedded SQLite file (default ``<data_dir>/orders.sqlite3``)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._executor: ThreadPoolExecutor | None = None
        self._conn: sqlite3.Connection | None = None

    @classmethod
    def in_data_dir(cls, data_dir: Path) -> SqliteOrderStore:
        return cls(data_dir / "orders.sqlite3")

    async def _run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        if self._executor is None or self._conn is None:
            raise RuntimeError("order store is not open")
        conn = self._conn
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, conn)

    async def open(self) -> None:
        if self._executor is not None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="orders-sqlite")

        def connect() -> sqlite3.Connection:
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA busy_timeout=5000")
            use_wal(conn)
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute("PRAGMA foreign_keys=ON")
            _migrate(conn)
            return conn

        self._conn = await asyncio.get_running_loop().run_in_executor(self._executor, connect)

    async def close(self) -> None:
        executor, conn = self._executor, self._conn
        self._executor, self._conn = None, None
        if executor is None:
            return
        if conn is not None:
            await asyncio.get_running_loop().run_in_executor(executor, conn.close)
        executor.shutdown(wait=True)

    # -- hand-off stream -------------------------------------------------------------------

    async def record_handoff(self, records: Sequence[HandoffRecord], now: int) -> int:
        def work(conn: sqlite3.Connection) -> int:
            new = 0
            with _transaction(conn):
                for rec in records:
                    if rec.reservation is None:
                        cur = conn.execute(
                            "INSERT OR IGNORE INTO dead_letters VALUES (?, ?, ?, ?, ?)",
                            (rec.sale_id, rec.entry_id, rec.raw, rec.error, now),
                        )
                        new += cur.rowcount
                        continue
                    res = rec.reservation
                    cur = conn.execute(
                        "INSERT OR IGNORE INTO handoff_entries VALUES (?, ?, ?, ?, ?)",
                        (rec.sale_id, rec.entry_id, rec.type, res.id, now),
                    )
                    if cur.rowcount == 0:
                        continue  # redelivered entry, already applied
                    new += 1
                    _upsert_reservation(conn, res, rec.type, now)
            return new

        return await self._run(work)

    async def get_reservation(self, reservation_id: str) -> ReservationInfo | None:
        def work(conn: sqlite3.Connection) -> ReservationInfo | None:
            row = conn.execute(
                "SELECT * FROM reservations WHERE id = ?", (reservation_id,)
            ).fetchone()
            return None if row is None else reservation_of(row)

        return await self._run(work)

    async def count_handoff_entries(self, reservation_id: str) -> int:
        def work(conn: sqlite3.Connection) -> int:
            row = conn.execute(
                "SELECT COUNT(*) FROM handoff_entries WHERE reservation_id = ?",
                (reservation_id,),
            ).fetchone()
            return int(row[0])

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
        def work(conn: sqlite3.Connection) -> tuple[Order, bool]:
            with _transaction(conn):
                row = conn.execute(
                    f"SELECT {ORDER_COLUMNS} FROM orders WHERE reservation_id = ?",
                    (order.reservation_id,),
                ).fetchone()
                if row is not None:
                    return order_of(row), False
                if per_person_limit is not None:
                    # Under the writer lock: two checkouts to one door cannot both fit.
                    (taken,) = conn.execute(
                        "SELECT COALESCE(SUM(qty), 0) FROM orders WHERE sale_id = ? AND "
                        "status NOT IN ('voided', 'cancelled') AND "
                        "(delivery_phone_key = ? OR delivery_door_key = ?)",
                        (order.sale_id, order.address.phone_key, order.address.door_key),
                    ).fetchone()
                    if int(taken) + order.qty > per_person_limit:
                        raise DeliveryLimitReached(order.sale_id, per_person_limit)
                _upsert_reservation(conn, reservation, reservation.state, order.created_at)
                conn.execute(
                    f"INSERT INTO orders ({ORDER_COLUMNS}, delivery_phone_key, "
                    f"delivery_door_key) VALUES ({', '.join('?' for _ in ORDER_FIELDS)}, ?, ?)",
                    order_values(order),
                )
                for event in events:
                    _insert_event(conn, event)
                if payment is not None:
                    _upsert_payment(conn, payment)
            return order, True

        return await self._run(work)

    async def get_order(self, order_id: str) -> Order | None:
        return await self._one(f"SELECT {ORDER_COLUMNS} FROM orders WHERE id = ?", order_id)

    async def get_order_by_reservation(self, reservation_id: str) -> Order | None:
        return await self._one(
            f"SELECT {ORDER_COLUMNS} FROM orders WHERE reservation_id = ?", reservation_id
        )

    async def _one(self, sql: str, arg: str) -> Order | None:
        def work(conn: sqlite3.Connection) -> Order | None:
            row = conn.execute(sql, (arg,)).fetchone()
            return None if row is None else order_of(row)

        return await self._run(work)

    async def _many(self, sql: str, args: Sequence[Any]) -> list[Order]:
        def work(conn: sqlite3.Connection) -> list[Order]:
            return [order_of(row) for row in conn.execute(sql, tuple(args))]

        return await self._run(work)

    async def list_orders_by_buyer(self, buyer_id: str) -> list[Order]:
        return await self._many(
            f"SELECT {ORDER_COLUMNS} FROM orders WHERE buyer_id = ? "
            f"AND status NOT IN ({INTENT_SQL}) ORDER BY created_at DESC, id",
            (buyer_id,),
        )

    async def pending_intents(self, created_before: int) -> list[Order]:
        return await self._many(
            f"SELECT {ORDER_COLUMNS} FROM orders WHERE status = 'pending' AND created_at <= ? "
            "ORDER BY created_at, id",
            (created_before,),
        )

    async def committed_without_order(self, since: int, also: Sequence[str] = ()) -> list[str]:
        def work(conn: sqlite3.Connection) -> list[str]:
            found: list[str] = []
            rows = conn.execute(
                "SELECT r.id FROM reservations r LEFT JOIN orders o ON o.reservation_id = r.id "
                "WHERE r.state = 'committed' AND r.updated_at >= ? "
                "AND (o.id IS NULL OR o.status = 'voided') ORDER BY r.updated_at, r.id",
                (since,),
            )
            found.extend(row[0] for row in rows)
            for rid in also:
                row = conn.execute(
                    "SELECT r.id FROM reservations r LEFT JOIN orders o "
                    "ON o.reservation_id = r.id WHERE r.id = ? AND r.state = 'committed' "
                    "AND (o.id IS NULL OR o.status = 'voided')",
                    (rid,),
                ).fetchone()
                if row is not None and row[0] not in found:
                    found.append(row[0])
            return found

        return await self._run(work)

    async def unpaid_online_orders(self, created_before: int) -> list[Order]:
        return await self._many(
            f"SELECT {ORDER_COLUMNS} FROM orders WHERE status = 'created' "
            "AND payment_method = 'online' AND created_at <= ? ORDER BY created_at, id",
            (created_before,),
        )

    async def stale_pending_charges(self, created_before: int) -> list[Payment]:
        def work(conn: sqlite3.Connection) -> list[Payment]:
            rows = conn.execute(
                "SELECT * FROM payments WHERE status = 'pending' AND method = 'online' "
                "AND created_at <= ? ORDER BY created_at, id",
                (created_before,),
            )
            return [Payment(**dict(row)) for row in rows]

        return await self._run(work)

    async def orders_pending_restock(self) -> list[Order]:
        return await self._many(
            f"SELECT {ORDER_COLUMNS} FROM orders WHERE restock_state = 'pending'", ()
        )

    async def orders_for_analytics(self, anchor_id: str | None) -> list[Order]:
        if anchor_id is None:
            return await self._many(
                f"SELECT {ORDER_COLUMNS} FROM orders WHERE placed_at IS NOT NULL", ()
            )
        return await self._many(
            f"SELECT {ORDER_COLUMNS} FROM orders WHERE placed_at IS NOT NULL AND anchor_id = ?",
            (anchor_id,),
        )

    async def figures(self, query: FigureQuery) -> list[FigureRow]:
        sums_sql, rooms_sql, args = figure_sql(query, sqlite=True)

        def work(conn: sqlite3.Connection) -> list[FigureRow]:
            sums = conn.execute(sums_sql, [query.window_ms, *args]).fetchall()
            rooms = conn.execute(rooms_sql, args).fetchall() if query.group != "room" else [
                (row[0], row[0]) for row in sums]
            return figure_rows(sums, rooms)

        return await self._run(work)

    async def apply(self, change: OrderChange) -> Order | None:
        check_updatable(change)

        def work(conn: sqlite3.Connection) -> Order | None:
            try:
                return write(conn)
            except sqlite3.IntegrityError as exc:
                # Rolled back already; anything but schema_v5's settlement rule is a bug.
                if SETTLED_MARK in str(exc):
                    return None
                raise

        def write(conn: sqlite3.Connection) -> Order | None:
            with _transaction(conn):
                for expected in expectations(change):
                    row = conn.execute(_EXPECTATION_SQL[expected.query],
                                       expected.args).fetchone()
                    if (None if row is None else row[0]) != expected.wanted:
                        return None
                columns, values = update_of(change)
                placeholders = ", ".join("?" for _ in change.expected)
                cur = conn.execute(
                    f"UPDATE orders SET {', '.join(f'{name} = ?' for name in columns)} "
                    f"WHERE id = ? AND status IN ({placeholders})",
                    [*values, change.order_id, *sorted(change.expected)],
                )
                if cur.rowcount != 1:
                    return None
                for event in change.events:
                    _insert_event(conn, event)
                for claim in change.claims:
                    _upsert_claim(conn, claim)
                for payment in change.payments:
                    _upsert_payment(conn, payment)
                for payout in change.payouts:
                    _insert_payout(conn, payout)
                if change.committed is not None:
                    _upsert_reservation(conn, change.committed, "committed", change.at)
                row = conn.execute(
                    f"SELECT {ORDER_COLUMNS} FROM orders WHERE id = ?", (change.order_id,)
                ).fetchone()
                return order_of(row)

        return await self._run(work)

    # -- history, claims, payments ---------------------------------------------------------

    async def events(self, order_id: str) -> list[OrderEvent]:
        def work(conn: sqlite3.Connection) -> list[OrderEvent]:
            rows = conn.execute(
                "SELECT * FROM order_events WHERE order_id = ? ORDER BY seq", (order_id,)
            )
            return [event_of(row) for row in rows]

        return await self._run(work)

    async def claims(self, order_id: str) -> list[Claim]:
        def work(conn: sqlite3.Connection) -> list[Claim]:
            rows = conn.execute(
                "SELECT * FROM claims WHERE order_id = ? ORDER BY created_at, id", (order_id,)
            )
            return [Claim(**dict(row)) for row in rows]

        return await self._run(work)

    async def get_claim(self, claim_id: str) -> Claim | None:
        def work(conn: sqlite3.Connection) -> Claim | None:
            row = conn.execute("SELECT * FROM claims WHERE id = ?", (claim_id,)).fetchone()
            return None if row is None else Claim(**dict(row))

        return await self._run(work)

    async def payments(self, order_id: str) -> list[Payment]:
        def work(conn: sqlite3.Connection) -> list[Payment]:
            rows = conn.execute(
                "SELECT * FROM payments WHERE order_id = ? ORDER BY created_at, rowid",
                (order_id,),
            )
            return [Payment(**dict(row)) for row in rows]

        return await self._run(work)

    async def payouts(self, order_id: str) -> list[Payout]:
        def work(conn: sqlite3.Connection) -> list[Payout]:
            rows = conn.execute(
                "SELECT * FROM payouts WHERE order_id = ? ORDER BY created_at, id", (order_id,)
            )
            return [Payout(**dict(row)) for row in rows]

        return await self._run(work)

    async def get_payment(self, payment_id: str) -> Payment | None:
        def work(conn: sqlite3.Connection) -> Payment | None:
            row = conn.execute("SELECT * FROM payments WHERE id = ?", (payment_id,)).fetchone()
            return None if row is None else Payment(**dict(row))

        return await self._run(work)


class _transaction:
    """BEGIN IMMEDIATE … COMMIT, or ROLLBACK on any error (the writer lock is taken up front, so
    two processes never deadlock upgrading a read to a write)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def __enter__(self) -> None:
        self.conn.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        self.conn.execute("COMMIT" if exc_type is None else "ROLLBACK")


def _migrate(conn: sqlite3.Connection) -> None:
    """Apply the migrations this file lacks, each in its own ``BEGIN IMMEDIATE`` transaction
    with its ``schema_migrations`` row. Whether a version is done is read after the writer lock
    is taken, so processes opening one fresh data dir at once (workers and the hand-off
    consumer) apply each migration once and the others see it done."""
    conn.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations "
        "(version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL DEFAULT (unixepoch()))"
    )
    for version, name in MIGRATIONS:
        script = resources.files("orders").joinpath(name).read_text(encoding="utf-8")
        with _transaction(conn):
            if conn.execute(
                "SELECT 1 FROM schema_migrations WHERE version = ?", (version,)
            ).fetchone() is not None:
                continue
            for statement in _statements(script):
                conn.execute(statement)
            conn.execute("INSERT INTO schema_migrations (version) VALUES (?)", (version,))


def _statements(script: str) -> list[str]:
    """The SQL statements of a migration script, one at a time (``executescript`` would commit
    the open transaction first); ``sqlite3.complete_statement`` tells where each one ends."""
    statements: list[str] = []
    pending = ""
    for line in script.splitlines(keepends=True):
        pending += line
        if sqlite3.complete_statement(pending):
            statements.append(pending.strip())
            pending = ""
    rest = [line for line in pending.splitlines() if line.strip() and not
            line.strip().startswith("--")]
    if rest:
        raise ValueError(f"unterminated SQL statement in a migration: {rest[0]!r}")
    return statements


def _upsert_reservation(
    conn: sqlite3.Connection, res: ReservationInfo, state: str, now: int
) -> None:
    conn.execute(
        "INSERT INTO reservations VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
        "ON CONFLICT (id) DO UPDATE SET state = excluded.state, "
        "state_rank = excluded.state_rank, updated_at = excluded.updated_at "
        "WHERE excluded.state_rank > reservations.state_rank",
        reservation_values(res, state, now),
    )


def _insert_event(conn: sqlite3.Connection, event: OrderEvent) -> None:
    conn.execute(
        "INSERT INTO order_events "
        "(order_id, kind, from_status, to_status, actor_id, actor_role, at, detail) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        event_values(event),
    )


def _upsert_payment(conn: sqlite3.Connection, p: Payment) -> None:
    conn.execute(
        f"INSERT INTO payments ({PAYMENT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
        "ON CONFLICT (id) DO UPDATE SET status = excluded.status, "
        "settled_at = excluded.settled_at, provider_ref = excluded.provider_ref, "
        "reason = excluded.reason",
        payment_values(p),
    )


def _insert_payout(conn: sqlite3.Connection, p: Payout) -> None:
    try:
        conn.execute(
            f"INSERT INTO payouts ({PAYOUT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)",
            payout_values(p),
        )
    except sqlite3.IntegrityError as exc:
        if SETTLED_MARK in str(exc):
            raise
        # One payout per claim, one compensation per order: this one is paid already.
        raise ClaimConflict(p.order_id, f"paid {p.kind}") from None


def _upsert_claim(conn: sqlite3.Connection, c: Claim) -> None:
    try:
        conn.execute(
            f"INSERT INTO claims ({CLAIM_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (id) DO UPDATE SET status = excluded.status, "
            "updated_at = excluded.updated_at, amount_cents = excluded.amount_cents, "
            "pickup_at = excluded.pickup_at",
            claim_values(c),
        )
    except sqlite3.IntegrityError:
        raise ClaimConflict(c.order_id, c.kind) from None
