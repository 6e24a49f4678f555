"""The process's owners start in the order they were registered and stop in the reverse one,
whatever one of them does; hooks tell listeners of changes without the firing side failing."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from liveroom.app import build_services
from liveroom.hooks import AsyncHook, Hook
from liveroom.lifecycle import Lifecycle
from liveroom.settings import Settings
from tests.server_harness import TEST_SECRET


async def test_owners_stop_in_reverse_and_a_failing_or_hanging_one_does_not_stop_the_rest(
        caplog: pytest.LogCaptureFixture) -> None:
    events: list[str] = []
    life = Lifecycle(close_step_s=0.2)

    def owner(name: str) -> None:
        async def close() -> None:
            events.append(f"close {name}")
        life.register(name, start=lambda: events.append(f"start {name}"), close=close)

    async def explode() -> None:
        raise RuntimeError("redis went away")

    async def hang() -> None:
        await asyncio.sleep(3600)

    owner("redis")
    owner("order store")
    life.register("media relay", close=hang)
    owner("sweeper")
    life.register("inventory", close=explode)
    owner("reaper")
    await life.start()
    assert events == ["start redis", "start order store", "start sweeper", "start reaper"]
    events.clear()
    with caplog.at_level(logging.ERROR, logger="liveroom.lifecycle"):
        async with asyncio.timeout(30):  # the 0.2 s step bounds the hang; this, failure
            await life.close()
    assert events == ["close reaper", "close sweeper", "close order store", "close redis"]
    messages = [record.getMessage() for record in caplog.records]
    assert any("inventory failed to stop" in m for m in messages)
    assert any("media relay did not stop within" in m for m in messages)
    await life.close()
    assert events == ["close reaper", "close sweeper", "close order store", "close redis"], \
        "closing twice closes nothing twice"


async def test_a_start_that_fails_closes_what_had_started_and_fails_the_start() -> None:
    events: list[str] = []
    life = Lifecycle()

    async def close(name: str) -> None:
        events.append(f"close {name}")

    async def refuse() -> None:
        raise OSError("the order store's disk is full")

    life.register("redis", close=lambda: close("redis"))
    life.register("order store", start=refuse, close=lambda: close("order store"))
    life.register("sweeper", start=lambda: events.append("start sweeper"))
    with pytest.raises(OSError, match="disk is full"):
        await life.start()
    assert events == ["close order store", "close redis"], "nothing after it started"


def test_the_server_stops_what_uses_a_thing_before_the_thing(tmp_path: Path) -> None:
    """The order the composition root registers its owners in is the shutdown's, reversed:
    buys are decided before their stock is pushed, everything that runs scripts stops before
    the script connection, and Redis goes last."""
    settings = Settings(data_dir=tmp_path, secret=TEST_SECRET)
    services = build_services(settings, "redis://127.0.0.1:1/0")
    stop_order = list(reversed(services.lifecycle.names))

    def before(first: str, then: str) -> bool:
        return stop_order.index(first) < stop_order.index(then)

    assert before("inventory", "stock pusher")
    for runs_scripts in ("hold sweeper", "order upkeep", "payments", "inventory"):
        assert before(runs_scripts, "inventory scripts")
    for user in ("hand-off consumer", "order upkeep", "payments"):
        assert before(user, "order store")
    assert stop_order[-2:] == ["inventory redis", "redis"]
    assert len(set(stop_order)) == len(stop_order), "each owner registered once"


def test_a_hook_tells_every_listener_even_when_one_fails(
        caplog: pytest.LogCaptureFixture) -> None:
    heard: list[str] = []
    hook: Hook[[str]] = Hook("room changed")
    hook.connect(heard.append)

    def broken(_: str) -> None:
        raise ValueError("listener bug")

    hook.connect(broken)
    hook.connect(lambda room: heard.append(room.upper()))
    with caplog.at_level(logging.ERROR, logger="liveroom.hooks"):
        hook.fire("r_1")
    assert heard == ["r_1", "R_1"]
    assert any("a listener of room changed failed" in r.getMessage() for r in caplog.records)


async def test_an_async_hook_awaits_its_listeners_and_lets_a_failure_through() -> None:
    heard: list[tuple[bytes, str]] = []

    async def settle(body: bytes, signature: str) -> None:
        heard.append((body, signature))

    hook: AsyncHook[[bytes, str]] = AsyncHook("payment callbacks")
    with pytest.raises(RuntimeError, match="no listener"):
        await hook.fire(b"{}", "sig")
    hook.connect(settle)
    await hook.fire(b"{}", "sig")
    assert heard == [(b"{}", "sig")]

    async def refuse(body: bytes, signature: str) -> None:
        raise PermissionError("bad signature")

    hook.connect(refuse)
    with pytest.raises(PermissionError):
        await hook.fire(b"{}", "sig")
