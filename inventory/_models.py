"""Value objects of the inventory package: immutable, with ``to_public()`` for the edges."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

__all__ = [
    "BuyResult",
    "BuyStatus",
    "Hold",
    "Reservation",
    "ReservationState",
    "Sale",
    "SaleSpec",
    "SaleStatus",
    "StockLevel",
    "sale_status",
]

SaleStatus = Literal["scheduled", "live", "sold_out", "ended"]
BuyStatus = Literal[
    "reserved", "sold_out", "limit_reached", "not_started", "ended", "banned", "rate_limited",
    "invalid",
]
ReservationState = Literal["held", "committed", "released", "expired", "restocked"]

SALE_STATUSES: frozenset[str] = frozenset({"scheduled", "live", "sold_out", "ended"})
BUY_STATUSES: frozenset[str] = frozenset(
    {"reserved", "sold_out", "limit_reached", "not_started", "ended", "banned", "rate_limited",
     "invalid"}
)
RESERVATION_STATES: frozenset[str] = frozenset(
    {"held", "committed", "released", "expired", "restocked"}
)


def sale_status(now_ms: int, starts_at: int, ends_at: int, remaining: int) -> SaleStatus:
    """Mirror of ``sale_status`` in lua/_prelude.lua: the window first, then the stock."""
    if now_ms >= ends_at:
        return "ended"
    if now_ms < starts_at:
        return "scheduled"
    if remaining <= 0:
        return "sold_out"
    return "live"


@dataclass(frozen=True, slots=True)
class SaleSpec:
    """What the anchor asks for. Times are wall-clock ms; money is cents."""

    room_id: str
    product_id: str
    anchor_id: str
    title: str
    category: str
    brand: str
    stock: int
    price_cents: int
    per_user_limit: int
    starts_at_ms: int
    ends_at_ms: int
    hold_ms: int


@dataclass(frozen=True, slots=True)
class StockLevel:
    """A sale's counters right after a change: what the edge pushes to the room."""

    sale_id: str
    room_id: str
    remaining: int
    held: int
    sold: int
    status: SaleStatus

    def to_public(self) -> dict[str, Any]:
        return {
            "sale": self.sale_id,
            "remaining": self.remaining,
            "held": self.held,
            "sold": self.sold,
            "status": self.status,
        }


@dataclass(frozen=True, slots=True)
class Sale:
    id: str
    room_id: str
    product_id: str
    anchor_id: str
    title: str
    category: str
    brand: str
    price_cents: int
    per_user_limit: int
    stock: int
    remaining: int
    held: int
    sold: int
    status: SaleStatus
    starts_at: int
    ends_at: int
    hold_ms: int
    # None while open; the anchor's reason when ended early; "time" when the window ran out.
    ended_reason: str | None

    def to_public(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "status": self.status,
            "room_id": self.room_id,
            "product_id": self.product_id,
            "anchor_id": self.anchor_id,
            "title": self.title,
            "category": self.category,
            "brand": self.brand,
            "price_cents": self.price_cents,
            "per_user_limit": self.per_user_limit,
            "stock": self.stock,
            "remaining": self.remaining,
            "held": self.held,
            "sold": self.sold,
            "starts_at": self.starts_at,
            "ends_at": self.ends_at,
            "hold_ms": self.hold_ms,
            "ended_reason": self.ended_reason,
        }


# Hold and BuyResult are values; they are not frozen only because thousands are built a second
# on the buy path, and a frozen dataclass's __init__ (object.__setattr__ per field) costs several
# times a plain one's (docs/performance.md, "Session 5"). Nothing changes one after it is built.
@dataclass(slots=True)
class Hold:
    """The reservation part of a successful buy answer."""

    id: str
    qty: int
    price_cents: int
    expires_at: int

    def to_public(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "qty": self.qty,
            "price_cents": self.price_cents,
            "expires_at": self.expires_at,
        }


@dataclass(slots=True)
class BuyResult:
    status: BuyStatus
    reservation: Hold | None
    # Units left after the batch that decided this buy; None when Redis was not asked
    # (invalid, rate_limited).
    remaining: int | None
    # True when this answer is the stored first answer to the same user and request_id.
    replayed: bool = False
    # Counters after the deciding batch, for the edge's stock push; None when Redis was not asked.
    stock: StockLevel | None = None

    @property
    def ok(self) -> bool:
        return self.status == "reserved"

    def to_public(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "status": self.status,
            "reservation": self.reservation.to_public() if self.reservation else None,
            "remaining": self.remaining,
        }


@dataclass(frozen=True, slots=True)
class Reservation:
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
    created_at: int
    state: ReservationState
    # Counters right after the call that returned this reservation (None from get_reservation).
    stock: StockLevel | None = None

    def to_public(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "sale": self.sale_id,
            "room": self.room_id,
            "product": self.product_id,
            "qty": self.qty,
            "price_cents": self.price_cents,
            "title": self.title,
            "expires_at": self.expires_at,
            "state": self.state,
        }
