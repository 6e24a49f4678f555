"""H.264 frames into LL-HLS parts and segments that a player decodes (PyAV reads them back)."""

from __future__ import annotations

import io
from typing import Any

import av

from liveroom.hls import InitOut, PartOut, Playlist, Segmenter, SegmentOut
from tests.clock import Clock

from .fmp4 import fragments, timeline_problems, timescales
from .h264 import encode, encode_opus

FRAME_TICKS = 3000  # 30 fps on the 90 kHz RTP clock


def run(frames: list[tuple[bytes, bool]], start_rtp: int = 1000
        ) -> tuple[Playlist, Segmenter, list[Any], list[bool]]:
    clock = Clock()
    playlist = Playlist("0123abcd", part_target_ms=300, target_duration_s=2)
    segmenter = Segmenter(playlist, segment_max_ms=2499)
    outputs: list[Any] = []
    wants: list[bool] = []
    for index, (data, keyframe) in enumerate(frames):
        rtp = (start_rtp + index * FRAME_TICKS) & 0xFFFFFFFF
        outputs += segmenter.push(data, rtp, keyframe, clock())
        wants.append(segmenter.wants_keyframe)
        clock.advance(33)
    outputs += segmenter.finish()
    return playlist, segmenter, outputs, wants


def run_with_sound(frames: list[tuple[bytes, bool]], opus: list[bytes], *,
                   sound_from: int = 0) -> tuple[Playlist, list[Any]]:
    """Video at 30 fps with the microphone's 20 ms frames between them (5 for every 3, from
    frame ``sound_from`` on), each stamped with its arrival on one clock, as the packager gets
    them from the relay."""
    clock = Clock()
    playlist = Playlist("0123abcd", part_target_ms=300, target_duration_s=2)
    segmenter = Segmenter(playlist, segment_max_ms=2499, audio=True)
    outputs: list[Any] = []
    sound = iter(opus)
    for index, (data, keyframe) in enumerate(frames):
        outputs += segmenter.push(data, 1000 + index * FRAME_TICKS, keyframe, clock())
        if index < sound_from:
            clock.advance(33)
            continue
        for _ in range((index + 1) * 5 // 3 - index * 5 // 3):
            packet = next(sound, None)
            if packet is not None:
                outputs += segmenter.push_audio(packet, clock())
        clock.advance(33)
    outputs += segmenter.finish()
    return playlist, outputs


def decoded(init: bytes, *media: bytes) -> list[tuple[int, int]]:
    container: Any = av.open(io.BytesIO(init + b"".join(media)), format="mp4")
    return [(frame.width, frame.height) for frame in container.decode(video=0)]


def test_parts_of_300_ms_and_segments_cut_at_keyframes() -> None:
    frames = encode(90, keyframes={30, 60})
    playlist, _, outputs, _ = run(frames)
    parts = [out for out in outputs if isinstance(out, PartOut)]
    segments = [out for out in outputs if isinstance(out, SegmentOut)]
    assert [segment.msn for segment in segments] == [0, 1, 2]
    assert [s.duration_ms for s in playlist.segments] == [1000, 1000, 1000]
    for listed in playlist.segments:
        assert [p.duration_ms for p in listed.parts] == [300, 300, 300, 100]
        assert [p.independent for p in listed.parts] == [True, False, False, False]
    # A segment is exactly its parts, and init + segments decode to every frame.
    for segment in segments:
        assert segment.data == b"".join(p.data for p in parts if p.msn == segment.msn)
    init = next(out for out in outputs if isinstance(out, InitOut))
    assert decoded(init.data, *(s.data for s in segments)) == [(320, 240)] * 90
    # A player joining at any segment decodes from its first frame.
    assert len(decoded(init.data, segments[1].data)) == 30


def test_waits_for_a_keyframe_and_asks_for_one_before_a_segment_may_end() -> None:
    frames = encode(60, keyframes={45})
    _, segmenter, outputs, wants = run(frames[5:])  # starts mid-GOP: no SPS yet
    assert segmenter.frames_dropped == 40
    assert all(wants[:40])  # no picture yet: ask at every frame
    assert isinstance(outputs[0], InitOut)
    # Then asked again only from ~550 ms into the segment, every 500 ms.
    later = [index for index, want in enumerate(wants[40:]) if want]
    assert later == []  # the stream ended 15 frames (500 ms) in


def test_a_publisher_ignoring_keyframe_requests_gets_capped_segments() -> None:
    frames = encode(120, keyframes=set())
    playlist, _, _, wants = run(frames)
    durations = [s.duration_ms for s in playlist.segments]
    assert all(d is not None and round(d / 1000) <= 2 for d in durations)
    assert durations[0] == 2467  # 74 frames: the longest that still rounds to 2 s
    assert playlist.segments[1].parts[0].independent is False
    assert sum(wants) >= 3  # asked again and again


def test_rtp_timestamp_wraparound_keeps_time_going_forward() -> None:
    frames = encode(40, keyframes={30})
    playlist, _, _, _ = run(frames, start_rtp=0xFFFFFFFF - 10 * FRAME_TICKS)
    assert [s.duration_ms for s in playlist.segments] == [1000, 333]


def test_a_new_picture_size_starts_a_new_init_after_a_discontinuity() -> None:
    frames = encode(30, keyframes=set()) + encode(30, keyframes=set(), width=640, height=480)
    playlist, _, outputs, _ = run(frames)
    inits = [out for out in outputs if isinstance(out, InitOut)]
    assert [init.gen for init in inits] == [0, 1]
    assert playlist.segments[1].discontinuity
    assert playlist.segments[1].gen == 1
    text = playlist.render()
    assert '#EXT-X-DISCONTINUITY\n#EXT-X-MAP:URI="init-0123abcd-1.mp4"' in text
    segments = [out for out in outputs if isinstance(out, SegmentOut)]
    assert decoded(inits[1].data, segments[1].data) == [(640, 480)] * 30


def test_with_sound_each_track_runs_on_through_parts_and_segments_from_their_keyframes(
        ) -> None:
    """What hls.js reads from the boxes: every sample has a duration, each track's next
    fragment starts where its previous one ended, a segment (and an independent part) starts
    with its keyframe and lasts what the playlist says. (Without these, hls.js parses a
    segment whose video samples all last 0 as "no media" and stops: the replay bug.)"""
    frames = encode(90, keyframes={30, 60})
    playlist, outputs = run_with_sound(frames, encode_opus(3.0))
    init = next(out.data for out in outputs if isinstance(out, InitOut))
    assert timescales(init) == {1: 90_000, 2: 48_000}
    parts = [out for out in outputs if isinstance(out, PartOut)]
    segments = [out for out in outputs if isinstance(out, SegmentOut)]
    assert timeline_problems([segment.data for segment in segments]) == []
    assert timeline_problems([part.data for part in parts]) == []
    assert [s.duration_ms for s in playlist.segments] == [1000, 1000, 1000]
    for listed, segment in zip(playlist.segments, segments, strict=True):
        video = [t for f in fragments(segment.data) for t in f.tracks if t.track_id == 1]
        assert video[0].is_sync(0)
        assert sum(len(track.durations) for track in video) == 30
        assert listed.duration_ms is not None
        assert sum(sum(track.durations) for track in video) == listed.duration_ms * 90
        for part, listed_part in zip([p for p in parts if p.msn == segment.msn], listed.parts,
                                     strict=True):
            part_video = [t for f in fragments(part.data) for t in f.tracks if t.track_id == 1]
            assert sum(sum(t.durations) for t in part_video) == listed_part.duration_ms * 90
            assert part_video[0].is_sync(0) == listed_part.independent
    sound = [t for s in segments for f in fragments(s.data) for t in f.tracks if t.track_id == 2]
    heard = sum(sum(track.durations) for track in sound) / 48_000
    assert abs(heard - 3.0) < 0.1
    container: Any = av.open(io.BytesIO(init + b"".join(s.data for s in segments)),
                             format="mp4")
    assert sum(1 for _ in container.decode(video=0)) == 90


def first_sound_s(outputs: list[Any]) -> float:
    for out in outputs:
        if isinstance(out, SegmentOut):
            for fragment in fragments(out.data):
                for track in fragment.tracks:
                    if track.track_id == 2:
                        return track.base_time / 48_000
    raise AssertionError("no sound")


def test_a_late_microphone_is_preceded_by_silence_up_to_two_seconds() -> None:
    frames = encode(120, keyframes={30, 60, 90})
    # Its first sound arrives 0.5 s after the first picture: silence before, from 0.
    _, outputs = run_with_sound(frames, encode_opus(3.5), sound_from=15)
    assert first_sound_s(outputs) == 0
    segments = [out.data for out in outputs if isinstance(out, SegmentOut)]
    assert timeline_problems(segments) == []
    # 3 s late: the sound starts where it lands (no 3 s of silence encoded at once).
    _, outputs = run_with_sound(frames, encode_opus(1.0), sound_from=90)
    assert 2.9 <= first_sound_s(outputs) <= 3.0
