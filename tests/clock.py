"""A clock the tests move by hand: the services take any ``() -> int`` (wall-clock ms) as theirs."""

from __future__ import annotations

__all__ = ["T0", "Clock"]

T0 = 1_750_000_000_000  # a fixed wall-clock ms, so failures print readable numbers


class Clock:
    """Wall-clock milliseconds that only move when a test says so."""

    def __init__(self, now: int = T0) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now

    def advance(self, ms: int) -> None:
        self.now += ms
