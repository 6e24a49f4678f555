"""What a flash sale (``sales.py``) and an auction (``auctions.py``) have alike as clients see
them: a lot of one product offered in a room, with a status, a window and a hold (how long a
reserved or won unit waits for checkout)."""

from __future__ import annotations

from typing import Any, Protocol

from .payload import Payload

__all__ = ["Lot", "hold_s_of", "lot_view"]

MIN_HOLD_S, MAX_HOLD_S = 10, 3_600
DEFAULT_HOLD_S = 120


class Lot(Protocol):
    """What ``lot_view`` reads of an ``inventory.Sale`` or ``inventory.Auction``."""

    @property
    def id(self) -> str: ...
    @property
    def room_id(self) -> str: ...
    @property
    def product_id(self) -> str: ...
    @property
    def title(self) -> str: ...
    @property
    def starts_at(self) -> int: ...
    @property
    def hold_ms(self) -> int: ...
    @property
    def ended_reason(self) -> str | None: ...


def lot_view(lot: Lot, status: str, ends_at: int, server_time: int) -> dict[str, Any]:
    """The fields a sale's and an auction's views share (``docs/protocol.md``), with the lot's
    ``status`` and ``ends_at`` as its owner reads them, at ``server_time``."""
    return {
        "id": lot.id,
        "room": lot.room_id,
        "product": lot.product_id,
        "title": lot.title,
        "status": status,
        "starts_at": lot.starts_at,
        "ends_at": ends_at,
        "hold_s": lot.hold_ms // 1000,
        "ended_reason": lot.ended_reason,
        "server_time": server_time,
    }


def hold_s_of(payload: Payload) -> int:
    """The ``hold_s`` a new lot's request asks for: 10-3,600 s, 120 when not given."""
    return payload.integer("hold_s", minimum=MIN_HOLD_S, maximum=MAX_HOLD_S, required=False,
                           default=DEFAULT_HOLD_S)
