"""Every python-engineio internal the Socket.IO edge depends on, in one place, pinned by version.

The protocol promises no per-message compression (docs/protocol.md). python-engineio's aiohttp
driver builds its ``aiohttp.web.WebSocketResponse`` with aiohttp's default ``compress=True``, so
every browser (they all offer permessage-deflate) would get each small ack deflated: CPU per
frame on the server, and a zlib context of ~100 KB+ per connection. There is no option for it,
so we swap the driver's websocket class for one that builds the response with
``compress=False``; the handshake then simply does not accept the extension.

Internals relied on (python-engineio 4.x, ``engineio/async_drivers/aiohttp.py``):

1. ``AsyncServer._async`` is the driver's dict; its ``"websocket"`` entry is the class the
   server instantiates as ``cls(handler, server)`` and awaits as ``await ws(environ)`` on a
   websocket request.
2. That class (``WebSocket``) keeps the ``WebSocketResponse`` in ``_sock`` and the environ in
   ``environ``, reads ``environ["aiohttp.request"]`` and ``server.max_http_buffer_size``, and
   its ``send``/``wait``/``close`` only use ``_sock``.

``tests/test_engineio_internals.py`` checks each of these, so an upgrade fails loudly instead of
silently compressing again.
"""

from __future__ import annotations

from importlib import metadata
from typing import Any

import socketio
from aiohttp.web import WebSocketResponse
from engineio.async_drivers import aiohttp as engineio_aiohttp

__all__ = [
    "SUPPORTED_ENGINEIO_VERSIONS",
    "EngineioIncompatible",
    "UncompressedWebSocket",
    "check_engineio",
    "disable_websocket_compression",
]

SUPPORTED_ENGINEIO_VERSIONS = frozenset({"4.15.1"})


class EngineioIncompatible(RuntimeError):
    """The installed python-engineio is not the one these internals were checked against."""


def check_engineio() -> None:
    version = metadata.version("python-engineio")
    if version not in SUPPORTED_ENGINEIO_VERSIONS:
        raise EngineioIncompatible(
            f"python-engineio {version} is not one of {sorted(SUPPORTED_ENGINEIO_VERSIONS)}: "
            "re-read liveroom/sockets/_engineio_internals.py against its sources")
    if engineio_aiohttp._async.get("websocket") is not engineio_aiohttp.WebSocket:
        raise EngineioIncompatible("engineio's aiohttp driver has another websocket class")


class UncompressedWebSocket(engineio_aiohttp.WebSocket):  # type: ignore[misc]
    """engineio's aiohttp websocket, without permessage-deflate."""

    async def __call__(self, environ: dict[str, Any]) -> WebSocketResponse:
        request = environ["aiohttp.request"]
        self._sock = WebSocketResponse(max_msg_size=self.server.max_http_buffer_size,
                                       compress=False)
        await self._sock.prepare(request)
        self.environ = environ
        await self.handler(self)
        return self._sock


def disable_websocket_compression(sio: socketio.AsyncServer) -> None:
    """Make ``sio``'s engine answer websocket upgrades without permessage-deflate."""
    check_engineio()
    eio = sio.eio
    driver = getattr(eio, "_async", None)
    if not isinstance(driver, dict) or "websocket" not in driver:
        raise EngineioIncompatible("engineio server has no async driver dict with 'websocket'")
    # A copy: the driver module's dict is shared by every server in the process.
    eio._async = {**driver, "websocket": UncompressedWebSocket}
