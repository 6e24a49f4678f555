"""Pages and their assets through the real server: every one is revalidated on each use, so a
browser picks up new scripts right after an upgrade, and nothing outside web/ is served."""

from __future__ import annotations

import pytest

from tests.server_harness import LiveServer


@pytest.mark.parametrize("path", ["/static/room.js", "/static/badges.js", "/r/r_any", "/",
                                  "/assets/socket.io.min.js"])
async def test_pages_and_assets_are_revalidated_on_every_use(server: LiveServer,
                                                             path: str) -> None:
    async with server.http.get(server.url + path) as response:
        assert response.status == 200
        assert response.headers["Cache-Control"] == "no-cache"
        assert await response.read()
        etag = response.headers["ETag"]
    # An unchanged file costs a revalidation, not a download.
    async with server.http.get(server.url + path, headers={"If-None-Match": etag}) as again:
        assert again.status == 304
        assert again.headers["Cache-Control"] == "no-cache"


async def test_a_static_script_is_served_as_javascript(server: LiveServer) -> None:
    async with server.http.get(server.url + "/static/room.js") as response:
        assert response.status == 200
        assert response.content_type in ("text/javascript", "application/javascript")
        assert "import" in await response.text()


@pytest.mark.parametrize("path", ["/static/nope.js", "/static/../pages/room.html",
                                  "/static/%2e%2e/%2e%2e/pyproject.toml",
                                  "/static/..%2f..%2fpyproject.toml"])
async def test_missing_or_outside_files_are_not_served(server: LiveServer, path: str) -> None:
    async with server.http.get(server.url + path) as response:
        assert response.status == 404
        assert "[project]" not in await response.text()
