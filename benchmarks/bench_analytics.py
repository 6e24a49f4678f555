"""Figures and analytics over a large order history, on both order stores.

Loads ``--orders`` orders (default 1,000,000; bulk: one SQLite transaction of ``executemany``,
PostgreSQL ``COPY``) spread over 1,000 rooms of 200 anchors (5 rooms each), 100,000 buyers and
50 brands, 5% of them cancelled and 2% never placed, into a fresh store of each backend (SQLite
in a temp dir; PostgreSQL in a throwaway cluster, ``database/throwaway.py``). Then times, through
``OrderService`` as the server calls it:

- a room's figures (``room_figures``: what each ``figures`` push computes), target <= 5 ms;
- an anchor's analytics (``analytics`` as the anchor: rooms, anchor and brands; GMV, orders,
  AOV, conversion, repurchase rate), target <= 50 ms.

Usage: python -m benchmarks.bench_analytics [--orders N] [--backend sqlite|postgres|both]
       [--samples 50]
Prints the medians and 95th percentiles per backend; docs/performance.md records the results.
"""

from __future__ import annotations

import argparse
import random
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import fields
from pathlib import Path
from typing import Any

import asyncpg

from database.throwaway import ThrowawayPostgres
from orders import (
    Actor,
    ChargeRequest,
    InspectionTerms,
    Order,
    OrderService,
    OrderStore,
    PostgresOrderStore,
    ReservationInfo,
    SqliteOrderStore,
)

ROOMS, ANCHORS, BUYERS, BRANDS = 1_000, 200, 100_000, 50
T0 = 1_750_000_000_000
DAY_MS = 86_400_000
_COLUMNS = [f.name for f in fields(Order)] + ["delivery_phone_key", "delivery_door_key"]
_ADDRESS = '{"name": "Li Wei", "phone": "+8613800138000", "line1": "1 Main St", "city": "Linyi"}'


class _NoLedger:
    """Analytics never touches the inventory, certificates or payments."""

    async def commit(self, reservation_id: str, user_id: str) -> ReservationInfo:
        raise NotImplementedError

    async def restock(self, reservation_id: str) -> bool:
        raise NotImplementedError

    async def get_reservation(self, reservation_id: str) -> ReservationInfo:
        raise NotImplementedError

    async def release(self, reservation_id: str, user_id: str) -> None:
        raise NotImplementedError

    async def per_person_limit(self, sale_id: str) -> int:
        raise NotImplementedError


class _NoCertificates:
    async def vault_certified(self, product_id: str) -> bool:
        return False

    async def refund_no_return_certified(self, anchor_id: str, category: str) -> bool:
        return False

    async def inspection(self, product_id: str) -> InspectionTerms | None:
        return None


class _NoPayments:
    name = "none"

    async def charge(self, request: ChargeRequest) -> None:
        raise NotImplementedError


def room_of(n: int) -> str:
    return f"r_room{n:06d}"


def anchor_of_room(n: int) -> str:
    return f"u_anchor{n % ANCHORS:05d}"


def rows(count: int, seed: int = 17) -> Iterator[tuple[Any, ...]]:
    """Orders in ``_COLUMNS`` order, placed over 90 days."""
    rng = random.Random(seed)
    for i in range(count):
        room = rng.randrange(ROOMS)
        qty = rng.randint(1, 3)
        price = rng.randrange(500, 50_000)
        created = T0 + rng.randrange(90 * DAY_MS)
        fate = rng.random()
        status = "completed"
        placed: int | None = created + 1_000
        cancelled: int | None = None
        if fate < 0.05:
            status, cancelled = "cancelled", created + 5_000
        elif fate < 0.07:
            status, placed = "created", None
        values: dict[str, Any] = {
            "id": f"o_{i:010d}", "reservation_id": f"s_{room}.{i}", "sale_id": f"s_{room}",
            "room_id": room_of(room), "anchor_id": anchor_of_room(room),
            "product_id": f"p_{room}_{i % 7}", "buyer_id": f"u_b{rng.randrange(BUYERS):07d}",
            "title": "Item", "category": "clothing", "brand": f"Brand{rng.randrange(BRANDS)}",
            "qty": qty, "unit_price_cents": price, "total_cents": qty * price,
            "payment_method": "cod", "status": status, "address": _ADDRESS,
            "created_at": created, "updated_at": created, "placed_at": placed,
            "shipped_at": None, "delivered_at": None, "completed_at": None,
            "cancelled_at": cancelled, "buyback_locked_cents": None, "restock_state": "none",
            "certificate_warranty_ends_at": None, "delivery_phone_key": "8613800138000"[-10:],
            "delivery_door_key": f"linyi|{i}",
        }
        yield tuple(values[c] for c in _COLUMNS)


async def load_sqlite(path: Path, count: int) -> OrderStore:
    store = SqliteOrderStore(path)
    await store.open()  # the schema, migrated
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        # A bulk load: the indexes' pages stay in memory instead of spilling to the WAL.
        conn.execute("PRAGMA cache_size = -1000000")
        conn.execute("PRAGMA synchronous = OFF")
        conn.execute("BEGIN")
        marks = ", ".join("?" for _ in _COLUMNS)
        conn.executemany(f"INSERT INTO orders ({', '.join(_COLUMNS)}) VALUES ({marks})",
                         rows(count))
        conn.execute("COMMIT")
        conn.execute("ANALYZE")
    finally:
        conn.close()
    return store


async def load_postgres(url: str, count: int) -> OrderStore:
    store = PostgresOrderStore(url)
    await store.open()
    conn = await asyncpg.connect(url)
    try:
        await conn.copy_records_to_table("orders", records=rows(count), columns=_COLUMNS)
        await conn.execute("VACUUM ANALYZE orders")
    finally:
        await conn.close()
    return store


async def timed(samples: int, call: Callable[[int], Awaitable[object]]) -> list[float]:
    """Milliseconds of each of ``samples`` calls (after 5 unmeasured ones)."""
    for n in range(5):
        await call(n)
    out = []
    for n in range(samples):
        start = time.perf_counter()
        await call(n)
        out.append((time.perf_counter() - start) * 1000)
    return out


def summary(values: list[float]) -> str:
    ordered = sorted(values)
    p95 = ordered[max(0, round(0.95 * len(ordered)) - 1)]
    return f"median {statistics.median(ordered):.2f} ms, p95 {p95:.2f} ms"


async def measure(name: str, store: OrderStore, samples: int, load_s: float) -> None:
    service = OrderService(store, _NoLedger(), _NoCertificates(), _NoPayments(), b"bench")
    rng = random.Random(5)
    rooms = [rng.randrange(ROOMS) for _ in range(samples + 5)]
    anchors = [f"u_anchor{rng.randrange(ANCHORS):05d}" for _ in range(samples + 5)]

    async def room(n: int) -> object:
        return await service.room_figures(room_of(rooms[n]), 1_000)

    async def anchor(n: int) -> object:
        viewers = {room_of(r): 1_000 for r in range(ROOMS)}
        return await service.analytics(Actor(anchors[n], "anchor"), viewers=viewers)

    room_ms = await timed(samples, room)
    anchor_ms = await timed(samples, anchor)
    # What each room's figures cost before they were computed in SQL: every placed order of
    # the system loaded (then grouped in Python, not counted here). Once: it is slow.
    start = time.perf_counter()
    loaded = len(await store.orders_for_analytics(None))
    before_ms = (time.perf_counter() - start) * 1000
    sample = await service.room_figures(room_of(rooms[0]), 1_000)
    print(f"{name}: loaded in {load_s:.1f} s; a room has ~{sample.orders} placed orders")
    print(f"{name}: room figures     {summary(room_ms)}  (target <= 5 ms)")
    print(f"{name}: anchor analytics {summary(anchor_ms)}  (target <= 50 ms)")
    print(f"{name}: before (load all {loaded} placed orders, per figures push): "
          f"{before_ms:.0f} ms, {before_ms / statistics.median(room_ms):.0f}x a room's figures now")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=1_000_000)
    parser.add_argument("--backend", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--samples", type=int, default=50)
    args = parser.parse_args()
    if args.backend in ("sqlite", "both"):
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            store = await load_sqlite(Path(tmp) / "orders.sqlite3", args.orders)
            try:
                await measure("sqlite", store, args.samples, time.perf_counter() - start)
            finally:
                await store.close()
    if args.backend in ("postgres", "both"):
        cluster = ThrowawayPostgres()
        cluster.start()
        try:
            start = time.perf_counter()
            store = await load_postgres(cluster.url(), args.orders)
            try:
                await measure("postgres", store, args.samples, time.perf_counter() - start)
            finally:
                await store.close()
        finally:
            cluster.destroy()


if __name__ == "__main__":
    import uvloop

    uvloop.run(main())
