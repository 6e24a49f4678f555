"""The pages and their assets, served from ``web/``."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

from aiohttp import web

__all__ = ["WEB_ROOT", "PageRoutes"]

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

WEB_ROOT = Path(__file__).resolve().parent.parent.parent / "web"


class PageRoutes:
    def __init__(self, web_root: Path = WEB_ROOT) -> None:
        self.web_root = web_root

    def add_to(self, router: web.UrlDispatcher) -> None:
        router.add_get("/", self._page("index.html"))
        router.add_get("/r/{room}", self._page("room.html"))
        router.add_get("/studio/{room}", self._page("studio.html"))
        router.add_get("/inspect", self._page("inspect.html"))
        router.add_get("/verify/{id}", self._page("verify.html"))
        router.add_get("/assets/socket.io.min.js", self._file(
            self.web_root / "node_modules" / "socket.io-client" / "dist" / "socket.io.min.js"))
        router.add_static("/static/", self.web_root / "static", follow_symlinks=False)

    def _page(self, name: str) -> Handler:
        return self._file(self.web_root / "pages" / name)

    @staticmethod
    def _file(path: Path) -> Handler:
        async def handler(request: web.Request) -> web.StreamResponse:
            # A missing file answers 404 (FileResponse checks on send).
            return web.FileResponse(path, headers={"Cache-Control": "no-cache"})

        return handler
