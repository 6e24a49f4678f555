"""Every aiortc internal the relay depends on, in one place, pinned by version.

aiortc has no public API for "give me the encoded frames" or "ask the sender for a keyframe",
so the relay reaches into four private spots (see docs/media.md):

1. ``RTCRtpReceiver.__decoder_queue`` (a ``queue.Queue``): the receiver puts
   ``(codec, JitterFrame)`` there from the event loop once the jitter buffer has re-assembled a
   frame; a decoder thread started in ``receive()`` takes them off. We swap the queue before
   ``receive()`` runs for one that hands frames to the relay instead, so nothing is decoded.
   The end-of-stream ``None`` still goes through, so the idle decoder thread exits as usual.
2. ``RTCRtpReceiver._send_rtcp_pli(media_ssrc)``: sends an RTCP picture-loss indication, which
   makes the broadcaster send a keyframe.
3. ``RTCRtpSender._send_keyframe()``: called when a viewer sends PLI/FIR. With pre-encoded
   packets aiortc ignores it, so we replace it per sender with our own callback.
4. ``RTCRtpTransceiver._codecs``: the codecs negotiated for the transceiver, first one is the
   one the remote sends with.

Public behaviour relied on as well: ``RTCRtpSender`` packetizes without encoding when its track's
``recv()`` returns an ``av.Packet`` (``Encoder.pack``), using ``packet.pts`` and
``packet.time_base``.

``tests/media/test_aiortc_internals.py`` checks each of these, so an aiortc upgrade fails loudly
instead of silently decoding again or dropping keyframe requests.
"""

from __future__ import annotations

import inspect
import queue
from collections.abc import Callable
from typing import Any

import aiortc
from aiortc import RTCRtpReceiver, RTCRtpSender, RTCRtpTransceiver

from .exceptions import AiortcIncompatible

__all__ = [
    "SUPPORTED_AIORTC_VERSIONS",
    "EncodedFrameSink",
    "check_aiortc",
    "install_encoded_frame_tap",
    "negotiated_codec",
    "on_keyframe_request",
    "send_picture_loss",
]

SUPPORTED_AIORTC_VERSIONS = frozenset({"1.16.0"})

_DECODER_QUEUE_ATTR = "_RTCRtpReceiver__decoder_queue"
_DECODER_THREAD_ATTR = "_RTCRtpReceiver__decoder_thread"

# (codec parameters, rtp timestamp mapped to start at 0, frame bytes as depayloaded)
EncodedFrameSink = Callable[[Any, int, bytes], None]


def check_aiortc() -> None:
    """Raise ``AiortcIncompatible`` unless the installed aiortc has what the relay uses."""
    version = str(aiortc.__version__)
    if version not in SUPPORTED_AIORTC_VERSIONS:
        raise AiortcIncompatible(
            version,
            f"supported versions are {sorted(SUPPORTED_AIORTC_VERSIONS)}; re-check "
            "liveroom/media/_aiortc_internals.py against the new sources first",
        )
    problems = list(_missing_internals())
    if problems:
        raise AiortcIncompatible(version, "; ".join(problems))


def _missing_internals() -> list[str]:
    problems: list[str] = []
    expectations: list[tuple[object, str, list[str] | None]] = [
        (RTCRtpReceiver, "_send_rtcp_pli", ["self", "media_ssrc"]),
        (RTCRtpReceiver, "_handle_rtp_packet", ["self", "packet", "arrival_time_ms"]),
        (RTCRtpReceiver, "receive", ["self", "parameters"]),
        (RTCRtpReceiver, "getSynchronizationSources", ["self"]),
        (RTCRtpSender, "_send_keyframe", ["self"]),
        (RTCRtpSender, "_next_encoded_frame", ["self", "codec"]),
        (RTCRtpTransceiver, "setCodecPreferences", ["self", "codecs"]),
    ]
    for owner, name, params in expectations:
        member = getattr(owner, name, None)
        if member is None:
            problems.append(f"{owner.__name__}.{name} is gone")  # type: ignore[attr-defined]
            continue
        if params is not None:
            actual = list(inspect.signature(member).parameters)
            if actual != params:
                problems.append(
                    f"{owner.__name__}.{name}{tuple(actual)} != {tuple(params)}"  # type: ignore[attr-defined]
                )
    worker = getattr(aiortc.rtcrtpreceiver, "decoder_worker", None)
    if worker is None or list(inspect.signature(worker).parameters) != [
        "loop",
        "input_q",
        "output_q",
        "decode_error",
    ]:
        problems.append("rtcrtpreceiver.decoder_worker(loop, input_q, output_q, decode_error)")
    source = inspect.getsource(RTCRtpReceiver)
    for needle in (
        "self.__decoder_queue.put((codec, encoded_frame))",
        "self.__decoder_queue,",
        "self.__decoder_queue.put(None)",
    ):
        if needle not in source:
            problems.append(f"RTCRtpReceiver no longer does {needle!r}")
    if "self._send_keyframe()" not in inspect.getsource(RTCRtpSender._handle_rtcp_packet):
        problems.append("RTCRtpSender._handle_rtcp_packet no longer calls _send_keyframe()")
    if "self.__encoder.pack(data)" not in inspect.getsource(RTCRtpSender._next_encoded_frame):
        problems.append("RTCRtpSender no longer packs pre-encoded packets")
    return problems


class _TapQueue(queue.Queue[Any]):
    """Stands in for the receiver's decoder queue: frames go to the relay, ``None`` (stop) to
    the decoder thread so it exits."""

    def __init__(self, sink: EncodedFrameSink) -> None:
        super().__init__()
        self._sink = sink

    def put(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        if item is None:
            super().put(None, block, timeout)
            return
        codec, encoded_frame = item
        self._sink(codec, int(encoded_frame.timestamp), bytes(encoded_frame.data))


def install_encoded_frame_tap(receiver: Any, sink: EncodedFrameSink) -> None:
    """Route the receiver's re-assembled encoded frames to ``sink`` instead of a decoder.

    Must run after ``setRemoteDescription`` and before the connection starts the receiver.
    """
    if getattr(receiver, _DECODER_THREAD_ATTR, "missing") is not None:
        raise AiortcIncompatible(
            str(aiortc.__version__), "receiver already started or has no decoder thread slot"
        )
    if not isinstance(getattr(receiver, _DECODER_QUEUE_ATTR, None), queue.Queue):
        raise AiortcIncompatible(str(aiortc.__version__), "receiver has no decoder queue")
    setattr(receiver, _DECODER_QUEUE_ATTR, _TapQueue(sink))


async def send_picture_loss(receiver: Any) -> int:
    """Send RTCP PLI for every SSRC the receiver heard from recently; returns how many."""
    ssrcs = [source.source for source in receiver.getSynchronizationSources()]
    for ssrc in ssrcs:
        await receiver._send_rtcp_pli(ssrc)
    return len(ssrcs)


def on_keyframe_request(sender: Any, callback: Callable[[], None]) -> None:
    """Call ``callback`` when the remote end of ``sender`` asks for a keyframe (PLI/FIR)."""
    sender._send_keyframe = callback


def negotiated_codec(transceiver: Any) -> Any | None:
    """The codec the remote sends with on ``transceiver`` (first non-RTX negotiated codec)."""
    for codec in transceiver._codecs:
        if codec.mimeType.lower() != f"{transceiver.kind}/rtx":
            return codec
    return None
