"""LL-HLS over HTTP: ``GET /hls/{room}/index.m3u8`` (with blocking reload) and the init
segments, parts and segments it lists. Any process answers (the output is in Redis); every
answer may be cached by a shared cache and read from any origin (CORS)."""

from __future__ import annotations

import re

from aiohttp import web

from ..hls import (
    BadHlsRequest,
    HlsReader,
    HlsStore,
    NoReplay,
    Recorder,
    ReplayDesk,
    StreamNotFound,
    parse_name,
)
from ..metrics import Counter, Metrics
from ..payload import ID_PATTERN
from ._base import json_response

__all__ = ["HlsRoutes", "ReplayRoutes"]

# Media names are unique for the life of a stream (docs/protocol.md): cache them for as long
# as they can be asked for.
MEDIA_CACHE = "public, max-age=60, immutable"
# A blocking reload's answer is right for its URL for good; a cache may keep it a while.
BLOCKING_CACHE = "public, max-age=6"
# A plain reload (a player's first, or one without blocking support) may be a second old: the
# player then asks for the next part with a blocking reload. One second lets a cache answer a
# crowd's first loads with one origin request per second.
PLAYLIST_CACHE = "public, max-age=1"
CORS = {"Access-Control-Allow-Origin": "*"}
M3U8 = "application/vnd.apple.mpegurl"
# Far beyond any stream's numbers; and no query longer than this is a number we accept.
MAX_NUMBER_DIGITS = 9


def _number(request: web.Request, name: str) -> int | None:
    raw = request.query.get(name)
    if raw is None:
        return None
    if not raw.isascii() or not raw.isdigit() or len(raw) > MAX_NUMBER_DIGITS:
        raise BadHlsRequest(f"{name} must be a non-negative integer, got {raw[:20]!r}")
    return int(raw)


def _room(request: web.Request) -> str:
    room_id = request.match_info["room"]
    if not ID_PATTERN.fullmatch(room_id) or room_id in (".", ".."):
        raise BadHlsRequest("not a room id")
    return room_id


class HlsRoutes:
    def __init__(self, reader: HlsReader, store: HlsStore, metrics: Metrics, *,
                 block_timeout_s: float = 6.0) -> None:
        self.reader = reader
        self.store = store
        # What reaches the origin, by kind: behind a cache, about one request per part.
        self.requests = metrics.add(Counter(
            "liveroom_hls_requests_total",
            "LL-HLS requests that reached this process, by kind (playlist, blocking, init, "
            "part, seg).", ("kind",)))
        # RFC 8216bis 6.2.5.2: a server holds a blocking reload up to three target durations.
        self.block_timeout_s = block_timeout_s

    def add_to(self, router: web.UrlDispatcher) -> None:
        router.add_get("/hls/{room}/index.m3u8", self.playlist)
        router.add_get("/hls/{room}/{name}", self.media)

    async def playlist(self, request: web.Request) -> web.Response:
        """The room's live media playlist. With ``_HLS_msn`` (and ``_HLS_part``) it is held
        until that segment (part) exists, up to ``block_timeout_s`` (then 503)."""
        room_id = _room(request)
        msn = _number(request, "_HLS_msn")
        index = _number(request, "_HLS_part")
        if index is not None and msn is None:
            raise BadHlsRequest("_HLS_part needs _HLS_msn")
        self.requests.inc("playlist" if msn is None else "blocking")
        if msn is None:
            snapshot = await self.reader.current(room_id)
            cache = PLAYLIST_CACHE
        else:
            found = await self.reader.wait_for(room_id, msn, index, self.block_timeout_s)
            if found is None:
                raise web.HTTPServiceUnavailable(
                    text="the stream has not reached that part", headers=CORS)
            snapshot = found
            cache = BLOCKING_CACHE
        return web.Response(text=snapshot.m3u8, content_type=M3U8,
                            headers={"Cache-Control": cache, **CORS})

    async def media(self, request: web.Request) -> web.Response:
        """An init segment, part or segment. The part the playlist hints at next
        (``EXT-X-PRELOAD-HINT``) is held until it exists, like a blocking reload."""
        room_id = _room(request)
        kind, stream_id, numbers = parse_name(request.match_info["name"])
        self.requests.inc(kind)
        snapshot = await self.reader.current(room_id)
        if snapshot.stream_id != stream_id:
            raise StreamNotFound(room_id, request.match_info["name"])
        if kind == "part" and not snapshot.progress.has(numbers[0], numbers[1]):
            if snapshot.progress.too_far(numbers[0]):
                raise StreamNotFound(room_id, request.match_info["name"])
            await self.reader.wait_for(room_id, numbers[0], numbers[1], self.block_timeout_s)
        data = await self.store.file(room_id, kind, stream_id, numbers)
        if data is None:
            raise StreamNotFound(room_id, request.match_info["name"])
        return web.Response(body=data, content_type="video/mp4",
                            headers={"Cache-Control": MEDIA_CACHE, **CORS})


# A replay's files: its playlist, and the init segments and segments the packager named.
REPLAY_NAME = re.compile(
    r"index\.m3u8|init-[0-9a-f]{8}-\d{1,6}\.mp4|seg-[0-9a-f]{8}-\d{1,9}\.m4s")
REPLAY_CACHE = {"index": "public, max-age=60", "media": "public, max-age=86400, immutable"}


class ReplayRoutes:
    """``GET /api/rooms/{id}/replay`` and the replay's files under ``/replay/{room}/``."""

    def __init__(self, desk: ReplayDesk, recorder: Recorder) -> None:
        self.desk = desk
        self.recorder = recorder

    def add_to(self, router: web.UrlDispatcher) -> None:
        router.add_get("/api/rooms/{id}/replay", self.describe)
        router.add_get("/replay/{room}/{name}", self.file)

    async def describe(self, request: web.Request) -> web.Response:
        """The room's replay: its playlist, length, and the sales run during the show as
        chapters (``at_ms`` into the replay)."""
        response = json_response(await self.desk.describe(request.match_info["id"]))
        response.headers["Cache-Control"] = "no-cache"
        return response

    async def file(self, request: web.Request) -> web.StreamResponse:
        room_id = _room(request)
        name = request.match_info["name"]
        if not REPLAY_NAME.fullmatch(name):
            raise BadHlsRequest(f"{name[:80]!r} is not a replay file name")
        if self.recorder.replay(room_id) is None:
            raise NoReplay(room_id)
        path = self.recorder.folder(room_id) / name
        if not path.is_file():
            raise StreamNotFound(room_id, name)
        cache = REPLAY_CACHE["index" if name == "index.m3u8" else "media"]
        content_type = M3U8 if name.endswith(".m3u8") else "video/mp4"
        return web.FileResponse(path, headers={
            "Cache-Control": cache, "Content-Type": content_type, **CORS})
