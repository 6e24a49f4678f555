"""Media relay: the anchor's WebRTC broadcast in, encoded frames forwarded to viewers out.

No re-encoding: the broadcaster's VP8/H.264 and Opus frames are tapped after aiortc's jitter
buffer and handed, as ``av.Packet``, to every viewer's sender, which only packetizes them.
Transport-agnostic: the Socket.IO signaling lives in ``liveroom``.
"""

from ._aiortc_internals import SUPPORTED_AIORTC_VERSIONS
from ._config import browser_ice_servers, ice_servers_from_settings
from ._service import MediaService
from .exceptions import (
    AiortcIncompatible,
    InvalidIceServer,
    InvalidOffer,
    MediaClosed,
    MediaError,
    NotBroadcasting,
    NotLive,
    UnsupportedCodec,
)

__all__ = [
    "SUPPORTED_AIORTC_VERSIONS",
    "AiortcIncompatible",
    "InvalidIceServer",
    "InvalidOffer",
    "MediaClosed",
    "MediaError",
    "MediaService",
    "NotBroadcasting",
    "NotLive",
    "UnsupportedCodec",
    "browser_ice_servers",
    "ice_servers_from_settings",
]
