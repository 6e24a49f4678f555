"""The one ``liveroom serve`` launcher of the load tools, benchmarks and tests: it starts a
server with exactly the settings given, says why when one cannot start, and leaves nothing
running when it stops one, even one that ignores SIGTERM."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import aiohttp
import pytest

from loadtests import _procstats as procstats
from loadtests._launcher import ServerProcess, ServerStartFailed


async def _gone(pids: dict[int, int], within_s: float = 30) -> bool:
    """Whether every process in ``pids`` (pid -> start time) has exited within ``within_s``."""
    for _ in range(int(within_s / 0.05)):
        if all(procstats.start_ticks(pid) != started for pid, started in pids.items()):
            return True
        await asyncio.sleep(0.05)
    return False


async def test_a_server_that_cannot_start_says_why_and_leaves_nothing(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path, env={"LIVEROOM_REDIS_SERVER_BIN": "redis-server-missing"})
    with pytest.raises(ServerStartFailed) as failed:
        await server.start()
    assert failed.value.exit_code == 2
    assert "redis-server-missing" in failed.value.log_tail
    assert server.returncode == 2
    assert await server.stop() == 2


async def test_the_server_sees_only_the_settings_given_and_stops_with_its_children(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A shell's LIVEROOM_* does not reach the server: this one would stop it from starting.
    monkeypatch.setenv("LIVEROOM_REDIS_SERVER_BIN", "redis-server-missing")
    async with ServerProcess(tmp_path, env={"LIVEROOM_SECRET": "x" * 40}) as server:
        assert "serving on" in server.output()
        async with aiohttp.ClientSession() as http, http.get(server.url + "/healthz") as got:
            assert got.status == 200
        children = {child.name: child for child in server.children()}
        for _ in range(600):  # the hand-off consumer names itself once it runs
            if "lr-handoff" in children:
                break
            await asyncio.sleep(0.05)
            children = {child.name: child for child in server.children()}
        assert "redis-server" in children["redis-server"].cmdline
        assert children["lr-handoff"].ppid == server.pid
        running = {child.pid: child.started for child in children.values()}
        token = await server.token("admin", "Ops")
        async with aiohttp.ClientSession() as http, http.post(
                server.url + "/api/rooms", json={"title": "Launched"},
                headers={"Authorization": f"Bearer {token}"}) as created:
            assert created.status == 201, "the token is signed with the server's secret"
    assert server.returncode == 0
    assert await server.stop() == 0, "stopping again answers the same exit code"
    assert await _gone(running), "the server's children stop with it"


async def test_a_server_that_ignores_sigterm_is_killed_with_its_children(
    tmp_path: Path,
) -> None:
    server = ServerProcess(tmp_path)
    await server.start()
    running = {child.pid: child.started for child in server.children()}
    assert running
    os.kill(server.pid, signal.SIGSTOP)  # a stopped process cannot act on SIGTERM
    assert await server.stop(signal.SIGTERM, timeout_s=0.5) == -signal.SIGKILL
    assert await _gone(running), "nothing the server started outlives the kill"
