"""Transport limits of the HTTP edge (docs/protocol.md, "Transport limits").

- **Header timeout.** aiohttp's ``keepalive_timeout`` (``runner_options``): its timer runs from
  a connection's start and again from each answer, and closes the connection if it is still
  waiting for a whole request then. Bytes that arrive do not push it back, so half-sent headers
  and a trickle of header bytes are cut like an idle keep-alive connection.
- **Body timeout** (``body_deadline``): a request body that has not fully arrived
  ``http_body_timeout_s`` after its headers fails every read with ``BodyTimedOut``; the error
  middleware answers ``408 request_timeout`` and the connection closes.
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import StreamReader, web

from ..settings import Settings
from ._base import BodyTimedOut, HandlerFn

__all__ = [
    "body_deadline",
    "runner_options",
]


def runner_options(settings: Settings) -> dict[str, Any]:
    """Keyword arguments for ``web.AppRunner`` (``liveroom serve`` and the test harness)."""
    return {"keepalive_timeout": settings.http_header_timeout_s}


def _expire(content: StreamReader, timeout_s: float) -> None:
    if not content.is_eof():
        content.set_exception(BodyTimedOut(timeout_s))


def body_deadline(timeout_s: float) -> Any:
    """Middleware: every request body must have arrived ``timeout_s`` after its headers,
    whoever reads it (our routes, python-engineio's polling POST) or does not."""

    @web.middleware
    async def deadline(request: web.Request, handler: HandlerFn) -> web.StreamResponse:
        content = request.content
        # Most bodies came with their headers: no timer at all then.
        if request.body_exists and not content.is_eof():
            timer = asyncio.get_running_loop().call_later(timeout_s, _expire, content, timeout_s)
            # Cancelled the moment the last byte arrives.
            content.on_eof(timer.cancel)
        return await handler(request)

    return deadline

