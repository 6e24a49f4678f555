"""A soak run: a real ``liveroom serve`` under steady traffic for minutes, watched for leaks.

``python -m loadtests.soak [--minutes 5] [--viewers 500] ...`` (see docs/loadtesting.md, "Soak").

It starts the server itself (embedded Redis, a temporary data directory, an anchor token from
``liveroom token``), then keeps viewers connected the whole time while others come and go,
chats, buys and checks out at steady Poisson rates, and opens a new flash sale every
``--sale-every`` seconds with enough stock that it never runs dry. Every few seconds it samples
the server process's resident memory and CPU (``/proc``). At the end it audits every sale
against the server, reports memory at the start (after warm-up), at the end, the peak and the
least-squares slope, writes a JSON report and a chart, stops the server and exits: 0 when the
audits passed, nothing failed and memory stayed flat, 1 otherwise, 2 when it could not start.

Like the rest of ``loadtests`` it talks to the server only through the public protocol and its
command line; it imports nothing from the server's packages.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import random
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from . import _procstats as procstats
from ._api import ServerApi
from ._chart import svg_panel
from ._client import LeanSocket
from ._histogram import Histogram
from ._launcher import LOAD_TEST_ENV, ServerProcess
from ._orders import OrderTally, checkout_address
from ._report import CheckoutFacts, audit, latency_summary
from ._worker import raise_open_file_limit
from .exceptions import ConnectFailed, LoadTestError, ScenarioError, ServerRefused

__all__ = ["SoakConfig", "least_squares_slope", "main", "run_soak"]

ACK_TIMEOUT_S = 10.0
# Buy answers that are the server doing its job; anything else is an error of the run.
FINE_BUY_STATUSES = frozenset({"reserved", "limit_reached"})


@dataclass(frozen=True, slots=True)
class SoakConfig:
    minutes: float = 5.0
    viewers: int = 500
    chat_per_s: float = 5.0
    buy_per_s: float = 5.0
    churn_per_s: float = 2.0
    checkout_fraction: float = 0.8
    sale_every_s: float = 60.0
    per_user_limit: int = 3
    price_cents: int = 4900
    warmup_s: float = 30.0
    sample_every_s: float = 2.0
    flat_mb_per_min: float = 1.0  # a steeper least-squares RSS slope is a leak
    bucket_s: float = 5.0
    seed: int = 1
    json_path: Path | None = None
    quiet: bool = False

    def validate(self) -> None:
        if self.minutes <= 0 or self.viewers < 1 or self.sale_every_s < 5:
            raise ScenarioError("minutes/viewers/sale-every", "must be positive (sales >= 5 s)")
        if min(self.chat_per_s, self.buy_per_s, self.churn_per_s) < 0:
            raise ScenarioError("rates", "must not be negative")
        if not 0.0 <= self.checkout_fraction <= 1.0:
            raise ScenarioError("checkout", "must be a fraction between 0 and 1")
        if self.warmup_s >= self.minutes * 60:
            raise ScenarioError("warmup", "must be shorter than the run")

    @property
    def stock_per_sale(self) -> int:
        """Twice the expected buys of one sale, so the stock never runs dry."""
        return max(20, math.ceil(2 * self.buy_per_s * self.sale_every_s) + 20)


def least_squares_slope(points: Sequence[tuple[float, float]]) -> float | None:
    """Slope of the least-squares line through ``(x, y)`` points; None for fewer than two."""
    if len(points) < 2:
        return None
    n = len(points)
    mean_x = sum(x for x, _ in points) / n
    mean_y = sum(y for _, y in points) / n
    spread = sum((x - mean_x) ** 2 for x, _ in points)
    if spread == 0:
        return None
    return sum((x - mean_x) * (y - mean_y) for x, y in points) / spread


# -- sampling /proc ------------------------------------------------------------------------------


def _rss_mb(pid: int) -> float | None:
    rss = procstats.rss_bytes(pid)
    return None if rss is None else rss / 2**20


class ProcessSampler:
    """Owner of the loop sampling the server's (and its Redis child's) RSS and CPU."""

    def __init__(self, pid: int, every_s: float, started: float) -> None:
        self.pid = pid
        self.every_s = every_s
        self.started = started
        self.samples: list[dict[str, float]] = []
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        last_wall, last_cpu = time.monotonic(), procstats.cpu_seconds(self.pid) or 0.0
        last_gen = time.process_time()
        while True:
            await asyncio.sleep(self.every_s)
            now, gen = time.monotonic(), time.process_time()
            cpu, rss = procstats.cpu_seconds(self.pid), _rss_mb(self.pid)
            if rss is None or cpu is None:
                continue  # the server is gone; the run notices elsewhere
            children = procstats.children(self.pid)
            child_rss = sum(_rss_mb(c) or 0.0 for c in children)
            child_cpu = sum(procstats.cpu_seconds(c) or 0.0 for c in children)
            self.samples.append({
                "t_s": round(now - self.started, 2), "rss_mb": round(rss, 2),
                "cpu": round((cpu - last_cpu) / (now - last_wall), 3),
                "redis_rss_mb": round(child_rss, 2), "redis_cpu_s": round(child_cpu, 2),
                "generator_cpu": round((gen - last_gen) / (now - last_wall), 3),
                # Other work on the machine shows here: the server competes with it for cores.
                "loadavg_1m": round(os.getloadavg()[0], 2)})
            last_wall, last_cpu, last_gen = now, cpu, gen

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)


def memory_verdict(samples: Sequence[dict[str, float]], warmup_s: float, key: str,
                   flat_mb_per_min: float) -> dict[str, Any]:
    steady = [s for s in samples if s["t_s"] >= warmup_s] or list(samples)
    if not steady:
        return {"start_mb": None, "end_mb": None, "max_mb": None, "slope_mb_per_min": None,
                "late_slope_mb_per_min": None, "flat": False}
    slope = least_squares_slope([(s["t_s"] / 60.0, s[key]) for s in steady])
    # Caches that fill up and stop show as a slope that flattens; a leak keeps its slope.
    late = least_squares_slope([(s["t_s"] / 60.0, s[key]) for s in steady[len(steady) // 2:]])
    return {"start_mb": steady[0][key], "end_mb": steady[-1][key],
            "max_mb": max(s[key] for s in samples),
            "slope_mb_per_min": None if slope is None else round(slope, 3),
            "late_slope_mb_per_min": None if late is None else round(late, 3),
            "flat": slope is not None and slope <= flat_mb_per_min}


# -- the traffic ---------------------------------------------------------------------------------


@dataclass
class _Viewer:
    number: int
    token: str
    socket: LeanSocket | None = None
    reserved: dict[str, int] = field(default_factory=dict)  # sale -> units acknowledged
    orders: dict[str, dict[str, int]] = field(default_factory=dict)  # sale -> order -> units
    checked_out: bool = False


@dataclass
class _SaleBook:
    """What the generator knows about one sale."""

    sale: dict[str, Any]
    acked_units: int = 0
    decided: dict[int, int] = field(default_factory=dict)  # viewer -> decided attempts
    unknown: dict[int, int] = field(default_factory=dict)  # viewer -> unanswered attempts
    checkout_units: int = 0
    checkout_ok: int = 0
    checkout_unknown_units: int = 0
    in_flight: int = 0
    idle: asyncio.Event = field(default_factory=asyncio.Event)  # set while nothing is in flight
    statuses: dict[str, int] = field(default_factory=dict)
    final: dict[str, Any] | None = None  # the server's books when the sale was rotated out


@dataclass
class _Window:
    buys: Histogram = field(default_factory=Histogram)
    chats: Histogram = field(default_factory=Histogram)
    checkouts: Histogram = field(default_factory=Histogram)


class SoakTraffic:
    def __init__(self, config: SoakConfig, api: ServerApi, session: aiohttp.ClientSession,
                 url: str, anchor: str) -> None:
        self.config = config
        self.api = api
        self.session = session
        self.url = url
        self.anchor = anchor
        self.rng = random.Random(config.seed)
        self.viewers: list[_Viewer] = []
        self.room_id = ""
        self.product_id = ""
        self.sales: list[_SaleBook] = []
        self.errors: dict[str, int] = {}
        self.counts: dict[str, int] = {}
        self.pushes: dict[str, int] = {}
        self.latency = {"buy": Histogram(), "chat": Histogram(), "checkout": Histogram(),
                        "churn_connect": Histogram()}
        self.windows: dict[int, _Window] = {}
        self.started = 0.0
        self.stopping = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()

    # bookkeeping -----------------------------------------------------------------------------

    def _count(self, table: dict[str, int], key: str) -> None:
        table[key] = table.get(key, 0) + 1

    def _on_push(self, event: str, _data: Any) -> None:
        self._count(self.pushes, event)

    def _window(self) -> _Window:
        index = int((time.monotonic() - self.started) // self.config.bucket_s)
        found = self.windows.get(index)
        if found is None:
            found = self.windows[index] = _Window()
        return found

    def _spawn(self, work: Awaitable[None]) -> None:
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # setup -----------------------------------------------------------------------------------

    async def _open(self, token: str) -> LeanSocket:
        socket = LeanSocket(self.session, self.url, token, self._on_push)
        await socket.connect(timeout=ACK_TIMEOUT_S)
        answer = await socket.call("join", {"room": self.room_id}, ACK_TIMEOUT_S)
        if not (isinstance(answer, dict) and answer.get("ok")):
            await socket.close()
            raise ConnectFailed(f"join refused: {answer!r}")
        return socket

    async def set_up(self) -> None:
        room = await self.api.create_room(self.anchor, "soak test")
        product = await self.api.create_product(self.anchor, "soak item",
                                                self.config.price_cents)
        self.room_id, self.product_id = room["id"], product["id"]
        gate = asyncio.Semaphore(100)
        accounts = await self.api.mint_buyers(self.anchor, self.config.viewers,
                                              f"soak{self.room_id[-6:]}")

        async def one(number: int) -> None:
            async with gate:
                token, _ = accounts[number]
                viewer = _Viewer(number, token)
                viewer.socket = await self._open(token)
                self.viewers.append(viewer)

        await asyncio.gather(*(one(n) for n in range(self.config.viewers)))
        await self.open_sale()

    async def open_sale(self) -> None:
        sale = await self.api.create_sale(self.anchor, self.room_id, {
            "product_id": self.product_id, "stock": self.config.stock_per_sale,
            "price_cents": self.config.price_cents, "per_user_limit": self.config.per_user_limit,
            "starts_in_s": 0, "duration_s": math.ceil(self.config.sale_every_s * 2 + 60),
            "hold_s": 3600})
        self.sales.append(_SaleBook(sale=sale))

    # the steady streams ----------------------------------------------------------------------

    async def poisson(self, rate_per_s: float, start: Callable[[], Awaitable[None]]) -> None:
        if rate_per_s <= 0:
            return
        loop = asyncio.get_running_loop()
        intended = loop.time()
        while not self.stopping.is_set():
            intended += self.rng.expovariate(rate_per_s)
            await asyncio.sleep(max(0.0, intended - loop.time()))
            if not self.stopping.is_set():
                self._spawn(start())

    def _live_viewer(self) -> _Viewer | None:
        for _ in range(5):
            viewer = self.rng.choice(self.viewers)
            if viewer.socket is not None and viewer.socket.connected:
                return viewer
        return None

    async def _call(self, viewer: _Viewer, event: str, data: Any) -> tuple[str, Any]:
        assert viewer.socket is not None
        try:
            answer = await viewer.socket.call(event, data, ACK_TIMEOUT_S)
        except TimeoutError:
            return "timeout", None
        except ConnectionResetError:
            return "disconnected", None
        if not isinstance(answer, dict):
            return "malformed_answer", answer
        if event == "buy" and isinstance(answer.get("status"), str):
            return str(answer["status"]), answer
        if answer.get("ok"):
            return "ok", answer
        error = answer.get("error")
        code = error.get("code") if isinstance(error, dict) else None
        return (f"error:{code}" if isinstance(code, str) else "malformed_answer"), answer

    async def chat(self) -> None:
        viewer = self._live_viewer()
        if viewer is None:
            self._count(self.errors, "chat:no_live_viewer")
            return
        started = time.monotonic()
        status, _ = await self._call(viewer, "chat", {"room": self.room_id,
                                                      "text": f"still going {viewer.number}"})
        elapsed_us = (time.monotonic() - started) * 1e6
        self.latency["chat"].record(elapsed_us)
        self._window().chats.record(elapsed_us)
        self._count(self.counts, f"chat:{status}")
        if status != "ok":
            self._count(self.errors, f"chat:{status}")

    async def buy(self) -> None:
        viewer = self._live_viewer()
        if viewer is None:
            self._count(self.errors, "buy:no_live_viewer")
            return
        book = self.sales[-1]
        sale_id = str(book.sale["id"])
        book.in_flight += 1
        book.idle.clear()
        try:
            started = time.monotonic()
            request_id = f"soak{viewer.number}-{self.counts.get('buys_sent', 0)}"
            self._count(self.counts, "buys_sent")
            status, answer = await self._call(viewer, "buy", {"sale": sale_id, "qty": 1,
                                                              "request_id": request_id})
            elapsed_us = (time.monotonic() - started) * 1e6
            self.latency["buy"].record(elapsed_us)
            self._window().buys.record(elapsed_us)
            self._count(book.statuses, status)
            self._count(self.counts, f"buy:{status}")
            if status in ("reserved", "sold_out", "limit_reached"):
                book.decided[viewer.number] = book.decided.get(viewer.number, 0) + 1
            elif status in ("timeout", "disconnected"):
                book.unknown[viewer.number] = book.unknown.get(viewer.number, 0) + 1
            if status not in FINE_BUY_STATUSES:
                self._count(self.errors, f"buy:{status}")
            if status != "reserved" or answer is None:
                return
            reservation = answer.get("reservation") or {}
            units = int(reservation.get("qty", 1))
            viewer.reserved[sale_id] = viewer.reserved.get(sale_id, 0) + units
            book.acked_units += units
            if self.rng.random() < self.config.checkout_fraction:
                await self.checkout(viewer, book, reservation, units)
        finally:
            book.in_flight -= 1
            if book.in_flight == 0:
                book.idle.set()

    async def checkout(self, viewer: _Viewer, book: _SaleBook, reservation: dict[str, Any],
                       units: int) -> None:
        viewer.checked_out = True
        started = time.monotonic()
        status, answer = await self._call(viewer, "checkout", {
            "reservation": reservation.get("id"), "payment": "cod",
            "address": checkout_address(viewer.number)})
        elapsed_us = (time.monotonic() - started) * 1e6
        self.latency["checkout"].record(elapsed_us)
        self._window().checkouts.record(elapsed_us)
        self._count(self.counts, f"checkout:{status}")
        order = answer.get("order") if isinstance(answer, dict) else None
        if status == "ok" and isinstance(order, dict):
            sale_id = str(book.sale["id"])
            viewer.orders.setdefault(sale_id, {})[str(order["id"])] = units
            book.checkout_ok += 1
            book.checkout_units += units
            return
        self._count(self.errors, f"checkout:{status}")
        if status in ("timeout", "disconnected"):
            book.checkout_unknown_units += units

    async def churn(self) -> None:
        started = time.monotonic()
        try:
            token, _ = await self.api.mint_session("soak visitor")
            socket = await self._open(token)
        except (LoadTestError, TimeoutError) as exc:
            self._count(self.errors, f"churn:{getattr(exc, 'code', 'timeout')}")
            return
        self.latency["churn_connect"].record((time.monotonic() - started) * 1e6)
        self._count(self.counts, "churn_visits")
        await asyncio.sleep(self.rng.uniform(0.5, 3.0))
        await socket.close()

    async def keep_viewers(self) -> None:
        """Viewers stay the whole run: one the server dropped is an error, and comes back."""
        while not self.stopping.is_set():
            await asyncio.sleep(1.0)
            for viewer in self.viewers:
                if viewer.socket is not None and not viewer.socket.connected:
                    self._count(self.errors, f"viewer_dropped:{viewer.socket.closed_reason}")
                    await viewer.socket.close()
                    try:
                        viewer.socket = await self._open(viewer.token)
                    except (LoadTestError, TimeoutError):
                        self._count(self.errors, "viewer_reconnect_failed")

    async def rotate_sales(self, say: Callable[[str], None]) -> None:
        loop = asyncio.get_running_loop()
        next_at = loop.time() + self.config.sale_every_s
        while not self.stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), max(0.0, next_at - loop.time()))
            if self.stopping.is_set():
                return
            next_at += self.config.sale_every_s
            old = self.sales[-1]
            await self.open_sale()
            await self.close_sale(old)
            books = {k: (old.final or {}).get(k) for k in ("remaining", "held", "sold")}
            say(f"sale {old.sale['id']} closed {books}; now {self.sales[-1].sale['id']}")

    async def close_sale(self, book: _SaleBook) -> None:
        """Wait for the sale's buys and checkouts to be answered, read its books, end it."""
        if book.in_flight:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(book.idle.wait(), 2 * ACK_TIMEOUT_S)
        book.final = await self.api.get_sale(str(book.sale["id"]))
        await self.api.end_sale(self.anchor, str(book.sale["id"]))

    async def run(self, duration_s: float, say: Callable[[str], None]) -> None:
        streams = [
            asyncio.create_task(self.poisson(self.config.chat_per_s, self.chat)),
            asyncio.create_task(self.poisson(self.config.buy_per_s, self.buy)),
            asyncio.create_task(self.poisson(self.config.churn_per_s, self.churn)),
            asyncio.create_task(self.keep_viewers()),
            asyncio.create_task(self.rotate_sales(say)),
        ]
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(asyncio.gather(*streams)), duration_s)
        self.stopping.set()
        await asyncio.gather(*streams)
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.close_sale(self.sales[-1])

    # the audit -------------------------------------------------------------------------------

    async def audit_sales(self) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        tallies = {str(b.sale["id"]): OrderTally() for b in self.sales}
        gate = asyncio.Semaphore(50)

        async def one(viewer: _Viewer) -> None:
            async with gate:
                try:
                    orders = await self.api.list_orders(viewer.token)
                except ServerRefused:
                    for tally in tallies.values():
                        tally.fetch_failed += 1
                    return
            for sale_id, tally in tallies.items():
                tally.add_buyer(orders, sale_id, self.config.price_cents,
                                viewer.orders.get(sale_id, {}))

        await asyncio.gather(*(one(v) for v in self.viewers if v.checked_out))
        limit = self.config.per_user_limit
        results = []
        for book in self.sales:
            sale_id = str(book.sale["id"])
            assert book.final is not None
            over = [{"user": f"soak{v.number}", "units": v.reserved[sale_id]}
                    for v in self.viewers if v.reserved.get(sale_id, 0) > limit]
            decided = sum(min(limit, n) for n in book.decided.values())
            possible = sum(min(limit, book.decided.get(k, 0) + book.unknown.get(k, 0))
                           for k in set(book.decided) | set(book.unknown))
            checked = audit(
                stock=int(book.sale["stock"]), per_user_limit=limit, qty=1, sale=book.final,
                acked_reserved=book.acked_units, demand_decided=decided,
                demand_possible=possible, unknown_attempts=sum(book.unknown.values()),
                over_limit=over, checkout=CheckoutFacts(
                    ok=book.checkout_ok, units=book.checkout_units,
                    unknown_units=book.checkout_unknown_units,
                    price_cents=self.config.price_cents, orders=tallies[sale_id]))
            never_dry = book.statuses.get("sold_out", 0) == 0
            checked["checks"].append({"name": "stock_lasted", "ok": never_dry,
                                      "detail": f"{book.statuses.get('sold_out', 0)} sold_out "
                                                f"answers; stock {book.sale['stock']}"})
            checked["passed"] = checked["passed"] and never_dry
            results.append({"sale": sale_id, "stock": book.sale["stock"],
                            "server": {k: book.final.get(k)
                                       for k in ("status", "remaining", "held", "sold")},
                            "buys": dict(book.statuses), "checkouts": book.checkout_ok,
                            "orders": tallies[sale_id].found, "audit": checked})
        figures = await self.api.room_figures(self.anchor, self.room_id)
        total = sum(t.found for t in tallies.values())
        gmv = sum(t.gmv_cents for t in tallies.values())
        room = {"name": "room_figures_match_orders",
                "ok": figures.get("orders") == total and figures.get("gmv_cents") == gmv,
                "detail": f"room figures {figures.get('orders')} orders, "
                          f"{figures.get('gmv_cents')} cents; order lists {total}, {gmv}"}
        return results, room

    async def close(self) -> None:
        await asyncio.gather(*(v.socket.close() for v in self.viewers if v.socket is not None))


# -- report --------------------------------------------------------------------------------------


def _timeline(traffic: SoakTraffic, bucket_s: float) -> list[dict[str, Any]]:
    rows = []
    for index in range(max(traffic.windows, default=-1) + 1):
        window = traffic.windows.get(index, _Window())
        rows.append({"t_s": index * bucket_s,
                     "buys_per_s": round(window.buys.total / bucket_s, 2),
                     "chats_per_s": round(window.chats.total / bucket_s, 2),
                     "checkouts_per_s": round(window.checkouts.total / bucket_s, 2),
                     "buy_p99_ms": _ms(window.buys.percentile(99)),
                     "chat_p99_ms": _ms(window.chats.percentile(99)),
                     "checkout_p99_ms": _ms(window.checkouts.percentile(99))})
    return rows


def _ms(value: int | None) -> float | None:
    return None if value is None else round(value / 1000.0, 3)


def render_soak_text(report: dict[str, Any]) -> str:
    mem, cpu = report["memory"], report["cpu"]
    lines = [
        f"soak {report['minutes']} min  viewers {report['viewers']}  chat {report['rates']['chat']}"
        f"/s  buys {report['rates']['buy']}/s  churn {report['rates']['churn']}/s  checkout "
        f"{report['rates']['checkout_fraction']:.0%}  sales {len(report['sales'])}",
        f"server rss  start {mem['start_mb']} MB (after {report['warmup_s']} s warm-up)  "
        f"end {mem['end_mb']} MB  max {mem['max_mb']} MB  slope {mem['slope_mb_per_min']} MB/min"
        f" (second half {mem['late_slope_mb_per_min']})  -> "
        f"{'flat' if mem['flat'] else 'GROWING'}",
        f"redis rss   start {report['redis_memory']['start_mb']} MB  end "
        f"{report['redis_memory']['end_mb']} MB  slope "
        f"{report['redis_memory']['slope_mb_per_min']} MB/min",
        f"server cpu  mean {cpu['server_mean']:.0%}  max {cpu['server_max']:.0%} of a core; "
        f"generator mean {cpu['generator_mean']:.0%}  max {cpu['generator_max']:.0%}; "
        f"machine load average {cpu['loadavg_min']}-{cpu['loadavg_max']} on {os.cpu_count()} "
        f"cores",
    ]
    for name, summary in report["latency_ms"].items():
        lines.append(f"{name:<14}{summary['count']:>7}  p50 {summary['p50']}  p99 "
                     f"{summary['p99']}  p999 {summary['p999']}  max {summary['max']} ms")
    lines.append("counts      " + ", ".join(f"{k} {v}" for k, v in report["counts"].items()))
    lines.append("errors      " + (", ".join(f"{k} {v}" for k, v in report["errors"].items())
                                   or "none"))
    for sale in report["sales"]:
        bad = [c["name"] for c in sale["audit"]["checks"] if not c["ok"]]
        lines.append(f"sale {sale['sale']}  stock {sale['stock']}  {sale['server']}  "
                     f"orders {sale['orders']}/{sale['checkouts']}  "
                     f"{'PASSED' if not bad else 'FAILED ' + ', '.join(bad)}")
    room = report["room_check"]
    lines.append(f"{'ok ' if room['ok'] else 'BAD'} {room['name']}: {room['detail']}")
    lines.append(f"verdict     {'PASSED' if report['passed'] else 'FAILED'}: "
                 + "; ".join(report["verdict"]))
    return "\n".join(lines)


def render_soak_chart(report: dict[str, Any]) -> str:
    samples = report["samples"]
    timeline = report["timeline"]
    t_max = 1000.0 * max([s["t_s"] for s in samples] + [r["t_s"] for r in timeline] + [1.0])
    memory = svg_panel("Server memory (VmRSS)", "MB", t_max, [
        ("server", "#1f77b4", [(1000 * s["t_s"], s["rss_mb"]) for s in samples]),
        ("redis", "#999999", [(1000 * s["t_s"], s["redis_rss_mb"]) for s in samples])])
    cpu = svg_panel("CPU, % of one core", "%", t_max, [
        ("server", "#d62728", [(1000 * s["t_s"], 100 * s["cpu"]) for s in samples]),
        ("generator", "#2ca02c", [(1000 * s["t_s"], 100 * s["generator_cpu"]) for s in samples])])
    rates = svg_panel("Traffic", "per s", t_max, [
        ("buys", "#9467bd", [(1000 * r["t_s"], r["buys_per_s"]) for r in timeline]),
        ("chats", "#ff7f0e", [(1000 * r["t_s"], r["chats_per_s"]) for r in timeline]),
        ("checkouts", "#8c564b", [(1000 * r["t_s"], r["checkouts_per_s"]) for r in timeline])])
    latency = svg_panel("p99 latency per window", "ms", t_max, [
        ("buy", "#9467bd", [(1000 * r["t_s"], r["buy_p99_ms"]) for r in timeline]),
        ("chat", "#ff7f0e", [(1000 * r["t_s"], r["chat_p99_ms"]) for r in timeline]),
        ("checkout", "#8c564b", [(1000 * r["t_s"], r["checkout_p99_ms"]) for r in timeline])])
    return ("<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>liveroom soak</title>"
            "</head>\n<body style=\"font-family:sans-serif\">\n<pre>"
            + render_soak_text(report).replace("&", "&amp;").replace("<", "&lt;")
            + f"</pre>\n{memory}\n{cpu}\n{rates}\n{latency}\n</body></html>\n")


def _mean_max(values: Sequence[float]) -> tuple[float, float]:
    return (sum(values) / len(values), max(values)) if values else (0.0, 0.0)


def build_soak_report(config: SoakConfig, traffic: SoakTraffic, samples: list[dict[str, float]],
                      sales: list[dict[str, Any]], room_check: dict[str, Any],
                      wall_s: float) -> dict[str, Any]:
    memory = memory_verdict(samples, config.warmup_s, "rss_mb", config.flat_mb_per_min)
    redis_memory = memory_verdict(samples, config.warmup_s, "redis_rss_mb",
                                  config.flat_mb_per_min)
    steady = [s for s in samples if s["t_s"] >= config.warmup_s] or samples
    server_mean, server_max = _mean_max([s["cpu"] for s in steady])
    gen_mean, gen_max = _mean_max([s["generator_cpu"] for s in steady])
    errors = dict(sorted(traffic.errors.items(), key=lambda kv: (-kv[1], kv[0])))
    audits_ok = all(s["audit"]["passed"] for s in sales) and room_check["ok"]
    verdict = [f"memory {'flat' if memory['flat'] else 'growing'} "
               f"({memory['slope_mb_per_min']} MB/min, limit {config.flat_mb_per_min})",
               "no errors" if not errors else f"{sum(errors.values())} errors",
               f"{len(sales)} sale audits {'passed' if audits_ok else 'FAILED'}"]
    if server_max > 0.9:
        verdict.append(f"server CPU peaked at {server_max:.0%} of a core: it was saturated, "
                       f"lower the rates")
    return {
        "minutes": config.minutes, "viewers": config.viewers, "warmup_s": config.warmup_s,
        "rates": {"chat": config.chat_per_s, "buy": config.buy_per_s,
                  "churn": config.churn_per_s, "checkout_fraction": config.checkout_fraction,
                  "sale_every_s": config.sale_every_s},
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(config).items()},
        "passed": memory["flat"] and not errors and audits_ok,
        "verdict": verdict,
        "memory": memory, "redis_memory": redis_memory,
        "cpu": {"server_mean": round(server_mean, 3), "server_max": round(server_max, 3),
                "generator_mean": round(gen_mean, 3), "generator_max": round(gen_max, 3),
                "loadavg_min": min((s["loadavg_1m"] for s in samples), default=None),
                "loadavg_max": max((s["loadavg_1m"] for s in samples), default=None)},
        "latency_ms": {name: latency_summary(h) for name, h in traffic.latency.items()},
        "counts": dict(sorted(traffic.counts.items())),
        "errors": errors,
        "pushes_received": dict(sorted(traffic.pushes.items())),
        "sales": sales, "room_check": room_check,
        "samples": samples, "timeline": _timeline(traffic, config.bucket_s),
        "wall_s": round(wall_s, 1),
    }


async def run_soak(config: SoakConfig, stream: Any = sys.stderr) -> dict[str, Any]:
    """Start a server, soak it, audit, stop it; return the report (see docs/loadtesting.md)."""
    config.validate()
    raise_open_file_limit()

    def say(text: str) -> None:
        if not config.quiet:
            stream.write(text + "\n")
            stream.flush()

    data_dir = Path(tempfile.mkdtemp(prefix="liveroom-soak-"))
    server = ServerProcess(data_dir, args=["--log-level", "warning"], env=LOAD_TEST_ENV,
                           log_path=data_dir / "server.log")
    started = time.monotonic()
    connector = aiohttp.TCPConnector(limit=0)
    try:
        await server.start()
        anchor = await server.token("admin", "Soak Anchor")
        say(f"server pid {server.pid} on {server.url}, data in {data_dir}")
        async with aiohttp.ClientSession(connector=connector) as session:
            api = ServerApi(session, server.url)
            traffic = SoakTraffic(config, api, session, server.url, anchor)
            await traffic.set_up()
            say(f"{len(traffic.viewers)} viewers joined room {traffic.room_id}; "
                f"soaking for {config.minutes} min")
            traffic.started = time.monotonic()
            sampler = ProcessSampler(server.pid, config.sample_every_s, traffic.started)
            sampler.start()
            try:
                await traffic.run(config.minutes * 60.0, say)
            finally:
                await sampler.close()
            sales, room_check = await traffic.audit_sales()
            await traffic.close()
            if server.returncode is not None:
                traffic.errors["server_exited"] = 1
    finally:
        code = await server.stop()
        if code not in (0, None, -signal.SIGTERM):
            say(f"the server exited with {code}: {server.log_tail()}")
    if code not in (0, None, -signal.SIGTERM):
        traffic.errors[f"server_exit:{code}"] = 1
    report = build_soak_report(config, traffic, sampler.samples, sales, room_check,
                               time.monotonic() - started)
    report["server_pid"] = server.pid
    report["server_exit_code"] = code
    report["server_log_tail"] = server.log_tail()
    if config.json_path is not None:
        config.json_path.parent.mkdir(parents=True, exist_ok=True)
        chart = config.json_path.with_suffix(".html")
        report["chart"] = str(chart)
        chart.write_text(render_soak_chart(report))
        config.json_path.write_text(json.dumps(report, indent=1) + "\n")
    say(render_soak_text(report))
    shutil.rmtree(data_dir, ignore_errors=True)
    return report


def parse_args(argv: Sequence[str]) -> SoakConfig:
    parser = argparse.ArgumentParser(prog="python -m loadtests.soak",
                                     description="Soak a fresh liveroom server with steady "
                                                 "traffic and watch its memory.")
    defaults = SoakConfig()
    parser.add_argument("--minutes", type=float, default=defaults.minutes)
    parser.add_argument("--viewers", type=int, default=defaults.viewers,
                        help="viewers connected the whole run")
    parser.add_argument("--chat-rate", type=float, default=defaults.chat_per_s)
    parser.add_argument("--buy-rate", type=float, default=defaults.buy_per_s)
    parser.add_argument("--churn-rate", type=float, default=defaults.churn_per_s,
                        help="extra viewers per second who come and go")
    parser.add_argument("--checkout", type=float, default=defaults.checkout_fraction,
                        metavar="FRACTION", help="share of reservations checked out")
    parser.add_argument("--sale-every", type=float, default=defaults.sale_every_s,
                        help="seconds between new flash sales")
    parser.add_argument("--per-user-limit", type=int, default=defaults.per_user_limit)
    parser.add_argument("--warmup", type=float, default=defaults.warmup_s,
                        help="seconds before memory counts as the start")
    parser.add_argument("--sample-every", type=float, default=defaults.sample_every_s)
    parser.add_argument("--flat-mb-per-min", type=float, default=defaults.flat_mb_per_min)
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--json", type=Path, default=None, dest="json_path")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(list(argv))
    return SoakConfig(
        minutes=args.minutes, viewers=args.viewers, chat_per_s=args.chat_rate,
        buy_per_s=args.buy_rate, churn_per_s=args.churn_rate, checkout_fraction=args.checkout,
        sale_every_s=args.sale_every, per_user_limit=args.per_user_limit,
        warmup_s=args.warmup, sample_every_s=args.sample_every,
        flat_mb_per_min=args.flat_mb_per_min, seed=args.seed, json_path=args.json_path,
        quiet=args.quiet)


def main(argv: Sequence[str] | None = None) -> int:
    """Exit status: 0 when memory stayed flat, nothing failed and every audit passed; 1
    otherwise; 2 when the run could not be set up."""
    import uvloop

    config = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        report = uvloop.run(run_soak(config))
    except LoadTestError as exc:
        print(f"error ({exc.code}): {exc}", file=sys.stderr)
        return 2
    return 0 if report["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
