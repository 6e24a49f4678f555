"""A lucky bag in a real browser: announced in the studio, entered on a phone with the
passphrase, drawn on a moved clock, the result and its "check this draw" page recomputing the
winners in the browser (and catching a tampered seed), and the winner's free checkout."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from playwright.async_api import Route, expect

from liveroom.clock import now_ms
from tests.clock import Clock
from tests.server_harness import LiveServer, live_server

from .conftest import DESKTOP, PHONE, Pages
from .helpers import open_room, sign_in_with_phone


@pytest.fixture
async def clock() -> Clock:
    # Starting at the wall clock: the pages' clock follows /api/time, which is the wall clock's.
    return Clock(now_ms())


@pytest.fixture
async def server(redis: aioredis.Redis, redis_url: str, data_dir: Path,
                 clock: Clock) -> AsyncIterator[LiveServer]:
    async with live_server(redis_url, data_dir, clock=clock) as live:
        yield live


async def test_a_lucky_bag_from_announcement_to_a_checked_draw_and_a_free_order(
        server: LiveServer, clock: Clock, pages: Pages) -> None:
    stage = await open_room(server)
    room_id = stage.room["id"]
    studio = await pages.open(f"{server.url}/studio/{room_id}#token={stage.anchor_token}",
                              DESKTOP)
    await expect(studio.locator("#lucky-product option")).to_have_count(2)
    await studio.fill("#lucky-winners", "2")
    await studio.fill("#lucky-draw-in", "5")
    await studio.fill("#lucky-passphrase", "Jade Luck")
    await studio.click("#lucky-form button[type=submit]")
    await expect(studio.locator("#lucky-announce-result")).to_contain_text("announced")
    await expect(studio.locator("#lucky-bag-status")).to_contain_text(re.compile(r"Draw in [45]:"))

    viewer = await pages.open(f"{server.url}/r/{room_id}", PHONE)
    await expect(viewer.locator("#lucky")).to_be_visible()
    await expect(viewer.locator("#lucky-condition")).to_contain_text("passphrase")
    await viewer.fill("#lucky-passphrase", "jade luck")
    await sign_in_with_phone(viewer, "+86 138 0013 8000", via="#lucky-enter")
    await expect(viewer.locator("#lucky-result")).to_contain_text("You are in the draw")
    await viewer.click("#lucky-enter")
    await expect(viewer.locator("#lucky-result")).to_contain_text("already in the draw")
    other = await server.connect(server.buyer_token("Bo", user_id="u_bo"))
    assert (await other.call("join", {"room": room_id}))["ok"]
    bag_id = (await other.call("join", {"room": room_id}))["room"]["lucky"]["id"]
    entered = await other.call("lucky:enter", {"lucky_bag": bag_id, "passphrase": "JADE LUCK"})
    assert entered["ok"], entered
    await expect(studio.locator("#lucky-bag-entries")).to_have_text("2 entered")
    await pages.shot(viewer, "lucky-entered-phone")

    _, bag = await server.request("GET", f"/api/lucky-bags/{bag_id}")
    clock.now = bag["draw_at"]
    await server.services.lucky.finish_due()
    await expect(viewer.locator("#lucky-winners")).to_contain_text("Winners:")
    await expect(viewer.locator("#lucky-result")).to_contain_text("You won!")
    # The prize's free sale is no sale of the room's: the product card shows none.
    await expect(viewer.locator("#no-sale")).to_be_visible()
    await expect(viewer.locator("#sale")).to_be_hidden()
    await expect(studio.locator("#lucky-bag-check")).to_be_visible()
    await pages.shot(viewer, "lucky-won-phone")

    await viewer.click("#lucky-claim")
    await expect(viewer.locator("#checkout-summary")).to_contain_text("free (lucky bag prize)")
    await viewer.fill("#ship-name", "Wang Fang")
    await viewer.fill("#ship-phone", "13800138000")
    await viewer.fill("#ship-city", "Linyi")
    await viewer.fill("#ship-line1", "12 Jade Street")
    await viewer.click("#place-order")
    await expect(viewer.locator("#buy-result")).to_contain_text("Order placed")

    # The winner follows the host; the landing page shows the count and, when the host opens
    # another room, says so.
    await viewer.click("#follow")
    await expect(viewer.locator("#follow")).to_have_text("Following")
    await expect(viewer.locator("#follower-count")).to_have_text("1")
    await viewer.goto(f"{server.url}/")
    await expect(viewer.locator(".pill.followers")).to_have_text("1 follower")
    await server.request("POST", "/api/rooms", stage.anchor_token, {"title": "Encore"})
    await expect(viewer.locator("#banner")).to_contain_text(
        "Lin the Anchor, whom you follow, just went live: Encore")
    await pages.shot(viewer, "landing-live-news-phone")

    check = await pages.open(f"{server.url}/lucky/{bag_id}", PHONE)
    await expect(check.locator("#verdict")).to_have_text("✓ The winners are right")
    await expect(check.locator("#winners li")).to_have_count(2)
    await pages.shot(check, "lucky-check-phone")

    async def tamper(route: Route) -> None:
        response = await route.fetch()
        body = await response.json()
        body["draw"]["seed"] = "00" * 32
        await route.fulfill(response=response, body=json.dumps(body))

    async def tampering(context: object) -> None:
        await context.route("**/api/lucky-bags/*", tamper)  # type: ignore[attr-defined]

    forged = await pages.open(f"{server.url}/lucky/{bag_id}", PHONE, setup=tampering)
    await expect(forged.locator("#verdict")).to_have_text("✗ This draw does not check out")
    await expect(forged.locator("#reason")).to_contain_text("not the one committed to")
    pages.assert_clean()
