"""After-sales guarantees: the 7-day return, refund-no-return, fake one pay ten (claims and
their decisions), the inspected phone's warranty and its price-protected buyback.

Each buyer's request has a ``check_*`` method holding its rules (status, window, certification,
settlement); the request runs it on the order as read, and the order's allowed actions
(``_actions.py``) are worked out by the same checks."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from ._core import RACE_RETRIES, OrderCore, new_id
from ._machine import COUNTERFEIT_CLAIMABLE, SETTLED_BY_REFUND
from ._models import DAY_MS, INSPECTED_CATEGORY, Actor, BuybackQuote, Claim, Order, Payout
from ._store import OrderChange
from .exceptions import (
    AlreadyRefunded,
    CertificationRequired,
    ClaimConflict,
    ClaimNotFound,
    ClaimWindowClosed,
    CounterfeitClaimed,
    IllegalTransition,
    InvalidInput,
    NotAllowed,
    OrderNotFound,
    ReturnWindowClosed,
    WarrantyExpired,
)
from .interfaces import InspectionTerms

__all__ = [
    "BUYBACK_QUOTE_TTL_MS",
    "COUNTERFEIT_MULTIPLIER",
    "COUNTERFEIT_WINDOW_MS",
    "PICKUP_LEAD_MS",
    "RETURN_WINDOW_MS",
    "AfterSales",
]

RETURN_WINDOW_MS = 7 * DAY_MS  # no-reason return and refund-no-return, from delivery
PICKUP_LEAD_MS = DAY_MS  # door pickup is booked for the next day
BUYBACK_QUOTE_TTL_MS = DAY_MS
COUNTERFEIT_MULTIPLIER = 10  # fake one, pay ten
# A fake often shows only when the goods are used, worn or appraised, long after the 7-day
# return; 90 days from delivery leaves time for an independent appraisal while the platform can
# still trace the unit, its seller and its shipment (docs/orders.md, "After-sales rules").
COUNTERFEIT_WINDOW_MS = 90 * DAY_MS
# Where the goods are in the buyer's hands for good: warranty and buyback apply.
_KEPT = ("delivered", "completed")


def _window_end(
    order: Order, now: int, window: int,
    error: type[ReturnWindowClosed] | type[ClaimWindowClosed],
) -> int:
    """The last millisecond of a window from delivery; ``error`` once ``now`` is past it."""
    assert order.delivered_at is not None
    deadline = order.delivered_at + window
    if now > deadline:
        raise error(order.id, deadline)
    return deadline


class AfterSales:
    def __init__(self, core: OrderCore) -> None:
        self._core = core

    # -- returns and refunds ---------------------------------------------------------------

    async def request_return(self, actor: Actor, order_id: str, reason: str = "") -> Claim:
        """7-day no-reason return from delivery: a door pickup is booked and the platform pays
        the return shipping; the refund follows when the goods arrive (receive_return). Refused
        while a counterfeit claim of the order is open or after it was upheld
        (``CounterfeitClaimed``)."""
        core = self._core
        order = await core.buyer_order(actor, order_id, "request a return for")

        async def attempt(order: Order) -> Claim | None:
            now = core.now_ms()
            await self.check_return(order, now)
            claim = core.claim(order, "return", "pickup_scheduled", now, reason,
                               amount=order.refund_cents(order.qty),
                               pickup_at=now + PICKUP_LEAD_MS,
                               payer="platform")
            change = core.transition_change(
                actor, order, "request_return", now, claims=[claim],
                detail={"claim": claim.id, "pickup_at": claim.pickup_at,
                        "return_shipping_payer": "platform"},
                no_counterfeit_claim=True,
            )
            return claim if await core.store.apply(change) is not None else None

        return await core.retry_on_race(actor, order, "request_return", attempt)

    async def check_return(self, order: Order, now: int) -> int:
        """Refuse a return of ``order`` at ``now``: a status that does not allow it
        (``IllegalTransition``), past its window (``ReturnWindowClosed``), a counterfeit claim
        open or upheld (``CounterfeitClaimed``). Else the window's last millisecond."""
        self._core.require_transition(order, "request_return")
        deadline = _window_end(order, now, RETURN_WINDOW_MS, ReturnWindowClosed)
        await self._no_counterfeit_claim(order)
        return deadline

    async def receive_return(self, actor: Actor, order_id: str) -> Order:
        """The returned goods arrived: the buyer is refunded in full."""
        core = self._core
        order = await core.visible(actor, order_id)
        core.require_seller(actor, order, "receive the return of")
        now = core.now_ms()
        claim = next((c for c in await core.store.claims(order_id) if c.kind == "return"), None)
        claims = [replace(claim, status="refunded", updated_at=now)] if claim else []
        return await core.transition(
            actor, order, "receive_return", now, claims=claims,
            payments=core.refunds(await core.store.payments(order_id), now),
            detail={"refund_cents": order.refund_cents(order.qty)},
        )

    def check_receive_return(self, order: Order) -> None:
        self._core.require_transition(order, "receive_return")

    async def refund_no_return(self, actor: Actor, order_id: str, reason: str = "") -> Claim:
        """Refund at once without the goods back; only for an anchor holding a valid
        refund-no-return certification for the order's category, within 7 days of delivery,
        and not while a counterfeit claim of the order is open or after it was upheld."""
        core = self._core
        order = await core.buyer_order(actor, order_id, "ask a refund for")

        async def attempt(order: Order) -> Claim | None:
            now = core.now_ms()
            await self.check_refund_no_return(order, now)
            claim = core.claim(order, "refund_no_return", "refunded", now, reason,
                               amount=order.refund_cents(order.qty))
            change = core.transition_change(
                actor, order, "refund_no_return", now, claims=[claim],
                payments=core.refunds(await core.store.payments(order.id), now),
                detail={"claim": claim.id, "refund_cents": order.refund_cents(order.qty)},
                no_counterfeit_claim=True,
            )
            return claim if await core.store.apply(change) is not None else None

        return await core.retry_on_race(actor, order, "refund_no_return", attempt)

    async def check_refund_no_return(self, order: Order, now: int) -> int:
        """Refuse a refund-no-return of ``order`` at ``now``: as ``check_return``, and without
        the anchor's valid certification for the order's category, asked now
        (``CertificationRequired``). Else the window's last millisecond."""
        self._core.require_transition(order, "refund_no_return")
        deadline = _window_end(order, now, RETURN_WINDOW_MS, ReturnWindowClosed)
        if not await self._core.certification.refund_no_return_certified(
            order.anchor_id, order.category
        ):
            raise CertificationRequired(order.id, "refund_no_return")
        await self._no_counterfeit_claim(order)
        return deadline

    async def _no_counterfeit_claim(self, order: Order) -> None:
        """Refuse a return or refund while the order's counterfeit claim is open or after it
        was upheld: that claim settles the order. (The write re-checks it in its transaction.)"""
        for claim in await self._core.store.claims(order.id):
            if claim.kind == "counterfeit" and claim.status in ("open", "upheld"):
                raise CounterfeitClaimed(order.id, claim.id, claim.status)

    # -- fake one, pay ten -----------------------------------------------------------------

    async def counterfeit_claim(self, actor: Actor, order_id: str, reason: str) -> Claim:
        """The buyer says the goods are fake; an admin decides (uphold pays 10x). Within
        ``COUNTERFEIT_WINDOW_MS`` of delivery (``ClaimWindowClosed`` after), on a delivered or
        completed order: not before delivery (``IllegalTransition``), and not once the buyer
        asked for a return or was refunded (``AlreadyRefunded``)."""
        core = self._core
        order = await core.buyer_order(actor, order_id, "file a counterfeit claim for")

        async def attempt(order: Order) -> Claim | None:
            now = core.now_ms()
            self.check_counterfeit(order, now)
            if not isinstance(reason, str) or not reason.strip():
                raise InvalidInput("a counterfeit claim needs a reason")
            claim = core.claim(order, "counterfeit", "open", now, reason)
            noted = await core.note(actor, order, "counterfeit_claim", now, claims=[claim],
                                    detail={"claim": claim.id})
            return claim if noted is not None else None

        return await core.retry_on_race(actor, order, "counterfeit_claim", attempt)

    @staticmethod
    def check_counterfeit(order: Order, now: int) -> int:
        """Refuse a counterfeit claim on ``order`` at ``now`` (``_require_counterfeit_claimable``,
        then ``ClaimWindowClosed`` past its window). Else the window's last millisecond. (The
        store allows one counterfeit claim per order: a second one is ``ClaimConflict``.)"""
        AfterSales._require_counterfeit_claimable(order, "counterfeit_claim")
        return _window_end(order, now, COUNTERFEIT_WINDOW_MS, ClaimWindowClosed)

    async def counterfeit_claim_filed(self, order: Order) -> bool:
        """Whether the order has its one counterfeit claim already (whatever its decision)."""
        return any(c.kind == "counterfeit" for c in await self._core.store.claims(order.id))

    @staticmethod
    def compensation_cents(order: Order) -> int:
        """What an upheld counterfeit claim on ``order`` pays: ten times its total."""
        return COUNTERFEIT_MULTIPLIER * order.total_cents

    @staticmethod
    def _require_counterfeit_claimable(order: Order, action: str) -> None:
        if order.status in SETTLED_BY_REFUND:
            raise AlreadyRefunded(order.id, order.status)
        if order.status not in COUNTERFEIT_CLAIMABLE:
            raise IllegalTransition(order.id, order.status, action)

    async def uphold_counterfeit(self, actor: Actor, claim_id: str) -> Claim:
        return await self._decide_counterfeit(actor, claim_id, uphold=True)

    async def reject_counterfeit(self, actor: Actor, claim_id: str) -> Claim:
        return await self._decide_counterfeit(actor, claim_id, uphold=False)

    async def _decide_counterfeit(self, actor: Actor, claim_id: str, *, uphold: bool) -> Claim:
        core = self._core
        # Decided by someone else meanwhile, or the order moved: decide again on what is now,
        # a bounded number of times.
        for _ in range(RACE_RETRIES):
            claim = await core.store.get_claim(claim_id)
            if claim is None or claim.kind != "counterfeit":
                raise ClaimNotFound(claim_id)
            try:
                order = await core.visible(actor, claim.order_id)
            except OrderNotFound:
                raise ClaimNotFound(claim_id) from None
            if not actor.is_admin:
                raise NotAllowed("decide counterfeit claims", order.id)
            if claim.status != "open":
                raise ClaimConflict(order.id, f"decided ({claim.status}) counterfeit")
            if uphold:
                # Older versions left claims open on orders then returned or refunded. The
                # compare-and-set below is on this status: a return or refund landing
                # meanwhile refuses the compensation on the next round.
                self._require_counterfeit_claimable(order, "uphold_counterfeit")
            now = core.now_ms()
            decided = replace(
                claim,
                status="upheld" if uphold else "rejected",
                updated_at=now,
                amount_cents=self.compensation_cents(order) if uphold else 0,
            )
            # Fake one, pay ten: the compensation is paid out with the decision, in one
            # transaction.
            payouts = [Payout(new_id("po_"), order.id, claim.id, "counterfeit_compensation",
                              decided.amount_cents, "paid", now)] if uphold else []
            detail: dict[str, Any] = {"claim": claim.id,
                                      "compensation_cents": decided.amount_cents}
            if payouts:
                detail["payout"] = payouts[0].id
            kind = "counterfeit_upheld" if uphold else "counterfeit_rejected"
            change = OrderChange(
                order.id, frozenset({order.status}), order.status, now,
                events=[core.event(order, kind, order.status, order.status, actor, now, detail)],
                claims=[decided], payouts=payouts, claim_expected=(claim.id, "open"),
            )
            if await core.store.apply(change) is not None:
                return decided
        raise ClaimConflict(order.id, "contended counterfeit")

    # -- inspected phones ------------------------------------------------------------------

    async def warranty_claim(self, actor: Actor, order_id: str, reason: str) -> Claim:
        """Inspected second-hand phones: warranty repair with a door pickup, until the later of
        delivery + 180 days and the warranty end on the phone's inspection certificate."""
        core = self._core
        order = await core.buyer_order(actor, order_id, "claim warranty for")

        async def attempt(order: Order) -> Claim | None:
            now = core.now_ms()
            await self.check_warranty(order, now)
            if not isinstance(reason, str) or not reason.strip():
                raise InvalidInput("a warranty claim needs a description of the fault")
            claim = core.claim(order, "warranty", "pickup_scheduled", now, reason,
                               pickup_at=now + PICKUP_LEAD_MS, payer="platform")
            noted = await core.note(actor, order, "warranty_claim", now, claims=[claim],
                                    detail={"claim": claim.id, "pickup_at": claim.pickup_at})
            return claim if noted is not None else None

        return await core.retry_on_race(actor, order, "warranty_claim", attempt)

    async def check_warranty(self, order: Order, now: int) -> int:
        """Refuse a warranty claim on ``order`` at ``now``: not delivered or completed
        (``IllegalTransition``), not an inspected phone (``CertificationRequired``), past the
        order's warranty end (``WarrantyExpired``). Else that end (its last millisecond)."""
        if order.status not in _KEPT:
            raise IllegalTransition(order.id, order.status, "warranty_claim")
        await self._require_inspected(order)
        deadline = order.warranty_deadline()
        assert deadline is not None  # delivered
        if now > deadline:
            raise WarrantyExpired(order.id, deadline)
        return deadline

    async def buyback_quote(self, actor: Actor, order_id: str) -> BuybackQuote:
        """Trade-in offer for an inspected phone, price-protected: the better of what the
        inspection promised when the phone was bought and what it promises now, but never more
        than the buyer paid for the phones (``unit_price_cents * qty``)."""
        core = self._core
        order = await core.buyer_order(actor, order_id, "get a buyback quote for")
        terms = await self._buyback_terms(order)
        now = core.now_ms()
        locked = (order.buyback_locked_cents or 0) * order.qty
        current = (terms.buyback_price_cents if terms is not None else 0) * order.qty
        # A trade-in pays back at most the price: above it, buying in a flash sale and selling
        # back at once would be a money machine.
        paid = order.unit_price_cents * order.qty
        return BuybackQuote(order_id, min(max(locked, current), paid), locked, current, now,
                            now + BUYBACK_QUOTE_TTL_MS, paid)

    async def check_buyback(self, order: Order) -> None:
        """Refuse a buyback quote for ``order``: not delivered or completed
        (``IllegalTransition``), not an inspected phone (``CertificationRequired``)."""
        await self._buyback_terms(order)

    async def _buyback_terms(self, order: Order) -> InspectionTerms | None:
        if order.status not in _KEPT:
            raise IllegalTransition(order.id, order.status, "buyback_quote")
        return await self._require_inspected(order)

    async def _require_inspected(self, order: Order) -> InspectionTerms | None:
        terms = None
        if order.category == INSPECTED_CATEGORY:
            terms = await self._core.certification.inspection(order.product_id)
        if order.category != INSPECTED_CATEGORY or (terms is None and not order.inspected):
            raise CertificationRequired(order.id, "inspection")
        return terms
