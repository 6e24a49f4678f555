"""The hand-off stream's entry schema, defined once for its producer and its consumer.

Every change of a flash-sale reservation (held, sold, given back, expired, restocked) is written
by the inventory's Lua, in the same step as the change, as one entry on the sale's stream
``stream_key(sale_id)``::

    XADD {sale:ID}:stream * type <EntryType> data <msgpack map with the keys of FIELDS>

``orders`` reads the streams of the sales listed in ``SALES_KEY`` or ``UNREAD_KEY`` with the
consumer group ``CONSUMER_GROUP`` (which the inventory creates with the sale, from the first
entry).

The producer's Lua is generated from this module (``inventory/_scripts.py``), so a field added
to ``FIELDS`` is written by every script; the consumer decodes with ``decode``. A consumer
ignores map keys it does not know, so a producer may add a field before its consumers use it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal, get_args

import msgpack

__all__ = [
    "CONSUMER_GROUP",
    "DATA_FIELD",
    "ENTRY_TYPES",
    "EVENT_TIME_FIELD",
    "FIELDS",
    "SALES_KEY",
    "TYPE_FIELD",
    "UNREAD_KEY",
    "Entry",
    "EntryType",
    "Field",
    "MalformedEntry",
    "decode",
    "encode",
    "stream_key",
]

# What became of the reservation: held for its buyer (``reserved``), sold (``committed``),
# given back by its buyer (``released``) or by the clock (``expired``), or sold and then given
# back to the sale (``restocked``). A reservation's state is named after its latest entry.
EntryType = Literal["reserved", "committed", "released", "expired", "restocked"]
ENTRY_TYPES: Final[tuple[EntryType, ...]] = get_args(EntryType)

# The two fields of every stream entry.
TYPE_FIELD: Final = "type"
DATA_FIELD: Final = "data"

# The consumer group orders reads with; created with the sale, from the stream's start.
CONSUMER_GROUP: Final = "orders"

# Set of the ids of the sales still open (kept by the inventory): whose streams to read.
SALES_KEY: Final = "inventory:active_sales"

# Set of the ids of the sales whose streams may hold entries orders has not recorded yet. A sale
# leaves SALES_KEY as soon as it has ended with no hold left, whatever its consumers have read
# (they may be behind: a database outage, a dead node whose read entries wait to be claimed), so
# the inventory adds each sale here too when it lists it in SALES_KEY, and the consumer adds
# every sale it sees there; the consumer removes a sale once it has left SALES_KEY and its
# stream holds nothing unread or unacknowledged (or no longer exists).
UNREAD_KEY: Final = "handoff:unread_sales"

# Integers are msgpack integers of at most 64 bits, sign included.
_INT_LIMIT = 2**63


@dataclass(frozen=True, slots=True)
class Field:
    """One key of the ``data`` map: its name, its type (``str`` or ``int``), and whether text
    may be empty (a product's title, category and brand may be)."""

    name: str
    type: type[str] | type[int]
    may_be_empty: bool = False


FIELDS: Final[tuple[Field, ...]] = (
    Field("reservation", str),  # "{sale}.{seq}"
    Field("sale", str),
    Field("room", str),
    Field("product", str),
    Field("anchor", str),  # the seller
    Field("user", str),  # the buyer
    Field("qty", int),
    Field("price_cents", int),  # the deal price of one unit
    Field("title", str, may_be_empty=True),
    Field("category", str, may_be_empty=True),
    Field("brand", str, may_be_empty=True),
    Field("expires_at", int),  # epoch ms the hold ends (a sold unit keeps its hold's)
    Field("ts", int),  # epoch ms of the change the entry reports
)

# The one field stamped with the time of the change; the others describe the reservation.
EVENT_TIME_FIELD: Final = "ts"


def stream_key(sale_id: str) -> str:
    """The sale's stream, in the sale's hash tag so it shares the slot of its other keys."""
    return "{sale:" + sale_id + "}:stream"


class MalformedEntry(ValueError):
    """A stream entry that does not follow the schema; the message says what is wrong."""


@dataclass(frozen=True, slots=True)
class Entry:
    """One decoded entry. ``data`` holds every key of ``FIELDS`` with its type checked."""

    type: EntryType
    data: Mapping[str, int | str]

    def text(self, name: str) -> str:
        value = self.data[name]
        assert isinstance(value, str), name
        return value

    def integer(self, name: str) -> int:
        value = self.data[name]
        assert isinstance(value, int), name
        return value


def _check(data: Mapping[str, Any]) -> None:
    for field in FIELDS:
        value = data.get(field.name)
        if field.type is str:
            if not isinstance(value, str) or (not value and not field.may_be_empty):
                raise MalformedEntry(f"{field.name} must be text")
        elif not isinstance(value, int) or isinstance(value, bool) or abs(value) >= _INT_LIMIT:
            raise MalformedEntry(f"{field.name} must be a 64-bit integer")


def encode(entry_type: EntryType, data: Mapping[str, int | str]) -> dict[str, bytes | str]:
    """The stream fields of an entry, as the producer writes them (keys outside ``FIELDS`` are
    left out); raises ``MalformedEntry`` for data the schema does not admit."""
    if entry_type not in ENTRY_TYPES:
        raise MalformedEntry(f"unknown type {entry_type!r}")
    _check(data)
    packed: bytes = msgpack.packb({f.name: data[f.name] for f in FIELDS}, use_bin_type=True)
    return {TYPE_FIELD: entry_type, DATA_FIELD: packed}


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def decode(fields: Mapping[Any, Any]) -> Entry:
    """Decode an entry's stream fields (names as bytes, as Redis answers, or as text); raises
    ``MalformedEntry`` saying what does not follow the schema."""
    entry_type = _text(fields.get(TYPE_FIELD.encode(), fields.get(TYPE_FIELD, b"")))
    if entry_type not in ENTRY_TYPES:
        raise MalformedEntry(f"unknown type {entry_type!r}")
    packed = fields.get(DATA_FIELD.encode(), fields.get(DATA_FIELD))
    if not isinstance(packed, bytes):
        raise MalformedEntry("missing data")
    try:
        data = msgpack.unpackb(packed, raw=False)
    except (ValueError, TypeError, msgpack.UnpackException) as exc:
        raise MalformedEntry(f"data is not msgpack ({type(exc).__name__}: {exc})") from None
    if not isinstance(data, dict):
        raise MalformedEntry("data is not a map")
    _check(data)
    return Entry(entry_type, {f.name: data[f.name] for f in FIELDS})
