"""The soak script: its arithmetic, and a short real run against a server it starts itself."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from loadtests import ScenarioError
from loadtests import _procstats as procstats
from loadtests.soak import SoakConfig, least_squares_slope, memory_verdict, run_soak

# The soak starts a liveroom server process of its own.
pytestmark = pytest.mark.integration


def test_the_slope_is_the_least_squares_line_through_the_samples():
    assert least_squares_slope([(0, 100.0), (1, 102.0), (2, 104.0)]) == pytest.approx(2.0)
    noisy = [(0, 100.0), (1, 101.0), (2, 99.0), (3, 100.0)]
    assert abs(least_squares_slope(noisy) or 0.0) < 0.5
    assert least_squares_slope([(0, 1.0)]) is None


def test_memory_climbing_after_warm_up_is_not_flat():
    def samples(rss_at):
        return [{"t_s": float(t), "rss_mb": rss_at(t)} for t in range(0, 300, 5)]

    # A big warm-up jump does not count; a steady 3 MB a minute afterwards does.
    settled = memory_verdict(samples(lambda t: 80.0 if t < 30 else 120.0), 30, "rss_mb", 1.0)
    assert settled["flat"] is True
    assert settled["start_mb"] == 120.0
    assert settled["max_mb"] == 120.0
    leaking = memory_verdict(samples(lambda t: 100.0 + 3.0 * t / 60), 30, "rss_mb", 1.0)
    assert leaking["flat"] is False
    assert leaking["slope_mb_per_min"] == pytest.approx(3.0)


def test_a_warm_up_longer_than_the_run_is_refused():
    with pytest.raises(ScenarioError):
        SoakConfig(minutes=0.5, warmup_s=40).validate()


async def test_a_short_soak_keeps_every_sale_audited_and_stops_its_server(tmp_path: Path):
    report_path = tmp_path / "soak.json"
    config = SoakConfig(minutes=0.25, viewers=30, chat_per_s=4, buy_per_s=6, churn_per_s=2,
                        checkout_fraction=0.5, sale_every_s=6, warmup_s=3, sample_every_s=1,
                        json_path=report_path, quiet=True)
    report = await run_soak(config)

    assert report["errors"] == {}
    assert len(report["sales"]) >= 2  # sales rotated during the run
    for sale in report["sales"]:
        assert sale["audit"]["passed"] is True, sale["audit"]
        assert sale["orders"] == sale["checkouts"]
        assert sale["server"]["sold"] == sale["checkouts"]
    assert report["room_check"]["ok"] is True
    assert report["counts"]["buy:reserved"] > 0
    assert report["counts"]["chat:ok"] > 0
    assert report["counts"]["churn_visits"] > 0
    assert report["latency_ms"]["checkout"]["count"] == sum(s["checkouts"]
                                                            for s in report["sales"])
    assert len(report["samples"]) >= 8
    assert all(s["rss_mb"] > 10 for s in report["samples"])
    assert report["memory"]["start_mb"] is not None
    assert report["memory"]["slope_mb_per_min"] is not None

    written = json.loads(report_path.read_text())
    assert written["sales"] == report["sales"]
    assert "<svg" in Path(report["chart"]).read_text()
    # The server it started is gone.
    pid = report["server_pid"]
    assert procstats.start_ticks(pid) is None, "gone, or exited and not yet reaped"
    assert os.getpid() != pid
