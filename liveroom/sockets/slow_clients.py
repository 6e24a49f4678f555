"""Drop clients that stop reading, so one stalled phone cannot grow the server's memory.

python-engineio queues every outgoing packet per socket without a bound, and its writer waits on
the TCP send buffer; a client that never reads therefore makes its queue grow with every room
broadcast. The owner here checks each local socket's queue once a second and cuts the
connection of any socket past the bound. The engineio internals it reads are checked by
``check_engineio`` at start and by a test, so an upgrade that changes them fails loudly.
"""

from __future__ import annotations

import contextlib
import logging
from importlib.metadata import version
from typing import Any

import socketio

from ..loops import PeriodicLoop

__all__ = ["SUPPORTED_ENGINEIO", "EngineioIncompatible", "SlowClientReaper", "check_engineio"]

log = logging.getLogger("liveroom.slow_clients")
SUPPORTED_ENGINEIO = ("4.15.",)
NAMESPACE = "/"


class EngineioIncompatible(RuntimeError):
    pass


def check_engineio(sio: socketio.AsyncServer) -> None:
    installed = version("python-engineio")
    if not installed.startswith(SUPPORTED_ENGINEIO):
        raise EngineioIncompatible(
            f"python-engineio {installed} is not one the slow-client reaper was checked against "
            f"({', '.join(SUPPORTED_ENGINEIO)}x); re-check liveroom/sockets/slow_clients.py")
    for owner, attribute in ((sio, "eio"), (sio, "environ"), (sio, "manager"),
                             (sio.manager, "eio_sid_from_sid"), (sio.eio, "sockets")):
        if not hasattr(owner, attribute):
            raise EngineioIncompatible(f"{type(owner).__name__}.{attribute} is gone")


class SlowClientReaper(PeriodicLoop):
    """Owner of the loop that disconnects sockets whose outgoing queue passed ``max_queued``."""

    name = "slow-client-reaper"

    def __init__(self, sio: socketio.AsyncServer, max_queued: int = 1000,
                 interval_s: float = 1.0) -> None:
        check_engineio(sio)
        super().__init__(interval_s)
        self.sio = sio
        self.max_queued = max_queued
        self.dropped = 0

    async def tick(self) -> None:
        await self.sweep()

    def backlog(self, eio_sid: str) -> int:
        socket = self.sio.eio.sockets.get(eio_sid)
        queue = getattr(socket, "queue", None)
        return queue.qsize() if queue is not None else 0

    async def sweep(self) -> int:
        dropped = 0
        for eio_sid in list(self.sio.eio.sockets):
            backlog = self.backlog(eio_sid)
            if backlog > self.max_queued:
                log.warning("dropping a client that stopped reading (%d packets queued)", backlog)
                await self._drop(eio_sid)
                dropped += 1
        self.dropped += dropped
        return dropped

    async def _drop(self, eio_sid: str) -> None:
        environ: dict[str, Any] = self.sio.environ.get(eio_sid) or {}
        request = environ.get("aiohttp.request")
        transport = getattr(request, "transport", None)
        if transport is not None:
            # The writer is stuck on a full TCP buffer: only cutting the connection frees it.
            transport.abort()
        socket = self.sio.eio.sockets.get(eio_sid)
        if socket is not None:
            with contextlib.suppress(Exception):
                await socket.close(wait=False, abort=True)
