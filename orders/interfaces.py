"""What orders needs from the rest of the system, as protocols.

The composition root (``liveroom/app.py``) passes adapters over the real inventory and
certificate services; orders never imports them. Adapters translate the other packages'
exceptions into the ones named here (from ``orders.exceptions``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

from handoff import schema

__all__ = [
    "CallbackSink",
    "CertificationPolicy",
    "ChargeRequest",
    "CouponTerms",
    "CouponWallet",
    "InspectionTerms",
    "PaymentProvider",
    "ReservationInfo",
    "ReservationState",
    "StockLedger",
]

# A reservation's state is named after the latest hand-off entry about it.
ReservationState = schema.EntryType


@dataclass(frozen=True, slots=True)
class ReservationInfo:
    """A hold (or sold unit) as the inventory knows it. ``price_cents`` is the deal price of one
    unit; the order total is ``price_cents * qty``. Times are epoch milliseconds."""

    id: str
    sale_id: str
    room_id: str
    product_id: str
    anchor_id: str
    user_id: str
    qty: int
    price_cents: int
    title: str
    category: str
    brand: str
    expires_at: int
    state: ReservationState


class StockLedger(Protocol):
    """The inventory, seen from orders."""

    async def commit(self, reservation_id: str, user_id: str) -> ReservationInfo:
        """Turn the hold into a sale, atomically; idempotent for the holder.

        Raises ``HoldExpired`` (expired or released), ``NotReservationHolder`` and
        ``UnknownReservation``."""
        ...

    async def restock(self, reservation_id: str) -> bool:
        """Give a sold unit back to its sale; False (and nothing done) once the sale has ended.
        Must be idempotent: orders retries it after a crash."""
        ...

    async def get_reservation(self, reservation_id: str) -> ReservationInfo:
        """Raises ``UnknownReservation``."""
        ...

    async def release(self, reservation_id: str, user_id: str) -> None:
        """Give an uncommitted hold back to its sale now; nothing if it is no longer held."""
        ...

    async def per_person_limit(self, sale_id: str) -> int:
        """The sale's per-person limit (units one buyer may have)."""
        ...


@dataclass(frozen=True, slots=True)
class InspectionTerms:
    """What an inspected second-hand phone's report promises: the buyback (trade-in) price of
    one unit, fixed when the report was issued, and the warranty end printed on the certificate
    (epoch ms; None if the report names none)."""

    report_id: str
    buyback_price_cents: int
    warranty_ends_at: int | None = None


class CertificationPolicy(Protocol):
    """The platform's first-party certificates, answered as of now."""

    async def vault_certified(self, product_id: str) -> bool:
        """The item has a valid (unexpired, unrevoked) vault certificate."""
        ...

    async def refund_no_return_certified(self, anchor_id: str, category: str) -> bool:
        """The anchor holds a valid refund-no-return certification for the category."""
        ...

    async def inspection(self, product_id: str) -> InspectionTerms | None:
        """The product's valid inspection report, or None."""
        ...


@dataclass(frozen=True, slots=True)
class ChargeRequest:
    payment_id: str
    order_id: str
    amount_cents: int
    card: str


# Where a provider delivers its signed callback: (raw JSON body, hex HMAC-SHA256 signature).
CallbackSink = Callable[[bytes, str], Awaitable[object]]


class PaymentProvider(Protocol):
    """A card payment provider. ``charge`` only accepts the request; the outcome arrives later as
    a signed callback, like a real provider's webhook."""

    name: str

    async def charge(self, request: ChargeRequest) -> None: ...


@dataclass(frozen=True, slots=True)
class CouponTerms:
    """A buyer's coupon as orders needs it: whose, for which room's sales, what it takes off
    (``off_cents``, or ``percent_off`` of the subtotal), the minimum subtotal it needs and until
    when it can be used (epoch ms). ``used_by`` is the order it is applied to, if any."""

    id: str
    user_id: str
    room_id: str
    off_cents: int
    percent_off: int
    min_spend_cents: int
    expires_at: int
    used_by: str | None = None

    def discount_for(self, subtotal_cents: int) -> int:
        """The cents this coupon takes off a subtotal: 0 below the minimum spend, and never so
        much that less than 1 cent is left to pay (a free order takes no coupon)."""
        if subtotal_cents <= 1 or subtotal_cents < self.min_spend_cents:
            return 0
        off = self.off_cents if self.off_cents else subtotal_cents * self.percent_off // 100
        return max(0, min(off, subtotal_cents - 1))


class CouponWallet(Protocol):
    """The buyers' coupons (liveroom's coupon drops), seen from orders. A coupon is used by one
    order at a time; ``use`` and ``give_back`` are atomic and idempotent per order."""

    async def usable(self, user_id: str, room_id: str, now_ms: int) -> list[CouponTerms]:
        """The user's coupons valid now on ``room_id``'s sales and not used by any order."""
        ...

    async def terms(self, coupon_id: str) -> CouponTerms:
        """Raises ``UnknownCoupon``."""
        ...

    async def use(self, coupon_id: str, user_id: str, order_id: str, now_ms: int) -> None:
        """Mark the coupon used by ``order_id`` (again: nothing). Raises ``UnknownCoupon``,
        ``CouponNotYours``, ``CouponUsed`` (another order has it) and ``CouponExpired``."""
        ...

    async def give_back(self, coupon_id: str, order_id: str) -> bool:
        """Return the coupon to its owner's wallet if ``order_id`` has it; False (and nothing
        done) if it does not. Idempotent."""
        ...
