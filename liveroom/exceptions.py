"""Errors raised by the liveroom edge and its room services.

    LiveroomError
    ├── InvalidInput            400 invalid_input      wrong type, missing field, bad value
    │   ├── PayloadTooLarge     413 payload_too_large
    │   ├── TextTooLong         400 text_too_long
    │   ├── InvalidPhone        400 invalid_phone      not an E.164 number
    │   └── HostNotAllowed      400 host_not_allowed   a Host header not in LIVEROOM_ALLOWED_HOSTS
    ├── Unauthorized            401 unauthorized       no or bad token
    │   └── CodeRefused         401 otp_wrong | otp_expired | otp_exhausted
    ├── Forbidden               403 forbidden          role or ownership check failed
    │   ├── Banned              403 banned
    │   ├── Muted               403 muted
    │   └── VerificationRequired 403 verification_required  buying needs a buyer account
    ├── NotFound                404 not_found
    │   ├── UnknownRoom         404 unknown_room
    │   ├── UnknownProduct      404 unknown_product
    │   ├── UnknownAnchor       404 unknown_anchor     no room or product was ever made by it
    │   └── UnknownEvent        404 unknown_event     a Socket.IO event no one handles
    ├── NotInRoom               409 not_in_room
    ├── NameReserved            409 name_reserved      the room's anchor goes by that name
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
    "CodeRefused",
    "Forbidden",
    "HostNotAllowed",
    "InvalidInput",
    "InvalidPhone",
    "LiveroomError",
    "Muted",
    "NameReserved",
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
    "UnknownAnchor",
    "UnknownEvent",
    "UnknownProduct",
    "UnknownRoom",
    "VerificationRequired",
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


class InvalidPhone(InvalidInput):
    code = "invalid_phone"

    def __init__(self, message: str = "phone must be an international number: +, the country "
                                      "code and the number (8-15 digits)") -> None:
        super().__init__(message)


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


class CodeRefused(Unauthorized):
    """A one-time code was refused: ``reason`` is wrong, expired (or never sent) or exhausted
    (too many tries: ask for a new code)."""

    _MESSAGES = {
        "wrong": "that code is not right",
        "expired": "no valid code for this phone: ask for a new one",
        "exhausted": "too many wrong codes: ask for a new one",
    }

    def __init__(self, reason: str, tries_left: int | None = None) -> None:
        message = self._MESSAGES[reason]
        if tries_left is not None:
            message += f" ({tries_left} tries left)"
        super().__init__(message)
        self.reason = reason
        self.code = f"otp_{reason}"
        self.tries_left = tries_left


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


class VerificationRequired(Forbidden):
    code = "verification_required"

    def __init__(self, action: str = "buy") -> None:
        super().__init__(f"to {action}, sign in with your phone (POST /api/accounts/otp)")
        self.action = action


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


class UnknownAnchor(NotFound):
    """A refund-no-return certification asked for an anchor id that never created a room or a
    product (``Catalog.anchor_known``): nothing is issued."""

    code = "unknown_anchor"

    def __init__(self, anchor_id: str) -> None:
        super().__init__(f"no anchor {anchor_id!r}: an anchor exists once it created a room or "
                         "a product")
        self.anchor_id = anchor_id


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


class NameReserved(LiveroomError):
    code = "name_reserved"
    http_status = 409

    def __init__(self, room_id: str, name: str) -> None:
        super().__init__(f"{name!r} is the name of this room's anchor: choose another name")
        self.room_id = room_id
        self.name = name


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
