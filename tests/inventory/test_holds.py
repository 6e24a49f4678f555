"""Holds: commit, release, restock, expiry by the sweeper, and the hand-off stream."""

from __future__ import annotations

import asyncio
from typing import Any

import msgpack
import pytest
import redis.asyncio as aioredis

from inventory import (
    UNKNOWN_SALE_GRACE_MS,
    Hold,
    HoldExpired,
    HoldNotActive,
    HoldSweeper,
    InventoryService,
    NotCommitted,
    NotHolder,
    Sale,
    StockLevel,
    UnknownReservation,
)
from inventory.keys import ACTIVE_SALES, sale_keys
from tests.clock import Clock

from .conftest import make_spec

HANDOFF_FIELDS = {
    "reservation", "sale", "room", "product", "anchor", "user", "qty", "price_cents", "title",
    "category", "brand", "expires_at", "ts",
}


async def hold_for(service: InventoryService, sale: Sale, user: str, qty: int = 1) -> Hold:
    result = await service.buy(sale.id, user, qty, f"{user}-{qty}")
    assert result.reservation is not None, result
    return result.reservation


async def stream_events(redis: aioredis.Redis, sale_id: str) -> list[tuple[str, dict[str, Any]]]:
    entries: Any = await redis.xrange(sale_keys(sale_id).stream)
    return [
        (fields[b"type"].decode(), msgpack.unpackb(fields[b"data"])) for _, fields in entries
    ]


async def counters(service: InventoryService, sale_id: str) -> tuple[int, int, int]:
    sale = await service.get_sale(sale_id)
    return sale.remaining, sale.held, sale.sold


async def test_commit_moves_hold_to_sold_and_is_idempotent_for_the_holder(
    service: InventoryService, sale: Sale, stock_changes: list[StockLevel]
) -> None:
    hold = await hold_for(service, sale, "u_a", 2)
    committed = await service.commit(hold.id, "u_a")
    assert committed.state == "committed"
    assert committed.stock is not None
    assert (committed.stock.remaining, committed.stock.held, committed.stock.sold) == (8, 0, 2)
    changes_after_first = len(stock_changes)
    again = await service.commit(hold.id, "u_a")
    assert again.state == "committed"
    assert await counters(service, sale.id) == (8, 0, 2)
    assert len(stock_changes) == changes_after_first  # nothing changed, nothing pushed
    fetched = await service.get_reservation(hold.id)
    assert (fetched.user_id, fetched.qty, fetched.price_cents, fetched.state) == (
        "u_a", 2, 69_900, "committed",
    )


async def test_commit_by_someone_else_is_refused(service: InventoryService, sale: Sale) -> None:
    hold = await hold_for(service, sale, "u_a")
    with pytest.raises(NotHolder) as info:
        await service.commit(hold.id, "u_b")
    assert info.value.http_status == 403
    with pytest.raises(NotHolder):
        await service.release(hold.id, "u_b")
    assert (await service.get_reservation(hold.id)).state == "held"


@pytest.mark.parametrize("reservation_id", ["s_AAAAAAAAAA.1", "junk", "s_AAAAAAAAAA.0", ""])
async def test_unknown_reservations(service: InventoryService, reservation_id: str) -> None:
    with pytest.raises(UnknownReservation):
        await service.commit(reservation_id, "u_a")
    with pytest.raises(UnknownReservation):
        await service.release(reservation_id, "u_a")
    with pytest.raises(UnknownReservation):
        await service.restock(reservation_id)
    with pytest.raises(UnknownReservation):
        await service.get_reservation(reservation_id)


async def test_release_returns_stock_and_is_idempotent(
    service: InventoryService, sale: Sale
) -> None:
    hold = await hold_for(service, sale, "u_a", 2)
    released = await service.release(hold.id, "u_a")
    assert released.state == "released"
    assert await counters(service, sale.id) == (10, 0, 0)
    assert (await service.release(hold.id, "u_a")).state == "released"
    assert await counters(service, sale.id) == (10, 0, 0)
    with pytest.raises(HoldNotActive) as info:
        await service.commit(hold.id, "u_a")
    assert info.value.state == "released"
    # The released units no longer count against the buyer's limit.
    assert (await service.buy(sale.id, "u_a", 2, "again")).status == "reserved"


async def test_release_of_a_sold_unit_is_refused(service: InventoryService, sale: Sale) -> None:
    hold = await hold_for(service, sale, "u_a")
    await service.commit(hold.id, "u_a")
    with pytest.raises(HoldNotActive):
        await service.release(hold.id, "u_a")
    assert await counters(service, sale.id) == (9, 0, 1)


async def test_restock_returns_a_sold_unit_once_and_frees_the_limit(
    service: InventoryService, sale: Sale
) -> None:
    hold = await hold_for(service, sale, "u_a", 2)
    with pytest.raises(NotCommitted):
        await service.restock(hold.id)
    await service.commit(hold.id, "u_a")
    assert await service.restock(hold.id) is True
    assert await counters(service, sale.id) == (10, 0, 0)
    assert await service.restock(hold.id) is True
    assert await counters(service, sale.id) == (10, 0, 0)
    assert (await service.get_reservation(hold.id)).state == "restocked"
    with pytest.raises(HoldNotActive):
        await service.commit(hold.id, "u_a")
    assert (await service.buy(sale.id, "u_a", 2, "again")).status == "reserved"


async def test_restock_after_the_sale_ended_changes_nothing(
    service: InventoryService, sale: Sale
) -> None:
    hold = await hold_for(service, sale, "u_a")
    await service.commit(hold.id, "u_a")
    await service.end_sale(sale.id, "anchor")
    assert await service.restock(hold.id) is False
    assert await counters(service, sale.id) == (9, 0, 1)
    assert (await service.get_reservation(hold.id)).state == "committed"


async def test_sweeper_returns_expired_holds_and_emits_expired(
    service: InventoryService, sale: Sale, clock: Clock, redis: aioredis.Redis
) -> None:
    early = await hold_for(service, sale, "u_a", 2)
    clock.advance(10_000)
    late = await hold_for(service, sale, "u_b", 1)
    seen: list[Sale] = []
    sweeper = HoldSweeper(service, on_change=seen.append)
    await sweeper.sweep_once()  # first pass reports every sale's status once
    seen.clear()

    clock.advance(19_999)  # 1 ms before the first hold's expiry
    assert await sweeper.sweep_once() == []
    assert await counters(service, sale.id) == (7, 3, 0)

    clock.advance(1)
    changed = await sweeper.sweep_once()
    assert [s.id for s in changed] == [sale.id]
    assert (changed[0].remaining, changed[0].held) == (9, 1)
    assert seen == changed
    assert (await service.get_reservation(early.id)).state == "expired"
    assert (await service.get_reservation(late.id)).state == "held"

    events = await stream_events(redis, sale.id)
    assert [kind for kind, _ in events] == ["reserved", "reserved", "expired"]
    assert events[2][1]["reservation"] == early.id
    assert events[2][1]["ts"] == clock.now
    # Expired units are free again, also for the same buyer's limit.
    assert (await service.buy(sale.id, "u_a", 2, "second")).status == "reserved"


async def test_commit_at_or_after_expiry_is_refused_and_returns_the_stock(
    service: InventoryService, sale: Sale, clock: Clock, redis: aioredis.Redis
) -> None:
    hold = await hold_for(service, sale, "u_a")
    clock.advance(30_000)  # exactly expires_at: no longer committable
    with pytest.raises(HoldExpired) as info:
        await service.commit(hold.id, "u_a")
    assert info.value.http_status == 410
    assert info.value.expires_at == hold.expires_at
    assert await counters(service, sale.id) == (10, 0, 0)
    with pytest.raises(HoldExpired):
        await service.commit(hold.id, "u_a")
    assert [kind for kind, _ in await stream_events(redis, sale.id)] == ["reserved", "expired"]
    # The sweeper finds nothing left to do: the unit came back exactly once.
    assert (await service.expire_holds(sale.id)).expired == 0
    assert await counters(service, sale.id) == (10, 0, 0)


async def test_sold_out_turns_live_again_when_holds_expire(
    service: InventoryService, clock: Clock
) -> None:
    sale = await service.create_sale(make_spec(clock, stock=2, per_user_limit=2))
    await hold_for(service, sale, "u_a", 2)
    assert (await service.get_sale(sale.id)).status == "sold_out"
    clock.advance(30_000)
    outcome = await service.expire_holds(sale.id)
    assert outcome.stock is not None
    assert (outcome.expired, outcome.stock.status) == (1, "live")


async def test_concurrent_sweepers_return_each_hold_exactly_once(
    redis_url: str, service: InventoryService, clock: Clock, redis: aioredis.Redis
) -> None:
    sale = await service.create_sale(make_spec(clock, stock=300, per_user_limit=1))
    await asyncio.gather(*(service.buy(sale.id, f"u_{n}", 1, "r") for n in range(300)))
    clock.advance(30_000)
    # Three "processes", each with its own connection and a small per-call bound.
    clients = [aioredis.Redis.from_url(redis_url) for _ in range(3)]
    try:
        sweepers = [
            HoldSweeper(InventoryService(c, now_ms=clock), batch_limit=16) for c in clients
        ]
        await asyncio.gather(*(s.sweep_once() for s in sweepers))
    finally:
        for c in clients:
            await c.aclose()
    assert await counters(service, sale.id) == (300, 0, 0)
    kinds = [kind for kind, _ in await stream_events(redis, sale.id)]
    assert kinds.count("expired") == 300
    assert await redis.hlen(sale_keys(sale.id).users) == 300
    assert set((await redis.hgetall(sale_keys(sale.id).users)).values()) == {b"0"}


async def test_sweeper_loop_reports_changes_and_stops_on_close(
    service: InventoryService, sale: Sale, clock: Clock
) -> None:
    await hold_for(service, sale, "u_a")
    clock.advance(30_000)
    reported: asyncio.Queue[Sale] = asyncio.Queue()

    async def on_change(changed: Sale) -> None:
        await reported.put(changed)

    sweeper = HoldSweeper(service, interval_s=0.01, on_change=on_change)
    sweeper.start()
    try:
        changed = await asyncio.wait_for(reported.get(), 10)
    finally:
        await sweeper.close()
    assert (changed.id, changed.remaining, changed.held) == (sale.id, 10, 0)


async def test_ended_sale_without_holds_leaves_the_active_set_with_a_ttl(
    service: InventoryService, sale: Sale, clock: Clock, redis: aioredis.Redis
) -> None:
    hold = await hold_for(service, sale, "u_a")
    await service.end_sale(sale.id, "anchor")
    outcome = await service.expire_holds(sale.id)
    assert not outcome.done  # a hold is still committable
    assert await redis.sismember(ACTIVE_SALES, sale.id)
    await service.commit(hold.id, "u_a")
    outcome = await service.expire_holds(sale.id)
    assert outcome.done
    assert not await redis.sismember(ACTIVE_SALES, sale.id)
    ttl = await redis.pttl(sale_keys(sale.id).res)
    assert 0 < ttl <= 30 * 24 * 3600 * 1000
    assert (await service.get_reservation(hold.id)).state == "committed"


async def test_stream_entries_carry_the_documented_handoff(
    service: InventoryService, sale: Sale, clock: Clock, redis: aioredis.Redis
) -> None:
    kept = await hold_for(service, sale, "u_a")
    given_back = await hold_for(service, sale, "u_b")
    clock.advance(1_000)
    await service.commit(kept.id, "u_a")
    await service.release(given_back.id, "u_b")
    await service.restock(kept.id)
    events = await stream_events(redis, sale.id)
    assert [kind for kind, _ in events] == [
        "reserved", "reserved", "committed", "released", "restocked",
    ]
    for _, data in events:
        assert set(data) == HANDOFF_FIELDS
    _, first = events[0]
    assert first == {
        "reservation": kept.id,
        "sale": sale.id,
        "room": "r_room000001",
        "product": "p_prod000001",
        "anchor": "u_anchor000001",
        "user": "u_a",
        "qty": 1,
        "price_cents": 69_900,
        "title": "Jade bangle 翡翠手镯",
        "category": "jewelry",
        "brand": "Hetian",
        "expires_at": kept.expires_at,
        "ts": sale.starts_at,
    }
    assert events[2][1]["ts"] == clock.now
    # The orders consumer group sees every entry from the start.
    read: Any = await redis.xreadgroup("orders", "c1", {sale_keys(sale.id).stream: ">"})
    assert len(read[0][1]) == 5


async def test_sweeper_drops_ids_of_sales_that_do_not_exist(
    service: InventoryService, redis: aioredis.Redis, clock: Clock
) -> None:
    """Once they have stayed without a sale for the grace: until then the id may be a sale's
    that ``create_sale`` has listed and not yet created."""
    await redis.sadd(ACTIVE_SALES, "s_GONEGONE00")
    sweeper = HoldSweeper(service)
    assert await sweeper.sweep_once() == []
    clock.advance(UNKNOWN_SALE_GRACE_MS - 1)
    assert await sweeper.sweep_once() == []
    assert await redis.sismember(ACTIVE_SALES, "s_GONEGONE00")
    clock.advance(1)
    assert await sweeper.sweep_once() == []
    assert not await redis.sismember(ACTIVE_SALES, "s_GONEGONE00")


async def test_closing_the_sweeper_stops_it_even_when_redis_py_swallows_the_cancel() -> None:
    """redis-py retries (or raises its own error) when a cancellation lands while it opens a
    connection; the loop must stop all the same, not wait out the shutdown's step timeout."""

    class SwallowingService:
        calls = 0
        entered = asyncio.Event()

        async def active_sale_ids(self) -> list[str]:
            self.calls += 1
            self.entered.set()
            try:
                await asyncio.Event().wait()  # a call that answers only if not cancelled
            except asyncio.CancelledError:
                await asyncio.sleep(0)  # "reconnected", and answers as if nothing happened
            return []

    service = SwallowingService()
    sweeper = HoldSweeper(service, interval_s=0.01)  # type: ignore[arg-type]
    sweeper.start()
    await asyncio.wait_for(service.entered.wait(), 30)  # inside active_sale_ids
    closing = asyncio.ensure_future(sweeper.close())
    # A sweeper that went on sweeping would never let close() return: the bound is for failing.
    done, _ = await asyncio.wait([closing], timeout=30)
    assert done, "the sweeper went on sweeping after close()"
    assert service.calls == 1
