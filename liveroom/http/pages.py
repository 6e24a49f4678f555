"""The pages and their assets, served from the installed ``web`` package (package data of the
wheel; ``web/`` itself in an editable install), every one with ``Cache-Control: no-cache``: a
browser revalidates them on each use (an unchanged file answers ``304``), so pages pick up new
scripts right after an upgrade."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from importlib.resources import files
from pathlib import Path

from aiohttp import web

__all__ = ["PageRoutes", "installed_web_root"]

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
NO_CACHE = {"Cache-Control": "no-cache"}
SOCKET_IO_CLIENT = Path("node_modules", "socket.io-client", "dist", "socket.io.min.js")
# hls.js (LL-HLS in browsers without native HLS), loaded by the viewer page when it plays HLS.
HLS_JS = Path("node_modules", "hls.js", "dist", "hls.min.js")


def installed_web_root() -> Path:
    """The folder of the installed ``web`` package: ``pages/``, ``static/`` and the npm assets.
    Raises ``RuntimeError`` when it is not a folder on disk (say, inside a zip): aiohttp serves
    files, not resources."""
    root = files("web")
    if not isinstance(root, Path):
        raise RuntimeError(f"liveroom serves its pages from files; the web package is in {root}")
    return root


class PageRoutes:
    def __init__(self, web_root: Path | None = None) -> None:
        self.web_root = web_root if web_root is not None else installed_web_root()
        self._static: web.AbstractResource | None = None

    def add_to(self, router: web.UrlDispatcher) -> None:
        router.add_get("/", self._page("index.html"))
        router.add_get("/r/{room}", self._page("room.html"))
        router.add_get("/studio/{room}", self._page("studio.html"))
        router.add_get("/inspect", self._page("inspect.html"))
        router.add_get("/verify/{id}", self._page("verify.html"))
        router.add_get("/lucky/{id}", self._page("lucky.html"))
        router.add_get("/assets/socket.io.min.js", self._file(self.web_root / SOCKET_IO_CLIENT))
        router.add_get("/assets/hls.min.js", self._file(self.web_root / HLS_JS))
        self._static = router.add_static("/static/", self.web_root / "static",
                                         follow_symlinks=False)

    async def on_response_prepare(self, request: web.Request,
                                  response: web.StreamResponse) -> None:
        """For the application's ``on_response_prepare``: aiohttp's static files take no
        headers, so the assets under ``/static/`` get theirs here."""
        if self._static is not None and request.match_info.route.resource is self._static:
            response.headers.update(NO_CACHE)

    def _page(self, name: str) -> Handler:
        return self._file(self.web_root / "pages" / name)

    @staticmethod
    def _file(path: Path) -> Handler:
        async def handler(request: web.Request) -> web.StreamResponse:
            # A missing file answers 404 (FileResponse checks on send).
            return web.FileResponse(path, headers=NO_CACHE)

        return handler
