"""``OrderService``: checkout, the lifecycle, after-sales rules, payment callbacks, analytics."""

from __future__ import annotations

import inspect
import itertools
import json
import logging
import secrets
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import replace
from typing import Any, Literal, TypeVar

from ._machine import COUNTERFEIT_CLAIMABLE, SETTLED_BY_REFUND, TRANSITIONS
from ._models import (
    DAY_MS,
    INSPECTED_CATEGORY,
    WARRANTY_WINDOW_MS,
    Actor,
    AnalyticsReport,
    BuybackQuote,
    CheckoutRequest,
    Claim,
    ClaimKind,
    ClaimStatus,
    Figures,
    Order,
    OrderEvent,
    Payment,
    PaymentChoice,
    Payout,
    Reconciliation,
    StoredStatus,
)
from ._payment import verify_callback
from ._store import OrderChange, OrderStore
from .exceptions import (
    AlreadyRefunded,
    BadSignature,
    CertificationRequired,
    ClaimConflict,
    ClaimNotFound,
    ClaimWindowClosed,
    CounterfeitClaimed,
    DeliveryLimitReached,
    HoldExpired,
    IllegalTransition,
    InvalidInput,
    NotAllowed,
    NotReservationHolder,
    OrderNotFound,
    PaymentInProgress,
    PaymentWindowClosed,
    ReturnWindowClosed,
    UnknownPayment,
    UnknownReservation,
    WarrantyExpired,
)
from .interfaces import (
    CertificationPolicy,
    ChargeRequest,
    InspectionTerms,
    PaymentProvider,
    ReservationInfo,
    StockLedger,
)

__all__ = [
    "BUYBACK_QUOTE_TTL_MS",
    "CHARGE_TIMEOUT_MS",
    "COUNTERFEIT_MULTIPLIER",
    "COUNTERFEIT_WINDOW_MS",
    "DAY_MS",
    "INTENT_GRACE_MS",
    "PAYMENT_TIMEOUT_MS",
    "PICKUP_LEAD_MS",
    "RETURN_WINDOW_MS",
    "WARRANTY_WINDOW_MS",
    "FiguresListener",
    "OrderService",
]

log = logging.getLogger(__name__)

RETURN_WINDOW_MS = 7 * DAY_MS  # no-reason return and refund-no-return, from delivery
PICKUP_LEAD_MS = DAY_MS  # door pickup is booked for the next day
BUYBACK_QUOTE_TTL_MS = DAY_MS
COUNTERFEIT_MULTIPLIER = 10  # fake one, pay ten
# A fake often shows only when the goods are used, worn or appraised, long after the 7-day
# return; 90 days from delivery leaves time for an independent appraisal while the platform can
# still trace the unit, its seller and its shipment (docs/orders.md, "After-sales rules").
COUNTERFEIT_WINDOW_MS = 90 * DAY_MS
DEFAULT_REPURCHASE_WINDOW_MS = 30 * DAY_MS
# reconcile() leaves younger checkout intents alone: they are most likely still in flight.
INTENT_GRACE_MS = 30_000
# An online order still unpaid this long after it was created is cancelled (its stock returns).
PAYMENT_TIMEOUT_MS = 15 * 60_000
# A charge the provider has not answered this long is given up (declined, reason "timed_out"),
# so the buyer can pay again; a late approval of it is still honoured (or refunded).
CHARGE_TIMEOUT_MS = 2 * 60_000
CHARGE_TIMED_OUT = "timed_out"
# The provider refused the charge request itself (an error, not a decline): given up as well.
CHARGE_PROVIDER_UNAVAILABLE = "provider_unavailable"
# Reasons of a charge the service gave up on (declined it itself, the provider never having
# answered): the provider may still have taken it, so its late answer is still applied.
_GIVEN_UP = frozenset({CHARGE_TIMED_OUT, CHARGE_PROVIDER_UNAVAILABLE})
# How often a change that lost a race to another one is worked out again on what is now.
_RACE_RETRIES = 5
SYSTEM = Actor("system", "admin")

_T = TypeVar("_T")

# Called with (room_id, anchor_id) when that room's figures changed; may be sync or async.
FiguresListener = Callable[[str, str], Awaitable[None] | None]


def _system_clock() -> int:
    return time.time_ns() // 1_000_000


def _new_id(prefix: str) -> str:
    return prefix + secrets.token_urlsafe(9)


class OrderService:
    def __init__(
        self,
        store: OrderStore,
        ledger: StockLedger,
        certification: CertificationPolicy,
        payments: PaymentProvider,
        payment_secret: bytes,
        *,
        now_ms: Callable[[], int] = _system_clock,
        on_figures_changed: FiguresListener | None = None,
        intent_grace_ms: int = INTENT_GRACE_MS,
        payment_timeout_ms: int = PAYMENT_TIMEOUT_MS,
        charge_timeout_ms: int = CHARGE_TIMEOUT_MS,
    ) -> None:
        self.store = store
        self.ledger = ledger
        self.certification = certification
        self.payments = payments
        self._payment_secret = payment_secret
        self.now_ms = now_ms
        self.on_figures_changed = on_figures_changed
        self.intent_grace_ms = intent_grace_ms
        if payment_timeout_ms <= 0 or charge_timeout_ms <= 0:
            raise ValueError("payment and charge timeouts must be positive")
        self.payment_timeout_ms = payment_timeout_ms
        self.charge_timeout_ms = charge_timeout_ms

    # -- checkout --------------------------------------------------------------------------

    async def checkout(self, actor: Actor, body: object) -> Order:
        """Turn the caller's hold into an order at the reserved price. Idempotent by
        reservation: checking out the same reservation again returns the same order.

        Crash-safe order of steps: the checkout is written down first (a ``pending`` intent
        with the address), then the inventory commits the hold, then the intent becomes the
        order. A crash between any two steps leaves an intent that a retry of the same checkout
        or ``reconcile()`` settles by asking the inventory what became of the hold."""
        request = CheckoutRequest.parse(body)
        rid = request.reservation_id
        existing = await self.store.get_order_by_reservation(rid)
        if existing is None:
            info = await self._reservation_of(actor, rid)
            limit = await self.ledger.per_person_limit(info.sale_id)
            try:
                existing, _ = await self.store.insert_order(
                    await self._intent(actor, request, info), info, [], None, limit)
            except DeliveryLimitReached:
                # Another account of the same person (one door, one phone) took the sale's
                # limit: the unit goes back to the other buyers now, not when the hold ends.
                await self.ledger.release(rid, actor.user_id)
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
        info = await self.store.get_reservation(rid)
        if info is None:
            info = await self.ledger.get_reservation(rid)
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
            terms = await self.certification.inspection(info.product_id)
        now = self.now_ms()
        return Order(
            id=_new_id("o_"),
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
            info = await self.ledger.commit(intent.reservation_id, actor.user_id)
        except (HoldExpired, UnknownReservation, NotReservationHolder) as exc:
            # The hold is gone for good: nothing was sold, so nothing may be ordered.
            await self._void(intent, exc.code)
            raise
        # Any other failure (the inventory unreachable, a crash) leaves the intent pending:
        # a retry of the checkout or reconcile() settles it.
        placed, payment = await self._settle(intent, info, actor, choice)
        if placed is None or payment is None:
            current = await self.store.get_order(intent.id)
            assert current is not None
            if current.status == "voided":
                raise HoldExpired(intent.reservation_id)
            return current
        await self._after_payment_chosen(placed, payment, choice)
        return placed

    async def _settle(
        self, intent: Order, info: ReservationInfo, actor: Actor, choice: PaymentChoice | None,
    ) -> tuple[Order | None, Payment | None]:
        """pending → confirmed (cash on delivery) or created (online). The payment is recorded
        as pending: cash is collected at delivery, a card charged by the caller. Without a
        ``choice`` (reconcile: the card was never stored) an online order waits for ``pay``.
        (None, None) when someone else settled the intent first."""
        now = self.now_ms()
        method = choice.method if choice is not None else intent.payment_method
        cod = method == "cod"
        order = replace(intent, status="created", payment_method=method)
        events = [self._event(order, "created", None, "created", actor, now)]
        if cod:
            events.append(self._event(order, "confirm", "created", "confirmed", actor, now))
        payment = None
        if cod or choice is not None:
            payment = self._new_payment(order, choice or PaymentChoice("cod"), now)
        fields: dict[str, int | str | None] = {"payment_method": method, "created_at": now}
        if cod:
            fields["placed_at"] = now
        placed = await self.store.apply(
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
        now = self.now_ms()
        voided = await self.store.apply(
            OrderChange(
                intent.id, frozenset({"pending"}), "voided", now,
                events=[self._event(intent, "void", "pending", "voided", SYSTEM, now,
                                    {"reason": reason})],
            )
        )
        return voided is not None

    async def reconcile(self, *, min_age_ms: int | None = None) -> Reconciliation:
        """Settle checkouts a crash interrupted: every intent older than ``min_age_ms``
        (default ``intent_grace_ms``, so checkouts in flight are left alone) becomes its order
        if the inventory sold the unit, and is voided if the hold was given back, expired or is
        unknown. A hold still live is left for the buyer's retry or its expiry."""
        age = self.intent_grace_ms if min_age_ms is None else min_age_ms
        placed: list[Order] = []
        voided: list[str] = []
        waiting: list[str] = []
        for intent in await self.store.pending_intents(self.now_ms() - age):
            rid = intent.reservation_id
            try:
                info: ReservationInfo | None = await self.ledger.get_reservation(rid)
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
                        await self._figures_changed(order)
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
        return await self.store.committed_without_order(since_ms, list(also))

    async def _after_payment_chosen(
        self, order: Order, payment: Payment, choice: PaymentChoice
    ) -> None:
        """Once ``order`` holds its payment: cash on delivery places it (the room's figures
        change), a card is charged."""
        if order.payment_method == "cod":
            await self._figures_changed(order)
        else:
            await self._charge(order, payment, choice)

    def _new_payment(self, order: Order, choice: PaymentChoice, now: int) -> Payment:
        return Payment(
            id=_new_id("pay_"),
            order_id=order.id,
            method=choice.method,
            amount_cents=order.total_cents,
            status="pending",
            created_at=now,
            card_last4=choice.card[-4:] if choice.card else None,
        )

    async def _charge(self, order: Order, payment: Payment, choice: PaymentChoice) -> None:
        assert choice.card is not None
        try:
            await self.payments.charge(
                ChargeRequest(payment.id, order.id, payment.amount_cents, choice.card)
            )
        except Exception:
            # The buyer can retry with pay(); the order itself is safe.
            log.exception("payment provider refused charge %s", payment.id)
            await self._give_up_charge(order, payment, "payment_failed",
                                       CHARGE_PROVIDER_UNAVAILABLE)

    async def _give_up_charge(
        self, order: Order, payment: Payment, kind: str, reason: str
    ) -> Order | None:
        """Record a charge the provider did not answer (it refused the request, or never
        answered) as declined with ``reason``, so the buyer may pay again; the order keeps its
        status. A compare-and-set on the charge still pending: None if it was answered (or the
        order moved) meanwhile."""
        now = self.now_ms()
        return await self.store.apply(
            OrderChange(
                order.id, frozenset({order.status}), order.status, now,
                events=[self._event(order, kind, order.status, order.status, SYSTEM, now,
                                    {"payment": payment.id})],
                payments=[replace(payment, status="declined", settled_at=now, reason=reason)],
                payment_expected=(payment.id, "pending"),
            )
        )

    async def pay(self, actor: Actor, order_id: str, payment_body: object) -> Order:
        """Pay an unpaid order again (after a decline), online or by switching to cash on
        delivery, before its payment deadline (``payment_timeout_ms`` after it was created):
        from then on paying is refused (``PaymentWindowClosed``) and the upkeep cancels it, so
        a buyer paying again after every decline cannot keep the unit past the deadline."""
        order = await self._buyer_order(actor, order_id, "pay for")

        async def attempt(order: Order) -> Order | None:
            now = self.now_ms()  # when the buyer paid: what the deadline is judged by
            if order.status != "created":
                raise IllegalTransition(order_id, order.status, "pay")
            await self._no_charge_pending(order_id)
            deadline = self._payment_deadline(order)
            if now >= deadline:
                raise PaymentWindowClosed(order_id, deadline)
            choice = PaymentChoice.parse(payment_body)
            payment = self._new_payment(order, choice, now)
            # A compare-and-set on the order unpaid with no charge pending: of two payments at
            # once (a double click) one goes ahead, the other is refused on the next round.
            if choice.method == "cod":
                change = self._transition_change(
                    actor, order, "confirm", now,
                    fields={"placed_at": now, "payment_method": "cod"}, payments=[payment],
                    no_pending_charge=True,
                )
            else:
                change = OrderChange(
                    order.id, frozenset({"created"}), "created", now,
                    fields={"payment_method": "online"},
                    events=[self._event(order, "payment_started", "created", "created", actor,
                                        now, {"payment": payment.id})],
                    payments=[payment], no_pending_charge=True,
                )
            updated = await self.store.apply(change)
            if updated is None:
                return None
            await self._after_payment_chosen(updated, payment, choice)
            return updated

        return await self._retry_on_race(actor, order, "pay", attempt)

    def _payment_deadline(self, order: Order) -> int:
        """From this time on an unpaid online order can no longer be paid and is cancelled."""
        return order.created_at + self.payment_timeout_ms

    async def _no_charge_pending(self, order_id: str) -> None:
        for earlier in await self.store.payments(order_id):
            if earlier.status == "pending" and earlier.method == "online":
                raise PaymentInProgress(order_id, earlier.id)

    async def handle_payment_callback(self, body: bytes, signature: str) -> Order:
        """Apply a provider's signed callback; duplicates and replays change nothing. The
        answer to a charge the service gave up on (``timed_out``, ``provider_unavailable``) is
        still applied when it is an approval: the order is paid, or the money refunded."""
        if not isinstance(signature, str) or not verify_callback(
            self._payment_secret, body, signature
        ):
            raise BadSignature()
        try:
            payload = json.loads(body)
            payment_id = payload["payment_id"]
            status = payload["status"]
            amount = payload["amount_cents"]
            reason = payload.get("reason")
            provider_ref = payload.get("provider_ref")
        except (ValueError, KeyError, TypeError):
            raise InvalidInput("malformed payment callback") from None
        if status not in ("approved", "declined") or not isinstance(payment_id, str):
            raise InvalidInput("malformed payment callback")
        for _ in range(_RACE_RETRIES):
            payment = await self.store.get_payment(payment_id)
            if payment is None:
                raise UnknownPayment(payment_id)
            if amount != payment.amount_cents:
                raise InvalidInput("payment callback amount does not match the charge")
            order = await self.store.get_order(payment.order_id)
            assert order is not None
            given_up = payment.status == "declined" and payment.reason in _GIVEN_UP
            if payment.status != "pending" and not given_up:
                return order
            if given_up and status == "declined":
                return order  # given up already; the provider agrees
            now = self.now_ms()
            detail = {"payment": payment.id, "reason": reason}
            expected: frozenset[StoredStatus]
            to: StoredStatus
            if status == "approved" and order.status == "created":
                expected, to, kind = frozenset({"created"}), "paid", "pay"
                settled = replace(payment, status="approved", settled_at=now,
                                  provider_ref=provider_ref, reason=None)
                fields: dict[str, int | str | None] = {"placed_at": now}
            elif status == "approved":
                # Paid after cancellation (or twice): the money goes straight back.
                expected, to, kind = frozenset({order.status}), order.status, "payment_refunded"
                settled = replace(payment, status="refunded", settled_at=now,
                                  provider_ref=provider_ref, reason="order_not_payable")
                fields = {}
            else:
                expected, to, kind = frozenset({order.status}), order.status, "payment_declined"
                settled = replace(payment, status="declined", settled_at=now,
                                  provider_ref=provider_ref, reason=str(reason))
                fields = {}
            updated = await self.store.apply(
                OrderChange(
                    order.id, expected, to, now, fields=fields,
                    events=[self._event(order, kind, order.status, to, SYSTEM, now, detail)],
                    payments=[settled],
                    payment_expected=(payment.id, payment.status),
                )
            )
            if updated is not None:
                if to == "paid":
                    await self._figures_changed(updated)
                return updated
        raise InvalidInput("payment callback kept racing other changes; retry")

    # -- reading ---------------------------------------------------------------------------

    async def get_order(self, actor: Actor, order_id: str) -> Order:
        return await self._visible(actor, order_id)

    async def order_detail(self, actor: Actor, order_id: str) -> dict[str, Any]:
        """The order with its event history, claims and payments, for its viewers."""
        order = await self._visible(actor, order_id)
        detail = order.to_public()
        detail["events"] = [e.to_public() for e in await self.store.events(order_id)]
        detail["claims"] = [c.to_public() for c in await self.store.claims(order_id)]
        detail["payments"] = [p.to_public() for p in await self.store.payments(order_id)]
        detail["payouts"] = [p.to_public() for p in await self.store.payouts(order_id)]
        return detail

    async def list_orders(self, actor: Actor) -> list[Order]:
        """The caller's own orders as a buyer, newest first."""
        return await self.store.list_orders_by_buyer(actor.user_id)

    async def history(self, actor: Actor, order_id: str) -> list[OrderEvent]:
        await self._visible(actor, order_id)
        return await self.store.events(order_id)

    async def claims(self, actor: Actor, order_id: str) -> list[Claim]:
        await self._visible(actor, order_id)
        return await self.store.claims(order_id)

    async def payments_of(self, actor: Actor, order_id: str) -> list[Payment]:
        await self._visible(actor, order_id)
        return await self.store.payments(order_id)

    async def payouts_of(self, actor: Actor, order_id: str) -> list[Payout]:
        await self._visible(actor, order_id)
        return await self.store.payouts(order_id)

    # -- lifecycle -------------------------------------------------------------------------

    async def cancel(self, actor: Actor, order_id: str, reason: str = "") -> Order:
        """Buyer, the order's anchor or an admin cancel before shipping; the unit goes back to
        the sale while it is live, and an approved online payment is refunded."""
        order = await self._visible(actor, order_id)
        # Paid or confirmed meanwhile (say, an approval landed): what to refund was read for
        # the status before, so the cancel is worked out again from what it is now.
        return await self._retry_on_race(
            actor, order, "cancel", lambda current: self._cancel(actor, current, reason)
        )

    async def _cancel(
        self, actor: Actor, order: Order, reason: str, *, charges_before: int | None = None
    ) -> Order | None:
        """Cancel ``order`` from the status it was read in, refunding the payments approved
        then: None if it moved meanwhile (or, with ``charges_before``, a charge of it started
        before that time is waiting for its answer)."""
        now = self.now_ms()
        refunds = [
            replace(p, status="refunded", settled_at=now, reason="order_cancelled")
            for p in await self.store.payments(order.id)
            if p.status == "approved"
        ]
        cancelled = await self.store.apply(
            self._transition_change(
                actor, order, "cancel", now,
                fields={"cancelled_at": now, "restock_state": "pending"},
                payments=refunds, detail={"reason": _short(reason)},
                no_pending_charge=charges_before is not None, charges_started_before=charges_before,
            )
        )
        if cancelled is None:
            return None
        await self._restock(cancelled)
        if order.placed_at is not None:
            await self._figures_changed(cancelled)
        return (await self.store.get_order(order.id)) or cancelled

    async def _restock(self, order: Order) -> None:
        try:
            back = await self.ledger.restock(order.reservation_id)
        except Exception:
            log.exception("restock of %s failed; will retry", order.reservation_id)
            return
        now = self.now_ms()
        state = "done" if back else "skipped"
        await self.store.apply(
            OrderChange(
                order.id, frozenset({"cancelled"}), "cancelled", now,
                fields={"restock_state": state},
                events=[self._event(order, "restock", "cancelled", "cancelled", SYSTEM, now,
                                    {"returned_to_sale": back})],
            )
        )

    async def expire_unpaid(self) -> list[Order]:
        """Payment timeouts (the upkeep owner calls this every few seconds): a charge the
        provider left unanswered for ``charge_timeout_ms`` is declined as ``timed_out`` (the
        buyer may pay again), and an online order still unpaid ``payment_timeout_ms`` after it
        was created is cancelled by the system, its stock returned like any cancellation. An
        order whose charge started before that deadline is still waiting for its answer is not
        cancelled (the buyer was paying in time); it is once the charge is declined or given
        up. ``pay`` refuses from the deadline on, so no later charge can hold the order.
        Returns the orders that changed."""
        now = self.now_ms()
        changed: dict[str, Order] = {}
        for payment in await self.store.stale_pending_charges(now - self.charge_timeout_ms):
            order = await self.store.get_order(payment.order_id)
            if order is None:
                continue
            updated = await self._give_up_charge(order, payment, "payment_timed_out",
                                                 CHARGE_TIMED_OUT)
            if updated is not None:
                log.warning("charge %s of order %s timed out", payment.id, order.id)
                changed[order.id] = updated
        for order in await self.store.unpaid_online_orders(now - self.payment_timeout_ms):
            # A compare-and-set on ``created`` with no charge started in time pending: an order
            # paid, switched to cash on delivery or being charged since the listing, by a
            # payment begun before its deadline, is left alone.
            cancelled = await self._cancel(SYSTEM, order, "payment_timeout",
                                           charges_before=self._payment_deadline(order))
            if cancelled is not None:
                changed[order.id] = cancelled
        return list(changed.values())

    async def resume_restocks(self) -> int:
        """Retry restocks a crash or an inventory outage interrupted (call at startup)."""
        pending = await self.store.orders_pending_restock()
        for order in pending:
            await self._restock(order)
        return len(pending)

    async def ship(self, actor: Actor, order_id: str) -> Order:
        order = await self._visible(actor, order_id)
        self._require_seller(actor, order, "ship")
        if order.status not in TRANSITIONS["ship"][0]:
            raise IllegalTransition(order_id, order.status, "ship")
        if order.category == "jewelry" and not await self.certification.vault_certified(
            order.product_id
        ):
            raise CertificationRequired(order_id, "vault")
        now = self.now_ms()
        return await self._transition(actor, order, "ship", now, fields={"shipped_at": now})

    async def deliver(self, actor: Actor, order_id: str) -> Order:
        order = await self._visible(actor, order_id)
        self._require_seller(actor, order, "deliver")
        now = self.now_ms()
        collected = [
            replace(p, status="approved", settled_at=now, reason="collected_on_delivery")
            for p in await self.store.payments(order_id)
            if p.method == "cod" and p.status == "pending"
        ]
        fields: dict[str, int | str | None] = {"delivered_at": now}
        if order.category == INSPECTED_CATEGORY:
            # The buyer scans the inspection report on delivery: keep the latest warranty end
            # it shows, so the order's warranty never ends before it.
            terms = await self.certification.inspection(order.product_id)
            if terms is not None and terms.warranty_ends_at is not None:
                fields["certificate_warranty_ends_at"] = max(
                    terms.warranty_ends_at, order.certificate_warranty_ends_at or 0)
        return await self._transition(
            actor, order, "deliver", now, fields=fields, payments=collected
        )

    async def complete(self, actor: Actor, order_id: str) -> Order:
        order = await self._visible(actor, order_id)
        if actor.user_id != order.buyer_id and not actor.is_admin:
            raise NotAllowed("complete", order_id)
        now = self.now_ms()
        return await self._transition(actor, order, "complete", now, fields={"completed_at": now})

    # -- after-sales -----------------------------------------------------------------------

    async def request_return(self, actor: Actor, order_id: str, reason: str = "") -> Claim:
        """7-day no-reason return from delivery: a door pickup is booked and the platform pays
        the return shipping; the refund follows when the goods arrive (receive_return). Refused
        while a counterfeit claim of the order is open or after it was upheld
        (``CounterfeitClaimed``)."""
        order = await self._buyer_order(actor, order_id, "request a return for")

        async def attempt(order: Order) -> Claim | None:
            if order.status not in TRANSITIONS["request_return"][0]:
                raise IllegalTransition(order_id, order.status, "request_return")
            now = self.now_ms()
            self._within(order, now, RETURN_WINDOW_MS, ReturnWindowClosed)
            await self._no_counterfeit_claim(order)
            claim = self._claim(order, "return", "pickup_scheduled", now, reason,
                                amount=order.total_cents, pickup_at=now + PICKUP_LEAD_MS,
                                payer="platform")
            change = self._transition_change(
                actor, order, "request_return", now, claims=[claim],
                detail={"claim": claim.id, "pickup_at": claim.pickup_at,
                        "return_shipping_payer": "platform"},
                no_counterfeit_claim=True,
            )
            return claim if await self.store.apply(change) is not None else None

        return await self._retry_on_race(actor, order, "request_return", attempt)

    async def receive_return(self, actor: Actor, order_id: str) -> Order:
        """The returned goods arrived: the buyer is refunded in full."""
        order = await self._visible(actor, order_id)
        self._require_seller(actor, order, "receive the return of")
        now = self.now_ms()
        claim = next((c for c in await self.store.claims(order_id) if c.kind == "return"), None)
        claims = [replace(claim, status="refunded", updated_at=now)] if claim else []
        return await self._transition(
            actor, order, "receive_return", now, claims=claims,
            payments=self._refunds(await self.store.payments(order_id), now),
            detail={"refund_cents": order.total_cents},
        )

    async def refund_no_return(self, actor: Actor, order_id: str, reason: str = "") -> Claim:
        """Refund at once without the goods back; only for an anchor holding a valid
        refund-no-return certification for the order's category, within 7 days of delivery,
        and not while a counterfeit claim of the order is open or after it was upheld."""
        order = await self._buyer_order(actor, order_id, "ask a refund for")

        async def attempt(order: Order) -> Claim | None:
            if order.status not in TRANSITIONS["refund_no_return"][0]:
                raise IllegalTransition(order_id, order.status, "refund_no_return")
            now = self.now_ms()
            self._within(order, now, RETURN_WINDOW_MS, ReturnWindowClosed)
            if not await self.certification.refund_no_return_certified(
                order.anchor_id, order.category
            ):
                raise CertificationRequired(order_id, "refund_no_return")
            await self._no_counterfeit_claim(order)
            claim = self._claim(order, "refund_no_return", "refunded", now, reason,
                                amount=order.total_cents)
            change = self._transition_change(
                actor, order, "refund_no_return", now, claims=[claim],
                payments=self._refunds(await self.store.payments(order_id), now),
                detail={"claim": claim.id, "refund_cents": order.total_cents},
                no_counterfeit_claim=True,
            )
            return claim if await self.store.apply(change) is not None else None

        return await self._retry_on_race(actor, order, "refund_no_return", attempt)

    async def counterfeit_claim(self, actor: Actor, order_id: str, reason: str) -> Claim:
        """The buyer says the goods are fake; an admin decides (uphold pays 10x). Within
        ``COUNTERFEIT_WINDOW_MS`` of delivery (``ClaimWindowClosed`` after), on a delivered or
        completed order: not before delivery (``IllegalTransition``), and not once the buyer
        asked for a return or was refunded (``AlreadyRefunded``)."""
        order = await self._buyer_order(actor, order_id, "file a counterfeit claim for")

        async def attempt(order: Order) -> Claim | None:
            self._require_counterfeit_claimable(order, "counterfeit_claim")
            now = self.now_ms()
            self._within(order, now, COUNTERFEIT_WINDOW_MS, ClaimWindowClosed)
            if not isinstance(reason, str) or not reason.strip():
                raise InvalidInput("a counterfeit claim needs a reason")
            claim = self._claim(order, "counterfeit", "open", now, reason)
            noted = await self._note(actor, order, "counterfeit_claim", now, claims=[claim],
                                     detail={"claim": claim.id})
            return claim if noted is not None else None

        return await self._retry_on_race(actor, order, "counterfeit_claim", attempt)

    async def uphold_counterfeit(self, actor: Actor, claim_id: str) -> Claim:
        return await self._decide_counterfeit(actor, claim_id, uphold=True)

    async def reject_counterfeit(self, actor: Actor, claim_id: str) -> Claim:
        return await self._decide_counterfeit(actor, claim_id, uphold=False)

    async def _decide_counterfeit(self, actor: Actor, claim_id: str, *, uphold: bool) -> Claim:
        # Decided by someone else meanwhile, or the order moved: decide again on what is now,
        # a bounded number of times.
        for _ in range(_RACE_RETRIES):
            claim = await self.store.get_claim(claim_id)
            if claim is None or claim.kind != "counterfeit":
                raise ClaimNotFound(claim_id)
            try:
                order = await self._visible(actor, claim.order_id)
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
            now = self.now_ms()
            decided = replace(
                claim,
                status="upheld" if uphold else "rejected",
                updated_at=now,
                amount_cents=COUNTERFEIT_MULTIPLIER * order.total_cents if uphold else 0,
            )
            # Fake one, pay ten: the compensation is paid out with the decision, in one
            # transaction.
            payouts = [Payout(_new_id("po_"), order.id, claim.id, "counterfeit_compensation",
                              decided.amount_cents, "paid", now)] if uphold else []
            detail: dict[str, Any] = {"claim": claim.id,
                                      "compensation_cents": decided.amount_cents}
            if payouts:
                detail["payout"] = payouts[0].id
            kind = "counterfeit_upheld" if uphold else "counterfeit_rejected"
            change = OrderChange(
                order.id, frozenset({order.status}), order.status, now,
                events=[self._event(order, kind, order.status, order.status, actor, now, detail)],
                claims=[decided], payouts=payouts, claim_expected=(claim.id, "open"),
            )
            if await self.store.apply(change) is not None:
                return decided
        raise ClaimConflict(order.id, "contended counterfeit")

    async def warranty_claim(self, actor: Actor, order_id: str, reason: str) -> Claim:
        """Inspected second-hand phones: warranty repair with a door pickup, until the later of
        delivery + 180 days and the warranty end on the phone's inspection certificate."""
        order = await self._buyer_order(actor, order_id, "claim warranty for")

        async def attempt(order: Order) -> Claim | None:
            if order.status not in ("delivered", "completed"):
                raise IllegalTransition(order_id, order.status, "warranty_claim")
            await self._require_inspected(order)
            now = self.now_ms()
            deadline = order.warranty_deadline()
            assert deadline is not None  # delivered
            if now > deadline:
                raise WarrantyExpired(order.id, deadline)
            if not isinstance(reason, str) or not reason.strip():
                raise InvalidInput("a warranty claim needs a description of the fault")
            claim = self._claim(order, "warranty", "pickup_scheduled", now, reason,
                                pickup_at=now + PICKUP_LEAD_MS, payer="platform")
            noted = await self._note(actor, order, "warranty_claim", now, claims=[claim],
                                     detail={"claim": claim.id, "pickup_at": claim.pickup_at})
            return claim if noted is not None else None

        return await self._retry_on_race(actor, order, "warranty_claim", attempt)

    async def buyback_quote(self, actor: Actor, order_id: str) -> BuybackQuote:
        """Trade-in offer for an inspected phone, price-protected: the better of what the
        inspection promised when the phone was bought and what it promises now, but never more
        than the buyer paid for the phones (``unit_price_cents * qty``)."""
        order = await self._buyer_order(actor, order_id, "get a buyback quote for")
        if order.status not in ("delivered", "completed"):
            raise IllegalTransition(order_id, order.status, "buyback_quote")
        terms = await self._require_inspected(order)
        now = self.now_ms()
        locked = (order.buyback_locked_cents or 0) * order.qty
        current = (terms.buyback_price_cents if terms is not None else 0) * order.qty
        # A trade-in pays back at most the price: above it, buying in a flash sale and selling
        # back at once would be a money machine.
        paid = order.unit_price_cents * order.qty
        return BuybackQuote(order_id, min(max(locked, current), paid), locked, current, now,
                            now + BUYBACK_QUOTE_TTL_MS, paid)

    async def _require_inspected(self, order: Order) -> InspectionTerms | None:
        terms = None
        if order.category == INSPECTED_CATEGORY:
            terms = await self.certification.inspection(order.product_id)
        if order.category != INSPECTED_CATEGORY or (terms is None and not order.inspected):
            raise CertificationRequired(order.id, "inspection")
        return terms

    # -- analytics -------------------------------------------------------------------------

    async def analytics(
        self,
        actor: Actor,
        *,
        viewers: Mapping[str, int],
        room_id: str | None = None,
        anchor_id: str | None = None,
        brand: str | None = None,
        window_ms: int = DEFAULT_REPURCHASE_WINDOW_MS,
        since_ms: int | None = None,
        until_ms: int | None = None,
    ) -> AnalyticsReport:
        """Figures per room, anchor and brand. Admins see everything; an anchor sees figures
        computed from their own orders only; everyone else is refused."""
        if actor.role == "anchor":
            if anchor_id is not None and anchor_id != actor.user_id:
                raise NotAllowed("see another anchor's figures")
            scope_anchor: str | None = actor.user_id
        elif actor.is_admin:
            scope_anchor = anchor_id
        else:
            raise NotAllowed("see analytics")
        if not isinstance(window_ms, int) or window_ms <= 0:
            raise InvalidInput("window_ms must be a positive integer")
        orders = [
            o for o in await self.store.orders_for_analytics(scope_anchor)
            if o.status != "cancelled"
            and o.placed_at is not None
            and (since_ms is None or o.placed_at >= since_ms)
            and (until_ms is None or o.placed_at < until_ms)
            and (room_id is None or o.room_id == room_id)
            and (brand is None or o.brand == brand)
        ]
        return AnalyticsReport(
            rooms=_figures("room", orders, lambda o: o.room_id, viewers, window_ms),
            anchors=_figures("anchor", orders, lambda o: o.anchor_id, viewers, window_ms),
            brands=_figures("brand", orders, lambda o: o.brand, viewers, window_ms),
        )

    async def room_figures(
        self, room_id: str, viewers: int | None,
        window_ms: int = DEFAULT_REPURCHASE_WINDOW_MS,
    ) -> Figures:
        """One room's live figures, for the edge to push to its anchor (``figures`` event)."""
        report = await self.analytics(
            SYSTEM, viewers={room_id: viewers} if viewers is not None else {},
            room_id=room_id, window_ms=window_ms,
        )
        if report.rooms:
            return report.rooms[0]
        return Figures("room", room_id, 0, 0, 0, 0, viewers, 0.0 if viewers else None, 0, None)

    # -- helpers ---------------------------------------------------------------------------

    async def _visible(self, actor: Actor, order_id: str) -> Order:
        if not isinstance(order_id, str) or not order_id:
            raise OrderNotFound(str(order_id))
        order = await self.store.get_order(order_id)
        if order is None or order.is_intent or not (
            actor.is_admin or actor.user_id in (order.buyer_id, order.anchor_id)
        ):
            raise OrderNotFound(order_id)
        return order

    async def _buyer_order(self, actor: Actor, order_id: str, action: str) -> Order:
        order = await self._visible(actor, order_id)
        if actor.user_id != order.buyer_id:
            raise NotAllowed(action, order_id)
        return order

    @staticmethod
    def _require_seller(actor: Actor, order: Order, action: str) -> None:
        if not (actor.is_admin or actor.user_id == order.anchor_id):
            raise NotAllowed(action, order.id)

    @staticmethod
    def _within(
        order: Order, now: int, window: int,
        error: type[ReturnWindowClosed] | type[ClaimWindowClosed],
    ) -> None:
        assert order.delivered_at is not None
        deadline = order.delivered_at + window
        if now > deadline:
            raise error(order.id, deadline)

    @staticmethod
    def _require_counterfeit_claimable(order: Order, action: str) -> None:
        if order.status in SETTLED_BY_REFUND:
            raise AlreadyRefunded(order.id, order.status)
        if order.status not in COUNTERFEIT_CLAIMABLE:
            raise IllegalTransition(order.id, order.status, action)

    async def _no_counterfeit_claim(self, order: Order) -> None:
        """Refuse a return or refund while the order's counterfeit claim is open or after it
        was upheld: that claim settles the order. (The write re-checks it in its transaction.)"""
        for claim in await self.store.claims(order.id):
            if claim.kind == "counterfeit" and claim.status in ("open", "upheld"):
                raise CounterfeitClaimed(order.id, claim.id, claim.status)

    @staticmethod
    def _refunds(payments: Iterable[Payment], now: int) -> list[Payment]:
        return [
            replace(p, status="refunded", settled_at=now, reason="after_sales_refund")
            for p in payments
            if p.status == "approved"
        ]

    @staticmethod
    def _claim(
        order: Order, kind: ClaimKind, status: ClaimStatus, now: int, reason: str, *,
        amount: int = 0, pickup_at: int | None = None,
        payer: Literal["platform", "buyer"] | None = None,
    ) -> Claim:
        return Claim(_new_id("cl_"), order.id, kind, status, now, now, amount, pickup_at, payer,
                     _short(reason))

    @staticmethod
    def _event(
        order: Order, kind: str, from_status: StoredStatus | None, to_status: StoredStatus,
        actor: Actor, at: int, detail: Mapping[str, Any] | None = None,
    ) -> OrderEvent:
        return OrderEvent(order.id, kind, from_status, to_status, actor.user_id, actor.role, at,
                          dict(detail or {}))

    async def _transition(
        self, actor: Actor, order: Order, action: str, now: int, *,
        fields: Mapping[str, int | str | None] | None = None,
        claims: Iterable[Claim] = (), payments: Iterable[Payment] = (),
        detail: Mapping[str, Any] | None = None,
    ) -> Order:
        change = self._transition_change(actor, order, action, now, fields=fields,
                                         claims=claims, payments=payments, detail=detail)
        return await self._apply(order, change, action)

    def _transition_change(
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
        moved to works itself out again on that (``_retry_on_race``)."""
        expected, to = TRANSITIONS[action]
        if order.status not in expected:
            raise IllegalTransition(order.id, order.status, action)
        return OrderChange(
            order.id, frozenset({order.status}), to, now, fields=dict(fields or {}),
            events=[self._event(order, action, order.status, to, actor, now, detail)],
            claims=list(claims), payments=list(payments), no_pending_charge=no_pending_charge,
            charges_started_before=charges_started_before,
            no_counterfeit_claim=no_counterfeit_claim,
        )

    async def _note(
        self, actor: Actor, order: Order, kind: str, now: int, *,
        claims: Iterable[Claim], detail: Mapping[str, Any],
    ) -> Order | None:
        """Record an after-sales event that does not change the status, on the status it was
        read in: None if the order moved meanwhile."""
        return await self.store.apply(
            OrderChange(
                order.id, frozenset({order.status}), order.status, now,
                events=[self._event(order, kind, order.status, order.status, actor, now,
                                    detail)],
                claims=list(claims),
            )
        )

    async def _retry_on_race(
        self, actor: Actor, order: Order, action: str,
        attempt: Callable[[Order], Awaitable[_T | None]],
    ) -> _T:
        """Run ``attempt`` on ``order`` as read. ``attempt`` checks the action's rules on the
        order it is given, works out its change from it and applies that as a compare-and-set
        on its status, answering None when the order moved between the read and the write.
        Then the order is read again and ``attempt`` runs on what it is now: a move to another
        status the action is allowed from (a "complete", an approval landing) does not refuse
        it, and a move to one it is not allowed from refuses it with the status it is in now."""
        for _ in range(_RACE_RETRIES):
            result = await attempt(order)
            if result is not None:
                return result
            order = await self._visible(actor, order.id)
        raise IllegalTransition(order.id, order.status, action)

    async def _apply(self, order: Order, change: OrderChange, action: str) -> Order:
        updated = await self.store.apply(change)
        if updated is None:
            current = await self.store.get_order(order.id)
            raise IllegalTransition(order.id, current.status if current else "gone", action)
        return updated

    async def _figures_changed(self, order: Order) -> None:
        if self.on_figures_changed is None:
            return
        try:
            result = self.on_figures_changed(order.room_id, order.anchor_id)
            if inspect.isawaitable(result):
                await result
        except Exception:
            log.exception("figures listener failed")


def _short(text: str, limit: int = 500) -> str:
    if not isinstance(text, str):
        raise InvalidInput("reason must be text")
    return text.strip()[:limit]


def _figures(
    scope: Literal["room", "anchor", "brand"],
    orders: list[Order],
    key_of: Callable[[Order], str],
    viewers: Mapping[str, int],
    window_ms: int,
) -> tuple[Figures, ...]:
    groups: dict[str, list[Order]] = defaultdict(list)
    for order in orders:
        groups[key_of(order)].append(order)
    out = []
    for key in sorted(groups):
        group = groups[key]
        gmv = sum(o.total_cents for o in group)
        by_buyer: dict[str, list[int]] = defaultdict(list)
        for o in group:
            assert o.placed_at is not None
            by_buyer[o.buyer_id].append(o.placed_at)
        repeat = sum(
            1
            for times in by_buyer.values()
            if _has_repeat(sorted(times), window_ms)
        )
        rooms = {o.room_id for o in group}
        room_viewers: int | None = (
            sum(viewers[r] for r in rooms) if all(r in viewers for r in rooms) else None
        )
        buyers = len(by_buyer)
        out.append(
            Figures(
                scope=scope,
                key=key,
                gmv_cents=gmv,
                orders=len(group),
                buyers=buyers,
                average_order_value_cents=gmv // len(group),
                viewers=room_viewers,
                conversion=buyers / room_viewers if room_viewers else None,
                repeat_buyers=repeat,
                repurchase_rate=repeat / buyers,
            )
        )
    return tuple(out)


def _has_repeat(times: list[int], window_ms: int) -> bool:
    """A later order within ``window_ms`` of an earlier one (times sorted)."""
    return any(later - earlier <= window_ms for earlier, later in itertools.pairwise(times))
