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

3. ``engineio.async_server`` builds each connection as ``async_socket.AsyncSocket(server, sid)``
   (a module attribute looked up at call time), and ``AsyncSocket._websocket_handler(ws)`` runs a
   websocket connection: it reads frames, ``receive()``s each decoded ``packet.Packet``, and a
   writer drains ``self.queue`` (``None`` ends it) into ``ws.send``. Its loop wraps every read in
   ``asyncio.wait_for`` (a new task per frame) and every dequeue in another ``wait_for``;
   ``LeanSocket`` keeps the same steps with ``asyncio.timeout`` (no task) for connections that
   start on websocket, and leaves polling upgrades to engineio.

4. The slow-client reaper reads ``AsyncServer.eio.sockets`` (engine sockets by sid), each
   socket's ``queue`` (an ``asyncio.Queue``) and ``close(wait=, abort=)``, and
   ``AsyncServer.environ[eio_sid]["aiohttp.request"]`` (to cut the TCP connection).

5. ``HandshakeDeadline`` closes Engine.IO sessions that never complete the Socket.IO connect.
   It wraps ``AsyncServer.eio.handlers["connect"]`` (python-socketio's ``_handle_eio_connect``,
   registered with ``eio.on("connect", ...)``; engineio awaits it with ``(eio_sid, environ)``
   when a session opens, websocket or polling), and later asks
   ``AsyncServer.manager.sid_from_eio_sid(eio_sid, "/")`` (None until the client's CONNECT
   packet) and ``AsyncServer.eio.sockets``. To close a session it aborts the TCP connection of
   a websocket session (``AsyncServer.environ[eio_sid]["aiohttp.request"]`` and its
   ``QUERY_STRING``), calls the socket's ``close(wait=False, abort=True)``, puts ``None`` in its
   ``queue`` (what ends a pending long poll and a websocket writer) and removes it from
   ``eio.sockets``, as engineio's own ``disconnect`` does.

``tests/test_engineio_internals.py`` checks each of these, so an upgrade fails loudly instead of
silently compressing again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import struct
import time
import urllib.parse
from collections.abc import Callable, Sequence
from importlib import metadata
from typing import Any

import socketio
from aiohttp.web import WebSocketResponse
from engineio import async_server as engineio_async_server
from engineio import async_socket as engineio_async_socket
from engineio import exceptions as engineio_exceptions
from engineio import packet as engineio_packet
from engineio.async_drivers import aiohttp as engineio_aiohttp

from ..loops import PeriodicLoop
from ..ratelimit import TokenBucket
from ._budget import FrameBudget
from ._fast_events import FAST_EVENTS_ATTRIBUTE, client_of

__all__ = [
    "DIRECT_WRITE_MAX_BUFFERED",
    "SUPPORTED_ENGINEIO_VERSIONS",
    "EngineioIncompatible",
    "HandshakeDeadline",
    "LeanSocket",
    "UncompressedWebSocket",
    "check_engineio",
    "check_handshake_internals",
    "check_reaper_internals",
    "disable_websocket_compression",
    "encoded_text_packet",
    "install_lean_sockets",
    "require_pinned",
    "text_frame",
    "websocket_frame",
]

log = logging.getLogger("liveroom.sockets.engineio")

SUPPORTED_ENGINEIO_VERSIONS = frozenset({"4.15.1"})


class EngineioIncompatible(RuntimeError):
    """The installed python-engineio is not the one these internals were checked against."""


def require_pinned(distribution: str, supported: frozenset[str], reread: str,
                   error: type[RuntimeError]) -> None:
    """Refuse a version of ``distribution`` that the internals relied on were not read against."""
    version = metadata.version(distribution)
    if version not in supported:
        raise error(f"{distribution} {version} is not one of {sorted(supported)}: "
                    f"re-read {reread}")


def check_engineio() -> None:
    require_pinned("python-engineio", SUPPORTED_ENGINEIO_VERSIONS,
                   "liveroom/sockets/_engineio_internals.py against its sources",
                   EngineioIncompatible)
    if engineio_aiohttp._async.get("websocket") is not engineio_aiohttp.WebSocket:
        raise EngineioIncompatible("engineio's aiohttp driver has another websocket class")


def check_reaper_internals(sio: socketio.AsyncServer) -> None:
    """What ``SlowClientReaper`` reads (point 4 above)."""
    check_engineio()
    for owner, attribute in ((sio, "eio"), (sio, "environ"), (sio, "manager"),
                             (sio.manager, "eio_sid_from_sid"), (sio.eio, "sockets"),
                             (engineio_async_socket.AsyncSocket, "close")):
        if not hasattr(owner, attribute):
            raise EngineioIncompatible(f"{type(owner).__name__}.{attribute} is gone")


def check_handshake_internals(sio: socketio.AsyncServer) -> None:
    """What ``HandshakeDeadline`` reads and wraps (point 5 above)."""
    check_reaper_internals(sio)
    handlers = getattr(sio.eio, "handlers", None)
    if not isinstance(handlers, dict) or not callable(handlers.get("connect")):
        raise EngineioIncompatible("engineio server has no 'connect' handler in eio.handlers")
    if not callable(getattr(sio.manager, "sid_from_eio_sid", None)):
        raise EngineioIncompatible("socketio manager has no sid_from_eio_sid")


class HandshakeDeadline(PeriodicLoop):
    """Owner of the loop that closes Engine.IO sessions (websocket or long-polling) that have
    not completed the Socket.IO connect ``timeout_s`` after they opened.

    python-socketio has no such timeout: a client that opens the transport and never sends the
    CONNECT packet (or keeps retrying a refused one) holds a socket and a descriptor until the
    ping cycle gives up on it, if ever. Sessions are noted as they open (in order, so each sweep
    looks only at those whose deadline has passed) and forgotten at their deadline, when the
    ones still without a Socket.IO connection are closed.
    """

    name = "socketio-handshake-deadline"

    def __init__(self, sio: socketio.AsyncServer, timeout_s: float,
                 on_timeout: Callable[[], None] | None = None) -> None:
        check_handshake_internals(sio)
        super().__init__(min(1.0, max(0.05, timeout_s / 4)))
        self.sio = sio
        self.timeout_s = timeout_s
        self.on_timeout = on_timeout
        self.closed = 0
        # eio sid -> the loop time of its deadline, in opening order (so in deadline order).
        self._pending: dict[str, float] = {}
        socketio_connect = sio.eio.handlers["connect"]

        async def engine_connect(eio_sid: str, environ: dict[str, Any], *args: Any) -> Any:
            self._pending[eio_sid] = asyncio.get_running_loop().time() + self.timeout_s
            return await socketio_connect(eio_sid, environ, *args)

        sio.eio.on("connect", engine_connect)

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
            if self.sio.manager.sid_from_eio_sid(eio_sid, "/") is not None:
                continue  # connected (or being authenticated right now)
            socket = self.sio.eio.sockets.get(eio_sid)
            if socket is None or socket.closed:
                continue
            closed += 1
            self.closed += 1
            if self.on_timeout is not None:
                self.on_timeout()
            await self._close(eio_sid, socket)
        if closed:
            log.info("closed %d Engine.IO session(s) without a Socket.IO connect within %g s",
                     closed, self.timeout_s)
        return closed

    async def _close(self, eio_sid: str, socket: Any) -> None:
        environ: dict[str, Any] = self.sio.environ.get(eio_sid) or {}
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
        self.sio.eio.sockets.pop(eio_sid, None)


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


# Frames an engine session may send before its Socket.IO connect is accepted (the connect
# itself, a retry or two): past it, a client that never connects is talking to no one.
PRECONNECT_RATE_PER_S = 2.0
PRECONNECT_BURST = 8.0

# A socket writes a frame itself only while its transport holds at most this much unsent data;
# past it, frames wait in engineio's queue, where the slow-client reaper sees them pile up.
DIRECT_WRITE_MAX_BUFFERED = 64 * 1024


def websocket_frame(data: str | bytes) -> bytes:
    """One unmasked, unfragmented server-to-client websocket frame (RFC 6455, 5.2)."""
    if isinstance(data, str):
        return text_frame(data.encode())
    return _frame(0x82, data)  # FIN + binary


def text_frame(payload: bytes) -> bytes:
    """``websocket_frame`` of a text message already encoded as UTF-8."""
    return _frame(0x81, payload)  # FIN + text


_SHORT_HEADER = struct.Struct("!BB").pack
_MEDIUM_HEADER = struct.Struct("!BBH").pack
_LONG_HEADER = struct.Struct("!BBQ").pack


def _frame(first: int, payload: bytes) -> bytes:
    size = len(payload)
    if size < 126:
        return _SHORT_HEADER(first, size) + payload
    if size < 1 << 16:
        return _MEDIUM_HEADER(first, 126, size) + payload
    return _LONG_HEADER(first, 127, size) + payload


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
        fast = getattr(self.server, FAST_EVENTS_ATTRIBUTE, None)
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
        fast = getattr(self.server, FAST_EVENTS_ATTRIBUTE, None)
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
        fast = getattr(self.server, FAST_EVENTS_ATTRIBUTE, None)
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


def install_lean_sockets() -> None:
    """Make engineio build ``LeanSocket`` for every new connection in this process."""
    check_engineio()
    current = engineio_async_server.async_socket.AsyncSocket
    if current is LeanSocket:
        return
    if current is not engineio_async_socket.AsyncSocket:
        raise EngineioIncompatible("engineio builds sockets from another class already")
    engineio_async_server.async_socket.AsyncSocket = LeanSocket
