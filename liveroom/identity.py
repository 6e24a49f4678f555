"""Identity: signed, expiring bearer tokens carrying a user's id, name and role.

Format: ``base64url(orjson(claims)) + "." + base64url(HMAC-SHA256(secret, first part))``.
Claims: ``{"sub": id, "name": name, "role": role, "iat": ms, "exp": ms}``.
"""

from __future__ import annotations

import base64
import binascii
import enum
import hashlib
import hmac
import secrets
from collections.abc import Callable
from dataclasses import dataclass

import orjson

from .exceptions import InvalidInput, Unauthorized

__all__ = ["InvalidToken", "Role", "TokenSigner", "User", "new_user_id", "validate_name"]

NAME_MAX_CHARS = 40


class Role(enum.StrEnum):
    VIEWER = "viewer"
    ANCHOR = "anchor"
    INSPECTOR = "inspector"
    ADMIN = "admin"


@dataclass(frozen=True, slots=True)
class User:
    id: str
    name: str
    role: Role

    def public(self) -> dict[str, str]:
        return {"id": self.id, "name": self.name, "role": self.role.value}

    @property
    def is_admin(self) -> bool:
        return self.role is Role.ADMIN


class InvalidToken(Unauthorized):
    """A token was refused; ``reason`` is one of malformed, bad_signature, expired."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"token refused: {reason.replace('_', ' ')}")
        self.reason = reason
        self.code = f"token_{reason}"


def new_user_id() -> str:
    return "u_" + secrets.token_urlsafe(9)


def validate_name(raw: object) -> str:
    if not isinstance(raw, str):
        raise InvalidInput("name must be a string")
    name = " ".join(raw.split())
    if not name:
        raise InvalidInput("name must not be empty")
    if len(name) > NAME_MAX_CHARS:
        raise InvalidInput(f"name must be at most {NAME_MAX_CHARS} characters")
    return name


def _b64encode(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _b64decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class TokenSigner:
    def __init__(self, secret: bytes, ttl_s: int, now_ms: Callable[[], int]) -> None:
        if len(secret) < 16:
            raise ValueError("token secret must be at least 16 bytes")
        self._secret = secret
        self._ttl_ms = ttl_s * 1000
        self._now_ms = now_ms

    def _mac(self, body: bytes) -> bytes:
        return hmac.new(self._secret, body, hashlib.sha256).digest()

    def issue(self, user: User, ttl_s: int | None = None) -> str:
        now = self._now_ms()
        ttl_ms = self._ttl_ms if ttl_s is None else ttl_s * 1000
        claims = {"sub": user.id, "name": user.name, "role": user.role.value,
                  "iat": now, "exp": now + ttl_ms}
        body = _b64encode(orjson.dumps(claims)).encode()
        return body.decode() + "." + _b64encode(self._mac(body))

    def verify(self, token: object) -> User:
        if not isinstance(token, str) or token.count(".") != 1 or len(token) > 2048:
            raise InvalidToken("malformed")
        body, _, signature = token.partition(".")
        try:
            given = _b64decode(signature)
        except (binascii.Error, ValueError):
            raise InvalidToken("malformed") from None
        if not hmac.compare_digest(given, self._mac(body.encode())):
            raise InvalidToken("bad_signature")
        try:
            claims = orjson.loads(_b64decode(body))
            user = User(id=str(claims["sub"]), name=str(claims["name"]), role=Role(claims["role"]))
            expires = int(claims["exp"])
        except (binascii.Error, ValueError, KeyError, TypeError, orjson.JSONDecodeError):
            raise InvalidToken("malformed") from None
        if expires <= self._now_ms():
            raise InvalidToken("expired")
        return user
