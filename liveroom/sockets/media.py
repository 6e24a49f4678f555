"""WebRTC signaling: ``rtc:publish`` (the anchor), ``rtc:watch`` (viewers), ``rtc:stop``,
``rtc:keyframe``; and the owner that pushes the broadcast's health to its room."""

from __future__ import annotations

import logging
from typing import Any

from ..catalog import Catalog, Room
from ..exceptions import InvalidInput
from ..loops import PeriodicLoop
from ..media_router import MediaRouter
from ..payload import Payload
from ._base import Ack, Connection, SocketEdge

__all__ = ["MediaEvents", "MediaHealthPusher"]

log = logging.getLogger("liveroom.media.edge")
MAX_SDP_CHARS = 60_000


def _offer(p: Payload) -> tuple[str, str]:
    sdp = p.text("sdp", max_chars=MAX_SDP_CHARS, strip=False)
    kind = p.text("type", max_chars=16)
    if kind != "offer":
        raise InvalidInput('type must be "offer"')
    return sdp, kind


class MediaEvents:
    def __init__(self, edge: SocketEdge, media: MediaRouter, catalog: Catalog,
                 pusher: MediaHealthPusher) -> None:
        self.edge = edge
        self.media = media
        self.catalog = catalog
        self.pusher = pusher
        edge.event("rtc:publish")(self.publish)
        edge.event("rtc:watch")(self.watch)
        edge.event("rtc:stop")(self.stop)
        edge.event("rtc:keyframe")(self.keyframe)
        edge.on_disconnect(self._disconnected)
        edge.on_leave(self._left)

    async def publish(self, conn: Connection, p: Payload) -> Ack:
        room_id = p.ident("room")
        sdp, kind = _offer(p)
        await self.catalog.owned_room(conn.user, room_id)
        answer, answer_type = await self.media.publish(room_id, conn.sid, sdp, kind)
        return {"ok": True, "sdp": answer, "type": answer_type}

    async def watch(self, conn: Connection, p: Payload) -> Ack:
        room_id = p.ident("room")
        sdp, kind = _offer(p)
        self.edge.require_member(conn, room_id)
        answer, answer_type = await self.media.watch(room_id, conn.sid, sdp, kind)
        return {"ok": True, "sdp": answer, "type": answer_type}

    async def stop(self, conn: Connection, p: Payload) -> Ack:
        room_id = p.ident("room")
        await self.catalog.owned_room(conn.user, room_id, must_be_live=False)
        stopped = await self.media.stop(room_id)
        return {"ok": True, "stopped": stopped}

    async def keyframe(self, conn: Connection, p: Payload) -> Ack:
        room_id = p.ident("room")
        self.edge.require_member(conn, room_id)
        await self.media.keyframe(room_id)
        return {"ok": True}

    async def _left(self, conn: Connection, room_id: str) -> None:
        # A viewer that left (or was banned from) the room stops receiving its video now.
        await self.media.close_viewer(room_id, conn.sid)

    async def _disconnected(self, conn: Connection) -> None:
        # Close at once: a dead viewer otherwise costs CPU until ICE consent expires.
        await self.media.close_peer(conn.sid)


class MediaHealthPusher(PeriodicLoop):
    """Owner of the loop that pushes ``media {"room", "live", "bitrate_kbps", "fps", ...}``.

    A change (publish, first media, end) is pushed within a tick; the rates of live broadcasts are
    refreshed every few seconds.
    """

    name = "media-health-pusher"

    def __init__(self, edge: SocketEdge, router: MediaRouter,
                 tick_s: float = 0.2, refresh_s: float = 3.0) -> None:
        super().__init__(tick_s)
        self.edge = edge
        self.router = router
        self.refresh_s = refresh_s
        self._since_refresh = 0.0
        self._dirty: set[str] = set()
        self._live: set[str] = set()

    def changed(self, room_id: str) -> None:
        self._dirty.add(room_id)

    def state(self, room_id: str) -> dict[str, Any]:
        return {"room": room_id, **self.router.media.health(room_id)}

    async def room_state(self, room: Room) -> dict[str, Any]:
        return {"media": {"room": room.id, **await self.router.health(room.id)}}

    async def tick(self) -> None:
        self._since_refresh += self.interval_s
        if self._since_refresh >= self.refresh_s:
            self._since_refresh = 0.0
            self._dirty.update(self._live)
        dirty, self._dirty = self._dirty, set()
        for room_id in dirty:
            try:
                health = self.state(room_id)
                (self._live.add if health["live"] else self._live.discard)(room_id)
                await self.router.store_health(room_id, health)
                await self.edge.emit_to("media", health, room_id)
            except Exception:
                log.warning("media health push failed for %s", room_id, exc_info=True)
