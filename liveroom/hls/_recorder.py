"""Replays: a room's broadcast recorded as it is packaged, into
``<data-dir>/recordings/{room}/``, and a VOD playlist written when a broadcast ends.

The packager hands the recorder every init segment and complete segment; the files are the
same bytes the live players got, under the same names (``init-{stream}-{gen}.mp4``,
``seg-{stream}-{msn}.m4s``). ``segments.jsonl`` lists them in order with their wall-clock start
and duration, so every broadcast of the room (an anchor who stops and goes live again, another
process resuming the stream) ends up in one replay with discontinuities between them;
``index.m3u8`` (``EXT-X-PLAYLIST-TYPE:VOD``) is rewritten from it at each broadcast's end.
File writes run in a thread.
"""

from __future__ import annotations

import asyncio
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from ..payload import ID_PATTERN

__all__ = ["RecordedSegment", "Recorder", "Replay"]

INDEX = "index.m3u8"
SEGMENTS = "segments.jsonl"


@dataclass(frozen=True, slots=True)
class RecordedSegment:
    stream_id: str
    msn: int
    gen: int
    start_ms: int
    duration_ms: int

    @property
    def name(self) -> str:
        return f"seg-{self.stream_id}-{self.msn}.m4s"

    @property
    def init(self) -> str:
        return f"init-{self.stream_id}-{self.gen}.mp4"


@dataclass(frozen=True, slots=True)
class Replay:
    segments: tuple[RecordedSegment, ...]

    @property
    def duration_ms(self) -> int:
        return sum(segment.duration_ms for segment in self.segments)

    def offset_of(self, wall_ms: int) -> int | None:
        """Where the moment ``wall_ms`` of the show is in the replay (ms from its start): the
        start of the replay for a moment before it, None for one after it or in a gap."""
        offset = 0
        for segment in self.segments:
            if wall_ms < segment.start_ms:
                return offset if offset == 0 else None
            if wall_ms < segment.start_ms + segment.duration_ms:
                return offset + wall_ms - segment.start_ms
            offset += segment.duration_ms
        return None

    def playlist(self) -> str:
        target = max((math.floor(s.duration_ms / 1000 + 0.5) for s in self.segments), default=1)
        lines = ["#EXTM3U", "#EXT-X-VERSION:7", f"#EXT-X-TARGETDURATION:{max(1, target)}",
                 "#EXT-X-PLAYLIST-TYPE:VOD", "#EXT-X-MEDIA-SEQUENCE:0"]
        init = None
        for segment in self.segments:
            if segment.init != init:
                if init is not None:
                    lines.append("#EXT-X-DISCONTINUITY")
                lines.append(f'#EXT-X-MAP:URI="{segment.init}"')
                init = segment.init
            lines.append(f"#EXTINF:{segment.duration_ms / 1000:.3f},")
            lines.append(segment.name)
        lines.append("#EXT-X-ENDLIST")
        return "\n".join(lines) + "\n"


class Recorder:
    def __init__(self, root: Path) -> None:
        self.root = root

    def folder(self, room_id: str) -> Path:
        if not ID_PATTERN.fullmatch(room_id) or room_id in (".", ".."):
            raise ValueError(f"not a room id: {room_id!r}")
        return self.root / room_id

    async def init(self, room_id: str, name: str, data: bytes) -> None:
        await asyncio.to_thread(self._write, room_id, name, data, None)

    async def segment(self, room_id: str, segment: RecordedSegment, data: bytes) -> None:
        line = orjson.dumps({"stream_id": segment.stream_id, "msn": segment.msn,
                             "gen": segment.gen, "start_ms": segment.start_ms,
                             "duration_ms": segment.duration_ms}) + b"\n"
        await asyncio.to_thread(self._write, room_id, segment.name, data, line)

    async def finish(self, room_id: str) -> Replay | None:
        """Write the VOD playlist of everything recorded for the room."""
        return await asyncio.to_thread(self._finish, room_id)

    def replay(self, room_id: str) -> Replay | None:
        """The room's replay once a broadcast of it has ended, else None."""
        folder = self.folder(room_id)
        if not (folder / INDEX).is_file():
            return None
        return self._read(folder)

    def _write(self, room_id: str, name: str, data: bytes, line: bytes | None) -> None:
        folder = self.folder(room_id)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)
        if line is not None:
            # After the file it names: a listed segment is always there.
            with (folder / SEGMENTS).open("ab") as index:
                index.write(line)

    def _finish(self, room_id: str) -> Replay | None:
        folder = self.folder(room_id)
        if not (folder / SEGMENTS).is_file():
            return None
        replay = self._read(folder)
        if not replay.segments:
            return None
        temporary = folder / (INDEX + ".tmp")
        temporary.write_text(replay.playlist())
        temporary.replace(folder / INDEX)
        return replay

    @staticmethod
    def _read(folder: Path) -> Replay:
        segments = []
        seen: set[tuple[str, int]] = set()
        try:
            lines = (folder / SEGMENTS).read_bytes().splitlines()
        except FileNotFoundError:
            lines = []
        for raw in lines:
            try:
                data: dict[str, Any] = orjson.loads(raw)
                segment = RecordedSegment(str(data["stream_id"]), int(data["msn"]),
                                          int(data["gen"]), int(data["start_ms"]),
                                          int(data["duration_ms"]))
            except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
                continue  # a line cut short by a crash
            if (segment.stream_id, segment.msn) not in seen:
                seen.add((segment.stream_id, segment.msn))
                segments.append(segment)
        return Replay(tuple(segments))
