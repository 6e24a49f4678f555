"""``liveroom serve``: the embedded Redis (when no URL is given), the web app, graceful stop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys

from aiohttp import web

from .app import create_app, services_of
from .collector import GC_PAUSE_BUCKETS_S, FullCollections
from .handoff_process import HandoffProcess
from .http.transport import runner_options
from .logs import configure_logging
from .metrics import Histogram, Metrics
from .redis_server import EmbeddedRedis, RedisLaunchError
from .settings import Settings
from .stores import DatabaseStartError, check_database

__all__ = ["run_server", "run_worker", "serve", "start_embedded_redis"]

log = logging.getLogger("liveroom.server")


async def start_embedded_redis(settings: Settings) -> EmbeddedRedis | None:
    """The embedded redis-server in the data dir, unless a Redis URL was configured."""
    if settings.redis_url is not None:
        return None
    embedded = EmbeddedRedis(data_dir=settings.data_dir / "redis",
                             binary=settings.redis_server_bin)
    await embedded.start()
    log.info("embedded redis-server on %s (pid %s)", embedded.url, embedded.pid)
    return embedded


async def serve(settings: Settings, ready: asyncio.Event | None = None,
                stop: asyncio.Event | None = None) -> int:
    """Run until ``stop`` is set or SIGINT/SIGTERM arrives; returns the exit code."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)

    try:
        await check_database(settings)
    except DatabaseStartError as exc:
        print(f"liveroom: {exc}", file=sys.stderr)
        return 2
    try:
        embedded = await start_embedded_redis(settings)
    except RedisLaunchError as exc:
        print(f"liveroom: {exc}", file=sys.stderr)
        return 2
    redis_url = embedded.url if embedded is not None else settings.redis_url
    assert redis_url is not None

    app = create_app(settings, redis_url, handoff_in_process=False)
    # One consumer process per server (with --workers, the first worker's): the consumer group
    # shares the streams among however many run.
    handoff = (HandoffProcess(settings, redis_url)
               if settings.worker_index in (None, 0) else None)
    # Access logs cost a visible share of CPU under a buy burst; only in debug.
    access_log = logging.getLogger("aiohttp.access") if settings.log_level == "debug" else None
    collector: FullCollections | None = None
    # The header timeout and the other transport limits (liveroom/http/transport.py).
    runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=5.0,
                           access_log=access_log, **runner_options(settings))
    try:
        await runner.setup()
        site = web.TCPSite(runner, settings.host, settings.port,
                           reuse_port=settings.workers > 1, backlog=4096)
        await site.start()
        if handoff is not None:
            handoff.start()
        if settings.demo:
            from .demo import seed_demo

            await seed_demo(services_of(app), settings, print)
        if settings.gc_full_interval_s > 0:
            collector = full_collections(settings, services_of(app).metrics)
            collector.start()
        if settings.worker_index is None:
            print(f"liveroom: serving on http://{settings.host}:{settings.port}", flush=True)
        else:
            log.info("worker %d serving (pid %d)", settings.worker_index, os.getpid())
        if ready is not None:
            ready.set()
        await stop.wait()
        log.info("shutting down")
        # Tell clients we are going (they reconnect elsewhere) before the owners stop.
        with contextlib.suppress(Exception):
            await services_of(app).sio.shutdown()
    finally:
        if collector is not None:
            await collector.close()
        if handoff is not None:
            await handoff.close()
        await runner.cleanup()
        if embedded is not None:
            await embedded.stop()
    return 0


def full_collections(settings: Settings, metrics: Metrics) -> FullCollections:
    """The process's owner of full garbage collections, quiet while buys or bids are
    answered."""
    pauses = metrics.add(Histogram(
        "liveroom_gc_full_pause_seconds", "Event-loop pause of each full garbage collection.",
        GC_PAUSE_BUCKETS_S))
    return FullCollections(interval_s=settings.gc_full_interval_s,
                           activity=lambda: metrics.answered_bursts, pauses=pauses)


def setup_logging(settings: Settings) -> None:
    configure_logging(settings.log_level, settings.log_format, settings.worker_index)


def _run_loop(settings: Settings) -> int:
    import uvloop

    return uvloop.run(serve(settings))


def run_server(settings: Settings) -> int:
    setup_logging(settings)
    if settings.workers > 1 or settings.hls_edges > 0:
        from .supervisor import supervise

        return asyncio.run(supervise(settings))
    return _run_loop(settings)


def run_worker(settings: Settings) -> None:
    """Entry point of one ``--workers N`` process (spawned by the supervisor)."""
    from .redis_server import die_with_parent, set_process_name

    die_with_parent()
    set_process_name(f"lr-worker-{settings.worker_index}")
    setup_logging(settings)
    sys.exit(_run_loop(settings))
