"""REST route for WebRTC clients: ``GET /api/rtc/config`` (the ICE servers to use)."""

from __future__ import annotations

from aiohttp import web

from ..media import IceConfig
from ._base import Api, json_response

__all__ = ["MediaRoutes"]


class MediaRoutes:
    def __init__(self, api: Api, ice: IceConfig) -> None:
        self.api = api
        self.ice = ice

    def add_to(self, router: web.UrlDispatcher) -> None:
        router.add_get("/api/rtc/config", self.config)

    async def config(self, request: web.Request) -> web.Response:
        """The ICE servers a page passes to ``new RTCPeerConnection({iceServers})`` before it
        makes its ``rtc:publish`` / ``rtc:watch`` offer, with TURN credentials for this user
        (short-lived ones with a shared secret), hence signed-in users only and never cached."""
        user = self.api.user(request)
        response = json_response({"ice_servers": self.ice.browser_servers_for(user.id)})
        response.headers["Cache-Control"] = "no-store"
        return response
