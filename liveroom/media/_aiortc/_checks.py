"""The checks ``liveroom doctor`` and the test suite run on aiortc.

Each reads ``aiortc.__version__``, attributes, signatures, a peer connection built here (never
connected) or the names compiled code uses: never a source file, so they hold on an install
without ``.py`` sources. The tests read aiortc's sources besides
(``tests/media/test_aiortc_internals.py``).
"""

from __future__ import annotations

import asyncio
import inspect
import queue
from typing import Any

import aiortc
from aiortc import RTCPeerConnection, RTCRtpReceiver, RTCRtpSender, RTCRtpTransceiver

from ...doctor import Check
from ..exceptions import AiortcIncompatible
from ._pins import check_aiortc_version, installed_version
from ._receiver import DECODER_QUEUE_ATTR, DECODER_THREAD_ATTR
from ._sender import ENCODER_ATTR

__all__ = ["check_aiortc", "checks"]


def _fail(detail: str) -> AiortcIncompatible:
    return AiortcIncompatible(installed_version(), detail)


def _check_signatures() -> None:
    """The private (and public) methods the relay calls or replaces, with their parameters."""
    problems: list[str] = []
    expectations: list[tuple[Any, str, list[str]]] = [
        (RTCRtpReceiver, "_send_rtcp_pli", ["self", "media_ssrc"]),
        (RTCRtpReceiver, "_handle_rtp_packet", ["self", "packet", "arrival_time_ms"]),
        (RTCRtpReceiver, "receive", ["self", "parameters"]),
        (RTCRtpReceiver, "getSynchronizationSources", ["self"]),
        (RTCRtpSender, "_send_keyframe", ["self"]),
        (RTCRtpSender, "_next_encoded_frame", ["self", "codec"]),
        (RTCRtpTransceiver, "setCodecPreferences", ["self", "codecs"]),
    ]
    for owner, name, parameters in expectations:
        member = getattr(owner, name, None)
        if member is None:
            problems.append(f"{owner.__name__}.{name} is gone")
            continue
        actual = list(inspect.signature(member).parameters)
        if actual != parameters:
            problems.append(f"{owner.__name__}.{name}{tuple(actual)} != {tuple(parameters)}")
    worker = getattr(aiortc.rtcrtpreceiver, "decoder_worker", None)
    if worker is None or list(inspect.signature(worker).parameters) != [
        "loop", "input_q", "output_q", "decode_error",
    ]:
        problems.append("rtcrtpreceiver.decoder_worker(loop, input_q, output_q, decode_error)")
    if problems:
        raise _fail("; ".join(problems))


def _uses(function: Any, *names: str) -> bool:
    return set(names) <= set(function.__code__.co_names)


def _check_compiled_paths() -> None:
    """The paths the relay's replacements sit on, read from the compiled code: the receiver
    hands frames to its decoder queue and builds its decoder thread on it, the sender calls
    ``_send_keyframe`` on PLI/FIR and packs pre-encoded packets with the encoder it builds
    only when it has none."""
    problems = []
    if not _uses(RTCRtpReceiver._handle_rtp_packet, DECODER_QUEUE_ATTR, "put"):
        problems.append("RTCRtpReceiver no longer puts frames in its decoder queue")
    if not _uses(RTCRtpReceiver.receive, DECODER_QUEUE_ATTR, DECODER_THREAD_ATTR,
                 "decoder_worker"):
        problems.append("RTCRtpReceiver.receive no longer starts its decoder on the queue")
    if not _uses(RTCRtpSender._handle_rtcp_packet, "_send_keyframe", "target_bitrate"):
        problems.append("RTCRtpSender._handle_rtcp_packet no longer calls _send_keyframe()")
    if not _uses(RTCRtpSender._next_encoded_frame, ENCODER_ATTR, "get_encoder", "pack"):
        problems.append("RTCRtpSender no longer packs pre-encoded packets")
    if problems:
        raise _fail("; ".join(problems))


def _slot_problems(pc: RTCPeerConnection) -> list[str]:
    transceiver = pc.addTransceiver("video", direction="recvonly")
    receiver, sender = transceiver.receiver, transceiver.sender
    problems = []
    if not isinstance(getattr(receiver, DECODER_QUEUE_ATTR, None), queue.Queue):
        problems.append("RTCRtpReceiver has no decoder queue")
    if getattr(receiver, DECODER_THREAD_ATTR, "missing") is not None:
        problems.append("RTCRtpReceiver has no idle decoder thread slot")
    if getattr(sender, ENCODER_ATTR, "missing") is not None:
        problems.append("RTCRtpSender has no empty encoder slot")
    if not isinstance(getattr(transceiver, "_codecs", None), list):
        problems.append("RTCRtpTransceiver has no _codecs list")
    dtls = receiver.transport
    if not inspect.iscoroutinefunction(getattr(dtls, "_handle_rtp_data", None)):
        problems.append("RTCDtlsTransport has no _handle_rtp_data coroutine")
    if not hasattr(dtls.transport, "_connection"):
        problems.append("RTCIceTransport has no _connection")
    return problems


async def _slot_problems_on_a_loop() -> list[str]:
    pc = RTCPeerConnection()
    try:
        return _slot_problems(pc)
    finally:
        await pc.close()


def _check_slots() -> None:
    """A peer connection built here (never connected) has the private slots the relay reads
    and replaces."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        # aiortc's objects take the event loop they are built on: build them on one.
        problems = asyncio.run(_slot_problems_on_a_loop())
    else:
        problems = _slot_problems(RTCPeerConnection())  # never started: nothing to close
    if problems:
        raise _fail("; ".join(problems))


def check_aiortc() -> None:
    """Raise ``AiortcIncompatible`` unless the installed aiortc is a pinned version and passes
    every check of ``checks()``."""
    check_aiortc_version()
    _check_signatures()
    _check_compiled_paths()
    _check_slots()


def checks() -> list[Check]:
    return [
        Check("aiortc is a pinned version", check_aiortc_version),
        Check("aiortc's private methods keep their signatures", _check_signatures),
        Check("aiortc's receiver and sender take the paths the relay replaces",
              _check_compiled_paths),
        Check("aiortc's peer connection has the private slots the relay uses", _check_slots),
    ]
