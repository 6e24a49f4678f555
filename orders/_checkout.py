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
    Order,
    Payment,
    PaymentChoice,
    Reconciliation,
)
from ._payments import Payments
from ._store import OrderChange
from .exceptions import (
    DeliveryLimitReached,
    HoldExpired,
    NotReservationHolder,
    UnknownReservation,
)
from .interfaces import ReservationInfo

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
            try:
                existing, _ = await core.store.insert_order(
                    await self._intent(actor, request, info), info, [], None, limit)
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
        return await self._place(actor, existing, request.payment)

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
            # The hold is gone for good: nothing was sold, so nothing may be ordered.
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
        events = [core.event(order, "created", None, "created", actor, now)]
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

    async def unrecorded_sales(self, since_ms: int, also: Iterable[str] = ()) -> list[str]:
        """Reservations recorded as sold since ``since_ms`` (and those of ``also`` still so)
        that have no order: a unit sold with nobody to deliver it to. With checkout writing its
        intent before the commit this should never happen; the upkeep owner reports it."""
        return await self._core.store.committed_without_order(since_ms, list(also))
