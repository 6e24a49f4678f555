"""The lucky draw's deterministic winner function (docs/verification.md, "Lucky draws").

Standard library only, so the procedure reads the same here as in the independent verifier
(``scripts/verify_draw.py``) and the page's "check this draw" (``web/static/draw.js``):

1. ``entries`` are the entrants' user ids, each once, sorted by their UTF-8 bytes.
2. ``entries_sha256`` = SHA-256 of the ids joined by ``\\n`` (no trailing newline).
3. The random stream: block ``c`` (c = 0, 1, 2, ...) is
   HMAC-SHA256(key = seed, message = bytes.fromhex(entries_sha256) || c as 8 bytes big-endian),
   read as a 256-bit big-endian integer.
4. ``uniform(m)`` takes the next block ``x``; if ``x >= 2**256 - (2**256 mod m)`` it is thrown
   away (so every value is equally likely) and the next one is taken; else it is ``x mod m``.
5. A partial Fisher-Yates shuffle: for i = 0 .. k-1 (k = min(winners, n)), j = i + uniform(n - i),
   swap entries i and j. The winners are the first k entries, in that order.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
from collections.abc import Sequence

__all__ = ["SEED_BYTES", "commitment_of", "draw_winners", "entries_sha256", "sorted_entries"]

SEED_BYTES = 32
_SPACE = 1 << 256


def commitment_of(seed: bytes) -> str:
    """What is published before the draw: the lower-case hex SHA-256 of the seed."""
    return hashlib.sha256(seed).hexdigest()


def sorted_entries(entries: Sequence[str]) -> list[str]:
    """Each id once, in the order of its UTF-8 bytes (which is the order of its code points,
    Python's own order of strings: UTF-8 keeps it)."""
    return sorted(set(entries))


def entries_sha256(entries: Sequence[str]) -> str:
    """SHA-256 (hex) of the sorted entries joined by newlines; ids hold no newline."""
    if any("\n" in entry for entry in entries):
        raise ValueError("an entrant id holds a newline")
    return hashlib.sha256("\n".join(entries).encode("utf-8")).hexdigest()


def draw_winners(seed: bytes, entries: Sequence[str], winners: int) -> list[str]:
    """The winners among ``entries`` (sorted and unique, see ``sorted_entries``)."""
    # One pass: each entry strictly after the one before is sorted and unique.
    if any(a >= b for a, b in itertools.pairwise(entries)):
        raise ValueError("entries must be unique and sorted by their UTF-8 bytes")
    prefix = bytes.fromhex(entries_sha256(entries))
    counter = 0

    def uniform(m: int) -> int:
        nonlocal counter
        limit = _SPACE - _SPACE % m
        while True:
            block = hmac.new(seed, prefix + counter.to_bytes(8, "big"), hashlib.sha256).digest()
            counter += 1
            x = int.from_bytes(block, "big")
            if x < limit:
                return x % m

    pool = list(entries)
    for i in range(min(winners, len(pool))):
        j = i + uniform(len(pool) - i)
        pool[i], pool[j] = pool[j], pool[i]
    return pool[:min(winners, len(pool))]
