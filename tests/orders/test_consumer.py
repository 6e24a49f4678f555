"""The hand-off stream consumer against a real Redis: at-least-once delivery recorded exactly
once, through crashes at every point of a batch."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import msgpack
import pytest
import redis.asyncio as aioredis

from orders import HandoffConsumer, HandoffRecord, OrderStore
from orders.keys import HANDOFF_GROUP, SALES_SET, UNREAD_SALES, handoff_stream
from tests.clock import T0
from tests.rawdb import RawDatabase, StoreLocation

from .conftest import BUYER, make_world, new_store

SALE_A = "s_saleAAAAAA"
SALE_B = "s_saleBBBBBB"


class ProcessDied(Exception):
    """Stands for the process being killed at that point."""


class CrashingStore:
    """A store (either backend) that dies on the n-th batch, either before its commit or after
    it (before the XACK)."""

    def __init__(self, inner: OrderStore, crash_on_batch: int, after_commit: bool) -> None:
        self.inner = inner
        self.crash_on_batch = crash_on_batch
        self.after_commit = after_commit
        self.batches = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def record_handoff(self, records: Sequence[HandoffRecord], now: int) -> int:
        self.batches += 1
        if self.batches == self.crash_on_batch and not self.after_commit:
            raise ProcessDied
        applied = await self.inner.record_handoff(records, now)
        if self.batches == self.crash_on_batch:
            raise ProcessDied
        return applied


class HangingStore:
    """A store (either backend) that blocks inside a batch until cancelled: a consumer stopped
    mid-batch."""

    def __init__(self, inner: OrderStore) -> None:
        self.inner = inner
        self.entered = asyncio.Event()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def record_handoff(self, records: Sequence[HandoffRecord], now: int) -> int:
        self.entered.set()
        await asyncio.Event().wait()
        raise AssertionError("unreachable")


def _data(sale: str, seq: int, **extra: object) -> bytes:
    data: dict[str, object] = {
        "reservation": f"{sale}.{seq}", "sale": sale, "room": "r_room000001",
        "product": "p_prod000001", "anchor": "u_anchor00001", "user": BUYER.user_id, "qty": 1,
        "price_cents": 19_900, "title": "Silk scarf", "category": "clothing", "brand": "Acme",
        "expires_at": T0 + 60_000, "ts": T0 + seq,
    }
    data.update(extra)
    packed: bytes = msgpack.packb(data, use_bin_type=True)
    return packed


async def _new_sale(redis: aioredis.Redis, sale: str, *, group: bool = True) -> None:
    if group:  # what the inventory does when it creates a sale
        await redis.xgroup_create(handoff_stream(sale), HANDOFF_GROUP, id="0", mkstream=True)
    await redis.sadd(SALES_SET, sale)


async def _emit(redis: aioredis.Redis, sale: str, kind: str, seq: int, **extra: object) -> None:
    await redis.xadd(handoff_stream(sale), {"type": kind, "data": _data(sale, seq, **extra)})


async def _rows(where: StoreLocation, sql: str, *args: object) -> list[tuple[object, ...]]:
    async with RawDatabase(where, "orders.sqlite3") as db:
        return await db.rows(sql, *args)


async def _pending(redis: aioredis.Redis, sale: str) -> int:
    info = await redis.xpending(handoff_stream(sale), HANDOFF_GROUP)
    return int(info["pending"])


async def _consumer(
    redis: aioredis.Redis, store: OrderStore, name: str, **kw: object
) -> HandoffConsumer:
    await store.open()
    return HandoffConsumer(redis, store, consumer_name=name, now_ms=lambda: T0, **kw)  # type: ignore[arg-type]


async def test_records_every_reservation_and_its_later_state(
    redis: aioredis.Redis, store_location: StoreLocation
) -> None:
    await _new_sale(redis, SALE_A)
    for seq in (1, 2, 3):
        await _emit(redis, SALE_A, "reserved", seq)
    await _emit(redis, SALE_A, "committed", 1)
    await _emit(redis, SALE_A, "expired", 2)
    store = new_store(store_location)
    consumer = await _consumer(redis, store, "c1")
    try:
        assert await consumer.process_once() == 5
        assert await consumer.process_once() == 0
        states = {
            rid: (await store.get_reservation(rid)).state  # type: ignore[union-attr]
            for rid in (f"{SALE_A}.1", f"{SALE_A}.2", f"{SALE_A}.3")
        }
        assert states == {f"{SALE_A}.1": "committed", f"{SALE_A}.2": "expired",
                          f"{SALE_A}.3": "reserved"}
        info = await store.get_reservation(f"{SALE_A}.1")
        assert info is not None
        assert (info.price_cents, info.user_id, info.room_id) == (19_900, BUYER.user_id,
                                                                  "r_room000001")
        assert await _pending(redis, SALE_A) == 0
    finally:
        await store.close()


async def test_creates_a_missing_group_and_reads_watched_sales(
    redis: aioredis.Redis, store_location: StoreLocation
) -> None:
    # No consumer group and no entry in inventory:active_sales: the sale is only watched.
    await _emit(redis, SALE_B, "reserved", 1)
    store = new_store(store_location)
    consumer = await _consumer(redis, store, "c1")
    try:
        assert await consumer.process_once() == 0
        consumer.watch_sale(SALE_B)
        assert await consumer.process_once() == 1
        assert await store.get_reservation(f"{SALE_B}.1") is not None
        # Creating the group again (BUSYGROUP) is harmless.
        other = await _consumer(redis, store, "c2")
        other.watch_sale(SALE_B)
        assert await other.process_once() == 0
    finally:
        await store.close()


@pytest.mark.parametrize("after_commit", [False, True], ids=["before-commit", "before-xack"])
@pytest.mark.parametrize("same_name", [True, False], ids=["restart", "takeover"])
async def test_crash_mid_stream_loses_and_doubles_nothing(
    redis: aioredis.Redis, store_location: StoreLocation, after_commit: bool, same_name: bool
) -> None:
    """A consumer (a node) dies mid-batch; it restarts, or another node takes its pending
    entries over: every entry is recorded once, on either store."""
    for sale in (SALE_A, SALE_B):
        await _new_sale(redis, sale)
        for seq in range(1, 31):
            await _emit(redis, sale, "reserved", seq, user=f"u_user{seq:08d}")
        for seq in range(1, 31, 3):
            await _emit(redis, sale, "committed", seq, user=f"u_user{seq:08d}")
    crashing = CrashingStore(new_store(store_location), crash_on_batch=3,
                             after_commit=after_commit)
    first = await _consumer(redis, crashing, "c1", batch_size=8)
    with pytest.raises(ProcessDied):
        await first.process_once()
    await crashing.close()
    # Two batches were recorded and acknowledged; the third is pending in Redis, and in
    # SQLite too if the crash came after its commit.
    assert await _pending(redis, SALE_A) == 8
    async with RawDatabase(store_location, "orders.sqlite3") as db:
        recorded = await db.rows("SELECT COUNT(*) FROM handoff_entries")
    assert recorded == [(24 if after_commit else 16,)]

    # A new process: the same consumer name re-reads its own pending entries; a different
    # one takes them over with XAUTOCLAIM.
    store = new_store(store_location)
    second = await _consumer(
        redis, store, "c1" if same_name else "c2", batch_size=8, claim_idle_ms=0
    )
    try:
        while await second.process_once():
            pass
        async with RawDatabase(store_location, "orders.sqlite3") as db:
            for sale in (SALE_A, SALE_B):
                assert await _pending(redis, sale) == 0
                rows = await db.rows("SELECT id, state FROM reservations WHERE sale_id = ?",
                                     sale)
                assert len(rows) == 30
                assert len({r[0] for r in rows}) == 30
                committed = {r[0] for r in rows if r[1] == "committed"}
                assert committed == {f"{sale}.{seq}" for seq in range(1, 31, 3)}
                entries = await db.rows(
                    "SELECT COUNT(*) FROM handoff_entries WHERE sale_id = ?", sale)
                assert entries == [(40,)]
    finally:
        await store.close()


async def test_consumer_stopped_mid_batch_then_restarted(
    redis: aioredis.Redis, store_location: StoreLocation
) -> None:
    await _new_sale(redis, SALE_A)
    for seq in range(1, 21):
        await _emit(redis, SALE_A, "reserved", seq)
    hanging = HangingStore(new_store(store_location))
    first = await _consumer(redis, hanging, "c1", batch_size=5)
    first.start()
    await asyncio.wait_for(hanging.entered.wait(), 30)
    await first.close()  # cancelled inside the batch
    await hanging.close()
    assert await _pending(redis, SALE_A) == 5

    store = new_store(store_location)
    second = await _consumer(redis, store, "c1", batch_size=5, poll_interval_s=0.01)
    second.start()
    try:
        for _ in range(3000):  # bounds failure only
            recorded = len(await _rows(store_location, "SELECT id FROM reservations"))
            if recorded == 20 and await _pending(redis, SALE_A) == 0:
                break
            await asyncio.sleep(0.01)
        await second.close()
        assert len(await _rows(store_location, "SELECT id FROM reservations")) == 20
        assert await _pending(redis, SALE_A) == 0
    finally:
        await second.close()
        await store.close()


async def test_late_redelivery_of_an_older_entry_does_not_undo_a_newer_state(
    redis: aioredis.Redis, store_location: StoreLocation
) -> None:
    await _new_sale(redis, SALE_A)
    await _emit(redis, SALE_A, "reserved", 1)
    crashing = CrashingStore(new_store(store_location), crash_on_batch=1, after_commit=False)
    dead = await _consumer(redis, crashing, "dead")
    with pytest.raises(ProcessDied):
        await dead.process_once()  # read "reserved", died before recording it
    await crashing.close()
    await _emit(redis, SALE_A, "committed", 1)
    await _emit(redis, SALE_A, "restocked", 1)

    store = new_store(store_location)
    try:
        live = await _consumer(redis, store, "live", claim_idle_ms=3_600_000)
        assert await live.process_once() == 2
        rescuer = await _consumer(redis, store, "rescuer", claim_idle_ms=0)
        assert await rescuer.process_once() == 1  # the old "reserved" entry, reclaimed
        info = await store.get_reservation(f"{SALE_A}.1")
        assert info is not None
        assert info.state == "restocked"
        assert await _pending(redis, SALE_A) == 0
    finally:
        await store.close()


async def test_malformed_entries_are_kept_as_dead_letters_and_do_not_block(
    redis: aioredis.Redis, store_location: StoreLocation
) -> None:
    await _new_sale(redis, SALE_A)
    stream = handoff_stream(SALE_A)
    await redis.xadd(stream, {"type": "reserved", "data": b"\xc1not msgpack"})
    await redis.xadd(stream, {"type": "teleported", "data": _data(SALE_A, 1)})
    await redis.xadd(stream, {"type": "reserved", "data": _data(SALE_A, 2, qty=0)})
    await redis.xadd(stream, {"type": "reserved", "data": _data(SALE_B, 3)})
    await redis.xadd(stream, {"type": "reserved", "data": _data(SALE_A, 4, price_cents="9.99")})
    await redis.xadd(stream, {"type": "reserved", "data": _data(SALE_A, 6, qty=2**63 + 5)})
    await _emit(redis, SALE_A, "reserved", 5)
    store = new_store(store_location)
    consumer = await _consumer(redis, store, "c1")
    try:
        assert await consumer.process_once() == 7
        assert await _rows(store_location, "SELECT id FROM reservations") == [(f"{SALE_A}.5",)]
        assert len(await _rows(store_location, "SELECT entry_id FROM dead_letters")) == 6
        # Each kept with the reason it was refused.
        errors = await _rows(store_location, "SELECT error FROM dead_letters")
        assert all(isinstance(error, str) and error for (error,) in errors)
        assert await _pending(redis, SALE_A) == 0
    finally:
        await store.close()


async def test_checkout_before_the_stream_is_read_keeps_one_record(
    redis: aioredis.Redis, store_location: StoreLocation
) -> None:
    world = await make_world(store_location)
    try:
        held = world.ledger.hold(BUYER.user_id, sale=SALE_A)
        order = await world.checkout(BUYER, held)
        await _new_sale(redis, SALE_A)
        seq = int(held.id.rsplit(".", 1)[1])
        await _emit(redis, SALE_A, "reserved", seq)
        await _emit(redis, SALE_A, "committed", seq)
        consumer = HandoffConsumer(redis, world.store, consumer_name="c1", now_ms=world.clock)
        assert await consumer.process_once() == 2
        rows = await _rows(store_location, "SELECT id, state FROM reservations")
        assert rows == [(held.id, "committed")]
        assert (await world.service.get_order(BUYER, order.id)).status == "confirmed"
    finally:
        await world.payments.close()
        await world.store.close()


async def test_a_failed_pass_is_retried_by_the_same_consumer_at_once(
    redis: aioredis.Redis, store_location: StoreLocation
) -> None:
    await _new_sale(redis, SALE_A)
    for seq in range(1, 6):
        await _emit(redis, SALE_A, "reserved", seq)
    flaky = CrashingStore(new_store(store_location), crash_on_batch=1, after_commit=False)
    consumer = await _consumer(redis, flaky, "c1", claim_idle_ms=3_600_000)
    try:
        with pytest.raises(ProcessDied):
            await consumer.process_once()  # e.g. the disk was briefly full
        assert await consumer.process_once() == 5  # own pending entries, no idle wait
        assert len(await _rows(store_location, "SELECT id FROM reservations")) == 5
        assert await _pending(redis, SALE_A) == 0
    finally:
        await flaky.close()


async def test_entries_of_a_sale_that_ended_before_they_were_read_are_recorded(
    redis: aioredis.Redis, store_location: StoreLocation
) -> None:
    """A node's consumer read the sale's last entries and died; the sale ended and its last hold
    was checked out, so the sweeper took it out of the open sales at once. Another node's
    consumer still claims and records those entries once they have been idle long enough, and
    only then stops reading the sale."""
    from inventory import InventoryService
    from tests.clock import Clock
    from tests.inventory.conftest import make_spec

    clock = Clock()
    inventory = InventoryService(redis, now_ms=clock)
    await inventory.start()
    store = new_store(store_location)
    try:
        sale = await inventory.create_sale(make_spec(clock))
        bought = await inventory.buy(sale.id, BUYER.user_id, 1, "r1")
        assert bought.reservation is not None
        await inventory.commit(bought.reservation.id, BUYER.user_id)
        stream = handoff_stream(sale.id)
        read: Any = await redis.xreadgroup(HANDOFF_GROUP, "dead", {stream: ">"})
        assert len(read[0][1]) == 2  # reserved, committed: read, never recorded
        await inventory.end_sale(sale.id)
        clock.advance(1)
        assert (await inventory.expire_holds(sale.id)).done  # no longer an open sale
        assert not await redis.sismember(SALES_SET, sale.id)

        patient = await _consumer(redis, store, "live", claim_idle_ms=3_600_000)
        assert await patient.process_once() == 0  # not idle long enough to be claimed
        assert await redis.sismember(UNREAD_SALES, sale.id)
        rescuer = await _consumer(redis, store, "rescuer", claim_idle_ms=0)
        assert await rescuer.process_once() == 2
        info = await store.get_reservation(bought.reservation.id)
        assert info is not None
        assert info.state == "committed"
        assert await _pending(redis, sale.id) == 0
        assert not await redis.sismember(UNREAD_SALES, sale.id), "done with the sale"

        # A sale whose stream is gone (its retention is over) is dropped, not recreated.
        await redis.sadd(UNREAD_SALES, "s_goneGONE00")
        assert await rescuer.process_once() == 0
        assert not await redis.sismember(UNREAD_SALES, "s_goneGONE00")
        assert not await redis.exists(handoff_stream("s_goneGONE00"))
    finally:
        await store.close()
        await inventory.close()
        await inventory.disconnect()


async def test_a_sale_swept_while_it_is_being_created_still_has_its_entries_recorded(
    redis: aioredis.Redis, store_location: StoreLocation
) -> None:
    """A sale is listed in the open sales just before its script creates it. Another node's
    sweeper and hand-off consumer pass in that moment (the two-node test met it about one run
    in six on a busy machine): the sweeper finds the id without a sale, the consumer finds the
    sale's stream empty. Neither may take the sale off its list for good: it is live, its holds
    must still expire, and its entries must still be recorded."""
    from inventory import HoldSweeper, InventoryService
    from tests.clock import Clock
    from tests.inventory.conftest import make_spec

    clock = Clock()
    inventory = InventoryService(redis, now_ms=clock)
    await inventory.start()
    store = new_store(store_location)
    consumer = await _consumer(redis, store, "other-node")
    sweeper = HoldSweeper(inventory)
    run_script = inventory._scripts.run
    passes: list[int] = []

    async def others_pass_first(name: str, keys: Sequence[str], args: Sequence[Any]) -> Any:
        if name == "create_sale":  # listed, not created yet
            assert await redis.sismember(SALES_SET, keys[0].split("}")[0][6:])
            await sweeper.sweep_once()
            passes.append(await consumer.process_once())
        return await run_script(name, keys, args)

    inventory._scripts.run = others_pass_first  # type: ignore[method-assign]
    try:
        sale = await inventory.create_sale(make_spec(clock))
        inventory._scripts.run = run_script  # type: ignore[method-assign]
        assert passes == [0]
        for _ in range(2):  # the sweeper and the consumer pass again, after the creation
            await sweeper.sweep_once()
            assert await consumer.process_once() == 0
        assert await redis.sismember(SALES_SET, sale.id), "the sweeper still visits the sale"

        bought = await inventory.buy(sale.id, BUYER.user_id, 1, "r1")
        assert bought.reservation is not None
        assert await consumer.process_once() == 1
        info = await store.get_reservation(bought.reservation.id)
        assert info is not None
        assert info.state == "reserved"

        clock.advance(make_spec(clock).hold_ms)
        await sweeper.sweep_once()  # the hold's time is up: back to stock, and recorded so
        assert (await inventory.get_sale(sale.id)).remaining == make_spec(clock).stock
        assert await consumer.process_once() == 1
        info = await store.get_reservation(bought.reservation.id)
        assert info is not None
        assert info.state == "expired"
    finally:
        inventory._scripts.run = run_script  # type: ignore[method-assign]
        await store.close()
        await inventory.close()
        await inventory.disconnect()
