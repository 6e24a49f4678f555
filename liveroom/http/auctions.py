"""REST routes of live auctions: start one in a room, read it, stop it."""

from __future__ import annotations

from aiohttp import web

from ..auctions import AuctionBroadcaster, AuctionCloser, AuctionDesk
from ._base import Api, json_response

__all__ = ["AuctionRoutes"]


class AuctionRoutes:
    def __init__(self, api: Api, desk: AuctionDesk, broadcaster: AuctionBroadcaster,
                 closer: AuctionCloser) -> None:
        self.api = api
        self.desk = desk
        self.broadcaster = broadcaster
        self.closer = closer

    def add_to(self, router: web.UrlDispatcher) -> None:
        router.add_post("/api/rooms/{id}/auctions", self.create)
        router.add_get("/api/rooms/{id}/auctions", self.room_auctions)
        router.add_get("/api/auctions/{id}", self.get)
        router.add_post("/api/auctions/{id}/end", self.end)

    async def create(self, request: web.Request) -> web.Response:
        auction = await self.desk.create(self.api.user(request), request.match_info["id"],
                                         await self.api.payload(request))
        self.broadcaster.record(auction.state, urgent=True)
        return json_response(self.desk.view(auction), 201)

    async def room_auctions(self, request: web.Request) -> web.Response:
        found = await self.desk.room_auctions(request.match_info["id"])
        return json_response({"auctions": [self.desk.view(a) for a in found]})

    async def get(self, request: web.Request) -> web.Response:
        auction = await self.desk.get(request.match_info["id"])
        return json_response(await self.desk.view_for(auction, self.api.optional_user(request)))

    async def end(self, request: web.Request) -> web.Response:
        auction, closing = await self.desk.stop(self.api.user(request), request.match_info["id"])
        if closing is not None:
            await self.closer.announce(closing)
        return json_response(self.desk.view(auction))
