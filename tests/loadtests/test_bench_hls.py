"""The LL-HLS benchmark's reading of playlists: the hinted part and parts published between two
reads (what its 'origin requests per part' divides by)."""

from __future__ import annotations

import pytest

from liveroom.hls import Playlist
from loadtests.bench_hls import _parts_between, hint
from tests.clock import Clock


def live(segments: int, parts_in_open: int) -> Playlist:
    clock = Clock()
    playlist = Playlist("0123abcd", part_target_ms=300, target_duration_s=2)
    for _ in range(segments):
        playlist.start_segment(clock())
        for index in range(4):
            playlist.add_part(300 if index < 3 else 100, independent=index == 0)
        playlist.end_segment()
        clock.advance(1000)
    playlist.start_segment(clock())
    for _ in range(parts_in_open):
        playlist.add_part(300, independent=False)
    return playlist


def test_the_hint_names_the_next_part() -> None:
    assert hint(live(2, 1).render()) == ("part-0123abcd-2-1.m4s", 2, 1)
    with pytest.raises(ValueError, match="no preload hint"):
        hint("#EXTM3U\n")


def test_parts_between_two_playlists_count_whole_segments_beyond_the_window() -> None:
    assert _parts_between(live(2, 1).render(), live(2, 3).render()) == 2
    assert _parts_between(live(2, 1).render(), live(3, 1).render()) == 4
    # Ten segments later: only the last few are listed; the mean of those fills the rest.
    assert _parts_between(live(2, 1).render(), live(12, 2).render()) == 41
