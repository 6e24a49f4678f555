"""The event budget: every frame a client sends is counted, answered or not, against three
token buckets at once: its connection's, its user's (all their connections on this process)
and its client address's (all connections from there). A frame over any of them is answered
``rate_limited`` when it asked for an answer, else dropped; a client that keeps sending past its
budget is disconnected.

The buckets live in the process (no Redis on the path of every frame): with ``--workers N`` a
user or address spread over several processes gets up to N budgets. Chat, where it matters most,
is also counted across processes (``RoomService``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ..ratelimit import TokenBucket

__all__ = ["BudgetLimits", "Budgets", "FrameBudget"]

# Frames a client may send past its budget (a burst, refilled at its own rate per second)
# before it is disconnected: a page that is only too quick stops after a few refusals; a flood
# does not.
OVERFLOW_BURST = 200
OVERFLOW_RATE_PER_S = 10.0


@dataclass(frozen=True, slots=True)
class BudgetLimits:
    """Rate (frames per second) and burst of each bucket; a rate of 0 turns that bucket off."""

    connection_rate: float
    connection_burst: float
    user_rate: float
    user_burst: float
    address_rate: float
    address_burst: float


class FrameBudget:
    """One connection's view of its three buckets (the user's and address's are shared)."""

    __slots__ = ("_buckets", "_overflow", "address", "exhausted")

    def __init__(self, buckets: tuple[TokenBucket, ...], address: str) -> None:
        self._buckets = buckets
        self._overflow = TokenBucket(OVERFLOW_RATE_PER_S, OVERFLOW_BURST)
        self.address = address
        # The client keeps sending past its budget, refusal after refusal: disconnect it.
        self.exhausted = False

    def admit(self, now_s: float) -> bool:
        """Whether a frame arriving at ``now_s`` (monotonic seconds) is within budget; a
        frame is counted against each bucket up to the first that refuses it."""
        for bucket in self._buckets:
            if not bucket.take(now_s):
                if not self._overflow.take(now_s):
                    self.exhausted = True
                return False
        return True

    def retry_after_ms(self) -> int:
        return max(bucket.retry_after_ms() for bucket in self._buckets)


class Budgets:
    """The process's shared buckets per user and per address, kept while a connection uses
    them."""

    def __init__(self, limits: BudgetLimits,
                 unlimited_address: Callable[[str], bool] = lambda _: False) -> None:
        self._limits = limits
        self._unlimited_address = unlimited_address
        self._users: dict[str, tuple[TokenBucket, int]] = {}
        self._addresses: dict[str, tuple[TokenBucket, int]] = {}

    def open(self, user_id: str, address: str) -> FrameBudget:
        limits = self._limits
        buckets = []
        if limits.connection_rate > 0:
            buckets.append(TokenBucket(limits.connection_rate, limits.connection_burst))
        if limits.user_rate > 0:
            buckets.append(_share(self._users, user_id, limits.user_rate, limits.user_burst))
        if self._limits_address(address):
            buckets.append(_share(self._addresses, address, limits.address_rate,
                                  limits.address_burst))
        return FrameBudget(tuple(buckets), address)

    def _limits_address(self, address: str) -> bool:
        return self._limits.address_rate > 0 and not self._unlimited_address(address)

    def close(self, user_id: str, address: str) -> None:
        """A connection of ``user_id`` at ``address`` ended: drop buckets no one uses now."""
        if self._limits.user_rate > 0:
            _release(self._users, user_id)
        if self._limits_address(address):
            _release(self._addresses, address)

    @property
    def tracked(self) -> tuple[int, int]:
        """(users, addresses) with a shared bucket now."""
        return len(self._users), len(self._addresses)


def _share(shared: dict[str, tuple[TokenBucket, int]], key: str, rate: float,
           burst: float) -> TokenBucket:
    entry = shared.get(key)
    bucket = entry[0] if entry is not None else TokenBucket(rate, burst)
    shared[key] = (bucket, (entry[1] if entry is not None else 0) + 1)
    return bucket


def _release(shared: dict[str, tuple[TokenBucket, int]], key: str) -> None:
    entry = shared.get(key)
    if entry is None:
        return
    if entry[1] <= 1:
        del shared[key]
    else:
        shared[key] = (entry[0], entry[1] - 1)
