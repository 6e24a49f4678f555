"""Coupons at checkout, on both stores: the discount recorded on the order (and in its payment),
the best coupon chosen, the coupon given back when an unpaid order is cancelled (the payment
timeout) or a checkout is voided, an interrupted checkout's coupon settled by ``reconcile``, the
proration rule, and the coupon cost in the figures. The wallet here is orders' contract in
miniature (``CouponWallet``); tests/test_coupons.py runs the real one in Redis."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field, replace
from typing import NoReturn

import pytest

from orders import (
    PAYMENT_TIMEOUT_MS,
    CouponExpired,
    CouponNotYours,
    CouponTerms,
    CouponUsed,
    HoldExpired,
    InvalidInput,
    UnknownCoupon,
)
from orders._models import prorated_discount

from .conftest import ANCHOR, BUYER, DECLINED_CARD, OTHER, World, body, online

ROOM = "r_room000001"


@dataclass
class MemoryWallet:
    """The coupon wallet's contract: ``use`` and ``give_back`` atomic and idempotent per order."""

    coupons: dict[str, CouponTerms] = field(default_factory=dict)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    def grant(self, coupon_id: str, user: str = BUYER.user_id, *, off: int = 0,
              percent: int = 0, min_spend: int = 0, expires_at: int = 10**15,
              room: str = ROOM) -> str:
        self.coupons[coupon_id] = CouponTerms(coupon_id, user, room, off, percent, min_spend,
                                              expires_at)
        return coupon_id

    async def usable(self, user_id: str, room_id: str, now_ms: int) -> list[CouponTerms]:
        return [c for c in self.coupons.values() if c.user_id == user_id
                and c.room_id == room_id and c.used_by is None and now_ms < c.expires_at]

    async def terms(self, coupon_id: str) -> CouponTerms:
        if coupon_id not in self.coupons:
            raise UnknownCoupon(coupon_id)
        return self.coupons[coupon_id]

    async def use(self, coupon_id: str, user_id: str, order_id: str, now_ms: int) -> None:
        await asyncio.sleep(0)  # a round trip, as the Lua step on Redis takes
        async with self.lock:
            terms = await self.terms(coupon_id)
            if terms.user_id != user_id:
                raise CouponNotYours(coupon_id)
            if terms.used_by == order_id:
                return
            if terms.used_by is not None:
                raise CouponUsed(coupon_id, terms.used_by)
            if now_ms >= terms.expires_at:
                raise CouponExpired(coupon_id, terms.expires_at)
            self.coupons[coupon_id] = replace(terms, used_by=order_id)

    async def give_back(self, coupon_id: str, order_id: str) -> bool:
        async with self.lock:
            terms = self.coupons.get(coupon_id)
            if terms is None or terms.used_by != order_id:
                return False
            self.coupons[coupon_id] = replace(terms, used_by=None)
            return True


@pytest.fixture
def wallet(world: World) -> MemoryWallet:
    w = MemoryWallet()
    world.service.coupons = w
    return w


async def test_the_best_coupon_is_recorded_on_the_order_and_its_payment(
        world: World, wallet: MemoryWallet) -> None:
    wallet.grant("cd_small.1", off=500)
    wallet.grant("cd_pct.1", percent=10)  # 10 % of 129.00: 12.90
    wallet.grant("cd_min.1", off=5_000, min_spend=20_000)  # below its minimum spend
    wallet.grant("cd_other.1", off=9_000, room="r_room000002")  # another room's sales
    wallet.grant("cd_late.1", off=9_000, expires_at=world.clock() - 1)
    order = await world.checkout(BUYER, world.ledger.hold(BUYER.user_id),
                                 online())
    assert (order.subtotal_cents, order.discount_cents, order.total_cents) == (
        12_900, 1_290, 11_610)
    assert order.coupon_id == "cd_pct.1"
    assert wallet.coupons["cd_pct.1"].used_by == order.id
    [payment] = await world.store.payments(order.id)
    assert payment.amount_cents == 11_610
    stored = await world.store.get_order(order.id)
    assert stored is not None
    assert (stored.coupon_id, stored.discount_cents) == ("cd_pct.1", 1_290)
    [created] = [e for e in await world.service.history(BUYER, order.id) if e.kind == "created"]
    assert created.detail == {"coupon": "cd_pct.1", "discount_cents": 1_290}
    public = order.to_public()
    assert (public["coupon"], public["discount_cents"], public["subtotal_cents"]) == (
        "cd_pct.1", 1_290, 12_900)


async def test_an_unpaid_order_cancelled_by_the_timeout_gives_the_coupon_back(
        world: World, wallet: MemoryWallet) -> None:
    coupon = wallet.grant("cd_off.1", off=900)
    order = await world.checkout(BUYER, world.ledger.hold(BUYER.user_id),
                                 online(DECLINED_CARD))
    assert order.coupon_id == coupon
    world.clock.advance(PAYMENT_TIMEOUT_MS)
    for _ in range(100):  # the declined charge's answer lands first
        if (await world.store.get_order(order.id)).status == "created":  # type: ignore[union-attr]
            break
        await asyncio.sleep(0.01)
    [cancelled] = await world.service.expire_unpaid()
    assert cancelled.id == order.id
    assert wallet.coupons[coupon].used_by is None, "back in the wallet"
    [restock] = [e for e in await world.service.history(BUYER, order.id) if e.kind == "restock"]
    assert restock.detail["coupon_returned"] is True
    again = await world.checkout(BUYER, world.ledger.hold(BUYER.user_id))
    assert again.coupon_id == coupon


async def test_a_voided_checkout_gives_the_coupon_back(world: World,
                                                      wallet: MemoryWallet) -> None:
    coupon = wallet.grant("cd_off.1", off=900)
    hold = world.ledger.hold(BUYER.user_id, ttl_ms=1_000)
    world.clock.advance(1_000)
    with pytest.raises(HoldExpired):
        await world.checkout(BUYER, hold)
    assert wallet.coupons[coupon].used_by is None


async def test_someone_elses_coupon_is_refused_and_nothing_is_written(
        world: World, wallet: MemoryWallet) -> None:
    theirs = wallet.grant("cd_off.1", OTHER.user_id, off=900)
    hold = world.ledger.hold(BUYER.user_id)
    with pytest.raises(CouponNotYours):
        await world.service.checkout(BUYER, {**body(hold.id), "coupon": theirs})
    assert await world.store.get_order_by_reservation(hold.id) is None
    assert wallet.coupons[theirs].used_by is None
    with pytest.raises(InvalidInput):
        await world.service.checkout(BUYER, {**body(hold.id), "coupon": 7})


async def test_two_checkouts_at_once_share_no_coupon(world: World,
                                                     wallet: MemoryWallet) -> None:
    coupon = wallet.grant("cd_off.1", off=900)
    holds = [world.ledger.hold(BUYER.user_id) for _ in range(2)]
    orders = await asyncio.gather(*(world.checkout(BUYER, h) for h in holds))
    with_coupon = [o for o in orders if o.coupon_id == coupon]
    assert len(with_coupon) == 1
    [other] = [o for o in orders if o.coupon_id is None]
    assert (other.discount_cents, other.total_cents) == (0, 12_900)
    assert wallet.coupons[coupon].used_by == with_coupon[0].id


async def test_an_interrupted_checkout_keeps_its_coupon_through_reconcile(
        world: World, wallet: MemoryWallet) -> None:
    coupon = wallet.grant("cd_off.1", off=900)
    hold = world.ledger.hold(BUYER.user_id)
    commit = world.ledger.commit

    async def crash_after_commit(reservation_id: str, user_id: str) -> NoReturn:
        await commit(reservation_id, user_id)
        raise ConnectionError("the process died here")

    world.ledger.commit = crash_after_commit  # type: ignore[method-assign]
    with pytest.raises(ConnectionError):
        await world.checkout(BUYER, hold)
    world.ledger.commit = commit  # type: ignore[method-assign]
    settled = await world.service.reconcile(min_age_ms=0)
    [order] = settled.placed
    assert (order.coupon_id, order.total_cents) == (coupon, 12_000)
    assert wallet.coupons[coupon].used_by == order.id


def test_the_discount_is_prorated_over_the_units_refunded() -> None:
    # 3 units, 1,000 off: a unit refunded alone carries 333, two 666, all three exactly 1,000.
    assert [prorated_discount(1_000, 3, n) for n in range(4)] == [0, 333, 666, 1_000]
    with pytest.raises(InvalidInput):
        prorated_discount(1_000, 3, 4)


async def test_refunds_give_back_what_was_paid_after_the_discount(
        world: World, wallet: MemoryWallet) -> None:
    wallet.grant("cd_off.1", off=1_000)
    order = await world.checkout(BUYER, world.ledger.hold(BUYER.user_id, qty=3))
    assert order.total_cents == 3 * 12_900 - 1_000
    assert order.refund_cents(1) == 12_900 - 333
    assert order.refund_cents(3) == order.total_cents


async def test_the_figures_count_the_coupon_cost(world: World, wallet: MemoryWallet) -> None:
    wallet.grant("cd_off.1", off=1_000)
    await world.checkout(BUYER, world.ledger.hold(BUYER.user_id))
    await world.checkout(OTHER, world.ledger.hold(OTHER.user_id))
    figures = await world.service.room_figures(ROOM, 10)
    assert (figures.gmv_cents, figures.coupon_cost_cents, figures.orders) == (
        2 * 12_900 - 1_000, 1_000, 2)
    report = await world.service.analytics(ANCHOR, viewers={ROOM: 10})
    assert [a.coupon_cost_cents for a in report.anchors] == [1_000]
