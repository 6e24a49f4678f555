"""Checking the orders the server holds against the checkouts the buyers were told succeeded.

Each buyer reads its own orders (``GET /api/orders`` with its own token), so nothing here needs
more than the public protocol; the per-buyer tallies merge by simple addition.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["OrderTally", "checkout_address", "tally_orders"]

# Bad orders listed in the report at most; the counts are always complete.
MAX_LISTED = 20
_COUNTS = ("found", "units", "gmv_cents", "acked", "acked_units", "missing", "unexpected",
           "fetch_failed", "bad_total_count")


def checkout_address(buyer_number: int) -> dict[str, str]:
    """A valid delivery address for simulated buyer ``buyer_number``."""
    return {"name": f"Load Buyer {buyer_number}", "phone": f"+1555{buyer_number % 10**7:07d}",
            "line1": f"{buyer_number} Load Test Way", "city": "Testville"}


@dataclass
class OrderTally:
    """What the server's order books say about the checkouts of one sale."""

    found: int = 0  # orders of the sale the server holds for the buyers that were asked
    units: int = 0
    gmv_cents: int = 0
    acked: int = 0  # orders the buyers were told about
    acked_units: int = 0
    missing: int = 0  # acknowledged orders the server does not list
    unexpected: int = 0  # orders nobody was told about (only possible after a lost answer)
    fetch_failed: int = 0  # buyers whose order list could not be read
    bad_totals: list[dict[str, Any]] = field(default_factory=list)
    bad_total_count: int = 0

    def add_buyer(self, orders: Sequence[Mapping[str, Any]], sale_id: str, price_cents: int,
                  acked: Mapping[str, int]) -> None:
        """Count one buyer's orders of ``sale_id``; ``acked`` maps order id to units."""
        mine = [o for o in orders if o.get("sale") == sale_id]
        ids = {str(o.get("id")) for o in mine}
        self.acked += len(acked)
        self.acked_units += sum(acked.values())
        self.missing += sum(1 for order_id in acked if order_id not in ids)
        self.unexpected += sum(1 for order_id in ids if order_id not in acked)
        for order in mine:
            items = order.get("items") or []
            units = sum(int(item.get("qty", 0)) for item in items)
            total = int(order.get("total_cents", -1))
            self.found += 1
            self.units += units
            self.gmv_cents += max(0, total)
            unit_prices = {int(item.get("unit_price_cents", -1)) for item in items}
            if total != units * price_cents or unit_prices != {price_cents}:
                self.bad_total_count += 1
                if len(self.bad_totals) < MAX_LISTED:
                    self.bad_totals.append({"order": order.get("id"), "total_cents": total,
                                            "units": units, "expected_cents": units * price_cents})
            if order.get("id") in acked and acked[str(order["id"])] != units:
                self.bad_total_count += 1
                if len(self.bad_totals) < MAX_LISTED:
                    self.bad_totals.append({"order": order.get("id"), "units": units,
                                            "acked_units": acked[str(order["id"])]})

    def merge(self, other: OrderTally) -> None:
        for name in _COUNTS:
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.bad_totals = (self.bad_totals + other.bad_totals)[:MAX_LISTED]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> OrderTally:
        counts = {name: int(raw.get(name, 0)) for name in _COUNTS}
        return cls(**counts, bad_totals=list(raw.get("bad_totals", [])))


def tally_orders(raws: Sequence[Mapping[str, Any]]) -> OrderTally:
    merged = OrderTally()
    for raw in raws:
        merged.merge(OrderTally.from_dict(raw))
    return merged
