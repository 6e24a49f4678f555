"""Failure modes: a packager whose process died, and an anchor who publishes again. The next
packager resumes the numbering after a discontinuity; players keep their playlist."""

from __future__ import annotations

import asyncio

from liveroom.hls import Playlist, Segmenter
from tests.media.conftest import start_broadcaster
from tests.server_harness import LiveServer

from .h264 import encode

ROOM = "resumeroom"


async def playlist_with(server: LiveServer, needle: str) -> str:
    for _ in range(600):  # bounds failure only
        async with server.http.get(f"{server.url}/hls/{ROOM}/index.m3u8") as response:
            text = await response.text()
            if response.status == 200 and needle in text:
                return text
        await asyncio.sleep(0.1)
    raise AssertionError(f"{needle!r} never in the playlist")


async def test_the_next_publish_resumes_a_dead_packagers_stream(server: LiveServer) -> None:
    # What a process that died mid-segment leaves in Redis: segment 0, and parts of segment 1.
    dead = Playlist("deadbeef", part_target_ms=300, target_duration_s=2)
    segmenter = Segmenter(dead)
    frames = encode(45, keyframes={30})
    for index, (data, keyframe) in enumerate(frames):
        outputs = segmenter.push(data, index * 3000, keyframe, 1_750_000_000_000 + index * 33)
        if outputs:
            await server.services.hls_store.write(ROOM, dead, outputs)
    open_parts = len(dead.segments[-1].parts)
    assert dead.open_segment is not None
    assert open_parts >= 1

    broadcaster = await start_broadcaster(server.services.media, ROOM, codec="video/H264")
    try:
        text = await playlist_with(server, "seg-deadbeef-2.m4s")
        lines = text.splitlines()
        # Same stream, numbering continued; segment 1 closed from the parts the dead one wrote.
        assert "seg-deadbeef-1.m4s" in lines
        at = lines.index("#EXT-X-DISCONTINUITY")
        assert lines[at + 1] == '#EXT-X-MAP:URI="init-deadbeef-1.mp4"'
        assert lines[at - 1] == "seg-deadbeef-1.m4s"
        parts = b""
        for index in range(open_parts):
            async with server.http.get(
                    f"{server.url}/hls/{ROOM}/part-deadbeef-1-{index}.m4s") as response:
                parts += await response.read()
        async with server.http.get(f"{server.url}/hls/{ROOM}/seg-deadbeef-1.m4s") as response:
            assert response.status == 200
            assert await response.read() == parts

        # The anchor publishes again (a reconnect): another discontinuity, the same stream.
        again = await start_broadcaster(server.services.media, ROOM, codec="video/H264")
        await broadcaster.pc.close()
        broadcaster = again
        text = await playlist_with(server, 'init-deadbeef-2.mp4')
        assert text.count("#EXT-X-DISCONTINUITY\n") == 2
    finally:
        await broadcaster.pc.close()
        await server.services.media.stop(ROOM)
