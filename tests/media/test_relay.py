"""End to end: an aiortc broadcaster and aiortc viewers through MediaService on loopback."""

from __future__ import annotations

import asyncio
import time

import pytest
from aiortc import RTCRtpReceiver
from aiortc.mediastreams import MediaStreamError
from aiortc.sdp import SessionDescription

from liveroom.media import (
    InvalidOffer,
    MediaService,
    NotBroadcasting,
    NotLive,
    SeatsFull,
    UnsupportedCodec,
)
from liveroom.media._aiortc import negotiated_codec

from .conftest import PATIENT_S, Viewer, new_pc, start_broadcaster, start_viewer, wait_until


def video_count(viewer: Viewer) -> int:
    return viewer.video_count


async def test_every_viewer_decodes_the_broadcast(media: MediaService) -> None:
    broadcaster = await start_broadcaster(media, "r_room1")
    viewers = [await start_viewer(media, "r_room1", f"u_viewer{i}") for i in range(3)]
    try:
        await wait_until(
            lambda: all(video_count(v) >= 30 and v.audio_frames >= 20 for v in viewers),
            8,
            message="30 decoded video frames and 20 audio frames per viewer",
        )
        for viewer in viewers:
            frames = viewer.video_frames
            assert (frames[-1].width, frames[-1].height) == (320, 240)
            pts = [frame.pts for frame in frames if frame.pts is not None]
            assert len(pts) == len(frames)
            assert pts == sorted(pts)
            assert len(set(pts)) == len(pts)
        assert sorted(media.viewer_ids("r_room1")) == ["u_viewer0", "u_viewer1", "u_viewer2"]
    finally:
        for viewer in viewers:
            await viewer.close()
        await broadcaster.pc.close()


async def test_late_viewer_gets_its_first_frame_without_waiting_for_a_keyframe(
        media: MediaService) -> None:
    broadcaster = await start_broadcaster(media, "r_room2")
    early = await start_viewer(media, "r_room2", "u_early")
    try:
        # aiortc's VP8 encoder only makes a keyframe every 3000 frames unless asked: without
        # the relay's keyframe request the late viewer would wait 100 s.
        await wait_until(lambda: video_count(early) >= 45, PATIENT_S, "early viewer running")
        late = await start_viewer(media, "r_room2", "u_late", audio=False)
        try:
            await wait_until(lambda: late.first_video_at is not None, PATIENT_S,
                             "late viewer frame")
            assert late.connected_at is not None
            assert late.first_video_at is not None
            # Asked for at once, not the encoder's next keyframe 100 s on (a quiet machine takes
            # well under a second; a busy one only longer).
            assert late.first_video_at - late.connected_at < PATIENT_S
            await wait_until(lambda: video_count(late) >= 10, PATIENT_S,
                             "late viewer keeps decoding")
        finally:
            await late.close()
    finally:
        await early.close()
        await broadcaster.pc.close()


async def test_h264_broadcast_is_forwarded_as_h264(media: MediaService) -> None:
    broadcaster = await start_broadcaster(media, "r_room3", codec="video/H264")
    viewer = await start_viewer(media, "r_room3", "u_h264")
    try:
        await wait_until(lambda: video_count(viewer) >= 15, PATIENT_S, "H.264 frames decoded")
        assert media.health("r_room3")["codec"] == "video/H264"
        # The viewer offered VP8 first (aiortc's default order); the relay's answer pins it to
        # the broadcaster's H.264, so that is what the viewer negotiated and decodes.
        offered = [line for line in viewer.pc.localDescription.sdp.splitlines()
                   if line.startswith("a=rtpmap:")]
        assert "VP8/90000" in offered[0]
        (video,) = [t for t in viewer.pc.getTransceivers() if t.kind == "video"]
        codec = negotiated_codec(video)
        assert codec is not None
        assert codec.mimeType == "video/H264"
        answered = SessionDescription.parse(viewer.pc.remoteDescription.sdp)
        (video_media,) = [m for m in answered.media if m.kind == "video"]
        assert {c.mimeType for c in video_media.rtp.codecs} <= {"video/H264", "video/rtx"}
    finally:
        await viewer.close()
        await broadcaster.pc.close()


async def test_viewer_that_cannot_receive_the_codec_is_refused(media: MediaService) -> None:
    broadcaster = await start_broadcaster(media, "r_room4", codec="video/H264")
    pc = new_pc()
    try:
        transceiver = pc.addTransceiver("video", direction="recvonly")
        capabilities = RTCRtpReceiver.getCapabilities("video")
        assert capabilities is not None
        transceiver.setCodecPreferences(
            [c for c in capabilities.codecs if c.mimeType == "video/VP8"]
        )
        await pc.setLocalDescription(await pc.createOffer())
        with pytest.raises(UnsupportedCodec) as caught:
            await media.watch("r_room4", "u_vp8only", pc.localDescription.sdp, "offer")
        assert caught.value.mime_type == "video/H264"
        assert media.viewer_ids("r_room4") == []
        assert media.peer_connection_count == 1  # only the broadcaster's
    finally:
        await pc.close()
        await broadcaster.pc.close()


async def test_health_follows_the_broadcast(media: MediaService) -> None:
    assert media.health("r_room5")["live"] is False
    broadcaster = await start_broadcaster(media, "r_room5")
    viewer = await start_viewer(media, "r_room5", "u_watch")
    try:
        await wait_until(lambda: video_count(viewer) >= 60, PATIENT_S, "two seconds of video")
        health = media.health("r_room5")
        assert health["live"] is True
        # Frames as they arrived over the last window of wall time: about the sender's 30 a
        # second on a quiet machine, bursts of catch-up on a busy one (44 seen). The rate
        # arithmetic is checked on a driven clock in test_units.py; here, that it is measured.
        assert health["fps"] > 5
        assert health["bitrate_kbps"] > 20
        assert health["viewers"] == 1
        assert health["codec"] == "video/VP8"
        assert health["audio_codec"] == "audio/opus"
        await media.stop("r_room5")
        assert media.health("r_room5") == {
            "live": False,
            "bitrate_kbps": 0,
            "fps": 0.0,
            "viewers": 0,
            "seats": None,
            "codec": None,
            "audio_codec": None,
            "since_ms": None,
        }
    finally:
        await viewer.close()
        await broadcaster.pc.close()


async def test_stop_closes_every_peer_connection_at_once(media: MediaService) -> None:
    changes: list[str] = []
    service = MediaService(ice_servers=[], on_change=changes.append)
    broadcaster = await start_broadcaster(service, "r_room6")
    viewers = [await start_viewer(service, "r_room6", f"u_v{i}") for i in range(2)]
    try:
        await wait_until(lambda: all(video_count(v) >= 5 for v in viewers), 8, "media flowing")
        started = time.monotonic()
        assert await service.stop("r_room6") is True
        # At once: not after ICE consent expiry (30 s), however busy the machine is.
        assert time.monotonic() - started < PATIENT_S
        assert service.peer_connection_count == 0
        assert service.viewer_ids("r_room6") == []
        # The viewers hear RTCP BYE and their tracks end, long before ICE consent expiry.
        await wait_until(
            lambda: all(t.done() for v in viewers for t in v.tasks), 2, "viewer tracks ended"
        )
        with pytest.raises(NotLive):
            await service.watch("r_room6", "u_v9", "v=0\r\n", "offer")
        assert changes.count("r_room6") >= 3  # published, first frame, stopped
    finally:
        for viewer in viewers:
            await viewer.close()
        await broadcaster.pc.close()
        await service.close()


async def test_close_peer_closes_only_that_peer(media: MediaService) -> None:
    broadcaster = await start_broadcaster(media, "r_room7", publisher_id="u_anchor")
    stays = await start_viewer(media, "r_room7", "u_stays")
    leaves = await start_viewer(media, "r_room7", "u_leaves")
    try:
        await wait_until(lambda: video_count(stays) >= 5 and video_count(leaves) >= 5, PATIENT_S,
                         "both")
        assert await media.close_peer("u_leaves") == 1
        assert media.viewer_ids("r_room7") == ["u_stays"]
        assert media.peer_connection_count == 2
        before = video_count(stays)
        await wait_until(lambda: video_count(stays) >= before + 15, PATIENT_S,
                         "other viewer continues")
        assert await media.close_peer("u_anchor") == 2
        assert media.peer_connection_count == 0
        assert media.health("r_room7")["live"] is False
        assert await media.close_peer("u_nobody") == 0
    finally:
        await stays.close()
        await leaves.close()
        await broadcaster.pc.close()


async def test_rewatch_and_republish_replace_cleanly(media: MediaService) -> None:
    first = await start_broadcaster(media, "r_room8")
    old = await start_viewer(media, "r_room8", "u_same")
    await wait_until(lambda: video_count(old) >= 5, PATIENT_S, "the first connection plays")
    new = await start_viewer(media, "r_room8", "u_same")
    second = None
    try:
        assert media.viewer_ids("r_room8") == ["u_same"]
        assert media.peer_connection_count == 2
        await wait_until(lambda: video_count(new) >= 5, PATIENT_S, "the new connection plays")
        await wait_until(lambda: all(t.done() for t in old.tasks), 2, "the old one ended")

        second = await start_broadcaster(media, "r_room8", codec="video/H264")
        assert media.peer_connection_count == 1  # old broadcast and its viewer are gone
        assert media.health("r_room8")["codec"] == "video/H264"
        again = await start_viewer(media, "r_room8", "u_same")
        try:
            await wait_until(lambda: video_count(again) >= 5, PATIENT_S, "plays the new broadcast")
        finally:
            await again.close()
    finally:
        await old.close()
        await new.close()
        await first.pc.close()
        if second is not None:
            await second.pc.close()


@pytest.mark.parametrize(
    ("sdp", "type_"),
    [
        ("v=0\r\n", "answer"),
        ("", "offer"),
        (None, "offer"),
        ("hello", "offer"),
        ("v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\nm=video\r\n", "offer"),
    ],
)
async def test_bad_offers_are_refused_and_change_nothing(
    media: MediaService, sdp: object, type_: str
) -> None:
    with pytest.raises(InvalidOffer):
        await media.publish("r_room9", "u_anchor", sdp, type_)  # type: ignore[arg-type]
    assert media.peer_connection_count == 0
    assert media.health("r_room9")["live"] is False


async def test_watch_without_broadcast_and_receive_only_publish(media: MediaService) -> None:
    pc = new_pc()
    try:
        pc.addTransceiver("video", direction="recvonly")
        await pc.setLocalDescription(await pc.createOffer())
        with pytest.raises(NotLive):
            await media.watch("r_none", "u_x", pc.localDescription.sdp, "offer")
        with pytest.raises(NotBroadcasting):
            await media.publish("r_none", "u_x", pc.localDescription.sdp, "offer")
        assert media.peer_connection_count == 0
        with pytest.raises(NotLive):
            media.request_keyframe("r_none")
    finally:
        await pc.close()


def _media_tasks() -> set[asyncio.Task[object]]:
    def is_media(task: asyncio.Task[object]) -> bool:
        code = getattr(task.get_coro(), "cr_code", None)
        filename = code.co_filename if code is not None else ""
        return any(part in filename for part in ("aiortc", "aioice", "liveroom/media"))

    return {t for t in asyncio.all_tasks() if not t.done() and is_media(t)}


async def test_close_leaves_no_task_or_connection_behind() -> None:
    before = _media_tasks()
    service = MediaService(ice_servers=[])
    broadcaster = await start_broadcaster(service, "r_room10")
    viewer = await start_viewer(service, "r_room10", "u_v")
    await wait_until(lambda: video_count(viewer) >= 5, PATIENT_S, "media flowing")
    await service.close()
    assert service.peer_connection_count == 0
    await viewer.close()
    await broadcaster.pc.close()
    # Only tasks running aiortc or relay code count: the session's event loop is shared with
    # other tests whose unrelated background tasks may be winding down meanwhile. Tasks that
    # are ending take a few turns of the loop to finish (more on a busy machine); a task left
    # running never does.
    await wait_until(lambda: not _media_tasks() - before, PATIENT_S, "no media task left")
    with pytest.raises(MediaStreamError):
        await viewer.pc.getTransceivers()[0].receiver.track.recv()


async def test_viewers_beyond_the_rooms_webrtc_seats_are_sent_to_hls() -> None:
    media = MediaService(ice_servers=[], seats=1)
    broadcaster = await start_broadcaster(media, "r_seats")
    first = await start_viewer(media, "r_seats", "u_first")
    try:
        with pytest.raises(SeatsFull) as refused:
            await start_viewer(media, "r_seats", "u_second")
        assert (refused.value.code, refused.value.seats) == ("seats_full", 1)
        assert media.viewer_ids("r_seats") == ["u_first"]
        assert media.health("r_seats")["seats"] == 1
        # The seated viewer may reconnect: its new connection replaces its old one.
        again = await start_viewer(media, "r_seats", "u_first")
        await again.close()
    finally:
        await first.close()
        await broadcaster.pc.close()
        await media.close()
