from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from orders import SqliteOrderStore

from .conftest import ADMIN, BUYER, make_world
from .helpers import order_in


async def test_orders_survive_a_restart_with_history_claims_and_payments(data_dir: Path) -> None:
    world = await make_world(data_dir)
    order = await order_in(world, "paid")
    claimed = await order_in(world, "delivered")
    await world.service.counterfeit_claim(BUYER, claimed.id, "fake logo")
    before = {o.id: await world.service.order_detail(ADMIN, o.id) for o in (order, claimed)}
    await world.payments.close()
    await world.store.close()

    again = await make_world(data_dir)
    try:
        after = {o: await again.service.order_detail(ADMIN, o) for o in before}
        assert after == before
        assert {o.id for o in await again.service.list_orders(BUYER)} == set(before)
    finally:
        await again.payments.close()
        await again.store.close()


async def test_database_is_wal_and_migrated_once(data_dir: Path) -> None:
    for _ in range(2):
        store = SqliteOrderStore.in_data_dir(data_dir)
        await store.open()
        await store.close()
    conn = sqlite3.connect(data_dir / "orders.sqlite3")
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        versions = conn.execute("SELECT version FROM schema_migrations").fetchall()
        assert versions == [(1,), (2,), (3,), (4,)]
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        assert {"reservations", "handoff_entries", "dead_letters", "orders", "order_events",
                "payments", "claims", "payouts"} <= tables
    finally:
        conn.close()


async def test_a_closed_store_refuses_work(data_dir: Path) -> None:
    store = SqliteOrderStore.in_data_dir(data_dir)
    with pytest.raises(RuntimeError):
        await store.get_order("o_x")
