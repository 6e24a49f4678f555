"""The order store's own guarantees, on both backends (``store_location``: a SQLite file and a
PostgreSQL database), and each backend's migrations."""

from __future__ import annotations

import asyncio
import itertools
import multiprocessing
import sqlite3
from collections.abc import AsyncIterator
from multiprocessing.synchronize import Barrier
from pathlib import Path

import asyncpg
import pytest

from database import migrations_in
from orders import (
    IllegalTransition,
    OrderError,
    PostgresOrderStore,
    SqliteOrderStore,
    StoreUnavailable,
)
from orders._store import MIGRATIONS
from tests.rawdb import StoreLocation

from .conftest import (
    ADMIN,
    ANCHOR,
    BUYER,
    World,
    make_world,
    new_store,
)
from .helpers import order_in


async def test_orders_survive_a_restart_with_history_claims_and_payments(
    store_location: StoreLocation,
) -> None:
    world = await make_world(store_location)
    order = await order_in(world, "paid")
    claimed = await order_in(world, "delivered")
    await world.service.counterfeit_claim(BUYER, claimed.id, "fake logo")
    before = {o.id: await world.service.order_detail(ADMIN, o.id) for o in (order, claimed)}
    await world.payments.close()
    await world.store.close()

    again = await make_world(store_location)
    try:
        after = {o: await again.service.order_detail(ADMIN, o) for o in before}
        assert after == before
        assert {o.id for o in await again.service.list_orders(BUYER)} == set(before)
    finally:
        await again.payments.close()
        await again.store.close()


# -- SQLite: its file and migrations ------------------------------------------------------------

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


async def test_a_closed_store_refuses_work(store_location: StoreLocation) -> None:
    store = new_store(store_location)
    with pytest.raises(RuntimeError):
        await store.get_order("o_x")
    await store.open()
    await store.close()
    with pytest.raises(RuntimeError):
        await store.get_order("o_x")


# -- PostgreSQL: migrations shared by every node ---------------------------------------------

PG_MIGRATIONS = migrations_in("orders")


@pytest.mark.integration
async def test_nodes_starting_together_migrate_a_fresh_database_once(pg_url: str) -> None:
    stores = [PostgresOrderStore(pg_url, pool_size=2) for _ in range(4)]
    await asyncio.gather(*(store.open() for store in stores))
    try:
        conn = await asyncpg.connect(pg_url)
        try:
            rows = await conn.fetch(
                "SELECT version, name FROM schema_migrations WHERE component = 'orders' "
                "ORDER BY version")
        finally:
            await conn.close()
        assert [(r["version"], r["name"]) for r in rows] == [
            (m.version, m.name) for m in PG_MIGRATIONS]
    finally:
        await asyncio.gather(*(store.close() for store in stores))


@pytest.mark.integration
async def test_a_node_refuses_a_database_migrated_by_a_newer_release(pg_url: str) -> None:
    store = PostgresOrderStore(pg_url)
    await store.open()
    await store.close()
    newer = PG_MIGRATIONS[-1].version + 1
    conn = await asyncpg.connect(pg_url)
    try:
        await conn.execute("INSERT INTO schema_migrations (component, version, name) "
                           "VALUES ('orders', $1, 'from_the_future.sql')", newer)
        await conn.execute("CREATE TABLE untouched (id INTEGER)")
    finally:
        await conn.close()
    from database import SchemaTooNew

    with pytest.raises(SchemaTooNew) as refused:
        await PostgresOrderStore(pg_url).open()
    message = str(refused.value)
    assert "\n" not in message
    assert f"version {newer}" in message
    assert "upgrade liveroom" in message


@pytest.mark.integration
async def test_an_unreachable_database_is_one_clear_error(pg_url: str) -> None:
    from database.throwaway import _free_port

    url = f"postgresql://liveroom@127.0.0.1:{_free_port()}/postgres"
    with pytest.raises(StoreUnavailable) as refused:
        await PostgresOrderStore(url).open()
    assert refused.value.code == "store_unavailable"
    assert "refused" in refused.value.detail.lower() or "connect" in refused.value.detail.lower()


# -- two nodes at one order --------------------------------------------------------------------

@pytest.fixture
async def node_b(world: World, store_location: StoreLocation) -> AsyncIterator[World]:
    """A second server on the same database and inventory (on SQLite: a second process)."""
    other = await make_world(store_location, clock=world.clock, ledger=world.ledger)
    yield other
    await other.payments.close()
    await other.store.close()


async def test_two_nodes_paying_and_cancelling_one_order_agree(
    world: World, node_b: World
) -> None:
    """The buyer switches an unpaid order to cash on delivery on one node while cancelling it
    on the other: each change is decided on the order as the other one left it, so the
    history is one chain (every step starts where the one before ended) and ends where the
    order is; never two changes from one state."""
    for _ in range(6):
        order = await order_in(world, "created")
        results = await asyncio.gather(
            world.service.pay(BUYER, order.id, "cod"),
            node_b.service.cancel(BUYER, order.id),
            return_exceptions=True,
        )
        assert any(not isinstance(r, BaseException) for r in results), results
        assert all(isinstance(r, OrderError) for r in results if isinstance(r, BaseException))
        final = await node_b.service.get_order(BUYER, order.id)
        assert final.status == "cancelled"  # cancelled unpaid, or confirmed then cancelled
        history = await world.service.history(BUYER, order.id)
        steps = [(e.from_status, e.to_status) for e in history if e.from_status != e.to_status]
        assert all(a[1] == b[0] for a, b in itertools.pairwise(steps)), steps
        assert steps[-1][1] == final.status
        assert len([s for s in steps if s[1] == "cancelled"]) == 1


async def test_two_nodes_taking_two_after_sales_claims_on_one_order_take_one(
    world: World, node_b: World
) -> None:
    """A return asked on one node and a refund without return on the other, at once: one
    claim is taken, the other refused; never both refunds."""
    for _ in range(4):
        order = await order_in(world, "delivered", category="essential_oil")
        world.certs.refund_no_return.add((order.anchor_id, order.category))
        node_b.certs.refund_no_return.add((order.anchor_id, order.category))
        results = await asyncio.gather(
            world.service.request_return(BUYER, order.id, "changed my mind"),
            node_b.service.refund_no_return(BUYER, order.id, "leaked"),
            return_exceptions=True,
        )
        taken = [r for r in results if not isinstance(r, BaseException)]
        assert len(taken) == 1, results
        assert all(isinstance(r, OrderError) for r in results if r not in taken)
        claims = await node_b.service.claims(BUYER, order.id)
        assert [c.kind for c in claims] == [taken[0].kind]
        final = await world.service.get_order(BUYER, order.id)
        assert final.status == ("return_requested" if taken[0].kind == "return" else "refunded")


async def test_two_nodes_shipping_one_order_ship_it_once(world: World, node_b: World) -> None:
    order = await order_in(world, "confirmed")
    results = await asyncio.gather(
        *(w.service.ship(ANCHOR, order.id) for w in (world, node_b, world, node_b)),
        return_exceptions=True,
    )
    assert len([r for r in results if not isinstance(r, BaseException)]) == 1
    assert all(isinstance(r, IllegalTransition) for r in results if isinstance(r, BaseException))
    shipped = [e for e in await node_b.service.history(ADMIN, order.id)
               if e.to_status == "shipped"]
    assert len(shipped) == 1
