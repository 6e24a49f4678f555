"""The auction command: N bidders and a bidding war in the last seconds of a live auction, then
an audit of the outcome against every answer the bidders got (docs/loadtesting.md).

The open model of ``spike``: every bid is sent at its intended time whether or not earlier
answers came back, and its latency runs from that time. A bidder bids what it last saw as the
minimum next bid (from its acks and the room's ``auction`` pushes) plus a few increments.
"""

from __future__ import annotations

import asyncio
import math
import random
import sys
import time
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, TextIO

import aiohttp

from ._api import ServerApi
from ._channel import Channel, PipeChannel
from ._chart import render_chart
from ._client import LeanSocket
from ._generators import Generators, write_report
from ._histogram import Histogram
from ._report import latency_summary, merge_histograms
from ._worker import raise_open_file_limit
from .exceptions import LoadTestError, ScenarioError

__all__ = ["AuctionConfig", "BidRecord", "audit_auction", "run_auction"]

# Seconds between the auction's creation and the first bid: time to map the clocks.
LEAD_IN_S = 1.0
ACCEPTED = ("leading", "outbid")
KNOWN_STATUSES = frozenset({"leading", "outbid", "too_low", "already_leading", "not_started",
                            "ended", "banned", "not_in_room", "verification_required",
                            "rate_limited", "invalid"})


@dataclass(frozen=True, slots=True)
class AuctionConfig:
    url: str
    anchor_token: str
    admin_token: str  # mints the bidders' verified accounts (LIVEROOM_OTP_ECHO=1)
    bidders: int
    bids_per_bidder: int = 1
    duration_s: int = 10  # the auction's scheduled length
    war_s: float = 3.0  # the bids are spread over the last war_s seconds before the end
    extend_s: int = 2
    sudden_death: bool = False
    start_cents: int = 10_000
    timeout_s: float = 10.0
    connect_concurrency: int = 200
    bucket_ms: int = 100
    seed: int = 1
    # Bidder processes: each holds its share of the sockets (a process reading thousands of
    # sockets' pushes falls behind, and its lag counts in the latency).
    processes: int = 1
    json_path: Path | None = None
    quiet: bool = False

    def validate(self) -> None:
        if self.processes > self.bidders:
            raise ScenarioError("processes", "more processes than bidders")
        for name, value in (("bidders", self.bidders), ("bids_per_bidder", self.bids_per_bidder),
                            ("processes", self.processes),
                            ("connect_concurrency", self.connect_concurrency),
                            ("bucket_ms", self.bucket_ms), ("start_cents", self.start_cents)):
            if value < 1:
                raise ScenarioError(name, "must be at least 1")
        if not 5 <= self.duration_s <= 600:
            raise ScenarioError("duration", "the server takes 5-600 s")
        if not 0 < self.war_s <= self.duration_s - LEAD_IN_S:
            raise ScenarioError("war", "must be positive and fit in the auction after its start")
        if not self.sudden_death and not 1 <= self.extend_s <= 120:
            raise ScenarioError("extend", "the server takes 1-120 s")
        if self.timeout_s <= 0:
            raise ScenarioError("timeout", "must be positive")
        if not self.url.startswith(("http://", "https://")):
            raise ScenarioError("url", "must start with http:// or https://")


@dataclass(slots=True)
class BidRecord:
    """One bid as its bidder saw it: what was sent when, and the answer."""

    bidder: int
    amount: int
    sent_ms: float  # server clock (ms) when sent, as mapped from ours
    status: str = "timeout"
    latency_us: float = 0.0
    price_cents: int | None = None
    min_next_cents: int | None = None
    ends_at: int | None = None


@dataclass
class _Bidder:
    number: int
    token: str
    socket: LeanSocket | None = None
    won: list[dict[str, Any]] = field(default_factory=list)


def _accepted(bids: list[BidRecord]) -> list[BidRecord]:
    return [b for b in bids if b.status in ACCEPTED]


def audit_auction(*, bids: list[BidRecord], final: dict[str, Any], winners: list[tuple[int, Any]],
                  extend_ms: int, sudden_death: bool, first_ends_at: int,
                  tolerance_ms: float, unconnected: int = 0) -> dict[str, Any]:
    """The checks a correct auction passes, from the bidders' answers and the final state:
    every bid answered; the final price is the highest accepted bid, and its bidder alone was
    told they won, at that price; every answer agrees with itself; every accepted bid in the
    last ``extend_ms`` moved the end to at least ``extend_ms`` after it was sent (within the
    clock mapping's ``tolerance_ms``), and the auction closed at the last such end."""
    checks: list[dict[str, Any]] = []

    def check(name: str, passed: bool, detail: Any = None) -> None:
        checks.append({"name": name, "passed": bool(passed), "detail": detail})

    check("every bidder connected", unconnected == 0, {"unconnected": unconnected})
    unanswered = [b for b in bids if b.status not in KNOWN_STATUSES]
    check("every bid answered", not unanswered,
          {"unanswered": len(unanswered),
           "statuses": sorted({b.status for b in unanswered})})
    accepted = _accepted(bids)
    top = max(accepted, key=lambda b: b.amount, default=None)
    price = int(final.get("price_cents") or 0)
    check("final price is the highest accepted bid",
          (top is None and price == 0) or (top is not None and price == top.amount),
          {"final": price, "highest": top.amount if top else None})
    leaders = sorted({b.bidder for b in accepted if top is not None and b.amount == top.amount})
    check("the highest bid was accepted once", top is None or len(leaders) == 1,
          {"bidders": leaders[:5]})
    won_by = sorted({number for number, _ in winners})
    won_prices = sorted({int(r.get("price_cents", -1)) for _, r in winners})
    check("its bidder alone was told they won, at that price",
          (top is None and not winners)
          or (top is not None and won_by == [top.bidder] and won_prices == [price]),
          {"told": won_by[:5], "prices": won_prices[:5]})
    inconsistent = [
        b for b in bids
        if (b.status == "leading" and b.price_cents != b.amount)
        or (b.status == "too_low" and b.min_next_cents is not None
            and b.amount >= b.min_next_cents)
        or (b.status == "outbid" and b.price_cents is not None and b.price_cents <= b.amount)]
    check("every answer agrees with itself", not inconsistent,
          [asdict(b) for b in inconsistent[:3]])
    if sudden_death:
        moved = [b for b in accepted if b.ends_at != first_ends_at]
        check("a sudden-death auction never moves its end", not moved,
              [asdict(b) for b in moved[:3]])
        expected_end = first_ends_at
    else:
        short = [b for b in accepted
                 if b.ends_at is not None and b.ends_at < b.sent_ms + extend_ms - tolerance_ms]
        check("every extension honoured", not short, [asdict(b) for b in short[:3]])
        expected_end = max([first_ends_at, *(b.ends_at for b in accepted if b.ends_at)])
    check("the auction closed at its last end",
          final.get("status") == "ended" and int(final.get("ends_at") or 0) == expected_end,
          {"status": final.get("status"), "ends_at": final.get("ends_at"),
           "expected": expected_end})
    return {"passed": all(c["passed"] for c in checks), "checks": checks}


def _timeline(bids: list[BidRecord], t0_ms: float, bucket_ms: int) -> list[dict[str, Any]]:
    buckets: dict[int, dict[str, Any]] = {}

    def bucket(t_ms: float) -> dict[str, Any]:
        index = max(0, int((t_ms - t0_ms) // bucket_ms))
        found = buckets.get(index)
        if found is None:
            found = buckets[index] = {"sent": 0, "answered": 0, "reserved": 0,
                                      "latency": Histogram()}
        return found

    for b in bids:
        bucket(b.sent_ms)["sent"] += 1
        if b.status in KNOWN_STATUSES:
            done = bucket(b.sent_ms + b.latency_us / 1000)
            done["answered"] += 1
            done["reserved"] += b.status == "leading"
            done["latency"].record(b.latency_us)
    out = []
    for index in sorted(buckets):
        found = buckets[index]
        lat: Histogram = found["latency"]
        p50, p99 = lat.percentile(50), lat.percentile(99)
        out.append({"t_ms": index * bucket_ms, "sent": found["sent"],
                    "answered": found["answered"], "reserved": found["reserved"],
                    "p50_ms": None if p50 is None else p50 / 1000,
                    "p99_ms": None if p99 is None else p99 / 1000,
                    "max_ms": None if lat.max_value is None else lat.max_value / 1000})
    return out


class _War:
    """One process's bidders: their sockets, their bids and what they were told."""

    def __init__(self, config: AuctionConfig, session: aiohttp.ClientSession,
                 room_id: str, accounts: list[tuple[str, str]], first: int = 0) -> None:
        self.config = config
        self.session = session
        self.room_id = room_id
        self.bidders = [_Bidder(first + n, token) for n, (token, _) in enumerate(accounts)]
        self.rng = random.Random(config.seed * 7919 + first)
        self.min_next = config.start_cents
        self.auction_id = ""
        self.pushes = 0
        self.connect = Histogram()
        self.send_lag = Histogram()  # how late the generator sent each bid (its own load)
        self.connect_failed = 0
        self.connect_errors: dict[str, int] = {}

    def _on_push(self, bidder: _Bidder, event: str, data: Any) -> None:
        if event != "auction" or not isinstance(data, dict) or data.get("id") != self.auction_id:
            return
        self.pushes += 1
        if isinstance(data.get("min_next_cents"), int):
            self.min_next = max(self.min_next, data["min_next_cents"])
        if data.get("offer") == "won":
            bidder.won.append(data.get("reservation") or {})

    async def connect_all(self) -> None:
        gate = asyncio.Semaphore(max(1, self.config.connect_concurrency // self.config.processes))

        async def one(bidder: _Bidder) -> None:
            async with gate:
                socket = LeanSocket(self.session, self.config.url, bidder.token,
                                    lambda event, data: self._on_push(bidder, event, data))
                started = time.perf_counter()
                try:
                    await socket.connect(timeout=self.config.timeout_s)
                    answer = await socket.call("join", {"room": self.room_id},
                                               self.config.timeout_s)
                except (LoadTestError, TimeoutError, ConnectionResetError) as exc:
                    self.connect_failed += 1
                    self.connect_errors[type(exc).__name__] = (
                        self.connect_errors.get(type(exc).__name__, 0) + 1)
                    await socket.close()
                    return
                if not (isinstance(answer, dict) and answer.get("ok")):
                    self.connect_failed += 1
                    await socket.close()
                    return
                self.connect.record((time.perf_counter() - started) * 1e6)
                bidder.socket = socket

        await asyncio.gather(*(one(b) for b in self.bidders))

    def _amount(self) -> int:
        step = max(5, self.min_next // 40)
        return self.min_next + self.rng.randrange(0, 4) * step

    async def _bid(self, bidder: _Bidder, attempt: int, intended: float,
                   skew_ms: float, record: BidRecord) -> None:
        loop = asyncio.get_running_loop()
        socket = bidder.socket
        if socket is None:
            record.status = "not_connected"
            return
        future = await socket.emit("bid", {"auction": self.auction_id,
                                           "amount_cents": record.amount,
                                           "request_id": f"w{bidder.number}-{attempt}"})
        try:
            answer = await asyncio.wait_for(future, self.config.timeout_s)
        except TimeoutError:
            socket.forget(future)
            record.status = "timeout"
            return
        except ConnectionResetError:
            record.status = "disconnected"
            return
        record.latency_us = (loop.time() - intended) * 1e6
        if not isinstance(answer, dict) or not isinstance(answer.get("status"), str):
            record.status = "malformed_answer"
            return
        record.status = answer["status"]
        record.price_cents = answer.get("price_cents")
        record.min_next_cents = answer.get("min_next_cents")
        record.ends_at = answer.get("ends_at")
        if isinstance(record.min_next_cents, int):
            self.min_next = max(self.min_next, record.min_next_cents)

    async def fight(self, war_starts_loop: float, skew_ms: float) -> list[BidRecord]:
        """Every bid at its intended time, spread uniformly over the war."""
        loop = asyncio.get_running_loop()
        wall_minus_loop = time.time() - loop.time()
        records: list[BidRecord] = []
        tasks: list[asyncio.Task[None]] = []
        launched = asyncio.Event()
        plan = sorted(
            (war_starts_loop + self.rng.uniform(0, self.config.war_s), bidder, attempt)
            for bidder in self.bidders for attempt in range(self.config.bids_per_bidder)
            if bidder.socket is not None)

        def launch(intended: float, bidder: _Bidder, attempt: int) -> None:
            self.send_lag.record(max(0.0, loop.time() - intended) * 1e6)
            sent_ms = (intended + wall_minus_loop) * 1000 + skew_ms
            record = BidRecord(bidder.number, self._amount(), sent_ms)
            records.append(record)
            tasks.append(asyncio.create_task(
                self._bid(bidder, attempt, intended, skew_ms, record)))
            if len(tasks) == len(plan):
                launched.set()

        for intended, bidder, attempt in plan:
            loop.call_at(intended, launch, intended, bidder, attempt)
        if plan:
            await launched.wait()
            await asyncio.gather(*tasks)
        return records

    async def close(self) -> None:
        await asyncio.gather(*(b.socket.close() for b in self.bidders if b.socket is not None))


async def run_bidders(config: AuctionConfig, room_id: str, accounts: list[tuple[str, str]],
                      first: int, channel: Channel) -> None:
    """One bidder process (or task): connect and join, report ``ready``; on ``go`` bid, report
    ``fought``; on ``collect`` report ``done`` with every bid and any win it was told of."""
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        war = _War(config, session, room_id, accounts, first)
        try:
            await war.connect_all()
            connected = sum(1 for b in war.bidders if b.socket is not None)
            await channel.send({"type": "ready", "connected": connected,
                                "failed": len(war.bidders) - connected,
                                "errors": war.connect_errors})
            go = await channel.recv()
            war.auction_id = str(go["auction"])
            loop = asyncio.get_running_loop()
            starts = loop.time() + (float(go["war_starts_wall"]) - time.time())
            records = await war.fight(starts, float(go["skew_ms"]))
            await channel.send({"type": "fought", "bids": len(records)})
            await channel.recv()  # collect
            await channel.send({
                "type": "done", "records": [asdict(r) for r in records],
                "winners": [(b.number, r) for b in war.bidders for r in b.won],
                "pushes": war.pushes, "connect": war.connect.to_dict(),
                "send_lag": war.send_lag.to_dict()})
        finally:
            await war.close()


def _process_main(config: AuctionConfig, room_id: str, accounts: list[tuple[str, str]],
                  first: int, connection: Any) -> None:
    import uvloop

    raise_open_file_limit()
    uvloop.run(run_bidders(config, room_id, accounts, first, PipeChannel(connection)))


def _bidders(config: AuctionConfig, room_id: str,
             accounts: list[tuple[str, str]]) -> Generators:
    """The bidder processes: a task of this event loop with one process, else spawned."""
    per = math.ceil(len(accounts) / config.processes)
    return Generators(run_bidders, _process_main,
                      [(f"loadtests-bidders-{first}",
                        (config, room_id, accounts[first:first + per], first))
                       for first in range(0, len(accounts), per)],
                      "a bidder process")


def render_auction_text(report: dict[str, Any]) -> str:
    lat = report["latency_ms"]
    lines = [
        f"auction     {report['sale']}  bidders {report['buyers']} "
        f"(connected {report['connected']}, {report['processes']} process(es))  "
        f"bids {report['bids']}",
        f"latency     p50 {lat['p50']} ms  p99 {lat['p99']} ms  p99.9 {lat['p999']} ms  "
        f"max {lat['max']} ms",
        "statuses    " + ", ".join(f"{k} {v}" for k, v in sorted(report["statuses"].items())),
        f"final       price {report['final']['price_cents']}  bids {report['final']['bids']}  "
        f"ends_at moved {report['extended_ms']} ms",
    ]
    for item in report["audit"]["checks"]:
        lines.append(f"  [{'ok' if item['passed'] else 'FAIL'}] {item['name']}"
                     + ("" if item["passed"] else f": {item['detail']}"))
    lines.append(f"audit       {'PASSED' if report['audit']['passed'] else 'FAILED'}")
    return "\n".join(lines)


async def run_auction(config: AuctionConfig, progress_stream: TextIO | None = sys.stderr
                      ) -> dict[str, Any]:
    """Run the bidding war against ``config.url`` and return the report; writes
    ``config.json_path`` and the chart beside it (``.html``) when given."""
    config.validate()
    raise_open_file_limit()
    stream = None if config.quiet else progress_stream

    def say(text: str) -> None:
        if stream is not None:
            print(text, file=stream, flush=True)

    started = time.monotonic()
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        api = ServerApi(session, config.url)
        room = await api.create_room(config.anchor_token, f"auction load {time.strftime('%X')}")
        product = await api.create_product(config.anchor_token, "load-test lot",
                                           config.start_cents)
        say(f"minting {config.bidders} bidder accounts ...")
        accounts = await api.mint_buyers(config.admin_token, config.bidders,
                                         f"au{config.seed}{room['id'][-6:]}")
        workers = _bidders(config, room["id"], accounts)
        try:
            workers.start()
            ready = await workers.gather("ready")
            connected = sum(int(r["connected"]) for r in ready)
            say(f"{connected} bidders connected in {len(ready)} process(es) "
                f"({sum(int(r['failed']) for r in ready)} failed: "
                f"{[r['errors'] for r in ready if r['errors']]}); starting")
            body: dict[str, Any] = {
                "product_id": product["id"], "start_cents": config.start_cents,
                "duration_s": config.duration_s, "sudden_death": config.sudden_death,
                "hold_s": 600}
            if not config.sudden_death:
                body["extend_s"] = config.extend_s
            asked = time.time() * 1000
            auction = await api.call("POST /api/rooms/{id}/auctions", "POST",
                                     f"/api/rooms/{room['id']}/auctions", config.anchor_token,
                                     body)
            answered = time.time() * 1000
            skew_ms = int(auction["server_time"]) - (asked + answered) / 2
            tolerance_ms = (answered - asked) / 2 + 5
            first_ends_at = int(auction["ends_at"])
            await workers.broadcast({
                "type": "go", "auction": auction["id"], "skew_ms": skew_ms,
                "war_starts_wall": (first_ends_at - skew_ms) / 1000 - config.war_s})
            fought = await workers.gather("fought")
            say(f"{sum(int(f['bids']) for f in fought)} bids answered; waiting for the close ...")
            final = await _await_close(api, auction["id"], config.timeout_s + config.war_s + 30)
            # The winner's push follows the close.
            await asyncio.sleep(1.0)
            await workers.broadcast({"type": "collect"})
            results = await workers.gather("done")
        finally:
            await workers.close()
        await api.end_room(config.anchor_token, room["id"])
    records = [BidRecord(**raw) for r in results for raw in r["records"]]
    winners = [(int(n), reservation) for r in results for n, reservation in r["winners"]]
    connect = merge_histograms([r["connect"] for r in results])
    send_lag = merge_histograms([r["send_lag"] for r in results])
    audit = audit_auction(bids=records, final=final, winners=winners,
                          extend_ms=config.extend_s * 1000, sudden_death=config.sudden_death,
                          first_ends_at=first_ends_at, tolerance_ms=tolerance_ms,
                          unconnected=config.bidders - connected)
    latency = Histogram()
    statuses: dict[str, int] = {}
    for record in records:
        statuses[record.status] = statuses.get(record.status, 0) + 1
        if record.status in KNOWN_STATUSES:
            latency.record(record.latency_us)
    war_t0 = min((r.sent_ms for r in records), default=0.0)
    report: dict[str, Any] = {
        "scenario": {k: v for k, v in asdict(config).items()
                     if k not in ("anchor_token", "admin_token", "json_path")},
        "sale": auction["id"], "buyers": config.bidders, "stock": 1,
        "profile": f"auction war {config.war_s:g} s", "room": room["id"],
        "connected": connected, "processes": len(results),
        "connect_ms": latency_summary(connect), "bids": len(records),
        "send_lag_ms": latency_summary(send_lag),
        "statuses": statuses, "latency_ms": latency_summary(latency),
        "pushes": sum(int(r["pushes"]) for r in results), "final": final,
        "extended_ms": int(final.get("ends_at") or first_ends_at) - first_ends_at,
        "clock_tolerance_ms": round(tolerance_ms, 1),
        "throughput": {"bucket_ms": config.bucket_ms,
                       "buckets": _timeline(records, war_t0, config.bucket_ms)},
        "audit": audit, "wall_s": round(time.monotonic() - started, 2),
    }
    if config.json_path is not None:
        write_report(report, config.json_path,
                     partial(render_chart, event="Bid", success="leading"), default=str)
    say(render_auction_text(report))
    return report


async def _await_close(api: ServerApi, auction_id: str, limit_s: float) -> dict[str, Any]:
    """The auction once ended (its closer runs every 100 ms), or as it is after ``limit_s``."""
    deadline = time.monotonic() + limit_s
    while True:
        found: dict[str, Any] = await api.call("GET /api/auctions/{id}", "GET",
                                               f"/api/auctions/{auction_id}")
        if found.get("status") == "ended" or time.monotonic() > deadline:
            return found  # not ended: the audit says so
        await asyncio.sleep(0.1)
