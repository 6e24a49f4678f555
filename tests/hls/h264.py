"""Media for the packager's tests: H.264 access units encoded once with libx264 (PyAV), Annex-B
with SPS/PPS before every IDR, as Chromium sends them over RTP; Opus frames as its microphone
sends them."""

from __future__ import annotations

import math
import struct
from fractions import Fraction
from typing import Any

import av

__all__ = ["encode", "encode_opus", "encode_vp8"]


def encode(count: int, *, keyframes: set[int], width: int = 320, height: int = 240
           ) -> list[tuple[bytes, bool]]:
    """``count`` frames at 30 fps; IDR exactly at the indexes in ``keyframes`` (and 0)."""
    encoder: Any = av.CodecContext.create("libx264", "w")
    encoder.width, encoder.height = width, height
    encoder.pix_fmt = "yuv420p"
    encoder.time_base = Fraction(1, 30)
    encoder.gop_size = 100_000
    encoder.options = {"preset": "ultrafast", "tune": "zerolatency", "profile": "baseline",
                       "x264-params": "repeat-headers=1:scenecut=0"}
    frames: list[tuple[bytes, bool]] = []
    for index in range(count):
        frame = av.VideoFrame(width, height, "yuv420p")
        shade = (index * 7) % 200 + 16
        frame.planes[0].update(bytes((shade + x) % 256 for x in range(width)) * height)
        frame.planes[1].update(bytes([128]) * frame.planes[1].buffer_size)
        frame.planes[2].update(bytes([128]) * frame.planes[2].buffer_size)
        frame.pts = index
        frame.pict_type = av.video.frame.PictureType.I if index in keyframes or index == 0 \
            else av.video.frame.PictureType.NONE
        for packet in encoder.encode(frame):
            frames.append((bytes(packet), bool(packet.is_keyframe)))
    for packet in encoder.encode(None):
        frames.append((bytes(packet), bool(packet.is_keyframe)))
    return frames


def encode_vp8(count: int, width: int = 320, height: int = 240) -> list[tuple[bytes, bool]]:
    """``count`` VP8 frames at 30 fps, one keyframe at the start only (as a browser sends
    them until asked)."""
    encoder: Any = av.CodecContext.create("libvpx", "w")
    encoder.width, encoder.height = width, height
    encoder.pix_fmt = "yuv420p"
    encoder.time_base = Fraction(1, 30)
    encoder.gop_size = 100_000
    encoder.options = {"deadline": "realtime", "cpu-used": "8"}
    frames: list[tuple[bytes, bool]] = []
    for index in range(count):
        frame = av.VideoFrame(width, height, "yuv420p")
        shade = (index * 7) % 200 + 16
        frame.planes[0].update(bytes((shade + x) % 256 for x in range(width)) * height)
        frame.planes[1].update(bytes([128]) * frame.planes[1].buffer_size)
        frame.planes[2].update(bytes([128]) * frame.planes[2].buffer_size)
        frame.pts = index
        for packet in encoder.encode(frame):
            frames.append((bytes(packet), bool(packet.is_keyframe)))
    for packet in encoder.encode(None):
        frames.append((bytes(packet), bool(packet.is_keyframe)))
    return frames


def encode_opus(seconds: float) -> list[bytes]:
    """20 ms Opus frames (48 kHz stereo) of a 440 Hz tone."""
    encoder: Any = av.CodecContext.create("libopus", "w")
    encoder.sample_rate, encoder.layout, encoder.format = 48_000, "stereo", "s16"
    encoder.time_base = Fraction(1, 48_000)
    packets: list[bytes] = []
    for index in range(int(seconds * 50)):
        frame = av.AudioFrame(format="s16", layout="stereo", samples=960)
        levels = [int(6000 * math.sin(2 * math.pi * 440 * (index * 960 + n) / 48_000))
                  for n in range(960)]
        frame.planes[0].update(b"".join(struct.pack("<hh", level, level) for level in levels))
        frame.sample_rate = 48_000
        frame.pts = index * 960
        frame.time_base = Fraction(1, 48_000)
        packets += [bytes(packet) for packet in encoder.encode(frame)]
    return packets
