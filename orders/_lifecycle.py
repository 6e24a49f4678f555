"""The order's way to the buyer: cancel (with the unit's restock), ship, deliver, complete."""

from __future__ import annotations

import logging
from dataclasses import replace

from ._core import SYSTEM, OrderCore, short
from ._models import INSPECTED_CATEGORY, Actor, Order
from ._store import OrderChange
from .exceptions import CertificationRequired, NotAllowed

__all__ = ["VAULT_CATEGORY", "Lifecycle"]

log = logging.getLogger(__name__)

# Shipped only with a valid vault certificate of the item.
VAULT_CATEGORY = "jewelry"


class Lifecycle:
    def __init__(self, core: OrderCore) -> None:
        self._core = core

    async def cancel(self, actor: Actor, order_id: str, reason: str = "") -> Order:
        """Buyer, the order's anchor or an admin cancel before shipping; the unit goes back to
        the sale while it is live, and an approved online payment is refunded."""
        order = await self._core.visible(actor, order_id)
        # Paid or confirmed meanwhile (say, an approval landed): what to refund was read for
        # the status before, so the cancel is worked out again from what it is now.
        return await self._core.retry_on_race(
            actor, order, "cancel", lambda current: self.cancel_as_read(actor, current, reason)
        )

    def check_cancel(self, order: Order) -> None:
        """Refuse a cancel the order's status does not allow (``IllegalTransition``)."""
        self._core.require_transition(order, "cancel")

    async def cancel_as_read(
        self, actor: Actor, order: Order, reason: str, *, charges_before: int | None = None
    ) -> Order | None:
        """Cancel ``order`` from the status it was read in, refunding the payments approved
        then: None if it moved meanwhile (or, with ``charges_before``, a charge of it started
        before that time is waiting for its answer)."""
        core = self._core
        now = core.now_ms()
        refunds = [
            replace(p, status="refunded", settled_at=now, reason="order_cancelled")
            for p in await core.store.payments(order.id)
            if p.status == "approved"
        ]
        cancelled = await core.store.apply(
            core.transition_change(
                actor, order, "cancel", now,
                fields={"cancelled_at": now, "restock_state": "pending"},
                payments=refunds, detail={"reason": short(reason)},
                no_pending_charge=charges_before is not None, charges_started_before=charges_before,
            )
        )
        if cancelled is None:
            return None
        await self._restock(cancelled)
        if order.placed_at is not None:
            await core.figures_changed(cancelled)
        return (await core.store.get_order(order.id)) or cancelled

    async def _restock(self, order: Order) -> None:
        """The unit back to its sale and, if the order was never paid, its coupon back to the
        buyer's wallet; retried (``resume_restocks``) until both are done."""
        core = self._core
        try:
            coupon_back = await self._give_back_coupon(order)
            back = await core.ledger.restock(order.reservation_id)
        except Exception:
            log.exception("restock of %s failed; will retry", order.reservation_id)
            return
        now = core.now_ms()
        state = "done" if back else "skipped"
        detail: dict[str, object] = {"returned_to_sale": back}
        if order.coupon_id is not None:
            detail["coupon_returned"] = coupon_back
        await core.store.apply(
            OrderChange(
                order.id, frozenset({"cancelled"}), "cancelled", now,
                fields={"restock_state": state},
                events=[core.event(order, "restock", "cancelled", "cancelled", SYSTEM, now,
                                   detail)],
            )
        )

    async def _give_back_coupon(self, order: Order) -> bool:
        """A cancelled order's coupon goes back to the wallet if nothing was paid: no payment
        of it was approved (a paid order cancelled is refunded what was paid, after the
        discount, and the coupon stays used)."""
        if order.coupon_id is None:
            return False
        payments = await self._core.store.payments(order.id)
        if any(p.status == "refunded" or p.status == "approved" for p in payments):
            return False
        return await self._core.coupons.give_back(order.coupon_id, order.id)

    async def resume_restocks(self) -> int:
        """Retry restocks a crash or an inventory outage interrupted (call at startup)."""
        pending = await self._core.store.orders_pending_restock()
        for order in pending:
            await self._restock(order)
        return len(pending)

    async def ship(self, actor: Actor, order_id: str) -> Order:
        """The seller ships a paid or confirmed order; a vault-category item only with a valid
        vault certificate (``CertificationRequired``)."""
        core = self._core
        order = await core.visible(actor, order_id)
        core.require_seller(actor, order, "ship")
        await self.check_ship(order)
        now = core.now_ms()
        return await core.transition(actor, order, "ship", now, fields={"shipped_at": now})

    async def check_ship(self, order: Order) -> None:
        """Refuse shipping ``order`` now: a status that does not allow it
        (``IllegalTransition``), a vault-category item without a valid vault certificate
        (``CertificationRequired``)."""
        self._core.require_transition(order, "ship")
        if order.category == VAULT_CATEGORY and not await self._core.certification.vault_certified(
            order.product_id
        ):
            raise CertificationRequired(order.id, "vault")

    async def deliver(self, actor: Actor, order_id: str) -> Order:
        """The seller marks a shipped order delivered: cash on delivery is collected, and an
        inspected phone keeps the latest warranty end its report shows."""
        core = self._core
        order = await core.visible(actor, order_id)
        core.require_seller(actor, order, "deliver")
        now = core.now_ms()
        collected = [
            replace(p, status="approved", settled_at=now, reason="collected_on_delivery")
            for p in await core.store.payments(order_id)
            if p.method == "cod" and p.status == "pending"
        ]
        fields: dict[str, int | str | None] = {"delivered_at": now}
        if order.category == INSPECTED_CATEGORY:
            # The buyer scans the inspection report on delivery: keep the latest warranty end
            # it shows, so the order's warranty never ends before it.
            terms = await core.certification.inspection(order.product_id)
            if terms is not None and terms.warranty_ends_at is not None:
                fields["certificate_warranty_ends_at"] = max(
                    terms.warranty_ends_at, order.certificate_warranty_ends_at or 0)
        return await core.transition(
            actor, order, "deliver", now, fields=fields, payments=collected
        )

    def check_deliver(self, order: Order) -> None:
        self._core.require_transition(order, "deliver")

    async def complete(self, actor: Actor, order_id: str) -> Order:
        """The buyer (or an admin) confirms receipt of a delivered order."""
        core = self._core
        order = await core.visible(actor, order_id)
        if actor.user_id != order.buyer_id and not actor.is_admin:
            raise NotAllowed("complete", order_id)
        now = core.now_ms()
        return await core.transition(actor, order, "complete", now, fields={"completed_at": now})

    def check_complete(self, order: Order) -> None:
        self._core.require_transition(order, "complete")
