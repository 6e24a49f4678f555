"""The LL-HLS media playlist of one room: which segments and parts exist, and its text.

Pure: no I/O, no clock. The packager tells it when a part or a segment is complete and at which
wall-clock time (ms) a segment starts; ``render()`` gives the playlist (RFC 8216bis, version 9)
and ``to_json()``/``from_json()`` carry it through Redis, so a packager in another process can
resume the numbering after this one died.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

__all__ = ["FileNames", "Part", "Playlist", "Progress", "Segment", "file_names", "max_segment_ms"]


@dataclass(frozen=True, slots=True)
class FileNames:
    """The URIs in the playlist, relative to ``/hls/{room}/``. The stream id (random per fresh
    start) makes every name unique for the life of a cache: a room that goes live again starts
    at msn 0 under new names, so an ``immutable`` part is never answered for another one."""

    stream_id: str

    def init(self, gen: int) -> str:
        return f"init-{self.stream_id}-{gen}.mp4"

    def segment(self, msn: int) -> str:
        return f"seg-{self.stream_id}-{msn}.m4s"

    def part(self, msn: int, index: int) -> str:
        return f"part-{self.stream_id}-{msn}-{index}.m4s"


def file_names(stream_id: str) -> FileNames:
    return FileNames(stream_id)


@dataclass(slots=True)
class Part:
    duration_ms: int
    independent: bool


@dataclass(slots=True)
class Segment:
    msn: int
    # Wall-clock time of its first frame (EXT-X-PROGRAM-DATE-TIME).
    start_ms: int
    # The init segment (EXT-X-MAP) its media needs; it changes with a discontinuity.
    gen: int
    discontinuity: bool = False
    parts: list[Part] = field(default_factory=list)
    # None while the segment is still being written.
    duration_ms: int | None = None


def _seconds(ms: int) -> str:
    return f"{ms / 1000:.3f}"


def _pdt(ms: int) -> str:
    moment = datetime.fromtimestamp(ms / 1000, tz=UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


@dataclass(frozen=True, slots=True)
class Progress:
    """What a reader needs to answer a blocking reload without the whole model."""

    last_part: tuple[int, int] | None
    last_complete_msn: int | None
    next_msn: int

    def has(self, msn: int, index: int | None) -> bool:
        """Whether a blocking reload for ``_HLS_msn=msn`` (and ``_HLS_part=index``) can be
        answered: the segment is complete (no part asked), or that part exists. A part index
        past the end of a complete segment counts as that segment's end (RFC 8216bis 6.2.5.2
        lets a client ask for the part after the last one it has)."""
        if index is None:
            return self.last_complete_msn is not None and msn <= self.last_complete_msn
        if self.last_part is None:
            return False
        last_msn, last_index = self.last_part
        if msn != last_msn:
            return msn < last_msn
        return self.last_complete_msn == msn or index <= last_index

    def too_far(self, msn: int) -> bool:
        """A request for a segment more than two after the one being written (RFC 8216bis
        6.2.5.2: answer 400 at once)."""
        return msn > self.next_msn + 2

    def encode(self) -> str:
        last = "-" if self.last_part is None else f"{self.last_part[0]}.{self.last_part[1]}"
        done = "-" if self.last_complete_msn is None else str(self.last_complete_msn)
        return f"{last}|{done}|{self.next_msn}"

    @classmethod
    def decode(cls, raw: str) -> Progress:
        last, done, next_msn = raw.split("|")
        last_part = None
        if last != "-":
            msn, index = last.split(".")
            last_part = (int(msn), int(index))
        return cls(last_part, None if done == "-" else int(done), int(next_msn))


class Playlist:
    """Segments ``window`` long, numbered from 0 (``EXT-X-MEDIA-SEQUENCE`` = the oldest kept);
    parts are listed for the last ``parts_window`` segments and the one being written.

    ``part_target_ms`` is ``EXT-X-PART-INF:PART-TARGET``; ``target_duration_s`` is
    ``EXT-X-TARGETDURATION`` (the packager never makes a segment that rounds to more).
    ``PART-HOLD-BACK`` is three part targets, the minimum the specification allows.
    """

    def __init__(self, stream_id: str, *, part_target_ms: int, target_duration_s: int,
                 window: int = 6, parts_window: int = 3) -> None:
        self.stream_id = stream_id
        self.names = file_names(stream_id)
        self.part_target_ms = part_target_ms
        self.target_duration_s = target_duration_s
        self.window = window
        self.parts_window = parts_window
        self.segments: list[Segment] = []
        # How many discontinuities left the window (EXT-X-DISCONTINUITY-SEQUENCE).
        self.discontinuity_sequence = 0
        self.next_msn = 0
        self.gen = 0
        self._pending_discontinuity = False

    # -- building -----------------------------------------------------------------------------

    @property
    def open_segment(self) -> Segment | None:
        if self.segments and self.segments[-1].duration_ms is None:
            return self.segments[-1]
        return None

    def start_segment(self, start_ms: int) -> Segment:
        """Open the next segment (closing none: call ``end_segment`` first)."""
        if self.open_segment is not None:
            raise ValueError("a segment is still open")
        segment = Segment(self.next_msn, start_ms, self.gen,
                          discontinuity=self._pending_discontinuity)
        self._pending_discontinuity = False
        self.next_msn += 1
        self.segments.append(segment)
        while len(self.segments) > self.window:
            dropped = self.segments.pop(0)
            if self.segments[0].discontinuity:
                self.discontinuity_sequence += 1
            del dropped
        return segment

    def add_part(self, duration_ms: int, independent: bool) -> tuple[int, int]:
        """Record a complete part of the open segment; returns its ``(msn, index)``."""
        segment = self.open_segment
        if segment is None:
            raise ValueError("no open segment")
        segment.parts.append(Part(duration_ms, independent))
        return segment.msn, len(segment.parts) - 1

    def end_segment(self) -> Segment | None:
        """Close the open segment: its duration is the sum of its parts. A segment without a
        part is dropped (its number is reused). Returns the closed segment, if any."""
        segment = self.open_segment
        if segment is None:
            return None
        if not segment.parts:
            self.segments.pop()
            self.next_msn -= 1
            self._pending_discontinuity = self._pending_discontinuity or segment.discontinuity
            return None
        segment.duration_ms = sum(part.duration_ms for part in segment.parts)
        return segment

    def discontinue(self, new_init: bool) -> None:
        """The next segment follows a break (the publisher reconnected, its codec or picture
        size changed, or another process took over): ``EXT-X-DISCONTINUITY`` before it, and
        with ``new_init`` a new ``EXT-X-MAP``."""
        self._pending_discontinuity = True
        if new_init:
            self.gen += 1

    # -- reading ------------------------------------------------------------------------------

    @property
    def last_part(self) -> tuple[int, int] | None:
        """``(msn, index)`` of the newest complete part."""
        for segment in reversed(self.segments):
            if segment.parts:
                return segment.msn, len(segment.parts) - 1
        return None

    @property
    def next_part(self) -> tuple[int, int]:
        """The part the packager writes next (``EXT-X-PRELOAD-HINT``)."""
        segment = self.open_segment
        if segment is not None:
            return segment.msn, len(segment.parts)
        return self.next_msn, 0

    @property
    def last_complete_msn(self) -> int | None:
        for segment in reversed(self.segments):
            if segment.duration_ms is not None:
                return segment.msn
        return None

    @property
    def progress(self) -> Progress:
        return Progress(self.last_part, self.last_complete_msn, self.next_part[0])

    def segment(self, msn: int) -> Segment | None:
        for segment in self.segments:
            if segment.msn == msn:
                return segment
        return None

    def render(self) -> str:
        """The playlist text; the caller decides when it ends (``ended`` adds EXT-X-ENDLIST)."""
        part_hold_back = 3 * self.part_target_ms
        first = self.segments[0].msn if self.segments else self.next_msn
        lines = [
            "#EXTM3U",
            "#EXT-X-VERSION:9",
            f"#EXT-X-TARGETDURATION:{self.target_duration_s}",
            f"#EXT-X-PART-INF:PART-TARGET={_seconds(self.part_target_ms)}",
            "#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,"
            f"PART-HOLD-BACK={_seconds(part_hold_back)}",
            f"#EXT-X-MEDIA-SEQUENCE:{first}",
            f"#EXT-X-DISCONTINUITY-SEQUENCE:{self.discontinuity_sequence}",
        ]
        complete = [s.msn for s in self.segments if s.duration_ms is not None]
        with_parts = set(complete[-self.parts_window:])
        if self.open_segment is not None:
            with_parts.add(self.open_segment.msn)
        gen: int | None = None
        for segment in self.segments:
            if segment.discontinuity and gen is not None:
                lines.append("#EXT-X-DISCONTINUITY")
            if segment.gen != gen:
                lines.append(f'#EXT-X-MAP:URI="{self.names.init(segment.gen)}"')
                gen = segment.gen
            lines.append(f"#EXT-X-PROGRAM-DATE-TIME:{_pdt(segment.start_ms)}")
            if segment.msn in with_parts:
                for index, part in enumerate(segment.parts):
                    independent = ",INDEPENDENT=YES" if part.independent else ""
                    lines.append(
                        f"#EXT-X-PART:DURATION={_seconds(part.duration_ms)},"
                        f'URI="{self.names.part(segment.msn, index)}"{independent}')
            if segment.duration_ms is not None:
                lines.append(f"#EXTINF:{_seconds(segment.duration_ms)},")
                lines.append(self.names.segment(segment.msn))
        msn, index = self.next_part
        lines.append(f'#EXT-X-PRELOAD-HINT:TYPE=PART,URI="{self.names.part(msn, index)}"')
        return "\n".join(lines) + "\n"

    # -- carried through Redis ----------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        return {
            "stream_id": self.stream_id,
            "next_msn": self.next_msn,
            "gen": self.gen,
            "discontinuity_sequence": self.discontinuity_sequence,
            "pending_discontinuity": self._pending_discontinuity,
            "segments": [
                {"msn": s.msn, "start_ms": s.start_ms, "gen": s.gen,
                 "discontinuity": s.discontinuity, "duration_ms": s.duration_ms,
                 "parts": [[p.duration_ms, p.independent] for p in s.parts]}
                for s in self.segments
            ],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any], *, part_target_ms: int, target_duration_s: int,
                  window: int = 6, parts_window: int = 3) -> Playlist:
        playlist = cls(str(data["stream_id"]), part_target_ms=part_target_ms,
                       target_duration_s=target_duration_s, window=window,
                       parts_window=parts_window)
        playlist.next_msn = int(data["next_msn"])
        playlist.gen = int(data["gen"])
        playlist.discontinuity_sequence = int(data["discontinuity_sequence"])
        playlist._pending_discontinuity = bool(data["pending_discontinuity"])
        for raw in data["segments"]:
            duration = raw["duration_ms"]
            playlist.segments.append(Segment(
                int(raw["msn"]), int(raw["start_ms"]), int(raw["gen"]),
                discontinuity=bool(raw["discontinuity"]),
                parts=[Part(int(d), bool(i)) for d, i in raw["parts"]],
                duration_ms=None if duration is None else int(duration)))
        return playlist


def max_segment_ms(target_duration_s: int) -> int:
    """The longest segment that still rounds to ``target_duration_s`` (RFC 8216bis 4.4.3.1)."""
    return math.floor((target_duration_s + 0.5) * 1000) - 1
