"""H.264 access units (Annex-B, as aiortc's depayloader writes them) into fragmented MP4 (CMAF),
without re-encoding: PyAV's ``mp4`` muxer, one fragment (``moof`` + ``mdat``) per frame.

The muxer writes into an in-memory sink; ``write()`` returns the complete fragments that came
out, each with the timestamp of the frame it holds. movenc emits a frame's fragment when the
next frame arrives (it needs the next timestamp for the duration), so fragments come out one
frame late; ``close()`` emits the last one.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import av

__all__ = ["Fragment", "H264Fmp4Muxer", "parameter_sets"]

CLOCK_RATE = 90_000
_SPS, _PPS = 7, 8
MOVFLAGS = "empty_moov+default_base_moof+frag_every_frame+cmaf+skip_trailer+skip_sidx"


def nal_units(data: bytes) -> list[bytes]:
    """The NAL units of an Annex-B access unit, without their start codes."""
    units: list[bytes] = []
    start = data.find(b"\x00\x00\x01")
    while start != -1:
        begin = start + 3
        end = data.find(b"\x00\x00\x01", begin)
        unit = data[begin:] if end == -1 else data[begin:end]
        units.append(unit.rstrip(b"\x00") if end != -1 else unit)
        start = end
    return [unit for unit in units if unit]


def parameter_sets(data: bytes) -> bytes | None:
    """The SPS and PPS of an access unit as Annex-B (the muxer turns them into ``avcC``), or
    None when it carries no SPS."""
    units = nal_units(data)
    sps = [unit for unit in units if unit[0] & 0x1F == _SPS]
    pps = [unit for unit in units if unit[0] & 0x1F == _PPS]
    if not sps or not pps:
        return None
    return b"".join(b"\x00\x00\x00\x01" + unit for unit in sps[:1] + pps[:1])


def picture_size(data: bytes) -> tuple[int, int]:
    """Width and height of a keyframe, by decoding it once (a stream start or a new SPS)."""
    decoder: Any = av.CodecContext.create("h264", "r")
    for frame in decoder.decode(av.Packet(data)):
        return int(frame.width), int(frame.height)
    for frame in decoder.decode(None):
        return int(frame.width), int(frame.height)
    raise ValueError("the keyframe does not decode")


@dataclass(frozen=True, slots=True)
class Fragment:
    pts: int
    keyframe: bool
    data: bytes


class _Sink:
    """What the muxer writes into; ``take_boxes`` hands out complete top-level boxes."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def write(self, data: bytes) -> int:
        self._buffer += data
        return len(data)

    def take_boxes(self) -> list[tuple[bytes, bytes]]:
        boxes: list[tuple[bytes, bytes]] = []
        offset = 0
        while len(self._buffer) - offset >= 8:
            size, kind = struct.unpack_from(">I4s", self._buffer, offset)
            if size < 8 or len(self._buffer) - offset < size:
                break
            boxes.append((kind, bytes(self._buffer[offset:offset + size])))
            offset += size
        del self._buffer[:offset]
        return boxes


class H264Fmp4Muxer:
    """One generation of a room's video: started from a keyframe with SPS/PPS; the same SPS
    throughout (a new one needs a new muxer and a discontinuity)."""

    def __init__(self, keyframe: bytes) -> None:
        extradata = parameter_sets(keyframe)
        if extradata is None:
            raise ValueError("a stream starts at a keyframe with SPS and PPS")
        self.extradata = extradata
        self.width, self.height = picture_size(keyframe)
        self._sink = _Sink()
        self._container: Any = av.open(
            self._sink, "w", format="mp4",
            options={"movflags": MOVFLAGS, "flush_packets": "1"})
        stream: Any = self._container.add_stream("h264", rate=30)
        stream.width = self.width
        stream.height = self.height
        stream.time_base = Fraction(1, CLOCK_RATE)
        stream.codec_context.extradata = extradata
        self._stream = stream
        self._container.start_encoding()
        self.init = b"".join(data for kind, data in self._sink.take_boxes()
                             if kind in (b"ftyp", b"moov"))
        self._pending: list[tuple[int, bool]] = []
        self._moof: bytes | None = None
        self._last_pts: int | None = None

    def same_parameters(self, keyframe: bytes) -> bool:
        sets = parameter_sets(keyframe)
        return sets is None or sets == self.extradata

    def write(self, data: bytes, pts: int, keyframe: bool) -> list[Fragment]:
        """Mux one access unit (``pts`` in 1/90000 s, increasing)."""
        if self._last_pts is not None and pts <= self._last_pts:
            pts = self._last_pts + 1
        self._last_pts = pts
        packet = av.Packet(data)
        packet.pts = pts
        packet.dts = pts
        packet.time_base = Fraction(1, CLOCK_RATE)
        packet.stream = self._stream
        packet.is_keyframe = keyframe
        self._pending.append((pts, keyframe))
        self._container.mux(packet)
        return self._fragments()

    def close(self) -> list[Fragment]:
        """Flush the last frame's fragment and free the muxer."""
        self._container.close()
        return self._fragments()

    def _fragments(self) -> list[Fragment]:
        fragments: list[Fragment] = []
        for kind, data in self._sink.take_boxes():
            if kind == b"moof":
                self._moof = data
            elif kind == b"mdat" and self._moof is not None and self._pending:
                pts, keyframe = self._pending.pop(0)
                fragments.append(Fragment(pts, keyframe, self._moof + data))
                self._moof = None
        return fragments
