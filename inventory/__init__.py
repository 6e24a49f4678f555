"""Flash-sale stock in Redis: sales, holds, the hand-off stream to orders/.

Every atomic step is a Lua script in ``inventory/lua``; see docs/inventory.md.
"""

from ._models import (
    BuyResult,
    BuyStatus,
    Hold,
    Reservation,
    ReservationState,
    Sale,
    SaleSpec,
    SaleStatus,
    StockLevel,
)
from ._service import InventoryService, SweepOutcome, wall_clock_ms
from ._sweeper import HoldSweeper, SaleChanged
from .exceptions import (
    HoldExpired,
    HoldNotActive,
    InvalidSale,
    InventoryError,
    NotCommitted,
    NotHolder,
    ScriptFailed,
    ServiceNotRunning,
    StoreUnavailable,
    UnknownReservation,
    UnknownSale,
)

__all__ = [
    "BuyResult",
    "BuyStatus",
    "Hold",
    "HoldExpired",
    "HoldNotActive",
    "HoldSweeper",
    "InvalidSale",
    "InventoryError",
    "InventoryService",
    "NotCommitted",
    "NotHolder",
    "Reservation",
    "ReservationState",
    "Sale",
    "SaleChanged",
    "SaleSpec",
    "SaleStatus",
    "ScriptFailed",
    "ServiceNotRunning",
    "StockLevel",
    "StoreUnavailable",
    "SweepOutcome",
    "UnknownReservation",
    "UnknownSale",
    "wall_clock_ms",
]
