"""``liveroom hls-edge``: a process that answers LL-HLS reads only, so that players' playlist
polling and part requests never share an event loop with Socket.IO and the buy path.

It holds no room and runs no packager: it reads what the servers' packagers write to Redis and
hears their ``ControlBus`` messages, like any server process does for ``/hls/``. Put it behind
the cache for ``location /hls/`` (docs/deploy.md); run as many as the crowd needs, or let
``liveroom serve --hls-edges N`` start and supervise them (``run_edge_process``: one port
shared with SO_REUSEPORT, each answer tagged ``X-Liveroom-Edge: <index>``).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from collections.abc import Callable
from dataclasses import replace

from aiohttp import web

from .bus import ControlBus
from .clock import now_ms
from .hls import HlsReader, HlsStore
from .http._base import error_middleware, json_response
from .http.hls import HlsRoutes
from .http.ops import OpsRoutes, RedisProbe, metrics_middleware
from .lifecycle import Lifecycle
from .metrics import Metrics
from .redis_target import redis_client
from .settings import Settings

__all__ = ["EDGE_HEADER", "create_hls_app", "run_edge_process", "run_hls_edge"]

LIFECYCLE_KEY: web.AppKey[Lifecycle] = web.AppKey("hls edge lifecycle")
EDGE_HEADER = "X-Liveroom-Edge"


def create_hls_app(redis_url: str, *, clock: Callable[[], int] = now_ms,
                   edge_index: int | None = None) -> web.Application:
    """``GET /hls/{room}/…`` (as the servers answer it), ``/healthz``, ``/readyz`` and
    ``/metrics``; with ``edge_index`` (one of ``serve``'s edges) every answer says which."""
    life = Lifecycle()
    redis = redis_client(redis_url, 16)
    life.register("redis", close=redis.aclose)
    metrics = Metrics()
    probe = RedisProbe(redis, metrics)
    life.register("redis probe", start=probe.start, close=probe.close)
    bus = ControlBus(redis)
    life.register("control bus", start=bus.start, close=bus.close)
    store = HlsStore(redis, bus)
    reader = HlsReader(store, bus, clock)
    app = web.Application(middlewares=[metrics_middleware(metrics), error_middleware])
    app[LIFECYCLE_KEY] = life
    HlsRoutes(reader, store, metrics).add_to(app.router)
    OpsRoutes(metrics, probe).add_to(app.router)

    async def healthz(_: web.Request) -> web.Response:
        return json_response({"ok": True})

    app.router.add_get("/healthz", healthz)

    async def on_startup(_: web.Application) -> None:
        await life.start()

    async def on_cleanup(_: web.Application) -> None:
        await life.close()

    app.on_startup.append(on_startup)
    app.on_cleanup.append(on_cleanup)
    if edge_index is not None:
        tag = str(edge_index)

        async def on_response_prepare(_: web.Request, response: web.StreamResponse) -> None:
            response.headers[EDGE_HEADER] = tag

        app.on_response_prepare.append(on_response_prepare)
    return app


async def _serve(settings: Settings, redis_url: str, edge_index: int | None = None) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    runner = web.AppRunner(create_hls_app(redis_url, edge_index=edge_index),
                           handle_signals=False, access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, settings.host, settings.port, backlog=4096,
                          reuse_port=edge_index is not None).start()
        if edge_index is None:
            print(f"liveroom: LL-HLS edge on http://{settings.host}:{settings.port}", flush=True)
        await stop.wait()
    finally:
        await runner.cleanup()
    return 0


def run_hls_edge(settings: Settings) -> int:
    """Entry point of ``liveroom hls-edge`` (needs ``--redis-url``: the servers' Redis)."""
    import uvloop

    from .server import setup_logging

    if settings.redis_url is None:
        print("liveroom: hls-edge needs --redis-url (the Redis the servers use)", flush=True)
        return 2
    setup_logging(settings)
    return uvloop.run(_serve(settings, settings.redis_url))


def run_edge_process(settings: Settings, index: int) -> None:
    """Entry point of one edge of ``serve --hls-edges N`` (spawned by the supervisor, which
    set ``redis_url``; it listens on ``settings.edge_port``)."""
    import uvloop

    from .logs import configure_logging
    from .redis_server import die_with_parent, set_process_name

    assert settings.redis_url is not None
    die_with_parent()
    set_process_name(f"lr-hls-edge-{index}")
    configure_logging(settings.log_level, settings.log_format, index, role="edge")
    edge = replace(settings, port=settings.edge_port)
    sys.exit(uvloop.run(_serve(edge, settings.redis_url, index)))
