"""REST route for WebRTC clients: ``GET /api/rtc/config`` (the ICE servers to use)."""

from __future__ import annotations

from aiohttp import web

from ..media import MediaService, browser_ice_servers
from ._base import Api, json_response

__all__ = ["MediaRoutes"]


class MediaRoutes:
    def __init__(self, api: Api, media: MediaService) -> None:
        self.api = api
        # The settings are read once: the answer never changes while the process runs.
        self._config = {"ice_servers": browser_ice_servers(media.ice_servers)}

    def add_to(self, router: web.UrlDispatcher) -> None:
        router.add_get("/api/rtc/config", self.config)

    async def config(self, request: web.Request) -> web.Response:
        """The ICE servers a page passes to ``new RTCPeerConnection({iceServers})`` before it
        makes its ``rtc:publish`` / ``rtc:watch`` offer (with the TURN credentials, hence
        signed-in users only and never cached)."""
        self.api.user(request)
        response = json_response(self._config)
        response.headers["Cache-Control"] = "no-store"
        return response
