"""Shutdown runs every close step, whatever one of them does."""

from __future__ import annotations

import asyncio
import logging

import pytest

from liveroom.app import CloseStep, close_in_order


async def test_a_failing_or_hanging_step_does_not_stop_the_rest(
        caplog: pytest.LogCaptureFixture) -> None:
    closed: list[str] = []

    def step(name: str) -> CloseStep:
        async def close() -> None:
            closed.append(name)
        return name, close

    async def explode() -> None:
        raise RuntimeError("redis went away")

    async def hang() -> None:
        await asyncio.sleep(3600)

    steps = [step("reaper"), ("inventory", explode), step("sweeper"), ("media relay", hang),
             step("order store"), step("redis")]
    with caplog.at_level(logging.ERROR, logger="liveroom.app"):
        async with asyncio.timeout(5):
            await close_in_order(steps, step_s=0.2)

    assert closed == ["reaper", "sweeper", "order store", "redis"]
    messages = [record.getMessage() for record in caplog.records]
    assert any("inventory failed to stop" in m for m in messages)
    assert any("media relay did not stop within" in m for m in messages)
