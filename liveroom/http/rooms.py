"""REST routes: sessions, rooms, products, pinning."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from aiohttp import web

from ..catalog import TITLE_MAX, Catalog, Room
from ..clock import now_ms
from ..exceptions import Forbidden
from ..identity import TokenSigner
from ..media_router import MediaRouter
from ..rooms import RoomService
from ..sales import SaleDesk
from ..sockets import SocketEdge
from ._base import Api, json_response

__all__ = ["RoomRoutes"]

log = logging.getLogger("liveroom.rooms")


class RoomRoutes:
    def __init__(self, api: Api, signer: TokenSigner, catalog: Catalog, rooms: RoomService,
                 edge: SocketEdge, media: MediaRouter, sales: SaleDesk, *,
                 room_opened: Callable[[Room], Awaitable[None]] | None = None,
                 room_ended: Callable[[str], Awaitable[object]] | None = None) -> None:
        """``room_opened`` hears of each room an anchor opens (its followers are told);
        ``room_ended`` of each room ended (its auctions close)."""
        self.api = api
        self.sales = sales
        # What else ends with a room (its auctions), before the room hears it ended.
        self.room_ended = room_ended
        self.signer = signer
        self.catalog = catalog
        self.rooms = rooms
        self.edge = edge
        self.media = media
        self.room_opened = room_opened

    def add_to(self, router: web.UrlDispatcher) -> None:
        router.add_get("/healthz", self.healthz)
        router.add_get("/api/time", self.time)
        router.add_get("/api/me", self.me)
        router.add_post("/api/rooms", self.create_room)
        router.add_get("/api/rooms", self.list_rooms)
        router.add_get("/api/rooms/{id}", self.get_room)
        router.add_post("/api/rooms/{id}/end", self.end_room)
        router.add_post("/api/rooms/{id}/pin", self.pin)
        router.add_post("/api/products", self.create_product)
        router.add_get("/api/products", self.list_products)
        router.add_get("/api/products/{id}", self.get_product)

    async def healthz(self, request: web.Request) -> web.Response:
        return json_response({"ok": True, "time": now_ms()})

    async def time(self, request: web.Request) -> web.Response:
        return json_response({"server_time": now_ms()})

    async def me(self, request: web.Request) -> web.Response:
        return json_response({"user": self.api.user(request).public()})

    async def create_room(self, request: web.Request) -> web.Response:
        user = self.api.user(request)
        payload = await self.api.payload(request)
        title = payload.text("title", max_chars=TITLE_MAX)
        room = await self.catalog.create_room(user, title, payload.boolean("record", default=True))
        if self.room_opened is not None:
            await self.room_opened(room)
        return json_response(await self.rooms.state(room), 201)

    async def list_rooms(self, request: web.Request) -> web.Response:
        rooms = await self.catalog.live_rooms()
        return json_response({"rooms": [await self.rooms.state(room) for room in rooms]})

    async def get_room(self, request: web.Request) -> web.Response:
        room = await self.catalog.get_room(request.match_info["id"])
        return json_response(await self.rooms.state(room))

    async def end_room(self, request: web.Request) -> web.Response:
        room = await self.catalog.end_room(self.api.user(request), request.match_info["id"])
        # An ended room's video must not keep running (and costing CPU) until ICE gives up:
        # the broadcaster and every viewer's peer connection close now, on whichever process
        # holds them. The room has ended either way, so any failure here (the relay's, or Redis
        # finding the process that holds the broadcast) is logged, not answered, and the room's
        # members are still told.
        try:
            await self.media.stop(room.id)
        except Exception:
            log.warning("room %s ended but its broadcast could not be stopped", room.id,
                        exc_info=True)
        # Its sales end with it, and the room hears of each before it hears the room ended.
        for sale in await self.sales.end_room_sales(room.id):
            await self.sales.announce(sale)
        if self.room_ended is not None:
            await self.room_ended(room.id)
        await self.edge.emit("room", {"room": room.id, "status": room.status}, room=room.id)
        return json_response(room.public())

    async def pin(self, request: web.Request) -> web.Response:
        user = self.api.user(request)
        product_id = (await self.api.payload(request)).ident("product_id")
        room, product = await self.catalog.pin(user, request.match_info["id"], product_id)
        view = await self.catalog.product_view(product)
        await self.edge.emit("pinned", {"room": room.id, "product": view}, room=room.id)
        return json_response({"room": room.public(), "product": view})

    async def create_product(self, request: web.Request) -> web.Response:
        user = self.api.user(request)
        product = await self.catalog.create_product(user, await self.api.payload(request))
        return json_response(await self.catalog.product_view(product), 201)

    async def list_products(self, request: web.Request) -> web.Response:
        user = self.api.user(request)
        anchor_id = request.query.get("anchor", user.id)
        if anchor_id != user.id and not user.is_admin:
            raise Forbidden("anchors list only their own products")
        products = await self.catalog.products_of(anchor_id)
        return json_response({"products": [await self.catalog.product_view(p) for p in products]})

    async def get_product(self, request: web.Request) -> web.Response:
        product = await self.catalog.get_product(request.match_info["id"])
        return json_response(await self.catalog.product_view(product))
