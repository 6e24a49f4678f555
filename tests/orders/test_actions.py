"""The order's allowed actions (``OrderService.actions``, the order object's ``actions``): what the
buyer or the seller may do now and until when, on a hand-moved clock, and that the list and the
requests themselves always agree."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from orders import (
    COUNTERFEIT_WINDOW_MS,
    DAY_MS,
    PAYMENT_TIMEOUT_MS,
    RETURN_WINDOW_MS,
    WARRANTY_WINDOW_MS,
    Action,
    InspectionTerms,
    Order,
    OrderError,
    PaymentWindowClosed,
    ReturnWindowClosed,
)

from .conftest import ADMIN, ANCHOR, BUYER, GOOD_CARD, OTHER, OTHER_ANCHOR, World, online
from .helpers import order_in

PHONE = "p_phone00001"
STATUSES = ("created", "paid", "confirmed", "shipped", "delivered", "completed", "cancelled",
            "return_requested", "returned", "refunded")


def names(actions: list[Action]) -> list[str]:
    return [action.name for action in actions]


async def buyer_actions(world: World, order: Order) -> dict[str, Action]:
    current = await world.service.get_order(BUYER, order.id)
    return {action.name: action for action in await world.service.actions(BUYER, current)}


# What each action's request is, as its caller makes it.
BUYER_REQUESTS: dict[str, Callable[[World, str], Awaitable[object]]] = {
    "pay": lambda w, oid: w.service.pay(BUYER, oid, "cod"),
    "cancel": lambda w, oid: w.service.cancel(BUYER, oid),
    "complete": lambda w, oid: w.service.complete(BUYER, oid),
    "return": lambda w, oid: w.service.request_return(BUYER, oid),
    "refund_no_return": lambda w, oid: w.service.refund_no_return(BUYER, oid),
    "counterfeit": lambda w, oid: w.service.counterfeit_claim(BUYER, oid, "glass, not jade"),
    "warranty": lambda w, oid: w.service.warranty_claim(BUYER, oid, "screen flickers"),
    "buyback": lambda w, oid: w.service.buyback_quote(BUYER, oid),
}
SELLER_REQUESTS: dict[str, Callable[[World, str], Awaitable[object]]] = {
    "ship": lambda w, oid: w.service.ship(ANCHOR, oid),
    "deliver": lambda w, oid: w.service.deliver(ANCHOR, oid),
    "return_received": lambda w, oid: w.service.receive_return(ANCHOR, oid),
    "cancel": lambda w, oid: w.service.cancel(ANCHOR, oid),
}


async def request_succeeds(request: Awaitable[object]) -> bool:
    try:
        await request
    except OrderError:
        return False
    return True


# -- by status ---------------------------------------------------------------------------------

@pytest.mark.parametrize(("status", "buyer", "seller"), [
    ("created", ["pay", "cancel"], ["cancel"]),
    ("paid", ["cancel"], ["ship", "cancel"]),
    ("confirmed", ["cancel"], ["ship", "cancel"]),
    ("shipped", [], ["deliver"]),
    ("delivered", ["complete", "return", "counterfeit"], []),
    ("completed", ["return", "counterfeit"], []),
    ("cancelled", [], []),
    ("return_requested", [], ["return_received"]),
    ("returned", [], []),
    ("refunded", [], []),
])
async def test_each_status_offers_the_buyer_and_the_seller_their_actions(
    world: World, status: str, buyer: list[str], seller: list[str]
) -> None:
    order = await order_in(world, status)
    assert names(await world.service.actions(BUYER, order)) == buyer
    assert names(await world.service.actions(ANCHOR, order)) == seller
    assert names(await world.service.actions(ADMIN, order)) == seller, "an admin is a seller"
    assert await world.service.actions(OTHER, order) == []
    assert await world.service.actions(OTHER_ANCHOR, order) == []


# -- windows on the clock ----------------------------------------------------------------------

async def test_the_return_and_counterfeit_windows_close_on_the_clock(world: World) -> None:
    order = await order_in(world, "delivered", price_cents=25_000)
    assert order.delivered_at is not None
    returns_until = order.delivered_at + RETURN_WINDOW_MS
    claims_until = order.delivered_at + COUNTERFEIT_WINDOW_MS
    actions = await buyer_actions(world, order)
    assert actions["return"] == Action("return", returns_until)
    assert actions["counterfeit"] == Action("counterfeit", claims_until,
                                            {"compensation_cents": 250_000})
    assert actions["complete"] == Action("complete", None)

    world.clock.now = returns_until
    assert set(await buyer_actions(world, order)) == {"complete", "return", "counterfeit"}
    world.clock.now = returns_until + 1
    assert set(await buyer_actions(world, order)) == {"complete", "counterfeit"}
    with pytest.raises(ReturnWindowClosed):
        await world.service.request_return(BUYER, order.id)
    world.clock.now = claims_until
    assert set(await buyer_actions(world, order)) == {"complete", "counterfeit"}
    world.clock.now = claims_until + 1
    assert set(await buyer_actions(world, order)) == {"complete"}


async def test_pay_is_offered_until_the_payment_deadline(world: World) -> None:
    order = await order_in(world, "created")  # its card was declined
    last = order.created_at + PAYMENT_TIMEOUT_MS - 1
    assert (await buyer_actions(world, order))["pay"] == Action("pay", last)
    world.clock.now = last
    assert "pay" in await buyer_actions(world, order)
    world.clock.now = last + 1
    assert set(await buyer_actions(world, order)) == {"cancel"}
    with pytest.raises(PaymentWindowClosed):
        await world.service.pay(BUYER, order.id, "cod")


async def test_pay_is_not_offered_while_a_charge_waits_for_its_answer(world: World) -> None:
    order = await order_in(world, "created")

    async def unanswered(raw: bytes, signature: str) -> None:
        return None

    world.payments.sink = unanswered
    await world.service.pay(BUYER, order.id, online(GOOD_CARD))
    await world.payments.drain()
    assert set(await buyer_actions(world, order)) == {"cancel"}
    world.clock.advance(world.service.charge_timeout_ms)
    await world.service.expire_unpaid()  # given up: the buyer may pay again
    assert set(await buyer_actions(world, order)) == {"pay", "cancel"}


async def test_an_inspected_phone_offers_warranty_until_its_end_and_buyback(
    world: World
) -> None:
    world.certs.inspections[PHONE] = InspectionTerms("ir_1", buyback_price_cents=150_000)
    order = await order_in(world, "delivered", category="phone_used", product=PHONE)
    assert order.delivered_at is not None
    warranty_ends = order.delivered_at + WARRANTY_WINDOW_MS
    actions = await buyer_actions(world, order)
    assert (actions["warranty"], actions["buyback"]) == (
        Action("warranty", warranty_ends), Action("buyback", None))
    world.clock.now = warranty_ends + 1
    actions = await buyer_actions(world, order)
    assert "warranty" not in actions
    assert "buyback" in actions


async def test_a_later_certificate_date_moves_the_warranty_end(world: World) -> None:
    cert_end = world.clock() + 400 * DAY_MS
    world.certs.inspections[PHONE] = InspectionTerms("ir_1", 150_000, warranty_ends_at=cert_end)
    order = await order_in(world, "delivered", category="phone_used", product=PHONE)
    assert (await buyer_actions(world, order))["warranty"].until == cert_end


# -- categories and certifications -------------------------------------------------------------

@pytest.mark.parametrize(("category", "offered"), [
    ("clothing", {"complete", "return", "counterfeit"}),
    ("jewelry", {"complete", "return", "counterfeit"}),
    ("phone_used", {"complete", "return", "counterfeit", "warranty", "buyback"}),
])
async def test_what_a_delivered_order_offers_follows_its_category(
    world: World, category: str, offered: set[str]
) -> None:
    world.certs.inspections[PHONE] = InspectionTerms("ir_1", buyback_price_cents=150_000)
    order = await order_in(world, "delivered", category=category, product=PHONE)
    assert set(await buyer_actions(world, order)) == offered


async def test_a_phone_without_an_inspection_offers_no_warranty_nor_buyback(
    world: World
) -> None:
    order = await order_in(world, "delivered", category="phone_used", product=PHONE)
    assert set(await buyer_actions(world, order)) == {"complete", "return", "counterfeit"}


async def test_refund_no_return_is_offered_with_the_anchors_certification_for_the_category(
    world: World
) -> None:
    order = await order_in(world, "delivered", category="essential_oil")
    assert order.delivered_at is not None
    assert "refund_no_return" not in await buyer_actions(world, order)
    world.certs.refund_no_return.add((ANCHOR.user_id, "clothing"))  # another category's
    assert "refund_no_return" not in await buyer_actions(world, order)
    world.certs.refund_no_return.add((ANCHOR.user_id, "essential_oil"))
    actions = await buyer_actions(world, order)
    assert actions["refund_no_return"] == Action("refund_no_return",
                                                 order.delivered_at + RETURN_WINDOW_MS)
    world.clock.now = order.delivered_at + RETURN_WINDOW_MS + 1
    assert "refund_no_return" not in await buyer_actions(world, order)


async def test_a_jewel_is_offered_for_shipping_once_vault_certified(world: World) -> None:
    order = await order_in(world, "confirmed", category="jewelry")
    assert names(await world.service.actions(ANCHOR, order)) == ["cancel"]
    world.certs.vault.add(order.product_id)
    assert names(await world.service.actions(ANCHOR, order)) == ["ship", "cancel"]


# -- claims settle the order -------------------------------------------------------------------

async def test_a_counterfeit_claim_withdraws_return_and_refund_until_rejected(
    world: World
) -> None:
    order = await order_in(world, "delivered", category="essential_oil")
    world.certs.refund_no_return.add((ANCHOR.user_id, "essential_oil"))
    claim = await world.service.counterfeit_claim(BUYER, order.id, "not what was shown")
    assert set(await buyer_actions(world, order)) == {"complete"}, "one claim per order"
    await world.service.reject_counterfeit(ADMIN, claim.id)
    assert set(await buyer_actions(world, order)) == {"complete", "return", "refund_no_return"}


# -- the list and the requests agree -----------------------------------------------------------

@pytest.mark.parametrize("status", STATUSES)
@pytest.mark.parametrize("category", ["clothing", "jewelry", "essential_oil", "phone_used"])
async def test_an_action_is_offered_exactly_when_its_request_goes_through(
    world: World, status: str, category: str
) -> None:
    world.certs.inspections[PHONE] = InspectionTerms("ir_1", buyback_price_cents=150_000)
    world.certs.refund_no_return.add((ANCHOR.user_id, "essential_oil"))
    hold: dict[str, Any] = {"category": category, "product": PHONE}
    for perspective, requests in ((BUYER, BUYER_REQUESTS), (ANCHOR, SELLER_REQUESTS)):
        for name, request in requests.items():
            order = await order_in(world, status, **hold)
            if category == "jewelry":
                world.certs.vault.discard(PHONE)  # not shippable until certified
            offered = names(await world.service.actions(perspective, order))
            assert (name in offered) == await request_succeeds(request(world, order.id)), (
                perspective.role, name, offered)


@pytest.mark.parametrize("elapsed", [
    RETURN_WINDOW_MS, RETURN_WINDOW_MS + 1, COUNTERFEIT_WINDOW_MS, COUNTERFEIT_WINDOW_MS + 1,
    WARRANTY_WINDOW_MS, WARRANTY_WINDOW_MS + 1,
])
async def test_after_delivery_the_offered_windows_are_the_requests_windows(
    world: World, elapsed: int
) -> None:
    world.certs.inspections[PHONE] = InspectionTerms("ir_1", buyback_price_cents=150_000)
    world.certs.refund_no_return.add((ANCHOR.user_id, "phone_used"))
    for name, request in BUYER_REQUESTS.items():
        order = await order_in(world, "delivered", category="phone_used", product=PHONE)
        world.clock.advance(elapsed)
        offered = names(await world.service.actions(BUYER, order))
        assert (name in offered) == await request_succeeds(request(world, order.id)), (
            name, offered)
        world.clock.advance(-elapsed)


# -- the order object --------------------------------------------------------------------------

async def test_the_order_object_carries_the_actions_of_whoever_receives_it(
    world: World
) -> None:
    order = await order_in(world, "delivered", price_cents=10_000)
    assert order.delivered_at is not None
    view = await world.service.view(BUYER, order)
    assert {key: value for key, value in view.items() if key != "actions"} == order.to_public()
    assert view["actions"] == [
        {"name": "complete", "until": None},
        {"name": "return", "until": order.delivered_at + RETURN_WINDOW_MS},
        {"name": "counterfeit", "until": order.delivered_at + COUNTERFEIT_WINDOW_MS,
         "compensation_cents": 100_000},
    ]
    assert await world.service.buyer_view(order) == view
    shipped = await order_in(world, "shipped")
    assert (await world.service.view(ANCHOR, shipped))["actions"] == [
        {"name": "deliver", "until": None}]
    detail = await world.service.order_detail(ADMIN, shipped.id)
    assert detail["actions"] == [{"name": "deliver", "until": None}]
    assert [v["actions"] for v in await world.service.views(BUYER, [order, shipped])] == [
        view["actions"], []]
