"""The spike command: set the scene as the anchor, run the buyer workers, audit, report."""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Any, TextIO

import aiohttp

from ._api import ServerApi
from ._chart import render_chart
from ._generators import Generators, write_report
from ._histogram import Histogram
from ._report import build_report, merge_counts, render_text
from ._schedule import Profile, ScheduleSpec, build_schedule
from ._worker import WorkerPlan, raise_open_file_limit, run_worker, worker_process_main
from .exceptions import ScenarioError

__all__ = ["SpikeConfig", "drive_workers", "finish_report", "run_spike"]

# Seconds between the sale being created and it opening: time to fan the plan out.
COUNTDOWN_S = 2


@dataclass(frozen=True, slots=True)
class SpikeConfig:
    url: str
    anchor_token: str
    # An admin's token: mints the buyers' verified accounts (the server must echo one-time
    # codes, LIVEROOM_OTP_ECHO=1). The anchor's may be the same admin token.
    admin_token: str
    buyers: int
    stock: int
    per_user_limit: int = 1
    qty: int = 1
    attempts: int | None = None  # default: per_user_limit + 1, so the limit gets tested
    profile: Profile = Profile.SPIKE
    duration_s: float | None = None  # window for ramp/steady/soak
    jitter_ms: float = 100.0
    attempt_gap_ms: float = 200.0
    processes: int = 1
    timeout_s: float = 10.0
    connect_concurrency: int = 200
    chat_per_s: float = 0.0
    churn_per_s: float = 0.0
    checkout_fraction: float = 0.0  # of successful reservations, checked out at once
    bucket_ms: int = 100
    price_cents: int = 9900
    seed: int = 1
    json_path: Path | None = None
    quiet: bool = False
    keep: bool = False  # leave the sale and room open afterwards
    # What each attempt sends: ``buy`` (a flash sale) or ``coupon:grab`` (loadtests coupons).
    event: str = "buy"

    @property
    def attempts_per_buyer(self) -> int:
        return self.attempts if self.attempts is not None else self.per_user_limit + 1

    @property
    def window_ms(self) -> float:
        default = {Profile.SPIKE: 0.0, Profile.RAMP: 10.0, Profile.STEADY: 30.0,
                   Profile.SOAK: 300.0}[self.profile]
        return 1000.0 * (self.duration_s if self.duration_s is not None else default)

    def validate(self) -> None:
        positive = {"buyers": self.buyers, "stock": self.stock,
                    "per_user_limit": self.per_user_limit, "qty": self.qty,
                    "processes": self.processes, "connect_concurrency": self.connect_concurrency,
                    "bucket_ms": self.bucket_ms, "price_cents": self.price_cents}
        for name, value in positive.items():
            if value < 1:
                raise ScenarioError(name, "must be at least 1")
        if self.stock > 1_000_000:
            raise ScenarioError("stock", "the server accepts at most 1,000,000")
        if self.timeout_s <= 0:
            raise ScenarioError("timeout", "must be positive")
        if self.chat_per_s < 0 or self.churn_per_s < 0:
            raise ScenarioError("chat/churn", "rates must not be negative")
        if not 0.0 <= self.checkout_fraction <= 1.0:
            raise ScenarioError("checkout", "must be a fraction between 0 and 1")
        if self.processes > self.buyers:
            raise ScenarioError("processes", "more processes than buyers")
        if not self.url.startswith(("http://", "https://")):
            raise ScenarioError("url", "must start with http:// or https://")


class _Progress:
    """One line on stderr: rewritten in place on a terminal, printed once a second otherwise."""

    def __init__(self, stream: TextIO | None, total: int) -> None:
        self.stream = stream
        self.total = total
        self.tty = stream is not None and stream.isatty()
        self.last_print = 0.0
        self.snapshots: dict[int, dict[str, Any]] = {}

    def update(self, snapshot: dict[str, Any]) -> None:
        self.snapshots[int(snapshot["worker"])] = snapshot
        if self.stream is None:
            return
        now = time.monotonic()
        if not self.tty and now - self.last_print < 1.0:
            return
        self.last_print = now
        snaps = list(self.snapshots.values())
        latency = Histogram()
        for snap in snaps:
            latency.merge(Histogram.from_dict(snap["latency"]))
        p99 = latency.percentile(99)
        statuses = ", ".join(f"{k} {v}" for k, v in merge_counts(
            [s["statuses"] for s in snaps]).items())
        line = (f"sent {sum(s['sent'] for s in snaps)}/{self.total}  answered "
                f"{sum(s['answered'] for s in snaps)}  p99 "
                f"{'-' if p99 is None else f'{p99 / 1000:.1f} ms'}  [{statuses}]")
        self.stream.write(("\r\x1b[2K" + line) if self.tty else line + "\n")
        self.stream.flush()

    def finish(self) -> None:
        if self.stream is not None and self.tty:
            self.stream.write("\n")
            self.stream.flush()

    def say(self, text: str) -> None:
        if self.stream is not None:
            self.stream.write(text + "\n")
            self.stream.flush()


class _Workers(Generators):
    """The buyer workers: in this event loop when ``processes == 1``, else spawned processes."""

    def __init__(self, plans: list[WorkerPlan]) -> None:
        super().__init__(run_worker, worker_process_main,
                         [(f"loadtests-worker-{plan.index}", (plan,)) for plan in plans],
                         "a buyer worker process")
        self.plans = plans

    async def gather_type(self, kind: str, progress: _Progress | None) -> list[dict[str, Any]]:
        def other(message: dict[str, Any]) -> None:
            if progress is not None and message.get("type") == "progress":
                progress.update(message)

        return await self.gather(kind, other)


def finish_report(report: dict[str, Any], json_path: Path | None, progress: _Progress, *,
                  event: str = "Buy", success: str = "reserved") -> None:
    """The report as JSON with its chart beside it when asked (``write_report``), and its text
    on the progress stream; ``event`` and ``success`` name what the chart counts."""
    if json_path is not None:
        write_report(report, json_path, partial(render_chart, event=event, success=success))
    progress.say(render_text(report))


async def drive_workers(config: SpikeConfig, progress: _Progress, room_id: str,
                        accounts: list[tuple[str, str]],
                        open_target: Callable[[], Awaitable[tuple[str, float]]],
                        started: float, opening: str) -> tuple[str, list[dict[str, Any]]]:
    """The workers' part of a run, whatever they press for (``config.event``): connect every
    buyer into the room, then ``open_target()`` (the sale or drop id, and the wall-clock time
    it opens), tell the workers to go, and gather their results. Shared by ``spike`` and
    ``coupons``."""
    workers = _Workers(_plans(config, room_id, accounts))
    try:
        workers.start()
        progress.say(f"connecting {config.buyers} buyers in {len(workers.plans)} "
                     f"process(es) to room {room_id} ...")
        ready = await workers.gather_type("ready", None)
        connected = sum(int(r["connected"]) for r in ready)
        progress.say(f"{connected} connected, {sum(int(r['failed']) for r in ready)} failed "
                     f"in {time.monotonic() - started:.1f} s; {opening}")
        target_id, t0 = await open_target()
        await workers.broadcast({"type": "go", "sale": target_id, "t0": t0})
        results = await workers.gather_type("done", progress)
        progress.finish()
    finally:
        await workers.close()
    return target_id, results


def _plans(config: SpikeConfig, room_id: str,
           accounts: list[tuple[str, str]]) -> list[WorkerPlan]:
    offsets = build_schedule(ScheduleSpec(
        profile=config.profile, buyers=config.buyers, attempts=config.attempts_per_buyer,
        window_ms=config.window_ms, jitter_ms=config.jitter_ms,
        attempt_gap_ms=config.attempt_gap_ms, seed=config.seed))
    per = math.ceil(config.buyers / config.processes)
    plans = []
    for index in range(config.processes):
        first = index * per
        mine = offsets[first:first + per]
        if not mine:
            continue
        plans.append(WorkerPlan(
            index=index, url=config.url, room_id=room_id, first_buyer=first, offsets_ms=mine,
            qty=config.qty, per_user_limit=config.per_user_limit, timeout_s=config.timeout_s,
            connect_concurrency=max(1, config.connect_concurrency // config.processes),
            chat_per_s=config.chat_per_s / config.processes,
            churn_per_s=config.churn_per_s / config.processes, bucket_ms=config.bucket_ms,
            seed=config.seed, checkout_fraction=config.checkout_fraction,
            price_cents=config.price_cents, buyer_accounts=accounts[first:first + per],
            event=config.event))
    return plans


async def run_spike(config: SpikeConfig, progress_stream: TextIO | None = sys.stderr
                    ) -> dict[str, Any]:
    """Run the scenario against ``config.url`` and return the report (see docs/loadtesting.md).

    Writes ``config.json_path`` and the chart beside it (same name, ``.html``) when given.
    """
    config.validate()
    raise_open_file_limit()
    progress = _Progress(None if config.quiet else progress_stream,
                         config.buyers * config.attempts_per_buyer)
    started = time.monotonic()
    async with aiohttp.ClientSession() as session:
        api = ServerApi(session, config.url)
        me = await api.me(config.anchor_token)
        if me.get("role") not in ("anchor", "admin"):
            raise ScenarioError("anchor_token", f"belongs to a {me.get('role')}, not an anchor")
        room = await api.create_room(config.anchor_token, f"load test {time.strftime('%H:%M:%S')}")
        product = await api.create_product(config.anchor_token, "load-test item",
                                           config.price_cents)
        progress.say(f"minting {config.buyers} buyer accounts ...")
        accounts = await api.mint_buyers(config.admin_token, config.buyers,
                                         f"lt{config.seed}{room['id'][-6:]}")

        async def open_sale() -> tuple[str, float]:
            duration_s = math.ceil(config.window_ms / 1000 + config.attempts_per_buyer
                                   * config.attempt_gap_ms / 1000 + config.timeout_s + 60)
            asked_at = time.time() * 1000
            opened = await api.create_sale(config.anchor_token, room["id"], {
                "product_id": product["id"], "stock": config.stock,
                "price_cents": config.price_cents, "per_user_limit": config.per_user_limit,
                "starts_in_s": COUNTDOWN_S, "duration_s": min(86_400, duration_s),
                "hold_s": 3600})
            # The server's clock decides when the sale opens; map it onto ours.
            skew_ms = int(opened["server_time"]) - (asked_at + time.time() * 1000) / 2
            return opened["id"], (int(opened["starts_at"]) - skew_ms) / 1000.0 + 0.02

        sale_id, results = await drive_workers(config, progress, room["id"], accounts,
                                               open_sale, started, "opening the sale")
        final_sale = await api.get_sale(sale_id)
        figures = (await api.room_figures(config.anchor_token, room["id"])
                   if config.checkout_fraction > 0 else None)
        if not config.keep:
            await api.end_sale(config.anchor_token, sale_id)
            await api.end_room(config.anchor_token, room["id"])
    scenario = {**{k: v for k, v in asdict(config).items()
                   if k not in ("anchor_token", "admin_token", "json_path")},
                "profile": str(config.profile), "attempts": config.attempts_per_buyer}
    report = build_report(scenario=scenario, setup={"room": room["id"], "product": product["id"]},
                          results=sorted(results, key=lambda r: int(r["worker"])),
                          sale=final_sale, wall_s=time.monotonic() - started,
                          figures=figures)
    finish_report(report, config.json_path, progress)
    return report
