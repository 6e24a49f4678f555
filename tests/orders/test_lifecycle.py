from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import get_args

import pytest

from orders import TRANSITIONS, CertificationRequired, IllegalTransition, OrderStatus
from tests.rawdb import StoreLocation

from .conftest import ADMIN, ANCHOR, BUYER, GOOD_CARD, World, make_world, online
from .helpers import order_in

STATUSES: tuple[str, ...] = get_args(OrderStatus)


def _actions(world: World) -> dict[str, Callable[[str], Awaitable[object]]]:
    s = world.service

    async def pay(order_id: str) -> object:
        await s.pay(BUYER, order_id, online(GOOD_CARD))
        await world.payments.drain()
        return None

    return {
        "pay": pay,
        "confirm": lambda oid: s.pay(BUYER, oid, "cod"),
        "cancel": lambda oid: s.cancel(BUYER, oid, "changed my mind"),
        "ship": lambda oid: s.ship(ANCHOR, oid),
        "deliver": lambda oid: s.deliver(ANCHOR, oid),
        "complete": lambda oid: s.complete(BUYER, oid),
        "request_return": lambda oid: s.request_return(BUYER, oid),
        "receive_return": lambda oid: s.receive_return(ANCHOR, oid),
        "refund_no_return": lambda oid: s.refund_no_return(BUYER, oid),
    }


def test_every_action_is_exercised() -> None:
    assert set(TRANSITIONS) == {
        "pay", "confirm", "cancel", "ship", "deliver", "complete", "request_return",
        "receive_return", "refund_no_return",
    }


@pytest.mark.parametrize("status", STATUSES)
@pytest.mark.parametrize("action", sorted(TRANSITIONS))
async def test_transition_table(store_location: StoreLocation, status: str,
                                action: str) -> None:
    """Every action from every status, on both stores: allowed ones move the order and record
    one event in the same step, refused ones change nothing."""
    world = await make_world(store_location)
    try:
        order = await order_in(world, status, category="essential_oil")
        world.certs.refund_no_return.add((order.anchor_id, order.category))
        before = await world.service.history(BUYER, order.id)
        sources, target = TRANSITIONS[action]
        if status in sources:
            await _actions(world)[action](order.id)
            after = await world.service.get_order(BUYER, order.id)
            assert after.status == target
            new = (await world.service.history(BUYER, order.id))[len(before):]
            moves = [(e.kind, e.from_status, e.to_status) for e in new
                     if e.from_status != e.to_status]
            assert moves == [(action, status, target)]
        else:
            with pytest.raises(IllegalTransition) as info:
                await _actions(world)[action](order.id)
            assert info.value.status == status
            assert info.value.http_status == 409
            # Switching to cash on delivery is asked for through pay().
            assert info.value.action == ("pay" if action == "confirm" else action)
            after = await world.service.get_order(BUYER, order.id)
            assert after.status == status
            assert await world.service.history(BUYER, order.id) == before
    finally:
        await world.payments.close()
        await world.store.close()


async def test_full_path_records_history_with_actors_and_times(world: World) -> None:
    order = await order_in(world, "completed")
    history = await world.service.history(BUYER, order.id)
    assert [(e.kind, e.actor_id) for e in history] == [
        ("created", BUYER.user_id),
        ("confirm", BUYER.user_id),
        ("ship", ANCHOR.user_id),
        ("deliver", ANCHOR.user_id),
        ("complete", BUYER.user_id),
    ]
    final = await world.service.get_order(BUYER, order.id)
    assert final.shipped_at is not None
    assert final.delivered_at is not None
    assert final.completed_at is not None
    # Cash on delivery is collected when the parcel is handed over.
    [payment] = await world.service.payments_of(BUYER, order.id)
    assert (payment.method, payment.status) == ("cod", "approved")


async def test_cancel_puts_the_unit_back_while_the_sale_is_live(world: World) -> None:
    order = await order_in(world, "confirmed")
    stock_before = world.ledger.sales[order.sale_id].stock
    cancelled = await world.service.cancel(BUYER, order.id)
    assert cancelled.status == "cancelled"
    assert cancelled.restock_state == "done"
    assert world.ledger.sales[order.sale_id].stock == stock_before + order.qty
    assert world.ledger.reservations[order.reservation_id].state == "restocked"


async def test_cancel_after_the_sale_ended_keeps_stock_closed(world: World) -> None:
    order = await order_in(world, "confirmed")
    world.ledger.sales[order.sale_id].live = False
    stock_before = world.ledger.sales[order.sale_id].stock
    cancelled = await world.service.cancel(ANCHOR, order.id)
    assert cancelled.restock_state == "skipped"
    assert world.ledger.sales[order.sale_id].stock == stock_before


async def test_cancel_of_a_paid_order_refunds_the_payment(world: World) -> None:
    order = await order_in(world, "paid")
    await world.service.cancel(BUYER, order.id)
    [payment] = await world.service.payments_of(BUYER, order.id)
    assert (payment.status, payment.reason) == ("refunded", "order_cancelled")


async def test_restock_interrupted_by_an_inventory_outage_is_resumed(world: World) -> None:
    order = await order_in(world, "confirmed")
    real_restock = world.ledger.restock

    async def outage(reservation_id: str) -> bool:
        raise ConnectionError("inventory unreachable")

    world.ledger.restock = outage  # type: ignore[method-assign]
    cancelled = await world.service.cancel(BUYER, order.id)
    assert cancelled.status == "cancelled"
    assert cancelled.restock_state == "pending"
    world.ledger.restock = real_restock  # type: ignore[method-assign]
    assert await world.service.resume_restocks() == 1
    assert (await world.service.get_order(BUYER, order.id)).restock_state == "done"
    assert await world.service.resume_restocks() == 0


async def test_jewelry_cannot_ship_without_a_vault_certificate(world: World) -> None:
    held = world.ledger.hold(BUYER.user_id, category="jewelry", product="p_ring000001")
    order = await world.checkout(BUYER, held)
    with pytest.raises(CertificationRequired) as info:
        await world.service.ship(ANCHOR, order.id)
    assert info.value.certification == "vault"
    assert (await world.service.get_order(BUYER, order.id)).status == "confirmed"
    world.certs.vault.add("p_ring000001")
    assert (await world.service.ship(ADMIN, order.id)).status == "shipped"


async def test_non_jewelry_ships_without_a_vault_certificate(world: World) -> None:
    order = await order_in(world, "confirmed", category="clothing")
    assert (await world.service.ship(ANCHOR, order.id)).status == "shipped"
