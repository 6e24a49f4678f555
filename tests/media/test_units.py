"""The relay's parts on their own: bounded viewer queues, keyframe detection and throttling,
health windows."""

from __future__ import annotations

import asyncio
from fractions import Fraction
from typing import cast

import av
import pytest
from aiortc.mediastreams import MediaStreamError
from av.video.codeccontext import VideoCodecContext

from liveroom.media._broadcast import KeyframeThrottle
from liveroom.media._frames import EncodedFrame, is_keyframe, make_frame
from liveroom.media._health import StreamMeter
from liveroom.media._tracks import ForwardingTrack

from .conftest import PATIENT_S, wait_until


def encode(codec_name: str, frames: int) -> list[tuple[bytes, bool]]:
    context = cast(VideoCodecContext, av.CodecContext.create(codec_name, "w"))
    context.width, context.height = 64, 48
    context.pix_fmt = "yuv420p"
    context.time_base = Fraction(1, 30)
    context.gop_size = 1000
    out: list[tuple[bytes, bool]] = []
    for index in range(frames):
        frame = av.VideoFrame(64, 48, "yuv420p")
        for plane in frame.planes:
            plane.update(bytes([(index * 9 + 40) % 256]) * plane.buffer_size)
        frame.pts = index
        out.extend((bytes(p), p.is_keyframe) for p in context.encode(frame))
    out.extend((bytes(p), p.is_keyframe) for p in context.encode(None))
    return out


@pytest.mark.parametrize(("codec", "mime"), [("libvpx", "video/VP8"), ("libx264", "video/H264")])
def test_keyframes_are_recognised_in_real_bitstreams(codec: str, mime: str) -> None:
    packets = encode(codec, 12)
    assert len(packets) >= 10
    # the encoder's own verdict, per packet, against ours from the bytes alone
    assert [is_keyframe(mime, data) for data, _ in packets] == [key for _, key in packets]
    assert packets[0][1] is True
    assert not all(key for _, key in packets)
    assert is_keyframe("audio/opus", b"\x01") is True
    assert is_keyframe("video/VP8", b"") is False


def frame(kind: str = "video", keyframe: bool = False, pts: int = 0) -> EncodedFrame:
    data = b"\x00" if keyframe else b"\x01"
    mime = "video/VP8" if kind == "video" else "audio/opus"
    return make_frame(kind, mime, 90_000 if kind == "video" else 48_000, pts, data + b"xx", 0)


class Recorder:
    def __init__(self) -> None:
        self.keyframe_requests = 0
        self.stopped: list[ForwardingTrack] = []

    def request(self) -> None:
        self.keyframe_requests += 1

    def track(self, kind: str, capacity: int = 4) -> ForwardingTrack:
        return ForwardingTrack(
            kind,
            capacity=capacity,
            request_keyframe=self.request,
            on_stop=self.stopped.append,
            keyframe_retry_s=0.05,
        )


async def test_video_track_starts_on_a_keyframe_and_asks_for_one() -> None:
    recorder = Recorder()
    track = recorder.track("video")
    track.push(frame(pts=1))
    assert track.queued == 0  # a delta frame is useless before the first keyframe
    reader = asyncio.ensure_future(track.recv())
    # asked once when the sender started reading, then again after each retry interval
    # (counted, not timed: a busy machine may take longer than two intervals to get there)
    await wait_until(lambda: recorder.keyframe_requests >= 2, PATIENT_S, "a retried request")
    track.push(frame(keyframe=True, pts=2))
    track.push(frame(pts=3))
    packet = await reader
    assert packet.pts == 2
    assert packet.time_base == Fraction(1, 90_000)
    assert (await track.recv()).pts == 3


async def test_a_viewer_that_stops_reading_never_queues_more_than_the_bound() -> None:
    recorder = Recorder()
    track = recorder.track("video", capacity=4)
    track.push(frame(keyframe=True, pts=0))
    for pts in range(1, 200):
        track.push(frame(pts=pts))
        assert track.queued <= 4
    assert track.awaiting_keyframe is True
    assert recorder.keyframe_requests == 1  # once per overflow, not once per dropped frame
    assert track.frames_dropped == 200  # the stale backlog too: it cannot be decoded
    assert track.queued == 0
    track.push(frame(keyframe=True, pts=500))
    assert (await track.recv()).pts == 500  # resumes cleanly on the next keyframe


async def test_audio_track_drops_the_oldest_frames() -> None:
    recorder = Recorder()
    track = recorder.track("audio", capacity=3)
    for pts in range(10):
        track.push(frame("audio", pts=pts))
    assert track.queued == 3
    assert [(await track.recv()).pts for _ in range(3)] == [7, 8, 9]
    assert recorder.keyframe_requests == 0


async def test_stopping_a_track_wakes_its_reader_and_detaches_it() -> None:
    recorder = Recorder()
    track = recorder.track("audio")
    reader = asyncio.ensure_future(track.recv())
    await asyncio.sleep(0)
    track.stop()
    with pytest.raises(MediaStreamError):
        await reader
    assert recorder.stopped == [track]
    track.push(frame("audio"))
    assert track.queued == 0


async def test_keyframe_throttle_coalesces_requests_without_losing_them() -> None:
    clock = [1_000]
    sent: list[int] = []
    tasks: list[asyncio.Task[None]] = []

    async def send() -> int:
        sent.append(clock[0])
        return 1

    throttle = KeyframeThrottle(
        send,
        interval_ms=50,
        now_ms=lambda: clock[0],
        spawn=lambda coro: tasks.append(asyncio.ensure_future(coro)),
    )
    throttle.request()
    throttle.request()
    throttle.request()
    await asyncio.sleep(0)
    assert sent == [1_000]
    clock[0] = 1_050
    await asyncio.sleep(0.08)
    assert sent == [1_000, 1_050]  # the deferred one went out at the end of the interval
    assert throttle.requests_sent == 2
    throttle.request()
    throttle.close()  # a pending deferred request dies with its owner
    await asyncio.gather(*tasks)


def test_stream_meter_measures_over_the_window() -> None:
    meter = StreamMeter(window_ms=1_000)
    assert meter.rates(0) == (0.0, 0.0)
    for i in range(60):  # 2 s of 30 fps, 1250-byte frames = 300 kbit/s
        meter.record(i * 1000 // 30, 1250, True)
    kbps, fps = meter.rates(2_000)
    assert fps == pytest.approx(30, abs=1.5)
    assert kbps == pytest.approx(300, abs=15)
    assert meter.rates(10_000) == (0.0, 0.0)
