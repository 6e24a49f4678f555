"""Sold-out marks cross processes: the process that sells the last unit tells the others, and
one whose mark units coming back clear tells them too (liveroom.sales.SoldOutRelay)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from inventory import InventoryService
from liveroom.bus import ControlBus
from liveroom.hooks import Hook
from liveroom.sales import SoldOutRelay
from tests.clock import Clock
from tests.inventory.conftest import make_spec
from tests.inventory.test_sold_out_marks import answered_at_once, marked


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def two_processes(redis: aioredis.Redis, clock: Clock
                        ) -> AsyncIterator[tuple[InventoryService, InventoryService]]:
    """Two servers' inventories on one Redis, their marks carried by the control bus."""
    services, closers = [], []
    for name in ("a", "b"):
        bus = ControlBus(redis)
        news: Hook[[str, bool]] = Hook("sold-out news")
        service = InventoryService(redis, now_ms=clock, on_sold_out_news=news.fire)
        relay = SoldOutRelay(bus, service, name)
        news.connect(relay.tell)
        await bus.start()
        await service.start()
        services.append(service)
        closers.append((service, bus, relay))
    yield services[0], services[1]
    for service, bus, relay in closers:
        await service.close()
        await relay.close()
        await bus.close()
        await service.disconnect()


async def test_a_sell_out_and_units_back_reach_the_other_processes(
        two_processes: tuple[InventoryService, InventoryService], clock: Clock) -> None:
    a, b = two_processes
    sale = await a.create_sale(make_spec(clock, stock=1, per_user_limit=1))
    won = await a.buy(sale.id, "u_winner", 1, "press")
    assert won.reservation is not None
    # b never asked Redis about this sale, and answers its buyers at once all the same.
    await marked(b, sale.id)
    answer = answered_at_once(b, sale.id, "u_loser", "press")
    assert answer is not None
    assert answer.status == "sold_out"
    # The winner lets go on a; b hears that the unit is back.
    await a.release(won.reservation.id, "u_winner")
    await marked(b, sale.id, want=False)
    assert (await b.buy(sale.id, "u_late", 1, "press")).status == "reserved"
