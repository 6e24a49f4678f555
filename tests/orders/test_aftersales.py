from __future__ import annotations

import asyncio

import pytest

from orders import (
    COUNTERFEIT_MULTIPLIER,
    DAY_MS,
    PICKUP_LEAD_MS,
    WARRANTY_WINDOW_MS,
    CertificationRequired,
    ClaimConflict,
    IllegalTransition,
    InspectionTerms,
    InvalidInput,
    ReturnWindowClosed,
    WarrantyExpired,
)

from .conftest import ADMIN, ANCHOR, BUYER, World
from .helpers import after_next, order_in

# -- 7-day no-reason return -------------------------------------------------------------------

@pytest.mark.parametrize(
    ("elapsed", "allowed"),
    [(0, True), (7 * DAY_MS, True), (7 * DAY_MS + 1, False), (8 * DAY_MS, False)],
)
async def test_return_window_is_seven_days_from_delivery(
    world: World, elapsed: int, allowed: bool
) -> None:
    order = await order_in(world, "delivered", price_cents=25_000)
    assert order.delivered_at is not None
    world.clock.advance(elapsed)
    if allowed:
        claim = await world.service.request_return(BUYER, order.id, "too small")
        assert claim.kind == "return"
        assert claim.status == "pickup_scheduled"
        assert claim.pickup_at == world.clock() + PICKUP_LEAD_MS
        assert claim.return_shipping_payer == "platform"
        assert claim.amount_cents == 25_000
        assert (await world.service.get_order(BUYER, order.id)).status == "return_requested"
    else:
        with pytest.raises(ReturnWindowClosed) as info:
            await world.service.request_return(BUYER, order.id)
        assert info.value.deadline_ms == order.delivered_at + 7 * DAY_MS
        assert (await world.service.get_order(BUYER, order.id)).status == "delivered"
        assert await world.service.claims(BUYER, order.id) == []


async def test_return_window_counts_from_delivery_not_from_purchase(world: World) -> None:
    order = await order_in(world, "shipped")
    world.clock.advance(20 * DAY_MS)  # a slow courier
    await world.service.deliver(ANCHOR, order.id)
    world.clock.advance(6 * DAY_MS)
    await world.service.request_return(BUYER, order.id)


async def test_return_is_still_possible_after_confirming_receipt(world: World) -> None:
    order = await order_in(world, "completed")
    claim = await world.service.request_return(BUYER, order.id)
    assert claim.status == "pickup_scheduled"


async def test_received_return_refunds_in_full_and_only_once(world: World) -> None:
    order = await order_in(world, "paid", price_cents=9_900, qty=3)
    await world.service.ship(ANCHOR, order.id)
    await world.service.deliver(ANCHOR, order.id)
    await world.service.request_return(BUYER, order.id)
    with pytest.raises(IllegalTransition):
        await world.service.refund_no_return(BUYER, order.id)
    returned = await world.service.receive_return(ANCHOR, order.id)
    assert returned.status == "returned"
    [claim] = await world.service.claims(BUYER, order.id)
    assert (claim.status, claim.amount_cents) == ("refunded", 29_700)
    [payment] = await world.service.payments_of(BUYER, order.id)
    assert payment.status == "refunded"
    with pytest.raises(IllegalTransition):
        await world.service.receive_return(ANCHOR, order.id)


async def test_a_second_return_request_is_refused(world: World) -> None:
    order = await order_in(world, "return_requested")
    with pytest.raises(IllegalTransition):
        await world.service.request_return(BUYER, order.id)
    assert len(await world.service.claims(BUYER, order.id)) == 1


# -- refund without return --------------------------------------------------------------------

async def test_refund_no_return_needs_the_anchor_certified_for_the_category(world: World) -> None:
    order = await order_in(world, "delivered", category="essential_oil", price_cents=4_500)
    with pytest.raises(CertificationRequired) as info:
        await world.service.refund_no_return(BUYER, order.id)
    assert info.value.certification == "refund_no_return"
    # Certified, but for another category: still no.
    world.certs.refund_no_return.add((order.anchor_id, "skincare"))
    with pytest.raises(CertificationRequired):
        await world.service.refund_no_return(BUYER, order.id)
    # Another anchor's certification does not count.
    world.certs.refund_no_return.add(("u_anchor00002", "essential_oil"))
    with pytest.raises(CertificationRequired):
        await world.service.refund_no_return(BUYER, order.id)
    assert (await world.service.get_order(BUYER, order.id)).status == "delivered"

    world.certs.refund_no_return.add((order.anchor_id, "essential_oil"))
    claim = await world.service.refund_no_return(BUYER, order.id, "opened, smells odd")
    assert (claim.kind, claim.status, claim.amount_cents) == ("refund_no_return", "refunded", 4_500)
    assert claim.pickup_at is None  # no goods back
    after = await world.service.get_order(BUYER, order.id)
    assert after.status == "refunded"


async def test_refund_no_return_refunds_an_online_payment_at_once(world: World) -> None:
    order = await order_in(world, "paid", category="essential_oil")
    world.certs.refund_no_return.add((order.anchor_id, "essential_oil"))
    await world.service.ship(ANCHOR, order.id)
    await world.service.deliver(ANCHOR, order.id)
    await world.service.refund_no_return(BUYER, order.id)
    [payment] = await world.service.payments_of(BUYER, order.id)
    assert payment.status == "refunded"


@pytest.mark.parametrize(("elapsed", "allowed"), [(7 * DAY_MS, True), (7 * DAY_MS + 1, False)])
async def test_refund_no_return_window(world: World, elapsed: int, allowed: bool) -> None:
    order = await order_in(world, "delivered", category="essential_oil")
    world.certs.refund_no_return.add((order.anchor_id, "essential_oil"))
    world.clock.advance(elapsed)
    if allowed:
        await world.service.refund_no_return(BUYER, order.id)
    else:
        with pytest.raises(ReturnWindowClosed):
            await world.service.refund_no_return(BUYER, order.id)


# -- fake one, pay ten ------------------------------------------------------------------------

async def test_upheld_counterfeit_claim_pays_ten_times_the_price(world: World) -> None:
    order = await order_in(world, "delivered", category="jewelry", price_cents=123_456, qty=2)
    claim = await world.service.counterfeit_claim(BUYER, order.id, "stone is glass")
    assert (claim.status, claim.amount_cents) == ("open", 0)
    assert claim.to_public()["order_id"] == order.id
    upheld = await world.service.uphold_counterfeit(ADMIN, claim.id)
    assert upheld.status == "upheld"
    assert upheld.amount_cents == 10 * 246_912 == COUNTERFEIT_MULTIPLIER * order.total_cents
    [stored] = await world.service.claims(BUYER, order.id)
    assert stored.amount_cents == 2_469_120
    # The compensation is paid out, not only written on the claim.
    [payout] = await world.service.payouts_of(BUYER, order.id)
    assert (payout.kind, payout.status, payout.claim_id, payout.amount_cents) == (
        "counterfeit_compensation", "paid", claim.id, 2_469_120)
    assert isinstance(payout.amount_cents, int)
    history = await world.service.history(BUYER, order.id)
    assert [e.kind for e in history][-2:] == ["counterfeit_claim", "counterfeit_upheld"]
    assert history[-1].detail["payout"] == payout.id
    detail = await world.service.order_detail(BUYER, order.id)
    assert detail["payouts"] == [payout.to_public()]
    with pytest.raises(ClaimConflict):
        await world.service.uphold_counterfeit(ADMIN, claim.id)
    with pytest.raises(ClaimConflict):
        await world.service.counterfeit_claim(BUYER, order.id, "again")
    assert len(await world.service.payouts_of(BUYER, order.id)) == 1


async def test_racing_decisions_pay_a_counterfeit_claim_once(world: World) -> None:
    order = await order_in(world, "delivered", price_cents=10_000)
    claim = await world.service.counterfeit_claim(BUYER, order.id, "fake")
    outcomes = await asyncio.gather(
        *[world.service.uphold_counterfeit(ADMIN, claim.id) for _ in range(4)],
        world.service.reject_counterfeit(ADMIN, claim.id),
        return_exceptions=True,
    )
    decided = [o for o in outcomes if not isinstance(o, BaseException)]
    assert len(decided) == 1
    assert all(isinstance(o, ClaimConflict) for o in outcomes if o not in decided)
    [stored] = await world.service.claims(BUYER, order.id)
    assert stored.status == decided[0].status
    payouts = await world.service.payouts_of(BUYER, order.id)
    assert [p.amount_cents for p in payouts] == ([100_000] if stored.status == "upheld" else [])


async def test_rejected_counterfeit_claim_pays_nothing(world: World) -> None:
    order = await order_in(world, "completed")
    claim = await world.service.counterfeit_claim(BUYER, order.id, "looks fake")
    rejected = await world.service.reject_counterfeit(ADMIN, claim.id)
    assert (rejected.status, rejected.amount_cents) == ("rejected", 0)
    assert await world.service.payouts_of(BUYER, order.id) == []


async def test_counterfeit_claim_needs_goods_received_and_a_reason(world: World) -> None:
    shipped = await order_in(world, "shipped")
    with pytest.raises(IllegalTransition):
        await world.service.counterfeit_claim(BUYER, shipped.id, "fake")
    delivered = await order_in(world, "delivered")
    with pytest.raises(InvalidInput):
        await world.service.counterfeit_claim(BUYER, delivered.id, "   ")
    assert await world.service.claims(BUYER, delivered.id) == []


# -- inspected second-hand phones -------------------------------------------------------------

PHONE = "p_phone00001"


@pytest.mark.parametrize(
    ("elapsed", "allowed"),
    [(180 * DAY_MS, True), (180 * DAY_MS + 1, False), (181 * DAY_MS, False)],
)
async def test_warranty_is_180_days_from_delivery(
    world: World, elapsed: int, allowed: bool
) -> None:
    world.certs.inspections[PHONE] = InspectionTerms("ir_1", buyback_price_cents=150_000)
    order = await order_in(world, "delivered", category="phone_used", product=PHONE)
    world.clock.advance(elapsed)
    if allowed:
        claim = await world.service.warranty_claim(BUYER, order.id, "battery drains")
        assert (claim.kind, claim.status) == ("warranty", "pickup_scheduled")
        assert claim.pickup_at == world.clock() + PICKUP_LEAD_MS
    else:
        with pytest.raises(WarrantyExpired) as info:
            await world.service.warranty_claim(BUYER, order.id, "battery drains")
        assert info.value.deadline_ms == (order.delivered_at or 0) + 180 * DAY_MS
        assert await world.service.claims(BUYER, order.id) == []


async def test_warranty_runs_to_the_certificates_date_when_that_is_later(world: World) -> None:
    cert_end = world.clock() + 400 * DAY_MS  # a report promising more than 180 days
    world.certs.inspections[PHONE] = InspectionTerms("ir_1", 150_000, warranty_ends_at=cert_end)
    order = await order_in(world, "delivered", category="phone_used", product=PHONE)
    assert order.delivered_at is not None
    assert order.to_public()["warranty_ends_at"] == cert_end
    world.clock.now = order.delivered_at + WARRANTY_WINDOW_MS + 1
    await world.service.warranty_claim(BUYER, order.id, "no sound")
    world.clock.now = cert_end
    await world.service.warranty_claim(BUYER, order.id, "no sound again")
    world.clock.now = cert_end + 1
    with pytest.raises(WarrantyExpired) as info:
        await world.service.warranty_claim(BUYER, order.id, "still no sound")
    assert info.value.deadline_ms == cert_end
    assert len(await world.service.claims(BUYER, order.id)) == 2


async def test_warranty_runs_180_days_from_delivery_when_the_certificate_says_less(
    world: World
) -> None:
    cert_end = world.clock() + 170 * DAY_MS  # issue + 180 days, issued 10 days before the sale
    world.certs.inspections[PHONE] = InspectionTerms("ir_1", 150_000, warranty_ends_at=cert_end)
    shipped = await order_in(world, "shipped", category="phone_used", product=PHONE)
    # Before delivery the order shows the certificate's date: the warranty lasts at least that.
    assert shipped.to_public()["warranty_ends_at"] == cert_end
    world.clock.advance(5 * DAY_MS)
    order = await world.service.deliver(ANCHOR, shipped.id)
    assert order.delivered_at is not None
    deadline = order.delivered_at + WARRANTY_WINDOW_MS
    assert order.to_public()["warranty_ends_at"] == deadline > cert_end
    world.clock.now = cert_end + 1
    await world.service.warranty_claim(BUYER, order.id, "battery swells")
    world.clock.now = deadline + 1
    with pytest.raises(WarrantyExpired) as info:
        await world.service.warranty_claim(BUYER, order.id, "battery swells more")
    assert info.value.deadline_ms == deadline


async def test_the_warranty_date_scanned_at_delivery_holds_after_revocation(world: World) -> None:
    world.certs.inspections[PHONE] = InspectionTerms("ir_1", 150_000,
                                                     warranty_ends_at=world.clock() + DAY_MS)
    shipped = await order_in(world, "shipped", category="phone_used", product=PHONE)
    # Re-inspected before delivery with a longer warranty: that is the report the buyer scans.
    rescanned = world.clock() + 365 * DAY_MS
    world.certs.inspections[PHONE] = InspectionTerms("ir_2", 150_000, warranty_ends_at=rescanned)
    delivered = await world.service.deliver(ANCHOR, shipped.id)
    assert delivered.to_public()["warranty_ends_at"] == rescanned
    del world.certs.inspections[PHONE]  # the report is revoked later
    world.clock.now = rescanned
    claim = await world.service.warranty_claim(BUYER, delivered.id, "screen dead")
    assert claim.status == "pickup_scheduled"
    detail = await world.service.order_detail(BUYER, delivered.id)
    assert detail["warranty_ends_at"] == rescanned


async def test_only_inspected_phone_orders_show_a_warranty_end(world: World) -> None:
    shirt = await order_in(world, "delivered", category="clothing")
    assert shirt.to_public()["warranty_ends_at"] is None
    uninspected = await order_in(world, "delivered", category="phone_used", product="p_phone00003")
    assert uninspected.to_public()["warranty_ends_at"] is None


async def test_warranty_only_for_inspected_phones(world: World) -> None:
    uninspected = await order_in(world, "delivered", category="phone_used", product="p_phone00002")
    with pytest.raises(CertificationRequired) as info:
        await world.service.warranty_claim(BUYER, uninspected.id, "broken")
    assert info.value.certification == "inspection"
    world.certs.inspections["p_shirt00001"] = InspectionTerms("ir_x", 1)
    shirt = await order_in(world, "delivered", category="clothing", product="p_shirt00001")
    with pytest.raises(CertificationRequired):
        await world.service.warranty_claim(BUYER, shirt.id, "torn")


async def test_warranty_claims_may_repeat_within_the_window(world: World) -> None:
    world.certs.inspections[PHONE] = InspectionTerms("ir_1", 150_000)
    order = await order_in(world, "completed", category="phone_used", product=PHONE)
    await world.service.warranty_claim(BUYER, order.id, "screen flickers")
    world.clock.advance(30 * DAY_MS)
    await world.service.warranty_claim(BUYER, order.id, "screen flickers again")
    assert len(await world.service.claims(BUYER, order.id)) == 2


async def test_buyback_quote_is_price_protected(world: World) -> None:
    world.certs.inspections[PHONE] = InspectionTerms("ir_1", buyback_price_cents=150_000)
    order = await order_in(world, "delivered", category="phone_used", product=PHONE,
                           price_cents=200_000)
    assert order.buyback_locked_cents == 150_000
    quote = await world.service.buyback_quote(BUYER, order.id)
    assert (quote.amount_cents, quote.locked_cents) == (150_000, 150_000)
    assert quote.valid_until == world.clock() + DAY_MS

    # The market drops: the buyer still gets what was promised at purchase.
    world.certs.inspections[PHONE] = InspectionTerms("ir_1", buyback_price_cents=90_000)
    dropped = await world.service.buyback_quote(BUYER, order.id)
    assert (dropped.amount_cents, dropped.current_cents) == (150_000, 90_000)

    # The market rises: the buyer gets the better offer.
    world.certs.inspections[PHONE] = InspectionTerms("ir_1", buyback_price_cents=170_000)
    assert (await world.service.buyback_quote(BUYER, order.id)).amount_cents == 170_000


async def test_buyback_quote_never_pays_more_than_the_phone_cost(world: World) -> None:
    """A phone sold at 10.00 in a flash sale, its report promising 1,800.00: the trade-in offer
    is what the buyer paid (unit price x quantity), or buying and selling back prints money."""
    world.certs.inspections[PHONE] = InspectionTerms("ir_1", buyback_price_cents=180_000)
    order = await order_in(world, "delivered", category="phone_used", product=PHONE,
                           price_cents=1_000, qty=2)
    quote = await world.service.buyback_quote(BUYER, order.id)
    assert (quote.amount_cents, quote.paid_cents) == (2_000, 2_000)
    assert (quote.locked_cents, quote.current_cents) == (360_000, 360_000)


async def test_buyback_needs_the_phone_in_hand(world: World) -> None:
    world.certs.inspections[PHONE] = InspectionTerms("ir_1", 150_000)
    order = await order_in(world, "shipped", category="phone_used", product=PHONE)
    with pytest.raises(IllegalTransition):
        await world.service.buyback_quote(BUYER, order.id)
    other = await order_in(world, "delivered", category="phone_used", product="p_phone00009")
    with pytest.raises(CertificationRequired):
        await world.service.buyback_quote(BUYER, other.id)


# -- racing another change: the action is worked out again on what the order is now -----------


async def history_of(world: World, order_id: str) -> list[tuple[str, str | None, str]]:
    return [(e.kind, e.from_status, e.to_status)
            for e in await world.service.history(BUYER, order_id)]


@pytest.mark.parametrize(("action", "ends"), [("request_return", "return_requested"),
                                              ("refund_no_return", "refunded")])
async def test_a_return_or_refund_racing_a_complete_goes_ahead(
    world: World, monkeypatch: pytest.MonkeyPatch, action: str, ends: str
) -> None:
    """The buyer asks for a return (or a refund) just as an admin completes the order: both
    are allowed from ``completed`` as from ``delivered``, so the buyer is not refused."""
    order = await order_in(world, "delivered", category="essential_oil", price_cents=4_500)
    world.certs.refund_no_return.add((order.anchor_id, order.category))
    after_next(world, "get_order", lambda: world.service.complete(ADMIN, order.id), monkeypatch)
    claim = await getattr(world.service, action)(BUYER, order.id, "too strong")
    assert claim.amount_cents == 4_500
    assert (await world.service.get_order(BUYER, order.id)).status == ends
    assert [c.id for c in await world.service.claims(BUYER, order.id)] == [claim.id]
    assert (await history_of(world, order.id))[-2:] == [
        ("complete", "delivered", "completed"), (action, "completed", ends)]
    payments = [p.status for p in await world.service.payments_of(BUYER, order.id)]
    assert payments == (["refunded"] if action == "refund_no_return" else ["approved"])


async def test_a_return_racing_a_refund_is_refused_with_the_status_now(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Worked out again, a return is no longer possible once the order was refunded."""
    order = await order_in(world, "delivered", category="essential_oil")
    world.certs.refund_no_return.add((order.anchor_id, order.category))
    after_next(world, "get_order", lambda: world.service.refund_no_return(BUYER, order.id),
               monkeypatch)
    with pytest.raises(IllegalTransition) as info:
        await world.service.request_return(BUYER, order.id)
    assert (info.value.status, info.value.action) == ("refunded", "request_return")
    assert [c.kind for c in await world.service.claims(BUYER, order.id)] == ["refund_no_return"]


@pytest.mark.parametrize("action", ["counterfeit_claim", "warranty_claim"])
async def test_a_claim_racing_a_complete_is_filed(
    world: World, monkeypatch: pytest.MonkeyPatch, action: str
) -> None:
    world.certs.inspections[PHONE] = InspectionTerms("ir_1", 150_000)
    order = await order_in(world, "delivered", category="phone_used", product=PHONE)
    after_next(world, "get_order", lambda: world.service.complete(ADMIN, order.id), monkeypatch)
    claim = await getattr(world.service, action)(BUYER, order.id, "the screen flickers")
    assert (await world.service.get_order(BUYER, order.id)).status == "completed"
    assert [c.id for c in await world.service.claims(BUYER, order.id)] == [claim.id]
    assert (await history_of(world, order.id))[-1] == (action, "completed", "completed")
