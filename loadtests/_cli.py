"""``python -m loadtests spike ...``, ``python -m loadtests auction ...`` and
``python -m loadtests coupons ...``: see docs/loadtesting.md."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from ._auction import AuctionConfig, run_auction
from ._coupons import CouponsConfig, run_coupons
from ._schedule import Profile
from ._spike import SpikeConfig, run_spike
from .exceptions import LoadTestError

__all__ = ["main", "parse_args"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m loadtests",
                                     description="Drive simulated purchase spikes at liveroom.")
    commands = parser.add_subparsers(dest="command", required=True)
    spike = commands.add_parser("spike", help="run a flash-sale scenario and audit it")
    spike.add_argument("--url", required=True, help="server base URL, e.g. http://127.0.0.1:8080")
    spike.add_argument("--admin-token", required=True,
                       help="token of an admin (liveroom token --role admin): mints the buyers' "
                            "accounts; the server must run with LIVEROOM_OTP_ECHO=1")
    spike.add_argument("--anchor-token", default=None,
                       help="token of the anchor who runs the sale (default: the admin)")
    spike.add_argument("--buyers", type=int, required=True)
    spike.add_argument("--stock", type=int, required=True)
    spike.add_argument("--per-user-limit", type=int, default=1)
    spike.add_argument("--qty", type=int, default=1, help="units asked per buy")
    spike.add_argument("--attempts", type=int, default=None,
                       help="buys per buyer (default: per-user limit + 1)")
    spike.add_argument("--profile", choices=[p.value for p in Profile], default="spike")
    spike.add_argument("--duration", type=float, default=None,
                       help="arrival window in seconds for ramp/steady/soak")
    spike.add_argument("--jitter-ms", type=float, default=100.0,
                       help="spike: arrivals spread uniformly over this many ms")
    spike.add_argument("--attempt-gap-ms", type=float, default=200.0,
                       help="time between one buyer's attempts")
    spike.add_argument("--processes", type=int, default=1)
    spike.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for an ack")
    spike.add_argument("--connect-concurrency", type=int, default=200)
    spike.add_argument("--chat-rate", type=float, default=0.0, help="chat messages per second")
    spike.add_argument("--churn-rate", type=float, default=0.0,
                       help="extra viewers joining and leaving per second")
    spike.add_argument("--checkout", type=float, default=0.0, metavar="FRACTION",
                       help="check out this fraction (0..1) of successful reservations")
    spike.add_argument("--bucket-ms", type=int, default=100, help="throughput bucket width")
    spike.add_argument("--seed", type=int, default=1)
    spike.add_argument("--json", type=Path, default=None, dest="json_path",
                       help="write the report here, and the chart beside it (.html)")
    spike.add_argument("--keep", action="store_true", help="leave the sale and room open")
    spike.add_argument("--quiet", action="store_true", help="no progress display")

    auction = commands.add_parser("auction", help="run a bidding war in a live auction and "
                                                  "audit it")
    auction.add_argument("--url", required=True)
    auction.add_argument("--admin-token", required=True,
                         help="token of an admin: mints the bidders' accounts; the server must "
                              "run with LIVEROOM_OTP_ECHO=1")
    auction.add_argument("--anchor-token", default=None,
                         help="token of the anchor who runs the auction (default: the admin)")
    auction.add_argument("--bidders", type=int, required=True)
    auction.add_argument("--bids", type=int, default=1, help="bids per bidder")
    auction.add_argument("--duration", type=int, default=10, help="the auction's length (s)")
    auction.add_argument("--war", type=float, default=3.0,
                         help="bids spread over this many seconds before the scheduled end")
    auction.add_argument("--extend", type=int, default=2, help="the auction's extend_s")
    auction.add_argument("--sudden-death", action="store_true")
    auction.add_argument("--start-cents", type=int, default=10_000)
    auction.add_argument("--timeout", type=float, default=10.0,
                         help="seconds to wait for an ack")
    auction.add_argument("--connect-concurrency", type=int, default=200)
    auction.add_argument("--processes", type=int, default=1,
                         help="bidder processes (each holds its share of the sockets)")
    auction.add_argument("--bucket-ms", type=int, default=100)
    auction.add_argument("--seed", type=int, default=1)
    auction.add_argument("--json", type=Path, default=None, dest="json_path",
                         help="write the report here, and the chart beside it (.html)")
    auction.add_argument("--quiet", action="store_true")

    coupons = commands.add_parser("coupons", help="run a coupon-drop burst and audit it")
    coupons.add_argument("--url", required=True)
    coupons.add_argument("--admin-token", required=True,
                         help="token of an admin: mints the grabbers' accounts; the server must "
                              "run with LIVEROOM_OTP_ECHO=1")
    coupons.add_argument("--anchor-token", default=None,
                         help="token of the anchor who drops the coupons (default: the admin)")
    coupons.add_argument("--grabbers", type=int, required=True)
    coupons.add_argument("--coupons", type=int, required=True, help="the drop's count")
    coupons.add_argument("--attempts", type=int, default=2, help="presses per grabber")
    coupons.add_argument("--off-cents", type=int, default=500)
    coupons.add_argument("--valid-s", type=int, default=3600)
    coupons.add_argument("--profile", choices=[p.value for p in Profile], default="spike")
    coupons.add_argument("--duration", type=float, default=None,
                         help="arrival window in seconds for ramp/steady/soak")
    coupons.add_argument("--jitter-ms", type=float, default=1000.0,
                         help="spike: first presses spread uniformly over this many ms")
    coupons.add_argument("--attempt-gap-ms", type=float, default=200.0)
    coupons.add_argument("--processes", type=int, default=1)
    coupons.add_argument("--timeout", type=float, default=10.0)
    coupons.add_argument("--connect-concurrency", type=int, default=200)
    coupons.add_argument("--bucket-ms", type=int, default=100)
    coupons.add_argument("--seed", type=int, default=1)
    coupons.add_argument("--json", type=Path, default=None, dest="json_path",
                         help="write the report here, and the chart beside it (.html)")
    coupons.add_argument("--keep", action="store_true", help="leave the room open")
    coupons.add_argument("--quiet", action="store_true")
    return parser


def parse_auction_args(args: argparse.Namespace) -> AuctionConfig:
    return AuctionConfig(
        url=args.url, anchor_token=args.anchor_token or args.admin_token,
        admin_token=args.admin_token, bidders=args.bidders, bids_per_bidder=args.bids,
        duration_s=args.duration, war_s=args.war, extend_s=args.extend,
        sudden_death=args.sudden_death, start_cents=args.start_cents, timeout_s=args.timeout,
        connect_concurrency=args.connect_concurrency, bucket_ms=args.bucket_ms, seed=args.seed,
        processes=args.processes, json_path=args.json_path, quiet=args.quiet)


def parse_coupons_args(args: argparse.Namespace) -> CouponsConfig:
    return CouponsConfig(
        url=args.url, anchor_token=args.anchor_token or args.admin_token,
        admin_token=args.admin_token, grabbers=args.grabbers, coupons=args.coupons,
        attempts=args.attempts, off_cents=args.off_cents, valid_s=args.valid_s,
        profile=Profile(args.profile), duration_s=args.duration, jitter_ms=args.jitter_ms,
        attempt_gap_ms=args.attempt_gap_ms, processes=args.processes, timeout_s=args.timeout,
        connect_concurrency=args.connect_concurrency, bucket_ms=args.bucket_ms,
        seed=args.seed, json_path=args.json_path, quiet=args.quiet, keep=args.keep)


def parse_args(argv: Sequence[str]) -> SpikeConfig | AuctionConfig | CouponsConfig:
    args = _parser().parse_args(list(argv))
    if args.command == "auction":
        return parse_auction_args(args)
    if args.command == "coupons":
        return parse_coupons_args(args)
    return SpikeConfig(
        url=args.url, anchor_token=args.anchor_token or args.admin_token,
        admin_token=args.admin_token, buyers=args.buyers, stock=args.stock,
        per_user_limit=args.per_user_limit, qty=args.qty, attempts=args.attempts,
        profile=Profile(args.profile), duration_s=args.duration, jitter_ms=args.jitter_ms,
        attempt_gap_ms=args.attempt_gap_ms, processes=args.processes, timeout_s=args.timeout,
        connect_concurrency=args.connect_concurrency, chat_per_s=args.chat_rate,
        churn_per_s=args.churn_rate, checkout_fraction=args.checkout,
        bucket_ms=args.bucket_ms, seed=args.seed,
        json_path=args.json_path, quiet=args.quiet, keep=args.keep)


def main(argv: Sequence[str] | None = None) -> int:
    """Exit status: 0 when the audit passed, 1 when it failed, 2 on a setup error."""
    import uvloop

    config = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        if isinstance(config, AuctionConfig):
            report = uvloop.run(run_auction(config))
        elif isinstance(config, CouponsConfig):
            report = uvloop.run(run_coupons(config))
        else:
            report = uvloop.run(run_spike(config))
    except LoadTestError as exc:
        print(f"error ({exc.code}): {exc}", file=sys.stderr)
        return 2
    return 0 if report["audit"]["passed"] else 1
