"""Redis names the orders package reads. They belong to the hand-off stream's schema
(``handoff.schema``), which the inventory writes by; docs/architecture.md."""

from __future__ import annotations

from handoff import schema

__all__ = ["HANDOFF_GROUP", "SALES_SET", "UNREAD_SALES", "handoff_stream"]

# Consumer group on every sale's hand-off stream.
HANDOFF_GROUP = schema.CONSUMER_GROUP
# Set of the ids of the open sales, kept by the inventory: whose streams to read.
SALES_SET = schema.SALES_KEY
# Set of the sales whose streams may hold entries not recorded yet: read until they are done.
UNREAD_SALES = schema.UNREAD_KEY
handoff_stream = schema.stream_key
