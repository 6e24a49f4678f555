"""Errors of the LL-HLS packager and its HTTP reads.

Tree::

    HlsError                    root; code "hls_error", HTTP 500
    ├── StreamNotFound          no live HLS stream for that room, or no such file in it (404)
    ├── NoReplay                the room has no recorded broadcast that ended (404)
    └── BadHlsRequest           a malformed name or ``_HLS_msn``/``_HLS_part``, or one too far in
                                the future to wait for (400)
"""

from __future__ import annotations

__all__ = ["BadHlsRequest", "HlsError", "NoReplay", "StreamNotFound"]


class HlsError(Exception):
    code: str = "hls_error"
    http_status: int = 500


class StreamNotFound(HlsError):
    code = "stream_not_found"
    http_status = 404

    def __init__(self, room_id: str, name: str | None = None) -> None:
        what = f"{name!r} of room {room_id!r}" if name else f"room {room_id!r}"
        super().__init__(f"no live HLS stream has {what}")
        self.room_id = room_id
        self.name = name


class BadHlsRequest(HlsError):
    code = "bad_hls_request"
    http_status = 400

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class NoReplay(HlsError):
    code = "no_replay"
    http_status = 404

    def __init__(self, room_id: str) -> None:
        super().__init__(f"room {room_id!r} has no replay (nothing recorded, recording off, or "
                         "its broadcast has not ended)")
        self.room_id = room_id
