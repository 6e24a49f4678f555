"""The one clock: wall-clock milliseconds since the epoch. Pages get it in every ``sale`` event
and in ``GET /api/time`` so countdowns agree with the server."""

from __future__ import annotations

import time

__all__ = ["now_ms"]


def now_ms() -> int:
    return time.time_ns() // 1_000_000
