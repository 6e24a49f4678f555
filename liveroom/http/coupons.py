"""REST routes of coupon drops and wallets."""

from __future__ import annotations

from aiohttp import web

from ..coupons import CouponDesk
from ._base import Api, json_response

__all__ = ["CouponRoutes"]


class CouponRoutes:
    def __init__(self, api: Api, desk: CouponDesk) -> None:
        self.api = api
        self.desk = desk

    def add_to(self, router: web.UrlDispatcher) -> None:
        router.add_post("/api/rooms/{id}/coupons", self.create)
        router.add_get("/api/coupon-drops/{id}", self.get)
        router.add_get("/api/coupons", self.wallet)

    async def create(self, request: web.Request) -> web.Response:
        user = self.api.user(request)
        payload = await self.api.payload(request)
        drop = await self.desk.create(user, request.match_info["id"], payload)
        return json_response(self.desk.view(drop, drop.count), 201)

    async def get(self, request: web.Request) -> web.Response:
        drop = await self.desk.get(request.match_info["id"])
        return json_response(await self.desk.view_for(drop, self.api.optional_user(request)))

    async def wallet(self, request: web.Request) -> web.Response:
        user = self.api.user(request)
        return json_response({"coupons": await self.desk.wallet(user),
                              "server_time": self.desk.now()})
