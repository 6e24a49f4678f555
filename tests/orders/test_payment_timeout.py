"""Payment timeouts: unpaid online orders are cancelled, charges nobody answers are given up."""

from __future__ import annotations

import pytest

from orders import (
    CHARGE_TIMEOUT_MS,
    PAYMENT_TIMEOUT_MS,
    Order,
    PaymentInProgress,
)

from .conftest import BUYER, DECLINED_CARD, GOOD_CARD, World, online
from .helpers import after_next, order_in


def lose_callbacks(world: World) -> list[tuple[bytes, str]]:
    """The provider accepts charges but its answers never arrive (a crash before the charge
    was sent, or a lost webhook): what it would have sent is kept here instead."""
    lost: list[tuple[bytes, str]] = []

    async def swallow(raw: bytes, signature: str) -> None:
        lost.append((raw, signature))

    world.payments.sink = swallow
    return lost


async def test_an_unpaid_online_order_is_cancelled_after_the_timeout(world: World) -> None:
    unpaid = await order_in(world, "created")  # its card was declined
    paid = await order_in(world, "paid")
    cod = await order_in(world, "confirmed")
    stock = world.ledger.sales[unpaid.sale_id].stock
    world.clock.advance(PAYMENT_TIMEOUT_MS - 1)
    assert await world.service.expire_unpaid() == []
    assert (await world.service.get_order(BUYER, unpaid.id)).status == "created"

    world.clock.advance(1)
    [cancelled] = await world.service.expire_unpaid()
    assert (cancelled.id, cancelled.status, cancelled.restock_state) == (unpaid.id, "cancelled",
                                                                         "done")
    assert world.ledger.sales[unpaid.sale_id].stock == stock + 1, "the unit is back on sale"
    assert world.ledger.reservations[unpaid.reservation_id].state == "restocked"
    [event] = [e for e in await world.service.history(BUYER, unpaid.id) if e.kind == "cancel"]
    assert (event.actor_id, event.detail["reason"]) == ("system", "payment_timeout")
    assert (await world.service.get_order(BUYER, paid.id)).status == "paid"
    assert (await world.service.get_order(BUYER, cod.id)).status == "confirmed"
    assert await world.service.expire_unpaid() == [], "cancelled once"
    assert world.ledger.sales[unpaid.sale_id].stock == stock + 1


async def test_an_order_paid_just_in_time_is_kept(world: World) -> None:
    unpaid = await order_in(world, "created")
    world.clock.advance(PAYMENT_TIMEOUT_MS - 1)
    await world.service.pay(BUYER, unpaid.id, online(GOOD_CARD))
    await world.payments.drain()
    world.clock.advance(1)
    assert await world.service.expire_unpaid() == []
    assert (await world.service.get_order(BUYER, unpaid.id)).status == "paid"


async def test_a_stuck_charge_times_out_and_the_buyer_can_pay_again(world: World) -> None:
    lost = lose_callbacks(world)
    held = world.ledger.hold(BUYER.user_id)
    order = await world.checkout(BUYER, held, online(GOOD_CARD))
    await world.payments.drain()
    assert len(lost) == 1
    with pytest.raises(PaymentInProgress):
        await world.service.pay(BUYER, order.id, online(GOOD_CARD))

    world.clock.advance(CHARGE_TIMEOUT_MS - 1)
    assert await world.service.expire_unpaid() == []
    world.clock.advance(1)
    [changed] = await world.service.expire_unpaid()
    assert changed.status == "created"
    [stuck] = await world.service.payments_of(BUYER, order.id)
    assert (stuck.status, stuck.reason) == ("declined", "timed_out")
    kinds = [e.kind for e in await world.service.history(BUYER, order.id)]
    assert kinds == ["created", "payment_timed_out"]

    # The buyer retries (here by switching to cash on delivery) and the order goes ahead.
    confirmed = await world.service.pay(BUYER, order.id, "cod")
    assert confirmed.status == "confirmed"
    # The first charge's approval turns up after all: the money goes straight back.
    after = await world.service.handle_payment_callback(*lost[0])
    assert after.status == "confirmed"
    statuses = [(p.method, p.status) for p in await world.service.payments_of(BUYER, order.id)]
    assert statuses == [("online", "refunded"), ("cod", "pending")]


async def test_a_late_approval_of_a_timed_out_charge_still_pays_the_order(world: World) -> None:
    lost = lose_callbacks(world)
    held = world.ledger.hold(BUYER.user_id)
    order = await world.checkout(BUYER, held, online(GOOD_CARD))
    await world.payments.drain()
    world.clock.advance(CHARGE_TIMEOUT_MS)
    await world.service.expire_unpaid()
    paid = await world.service.handle_payment_callback(*lost[0])
    assert paid.status == "paid"
    [payment] = await world.service.payments_of(BUYER, order.id)
    assert payment.status == "approved"
    # Replays change nothing, and the paid order is never cancelled by the timeout.
    assert (await world.service.handle_payment_callback(*lost[0])).status == "paid"
    world.clock.advance(PAYMENT_TIMEOUT_MS)
    assert await world.service.expire_unpaid() == []


async def test_a_stuck_charge_on_an_expired_order_ends_cancelled_and_refunded(
    world: World
) -> None:
    lost = lose_callbacks(world)
    held = world.ledger.hold(BUYER.user_id)
    order = await world.checkout(BUYER, held, online(DECLINED_CARD))
    await world.payments.drain()
    world.clock.advance(PAYMENT_TIMEOUT_MS)
    changed = await world.service.expire_unpaid()
    assert [o.status for o in changed] == ["cancelled"]
    [payment] = await world.service.payments_of(BUYER, order.id)
    assert (payment.status, payment.reason) == ("declined", "timed_out")
    # Its (declined) answer arriving now changes nothing.
    assert (await world.service.handle_payment_callback(*lost[0])).status == "cancelled"
    [payment] = await world.service.payments_of(BUYER, order.id)
    assert payment.reason == "timed_out"


# -- interleavings: the timeout never undoes what happened since it listed the order ----------


async def stuck_charge(world: World) -> tuple[Order, tuple[bytes, str]]:
    """An online order whose charge's approval has not arrived (yet), and that approval."""
    lost = lose_callbacks(world)
    order = await world.checkout(BUYER, world.ledger.hold(BUYER.user_id), online(GOOD_CARD))
    await world.payments.drain()
    [approval] = lost
    return order, approval


async def test_an_order_paid_after_the_timeout_listed_it_is_kept(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    order, approval = await stuck_charge(world)
    world.clock.advance(PAYMENT_TIMEOUT_MS)  # the charge timed out too; its approval is late
    after_next(world, "unpaid_online_orders",
               lambda: world.service.handle_payment_callback(*approval), monkeypatch)
    changed = await world.service.expire_unpaid()
    assert [(o.id, o.status) for o in changed] == [(order.id, "created")], "charge timed out"
    assert (await world.service.get_order(BUYER, order.id)).status == "paid"
    [payment] = await world.service.payments_of(BUYER, order.id)
    assert payment.status == "approved"
    assert world.ledger.reservations[order.reservation_id].state == "committed", "not restocked"


async def test_an_order_switched_to_cash_on_delivery_after_the_listing_is_kept(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    unpaid = await order_in(world, "created")
    world.clock.advance(PAYMENT_TIMEOUT_MS)
    after_next(world, "unpaid_online_orders",
               lambda: world.service.pay(BUYER, unpaid.id, "cod"), monkeypatch)
    assert await world.service.expire_unpaid() == []
    assert (await world.service.get_order(BUYER, unpaid.id)).status == "confirmed"
    assert world.ledger.reservations[unpaid.reservation_id].state == "committed"


async def test_an_approval_landing_inside_the_timeout_cancel_keeps_the_order_paid(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The approval arrives after the cancel read the payments (nothing to refund) and before
    it writes: the order must not end cancelled with the buyer's money kept."""
    order, approval = await stuck_charge(world)
    world.clock.advance(PAYMENT_TIMEOUT_MS)
    after_next(world, "payments",
               lambda: world.service.handle_payment_callback(*approval), monkeypatch)
    await world.service.expire_unpaid()
    assert (await world.service.get_order(BUYER, order.id)).status == "paid"
    [payment] = await world.service.payments_of(BUYER, order.id)
    assert payment.status == "approved"


async def test_a_buyer_cancelling_while_the_approval_lands_gets_the_money_back(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    order, approval = await stuck_charge(world)
    after_next(world, "payments",
               lambda: world.service.handle_payment_callback(*approval), monkeypatch)
    cancelled = await world.service.cancel(BUYER, order.id, "changed my mind")
    assert cancelled.status == "cancelled"
    [payment] = await world.service.payments_of(BUYER, order.id)
    assert (payment.status, payment.reason) == ("refunded", "order_cancelled")
    history = [(e.kind, e.from_status, e.to_status)
               for e in await world.service.history(BUYER, order.id)]
    assert history == [("created", None, "created"), ("pay", "created", "paid"),
                       ("cancel", "paid", "cancelled"), ("restock", "cancelled", "cancelled")]


# -- a buyer paying right now is not cancelled under them --------------------------------------


async def test_a_charge_started_just_before_the_timeout_is_answered_before_cancelling(
    world: World
) -> None:
    unpaid = await order_in(world, "created")  # declined at checkout
    lost = lose_callbacks(world)
    world.clock.advance(PAYMENT_TIMEOUT_MS - 60_000)  # 14:00: the buyer tries another card
    await world.service.pay(BUYER, unpaid.id, online(GOOD_CARD))
    await world.payments.drain()
    world.clock.advance(60_000)  # 15:00, the provider has not answered yet
    assert await world.service.expire_unpaid() == []
    [(raw, signature)] = lost
    paid = await world.service.handle_payment_callback(raw, signature)
    assert paid.status == "paid"
    payments = [(p.status, p.reason) for p in await world.service.payments_of(BUYER, unpaid.id)]
    assert payments == [("declined", "card_declined"), ("approved", None)]


async def test_a_late_decline_leaves_the_order_to_the_next_pass(world: World) -> None:
    unpaid = await order_in(world, "created")
    lost = lose_callbacks(world)
    world.clock.advance(PAYMENT_TIMEOUT_MS - 1)
    await world.service.pay(BUYER, unpaid.id, online(DECLINED_CARD))
    await world.payments.drain()
    world.clock.advance(1)
    assert await world.service.expire_unpaid() == []
    await world.service.handle_payment_callback(*lost[0])
    [cancelled] = await world.service.expire_unpaid()
    assert (cancelled.id, cancelled.status) == (unpaid.id, "cancelled")


async def test_a_charge_never_answered_is_given_up_and_then_the_order_cancelled(
    world: World
) -> None:
    unpaid = await order_in(world, "created")
    lose_callbacks(world)
    world.clock.advance(PAYMENT_TIMEOUT_MS - 1)
    await world.service.pay(BUYER, unpaid.id, online(GOOD_CARD))
    await world.payments.drain()
    world.clock.advance(CHARGE_TIMEOUT_MS - 1)
    assert await world.service.expire_unpaid() == []
    world.clock.advance(1)
    [cancelled] = await world.service.expire_unpaid()
    assert (cancelled.id, cancelled.status) == (unpaid.id, "cancelled")
    last = (await world.service.payments_of(BUYER, unpaid.id))[-1]
    assert (last.status, last.reason) == ("declined", "timed_out")


async def test_a_charge_started_after_the_timeout_listed_the_order_is_not_cut_off(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    unpaid = await order_in(world, "created")
    lost = lose_callbacks(world)
    world.clock.advance(PAYMENT_TIMEOUT_MS)
    after_next(world, "unpaid_online_orders",
               lambda: world.service.pay(BUYER, unpaid.id, online(GOOD_CARD)), monkeypatch)
    assert await world.service.expire_unpaid() == []
    await world.payments.drain()
    assert (await world.service.handle_payment_callback(*lost[0])).status == "paid"
