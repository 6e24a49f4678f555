"""A synthetic aiortc broadcaster and aiortc viewers, talking to MediaService in-process."""

from __future__ import annotations

import asyncio
import fractions
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import av
import pytest
from aiortc import (
    RTCConfiguration,
    RTCPeerConnection,
    RTCRtpSender,
    RTCSessionDescription,
)
from aiortc.mediastreams import AudioStreamTrack, MediaStreamError, VideoStreamTrack

from liveroom.media import MediaService

VIDEO_CLOCK = 90_000


class PatternVideoTrack(VideoStreamTrack):
    """30 fps frames whose luma changes every frame, so the encoder emits real delta frames."""

    def __init__(self, width: int = 320, height: int = 240) -> None:
        super().__init__()
        self._width = width
        self._height = height
        self._index = 0

    async def recv(self) -> av.VideoFrame:
        pts, time_base = await self.next_timestamp()
        frame = av.VideoFrame(self._width, self._height, "yuv420p")
        shade = (self._index * 7) % 200 + 16
        row = bytes((shade + x) % 256 for x in range(self._width))
        frame.planes[0].update(row * self._height)
        chroma = bytes([128]) * (frame.planes[1].buffer_size)
        frame.planes[1].update(chroma)
        frame.planes[2].update(chroma)
        frame.pts = pts
        frame.time_base = time_base
        self._index += 1
        return frame


def new_pc() -> RTCPeerConnection:
    return RTCPeerConnection(RTCConfiguration(iceServers=[]))


@dataclass
class Broadcaster:
    pc: RTCPeerConnection
    video: PatternVideoTrack


async def start_broadcaster(
    service: MediaService, room_id: str, publisher_id: str = "anchor", codec: str = "video/VP8"
) -> Broadcaster:
    pc = new_pc()
    video = PatternVideoTrack()
    video_transceiver = pc.addTransceiver(video, direction="sendonly")
    video_transceiver.setCodecPreferences(
        [c for c in RTCRtpSender.getCapabilities("video").codecs if c.mimeType == codec]
    )
    pc.addTransceiver(AudioStreamTrack(), direction="sendonly")
    await pc.setLocalDescription(await pc.createOffer())
    sdp, type_ = await service.publish(room_id, publisher_id, pc.localDescription.sdp, "offer")
    await pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type=type_))
    return Broadcaster(pc, video)


@dataclass
class Viewer:
    pc: RTCPeerConnection
    video_frames: list[av.VideoFrame] = field(default_factory=list)
    video_count: int = 0
    audio_frames: int = 0
    first_video_at: float | None = None
    connected_at: float | None = None
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    async def close(self) -> None:
        await self.pc.close()
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)


async def _consume_video(viewer: Viewer, track: Any) -> None:
    try:
        while True:
            frame = await track.recv()
            if viewer.first_video_at is None:
                viewer.first_video_at = time.monotonic()
            viewer.video_frames.append(frame)
            del viewer.video_frames[:-5]  # keep the last few: decoded frames are big
            viewer.video_count += 1
    except MediaStreamError:
        pass


async def _consume_audio(viewer: Viewer, track: Any) -> None:
    try:
        while True:
            await track.recv()
            viewer.audio_frames += 1
    except MediaStreamError:
        pass


async def start_viewer(
    service: MediaService, room_id: str, viewer_id: str, *, audio: bool = True
) -> Viewer:
    pc = new_pc()
    viewer = Viewer(pc)
    pc.addTransceiver("video", direction="recvonly")
    if audio:
        pc.addTransceiver("audio", direction="recvonly")

    @pc.on("track")
    def on_track(track: Any) -> None:
        consume = _consume_video if track.kind == "video" else _consume_audio
        viewer.tasks.append(asyncio.get_running_loop().create_task(consume(viewer, track)))

    @pc.on("connectionstatechange")
    def on_state() -> None:
        if pc.connectionState == "connected" and viewer.connected_at is None:
            viewer.connected_at = time.monotonic()

    await pc.setLocalDescription(await pc.createOffer())
    sdp, type_ = await service.watch(room_id, viewer_id, pc.localDescription.sdp, "offer")
    await pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type=type_))
    return viewer


# How long a test waits for media to flow, a frame to arrive or a connection to close before it
# fails: generous for a busy machine (aiortc encodes and decodes in Python), and still well
# under what the behaviours under test stand against (ICE consent expiry after 30 s, aiortc's
# VP8 keyframe every 3000 frames, 100 s), so "at once" is still told apart from those.
PATIENT_S = 15.0


async def wait_until(predicate: Any, within_s: float, message: str) -> None:
    deadline = time.monotonic() + within_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within_s}s waiting for: {message}")
        await asyncio.sleep(0.02)


@pytest.fixture
async def media() -> AsyncIterator[MediaService]:
    service = MediaService(ice_servers=[])
    yield service
    await service.close()


__all__ = [
    "VIDEO_CLOCK",
    "Broadcaster",
    "PatternVideoTrack",
    "Viewer",
    "fractions",
    "start_broadcaster",
    "start_viewer",
    "wait_until",
]
