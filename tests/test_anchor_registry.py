"""The catalog's registry of anchors: an anchor exists once it created a room or a product, and
a refund-no-return certification is issued only to an anchor that exists."""

from __future__ import annotations

import redis.asyncio as aioredis

from liveroom import keys
from liveroom.catalog import Catalog
from liveroom.clock import now_ms
from liveroom.identity import Role, User
from liveroom.payload import Payload
from tests.clock import Clock
from tests.server_harness import LiveServer

MEI = User(id="u_mei", name="Mei", role=Role.ANCHOR)
LAN = User(id="u_lan", name="Lan", role=Role.ANCHOR)


async def test_an_anchor_is_known_once_it_created_a_room_or_a_product(
    redis: aioredis.Redis,
) -> None:
    catalog = Catalog(redis, Clock())
    assert not await catalog.anchor_known("u_mei")
    assert await catalog.anchor_name("u_mei") is None
    await catalog.create_room(MEI, "Jade night")
    await catalog.create_product(LAN, Payload({"title": "Oil", "category": "essential_oil",
                                               "price_cents": 900}))
    assert await catalog.anchor_known("u_mei")
    assert await catalog.anchor_known("u_lan")
    assert await catalog.anchor_name("u_mei") == "Mei"
    # The latest name is kept; the first appearance too.
    since = await redis.hget(keys.anchor_profile("u_mei"), "since")
    await catalog.create_room(User(id="u_mei", name="Mei Jade", role=Role.ANCHOR), "Again")
    assert await catalog.anchor_name("u_mei") == "Mei Jade"
    assert await redis.hget(keys.anchor_profile("u_mei"), "since") == since
    for unknown in ("u_nobody", "", "u_mei:profile"):
        assert not await catalog.anchor_known(unknown)


async def test_anchors_with_products_from_before_the_registry_are_known(
    redis: aioredis.Redis,
) -> None:
    await redis.zadd(keys.anchor_products("u_old"), {"p_old": 1})
    assert await Catalog(redis, Clock()).anchor_known("u_old")


async def test_refund_no_return_is_certified_only_for_an_existing_anchor(
    server: LiveServer,
) -> None:
    inspector = server.token("inspector", "Iris", user_id="u_iris")
    details = {"valid_from": now_ms(), "valid_until": now_ms() + 86_400_000}
    # A token can be minted for any id: holding one does not make an anchor exist.
    server.token("anchor", "Ghost", user_id="u_ghost")
    status, body = await server.request("POST", "/api/certificates", inspector, {
        "kind": "refund_no_return", "anchor_id": "u_ghost", "category": "essential_oil",
        "details": details})
    assert (status, body["error"]["code"]) == (404, "unknown_anchor")
    _, listing = await server.request("GET", "/api/certificates?anchor=u_ghost")
    assert listing["certificates"] == []

    ghost = server.token("anchor", "Ghost", user_id="u_ghost")
    status, _ = await server.request("POST", "/api/rooms", ghost, {"title": "Oils"})
    assert status == 201
    status, cert = await server.request("POST", "/api/certificates", inspector, {
        "kind": "refund_no_return", "anchor_id": "u_ghost", "category": "essential_oil",
        "details": details})
    assert status == 201, cert
    assert cert["subject"] == {"anchor_id": "u_ghost", "category": "essential_oil"}
