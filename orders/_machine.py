"""The order lifecycle: which action moves an order from which statuses to which status.

::

    (checkout intent, never shown) pending ─unit sold─▶ created | confirmed; ─hold gone─▶ voided
    created ─pay (online, approved callback)─▶ paid ──────┐
    created ─confirm (cash on delivery)──────▶ confirmed ─┴─ship─▶ shipped ─deliver─▶ delivered
    created | paid | confirmed ─cancel─▶ cancelled (unit back to the live sale)
    delivered ─complete─▶ completed
    delivered | completed ─request_return (≤ 7 days)─▶ return_requested ─receive_return─▶ returned
    delivered | completed ─refund_no_return (certified anchor, ≤ 7 days)─▶ refunded

Counterfeit and warranty claims, payments and restocks are events that keep the status.
A counterfeit claim and a return or refund exclude each other: see ``SETTLED_BY_REFUND``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from ._models import OrderStatus

__all__ = ["COUNTERFEIT_CLAIMABLE", "RECEIVED", "SETTLED_BY_REFUND", "TRANSITIONS"]

TRANSITIONS: Final[Mapping[str, tuple[frozenset[OrderStatus], OrderStatus]]] = {
    "pay": (frozenset({"created"}), "paid"),
    "confirm": (frozenset({"created"}), "confirmed"),
    "cancel": (frozenset({"created", "paid", "confirmed"}), "cancelled"),
    "ship": (frozenset({"paid", "confirmed"}), "shipped"),
    "deliver": (frozenset({"shipped"}), "delivered"),
    "complete": (frozenset({"delivered"}), "completed"),
    "request_return": (frozenset({"delivered", "completed"}), "return_requested"),
    "receive_return": (frozenset({"return_requested"}), "returned"),
    "refund_no_return": (frozenset({"delivered", "completed"}), "refunded"),
}

# Statuses in which the goods have reached the buyer (claims about the goods are possible).
RECEIVED: Final[frozenset[OrderStatus]] = frozenset(
    {"delivered", "completed", "return_requested", "returned", "refunded"}
)

# Statuses in which the buyer chose to settle the order by a return or a refund (the price comes
# back, or is on its way back): fake-one-pay-ten never pays on top of that.
SETTLED_BY_REFUND: Final[frozenset[OrderStatus]] = frozenset(
    {"return_requested", "returned", "refunded"}
)

# Where a counterfeit claim may be filed (within its window) and upheld: goods in the buyer's
# hands and not being returned or refunded.
COUNTERFEIT_CLAIMABLE: Final[frozenset[OrderStatus]] = RECEIVED - SETTLED_BY_REFUND
