from __future__ import annotations

import statistics
from typing import Any

import pytest

from loadtests import Profile, ScenarioError, ScheduleSpec, build_schedule


def spec(profile: Profile, **overrides) -> ScheduleSpec:
    values: dict[str, Any] = {"profile": profile, "buyers": 2000, "attempts": 3,
                              "window_ms": 10_000.0, "jitter_ms": 100.0,
                              "attempt_gap_ms": 200.0, "seed": 4}
    values.update(overrides)
    return ScheduleSpec(**values)


def test_spike_sends_every_first_attempt_within_the_jitter_and_spaces_the_rest():
    schedule = build_schedule(spec(Profile.SPIKE))
    assert len(schedule) == 2000
    firsts = [attempts[0] for attempts in schedule]
    assert min(firsts) >= 0
    assert max(firsts) <= 100
    for attempts in schedule:
        assert attempts == pytest.approx([attempts[0] + k * 200 for k in range(3)])


def test_ramp_arrivals_grow_over_the_window():
    firsts = [a[0] for a in build_schedule(spec(Profile.RAMP))]
    assert max(firsts) <= 10_000
    first_half = sum(1 for t in firsts if t < 5000)
    # A linear ramp puts a quarter of the arrivals in the first half of the window.
    assert 0.2 < first_half / len(firsts) < 0.3


def test_steady_arrivals_keep_a_constant_rate():
    firsts = [a[0] for a in build_schedule(spec(Profile.STEADY))]
    per_second = [sum(1 for t in firsts if s * 1000 <= t < (s + 1) * 1000) for s in range(10)]
    assert statistics.mean(per_second) == pytest.approx(200, rel=0.05)
    assert min(per_second) > 140


def test_soak_spreads_each_buyers_attempts_across_the_whole_window():
    schedule = build_schedule(spec(Profile.SOAK, attempts=4))
    for attempts in schedule:
        assert attempts == sorted(attempts)
        assert attempts[-1] - attempts[0] == pytest.approx(7500)
        assert attempts[-1] <= 10_000


def test_the_same_seed_gives_the_same_plan_and_another_seed_does_not():
    assert build_schedule(spec(Profile.STEADY)) == build_schedule(spec(Profile.STEADY))
    assert build_schedule(spec(Profile.STEADY)) != build_schedule(spec(Profile.STEADY, seed=5))


@pytest.mark.parametrize(("field", "overrides"), [
    ("buyers", {"buyers": 0}), ("attempts", {"attempts": 0}),
    ("duration", {"profile": Profile.RAMP, "window_ms": 0.0}),
    ("jitter", {"jitter_ms": -1.0}),
])
def test_impossible_schedules_are_refused(field, overrides):
    with pytest.raises(ScenarioError) as caught:
        build_schedule(spec(Profile.SPIKE, **overrides) if "profile" not in overrides
                       else spec(**overrides))
    assert caught.value.field == field
