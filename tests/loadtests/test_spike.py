"""The spike command against the real server: the audit and the report it writes."""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import re
import sys
import time
from pathlib import Path

import pytest

from loadtests import Profile, ScenarioError, SpikeConfig, run_spike
from loadtests._worker import CPU_SAMPLE_S, _CpuMeter


async def test_a_spike_from_two_processes_sells_exactly_the_stock_within_the_limit(
        server, tmp_path: Path):
    report_path = tmp_path / "spike.json"
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "loadtests", "spike", "--url", server.url,
        "--anchor-token", server.token("anchor", "Loady"),
        "--admin-token", server.token("admin", "Minter"), "--buyers", "300", "--stock", "30",
        "--per-user-limit", "2", "--processes", "2", "--json", str(report_path),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    _, stderr = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode == 0, stderr.decode()[-3000:]
    assert "audit       PASSED" in stderr.decode()

    report = json.loads(report_path.read_text())
    assert report["buyers"] == 300
    assert report["connected"] == 300
    assert report["processes"] == 2
    assert report["stock"] == 30
    assert report["reserved"] == 30
    assert report["oversold"] == 0
    assert report["statuses"]["reserved"] == 30
    # Every buyer asks three times, so everyone is answered and most hear sold_out.
    assert sum(report["statuses"].values()) == 900
    assert report["statuses"].get("sold_out", 0) + report["statuses"].get("limit_reached", 0) \
        == 870
    assert report["errors"] == {}
    assert report["audit"]["passed"] is True
    latency = report["latency_ms"]
    assert 0 < latency["p50"] <= latency["p90"] <= latency["p99"] <= latency["p999"]
    assert latency["count"] == 900
    assert report["connect_ms"]["count"] == 300
    assert sum(b["answered"] for b in report["throughput"]["buckets"]) == 900
    assert [w["worker"] for w in report["generator"]["workers"]] == [0, 1]

    status, sale = await server.request("GET", f"/api/sales/{report['sale']}")
    assert status == 200
    assert sale["held"] + sale["sold"] == 30
    assert sale["status"] == "ended"  # the command closes its sale afterwards
    chart = Path(report["chart"])
    assert chart == report_path.with_suffix(".html")
    assert "<svg" in chart.read_text()


async def test_when_stock_outlasts_demand_every_buyer_gets_the_limit(server):
    config = SpikeConfig(url=server.url, anchor_token=server.token("anchor", "Loady"),
                         admin_token=server.token("admin", "Minter"),
                         buyers=60, stock=500, per_user_limit=2, attempts=3,
                         profile=Profile.STEADY, duration_s=1.0, chat_per_s=20.0, quiet=True)
    report = await run_spike(config)
    assert report["reserved"] == 120
    assert report["demand"] == 120
    assert report["statuses"] == {"reserved": 120, "limit_reached": 60}
    assert report["audit"]["passed"] is True
    assert report["server"]["remaining"] == 380
    assert report["chat"]["latency_ms"]["count"] > 0
    assert set(report["chat"]["statuses"]) == {"ok"}


async def test_a_viewer_token_cannot_play_the_anchor(server):
    config = SpikeConfig(url=server.url, anchor_token=server.token("viewer"),
                         admin_token=server.token("admin", "Minter"), buyers=5, stock=5,
                         quiet=True)
    with pytest.raises(ScenarioError) as caught:
        await run_spike(config)
    assert caught.value.field == "anchor_token"


async def test_checked_out_reservations_become_orders_at_the_deal_price(server, tmp_path: Path):
    report_path = tmp_path / "checkout.json"
    anchor = server.token("anchor", "Loady")
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "loadtests", "spike", "--url", server.url, "--anchor-token", anchor,
        "--admin-token", server.token("admin", "Minter"), "--buyers", "200", "--stock", "40",
        "--per-user-limit", "2", "--checkout", "1.0",
        "--json", str(report_path),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    _, stderr = await asyncio.wait_for(process.communicate(), timeout=60)
    text = stderr.decode()
    assert process.returncode == 0, text[-3000:]
    assert "ok  orders_match_checkouts" in text
    assert "checkout ms" in text

    report = json.loads(report_path.read_text())
    assert report["reserved"] == 40
    assert report["checkouts"]["attempted"] == 40
    assert report["checkouts"]["ok"] == 40
    assert report["checkouts"]["statuses"] == {"ok": 40}
    assert report["checkout_latency_ms"]["count"] == 40
    assert report["orders"]["found"] == 40
    assert report["orders"]["units"] == 40
    assert report["orders"]["gmv_cents"] == 40 * 9900
    assert report["orders"]["figures"]["orders"] == 40
    assert report["server"]["sold"] == 40
    assert report["server"]["held"] == 0
    names = {c["name"] for c in report["audit"]["checks"] if c["ok"]}
    assert {"orders_match_checkouts", "order_totals_match_price",
            "sold_matches_checkouts"} <= names

    # The buyers' own order lists, read independently of the tool, agree.
    status, sale = await server.request("GET", f"/api/sales/{report['sale']}")
    assert status == 200
    assert (sale["sold"], sale["held"]) == (40, 0)


async def test_a_partial_checkout_leaves_the_rest_held(server):
    config = SpikeConfig(url=server.url, anchor_token=server.token("anchor", "Loady"),
                         admin_token=server.token("admin", "Minter"),
                         buyers=80, stock=60, per_user_limit=1, attempts=1,
                         checkout_fraction=0.5, seed=3, quiet=True)
    report = await run_spike(config)
    assert report["audit"]["passed"] is True, report["audit"]
    checked = report["checkouts"]["ok"]
    assert 0 < checked < 60
    assert report["orders"]["found"] == checked
    assert report["server"]["sold"] == checked
    assert report["server"]["held"] == 60 - checked


async def _stall_when_the_sale_opens(server, stall_s: float) -> float:
    """Block the event loop (the generator's, and here the server's too) for ``stall_s`` from
    the moment the load test's sale opens; returns that moment (wall-clock seconds)."""
    loop = asyncio.get_running_loop()
    while True:
        _, body = await server.request("GET", "/api/rooms")
        sales = [room["sale"] for room in body["rooms"] if room.get("sale")]
        if sales:
            opens_at = float(sales[0]["starts_at"]) / 1000.0
            break
        await asyncio.sleep(0.01)
    loop.call_at(loop.time() + (opens_at - time.time()), time.sleep, stall_s)
    return opens_at


async def test_a_stalled_generator_shows_up_as_latency_not_as_a_lighter_load(server):
    # Every buy is intended within 20 ms after T0 and the loop is blocked for 3 s from the
    # opening: a generator that timed buys from when it managed to send them (coordinated
    # omission) would report a few milliseconds; counted from the intended time, each buy
    # waited out the stall. The bound (600 ms, a fifth of the stall) leaves 2.4 s for the
    # opening as the generator maps it from the server's clock (half a request's round trip,
    # long on a busy machine), for a stall that starts late because this test's loop got its
    # turn late, and for the 20 ms jitter.
    config = SpikeConfig(url=server.url, anchor_token=server.token("anchor", "Loady"),
                         admin_token=server.token("admin", "Minter"),
                         buyers=40, stock=10, attempts=1, jitter_ms=20.0, quiet=True)
    stall = asyncio.create_task(_stall_when_the_sale_opens(server, 3.0))
    report = await run_spike(config)
    await stall
    assert report["audit"]["passed"] is True, report["audit"]
    assert report["latency_ms"]["count"] == 40
    assert report["latency_ms"]["min"] >= 600, report["latency_ms"]
    assert report["latency_ms"]["p50"] >= 600
    # The buys left the generator late, and the report says so.
    assert report["send_lag_ms"]["p50"] >= 600, report["send_lag_ms"]
    assert any("send lag" in warning for warning in report["generator"]["warnings"])


async def test_viewer_churn_runs_during_a_spike_and_is_reported(server, tmp_path: Path):
    report_path = tmp_path / "churn.json"
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "loadtests", "spike", "--url", server.url,
        "--anchor-token", server.token("anchor", "Loady"),
        "--admin-token", server.token("admin", "Minter"), "--buyers", "100", "--stock", "20",
        "--attempts", "3", "--attempt-gap-ms", "500", "--churn-rate", "30",
        "--json", str(report_path),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    _, stderr = await asyncio.wait_for(process.communicate(), timeout=60)
    text = stderr.decode()
    assert process.returncode == 0, text[-3000:]
    report = json.loads(report_path.read_text())
    assert report["audit"]["passed"] is True
    assert report["reserved"] == 20
    churn = report["churn"]
    # About 30 a second for the second or so the buys last: extra viewers really came and went.
    assert churn["connect_ms"]["count"] >= 5, churn
    assert churn["failed"] == 0
    assert f"churn       {churn['connect_ms']['count']} viewers came and went" in text


async def test_a_ramp_run_passes_the_audit_and_its_arrivals_climb(server):
    config = SpikeConfig(url=server.url, anchor_token=server.token("anchor", "Loady"),
                         admin_token=server.token("admin", "Minter"),
                         buyers=80, stock=30, attempts=1, profile=Profile.RAMP,
                         duration_s=1.0, quiet=True)
    report = await run_spike(config)
    assert report["profile"] == "ramp"
    assert report["audit"]["passed"] is True, report["audit"]
    assert (report["reserved"], report["oversold"]) == (30, 0)
    assert report["statuses"] == {"reserved": 30, "sold_out": 50}
    # A linear ramp puts a quarter of the arrivals in the first half of the window.
    sent = [bucket["sent"] for bucket in report["throughput"]["buckets"]]
    assert sum(sent) == 80
    assert sum(sent[:5]) * 2 < sum(sent[5:]), sent


async def test_a_soak_run_spreads_each_buyers_attempts_over_the_window(server):
    config = SpikeConfig(url=server.url, anchor_token=server.token("anchor", "Loady"),
                         admin_token=server.token("admin", "Minter"),
                         buyers=40, stock=1000, per_user_limit=1, attempts=3,
                         profile=Profile.SOAK, duration_s=1.5, quiet=True)
    report = await run_spike(config)
    assert report["profile"] == "soak"
    assert report["audit"]["passed"] is True, report["audit"]
    assert report["statuses"] == {"reserved": 40, "limit_reached": 80}
    assert report["server"]["remaining"] == 960
    sent = [bucket["sent"] for bucket in report["throughput"]["buckets"]]
    assert sum(sent) == 120
    # Buys keep coming through the window: some in its first and some in its last quarter.
    assert sum(sent[:4]) > 0, sent
    assert sum(sent[11:]) > 0, sent


async def test_the_live_progress_display_prints_progress_lines(server):
    stream = io.StringIO()
    config = SpikeConfig(url=server.url, anchor_token=server.token("anchor", "Loady"),
                         admin_token=server.token("admin", "Minter"),
                         buyers=30, stock=10, attempts=2, profile=Profile.STEADY,
                         duration_s=2.0)
    report = await run_spike(config, progress_stream=stream)
    text = stream.getvalue()
    assert text.startswith("minting 30 buyer accounts ...\n"
                           "connecting 30 buyers in 1 process(es) to room r_"), text
    progress = re.findall(r"^sent (\d+)/60  answered (\d+)  p99 \S+ (?:ms)?\s*\[", text,
                          re.MULTILINE)
    assert progress, text
    assert all(int(answered) <= int(sent) <= 60 for sent, answered in progress)
    assert "\r" not in text, "not a terminal: whole lines, no rewriting in place"
    assert "audit       PASSED" in text
    assert report["audit"]["passed"] is True


async def test_the_cpu_meter_reports_the_generators_work():
    meter = _CpuMeter()
    meter.start()
    await asyncio.sleep(0.3)
    busy_until = time.process_time() + 0.8
    while time.process_time() < busy_until:  # real work, yielding so the meter can sample
        hashlib.sha256(b"x" * 100_000).digest()
        await asyncio.sleep(0)
    await meter.close()
    summary = meter.summary()
    assert summary["cpu_s"] >= 0.8, summary
    assert summary["wall_s"] >= summary["cpu_s"], summary  # one thread: never more than wall
    # How much of a core it got depends on what else the machine runs: only that it was seen.
    assert 0.0 < summary["mean_core_fraction"] <= summary["peak_core_fraction"], summary


def test_the_cpu_meter_reports_the_busiest_second_against_the_mean() -> None:
    meter = _CpuMeter()
    # 3 s sampled as the meter samples: idle, then one second at 90 % of a core, then idle.
    cpu = 0.0
    for tick in range(round(3 / CPU_SAMPLE_S) + 1):
        meter.samples.append((100.0 + tick * CPU_SAMPLE_S, cpu))
        if 1 / CPU_SAMPLE_S <= tick < 2 / CPU_SAMPLE_S:
            cpu = round(cpu + 0.9 * CPU_SAMPLE_S, 6)
    summary = meter.summary()
    assert summary["cpu_s"] == 0.9
    assert summary["wall_s"] == 3.0
    assert summary["mean_core_fraction"] == 0.3
    assert summary["peak_core_fraction"] == 0.9
