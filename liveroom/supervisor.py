"""``serve --workers N``: N server processes on one port (SO_REUSEPORT) sharing one Redis; with
``--hls-edges M`` also M LL-HLS edges (``liveroom/hls_edge.py``) on their own port.

The supervisor owns the embedded Redis (when no URL is given), starts the workers and edges,
restarts one that dies (its clients reconnect to the others meanwhile), and on SIGINT/SIGTERM
stops them gracefully, then Redis. Workers and edges hold no state of their own that others
need.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import signal
import sys
from dataclasses import replace
from multiprocessing.process import BaseProcess

from .redis_server import RedisLaunchError
from .server import start_embedded_redis
from .settings import Settings

__all__ = ["supervise"]

log = logging.getLogger("liveroom.supervisor")
RESTART_DELAY_S = 0.5
STOP_GRACE_S = 15.0


def _start_worker(settings: Settings, index: int) -> BaseProcess:
    from .server import run_worker

    context = multiprocessing.get_context("spawn")
    worker_settings = replace(settings, worker_index=index,
                              # Only the first worker seeds the demo data.
                              demo=settings.demo and index == 0)
    process = context.Process(target=run_worker, args=(worker_settings,),
                              name=f"liveroom-worker-{index}", daemon=False)
    process.start()
    return process


def _start_edge(settings: Settings, index: int) -> BaseProcess:
    from .hls_edge import run_edge_process

    context = multiprocessing.get_context("spawn")
    process = context.Process(target=run_edge_process, args=(settings, index),
                              name=f"liveroom-hls-edge-{index}", daemon=False)
    process.start()
    return process


async def supervise(settings: Settings) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)

    try:
        embedded = await start_embedded_redis(settings)
    except RedisLaunchError as exc:
        print(f"liveroom: {exc}", file=sys.stderr)
        return 2
    if embedded is not None:
        settings = replace(settings, redis_url=embedded.url)
    # Make the secret file once, before workers race to create it.
    settings.resolve_secret()

    workers = {index: _start_worker(settings, index) for index in range(settings.workers)}
    edges = {index: _start_edge(settings, index) for index in range(settings.hls_edges)}
    print(f"liveroom: serving on http://{settings.host}:{settings.port} with "
          f"{settings.workers} workers", flush=True)
    if edges:
        print(f"liveroom: {len(edges)} LL-HLS edges on "
              f"http://{settings.host}:{settings.edge_port}/hls/", flush=True)
    try:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), RESTART_DELAY_S)
            if stop.is_set():
                break
            for kind, processes, start in (("worker", workers, _start_worker),
                                           ("LL-HLS edge", edges, _start_edge)):
                for index, process in list(processes.items()):
                    if not process.is_alive():
                        log.warning("%s %d (pid %s) exited with %s; restarting", kind, index,
                                    process.pid, process.exitcode)
                        processes[index] = start(settings, index)
    finally:
        await _stop_workers(list(workers.values()) + list(edges.values()))
        if embedded is not None:
            await embedded.stop()
    return 0


async def _stop_workers(processes: list[BaseProcess]) -> None:
    for process in processes:
        if process.is_alive() and process.pid is not None:
            with contextlib.suppress(ProcessLookupError):
                process.terminate()  # SIGTERM: each worker drains gracefully
    loop = asyncio.get_running_loop()
    deadline = loop.time() + STOP_GRACE_S
    for process in processes:
        await asyncio.to_thread(process.join, max(0.0, deadline - loop.time()))
        if process.is_alive():
            process.kill()
            await asyncio.to_thread(process.join, 1.0)
