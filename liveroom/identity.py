"""Identity: signed, expiring bearer tokens carrying a user's id, name and role.

Tokens are standard JWTs (RFC 7519) signed with HMAC-SHA256 under the server's secret, so any
service holding the secret can check one with a stock JWT library. Claims: ``sub`` (user id),
``name``, ``role``, ``iat`` and ``exp`` (seconds since the epoch), and ``phone_verified: true``
for a buyer account signed in with a one-time code (``liveroom/accounts.py``).

Only one spelling of a token is accepted: the three segments must be unpadded base64url that
decodes and re-encodes to itself, the header must name ``HS256``, and the signature is checked
by PyJWT with that one algorithm. Any other bytes (padding, characters outside base64url,
non-ASCII) are ``token_malformed``, never a server error.
"""

from __future__ import annotations

import base64
import binascii
import enum
import re
import secrets
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import jwt

from .exceptions import InvalidInput, Unauthorized

__all__ = [
    "MIN_SECRET_BYTES",
    "NAME_MAX_CHARS",
    "InvalidToken",
    "Role",
    "TokenSigner",
    "User",
    "name_key",
    "new_user_id",
    "validate_name",
]

NAME_MAX_CHARS = 40
# HS256 wants a key at least as long as its hash (RFC 7518, 3.2).
MIN_SECRET_BYTES = 32
TOKEN_MAX_CHARS = 2048
ALGORITHM = "HS256"
REQUIRED_CLAIMS = ("sub", "name", "role", "iat", "exp")
_SEGMENT = r"[A-Za-z0-9_-]+"
_TOKEN_SHAPE = re.compile(rf"^{_SEGMENT}\.{_SEGMENT}\.{_SEGMENT}$")
# Bidirectional overrides and isolates, and the invisible joiners and spaces: they let one name
# look like another (or like the anchor's) on screen. NFKC leaves them in, so they go by hand.
_INVISIBLE = re.compile(
    "[\u00ad\u061c\u115f\u1160\u180e\u200b-\u200f\u202a-\u202e\u2060-\u206f\u3164\ufeff"
    "\uffa0\U000e0000-\U000e007f]")


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
    # Signed in with a one-time code sent to a phone: a buyer account (one per phone).
    phone_verified: bool = False
    # When the token was issued (``iat``, seconds): when a guest session began.
    issued_at_s: int = field(default=0, compare=False)

    def public(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "role": self.role.value,
                "phone_verified": self.phone_verified}

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
    """A display name as shown to others: NFKC-normalised (full-width and compatibility forms
    folded), without control, format, bidirectional or zero-width characters, whitespace
    collapsed, 1-40 characters."""
    if not isinstance(raw, str):
        raise InvalidInput("name must be a string")
    text = _INVISIBLE.sub("", unicodedata.normalize("NFKC", raw))
    text = "".join(ch if unicodedata.category(ch)[0] != "C" else " " for ch in text)
    name = " ".join(text.split())
    if not name:
        raise InvalidInput("name must not be empty")
    if len(name) > NAME_MAX_CHARS:
        raise InvalidInput(f"name must be at most {NAME_MAX_CHARS} characters")
    return name


def name_key(name: str) -> str:
    """What two names are compared by when one must not pass for the other: case-folded, with
    spaces and punctuation dropped (``Mei``, ``MEI`` and ``M.e.i`` are the same person)."""
    folded = unicodedata.normalize("NFKC", validate_name(name).casefold())
    return "".join(ch for ch in folded if unicodedata.category(ch)[0] in "LN")


def _b64encode(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _canonical_segments(token: str) -> bool:
    """Every segment is the one base64url spelling of its bytes (no padding, no spare bits)."""
    for segment in token.split("."):
        try:
            decoded = base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
        except (binascii.Error, ValueError):
            return False
        if _b64encode(decoded) != segment:
            return False
    return True


class TokenSigner:
    def __init__(self, secret: bytes, ttl_s: int, now_ms: Callable[[], int]) -> None:
        if len(secret) < MIN_SECRET_BYTES:
            raise ValueError(f"token secret must be at least {MIN_SECRET_BYTES} bytes")
        self._secret = secret
        self._ttl_ms = ttl_s * 1000
        self._now_ms = now_ms

    def issue(self, user: User, ttl_s: int | None = None) -> str:
        now = self._now_ms()
        ttl_ms = self._ttl_ms if ttl_s is None else ttl_s * 1000
        claims: dict[str, Any] = {"sub": user.id, "name": user.name, "role": user.role.value,
                                  "iat": now // 1000, "exp": (now + ttl_ms) // 1000}
        if user.phone_verified:
            claims["phone_verified"] = True
        return jwt.encode(claims, self._secret, algorithm=ALGORITHM)

    def verify(self, token: object) -> User:
        if (not isinstance(token, str) or len(token) > TOKEN_MAX_CHARS
                or not token.isascii() or not _TOKEN_SHAPE.match(token)
                or not _canonical_segments(token)):
            raise InvalidToken("malformed")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise InvalidToken("malformed") from None
        if header.get("alg") != ALGORITHM or set(header) - {"alg", "typ"}:
            raise InvalidToken("malformed")
        try:
            # Expiry is checked below against the server's one clock, not the library's.
            claims = jwt.decode(token, self._secret, algorithms=[ALGORITHM], options={
                "require": list(REQUIRED_CLAIMS), "verify_exp": False, "verify_iat": False,
                "verify_nbf": False})
        except jwt.InvalidSignatureError:
            raise InvalidToken("bad_signature") from None
        except jwt.PyJWTError:
            raise InvalidToken("malformed") from None
        try:
            expires_s, issued_s = claims["exp"], claims["iat"]
            if type(expires_s) is not int or type(issued_s) is not int:
                raise TypeError("exp")
            user = User(id=_claim_text(claims, "sub"), name=_claim_text(claims, "name"),
                        role=Role(claims["role"]),
                        phone_verified=claims.get("phone_verified", False) is True,
                        issued_at_s=issued_s)
        except (ValueError, TypeError):
            raise InvalidToken("malformed") from None
        if expires_s * 1000 <= self._now_ms():
            raise InvalidToken("expired")
        return user


def _claim_text(claims: dict[str, Any], name: str) -> str:
    value = claims[name]
    if not isinstance(value, str) or not value:
        raise TypeError(name)
    return value
