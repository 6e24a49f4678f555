"""The sales this process knows to be sold out, answered without Redis.

An oversubscribed flash sale sells its last unit in the first fraction of a second and then
refuses everyone else: nine buys in ten, in a big sale, only learn that nothing is left. Each of
those going through the batcher and a script call costs the server as much as a buy that wins,
and makes the losers queue behind each other for an answer that was known. A marked sale's buys
are answered ``sold_out`` at once, from memory.

A mark is exact where it matters:

- **Holders go to Redis.** When a mark is set, the users who hold or bought units of the sale
  are read once (``HKEYS`` of the sale's per-user counters, where the buy script also lists at
  0 units a user it refused for the limit, whose request ids have that answer to replay). Their
  buys still go through the script, so a retried request id that was ``reserved`` gets its
  reservation back, and a second buy gets ``limit_reached`` as before. A sale cannot gain a
  holder while it stays sold out, so the set read after the sell-out is complete; units that
  come back clear the mark first.
- **Other answers the script would give first go to Redis too**: buys of users banned from
  the sale (read with the holders; a ban made later in this process lets its user through at
  once, one made in another process within the mark's age) and buys of more units than the
  per-person limit (``limit_reached``).
- **Units that come back clear it.** Any stock change that leaves units (holds released or
  expired, a unit restocked) or a status other than sold out clears the sale's mark, here and,
  through ``forget``, in the other processes that hear of it.
- **A mark is short-lived.** It lapses ``max_age_ms`` after it was set, so news of units coming
  back that never reached this process keeps them from buyers for at most that long; the next
  buy then goes to Redis and, if the sale is still sold out, sets the mark again.
- **Answers are remembered.** A request id answered ``sold_out`` here gets ``sold_out`` again
  from this process, as a script remembers its answers, even after the mark is cleared. The
  memory is this process's, and bounded; a retry that reaches another process after units came
  back may reserve one of them, which takes no more than that request asked for.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field

__all__ = ["MARK_MAX_AGE_MS", "SoldOutMarks"]

log = logging.getLogger("inventory.sold_out")

# How long a mark answers for the sale before Redis is asked again (module docstring).
MARK_MAX_AGE_MS = 2_000
# Bounds on what the marks remember: sales, and request ids answered per sale.
MAX_SALES = 256
MAX_ANSWERS_PER_SALE = 1_000_000

# Reads what a mark needs of a sale: the users whose buys still go to Redis (holders and
# banned buyers) and the per-person limit.
ReadMark = Callable[[str], Awaitable[tuple[set[str], int]]]


@dataclass(slots=True)
class _Mark:
    set_at_ms: int
    holders: set[str]  # and banned buyers: users whose buys go to Redis
    per_user_limit: int


@dataclass(slots=True)
class _SaleMemory:
    generation: int = 0  # bumped whenever the sale's mark is cleared
    mark: _Mark | None = None
    reading: bool = False
    answered: set[str] = field(default_factory=set)  # "user:request_id" answered sold_out here
    passed: set[str] = field(default_factory=set)  # ... sent to Redis while a mark stood


class SoldOutMarks:
    """Per-process marks of sold-out sales; see the module docstring. ``read_mark`` runs in a
    task this object owns (``close()`` cancels and awaits them)."""

    def __init__(self, read_mark: ReadMark, now_ms: Callable[[], int], *,
                 max_age_ms: int = MARK_MAX_AGE_MS, max_sales: int = MAX_SALES,
                 max_answers_per_sale: int = MAX_ANSWERS_PER_SALE) -> None:
        if max_age_ms < 0 or max_sales < 1 or max_answers_per_sale < 0:
            raise ValueError("sold-out mark bounds must be positive")
        self._read_mark = read_mark
        self._now_ms = now_ms
        self._max_age_ms = max_age_ms
        self._max_sales = max_sales
        self._max_answers = max_answers_per_sale
        self._sales: OrderedDict[str, _SaleMemory] = OrderedDict()
        self._tasks: set[asyncio.Task[None]] = set()

    def answers(self, sale_id: str, user_id: str, qty: int, request_id: str) -> bool:
        """True when the buy is answered ``sold_out`` without Redis (and is remembered as
        such); False when it must go to Redis."""
        memory = self._sales.get(sale_id)
        if memory is None:
            return False
        field_ = user_id + ":" + request_id
        if field_ in memory.answered:
            return True
        mark = memory.mark
        if mark is None:
            return False
        if self._now_ms() - mark.set_at_ms >= self._max_age_ms:
            memory.mark = None
            return False
        if field_ in memory.passed:
            return False
        if user_id in mark.holders or qty > mark.per_user_limit:
            # The script decides this request id, now and when it comes again.
            if len(memory.passed) < self._max_answers:
                memory.passed.add(field_)
            return False
        if len(memory.answered) < self._max_answers:
            memory.answered.add(field_)
        return True

    def is_marked(self, sale_id: str) -> bool:
        memory = self._sales.get(sale_id)
        return memory is not None and memory.mark is not None and (
            self._now_ms() - memory.mark.set_at_ms < self._max_age_ms)

    def sold_out(self, sale_id: str) -> bool:
        """The sale was seen sold out (a batch's answer, a push): mark it once its holders are
        read, unless a mark is standing or being made. True when a new mark is being made."""
        memory = self._memory(sale_id)
        if memory.reading or (memory.mark is not None and (
                self._now_ms() - memory.mark.set_at_ms < self._max_age_ms)):
            return False
        memory.reading = True
        task = asyncio.get_running_loop().create_task(
            self._mark(sale_id, memory, memory.generation), name=f"sold-out-mark {sale_id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return True

    def let_through(self, sale_id: str, user_ids: Iterable[str]) -> None:
        """Send these users' buys to Redis (they were just banned: the script answers them)."""
        memory = self._sales.get(sale_id)
        if memory is not None and memory.mark is not None:
            memory.mark.holders.update(user_ids)

    def forget(self, sale_id: str) -> bool:
        """Units came back (or the sale left the sold-out state): clear the mark. True when a
        mark was standing (or being made), so the caller knows whether to tell others."""
        memory = self._sales.get(sale_id)
        if memory is None:
            return False
        had = memory.mark is not None or memory.reading
        memory.mark = None
        memory.generation += 1
        return had

    async def _mark(self, sale_id: str, memory: _SaleMemory, generation: int) -> None:
        try:
            holders, per_user_limit = await self._read_mark(sale_id)
        except asyncio.CancelledError:
            raise
        except Exception:
            # The buys go to Redis meanwhile, and the next sold-out answer tries again.
            log.warning("holders of sold-out sale %s unreadable", sale_id, exc_info=True)
            return
        finally:
            memory.reading = False
        if memory.generation == generation:
            memory.mark = _Mark(self._now_ms(), holders, per_user_limit)

    def _memory(self, sale_id: str) -> _SaleMemory:
        memory = self._sales.get(sale_id)
        if memory is None:
            memory = self._sales[sale_id] = _SaleMemory()
            while len(self._sales) > self._max_sales:
                self._sales.popitem(last=False)
        else:
            self._sales.move_to_end(sale_id)
        return memory

    async def close(self) -> None:
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
