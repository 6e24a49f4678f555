"""Coalesces concurrent buys into a few script calls.

Buys wait a few milliseconds (or until a batch is full), are grouped per sale, and each group is
decided by ONE script call. At most ``max_inflight`` calls run at once, so a burst uses a
small, fixed number of Redis connections; while they run, new buys pile up into the next, larger
batch. The number of buys waiting or being decided is bounded: past ``max_pending`` a buy is
refused at once (the caller answers ``rate_limited``) instead of joining an unbounded queue.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from ._models import BuyResult
from .exceptions import ServiceNotRunning

__all__ = [
    "BATCH_WINDOW_S",
    "BUSY_PER_S",
    "MAX_BATCH_WINDOW_S",
    "TARGET_BATCH",
    "Batcher",
    "BuyBatcher",
    "BuyCallback",
    "BuyRequest",
    "DecideGroup",
]

log = logging.getLogger("inventory.batcher")

# How long the first buy of a batch waits for company. A script call costs the server process a
# fixed amount of CPU whatever it decides (the write and read on the socket, the event-loop
# turns, the reply's decoding), and a buy in it far less, so under a steady stream fuller batches
# are much cheaper per buy (docs/performance.md, "Session 5", has the measurements). The window
# therefore follows the arrival rate. Above BUSY_PER_S a batch waits for about TARGET_BATCH buys
# to arrive, at most MAX_BATCH_WINDOW_S (25 buys at 1,000/s, 32 in 3.2 ms at 10,000/s); below it
# the CPU does not matter and a buy waits only BATCH_WINDOW_S, so a lone buyer is not kept
# waiting for nobody. Both are well under what a human notices next to the network's own round
# trip. uvloop's timers tick in whole ms.
BATCH_WINDOW_S = 0.002
MAX_BATCH_WINDOW_S = 0.025
TARGET_BATCH = 32
BUSY_PER_S = 200.0
# The arrival-rate estimate forgets with this time constant: a batch's own count weighs by the
# time it covers, so a pause wipes out a stream at once and the start of a burst shows within
# a few batches.
_RATE_MEMORY_S = 0.02


# Called once with the buy's answer, or with the exception that kept it from being decided. It
# runs in the batcher's task, so it must be quick and must not raise (what it raises is logged).
BuyCallback = Callable[[BuyResult | Exception], None]

# One buy of a sale's group: (user_id, qty, request_id), the form the buy script reads. Plain
# tuples, kept apart from their callbacks: thousands are made a second, and the group is packed
# for the script as it is.
BuyRequest = tuple[str, int, str]

# Decides one sale's group; returns one result per request, in order (an exception for a buy
# that could not be decided).
DecideGroup = Callable[[str, Sequence[BuyRequest]],
                       Awaitable[Sequence[BuyResult | Exception]]]


# The batcher is generic in what it batches: a buy (``BuyRequest`` -> ``BuyResult``) or an
# auction's bid (inventory/_auctions.py), each decided by its own script.
Req = TypeVar("Req")
Res = TypeVar("Res")


@dataclass(slots=True)
class PendingBuys(Generic[Req, Res]):
    """A sale's buys waiting for their batch: requests and callbacks, index by index."""

    requests: list[Req]
    callbacks: list[Callable[[Res | Exception], None]]


def _loop_time() -> float:
    return asyncio.get_running_loop().time()


class Batcher(Generic[Req, Res]):
    """Coalesces requests per key (a sale, an auction) into one ``decide`` call per group."""

    def __init__(
        self,
        decide: Callable[[str, Sequence[Req]], Awaitable[Sequence[Res | Exception]]],
        *,
        window_s: float = BATCH_WINDOW_S,
        max_window_s: float = MAX_BATCH_WINDOW_S,
        target_batch: int = TARGET_BATCH,
        busy_per_s: float = BUSY_PER_S,
        max_batch: int = 512,
        max_pending: int = 20_000,
        max_inflight: int = 4,
        clock: Callable[[], float] | None = None,
        name: str = "inventory-buy-batcher",
    ) -> None:
        """``clock``: monotonic seconds the arrival rate is measured on (default: the event
        loop's); the window itself is waited out on the event loop. ``name``: its task's."""
        if (window_s < 0 or max_window_s < 0 or target_batch < 1 or max_batch < 1
                or max_pending < 1 or max_inflight < 1):
            raise ValueError("batcher bounds must be positive")
        self._decide = decide
        self._window_s = window_s
        # A window asked for above the maximum is a fixed window.
        self._max_window_s = max(window_s, max_window_s)
        self._target_batch = target_batch
        self._busy_per_s = busy_per_s
        self._arrivals_per_s = 0.0
        self._last_take: float | None = None
        self._arrived = 0  # buys queued since the last take
        self._max_batch = max_batch
        self._max_pending = max_pending
        self._slots = asyncio.Semaphore(max_inflight)
        # Per sale, taken in turn: a sale queues up behind the others with its first waiting
        # buy, and a sale whose buys did not all fit in a batch goes behind the others with the
        # rest, so one room's crowd does not hold back another room's buyers.
        self._waiting: dict[str, PendingBuys[Req, Res]] = {}
        self._queued = 0  # buys waiting for a batch
        self._pending = 0  # queued + being decided
        self._wakeup = asyncio.Event()
        self._idle = False  # the dispatcher waits for ``_wakeup``
        self._task: asyncio.Task[None] | None = None
        self._inflight: set[asyncio.Task[None]] = set()
        self._closing = False
        self._clock = clock or _loop_time
        self._name = name

    @property
    def pending(self) -> int:
        return self._pending

    @property
    def running(self) -> bool:
        return self._task is not None and not self._closing

    def start(self) -> None:
        if self._task is None:
            self._closing = False
            self._task = asyncio.get_running_loop().create_task(
                self._dispatch(), name=self._name
            )

    async def close(self) -> None:
        """Stop taking buys, decide every buy already accepted, then stop."""
        task = self._task
        if task is None:
            return
        self._closing = True
        self._wakeup.set()
        try:
            await task
        finally:
            self._task = None
            if self._inflight:
                await asyncio.gather(*self._inflight, return_exceptions=True)

    def submit_request(self, key: str, request: Req,
                       on_done: Callable[[Res | Exception], None]) -> bool:
        """``submit`` for any request the batcher's ``decide`` reads: queued under ``key``
        (one script call decides a key's group); False when the bound is reached."""
        if self._task is None or self._closing:
            raise ServiceNotRunning()
        if self._pending >= self._max_pending:
            return False
        waiting = self._waiting.get(key)
        if waiting is None:
            waiting = self._waiting[key] = PendingBuys([], [])
        waiting.requests.append(request)
        waiting.callbacks.append(on_done)
        self._pending += 1
        self._queued += 1
        self._arrived += 1
        if self._idle:
            self._idle = False
            self._wakeup.set()
        return True

    async def _dispatch(self) -> None:
        while True:
            if not self._queued:
                if self._closing:
                    return
                self._idle = True
                self._wakeup.clear()
                await self._wakeup.wait()
                self._idle = False
                continue
            if self._queued < self._max_batch and not self._closing:
                window = self.window_s()
                if window:
                    await asyncio.sleep(window)
            self._count_arrivals(self._arrived)
            self._arrived = 0
            room = self._max_batch
            while room and self._waiting:
                sale_id, waiting = next(iter(self._waiting.items()))
                requests, callbacks = waiting.requests, waiting.callbacks
                del self._waiting[sale_id]
                if len(requests) > room:  # the rest goes behind the other sales
                    requests, callbacks = requests[:room], callbacks[:room]
                    del waiting.requests[:room], waiting.callbacks[:room]
                    self._waiting[sale_id] = waiting
                room -= len(requests)
                self._queued -= len(requests)
                # Waiting here (not in the task) is what lets the queue grow into bigger batches
                # while every connection is busy.
                await self._slots.acquire()
                task = asyncio.get_running_loop().create_task(
                    self._run_group(sale_id, requests, callbacks))
                self._inflight.add(task)
                task.add_done_callback(self._inflight.discard)

    def window_s(self) -> float:
        """How long the batch being formed waits for company, at the current arrival rate. A
        stream that has paused for longer than the longest window is no stream: the estimate
        only learns that from the next batch, so the pause itself is checked here."""
        rate = self._arrivals_per_s
        last = self._last_take
        if (rate < self._busy_per_s or last is None
                or self._clock() - last > self._max_window_s):
            return self._window_s
        return min(self._max_window_s, max(self._window_s, self._target_batch / rate))

    def _count_arrivals(self, arrived: int) -> None:
        # Whatever the window was, these buys arrived since the last take, so this is the
        # arrival rate (a quiet minute reads as a low rate).
        now = self._clock()
        last, self._last_take = self._last_take, now
        if last is None or now <= last:
            return
        elapsed = now - last
        weight = 1.0 - math.exp(-elapsed / _RATE_MEMORY_S)
        self._arrivals_per_s += weight * (arrived / elapsed - self._arrivals_per_s)

    async def _run_group(self, sale_id: str, requests: list[Req],
                         callbacks: list[Callable[[Res | Exception], None]]) -> None:
        try:
            try:
                results: Sequence[Res | Exception] = await self._decide(sale_id, requests)
            except Exception as exc:
                results = [exc] * len(requests)
            for on_done, result in zip(callbacks, results, strict=True):
                try:
                    on_done(result)
                except Exception:
                    log.exception("a buy's answer could not be delivered")
        finally:
            self._pending -= len(requests)
            self._slots.release()


class BuyBatcher(Batcher[BuyRequest, BuyResult]):
    """The buys' batcher: ``submit`` is ``submit_request`` written out for the hot path."""

    def submit(
        self, sale_id: str, user_id: str, qty: int, request_id: str, on_done: BuyCallback
    ) -> bool:
        """Queue a buy whose answer goes to ``on_done``; False means the bound is reached (the
        buy was not queued) and the caller should back off."""
        if self._task is None or self._closing:
            raise ServiceNotRunning()
        if self._pending >= self._max_pending:
            return False
        waiting = self._waiting.get(sale_id)
        if waiting is None:
            waiting = self._waiting[sale_id] = PendingBuys([], [])
        waiting.requests.append((user_id, qty, request_id))
        waiting.callbacks.append(on_done)
        self._pending += 1
        self._queued += 1
        self._arrived += 1
        if self._idle:
            self._idle = False
            self._wakeup.set()
        return True
