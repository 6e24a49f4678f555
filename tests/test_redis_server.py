from __future__ import annotations

import os
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from liveroom.redis_server import EmbeddedRedis, RedisServerNotFound


async def test_embedded_redis_persists_with_aof_and_stops(tmp_path: Path) -> None:
    server = EmbeddedRedis(data_dir=tmp_path)
    await server.start()
    pid = server.pid
    assert pid is not None
    client = aioredis.Redis.from_url(server.url)
    await client.set("k", "v")
    await client.aclose()
    await server.stop()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert any(tmp_path.rglob("*.aof")), "AOF files must be written into the data dir"

    # A restart in the same data dir replays the AOF.
    again = EmbeddedRedis(data_dir=tmp_path)
    await again.start()
    client = aioredis.Redis.from_url(again.url)
    assert await client.get("k") == b"v"
    await client.aclose()
    await again.stop()


async def test_missing_binary_gives_install_hint(tmp_path: Path) -> None:
    with pytest.raises(RedisServerNotFound) as info:
        await EmbeddedRedis(data_dir=tmp_path, binary="redis-server-that-does-not-exist").start()
    assert info.value.binary == "redis-server-that-does-not-exist"


def test_hint_names_the_install_command_and_the_flag() -> None:
    message = str(RedisServerNotFound("redis-server"))
    assert "apt-get install redis-server" in message
    assert "--redis-url" in message


async def test_two_servers_get_distinct_free_ports(tmp_path: Path) -> None:
    a = EmbeddedRedis(data_dir=tmp_path / "a", persist=False)
    b = EmbeddedRedis(data_dir=tmp_path / "b", persist=False)
    await a.start()
    await b.start()
    try:
        assert a.port != b.port
    finally:
        await a.stop()
        await b.stop()
