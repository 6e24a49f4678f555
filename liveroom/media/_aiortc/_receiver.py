"""The broadcaster's receivers: their encoded frames tapped before any decoder, and keyframe
requests sent upstream.

Relied on (aiortc 1.16.0, ``aiortc/rtcrtpreceiver.py``): ``RTCRtpReceiver.__decoder_queue`` (a
``queue.Queue``, name-mangled ``_RTCRtpReceiver__decoder_queue``): the receiver puts
``(codec, JitterFrame)`` there from the event loop once the jitter buffer has re-assembled a
frame, and a decoder thread started in ``receive()`` takes them off. The tap swaps the queue
before ``receive()`` runs (``__decoder_thread`` is still None then) for one that hands frames to
the relay instead, so nothing is decoded; the end-of-stream ``None`` still goes through, so the
idle decoder thread exits as usual. ``RTCRtpReceiver._send_rtcp_pli(media_ssrc)`` sends an RTCP
picture-loss indication, which makes the broadcaster send a keyframe; the public
``getSynchronizationSources()`` names the SSRCs heard from.
"""

from __future__ import annotations

import queue
from collections.abc import Callable
from typing import Any

from ..exceptions import AiortcIncompatible
from ._pins import installed_version

__all__ = ["EncodedFrameSink", "install_encoded_frame_tap", "send_picture_loss"]

DECODER_QUEUE_ATTR = "_RTCRtpReceiver__decoder_queue"
DECODER_THREAD_ATTR = "_RTCRtpReceiver__decoder_thread"

# (codec parameters, rtp timestamp mapped to start at 0, frame bytes as depayloaded)
EncodedFrameSink = Callable[[Any, int, bytes], None]


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

    Must run after ``setRemoteDescription`` and before the connection starts the receiver;
    raises ``AiortcIncompatible`` if the receiver has started or has no decoder queue.
    """
    if getattr(receiver, DECODER_THREAD_ATTR, "missing") is not None:
        raise AiortcIncompatible(
            installed_version(), "receiver already started or has no decoder thread slot"
        )
    if not isinstance(getattr(receiver, DECODER_QUEUE_ATTR, None), queue.Queue):
        raise AiortcIncompatible(installed_version(), "receiver has no decoder queue")
    setattr(receiver, DECODER_QUEUE_ATTR, _TapQueue(sink))


async def send_picture_loss(receiver: Any) -> int:
    """Send RTCP PLI for every SSRC the receiver heard from recently; returns how many."""
    ssrcs = [source.source for source in receiver.getSynchronizationSources()]
    for ssrc in ssrcs:
        await receiver._send_rtcp_pli(ssrc)
    return len(ssrcs)
