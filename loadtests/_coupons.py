"""The coupons command: N grabbers press ``coupon:grab`` on a drop of K coupons, then an audit
of the drop against every answer they got (docs/loadtesting.md).

The spike's machinery does the work: the same workers and processes, the same open-model
schedule (every grab sent at its intended time whatever the earlier answers, its latency from
that time), the same report, percentiles and chart. The drop's count plays the stock and one
coupon per account the per-person limit, so the spike's audit reads: the books balance (left +
granted = K), exactly min(K, demand) granted, every grant acknowledged, none over K, nobody
with two.
"""

from __future__ import annotations

import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, TextIO

import aiohttp

from ._api import ServerApi
from ._report import build_report
from ._schedule import Profile
from ._spike import COUNTDOWN_S, SpikeConfig, _Progress, drive_workers, finish_report
from ._worker import raise_open_file_limit
from .exceptions import ScenarioError

__all__ = ["CouponsConfig", "run_coupons"]


@dataclass(frozen=True, slots=True)
class CouponsConfig:
    url: str
    anchor_token: str
    admin_token: str  # mints the grabbers' verified accounts (LIVEROOM_OTP_ECHO=1)
    grabbers: int
    coupons: int
    attempts: int = 2  # presses per grabber: the second tests one-per-account
    off_cents: int = 500
    valid_s: int = 3600
    profile: Profile = Profile.SPIKE
    duration_s: float | None = None
    jitter_ms: float = 1000.0  # the burst: grabs spread over 1 s
    attempt_gap_ms: float = 200.0
    processes: int = 1
    timeout_s: float = 10.0
    connect_concurrency: int = 200
    bucket_ms: int = 100
    seed: int = 1
    json_path: Path | None = None
    quiet: bool = False
    keep: bool = False

    def spike(self) -> SpikeConfig:
        """The spike's config this run drives its workers with."""
        return SpikeConfig(
            url=self.url, anchor_token=self.anchor_token, admin_token=self.admin_token,
            buyers=self.grabbers, stock=self.coupons, per_user_limit=1, qty=1,
            attempts=self.attempts, profile=self.profile, duration_s=self.duration_s,
            jitter_ms=self.jitter_ms, attempt_gap_ms=self.attempt_gap_ms,
            processes=self.processes, timeout_s=self.timeout_s,
            connect_concurrency=self.connect_concurrency, bucket_ms=self.bucket_ms,
            price_cents=1, seed=self.seed, quiet=self.quiet, keep=self.keep,
            event="coupon:grab")

    def validate(self) -> None:
        if not 1 <= self.coupons <= 100_000:
            raise ScenarioError("coupons", "the server takes 1-100,000")
        if self.attempts < 1:
            raise ScenarioError("attempts", "must be at least 1")
        if self.off_cents < 1:
            raise ScenarioError("off_cents", "must be at least 1")
        if not 10 <= self.valid_s <= 7 * 86_400:
            raise ScenarioError("valid_s", "the server takes 10-604,800")
        self.spike().validate()


async def run_coupons(config: CouponsConfig, progress_stream: TextIO | None = sys.stderr
                      ) -> dict[str, Any]:
    """Run the grab scenario against ``config.url`` and return the report."""
    config.validate()
    raise_open_file_limit()
    spike = config.spike()
    progress = _Progress(None if config.quiet else progress_stream,
                         config.grabbers * config.attempts)
    started = time.monotonic()
    async with aiohttp.ClientSession() as session:
        api = ServerApi(session, config.url)
        me = await api.me(config.anchor_token)
        if me.get("role") not in ("anchor", "admin"):
            raise ScenarioError("anchor_token", f"belongs to a {me.get('role')}, not an anchor")
        room = await api.create_room(config.anchor_token,
                                     f"coupon load test {time.strftime('%H:%M:%S')}")
        progress.say(f"minting {config.grabbers} grabber accounts ...")
        accounts = await api.mint_buyers(config.admin_token, config.grabbers,
                                         f"lc{config.seed}{room['id'][-6:]}")

        async def open_drop() -> tuple[str, float]:
            drop = await api.create_drop(config.anchor_token, room["id"], {
                "count": config.coupons, "off_cents": config.off_cents, "min_spend_cents": 0,
                "valid_s": config.valid_s})
            # Grabs open at once; the burst starts after the spike's countdown.
            return str(drop["id"]), time.time() + COUNTDOWN_S

        drop_id, results = await drive_workers(spike, progress, room["id"], accounts,
                                               open_drop, started, "dropping the coupons")
        drop = await api.get_drop(drop_id)
        if not config.keep:
            await api.end_room(config.anchor_token, room["id"])
    granted = int(drop["count"]) - int(drop["left"])
    # The drop's books in the sale's terms: left is what remains, granted what was taken.
    books = {"id": drop_id, "status": drop["status"], "remaining": int(drop["left"]),
             "held": granted, "sold": 0}
    scenario = {**{k: v for k, v in asdict(replace(spike)).items()
                   if k not in ("anchor_token", "admin_token", "json_path")},
                "profile": str(config.profile), "attempts": config.attempts,
                "coupons": config.coupons, "grabbers": config.grabbers}
    report = build_report(scenario=scenario, setup={"room": room["id"], "product": None},
                          results=sorted(results, key=lambda r: int(r["worker"])),
                          sale=books, wall_s=time.monotonic() - started)
    report["drop"] = drop_id
    report["granted"] = granted
    report["audit"]["checks"].append({
        "name": "exactly_k_granted",
        "ok": granted == min(config.coupons, report["demand"]) and granted == report["reserved"],
        "detail": f"server granted {granted}, grabbers were told {report['reserved']}, "
                  f"coupons {config.coupons}, grabbers who asked {report['demand']}"})
    report["audit"]["passed"] = all(c["ok"] for c in report["audit"]["checks"])
    finish_report(report, config.json_path, progress, event="Grab", success="granted")
    return report
