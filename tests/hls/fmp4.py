"""A small reader of fragmented MP4 for the tests, independent of the packager's writer: what a
player's demuxer reads (hls.js's included) before it hands the bytes to the browser."""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

__all__ = ["Fragment", "Track", "fragments", "timeline_problems", "timescales"]

SYNC = 0x00010000  # sample_is_non_sync_sample, inverted


@dataclass
class Track:
    track_id: int
    base_time: int  # tfdt
    durations: list[int] = field(default_factory=list)
    sizes: list[int] = field(default_factory=list)
    flags: list[int] = field(default_factory=list)

    def is_sync(self, index: int) -> bool:
        return not self.flags[index] & SYNC


@dataclass
class Fragment:
    sequence: int
    tracks: list[Track]


def _boxes(data: bytes, start: int, end: int) -> list[tuple[bytes, int, int]]:
    out = []
    offset = start
    while offset + 8 <= end:
        size, kind = struct.unpack_from(">I4s", data, offset)
        if size < 8 or offset + size > end:
            raise AssertionError(f"box {kind!r} at {offset} runs past its parent")
        out.append((kind, offset, size))
        offset += size
    if offset != end:
        raise AssertionError(f"{end - offset} stray bytes at {offset}")
    return out


def timescales(init: bytes) -> dict[int, int]:
    """Track id -> timescale, from the init segment's ``moov``."""
    found: dict[int, int] = {}

    def walk(start: int, end: int, track: list[int]) -> None:
        for kind, offset, size in _boxes(init, start, end):
            body = offset + 8
            if kind in (b"moov", b"trak", b"mdia"):
                walk(body, offset + size, track if kind != b"trak" else [])
            elif kind == b"tkhd":
                version = init[body]
                track.append(struct.unpack_from(">I", init, body + (12 if version == 0 else 20))[0])
            elif kind == b"mdhd":
                version = init[body]
                scale = struct.unpack_from(">I", init, body + (12 if version == 0 else 20))[0]
                found[track[0]] = scale

    walk(0, len(init), [])
    return found


def fragments(data: bytes) -> list[Fragment]:
    """Every ``moof`` + ``mdat`` pair of a part or segment, checking that each ``trun`` points
    inside the ``mdat`` that follows its ``moof`` and that the samples fill it exactly."""
    out: list[Fragment] = []
    boxes = _boxes(data, 0, len(data))
    if len(boxes) % 2:
        raise AssertionError("a moof without its mdat")
    for (moof_kind, moof_at, moof_size), (mdat_kind, mdat_at, mdat_size) in zip(
            boxes[::2], boxes[1::2], strict=True):
        assert (moof_kind, mdat_kind) == (b"moof", b"mdat"), (moof_kind, mdat_kind)
        sequence = 0
        tracks: list[Track] = []
        covered = 0
        for kind, offset, size in _boxes(data, moof_at + 8, moof_at + moof_size):
            if kind == b"mfhd":
                sequence = struct.unpack_from(">I", data, offset + 12)[0]
            elif kind == b"traf":
                track, used = _traf(data, offset, size, moof_at, mdat_at, mdat_size)
                tracks.append(track)
                covered += used
        assert covered == mdat_size - 8, "the samples do not fill the mdat"
        out.append(Fragment(sequence, tracks))
    return out


def _traf(data: bytes, start: int, size: int, moof_at: int, mdat_at: int, mdat_size: int
          ) -> tuple[Track, int]:
    track: Track | None = None
    default_duration = default_size = default_flags = 0
    used = 0
    for kind, offset, _ in _boxes(data, start + 8, start + size):
        body = offset + 8
        flags = struct.unpack_from(">I", data, body)[0] & 0xFFFFFF
        if kind == b"tfhd":
            assert flags & 0x020000, "default-base-is-moof expected"
            assert not flags & 0x000001, "no base data offset expected"
            track_id = struct.unpack_from(">I", data, body + 4)[0]
            at = body + 8
            if flags & 0x02:
                at += 4
            if flags & 0x08:
                default_duration = struct.unpack_from(">I", data, at)[0]
                at += 4
            if flags & 0x10:
                default_size = struct.unpack_from(">I", data, at)[0]
                at += 4
            if flags & 0x20:
                default_flags = struct.unpack_from(">I", data, at)[0]
            track = Track(track_id, -1)
        elif kind == b"tfdt":
            assert track is not None
            version = data[body]
            track.base_time = struct.unpack_from(">Q" if version else ">I", data, body + 4)[0]
        elif kind == b"trun":
            assert track is not None
            count = struct.unpack_from(">I", data, body + 4)[0]
            at = body + 8
            data_offset = 0
            if flags & 0x01:
                data_offset = struct.unpack_from(">i", data, at)[0]
                at += 4
            first_flags = None
            if flags & 0x04:
                first_flags = struct.unpack_from(">I", data, at)[0]
                at += 4
            for index in range(count):
                duration, sample_size, sample_flags = default_duration, default_size, default_flags
                if flags & 0x100:
                    duration = struct.unpack_from(">I", data, at)[0]
                    at += 4
                if flags & 0x200:
                    sample_size = struct.unpack_from(">I", data, at)[0]
                    at += 4
                if flags & 0x400:
                    sample_flags = struct.unpack_from(">I", data, at)[0]
                    at += 4
                if flags & 0x800:
                    at += 4
                if index == 0 and first_flags is not None:
                    sample_flags = first_flags
                track.durations.append(duration)
                track.sizes.append(sample_size)
                track.flags.append(sample_flags)
            begin = moof_at + data_offset
            assert mdat_at + 8 <= begin <= begin + sum(track.sizes) <= mdat_at + mdat_size, \
                "trun data offset outside the mdat"
            used += sum(track.sizes)
    assert track is not None, "traf without tfhd"
    assert track.base_time >= 0, "traf without tfdt"
    return track, used


def timeline_problems(segments: list[bytes]) -> list[str]:
    """What a player would trip on when it plays these segments in order (one init): a sample
    without a duration, a track whose next fragment does not start where the previous one
    ended (gap or overlap), fragment sequence numbers that do not increase."""
    problems: list[str] = []
    ends: dict[int, int] = {}
    last_sequence = 0
    for number, segment in enumerate(segments):
        for fragment in fragments(segment):
            if fragment.sequence <= last_sequence:
                problems.append(f"segment {number}: sequence {fragment.sequence} after "
                                f"{last_sequence}")
            last_sequence = fragment.sequence
            for track in fragment.tracks:
                if any(duration <= 0 for duration in track.durations):
                    problems.append(f"segment {number}: track {track.track_id} has a sample "
                                    f"without duration at {track.base_time}")
                expected = ends.get(track.track_id)
                if expected is not None and track.base_time != expected:
                    problems.append(f"segment {number}: track {track.track_id} starts at "
                                    f"{track.base_time}, the previous fragment ended at "
                                    f"{expected}")
                ends[track.track_id] = track.base_time + sum(track.durations)
    return problems
