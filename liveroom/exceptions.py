"""Errors raised by the liveroom edge and its room services.

    LiveroomError
    ├── InvalidInput            400 invalid_input      wrong type, missing field, bad value
    │   ├── PayloadTooLarge     413 payload_too_large
    │   ├── TextTooLong         400 text_too_long
    │   └── HostNotAllowed      400 host_not_allowed  a Host header not in LIVEROOM_ALLOWED_HOSTS
    ├── Unauthorized            401 unauthorized       no or bad token
    ├── Forbidden               403 forbidden          role or ownership check failed
    │   ├── Banned              403 banned
    │   └── Muted               403 muted
    ├── NotFound                404 not_found
    │   ├── UnknownRoom         404 unknown_room
    │   ├── UnknownProduct      404 unknown_product
    │   └── UnknownEvent        404 unknown_event     a Socket.IO event no one handles
    ├── NotInRoom               409 not_in_room
    ├── RoomEnded               409 room_ended
    ├── RequestTimeout          408 request_timeout   the request body did not arrive in time
    └── RateLimited             429 rate_limited
        ├── SlowMode            429 slow_mode
        └── TooManyConnections  429 too_many_connections  per client address

Every error has a public ``code`` and an ``http_status``; the edges turn them into
``{"ok": false, "error": {"code", "message"}}`` (Socket.IO) or ``{"error": {...}}`` (HTTP).
"""

from __future__ import annotations

__all__ = [
    "Banned",
    "Forbidden",
    "HostNotAllowed",
    "InvalidInput",
    "LiveroomError",
    "Muted",
    "NotFound",
    "NotInRoom",
    "PayloadTooLarge",
    "RateLimited",
    "RequestTimeout",
    "RoomEnded",
    "SlowMode",
    "TextTooLong",
    "TooManyConnections",
    "Unauthorized",
    "UnknownEvent",
    "UnknownProduct",
    "UnknownRoom",
]


class LiveroomError(Exception):
    code = "error"
    http_status = 400

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidInput(LiveroomError):
    code = "invalid_input"


class PayloadTooLarge(InvalidInput):
    code = "payload_too_large"
    http_status = 413

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"payload of {size} bytes exceeds the {limit}-byte limit")
        self.size = size
        self.limit = limit


class TextTooLong(InvalidInput):
    code = "text_too_long"

    def __init__(self, length: int, limit: int) -> None:
        super().__init__(f"text has {length} characters; the limit is {limit}")
        self.length = length
        self.limit = limit


class HostNotAllowed(InvalidInput):
    """A link (a QR code's) would be built from a ``Host`` header the server was not told to
    trust: set ``LIVEROOM_PUBLIC_URL``, or list the host in ``LIVEROOM_ALLOWED_HOSTS``."""

    code = "host_not_allowed"

    def __init__(self, host: str) -> None:
        super().__init__(f"host {host[:100]!r} is not an allowed host for links; the operator "
                         "sets LIVEROOM_PUBLIC_URL or LIVEROOM_ALLOWED_HOSTS")
        self.host = host


class Unauthorized(LiveroomError):
    code = "unauthorized"
    http_status = 401


class Forbidden(LiveroomError):
    code = "forbidden"
    http_status = 403


class Banned(Forbidden):
    code = "banned"

    def __init__(self, room_id: str) -> None:
        super().__init__(f"you are banned from room {room_id}")
        self.room_id = room_id


class Muted(Forbidden):
    code = "muted"

    def __init__(self, room_id: str, until_ms: int) -> None:
        super().__init__(f"you are muted in room {room_id}")
        self.room_id = room_id
        self.until_ms = until_ms


class NotFound(LiveroomError):
    code = "not_found"
    http_status = 404


class UnknownRoom(NotFound):
    code = "unknown_room"

    def __init__(self, room_id: str) -> None:
        super().__init__(f"no room {room_id!r}")
        self.room_id = room_id


class UnknownProduct(NotFound):
    code = "unknown_product"

    def __init__(self, product_id: str) -> None:
        super().__init__(f"no product {product_id!r}")
        self.product_id = product_id


class UnknownEvent(NotFound):
    """A client emitted an event name the server has no handler for, or one of Socket.IO's
    reserved names (``connect``, ``disconnect``), which only the protocol itself may raise."""

    code = "unknown_event"

    def __init__(self, event: str) -> None:
        super().__init__(f"no event named {event[:64]!r} (see docs/protocol.md)")
        self.event = event


class NotInRoom(LiveroomError):
    code = "not_in_room"
    http_status = 409

    def __init__(self, room_id: str) -> None:
        super().__init__(f"join room {room_id} first")
        self.room_id = room_id


class RoomEnded(LiveroomError):
    code = "room_ended"
    http_status = 409

    def __init__(self, room_id: str) -> None:
        super().__init__(f"room {room_id} has ended")
        self.room_id = room_id


class RequestTimeout(LiveroomError):
    code = "request_timeout"
    http_status = 408

    def __init__(self, timeout_s: float) -> None:
        super().__init__(f"the request body did not arrive within {timeout_s:g} s")
        self.timeout_s = timeout_s


class RateLimited(LiveroomError):
    code = "rate_limited"
    http_status = 429

    def __init__(self, message: str = "too many requests; slow down", retry_after_ms: int = 0):
        super().__init__(message)
        self.retry_after_ms = retry_after_ms


class SlowMode(RateLimited):
    code = "slow_mode"

    def __init__(self, room_id: str, retry_after_ms: int) -> None:
        super().__init__(
            f"slow mode in room {room_id}: wait {max(1, retry_after_ms // 1000)} s",
            retry_after_ms,
        )
        self.room_id = room_id


class TooManyConnections(RateLimited):
    """The client address already has ``limit`` requests or websockets open on this process."""

    code = "too_many_connections"

    def __init__(self, limit: int) -> None:
        super().__init__(f"too many simultaneous connections from your address (limit {limit}); "
                         "close some and retry", retry_after_ms=1000)
        self.limit = limit
