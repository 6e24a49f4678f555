from __future__ import annotations

import asyncio
import json
import random

import pytest

from orders import (
    BadSignature,
    CheckoutRequest,
    HoldExpired,
    IllegalTransition,
    InvalidCheckout,
    NotReservationHolder,
    PaymentInProgress,
    UnknownPayment,
    UnknownReservation,
    sign_callback,
)

from .conftest import BUYER, DECLINED_CARD, GOOD_CARD, OTHER, SECRET, World, body, online
from .helpers import after_next


def test_parse_accepts_a_full_body_and_normalises_the_phone() -> None:
    request = CheckoutRequest.parse(body("s_abc.3", online()))
    assert request.reservation_id == "s_abc.3"
    assert request.address.phone == "+8613800138000"
    assert request.payment.method == "online"
    assert request.payment.card == GOOD_CARD
    assert GOOD_CARD not in repr(request.payment)
    assert CheckoutRequest.parse(body("s_abc.3", {"method": "cod"})).payment.method == "cod"
    assert CheckoutRequest.parse(body("s_abc.3", "cod")).payment.method == "cod"


def _with(path: str, value: object) -> object:
    obj = body("s_abc.3", "cod")
    if path == "":
        return value
    target = obj
    *parents, last = path.split(".")
    for part in parents:
        target = target[part]  # type: ignore[assignment]
    if value is KeyError:
        del target[last]
    else:
        target[last] = value
    return obj


@pytest.mark.parametrize(
    ("path", "value", "field"),
    [
        ("", [], "body"),
        ("", None, "body"),
        ("extra", 1, "body"),
        ("reservation", KeyError, "reservation"),
        ("reservation", 17, "reservation"),
        ("reservation", "s_abc", "reservation"),
        ("reservation", "s_abc.0", "reservation"),
        ("reservation", "x_abc.3", "reservation"),
        ("address", KeyError, "address"),
        ("address", "1 Main St", "address"),
        ("address.name", KeyError, "address.name"),
        ("address.name", "   ", "address.name"),
        ("address.name", "x" * 81, "address.name"),
        ("address.line1", "a\x00b", "address.line1"),
        ("address.city", 5, "address.city"),
        ("address.phone", "call me", "address.phone"),
        ("address.phone", "123", "address.phone"),
        ("address.phone", "1" * 16, "address.phone"),
        ("address.zip", "1000", "address"),
        ("payment", KeyError, "payment"),
        ("payment", "online", "payment.card"),
        ("payment", "card", "payment"),
        ("payment", {"method": "bitcoin"}, "payment.method"),
        ("payment", {"method": "online"}, "payment.card"),
        ("payment", {"method": "online", "card": "4242424242424241"}, "payment.card"),
        ("payment", {"method": "online", "card": "42424242"}, "payment.card"),
        ("payment", {"method": "cod", "card": GOOD_CARD}, "payment.card"),
        ("payment", {"method": "cod", "tip": 1}, "payment"),
    ],
)
def test_parse_rejects_bad_bodies_naming_the_field(path: str, value: object, field: str) -> None:
    with pytest.raises(InvalidCheckout) as info:
        CheckoutRequest.parse(_with(path, value))
    assert info.value.field == field
    assert info.value.http_status == 400


async def test_bad_body_changes_nothing(world: World) -> None:
    held = world.ledger.hold(BUYER.user_id)
    bad = body(held.id, "cod")
    bad["address"] = {"name": "x"}
    with pytest.raises(InvalidCheckout):
        await world.service.checkout(BUYER, bad)
    assert world.ledger.reservations[held.id].state == "reserved"
    assert await world.service.list_orders(BUYER) == []


async def test_cod_checkout_confirms_at_the_reserved_price(world: World) -> None:
    held = world.ledger.hold(BUYER.user_id, price_cents=69_900, qty=2)
    order = await world.checkout(BUYER, held, "cod")
    assert order.status == "confirmed"
    assert order.unit_price_cents == 69_900
    assert order.total_cents == 139_800
    assert order.payment_method == "cod"
    assert world.ledger.reservations[held.id].state == "committed"
    public = order.to_public()
    assert public["items"][0]["qty"] == 2
    assert public["total_cents"] == 139_800
    history = await world.service.history(BUYER, order.id)
    assert [(e.kind, e.to_status) for e in history] == [
        ("created", "created"), ("confirm", "confirmed"),
    ]
    assert world.figure_changes == [(held.room_id, held.anchor_id)]
    recorded = await world.store.get_reservation(held.id)
    assert recorded is not None
    assert recorded.state == "committed"


async def test_online_payment_approved_by_callback_marks_paid(world: World) -> None:
    held = world.ledger.hold(BUYER.user_id)
    order = await world.checkout(BUYER, held, online(GOOD_CARD))
    assert order.status == "created"
    assert world.figure_changes == []
    await world.payments.drain()
    paid = await world.service.get_order(BUYER, order.id)
    assert paid.status == "paid"
    assert paid.placed_at is not None
    [payment] = await world.service.payments_of(BUYER, order.id)
    assert (payment.status, payment.card_last4, payment.amount_cents) == (
        "approved", "4242", order.total_cents,
    )
    assert world.figure_changes == [(held.room_id, held.anchor_id)]


async def test_declined_card_keeps_order_unpaid_and_buyer_can_pay_again(world: World) -> None:
    held = world.ledger.hold(BUYER.user_id)
    order = await world.checkout(BUYER, held, online(DECLINED_CARD))
    await world.payments.drain()
    after = await world.service.get_order(BUYER, order.id)
    assert after.status == "created"
    [declined] = await world.service.payments_of(BUYER, order.id)
    assert (declined.status, declined.reason) == ("declined", "card_declined")
    kinds = [e.kind for e in await world.service.history(BUYER, order.id)]
    assert kinds == ["created", "payment_declined"]

    answered = world.hold_payment_answers()
    await world.service.pay(BUYER, order.id, online(GOOD_CARD))
    with pytest.raises(PaymentInProgress):
        await world.service.pay(BUYER, order.id, online(GOOD_CARD))
    answered.set()
    await world.payments.drain()
    assert (await world.service.get_order(BUYER, order.id)).status == "paid"
    assert [p.status for p in await world.service.payments_of(BUYER, order.id)] == [
        "declined", "approved",
    ]


async def test_paying_twice_at_once_charges_the_card_once(world: World) -> None:
    """A double click on Pay: both requests pass the "no charge pending" check before either
    writes; only one may charge, the other is told a payment is in progress."""
    held = world.ledger.hold(BUYER.user_id)
    order = await world.checkout(BUYER, held, online(DECLINED_CARD))
    await world.payments.drain()
    # The provider answers only after both clicks were decided, however slow the store is.
    answered = world.hold_payment_answers()
    results = await asyncio.gather(
        world.service.pay(BUYER, order.id, online(GOOD_CARD)),
        world.service.pay(BUYER, order.id, online(GOOD_CARD)),
        return_exceptions=True,
    )
    assert sorted(type(r).__name__ for r in results) == ["Order", "PaymentInProgress"]
    answered.set()
    await world.payments.drain()
    assert (await world.service.get_order(BUYER, order.id)).status == "paid"
    assert [p.status for p in await world.service.payments_of(BUYER, order.id)] == [
        "declined", "approved",
    ]


async def test_a_card_payment_racing_a_switch_to_cash_is_refused_as_illegal(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two payments at once, the switch to cash on delivery landing first: the order is
    confirmed, so the card payment is refused (not "in progress") and the card never charged."""
    held = world.ledger.hold(BUYER.user_id)
    order = await world.checkout(BUYER, held, online(DECLINED_CARD))
    await world.payments.drain()
    after_next(world, "payments", lambda: world.service.pay(BUYER, order.id, "cod"), monkeypatch)
    with pytest.raises(IllegalTransition) as info:
        await world.service.pay(BUYER, order.id, online(GOOD_CARD))
    assert (info.value.status, info.value.action) == ("confirmed", "pay")
    await world.payments.drain()
    assert (await world.service.get_order(BUYER, order.id)).status == "confirmed"
    assert [(p.method, p.status) for p in await world.service.payments_of(BUYER, order.id)] == [
        ("online", "declined"), ("cod", "pending"),
    ]


async def test_unpaid_order_can_switch_to_cash_on_delivery(world: World) -> None:
    held = world.ledger.hold(BUYER.user_id)
    order = await world.checkout(BUYER, held, online("4000000000009995"))
    await world.payments.drain()
    switched = await world.service.pay(BUYER, order.id, "cod")
    assert (switched.status, switched.payment_method) == ("confirmed", "cod")


async def test_callback_with_bad_signature_is_rejected_and_changes_nothing(world: World) -> None:
    held = world.ledger.hold(BUYER.user_id)
    world.payments.sink = None  # capture the provider's callback instead of delivering it
    captured: list[tuple[bytes, str]] = []

    async def capture(raw: bytes, signature: str) -> None:
        captured.append((raw, signature))

    world.payments.sink = capture
    order = await world.checkout(BUYER, held, online(GOOD_CARD))
    await world.payments.drain()
    [(raw, signature)] = captured
    forged = json.loads(raw)
    forged["status"] = "approved"
    forged["amount_cents"] = 1
    forged_raw = json.dumps(forged).encode()
    with pytest.raises(BadSignature):
        await world.service.handle_payment_callback(forged_raw, signature)
    with pytest.raises(BadSignature):
        await world.service.handle_payment_callback(raw, sign_callback(b"wrong", raw))
    assert (await world.service.get_order(BUYER, order.id)).status == "created"

    first = await world.service.handle_payment_callback(raw, signature)
    again = await world.service.handle_payment_callback(raw, signature)
    assert first.status == again.status == "paid"
    kinds = [e.kind for e in await world.service.history(BUYER, order.id)]
    assert kinds.count("pay") == 1


async def test_callback_for_unknown_payment_is_refused(world: World) -> None:
    raw = json.dumps({"payment_id": "pay_nope", "status": "approved", "amount_cents": 1}).encode()
    with pytest.raises(UnknownPayment):
        await world.service.handle_payment_callback(raw, sign_callback(SECRET, raw))


async def test_payment_approved_after_cancellation_is_refunded(world: World) -> None:
    held = world.ledger.hold(BUYER.user_id)
    captured: list[tuple[bytes, str]] = []

    async def capture(raw: bytes, signature: str) -> None:
        captured.append((raw, signature))

    world.payments.sink = capture
    order = await world.checkout(BUYER, held, online(GOOD_CARD))
    await world.payments.drain()
    await world.service.cancel(BUYER, order.id)
    after = await world.service.handle_payment_callback(*captured[0])
    assert after.status == "cancelled"
    [payment] = await world.service.payments_of(BUYER, order.id)
    assert (payment.status, payment.reason) == ("refunded", "order_not_payable")


async def test_checking_out_twice_returns_the_same_order(world: World) -> None:
    held = world.ledger.hold(BUYER.user_id)
    first = await world.checkout(BUYER, held, "cod")
    second = await world.checkout(BUYER, held, online(GOOD_CARD))
    assert second.id == first.id
    assert second.payment_method == "cod"
    assert len(await world.service.list_orders(BUYER)) == 1


async def test_concurrent_duplicate_checkouts_make_one_order_and_one_charge(world: World) -> None:
    held = world.ledger.hold(BUYER.user_id)
    results = await asyncio.gather(
        *[world.checkout(BUYER, held, online(GOOD_CARD)) for _ in range(8)]
    )
    assert len({o.id for o in results}) == 1
    await world.payments.drain()
    payments = await world.service.payments_of(BUYER, results[0].id)
    assert [p.status for p in payments] == ["approved"]


async def test_only_the_holder_can_check_out(world: World) -> None:
    held = world.ledger.hold(BUYER.user_id)
    with pytest.raises(NotReservationHolder):
        await world.checkout(OTHER, held)
    assert world.ledger.reservations[held.id].state == "reserved"
    order = await world.checkout(BUYER, held)
    # Once it is an order, the other user still cannot claim it (nor learn its id).
    with pytest.raises(NotReservationHolder) as info:
        await world.checkout(OTHER, held)
    assert order.id not in str(info.value)


async def test_unknown_reservation(world: World) -> None:
    with pytest.raises(UnknownReservation) as info:
        await world.checkout(BUYER, "s_sale000001.999")
    assert info.value.http_status == 404


async def test_expired_hold_cannot_be_checked_out(world: World) -> None:
    held = world.ledger.hold(BUYER.user_id, ttl_ms=30_000)
    world.clock.advance(29_999)
    alive = world.ledger.hold(BUYER.user_id, ttl_ms=1)
    world.clock.advance(1)
    # expires_at is exclusive: at exactly expires_at the hold is gone.
    with pytest.raises(HoldExpired):
        await world.checkout(BUYER, alive)
    with pytest.raises(HoldExpired):
        await world.checkout(BUYER, held)
    assert await world.service.list_orders(BUYER) == []
    assert world.ledger.sales[held.sale_id].stock == 1000


async def test_checkout_racing_hold_expiry_never_sells_a_returned_unit(world: World) -> None:
    rng = random.Random(7)
    holds = [world.ledger.hold(f"u_racer{i:07d}", ttl_ms=1_000) for i in range(40)]
    world.clock.advance(999)

    async def buyer_task(i: int) -> str:
        for _ in range(rng.randrange(3)):
            await asyncio.sleep(0)
        actor = type(BUYER)(holds[i].user_id, "viewer")
        try:
            await world.checkout(actor, holds[i])
        except HoldExpired:
            return "expired"
        return "ordered"

    async def expiry() -> None:
        # The hold deadline passes while checkouts are in flight (some committed, some queued).
        await world.ledger.wait_commits(rng.randrange(5, 30))
        world.clock.advance(1)
        await world.ledger.sweep()

    outcomes = await asyncio.gather(*[buyer_task(i) for i in range(len(holds))], expiry())
    outcomes = outcomes[:-1]
    # The race must actually have been run: some checkouts won, some lost.
    assert "ordered" in outcomes
    assert "expired" in outcomes
    for held, outcome in zip(holds, outcomes, strict=True):
        actor = type(BUYER)(held.user_id, "viewer")
        state = world.ledger.reservations[held.id].state
        orders = await world.service.list_orders(actor)
        if outcome == "ordered":
            assert state == "committed"
            assert [o.reservation_id for o in orders] == [held.id]
        else:
            assert state == "expired"
            assert orders == []
    sold = sum(o == "ordered" for o in outcomes)
    assert world.ledger.sales[holds[0].sale_id].stock == 1000 - sold


async def test_unknown_test_card_is_declined(world: World) -> None:
    held = world.ledger.hold(BUYER.user_id)
    order = await world.checkout(BUYER, held, online("5555555555554444"))
    await world.payments.drain()
    [payment] = await world.service.payments_of(BUYER, order.id)
    assert (payment.status, payment.reason) == ("declined", "unknown_test_card")


async def test_provider_outage_leaves_the_order_payable_again(world: World) -> None:
    held = world.ledger.hold(BUYER.user_id)
    await world.payments.close()  # the provider refuses new charges
    order = await world.checkout(BUYER, held, online(GOOD_CARD))
    [failed] = await world.service.payments_of(BUYER, order.id)
    assert (failed.status, failed.reason) == ("declined", "provider_unavailable")
    assert (await world.service.get_order(BUYER, order.id)).status == "created"
    confirmed = await world.service.pay(BUYER, order.id, {"method": "cod"})
    assert confirmed.status == "confirmed"
