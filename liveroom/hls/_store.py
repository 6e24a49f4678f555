"""The packagers' output in Redis, and what every process reads of it.

Writes (the process that owns the room's broadcast): each complete part is one transaction
(the media keys, the playlist model, its text and progress, all with TTLs), followed by one
``ControlBus`` message carrying the new progress and playlist text. Reads (any process): the
playlist from the last message this process heard for the room (a blocking reload never
touches Redis), falling back to Redis when none is fresh; media files by key.
"""

from __future__ import annotations

import asyncio
import re
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

import orjson
import redis.asyncio as aioredis

from ..bus import ControlBus
from . import keys
from ._playlist import Playlist, Progress
from ._segmenter import InitOut, Output, PartOut, SegmentOut
from .exceptions import BadHlsRequest, StreamNotFound

__all__ = ["HlsReader", "HlsStore", "MediaCache", "Snapshot", "parse_name"]

_NAMES = (
    ("init", re.compile(r"init-([0-9a-f]{8})-(\d{1,6})\.mp4")),
    ("seg", re.compile(r"seg-([0-9a-f]{8})-(\d{1,9})\.m4s")),
    ("part", re.compile(r"part-([0-9a-f]{8})-(\d{1,9})-(\d{1,3})\.m4s")),
)


def parse_name(name: str) -> tuple[str, str, tuple[int, ...]]:
    """``(kind, stream id, numbers)`` of a file name the playlist can list; anything else
    (another extension, a path, ``..``) is ``BadHlsRequest``."""
    for kind, pattern in _NAMES:
        match = pattern.fullmatch(name)
        if match is not None:
            return kind, match.group(1), tuple(int(n) for n in match.groups()[1:])
    raise BadHlsRequest(f"{name[:80]!r} is not an HLS file name of this server")


def _bytes(raw: bytes | str | None) -> bytes | None:
    return raw.encode() if isinstance(raw, str) else raw


def _text(raw: bytes | str | None) -> str | None:
    return raw.decode() if isinstance(raw, bytes) else raw


@dataclass(frozen=True, slots=True)
class Snapshot:
    stream_id: str
    progress: Progress
    m3u8: str


class HlsStore:
    def __init__(self, redis: aioredis.Redis, bus: ControlBus,
                 cache: MediaCache | None = None) -> None:
        self._redis = redis
        self._bus = bus
        self._cache = cache or MediaCache()

    async def load(self, room_id: str) -> dict[str, Any] | None:
        """The playlist model a previous packager of the room left, if it has not expired."""
        raw = await self._redis.hget(keys.stream(room_id), "state")
        return None if raw is None else dict(orjson.loads(raw))

    async def write(self, room_id: str, playlist: Playlist, outputs: Iterable[Output]) -> None:
        sid = playlist.stream_id
        progress = playlist.progress
        m3u8 = playlist.render()
        async with self._redis.pipeline(transaction=True) as pipe:
            for out in outputs:
                if isinstance(out, InitOut):
                    # Lives as long as the stream: every segment of its generation needs it.
                    pipe.set(keys.init(room_id, sid, out.gen), out.data, ex=keys.STREAM_TTL_S)
                elif isinstance(out, PartOut):
                    pipe.set(keys.part(room_id, sid, out.msn, out.index), out.data,
                             ex=keys.MEDIA_TTL_S)
                elif isinstance(out, SegmentOut):
                    pipe.set(keys.segment(room_id, sid, out.msn), out.data, ex=keys.MEDIA_TTL_S)
            for gen in {segment.gen for segment in playlist.segments}:
                pipe.expire(keys.init(room_id, sid, gen), keys.STREAM_TTL_S)
            pipe.hset(keys.stream(room_id), mapping={
                "state": orjson.dumps(playlist.to_json()), "m3u8": m3u8,
                "progress": progress.encode(), "stream_id": sid})
            pipe.expire(keys.stream(room_id), keys.STREAM_TTL_S)
            await pipe.execute()
        await self._bus.publish(keys.NEWS_KIND, {
            "room": room_id, "stream_id": sid, "progress": progress.encode(), "m3u8": m3u8})

    async def part_bytes(self, room_id: str, stream_id: str, msn: int, index: int) -> bytes | None:
        return _bytes(await self._redis.get(keys.part(room_id, stream_id, msn, index)))

    async def remove(self, room_id: str) -> None:
        """The room's broadcast ended: its playlist goes at once (players get 404); the media
        keys expire on their own."""
        await self._redis.delete(keys.stream(room_id))
        await self._bus.publish(keys.NEWS_KIND, {"room": room_id, "ended": True})

    async def snapshot(self, room_id: str) -> Snapshot | None:
        raw = await self._redis.hmget(keys.stream(room_id), ["stream_id", "progress", "m3u8"])
        values = [_text(value) for value in raw]
        if None in values:
            return None
        sid, progress, m3u8 = (str(value) for value in values)
        return Snapshot(sid, Progress.decode(progress), m3u8)

    async def file(self, room_id: str, kind: str, stream_id: str,
                   numbers: tuple[int, ...]) -> bytes | None:
        if kind == "init":
            key = keys.init(room_id, stream_id, numbers[0])
        elif kind == "seg":
            key = keys.segment(room_id, stream_id, numbers[0])
        else:
            key = keys.part(room_id, stream_id, numbers[0], numbers[1])

        async def load() -> bytes | None:
            return _bytes(await self._redis.get(key))

        return await self._cache.get(key, load)


class MediaCache:
    """This process's copy of the media files players asked for: a file's name is unique for
    the life of a stream and its bytes never change, so the first request reads Redis and the
    next thousand are answered from memory. Least recently used out beyond ``max_bytes``."""

    def __init__(self, max_bytes: int = 64 * 1024 * 1024) -> None:
        self.max_bytes = max_bytes
        self.size = 0
        self._files: OrderedDict[str, bytes] = OrderedDict()
        self._loading: dict[str, asyncio.Future[bytes | None]] = {}

    async def get(self, key: str, load: Callable[[], Awaitable[bytes | None]]) -> bytes | None:
        data = self._files.get(key)
        if data is not None:
            self._files.move_to_end(key)
            return data
        pending = self._loading.get(key)
        if pending is not None:
            # Asked at the same moment by many players: one Redis read for all of them.
            return await asyncio.shield(pending)
        future: asyncio.Future[bytes | None] = asyncio.get_running_loop().create_future()
        self._loading[key] = future
        try:
            data = await load()
            future.set_result(data)
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: the waiters, if any, get it
            raise
        finally:
            del self._loading[key]
        if data is not None:
            self._files[key] = data
            self.size += len(data)
            while self.size > self.max_bytes and self._files:
                _, dropped = self._files.popitem(last=False)
                self.size -= len(dropped)
        return data


class _Room:
    __slots__ = ("changed", "heard_ms", "snapshot")

    def __init__(self) -> None:
        self.snapshot: Snapshot | None = None
        self.heard_ms = 0
        self.changed = asyncio.Event()

    def wake(self) -> None:
        self.changed.set()
        self.changed = asyncio.Event()


class HlsReader:
    """Answers playlist and media reads in any process: blocking reloads wait for the bus
    message of the part they ask for (``wait_for``).

    A room's snapshot from the bus is trusted for ``fresh_ms`` (a live room sends one per part,
    every ~300 ms); older, it is read again from Redis, so a lost message costs one read.
    """

    def __init__(self, store: HlsStore, bus: ControlBus, now_ms: Callable[[], int], *,
                 fresh_ms: int = 1000) -> None:
        self._store = store
        self._now_ms = now_ms
        self._fresh_ms = fresh_ms
        self._rooms: dict[str, _Room] = {}
        bus.on(keys.NEWS_KIND, self._heard)

    async def _heard(self, payload: dict[str, Any]) -> None:
        room_id = payload.get("room")
        if not isinstance(room_id, str):
            return
        room = self._rooms.get(room_id)
        if room is None:
            return  # nobody here reads it
        if payload.get("ended"):
            room.snapshot = None
            room.heard_ms = self._now_ms()
        else:
            try:
                room.snapshot = Snapshot(str(payload["stream_id"]),
                                         Progress.decode(str(payload["progress"])),
                                         str(payload["m3u8"]))
            except (KeyError, ValueError):
                return
            room.heard_ms = self._now_ms()
        room.wake()

    async def current(self, room_id: str) -> Snapshot:
        """The room's newest playlist, or ``StreamNotFound``."""
        room = self._rooms.get(room_id)
        if room is None:
            room = self._rooms[room_id] = _Room()
        if self._now_ms() - room.heard_ms > self._fresh_ms:
            room.snapshot = await self._store.snapshot(room_id)
            room.heard_ms = self._now_ms()
        if room.snapshot is None:
            self._rooms.pop(room_id, None)
            raise StreamNotFound(room_id)
        return room.snapshot

    async def wait_for(self, room_id: str, msn: int, index: int | None,
                       timeout_s: float) -> Snapshot | None:
        """The playlist once it has segment ``msn`` (part ``index``); ``None`` after
        ``timeout_s``. ``BadHlsRequest`` at once for a segment too far in the future,
        ``StreamNotFound`` when the stream ends meanwhile."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while True:
            snapshot = await self.current(room_id)
            if snapshot.progress.too_far(msn):
                raise BadHlsRequest(
                    f"_HLS_msn={msn} is more than two segments after the newest, "
                    f"{snapshot.progress.next_msn}")
            if snapshot.progress.has(msn, index):
                return snapshot
            remaining = deadline - loop.time()
            if remaining <= 0:
                return None
            changed = self._rooms[room_id].changed
            try:
                await asyncio.wait_for(changed.wait(), remaining)
            except TimeoutError:
                return None
