"""Shared fixtures: a real throwaway redis-server per test session, started by the same
launcher that ``liveroom serve`` uses. Each test that asks for ``redis`` gets an empty one.
A throwaway PostgreSQL cluster per session too (``database/throwaway.py``, never the machine's
own server); each test that asks for ``pg_url`` gets a fresh, empty database of its own."""

from __future__ import annotations

import contextlib
import itertools
import os
import signal
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest
import redis.asyncio as aioredis

from database.throwaway import ThrowawayPostgres
from liveroom.redis_server import EmbeddedRedis
from loadtests import _procstats as procstats

_schema_names = itertools.count(1)


@pytest.fixture(scope="session")
async def redis_server(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[EmbeddedRedis]:
    server = EmbeddedRedis(data_dir=tmp_path_factory.mktemp("redis"), persist=False)
    await server.start()
    yield server
    await server.stop()


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[ThrowawayPostgres]:
    cluster = ThrowawayPostgres()
    cluster.start()
    yield cluster
    cluster.destroy()


@pytest.fixture
async def pg_url(postgres_server: ThrowawayPostgres) -> AsyncIterator[str]:
    """The URL of a new empty database of its own on the session's throwaway cluster: a schema
    of its own, first on the search path (cheaper than a database, as good for the stores),
    dropped after the test."""
    name = f"t{os.getpid()}_{next(_schema_names)}"
    admin = await asyncpg.connect(postgres_server.url())
    try:
        await admin.execute(f'CREATE SCHEMA "{name}"')
    finally:
        await admin.close()
    yield f"{postgres_server.url()}?search_path={name}"
    with contextlib.suppress(OSError, asyncpg.PostgresError):
        admin = await asyncpg.connect(postgres_server.url())
        try:
            await admin.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')
        finally:
            await admin.close()


@pytest.fixture
def redis_url(redis_server: EmbeddedRedis) -> str:
    return redis_server.url


@pytest.fixture
async def redis(redis_server: EmbeddedRedis) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(redis_server.url)
    await client.flushall()
    yield client
    await client.aclose()


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    path = tmp_path / "data"
    path.mkdir()
    return path


@pytest.fixture
async def server(redis: aioredis.Redis, redis_url: str, data_dir: Path):
    from tests.server_harness import live_server

    async with live_server(redis_url, data_dir) as live:
        yield live


@pytest.fixture(autouse=True)
def _no_server_outlives_its_test() -> Iterator[None]:
    """A test that fails between starting ``liveroom serve`` and stopping it must not leave the
    server running (with its Redis and consumer) under the rest of the suite."""
    yield
    for pid in procstats.children(os.getpid()):
        child = procstats.info(pid)
        if child is not None and "liveroom serve" in child.cmdline:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


# What makes a module's tests integration tests: a server, a Redis, a process or real peers of
# their own (beyond the fixtures below, which are seen per test).
_INTEGRATION_SOURCES = ("live_server(", "EmbeddedRedis(", "SentinelGroup(",
                        "create_subprocess_exec(", "subprocess.run(", "subprocess.Popen(",
                        "RTCPeerConnection(", "ServerProcess(")
_INTEGRATION_FIXTURES = frozenset({"redis_server", "postgres_server", "browser", "pages",
                                   "media"})


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Marks every test that needs a real redis-server, a browser, a process or WebRTC peers of
    its own as ``integration``; the rest are the unit layer ``make test-fast`` runs."""
    module_is_integration: dict[str, bool] = {}
    for item in items:
        path = str(item.fspath)
        if path not in module_is_integration:
            source = Path(path).read_text()
            module_is_integration[path] = any(marker in source
                                              for marker in _INTEGRATION_SOURCES)
        fixtures = set(getattr(item, "fixturenames", ()))
        if module_is_integration[path] or fixtures & _INTEGRATION_FIXTURES:
            item.add_marker(pytest.mark.integration)
