"""Per-kind validation of an issue request: every bad input raises ``InvalidCertificate``.

Validation returns normalized copies (lower-case hex, hashed IMEI, computed warranty end) and
never mutates its input. Unknown fields are refused so that a typo cannot silently drop data
from a certificate a buyer relies on.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from ._canonical import MAX_SAFE_INTEGER
from ._models import KINDS, Kind
from .exceptions import InvalidCertificate

__all__ = [
    "BODY_CONDITIONS",
    "SCREEN_CONDITIONS",
    "WARRANTY_MS",
    "ValidatedRequest",
    "validate_issue",
    "validate_reason",
]

WARRANTY_MS: Final = 180 * 24 * 3600 * 1000
SCREEN_CONDITIONS: Final = ("flawless", "light_wear", "scratched", "cracked")
BODY_CONDITIONS: Final = ("flawless", "light_wear", "scratched", "dented")
COMPONENT_STATES: Final = ("original", "replaced")
TEST_RESULTS: Final = ("pass", "fail")

_HEX64 = re.compile(r"[0-9a-fA-F]{64}")
_NAME = re.compile(r"[a-z0-9_]{1,32}")
_PRODUCT_ID = re.compile(r"p_[A-Za-z0-9_-]{1,64}")
_ANCHOR_ID = re.compile(r"u_[A-Za-z0-9_-]{1,64}")
_CATEGORY = re.compile(r"[a-z0-9_-]{1,64}")
_IMEI = re.compile(r"[0-9]{15}")
MAX_TEXT: Final = 200
MAX_PHOTOS: Final = 32
MAX_ENTRIES: Final = 64
MAX_WEIGHT_MG: Final = 100_000_000  # 100 kg: no jewelry item is heavier
MAX_PRICE_CENTS: Final = 10**11


@dataclass(frozen=True, slots=True)
class ValidatedRequest:
    kind: Kind
    subject: dict[str, str]
    details: dict[str, Any]
    valid_from: int
    expires_at: int | None


def _text(field: str, value: Any, max_len: int = MAX_TEXT) -> str:
    if not isinstance(value, str):
        raise InvalidCertificate(field, "must be a string")
    text: str = value.strip()
    if not text:
        raise InvalidCertificate(field, "must not be empty")
    if len(text) > max_len:
        raise InvalidCertificate(field, f"must be at most {max_len} characters")
    if not text.isprintable():
        raise InvalidCertificate(field, "must not contain control characters")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidCertificate(field, "must be valid Unicode") from None
    return text


def _integer(field: str, value: Any, low: int, high: int) -> int:
    # bool is an int subclass, and 12.0 is not "an integer number of milligrams".
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidCertificate(field, "must be an integer")
    if not low <= value <= high:
        raise InvalidCertificate(field, f"must be between {low} and {high}")
    return value


def _choice(field: str, value: Any, choices: tuple[str, ...]) -> str:
    if not isinstance(value, str) or value not in choices:
        raise InvalidCertificate(field, f"must be one of {', '.join(choices)}")
    return str(value)


def _pattern(field: str, value: Any, pattern: re.Pattern[str], what: str) -> str:
    if not isinstance(value, str) or pattern.fullmatch(value) is None:
        raise InvalidCertificate(field, f"must be {what}")
    return value


def _sha256_hex(field: str, value: Any) -> str:
    return _pattern(field, value, _HEX64, "64 hex digits (a SHA-256)").lower()


def _name_map(field: str, value: Any, choices: tuple[str, ...]) -> dict[str, str]:
    if not isinstance(value, Mapping):
        raise InvalidCertificate(field, "must be an object")
    if not 1 <= len(value) <= MAX_ENTRIES:
        raise InvalidCertificate(field, f"must have between 1 and {MAX_ENTRIES} entries")
    result: dict[str, str] = {}
    for name, state in value.items():
        _pattern(field, name, _NAME, "keyed by names of 1-32 characters [a-z0-9_]")
        result[name] = _choice(f"{field}.{name}", state, choices)
    return result


def _fields(details: Any, required: set[str], optional: set[str]) -> Mapping[str, Any]:
    if not isinstance(details, Mapping):
        raise InvalidCertificate("details", "must be an object")
    for name in sorted(details, key=str):
        if name not in required and name not in optional:
            raise InvalidCertificate(f"details.{name}", "unknown field")
    for name in sorted(required):
        if name not in details:
            raise InvalidCertificate(f"details.{name}", "is required")
    return details


def _luhn_ok(digits: str) -> bool:
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = int(char)
        if index % 2 == 1:
            value = value * 2 - 9 if value > 4 else value * 2
        total += value
    return total % 10 == 0


def _vault(details: Any) -> dict[str, Any]:
    d = _fields(details, {"material", "weight_mg", "grade", "appraiser", "photo_sha256"}, set())
    photos = d["photo_sha256"]
    if not isinstance(photos, list) or not 1 <= len(photos) <= MAX_PHOTOS:
        raise InvalidCertificate(
            "details.photo_sha256", f"must be a list of 1 to {MAX_PHOTOS} SHA-256 hex digests"
        )
    hashes = [_sha256_hex(f"details.photo_sha256[{i}]", h) for i, h in enumerate(photos)]
    if len(set(hashes)) != len(hashes):
        raise InvalidCertificate("details.photo_sha256", "lists the same photo twice")
    return {
        "material": _text("details.material", d["material"]),
        "weight_mg": _integer("details.weight_mg", d["weight_mg"], 1, MAX_WEIGHT_MG),
        "grade": _text("details.grade", d["grade"], 64),
        "appraiser": _text("details.appraiser", d["appraiser"]),
        "photo_sha256": hashes,
    }


def _inspection(details: Any, issued_at: int) -> dict[str, Any]:
    required = {
        "model",
        "battery_health_pct",
        "screen_condition",
        "body_condition",
        "components",
        "tests",
        "buyback_price_cents",
    }
    d = _fields(details, required, {"imei", "imei_sha256"})
    if ("imei" in d) == ("imei_sha256" in d):
        raise InvalidCertificate("details.imei", "give exactly one of imei or imei_sha256")
    if "imei" in d:
        # Never echo the IMEI back: error messages end up in logs.
        imei = d["imei"]
        if not isinstance(imei, str) or _IMEI.fullmatch(imei) is None or not _luhn_ok(imei):
            raise InvalidCertificate("details.imei", "must be 15 digits with a valid check digit")
        imei_sha256 = hashlib.sha256(imei.encode("ascii")).hexdigest()
    else:
        imei_sha256 = _sha256_hex("details.imei_sha256", d["imei_sha256"])
    return {
        "model": _text("details.model", d["model"]),
        "imei_sha256": imei_sha256,
        "battery_health_pct": _integer(
            "details.battery_health_pct", d["battery_health_pct"], 0, 100
        ),
        "screen_condition": _choice(
            "details.screen_condition", d["screen_condition"], SCREEN_CONDITIONS
        ),
        "body_condition": _choice("details.body_condition", d["body_condition"], BODY_CONDITIONS),
        "components": _name_map("details.components", d["components"], COMPONENT_STATES),
        "tests": _name_map("details.tests", d["tests"], TEST_RESULTS),
        "buyback_price_cents": _integer(
            "details.buyback_price_cents", d["buyback_price_cents"], 0, MAX_PRICE_CENTS
        ),
        "warranty_ends_at": issued_at + WARRANTY_MS,
    }


def _refund_no_return(details: Any, issued_at: int) -> dict[str, Any]:
    d = _fields(details, {"valid_from", "valid_until"}, set())
    valid_from = _integer("details.valid_from", d["valid_from"], 0, MAX_SAFE_INTEGER)
    valid_until = _integer("details.valid_until", d["valid_until"], 0, MAX_SAFE_INTEGER)
    if valid_until <= valid_from:
        raise InvalidCertificate("details.valid_until", "must be after valid_from")
    if valid_until <= issued_at:
        raise InvalidCertificate("details.valid_until", "must be in the future")
    return {"valid_from": valid_from, "valid_until": valid_until}


def validate_issue(
    kind: Any,
    *,
    product_id: Any,
    anchor_id: Any,
    category: Any,
    details: Any,
    expires_at: Any,
    issued_at: int,
) -> ValidatedRequest:
    if not isinstance(kind, str) or kind not in KINDS:
        raise InvalidCertificate("kind", f"must be one of {', '.join(KINDS)}")
    if kind == "refund_no_return":
        if product_id is not None:
            raise InvalidCertificate("product_id", "refund_no_return certifies an anchor")
        if expires_at is not None:
            raise InvalidCertificate("expires_at", "refund_no_return expires at valid_until")
        subject = {
            "anchor_id": _pattern("anchor_id", anchor_id, _ANCHOR_ID, "a user id (u_...)"),
            "category": _pattern("category", category, _CATEGORY, "1-64 characters [a-z0-9_-]"),
        }
        period = _refund_no_return(details, issued_at)
        return ValidatedRequest(kind, subject, period, period["valid_from"], period["valid_until"])
    if anchor_id is not None or category is not None:
        raise InvalidCertificate("anchor_id", f"{kind} certifies a product, not an anchor")
    subject = {"product_id": _pattern("product_id", product_id, _PRODUCT_ID, "a product id")}
    if expires_at is not None:
        expires_at = _integer("expires_at", expires_at, issued_at + 1, MAX_SAFE_INTEGER)
    checked = _vault(details) if kind == "vault" else _inspection(details, issued_at)
    return ValidatedRequest(kind, subject, checked, issued_at, expires_at)


def validate_reason(reason: Any) -> str:
    return _text("reason", reason, 500)
