"""Open-model schedules: every buy's intended send time is fixed before the run starts.

Latency is measured from the intended time, not from when the generator managed to send, so a
stalled generator or server shows up as latency instead of silently sending less
(coordinated omission). Times are milliseconds after T0, the moment the sale opens.
"""

from __future__ import annotations

import enum
import math
import random
from dataclasses import dataclass

from .exceptions import ScenarioError


class Profile(enum.StrEnum):
    SPIKE = "spike"  # every buyer at T0, spread only by a small jitter
    RAMP = "ramp"  # the arrival rate climbs linearly from zero over the window
    STEADY = "steady"  # Poisson arrivals at a constant rate over the window
    SOAK = "soak"  # a long steady window; each buyer's attempts spread across all of it


@dataclass(frozen=True, slots=True)
class ScheduleSpec:
    profile: Profile
    buyers: int
    attempts: int  # buys per buyer, each for ``qty`` units
    window_ms: float  # ramp/steady/soak: arrivals spread over this; spike: ignored
    jitter_ms: float  # spike: arrivals uniform in [0, jitter]
    attempt_gap_ms: float  # spike/ramp/steady: a buyer's next attempt follows its previous one
    seed: int = 1

    def validate(self) -> None:
        if self.buyers < 1:
            raise ScenarioError("buyers", "must be at least 1")
        if self.attempts < 1:
            raise ScenarioError("attempts", "must be at least 1")
        if self.window_ms <= 0 and self.profile is not Profile.SPIKE:
            raise ScenarioError("duration", "must be positive for this profile")
        if self.jitter_ms < 0 or self.attempt_gap_ms < 0:
            raise ScenarioError("jitter", "must not be negative")


def build_schedule(spec: ScheduleSpec) -> list[list[float]]:
    """For each buyer (by index), the intended send offsets of its attempts, ascending."""
    spec.validate()
    rng = random.Random(spec.seed)
    n = spec.buyers
    if spec.profile is Profile.SPIKE:
        arrivals = [rng.uniform(0.0, spec.jitter_ms) for _ in range(n)]
    elif spec.profile is Profile.RAMP:
        # A rate rising linearly from 0 has a quadratic CDF, so the i-th arrival sits at
        # window * sqrt(u) for uniform u; sorting keeps arrivals spread like a real ramp.
        arrivals = sorted(spec.window_ms * math.sqrt(rng.random()) for _ in range(n))
    else:
        rate_per_ms = n / spec.window_ms
        arrivals = []
        t = 0.0
        for _ in range(n):
            t += rng.expovariate(rate_per_ms)
            arrivals.append(min(t, spec.window_ms))
    rng.shuffle(arrivals)  # so arrival order is unrelated to worker/buyer index
    if spec.profile is Profile.SOAK:
        # Each buyer keeps coming back through the whole window, keeping connections busy.
        step = spec.window_ms / spec.attempts
        return [[(first / spec.attempts + k * step) for k in range(spec.attempts)]
                for first in arrivals]
    return [[first + k * spec.attempt_gap_ms for k in range(spec.attempts)]
            for first in arrivals]
