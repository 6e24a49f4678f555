"""Load-testing toolkit: drives simulated flash-sale spikes at a running liveroom server.

An outside client of the public protocol (docs/protocol.md); it imports nothing from the
server's packages. Run ``python -m loadtests spike --help`` for a flash-sale spike (optionally
with checkouts) and its audit, ``python -m loadtests auction --help`` for an auction's
bidding war and its audit, ``python -m loadtests coupons --help`` for a coupon-drop burst
and its audit, ``python -m loadtests.soak --help`` for a long steady run that
watches the server's memory; see docs/loadtesting.md.
"""

from ._auction import AuctionConfig, BidRecord, audit_auction, run_auction
from ._client import LeanSocket
from ._coupons import CouponsConfig, run_coupons
from ._histogram import Histogram
from ._orders import OrderTally
from ._report import CheckoutFacts, audit, build_report, checkout_checks, render_text
from ._schedule import Profile, ScheduleSpec, build_schedule
from ._spike import SpikeConfig, run_spike
from .exceptions import (
    ConnectFailed,
    LoadTestError,
    ProtocolViolation,
    ScenarioError,
    ServerRefused,
)

__all__ = [
    "AuctionConfig",
    "BidRecord",
    "CheckoutFacts",
    "ConnectFailed",
    "CouponsConfig",
    "Histogram",
    "LeanSocket",
    "LoadTestError",
    "OrderTally",
    "Profile",
    "ProtocolViolation",
    "ScenarioError",
    "ScheduleSpec",
    "ServerRefused",
    "SpikeConfig",
    "audit",
    "audit_auction",
    "build_report",
    "build_schedule",
    "checkout_checks",
    "render_text",
    "run_auction",
    "run_coupons",
    "run_spike",
]
