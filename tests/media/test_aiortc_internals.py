"""The aiortc internals the relay relies on. If this fails after an aiortc upgrade, re-read
liveroom/media/_aiortc_internals.py against the new sources before widening the pin."""

from __future__ import annotations

import inspect

import aiortc
import pytest
from aiortc import RTCPeerConnection, RTCRtpReceiver, RTCRtpSender, RTCRtpTransceiver
from aiortc.codecs import get_encoder
from aiortc.codecs.h264 import H264Encoder
from aiortc.codecs.opus import OpusEncoder
from aiortc.codecs.vpx import Vp8Encoder

from liveroom.media import SUPPORTED_AIORTC_VERSIONS, AiortcIncompatible, MediaService
from liveroom.media import _aiortc_internals as internals
from liveroom.media._frames import make_frame

from .test_units import frame


def test_installed_aiortc_is_a_pinned_version_with_every_internal() -> None:
    assert aiortc.__version__ in SUPPORTED_AIORTC_VERSIONS
    internals.check_aiortc()  # the same check MediaService runs at start-up
    assert list(inspect.signature(RTCRtpReceiver._send_rtcp_pli).parameters) == [
        "self",
        "media_ssrc",
    ]
    assert callable(RTCRtpSender._send_keyframe)
    assert "_codecs" in inspect.getsource(RTCRtpTransceiver.__init__)
    source = inspect.getsource(RTCRtpReceiver.__init__)
    assert "self.__decoder_queue: queue.Queue = queue.Queue()" in source
    assert "self.__decoder_thread: Optional[threading.Thread] = None" in source


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
        tap = getattr(transceiver.receiver, internals._DECODER_QUEUE_ATTR)
        jitter_frame = type("JitterFrame", (), {"data": b"abc", "timestamp": 3000})()
        tap.put((object(), jitter_frame))
        assert received == [(3000, b"abc")]
        assert tap.qsize() == 0  # nothing was queued for the decoder thread
        tap.put(None)
        assert tap.get_nowait() is None  # the stop signal still reaches the decoder thread
        setattr(transceiver.receiver, internals._DECODER_THREAD_ATTR, object())  # started
        with pytest.raises(AiortcIncompatible):
            internals.install_encoded_frame_tap(transceiver.receiver, lambda *args: None)
        setattr(transceiver.receiver, internals._DECODER_THREAD_ATTR, None)
    finally:
        await pc.close()


def test_keyframe_requests_from_a_viewer_reach_the_relay() -> None:
    calls: list[str] = []
    sender = type("Sender", (), {"_send_keyframe": lambda self: calls.append("aiortc")})()
    internals.on_keyframe_request(sender, lambda: calls.append("relay"))
    sender._send_keyframe()
    assert calls == ["relay"]
    assert frame(keyframe=True).keyframe is True
