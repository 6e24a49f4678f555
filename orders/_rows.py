"""What the two order stores (SQLite ``_store.py``, PostgreSQL ``_pgstore.py``) do alike: which
columns a change may set, what an ``OrderChange`` expects besides the order's status, and the
values of every row they write or read. Each backend keeps only its SQL: placeholders, locking,
its driver's errors."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any, Literal, cast

from ._models import INTENT_STATUSES, Address, Claim, Order, OrderEvent, Payment, Payout
from .interfaces import ReservationInfo, ReservationState

if TYPE_CHECKING:
    from ._store import OrderChange

__all__ = [
    "CLAIM_COLUMNS",
    "INTENT_SQL",
    "ORDER_COLUMNS",
    "ORDER_FIELDS",
    "PAYMENT_COLUMNS",
    "PAYOUT_COLUMNS",
    "SETTLED_MARK",
    "STATE_RANK",
    "Expectation",
    "check_updatable",
    "claim_values",
    "event_of",
    "event_values",
    "expectations",
    "order_of",
    "order_values",
    "payment_values",
    "payout_values",
    "reservation_of",
    "reservation_values",
    "update_of",
]

# Reservation states only move forward: reserved → committed/released/expired → restocked.
STATE_RANK: Mapping[str, int] = {
    "reserved": 0,
    "committed": 1,
    "released": 1,
    "expired": 1,
    "restocked": 2,
}

# What schema_v5's triggers say when a change would pay a compensation on a returned or refunded
# order, or refund a compensated one: the other settlement won, as a failed compare-and-set.
SETTLED_MARK = "order_settled"

ORDER_FIELDS = tuple(f.name for f in fields(Order))
ORDER_COLUMNS = ", ".join(ORDER_FIELDS)
_UPDATABLE = frozenset(ORDER_FIELDS) - {"id", "reservation_id", "address"}
INTENT_SQL = ", ".join(f"'{status}'" for status in sorted(INTENT_STATUSES))
_RESERVATION_FIELDS = tuple(f.name for f in fields(ReservationInfo))
# The columns each ``*_values`` below gives values for, in its order.
PAYMENT_COLUMNS = ("id, order_id, method, amount_cents, status, created_at, card_last4, "
                   "settled_at, provider_ref, reason")
CLAIM_COLUMNS = ("id, order_id, kind, status, created_at, updated_at, amount_cents, pickup_at, "
                 "return_shipping_payer, reason")
PAYOUT_COLUMNS = "id, order_id, claim_id, kind, amount_cents, status, created_at"

# What a backend reads for an ``Expectation``: each names one query of each store.
ExpectationQuery = Literal["payment_status", "claim_status", "pending_charge",
                           "counterfeit_claim"]


@dataclass(frozen=True, slots=True)
class Expectation:
    """One thing a change expects besides the order's status: the first column of the first row
    the backend's ``query`` reads with ``args`` must be ``wanted`` (None: no row at all)."""

    query: ExpectationQuery
    args: tuple[Any, ...]
    wanted: str | None = None


def check_updatable(change: OrderChange) -> None:
    """ValueError if the change sets a column that never changes (a bug, not a refusal)."""
    bad = set(change.fields) - _UPDATABLE
    if bad:
        raise ValueError(f"not updatable: {sorted(bad)}")


def expectations(change: OrderChange) -> list[Expectation]:
    """What must hold for the change to be applied, besides the order being in
    ``change.expected`` (each backend checks that with its own lock)."""
    found: list[Expectation] = []
    if change.payment_expected is not None:
        payment_id, payment_status = change.payment_expected
        found.append(Expectation("payment_status", (payment_id,), payment_status))
    if change.claim_expected is not None:
        claim_id, claim_status = change.claim_expected
        found.append(Expectation("claim_status", (claim_id,), claim_status))
    if change.no_pending_charge:
        found.append(Expectation("pending_charge",
                                 (change.order_id, change.charges_started_before)))
    if change.no_counterfeit_claim:
        found.append(Expectation("counterfeit_claim", (change.order_id,)))
    return found


def update_of(change: OrderChange) -> tuple[list[str], list[Any]]:
    """The order's columns the change sets (status, updated_at, then its fields), and their
    values."""
    return (["status", "updated_at", *change.fields],
            [change.status, change.at, *change.fields.values()])


def order_values(order: Order) -> list[Any]:
    """The ``orders`` row: ``ORDER_FIELDS`` (the address as JSON), then the delivery phone and
    door keys."""
    values = [getattr(order, name) for name in ORDER_FIELDS]
    values[ORDER_FIELDS.index("address")] = json.dumps(order.address.to_dict())
    return [*values, order.address.phone_key, order.address.door_key]


def order_of(row: Any) -> Order:
    """An ``Order`` from a row with the columns ``ORDER_FIELDS`` (by name)."""
    values = {name: row[name] for name in ORDER_FIELDS}
    values["address"] = Address(**json.loads(row["address"]))
    return Order(**values)


def reservation_values(res: ReservationInfo, state: str, now: int) -> tuple[Any, ...]:
    """The ``reservations`` row of ``res`` in ``state``, created and updated at ``now``."""
    return (res.id, res.sale_id, res.room_id, res.product_id, res.anchor_id, res.user_id,
            res.qty, res.price_cents, res.title, res.category, res.brand, res.expires_at,
            state, STATE_RANK[state], now, now)


def reservation_of(row: Any) -> ReservationInfo:
    """A ``ReservationInfo`` from a ``reservations`` row (by name)."""
    values = {name: row[name] for name in _RESERVATION_FIELDS}
    values["state"] = cast(ReservationState, values["state"])
    return ReservationInfo(**values)


def event_values(event: OrderEvent) -> tuple[Any, ...]:
    """An ``order_events`` row: order_id, kind, from_status, to_status, actor_id, actor_role,
    at, detail (JSON)."""
    return (event.order_id, event.kind, event.from_status, event.to_status, event.actor_id,
            event.actor_role, event.at, json.dumps(dict(event.detail), sort_keys=True))


def event_of(row: Any) -> OrderEvent:
    """An ``OrderEvent`` from an ``order_events`` row (by name)."""
    return OrderEvent(
        order_id=row["order_id"], kind=row["kind"], from_status=row["from_status"],
        to_status=row["to_status"], actor_id=row["actor_id"], actor_role=row["actor_role"],
        at=row["at"], detail=json.loads(row["detail"]),
    )


def payment_values(p: Payment) -> tuple[Any, ...]:
    return (p.id, p.order_id, p.method, p.amount_cents, p.status, p.created_at, p.card_last4,
            p.settled_at, p.provider_ref, p.reason)


def claim_values(c: Claim) -> tuple[Any, ...]:
    return (c.id, c.order_id, c.kind, c.status, c.created_at, c.updated_at, c.amount_cents,
            c.pickup_at, c.return_shipping_payer, c.reason)


def payout_values(p: Payout) -> tuple[Any, ...]:
    return (p.id, p.order_id, p.claim_id, p.kind, p.amount_cents, p.status, p.created_at)
