"""A token bucket per connection: cheap, local, no Redis round trip on the hot path."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["TokenBucket"]


@dataclass(slots=True)
class TokenBucket:
    """``burst`` tokens, refilled at ``rate_per_s``; times are seconds on a monotonic clock
    (``time.perf_counter()``), so a wall clock stepped by NTP neither refills nor drains it."""

    rate_per_s: float
    burst: float
    tokens: float = -1.0
    updated_s: float = 0.0

    def take(self, now_s: float, cost: float = 1.0) -> bool:
        # Written out (no min/max calls): every buy and every event passes here.
        tokens = self.tokens
        if tokens < 0:  # first use: a full bucket
            tokens = self.burst
        elif now_s > self.updated_s:
            tokens += (now_s - self.updated_s) * self.rate_per_s
            if tokens > self.burst:
                tokens = self.burst
        self.updated_s = now_s
        if tokens >= cost:
            self.tokens = tokens - cost
            return True
        self.tokens = tokens
        return False

    def retry_after_ms(self, cost: float = 1.0) -> int:
        missing = max(0.0, cost - self.tokens)
        return int(missing * 1000.0 / self.rate_per_s) + 1
