"""loadtests/locustfile.py under a real ``locust --headless`` against a real server.

Locust runs as a subprocess only: importing it would let gevent patch this process's sockets
and threads under the asyncio server the test runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from pathlib import Path
from typing import Any

from liveroom.redis_server import free_port

ROOT = Path(__file__).resolve().parents[2]
LOCUST = [sys.executable, "-m", "locust", "-f", str(ROOT / "loadtests" / "locustfile.py")]
STOCK = 10


async def _locust(*args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        *LOCUST, *args, cwd=ROOT, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE)


async def _finish(process: asyncio.subprocess.Process) -> tuple[int, str]:
    """Wait for a locust process, killing it if it overstays: its exit code and its log."""
    try:
        _, stderr = await asyncio.wait_for(process.communicate(), timeout=60)
    finally:
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()
    assert process.returncode is not None
    return process.returncode, stderr.decode()


def _scenario(server: Any, stats: Path, users: int = 30) -> list[str]:
    return ["--host", server.url, "--headless", "-u", str(users), "-r", str(users),
            "--run-time", "4s", "--only-summary", "--json-file", str(stats.with_suffix("")),
            "--lt-anchor-token", server.token("anchor", "Locusta"),
            "--lt-stock", str(STOCK), "--lt-per-user-limit", "1"]


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
    code, log = await _finish(await _locust(*_scenario(server, stats)))
    assert code == 0, log[-3000:]

    requests = _requests(stats)
    # 30 users kept buying for 4 s: exactly the stock was reserved, one unit per answer, and
    # every other answer was a refusal, never an error.
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
        code, log = await _finish(master)
    finally:
        worker_code, worker_log = await _finish(worker)
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
