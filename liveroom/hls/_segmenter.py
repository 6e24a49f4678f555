"""Encoded H.264 frames in, LL-HLS out: the init segment, parts and segments, and the playlist
that lists them. Synchronous and clock-free: the frames carry their RTP timestamp and the
wall-clock time they were received, so a test drives it frame by frame.

Cutting rules (numbers in docs/media.md):

* a **part** ends at the first frame ``part_target_ms`` or more after its first frame;
* a **segment** ends at a keyframe ``segment_min_ms`` or more after its first frame, or at any
  frame once it would otherwise pass ``segment_max_ms`` (a publisher that ignores keyframe
  requests then gives segments that do not start with a keyframe: players still play them in
  order, but joining there waits for the next keyframe);
* ``keyframe_lead_ms`` before a segment may end, the segmenter asks for a keyframe
  (``wants_keyframe``; the caller sends the PLI), and again every ``keyframe_retry_ms``;
* a new SPS (picture size or profile changed) starts a new init segment after a
  discontinuity.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import av

from ._fmp4 import AUDIO_FRAME, AUDIO_RATE, CLOCK_RATE, H264Fmp4Muxer, parameter_sets
from ._playlist import Playlist

__all__ = ["InitOut", "Output", "PartOut", "SegmentOut", "Segmenter"]

_TICKS_PER_MS = CLOCK_RATE // 1000
# At most this much silence (samples, 2 s) goes before a generation's first sound.
MAX_LEAD_SILENCE = 2 * AUDIO_RATE


@dataclass(frozen=True, slots=True)
class InitOut:
    gen: int
    data: bytes


@dataclass(frozen=True, slots=True)
class PartOut:
    msn: int
    index: int
    data: bytes


@dataclass(frozen=True, slots=True)
class SegmentOut:
    msn: int
    data: bytes


Output = InitOut | PartOut | SegmentOut


@dataclass(slots=True)
class _Open:
    start_pts: int
    independent: bool
    chunks: list[bytes] = field(default_factory=list)


class Segmenter:
    def __init__(self, playlist: Playlist, *, part_target_ms: int = 300,
                 segment_min_ms: int = 800, segment_max_ms: int = 2499,
                 segment_target_ms: int = 1000, audio: bool = False,
                 keyframe_lead_ms: int = 250, keyframe_retry_ms: int = 500) -> None:
        self.playlist = playlist
        self.part_target = part_target_ms * _TICKS_PER_MS
        self.segment_min = segment_min_ms * _TICKS_PER_MS
        self.segment_max = segment_max_ms * _TICKS_PER_MS
        self.segment_target = segment_target_ms * _TICKS_PER_MS
        self.keyframe_lead = keyframe_lead_ms * _TICKS_PER_MS
        self.keyframe_retry = keyframe_retry_ms * _TICKS_PER_MS
        self.frames_dropped = 0
        self.wants_keyframe = True
        self.audio = audio
        self._opus: Any = None
        self._resampler: Any = None
        self._fifo: Any = None
        # The next AAC frame's pts (1/48000 s, the video's timeline); None until the first
        # audio after a muxer starts.
        self._audio_pts: int | None = None
        self._last_video_ms = 0
        self._muxer: H264Fmp4Muxer | None = None
        self._generation_start = 0
        self._part: _Open | None = None
        self._segment_start = 0
        self._segment_chunks: list[bytes] = []
        # RTP timestamps unwrapped to ticks since this segmenter's first frame.
        self._last_rtp: int | None = None
        self._pts = 0
        self._last_frame_ticks = 3000
        self._wall_base_ms = 0
        self._last_request: int | None = None

    def push(self, data: bytes, rtp_timestamp: int, keyframe: bool,
             received_ms: int) -> list[Output]:
        """Take one frame; returns what became complete (in order: write them in order)."""
        pts = self._unwrap(rtp_timestamp)
        self._last_video_ms = received_ms
        out: list[Output] = []
        if self._muxer is None:
            if not keyframe or parameter_sets(data) is None:
                self.frames_dropped += 1
                self.wants_keyframe = True
                return out
            self._wall_base_ms = received_ms - pts // _TICKS_PER_MS
            self._start(data, pts, out)
        elif keyframe and not self._muxer.same_parameters(data):
            self._collect(self._muxer.close(pts))
            self._end_segment(pts, out)
            self.playlist.discontinue(new_init=True)
            self._start(data, pts, out)
        else:
            # Every frame before this one is now complete: a cut here puts them all in the
            # part that ends, and this frame first in the next.
            self._muxer.write(data, pts, keyframe)
            part = self._part
            assert part is not None
            elapsed = pts - self._segment_start
            overlong = elapsed + self._last_frame_ticks > self.segment_max
            if (keyframe and elapsed >= self.segment_min) or overlong:
                self._collect(self._muxer.flush())
                self._end_segment(pts, out)
                self._open_segment(pts, keyframe)
            elif pts - part.start_pts >= self.part_target:
                self._collect(self._muxer.flush())
                self._end_part(pts, out)
                self._part = _Open(pts, keyframe)
        self._want_keyframe(pts, keyframe)
        return out

    def push_audio(self, data: bytes, received_ms: int) -> list[Output]:
        """One Opus frame: decoded, re-chunked and encoded to AAC into the current part.

        Timestamps follow the decoded samples from where the first audio frame after the
        muxer's start lands on the video's timeline (its arrival against the last video
        frame's), with silence before it back to the generation's first frame (so the sound
        has no hole where a player starts; up to ``MAX_LEAD_SILENCE``): lip sync is as good as
        the two tracks' arrival; a lost packet shifts the audio earlier by its 20 ms (the
        decoder gives nothing for it)."""
        muxer = self._muxer
        if muxer is None or not muxer.has_audio:
            return []
        if self._opus is None:
            self._opus = av.CodecContext.create("libopus", "r")
            self._resampler = av.AudioResampler(format="fltp", layout="stereo", rate=AUDIO_RATE)
            self._fifo = av.AudioFifo()
        if self._audio_pts is None:
            video_ticks = self._pts + (received_ms - self._last_video_ms) * _TICKS_PER_MS
            start = self._generation_start * AUDIO_RATE // CLOCK_RATE
            late = video_ticks * AUDIO_RATE // CLOCK_RATE - start
            self._audio_pts = start
            if late > MAX_LEAD_SILENCE:
                # Encoding that much silence would hold the event loop: the sound starts
                # where it lands, and players skip the hole before it.
                self._audio_pts = start + late
            elif late > 0:
                self._fifo.write(_silence(late))
        try:
            decoded = self._opus.decode(av.Packet(data))
        except av.error.FFmpegError:
            return []
        for frame in decoded:
            for resampled in self._resampler.resample(frame):
                self._fifo.write(resampled)
        while self._fifo.samples >= AUDIO_FRAME:
            chunk = self._fifo.read(AUDIO_FRAME)
            chunk.pts = self._audio_pts
            chunk.time_base = Fraction(1, AUDIO_RATE)
            self._audio_pts += AUDIO_FRAME
            muxer.write_audio(chunk)
        return []

    @property
    def keyframe_due(self) -> bool:
        """Whether the next frame (about one frame interval after the last) should be a
        keyframe when the packager makes keyframes itself (transcoding): segments then come out
        at ``segment_target_ms``."""
        if self._muxer is None:
            return True
        return self._pts + self._last_frame_ticks - self._segment_start >= self.segment_target

    def finish(self) -> list[Output]:
        """The publisher stopped: flush the last frame and close the open segment."""
        out: list[Output] = []
        if self._muxer is not None:
            end = self._pts + self._last_frame_ticks
            self._collect(self._muxer.close(end))
            self._muxer = None
            self._end_segment(end, out)
        return out

    # -- internals ----------------------------------------------------------------------------

    def _unwrap(self, rtp_timestamp: int) -> int:
        if self._last_rtp is not None:
            delta = (rtp_timestamp - self._last_rtp) & 0xFFFFFFFF
            if delta >= 0x80000000:
                delta = 0  # reordered or repeated: never go back in time
            if delta:
                self._last_frame_ticks = delta
            self._pts += delta
        self._last_rtp = rtp_timestamp
        return self._pts

    def _start(self, keyframe: bytes, pts: int, out: list[Output]) -> None:
        self._muxer = H264Fmp4Muxer(keyframe, audio=self.audio)
        self._generation_start = pts
        self._audio_pts = None
        if self._fifo is not None:
            self._fifo = av.AudioFifo()
        out.append(InitOut(self.playlist.gen, self._muxer.init))
        self._open_segment(pts, True)
        self._muxer.write(keyframe, pts, True)

    def _open_segment(self, pts: int, independent: bool) -> None:
        self.playlist.start_segment(self._wall_base_ms + pts // _TICKS_PER_MS)
        self._segment_start = pts
        self._segment_chunks = []
        self._part = _Open(pts, independent)

    def _collect(self, fragment: bytes) -> None:
        part = self._part
        assert part is not None
        if fragment:
            part.chunks.append(fragment)

    def _end_part(self, end_pts: int, out: list[Output]) -> None:
        part = self._part
        if part is None or not part.chunks:
            return
        data = b"".join(part.chunks)
        duration_ms = max(1, round((end_pts - part.start_pts) / _TICKS_PER_MS))
        msn, index = self.playlist.add_part(duration_ms, part.independent)
        self._segment_chunks.append(data)
        out.append(PartOut(msn, index, data))
        self._part = None

    def _end_segment(self, end_pts: int, out: list[Output]) -> None:
        self._end_part(end_pts, out)
        segment = self.playlist.end_segment()
        if segment is not None:
            out.append(SegmentOut(segment.msn, b"".join(self._segment_chunks)))
        self._segment_chunks = []

    def _want_keyframe(self, pts: int, keyframe: bool) -> None:
        if keyframe:
            self._last_request = None
        due = pts - self._segment_start >= self.segment_min - self.keyframe_lead
        retry = self._last_request is None or pts - self._last_request >= self.keyframe_retry
        self.wants_keyframe = self._muxer is None or (due and retry)
        if self.wants_keyframe:
            self._last_request = pts


def _silence(samples: int) -> Any:
    frame = av.AudioFrame(format="fltp", layout="stereo", samples=samples)
    frame.sample_rate = AUDIO_RATE
    for plane in frame.planes:
        plane.update(bytes(plane.buffer_size))
    return frame
