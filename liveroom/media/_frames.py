"""Encoded frames as they travel from the broadcaster's receiver to every viewer's sender."""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import av

__all__ = ["EncodedFrame", "is_keyframe", "make_frame"]

_H264_IDR = 5
_H264_SPS = 7


@dataclass(frozen=True, slots=True)
class EncodedFrame:
    """One encoded frame, shared read-only by every viewer of a room.

    ``packet`` is what a viewer's ``RTCRtpSender`` packetizes without re-encoding; it is built
    once per frame, not once per viewer.
    """

    kind: str
    mime_type: str
    packet: av.Packet[Any]
    keyframe: bool
    size: int
    received_ms: int


def is_keyframe(mime_type: str, data: bytes) -> bool:
    """Whether a viewer can start decoding at this frame.

    Audio frames always are. VP8: bit 0 of the first byte of the frame is 0 for key frames
    (RFC 6386, 9.1). H.264: the access unit carries an IDR slice or an SPS (Annex-B, as
    aiortc's depayloader writes it).
    """
    mime = mime_type.lower()
    if mime.startswith("audio/"):
        return True
    if not data:
        return False
    if mime == "video/vp8":
        return data[0] & 0x01 == 0
    if mime == "video/h264":
        position = data.find(b"\x00\x00\x01")
        while position != -1 and position + 3 < len(data):
            nal_type = data[position + 3] & 0x1F
            if nal_type in (_H264_IDR, _H264_SPS):
                return True
            position = data.find(b"\x00\x00\x01", position + 3)
        return False
    return False


def make_frame(
    kind: str, mime_type: str, clock_rate: int, timestamp: int, data: bytes, received_ms: int
) -> EncodedFrame:
    packet = av.Packet(data)
    packet.pts = timestamp
    packet.dts = timestamp
    packet.time_base = Fraction(1, clock_rate)
    return EncodedFrame(
        kind=kind,
        mime_type=mime_type,
        packet=packet,
        keyframe=is_keyframe(mime_type, data),
        size=len(data),
        received_ms=received_ms,
    )
