"""python-socketio's client managers with an index of each socket's rooms, and broadcasts that
build each frame once.

python-socketio 5.x keeps ``rooms[namespace][room] = bidict(sid -> eio_sid)``, with one room per
socket (its own sid) besides the rooms it joined. ``BaseManager.basic_disconnect`` finds the
rooms of a leaving socket by copying the namespace's whole room dict and testing every room, and
the pending connect/disconnect lists are plain lists searched on every ``is_connected`` (so on
every emit to one socket). A disconnect therefore costs O(connected sockets): when a stream ends
and every viewer leaves at once, the event loop stays blocked for the square of the audience
(docs/performance.md has the measurement).

``IndexedRooms`` keeps ``sid -> rooms`` beside the manager's own structure and makes the pending
collections sets with the list methods the base class calls, so connect and disconnect cost
O(rooms of that socket). It overrides only ``basic_*`` methods, ``get_rooms`` and the tail of
``basic_disconnect``, read against python-socketio 5.18.1 (``socketio/base_manager.py``); the
manager refuses another version, and ``tests/test_socket_manager.py`` checks the index against
the base class's own answers.

Relied on besides: ``AsyncManager.emit``'s signature and its per-recipient path
(``server._send_eio_packet``), ``get_participants``, ``server.packet_class``, and the engine's
``sockets`` (each with ``closed``, ``last_ping``, ``queue``) and ``ping_timeout``;
``AsyncPubSubManager`` handing a published broadcast to ``emit`` of the local manager.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterable, Sequence
from typing import Any

import socketio
from engineio import exceptions as engineio_exceptions
from engineio import packet as engineio_packet
from socketio import packet as socketio_packet

from ._frames import websocket_frame
from ._pins import check_socketio_version
from ._socket import LeanSocket

__all__ = ["DirectLocalEmit", "IndexedAsyncManager", "IndexedAsyncRedisManager", "IndexedRooms"]


class _SidSet(dict[str, None]):
    """An insertion-ordered set of sids with the two list methods ``BaseManager`` calls."""

    def append(self, sid: str) -> None:
        self[sid] = None

    def remove(self, sid: str) -> None:
        del self[sid]


class _PendingByNamespace(dict[Any, _SidSet]):
    """``BaseManager`` stores ``[]`` per namespace here; each is kept as a ``_SidSet``."""

    def __setitem__(self, namespace: Any, sids: Any) -> None:
        if not isinstance(sids, _SidSet):
            sids = _SidSet((sid, None) for sid in sids)
        super().__setitem__(namespace, sids)


class IndexedRooms:
    """Mixin for a python-socketio manager: O(1) room bookkeeping per socket."""

    rooms: dict[Any, dict[Any, Any]]
    callbacks: dict[str, Any]
    pending_connect: dict[Any, Any]
    pending_disconnect: dict[Any, Any]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        check_socketio_version()
        super().__init__(*args, **kwargs)
        self.pending_connect = _PendingByNamespace()
        self.pending_disconnect = _PendingByNamespace()
        # _rooms_of[namespace][sid] = the rooms (including None and its own sid) it is in
        self._rooms_of: dict[Any, dict[str, set[Any]]] = {}

    def member_count(self, namespace: Any, room: Any) -> int:
        """How many of this process's sockets are in ``room``."""
        return len(self.rooms.get(namespace, {}).get(room, ()))

    def basic_enter_room(self, sid: str, namespace: Any, room: Any,
                         eio_sid: str | None = None) -> None:
        super().basic_enter_room(sid, namespace, room, eio_sid=eio_sid)  # type: ignore[misc]
        self._rooms_of.setdefault(namespace, {}).setdefault(sid, set()).add(room)

    def basic_leave_room(self, sid: str, namespace: Any, room: Any) -> None:
        super().basic_leave_room(sid, namespace, room)  # type: ignore[misc]
        by_sid = self._rooms_of.get(namespace)
        if by_sid is None:
            return
        rooms = by_sid.get(sid)
        if rooms is not None:
            rooms.discard(room)
            if not rooms:
                del by_sid[sid]
        if not by_sid:
            del self._rooms_of[namespace]

    def basic_disconnect(self, sid: str, namespace: Any, **kwargs: Any) -> None:
        if namespace not in self.rooms:
            return
        for room in list(self._rooms_of.get(namespace, {}).get(sid, ())):
            self.basic_leave_room(sid, namespace, room)
        # The rest is BaseManager.basic_disconnect's tail, unchanged.
        self.callbacks.pop(sid, None)
        for pending in (self.pending_connect, self.pending_disconnect):
            sids = pending.get(namespace)
            if sids is not None and sid in sids:
                sids.remove(sid)
                if not sids:
                    del pending[namespace]

    def get_rooms(self, sid: str, namespace: Any) -> list[Any]:
        return [room for room in self._rooms_of.get(namespace, {}).get(sid, ())
                if room is not None]


class DirectLocalEmit(socketio.AsyncManager):  # type: ignore[misc]
    """``AsyncManager`` whose broadcasts hand one frame, built once, to each local socket.

    ``AsyncManager.emit`` creates one task per recipient, each awaiting engineio's
    ``AsyncSocket.send`` (a ping-timeout check, then ``put`` on the socket's unbounded queue,
    which never waits): a ``stock`` push to a room was one task per member, and each
    socket then framed the same text again. Here the websocket frame is built once and each
    ``LeanSocket`` writes it at once, or queues the packet behind what it has not written yet;
    only a socket whose client missed its pings goes the original way, so engineio closes it as
    before. Emits with a callback keep the original path.

    A big room is written in slices of ``FAN_OUT_SLICE`` sockets with a turn of the event loop
    between them: a push to a big room is one ``send`` call per member (docs/performance.md has
    what that costs), and the buys arriving meanwhile are read and answered between slices
    instead of after the last one. Broadcasts run one at a time, so every socket still gets them
    in the order they were emitted.
    """

    FAN_OUT_SLICE = 64
    _fan_outs_in_order: asyncio.Lock | None = None

    async def emit(self, event: str, data: Any, namespace: Any, room: Any = None,
                   skip_sid: Any = None, callback: Any = None, to: Any = None,
                   **kwargs: Any) -> None:
        if callback is not None:
            await super().emit(event, data, namespace, room=room, skip_sid=skip_sid,
                               callback=callback, to=to, **kwargs)
            return
        await self._fan_out([(event, data)], namespace, to or room, skip_sid)

    async def emit_together(self, events: Sequence[tuple[str, Any]], namespace: Any,
                            room: Any) -> None:
        """Broadcast several events to ``room``, in order, with one write per socket that can
        take them now: a sell-out's ``stock`` and ``sale`` pushes cost one ``send`` call per
        member instead of two."""
        await self._fan_out(events, namespace, room, None)

    async def _fan_out(self, events: Sequence[tuple[str, Any]], namespace: Any, room: Any,
                       skip_sid: Any) -> None:
        if namespace not in self.rooms:
            return
        skip = skip_sid if isinstance(skip_sid, list) else [skip_sid]
        frames: list[engineio_packet.Packet] = []
        for event, data in events:
            if isinstance(data, tuple):
                args = list(data)
            elif data is not None:
                args = [data]
            else:
                args = []
            encoded = self.server.packet_class(
                socketio_packet.EVENT, namespace=namespace, data=[event, *args]).encode()
            frames.extend(engineio_packet.Packet(engineio_packet.MESSAGE, part)
                          for part in (encoded if isinstance(encoded, list) else [encoded]))
        # The websocket frames too are built once, for every lean socket that can take them now.
        wire = b"".join(websocket_frame(frame.encode()) for frame in frames)
        silent: list[str] = []
        if self._fan_outs_in_order is None:
            self._fan_outs_in_order = asyncio.Lock()
        async with self._fan_outs_in_order:
            await self._deliver_to_members(self.get_participants(namespace, room), frames, wire,
                                           None if skip == [None] else skip, silent)
        for eio_sid in silent:
            # engineio's send closes a socket whose client stopped answering pings.
            with contextlib.suppress(engineio_exceptions.SocketIsClosedError):
                for frame in frames:
                    await self.server._send_eio_packet(eio_sid, frame)

    async def _deliver_to_members(self, members: Iterable[tuple[str, str]],
                                  frames: list[engineio_packet.Packet], wire: bytes,
                                  skip: list[Any] | None, silent: list[str]) -> None:
        # Per member only what depends on the member (a 200-member room is 200 turns of this).
        sockets = self.server.eio.sockets
        ping_timeout = self.server.eio.ping_timeout
        now = time.time()
        turn = self.FAN_OUT_SLICE
        for sid, eio_sid in members:  # a copy of the room: members may come and go meanwhile
            turn -= 1
            if not turn:
                turn = self.FAN_OUT_SLICE
                await asyncio.sleep(0)
            if skip is not None and sid in skip:
                continue
            socket = sockets.get(eio_sid)
            if socket is None or socket.closed:
                continue
            last_ping = socket.last_ping
            if last_ping and now - last_ping > ping_timeout:
                silent.append(eio_sid)
                continue
            if type(socket) is LeanSocket:
                socket.deliver(frames, wire)
            else:  # a socket of an engine that builds engineio's own sockets
                for frame in frames:
                    socket.queue.put_nowait(frame)


class IndexedAsyncManager(IndexedRooms, DirectLocalEmit):
    """The single-process manager."""


class IndexedAsyncRedisManager(
        IndexedRooms, socketio.AsyncRedisManager, DirectLocalEmit):  # type: ignore[misc]
    """The manager of ``serve --workers N``: broadcasts cross processes through Redis, and
    ``AsyncPubSubManager`` hands each one to ``DirectLocalEmit`` for the local sockets."""

    async def emit_together(self, events: Sequence[tuple[str, Any]], namespace: Any,
                            room: Any) -> None:
        # Each event is published for the other workers, as python-socketio publishes them.
        for event, data in events:
            await self.emit(event, data, namespace, room=room)
