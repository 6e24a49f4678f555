"""``LeanSocket``: python-engineio's socket with a websocket loop that costs less per frame.

``LeanEngine`` builds one for every session of its server (and only of its server). Relied on
(python-engineio 4.15.1, ``engineio/async_socket.py``): ``AsyncSocket._websocket_handler(ws)``
runs a websocket session: it reads frames, ``receive()``s each decoded ``packet.Packet``, and a
writer drains ``self.queue`` (``None`` ends it) into ``ws.send``; ``send(pkt)`` checks the ping
timeout (``check_ping_timeout()``) and queues; ``close(wait=, abort=, reason=)``; the socket's
``server``, ``sid``, ``connected``, ``upgraded`` and ``closed``. engineio's loop wraps every read
in ``asyncio.wait_for`` (a new task per frame) and every dequeue in another; ``LeanSocket`` keeps
the same steps with no task or timer per frame for sessions that start on websocket, and leaves
upgrades from long-polling to engineio. From the aiohttp driver's websocket (``ws``): its
``environ`` (``aiohttp.request``, whose transport it writes to), ``_sock`` (the
``WebSocketResponse``), ``wait()``, ``send()`` and ``close()``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from typing import Any

from aiohttp.web import WebSocketResponse
from engineio import async_socket as engineio_async_socket
from engineio import exceptions as engineio_exceptions
from engineio import packet as engineio_packet

from ...ratelimit import TokenBucket
from .._budget import FrameBudget
from ._fast_events import client_of
from ._frames import text_frame, websocket_frame

__all__ = [
    "DIRECT_WRITE_MAX_BUFFERED",
    "LeanSocket",
    "encoded_text_packet",
]

log = logging.getLogger("liveroom.sockets.engineio")


# Frames an engine session may send before its Socket.IO connect is accepted (the connect
# itself, a retry or two): past it, a client that never connects is talking to no one.
PRECONNECT_RATE_PER_S = 2.0
PRECONNECT_BURST = 8.0

# A socket writes a frame itself only while its transport holds at most this much unsent data;
# past it, frames wait in engineio's queue, where the slow-client reaper sees them pile up.
DIRECT_WRITE_MAX_BUFFERED = 64 * 1024


def encoded_text_packet(encoded: bytes) -> engineio_packet.Packet:
    """The engine packet whose encoding is ``encoded`` (a text packet, ``b"<type><data>"``)."""
    text = encoded.decode()
    pkt = engineio_packet.Packet(int(text[0]), text[1:])
    pkt.encode_cache = text
    return pkt


class LeanSocket(engineio_async_socket.AsyncSocket):  # type: ignore[misc]
    """engineio's socket, with a websocket loop that costs less per frame.

    - The reader creates no task and no timer per frame: it notes when it last read, and the
      slow-client reaper cuts sockets silent for longer than engineio's ping interval plus
      timeout (what the per-frame timeout of engineio's loop did).
    - A packet sent while nothing is waiting to be written (the usual ack) is framed and written
      to the transport at once instead of waking the writer task; broadcasts write one frame
      built once for all their recipients (``deliver``). Otherwise packets queue as in engineio,
      in order, and the writer drains them.
    """

    _transport: asyncio.Transport | None = None  # set while the lean loop owns a websocket
    _response: WebSocketResponse | None = None  # aiohttp's side of it: knows when it is closing
    _writing = True  # the writer has packets in hand: direct writes would overtake them
    last_read = 0.0
    # Every frame the client sends is counted here (``liveroom/sockets/_budget.py``); the edge
    # sets the connection's budget when Socket.IO connects, and until then a small allowance of
    # the socket's own applies.
    frame_budget: FrameBudget | None = None

    def admit(self, frame: str | bytes, now: float) -> bool:
        """Whether ``frame`` is within the client's event budget. A refused event frame that
        asked for an answer is answered ``rate_limited``; a client that goes on sending past
        its budget is logged once and disconnected (``frame_budget.exhausted``)."""
        budget = self.frame_budget
        if budget is None:
            budget = self.frame_budget = FrameBudget(
                (TokenBucket(PRECONNECT_RATE_PER_S, PRECONNECT_BURST),), "")
        if budget.admit(now):
            return True
        fast = self.server.fast_events
        if budget.exhausted:
            if fast is not None:
                fast.mistakes.warn(client_of(self), "kept sending past its event budget; "
                                                    "disconnected")
        elif fast is not None and type(frame) is str and frame.startswith("42"):
            fast.refuse(self, frame, budget.retry_after_ms())
        return False

    async def receive(self, pkt: engineio_packet.Packet) -> None:
        """A packet from a long-polling client, or from a websocket engineio upgraded: counted,
        and its events taken by the fast path like the lean loop's."""
        data = pkt.data
        frame = ("4" + data) if pkt.packet_type == engineio_packet.MESSAGE and type(
            data) is str else data
        if not self.admit(frame if isinstance(frame, str | bytes) else "", time.perf_counter()):
            if self.frame_budget is not None and self.frame_budget.exhausted:
                await self.close(wait=False, abort=True,
                                 reason=self.server.reason.TRANSPORT_ERROR)
            return
        fast = self.server.fast_events
        if (fast is not None and type(frame) is str and frame.startswith("42")
                and await fast.handle(self, frame)):
            return
        await super().receive(pkt)

    def writable_now(self) -> bool:
        transport = self._transport
        return (transport is not None and not self._writing and self.queue.empty()
                and not transport.is_closing()
                # aiohttp marks the response closed before it sends its close frame: nothing
                # may follow that frame.
                and self._response is not None and not self._response.closed
                and transport.get_write_buffer_size() <= DIRECT_WRITE_MAX_BUFFERED)

    async def send(self, pkt: engineio_packet.Packet) -> None:
        if await self.check_ping_timeout():
            self.send_now(pkt)

    def deliver(self, pkts: Sequence[engineio_packet.Packet], frames: bytes) -> None:
        """Send ``pkts`` whose websocket frames, in order, are already built as ``frames`` (a
        broadcast): one write when the socket can take them now, else each packet queued. The
        caller has checked the ping timeout."""
        if self.writable_now():
            assert self._transport is not None
            self._transport.write(frames)
        else:
            for pkt in pkts:
                self.queue.put_nowait(pkt)

    def send_now(self, pkt: engineio_packet.Packet) -> None:
        """``send`` without its ping-timeout check, for an answer to a socket that has just
        spoken: written now when the socket can take it, else queued (the queue is unbounded,
        so nothing waits)."""
        self.deliver((pkt,), websocket_frame(pkt.encode()))

    def send_encoded(self, encoded: bytes) -> None:
        """``send_now`` of a text packet already encoded as UTF-8 (``b"4..."``), the deferred
        acks' form: no packet object is built unless it has to wait in the queue."""
        if self.writable_now():
            assert self._transport is not None
            self._transport.write(text_frame(encoded))
        else:
            self.queue.put_nowait(encoded_text_packet(encoded))

    def silent_for(self, now: float) -> float:
        """Seconds since the lean loop last read a frame (0 when it does not own the socket)."""
        return now - self.last_read if self._transport is not None else 0.0

    async def _websocket_handler(self, ws: Any) -> None:
        if getattr(self, "connected", False):
            # An upgrade from long-polling: engineio's own handshake and loop.
            await super()._websocket_handler(ws)
            return
        self.connected = True
        self.upgraded = True
        loop = asyncio.get_running_loop()
        self.last_read = loop.time()
        self._transport = ws.environ["aiohttp.request"].transport
        self._response = ws._sock
        writer = asyncio.ensure_future(self._lean_writer(ws))
        max_size = self.server.max_http_buffer_size
        # The Socket.IO event fast path (``_fast_events``), when the server has one.
        fast = self.server.fast_events
        try:
            while True:
                try:
                    data = await ws.wait()
                except asyncio.CancelledError:
                    break
                except Exception:  # closed, or not a text/binary frame
                    break
                self.last_read = loop.time()
                if data is None or len(data) > max_size:
                    break
                if not self.admit(data, time.perf_counter()):
                    if self.frame_budget is not None and self.frame_budget.exhausted:
                        break
                    continue
                try:
                    if (fast is not None and type(data) is str and data.startswith("42")
                            and await fast.handle(self, data)):
                        continue
                    # Counted above: engineio's own receive, not this class's.
                    await super().receive(engineio_packet.Packet(encoded_packet=data))
                except engineio_exceptions.UnknownPacketError:
                    pass
                except engineio_exceptions.SocketIsClosedError:
                    break
                except Exception:
                    log.exception("error handling a websocket packet")
        finally:
            self._transport = None
        await self.queue.put(None)  # the writer's signal to finish
        await writer
        await self.close(wait=False, abort=True, reason=self.server.reason.TRANSPORT_CLOSE)

    async def _lean_writer(self, ws: Any) -> None:
        queue = self.queue
        self._writing = False
        try:
            while True:
                try:
                    first = await queue.get()
                except asyncio.CancelledError:
                    break
                # Set before any await: from here until the queue is empty, a direct write
                # would overtake these packets.
                self._writing = True
                queue.task_done()
                if first is None:
                    break
                packets = [first]
                ended = False
                while not queue.empty():
                    more = queue.get_nowait()
                    queue.task_done()
                    if more is None:
                        ended = True
                        break
                    packets.append(more)
                try:
                    for pkt in packets:
                        await ws.send(pkt.encode())
                except Exception:
                    break
                if ended:
                    break
                self._writing = False
        finally:
            self._writing = True
            self._transport = None
        await ws.close()
