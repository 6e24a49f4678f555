"""What every part of ``OrderService`` shares: the store and the collaborators, the clock and the
settings, and the helpers that read an order for a caller and write a change to it as a
compare-and-set on the status it was read in (retried on what it is now when it lost a race)."""

from __future__ import annotations

import inspect
import logging
import secrets
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import replace
from typing import Any, Literal, TypeVar

from ._machine import TRANSITIONS
from ._models import Actor, Claim, ClaimKind, ClaimStatus, Order, OrderEvent, Payment, StoredStatus
from ._store import OrderChange, OrderStore
from .exceptions import IllegalTransition, InvalidInput, NotAllowed, OrderNotFound, UnknownCoupon
from .interfaces import CertificationPolicy, CouponTerms, CouponWallet, PaymentProvider, StockLedger

__all__ = [
    "NO_COUPONS",
    "RACE_RETRIES",
    "SYSTEM",
    "FiguresListener",
    "OrderCore",
    "new_id",
    "short",
    "system_clock",
]

log = logging.getLogger(__name__)

# How often a change that lost a race to another one is worked out again on what is now.
RACE_RETRIES = 5
SYSTEM = Actor("system", "admin")

_T = TypeVar("_T")

# Called with (room_id, anchor_id) when that room's figures changed; may be sync or async.
FiguresListener = Callable[[str, str], Awaitable[None] | None]


def system_clock() -> int:
    return time.time_ns() // 1_000_000


def new_id(prefix: str) -> str:
    return prefix + secrets.token_urlsafe(9)


def short(text: str, limit: int = 500) -> str:
    """A reason as recorded: trimmed, at most ``limit`` characters; refuses anything but text."""
    if not isinstance(text, str):
        raise InvalidInput("reason must be text")
    return text.strip()[:limit]


class _NoCoupons:
    """The wallet of a platform without coupon drops: nobody has a coupon."""

    async def usable(self, user_id: str, room_id: str, now_ms: int) -> list[CouponTerms]:
        return []

    async def terms(self, coupon_id: str) -> CouponTerms:
        raise UnknownCoupon(coupon_id)

    async def use(self, coupon_id: str, user_id: str, order_id: str, now_ms: int) -> None:
        raise UnknownCoupon(coupon_id)

    async def give_back(self, coupon_id: str, order_id: str) -> bool:
        return False


NO_COUPONS: CouponWallet = _NoCoupons()


class OrderCore:
    """The state the parts of the service share. Its attributes are the service's public ones
    (``OrderService.store``, ``.ledger``, ``.now_ms``...), so replacing one there (a test moving
    the clock or swapping the inventory) reaches every part."""

    def __init__(
        self,
        store: OrderStore,
        ledger: StockLedger,
        certification: CertificationPolicy,
        payments: PaymentProvider,
        payment_secret: bytes,
        *,
        now_ms: Callable[[], int],
        on_figures_changed: FiguresListener | None,
        intent_grace_ms: int,
        payment_timeout_ms: int,
        charge_timeout_ms: int,
        coupons: CouponWallet = NO_COUPONS,
    ) -> None:
        if payment_timeout_ms <= 0 or charge_timeout_ms <= 0:
            raise ValueError("payment and charge timeouts must be positive")
        self.store = store
        self.ledger = ledger
        self.certification = certification
        self.payments = payments
        self.payment_secret = payment_secret
        self.now_ms = now_ms
        self.on_figures_changed = on_figures_changed
        self.intent_grace_ms = intent_grace_ms
        self.payment_timeout_ms = payment_timeout_ms
        self.charge_timeout_ms = charge_timeout_ms
        self.coupons = coupons

    # -- reading for a caller --------------------------------------------------------------

    async def visible(self, actor: Actor, order_id: str) -> Order:
        """The order, if ``actor`` may see it (its buyer, its anchor, an admin); else
        ``OrderNotFound``, exactly as for an unknown id."""
        if not isinstance(order_id, str) or not order_id:
            raise OrderNotFound(str(order_id))
        order = await self.store.get_order(order_id)
        if order is None or order.is_intent or not (
            actor.is_admin or actor.user_id in (order.buyer_id, order.anchor_id)
        ):
            raise OrderNotFound(order_id)
        return order

    async def buyer_order(self, actor: Actor, order_id: str, action: str) -> Order:
        """The order, if ``actor`` is its buyer (``NotAllowed`` for its other viewers)."""
        order = await self.visible(actor, order_id)
        if actor.user_id != order.buyer_id:
            raise NotAllowed(action, order_id)
        return order

    @staticmethod
    def require_seller(actor: Actor, order: Order, action: str) -> None:
        if not (actor.is_admin or actor.user_id == order.anchor_id):
            raise NotAllowed(action, order.id)

    @staticmethod
    def require_transition(order: Order, action: str) -> None:
        """Refuse ``action`` (``IllegalTransition``) unless the order's status allows it."""
        if order.status not in TRANSITIONS[action][0]:
            raise IllegalTransition(order.id, order.status, action)

    # -- what a change writes --------------------------------------------------------------

    @staticmethod
    def event(
        order: Order, kind: str, from_status: StoredStatus | None, to_status: StoredStatus,
        actor: Actor, at: int, detail: Mapping[str, Any] | None = None,
    ) -> OrderEvent:
        return OrderEvent(order.id, kind, from_status, to_status, actor.user_id, actor.role, at,
                          dict(detail or {}))

    @staticmethod
    def claim(
        order: Order, kind: ClaimKind, status: ClaimStatus, now: int, reason: str, *,
        amount: int = 0, pickup_at: int | None = None,
        payer: Literal["platform", "buyer"] | None = None,
    ) -> Claim:
        return Claim(new_id("cl_"), order.id, kind, status, now, now, amount, pickup_at, payer,
                     short(reason))

    @staticmethod
    def refunds(payments: Iterable[Payment], now: int) -> list[Payment]:
        """The approved payments among ``payments``, refunded after a return or a refund."""
        return [
            replace(p, status="refunded", settled_at=now, reason="after_sales_refund")
            for p in payments
            if p.status == "approved"
        ]

    # -- writing a change as a compare-and-set ---------------------------------------------

    async def transition(
        self, actor: Actor, order: Order, action: str, now: int, *,
        fields: Mapping[str, int | str | None] | None = None,
        claims: Iterable[Claim] = (), payments: Iterable[Payment] = (),
        detail: Mapping[str, Any] | None = None,
    ) -> Order:
        """Apply ``action`` to ``order`` as read; ``IllegalTransition`` (with the status it is
        in now) if it moved meanwhile."""
        change = self.transition_change(actor, order, action, now, fields=fields,
                                        claims=claims, payments=payments, detail=detail)
        return await self.apply(order, change, action)

    def transition_change(
        self, actor: Actor, order: Order, action: str, now: int, *,
        fields: Mapping[str, int | str | None] | None = None,
        claims: Iterable[Claim] = (), payments: Iterable[Payment] = (),
        detail: Mapping[str, Any] | None = None, no_pending_charge: bool = False,
        charges_started_before: int | None = None, no_counterfeit_claim: bool = False,
    ) -> OrderChange:
        """``action`` on ``order`` as the caller read it. The compare-and-set is on that status,
        not on every status the action allows: what the change carries (refunds, collected
        payments, the event's from-status) was worked out from it, so an order that moved
        meanwhile is left alone. An action that is still allowed from the status the order
        moved to works itself out again on that (``retry_on_race``)."""
        self.require_transition(order, action)
        to = TRANSITIONS[action][1]
        return OrderChange(
            order.id, frozenset({order.status}), to, now, fields=dict(fields or {}),
            events=[self.event(order, action, order.status, to, actor, now, detail)],
            claims=list(claims), payments=list(payments), no_pending_charge=no_pending_charge,
            charges_started_before=charges_started_before,
            no_counterfeit_claim=no_counterfeit_claim,
        )

    async def note(
        self, actor: Actor, order: Order, kind: str, now: int, *,
        claims: Iterable[Claim], detail: Mapping[str, Any],
    ) -> Order | None:
        """Record an after-sales event that does not change the status, on the status it was
        read in: None if the order moved meanwhile."""
        return await self.store.apply(
            OrderChange(
                order.id, frozenset({order.status}), order.status, now,
                events=[self.event(order, kind, order.status, order.status, actor, now,
                                   detail)],
                claims=list(claims),
            )
        )

    async def retry_on_race(
        self, actor: Actor, order: Order, action: str,
        attempt: Callable[[Order], Awaitable[_T | None]],
    ) -> _T:
        """Run ``attempt`` on ``order`` as read. ``attempt`` checks the action's rules on the
        order it is given, works out its change from it and applies that as a compare-and-set
        on its status, answering None when the order moved between the read and the write.
        Then the order is read again and ``attempt`` runs on what it is now: a move to another
        status the action is allowed from (a "complete", an approval landing) does not refuse
        it, and a move to one it is not allowed from refuses it with the status it is in now."""
        for _ in range(RACE_RETRIES):
            result = await attempt(order)
            if result is not None:
                return result
            order = await self.visible(actor, order.id)
        raise IllegalTransition(order.id, order.status, action)

    async def apply(self, order: Order, change: OrderChange, action: str) -> Order:
        """Apply ``change``; ``IllegalTransition`` with the current status if it lost."""
        updated = await self.store.apply(change)
        if updated is None:
            current = await self.store.get_order(order.id)
            raise IllegalTransition(order.id, current.status if current else "gone", action)
        return updated

    async def figures_changed(self, order: Order) -> None:
        """Tell the figures listener that ``order``'s room changed; its failure is logged."""
        if self.on_figures_changed is None:
            return
        try:
            result = self.on_figures_changed(order.room_id, order.anchor_id)
            if inspect.isawaitable(result):
                await result
        except Exception:
            log.exception("figures listener failed")
