"""VP8 in, H.264 out, once per room: for publishers whose browser cannot send H.264.

PyAV decodes the anchor's VP8 and libx264 (``ultrafast``/``zerolatency``, constrained baseline,
SPS/PPS repeated before every IDR) encodes it at the picture's own size. The encoder makes a
keyframe when the segmenter asks for one, so segments are cut exactly where the packager wants
them and the anchor is asked for keyframes only while the decoder has none (a stream start or
a decode error). Blocking work: the packager runs ``push`` in a thread.
"""

from __future__ import annotations

from fractions import Fraction
from typing import Any

import av

__all__ = ["Vp8ToH264"]

_CLOCK_RATE = 90_000


class Vp8ToH264:
    def __init__(self, bitrate: int = 1_000_000, fps: int = 30) -> None:
        self._bitrate = bitrate
        self._fps = fps
        self._decoder: Any = av.CodecContext.create("vp8", "r")
        self._encoder: Any = None
        self._size: tuple[int, int] | None = None
        # True until the decoder has decoded a keyframe: the anchor must be asked for one.
        self.needs_source_keyframe = True

    def push(self, data: bytes, pts: int, force_keyframe: bool) -> list[tuple[bytes, int, bool]]:
        """One VP8 frame (``pts`` on the 90 kHz clock); returns H.264 access units (Annex-B)
        with their pts and keyframe flag."""
        try:
            frames = self._decoder.decode(av.Packet(data))
        except av.error.FFmpegError:
            self.needs_source_keyframe = True
            return []
        out: list[tuple[bytes, int, bool]] = []
        for frame in frames:
            self.needs_source_keyframe = False
            size = (int(frame.width), int(frame.height))
            if self._encoder is None or size != self._size:
                self._encoder = self._new_encoder(*size)
                self._size = size
                force_keyframe = True
            frame.pts = pts
            frame.time_base = Fraction(1, _CLOCK_RATE)
            frame.pict_type = (av.video.frame.PictureType.I if force_keyframe
                               else av.video.frame.PictureType.NONE)
            for packet in self._encoder.encode(frame):
                out.append((bytes(packet), int(packet.pts if packet.pts is not None else pts),
                            bool(packet.is_keyframe)))
        return out

    def _new_encoder(self, width: int, height: int) -> Any:
        encoder: Any = av.CodecContext.create("libx264", "w")
        encoder.width, encoder.height = width, height
        encoder.pix_fmt = "yuv420p"
        encoder.time_base = Fraction(1, _CLOCK_RATE)
        encoder.framerate = Fraction(self._fps, 1)
        encoder.bit_rate = self._bitrate
        # Keyframes only when asked (the segmenter's cadence), never on their own.
        encoder.gop_size = 10 * self._fps
        encoder.options = {"preset": "ultrafast", "tune": "zerolatency",
                           "profile": "baseline",
                           "x264-params": "repeat-headers=1:scenecut=0:keyint=300"}
        return encoder
