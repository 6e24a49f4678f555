"""The orders hand-off consumer in a process of its own.

Recording every reservation in SQLite costs tens of microseconds of CPU per buy; in the server
process that competes with answering buyers. ``liveroom serve`` therefore runs the consumer in a
child process (restarted if it dies; it dies with its parent), and the consumer group makes it
safe to run it beside others. In-process consumption remains for tests and embedding.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import os
import signal
from multiprocessing.process import BaseProcess

import redis.asyncio as aioredis

from orders import HandoffConsumer, OrderStore

from .loops import PeriodicLoop
from .settings import Settings
from .stores import order_store

__all__ = ["HandoffProcess", "consume_handoff", "run_handoff_process"]

log = logging.getLogger("liveroom.handoff")
BATCH_SIZE = 1000
POLL_INTERVAL_S = 0.25
CLOSE_TIMEOUT_S = 5.0


def new_consumer(settings: Settings, redis: aioredis.Redis, store: OrderStore) -> HandoffConsumer:
    """The node's consumer: one name per node (``Settings.handoff_consumer``), so a restarted
    consumer re-reads what it had read and not acknowledged at once, and another node's takes
    a dead node's entries over after ``handoff_claim_idle_ms``."""
    # Checkout never waits for the hand-off (it commits the hold itself), so the consumer can
    # take large batches a few times a second: one SQLite commit per pass, even under a spike.
    return HandoffConsumer(redis, store, consumer_name=settings.handoff_consumer,
                           claim_idle_ms=settings.handoff_claim_idle_ms,
                           batch_size=BATCH_SIZE, poll_interval_s=POLL_INTERVAL_S)


async def consume_handoff(settings: Settings, redis_url: str,
                          parent: int | None = None) -> None:
    """Run the consumer until SIGTERM/SIGINT, or until ``parent`` (the server) is gone."""
    from .redis_target import redis_client

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    server = os.getppid() if parent is None else parent

    async def watch_parent() -> None:
        # The kernel's death signal is not always delivered (it follows the thread that spawned
        # us, and misses a server that died while we were starting); a consumer must never
        # outlive its server. ``server`` comes from the spawner, so a server that is already
        # gone is noticed at once.
        while os.getppid() == server and not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 1.0)
        stop.set()

    watcher = asyncio.create_task(watch_parent(), name="handoff-parent-watch")
    redis = redis_client(redis_url, 4)
    store = order_store(settings, handoff=True)
    await store.open()
    consumer = new_consumer(settings, redis, store)
    consumer.start()
    log.info("orders hand-off consumer running (pid %d)", os.getpid())
    try:
        await stop.wait()
    finally:
        watcher.cancel()
        # Bounded: acknowledging only after the SQLite commit makes an abrupt end safe (the
        # entries are redelivered), so a stuck connection must not keep this process alive.
        try:
            async with asyncio.timeout(CLOSE_TIMEOUT_S):
                await consumer.close()
                await store.close()
                await redis.aclose()
        except TimeoutError:
            log.warning("hand-off consumer did not close in %.0f s; exiting", CLOSE_TIMEOUT_S)


def run_handoff_process(settings: Settings, redis_url: str, parent: int) -> None:
    from .redis_server import die_with_parent, set_process_name
    from .server import setup_logging

    die_with_parent()
    set_process_name("lr-handoff")
    setup_logging(settings)
    import uvloop

    uvloop.run(consume_handoff(settings, redis_url, parent))
    # Do not wait for stray non-daemon threads (the store's) at interpreter exit.
    os._exit(0)


class HandoffProcess(PeriodicLoop):
    """Owner of the consumer child process: starts it, restarts it if it dies, stops it."""

    name = "handoff-process"

    def __init__(self, settings: Settings, redis_url: str, check_s: float = 1.0) -> None:
        super().__init__(check_s)
        self.settings = settings
        self.redis_url = redis_url
        self.process: BaseProcess | None = None

    def _spawn(self) -> None:
        context = multiprocessing.get_context("spawn")
        self.process = context.Process(target=run_handoff_process,
                                       args=(self.settings, self.redis_url, os.getpid()),
                                       name="liveroom-handoff", daemon=False)
        self.process.start()

    def start(self) -> None:
        self._spawn()
        super().start()

    async def tick(self) -> None:
        if self.process is not None and not self.process.is_alive():
            log.warning("orders hand-off consumer exited with %s; restarting",
                        self.process.exitcode)
            self._spawn()

    async def close(self) -> None:
        await super().close()
        process, self.process = self.process, None
        if process is not None and process.is_alive():
            with contextlib.suppress(ProcessLookupError):
                process.terminate()
            await asyncio.to_thread(process.join, 10.0)
            if process.is_alive():
                process.kill()
                await asyncio.to_thread(process.join, 1.0)
