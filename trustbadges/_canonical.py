"""The canonical byte form that signatures cover (documented in docs/verification.md).

UTF-8 JSON, object keys sorted, no whitespace, and a deliberately small value domain so that
any JSON library can reproduce the bytes: objects with printable-ASCII keys, arrays, strings,
integers in the IEEE-754 safe range, ``true``/``false`` and ``null``. No floats, ever (weights
are milligrams, money is cents). Within that domain the output is identical to RFC 8785 (JCS).

Standard library only: the offline verifier imports this module.
"""

from __future__ import annotations

import json
from typing import Any

__all__ = ["MAX_SAFE_INTEGER", "CanonicalFormError", "canonical_bytes"]

# Beyond 2**53 - 1 a JavaScript verifier would silently round the number.
MAX_SAFE_INTEGER = 2**53 - 1


class CanonicalFormError(ValueError):
    """The value is outside the canonical domain (a float, a huge int, a lone surrogate...)."""


def _check(value: Any, path: str) -> None:
    if value is None or isinstance(value, bool):
        return
    if isinstance(value, int):
        if not -MAX_SAFE_INTEGER <= value <= MAX_SAFE_INTEGER:
            raise CanonicalFormError(f"{path}: integer outside the safe range")
        return
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise CanonicalFormError(f"{path}: string is not valid Unicode") from None
        return
    if isinstance(value, list):
        for index, item in enumerate(value):
            _check(item, f"{path}[{index}]")
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str) or not key.isascii() or not key.isprintable():
                raise CanonicalFormError(f"{path}: object keys must be printable ASCII")
            _check(item, f"{path}.{key}")
        return
    raise CanonicalFormError(f"{path}: {type(value).__name__} is not allowed (no floats)")


def canonical_bytes(value: Any) -> bytes:
    """Serialize ``value`` canonically; raise :class:`CanonicalFormError` outside the domain."""
    _check(value, "$")
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")
