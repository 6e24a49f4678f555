"""Bring an order to any status through the public service, the way users would."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from orders import Order

from .conftest import ADMIN, ANCHOR, BUYER, DECLINED_CARD, World, online


async def order_in(world: World, status: str, **hold_args: object) -> Order:
    held = world.ledger.hold(BUYER.user_id, **hold_args)  # type: ignore[arg-type]
    service = world.service
    if status in ("created", "paid"):
        order = await world.checkout(
            BUYER, held, online(DECLINED_CARD if status == "created" else "4242424242424242")
        )
        await world.payments.drain()
        return await service.get_order(BUYER, order.id)
    order = await world.checkout(BUYER, held, "cod")
    if status == "confirmed":
        return order
    if status == "cancelled":
        return await service.cancel(BUYER, order.id)
    if held.category == "jewelry":
        world.certs.vault.add(held.product_id)
    order = await service.ship(ANCHOR, order.id)
    if status == "shipped":
        return order
    order = await service.deliver(ANCHOR, order.id)
    if status == "delivered":
        return order
    if status == "completed":
        return await service.complete(BUYER, order.id)
    if status == "return_requested":
        await service.request_return(BUYER, order.id)
        return await service.get_order(BUYER, order.id)
    if status == "returned":
        await service.request_return(BUYER, order.id)
        return await service.receive_return(ADMIN, order.id)
    if status == "refunded":
        world.certs.refund_no_return.add((held.anchor_id, held.category))
        await service.refund_no_return(BUYER, order.id)
        return await service.get_order(BUYER, order.id)
    raise AssertionError(status)


def after_next(world: World, method: str, then: Callable[[], Awaitable[object]],
               monkeypatch: pytest.MonkeyPatch) -> None:
    """The next call of the store's ``method`` answers, and then (before its caller goes on)
    ``then`` runs: another request landing between a read and the write that follows it."""
    real = getattr(world.store, method)
    armed = [True]

    async def wrapped(*args: Any) -> Any:
        result = await real(*args)
        if armed[0]:
            armed[0] = False
            await then()
        return result

    monkeypatch.setattr(world.store, method, wrapped)
