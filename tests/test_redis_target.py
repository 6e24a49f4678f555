"""Every Redis connection of the server is built from one URL, plain or behind Sentinel."""

from __future__ import annotations

from pathlib import Path

from redis.asyncio.connection import BlockingConnectionPool
from redis.asyncio.sentinel import SentinelConnectionPool

from inventory._connection import ScriptConnection
from inventory._scripts import script_calls_for
from liveroom.redis_target import redis_client, socketio_url
from liveroom.settings import Settings
from liveroom.sockets._base import create_sio

URL = "redis+sentinel://:pw@10.0.0.1:26379,10.0.0.2:26379,10.0.0.3:26379/liveroom?db=1"


async def test_a_sentinel_url_gives_pools_that_ask_the_sentinels_for_the_primary() -> None:
    client = redis_client(URL, 8)
    pool = client.connection_pool
    try:
        assert isinstance(pool, SentinelConnectionPool)
        # Bounded like the plain pool: under a spike a caller waits for a free connection.
        assert isinstance(pool, BlockingConnectionPool)
        assert pool.max_connections == 8
        assert pool.service_name == "liveroom"
        assert (pool.connection_kwargs["db"], pool.connection_kwargs["password"]) == (1, "pw")
        # The stock scripts keep their lean connection, which asks the same pool where the
        # primary is before each (re)connect.
        calls = script_calls_for(client)
        assert isinstance(calls, ScriptConnection)
        assert (calls.address.db, calls.address.password) == (1, "pw")
    finally:
        await client.aclose()


def test_socketio_manager_gets_the_same_sentinels(tmp_path: Path) -> None:
    sio = create_sio(Settings(data_dir=tmp_path, workers=2), URL)
    assert sio.manager.redis_url == socketio_url(URL)
    assert socketio_url(URL) == (
        "redis+sentinel://:pw@10.0.0.1:26379,10.0.0.2:26379,10.0.0.3:26379/1/liveroom")
    plain = "redis://127.0.0.1:6379/0"
    assert create_sio(Settings(data_dir=tmp_path, workers=2), plain).manager.redis_url == plain
