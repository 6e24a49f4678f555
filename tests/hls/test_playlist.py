"""The LL-HLS playlist model: tags, msn/part arithmetic, the window, discontinuities."""

from __future__ import annotations

import pytest

from liveroom.hls import Playlist, Progress
from tests.clock import T0, Clock


def build(clock: Clock, segments: int, parts: int = 3, part_ms: int = 300) -> Playlist:
    playlist = Playlist("0123abcd", part_target_ms=300, target_duration_s=2, window=4)
    for _ in range(segments):
        playlist.start_segment(clock())
        for index in range(parts):
            playlist.add_part(part_ms, independent=index == 0)
            clock.advance(part_ms)
        playlist.end_segment()
    return playlist


def test_playlist_has_the_ll_hls_tags_and_numbers() -> None:
    clock = Clock()
    playlist = build(clock, 2)
    playlist.start_segment(clock())
    playlist.add_part(300, independent=True)
    text = playlist.render()
    lines = text.splitlines()
    assert lines[:7] == [
        "#EXTM3U", "#EXT-X-VERSION:9", "#EXT-X-TARGETDURATION:2",
        "#EXT-X-PART-INF:PART-TARGET=0.300",
        "#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK=0.900",
        "#EXT-X-MEDIA-SEQUENCE:0", "#EXT-X-DISCONTINUITY-SEQUENCE:0"]
    assert lines[7] == '#EXT-X-MAP:URI="init-0123abcd-0.mp4"'
    # Every segment, the open one too, has its wall-clock time.
    assert [line for line in lines if line.startswith("#EXT-X-PROGRAM-DATE-TIME")] == [
        "#EXT-X-PROGRAM-DATE-TIME:2025-06-15T15:06:40.000Z",
        "#EXT-X-PROGRAM-DATE-TIME:2025-06-15T15:06:40.900Z",
        "#EXT-X-PROGRAM-DATE-TIME:2025-06-15T15:06:41.800Z"]
    assert lines.count("#EXTINF:0.900,") == 2
    assert "seg-0123abcd-0.m4s" in lines
    assert "seg-0123abcd-1.m4s" in lines
    assert '#EXT-X-PART:DURATION=0.300,URI="part-0123abcd-2-0.m4s",INDEPENDENT=YES' in lines
    assert '#EXT-X-PART:DURATION=0.300,URI="part-0123abcd-0-1.m4s"' in lines
    assert lines[-1] == '#EXT-X-PRELOAD-HINT:TYPE=PART,URI="part-0123abcd-2-1.m4s"'
    assert playlist.last_part == (2, 0)
    assert playlist.next_part == (2, 1)
    assert T0 == 1_750_000_000_000


def test_after_a_closed_segment_the_hint_is_the_next_segments_first_part() -> None:
    playlist = build(Clock(), 1)
    assert playlist.next_part == (1, 0)
    assert playlist.render().splitlines()[-1].endswith('URI="part-0123abcd-1-0.m4s"')


def test_blocking_reload_answers_only_when_the_part_exists() -> None:
    clock = Clock()
    playlist = build(clock, 2)
    playlist.start_segment(clock())
    playlist.add_part(300, independent=True)
    progress = Progress.decode(playlist.progress.encode())
    assert progress == playlist.progress
    assert progress.has(1, None)
    assert not progress.has(2, None)
    assert progress.has(2, 0)
    assert not progress.has(2, 1)
    assert progress.has(1, 7)  # past the end of a complete segment
    assert progress.has(0, 0)
    assert not progress.has(3, 0)
    assert not progress.too_far(4)
    assert progress.too_far(5)


def test_window_slides_and_old_parts_leave_the_playlist() -> None:
    playlist = build(Clock(), 7)
    text = playlist.render()
    assert "#EXT-X-MEDIA-SEQUENCE:3" in text
    assert "seg-0123abcd-2.m4s" not in text
    assert "seg-0123abcd-6.m4s" in text
    # Parts only for the last few segments.
    assert "part-0123abcd-3-0.m4s" not in text
    assert "part-0123abcd-4-0.m4s" in text


def test_discontinuity_after_a_resume_and_its_sequence_when_it_leaves() -> None:
    clock = Clock()
    playlist = build(clock, 2)
    carried = Playlist.from_json(playlist.to_json(), part_target_ms=300, target_duration_s=2,
                                 window=4)
    carried.discontinue(new_init=True)
    carried.start_segment(clock())
    carried.add_part(300, independent=True)
    carried.end_segment()
    lines = carried.render().splitlines()
    at = lines.index("#EXT-X-DISCONTINUITY")
    assert lines[at + 1] == '#EXT-X-MAP:URI="init-0123abcd-1.mp4"'
    assert lines[at + 2].startswith("#EXT-X-PROGRAM-DATE-TIME")
    assert "seg-0123abcd-2.m4s" in lines
    for _ in range(4):
        carried.start_segment(clock())
        carried.add_part(300, independent=True)
        carried.end_segment()
    assert "#EXT-X-DISCONTINUITY-SEQUENCE:1" in carried.render()
    assert "#EXT-X-DISCONTINUITY\n" not in carried.render()


def test_an_empty_segment_gives_its_number_back() -> None:
    playlist = build(Clock(), 1)
    playlist.start_segment(T0)
    assert playlist.end_segment() is None
    assert playlist.next_part == (1, 0)
    with pytest.raises(ValueError, match="no open segment"):
        playlist.add_part(300, independent=True)
