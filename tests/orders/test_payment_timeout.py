"""Payment timeouts: unpaid online orders are cancelled, charges nobody answers are given up."""

from __future__ import annotations

import asyncio

import pytest

from orders import (
    CHARGE_TIMEOUT_MS,
    PAYMENT_TIMEOUT_MS,
    ChargeRequest,
    Order,
    OrderChange,
    Payment,
    PaymentInProgress,
    PaymentWindowClosed,
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


# -- a charge given up for any reason: its late answer is still honoured -----------------------


def fail_after_sending(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    """The provider receives each charge request, but the connection breaks before it says so:
    the service gives the charge up (``provider_unavailable``), yet the answer still comes."""
    real = world.payments.charge

    async def charge_then_fail(request: ChargeRequest) -> None:
        await real(request)
        raise ConnectionError("connection reset after the request was sent")

    monkeypatch.setattr(world.payments, "charge", charge_then_fail)


async def given_up_charge(
    world: World, monkeypatch: pytest.MonkeyPatch, reason: str
) -> tuple[Order, tuple[bytes, str]]:
    """An online order whose charge the service gave up as declined with ``reason`` although
    the provider took it, and the provider's (late) answer to that charge."""
    lost = lose_callbacks(world)
    if reason == "provider_unavailable":
        fail_after_sending(world, monkeypatch)
    order = await world.checkout(BUYER, world.ledger.hold(BUYER.user_id), online(GOOD_CARD))
    await world.payments.drain()
    if reason == "timed_out":
        world.clock.advance(CHARGE_TIMEOUT_MS)
        await world.service.expire_unpaid()
    [payment] = await world.service.payments_of(BUYER, order.id)
    assert (payment.status, payment.reason) == ("declined", reason)
    [answer] = lost
    return order, answer


@pytest.mark.parametrize("reason", ["timed_out", "provider_unavailable"])
async def test_a_late_approval_of_a_given_up_charge_pays_the_order(
    world: World, monkeypatch: pytest.MonkeyPatch, reason: str
) -> None:
    order, approval = await given_up_charge(world, monkeypatch, reason)
    paid = await world.service.handle_payment_callback(*approval)
    assert paid.status == "paid"
    [payment] = await world.service.payments_of(BUYER, order.id)
    assert (payment.status, payment.reason) == ("approved", None)
    assert (await world.service.handle_payment_callback(*approval)).status == "paid", "replay"


@pytest.mark.parametrize("reason", ["timed_out", "provider_unavailable"])
async def test_a_late_approval_of_a_given_up_charge_is_refunded_once_paid_otherwise(
    world: World, monkeypatch: pytest.MonkeyPatch, reason: str
) -> None:
    order, approval = await given_up_charge(world, monkeypatch, reason)
    assert (await world.service.pay(BUYER, order.id, "cod")).status == "confirmed"
    after = await world.service.handle_payment_callback(*approval)
    assert after.status == "confirmed"
    statuses = [(p.method, p.status, p.reason)
                for p in await world.service.payments_of(BUYER, order.id)]
    assert statuses == [("online", "refunded", "order_not_payable"), ("cod", "pending", None)]


async def test_a_late_decline_of_a_charge_given_up_as_unavailable_changes_nothing(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    lost = lose_callbacks(world)
    fail_after_sending(world, monkeypatch)
    order = await world.checkout(BUYER, world.ledger.hold(BUYER.user_id), online(DECLINED_CARD))
    await world.payments.drain()
    [decline] = lost
    assert (await world.service.handle_payment_callback(*decline)).status == "created"
    [payment] = await world.service.payments_of(BUYER, order.id)
    assert (payment.status, payment.reason) == ("declined", "provider_unavailable")
    kinds = [e.kind for e in await world.service.history(BUYER, order.id)]
    assert kinds == ["created", "payment_failed"]


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


async def test_a_switch_to_cash_started_in_time_and_landing_after_the_listing_is_kept(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The buyer switches to cash on delivery a millisecond before the deadline; the switch
    is written only after the upkeep listed the order. It was in time: the order is kept."""
    unpaid = await order_in(world, "created")
    world.clock.advance(PAYMENT_TIMEOUT_MS - 1)
    reached, gate = asyncio.Event(), asyncio.Event()

    async def stall() -> None:  # pay has read its clock and the payments; it waits here
        reached.set()
        await gate.wait()

    after_next(world, "payments", stall, monkeypatch)
    paying = asyncio.create_task(world.service.pay(BUYER, unpaid.id, "cod"))
    await reached.wait()
    world.clock.advance(1)  # the deadline: the upkeep lists the order

    async def switch_lands() -> None:
        gate.set()
        await paying

    after_next(world, "unpaid_online_orders", switch_lands, monkeypatch)
    assert await world.service.expire_unpaid() == []
    assert paying.result().status == "confirmed"
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


@pytest.mark.parametrize("payment", [online(GOOD_CARD), "cod"])
async def test_a_payment_landing_after_the_timeout_listed_the_order_is_refused(
    world: World, monkeypatch: pytest.MonkeyPatch, payment: object
) -> None:
    """The buyer pays (by card, or switching to cash) at the deadline, just as the upkeep
    lists the order: the payment window has closed, so no card is charged and the order is
    cancelled, its unit back on sale."""
    unpaid = await order_in(world, "created")
    lost = lose_callbacks(world)
    world.clock.advance(PAYMENT_TIMEOUT_MS)
    refusals: list[PaymentWindowClosed] = []

    async def pay_now() -> None:
        try:
            await world.service.pay(BUYER, unpaid.id, payment)
        except PaymentWindowClosed as refusal:
            refusals.append(refusal)

    after_next(world, "unpaid_online_orders", pay_now, monkeypatch)
    [cancelled] = await world.service.expire_unpaid()
    assert (cancelled.id, cancelled.status) == (unpaid.id, "cancelled")
    [refusal] = refusals
    assert (refusal.code, refusal.http_status) == ("payment_window_closed", 409)
    assert refusal.deadline_ms == unpaid.created_at + PAYMENT_TIMEOUT_MS
    await world.payments.drain()
    assert lost == [], "no card was charged"
    payments = [(p.status, p.reason) for p in await world.service.payments_of(BUYER, unpaid.id)]
    assert payments == [("declined", "card_declined")]
    assert world.ledger.reservations[unpaid.reservation_id].state == "restocked"


# -- the payment window: a buyer cannot keep the unit by paying again and again ----------------


async def test_paying_again_after_the_deadline_is_refused_and_the_unit_goes_back(
    world: World
) -> None:
    """A buyer (or a script) re-paying with a declined card right after each decline would
    always have a charge pending when the upkeep looks. Paying is refused from the deadline
    on, so the order is cancelled on time and its unit returned."""
    unpaid = await order_in(world, "created")  # declined at checkout
    stock = world.ledger.sales[unpaid.sale_id].stock
    deadline = unpaid.created_at + PAYMENT_TIMEOUT_MS
    while world.clock() < deadline:  # one try a minute until the deadline: all accepted
        await world.service.pay(BUYER, unpaid.id, online(DECLINED_CARD))
        assert await world.service.expire_unpaid() == []
        await world.payments.drain()
        world.clock.advance(min(60_000, deadline - world.clock()))
    tries = len(await world.service.payments_of(BUYER, unpaid.id))
    assert tries == 1 + 15

    for payment in (online(DECLINED_CARD), online(GOOD_CARD), "cod"):
        with pytest.raises(PaymentWindowClosed) as info:
            await world.service.pay(BUYER, unpaid.id, payment)
        assert info.value.deadline_ms == deadline
    assert len(await world.service.payments_of(BUYER, unpaid.id)) == tries, "nothing recorded"
    assert (await world.service.get_order(BUYER, unpaid.id)).status == "created"

    [cancelled] = await world.service.expire_unpaid()
    assert (cancelled.id, cancelled.status) == (unpaid.id, "cancelled")
    assert world.ledger.reservations[unpaid.reservation_id].state == "restocked"
    assert world.ledger.sales[unpaid.sale_id].stock == stock + 1


async def test_a_charge_started_after_the_deadline_does_not_hold_the_order(world: World) -> None:
    """A charge started after the deadline (a server before this rule still accepted one) is
    not waited for: the order is cancelled on time, and its approval, when it comes, is
    refunded."""
    unpaid = await order_in(world, "created")
    lost = lose_callbacks(world)
    world.clock.advance(PAYMENT_TIMEOUT_MS + 30_000)
    now = world.clock()
    late = Payment("pay_late00000001", unpaid.id, "online", unpaid.total_cents, "pending", now,
                   card_last4="4242")
    started = OrderChange(unpaid.id, frozenset({"created"}), "created", now, payments=[late],
                          no_pending_charge=True)
    assert await world.store.apply(started) is not None
    await world.payments.charge(ChargeRequest(late.id, unpaid.id, late.amount_cents, GOOD_CARD))
    await world.payments.drain()

    [cancelled] = await world.service.expire_unpaid()  # the charge is younger than its timeout
    assert (cancelled.id, cancelled.status) == (unpaid.id, "cancelled")
    assert world.ledger.reservations[unpaid.reservation_id].state == "restocked"
    [approval] = lost
    assert (await world.service.handle_payment_callback(*approval)).status == "cancelled"
    last = (await world.service.payments_of(BUYER, unpaid.id))[-1]
    assert (last.id, last.status, last.reason) == (late.id, "refunded", "order_not_payable")
