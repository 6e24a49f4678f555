"""HoldSweeper: the background owner that returns expired holds to stock.

Every process may run one. The expiry is a Lua step that re-checks each hold's state, so two
sweepers visiting the same sale at once cannot return a unit twice or return a sold one.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
from collections.abc import Awaitable, Callable

from ._models import Sale, SaleStatus
from ._service import InventoryService
from .exceptions import InventoryError

__all__ = ["HoldSweeper", "SaleChanged"]

log = logging.getLogger(__name__)

# Called with the fresh sale whenever a sweep changed its stock or its status moved on
# (scheduled -> live, -> ended). May be a plain function or a coroutine function.
SaleChanged = Callable[[Sale], Awaitable[object] | None]


def _cancelling() -> bool:
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


class HoldSweeper:
    def __init__(
        self,
        service: InventoryService,
        *,
        interval_s: float = 0.25,
        batch_limit: int = 256,
        on_change: SaleChanged | None = None,
    ) -> None:
        if interval_s <= 0 or batch_limit < 1:
            raise ValueError("interval_s and batch_limit must be positive")
        self._service = service
        self._interval_s = interval_s
        self._batch_limit = batch_limit
        self._on_change = on_change
        self._last_status: dict[str, SaleStatus] = {}
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(
                self._loop(), name="inventory-hold-sweeper"
            )

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is None:
            return
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    async def sweep_once(self) -> list[Sale]:
        """One pass over every active sale; returns the sales that changed."""
        changed: list[Sale] = []
        for sale_id in await self._service.active_sale_ids():
            expired = 0
            while True:
                outcome = await self._service.expire_holds(sale_id, self._batch_limit)
                expired += outcome.expired
                if not outcome.more:
                    break
            if outcome.stock is None:  # the sale is gone
                self._last_status.pop(sale_id, None)
                continue
            status_moved = self._last_status.get(sale_id) != outcome.stock.status
            self._last_status[sale_id] = outcome.stock.status
            if outcome.done:
                self._last_status.pop(sale_id, None)
            if expired or status_moved:
                sale = await self._service.get_sale(sale_id)
                changed.append(sale)
                await self._report(sale)
        return changed

    async def _report(self, sale: Sale) -> None:
        if self._on_change is None:
            return
        try:
            result = self._on_change(sale)
            if inspect.isawaitable(result):
                await result
        except Exception:
            log.exception("on_change failed for sale %s", sale.id)

    async def _loop(self) -> None:
        while True:
            try:
                await self.sweep_once()
            except InventoryError:
                if not _cancelling():
                    # Redis away: the holds stay in Redis and the next pass picks them up.
                    log.warning("hold sweep failed; retrying", exc_info=True)
            if _cancelling():
                # redis-py can swallow a cancellation that lands while it connects (it retries
                # or raises its own error); close() must stop the loop all the same.
                raise asyncio.CancelledError()
            await asyncio.sleep(self._interval_s)
