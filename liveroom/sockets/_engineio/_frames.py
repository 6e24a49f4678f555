"""Server-to-client websocket frames, built by hand so one frame can be written to many sockets
(RFC 6455, 5.2: unmasked, unfragmented)."""

from __future__ import annotations

import struct

__all__ = ["text_frame", "websocket_frame"]


def websocket_frame(data: str | bytes) -> bytes:
    """The frame of one message: a text frame for ``str``, a binary frame for ``bytes``."""
    if isinstance(data, str):
        return text_frame(data.encode())
    return _frame(0x82, data)  # FIN + binary


def text_frame(payload: bytes) -> bytes:
    """``websocket_frame`` of a text message already encoded as UTF-8."""
    return _frame(0x81, payload)  # FIN + text


_SHORT_HEADER = struct.Struct("!BB").pack
_MEDIUM_HEADER = struct.Struct("!BBH").pack
_LONG_HEADER = struct.Struct("!BBQ").pack


def _frame(first: int, payload: bytes) -> bytes:
    size = len(payload)
    if size < 126:
        return _SHORT_HEADER(first, size) + payload
    if size < 1 << 16:
        return _MEDIUM_HEADER(first, 126, size) + payload
    return _LONG_HEADER(first, 127, size) + payload
