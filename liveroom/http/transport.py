"""Transport limits and headers of the HTTP edge (docs/reliability.md, "Transport limits and
headers").

- **Header timeout.** aiohttp's ``keepalive_timeout`` (``runner_options``): its timer runs from
  a connection's start and again from each answer, and closes the connection if it is still
  waiting for a whole request then. Bytes that arrive do not push it back, so half-sent headers
  and a trickle of header bytes are cut like an idle keep-alive connection.
- **Body timeout** (``BodyDeadline``): a request body that has not fully arrived
  ``http_body_timeout_s`` after its headers fails every read with ``BodyTimedOut``; the error
  middleware answers ``408 request_timeout`` and the connection closes.
- **Connections per client address** (``ConnectionCap``): in-flight requests per address,
  where a websocket or a long poll is in flight for its whole life; past the cap, ``429
  too_many_connections`` and the connection closes.
- **Security headers** (``add_security_headers``) on every response the application prepares.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from aiohttp import StreamReader, web

from ..addresses import UNKNOWN_ADDRESS, ClientAddresses
from ..errors import error_body
from ..exceptions import TooManyConnections
from ..metrics import Counter, Metrics
from ..settings import Settings
from ._base import BodyTimedOut, HandlerFn, json_response

__all__ = [
    "CONTENT_SECURITY_POLICY",
    "SECURITY_HEADERS",
    "BodyDeadline",
    "ConnectionCap",
    "add_security_headers",
    "runner_options",
]

log = logging.getLogger("liveroom.http.transport")

# Only the application's own scripts and styles (no inline script, handler or style attribute);
# images may be data: (the empty favicon) and blob: URLs; media from blob: (MediaStreams);
# 'self' in connect-src covers the page's own ws:/wss: origin (CSP Level 3, every current
# browser). Nothing may frame the pages, no plugin runs, no <base> moves relative URLs.
CONTENT_SECURITY_POLICY = "; ".join((
    "default-src 'self'",
    "script-src 'self'",
    "style-src 'self'",
    "img-src 'self' data: blob:",
    "media-src 'self' blob:",
    "connect-src 'self'",
    "font-src 'self'",
    "object-src 'none'",
    "base-uri 'none'",
    "form-action 'self'",
    "frame-ancestors 'none'",
))
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}
# At most one warning line about refused connections per this many seconds.
REFUSAL_LOG_INTERVAL_S = 10.0


def runner_options(settings: Settings) -> dict[str, Any]:
    """Keyword arguments for ``web.AppRunner`` (``liveroom serve`` and the test harness)."""
    return {"keepalive_timeout": settings.http_header_timeout_s}


async def add_security_headers(request: web.Request, response: web.StreamResponse) -> None:
    """For the application's ``on_response_prepare``: pages, the API, errors, static files,
    ``/socket.io/`` and ``/metrics`` all get the same headers."""
    headers = response.headers
    for name, value in SECURITY_HEADERS.items():
        headers.setdefault(name, value)


class BodyDeadline:
    """Owner of the body timers: every request body must have arrived ``timeout_s`` after its
    headers, whoever reads it (our routes, python-engineio's polling POST) or does not.

    Most bodies come with their headers and get no timer. Otherwise one timer per body, cancelled
    the moment its last byte arrives; at the deadline every read of the body fails with
    ``BodyTimedOut``. ``close()`` cancels the timers still pending.
    """

    def __init__(self, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        self._timers: set[asyncio.TimerHandle] = set()

    @property
    def pending(self) -> int:
        return len(self._timers)

    @web.middleware
    async def middleware(self, request: web.Request, handler: HandlerFn) -> web.StreamResponse:
        content = request.content
        if request.body_exists and not content.is_eof():
            self._arm(content)
        return await handler(request)

    def _arm(self, content: StreamReader) -> None:
        timers = self._timers

        def expire() -> None:
            timers.discard(timer)
            if not content.is_eof():
                content.set_exception(BodyTimedOut(self.timeout_s))

        def arrived() -> None:
            timer.cancel()
            timers.discard(timer)

        timer = asyncio.get_running_loop().call_later(self.timeout_s, expire)
        timers.add(timer)
        content.on_eof(arrived)

    async def close(self) -> None:
        for timer in self._timers:
            timer.cancel()
        self._timers.clear()


class ConnectionCap:
    """Owner of the per-address count of in-flight requests on this process.

    A websocket (Socket.IO's, after its upgrade request) and a long poll are in flight for as
    long as they are open, so they count for their whole life; an idle keep-alive connection
    does not count (the header timeout closes it). Counted by the client address
    (``ClientAddresses``: the TCP peer, or the address a trusted proxy names).
    """

    def __init__(self, addresses: ClientAddresses, limit: int,
                 metrics: Metrics | None = None) -> None:
        self.addresses = addresses
        self.limit = limit
        self.counts: dict[str, int] = {}
        self.refused: Counter | None = None
        self._unlogged = 0
        self._logged_at = 0.0
        if metrics is not None:
            self.refused = metrics.add(Counter(
                "liveroom_connections_refused_total",
                "Requests and websockets refused because their client address had "
                "LIVEROOM_MAX_CONNECTIONS_PER_ADDRESS open."))
            metrics.gauge_from(
                "liveroom_busiest_address_connections",
                "In-flight requests and websockets of the client address that has the most.",
                self.busiest, merge="max")

    def busiest(self) -> int:
        return max(self.counts.values(), default=0)

    @web.middleware
    async def middleware(self, request: web.Request, handler: HandlerFn) -> web.StreamResponse:
        address = self.addresses.of_request(request)
        if address == UNKNOWN_ADDRESS or self.addresses.unlimited(address):
            # The connection is already gone, or the address is exempt (a load generator).
            return await handler(request)
        counts = self.counts
        held = counts.get(address, 0)
        if held >= self.limit:
            return self._refuse(address)
        counts[address] = held + 1
        try:
            return await handler(request)
        finally:
            left = counts[address] - 1
            if left:
                counts[address] = left
            else:
                del counts[address]

    def _refuse(self, address: str) -> web.Response:
        if self.refused is not None:
            self.refused.inc()
        self._unlogged += 1
        now = time.monotonic()
        if now - self._logged_at >= REFUSAL_LOG_INTERVAL_S:
            log.warning("refused %d request(s) over the cap of %d connections per address "
                        "(latest from %s)", self._unlogged, self.limit, address)
            self._unlogged = 0
            self._logged_at = now
        response = json_response({"error": error_body(TooManyConnections(self.limit))}, 429)
        response.headers["Retry-After"] = "1"
        # The connection goes too: an address over its cap holds one descriptor fewer.
        response.force_close()
        return response
