"""Fixtures for the inventory tests: a driven clock, a running service on the real test Redis."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import pytest
import redis.asyncio as aioredis

from inventory import InventoryService, Sale, SaleSpec, StockLevel
from tests.clock import Clock


def make_spec(clock: Clock, **changes: Any) -> SaleSpec:
    spec = SaleSpec(
        room_id="r_room000001",
        product_id="p_prod000001",
        anchor_id="u_anchor000001",
        title="Jade bangle 翡翠手镯",
        category="jewelry",
        brand="Hetian",
        stock=10,
        price_cents=69_900,
        per_user_limit=2,
        starts_at_ms=clock.now,
        ends_at_ms=clock.now + 600_000,
        hold_ms=30_000,
    )
    return replace(spec, **changes)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def stock_changes() -> list[StockLevel]:
    return []


@pytest.fixture
async def service(
    redis: aioredis.Redis, clock: Clock, stock_changes: list[StockLevel]
) -> AsyncIterator[InventoryService]:
    svc = InventoryService(redis, now_ms=clock, on_stock_change=stock_changes.append)
    await svc.start()
    yield svc
    await svc.close()
    await svc.disconnect()


@pytest.fixture
async def sale(service: InventoryService, clock: Clock) -> Sale:
    return await service.create_sale(make_spec(clock))
