"""One buyer worker: many simulated buyers on one event loop.

Phases, driven by the coordinator over a :class:`Channel`:

1. mint a guest session per buyer, open its lean socket, ``join`` the room; send ``ready``;
2. wait for ``go {"sale", "t0"}`` (``t0`` is wall-clock seconds, so every process aims at the
   same instant), then fire every attempt at its intended time, whether or not earlier answers
   came back (open model); send ``progress`` twice a second;
3. when every attempt has a final answer or timed out, send ``done`` with the merged counts and
   histograms, and close the sockets.
"""

from __future__ import annotations

import asyncio
import random
import resource
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from ._api import ServerApi
from ._channel import Channel
from ._client import LeanSocket
from ._histogram import Histogram
from ._orders import OrderTally, checkout_address
from .exceptions import ConnectFailed, LoadTestError

__all__ = ["DECIDED_STATUSES", "WorkerPlan", "run_worker", "worker_process_main"]

# Answers that mean the server decided the attempt against the stock; the audit's demand.
DECIDED_STATUSES = frozenset({"reserved", "sold_out", "limit_reached"})
# The same for a coupon grab (loadtests coupons): the drop's count is its stock, one each.
GRAB_DECIDED_STATUSES = frozenset({"granted", "gone", "already_grabbed"})
# Per event: the statuses the audit counts as decided, and the one that took a unit.
_DECIDED = {"buy": DECIDED_STATUSES, "coupon:grab": GRAB_DECIDED_STATUSES}
_WON = {"buy": "reserved", "coupon:grab": "granted"}
# Answers that took no stock and invite another try after ``retry_after_ms``.
RETRY_STATUSES = frozenset({"rate_limited", "not_started"})
PROGRESS_INTERVAL_S = 0.5
CPU_SAMPLE_S = 0.25


@dataclass(frozen=True, slots=True)
class WorkerPlan:
    index: int
    url: str
    room_id: str
    first_buyer: int
    offsets_ms: list[list[float]]  # per buyer of this worker: intended send times after T0
    qty: int
    per_user_limit: int
    timeout_s: float
    connect_concurrency: int
    chat_per_s: float
    churn_per_s: float
    bucket_ms: int
    seed: int
    checkout_fraction: float = 0.0  # of successful reservations, checked out right away
    price_cents: int = 0  # the sale's deal price, to check order totals
    # (token, user id) of each buyer of this worker: verified accounts minted by the spike.
    buyer_accounts: list[tuple[str, str]] = field(default_factory=list)
    # What an attempt sends: ``buy {sale, qty}`` or ``coupon:grab {drop}`` (the run's target
    # id is the sale or the drop).
    event: str = "buy"


@dataclass
class _Bucket:
    latency: Histogram = field(default_factory=Histogram)
    statuses: dict[str, int] = field(default_factory=dict)
    sent: int = 0


@dataclass
class _Buyer:
    number: int
    token: str = ""
    user_id: str = ""
    socket: LeanSocket | None = None
    reserved_units: int = 0
    decided: int = 0
    unknown: int = 0
    orders: dict[str, int] = field(default_factory=dict)  # acknowledged order id -> units
    checkout_attempts: int = 0
    checkout_unknown_units: int = 0  # checkouts without an answer: may or may not exist


@dataclass
class _Tally:
    latency: Histogram = field(default_factory=Histogram)
    send_lag: Histogram = field(default_factory=Histogram)
    connect: Histogram = field(default_factory=Histogram)
    statuses: dict[str, int] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)
    timeline: dict[int, _Bucket] = field(default_factory=dict)
    pushes: dict[str, int] = field(default_factory=dict)
    sent: int = 0
    answered: int = 0
    retries: int = 0
    chat_latency: Histogram = field(default_factory=Histogram)
    chat_statuses: dict[str, int] = field(default_factory=dict)
    churn_connect: Histogram = field(default_factory=Histogram)
    churn_failed: int = 0
    checkout_latency: Histogram = field(default_factory=Histogram)
    checkout_statuses: dict[str, int] = field(default_factory=dict)
    checkout_retries: int = 0
    # When each buy was answered, in ms after the sale's intended opening (every process aims
    # at the same wall-clock t0, so the processes' lists merge into one timeline).
    answer_times_ms: list[float] = field(default_factory=list)

    def count(self, table: dict[str, int], key: str) -> None:
        table[key] = table.get(key, 0) + 1

    def bucket(self, index: int) -> _Bucket:
        found = self.timeline.get(index)
        if found is None:
            found = self.timeline[index] = _Bucket()
        return found


class _CpuMeter:
    """Samples this process's CPU time against wall time; the busiest second is what matters."""

    def __init__(self) -> None:
        self.samples: list[tuple[float, float]] = []
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while True:
            self.samples.append((time.monotonic(), time.process_time()))
            await asyncio.sleep(CPU_SAMPLE_S)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        self.samples.append((time.monotonic(), time.process_time()))

    def summary(self) -> dict[str, float]:
        if len(self.samples) < 2:
            return {"cpu_s": 0.0, "wall_s": 0.0, "mean_core_fraction": 0.0,
                    "peak_core_fraction": 0.0}
        wall = self.samples[-1][0] - self.samples[0][0]
        cpu = self.samples[-1][1] - self.samples[0][1]
        peak = 0.0
        window = max(1, round(1.0 / CPU_SAMPLE_S))
        for i in range(len(self.samples) - 1):
            j = min(len(self.samples) - 1, i + window)
            dt = self.samples[j][0] - self.samples[i][0]
            if dt >= 0.5:
                peak = max(peak, (self.samples[j][1] - self.samples[i][1]) / dt)
        if peak == 0.0 and wall > 0:
            peak = cpu / wall
        return {"cpu_s": round(cpu, 3), "wall_s": round(wall, 3),
                "mean_core_fraction": round(cpu / wall, 3) if wall > 0 else 0.0,
                "peak_core_fraction": round(peak, 3)}


class _Worker:
    def __init__(self, plan: WorkerPlan, session: aiohttp.ClientSession) -> None:
        self.plan = plan
        self.session = session
        self.api = ServerApi(session, plan.url)
        self.tally = _Tally()
        self.buyers = [_Buyer(number=plan.first_buyer + i) for i in range(len(plan.offsets_ms))]
        self.rng = random.Random(plan.seed * 7919 + plan.index)
        self.loop = asyncio.get_running_loop()
        self.loop_t0 = 0.0
        self.sale_id = ""
        self.finished = asyncio.Event()

    # phase 1 ---------------------------------------------------------------------------------

    def _on_push(self, event: str, _data: Any) -> None:
        self.tally.count(self.tally.pushes, event)

    async def _open(self, token: str, connect_times: Histogram) -> LeanSocket:
        socket = LeanSocket(self.session, self.plan.url, token, self._on_push)
        started = time.perf_counter()
        await socket.connect(timeout=self.plan.timeout_s)
        connect_times.record((time.perf_counter() - started) * 1e6)
        answer = await socket.call("join", {"room": self.plan.room_id}, self.plan.timeout_s)
        if not (isinstance(answer, dict) and answer.get("ok")):
            await socket.close()
            raise ConnectFailed(f"join refused: {answer!r}")
        return socket

    async def _set_up(self, buyer: _Buyer, gate: asyncio.Semaphore) -> None:
        async with gate:
            try:
                buyer.token, buyer.user_id = self.plan.buyer_accounts[
                    buyer.number - self.plan.first_buyer]
                buyer.socket = await self._open(buyer.token, self.tally.connect)
            except (LoadTestError, TimeoutError) as exc:
                self.tally.count(self.tally.errors, f"connect:{getattr(exc, 'code', 'timeout')}")

    async def set_up(self) -> dict[str, Any]:
        gate = asyncio.Semaphore(self.plan.connect_concurrency)
        await asyncio.gather(*(self._set_up(buyer, gate) for buyer in self.buyers))
        connected = sum(1 for b in self.buyers if b.socket is not None)
        return {"type": "ready", "worker": self.plan.index, "connected": connected,
                "failed": len(self.buyers) - connected}

    # phase 2 ---------------------------------------------------------------------------------

    def _bucket_index(self, loop_time: float) -> int:
        return max(0, int((loop_time - self.loop_t0) * 1000 // self.plan.bucket_ms))

    async def _attempt(self, buyer: _Buyer, attempt: int, intended: float) -> None:
        tally, plan, loop = self.tally, self.plan, self.loop
        deadline = intended + plan.timeout_s
        status = "not_connected"
        tries = 0
        reservation: dict[str, Any] | None = None
        tally.send_lag.record(max(0.0, loop.time() - intended) * 1e6)
        tally.sent += 1
        tally.bucket(self._bucket_index(loop.time())).sent += 1
        decided_statuses, won = _DECIDED[plan.event], _WON[plan.event]
        while buyer.socket is not None:
            request_id = f"lt{buyer.number}-{attempt}-{tries}"
            if plan.event == "buy":
                future = await buyer.socket.emit(
                    "buy", {"sale": self.sale_id, "qty": plan.qty, "request_id": request_id})
            else:
                future = await buyer.socket.emit(
                    plan.event, {"drop": self.sale_id, "request_id": request_id})
            try:
                answer = await asyncio.wait_for(future, max(0.001, deadline - loop.time()))
            except TimeoutError:
                buyer.socket.forget(future)
                status = "timeout"
                break
            except ConnectionResetError:
                status = "disconnected"
                break
            status = _status_of(answer)
            if status in RETRY_STATUSES:
                retry_s = _retry_after_s(answer)
                if loop.time() + retry_s < deadline:
                    tries += 1
                    tally.retries += 1
                    await asyncio.sleep(retry_s)
                    continue
            if status == won:
                reservation = answer.get("reservation") or {}
                buyer.reserved_units += int(reservation.get("qty", plan.qty))
                if won != "reserved":
                    reservation = None  # nothing to check out
            break
        if status in decided_statuses:
            buyer.decided += 1
        elif status in ("timeout", "disconnected"):
            buyer.unknown += 1  # the server may or may not have reserved for it
        done = loop.time()
        tally.answered += 1
        tally.answer_times_ms.append(round((done - self.loop_t0) * 1000.0, 3))
        tally.count(tally.statuses, status)
        if status not in decided_statuses:
            tally.count(tally.errors, status)
        latency_us = (done - intended) * 1e6
        tally.latency.record(latency_us)
        bucket = tally.bucket(self._bucket_index(done))
        bucket.latency.record(latency_us)
        tally.count(bucket.statuses, status)
        if reservation is not None and self._wants_checkout():
            await self._checkout(buyer, reservation)

    def _wants_checkout(self) -> bool:
        fraction = self.plan.checkout_fraction
        return fraction >= 1.0 or (fraction > 0.0 and self.rng.random() < fraction)

    async def _checkout(self, buyer: _Buyer, reservation: dict[str, Any]) -> None:
        """Check the reservation out at once, paying cash on delivery; the latency runs from the
        first send to the final answer. Retrying is safe: checkout is idempotent by
        reservation."""
        tally, plan, loop = self.tally, self.plan, self.loop
        units = int(reservation.get("qty", plan.qty))
        body = {"reservation": reservation.get("id"), "payment": "cod",
                "address": checkout_address(buyer.number)}
        buyer.checkout_attempts += 1
        started = loop.time()
        deadline = started + plan.timeout_s
        status = "not_connected"
        answer: Any = None
        while buyer.socket is not None:
            try:
                answer = await buyer.socket.call("checkout", body,
                                                 max(0.001, deadline - loop.time()))
            except TimeoutError:
                status = "timeout"
                break
            except ConnectionResetError:
                status = "disconnected"
                break
            status = "ok" if isinstance(answer, dict) and answer.get("ok") else _status_of(answer)
            if status == "error:rate_limited":
                retry_s = _retry_after_s(answer)
                if loop.time() + retry_s < deadline:
                    tally.checkout_retries += 1
                    await asyncio.sleep(retry_s)
                    continue
            break
        tally.checkout_latency.record((loop.time() - started) * 1e6)
        tally.count(tally.checkout_statuses, status)
        if status == "ok":
            order = answer.get("order") if isinstance(answer, dict) else None
            if isinstance(order, dict) and isinstance(order.get("id"), str):
                buyer.orders[order["id"]] = units
            else:
                tally.count(tally.errors, "checkout:malformed_answer")
        else:
            tally.count(tally.errors, f"checkout:{status}")
            if status in ("timeout", "disconnected"):
                buyer.checkout_unknown_units += units

    async def _chat(self, intended: float) -> None:
        connected = [b for b in self.buyers if b.socket is not None]
        if not connected:
            return
        socket = self.rng.choice(connected).socket
        assert socket is not None
        try:
            answer = await socket.call("chat", {"room": self.plan.room_id,
                                                "text": "is it still in stock?"},
                                       self.plan.timeout_s)
            status = "ok" if isinstance(answer, dict) and answer.get("ok") else _status_of(answer)
        except TimeoutError:
            status = "timeout"
        except ConnectionResetError:
            status = "disconnected"
        self.tally.chat_latency.record((self.loop.time() - intended) * 1e6)
        self.tally.count(self.tally.chat_statuses, status)

    async def _churn_one(self, token: str) -> None:
        try:
            socket = await self._open(token, self.tally.churn_connect)
        except (LoadTestError, TimeoutError):
            self.tally.churn_failed += 1
            return
        await asyncio.sleep(self.rng.uniform(0.5, 3.0))
        await socket.close()

    async def _background(self, rate_per_s: float, start: Any) -> None:
        """Poisson arrivals of ``start(intended_time)`` until the buys are all answered."""
        if rate_per_s <= 0:
            return
        tasks: set[asyncio.Task[None]] = set()
        intended = self.loop_t0
        while not self.finished.is_set():
            intended += self.rng.expovariate(rate_per_s)
            await asyncio.sleep(max(0.0, intended - self.loop.time()))
            if self.finished.is_set():
                break
            task = asyncio.create_task(start(intended))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _progress(self, channel: Channel) -> None:
        while True:
            await asyncio.sleep(PROGRESS_INTERVAL_S)
            await channel.send(self.snapshot("progress"))

    def snapshot(self, kind: str) -> dict[str, Any]:
        t = self.tally
        return {"type": kind, "worker": self.plan.index, "sent": t.sent, "answered": t.answered,
                "statuses": dict(t.statuses), "latency": t.latency.to_dict()}

    async def run(self, channel: Channel, sale_id: str, t0_wall: float) -> dict[str, Any]:
        self.sale_id = sale_id
        self.loop_t0 = self.loop.time() + (t0_wall - time.time())
        churn_tokens: list[str] = []
        if self.plan.churn_per_s > 0:
            churn_tokens = [b.token for b in self.buyers[:20] if b.token]
        meter = _CpuMeter()
        meter.start()
        progress = asyncio.create_task(self._progress(channel))
        attempts: list[asyncio.Task[None]] = []
        launches: list[asyncio.TimerHandle] = []
        total = sum(len(o) for o in self.plan.offsets_ms)
        all_launched = asyncio.Event()

        def launch(buyer: _Buyer, attempt: int, intended: float) -> None:
            attempts.append(asyncio.create_task(self._attempt(buyer, attempt, intended)))
            if len(attempts) == total:
                all_launched.set()

        for buyer, offsets in zip(self.buyers, self.plan.offsets_ms, strict=True):
            for attempt, offset in enumerate(offsets):
                intended = self.loop_t0 + offset / 1000.0
                launches.append(self.loop.call_at(intended, launch, buyer, attempt, intended))
        background = [
            asyncio.create_task(self._background(self.plan.chat_per_s, self._chat)),
            asyncio.create_task(self._background(
                self.plan.churn_per_s if churn_tokens else 0.0,
                lambda _t: self._churn_one(self.rng.choice(churn_tokens)))),
        ]
        await all_launched.wait()
        await asyncio.gather(*attempts)
        self.finished.set()
        await asyncio.gather(*background)
        progress.cancel()
        await asyncio.gather(progress, return_exceptions=True)
        await meter.close()
        orders = await self.read_orders() if self.plan.checkout_fraction > 0 else OrderTally()
        return self.result(meter.summary(), orders)

    async def read_orders(self) -> OrderTally:
        """Every buyer that checked out reads its own orders of this sale from the server."""
        tally = OrderTally()
        gate = asyncio.Semaphore(self.plan.connect_concurrency)

        async def one(buyer: _Buyer) -> None:
            async with gate:
                try:
                    orders = await self.api.list_orders(buyer.token)
                except LoadTestError:
                    tally.fetch_failed += 1
                    return
            tally.add_buyer(orders, self.sale_id, self.plan.price_cents, buyer.orders)

        await asyncio.gather(*(one(b) for b in self.buyers if b.checkout_attempts))
        return tally

    def result(self, cpu: dict[str, float], orders: OrderTally) -> dict[str, Any]:
        t, limit = self.tally, self.plan.per_user_limit
        granted = (limit // self.plan.qty) * self.plan.qty  # most units one buyer can get
        demand_decided = sum(min(granted, b.decided * self.plan.qty) for b in self.buyers)
        demand_possible = sum(min(granted, (b.decided + b.unknown) * self.plan.qty)
                              for b in self.buyers)
        over_limit = [{"user": b.user_id, "units": b.reserved_units}
                      for b in self.buyers if b.reserved_units > limit]
        return {
            **self.snapshot("done"),
            "buyers": len(self.buyers),
            "connected": sum(1 for b in self.buyers if b.socket is not None),
            "reserved_units": sum(b.reserved_units for b in self.buyers),
            "unknown_attempts": sum(b.unknown for b in self.buyers),
            "demand_decided": demand_decided,
            "demand_possible": demand_possible,
            "over_limit": over_limit,
            "errors": dict(t.errors),
            "retries": t.retries,
            "send_lag": t.send_lag.to_dict(),
            "answer_times_ms": t.answer_times_ms,
            "connect": t.connect.to_dict(),
            "pushes": dict(t.pushes),
            "timeline": {str(k): {"latency": b.latency.to_dict(), "statuses": b.statuses,
                                  "sent": b.sent} for k, b in t.timeline.items()},
            "chat": {"latency": t.chat_latency.to_dict(), "statuses": dict(t.chat_statuses)},
            "churn": {"connect": t.churn_connect.to_dict(), "failed": t.churn_failed},
            "cpu": cpu,
            "checkout": {"latency": t.checkout_latency.to_dict(),
                         "statuses": dict(t.checkout_statuses), "retries": t.checkout_retries,
                         "attempted": sum(b.checkout_attempts for b in self.buyers),
                         "ok": sum(len(b.orders) for b in self.buyers),
                         "units": sum(sum(b.orders.values()) for b in self.buyers),
                         "unknown_units": sum(b.checkout_unknown_units for b in self.buyers),
                         "orders": orders.to_dict()},
        }

    async def close(self) -> None:
        await asyncio.gather(*(b.socket.close() for b in self.buyers if b.socket is not None))


def _status_of(answer: Any) -> str:
    if not isinstance(answer, dict):
        return "malformed_answer"
    status = answer.get("status")
    if isinstance(status, str):
        return status
    error = answer.get("error")
    if isinstance(error, dict) and isinstance(error.get("code"), str):
        return f"error:{error['code']}"
    return "ok" if answer.get("ok") else "malformed_answer"


def _retry_after_s(answer: dict[str, Any]) -> float:
    raw = answer.get("retry_after_ms")
    if raw is None and isinstance(answer.get("error"), dict):
        raw = answer["error"].get("retry_after_ms")
    return max(0.01, float(raw) / 1000.0) if isinstance(raw, int | float) else 0.05


async def run_worker(plan: WorkerPlan, channel: Channel) -> None:
    connector = aiohttp.TCPConnector(limit=0, ttl_dns_cache=None)
    async with aiohttp.ClientSession(connector=connector) as session:
        worker = _Worker(plan, session)
        try:
            await channel.send(await worker.set_up())
            go = await channel.recv()
            if go.get("type") != "go":
                return
            await channel.send(await worker.run(channel, str(go["sale"]), float(go["t0"])))
        finally:
            await worker.close()


def raise_open_file_limit() -> None:
    """Each buyer is a socket; lift the soft descriptor limit to the hard one."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def worker_process_main(plan: WorkerPlan, connection: Any) -> None:
    """Entry point of a spawned worker process."""
    import uvloop

    from ._channel import PipeChannel

    raise_open_file_limit()
    uvloop.run(run_worker(plan, PipeChannel(connection)))
