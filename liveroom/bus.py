"""A small control bus on Redis pub/sub, for work every server process must do for its own
sockets (remove a banned user's sockets from a room, push badges to rooms it serves)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
import redis.asyncio as aioredis

__all__ = ["ControlBus"]

CHANNEL = "liveroom:control"
log = logging.getLogger("liveroom.bus")
Handler = Callable[[dict[str, Any]], Awaitable[None]]


class ControlBus:
    def __init__(self, redis: aioredis.Redis) -> None:
        self._redis = redis
        self._handlers: dict[str, list[Handler]] = {}
        self._task: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()

    def on(self, kind: str, handler: Handler) -> None:
        self._handlers.setdefault(kind, []).append(handler)

    async def publish(self, kind: str, payload: dict[str, Any]) -> None:
        await self._redis.publish(CHANNEL, orjson.dumps({"kind": kind, "payload": payload}))

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="control-bus")
        await asyncio.wait_for(self._ready.wait(), 10)

    async def _run(self) -> None:
        while True:
            pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(CHANNEL)
                self._ready.set()
                async for message in pubsub.listen():
                    await self._dispatch(message.get("data"))
            except asyncio.CancelledError:
                raise
            except Exception:
                log.warning("control bus lost its Redis subscription; resubscribing", exc_info=True)
                await asyncio.sleep(0.5)
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]

    async def _dispatch(self, raw: object) -> None:
        if not isinstance(raw, bytes | str):
            return
        try:
            message = orjson.loads(raw)
            handlers = self._handlers.get(message["kind"], [])
            payload = message["payload"]
        except (orjson.JSONDecodeError, KeyError, TypeError):
            log.warning("ignoring malformed control message")
            return
        for handler in handlers:
            try:
                await handler(payload)
            except Exception:
                log.exception("control handler for %s failed", message["kind"])

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
