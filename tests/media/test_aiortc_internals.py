"""The aiortc internals the relay relies on (liveroom/media/_aiortc/). If this fails after an
aiortc upgrade, re-read the subpackage against the new sources before widening the pin."""

from __future__ import annotations

import inspect
import socket
from typing import Any

import aiortc
import pytest
from aiortc import (
    RTCPeerConnection,
    RTCRtpReceiver,
    RTCRtpSender,
    RTCRtpTransceiver,
    RTCSessionDescription,
)
from aiortc.codecs import get_encoder
from aiortc.codecs.h264 import H264Encoder
from aiortc.codecs.opus import OpusEncoder
from aiortc.codecs.vpx import Vp8Encoder
from aiortc.mediastreams import VideoStreamTrack

from liveroom.doctor import Check
from liveroom.media import SUPPORTED_AIORTC_VERSIONS, AiortcIncompatible, MediaService
from liveroom.media import _aiortc as internals
from liveroom.media._aiortc._receiver import DECODER_QUEUE_ATTR, DECODER_THREAD_ATTR
from liveroom.media._aiortc._sender import ENCODER_ATTR
from liveroom.media._frames import make_frame

from .test_units import frame


@pytest.mark.parametrize("check", internals.checks(), ids=lambda check: check.name)
def test_what_liveroom_doctor_checks_holds(check: Check) -> None:
    check.run()


def test_installed_aiortc_is_a_pinned_version_with_every_internal() -> None:
    assert aiortc.__version__ in SUPPORTED_AIORTC_VERSIONS
    internals.check_aiortc()  # every check liveroom doctor runs
    assert list(inspect.signature(RTCRtpReceiver._send_rtcp_pli).parameters) == [
        "self",
        "media_ssrc",
    ]
    assert callable(RTCRtpSender._send_keyframe)
    assert "_codecs" in inspect.getsource(RTCRtpTransceiver.__init__)
    source = inspect.getsource(RTCRtpReceiver.__init__)
    assert "self.__decoder_queue: queue.Queue = queue.Queue()" in source
    assert "self.__decoder_thread: Optional[threading.Thread] = None" in source


def test_the_sources_still_do_what_the_relay_replaces() -> None:
    receiver = inspect.getsource(RTCRtpReceiver)
    for line in ("self.__decoder_queue.put((codec, encoded_frame))",  # the tap's input
                 "self.__decoder_queue,",  # the decoder thread reads the same queue
                 "self.__decoder_queue.put(None)"):  # and stops on None
        assert line in receiver, line
    assert "self._send_keyframe()" in inspect.getsource(RTCRtpSender._handle_rtcp_packet)
    next_frame = inspect.getsource(RTCRtpSender._next_encoded_frame)
    assert "self.__encoder.pack(data)" in next_frame
    # A held encoder is used because the sender builds one only when it has none.
    assert "if self.__encoder is None:\n            self.__encoder = get_encoder(codec)" in (
        next_frame)
    assert "await self._handle_rtp_data(data, arrival_time_ms=arrival_time_ms)" in (
        inspect.getsource(aiortc.rtcdtlstransport.RTCDtlsTransport))


def test_an_unknown_aiortc_version_refuses_to_start(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(aiortc, "__version__", "1.99.0")
    with pytest.raises(AiortcIncompatible) as caught:
        MediaService()
    assert caught.value.version == "1.99.0"


def test_a_missing_internal_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delattr(RTCRtpReceiver, "_send_rtcp_pli")
    with pytest.raises(AiortcIncompatible, match="_send_rtcp_pli"):
        internals.check_aiortc()


@pytest.mark.parametrize(
    ("mime", "encoder_type", "data"),
    [
        ("video/VP8", Vp8Encoder, b"\x00vp8 keyframe bytes"),
        ("video/H264", H264Encoder, b"\x00\x00\x00\x01\x67sps\x00\x00\x00\x01\x65idr"),
        ("audio/opus", OpusEncoder, b"\xfc opus"),
    ],
)
def test_encoders_pack_pre_encoded_packets_without_encoding(
    mime: str, encoder_type: type, data: bytes
) -> None:
    kind = mime.split("/")[0]
    codec = next(c for c in RTCRtpSender.getCapabilities(kind).codecs if c.mimeType == mime)
    clock_rate = codec.clockRate
    encoded = make_frame(kind, mime, clock_rate, clock_rate // 2, data, 0)
    params = aiortc.RTCRtpCodecParameters(
        mimeType=mime, clockRate=clock_rate, payloadType=96, channels=codec.channels
    )
    encoder = get_encoder(params)
    assert isinstance(encoder, encoder_type)
    payloads, timestamp = encoder.pack(encoded.packet)
    assert payloads
    assert timestamp == clock_rate // 2
    assert data.split(b"\x00\x00\x00\x01")[-1] in b"".join(payloads)


async def test_tap_takes_over_the_decoder_queue_only_before_the_receiver_starts() -> None:
    pc = RTCPeerConnection()
    try:
        transceiver = pc.addTransceiver("video", direction="recvonly")
        received: list[tuple[int, bytes]] = []
        internals.install_encoded_frame_tap(
            transceiver.receiver, lambda codec, ts, data: received.append((ts, data))
        )
        tap = getattr(transceiver.receiver, DECODER_QUEUE_ATTR)
        jitter_frame = type("JitterFrame", (), {"data": b"abc", "timestamp": 3000})()
        tap.put((object(), jitter_frame))
        assert received == [(3000, b"abc")]
        assert tap.qsize() == 0  # nothing was queued for the decoder thread
        tap.put(None)
        assert tap.get_nowait() is None  # the stop signal still reaches the decoder thread
        setattr(transceiver.receiver, DECODER_THREAD_ATTR, object())  # started
        with pytest.raises(AiortcIncompatible):
            internals.install_encoded_frame_tap(transceiver.receiver, lambda *args: None)
        setattr(transceiver.receiver, DECODER_THREAD_ATTR, None)
    finally:
        await pc.close()


def test_keyframe_requests_from_a_viewer_reach_the_relay() -> None:
    calls: list[str] = []
    sender = type("Sender", (), {"_send_keyframe": lambda self: calls.append("aiortc")})()
    aiortcs = internals.on_keyframe_request(sender, lambda: calls.append("relay"))
    sender._send_keyframe()
    assert calls == ["relay"]
    aiortcs()
    assert calls == ["relay", "aiortc"]
    assert frame(keyframe=True).keyframe is True


async def _negotiated() -> tuple[RTCPeerConnection, RTCPeerConnection]:
    """A viewer offering to receive video, and a sender that answered it (never connected)."""
    viewer, relay = RTCPeerConnection(), RTCPeerConnection()
    viewer.addTransceiver("video", direction="recvonly")
    await viewer.setLocalDescription(await viewer.createOffer())
    relay.addTrack(VideoStreamTrack())
    await relay.setRemoteDescription(viewer.localDescription)
    await relay.setLocalDescription(await relay.createAnswer())
    await viewer.setRemoteDescription(
        RTCSessionDescription(sdp=relay.localDescription.sdp, type="answer"))
    return viewer, relay


async def test_a_held_bitrate_is_the_encoders_from_the_first_frame_and_remb_does_not_move_it(
) -> None:
    viewer, relay = await _negotiated()
    try:
        (transceiver,) = relay.getTransceivers()
        with pytest.raises(ValueError, match="5000000"):
            internals.hold_video_bitrate(transceiver, 5_000_000)  # past the encoder's maximum
        internals.hold_video_bitrate(transceiver, 1_000_000)
        encoder: Any = getattr(transceiver.sender, ENCODER_ATTR)
        assert isinstance(encoder, Vp8Encoder)
        assert encoder.target_bitrate == 1_000_000
        encoder.target_bitrate = 300_000  # what a REMB from the viewer does
        assert encoder.target_bitrate == 1_000_000
        with pytest.raises(AiortcIncompatible):  # it has its encoder already
            internals.hold_video_bitrate(transceiver, 1_000_000)
    finally:
        await viewer.close()
        await relay.close()


async def test_rtp_goes_to_the_handler_instead_of_the_receivers_and_sockets_are_found() -> None:
    viewer, relay = await _negotiated()
    try:
        async def count(data: bytes, arrival_time_ms: int) -> None:
            pass

        internals.receive_rtp_with(viewer, count)
        assert all(t.receiver.transport._handle_rtp_data is count
                   for t in viewer.getTransceivers())
        sockets = internals.udp_sockets(viewer)
        assert sockets
        assert all(sock.type == socket.SOCK_DGRAM for sock in sockets)
    finally:
        await viewer.close()
        await relay.close()
