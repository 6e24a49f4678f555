"""A small Prometheus text exposition (format 0.0.4): counters, gauges, fixed-bucket histograms.

One :class:`Metrics` object per process, built by the composition root. Hot paths only bump a
number in a dict (no lock: everything runs on the event loop); gauges that describe current state
(connected sockets, rooms, relay viewers) are read from their owners by callbacks at scrape time,
so keeping them costs nothing between scrapes.
"""

from __future__ import annotations

import bisect
import math
import time
from collections.abc import Callable, Iterable, Sequence
from typing import TypeVar

__all__ = [
    "BUY_LATENCY_BUCKETS_S",
    "CONTENT_TYPE",
    "REDIS_RTT_BUCKETS_S",
    "CallbackGauge",
    "Counter",
    "Gauge",
    "Histogram",
    "Metrics",
]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
BUY_LATENCY_BUCKETS_S: tuple[float, ...] = (
    0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
)
REDIS_RTT_BUCKETS_S: tuple[float, ...] = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5,
)

Labels = tuple[str, ...]
M = TypeVar("M", bound="_Metric")


def _number(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if math.isnan(value):
        return "NaN"
    if float(value).is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(float(value))


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _label_text(names: Sequence[str], values: Sequence[str]) -> str:
    if not names:
        return ""
    pairs = ",".join(f'{name}="{_escape(value)}"' for name, value in zip(names, values,
                                                                          strict=True))
    return "{" + pairs + "}"


class _Metric:
    kind = "untyped"

    def __init__(self, name: str, help_text: str, label_names: Sequence[str] = ()) -> None:
        self.name = name
        self.help_text = help_text
        self.label_names = tuple(label_names)

    def _check(self, labels: Labels) -> None:
        if len(labels) != len(self.label_names):
            raise ValueError(f"{self.name} takes labels {self.label_names}, got {labels}")

    def header(self) -> list[str]:
        return [f"# HELP {self.name} {_escape(self.help_text)}", f"# TYPE {self.name} {self.kind}"]

    def samples(self) -> Iterable[str]:
        raise NotImplementedError

    def render(self) -> list[str]:
        return [*self.header(), *self.samples()]


class Counter(_Metric):
    """A monotonically increasing count, per label set."""

    kind = "counter"

    def __init__(self, name: str, help_text: str, label_names: Sequence[str] = ()) -> None:
        super().__init__(name, help_text, label_names)
        self._values: dict[Labels, float] = {}
        if not self.label_names:
            self._values[()] = 0.0

    def inc(self, *labels: str, amount: float = 1.0) -> None:
        if amount < 0:
            raise ValueError("a counter only goes up")
        if len(labels) != len(self.label_names):
            self._check(labels)
        values = self._values
        values[labels] = values.get(labels, 0.0) + amount

    def value(self, *labels: str) -> float:
        return self._values.get(labels, 0.0)

    def samples(self) -> Iterable[str]:
        for labels, value in sorted(self._values.items()):
            yield f"{self.name}{_label_text(self.label_names, labels)} {_number(value)}"


class Gauge(_Metric):
    """A value that goes up and down, set by its owner."""

    kind = "gauge"

    def __init__(self, name: str, help_text: str, label_names: Sequence[str] = ()) -> None:
        super().__init__(name, help_text, label_names)
        self._values: dict[Labels, float] = {}

    def set(self, value: float, *labels: str) -> None:
        self._check(labels)
        self._values[labels] = float(value)

    def value(self, *labels: str) -> float | None:
        return self._values.get(labels)

    def samples(self) -> Iterable[str]:
        for labels, value in sorted(self._values.items()):
            yield f"{self.name}{_label_text(self.label_names, labels)} {_number(value)}"


class CallbackGauge(_Metric):
    """A gauge read from its owner at scrape time; a failing callback drops only its sample."""

    kind = "gauge"

    def __init__(self, name: str, help_text: str, read: Callable[[], float]) -> None:
        super().__init__(name, help_text)
        self._read = read

    def samples(self) -> Iterable[str]:
        try:
            value = float(self._read())
        except Exception:
            return
        yield f"{self.name} {_number(value)}"


class Histogram(_Metric):
    """Observations counted into fixed cumulative buckets, with their sum and count."""

    kind = "histogram"

    def __init__(self, name: str, help_text: str, buckets: Sequence[float]) -> None:
        super().__init__(name, help_text)
        bounds = sorted(float(b) for b in buckets)
        if not bounds or len(set(bounds)) != len(bounds):
            raise ValueError("histogram buckets must be distinct and not empty")
        self.bounds: tuple[float, ...] = tuple(b for b in bounds if not math.isinf(b))
        # One slot per finite bound plus the +Inf overflow; cumulated only when rendered.
        self._counts = [0] * (len(self.bounds) + 1)
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        self._counts[bisect.bisect_left(self.bounds, value)] += 1
        self.sum += value
        self.count += 1

    def cumulative(self) -> list[tuple[float, int]]:
        running = 0
        out: list[tuple[float, int]] = []
        for bound, count in zip((*self.bounds, math.inf), self._counts, strict=True):
            running += count
            out.append((bound, running))
        return out

    def samples(self) -> Iterable[str]:
        for bound, running in self.cumulative():
            yield f'{self.name}_bucket{{le="{_number(bound)}"}} {running}'
        yield f"{self.name}_sum {_number(self.sum)}"
        yield f"{self.name}_count {self.count}"


class Metrics:
    """Every metric of one server process, and the text served at ``GET /metrics``."""

    def __init__(self) -> None:
        self._metrics: dict[str, _Metric] = {}
        self.buys = self.add(Counter(
            "liveroom_buys_total", "Buy attempts answered, by status.", ["status"]))
        self.buy_latency = self.add(Histogram(
            "liveroom_buy_latency_seconds", "Time from a buy event to its answer.",
            BUY_LATENCY_BUCKETS_S))
        self.bids = self.add(Counter(
            "liveroom_bids_total", "Auction bids answered, by status.", ["status"]))
        self.bid_latency = self.add(Histogram(
            "liveroom_bid_latency_seconds", "Time from a bid event to its answer.",
            BUY_LATENCY_BUCKETS_S))
        self.socket_errors = self.add(Counter(
            "liveroom_socket_errors_total", "Socket.IO events refused, by error code.", ["code"]))
        self.http_responses = self.add(Counter(
            "liveroom_http_responses_total", "HTTP responses, by method and status.",
            ["method", "status"]))
        self.redis_rtt = self.add(Histogram(
            "liveroom_redis_rtt_seconds", "Round-trip time of a Redis PING.",
            REDIS_RTT_BUCKETS_S))
        self.redis_up = self.add(Gauge(
            "liveroom_redis_up", "1 if the last Redis PING answered in time, else 0."))
        started = time.time()
        self.add(CallbackGauge("liveroom_process_start_time_seconds",
                               "Start time of the process since the Unix epoch.",
                               lambda: started))

    def add(self, metric: M) -> M:
        if metric.name in self._metrics:
            raise ValueError(f"metric {metric.name} registered twice")
        self._metrics[metric.name] = metric
        return metric

    def gauge_from(self, name: str, help_text: str, read: Callable[[], float]) -> None:
        self.add(CallbackGauge(name, help_text, read))

    def record_buy(self, status: str, seconds: float) -> None:
        self.buys.inc(status)
        self.buy_latency.observe(seconds)

    def record_bid(self, status: str, seconds: float) -> None:
        self.bids.inc(status)
        self.bid_latency.observe(seconds)

    @property
    def answered_bursts(self) -> int:
        """Buys and bids answered so far: what a flash sale or a bidding war is made of."""
        return self.buy_latency.count + self.bid_latency.count

    def render(self) -> str:
        lines: list[str] = []
        for metric in self._metrics.values():
            lines.extend(metric.render())
        return "\n".join(lines) + "\n"
