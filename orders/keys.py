"""Redis names the orders package reads. The inventory package writes them; both follow
docs/architecture.md."""

from __future__ import annotations

__all__ = ["HANDOFF_GROUP", "SALES_SET", "handoff_stream"]

# Consumer group on every sale's hand-off stream.
HANDOFF_GROUP = "orders"
# Set of live sale ids, maintained by the inventory package.
# The inventory keeps the ids of its open sales here (inventory.keys.ACTIVE_SALES).
SALES_SET = "inventory:active_sales"


def handoff_stream(sale_id: str) -> str:
    # The hash tag keeps the stream in the same cluster slot as the sale's other keys.
    return f"{{sale:{sale_id}}}:stream"
