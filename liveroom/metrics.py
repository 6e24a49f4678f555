"""A small Prometheus text exposition (format 0.0.4): counters, gauges, fixed-bucket histograms.

One :class:`Metrics` object per process, built by the composition root. Hot paths only bump a
number in a dict (no lock: everything runs on the event loop); gauges that describe current state
(connected sockets, rooms, relay viewers) are read from their owners by callbacks at scrape time,
so keeping them costs nothing between scrapes.

A scrape renders :meth:`Metrics.snapshot` values, merged with the other workers' snapshots under
``--workers N`` (``liveroom/metrics_peers.py``): counters and histograms are summed, gauges summed
or taken at their minimum or maximum as each says (``merge``), so one scrape describes the whole
node. Every series carries the ``node`` label when the Metrics has a node name.
"""

from __future__ import annotations

import bisect
import math
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Literal, TypeVar

__all__ = [
    "BUY_LATENCY_BUCKETS_S",
    "CONTENT_TYPE",
    "REDIS_RTT_BUCKETS_S",
    "CallbackGauge",
    "Counter",
    "Gauge",
    "Histogram",
    "Metrics",
    "Snapshot",
    "render_snapshots",
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
# How a gauge of several processes becomes the node's: their sum (connections), the least
# (Redis is up only if every process reaches it) or the greatest.
Merge = Literal["sum", "min", "max"]
# One process's metrics as plain JSON values: name -> the metric's kind, help and values.
Snapshot = dict[str, dict[str, Any]]


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

    def snapshot(self) -> dict[str, Any] | None:
        """This metric's values as JSON values (None: nothing to report now)."""
        raise NotImplementedError


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

    def snapshot(self) -> dict[str, Any]:
        return {"kind": self.kind, "help": self.help_text, "labels": list(self.label_names),
                "values": [[list(labels), value] for labels, value in self._values.items()]}


class Gauge(_Metric):
    """A value that goes up and down, set by its owner."""

    kind = "gauge"

    def __init__(self, name: str, help_text: str, label_names: Sequence[str] = (),
                 merge: Merge = "sum") -> None:
        super().__init__(name, help_text, label_names)
        self._values: dict[Labels, float] = {}
        self.merge = merge

    def set(self, value: float, *labels: str) -> None:
        self._check(labels)
        self._values[labels] = float(value)

    def value(self, *labels: str) -> float | None:
        return self._values.get(labels)

    def samples(self) -> Iterable[str]:
        for labels, value in sorted(self._values.items()):
            yield f"{self.name}{_label_text(self.label_names, labels)} {_number(value)}"

    def snapshot(self) -> dict[str, Any]:
        return {"kind": self.kind, "help": self.help_text, "labels": list(self.label_names),
                "merge": self.merge,
                "values": [[list(labels), value] for labels, value in self._values.items()]}


class CallbackGauge(_Metric):
    """A gauge read from its owner at scrape time; a failing callback drops only its sample."""

    kind = "gauge"

    def __init__(self, name: str, help_text: str, read: Callable[[], float],
                 merge: Merge = "sum") -> None:
        super().__init__(name, help_text)
        self._read = read
        self.merge = merge

    def _value(self) -> float | None:
        try:
            return float(self._read())
        except Exception:
            return None

    def samples(self) -> Iterable[str]:
        value = self._value()
        if value is not None:
            yield f"{self.name} {_number(value)}"

    def snapshot(self) -> dict[str, Any]:
        value = self._value()
        return {"kind": self.kind, "help": self.help_text, "labels": [], "merge": self.merge,
                "values": [] if value is None else [[[], value]]}


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

    def snapshot(self) -> dict[str, Any]:
        return {"kind": self.kind, "help": self.help_text, "bounds": list(self.bounds),
                "counts": list(self._counts), "sum": self.sum, "count": self.count}


class Metrics:
    """Every metric of one server process, and the text served at ``GET /metrics``. ``node``
    (the setting ``node_name``) labels every series; without it, no label is added."""

    def __init__(self, node: str | None = None) -> None:
        self.node = node
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
        self.grabs = self.add(Counter(
            "liveroom_coupon_grabs_total", "Coupon grabs answered, by status.", ["status"]))
        self.grab_latency = self.add(Histogram(
            "liveroom_coupon_grab_latency_seconds", "Time from a coupon:grab event to its answer.",
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
            "liveroom_redis_up", "1 if the last Redis PING answered in time, else 0.",
            merge="min"))
        started = time.time()
        self.add(CallbackGauge("liveroom_process_start_time_seconds",
                               "Start time of the process (of the oldest, under --workers) "
                               "since the Unix epoch.",
                               lambda: started, merge="min"))

    def add(self, metric: M) -> M:
        if metric.name in self._metrics:
            raise ValueError(f"metric {metric.name} registered twice")
        self._metrics[metric.name] = metric
        return metric

    def gauge_from(self, name: str, help_text: str, read: Callable[[], float],
                   merge: Merge = "sum") -> None:
        self.add(CallbackGauge(name, help_text, read, merge))

    def record_buy(self, status: str, seconds: float) -> None:
        self.buys.inc(status)
        self.buy_latency.observe(seconds)

    def record_bid(self, status: str, seconds: float) -> None:
        self.bids.inc(status)
        self.bid_latency.observe(seconds)

    def record_grab(self, status: str, seconds: float) -> None:
        self.grabs.inc(status)
        self.grab_latency.observe(seconds)

    @property
    def answered_bursts(self) -> int:
        """Buys, bids and coupon grabs answered so far: what a flash sale, a bidding war or a
        coupon drop is made of."""
        return self.buy_latency.count + self.bid_latency.count + self.grab_latency.count

    def snapshot(self) -> Snapshot:
        """Every metric's values now, as JSON values (what another worker merges)."""
        return {name: snap for name, metric in self._metrics.items()
                if (snap := metric.snapshot()) is not None}

    def render(self, others: Sequence[Snapshot] = ()) -> str:
        """The exposition of this process's metrics, merged with ``others`` (the other
        workers' snapshots)."""
        return render_snapshots([self.snapshot(), *others], self.node)


def _merge_values(kind: str, merge: str, into: dict[Labels, float],
                  values: Iterable[Sequence[Any]]) -> None:
    for raw_labels, value in values:
        labels = tuple(str(v) for v in raw_labels)
        number = float(value)
        if labels not in into:
            into[labels] = number
        elif kind == "counter" or merge == "sum":
            into[labels] += number
        elif merge == "min":
            into[labels] = min(into[labels], number)
        else:
            into[labels] = max(into[labels], number)


def render_snapshots(snapshots: Sequence[Snapshot], node: str | None = None) -> str:
    """One exposition of several processes' snapshots (the first one's metric order)."""
    names: dict[str, None] = {}
    for snap in snapshots:
        names.update(dict.fromkeys(snap))
    lines: list[str] = []
    node_names: tuple[str, ...] = ("node",) if node else ()
    node_values: tuple[str, ...] = (node,) if node else ()
    for name in names:
        parts = [snap[name] for snap in snapshots if name in snap]
        first = parts[0]
        kind = str(first["kind"])
        lines.append(f"# HELP {name} {_escape(str(first['help']))}")
        lines.append(f"# TYPE {name} {kind}")
        if kind == "histogram":
            lines.extend(_histogram_lines(name, parts, node_names, node_values))
            continue
        merged: dict[Labels, float] = {}
        for part in parts:
            _merge_values(kind, str(part.get("merge", "sum")), merged, part["values"])
        label_names = (*node_names, *first["labels"])
        for labels, value in sorted(merged.items()):
            text = _label_text(label_names, (*node_values, *labels))
            lines.append(f"{name}{text} {_number(value)}")
    return "\n".join(lines) + "\n"


def _histogram_lines(name: str, parts: Sequence[dict[str, Any]], node_names: Labels,
                     node_values: Labels) -> Iterable[str]:
    bounds = [float(b) for b in parts[0]["bounds"]]
    counts = [0] * (len(bounds) + 1)
    total = 0.0
    count = 0
    for part in parts:
        if [float(b) for b in part["bounds"]] != bounds:
            continue  # a worker of another version; its buckets cannot be added
        for index, value in enumerate(part["counts"]):
            counts[index] += int(value)
        total += float(part["sum"])
        count += int(part["count"])
    running = 0
    for bound, bucket in zip((*bounds, math.inf), counts, strict=True):
        running += bucket
        text = _label_text((*node_names, "le"), (*node_values, _number(bound)))
        yield f"{name}_bucket{text} {running}"
    plain = _label_text(node_names, node_values)
    yield f"{name}_sum{plain} {_number(total)}"
    yield f"{name}_count{plain} {count}"
