"""Sliding-window bitrate and frame-rate of a broadcast, as the relay receives it."""

from __future__ import annotations

from collections import deque

__all__ = ["StreamMeter"]


class StreamMeter:
    def __init__(self, window_ms: int) -> None:
        if window_ms <= 0:
            raise ValueError("window_ms must be positive")
        self._window_ms = window_ms
        # (received_ms, bytes, is_video_frame)
        self._samples: deque[tuple[int, int, bool]] = deque()
        self._first_ms: int | None = None
        self.last_ms: int | None = None

    def record(self, now_ms: int, size: int, video_frame: bool) -> None:
        if self._first_ms is None:
            self._first_ms = now_ms
        self.last_ms = now_ms
        self._samples.append((now_ms, size, video_frame))
        self._prune(now_ms)

    def rates(self, now_ms: int) -> tuple[float, float]:
        """(kilobits per second, video frames per second) over the window ending now."""
        self._prune(now_ms)
        if self._first_ms is None or not self._samples:
            return 0.0, 0.0
        # A broadcast younger than the window is measured over its age, not diluted.
        span_ms = max(1, min(self._window_ms, now_ms - self._first_ms))
        total_bytes = sum(size for _, size, _ in self._samples)
        frames = sum(1 for _, _, video in self._samples if video)
        return total_bytes * 8 / span_ms, frames * 1000 / span_ms

    def _prune(self, now_ms: int) -> None:
        horizon = now_ms - self._window_ms
        while self._samples and self._samples[0][0] <= horizon:
            self._samples.popleft()
