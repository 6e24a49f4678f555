"""A process's media cache: a thousand players asking for the same part cost one Redis read."""

from __future__ import annotations

import asyncio

from liveroom.hls._store import MediaCache


async def test_concurrent_requests_share_one_load_and_later_ones_hit_memory() -> None:
    cache = MediaCache()
    loads = 0
    release = asyncio.Event()

    async def load() -> bytes | None:
        nonlocal loads
        loads += 1
        await release.wait()
        return b"part"

    waiting = [asyncio.ensure_future(cache.get("p1", load)) for _ in range(1000)]
    await asyncio.sleep(0)
    release.set()
    assert set(await asyncio.gather(*waiting)) == {b"part"}
    assert await cache.get("p1", load) == b"part"
    assert loads == 1


async def test_missing_files_are_not_remembered_and_old_ones_leave_first() -> None:
    cache = MediaCache(max_bytes=10)
    found: dict[str, bytes | None] = {"a": None}

    async def load_a() -> bytes | None:
        return found["a"]

    assert await cache.get("a", load_a) is None
    found["a"] = b"12345"
    assert await cache.get("a", load_a) == b"12345"  # not a remembered miss

    async def six() -> bytes | None:
        return b"678901"

    assert await cache.get("b", six) == b"678901"
    assert cache.size == 6  # "a" left to keep within 10 bytes

    async def failing() -> bytes | None:
        raise ConnectionError("redis is down")

    try:
        await cache.get("c", failing)
    except ConnectionError:
        pass
    else:
        raise AssertionError("the load's error reaches the caller")
    assert await cache.get("c", six) == b"678901"  # and nothing is stuck
