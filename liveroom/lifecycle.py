"""The process's owners of background work, started in the order they were registered and
closed in the reverse order, each close bounded.

Registering in the order things are built (a dependency before what uses it) gives the right
shutdown for free: what uses a thing stops before the thing. Adding an owner is one
``register`` call where it is built.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

__all__ = ["CLOSE_STEP_S", "Lifecycle"]

log = logging.getLogger("liveroom.lifecycle")

# How long one owner may take to stop before shutdown goes on without it.
CLOSE_STEP_S = 10.0

Start = Callable[[], object]
Close = Callable[[], Awaitable[object]]


@dataclass(frozen=True, slots=True)
class _Owner:
    name: str
    start: Start | None
    close: Close | None


class Lifecycle:
    def __init__(self, close_step_s: float = CLOSE_STEP_S) -> None:
        self._owners: list[_Owner] = []
        self._started: list[_Owner] = []
        self._close_step_s = close_step_s

    def register(self, name: str, *, start: Start | None = None,
                 close: Close | None = None) -> None:
        """``start`` (plain or coroutine function) runs at ``start()``, ``close`` at
        ``close()``."""
        self._owners.append(_Owner(name, start, close))

    @property
    def names(self) -> list[str]:
        return [owner.name for owner in self._owners]

    async def start(self) -> None:
        """Start every owner in order. If one fails, those already started are closed (in
        reverse) and the error propagates: a half-started server does not serve."""
        for owner in self._owners:
            try:
                if owner.start is not None:
                    result = owner.start()
                    if inspect.isawaitable(result):
                        await result
            except BaseException:
                self._started.append(owner)  # its close may still hold something it opened
                await self.close()
                raise
            self._started.append(owner)

    async def close(self) -> None:
        """Close the started owners in reverse order. One that hangs past the step bound or
        fails is logged by name and the rest still close: a shutdown that stops half-way
        leaves Redis connections, the order store and child processes behind."""
        while self._started:
            owner = self._started.pop()
            if owner.close is None:
                continue
            try:
                async with asyncio.timeout(self._close_step_s):
                    await owner.close()
            except TimeoutError:
                log.error("%s did not stop within %.0f s; going on", owner.name,
                          self._close_step_s)
            except Exception:
                log.exception("%s failed to stop; going on", owner.name)
