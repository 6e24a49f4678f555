from __future__ import annotations

import asyncio
import multiprocessing
import sqlite3
from multiprocessing.synchronize import Barrier
from pathlib import Path

import pytest

from orders import SqliteOrderStore
from orders._store import MIGRATIONS

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
        assert versions == [(version,) for version, _ in MIGRATIONS]
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        assert {"reservations", "handoff_entries", "dead_letters", "orders", "order_events",
                "payments", "claims", "payouts"} <= tables
    finally:
        conn.close()


async def test_a_version_4_database_with_paid_claims_moves_to_version_5(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Existing compensations satisfy version 5's one-per-order rule, so the upgrade applies
    and keeps them; from then on the rule holds for new writes."""
    # Version 4, with the later columns today's code writes (v6 is independent of v5).
    monkeypatch.setattr("orders._store.MIGRATIONS",
                        tuple(m for m in MIGRATIONS if m[0] != 5))
    old = await make_world(data_dir)
    order = await order_in(old, "delivered")
    claim = await old.service.counterfeit_claim(BUYER, order.id, "fake")
    await old.service.uphold_counterfeit(ADMIN, claim.id)
    before = await old.service.order_detail(ADMIN, order.id)
    await old.payments.close()
    await old.store.close()

    monkeypatch.setattr("orders._store.MIGRATIONS", MIGRATIONS)
    new = await make_world(data_dir)
    try:
        assert await new.service.order_detail(ADMIN, order.id) == before
        conn = sqlite3.connect(data_dir / "orders.sqlite3")
        try:
            newest = MIGRATIONS[-1][0]
            assert conn.execute("SELECT MAX(version) FROM schema_migrations").fetchone() == (
                newest,)
            with pytest.raises(sqlite3.IntegrityError):
                conn.execute("UPDATE orders SET status = 'refunded' WHERE id = ?", (order.id,))
        finally:
            conn.close()
    finally:
        await new.payments.close()
        await new.store.close()


def _open_at_once(path: str, barrier: Barrier) -> None:
    """One process starting up: wait for the others, then open (and migrate) the store."""

    async def start() -> None:
        store = SqliteOrderStore(Path(path))
        barrier.wait(timeout=60)
        await store.open()
        await store.close()

    asyncio.run(start())


@pytest.mark.integration  # starts processes of its own
def test_processes_starting_together_migrate_a_fresh_database_once(tmp_path: Path) -> None:
    """Workers and the hand-off consumer open one data dir at the same time: every one of them
    starts, and the schema is migrated once, to the latest version."""
    ctx = multiprocessing.get_context("spawn")
    for attempt in range(3):
        path = tmp_path / f"orders{attempt}.sqlite3"
        barrier = ctx.Barrier(4)
        procs = [ctx.Process(target=_open_at_once, args=(str(path), barrier))
                 for _ in range(4)]
        for proc in procs:
            proc.start()
        for proc in procs:
            proc.join(timeout=90)
        assert [proc.exitcode for proc in procs] == [0, 0, 0, 0]
        conn = sqlite3.connect(path)
        try:
            versions = conn.execute("SELECT version FROM schema_migrations").fetchall()
            assert versions == [(v,) for v, _ in MIGRATIONS]
            assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        finally:
            conn.close()


async def test_a_closed_store_refuses_work(data_dir: Path) -> None:
    store = SqliteOrderStore.in_data_dir(data_dir)
    with pytest.raises(RuntimeError):
        await store.get_order("o_x")
