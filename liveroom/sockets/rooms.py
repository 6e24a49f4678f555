"""Room events: join, leave, chat, moderation; and the coalesced ``viewers`` push."""

from __future__ import annotations

import logging
from typing import Any

from .. import keys
from ..bus import ControlBus
from ..exceptions import TextTooLong
from ..loops import PeriodicLoop
from ..payload import Payload
from ..rooms import RoomService, is_guest
from ._base import Ack, Connection, SocketEdge

__all__ = ["RoomEvents", "ViewerCountPusher"]

log = logging.getLogger("liveroom.rooms")
BAN_MESSAGE = "ban"


class RoomEvents:
    def __init__(self, edge: SocketEdge, rooms: RoomService, bus: ControlBus,
                 pusher: ViewerCountPusher) -> None:
        self.edge = edge
        self.rooms = rooms
        self.bus = bus
        self.pusher = pusher
        on = edge.event
        on("join")(self.join)
        on("leave")(self.leave)
        on("chat")(self.chat)
        on("mod:mute")(self.mute)
        on("mod:unmute")(self.unmute)
        on("mod:ban")(self.ban)
        on("mod:unban")(self.unban)
        on("mod:slow")(self.slow)
        edge.on_disconnect(self._disconnected)
        bus.on(BAN_MESSAGE, self._apply_ban)

    async def join(self, conn: Connection, p: Payload) -> Ack:
        room_id = p.ident("room")
        state = await self.rooms.join(conn.user, room_id, conn.sid, conn.address)
        conn.rooms.add(room_id)
        await self.edge.sio.enter_room(conn.sid, room_id)
        self.pusher.touch(room_id)
        return {"ok": True, "room": state}

    async def leave(self, conn: Connection, p: Payload) -> Ack:
        room_id = p.ident("room")
        self.edge.require_member(conn, room_id)
        await self._leave(conn, room_id)
        return {"ok": True}

    async def _leave(self, conn: Connection, room_id: str) -> None:
        conn.rooms.discard(room_id)
        await self.edge.sio.leave_room(conn.sid, room_id)
        await self.rooms.leave(conn.user.id, room_id, conn.sid)
        self.pusher.touch(room_id)
        await self.edge.left_room(conn, room_id)

    async def _disconnected(self, conn: Connection) -> None:
        for room_id in list(conn.rooms):
            await self.rooms.leave(conn.user.id, room_id, conn.sid)
            self.pusher.touch(room_id)
        conn.rooms.clear()

    async def chat(self, conn: Connection, p: Payload) -> Ack:
        room_id = p.ident("room")
        text = p.text("text", max_chars=self.rooms.chat_max_chars, error_cls=TextTooLong)
        self.edge.require_member(conn, room_id)
        message = await self.rooms.chat(conn.user, room_id, text, conn.address)
        public = message.public()
        await self.edge.emit("chat", public, room=room_id)
        return {"ok": True, "message": public}

    async def mute(self, conn: Connection, p: Payload) -> Ack:
        room_id, target = p.ident("room"), p.ident("user")
        duration = p.integer("duration_s", minimum=1, required=False, default=300)
        until = await self.rooms.mute(conn.user, room_id, target, duration)
        await self._notify(room_id, "muted", {"room": room_id, "user": target, "until": until})
        return {"ok": True, "until": until}

    async def unmute(self, conn: Connection, p: Payload) -> Ack:
        room_id, target = p.ident("room"), p.ident("user")
        await self.rooms.unmute(conn.user, room_id, target)
        await self._notify(room_id, "unmuted", {"room": room_id, "user": target})
        return {"ok": True}

    async def ban(self, conn: Connection, p: Payload) -> Ack:
        room_id, target = p.ident("room"), p.ident("user")
        duration = p.integer("duration_s", minimum=1, required=False, default=0) or None
        until = await self.rooms.ban(conn.user, room_id, target, duration)
        await self._notify(room_id, "banned", {"room": room_id, "user": target,
                                               "until": until or None})
        # Every process removes the user's sockets it holds from the room, and keeps a guest's
        # addresses out with it.
        await self.bus.publish(BAN_MESSAGE, {"room": room_id, "user": target, "until": until})
        return {"ok": True, "until": until or None}

    async def unban(self, conn: Connection, p: Payload) -> Ack:
        room_id, target = p.ident("room"), p.ident("user")
        await self.rooms.unban(conn.user, room_id, target)
        return {"ok": True}

    async def slow(self, conn: Connection, p: Payload) -> Ack:
        room_id = p.ident("room")
        seconds = p.integer("seconds", minimum=0)
        await self.rooms.set_slow_mode(conn.user, room_id, seconds)
        await self._notify(room_id, "slow_mode", {"room": room_id, "seconds": seconds})
        return {"ok": True, "seconds": seconds}

    async def _notify(self, room_id: str, action: str, data: dict[str, Any]) -> None:
        await self.edge.emit("moderation", {"action": action, **data}, room=room_id)

    async def _apply_ban(self, payload: dict[str, Any]) -> None:
        room_id, user_id = str(payload["room"]), str(payload["user"])
        until = int(payload.get("until") or 0)
        guest_addresses = set()
        for sid in self.edge.local_sids_of(user_id):
            conn = self.edge.connections.get(sid)
            if conn is None:
                continue
            if is_guest(conn.user):
                guest_addresses.add(conn.address)
            if room_id in conn.rooms:
                await self._leave(conn, room_id)
        await self.rooms.ban_addresses(room_id, user_id, until, sorted(guest_addresses))


class ViewerCountPusher(PeriodicLoop):
    """Owner of the loop that refreshes presence and pushes ``viewers`` when a count changes.

    Joins and leaves only mark a room dirty; the loop pushes at most once per interval per room,
    so a thousand joins in a second cost one push, not a thousand.
    """

    name = "viewer-count-pusher"

    def __init__(self, edge: SocketEdge, rooms: RoomService, interval_s: float = 0.5) -> None:
        super().__init__(interval_s)
        self.edge = edge
        self.rooms = rooms
        self._dirty: set[str] = set()
        self._since_refresh = 0.0

    def touch(self, room_id: str) -> None:
        self._dirty.add(room_id)

    async def tick(self) -> None:
        self._since_refresh += self.interval_s
        if self._since_refresh >= keys.PRESENCE_REFRESH_S:
            self._since_refresh = 0.0
            # Built only here: with 10,000 local members it is the loop's biggest cost.
            local = [(room_id, conn.sid, conn.user.id)
                     for conn in self.edge.connections.values() for room_id in conn.rooms]
            await self.rooms.refresh_presence(local)
            # Stale entries of dead processes expire: every served room may have changed.
            self._dirty.update(room_id for room_id, _, _ in local)
        if not self._dirty:
            return
        dirty, self._dirty = self._dirty, set()
        counts = await self.rooms.viewer_counts(dirty)
        for room_id, count in counts.items():
            if await self.rooms.claim_viewer_push(room_id, count):
                await self.edge.emit("viewers", {"room": room_id, "count": count}, room=room_id)
