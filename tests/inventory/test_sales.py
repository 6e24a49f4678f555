"""Sale lifecycle: creation and its validation, status over time, ending early."""

from __future__ import annotations

import pytest
import redis.asyncio as aioredis

from inventory import InvalidSale, InventoryService, Sale, StockLevel, UnknownSale
from inventory._scripts import ScriptRunner, script_calls_for
from inventory.keys import ACTIVE_SALES, SALE_ID_RE, sale_keys
from tests.clock import Clock

from .conftest import make_spec


async def test_created_sale_reads_back_with_full_stock_and_public_fields(
    service: InventoryService, clock: Clock, redis: aioredis.Redis
) -> None:
    sale = await service.create_sale(make_spec(clock, stock=7, per_user_limit=3))
    assert SALE_ID_RE.match(sale.id)
    assert (sale.stock, sale.remaining, sale.held, sale.sold) == (7, 7, 0, 0)
    assert sale.status == "live"
    assert sale.ended_reason is None
    public = sale.to_public()
    for field in ("id", "status", "stock", "remaining", "held", "sold", "starts_at", "ends_at"):
        assert field in public
    assert public["price_cents"] == 69_900
    assert await service.get_sale(sale.id) == sale
    assert await redis.sismember(ACTIVE_SALES, sale.id)
    groups = await redis.xinfo_groups(sale_keys(sale.id).stream)
    assert [g["name"] for g in groups] == [b"orders"]


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"stock": 0}, "stock"),
        ({"stock": -5}, "stock"),
        ({"stock": True}, "stock"),
        ({"stock": 2.5}, "stock"),
        ({"price_cents": 0}, "price_cents"),
        ({"per_user_limit": 0}, "per_user_limit"),
        ({"hold_ms": 10}, "hold_ms"),
        ({"room_id": ""}, "room_id"),
        ({"title": ""}, "title"),
        ({"title": "x" * 201}, "title"),
        ({"ends_at_ms": 1_750_000_000_000 - 1}, "ends_at_ms"),
    ],
)
async def test_invalid_spec_is_refused_and_creates_nothing(
    service: InventoryService,
    clock: Clock,
    redis: aioredis.Redis,
    change: dict[str, object],
    field: str,
) -> None:
    with pytest.raises(InvalidSale) as info:
        await service.create_sale(make_spec(clock, **change))
    assert info.value.field == field
    assert info.value.code == "invalid_sale"
    assert info.value.http_status == 400
    assert await redis.dbsize() == 0


async def test_sale_window_in_the_past_or_too_long_is_refused(
    service: InventoryService, clock: Clock
) -> None:
    with pytest.raises(InvalidSale, match="already be over"):
        await service.create_sale(
            make_spec(clock, starts_at_ms=clock.now - 20_000, ends_at_ms=clock.now - 10_000)
        )
    with pytest.raises(InvalidSale, match="at most"):
        await service.create_sale(make_spec(clock, ends_at_ms=clock.now + 8 * 24 * 3_600_000))


async def test_status_follows_the_clock_scheduled_live_ended(
    service: InventoryService, clock: Clock
) -> None:
    sale = await service.create_sale(
        make_spec(clock, starts_at_ms=clock.now + 5_000, ends_at_ms=clock.now + 65_000)
    )
    assert sale.status == "scheduled"
    clock.advance(5_000)
    assert (await service.get_sale(sale.id)).status == "live"
    clock.advance(60_000)
    ended = await service.get_sale(sale.id)
    assert ended.status == "ended"
    assert ended.ended_reason == "time"


async def test_unknown_or_malformed_sale_id_raises(service: InventoryService) -> None:
    for sale_id in ("s_AAAAAAAAAA", "nope", "s_AAAA}x{AAA"):
        with pytest.raises(UnknownSale) as info:
            await service.get_sale(sale_id)
        assert info.value.http_status == 404
    with pytest.raises(UnknownSale):
        await service.end_sale("s_AAAAAAAAAA", "anchor")
    with pytest.raises(UnknownSale):
        await service.buy("s_AAAAAAAAAA", "u_a", 1, "r1")


async def test_end_sale_stops_buying_keeps_existing_holds_committable(
    service: InventoryService, sale: Sale, clock: Clock, stock_changes: list[StockLevel]
) -> None:
    bought = await service.buy(sale.id, "u_a", 1, "r1")
    assert bought.reservation is not None
    clock.advance(1_000)
    ended = await service.end_sale(sale.id, "anchor ended the show")
    assert ended.status == "ended"
    assert ended.ends_at == clock.now
    assert ended.ended_reason == "anchor ended the show"
    assert stock_changes[-1].status == "ended"

    late = await service.buy(sale.id, "u_b", 1, "r1")
    assert (late.status, late.reservation) == ("ended", None)

    committed = await service.commit(bought.reservation.id, "u_a")
    assert committed.state == "committed"
    after = await service.get_sale(sale.id)
    assert (after.remaining, after.held, after.sold) == (9, 0, 1)

    # Ending again changes nothing and keeps the first reason.
    clock.advance(1_000)
    again = await service.end_sale(sale.id, "other")
    assert (again.ends_at, again.ended_reason) == (ended.ends_at, "anchor ended the show")


async def test_end_sale_requires_a_reason(service: InventoryService, sale: Sale) -> None:
    with pytest.raises(InvalidSale):
        await service.end_sale(sale.id, "")
    assert (await service.get_sale(sale.id)).status == "live"


async def test_create_sent_twice_is_one_sale_and_another_creation_is_a_collision(
    redis_url: str, redis: aioredis.Redis
) -> None:
    """The script connection sends a call again when its connection dropped before the reply;
    the first copy may have run. Creating the same sale again must then succeed, while a
    different sale under the same id is refused."""
    runner = ScriptRunner(script_calls_for(aioredis.Redis.from_url(redis_url)))
    fields: list[str | int] = ["id", "s_TWICE00001", "room", "r_1", "product", "p_1",
                               "created_at", 1000, "stock", 5, "remaining", 5]
    twice = sale_keys("s_TWICE00001")
    try:
        assert (await runner.run("create_sale", twice, fields))[0] == "ok"
        await redis.hset(twice.meta, "remaining", 3)  # bought from meanwhile
        assert (await runner.run("create_sale", twice, fields))[0] == "ok"
        assert await redis.hget(twice.meta, "remaining") == b"3"
        other: list[str | int] = [*fields[:6], "created_at", 2000, *fields[8:]]
        assert (await runner.run("create_sale", twice, other))[0] == "exists"
    finally:
        await runner.close()
