"""Followers against a real Redis and the real server: follow and unfollow (idempotent), the
refusals (guests, oneself, unknown anchors) that change nothing, the live counts pushed to the
anchor's rooms and landing pages, the go-live push to followers' landing pages, and the
followers gained during a show."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from liveroom import keys
from tests.clock import Clock
from tests.server_harness import LiveServer, live_server


@pytest.fixture
async def server(redis: aioredis.Redis, redis_url: str,
                 data_dir: Path) -> AsyncIterator[LiveServer]:
    async with live_server(redis_url, data_dir, clock=Clock()) as server:
        yield server


async def test_follow_and_unfollow_are_idempotent_and_counted(server: LiveServer) -> None:
    anchor = server.token("anchor", "Mei", user_id="u_mei")
    _, room = await server.request("POST", "/api/rooms", anchor, {"title": "Show"})
    ann = server.buyer_token("Ann", user_id="u_ann")
    for _ in range(2):
        status, body = await server.request("POST", "/api/anchors/u_mei/follow", ann)
        assert (status, body) == (200, {"anchor": "u_mei", "following": True, "followers": 1})
    _, profile = await server.request("GET", "/api/anchors/u_mei", ann)
    assert profile["followers"] == 1
    assert profile["following"] is True
    assert profile["live_rooms"] == [{"id": room["id"], "title": "Show"}]
    _, anonymous = await server.request("GET", "/api/anchors/u_mei")
    assert anonymous["following"] is None
    for _ in range(2):
        status, body = await server.request("DELETE", "/api/anchors/u_mei/follow", ann)
        assert (status, body) == (200, {"anchor": "u_mei", "following": False, "followers": 0})


async def test_refused_follows_change_nothing(server: LiveServer, redis: aioredis.Redis) -> None:
    anchor = server.token("anchor", "Mei", user_id="u_mei")
    await server.request("POST", "/api/rooms", anchor, {"title": "Show"})
    before = sorted(await redis.keys("*follow*"))
    cases = [
        (server.token("viewer", "Guest"), "u_mei", 403, "verification_required"),
        (anchor, "u_mei", 400, "cannot_follow_self"),
        (server.buyer_token("Ann"), "u_nobody", 404, "unknown_anchor"),
        (None, "u_mei", 401, "unauthorized"),
    ]
    for token, target, status, code in cases:
        for method in ("POST", "DELETE"):
            got, body = await server.request(method, f"/api/anchors/{target}/follow", token)
            assert (got, body["error"]["code"]) == (status, code), (method, target, body)
    assert sorted(await redis.keys("*follow*")) == before
    status, body = await server.request("GET", "/api/anchors/u_nobody")
    assert (status, body["error"]["code"]) == (404, "unknown_anchor")


async def test_counts_are_pushed_to_rooms_and_landing_pages_and_going_live_to_followers(
        server: LiveServer) -> None:
    anchor = server.token("anchor", "Mei", user_id="u_mei")
    _, room = await server.request("POST", "/api/rooms", anchor, {"title": "First"})
    viewer = await server.connect(server.token("viewer", "Watcher"))
    assert (await viewer.call("join", {"room": room["id"]}))["ok"]
    fan_token = server.buyer_token("Fan", user_id="u_fan")
    fan = await server.connect(fan_token)
    stranger = await server.connect(server.buyer_token("Stranger", user_id="u_stranger"))
    for client in (fan, stranger):
        assert await client.call("landing:open", {}) == {"ok": True}
    await server.request("POST", "/api/anchors/u_mei/follow", fan_token)
    expected = {"anchor": "u_mei", "count": 1}
    assert await viewer.wait_for("followers") == expected
    assert await stranger.wait_for("followers") == expected

    status, second = await server.request("POST", "/api/rooms", anchor, {"title": "Second"})
    assert status == 201
    news = await fan.wait_for("live", lambda d: d["title"] == "Second")
    assert news == {"anchor": "u_mei", "anchor_name": "Mei", "room": second["id"],
                    "title": "Second"}
    assert stranger.received("live") == [], "only followers hear of it"


async def test_followers_gained_during_a_show(server: LiveServer, redis: aioredis.Redis) -> None:
    anchor = server.token("anchor", "Mei", user_id="u_mei")
    await server.request("POST", "/api/products", anchor, {
        "title": "Tea", "category": "food", "price_cents": 900})
    early = server.buyer_token("Early", user_id="u_early")
    await server.request("POST", "/api/anchors/u_mei/follow", early)  # before any show
    _, room = await server.request("POST", "/api/rooms", anchor, {"title": "Show"})
    for name in ("ann", "bob"):
        await server.request("POST", "/api/anchors/u_mei/follow",
                             server.buyer_token(name, user_id=f"u_{name}"))
    await server.request("DELETE", "/api/anchors/u_mei/follow",
                         server.buyer_token("bob", user_id="u_bob"))
    await server.request("POST", f"/api/rooms/{room['id']}/end", anchor)
    await server.request("POST", "/api/anchors/u_mei/follow",
                         server.buyer_token("cai", user_id="u_cai"))  # after the show
    status, figures = await server.request(
        "GET", f"/api/anchors/u_mei/followers?room={room['id']}", anchor)
    assert status == 200, figures
    assert figures["followers"] == 3
    assert figures["room"] == {"id": room["id"], "gained": 2, "still_following": 1}
    assert {f["user"] for f in figures["newest"]} == {"u_early", "u_ann", "u_cai"}
    assert await server.services.follows.gained_during(room["id"]) == {"u_ann", "u_bob"}
    assert set(await server.services.follows.follower_ids("u_mei")) == {
        "u_early", "u_ann", "u_cai"}
    got, body = await server.request("GET", "/api/anchors/u_mei/followers",
                                     server.buyer_token("Ann", user_id="u_ann"))
    assert (got, body["error"]["code"]) == (403, "forbidden")
    assert await redis.zcard(keys.anchor_followers("u_mei")) == 3
