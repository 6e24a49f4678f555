"""docs/protocol.md stays current: every event handler and route the app registers is in it, and
every endpoint it names exists."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web

from liveroom.app import create_app, services_of
from liveroom.settings import Settings

PROTOCOL = Path(__file__).resolve().parent.parent / "docs" / "protocol.md"
# Socket.IO lifecycle names, not events a client sends (`*` is the catch-all for unknown ones).
LIFECYCLE = {"connect", "disconnect", "*"}
SOCKETIO_PATH = "/socket.io/"
PATH_CHARS = r"[A-Za-z0-9_{}./-]"


def _params_blank(text: str) -> str:
    """``/api/rooms/{id}`` and ``/r/{room}`` read the same whatever the parameter's name."""
    return re.sub(r"\{[^{}/`\s]*\}", "{}", text)


@pytest.fixture
async def app(data_dir: Path, redis_url: str) -> AsyncIterator[web.Application]:
    # Built, not started: nothing connects, the registrations are what the test reads. Building
    # opens the services' files (the certificate store and its thread), so they are closed.
    app = create_app(Settings(data_dir=data_dir, secret="protocol-doc-secret-0123456789abcdef"),
                     redis_url)
    yield app
    await services_of(app).close()


def _routes(app: web.Application) -> set[tuple[str, str, bool]]:
    """(method, path with blank params, is a static prefix) of every route but HEAD/OPTIONS,
    which aiohttp and the Socket.IO transport add by themselves."""
    routes = set()
    for route in app.router.routes():
        if route.method in ("HEAD", "OPTIONS") or route.resource is None:
            continue
        static = isinstance(route.resource, web.StaticResource)
        routes.add((route.method, _params_blank(route.resource.canonical), static))
    return routes


def test_every_socketio_event_handler_is_documented(app: web.Application) -> None:
    doc = PROTOCOL.read_text()
    events = set(services_of(app).sio.handlers["/"]) - LIFECYCLE
    assert {"join", "leave", "chat", "buy", "checkout", "rtc:watch"} <= events
    missing = sorted(event for event in events
                     if not re.search(rf"`{re.escape(event)}[` ]", doc))
    assert missing == [], f"Socket.IO events missing from docs/protocol.md: {missing}"


def test_every_route_is_documented(app: web.Application) -> None:
    doc = _params_blank(PROTOCOL.read_text())
    routes = _routes(app)
    assert ("GET", "/api/rooms/{}", False) in routes
    missing = []
    for method, path, static in routes:
        if path == SOCKETIO_PATH:  # the transport, documented under Conventions
            found = f"`{SOCKETIO_PATH}`" in doc
        else:
            # The whole path: `GET /` must not pass because `GET /healthz` is there.
            tail = "/" if static else f"(?!{PATH_CHARS})"
            found = re.search(rf"{method} {re.escape(path)}{tail}", doc) is not None
        if not found:
            missing.append(f"{method} {path}")
    assert missing == [], f"routes missing from docs/protocol.md: {sorted(missing)}"


def test_every_documented_endpoint_exists(app: web.Application) -> None:
    routes = _routes(app)
    documented = set(re.findall(rf"\b(GET|POST|PUT|PATCH|DELETE) (/{PATH_CHARS}*)",
                                _params_blank(PROTOCOL.read_text())))
    assert len(documented) > 40
    unknown = sorted(
        f"{method} {path}" for method, path in documented
        if (method, path.split("?")[0], False) not in routes
        and not any(static and method == m and path.startswith(p + "/")
                    for m, p, static in routes))
    assert unknown == [], f"docs/protocol.md names endpoints the server does not have: {unknown}"
