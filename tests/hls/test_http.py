"""LL-HLS over HTTP end to end: an aiortc anchor publishes H.264 to one server; a second server
sharing the Redis serves the playlist (blocking reload), init segment and parts, which decode."""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import av
import pytest

from tests.media.conftest import Broadcaster, start_broadcaster
from tests.server_harness import LiveServer, live_server

ROOM = "hlsroom1"


@pytest.fixture
async def servers(redis: Any, redis_url: str, data_dir: Path
                  ) -> AsyncIterator[tuple[LiveServer, LiveServer]]:
    async with live_server(redis_url, data_dir) as owner, \
            live_server(redis_url, data_dir) as other:
        yield owner, other


async def get(server: LiveServer, path: str) -> tuple[int, dict[str, str], bytes]:
    async with server.http.get(server.url + path) as response:
        return response.status, dict(response.headers), await response.read()


def uris(m3u8: str, prefix: str) -> list[str]:
    found = []
    for line in m3u8.splitlines():
        if line.startswith(prefix):
            found.append(line.split('URI="')[1].split('"')[0])
    return found


async def wait_playlist(server: LiveServer, within_s: float = 60) -> str:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within_s
    while loop.time() < deadline:
        status, _, body = await get(server, f"/hls/{ROOM}/index.m3u8")
        if status == 200 and "#EXTINF" in body.decode():
            return body.decode()
        await asyncio.sleep(0.2)
    raise AssertionError("no complete segment in the playlist")


async def test_a_second_server_serves_the_live_playlist_and_parts(
        servers: tuple[LiveServer, LiveServer]) -> None:
    owner, other = servers
    broadcaster: Broadcaster = await start_broadcaster(
        owner.services.media, ROOM, codec="video/H264")
    try:
        m3u8 = await wait_playlist(other)
        assert "#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES" in m3u8
        assert "#EXT-X-PROGRAM-DATE-TIME:" in m3u8
        status, headers, _ = await get(other, f"/hls/{ROOM}/index.m3u8")
        assert headers["Access-Control-Allow-Origin"] == "*"
        assert headers["Content-Type"].startswith("application/vnd.apple.mpegurl")

        # Blocking reload: ask for the hinted part; the answer lists it.
        hint = uris(m3u8, "#EXT-X-PRELOAD-HINT")[0]
        _, _, msn, index = hint.removesuffix(".m4s").split("-")
        status, headers, body = await get(
            other, f"/hls/{ROOM}/index.m3u8?_HLS_msn={msn}&_HLS_part={index}")
        assert status == 200
        assert f'URI="{hint}"' in body.decode().split("#EXT-X-PRELOAD-HINT")[0]
        assert "max-age" in headers["Cache-Control"]

        # Init segment + every listed part of the newest segments decode as 320x240 video.
        m3u8 = body.decode()
        init_name = uris(m3u8, "#EXT-X-MAP")[-1]
        status, headers, init = await get(other, f"/hls/{ROOM}/{init_name}")
        assert status == 200
        assert headers["Cache-Control"] == "public, max-age=60, immutable"
        parts = uris(m3u8, "#EXT-X-PART:")
        first = next(i for i, line in enumerate(parts)
                     if f'URI="{line}",INDEPENDENT=YES' in m3u8)
        media = b""
        for name in parts[first:]:
            status, headers, data = await get(other, f"/hls/{ROOM}/{name}")
            assert status == 200, name
            assert headers["Cache-Control"] == "public, max-age=60, immutable"
            media += data
        container: Any = av.open(io.BytesIO(init + media), format="mp4")
        sizes = {(frame.width, frame.height) for frame in container.decode(video=0)}
        assert sizes == {(320, 240)}
        # The anchor's Opus is there as AAC, and decodes to about as much sound as picture.
        container = av.open(io.BytesIO(init + media), format="mp4")
        assert [s.codec_context.name for s in container.streams.audio] == ["aac"]
        sound_s = sum(frame.samples for frame in container.decode(audio=0)) / 48_000
        container = av.open(io.BytesIO(init + media), format="mp4")
        picture_s = sum(1 for _ in container.decode(video=0)) / 30
        assert abs(sound_s - picture_s) < 0.5, (sound_s, picture_s)

        # The hinted part is held until it exists, then served.
        hint = uris(m3u8, "#EXT-X-PRELOAD-HINT")[0]
        status, _, data = await get(other, f"/hls/{ROOM}/{hint}")
        assert status == 200
        assert data[4:8] == b"moof"
    finally:
        await broadcaster.pc.close()
        await owner.services.media.stop(ROOM)
    # The broadcast ended: the room's stream is gone on every server.
    for server in (owner, other):
        for _ in range(300):  # bounds failure only
            status, _, body = await get(server, f"/hls/{ROOM}/index.m3u8")
            if status == 404:
                break
            await asyncio.sleep(0.1)
        assert status == 404
        assert b"stream_not_found" in body


async def test_bad_requests_get_clear_errors_and_nothing_else(
        servers: tuple[LiveServer, LiveServer]) -> None:
    owner, other = servers
    status, _, body = await get(other, "/hls/nosuchroom/index.m3u8")
    assert (status, b"stream_not_found" in body) == (404, True)
    broadcaster = await start_broadcaster(owner.services.media, ROOM, codec="video/H264")
    try:
        m3u8 = await wait_playlist(other)
        base = f"/hls/{ROOM}/index.m3u8"
        for query in ("?_HLS_msn=abc", "?_HLS_msn=-1", "?_HLS_msn=1e3", "?_HLS_part=1",
                      "?_HLS_msn=99999999999999", "?_HLS_msn=1&_HLS_part=x",
                      "?_HLS_msn=100000"):
            status, _, body = await get(other, base + query)
            assert status == 400, query
            assert b"bad_hls_request" in body, query
        sid = uris(m3u8, "#EXT-X-MAP")[0].split("-")[1]
        for name in ("..%2F..%2Fetc%2Fpasswd", "init-..-0.mp4", f"seg-{sid}-1.ts",
                     "index.m3u8.bak", f"part-{sid}-1-1.m4s%00"):
            status, _, _ = await get(other, f"/hls/{ROOM}/{name}")
            assert status in (400, 404), name
        status, _, _ = await get(other, f"/hls/{ROOM}/seg-ffffffff-0.m4s")
        assert status == 404
        status, _, _ = await get(other, f"/hls/{ROOM}/seg-{sid}-999999.m4s")
        assert status == 404
    finally:
        await broadcaster.pc.close()
        await owner.services.media.stop(ROOM)


async def test_a_vp8_anchor_is_transcoded_to_h264_once_for_the_room(
        servers: tuple[LiveServer, LiveServer]) -> None:
    owner, other = servers
    broadcaster = await start_broadcaster(owner.services.media, ROOM)  # VP8
    try:
        assert owner.services.media.health(ROOM)["codec"] == "video/VP8"
        m3u8 = await wait_playlist(other)
        for _ in range(300):
            if m3u8.count("#EXTINF") >= 3:
                break
            await asyncio.sleep(0.1)
            m3u8 = (await get(other, f"/hls/{ROOM}/index.m3u8"))[2].decode()
        init_name = uris(m3u8, "#EXT-X-MAP")[-1]
        _, _, init = await get(other, f"/hls/{ROOM}/{init_name}")
        segment = next(line for line in m3u8.splitlines() if line.startswith("seg-"))
        status, _, media = await get(other, f"/hls/{ROOM}/{segment}")
        assert status == 200
        container: Any = av.open(io.BytesIO(init + media), format="mp4")
        assert container.streams.video[0].codec_context.name == "h264"
        assert {(f.width, f.height) for f in container.decode(video=0)} == {(320, 240)}
        packager = owner.services.hls_packagers.packager(ROOM)
        assert packager is not None
        assert packager.transcoder is not None
        # The packager's keyframes make ~1 s segments whatever the anchor's keyframe interval.
        durations = [float(line.split(":")[1].rstrip(","))
                     for line in m3u8.splitlines() if line.startswith("#EXTINF")]
        assert len(durations) >= 3
        assert all(0.9 <= d <= 1.1 for d in durations[1:]), durations
    finally:
        await broadcaster.pc.close()
        await owner.services.media.stop(ROOM)
