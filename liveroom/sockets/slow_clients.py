"""Drop clients that stop reading, so one stalled phone cannot grow the server's memory.

python-engineio queues every outgoing packet per socket without a bound, and its writer waits on
the TCP send buffer; a client that never reads therefore makes its queue grow with every room
broadcast. The owner here checks each local socket's queue once a second and cuts the
connection of any socket past the bound, and of any lean socket that read nothing for a whole
ping cycle (its reader keeps no timer per frame; see ``LeanSocket``). The engineio internals it
reads are listed and checked in ``_engineio_internals`` (at start, and by its test), so an
upgrade that changes them fails loudly.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import socketio

from ..loops import PeriodicLoop
from ._engineio_internals import check_reaper_internals

__all__ = ["SlowClientReaper"]

log = logging.getLogger("liveroom.slow_clients")


class SlowClientReaper(PeriodicLoop):
    """Owner of the loop that disconnects sockets whose outgoing queue passed ``max_queued``."""

    name = "slow-client-reaper"

    def __init__(self, sio: socketio.AsyncServer, max_queued: int = 1000,
                 interval_s: float = 1.0) -> None:
        check_reaper_internals(sio)
        super().__init__(interval_s)
        self.sio = sio
        self.max_queued = max_queued
        # engineio pings every ping_interval and expects the pong within ping_timeout.
        self.max_silence_s = float(sio.eio.ping_interval + sio.eio.ping_timeout)
        self.dropped = 0

    async def tick(self) -> None:
        await self.sweep()

    def backlog(self, eio_sid: str) -> int:
        return _queued(self.sio.eio.sockets.get(eio_sid))

    async def sweep(self) -> int:
        dropped = 0
        sockets = self.sio.eio.sockets
        now = asyncio.get_running_loop().time()
        for eio_sid, socket in list(sockets.items()):
            backlog = _queued(socket)
            silent_for = getattr(socket, "silent_for", None)
            silence = silent_for(now) if silent_for is not None else 0.0
            if backlog > self.max_queued:
                log.warning("dropping a client that stopped reading (%d packets queued)", backlog)
            elif silence > self.max_silence_s:
                # Not even a pong for a whole ping cycle: the peer is gone without a FIN.
                log.info("dropping a client silent for %.0f s", silence)
            else:
                continue
            # Counted before the awaits below: the disconnect they trigger is visible to others
            # (metrics, tests) before the sweep returns.
            self.dropped += 1
            dropped += 1
            await self._drop(eio_sid)
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


def _queued(socket: object) -> int:
    """Packets waiting in an engine socket's outgoing queue (0 for a socket that is gone)."""
    queue = getattr(socket, "queue", None)
    return queue.qsize() if queue is not None else 0
