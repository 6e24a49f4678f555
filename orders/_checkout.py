"""Checkout (a flash-sale hold becomes an order) and its recovery after a crash (reconcile)."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import replace

from ._core import SYSTEM, OrderCore, new_id
from ._models import (
    INSPECTED_CATEGORY,
    Actor,
    CheckoutRequest,
    CouponChoice,
    Order,
    Payment,
    PaymentChoice,
    Reconciliation,
)
from ._payments import Payments
from ._store import OrderChange
from .exceptions import (
    CouponExpired,
    CouponNotApplicable,
    CouponNotYours,
    CouponRefused,
    CouponUsed,
    DeliveryLimitReached,
    HoldExpired,
    NotReservationHolder,
    UnknownCoupon,
    UnknownReservation,
)
from .interfaces import CouponTerms, ReservationInfo

__all__ = ["INTENT_GRACE_MS", "Checkout"]

log = logging.getLogger(__name__)

# reconcile() leaves younger checkout intents alone: they are most likely still in flight.
INTENT_GRACE_MS = 30_000


class Checkout:
    def __init__(self, core: OrderCore, payments: Payments) -> None:
        self._core = core
        self._payments = payments

    async def checkout(self, actor: Actor, body: object) -> Order:
        """Turn the caller's hold into an order at the reserved price. Idempotent by
        reservation: checking out the same reservation again returns the same order.

        Crash-safe order of steps: the checkout is written down first (a ``pending`` intent
        with the address), then the inventory commits the hold, then the intent becomes the
        order. A crash between any two steps leaves an intent that a retry of the same checkout
        or ``reconcile()`` settles by asking the inventory what became of the hold."""
        core = self._core
        request = CheckoutRequest.parse(body)
        rid = request.reservation_id
        existing = await core.store.get_order_by_reservation(rid)
        if existing is None:
            info = await self._reservation_of(actor, rid)
            limit = await core.ledger.per_person_limit(info.sale_id)
            intent = await self._intent(actor, request, info)
            # A coupon named in the body is checked before anything is written: a refused
            # one changes nothing.
            terms = await self._choose_coupon(actor, intent, request.coupon)
            if terms is not None:
                intent = _with_coupon(intent, terms)
            try:
                existing, _ = await core.store.insert_order(intent, info, [], None, limit)
            except DeliveryLimitReached:
                # Another account of the same person (one door, one phone) took the sale's
                # limit: the unit goes back to the other buyers now, not when the hold ends.
                await core.ledger.release(rid, actor.user_id)
                raise
        if existing.buyer_id != actor.user_id:
            raise NotReservationHolder(rid)
        if existing.status == "voided":
            raise HoldExpired(rid)
        if existing.status != "pending":
            return existing
        existing = await self._claim_coupon(actor, existing, request.coupon)
        return await self._place(actor, existing, request.payment)

    # -- coupons ---------------------------------------------------------------------------

    async def _choose_coupon(self, actor: Actor, intent: Order,
                             choice: CouponChoice) -> CouponTerms | None:
        """The coupon for ``intent``: the one the body names (checked: the buyer's, for this
        room, unexpired, not on another order, the minimum spend met), none with ``False``,
        else the buyer's usable coupon of the room that takes the most off (the one expiring
        first among equals), if any takes anything off."""
        core = self._core
        if choice is False:
            return None
        now = core.now_ms()
        subtotal = intent.subtotal_cents
        if choice is None:
            best: tuple[int, int, str] | None = None
            found: CouponTerms | None = None
            for terms in await core.coupons.usable(actor.user_id, intent.room_id, now):
                off = terms.discount_for(subtotal)
                if off <= 0 or terms.user_id != actor.user_id or terms.expires_at <= now:
                    continue
                rank = (-off, terms.expires_at, terms.id)
                if best is None or rank < best:
                    best, found = rank, terms
            return found
        terms = await core.coupons.terms(choice)
        if terms.user_id != actor.user_id:
            raise CouponNotYours(choice)
        if terms.used_by is not None and terms.used_by != intent.id:
            raise CouponUsed(choice, None)
        if terms.expires_at <= now:
            raise CouponExpired(choice, terms.expires_at)
        if terms.room_id != intent.room_id:
            raise CouponNotApplicable(choice, "that coupon is for another room's sales")
        if subtotal <= 1:
            raise CouponNotApplicable(choice, "a free order takes no coupon")
        if terms.discount_for(subtotal) <= 0:
            raise CouponNotApplicable(
                choice, f"that coupon needs a spend of at least {terms.min_spend_cents} cents")
        return terms

    async def _claim_coupon(self, actor: Actor, intent: Order, choice: CouponChoice) -> Order:
        """Mark the intent's coupon used by it in the wallet (again on a retry: nothing). An
        intent written without one (a retry after the first attempt found none) gets the best
        one now. A coupon another checkout took meanwhile is dropped from the intent: the
        checkout goes on at the full price unless the body named that coupon (then refused,
        with the intent kept, unpriced by any coupon, for a retry)."""
        core = self._core
        if intent.coupon_id is None:
            terms = await self._choose_coupon(actor, intent, choice)
            if terms is None:
                return intent
            attached = await self._set_coupon(intent, terms)
            if attached is None:
                return intent  # settled meanwhile: _place reads what it is now
            intent = attached
        assert intent.coupon_id is not None
        try:
            await core.coupons.use(intent.coupon_id, actor.user_id, intent.id, core.now_ms())
        except (CouponRefused, UnknownCoupon):
            dropped = await self._set_coupon(intent, None)
            if isinstance(choice, str):
                raise
            return dropped or intent
        return intent

    async def _set_coupon(self, intent: Order, terms: CouponTerms | None) -> Order | None:
        """The pending intent with ``terms`` applied (None: with no coupon); None if it is no
        longer pending."""
        priced = _with_coupon(intent, terms)
        return await self._core.store.apply(OrderChange(
            intent.id, frozenset({"pending"}), "pending", self._core.now_ms(),
            fields={"coupon_id": priced.coupon_id, "discount_cents": priced.discount_cents,
                    "total_cents": priced.total_cents}))

    async def _give_back_coupon(self, order: Order) -> bool:
        if order.coupon_id is None:
            return False
        try:
            return await self._core.coupons.give_back(order.coupon_id, order.id)
        except Exception:
            log.warning("coupon %s of %s could not be given back", order.coupon_id, order.id,
                        exc_info=True)
            return False

    async def _reservation_of(self, actor: Actor, rid: str) -> ReservationInfo:
        """The hold to check out, as the hand-off consumer recorded it or else as the inventory
        knows it; refuses a stranger's hold and one already given back."""
        info = await self._core.store.get_reservation(rid)
        if info is None:
            info = await self._core.ledger.get_reservation(rid)
        if info.user_id != actor.user_id:
            raise NotReservationHolder(rid)
        if info.state in ("released", "expired", "restocked"):
            raise HoldExpired(rid)
        return info

    async def _intent(
        self, actor: Actor, request: CheckoutRequest, info: ReservationInfo
    ) -> Order:
        terms = None
        if info.category == INSPECTED_CATEGORY:
            terms = await self._core.certification.inspection(info.product_id)
        now = self._core.now_ms()
        return Order(
            id=new_id("o_"),
            reservation_id=info.id,
            sale_id=info.sale_id,
            room_id=info.room_id,
            anchor_id=info.anchor_id,
            product_id=info.product_id,
            buyer_id=actor.user_id,
            title=info.title,
            category=info.category,
            brand=info.brand,
            qty=info.qty,
            unit_price_cents=info.price_cents,
            total_cents=info.price_cents * info.qty,
            payment_method=request.payment.method,
            status="pending",
            address=request.address,
            created_at=now,
            updated_at=now,
            buyback_locked_cents=terms.buyback_price_cents if terms is not None else None,
            certificate_warranty_ends_at=terms.warranty_ends_at if terms is not None else None,
        )

    async def _place(self, actor: Actor, intent: Order, choice: PaymentChoice) -> Order:
        """Commit the intent's hold and turn the intent into the order; only the caller that
        turned it charges the card."""
        try:
            # The inventory decides atomically between this commit and the expiry sweeper.
            info = await self._core.ledger.commit(intent.reservation_id, actor.user_id)
        except (HoldExpired, UnknownReservation, NotReservationHolder) as exc:
            # The hold is gone for good: nothing was sold, so nothing may be ordered (and the
            # coupon goes back to the wallet).
            await self._void(intent, exc.code)
            raise
        # Any other failure (the inventory unreachable, a crash) leaves the intent pending:
        # a retry of the checkout or reconcile() settles it.
        placed, payment = await self._settle(intent, info, actor, choice)
        if placed is None or payment is None:
            current = await self._core.store.get_order(intent.id)
            assert current is not None
            if current.status == "voided":
                raise HoldExpired(intent.reservation_id)
            return current
        await self._payments.after_payment_chosen(placed, payment, choice)
        return placed

    async def _settle(
        self, intent: Order, info: ReservationInfo, actor: Actor, choice: PaymentChoice | None,
    ) -> tuple[Order | None, Payment | None]:
        """pending → confirmed (cash on delivery) or created (online). The payment is recorded
        as pending: cash is collected at delivery, a card charged by the caller. Without a
        ``choice`` (reconcile: the card was never stored) an online order waits for ``pay``.
        (None, None) when someone else settled the intent first."""
        core = self._core
        now = core.now_ms()
        method = choice.method if choice is not None else intent.payment_method
        cod = method == "cod"
        order = replace(intent, status="created", payment_method=method)
        detail = ({"coupon": order.coupon_id, "discount_cents": order.discount_cents}
                  if order.coupon_id else None)
        events = [core.event(order, "created", None, "created", actor, now, detail)]
        if cod:
            events.append(core.event(order, "confirm", "created", "confirmed", actor, now))
        payment = None
        if cod or choice is not None:
            payment = self._payments.new_payment(order, choice or PaymentChoice("cod"), now)
        fields: dict[str, int | str | None] = {"payment_method": method, "created_at": now}
        if cod:
            fields["placed_at"] = now
        placed = await core.store.apply(
            OrderChange(
                intent.id, frozenset({"pending"}), "confirmed" if cod else "created", now,
                fields=fields, events=events, payments=[payment] if payment else [],
                committed=info,
            )
        )
        if placed is None:
            return None, None
        return placed, payment

    async def _void(self, intent: Order, reason: str) -> bool:
        core = self._core
        now = core.now_ms()
        voided = await core.store.apply(
            OrderChange(
                intent.id, frozenset({"pending"}), "voided", now,
                events=[core.event(intent, "void", "pending", "voided", SYSTEM, now,
                                   {"reason": reason})],
            )
        )
        if voided is not None:
            await self._give_back_coupon(voided)
        return voided is not None

    async def reconcile(self, *, min_age_ms: int | None = None) -> Reconciliation:
        """Settle checkouts a crash interrupted: every intent older than ``min_age_ms``
        (default ``intent_grace_ms``, so checkouts in flight are left alone) becomes its order
        if the inventory sold the unit, and is voided if the hold was given back, expired or is
        unknown. A hold still live is left for the buyer's retry or its expiry."""
        core = self._core
        age = core.intent_grace_ms if min_age_ms is None else min_age_ms
        placed: list[Order] = []
        voided: list[str] = []
        waiting: list[str] = []
        for intent in await core.store.pending_intents(core.now_ms() - age):
            rid = intent.reservation_id
            try:
                info: ReservationInfo | None = await core.ledger.get_reservation(rid)
            except UnknownReservation:
                info = None
            except Exception:
                log.warning("cannot ask the inventory about %s; retrying later", rid,
                            exc_info=True)
                waiting.append(rid)
                continue
            if info is not None and info.state == "committed":
                intent = await self._reclaim_coupon(intent)
                order, _ = await self._settle(intent, info, SYSTEM, None)
                if order is not None:
                    log.warning("checkout of %s was interrupted after the sale; order %s "
                                "recovered", rid, order.id)
                    placed.append(order)
                    if order.placed_at is not None:
                        await core.figures_changed(order)
            elif info is None or info.state in ("released", "expired", "restocked"):
                if await self._void(intent, "hold_gone"):
                    voided.append(rid)
            else:
                waiting.append(rid)
        return Reconciliation(tuple(placed), tuple(voided), tuple(waiting))

    async def _reclaim_coupon(self, intent: Order) -> Order:
        """An interrupted checkout's coupon, marked used by it again before its order is
        placed; a coupon another order took meanwhile is dropped (the order is at full price)."""
        if intent.coupon_id is None:
            return intent
        try:
            await self._core.coupons.use(intent.coupon_id, intent.buyer_id, intent.id,
                                         self._core.now_ms())
        except (CouponRefused, UnknownCoupon):
            return await self._set_coupon(intent, None) or intent
        return intent

    async def unrecorded_sales(self, since_ms: int, also: Iterable[str] = ()) -> list[str]:
        """Reservations recorded as sold since ``since_ms`` (and those of ``also`` still so)
        that have no order: a unit sold with nobody to deliver it to. With checkout writing its
        intent before the commit this should never happen; the upkeep owner reports it."""
        return await self._core.store.committed_without_order(since_ms, list(also))


def _with_coupon(intent: Order, terms: CouponTerms | None) -> Order:
    if terms is None:
        return replace(intent, coupon_id=None, discount_cents=0, total_cents=intent.subtotal_cents)
    off = terms.discount_for(intent.subtotal_cents)
    return replace(intent, coupon_id=terms.id, discount_cents=off,
                   total_cents=intent.subtotal_cents - off)
