"""Mapping of every package's exceptions to the one public error shape.

Socket.IO acks: ``{"ok": false, "error": {"code", "message"}}``; HTTP: ``{"error": {...}}`` with
the exception's ``http_status``. An exception outside the known trees is a bug: it is logged with
its traceback and answered as ``internal_error`` without details.
"""

from __future__ import annotations

import logging
from typing import Any

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from inventory import InventoryError
from orders import OrderError
from trustbadges import CertificateError

from .exceptions import LiveroomError
from .hls import HlsError
from .media import MediaError

__all__ = ["KNOWN_ERRORS", "error_body", "error_status", "is_known_error"]

log = logging.getLogger("liveroom.errors")

# The root exception of every package whose errors are meant for clients.
KNOWN_ERRORS: tuple[type[Exception], ...] = (
    LiveroomError, InventoryError, OrderError, CertificateError, MediaError, HlsError,
)


# Redis unreachable (restarting, network): a retryable outage, not a bug.
STORE_ERRORS: tuple[type[Exception], ...] = (RedisConnectionError, RedisTimeoutError)


def is_known_error(exc: BaseException) -> bool:
    return isinstance(exc, KNOWN_ERRORS)


def error_status(exc: BaseException) -> int:
    if is_known_error(exc):
        return int(getattr(exc, "http_status", 400))
    if isinstance(exc, STORE_ERRORS):
        return 503
    return 500


def error_body(exc: BaseException) -> dict[str, Any]:
    if isinstance(exc, STORE_ERRORS):
        log.warning("store unavailable: %s", exc)
        return {"code": "store_unavailable",
                "message": "the store is unavailable; try again in a moment"}
    if is_known_error(exc):
        code = str(getattr(exc, "code", "error"))
        message = str(getattr(exc, "message", None) or exc)
        body: dict[str, Any] = {"code": code, "message": message}
        retry = getattr(exc, "retry_after_ms", None)
        if retry:
            body["retry_after_ms"] = retry
        return body
    log.error("unexpected error", exc_info=exc)
    return {"code": "internal_error", "message": "internal error; it has been logged"}
