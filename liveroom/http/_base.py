"""Shared pieces of the REST edge: authentication, body parsing, the error middleware."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from aiohttp import web

from ..errors import error_body, error_status
from ..exceptions import InvalidInput, PayloadTooLarge, RequestTimeout, Unauthorized
from ..identity import TokenSigner, User
from ..payload import Payload

__all__ = ["Api", "BodyTimedOut", "error_middleware", "json_response"]

log = logging.getLogger("liveroom.http")
HandlerFn = Callable[[web.Request], Awaitable[web.StreamResponse]]


class BodyTimedOut(TimeoutError):
    """Set on a request body that did not arrive in time (``transport.BodyDeadline``): a read
    raises it, and the error middleware answers ``408 request_timeout``. It is a
    ``TimeoutError`` so that aiohttp's lingering read of an unread body, after the answer, ends
    on it and closes the connection instead of logging it."""

    def __init__(self, timeout_s: float) -> None:
        super().__init__(f"request body not received within {timeout_s:g} s")
        self.timeout_s = timeout_s


def json_response(data: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(data), status=status, content_type="application/json")


def _error_response(exc: BaseException) -> web.Response:
    return json_response({"error": error_body(exc)}, status=error_status(exc))


@web.middleware
async def error_middleware(request: web.Request, handler: HandlerFn) -> web.StreamResponse:
    try:
        return await handler(request)
    except BodyTimedOut as exc:
        # Answer, then close: the rest of that body would still be on its way.
        response = _error_response(RequestTimeout(exc.timeout_s))
        response.force_close()
        return response
    except web.HTTPRequestEntityTooLarge:
        too_large = PayloadTooLarge(request.content_length or 0, request.client_max_size)
        return _error_response(too_large)
    except web.HTTPException as exc:
        if exc.status < 400 or not request.path.startswith("/api"):
            raise
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status, "http_error")
        return json_response({"error": {"code": code, "message": exc.reason}}, exc.status)
    except Exception as exc:
        return _error_response(exc)


class Api:
    """Helpers handed to every REST route module."""

    def __init__(self, signer: TokenSigner, max_payload_bytes: int) -> None:
        self.signer = signer
        self.max_payload_bytes = max_payload_bytes

    def user(self, request: web.Request) -> User:
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise Unauthorized("send Authorization: Bearer TOKEN")
        return self.signer.verify(token.strip())

    def optional_user(self, request: web.Request) -> User | None:
        if "Authorization" not in request.headers:
            return None
        return self.user(request)

    async def payload(self, request: web.Request) -> Payload:
        raw = await request.read()
        if len(raw) > self.max_payload_bytes:
            raise PayloadTooLarge(len(raw), self.max_payload_bytes)
        if not raw:
            raise InvalidInput("request body must be a JSON object")
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise InvalidInput("request body is not valid JSON") from None
        return Payload(data)
