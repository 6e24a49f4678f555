"""A peer connection's transports, for benchmarks: decrypted RTP handed to a counter instead of
aiortc's receivers, and the UDP sockets underneath.

Relied on (aiortc 1.16.0): ``RTCDtlsTransport._handle_rtp_data(data, arrival_time_ms)``, the
coroutine the DTLS transport awaits for each decrypted RTP packet (it parses and routes it to a
receiver); ``RTCIceTransport._connection``, the aioice ``Connection``, and that connection's
``_protocols`` (one per local candidate, each with its datagram ``transport``).
"""

from __future__ import annotations

import inspect
import socket
from collections.abc import Awaitable, Callable
from typing import Any

from ..exceptions import AiortcIncompatible
from ._pins import installed_version

__all__ = ["RtpHandler", "receive_rtp_with", "udp_sockets"]

# (decrypted RTP packet, arrival time in ms)
RtpHandler = Callable[[bytes, int], Awaitable[None]]


def _dtls_transports(pc: Any) -> list[Any]:
    # With bundle one DTLS transport carries every kind.
    unique = {id(t.receiver.transport): t.receiver.transport for t in pc.getTransceivers()}
    return list(unique.values())


def receive_rtp_with(pc: Any, handler: RtpHandler) -> None:
    """Hand every decrypted RTP packet of ``pc`` to ``handler`` instead of aiortc's receivers:
    no parsing, routing, jitter buffering or decoding (SRTP is still decrypted)."""
    for transport in _dtls_transports(pc):
        original = getattr(transport, "_handle_rtp_data", None)
        if original is None or not inspect.iscoroutinefunction(original) or list(
                inspect.signature(original).parameters) != ["data", "arrival_time_ms"]:
            raise AiortcIncompatible(installed_version(),
                                     "RTCDtlsTransport._handle_rtp_data(data, arrival_time_ms)")
        transport._handle_rtp_data = handler


def udp_sockets(pc: Any) -> list[socket.socket]:
    """The UDP sockets ``pc``'s ICE connections receive on (once ICE has gathered)."""
    sockets: dict[int, socket.socket] = {}
    for transport in _dtls_transports(pc):
        connection = getattr(transport.transport, "_connection", None)
        protocols = getattr(connection, "_protocols", None)
        if protocols is None:
            raise AiortcIncompatible(installed_version(),
                                     "RTCIceTransport._connection._protocols is gone")
        for protocol in protocols:
            sock = protocol.transport.get_extra_info("socket")
            sockets[sock.fileno()] = sock
    return list(sockets.values())
