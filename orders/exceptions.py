"""Errors raised by the orders domain. Every one carries its data, a public ``code`` and an
``http_status`` the edges map to ``{"error": {"code", "message"}}``.

::

    OrderError (400 order_error)
    ├── InvalidInput (400 invalid_input)
    │   └── InvalidCheckout (400 invalid_checkout)          bad checkout body, names the field
    ├── UnknownReservation (404 unknown_reservation)
    ├── NotReservationHolder (403 not_reservation_holder)
    ├── HoldExpired (409 hold_expired)
    ├── DeliveryLimitReached (409 limit_reached)            a sale's per-person limit, by door
    ├── OrderNotFound (404 order_not_found)                 also "exists but not yours"
    ├── NotAllowed (403 not_allowed)                        visible, but not your operation
    ├── IllegalTransition (409 illegal_transition)
    ├── ReturnWindowClosed (409 return_window_closed)       7-day window from delivery
    ├── ClaimWindowClosed (409 claim_window_closed)         counterfeit: 90 days from delivery
    ├── AlreadyRefunded (409 already_refunded)              counterfeit claim after a return/refund
    ├── CounterfeitClaimed (409 counterfeit_claimed)        return/refund after a counterfeit claim
    ├── WarrantyExpired (409 warranty_expired)              later of delivery + 180 d, certificate
    ├── CertificationRequired (409 certification_required)  vault / refund-no-return / inspection
    ├── ClaimConflict (409 claim_conflict)                  a claim of that kind already exists
    ├── ClaimNotFound (404 claim_not_found)
    ├── PaymentError (402 payment_error)
    │   ├── PaymentInProgress (409 payment_in_progress)
    │   ├── PaymentWindowClosed (409 payment_window_closed)  unpaid past the payment timeout
    │   └── UnknownPayment (404 unknown_payment)
    ├── UnknownCoupon (404 unknown_coupon)
    ├── CouponRefused (409 coupon_refused)                  checkout's coupon cannot be used
    │   ├── CouponNotYours (403 coupon_not_yours)           someone else's coupon
    │   ├── CouponUsed (409 coupon_used)                    on another order already
    │   ├── CouponExpired (409 coupon_expired)
    │   └── CouponNotApplicable (409 coupon_not_applicable) other room, below the minimum spend
    ├── BadSignature (401 bad_signature)                    payment callback not from provider
    └── StoreUnavailable (503 store_unavailable)            the order database cannot be reached
"""

from __future__ import annotations

__all__ = [
    "AlreadyRefunded",
    "BadSignature",
    "CertificationRequired",
    "ClaimConflict",
    "ClaimNotFound",
    "ClaimWindowClosed",
    "CounterfeitClaimed",
    "CouponExpired",
    "CouponNotApplicable",
    "CouponNotYours",
    "CouponRefused",
    "CouponUsed",
    "DeliveryLimitReached",
    "HoldExpired",
    "IllegalTransition",
    "InvalidCheckout",
    "InvalidInput",
    "NotAllowed",
    "NotReservationHolder",
    "OrderError",
    "OrderNotFound",
    "PaymentError",
    "PaymentInProgress",
    "PaymentWindowClosed",
    "ReturnWindowClosed",
    "StoreUnavailable",
    "UnknownCoupon",
    "UnknownPayment",
    "UnknownReservation",
    "WarrantyExpired",
]


class OrderError(Exception):
    code: str = "order_error"
    http_status: int = 400

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidInput(OrderError):
    code = "invalid_input"
    http_status = 400


class InvalidCheckout(InvalidInput):
    code = "invalid_checkout"

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


class UnknownReservation(OrderError):
    code = "unknown_reservation"
    http_status = 404

    def __init__(self, reservation_id: str) -> None:
        super().__init__(f"no reservation {reservation_id!r}")
        self.reservation_id = reservation_id


class NotReservationHolder(OrderError):
    code = "not_reservation_holder"
    http_status = 403

    def __init__(self, reservation_id: str) -> None:
        super().__init__(f"reservation {reservation_id!r} is held by someone else")
        self.reservation_id = reservation_id


class HoldExpired(OrderError):
    code = "hold_expired"
    http_status = 409

    def __init__(self, reservation_id: str) -> None:
        super().__init__(f"the hold {reservation_id!r} has expired or was given back")
        self.reservation_id = reservation_id


class DeliveryLimitReached(OrderError):
    """Checkout would send more of the sale than its per-person limit to one delivery phone or
    address: the same person's other accounts count too. The hold is given back."""

    code = "limit_reached"
    http_status = 409

    def __init__(self, sale_id: str, limit: int) -> None:
        super().__init__(f"this sale allows {limit} per person, and that many already go to "
                         "this delivery address or phone")
        self.sale_id = sale_id
        self.limit = limit


class OrderNotFound(OrderError):
    code = "order_not_found"
    http_status = 404

    def __init__(self, order_id: str) -> None:
        super().__init__(f"no order {order_id!r}")
        self.order_id = order_id


class NotAllowed(OrderError):
    code = "not_allowed"
    http_status = 403

    def __init__(self, action: str, order_id: str | None = None) -> None:
        where = f" on order {order_id!r}" if order_id else ""
        super().__init__(f"you may not {action}{where}")
        self.action = action
        self.order_id = order_id


class IllegalTransition(OrderError):
    code = "illegal_transition"
    http_status = 409

    def __init__(self, order_id: str, status: str, action: str) -> None:
        super().__init__(f"cannot {action} order {order_id!r} while it is {status}")
        self.order_id = order_id
        self.status = status
        self.action = action


class ReturnWindowClosed(OrderError):
    code = "return_window_closed"
    http_status = 409

    def __init__(self, order_id: str, deadline_ms: int) -> None:
        super().__init__(f"the 7-day after-sales window of order {order_id!r} has closed")
        self.order_id = order_id
        self.deadline_ms = deadline_ms


class ClaimWindowClosed(OrderError):
    """A counterfeit claim filed after its window (``COUNTERFEIT_WINDOW_MS`` from delivery)."""

    code = "claim_window_closed"
    http_status = 409

    def __init__(self, order_id: str, deadline_ms: int) -> None:
        super().__init__(
            f"the window for a counterfeit claim on order {order_id!r} (from its delivery) "
            "has closed"
        )
        self.order_id = order_id
        self.deadline_ms = deadline_ms


class AlreadyRefunded(OrderError):
    """A counterfeit claim (or its compensation) on an order the buyer already chose to settle
    by a return or a refund: the price comes back that way, and fake-one-pay-ten does not pay on
    top of it."""

    code = "already_refunded"
    http_status = 409

    def __init__(self, order_id: str, status: str) -> None:
        super().__init__(
            f"order {order_id!r} is {status.replace('_', ' ')}: a return or refund settles it, "
            "so a counterfeit claim is no longer possible"
        )
        self.order_id = order_id
        self.status = status


class CounterfeitClaimed(OrderError):
    """A return or refund asked while the order's counterfeit claim is open, or after it was
    upheld: that claim settles the order (a rejected claim does not block a return)."""

    code = "counterfeit_claimed"
    http_status = 409

    def __init__(self, order_id: str, claim_id: str, claim_status: str) -> None:
        super().__init__(
            f"order {order_id!r} has a counterfeit claim ({claim_status}): it is settled by that "
            "claim, not by a return or refund"
        )
        self.order_id = order_id
        self.claim_id = claim_id
        self.claim_status = claim_status


class WarrantyExpired(OrderError):
    code = "warranty_expired"
    http_status = 409

    def __init__(self, order_id: str, deadline_ms: int) -> None:
        super().__init__(f"the warranty of order {order_id!r} has ended")
        self.order_id = order_id
        self.deadline_ms = deadline_ms


class CertificationRequired(OrderError):
    code = "certification_required"
    http_status = 409

    def __init__(self, order_id: str, certification: str) -> None:
        super().__init__(f"order {order_id!r} needs a valid {certification} certification")
        self.order_id = order_id
        self.certification = certification


class ClaimConflict(OrderError):
    code = "claim_conflict"
    http_status = 409

    def __init__(self, order_id: str, kind: str) -> None:
        super().__init__(f"order {order_id!r} already has a {kind} claim")
        self.order_id = order_id
        self.kind = kind


class ClaimNotFound(OrderError):
    code = "claim_not_found"
    http_status = 404

    def __init__(self, claim_id: str) -> None:
        super().__init__(f"no claim {claim_id!r}")
        self.claim_id = claim_id


class PaymentError(OrderError):
    code = "payment_error"
    http_status = 402


class PaymentInProgress(PaymentError):
    code = "payment_in_progress"
    http_status = 409

    def __init__(self, order_id: str, payment_id: str) -> None:
        super().__init__(f"order {order_id!r} already has payment {payment_id!r} in progress")
        self.order_id = order_id
        self.payment_id = payment_id


class PaymentWindowClosed(PaymentError):
    """The order was not paid within the payment timeout from checkout: it is no longer
    payable, and the upkeep cancels it (its units go back on sale)."""

    code = "payment_window_closed"
    http_status = 409

    def __init__(self, order_id: str, deadline_ms: int) -> None:
        super().__init__(
            f"the time to pay for order {order_id!r} is over: it will be cancelled and its "
            "units go back on sale"
        )
        self.order_id = order_id
        self.deadline_ms = deadline_ms


class UnknownPayment(PaymentError):
    code = "unknown_payment"
    http_status = 404

    def __init__(self, payment_id: str) -> None:
        super().__init__(f"no payment {payment_id!r}")
        self.payment_id = payment_id


class BadSignature(OrderError):
    code = "bad_signature"
    http_status = 401

    def __init__(self) -> None:
        super().__init__("payment callback signature does not verify")


class StoreUnavailable(OrderError):
    """The order database cannot be reached (it went away, or is restarting): nothing was
    changed by this request, and the same request may be sent again once it is back."""

    code = "store_unavailable"
    http_status = 503

    def __init__(self, detail: str) -> None:
        super().__init__("the order database is unavailable; try again shortly")
        self.detail = detail


class UnknownCoupon(OrderError):
    code = "unknown_coupon"
    http_status = 404

    def __init__(self, coupon_id: str) -> None:
        super().__init__(f"no coupon {coupon_id[:80]!r}")
        self.coupon_id = coupon_id


class CouponRefused(OrderError):
    code = "coupon_refused"
    http_status = 409

    def __init__(self, coupon_id: str, message: str) -> None:
        super().__init__(message)
        self.coupon_id = coupon_id


class CouponNotYours(CouponRefused):
    code = "coupon_not_yours"
    http_status = 403

    def __init__(self, coupon_id: str) -> None:
        super().__init__(coupon_id, "that coupon is someone else's")


class CouponUsed(CouponRefused):
    code = "coupon_used"

    def __init__(self, coupon_id: str, order_id: str | None = None) -> None:
        super().__init__(coupon_id, "that coupon is used by another order")
        self.order_id = order_id


class CouponExpired(CouponRefused):
    code = "coupon_expired"

    def __init__(self, coupon_id: str, expired_at: int) -> None:
        super().__init__(coupon_id, "that coupon has expired")
        self.expired_at = expired_at


class CouponNotApplicable(CouponRefused):
    code = "coupon_not_applicable"

    def __init__(self, coupon_id: str, reason: str) -> None:
        super().__init__(coupon_id, reason)
        self.reason = reason
