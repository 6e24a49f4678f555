"""``serve --workers 2``: whichever worker a scrape lands on, ``/metrics`` describes the node."""

from __future__ import annotations

import socket
from functools import partial
from pathlib import Path

import aiohttp

from liveroom.metrics import Counter, Gauge, Histogram, Metrics, render_snapshots
from liveroom.metrics_peers import socket_path
from tests.test_ops import parse_exposition, without_node
from tests.test_workers import running_cluster

OK = 'liveroom_http_responses_total{method="GET",status="200"}'
NOT_FOUND = 'liveroom_http_responses_total{method="GET",status="404"}'


async def _scrape(url: str) -> dict[str, float]:
    # A connection of its own each time: the kernel picks the worker per connection.
    async with (aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as http,
                http.get(url + "/metrics") as response):
        assert response.status == 200
        return without_node(parse_exposition(await response.text()), socket.gethostname())


async def _get(url: str, path: str, times: int) -> None:
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as http:
        for _ in range(times):
            async with http.get(url + path) as response:
                await response.read()


async def test_successive_scrapes_count_every_request_of_every_worker(tmp_path: Path) -> None:
    async with running_cluster(tmp_path) as cluster:
        first = await _scrape(cluster.url)
        ok, missing = first.get(OK, 0.0), first.get(NOT_FOUND, 0.0)
        seen: list[float] = [ok]
        for round_index in range(8):
            # Fresh connections: the kernel spreads them over both workers.
            await _get(cluster.url, "/healthz", 5 + round_index)
            await _get(cluster.url, "/api/rooms/r_missing", 2)
            samples = await _scrape(cluster.url)
            # Every request so far, and every earlier scrape (counted once answered).
            ok += 5 + round_index + 1
            missing += 2
            assert samples[OK] == ok, (round_index, samples[OK], ok)
            assert samples[NOT_FOUND] == missing
            seen.append(samples[OK])
        assert seen == sorted(seen)
        # Both workers are in the sum: two processes' connection gauges and start times.
        client_0 = await cluster.connect_on(0, lambda: cluster.token("viewer", "A"))
        client_1 = await cluster.connect_on(1, lambda: cluster.token("viewer", "B"))
        for _ in range(4):
            assert (await _scrape(cluster.url))["liveroom_connected_sockets"] == 2
        assert client_0 is not client_1


def test_snapshots_merge_by_kind() -> None:
    """Counters and histograms add up; gauges add up, or take their least or greatest."""
    workers = []
    for index in range(2):
        metrics = Metrics()
        metrics.add(Counter("c_total", "c", ["code"])).inc("a", amount=index + 1)
        metrics.add(Gauge("up", "u", merge="min")).set(index)
        metrics.add(Gauge("peak", "p", merge="max")).set(10 * index)
        metrics.gauge_from("sockets", "s", partial(float, 3 + index))
        metrics.add(Histogram("h_seconds", "h", [0.1, 1.0])).observe(0.05 * (index + 1))
        workers.append(metrics.snapshot())
    samples = parse_exposition(render_snapshots(workers, "n1"))
    assert samples['c_total{node="n1",code="a"}'] == 3
    assert samples['up{node="n1"}'] == 0
    assert samples['peak{node="n1"}'] == 10
    assert samples['sockets{node="n1"}'] == 7
    assert samples['h_seconds_bucket{node="n1",le="0.1"}'] == 2
    assert samples['h_seconds_count{node="n1"}'] == 2


def test_a_deep_data_dir_still_gets_a_socket_name_that_fits(tmp_path: Path) -> None:
    deep = tmp_path / ("d" * 120)
    path = socket_path(deep, 1)
    assert len(str(path)) <= 107
    assert path != socket_path(tmp_path / ("e" * 120), 1)
    assert socket_path(tmp_path, 1) == tmp_path / "run" / "metrics-1.sock"
