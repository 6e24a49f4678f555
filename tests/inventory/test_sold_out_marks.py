"""Sold-out marks: a sale known to be sold out is answered at once, without Redis, and only
while that is true (units coming back, the sale ending or the mark's age end it)."""

from __future__ import annotations

import asyncio

import redis.asyncio as aioredis

from inventory import BuyResult, InventoryService, Sale
from inventory._soldout import MARK_MAX_AGE_MS
from inventory.keys import sale_keys
from tests.clock import Clock

from .conftest import make_spec


async def marked(service: InventoryService, sale_id: str, want: bool = True) -> None:
    """Wait for the mark's holders to be read (a Redis round trip in the mark's own task)."""
    for _ in range(3000):  # bounds failure only: a busy machine may take seconds
        if service.is_marked_sold_out(sale_id) == want:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"sale {sale_id} marked={not want} after 30 s")


def answered_at_once(service: InventoryService, sale_id: str, user: str,
                     request_id: str) -> BuyResult | None:
    """The answer ``buy_nowait`` gives without queueing the buy, or None if it was queued."""
    queued: list[object] = []
    answer = service.buy_nowait(sale_id, user, 1, request_id, queued.append)
    return answer


async def sold_out_sale(service: InventoryService, clock: Clock, stock: int = 2) -> Sale:
    sale = await service.create_sale(make_spec(clock, stock=stock, per_user_limit=1))
    for n in range(stock):
        assert (await service.buy(sale.id, f"u_winner{n}", 1, "press")).status == "reserved"
    assert (await service.buy(sale.id, "u_loser0", 1, "press")).status == "sold_out"
    await marked(service, sale.id)
    return sale


async def test_a_sold_out_sale_is_answered_at_once_and_not_recorded_in_redis(
        service: InventoryService, clock: Clock, redis: aioredis.Redis) -> None:
    sale = await sold_out_sale(service, clock)
    answer = answered_at_once(service, sale.id, "u_loser1", "press")
    assert answer is not None
    assert answer.status == "sold_out"
    assert answer.remaining == 0
    assert answer.reservation is None
    # The script remembers every answer it gives; this one never reached it.
    assert await redis.hget(sale_keys(sale.id).req, "u_loser1:press") is None
    assert await redis.hget(sale_keys(sale.id).req, "u_loser0:press") is not None


async def test_a_holder_retrying_gets_their_reservation_back(
        service: InventoryService, clock: Clock) -> None:
    sale = await service.create_sale(make_spec(clock, stock=1, per_user_limit=1))
    first = await service.buy(sale.id, "u_winner", 1, "press-1")
    assert first.status == "reserved"
    assert first.reservation is not None
    assert (await service.buy(sale.id, "u_loser", 1, "press-1")).status == "sold_out"
    await marked(service, sale.id)
    # The winner's answer was lost; the retry with the same request id must not hear sold out.
    assert answered_at_once(service, sale.id, "u_winner", "press-1") is None
    again = await service.buy(sale.id, "u_winner", 1, "press-1")
    assert again.status == "reserved"
    assert again.replayed
    assert again.reservation == first.reservation
    # A second press of the holder is decided by the script too: the per-person limit.
    assert (await service.buy(sale.id, "u_winner", 1, "press-2")).status == "limit_reached"


async def test_units_coming_back_clear_the_mark(service: InventoryService, clock: Clock) -> None:
    sale = await service.create_sale(make_spec(clock, stock=1, per_user_limit=1))
    won = await service.buy(sale.id, "u_winner", 1, "press")
    assert won.reservation is not None
    assert (await service.buy(sale.id, "u_loser", 1, "press")).status == "sold_out"
    await marked(service, sale.id)
    await service.release(won.reservation.id, "u_winner")
    assert not service.is_marked_sold_out(sale.id)
    late = await service.buy(sale.id, "u_late", 1, "press")
    assert late.status == "reserved"


async def test_expired_holds_clear_the_mark(service: InventoryService, clock: Clock) -> None:
    sale = await sold_out_sale(service, clock)
    clock.advance(31_000)  # past the holds' 30 s
    outcome = await service.expire_holds(sale.id)
    assert outcome.expired == 2
    assert not service.is_marked_sold_out(sale.id)
    assert (await service.buy(sale.id, "u_late", 1, "press")).status == "reserved"


async def test_a_mark_lapses_after_its_age_and_is_set_again_by_redis_answers(
        service: InventoryService, clock: Clock) -> None:
    sale = await sold_out_sale(service, clock)
    clock.advance(MARK_MAX_AGE_MS - 1)
    assert answered_at_once(service, sale.id, "u_a", "press") is not None
    clock.advance(1)
    # A lost "units back" can keep a sale closed this long at most: Redis is asked again.
    assert not service.is_marked_sold_out(sale.id)
    assert answered_at_once(service, sale.id, "u_b", "press") is None
    assert (await service.buy(sale.id, "u_c", 1, "press")).status == "sold_out"
    await marked(service, sale.id)
    assert answered_at_once(service, sale.id, "u_d", "press") is not None


async def test_an_answer_given_at_once_is_given_again_after_units_come_back(
        service: InventoryService, clock: Clock) -> None:
    sale = await service.create_sale(make_spec(clock, stock=1, per_user_limit=1))
    won = await service.buy(sale.id, "u_winner", 1, "press")
    assert won.reservation is not None
    assert (await service.buy(sale.id, "u_first", 1, "press")).status == "sold_out"
    await marked(service, sale.id)
    assert (await service.buy(sale.id, "u_loser", 1, "press-1")).status == "sold_out"
    await service.release(won.reservation.id, "u_winner")
    # Idempotent per request id, as the script is: the same press keeps its answer ...
    assert (await service.buy(sale.id, "u_loser", 1, "press-1")).status == "sold_out"
    # ... and a new press may take the unit that came back.
    assert (await service.buy(sale.id, "u_loser", 1, "press-2")).status == "reserved"


async def test_ending_the_sale_clears_the_mark(service: InventoryService, clock: Clock) -> None:
    sale = await sold_out_sale(service, clock)
    await service.end_sale(sale.id)
    assert not service.is_marked_sold_out(sale.id)
    assert (await service.buy(sale.id, "u_late", 1, "press")).status == "ended"


async def test_marks_can_be_switched_off(redis: aioredis.Redis, clock: Clock) -> None:
    service = InventoryService(redis, now_ms=clock, sold_out_mark_ms=0)
    await service.start()
    try:
        sale = await service.create_sale(make_spec(clock, stock=1, per_user_limit=1))
        assert (await service.buy(sale.id, "u_winner", 1, "press")).status == "reserved"
        assert (await service.buy(sale.id, "u_loser", 1, "press")).status == "sold_out"
        await asyncio.sleep(0.05)
        assert not service.is_marked_sold_out(sale.id)
        assert answered_at_once(service, sale.id, "u_other", "press") is None
    finally:
        await service.close()
        await service.disconnect()
