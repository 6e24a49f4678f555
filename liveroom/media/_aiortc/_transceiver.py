"""The codec a transceiver negotiated.

Relied on (aiortc 1.16.0, ``aiortc/rtcrtptransceiver.py``): ``RTCRtpTransceiver._codecs``, the
codecs negotiated for the transceiver, the one the remote sends with first, RTX among them.
"""

from __future__ import annotations

from typing import Any

__all__ = ["negotiated_codec"]


def negotiated_codec(transceiver: Any) -> Any | None:
    """The codec the remote sends with on ``transceiver`` (its first negotiated codec that is
    not RTX); None before negotiation."""
    for codec in transceiver._codecs:
        if codec.mimeType.lower() != f"{transceiver.kind}/rtx":
            return codec
    return None
