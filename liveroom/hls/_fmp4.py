"""H.264 access units (Annex-B, as aiortc's depayloader writes them) into fragmented MP4 (CMAF),
without re-encoding, and optionally AAC audio: PyAV's ``mp4`` muxer, one fragment
(``moof`` + ``mdat``) per packet written.

The muxer writes into an in-memory sink; ``write()`` and ``write_audio()`` return the complete
fragments that came out. movenc emits a sample's fragment when the next packet arrives (it needs
the next timestamp for the duration), and with audio the interleaver holds a packet until the
other track has caught up (at most ``MAX_INTERLEAVE_US``), so a frame's fragment comes out
after the frame was written, never with it; ``close()`` emits the rest.
"""

from __future__ import annotations

import struct
from fractions import Fraction
from typing import Any

import av

__all__ = ["H264Fmp4Muxer", "parameter_sets"]

CLOCK_RATE = 90_000
_SPS, _PPS = 7, 8
MOVFLAGS = "empty_moov+default_base_moof+frag_every_frame+cmaf+skip_trailer+skip_sidx"
AUDIO_RATE = 48_000
AUDIO_FRAME = 1024  # samples per AAC frame
# A track that stops (a muted anchor whose browser stops sending) holds the other one back at
# most this long.
MAX_INTERLEAVE_US = 500_000


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
    """One generation of a room's video (and audio): started from a keyframe with SPS/PPS; the
    same SPS throughout (a new one needs a new muxer and a discontinuity). With ``audio`` the
    init segment has an AAC track (48 kHz stereo) fed by ``write_audio``."""

    def __init__(self, keyframe: bytes, audio: bool = False) -> None:
        extradata = parameter_sets(keyframe)
        if extradata is None:
            raise ValueError("a stream starts at a keyframe with SPS and PPS")
        self.extradata = extradata
        self.width, self.height = picture_size(keyframe)
        self._sink = _Sink()
        self._container: Any = av.open(
            self._sink, "w", format="mp4",
            options={"movflags": MOVFLAGS, "flush_packets": "1",
                     "max_interleave_delta": str(MAX_INTERLEAVE_US)})
        stream: Any = self._container.add_stream("h264", rate=30)
        stream.width = self.width
        stream.height = self.height
        stream.time_base = Fraction(1, CLOCK_RATE)
        stream.codec_context.extradata = extradata
        self._stream = stream
        self._audio: Any = None
        if audio:
            audio_stream: Any = self._container.add_stream("aac", rate=AUDIO_RATE)
            audio_stream.layout = "stereo"
            audio_stream.bit_rate = 96_000
            audio_stream.time_base = Fraction(1, AUDIO_RATE)
            audio_stream.codec_context.options = {"aac_coder": "fast"}
            self._audio = audio_stream
        self._container.start_encoding()
        self.init = b"".join(data for kind, data in self._sink.take_boxes()
                             if kind in (b"ftyp", b"moov"))
        self._moof: bytes | None = None
        self._last_pts: int | None = None

    def same_parameters(self, keyframe: bytes) -> bool:
        sets = parameter_sets(keyframe)
        return sets is None or sets == self.extradata

    @property
    def has_audio(self) -> bool:
        return self._audio is not None

    def write(self, data: bytes, pts: int, keyframe: bool) -> list[bytes]:
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
        self._container.mux(packet)
        return self._fragments()

    def write_audio(self, frame: Any) -> list[bytes]:
        """Encode one ``fltp`` stereo 48 kHz frame of the AAC frame size (1024 samples, ``pts``
        in 1/48000 s on the video's timeline) and mux it."""
        self._container.mux(self._audio.encode(frame))
        return self._fragments()

    def close(self) -> list[bytes]:
        """Flush what is still held (the encoder's and the muxer's) and free the muxer."""
        if self._audio is not None:
            self._container.mux(self._audio.encode(None))
        self._container.close()
        return self._fragments()

    def _fragments(self) -> list[bytes]:
        fragments: list[bytes] = []
        for kind, data in self._sink.take_boxes():
            if kind == b"moof":
                self._moof = data
            elif kind == b"mdat" and self._moof is not None:
                fragments.append(self._moof + data)
                self._moof = None
        return fragments
