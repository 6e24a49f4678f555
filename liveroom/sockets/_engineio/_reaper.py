"""What the slow-client reaper (``liveroom/sockets/slow_clients.py``) sees of one server's
engine sockets, and how it cuts one.

Relied on (python-engineio 4.15.1, python-socketio 5.18.1): ``eio.sockets`` (engine sockets by
sid), each socket's ``queue`` (an ``asyncio.Queue`` engineio never bounds) and
``close(wait=, abort=)``, ``eio.ping_interval`` and ``eio.ping_timeout``, and
``AsyncServer.environ[eio_sid]["aiohttp.request"]`` (to cut the TCP connection). A
``LeanSocket`` also tells how long it has been silent.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import socketio

from ._handshake import check_reaper_internals

__all__ = ["EngineSockets"]


class EngineSockets:
    """The engine sockets of ``sio``: their outgoing backlog and silence, and a way to cut one."""

    def __init__(self, sio: socketio.AsyncServer) -> None:
        check_reaper_internals(sio)
        self._sio = sio

    @property
    def ping_cycle_s(self) -> float:
        """engineio pings every ping interval and expects the pong within the ping timeout:
        a live client reads something at least this often."""
        return float(self._sio.eio.ping_interval + self._sio.eio.ping_timeout)

    def backlog(self, eio_sid: str) -> int:
        """Packets waiting in the socket's outgoing queue (0 for a socket that is gone)."""
        return _queued(self._sio.eio.sockets.get(eio_sid))

    def each(self, now: float) -> Iterator[tuple[str, int, float]]:
        """``(eio_sid, backlog, seconds silent at now)`` for each socket open when the
        iteration starts, each read when it is reached (a socket that does not track its
        silence counts as never silent)."""
        for eio_sid, socket in list(self._sio.eio.sockets.items()):
            silent_for = getattr(socket, "silent_for", None)
            yield eio_sid, _queued(socket), silent_for(now) if silent_for is not None else 0.0

    async def cut(self, eio_sid: str) -> None:
        """Abort the socket's TCP connection and close its session."""
        environ: dict[str, Any] = self._sio.environ.get(eio_sid) or {}
        request = environ.get("aiohttp.request")
        transport = getattr(request, "transport", None)
        if transport is not None:
            # The writer is stuck on a full TCP buffer: only cutting the connection frees it.
            transport.abort()
        socket = self._sio.eio.sockets.get(eio_sid)
        if socket is not None:
            with contextlib.suppress(Exception):
                await socket.close(wait=False, abort=True)


def _queued(socket: object) -> int:
    queue = getattr(socket, "queue", None)
    return queue.qsize() if queue is not None else 0
