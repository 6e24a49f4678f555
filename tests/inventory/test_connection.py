"""The lean script connection against real redis-servers: replies matched to callers, errors as
values, reconnects, AUTH/SELECT, unix sockets, and the uvloop the server runs on."""

from __future__ import annotations

import asyncio
from pathlib import Path

import hiredis
import pytest
import redis.asyncio as aioredis
import uvloop

from inventory import StoreUnavailable
from inventory._connection import Address, ScriptConnection, online_replicas, pack_command
from inventory._scripts import RedisPyCalls, script_calls_for
from liveroom.redis_server import EmbeddedRedis, free_port
from tests.stall_proxy import StallProxy


def connection_to(redis_server: EmbeddedRedis) -> ScriptConnection:
    return ScriptConnection(Address(host=redis_server.host, port=redis_server.port))


async def test_values_round_trip_byte_for_byte(
    redis_server: EmbeddedRedis, redis: aioredis.Redis
) -> None:
    conn = connection_to(redis_server)
    try:
        binary = bytes(range(256)) + b"\r\n$*"
        assert await conn.call("SET", "k:binary", binary) == b"OK"
        assert await conn.call("SET", "k:text", "翡翠 jade\r\n") == b"OK"
        assert await conn.call("SET", "k:int", -42) == b"OK"
        assert await redis.get("k:binary") == binary
        assert await redis.get("k:text") == "翡翠 jade\r\n".encode()
        assert await conn.call("INCRBY", "k:int", 2) == -40
        assert await conn.call("GET", "k:missing") is None
    finally:
        await conn.close()


def test_arguments_must_be_bytes_text_or_int() -> None:
    with pytest.raises(TypeError, match="float"):
        pack_command(["SET", "k", 1.5])  # type: ignore[list-item]
    with pytest.raises(TypeError, match="bool"):
        pack_command(["SET", "k", True])


async def test_concurrent_callers_each_get_their_own_reply(redis_server: EmbeddedRedis) -> None:
    conn = connection_to(redis_server)
    try:
        replies = await asyncio.gather(*(conn.call("ECHO", f"m{n}") for n in range(2000)))
        assert replies == [f"m{n}".encode() for n in range(2000)]
    finally:
        await conn.close()


async def test_an_error_reply_is_a_value_and_the_next_reply_still_matches(
    redis_server: EmbeddedRedis, redis: aioredis.Redis
) -> None:
    await redis.set("k:text", "not a number")
    conn = connection_to(redis_server)
    try:
        wrong, right = await asyncio.gather(conn.call("INCR", "k:text"), conn.call("ECHO", "after"))
        assert isinstance(wrong, hiredis.ReplyError)
        assert "not an integer" in str(wrong)
        assert right == b"after"
        missing = await conn.evalsha("0" * 40, ["k"], [])
        assert isinstance(missing, hiredis.ReplyError)
        assert str(missing).startswith("NOSCRIPT")
    finally:
        await conn.close()


async def test_a_cancelled_caller_does_not_shift_the_replies(redis_server: EmbeddedRedis) -> None:
    conn = connection_to(redis_server)
    try:
        slow = asyncio.ensure_future(conn.call("BLPOP", "k:never", "0.2"))
        await asyncio.sleep(0.05)
        slow.cancel()
        # BLPOP's nil reply arrives after the cancel; it must not become ECHO's answer.
        assert await conn.call("ECHO", "mine") == b"mine"
    finally:
        await conn.close()


async def test_a_killed_connection_is_replaced_and_its_command_resent(
    redis_server: EmbeddedRedis, redis: aioredis.Redis
) -> None:
    conn = connection_to(redis_server)
    try:
        assert await conn.call("CLIENT", "SETNAME", "lean") == b"OK"
        # A blocked command is in flight when its connection is killed: it is sent again.
        waiting = asyncio.ensure_future(conn.call("BLPOP", "k:list", "60"))
        await asyncio.sleep(0.05)
        assert await redis.client_kill_filter(_type="normal", skipme=True) >= 1
        await asyncio.sleep(0.05)
        await redis.rpush("k:list", "v")
        assert await asyncio.wait_for(waiting, 60) == [b"k:list", b"v"]
        assert await conn.call("CLIENT", "GETNAME") is None  # a new connection
    finally:
        await conn.close()


async def test_unreachable_redis_is_store_unavailable_after_the_retries() -> None:
    conn = ScriptConnection(Address(port=free_port()), attempts=3, backoff_base_s=0.01)
    with pytest.raises(StoreUnavailable, match="did not answer"):
        async with asyncio.timeout(30):  # the bound is for failing: a hang never raises
            await conn.call("PING")


async def test_a_restarted_redis_is_found_again(tmp_path: Path) -> None:
    store = EmbeddedRedis(data_dir=tmp_path / "redis", persist=False)
    await store.start()
    conn = ScriptConnection(Address(port=store.port))
    try:
        assert await conn.call("SET", "k", "v") == b"OK"
        port = store.port
        await store.kill()
        with pytest.raises(StoreUnavailable):
            await ScriptConnection(Address(port=port), attempts=1).call("PING")
        store = EmbeddedRedis(data_dir=tmp_path / "redis", persist=False, port=port)
        await store.start()
        assert await conn.call("PING") == b"PONG"
    finally:
        await conn.close()
        await store.stop()


async def test_password_and_database_from_the_url(tmp_path: Path) -> None:
    store = EmbeddedRedis(data_dir=tmp_path / "redis", persist=False)
    await store.start()
    admin = aioredis.Redis(port=store.port)
    await admin.config_set("requirepass", "s3cret")
    await admin.aclose()
    url = f"redis://:s3cret@127.0.0.1:{store.port}/3"
    client = aioredis.Redis.from_url(url)
    calls = script_calls_for(client)
    try:
        assert isinstance(calls, ScriptConnection)
        assert await calls.call("SET", "k", "in db 3") == b"OK"
        assert await client.get("k") == b"in db 3"
        db0 = aioredis.Redis.from_url(url.replace("/3", "/0"))
        assert await db0.get("k") is None
        await db0.aclose()
        wrong = ScriptConnection(Address(port=store.port, password="wrong"))
        with pytest.raises(StoreUnavailable, match="refused AUTH"):
            await wrong.call("PING")
    finally:
        await calls.close()
        await client.aclose()
        await store.stop()


async def test_unix_socket(tmp_path: Path) -> None:
    path = tmp_path / "redis.sock"
    store = EmbeddedRedis(data_dir=tmp_path / "redis", persist=False,
                          extra_args=("--unixsocket", str(path)))
    await store.start()
    client = aioredis.Redis.from_url(f"unix://{path}?db=2")
    calls = script_calls_for(client)
    try:
        assert isinstance(calls, ScriptConnection)
        assert calls.address.path == str(path)
        assert await calls.call("SET", "k", "v") == b"OK"
        assert await client.get("k") == b"v"
    finally:
        await calls.close()
        await client.aclose()
        await store.stop()


def test_tls_falls_back_to_redis_py() -> None:
    client = aioredis.Redis.from_url("rediss://127.0.0.1:6390/0")
    assert isinstance(script_calls_for(client), RedisPyCalls)


def test_under_uvloop(redis_server: EmbeddedRedis) -> None:
    """The server runs on uvloop, whose transports are not asyncio's classes."""

    async def scenario() -> list[bytes]:
        conn = connection_to(redis_server)
        try:
            return list(await asyncio.gather(*(conn.call("ECHO", str(n)) for n in range(100))))
        finally:
            await conn.close()

    assert uvloop.run(scenario()) == [str(n).encode() for n in range(100)]


async def test_a_redis_that_stops_answering_is_store_unavailable_not_a_hang(
    redis_server: EmbeddedRedis,
) -> None:
    proxy = await StallProxy(redis_server.port).start()
    conn = ScriptConnection(Address(port=proxy.port), reply_timeout_s=0.3, attempts=2,
                            backoff_base_s=0.01)
    try:
        assert await conn.call("PING") == b"PONG"
        # Redis takes the connection's commands and answers nothing (as a stalled server or a
        # dead network path would) until the test releases it: only giving up can end the call,
        # however slow the machine is.
        proxy.hold()
        with pytest.raises(StoreUnavailable, match=r"no reply within 0\.3 s"):
            await conn.call("PING")
    finally:
        proxy.release()
        await conn.close()
        await proxy.close()


async def test_close_lets_calls_in_flight_finish_and_opens_nothing_new(
    redis_server: EmbeddedRedis, redis: aioredis.Redis
) -> None:
    conn = connection_to(redis_server)
    assert await conn.call("CLIENT", "SETNAME", "closing") == b"OK"
    waiting = asyncio.ensure_future(conn.call("BLPOP", "k:list", "0.3"))
    await asyncio.sleep(0.05)
    await conn.close()
    assert await waiting is None  # its own reply, not a resend on a new connection
    with pytest.raises(StoreUnavailable, match="closed"):
        await conn.call("PING")
    clients = await redis.client_list()
    assert not [c for c in clients if c.get("name") == "closing"]


async def test_tcp_keepalive_is_on(redis_server: EmbeddedRedis) -> None:
    import socket

    conn = connection_to(redis_server)
    try:
        await conn.call("PING")
        assert conn._protocol is not None
        assert conn._protocol._transport is not None
        sock = conn._protocol._transport.get_extra_info("socket")
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE) == 30
    finally:
        await conn.close()


def test_only_replicas_in_sync_can_confirm_a_batch() -> None:
    info = (b"# Replication\r\nrole:master\r\nconnected_slaves:2\r\n"
            b"slave0:ip=10.0.0.2,port=6379,state=online,offset=42,lag=0\r\n"
            b"slave1:ip=10.0.0.3,port=6379,state=wait_bgsave,offset=0,lag=0\r\n"
            b"master_repl_offset:42\r\n")
    assert online_replicas(info) == 1
    assert online_replicas(b"# Replication\r\nrole:slave\r\nconnected_slaves:0\r\n") == 0
