"""Typed event hooks: how one object tells others of a change without holding them.

A hook is made before both sides, handed to the side that fires it as a constructor argument,
and the listeners connect to it when they are built. The composition root (``app.py``) wires
every cross-object notification this way, in the order objects are built, instead of assigning
callbacks to attributes afterwards.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Generic, ParamSpec

__all__ = ["AsyncHook", "Hook"]

log = logging.getLogger("liveroom.hooks")
P = ParamSpec("P")


class Hook(Generic[P]):
    """Synchronous listeners, called in the order they connected. A listener that raises is
    logged and the others still run: the firing side (a buy's batch, a peer connection's
    state change) must not fail because one listener did."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._listeners: list[Callable[P, object]] = []

    def connect(self, listener: Callable[P, object]) -> None:
        self._listeners.append(listener)

    def fire(self, *args: P.args, **kwargs: P.kwargs) -> None:
        for listener in self._listeners:
            try:
                listener(*args, **kwargs)
            except Exception:
                log.exception("a listener of %s failed", self.name)


class AsyncHook(Generic[P]):
    """Coroutine listeners, awaited one after the other. Unlike ``Hook`` a failure propagates
    to the firing side, which decides what it means (a payment callback retried, say)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._listeners: list[Callable[P, Awaitable[object]]] = []

    def connect(self, listener: Callable[P, Awaitable[object]]) -> None:
        self._listeners.append(listener)

    async def fire(self, *args: P.args, **kwargs: P.kwargs) -> None:
        if not self._listeners:
            raise RuntimeError(f"{self.name} has no listener")
        for listener in self._listeners:
            await listener(*args, **kwargs)
