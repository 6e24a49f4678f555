"""H.264 access units (Annex-B, as aiortc's depayloader writes them) into fragmented MP4 (CMAF),
without re-encoding, and optionally AAC audio.

PyAV's ``mp4`` muxer writes the init segment (``ftyp`` + ``moov``: ``avcC`` from the first
keyframe's SPS/PPS, ``esds`` from the AAC encoder) and its AAC encoder encodes the sound; the
fragments (``moof`` + ``mdat``) are written here, one per ``flush()``, with every sample's
duration, size and sync flag in its ``trun`` and each track's ``tfdt`` where its previous
fragment ended. (libavformat's fragmenter could not be used for them: it learns a sample's
duration from the next packet *of any track*, so with sound interleaved most video samples came
out lasting 0, which hls.js parses as a segment without media; and its interleaver let a frame
come out after the segment it belonged to had been cut, so segments began before their
keyframe. docs/media.md, "Replays".)
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import av

__all__ = ["H264Fmp4Muxer", "parameter_sets"]

CLOCK_RATE = 90_000
_SPS, _PPS = 7, 8
MOVFLAGS = "empty_moov+default_base_moof+cmaf+skip_trailer+skip_sidx"  # the init segment only
AUDIO_RATE = 48_000
AUDIO_FRAME = 1024  # samples per AAC frame
VIDEO_TRACK, AUDIO_TRACK = 1, 2  # as the init segment numbers them (video added first)
_SYNC = 0x02000000  # sample_depends_on = 2 (an IDR, or any AAC frame)
_NON_SYNC = 0x01010000  # sample_depends_on = 1, sample_is_non_sync_sample
_DEFAULT_BASE_IS_MOOF = 0x020000
# trun: data offset, and per sample its duration, size and flags
_TRUN_FLAGS = 0x000001 | 0x000100 | 0x000200 | 0x000400


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


def avcc(data: bytes) -> bytes:
    """An Annex-B access unit as MP4 stores it: each NAL unit after its 4-byte length."""
    return b"".join(len(unit).to_bytes(4, "big") + unit for unit in nal_units(data))


@dataclass(slots=True)
class _Sample:
    data: bytes
    time: int  # decode time on the track's clock, from the generation's start
    duration: int
    sync: bool


def _box(kind: bytes, *payload: bytes) -> bytes:
    body = b"".join(payload)
    return struct.pack(">I4s", 8 + len(body), kind) + body


def _full_box(kind: bytes, version: int, flags: int, *payload: bytes) -> bytes:
    return _box(kind, struct.pack(">I", (version << 24) | flags), *payload)


def _traf(track_id: int, samples: list[_Sample], data_offset: int) -> bytes:
    entries = b"".join(struct.pack(">III", s.duration, len(s.data), _SYNC if s.sync else _NON_SYNC)
                       for s in samples)
    return _box(b"traf",
                _full_box(b"tfhd", 0, _DEFAULT_BASE_IS_MOOF, struct.pack(">I", track_id)),
                _full_box(b"tfdt", 1, 0, struct.pack(">Q", samples[0].time)),
                _full_box(b"trun", 0, _TRUN_FLAGS, struct.pack(">Ii", len(samples), data_offset),
                          entries))


def fragment(sequence: int, tracks: list[tuple[int, list[_Sample]]]) -> bytes:
    """One ``moof`` + ``mdat`` of the tracks' samples (each list continuous in time), the
    sample data in the ``mdat`` in the order of ``tracks``."""
    tracks = [(track_id, samples) for track_id, samples in tracks if samples]
    if not tracks:
        return b""

    def moof(offsets: list[int]) -> bytes:
        return _box(b"moof", _full_box(b"mfhd", 0, 0, struct.pack(">I", sequence)),
                    *(_traf(track_id, samples, offset)
                      for (track_id, samples), offset in zip(tracks, offsets, strict=True)))

    # The offsets do not change the boxes' sizes: measure once with zeros.
    header = len(moof([0] * len(tracks))) + 8
    offsets = []
    for _, samples in tracks:
        offsets.append(header)
        header += sum(len(sample.data) for sample in samples)
    return moof(offsets) + _box(b"mdat", *(s.data for _, samples in tracks for s in samples))


class _Sink:
    """What PyAV's muxer writes into (the init segment)."""

    def __init__(self) -> None:
        self.data = bytearray()

    def write(self, data: bytes) -> int:
        self.data += data
        return len(data)


class H264Fmp4Muxer:
    """One generation of a room's video (and audio): started from a keyframe with SPS/PPS; the
    same SPS throughout (a new one needs a new muxer and a discontinuity). With ``audio`` the
    init segment has an AAC track (48 kHz stereo) fed by ``write_audio``.

    ``write`` holds each frame until the next one gives its duration; ``flush`` returns one
    fragment of every frame whose duration is known and every AAC frame encoded so far."""

    def __init__(self, keyframe: bytes, audio: bool = False) -> None:
        extradata = parameter_sets(keyframe)
        if extradata is None:
            raise ValueError("a stream starts at a keyframe with SPS and PPS")
        self.extradata = extradata
        self.width, self.height = picture_size(keyframe)
        sink = _Sink()
        self._container: Any = av.open(sink, "w", format="mp4",
                                       options={"movflags": MOVFLAGS, "flush_packets": "1"})
        stream: Any = self._container.add_stream("h264", rate=30)
        stream.width = self.width
        stream.height = self.height
        stream.time_base = Fraction(1, CLOCK_RATE)
        stream.codec_context.extradata = extradata
        self._audio: Any = None
        if audio:
            audio_stream: Any = self._container.add_stream("aac", rate=AUDIO_RATE)
            audio_stream.layout = "stereo"
            audio_stream.bit_rate = 96_000
            audio_stream.time_base = Fraction(1, AUDIO_RATE)
            audio_stream.codec_context.options = {"aac_coder": "fast"}
            self._audio = audio_stream
        self._container.start_encoding()
        self.init = bytes(sink.data)
        self._sequence = 0
        # The generation's start on the video clock (its first frame) and on the audio clock.
        self._origin: int | None = None
        self._audio_origin = 0
        self._pending: _Sample | None = None
        self._last_pts: int | None = None
        self._video: list[_Sample] = []
        self._sound: list[_Sample] = []
        self._sound_end: int | None = None

    def same_parameters(self, keyframe: bytes) -> bool:
        sets = parameter_sets(keyframe)
        return sets is None or sets == self.extradata

    @property
    def has_audio(self) -> bool:
        return self._audio is not None

    def write(self, data: bytes, pts: int, keyframe: bool) -> None:
        """One access unit (``pts`` in 1/90000 s, increasing); the previous one now has its
        duration."""
        if self._last_pts is not None and pts <= self._last_pts:
            pts = self._last_pts + 1
        if self._origin is None:
            self._origin = pts
            self._audio_origin = pts * AUDIO_RATE // CLOCK_RATE
        self._end_pending(pts)
        self._last_pts = pts
        self._pending = _Sample(avcc(data), pts - self._origin, 0, keyframe)

    def write_audio(self, frame: Any) -> None:
        """Encode one ``fltp`` stereo 48 kHz frame of the AAC frame size (1024 samples, ``pts``
        in 1/48000 s on the video's timeline)."""
        for packet in self._audio.encode(frame):
            self._add_sound(packet)

    def flush(self) -> bytes:
        """A fragment of what is complete (b"" when nothing is)."""
        tracks = [(VIDEO_TRACK, self._video), (AUDIO_TRACK, self._sound)]
        if not self._video and not self._sound:
            return b""
        self._sequence += 1
        data = fragment(self._sequence, tracks)
        self._video, self._sound = [], []
        return data

    def close(self, end_pts: int) -> bytes:
        """The last fragment: the held frame ends at ``end_pts``, the encoder's tail is
        flushed; the muxer is freed."""
        self._end_pending(end_pts)
        if self._audio is not None:
            for packet in self._audio.encode(None):
                self._add_sound(packet)
        data = self.flush()
        self._container.close()
        return data

    def _end_pending(self, end_pts: int) -> None:
        pending = self._pending
        if pending is None or self._last_pts is None:
            return
        pending.duration = max(1, end_pts - self._last_pts)
        self._video.append(pending)
        self._pending = None

    def _add_sound(self, packet: Any) -> None:
        duration = int(packet.duration or AUDIO_FRAME)
        if self._sound_end is None:
            # The encoder's first packet (its priming) starts the track, at the generation's
            # start at the earliest; after it the track runs on by durations, without gaps.
            self._sound_end = max(0, int(packet.pts or 0) - self._audio_origin)
        self._sound.append(_Sample(bytes(packet), self._sound_end, duration, True))
        self._sound_end += duration
