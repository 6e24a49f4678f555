"""The load tests' server: a load generator drives everyone from one address, so that address is
exempt from the per-address limits, as docs/loadtesting.md tells an operator to set it
(``LIVEROOM_UNLIMITED_ADDRESSES``)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from tests.server_harness import LiveServer, live_server

LOAD_GENERATOR = ("127.0.0.0/8", "::1")


@pytest.fixture
async def server(redis: aioredis.Redis, redis_url: str,
                 data_dir: Path) -> AsyncIterator[LiveServer]:
    async with live_server(redis_url, data_dir, unlimited_addresses=LOAD_GENERATOR) as live:
        yield live
