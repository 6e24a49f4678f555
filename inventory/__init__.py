"""Flash-sale stock in Redis: sales, holds, the hand-off stream to orders/.

Every atomic step is a Lua script in ``inventory/lua``; see docs/inventory.md.
"""

from ._auctions import (
    INCREMENT_BANDS,
    MAX_BID_CENTS,
    Auction,
    AuctionService,
    AuctionSpec,
    AuctionState,
    BidResult,
    BidStatus,
    Closing,
    increment_cents,
)
from ._batcher import Batcher
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
from ._service import UNKNOWN_SALE_GRACE_MS, InventoryService, SweepOutcome, wall_clock_ms
from ._sweeper import HoldSweeper, SaleChanged
from .exceptions import (
    HoldExpired,
    HoldNotActive,
    InvalidAuction,
    InvalidSale,
    InventoryError,
    NotCommitted,
    NotHolder,
    ScriptFailed,
    ServiceNotRunning,
    StoreUnavailable,
    UnknownAuction,
    UnknownReservation,
    UnknownSale,
)

__all__ = [
    "INCREMENT_BANDS",
    "MAX_BID_CENTS",
    "UNKNOWN_SALE_GRACE_MS",
    "Auction",
    "AuctionService",
    "AuctionSpec",
    "AuctionState",
    "Batcher",
    "BidResult",
    "BidStatus",
    "BuyResult",
    "BuyStatus",
    "Closing",
    "Hold",
    "HoldExpired",
    "HoldNotActive",
    "HoldSweeper",
    "InvalidAuction",
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
    "UnknownAuction",
    "UnknownReservation",
    "UnknownSale",
    "increment_cents",
    "wall_clock_ms",
]
