"""The Socket.IO edge: connection registry, authentication at connect, and the handler wrapper
that turns every outcome into the one ack shape."""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
import socketio

from ..addresses import ClientAddresses
from ..clock import now_ms
from ..errors import error_body
from ..exceptions import InvalidInput, NotInRoom, PayloadTooLarge, UnknownEvent
from ..identity import InvalidToken, TokenSigner, User
from ..metrics import Metrics
from ..payload import Payload
from ..ratelimit import TokenBucket
from ..redis_target import socketio_url
from ..settings import Settings
from ._budget import BudgetLimits, Budgets, FrameBudget
from ._engineio import (
    DeferredHandler,
    FastEvents,
    IndexedAsyncManager,
    IndexedAsyncRedisManager,
    LeanServer,
)

__all__ = ["Ack", "Connection", "SocketEdge"]

log = logging.getLogger("liveroom.sockets")
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")
# The decoder's bounds: deeper or longer is refused as malformed. No event of the protocol nests
# more than a few levels, and orjson encodes at most 254 (an answer echoing a deeper value could
# not be sent).
MAX_JSON_DEPTH = 32
MAX_INT_DIGITS = 20
_OPENERS = frozenset(b"[{")
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
Ack = dict[str, Any]
Handler = Callable[["Connection", Payload], Awaitable[Ack]]
DisconnectHook = Callable[["Connection"], Awaitable[None]]
LeaveHook = Callable[["Connection", str], Awaitable[None]]


@dataclass(slots=True)
class Connection:
    sid: str
    user: User
    # The client address (``liveroom/addresses.py``): per-address limits and guest bans.
    address: str
    # Every frame of the connection is counted against it (``_budget.py``).
    budget: FrameBudget
    buys: TokenBucket
    rooms: set[str] = field(default_factory=set)


class _OrjsonCodec:
    """The server's JSON codec for Socket.IO packets (python-socketio's ``dumps``/``loads``):
    orjson (the stdlib's cost per frame shows in every ack), with the bounds below."""

    @staticmethod
    def dumps(obj: Any, **_: Any) -> str:
        return orjson.dumps(obj).decode()

    # The same, as the UTF-8 bytes a frame is made of (the fast path's acks).
    dumps_bytes = staticmethod(orjson.dumps)

    @staticmethod
    def loads(text: str | bytes, **_: Any) -> Any:
        """JSON at most ``MAX_JSON_DEPTH`` levels deep with integers of at most 64 bits;
        ValueError for anything else, never another exception."""
        # Counting brackets is cheap; walking the nesting only when there are many.
        if (len(text) > MAX_JSON_DEPTH and _brackets(text) > MAX_JSON_DEPTH
                and _nesting(text) > MAX_JSON_DEPTH):
            raise ValueError("JSON nested too deeply")
        try:
            return orjson.loads(text)
        except orjson.JSONDecodeError:
            pass
        # NaN/Infinity or a lone surrogate (a JS string cut inside an emoji): orjson refuses
        # them, and a frame that fails here would never be answered. The stdlib accepts them;
        # lone surrogates become U+FFFD so Redis and the ack encoder can take every string. The
        # same bounds as orjson's hold: a 4,000-digit integer or 1,100 levels of nesting cost
        # the stdlib real work (and a RecursionError), for a frame no client means to send.
        try:
            return _without_lone_surrogates(json.loads(text, parse_int=_bounded_int))
        except RecursionError:
            raise ValueError("JSON nested too deeply") from None


def _brackets(text: str | bytes) -> int:
    if isinstance(text, str):
        return text.count("[") + text.count("{")
    return text.count(b"[") + text.count(b"{")


def _nesting(text: str | bytes) -> int:
    """An upper bound of the JSON's nesting depth (brackets inside strings count too)."""
    raw = text.encode() if isinstance(text, str) else text
    depth = deepest = 0
    for byte in raw.translate(None, _NOT_BRACKETS):
        if byte in _OPENERS:
            depth += 1
            if depth > deepest:
                deepest = depth
        else:
            depth -= 1
    return deepest


def _bounded_int(digits: str) -> int:
    if len(digits.lstrip("-")) > MAX_INT_DIGITS:
        raise ValueError("integer too large")
    return int(digits)


def _without_lone_surrogates(value: Any) -> Any:
    if isinstance(value, str):
        return _LONE_SURROGATE.sub("\ufffd", value)
    if isinstance(value, list):
        return [_without_lone_surrogates(item) for item in value]
    if isinstance(value, dict):
        return {_without_lone_surrogates(k): _without_lone_surrogates(v)
                for k, v in value.items()}
    return value


def create_sio(settings: Settings, redis_url: str) -> LeanServer:
    """The process's Socket.IO server: lean sockets, no websocket compression, the event fast
    path and orjson, all installed on this server alone (``liveroom/sockets/_engineio/``)."""
    several = settings.workers > 1
    return LeanServer(
        async_mode="aiohttp",
        json=_OrjsonCodec,
        # Several processes: broadcasts cross processes through Redis, and websocket only, so a
        # client never needs to reach the same process twice (no sticky sessions).
        client_manager=(IndexedAsyncRedisManager(socketio_url(redis_url)) if several
                        else IndexedAsyncManager()),
        transports=["websocket"] if several else ["polling", "websocket"],
        cors_allowed_origins="*",
        # Transport cap; the per-event cap (settings.max_payload_bytes) answers with an error.
        max_http_buffer_size=max(1_000_000, settings.max_payload_bytes * 4),
        http_compression=False,
        # Long-polling only: LeanEngine answers websockets without permessage-deflate.
        compression_threshold=1 << 30,
        ping_interval=20,
        ping_timeout=20,
        # Run each event's handler inline in the socket's reader instead of a new task per
        # event: one client's events are answered in order, and a round trip costs one task less.
        async_handlers=False,
        logger=False,
        engineio_logger=False,
    )


def _resolve(future: asyncio.Future[Ack], ack: Ack) -> None:
    if not future.done():
        future.set_result(ack)


def _refused(code: str, message: str) -> socketio.exceptions.ConnectionRefusedError:
    # Clients see err.message, and err.data = {"code", "message"}.
    return socketio.exceptions.ConnectionRefusedError(message, {"code": code, "message": message})


class SocketEdge:
    def __init__(self, sio: LeanServer, signer: TokenSigner, settings: Settings,
                 metrics: Metrics | None = None,
                 addresses: ClientAddresses | None = None) -> None:
        self.metrics = metrics if metrics is not None else Metrics()
        self.sio = sio
        self.signer = signer
        self.settings = settings
        self.addresses = addresses if addresses is not None else ClientAddresses()
        self.budgets = Budgets(BudgetLimits(
            settings.event_rate_per_s, settings.event_burst,
            settings.user_event_rate_per_s, settings.user_event_burst,
            settings.address_event_rate_per_s, settings.address_event_burst),
            self.addresses.unlimited)
        self.connections: dict[str, Connection] = {}
        # The Socket.IO event fast path, for events answered there (``buy``).
        self.fast_events: FastEvents | None = sio.fast_events
        self._disconnect_hooks: list[DisconnectHook] = []
        self._leave_hooks: list[LeaveHook] = []
        sio.on("connect", self._on_connect)
        sio.on("disconnect", self._on_disconnect)
        sio.on("ping", self._on_ping)
        # Events with no handler of their own (python-socketio's catch-all).
        sio.on("*", self._on_unknown_event)

    # connection lifecycle --------------------------------------------------------------------

    async def _on_connect(self, sid: str, environ: dict[str, Any],
                          auth: object = None) -> Ack | None:
        if self.sio.manager.is_connected(sid, "/"):
            # Not a connection (python-socketio calls this while the socket is only
            # pre-connected): a connected client emitted an event named "connect".
            return self._refuse_event("connect")
        token = auth.get("token") if isinstance(auth, dict) else None
        if token is None:
            raise _refused("unauthorized", "connect with auth={token: ...}")
        try:
            user = self.signer.verify(token)
        except InvalidToken as exc:
            raise _refused(exc.code, exc.message) from None
        s = self.settings
        address = self.addresses.of_environ(environ)
        conn = Connection(sid=sid, user=user, address=address,
                          budget=self.budgets.open(user.id, address),
                          buys=TokenBucket(s.buy_rate_per_s, s.buy_burst))
        self.connections[sid] = conn
        # From now on the engine socket counts the connection's frames against its budget.
        self.sio.count_frames_against(sid, conn.budget)
        await self.sio.enter_room(sid, f"user:{user.id}")
        return None

    async def _on_disconnect(self, sid: str, *_: Any) -> Ack | None:
        if self.sio.manager.is_connected(sid, "/"):
            # python-socketio marks a socket as disconnecting before calling this: a socket
            # still connected emitted an event named "disconnect".
            return self._refuse_event("disconnect")
        conn = self.connections.pop(sid, None)
        if conn is None:
            return None
        self.budgets.close(conn.user.id, conn.address)
        for hook in self._disconnect_hooks:
            try:
                await hook(conn)
            except Exception:
                log.exception("disconnect hook failed for %s", sid)
        return None

    async def _on_unknown_event(self, event: str, sid: str, *_: Any) -> Ack:
        return self._refuse_event(event)

    def _refuse_event(self, event: str) -> Ack:
        body = error_body(UnknownEvent(str(event)))
        self.metrics.socket_errors.inc(body["code"])
        return {"ok": False, "error": body}

    async def _on_ping(self, sid: str, data: object = None, *_: object) -> Ack:
        """A no-op round trip: clock sync for pages, and the baseline the buy benchmark
        compares against (same framework path, no domain work)."""
        return {"ok": True, "server_time": now_ms(), "worker": self.settings.worker_index}

    def on_disconnect(self, hook: DisconnectHook) -> None:
        self._disconnect_hooks.append(hook)

    def on_leave(self, hook: LeaveHook) -> None:
        """``hook(conn, room_id)`` runs when a connected socket leaves a room (``leave``, or a
        ban), so other parts (media) can let go of what the socket held there."""
        self._leave_hooks.append(hook)

    async def left_room(self, conn: Connection, room_id: str) -> None:
        for hook in self._leave_hooks:
            try:
                await hook(conn, room_id)
            except Exception:
                log.exception("leave hook failed for %s in %s", conn.sid, room_id)

    def local_sids_of(self, user_id: str) -> list[str]:
        return [sid for sid, conn in self.connections.items() if conn.user.id == user_id]

    # handlers --------------------------------------------------------------------------------

    def event(self, name: str) -> Callable[[Handler], Handler]:
        """Register ``handler`` for event ``name``; every outcome becomes an ack. (The event's
        frame was already counted against the connection's budget by its engine socket.)"""

        def register(handler: Handler) -> Handler:
            @functools.wraps(handler)
            async def wrapped(sid: str, data: object = None, *extra: object) -> Ack:
                conn = self.connections.get(sid)
                if conn is None:
                    return {"ok": False, "error": {"code": "unauthorized",
                                                   "message": "not connected"}}
                try:
                    self._check_size(data)
                    if extra:  # emit(event, a, b, ack): still one answer, not a hung client
                        raise InvalidInput("send one payload object (and an ack callback)")
                    return await handler(conn, Payload(data))
                except Exception as exc:
                    body = error_body(exc)
                    self.metrics.socket_errors.inc(body["code"])
                    return {"ok": False, "error": body}

            self.sio.on(name, wrapped)
            return handler

        return register

    def deferred_event(self, name: str, handler: DeferredHandler) -> None:
        """Register ``handler``, which shapes its own answers and sends them through its reply
        when they are decided, for event ``name``, without the generic wrapper: on the websocket
        fast path as a deferred handler, and for python-socketio's own path (long-polling) as a
        coroutine that waits for the same answer."""
        if self.fast_events is not None:
            self.fast_events.defer(name, handler)

        async def waiting(sid: str, *args: object) -> Ack:
            answered: asyncio.Future[Ack] = asyncio.get_running_loop().create_future()
            handler(sid, list(args), functools.partial(_resolve, answered))
            return await answered

        self.sio.on(name, waiting)

    def _check_size(self, data: object) -> None:
        limit = self.settings.max_payload_bytes
        if isinstance(data, dict):
            size = len(orjson.dumps(data))
            if size > limit:
                raise PayloadTooLarge(size, limit)

    @staticmethod
    def require_member(conn: Connection, room_id: str) -> None:
        if room_id not in conn.rooms:
            raise NotInRoom(room_id)

    async def emit(self, event: str, data: Any, *, room: str | None = None) -> None:
        await self.sio.emit(event, data, room=room)

    def local_members(self, room: str) -> int:
        """How many of this process's sockets are in ``room`` (what a push to it costs here)."""
        return int(self.sio.manager.member_count("/", room))

    async def emit_to(self, event: str, data: Any, room: str) -> None:
        """``emit`` with a positional room, the shape background pushers take."""
        await self.sio.emit(event, data, room=room)

    async def emit_together(self, events: Sequence[tuple[str, Any]], room: str) -> None:
        """Several broadcasts to ``room`` in order, written to each socket at once (see
        ``DirectLocalEmit.emit_together``)."""
        await self.sio.manager.emit_together(events, "/", room)
