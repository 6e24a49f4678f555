"""The owner of a periodic background loop: ``start()`` begins it, ``close()`` cancels and
awaits it. A failing tick is logged and the loop goes on; only cancellation stops it."""

from __future__ import annotations

import asyncio
import contextlib
import logging

__all__ = ["PeriodicLoop", "cancelling"]


def cancelling() -> bool:
    """Whether the running task has been asked to stop (even if the CancelledError was lost)."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


class PeriodicLoop:
    """Subclasses implement ``tick()``; it runs every ``interval_s`` seconds."""

    name = "periodic-loop"

    def __init__(self, interval_s: float) -> None:
        self.interval_s = interval_s
        self._task: asyncio.Task[None] | None = None
        self._log = logging.getLogger(f"liveroom.{self.name}")

    async def tick(self) -> None:
        raise NotImplementedError

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=self.name)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            try:
                await self.tick()
            except asyncio.CancelledError:
                raise
            except Exception:
                if not cancelling():
                    self._log.warning("%s failed; retrying next tick", self.name, exc_info=True)
            if cancelling():
                # redis-py can swallow a cancellation that lands while it connects (it retries
                # or raises its own error); close() must stop the loop all the same.
                raise asyncio.CancelledError()

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
