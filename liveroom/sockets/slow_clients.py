"""Drop clients that stop reading, so one stalled phone cannot grow the server's memory.

python-engineio queues every outgoing packet per socket without a bound, and its writer waits on
the TCP send buffer; a client that never reads therefore makes its queue grow with every room
broadcast. The owner here checks each local socket's queue once a second and cuts the
connection of any socket past the bound, and of any lean socket that read nothing for a whole
ping cycle (its reader keeps no timer per frame; see ``LeanSocket``). What it reads of the
engine is behind ``EngineSockets`` (``liveroom/sockets/_engineio/``).
"""

from __future__ import annotations

import asyncio
import logging

import socketio

from ..loops import PeriodicLoop
from ._engineio import EngineSockets

__all__ = ["SlowClientReaper"]

log = logging.getLogger("liveroom.slow_clients")
# Sockets checked between two turns of the event loop.
SWEEP_SLICE = 256


class SlowClientReaper(PeriodicLoop):
    """Owner of the loop that disconnects sockets whose outgoing queue passed ``max_queued``,
    or that read nothing for longer than ``max_silence_s`` (a ping cycle by default)."""

    name = "slow-client-reaper"

    def __init__(self, sio: socketio.AsyncServer, max_queued: int = 1000,
                 interval_s: float = 1.0) -> None:
        self._sockets = EngineSockets(sio)
        super().__init__(interval_s)
        self.max_queued = max_queued
        self.max_silence_s = self._sockets.ping_cycle_s
        self.dropped = 0

    async def tick(self) -> None:
        await self.sweep()

    def backlog(self, eio_sid: str) -> int:
        return self._sockets.backlog(eio_sid)

    async def sweep(self) -> int:
        """One pass over every local socket, letting the event loop run every
        ``SWEEP_SLICE`` sockets: a pass over a 10,000-member room held every buy's answer
        for a noticeable time (docs/performance.md, issue 21)."""
        dropped = 0
        now = asyncio.get_running_loop().time()
        turn = SWEEP_SLICE
        for eio_sid, backlog, silence in self._sockets.each(now):
            turn -= 1
            if not turn:
                turn = SWEEP_SLICE
                await asyncio.sleep(0)
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
            await self._sockets.cut(eio_sid)
        return dropped
