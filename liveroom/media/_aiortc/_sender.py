"""The viewers' senders: keyframe requests routed to the relay, and (for benchmarks) an encoder
held at one bitrate.

Relied on (aiortc 1.16.0, ``aiortc/rtcrtpsender.py``): ``RTCRtpSender._send_keyframe()`` is
called on the sender for each PLI/FIR its remote end sends (``_handle_rtcp_packet``); with
pre-encoded packets aiortc ignores it, so the relay replaces it per sender with its own
callback. ``RTCRtpSender.__encoder`` (name-mangled ``_RTCRtpSender__encoder``) is None until the
first frame, when ``_next_encoded_frame`` builds one with ``aiortc.codecs.get_encoder(codec)``
unless one is there; REMB from the remote end sets the encoder's ``target_bitrate``. Public
behaviour relied on as well: the sender packetizes without encoding when its track's ``recv()``
returns an ``av.Packet`` (``Encoder.pack``), using ``packet.pts`` and ``packet.time_base``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aiortc.codecs import get_encoder

from ..exceptions import AiortcIncompatible
from ._pins import installed_version
from ._transceiver import negotiated_codec

__all__ = ["hold_video_bitrate", "on_keyframe_request"]

ENCODER_ATTR = "_RTCRtpSender__encoder"


def on_keyframe_request(sender: Any, callback: Callable[[], None]) -> Callable[[], None]:
    """Call ``callback`` instead of aiortc's own handler when the remote end of ``sender`` asks
    for a keyframe (PLI/FIR); returns the handler it replaces, for a caller that chains it."""
    previous: Callable[[], None] = sender._send_keyframe
    sender._send_keyframe = callback
    return previous


def _remb_ignored(encoder: Any, bitrate: int) -> None:
    """The held encoder's ``target_bitrate`` setter: REMB does not move it."""


def hold_video_bitrate(transceiver: Any, bitrate: int) -> None:
    """Make ``transceiver``'s sender encode video at ``bitrate`` bits per second from its first
    frame on, whatever the remote end's REMB says (aiortc starts every encoder at its default
    bitrate and follows REMB). For benchmarks comparing re-encoding viewers with forwarded
    ones; raises ``ValueError`` for a bitrate the encoder refuses, and ``AiortcIncompatible``
    if the sender already encodes or its codec has no target bitrate. Run it after
    negotiation, before media flows.
    """
    codec = negotiated_codec(transceiver)
    sender = transceiver.sender
    if codec is None or getattr(sender, ENCODER_ATTR, "missing") is not None:
        raise AiortcIncompatible(installed_version(),
                                 "sender not negotiated, already encoding, or no encoder slot")
    encoder_class = type(get_encoder(codec))
    target = getattr(encoder_class, "target_bitrate", None)
    if not isinstance(target, property) or target.fget is None or target.fset is None:
        raise AiortcIncompatible(installed_version(),
                                 f"{encoder_class.__name__} has no settable target_bitrate")
    held_class = type(f"Held{encoder_class.__name__}", (encoder_class,),
                      {"target_bitrate": property(target.fget, _remb_ignored)})
    encoder = held_class()
    target.fset(encoder, bitrate)
    if target.fget(encoder) != bitrate:
        raise ValueError(f"{encoder_class.__name__} does not encode at {bitrate} bit/s")
    setattr(sender, ENCODER_ATTR, encoder)
