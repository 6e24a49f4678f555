"""Lucky bags and followers over Socket.IO: ``lucky:enter`` and ``landing:open``."""

from __future__ import annotations

from ..follows import LANDING_ROOM, landing_room_of
from ..lucky import MAX_PASSPHRASE, LuckyDesk
from ..payload import Payload
from ._base import Ack, Connection, SocketEdge

__all__ = ["LuckyEvents"]


class LuckyEvents:
    def __init__(self, edge: SocketEdge, desk: LuckyDesk) -> None:
        self.edge = edge
        self.desk = desk
        edge.event("lucky:enter")(self.enter)
        edge.event("landing:open")(self.landing)

    async def enter(self, conn: Connection, p: Payload) -> Ack:
        bag_id = p.ident("lucky_bag")
        passphrase = p.text("passphrase", max_chars=MAX_PASSPHRASE, required=False) or None
        bag = await self.desk.get(bag_id)
        # Entering is for viewers in the room, as the room's moderation reaches them there.
        self.edge.require_member(conn, bag.room_id)
        entries = await self.desk.enter(conn.user, bag.id, passphrase)
        return {"ok": True, "lucky_bag": bag.id, "entries": entries}

    async def landing(self, conn: Connection, p: Payload) -> Ack:
        """The landing page is open on this connection: it hears follower counts and, when an
        anchor the user follows goes live, ``live``."""
        await self.edge.sio.enter_room(conn.sid, LANDING_ROOM)
        await self.edge.sio.enter_room(conn.sid, landing_room_of(conn.user.id))
        return {"ok": True}
