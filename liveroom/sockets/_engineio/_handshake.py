"""The engine sessions of one server as they open, for the handshake deadline
(``liveroom/sockets/handshakes.py``), and the way to close one that never completed the
Socket.IO connect.

Relied on (python-socketio 5.18.1, python-engineio 4.15.1): python-socketio registers its engine
connect handler (``_handle_eio_connect``) with ``eio.on("connect", ...)``, and engineio keeps it
in ``eio.handlers["connect"]`` and awaits it with ``(eio_sid, environ)`` when a session opens,
websocket or polling; ``manager.sid_from_eio_sid(eio_sid, "/")`` is None until the client's
CONNECT packet; ``eio.sockets`` holds the sessions by engine sid, each with ``closed``,
``queue`` and ``close(wait=, abort=)``; ``AsyncServer.environ[eio_sid]`` is the opening
request's environ (``aiohttp.request``, ``QUERY_STRING``). Closing a session is what engineio's
own ``disconnect`` does, plus cutting the TCP connection of a websocket.
"""

from __future__ import annotations

import contextlib
import urllib.parse
from collections.abc import Callable
from typing import Any

import socketio
from engineio import async_socket as engineio_async_socket

from ._pins import EngineioIncompatible, check_engineio_version

__all__ = ["SessionOpenings", "check_handshake_internals", "check_reaper_internals"]


def check_reaper_internals(sio: socketio.AsyncServer) -> None:
    """Raise ``EngineioIncompatible`` unless ``sio`` has what ``EngineSockets`` (and so the
    slow-client reaper) reads."""
    check_engineio_version()
    for owner, attribute in ((sio, "eio"), (sio, "environ"), (sio, "manager"),
                             (sio.manager, "eio_sid_from_sid"), (sio.eio, "sockets"),
                             (engineio_async_socket.AsyncSocket, "close")):
        if not hasattr(owner, attribute):
            raise EngineioIncompatible(f"{type(owner).__name__}.{attribute} is gone")


def check_handshake_internals(sio: socketio.AsyncServer) -> None:
    """Raise ``EngineioIncompatible`` unless ``sio`` has what ``SessionOpenings`` reads and
    wraps."""
    check_reaper_internals(sio)
    handlers = getattr(sio.eio, "handlers", None)
    if not isinstance(handlers, dict) or not callable(handlers.get("connect")):
        raise EngineioIncompatible("engineio server has no 'connect' handler in eio.handlers")
    if not callable(getattr(sio.manager, "sid_from_eio_sid", None)):
        raise EngineioIncompatible("socketio manager has no sid_from_eio_sid")


class SessionOpenings:
    """Calls ``on_open(eio_sid)`` as each engine session of ``sio`` opens (before
    python-socketio sees it), and answers what a handshake deadline asks about a session."""

    def __init__(self, sio: socketio.AsyncServer, on_open: Callable[[str], None]) -> None:
        check_handshake_internals(sio)
        self._sio = sio
        socketio_connect = sio.eio.handlers["connect"]

        async def engine_connect(eio_sid: str, environ: dict[str, Any], *args: Any) -> Any:
            on_open(eio_sid)
            return await socketio_connect(eio_sid, environ, *args)

        sio.eio.on("connect", engine_connect)

    def socketio_connected(self, eio_sid: str) -> bool:
        """Whether the session's Socket.IO connect was accepted (or is being authenticated)."""
        return self._sio.manager.sid_from_eio_sid(eio_sid, "/") is not None

    def is_open(self, eio_sid: str) -> bool:
        socket = self._sio.eio.sockets.get(eio_sid)
        return socket is not None and not socket.closed

    async def close(self, eio_sid: str) -> None:
        """Close the session: a websocket by cutting its TCP connection, a long poll by
        answering the pending request; either way the session is forgotten."""
        sio = self._sio
        socket = sio.eio.sockets.get(eio_sid)
        if socket is None:
            return
        environ: dict[str, Any] = sio.environ.get(eio_sid) or {}
        query = urllib.parse.parse_qs(environ.get("QUERY_STRING", ""))
        request = environ.get("aiohttp.request")
        transport = getattr(request, "transport", None)
        if query.get("transport") == ["websocket"] and transport is not None:
            # The opening request is the websocket itself: cut its connection. (A polling
            # session's opening request is long answered; its keep-alive connection may carry
            # anything by now.)
            transport.abort()
        with contextlib.suppress(Exception):
            await socket.close(wait=False, abort=True)
        # Ends a pending long poll (it answers at once) and a websocket writer.
        socket.queue.put_nowait(None)
        sio.eio.sockets.pop(eio_sid, None)
