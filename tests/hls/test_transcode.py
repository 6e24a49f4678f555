"""A VP8-only anchor: decoded and encoded to H.264 once per room, keyframes where the segments
must start, so segments are exactly the packager's target."""

from __future__ import annotations

import io
from typing import Any

import av

from liveroom.hls import InitOut, Playlist, Segmenter, SegmentOut, Vp8ToH264
from tests.clock import Clock

from .h264 import encode_vp8


def test_vp8_becomes_h264_segments_of_the_target_length() -> None:
    vp8 = encode_vp8(95)
    assert [keyframe for _, keyframe in vp8].count(True) == 1
    clock = Clock()
    playlist = Playlist("0123abcd", part_target_ms=300, target_duration_s=2)
    segmenter = Segmenter(playlist)
    transcoder = Vp8ToH264()
    outputs: list[Any] = []
    for index, (data, _) in enumerate(vp8):
        for unit, pts, keyframe in transcoder.push(data, index * 3000, segmenter.keyframe_due):
            outputs += segmenter.push(unit, pts, keyframe, clock())
        clock.advance(33)
    outputs += segmenter.finish()
    assert not transcoder.needs_source_keyframe
    # Keyframes made exactly where segments should end: 1 s, 30 frames each.
    assert [s.duration_ms for s in playlist.segments][:3] == [1000, 1000, 1000]
    assert all(s.parts[0].independent for s in playlist.segments)
    init = next(out for out in outputs if isinstance(out, InitOut))
    media = b"".join(out.data for out in outputs if isinstance(out, SegmentOut))
    container: Any = av.open(io.BytesIO(init.data + media), format="mp4")
    assert container.streams.video[0].codec_context.name == "h264"
    assert [(f.width, f.height) for f in container.decode(video=0)] == [(320, 240)] * 95


def test_frames_before_the_first_vp8_keyframe_ask_the_anchor_for_one() -> None:
    vp8 = encode_vp8(10)
    transcoder = Vp8ToH264()
    for data, _ in vp8[1:]:
        assert transcoder.push(data, 0, False) == []
    assert transcoder.needs_source_keyframe
