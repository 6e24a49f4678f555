"""``liveroom hls-edge``: a process that answers LL-HLS reads only, so that players' playlist
polling and part requests never share an event loop with Socket.IO and the buy path.

It holds no room and runs no packager: it reads what the servers' packagers write to Redis and
hears their ``ControlBus`` messages, like any server process does for ``/hls/``. Put it behind
the cache for ``location /hls/`` (docs/deploy.md); run as many as the crowd needs.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Callable

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

__all__ = ["create_hls_app", "run_hls_edge"]

LIFECYCLE_KEY: web.AppKey[Lifecycle] = web.AppKey("hls edge lifecycle")


def create_hls_app(redis_url: str, *, clock: Callable[[], int] = now_ms) -> web.Application:
    """``GET /hls/{room}/…`` (as the servers answer it), ``/healthz``, ``/readyz`` and
    ``/metrics``."""
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
    return app


async def _serve(settings: Settings, redis_url: str) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    runner = web.AppRunner(create_hls_app(redis_url), handle_signals=False, access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, settings.host, settings.port, backlog=4096).start()
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
