"""Fake one, pay ten, as a platform can afford to promise it: within 90 days of delivery, never
on top of a return or refund, and at most once per order, whoever races whom."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from orders import (
    COUNTERFEIT_MULTIPLIER,
    COUNTERFEIT_WINDOW_MS,
    DAY_MS,
    AlreadyRefunded,
    ClaimConflict,
    ClaimWindowClosed,
    CounterfeitClaimed,
    IllegalTransition,
    Order,
    OrderChange,
)
from tests.rawdb import REFUSED, RawDatabase, StoreLocation

from .conftest import (
    ADMIN,
    ANCHOR,
    BUYER,
    World,
    make_world,
)
from .helpers import after_next, order_in

OIL = {"category": "essential_oil", "price_cents": 4_500}


async def snapshot(world: World, order_id: str) -> dict[str, Any]:
    return await world.service.order_detail(ADMIN, order_id)


async def certified_delivered(world: World) -> Order:
    order = await order_in(world, "delivered", **OIL)
    world.certs.refund_no_return.add((order.anchor_id, order.category))
    return order


# -- the window ----------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("elapsed", "allowed"),
    [(0, True), (90 * DAY_MS, True), (90 * DAY_MS + 1, False), (365 * DAY_MS, False)],
)
async def test_a_counterfeit_claim_is_taken_for_90_days_from_delivery(
    world: World, elapsed: int, allowed: bool
) -> None:
    order = await order_in(world, "completed")
    world.clock.advance(elapsed)
    before = await snapshot(world, order.id)
    if allowed:
        claim = await world.service.counterfeit_claim(BUYER, order.id, "the logo is off")
        assert claim.status == "open"
        return
    with pytest.raises(ClaimWindowClosed) as info:
        await world.service.counterfeit_claim(BUYER, order.id, "the logo is off")
    assert (info.value.code, info.value.http_status) == ("claim_window_closed", 409)
    assert order.delivered_at is not None
    assert info.value.deadline_ms == order.delivered_at + COUNTERFEIT_WINDOW_MS
    assert await snapshot(world, order.id) == before


async def test_the_window_opens_at_delivery_not_at_purchase(world: World) -> None:
    """Slow shipping does not eat the buyer's time; before delivery there is nothing to claim."""
    held = world.ledger.hold(BUYER.user_id)
    order = await world.checkout(BUYER, held, "cod")
    await world.service.ship(ANCHOR, order.id)
    world.clock.advance(60 * DAY_MS)
    with pytest.raises(IllegalTransition):
        await world.service.counterfeit_claim(BUYER, order.id, "fake")
    await world.service.deliver(ANCHOR, order.id)
    world.clock.advance(90 * DAY_MS)
    claim = await world.service.counterfeit_claim(BUYER, order.id, "fake")
    assert claim.status == "open"


# -- a refund or a claim, not both ---------------------------------------------------------------

@pytest.mark.parametrize("status", ["return_requested", "returned", "refunded"])
async def test_no_counterfeit_claim_once_the_order_is_returned_or_refunded(
    world: World, status: str
) -> None:
    order = await order_in(world, status, **OIL)
    before = await snapshot(world, order.id)
    with pytest.raises(AlreadyRefunded) as info:
        await world.service.counterfeit_claim(BUYER, order.id, "fake after all")
    assert (info.value.code, info.value.http_status, info.value.status) == (
        "already_refunded", 409, status)
    assert await snapshot(world, order.id) == before
    assert await world.service.payouts_of(BUYER, order.id) == []


@pytest.mark.parametrize("action", ["request_return", "refund_no_return"])
async def test_no_return_or_refund_while_a_counterfeit_claim_is_open_or_upheld(
    world: World, action: str
) -> None:
    """Refund-no-return then fake-one-pay-ten paid eleven times the price; now the claim
    settles the order, and the buyer is told why the return is refused."""
    order = await certified_delivered(world)
    claim = await world.service.counterfeit_claim(BUYER, order.id, "smells synthetic")
    for decide in (None, world.service.uphold_counterfeit):
        if decide is not None:
            await decide(ADMIN, claim.id)
        before = await snapshot(world, order.id)
        with pytest.raises(CounterfeitClaimed) as info:
            await getattr(world.service, action)(BUYER, order.id, "changed my mind")
        assert (info.value.code, info.value.http_status) == ("counterfeit_claimed", 409)
        assert await snapshot(world, order.id) == before
    payments = await world.service.payments_of(BUYER, order.id)
    assert [p.status for p in payments] == ["approved"], "the price was not refunded"
    assert [p.amount_cents for p in await world.service.payouts_of(BUYER, order.id)] == [
        COUNTERFEIT_MULTIPLIER * order.total_cents]


async def test_after_a_rejected_claim_the_return_is_open_again(world: World) -> None:
    order = await certified_delivered(world)
    claim = await world.service.counterfeit_claim(BUYER, order.id, "smells synthetic")
    await world.service.reject_counterfeit(ADMIN, claim.id)
    refund = await world.service.refund_no_return(BUYER, order.id, "still unhappy")
    assert (refund.status, refund.amount_cents) == ("refunded", order.total_cents)


async def test_a_claim_left_open_on_a_refunded_order_cannot_be_upheld(world: World) -> None:
    """Before claims and refunds excluded each other, a claim could be open on an order that
    was then refunded: upholding it now is refused, and nothing is paid."""
    order = await certified_delivered(world)
    claim = await world.service.counterfeit_claim(BUYER, order.id, "smells synthetic")
    # What an older version let happen: the refund written with the claim still open.
    now = world.clock()
    refunded = await world.store.apply(OrderChange(order.id, frozenset({"delivered"}),
                                                   "refunded", now))
    assert refunded is not None
    with pytest.raises(AlreadyRefunded):
        await world.service.uphold_counterfeit(ADMIN, claim.id)
    assert await world.service.payouts_of(BUYER, order.id) == []
    rejected = await world.service.reject_counterfeit(ADMIN, claim.id)
    assert (rejected.status, rejected.amount_cents) == ("rejected", 0)


async def test_a_refund_racing_a_claim_and_its_uphold_is_refused(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The refund read the claims (none yet); before it writes, the buyer files a claim and an
    admin upholds it. The refund's transaction sees the claim: ten times, not eleven."""
    order = await certified_delivered(world)

    async def claim_and_uphold() -> None:
        claim = await world.service.counterfeit_claim(BUYER, order.id, "fake")
        await world.service.uphold_counterfeit(ADMIN, claim.id)

    after_next(world, "claims", claim_and_uphold, monkeypatch)
    with pytest.raises(CounterfeitClaimed):
        await world.service.refund_no_return(BUYER, order.id, "opened")
    current = await world.service.get_order(BUYER, order.id)
    assert current.status == "delivered"
    assert [p.status for p in await world.service.payments_of(BUYER, order.id)] == ["approved"]
    assert [p.amount_cents for p in await world.service.payouts_of(BUYER, order.id)] == [
        COUNTERFEIT_MULTIPLIER * order.total_cents]


# -- once per order, across processes ------------------------------------------------------------

@pytest.fixture
async def second(world: World, store_location: StoreLocation) -> AsyncIterator[World]:
    """Another server process's (or node's) order service on the same database."""
    other = await make_world(store_location)
    yield other
    await other.payments.close()
    await other.store.close()


async def test_two_servers_upholding_one_claim_pay_once(world: World, second: World) -> None:
    order = await order_in(world, "delivered", price_cents=10_000)
    claim = await world.service.counterfeit_claim(BUYER, order.id, "fake")
    services = [world.service, second.service] * 4
    outcomes = await asyncio.gather(
        *[service.uphold_counterfeit(ADMIN, claim.id) for service in services],
        return_exceptions=True,
    )
    upheld = [o for o in outcomes if not isinstance(o, BaseException)]
    assert len(upheld) == 1
    assert all(isinstance(o, ClaimConflict) for o in outcomes if o not in upheld)
    assert [p.amount_cents for p in await second.service.payouts_of(BUYER, order.id)] == [
        100_000]


async def test_two_servers_filing_claims_at_once_file_one(world: World, second: World) -> None:
    order = await order_in(world, "delivered", price_cents=10_000)
    outcomes = await asyncio.gather(
        *[service.counterfeit_claim(BUYER, order.id, f"fake {n}")
          for n, service in enumerate([world.service, second.service] * 3)],
        return_exceptions=True,
    )
    filed = [o for o in outcomes if not isinstance(o, BaseException)]
    assert len(filed) == 1
    assert all(isinstance(o, ClaimConflict) for o in outcomes if o not in filed)
    [claim] = await world.service.claims(BUYER, order.id)
    await second.service.uphold_counterfeit(ADMIN, claim.id)
    assert len(await world.service.payouts_of(BUYER, order.id)) == 1


async def test_the_database_itself_refuses_a_second_compensation_or_a_refund_after_it(
    world: World, store_location: StoreLocation
) -> None:
    """Whatever writes to the database (another version, a script), an order gets one
    compensation, and a compensated order is never refunded as well."""
    order = await order_in(world, "delivered", price_cents=10_000)
    claim = await world.service.counterfeit_claim(BUYER, order.id, "fake")
    await world.service.uphold_counterfeit(ADMIN, claim.id)
    refunded = await order_in(world, "refunded", **OIL)
    async with RawDatabase(store_location, "orders.sqlite3") as db:
        insert = ("INSERT INTO payouts (id, order_id, claim_id, kind, amount_cents, status, "
                  "created_at) VALUES (?, ?, ?, 'counterfeit_compensation', 1, 'paid', 0)")
        await db.execute("INSERT INTO claims (id, order_id, kind, status, created_at, "
                         "updated_at) VALUES ('cl_forged', ?, 'counterfeit_again', 'upheld', 0, 0)",
                         order.id)
        with pytest.raises(REFUSED):
            await db.execute(insert, "po_second", order.id, "cl_forged")
        with pytest.raises(REFUSED):
            await db.execute("UPDATE orders SET status = 'refunded' WHERE id = ?", order.id)
        await db.execute("INSERT INTO claims (id, order_id, kind, status, created_at, "
                         "updated_at) VALUES ('cl_late', ?, 'counterfeit', 'upheld', 0, 0)",
                         refunded.id)
        with pytest.raises(REFUSED):
            await db.execute(insert, "po_late", refunded.id, "cl_late")
        await db.execute("DELETE FROM claims WHERE id IN ('cl_forged', 'cl_late')")
    # Through the store, the refused refund is a lost compare-and-set, not an error.
    refund = OrderChange(order.id, frozenset({"delivered"}), "refunded", world.clock())
    assert await world.store.apply(refund) is None
    assert len(await world.service.payouts_of(BUYER, order.id)) == 1
    assert (await world.service.get_order(BUYER, order.id)).status == "delivered"
    assert await world.service.payouts_of(BUYER, refunded.id) == []
