"""A small HDR-style histogram: log-linear buckets with a fixed relative precision.

Values (non-negative integers, here microseconds) below 256 get one bucket each; above that
every power of two is split into 128 equal buckets, so any recorded value is known to within
1/128 (< 0.8 %). Counts live in a sparse dict, so histograms are small, cheap to merge across
worker processes and trivially serialisable as JSON.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

_SUB_BITS = 7
_SUB_COUNT = 1 << _SUB_BITS  # buckets per power of two
_LINEAR_LIMIT = _SUB_COUNT * 2  # below this, one bucket per integer value


def bucket_of(value: int) -> int:
    if value < _LINEAR_LIMIT:
        return max(0, value)
    shift = value.bit_length() - (_SUB_BITS + 1)
    return shift * _SUB_COUNT + (value >> shift)


def bucket_bounds(index: int) -> tuple[int, int]:
    """The smallest and largest value that land in bucket ``index``."""
    if index < _LINEAR_LIMIT:
        return index, index
    shift = index // _SUB_COUNT - 1
    mantissa = index - shift * _SUB_COUNT
    low = mantissa << shift
    return low, low + (1 << shift) - 1


@dataclass
class Histogram:
    counts: dict[int, int] = field(default_factory=dict)
    total: int = 0
    min_value: int | None = None
    max_value: int | None = None

    def record(self, value: int | float) -> None:
        v = max(0, int(value))
        index = bucket_of(v)
        self.counts[index] = self.counts.get(index, 0) + 1
        self.total += 1
        if self.min_value is None or v < self.min_value:
            self.min_value = v
        if self.max_value is None or v > self.max_value:
            self.max_value = v

    def merge(self, other: Histogram) -> None:
        for index, count in other.counts.items():
            self.counts[index] = self.counts.get(index, 0) + count
        self.total += other.total
        if other.min_value is not None and (self.min_value is None
                                            or other.min_value < self.min_value):
            self.min_value = other.min_value
        if other.max_value is not None and (self.max_value is None
                                            or other.max_value > self.max_value):
            self.max_value = other.max_value

    def percentile(self, q: float) -> int | None:
        """The value at quantile ``q`` (0 to 100), as the upper edge of its bucket, capped at max.

        Reporting the upper edge errs on the pessimistic side, as HdrHistogram does.
        """
        if self.total == 0 or self.max_value is None or self.min_value is None:
            return None
        if not 0.0 <= q <= 100.0:
            raise ValueError(f"percentile must be within 0..100, got {q}")
        rank = max(1, math.ceil(q / 100.0 * self.total))
        seen = 0
        for index in sorted(self.counts):
            seen += self.counts[index]
            if seen >= rank:
                return max(self.min_value, min(bucket_bounds(index)[1], self.max_value))
        return self.max_value

    def mean(self) -> float | None:
        if self.total == 0:
            return None
        weighted = sum(sum(bucket_bounds(i)) / 2 * c for i, c in self.counts.items())
        return weighted / self.total

    def to_dict(self) -> dict[str, object]:
        return {"counts": {str(k): v for k, v in self.counts.items()}, "total": self.total,
                "min": self.min_value, "max": self.max_value}

    @classmethod
    def from_dict(cls, raw: Mapping[str, object]) -> Histogram:
        counts_raw = raw.get("counts", {})
        assert isinstance(counts_raw, Mapping)
        counts = {int(k): int(v) for k, v in counts_raw.items()}
        lo, hi, total = raw.get("min"), raw.get("max"), raw.get("total", 0)
        return cls(counts=counts, total=int(total) if isinstance(total, int) else 0,
                   min_value=lo if isinstance(lo, int) else None,
                   max_value=hi if isinstance(hi, int) else None)

    @classmethod
    def of(cls, values: Iterable[int | float]) -> Histogram:
        histogram = cls()
        for value in values:
            histogram.record(value)
        return histogram
