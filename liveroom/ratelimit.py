"""A token bucket per connection: cheap, local, no Redis round trip on the hot path."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["TokenBucket"]


@dataclass(slots=True)
class TokenBucket:
    rate_per_s: float
    burst: float
    tokens: float = -1.0
    updated_ms: int = 0

    def take(self, now_ms: int, cost: float = 1.0) -> bool:
        if self.tokens < 0:
            self.tokens = self.burst
            self.updated_ms = now_ms
        elapsed = max(0, now_ms - self.updated_ms)
        self.tokens = min(self.burst, self.tokens + elapsed * self.rate_per_s / 1000.0)
        self.updated_ms = now_ms
        if self.tokens >= cost:
            self.tokens -= cost
            return True
        return False

    def retry_after_ms(self, cost: float = 1.0) -> int:
        missing = max(0.0, cost - self.tokens)
        return int(missing * 1000.0 / self.rate_per_s) + 1
