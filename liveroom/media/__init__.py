"""Media relay: the anchor's WebRTC broadcast in, encoded frames forwarded to viewers out.

No re-encoding: the broadcaster's VP8/H.264 and Opus frames are tapped after aiortc's jitter
buffer and handed, as ``av.Packet``, to every viewer's sender, which only packetizes them.
Transport-agnostic: the Socket.IO signaling lives in ``liveroom``.
"""

from ._aiortc import SUPPORTED_AIORTC_VERSIONS
from ._broadcast import FrameTap
from ._config import RELAY_USER_ID, IceConfig, browser_ice_servers
from ._frames import EncodedFrame
from ._service import MediaService
from .exceptions import (
    AiortcIncompatible,
    InvalidOffer,
    MediaClosed,
    MediaError,
    NotBroadcasting,
    NotLive,
    SeatsFull,
    UnsupportedCodec,
)

__all__ = [
    "RELAY_USER_ID",
    "SUPPORTED_AIORTC_VERSIONS",
    "AiortcIncompatible",
    "EncodedFrame",
    "FrameTap",
    "IceConfig",
    "InvalidOffer",
    "MediaClosed",
    "MediaError",
    "MediaService",
    "NotBroadcasting",
    "NotLive",
    "SeatsFull",
    "UnsupportedCodec",
    "browser_ice_servers",
]
