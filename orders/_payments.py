"""Paying for an order: charges, the provider's callbacks, and the payment timeouts."""

from __future__ import annotations

import json
import logging
from dataclasses import replace

from ._core import RACE_RETRIES, SYSTEM, OrderCore, new_id
from ._lifecycle import Lifecycle
from ._models import Actor, Order, Payment, PaymentChoice, StoredStatus
from ._sandbox import verify_callback
from ._store import OrderChange
from .exceptions import (
    BadSignature,
    IllegalTransition,
    InvalidInput,
    PaymentInProgress,
    PaymentWindowClosed,
    UnknownPayment,
)
from .interfaces import ChargeRequest

__all__ = ["CHARGE_TIMEOUT_MS", "PAYMENT_TIMEOUT_MS", "Payments"]

log = logging.getLogger(__name__)

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


class Payments:
    def __init__(self, core: OrderCore, lifecycle: Lifecycle) -> None:
        self._core = core
        self._lifecycle = lifecycle

    async def pay(self, actor: Actor, order_id: str, payment_body: object) -> Order:
        """Pay an unpaid order again (after a decline), online or by switching to cash on
        delivery, before its payment deadline (``payment_timeout_ms`` after it was created):
        from then on paying is refused (``PaymentWindowClosed``) and the upkeep cancels it, so
        a buyer paying again after every decline cannot keep the unit past the deadline."""
        core = self._core
        order = await core.buyer_order(actor, order_id, "pay for")

        async def attempt(order: Order) -> Order | None:
            now = core.now_ms()  # when the buyer paid: what the deadline is judged by
            await self.check_pay(order, now)
            choice = PaymentChoice.parse(payment_body)
            payment = self.new_payment(order, choice, now)
            # A compare-and-set on the order unpaid with no charge pending: of two payments at
            # once (a double click) one goes ahead, the other is refused on the next round.
            if choice.method == "cod":
                change = core.transition_change(
                    actor, order, "confirm", now,
                    fields={"placed_at": now, "payment_method": "cod"}, payments=[payment],
                    no_pending_charge=True,
                )
            else:
                change = OrderChange(
                    order.id, frozenset({"created"}), "created", now,
                    fields={"payment_method": "online"},
                    events=[core.event(order, "payment_started", "created", "created", actor,
                                       now, {"payment": payment.id})],
                    payments=[payment], no_pending_charge=True,
                )
            updated = await core.store.apply(change)
            if updated is None:
                return None
            await self.after_payment_chosen(updated, payment, choice)
            return updated

        return await core.retry_on_race(actor, order, "pay", attempt)

    async def check_pay(self, order: Order, now: int) -> int:
        """Refuse paying ``order`` at ``now``: not unpaid (``IllegalTransition``), a charge of
        it still waiting for its answer (``PaymentInProgress``), past its payment deadline
        (``PaymentWindowClosed``). Else the last millisecond it may be paid."""
        if order.status != "created":
            raise IllegalTransition(order.id, order.status, "pay")
        await self._no_charge_pending(order.id)
        deadline = self.payment_deadline(order)
        if now >= deadline:
            raise PaymentWindowClosed(order.id, deadline)
        return deadline - 1

    def payment_deadline(self, order: Order) -> int:
        """From this time on an unpaid online order can no longer be paid and is cancelled."""
        return order.created_at + self._core.payment_timeout_ms

    async def _no_charge_pending(self, order_id: str) -> None:
        for earlier in await self._core.store.payments(order_id):
            if earlier.status == "pending" and earlier.method == "online":
                raise PaymentInProgress(order_id, earlier.id)

    async def after_payment_chosen(
        self, order: Order, payment: Payment, choice: PaymentChoice
    ) -> None:
        """Once ``order`` holds its payment: cash on delivery places it (the room's figures
        change), a card is charged."""
        if order.payment_method == "cod":
            await self._core.figures_changed(order)
        else:
            await self._charge(order, payment, choice)

    @staticmethod
    def new_payment(order: Order, choice: PaymentChoice, now: int) -> Payment:
        """The order's payment by ``choice``, pending until collected or answered."""
        return Payment(
            id=new_id("pay_"),
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
            await self._core.payments.charge(
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
        core = self._core
        now = core.now_ms()
        return await core.store.apply(
            OrderChange(
                order.id, frozenset({order.status}), order.status, now,
                events=[core.event(order, kind, order.status, order.status, SYSTEM, now,
                                   {"payment": payment.id})],
                payments=[replace(payment, status="declined", settled_at=now, reason=reason)],
                payment_expected=(payment.id, "pending"),
            )
        )

    async def handle_payment_callback(self, body: bytes, signature: str) -> Order:
        """Apply a provider's signed callback; duplicates and replays change nothing. The
        answer to a charge the service gave up on (``timed_out``, ``provider_unavailable``) is
        still applied when it is an approval: the order is paid, or the money refunded."""
        core = self._core
        if not isinstance(signature, str) or not verify_callback(
            core.payment_secret, body, signature
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
        for _ in range(RACE_RETRIES):
            payment = await core.store.get_payment(payment_id)
            if payment is None:
                raise UnknownPayment(payment_id)
            if amount != payment.amount_cents:
                raise InvalidInput("payment callback amount does not match the charge")
            order = await core.store.get_order(payment.order_id)
            assert order is not None
            given_up = payment.status == "declined" and payment.reason in _GIVEN_UP
            if payment.status != "pending" and not given_up:
                return order
            if given_up and status == "declined":
                return order  # given up already; the provider agrees
            now = core.now_ms()
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
            updated = await core.store.apply(
                OrderChange(
                    order.id, expected, to, now, fields=fields,
                    events=[core.event(order, kind, order.status, to, SYSTEM, now, detail)],
                    payments=[settled],
                    payment_expected=(payment.id, payment.status),
                )
            )
            if updated is not None:
                if to == "paid":
                    await core.figures_changed(updated)
                return updated
        raise InvalidInput("payment callback kept racing other changes; retry")

    async def expire_unpaid(self) -> list[Order]:
        """Payment timeouts (the upkeep owner calls this every few seconds): a charge the
        provider left unanswered for ``charge_timeout_ms`` is declined as ``timed_out`` (the
        buyer may pay again), and an online order still unpaid ``payment_timeout_ms`` after it
        was created is cancelled by the system, its stock returned like any cancellation. An
        order whose charge started before that deadline is still waiting for its answer is not
        cancelled (the buyer was paying in time); it is once the charge is declined or given
        up. ``pay`` refuses from the deadline on, so no later charge can hold the order.
        Returns the orders that changed."""
        core = self._core
        now = core.now_ms()
        changed: dict[str, Order] = {}
        for payment in await core.store.stale_pending_charges(now - core.charge_timeout_ms):
            order = await core.store.get_order(payment.order_id)
            if order is None:
                continue
            updated = await self._give_up_charge(order, payment, "payment_timed_out",
                                                 CHARGE_TIMED_OUT)
            if updated is not None:
                log.warning("charge %s of order %s timed out", payment.id, order.id)
                changed[order.id] = updated
        for order in await core.store.unpaid_online_orders(now - core.payment_timeout_ms):
            # A compare-and-set on ``created`` with no charge started in time pending: an order
            # paid, switched to cash on delivery or being charged since the listing, by a
            # payment begun before its deadline, is left alone.
            cancelled = await self._lifecycle.cancel_as_read(
                SYSTEM, order, "payment_timeout", charges_before=self.payment_deadline(order))
            if cancelled is not None:
                changed[order.id] = cancelled
        return list(changed.values())
