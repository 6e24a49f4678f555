"""REST routes of lucky bags and followers."""

from __future__ import annotations

from aiohttp import web

from ..follows import FollowService
from ..lucky import LuckyDesk
from ._base import Api, json_response

__all__ = ["LuckyRoutes"]


class LuckyRoutes:
    def __init__(self, api: Api, desk: LuckyDesk, follows: FollowService) -> None:
        self.api = api
        self.desk = desk
        self.follows = follows

    def add_to(self, router: web.UrlDispatcher) -> None:
        router.add_post("/api/rooms/{id}/lucky-bags", self.create)
        router.add_get("/api/lucky-bags/{id}", self.get)
        router.add_post("/api/anchors/{id}/follow", self.follow)
        router.add_delete("/api/anchors/{id}/follow", self.unfollow)
        router.add_get("/api/anchors/{id}", self.anchor)
        router.add_get("/api/anchors/{id}/followers", self.followers)

    async def create(self, request: web.Request) -> web.Response:
        user = self.api.user(request)
        payload = await self.api.payload(request)
        bag = await self.desk.create(user, request.match_info["id"], payload)
        return json_response(await self.desk.view(bag, full=True), 201)

    async def get(self, request: web.Request) -> web.Response:
        viewer = self.api.optional_user(request)
        bag = await self.desk.get(request.match_info["id"])
        return json_response(await self.desk.view(bag, full=True, viewer=viewer))

    async def follow(self, request: web.Request) -> web.Response:
        state = await self.follows.follow(self.api.user(request), request.match_info["id"])
        return json_response(state.public())

    async def unfollow(self, request: web.Request) -> web.Response:
        state = await self.follows.unfollow(self.api.user(request), request.match_info["id"])
        return json_response(state.public())

    async def anchor(self, request: web.Request) -> web.Response:
        viewer = self.api.optional_user(request)
        return json_response(await self.follows.profile(request.match_info["id"], viewer))

    async def followers(self, request: web.Request) -> web.Response:
        user = self.api.user(request)
        room = request.query.get("room")
        return json_response(await self.follows.figures(user, request.match_info["id"], room))
