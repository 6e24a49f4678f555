"""Coupon drops against a real Redis and the real server, on a clock the tests move: dropping
(only the anchor, every bad field refused with nothing written), grabbing (once per account,
never more than the count in a concurrent burst, idempotent per request id, clear refusals),
the wallet, and the coupon at checkout (the best one applied, the minimum spend, the 1-cent
floor, someone else's coupon refused, given back when an unpaid order is cancelled, kept and
refunded net when a paid one is), the anchor's coupon cost in the figures."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

from liveroom import keys
from liveroom.coupons import CouponDesk
from liveroom.identity import Role, User
from liveroom.payload import Payload
from tests.clock import Clock
from tests.server_harness import Client, LiveServer, live_server

ADDRESS = {"name": "Wang Fang", "phone": "13800138000", "line1": "12 Jade Road", "city": "Hefei"}
GOOD_CARD = "4242424242424242"
UNLIMITED: dict[str, Any] = {"event_rate_per_s": 1e9, "event_burst": 10**9,
                             "user_event_rate_per_s": 0, "address_event_rate_per_s": 0,
                             "buy_rate_per_s": 1e9, "buy_burst": 10**9}
PRICE = 10_000


class Shop:
    def __init__(self, server: LiveServer, clock: Clock, anchor: str, room: str,
                 product: str) -> None:
        self.server = server
        self.clock = clock
        self.anchor = anchor
        self.id = room
        self.product = product

    async def drop(self, **terms: Any) -> dict[str, Any]:
        body = {"count": 10, "off_cents": 1_000, "min_spend_cents": 0, "valid_s": 600, **terms}
        status, drop = await self.server.request("POST", f"/api/rooms/{self.id}/coupons",
                                                 self.anchor, body)
        assert status == 201, drop
        assert isinstance(drop, dict)
        return drop

    async def sale(self, price_cents: int = PRICE, stock: int = 50) -> dict[str, Any]:
        status, sale = await self.server.request(
            "POST", f"/api/rooms/{self.id}/sales", self.anchor,
            {"product_id": self.product, "stock": stock, "price_cents": price_cents,
             "per_user_limit": 5, "starts_in_s": 0, "duration_s": 600, "hold_s": 600})
        assert status == 201, sale
        assert isinstance(sale, dict)
        return sale

    async def viewer(self, name: str) -> tuple[str, Client]:
        token = self.server.buyer_token(name, user_id=f"u_{name}")
        client = await self.server.connect(token)
        assert (await client.call("join", {"room": self.id}))["ok"]
        return token, client

    async def wallet(self, token: str) -> list[dict[str, Any]]:
        status, body = await self.server.request("GET", "/api/coupons", token)
        assert status == 200, body
        coupons: list[dict[str, Any]] = body["coupons"]
        return coupons


@pytest.fixture
async def clock() -> Clock:
    return Clock()


@pytest.fixture
async def shop(redis: aioredis.Redis, redis_url: str, data_dir: Path,
               clock: Clock) -> AsyncIterator[Shop]:
    async with live_server(redis_url, data_dir, clock=clock, **UNLIMITED) as server:
        anchor = server.token("anchor", "Mei", user_id="u_mei")
        _, made = await server.request("POST", "/api/rooms", anchor, {"title": "Coupons"})
        _, product = await server.request("POST", "/api/products", anchor, {
            "title": "Tea set", "category": "homeware", "price_cents": 12_900})
        yield Shop(server, clock, anchor, made["id"], product["id"])


async def buy(client: Client, sale: dict[str, Any], request_id: str, qty: int = 1) -> str:
    ack = await client.call("buy", {"sale": sale["id"], "qty": qty, "request_id": request_id})
    assert ack["status"] == "reserved", ack
    reservation: str = ack["reservation"]["id"]
    return reservation


async def checkout(client: Client, reservation: str, payment: Any = "cod",
                   **extra: Any) -> dict[str, Any]:
    ack: dict[str, Any] = await client.call(
        "checkout", {"reservation": reservation, "address": ADDRESS, "payment": payment,
                     **extra})
    return ack


async def test_a_drop_is_announced_grabbed_once_and_listed_in_the_wallet(shop: Shop) -> None:
    watcher_token, watcher = await shop.viewer("zoe")
    drop = await shop.drop(count=2, percent_off=10, off_cents=None, min_spend_cents=5_000)
    assert (drop["count"], drop["left"], drop["status"]) == (2, 2, "live")
    assert (drop["percent_off"], drop["off_cents"], drop["min_spend_cents"]) == (10, None, 5_000)
    assert drop["expires_at"] == shop.clock.now + 600_000
    announced = await watcher.wait_for("coupon", lambda d: d["id"] == drop["id"])
    assert announced["left"] == 2

    ann_token, ann = await shop.viewer("ann")
    won = await ann.call("coupon:grab", {"drop": drop["id"], "request_id": "g1"})
    assert (won["ok"], won["status"]) == (True, "granted"), won
    coupon = won["coupon"]
    assert coupon["id"] == f"{drop['id']}.1"
    assert (coupon["percent_off"], coupon["min_spend_cents"]) == (10, 5_000)
    # The answer was lost: the retry of the same request gets the same coupon.
    assert await ann.call("coupon:grab", {"drop": drop["id"], "request_id": "g1"}) == won
    again = await ann.call("coupon:grab", {"drop": drop["id"], "request_id": "g2"})
    assert (again["ok"], again["status"], again["error"]["code"]) == (
        False, "already_grabbed", "already_grabbed")
    assert again["coupon"]["id"] == coupon["id"]

    _, bob = await shop.viewer("bob")
    assert (await bob.call("coupon:grab", {"drop": drop["id"], "request_id": "b"}))["ok"]
    gone = await watcher.call("coupon:grab", {"drop": drop["id"], "request_id": "z"})
    assert (gone["status"], gone["left"]) == ("gone", 0)
    await watcher.wait_for("coupon", lambda d: d["id"] == drop["id"] and d["status"] == "gone")
    assert await shop.wallet(watcher_token) == []

    [mine] = await shop.wallet(ann_token)
    assert (mine["id"], mine["state"], mine["order"], mine["room"]) == (
        coupon["id"], "unused", None, shop.id)
    assert mine["expires_at"] == drop["expires_at"]

    shop.clock.advance(600_000)
    [expired] = await shop.wallet(ann_token)
    assert expired["state"] == "expired"
    late = await watcher.call("coupon:grab", {"drop": drop["id"], "request_id": "late"})
    assert late["status"] == "expired"
    await shop.server.services.coupons.push_expired()
    await watcher.wait_for("coupon", lambda d: d["status"] == "expired")


async def test_bad_drops_are_refused_and_change_nothing(shop: Shop,
                                                        redis: aioredis.Redis) -> None:
    good = {"count": 10, "off_cents": 500, "min_spend_cents": 0, "valid_s": 600}
    cases: list[tuple[dict[str, Any], str]] = [
        ({**good, "count": 0}, "invalid_input"),
        ({**good, "count": -5}, "invalid_input"),
        ({**good, "count": 1.5}, "invalid_input"),
        ({**good, "count": "10"}, "invalid_input"),
        ({**good, "count": 10**12}, "invalid_input"),
        ({**good, "off_cents": 0}, "invalid_input"),
        ({**good, "off_cents": -100}, "invalid_input"),
        ({**good, "off_cents": 10**15}, "invalid_input"),
        ({**good, "off_cents": True}, "invalid_input"),
        ({**good, "percent_off": 10}, "invalid_input"),  # both kinds at once
        ({"count": 10, "min_spend_cents": 0, "valid_s": 600}, "invalid_input"),  # neither
        ({**{k: v for k, v in good.items() if k != "off_cents"}, "percent_off": 100},
         "invalid_input"),
        ({**{k: v for k, v in good.items() if k != "off_cents"}, "percent_off": 0},
         "invalid_input"),
        ({**good, "min_spend_cents": -1}, "invalid_input"),
        ({**good, "valid_s": 0}, "invalid_input"),
        ({**good, "valid_s": 10**9}, "invalid_input"),
        ({**{k: v for k, v in good.items() if k != "valid_s"}}, "invalid_input"),
    ]
    for body, code in cases:
        status, answer = await shop.server.request("POST", f"/api/rooms/{shop.id}/coupons",
                                                   shop.anchor, body)
        assert (status, answer["error"]["code"]) == (400, code), body
    viewer = shop.server.buyer_token("Ann", user_id="u_ann")
    other_anchor = shop.server.token("anchor", "Li", user_id="u_li")
    for token, status_code, code in ((viewer, 403, "forbidden"),
                                     (other_anchor, 403, "forbidden"),
                                     (None, 401, "unauthorized")):
        status, answer = await shop.server.request("POST", f"/api/rooms/{shop.id}/coupons",
                                                   token, good)
        assert (status, answer["error"]["code"]) == (status_code, code)
    status, answer = await shop.server.request("POST", "/api/rooms/r_nothere00/coupons",
                                               shop.anchor, good)
    assert (status, answer["error"]["code"]) == (404, "unknown_room")
    assert await redis.zcard(keys.room_coupon_drops(shop.id)) == 0
    assert await redis.zcard(keys.COUPONS_DUE) == 0


async def test_grabs_are_refused_clearly(shop: Shop) -> None:
    drop = await shop.drop(count=5)
    guest = await shop.server.connect(shop.server.token("viewer", "Guest"))
    assert (await guest.call("join", {"room": shop.id}))["ok"]
    refused = await guest.call("coupon:grab", {"drop": drop["id"], "request_id": "x"})
    assert refused["error"]["code"] == "verification_required"

    # A drop of another room: refused to someone who is not in that room.
    _, other_room = await shop.server.request("POST", "/api/rooms",
                                              shop.server.token("anchor", "Li", user_id="u_li"),
                                              {"title": "Other"})
    outsider = await shop.server.connect(shop.server.buyer_token("Out", user_id="u_out"))
    assert (await outsider.call("join", {"room": other_room["id"]}))["ok"]
    refused = await outsider.call("coupon:grab", {"drop": drop["id"], "request_id": "x"})
    assert refused["error"]["code"] == "not_in_room"

    _, ann = await shop.viewer("ann")
    for payload, code in (({"drop": "cd_nothere000", "request_id": "x"}, "unknown_drop"),
                          ({"drop": drop["id"]}, "invalid"),
                          ({"drop": drop["id"], "request_id": ""}, "invalid"),
                          ({"drop": drop["id"], "request_id": "x" * 65}, "invalid"),
                          ({"drop": 7, "request_id": "x"}, "invalid"),
                          ("grab", "invalid")):
        answer = await ann.call("coupon:grab", payload)
        assert (answer["ok"], answer["error"]["code"]) == (False, code), (payload, answer)

    _, bob = await shop.viewer("bob")
    anchor = await shop.server.connect(shop.anchor)
    assert (await anchor.call("mod:ban", {"room": shop.id, "user": "u_bob"}))["ok"]
    banned = await bob.call("coupon:grab", {"drop": drop["id"], "request_id": "x"})
    assert banned["error"]["code"] in ("not_in_room", "banned"), banned
    _, left = await shop.server.request("GET", f"/api/coupon-drops/{drop['id']}")
    assert left["left"] == 5, "no refused grab took a coupon"


async def test_a_burst_grants_exactly_the_count_once_per_account(shop: Shop,
                                                               redis: aioredis.Redis) -> None:
    drop = await shop.drop(count=25)
    viewers = [(await shop.viewer(f"v{i:03d}"))[1] for i in range(60)]

    async def grab_twice(i: int, client: Client) -> list[dict[str, Any]]:
        first, second = await asyncio.gather(
            client.call("coupon:grab", {"drop": drop["id"], "request_id": f"a{i}"}),
            client.call("coupon:grab", {"drop": drop["id"], "request_id": f"b{i}"}))
        return [first, second]

    answers = await asyncio.gather(*(grab_twice(i, c) for i, c in enumerate(viewers)))
    granted = [a for pair in answers for a in pair if a["status"] == "granted"]
    assert len(granted) == 25
    assert len({a["coupon"]["id"] for a in granted}) == 25
    for pair in answers:  # one per account: the other press is already_grabbed or gone
        assert sum(a["status"] == "granted" for a in pair) <= 1
        assert {a["status"] for a in pair} <= {"granted", "already_grabbed", "gone"}
    assert await redis.hlen(keys.coupon_grabbed(drop["id"])) == 25
    # Nothing of a drop stays forever: its keys go 30 days after its coupons expire.
    for key in (keys.coupon_drop(drop["id"]), keys.coupon_grabbed(drop["id"]),
                keys.coupon_owners(drop["id"]), keys.coupon_requests(drop["id"])):
        assert 0 < await redis.ttl(key) <= 600 + keys.COUPON_RETENTION_S, key
    _, now = await shop.server.request("GET", f"/api/coupon-drops/{drop['id']}")
    assert (now["left"], now["status"]) == (0, "gone")


async def test_the_best_coupon_is_applied_at_checkout_and_given_back_on_cancel(
        shop: Shop) -> None:
    small = await shop.drop(off_cents=500)
    big = await shop.drop(percent_off=20, off_cents=None, min_spend_cents=15_000)
    sale = await shop.sale()
    ann_token, ann = await shop.viewer("ann")
    for drop, rid in ((small, "s"), (big, "b")):
        assert (await ann.call("coupon:grab", {"drop": drop["id"], "request_id": rid}))["ok"]

    # One unit (100.00): the 20 % coupon needs 150.00; the 5.00 one is applied.
    one = await checkout(ann, await buy(ann, sale, "r1"))
    assert one["ok"], one
    order = one["order"]
    assert (order["subtotal_cents"], order["discount_cents"], order["total_cents"]) == (
        PRICE, 500, PRICE - 500)
    assert order["coupon"] == f"{small['id']}.1"
    # Two units (200.00): the 20 % coupon takes 40.00 off.
    two = await checkout(ann, await buy(ann, sale, "r2", qty=2))
    assert (two["order"]["discount_cents"], two["order"]["total_cents"]) == (4_000, 16_000)
    assert two["order"]["coupon"] == f"{big['id']}.1"
    wallet = {c["id"]: c for c in await shop.wallet(ann_token)}
    assert wallet[order["coupon"]]["state"] == "used"
    assert wallet[order["coupon"]]["order"] == order["id"]

    # No coupon left: the third order is at full price.
    three = await checkout(ann, await buy(ann, sale, "r3"))
    assert (three["order"]["discount_cents"], three["order"]["coupon"]) == (0, None)

    # Cancelled before payment (cash on delivery is paid at the door): the coupon comes back.
    status, cancelled = await shop.server.request(
        "POST", f"/api/orders/{order['id']}/cancel", ann_token, {})
    assert status == 200, cancelled
    wallet = {c["id"]: c for c in await shop.wallet(ann_token)}
    assert (wallet[order["coupon"]]["state"], wallet[order["coupon"]]["order"]) == (
        "unused", None)
    again = await checkout(ann, await buy(ann, sale, "r4"))
    assert again["order"]["coupon"] == order["coupon"]


async def test_explicit_coupons_someone_elses_refused_and_the_one_cent_floor(
        shop: Shop) -> None:
    huge = await shop.drop(off_cents=1_000_000)
    sale = await shop.sale(price_cents=300)
    ann_token, ann = await shop.viewer("ann")
    bob_token, bob = await shop.viewer("bob")
    anns = (await ann.call("coupon:grab", {"drop": huge["id"], "request_id": "a"}))["coupon"]
    bobs = (await bob.call("coupon:grab", {"drop": huge["id"], "request_id": "b"}))["coupon"]

    reservation = await buy(bob, sale, "rb")
    refused = await checkout(bob, reservation, coupon=anns["id"])
    assert refused["error"]["code"] == "coupon_not_yours"
    unknown = await checkout(bob, reservation, coupon=f"{huge['id']}.99")
    assert unknown["error"]["code"] == "unknown_coupon"
    malformed = await checkout(bob, reservation, coupon="free money")
    assert malformed["error"]["code"] == "invalid_checkout"
    _, listed = await shop.server.request("GET", "/api/orders", bob_token)
    assert listed["orders"] == [], "a refused checkout makes no order"
    assert [c["state"] for c in await shop.wallet(ann_token)] == ["unused"]

    # Bob keeps his coupon for later: none is applied.
    kept = await checkout(bob, reservation, coupon=False)
    assert (kept["order"]["total_cents"], kept["order"]["coupon"]) == (300, None)
    # Ann names hers: the order never goes below 1 cent.
    mine = await checkout(ann, await buy(ann, sale, "ra"), coupon=anns["id"])
    assert (mine["order"]["total_cents"], mine["order"]["discount_cents"]) == (1, 299)
    # ...and a coupon used by one order cannot be named for another.
    used = await checkout(ann, await buy(ann, sale, "ra2"), coupon=anns["id"])
    assert used["error"]["code"] == "coupon_used"
    assert bobs["id"] != anns["id"]


async def test_a_paid_order_cancelled_is_refunded_net_and_keeps_its_coupon_used(
        shop: Shop) -> None:
    drop = await shop.drop(off_cents=2_500)
    sale = await shop.sale()
    ann_token, ann = await shop.viewer("ann")
    assert (await ann.call("coupon:grab", {"drop": drop["id"], "request_id": "a"}))["ok"]
    placed = await checkout(ann, await buy(ann, sale, "r"),
                            payment={"method": "online", "card": GOOD_CARD})
    order = placed["order"]
    assert order["total_cents"] == PRICE - 2_500
    paid = await ann.wait_for("order", lambda o: o["status"] == "paid")
    assert paid["id"] == order["id"]
    status, body = await shop.server.request("POST", f"/api/orders/{order['id']}/cancel",
                                             ann_token, {})
    assert status == 200, body
    status, detail = await shop.server.request("GET", f"/api/orders/{order['id']}", ann_token)
    refunded = [p for p in detail["order"]["payments"] if p["status"] == "refunded"]
    assert [p["amount_cents"] for p in refunded] == [PRICE - 2_500]
    [coupon] = await shop.wallet(ann_token)
    assert coupon["state"] == "used"

    status, report = await shop.server.request("GET", f"/api/analytics?room={shop.id}",
                                               shop.anchor)
    assert status == 200
    assert report["rooms"] == [], "a cancelled order counts for nothing"


async def test_the_anchors_figures_include_the_coupon_cost(shop: Shop) -> None:
    drop = await shop.drop(off_cents=1_500, count=3)
    sale = await shop.sale()
    buyers = [await shop.viewer(name) for name in ("ann", "bob")]
    for i, (_, client) in enumerate(buyers):
        assert (await client.call("coupon:grab", {"drop": drop["id"],
                                                  "request_id": f"g{i}"}))["ok"]
        assert (await checkout(client, await buy(client, sale, f"r{i}")))["ok"]
    _, carl = await shop.viewer("carl")
    assert (await checkout(carl, await buy(carl, sale, "rc")))["ok"]
    status, report = await shop.server.request("GET", f"/api/analytics?room={shop.id}",
                                               shop.anchor)
    assert status == 200
    [room] = report["rooms"]
    assert (room["gmv_cents"], room["coupon_cost_cents"], room["orders"]) == (
        3 * PRICE - 2 * 1_500, 2 * 1_500, 3)


async def test_a_big_rooms_count_is_paced_and_gone_is_pushed_at_once(
        shop: Shop, redis: aioredis.Redis) -> None:
    pushed: list[tuple[str, dict[str, Any]]] = []

    async def emit(event: str, data: Any, room: str) -> None:
        pushed.append((event, data))

    seconds = [100.0]
    desk = CouponDesk(redis, shop.server.services.catalog, shop.clock, emit,
                      room_size=lambda room: 10_000, monotonic=lambda: seconds[0])
    desk.start()
    try:
        anchor = User(id="u_mei", name="Mei", role=Role.ANCHOR)
        drop = await desk.create(anchor, shop.id, Payload(
            {"count": 3, "off_cents": 100, "valid_s": 600}))
        assert [(e, d["left"]) for e, d in pushed] == [("coupon", 3)]
        assert (await desk.grab(drop, "u_a", "a")).status == "granted"
        await desk.push_changed()
        assert [d["left"] for _, d in pushed] == [3, 2]
        assert (await desk.grab(drop, "u_b", "b")).status == "granted"
        seconds[0] += 1.0  # a 10,000-member room waits 2 s between counts
        await desk.push_changed()
        assert [d["left"] for _, d in pushed] == [3, 2]
        assert (await desk.grab(drop, "u_c", "c")).status == "granted"
        await desk.push_changed()  # the last one: gone goes out at once
        assert [(d["left"], d["status"]) for _, d in pushed][-1] == (0, "gone")
    finally:
        await desk.close()
