"""The common case of a Socket.IO event, handled in one step.

A client event travels through python-engineio and python-socketio as: an engine packet object
decoded from the frame, ``AsyncSocket.receive``, the engine's ``_trigger_event("message")``, a
socket packet object decoded again, ``_handle_event`` (sid lookup, connected check),
``_handle_event_internal``, ``_trigger_event`` (handler lookup with wildcards,
``inspect.iscoroutinefunction`` on every call), then the ack as a packet object that is searched
recursively for binary data, encoded, and handed back down through ``_send_packet`` and the
engine's ``send_packet``. Profiled (docs/performance.md), that machinery was most of a round trip
that does no domain work (the ``ping`` event).

``FastEvents.handle`` takes the frames that are the common case: an EVENT (``42``) for the
default namespace, with or without an ack id, whose JSON is a list starting with the name of an
event that has its own coroutine handler, from a socket that is connected. It decodes the JSON
once with python-socketio's own codec, calls the same handler with the same arguments, and
encodes the ack exactly as ``socketio.packet.Packet.encode`` does (checked by
``tests/test_fast_events.py``). Everything else (other namespaces, binary packets, acks from the
client, malformed frames, unknown events, sockets still connecting) returns ``False`` untouched
and takes python-socketio's path, so its behaviour and error handling stay its own.

An event can also have a *deferred* handler here (``defer``): ``handler(sid, args, reply)``
returns at once and calls ``reply(answer)`` later, exactly once, which writes the ack straight to
the socket. ``buy`` is one: its answer comes when its batch is decided, and waiting for it in a
coroutine (a future, the reader task suspended and resumed through every frame of the handler)
cost more than the rest of the buy's own work on the socket side. The reader goes on to the
client's next frame meanwhile, so acks may come back in another order than the events; Socket.IO
matches them by ack id. python-socketio's own path still calls the event's coroutine handler.

Relied on (python-socketio 5.18.1): ``AsyncServer.handlers[namespace][event]``,
``AsyncServer.not_handled``, ``AsyncServer.packet_class`` (its ``json`` and ``encode``),
``AsyncServer._send_packet``, and the manager's ``sid_from_eio_sid`` / ``is_connected``; from
python-engineio, ``packet.Packet`` and an engine socket's ``sid`` and ``send``.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable
from functools import partial
from typing import Any

import socketio
from engineio import packet as engineio_packet
from socketio import packet as socketio_packet

from ...logs import ClientMistakes

__all__ = ["DeferredHandler", "FastEvents", "Reply", "client_of"]

log = logging.getLogger("liveroom.sockets")

# Sends the ack; None when the client asked for none.
Reply = Callable[[Any], None] | None
DeferredHandler = Callable[[str, list[Any], Reply], None]

_DIGITS = frozenset("0123456789")


class FastEvents:
    """The event fast path of one python-socketio server (see the module)."""

    def __init__(self, sio: socketio.AsyncServer) -> None:
        self._sio = sio
        self._loads: Callable[[str], Any] = sio.packet_class.json.loads
        codec = sio.packet_class.json
        self._dumps: Callable[..., str] = codec.dumps
        # Compact JSON as UTF-8 bytes: the codec's own when it has one (orjson's), else its
        # text encoded.
        self._dumps_bytes: Callable[[Any], bytes] = getattr(
            codec, "dumps_bytes", lambda obj: codec.dumps(obj, separators=(",", ":")).encode())
        self._coroutine: dict[Any, bool] = {}
        self._deferred: dict[str, DeferredHandler] = {}
        self.mistakes = ClientMistakes(log)

    def defer(self, event: str, handler: DeferredHandler) -> None:
        """Answer ``event`` on the fast path with ``handler`` (see the module)."""
        self._deferred[event] = handler

    def _handler(self, event: str) -> Any:
        handlers = self._sio.handlers.get("/")
        handler = handlers.get(event) if handlers else None
        if handler is None:
            return None
        known = self._coroutine.get(handler)
        if known is None:
            known = self._coroutine[handler] = inspect.iscoroutinefunction(handler)
        return handler if known else None

    async def handle(self, socket: Any, frame: str) -> bool:
        """Handle the engine frame ``frame`` (``"42..."``) from ``socket``; False if it is not
        the common case, in which case nothing was done. An event frame for the default
        namespace that is not an event (JSON that does not decode within the codec's bounds, or
        is not a list starting with a name) is answered ``invalid_frame`` here when it carries
        an ack id, dropped otherwise, and noted once in the log: python-socketio would raise on
        it, log a traceback and answer nothing."""
        end = 2
        size = len(frame)
        while end < size and frame[end] in _DIGITS:
            end += 1
        if end >= size or frame[end] != "[":
            if end < size and frame[end] == "/":
                return False  # another namespace: python-socketio's
            self._malformed(socket, frame, end, "an event frame without a JSON list")
            return True
        try:
            data = self._loads(frame[end:])
        except ValueError:
            self._malformed(socket, frame, end, "an event whose JSON does not decode (or is "
                                                "nested too deeply, or has too large a number)")
            return True
        if type(data) is not list or not data or type(data[0]) is not str:
            self._malformed(socket, frame, end, "an event that is not [name, ...]")
            return True
        deferred = self._deferred.get(data[0])
        handler = self._handler(data[0]) if deferred is None else None
        if deferred is None and handler is None:
            return False
        manager = self._sio.manager
        sid = manager.sid_from_eio_sid(socket.sid, "/")
        if sid is None or not manager.is_connected(sid, "/"):
            return False
        if deferred is not None:
            reply = None if end == 2 else partial(self._reply_now, socket, _ack_head(frame, end))
            deferred(sid, data[1:], reply)
            return True
        assert handler is not None
        answer = await handler(sid, *data[1:])
        if end == 2 or answer is self._sio.not_handled:
            return True
        ack_id = int(frame[2:end])
        args = _ack_args(answer)
        try:
            packet = self._ack_packet(ack_id, args)
        except TypeError:
            # Bytes in the answer: python-socketio sends a binary ack.
            await self._sio._send_packet(socket.sid, self._sio.packet_class(
                socketio_packet.ACK, namespace="/", id=ack_id, data=args))
            return True
        await socket.send(packet)
        return True

    def _malformed(self, socket: Any, frame: str, end: int, reason: str) -> None:
        self.mistakes.warn(client_of(socket), reason)
        if end > 2:
            self._reply_now(socket, _ack_head(frame, end), {"ok": False, "error": {
                "code": "invalid_frame", "message": f"not a Socket.IO event: {reason}"}})

    def refuse(self, socket: Any, frame: str, retry_after_ms: int) -> None:
        """Answer the event frame ``frame`` ``rate_limited`` (the event budget refused it),
        when it asked for an answer; the event itself is not looked at."""
        end = 2
        size = len(frame)
        while end < size and frame[end] in _DIGITS:
            end += 1
        if end > 2 and end < size and frame[end] == "[":
            self._reply_now(socket, _ack_head(frame, end), {
                "ok": False, "status": "rate_limited", "error": {
                    "code": "rate_limited", "message": "too many events; slow down",
                    "retry_after_ms": retry_after_ms}})

    def _reply_now(self, socket: Any, head: bytes, answer: Any) -> None:
        """A deferred handler's ack, written without waiting (the socket just spoke, so the
        ping-timeout check of ``send`` has nothing to find). Answers are JSON: deferred
        handlers answer with plain dicts. ``head`` is the engine and socket packet types and
        the ack id (``b"43<id>"``); the ack is encoded straight to bytes, as
        ``_ack_packet`` would encode it, without the packet objects."""
        try:
            body = self._dumps_bytes(_ack_args(answer))
        except TypeError:
            log.error("a deferred ack is not JSON; dropped: %r", answer)
            return
        socket.send_encoded(head + body)

    def _ack_packet(self, ack_id: int, args: list[Any]) -> engineio_packet.Packet:
        """The engine packet python-socketio would send for this ack; TypeError when ``args``
        hold bytes (a binary ack)."""
        body = self._dumps(args, separators=(",", ":"))
        return engineio_packet.Packet(engineio_packet.MESSAGE, f"3{ack_id}{body}")


def client_of(socket: Any) -> str:
    """The client address of an engine socket, for log lines (its engine sid until known)."""
    budget = getattr(socket, "frame_budget", None)
    address = getattr(budget, "address", None)
    return str(address) if address else f"engine session {getattr(socket, 'sid', '?')}"


def _ack_head(frame: str, end: int) -> bytes:
    """``b"43<id>"`` for the event frame ``frame`` whose ack id is ``frame[2:end]``: the id as
    python-socketio writes it back (a number, so without leading zeros)."""
    if frame[2] == "0" and end > 3:
        return b"43%d" % int(frame[2:end])
    return ("43" + frame[2:end]).encode()


def _ack_args(answer: Any) -> list[Any]:
    if answer is None:
        return []
    if isinstance(answer, tuple):
        return list(answer)
    return [answer]

