"""loadtests/locustfile.py under a real ``locust --headless`` against a real server.

Locust runs as a subprocess only: importing it would let gevent patch this process's sockets
and threads under the asyncio server the test runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
import json
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from liveroom.redis_server import free_port

ROOT = Path(__file__).resolve().parents[2]
LOCUST = [sys.executable, "-m", "locust", "-f", str(ROOT / "loadtests" / "locustfile.py")]
STOCK = 10
# Only a ceiling: each test stops Locust as soon as Locust's own running stats hold what the
# test asserts, which on a busy machine may take a while (gevent start-up, stats reports).
RUN_TIME_LIMIT_S = 120


class Locust:
    """A locust subprocess whose output is read all along (a full pipe would stall it)."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.output = asyncio.ensure_future(process.communicate())

    async def stop_when(self, done: Callable[[dict[str, int]], bool], live: Path) -> None:
        """Stop Locust as an operator would (SIGTERM: it writes its final stats and exits 0)
        once its running stats (``live``, its ``--csv`` file) satisfy ``done``, unless it ends
        by itself first (at the --run-time ceiling, or failing)."""
        while not self.output.done():
            if done(_live_counts(live)):
                self.process.send_signal(signal.SIGTERM)
                return
            await asyncio.sleep(0.2)

    async def finish(self) -> tuple[int, str]:
        """Wait for the process, killing it if it overstays: its exit code and its log."""
        try:
            _, stderr = await asyncio.wait_for(self.output, timeout=RUN_TIME_LIMIT_S + 60)
        finally:
            if self.process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    self.process.kill()
                await self.process.wait()
        assert self.process.returncode is not None
        return self.process.returncode, stderr.decode()


async def _locust(*args: str) -> Locust:
    return Locust(await asyncio.create_subprocess_exec(
        *LOCUST, *args, cwd=ROOT, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE))


def _scenario(server: Any, stats: Path, users: int = 30) -> list[str]:
    return ["--host", server.url, "--headless", "-u", str(users), "-r", str(users),
            "--run-time", f"{RUN_TIME_LIMIT_S}s", "--only-summary",
            "--json-file", str(stats.with_suffix("")), "--csv", str(stats.with_name("live")),
            "--lt-anchor-token", server.token("anchor", "Locusta"),
            "--lt-admin-token", server.token("admin", "Minter"),
            "--lt-stock", str(STOCK), "--lt-per-user-limit", "1"]


def _live(stats: Path) -> Path:
    return stats.with_name("live_stats.csv")


def _live_counts(live: Path) -> dict[str, int]:
    """Locust's running stats, request name -> requests: its --csv file, which the master
    rewrites every second and flushes every few (a half-written read counts as nothing)."""
    try:
        rows = list(csv.DictReader(io.StringIO(live.read_text())))
    except (OSError, csv.Error):
        return {}
    counts = {}
    for row in rows:
        with contextlib.suppress(KeyError, TypeError, ValueError):
            counts[row["Name"]] = int(row["Request Count"])
    return counts


def _requests(stats: Path) -> dict[str, tuple[int, int]]:
    """Locust's final stats: request name -> (requests, failures)."""
    return {entry["name"]: (entry["num_requests"], entry["num_failures"])
            for entry in json.loads(stats.read_text())}


async def _the_sale(server: Any) -> dict[str, Any]:
    status, body = await server.request("GET", "/api/rooms")
    assert status == 200
    (room,) = [room for room in body["rooms"] if room["title"] == "locust load test"]
    status, sale = await server.request("GET", f"/api/sales/{room['sale']['id']}")
    assert status == 200
    return dict(sale)


async def test_locust_buyers_get_reserved_answers_and_nothing_is_oversold(server, tmp_path):
    stats = tmp_path / "stats.json"
    locust = await _locust(*_scenario(server, stats))
    # Until the stock is gone and both refusals have been answered: 30 users keep buying.
    await locust.stop_when(lambda counts: counts.get("buy:reserved", 0) >= STOCK
                           and counts.get("buy:sold_out", 0) > 0
                           and counts.get("buy:limit_reached", 0) > 0, _live(stats))
    code, log = await locust.finish()
    assert code == 0, log[-3000:]

    requests = _requests(stats)
    # Exactly the stock was reserved, one unit per answer, and every other answer was a
    # refusal, never an error.
    assert requests["buy:reserved"] == (STOCK, 0), requests
    assert requests["buy:sold_out"][0] > 0, requests
    assert requests["buy:limit_reached"][0] > 0, "reserved buyers tried again: limit of 1"
    assert set(requests) == {"buy:reserved", "buy:sold_out", "buy:limit_reached"}, requests
    assert all(failures == 0 for _, failures in requests.values())

    sale = await _the_sale(server)
    assert (sale["stock"], sale["remaining"], sale["held"], sale["sold"]) == (STOCK, 0, STOCK, 0)


async def test_distributed_locust_workers_hear_the_sale_and_check_out(server, tmp_path):
    # The master plays the anchor and tells its worker the sale over Locust's message channel.
    stats = tmp_path / "stats.json"
    port = str(free_port())
    worker = await _locust("--worker", "--master-host", "127.0.0.1", "--master-port", port)
    try:
        master = await _locust(*_scenario(server, stats), "--master", "--expect-workers", "1",
                               "--master-bind-host", "127.0.0.1", "--master-bind-port", port,
                               "--lt-checkout", "1.0")
        # The master's running stats include the worker's once it has reported them.
        await master.stop_when(lambda counts: counts.get("checkout:ok", 0) >= STOCK
                               and counts.get("buy:sold_out", 0) > 0, _live(stats))
        code, log = await master.finish()
    finally:
        worker_code, worker_log = await worker.finish()
    assert code == 0, log[-3000:]
    assert worker_code == 0, worker_log[-3000:]
    assert "Got quit message from master" in worker_log, worker_log[-3000:]

    requests = _requests(stats)
    assert requests["buy:reserved"] == (STOCK, 0), requests
    assert requests["checkout:ok"] == (STOCK, 0), requests
    assert not [name for name in requests
                if name.startswith("checkout:") and name != "checkout:ok"], requests

    sale = await _the_sale(server)
    assert (sale["stock"], sale["remaining"], sale["held"], sale["sold"]) == (STOCK, 0, 0, STOCK)


def test_neither_locust_nor_gevent_is_loaded_into_the_test_process():
    # locust registers a pytest plugin; pyproject.toml turns it off (-p no:locust), since a
    # gevent import would monkey-patch sockets and threads under the asyncio servers here.
    loaded = sorted(name for name in sys.modules
                    if name.split(".")[0] in ("locust", "gevent", "pytest_locust"))
    assert loaded == []
