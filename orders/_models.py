"""Value types of the orders domain, and parsing of the checkout body."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

from .exceptions import InvalidCheckout, InvalidInput

__all__ = [
    "COUPON_RE",
    "DAY_MS",
    "INSPECTED_CATEGORY",
    "INTENT_STATUSES",
    "ROLES",
    "WARRANTY_WINDOW_MS",
    "Actor",
    "Address",
    "AnalyticsReport",
    "BuybackQuote",
    "CheckoutRequest",
    "Claim",
    "ClaimKind",
    "ClaimStatus",
    "CouponChoice",
    "Figures",
    "IntentStatus",
    "Order",
    "OrderEvent",
    "OrderStatus",
    "Payment",
    "PaymentChoice",
    "PaymentStatus",
    "Payout",
    "PayoutKind",
    "Reconciliation",
    "RestockState",
    "Role",
    "StoredStatus",
    "prorated_discount",
]

Role = Literal["viewer", "anchor", "inspector", "admin"]
ROLES: frozenset[str] = frozenset(get_args(Role))

OrderStatus = Literal[
    "created",
    "paid",
    "confirmed",
    "shipped",
    "delivered",
    "completed",
    "cancelled",
    "return_requested",
    "returned",
    "refunded",
]
# A checkout is written down before the inventory commits its hold: the row starts as a
# ``pending`` intent (never shown as an order) and becomes ``created``/``confirmed`` once the unit
# is sold, or ``voided`` when the hold turned out to be gone (see docs/orders.md, Checkout).
IntentStatus = Literal["pending", "voided"]
INTENT_STATUSES: frozenset[str] = frozenset(get_args(IntentStatus))
StoredStatus = OrderStatus | IntentStatus
PaymentStatus = Literal["pending", "approved", "declined", "refunded"]
ClaimKind = Literal["return", "refund_no_return", "counterfeit", "warranty"]
ClaimStatus = Literal["open", "pickup_scheduled", "refunded", "upheld", "rejected"]
RestockState = Literal["none", "pending", "done", "skipped"]
PayoutKind = Literal["counterfeit_compensation"]

DAY_MS = 24 * 3600 * 1000
WARRANTY_WINDOW_MS = 180 * DAY_MS  # inspected phones, from delivery
INSPECTED_CATEGORY = "phone_used"  # inspected second-hand phones: warranty and buyback

ADDRESS_LIMITS: Mapping[str, int] = {"name": 80, "phone": 20, "line1": 200, "city": 80}
RESERVATION_RE = re.compile(r"^s_[A-Za-z0-9_-]{1,64}\.[1-9][0-9]{0,18}$")
CARD_RE = re.compile(r"^[0-9]{12,19}$")


@dataclass(frozen=True, slots=True)
class Actor:
    user_id: str
    role: Role

    def __post_init__(self) -> None:
        if not isinstance(self.user_id, str) or not self.user_id:
            raise InvalidInput("actor needs a user id")
        if self.role not in ROLES:
            raise InvalidInput(f"unknown role {self.role!r}")

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


@dataclass(frozen=True, slots=True)
class Address:
    name: str
    phone: str
    line1: str
    city: str

    def to_dict(self) -> dict[str, str]:
        return {"name": self.name, "phone": self.phone, "line1": self.line1, "city": self.city}

    @property
    def phone_key(self) -> str:
        """The delivery phone as compared across orders: its last ten digits, so a number
        written with and without its country code is one phone."""
        return "".join(ch for ch in self.phone if ch.isdigit())[-10:]

    @property
    def door_key(self) -> str:
        """The delivery address as compared across orders: city and street, NFKC case-folded,
        letters and digits only (``12 Jade St.`` and ``12 jade st`` are one door)."""
        text = unicodedata.normalize("NFKC", f"{self.city}|{self.line1}").casefold()
        return "".join(ch for ch in text if ch.isalnum() or ch == "|")


@dataclass(frozen=True, slots=True)
class PaymentChoice:
    method: Literal["cod", "online"]
    card: str | None = None

    def __repr__(self) -> str:
        # Never print a full card number into logs.
        last4 = self.card[-4:] if self.card else None
        return f"PaymentChoice(method={self.method!r}, card_last4={last4!r})"

    @classmethod
    def parse(cls, raw: object, path: str = "payment") -> PaymentChoice:
        """``"cod"`` or ``{"method": "cod"}`` or ``{"method": "online", "card": "4242..."}``.
        A bare ``"online"`` is refused: an online payment needs a card."""
        if raw == "cod":
            return cls("cod")
        if raw == "online":
            raise InvalidCheckout(f"{path}.card", "an online payment needs a card number")
        if not isinstance(raw, dict):
            raise InvalidCheckout(path, 'expected {"method": "cod"} or {"method": "online", ...}')
        unknown = set(raw) - {"method", "card"}
        if unknown:
            raise InvalidCheckout(path, f"unknown field(s) {sorted(map(str, unknown))}")
        method = raw.get("method")
        if method == "cod":
            if raw.get("card") is not None:
                raise InvalidCheckout(f"{path}.card", "cash on delivery takes no card")
            return cls("cod")
        if method != "online":
            raise InvalidCheckout(f"{path}.method", 'must be "cod" or "online"')
        card = raw.get("card")
        if not isinstance(card, str):
            raise InvalidCheckout(f"{path}.card", "an online payment needs a card number")
        digits = card.replace(" ", "")
        if not CARD_RE.fullmatch(digits) or not _luhn_ok(digits):
            raise InvalidCheckout(f"{path}.card", "not a valid card number")
        return cls("online", digits)


def _luhn_ok(digits: str) -> bool:
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = int(char)
        if index % 2 == 1:
            value *= 2
            if value > 9:
                value -= 9
        total += value
    return total % 10 == 0


def _address(raw: object) -> Address:
    if not isinstance(raw, dict):
        raise InvalidCheckout("address", "expected an object with name, phone, line1, city")
    unknown = set(raw) - set(ADDRESS_LIMITS)
    if unknown:
        raise InvalidCheckout("address", f"unknown field(s) {sorted(map(str, unknown))}")
    values: dict[str, str] = {}
    for name, limit in ADDRESS_LIMITS.items():
        value = raw.get(name)
        if not isinstance(value, str):
            raise InvalidCheckout(f"address.{name}", "required text")
        value = value.strip()
        if not value:
            raise InvalidCheckout(f"address.{name}", "must not be empty")
        if len(value) > limit:
            raise InvalidCheckout(f"address.{name}", f"at most {limit} characters")
        if any(ord(ch) < 32 for ch in value):
            raise InvalidCheckout(f"address.{name}", "control characters are not allowed")
        values[name] = value
    phone = re.sub(r"[\s()-]", "", values["phone"])
    if phone.startswith("+"):
        phone = "+" + phone[1:]
    if not re.fullmatch(r"\+?[0-9]{5,15}", phone):
        raise InvalidCheckout("address.phone", "5 to 15 digits, optionally after a +")
    return Address(values["name"], phone, values["line1"], values["city"])


def prorated_discount(discount_cents: int, qty: int, units: int) -> int:
    """The part of an order's discount that ``units`` of its ``qty`` carry: rounded down, so
    the units refunded first never carry more than their share and the last ones carry the
    rest (the shares of all ``qty`` units add up to ``discount_cents``)."""
    if qty <= 0 or not 0 <= units <= qty:
        raise InvalidInput("units must be within the order's quantity")
    return discount_cents * units // qty


# The checkout's ``coupon`` field: a coupon id, or ``False`` to keep every coupon for later.
# Absent (``None``): the coupon that takes the most off is applied, if any is eligible.
COUPON_RE = re.compile(r"^cd_[A-Za-z0-9_-]{1,32}\.[1-9][0-9]{0,9}$")
CouponChoice = str | Literal[False] | None


@dataclass(frozen=True, slots=True)
class CheckoutRequest:
    reservation_id: str
    address: Address
    payment: PaymentChoice
    coupon: CouponChoice = None

    @classmethod
    def parse(cls, obj: object) -> CheckoutRequest:
        """Validate a whole ``checkout`` body; raise ``InvalidCheckout`` naming the bad field."""
        if not isinstance(obj, dict):
            raise InvalidCheckout("body", "expected an object")
        unknown = set(obj) - {"reservation", "address", "payment", "coupon"}
        if unknown:
            raise InvalidCheckout("body", f"unknown field(s) {sorted(map(str, unknown))}")
        reservation = obj.get("reservation")
        if not isinstance(reservation, str) or not RESERVATION_RE.fullmatch(reservation):
            raise InvalidCheckout("reservation", "expected a reservation id like s_xxx.17")
        if "payment" not in obj:
            raise InvalidCheckout("payment", "required")
        coupon = obj.get("coupon")
        if coupon is not None and coupon is not False and (
                not isinstance(coupon, str) or not COUPON_RE.fullmatch(coupon)):
            raise InvalidCheckout("coupon", "expected a coupon id like cd_xxx.7, or false for none")
        return cls(reservation, _address(obj.get("address")), PaymentChoice.parse(obj["payment"]),
                   coupon)


@dataclass(frozen=True, slots=True)
class Order:
    id: str
    reservation_id: str
    sale_id: str
    room_id: str
    anchor_id: str
    product_id: str
    buyer_id: str
    title: str
    category: str
    brand: str
    qty: int
    unit_price_cents: int
    total_cents: int
    payment_method: Literal["cod", "online"]
    status: StoredStatus
    address: Address
    created_at: int
    updated_at: int
    placed_at: int | None = None  # paid (online) or confirmed (cash on delivery)
    shipped_at: int | None = None
    delivered_at: int | None = None
    completed_at: int | None = None
    cancelled_at: int | None = None
    buyback_locked_cents: int | None = None  # per unit, snapshot at checkout (price protection)
    restock_state: RestockState = "none"
    # The latest warranty end printed on the phone's inspection certificate, as seen at checkout
    # and at delivery (when the buyer scans the report).
    certificate_warranty_ends_at: int | None = None
    # The coupon applied at checkout (docs/orders.md, "Coupons") and the cents it took off the
    # subtotal (unit_price_cents * qty); total_cents is the subtotal less this.
    discount_cents: int = 0
    coupon_id: str | None = None

    @property
    def subtotal_cents(self) -> int:
        return self.unit_price_cents * self.qty

    def refund_cents(self, units: int) -> int:
        """What a refund of ``units`` of the order's ``qty`` gives back: their share of the
        subtotal less their share of the discount (``prorated_discount``), so refunding every
        unit gives back exactly ``total_cents``, what was paid."""
        if not 0 <= units <= self.qty:
            raise InvalidInput(f"units must be from 0 to {self.qty}")
        return (self.unit_price_cents * units
                - prorated_discount(self.discount_cents, self.qty, units))

    @property
    def inspected(self) -> bool:
        """An inspected second-hand phone: the order kept the inspection's terms."""
        return self.category == INSPECTED_CATEGORY and (
            self.buyback_locked_cents is not None or self.certificate_warranty_ends_at is not None
        )

    def warranty_deadline(self) -> int | None:
        """The buyer's warranty end: the later of delivery + 180 days and the certificate's
        warranty end, so the date the buyer read on the scanned report is never cut short.
        Before delivery only the certificate's date is known (the warranty lasts at least that
        long); None for an order that has neither."""
        ends = [] if self.certificate_warranty_ends_at is None else [
            self.certificate_warranty_ends_at]
        if self.delivered_at is not None:
            ends.append(self.delivered_at + WARRANTY_WINDOW_MS)
        return max(ends) if ends else None

    @property
    def is_intent(self) -> bool:
        """A checkout not (yet) turned into an order: invisible to everyone."""
        return self.status in INTENT_STATUSES

    def to_public(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "status": self.status,
            "total_cents": self.total_cents,
            "subtotal_cents": self.subtotal_cents,
            "discount_cents": self.discount_cents,
            "coupon": self.coupon_id,
            "items": [
                {
                    "product": self.product_id,
                    "title": self.title,
                    "category": self.category,
                    "brand": self.brand,
                    "qty": self.qty,
                    "unit_price_cents": self.unit_price_cents,
                }
            ],
            "reservation": self.reservation_id,
            "sale": self.sale_id,
            "room": self.room_id,
            "anchor": self.anchor_id,
            "buyer": self.buyer_id,
            "payment_method": self.payment_method,
            "address": self.address.to_dict(),
            "created_at": self.created_at,
            "placed_at": self.placed_at,
            "shipped_at": self.shipped_at,
            "delivered_at": self.delivered_at,
            "completed_at": self.completed_at,
            "cancelled_at": self.cancelled_at,
            "warranty_ends_at": self.warranty_deadline() if self.inspected else None,
        }


@dataclass(frozen=True, slots=True)
class OrderEvent:
    order_id: str
    kind: str
    from_status: StoredStatus | None
    to_status: StoredStatus
    actor_id: str
    actor_role: str
    at: int
    detail: Mapping[str, Any] = field(default_factory=dict)

    def to_public(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "from": self.from_status,
            "to": self.to_status,
            "actor": self.actor_id,
            "role": self.actor_role,
            "at": self.at,
            "detail": dict(self.detail),
        }


@dataclass(frozen=True, slots=True)
class Payment:
    id: str
    order_id: str
    method: Literal["cod", "online"]
    amount_cents: int
    status: PaymentStatus
    created_at: int
    card_last4: str | None = None
    settled_at: int | None = None
    provider_ref: str | None = None
    reason: str | None = None

    def to_public(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "method": self.method,
            "amount_cents": self.amount_cents,
            "status": self.status,
            "card_last4": self.card_last4,
            "reason": self.reason,
        }


@dataclass(frozen=True, slots=True)
class Payout:
    """Money the platform pays the buyer beyond a refund (fake one, pay ten), recorded with the
    decision that owes it; at most one per claim. ``paid`` at once in this sandbox platform."""

    id: str
    order_id: str
    claim_id: str
    kind: PayoutKind
    amount_cents: int
    status: Literal["paid"]
    created_at: int

    def to_public(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "claim_id": self.claim_id,
            "kind": self.kind,
            "amount_cents": self.amount_cents,
            "status": self.status,
            "created_at": self.created_at,
        }


@dataclass(frozen=True, slots=True)
class Claim:
    id: str
    order_id: str
    kind: ClaimKind
    status: ClaimStatus
    created_at: int
    updated_at: int
    amount_cents: int = 0  # refund or compensation owed to the buyer
    pickup_at: int | None = None
    return_shipping_payer: Literal["platform", "buyer"] | None = None
    reason: str = ""

    def to_public(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "order_id": self.order_id,
            "kind": self.kind,
            "status": self.status,
            "amount_cents": self.amount_cents,
            "pickup_at": self.pickup_at,
            "return_shipping_payer": self.return_shipping_payer,
            "reason": self.reason,
            "created_at": self.created_at,
        }


@dataclass(frozen=True, slots=True)
class Reconciliation:
    """What one ``reconcile()`` pass did with the checkout intents a crash left behind."""

    placed: tuple[Order, ...]  # the unit was sold: the intent became its order
    voided: tuple[str, ...]  # reservation ids whose hold was gone: no order
    waiting: tuple[str, ...]  # hold still live (or the inventory unreachable): left for later


@dataclass(frozen=True, slots=True)
class BuybackQuote:
    order_id: str
    amount_cents: int
    locked_cents: int  # what the inspection promised at checkout, for the whole order
    current_cents: int  # what the inspection promises now
    quoted_at: int
    valid_until: int
    paid_cents: int  # what the buyer paid for the phones: the quote never exceeds it


@dataclass(frozen=True, slots=True)
class Figures:
    scope: Literal["room", "anchor", "brand"]
    key: str
    gmv_cents: int
    orders: int
    buyers: int
    average_order_value_cents: int
    viewers: int | None
    conversion: float | None
    repeat_buyers: int
    repurchase_rate: float | None
    # What the coupons applied to these orders took off (the anchor's coupon cost); the GMV is
    # what the buyers paid, after it.
    coupon_cost_cents: int = 0

    def to_public(self) -> dict[str, Any]:
        return {
            "scope": self.scope,
            "key": self.key,
            "gmv_cents": self.gmv_cents,
            "orders": self.orders,
            "buyers": self.buyers,
            "average_order_value_cents": self.average_order_value_cents,
            "viewers": self.viewers,
            "conversion": self.conversion,
            "repeat_buyers": self.repeat_buyers,
            "repurchase_rate": self.repurchase_rate,
            "coupon_cost_cents": self.coupon_cost_cents,
        }


@dataclass(frozen=True, slots=True)
class AnalyticsReport:
    rooms: tuple[Figures, ...]
    anchors: tuple[Figures, ...]
    brands: tuple[Figures, ...]

    def to_public(self) -> dict[str, Any]:
        return {
            "rooms": [f.to_public() for f in self.rooms],
            "anchors": [f.to_public() for f in self.anchors],
            "brands": [f.to_public() for f in self.brands],
        }
