"""Full garbage collections when the server can afford them, not in the middle of a flash sale.

CPython collects generation 2 (every tracked object) whenever the objects promoted since the
last full collection reach a quarter of the old ones. A server holding thousands of connections
tracks millions of objects, so a full collection stops the event loop for a long time, and while
a crowd connects and presses buy the promotions keep crossing that quarter again and again
(docs/performance.md, "Garbage collection", has the measurements).

``FullCollections`` owns them instead. Young collections (generations 0 and 1) stay automatic: they
only look at new objects, so they are short. Full collections
run from its loop, every ``interval_s``, put off while buys pour in (more than ``busy_per_s`` a
second within the last ``quiet_s``: a flash sale is on, and a second's pause would land on its
buyers) for at most ``max_delay_s``, so cyclic garbage still goes away and memory stays flat over a
long stream. A trickle of buys does not count as busy, or a popular room would never be collected.
What is alive once the server has started (modules, classes, settings) is frozen out of every later
collection (``gc.freeze``).
"""

from __future__ import annotations

import gc
import logging
import math
import time
from collections.abc import Callable

from .loops import PeriodicLoop
from .metrics import Histogram

__all__ = ["GC_PAUSE_BUCKETS_S", "FullCollections"]

log = logging.getLogger("liveroom.gc")

GC_PAUSE_BUCKETS_S: tuple[float, ...] = (0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
# A generation-2 threshold no run reaches: generation 1 would have to be collected this many
# times since the last full collection.
_NEVER = 1 << 30


class FullCollections(PeriodicLoop):
    """Owner of the process's full garbage collections (see the module)."""

    name = "full-gc"

    def __init__(self, *, interval_s: float, activity: Callable[[], int],
                 busy_per_s: float = 50.0, quiet_s: float = 5.0,
                 max_delay_s: float | None = None,
                 pauses: Histogram | None = None, check_every_s: float = 1.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if interval_s <= 0:
            raise ValueError("interval_s must be positive")
        super().__init__(check_every_s)
        self.full_interval_s = interval_s
        self.max_delay_s = max_delay_s if max_delay_s is not None else 4 * interval_s
        self.quiet_s = quiet_s
        self.busy_per_s = busy_per_s
        self._activity = activity
        self._pauses = pauses
        self._clock = clock
        self._saved_threshold: tuple[int, int, int] | None = None
        self._last_full = clock()
        self._last_activity = activity()
        self._last_check = clock()
        self._last_busy = -math.inf
        self.collections = 0

    def start(self) -> None:
        if self._saved_threshold is None:
            gc.collect()
            gc.freeze()
            self._saved_threshold = gc.get_threshold()
            young, middle, _ = self._saved_threshold
            gc.set_threshold(young, middle, _NEVER)
            self._last_full = self._clock()
        super().start()

    async def tick(self) -> None:
        self.check()

    def check(self) -> bool:
        """Collect if one is due; True if it did."""
        now = self._clock()
        activity = self._activity()
        elapsed = max(now - self._last_check, 1e-9)
        if (activity - self._last_activity) / elapsed > self.busy_per_s:
            self._last_busy = now
        self._last_activity, self._last_check = activity, now
        since_full = now - self._last_full
        if since_full < self.full_interval_s:
            return False
        quiet = now - self._last_busy >= self.quiet_s
        if not quiet and since_full < self.max_delay_s:
            return False
        self.collect()
        return True

    def collect(self) -> float:
        started = time.perf_counter()
        found = gc.collect()
        pause = time.perf_counter() - started
        self._last_full = self._clock()
        self.collections += 1
        if self._pauses is not None:
            self._pauses.observe(pause)
        log.log(logging.INFO if pause >= 0.1 else logging.DEBUG,
                "full garbage collection: %.0f ms, %d unreachable objects", pause * 1000, found)
        return pause

    async def close(self) -> None:
        await super().close()
        if self._saved_threshold is not None:
            gc.set_threshold(*self._saved_threshold)
            gc.unfreeze()
            self._saved_threshold = None
