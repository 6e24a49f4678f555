"""Close Engine.IO sessions that never complete the Socket.IO connect.

python-socketio has no such timeout: a client that opens the transport and never sends the
CONNECT packet (or keeps retrying a refused one) holds a socket and a descriptor until the ping
cycle gives up on it, if ever. What it reads and wraps of the engine is behind
``SessionOpenings`` (``liveroom/sockets/_engineio/``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import socketio

from ..loops import PeriodicLoop
from ._engineio import SessionOpenings

__all__ = ["HandshakeDeadline"]

log = logging.getLogger("liveroom.sockets.engineio")


class HandshakeDeadline(PeriodicLoop):
    """Owner of the loop that closes Engine.IO sessions (websocket or long-polling) that have
    not completed the Socket.IO connect ``timeout_s`` after they opened.

    Sessions are noted as they open (in order, so each sweep looks only at those whose deadline
    has passed) and forgotten at their deadline, when the ones still without a Socket.IO
    connection are closed; ``on_timeout`` is called for each.
    """

    name = "socketio-handshake-deadline"

    def __init__(self, sio: socketio.AsyncServer, timeout_s: float,
                 on_timeout: Callable[[], None] | None = None) -> None:
        super().__init__(min(1.0, max(0.05, timeout_s / 4)))
        self.timeout_s = timeout_s
        self.on_timeout = on_timeout
        self.closed = 0
        # eio sid -> the loop time of its deadline, in opening order (so in deadline order).
        self._pending: dict[str, float] = {}
        self._sessions = SessionOpenings(sio, self._opened)

    def _opened(self, eio_sid: str) -> None:
        self._pending[eio_sid] = asyncio.get_running_loop().time() + self.timeout_s

    @property
    def pending(self) -> int:
        return len(self._pending)

    async def tick(self) -> None:
        await self.sweep()

    async def sweep(self) -> int:
        """Close every session past its deadline without a Socket.IO connection; how many."""
        now = asyncio.get_running_loop().time()
        due = []
        for eio_sid, deadline in self._pending.items():
            if deadline > now:
                break
            due.append(eio_sid)
        closed = 0
        for eio_sid in due:
            del self._pending[eio_sid]
            if self._sessions.socketio_connected(eio_sid):
                continue  # connected (or being authenticated right now)
            if not self._sessions.is_open(eio_sid):
                continue
            closed += 1
            self.closed += 1
            if self.on_timeout is not None:
                self.on_timeout()
            await self._sessions.close(eio_sid)
        if closed:
            log.info("closed %d Engine.IO session(s) without a Socket.IO connect within %g s",
                     closed, self.timeout_s)
        return closed
