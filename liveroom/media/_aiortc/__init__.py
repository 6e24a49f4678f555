"""The fence around aiortc's internals: nothing else in the project reads or replaces a private
name of aiortc (``tests/test_internals_fence.py``).

aiortc has no public API for "give me the encoded frames" or "ask the sender for a keyframe",
so the relay reaches into a few private spots (see docs/media.md). Every replacement is made on
one object (a receiver's queue, a sender's handler or encoder, a transport's handler), never on
an aiortc class or module: nothing is patched process-wide.

Checked against **aiortc 1.16.0**; building a ``MediaService`` refuses any other version
(``aiortc.__version__``, nothing more). ``liveroom doctor`` and the test suite run the shape
checks of ``_checks.py``; ``tests/media/test_aiortc_internals.py`` also reads aiortc's sources.
Before a bump, re-read every module here against the new sources.

Private names relied on, by module:

- ``_receiver.py``: ``RTCRtpReceiver.__decoder_queue`` and ``__decoder_thread`` (name-mangled
  ``_RTCRtpReceiver__…``; the queue is swapped per receiver for the relay's tap before the
  receiver starts), ``RTCRtpReceiver._send_rtcp_pli(media_ssrc)``.
- ``_sender.py``: ``RTCRtpSender._send_keyframe()`` (replaced per sender), and for benchmarks
  ``RTCRtpSender.__encoder`` (``_RTCRtpSender__encoder``, filled per sender before its first
  frame).
- ``_transceiver.py``: ``RTCRtpTransceiver._codecs``.
- ``_transport.py`` (benchmarks only): ``RTCDtlsTransport._handle_rtp_data`` (replaced per
  transport), ``RTCIceTransport._connection`` and aioice's ``Connection._protocols``.

Behaviours of public names relied on: ``RTCRtpSender`` packetizes without encoding when its
track's ``recv()`` returns an ``av.Packet`` (``Encoder.pack``, with ``packet.pts`` and
``packet.time_base``); the receiver hands frames to its decoder queue from the event loop and
ends its decoder thread with ``None``; ``aiortc.codecs.get_encoder`` builds the encoder a sender
would build; encoders' ``target_bitrate`` property is what REMB sets.
"""

from ._checks import check_aiortc, checks
from ._pins import SUPPORTED_AIORTC_VERSIONS, check_aiortc_version
from ._receiver import EncodedFrameSink, install_encoded_frame_tap, send_picture_loss
from ._sender import hold_video_bitrate, on_keyframe_request
from ._transceiver import negotiated_codec
from ._transport import RtpHandler, receive_rtp_with, udp_sockets

__all__ = [
    "SUPPORTED_AIORTC_VERSIONS",
    "EncodedFrameSink",
    "RtpHandler",
    "check_aiortc",
    "check_aiortc_version",
    "checks",
    "hold_video_bitrate",
    "install_encoded_frame_tap",
    "negotiated_codec",
    "on_keyframe_request",
    "receive_rtp_with",
    "send_picture_loss",
    "udp_sockets",
]
