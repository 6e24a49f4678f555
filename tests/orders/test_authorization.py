"""Who may do what to an order. Strangers never learn an order exists (404); people who can see
it but may not act get 403; every refusal leaves the order untouched."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from orders import (
    Actor,
    ClaimNotFound,
    InspectionTerms,
    InvalidInput,
    NotAllowed,
    Order,
    OrderNotFound,
)

from .conftest import (
    ADMIN,
    ANCHOR,
    BUYER,
    GOOD_CARD,
    INSPECTOR,
    OTHER,
    OTHER_ANCHOR,
    World,
    make_world,
    online,
)
from .helpers import order_in

ACTORS: dict[str, Actor] = {
    "buyer": BUYER,
    "anchor": ANCHOR,
    "admin": ADMIN,
    "other_viewer": OTHER,
    "other_anchor": OTHER_ANCHOR,
    "inspector": INSPECTOR,
}
STRANGERS = {"other_viewer", "other_anchor", "inspector"}

Op = Callable[[World, Actor, Order], Awaitable[object]]


async def _claim_then_decide(world: World, actor: Actor, order: Order) -> object:
    claim = await world.service.counterfeit_claim(BUYER, order.id, "fake")
    return await world.service.uphold_counterfeit(actor, claim.id)


async def _claim_then_reject(world: World, actor: Actor, order: Order) -> object:
    claim = await world.service.counterfeit_claim(BUYER, order.id, "fake")
    return await world.service.reject_counterfeit(actor, claim.id)


# operation → (status to start from, call, actors allowed)
OPERATIONS: dict[str, tuple[str, Op, set[str]]] = {
    "get_order": ("confirmed", lambda w, a, o: w.service.get_order(a, o.id),
                  {"buyer", "anchor", "admin"}),
    "order_detail": ("confirmed", lambda w, a, o: w.service.order_detail(a, o.id),
                     {"buyer", "anchor", "admin"}),
    "history": ("confirmed", lambda w, a, o: w.service.history(a, o.id),
                {"buyer", "anchor", "admin"}),
    "claims": ("confirmed", lambda w, a, o: w.service.claims(a, o.id),
               {"buyer", "anchor", "admin"}),
    "payments": ("confirmed", lambda w, a, o: w.service.payments_of(a, o.id),
                 {"buyer", "anchor", "admin"}),
    "pay": ("created", lambda w, a, o: w.service.pay(a, o.id, online(GOOD_CARD)), {"buyer"}),
    "cancel": ("confirmed", lambda w, a, o: w.service.cancel(a, o.id),
               {"buyer", "anchor", "admin"}),
    "ship": ("confirmed", lambda w, a, o: w.service.ship(a, o.id), {"anchor", "admin"}),
    "deliver": ("shipped", lambda w, a, o: w.service.deliver(a, o.id), {"anchor", "admin"}),
    "complete": ("delivered", lambda w, a, o: w.service.complete(a, o.id), {"buyer", "admin"}),
    "request_return": ("delivered", lambda w, a, o: w.service.request_return(a, o.id),
                       {"buyer"}),
    "receive_return": ("return_requested", lambda w, a, o: w.service.receive_return(a, o.id),
                       {"anchor", "admin"}),
    "refund_no_return": ("delivered", lambda w, a, o: w.service.refund_no_return(a, o.id),
                         {"buyer"}),
    "counterfeit_claim": ("delivered",
                          lambda w, a, o: w.service.counterfeit_claim(a, o.id, "fake"),
                          {"buyer"}),
    "uphold_counterfeit": ("delivered", _claim_then_decide, {"admin"}),
    "reject_counterfeit": ("delivered", _claim_then_reject, {"admin"}),
    "warranty_claim": ("delivered", lambda w, a, o: w.service.warranty_claim(a, o.id, "dead"),
                       {"buyer"}),
    "buyback_quote": ("delivered", lambda w, a, o: w.service.buyback_quote(a, o.id), {"buyer"}),
}


@pytest.mark.parametrize("who", sorted(ACTORS))
@pytest.mark.parametrize("operation", sorted(OPERATIONS))
async def test_authorization_matrix(data_dir: Path, operation: str, who: str) -> None:
    world = await make_world(data_dir)
    try:
        status, call, allowed = OPERATIONS[operation]
        product = "p_phone00001"
        world.certs.inspections[product] = InspectionTerms("ir_1", 100_000)
        order = await order_in(world, status, category="phone_used", product=product)
        world.certs.refund_no_return.add((order.anchor_id, order.category))
        before = await world.service.order_detail(ADMIN, order.id)
        actor = ACTORS[who]
        if who in allowed:
            await call(world, actor, order)
            await world.payments.drain()
            return
        expected: type[Exception]
        if who in STRANGERS:
            deciding = operation in ("uphold_counterfeit", "reject_counterfeit")
            expected = ClaimNotFound if deciding else OrderNotFound
        else:
            expected = NotAllowed
        with pytest.raises(expected):
            await call(world, actor, order)
        after = await world.service.order_detail(ADMIN, order.id)
        # A counterfeit claim filed by the buyer as set-up is the only permitted difference.
        after["claims"] = [c for c in after["claims"] if c["kind"] != "counterfeit"]
        after["events"] = [e for e in after["events"] if e["kind"] != "counterfeit_claim"]
        assert after == before
    finally:
        await world.payments.close()
        await world.store.close()


async def test_unknown_and_foreign_orders_look_the_same(world: World) -> None:
    order = await order_in(world, "confirmed")
    with pytest.raises(OrderNotFound) as foreign:
        await world.service.get_order(OTHER, order.id)
    with pytest.raises(OrderNotFound) as missing:
        await world.service.get_order(OTHER, "o_doesnotexist")
    assert foreign.value.http_status == missing.value.http_status == 404
    assert type(foreign.value) is type(missing.value)


async def test_list_orders_shows_only_the_callers_own(world: World) -> None:
    mine = [await order_in(world, "confirmed") for _ in range(2)]
    theirs = world.ledger.hold(OTHER.user_id)
    await world.checkout(OTHER, theirs)
    assert {o.id for o in await world.service.list_orders(BUYER)} == {o.id for o in mine}
    assert [o.reservation_id for o in await world.service.list_orders(OTHER)] == [theirs.id]
    # The anchor is not a buyer of anything here.
    assert await world.service.list_orders(ANCHOR) == []


async def test_analytics_access(world: World) -> None:
    await order_in(world, "confirmed")
    for actor in (BUYER, OTHER, INSPECTOR):
        with pytest.raises(NotAllowed):
            await world.service.analytics(actor, viewers={})
    with pytest.raises(NotAllowed):
        await world.service.analytics(ANCHOR, viewers={}, anchor_id=OTHER_ANCHOR.user_id)
    own = await world.service.analytics(ANCHOR, viewers={})
    assert [f.key for f in own.anchors] == [ANCHOR.user_id]
    assert (await world.service.analytics(OTHER_ANCHOR, viewers={})).anchors == ()
    with pytest.raises(InvalidInput):
        await world.service.analytics(ADMIN, viewers={}, window_ms=0)


def test_actor_roles_are_checked() -> None:
    with pytest.raises(InvalidInput):
        Actor("u_someone0001", "superuser")  # type: ignore[arg-type]
    with pytest.raises(InvalidInput):
        Actor("", "viewer")
