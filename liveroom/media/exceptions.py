"""Errors raised by the media relay.

Tree::

    MediaError                      root; code "media_error", HTTP 500
    ├── InvalidOffer                the SDP offer is missing, malformed or not an offer (400)
    │   └── UnsupportedCodec        the viewer cannot receive the broadcaster's codec (422)
    ├── NotLive                     no broadcast in that room (409)
    ├── SeatsFull                   every WebRTC seat of the room is taken: watch LL-HLS (409)
    ├── NotBroadcasting             the offer sends no audio or video we can forward (400)
    ├── MediaClosed                 the service is shutting down (503)
    └── AiortcIncompatible          the installed aiortc is not a version the relay was checked
                                    against (500, raised at start-up, never per request)

Every exception carries the data a caller needs to explain it (room id, codec, reason).
"""

from __future__ import annotations

__all__ = [
    "AiortcIncompatible",
    "InvalidOffer",
    "MediaClosed",
    "MediaError",
    "NotBroadcasting",
    "NotLive",
    "SeatsFull",
    "UnsupportedCodec",
]


class MediaError(Exception):
    code: str = "media_error"
    http_status: int = 500


class InvalidOffer(MediaError):
    code = "invalid_offer"
    http_status = 400

    def __init__(self, reason: str) -> None:
        super().__init__(f"invalid SDP offer: {reason}")
        self.reason = reason


class UnsupportedCodec(InvalidOffer):
    code = "unsupported_codec"
    http_status = 422

    def __init__(self, room_id: str, mime_type: str) -> None:
        super().__init__(f"the offer cannot receive {mime_type}, which room {room_id} is sent in")
        self.room_id = room_id
        self.mime_type = mime_type


class NotLive(MediaError):
    code = "not_live"
    http_status = 409

    def __init__(self, room_id: str) -> None:
        super().__init__(f"room {room_id} has no live broadcast")
        self.room_id = room_id


class NotBroadcasting(MediaError):
    code = "not_broadcasting"
    http_status = 400

    def __init__(self, room_id: str, reason: str) -> None:
        super().__init__(f"the offer for room {room_id} sends nothing to relay: {reason}")
        self.room_id = room_id
        self.reason = reason


class MediaClosed(MediaError):
    code = "media_closed"
    http_status = 503

    def __init__(self) -> None:
        super().__init__("the media relay is shutting down")


class AiortcIncompatible(MediaError):
    code = "media_unavailable"
    http_status = 500

    def __init__(self, version: str, detail: str) -> None:
        super().__init__(f"aiortc {version} is not supported by the media relay: {detail}")
        self.version = version
        self.detail = detail


class SeatsFull(MediaError):
    code = "seats_full"
    http_status = 409

    def __init__(self, room_id: str, seats: int) -> None:
        super().__init__(f"all {seats} WebRTC seats of room {room_id} are taken; watch the "
                         "LL-HLS stream (/hls/{room}/index.m3u8)")
        self.room_id = room_id
        self.seats = seats
