"""python-engineio's aiohttp websocket, without permessage-deflate.

The protocol promises no per-message compression (docs/protocol.md). python-engineio's aiohttp
driver builds its ``aiohttp.web.WebSocketResponse`` with aiohttp's default ``compress=True``, so
every browser (they all offer permessage-deflate) would get each small ack deflated: CPU per
frame on the server, and a zlib context per connection. python-engineio has no option for it;
``LeanEngine`` gives its own driver table this class instead, and the handshake then does not
accept the extension.
"""

from __future__ import annotations

from typing import Any

from aiohttp.web import WebSocketResponse
from engineio.async_drivers import aiohttp as engineio_aiohttp

__all__ = ["UncompressedWebSocket"]


class UncompressedWebSocket(engineio_aiohttp.WebSocket):  # type: ignore[misc]
    """engineio's aiohttp websocket with ``compress=False``; otherwise its ``__call__`` line for
    line (``tests/test_engineio_internals.py`` compares them)."""

    async def __call__(self, environ: dict[str, Any]) -> WebSocketResponse:
        request = environ["aiohttp.request"]
        self._sock = WebSocketResponse(max_msg_size=self.server.max_http_buffer_size,
                                       compress=False)
        await self._sock.prepare(request)
        self.environ = environ
        await self.handler(self)
        return self._sock
