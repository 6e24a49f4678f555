"""Parsing of untrusted event and request payloads into typed values, with precise errors.

Every helper raises :class:`InvalidInput` naming the field; none of them changes any state, so a
handler that parses everything before acting cannot half-apply a bad request.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from .exceptions import InvalidInput, TextTooLong

__all__ = ["ID_PATTERN", "Payload"]

ID_PATTERN = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


class Payload:
    """A JSON object received from a client."""

    __slots__ = ("_data",)

    def __init__(self, data: object) -> None:
        if not isinstance(data, Mapping):
            raise InvalidInput("payload must be a JSON object")
        self._data: Mapping[str, Any] = data

    def _get(self, key: str, required: bool) -> Any:
        if key not in self._data or self._data[key] is None:
            if required:
                raise InvalidInput(f"missing field: {key}")
            return None
        return self._data[key]

    def text(self, key: str, *, max_chars: int, required: bool = True, strip: bool = True,
             error_cls: type[InvalidInput] = InvalidInput) -> str:
        value = self._get(key, required)
        if value is None:
            return ""
        if not isinstance(value, str):
            raise InvalidInput(f"{key} must be a string")
        if strip:
            value = value.strip()
        if required and not value:
            raise InvalidInput(f"{key} must not be empty")
        if len(value) > max_chars:
            if error_cls is TextTooLong:
                raise TextTooLong(len(value), max_chars)
            raise InvalidInput(f"{key} must be at most {max_chars} characters")
        return value

    def optional_text(self, key: str, *, max_chars: int) -> str | None:
        value = self.text(key, max_chars=max_chars, required=False)
        return value or None

    def boolean(self, key: str, *, default: bool) -> bool:
        value = self._get(key, False)
        if value is None:
            return default
        if not isinstance(value, bool):
            raise InvalidInput(f"{key} must be true or false")
        return value

    def ident(self, key: str) -> str:
        value = self._get(key, True)
        if not isinstance(value, str) or not ID_PATTERN.match(value):
            raise InvalidInput(f"{key} must be an id (1-64 characters of A-Z a-z 0-9 _ . -)")
        return value

    def integer(self, key: str, *, minimum: int | None = None, maximum: int | None = None,
                required: bool = True, default: int = 0) -> int:
        value = self._get(key, required)
        if value is None:
            return default
        # bool is an int subclass in Python; a client sending true for a quantity is a bug.
        if isinstance(value, bool) or not isinstance(value, int):
            raise InvalidInput(f"{key} must be an integer")
        if minimum is not None and value < minimum:
            raise InvalidInput(f"{key} must be at least {minimum}")
        if maximum is not None and value > maximum:
            raise InvalidInput(f"{key} must be at most {maximum}")
        return value

    def raw(self, key: str) -> Any:
        return self._data.get(key)

    def raw_object(self) -> dict[str, Any]:
        """The whole object, for a domain service that validates it itself."""
        return dict(self._data)
