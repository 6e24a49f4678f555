"""Live auctions through the real server and real Socket.IO clients, on a clock the test moves:
starting one, bidding, the pushes, anti-sniping, the close, the winner's checkout at the winning
bid, the second chance, and every kind of bad input."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

from liveroom.auctions import without_auction_lots
from tests.clock import Clock
from tests.server_harness import Client, LiveServer, live_server
from tests.test_commerce_edge import ADDRESS, buyer, signed_in_buyer

START = 10_000


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def timed_server(redis: aioredis.Redis, redis_url: str, data_dir: Path,
                       clock: Clock) -> AsyncIterator[LiveServer]:
    async with live_server(redis_url, data_dir, clock=clock) as server:
        yield server


async def room_with_product(server: LiveServer) -> tuple[str, str, str]:
    anchor = server.token("anchor", "Mei", user_id="u_mei")
    _, room = await server.request("POST", "/api/rooms", anchor, {"title": "Auction night"})
    _, product = await server.request("POST", "/api/products", anchor, {
        "title": "Qing vase", "category": "antiques", "price_cents": 50_000, "brand": ""})
    return anchor, room["id"], product["id"]


async def start_auction(server: LiveServer, **changes: Any) -> tuple[str, str, dict[str, Any]]:
    anchor, room_id, product_id = await room_with_product(server)
    body = {"product_id": product_id, "start_cents": START, "duration_s": 60, "extend_s": 10,
            "hold_s": 30, **changes}
    status, auction = await server.request("POST", f"/api/rooms/{room_id}/auctions", anchor, body)
    assert status == 201, auction
    return anchor, room_id, auction


async def bid(client: Client, auction_id: str, amount: Any, request_id: str) -> dict[str, Any]:
    ack: dict[str, Any] = await client.call(
        "bid", {"auction": auction_id, "amount_cents": amount, "request_id": request_id})
    return ack


async def close_due(server: LiveServer) -> None:
    """What the closer's loop does on its next tick, now (the test's clock has moved)."""
    await server.services.auction_closer.tick()


async def test_a_whole_auction_from_start_to_the_winners_order(
    timed_server: LiveServer, clock: Clock
) -> None:
    server = timed_server
    _, room_id, auction = await start_auction(server)
    assert (auction["status"], auction["price_cents"], auction["min_next_cents"]) == (
        "live", 0, START)
    assert (auction["ends_at"] - auction["starts_at"], auction["extend_s"]) == (60_000, 10)
    assert auction["sudden_death"] is False
    ann_token, ann = await signed_in_buyer(server, room_id, "Ann")
    bo_token, bo = await signed_in_buyer(server, room_id, "Bo")
    state = (await ann.call("join", {"room": room_id}))["room"]
    assert state["auction"]["id"] == auction["id"]

    first = await bid(ann, auction["id"], START, "a1")
    assert first == {"ok": True, "status": "leading", "auction": auction["id"],
                     "price_cents": START, "min_next_cents": 10_250,
                     "ends_at": auction["ends_at"]}
    low = await bid(bo, auction["id"], 10_100, "b1")
    assert (low["ok"], low["status"], low["min_next_cents"]) == (False, "too_low", 10_250)
    assert low["error"]["code"] == "too_low"
    own = await bid(ann, auction["id"], 20_000, "a2")
    assert own["status"] == "already_leading"
    pushed = await bo.wait_for("auction", lambda d: d["bids"] == 1)
    assert (pushed["leader_name"], pushed["price_cents"]) == ("Ann", START)
    assert "leader" not in pushed  # no bidder's id goes to the room

    # Two seconds before the end: Bo's bid moves the end to ten seconds after it, pushed at once.
    clock.advance(58_000)
    snipe = await bid(bo, auction["id"], 15_000, "b2")
    assert snipe["status"] == "leading"
    assert snipe["ends_at"] == clock.now + 10_000
    extended = await ann.wait_for("auction", lambda d: d["ends_at"] == clock.now + 10_000)
    assert extended["leader_name"] == "Bo"

    clock.advance(9_999)
    await close_due(server)
    assert (await bid(ann, auction["id"], 15_250, "a3"))["status"] == "leading"
    clock.advance(10_000)
    await close_due(server)
    won = await ann.wait_for("auction", lambda d: d.get("offer") == "won")
    assert won["status"] == "ended"
    reservation = won["reservation"]
    assert (reservation["price_cents"], reservation["qty"]) == (15_250, 1)
    assert (await bid(bo, auction["id"], 99_000, "b3"))["status"] == "ended"
    _, final = await server.request("GET", f"/api/auctions/{auction['id']}")
    assert (final["status"], final["price_cents"], final["leader_name"]) == (
        "ended", 15_250, "Ann")
    assert final["ended_reason"] == "time"

    # A page that missed the push finds the reservation with the winner's token (only theirs).
    _, mine = await server.request("GET", f"/api/auctions/{auction['id']}", ann_token)
    assert mine["reservation"] == reservation
    _, theirs = await server.request("GET", f"/api/auctions/{auction['id']}", bo_token)
    assert "reservation" not in theirs
    # The same checkout as a flash sale's reservation, at the winning bid.
    done = await ann.call("checkout", {"reservation": reservation["id"], "address": ADDRESS,
                                       "payment": "cod"})
    assert done["ok"] is True, done
    assert done["order"]["total_cents"] == 15_250


async def test_a_winner_who_lets_the_hold_lapse_hands_it_to_the_runner_up(
    timed_server: LiveServer, clock: Clock
) -> None:
    server = timed_server
    _, room_id, auction = await start_auction(server)
    ann = await buyer(server, room_id, "Ann")
    bo = await buyer(server, room_id, "Bo")
    await bid(bo, auction["id"], START, "b1")
    await bid(ann, auction["id"], 30_000, "a1")
    clock.advance(60_000)
    await close_due(server)
    await ann.wait_for("auction", lambda d: d.get("offer") == "won")
    clock.advance(30_000)  # the winner's hold (30 s) runs out unpaid
    await close_due(server)
    offer = await bo.wait_for("auction", lambda d: d.get("offer") == "second_chance")
    assert offer["reservation"]["price_cents"] == START
    done = await bo.call("checkout", {"reservation": offer["reservation"]["id"],
                                      "address": ADDRESS, "payment": "cod"})
    assert done["order"]["total_cents"] == START
    _, final = await server.request("GET", f"/api/auctions/{auction['id']}")
    assert final["second_chance"] == "offered"


async def test_the_anchor_stops_an_auction_and_the_leader_wins(timed_server: LiveServer) -> None:
    server = timed_server
    anchor, room_id, auction = await start_auction(server)
    ann = await buyer(server, room_id, "Ann")
    await bid(ann, auction["id"], START, "a1")
    other = server.token("anchor", "Zed", user_id="u_zed")
    status, body = await server.request("POST", f"/api/auctions/{auction['id']}/end", other)
    assert (status, body["error"]["code"]) == (403, "forbidden")
    status, stopped = await server.request("POST", f"/api/auctions/{auction['id']}/end", anchor)
    assert (status, stopped["status"], stopped["ended_reason"]) == (200, "ended", "anchor")
    won = await ann.wait_for("auction", lambda d: d.get("offer") == "won")
    assert won["reservation"]["price_cents"] == START


async def test_an_ended_room_ends_its_auctions(timed_server: LiveServer) -> None:
    server = timed_server
    anchor, room_id, auction = await start_auction(server)
    ann = await buyer(server, room_id, "Ann")
    await bid(ann, auction["id"], START, "a1")
    status, _ = await server.request("POST", f"/api/rooms/{room_id}/end", anchor)
    assert status == 200
    await ann.wait_for("auction", lambda d: d.get("offer") == "won")
    _, final = await server.request("GET", f"/api/auctions/{auction['id']}")
    assert (final["status"], final["ended_reason"]) == ("ended", "room_ended")
    assert (await bid(ann, auction["id"], 90_000, "a2"))["status"] == "ended"


async def test_a_scheduled_auction_answers_not_started(timed_server: LiveServer,
                                                       clock: Clock) -> None:
    server = timed_server
    _, room_id, auction = await start_auction(server, starts_in_s=30)
    assert auction["status"] == "scheduled"
    ann = await buyer(server, room_id, "Ann")
    assert (await bid(ann, auction["id"], START, "a1"))["status"] == "not_started"
    clock.advance(30_000)
    assert (await bid(ann, auction["id"], START, "a1"))["status"] == "leading"


async def test_sudden_death_does_not_extend(timed_server: LiveServer, clock: Clock) -> None:
    server = timed_server
    _, room_id, auction = await start_auction(server, sudden_death=True, extend_s=None)
    assert auction["sudden_death"] is True
    ann = await buyer(server, room_id, "Ann")
    clock.advance(59_000)
    ack = await bid(ann, auction["id"], START, "a1")
    assert (ack["status"], ack["ends_at"]) == ("leading", auction["ends_at"])


@pytest.mark.parametrize("amount", [
    "10000", 100.5, -10_000, 0, True, None, [1], {"cents": 1}, 10**11, 2**63 - 1,
])
async def test_bad_amounts_are_invalid_and_change_nothing(
    timed_server: LiveServer, amount: Any
) -> None:
    server = timed_server
    _, room_id, auction = await start_auction(server)
    ann = await buyer(server, room_id, "Ann")
    ack = await bid(ann, auction["id"], amount, "x")
    assert (ack["ok"], ack["status"], ack["error"]["code"]) == (False, "invalid", "invalid")
    _, fresh = await server.request("GET", f"/api/auctions/{auction['id']}")
    assert (fresh["bids"], fresh["price_cents"]) == (0, 0)


async def test_bad_bids_of_every_other_kind(timed_server: LiveServer) -> None:
    server = timed_server
    _, room_id, auction = await start_auction(server)
    _, other_room, elsewhere = await start_auction(server)
    ann = await buyer(server, room_id, "Ann")
    # An auction of another room (Ann joined only this one).
    wrong_room = await bid(ann, elsewhere["id"], START, "w")
    assert wrong_room["status"] == "not_in_room"
    unknown = await bid(ann, "a_0123456789", START, "u")
    assert (unknown["status"], unknown["error"]["code"]) == ("invalid", "unknown_auction")
    malformed = await bid(ann, "../etc", START, "m")
    assert malformed["error"]["code"] == "unknown_auction"
    for request_id in ("", "x" * 65, 7, None):
        ack = await bid(ann, auction["id"], START, request_id)  # type: ignore[arg-type]
        assert ack["status"] == "invalid", request_id
    assert (await ann.call("bid", ["not", "an", "object"]))["status"] == "invalid"
    guest = await server.connect(server.token("viewer", "Guest"))
    assert (await guest.call("join", {"room": room_id}))["ok"]
    refused = await bid(guest, auction["id"], START, "g")
    assert refused["error"]["code"] == "verification_required"
    _, fresh = await server.request("GET", f"/api/auctions/{auction['id']}")
    _, fresh_elsewhere = await server.request("GET", f"/api/auctions/{elsewhere['id']}")
    assert fresh["bids"] == fresh_elsewhere["bids"] == 0
    assert other_room != room_id


async def test_a_banned_viewer_cannot_bid(timed_server: LiveServer) -> None:
    server = timed_server
    anchor, room_id, auction = await start_auction(server)
    token = server.buyer_token("Troll", user_id="u_troll")
    troll = await server.connect(token)
    assert (await troll.call("join", {"room": room_id}))["ok"]
    anchor_sock = await server.connect(anchor)
    assert (await anchor_sock.call("join", {"room": room_id}))["ok"]
    ban = await anchor_sock.call("mod:ban", {"room": room_id, "user": "u_troll"})
    assert ban["ok"], ban
    # The ban is checked before the room is: whatever the troll's sockets did since.
    ack = await bid(troll, auction["id"], START, "t")
    assert (ack["status"], ack["error"]["code"]) == ("banned", "banned")
    _, auction_after = await server.request("GET", f"/api/auctions/{auction['id']}")
    assert auction_after["bids"] == 0


@pytest.mark.parametrize(("changes", "status", "code"), [
    ({"duration_s": 4}, 400, "invalid_input"),
    ({"duration_s": 601}, 400, "invalid_input"),
    ({"duration_s": 30.5}, 400, "invalid_input"),
    ({"start_cents": 0}, 400, "invalid_input"),
    ({"start_cents": -100}, 400, "invalid_input"),
    ({"start_cents": "100"}, 400, "invalid_input"),
    ({"start_cents": 10**13}, 400, "invalid_auction"),
    ({"extend_s": 0}, 400, "invalid_input"),
    ({"extend_s": None}, 400, "invalid_input"),
    ({"sudden_death": "yes"}, 400, "invalid_input"),
    ({"product_id": "p_missing0001"}, 404, "unknown_product"),
])
async def test_bad_auctions_are_refused(timed_server: LiveServer, changes: dict[str, Any],
                                        status: int, code: str) -> None:
    server = timed_server
    anchor, room_id, product_id = await room_with_product(server)
    body = {"product_id": product_id, "start_cents": START, "duration_s": 60, "extend_s": 10,
            **changes}
    got, answer = await server.request("POST", f"/api/rooms/{room_id}/auctions", anchor, body)
    assert (got, answer["error"]["code"]) == (status, code)
    _, listed = await server.request("GET", f"/api/rooms/{room_id}/auctions")
    assert listed["auctions"] == []


async def test_only_the_rooms_anchor_starts_an_auction_of_their_own_product(
    timed_server: LiveServer
) -> None:
    server = timed_server
    _, room_id, product_id = await room_with_product(server)
    body = {"product_id": product_id, "start_cents": START, "duration_s": 60, "extend_s": 10}
    zed = server.token("anchor", "Zed", user_id="u_zed")
    status, answer = await server.request("POST", f"/api/rooms/{room_id}/auctions", zed, body)
    assert (status, answer["error"]["code"]) == (403, "forbidden")
    viewer = server.buyer_token("Ann")
    status, answer = await server.request("POST", f"/api/rooms/{room_id}/auctions", viewer, body)
    assert status == 403
    _, zed_room = await server.request("POST", "/api/rooms", zed, {"title": "Zed's"})
    status, answer = await server.request("POST", f"/api/rooms/{zed_room['id']}/auctions", zed,
                                          body)
    assert (status, answer["error"]["code"]) == (403, "forbidden")  # Mei's product
    status, _ = await server.request("POST", f"/api/rooms/{room_id}/auctions", None, body)
    assert status == 401
    status, answer = await server.request("GET", "/api/auctions/a_0123456789")
    assert (status, answer["error"]["code"]) == (404, "unknown_auction")


async def test_the_auctions_sale_is_never_announced_as_a_flash_sale(
    timed_server: LiveServer, clock: Clock
) -> None:
    server = timed_server
    _, room_id, auction = await start_auction(server)
    ann = await buyer(server, room_id, "Ann")
    await bid(ann, auction["id"], START, "a1")
    clock.advance(60_000)
    await close_due(server)
    announced: list[str] = []

    async def announce(sale: Any) -> None:
        announced.append(sale.id)

    sweeper_news = without_auction_lots(announce)
    lot = await server.services.inventory.get_sale(auction["sale"])
    assert (lot.held, lot.ended_reason) == (1, "auction")
    await sweeper_news(lot)
    assert announced == []
    # A flash sale of the room still is.
    anchor = server.token("anchor", "Mei", user_id="u_mei")
    _, product = await server.request("POST", "/api/products", anchor, {
        "title": "Cup", "category": "antiques", "price_cents": 900, "brand": ""})
    status, sale = await server.request("POST", f"/api/rooms/{room_id}/sales", anchor, {
        "product_id": product["id"], "stock": 2, "price_cents": 900, "per_user_limit": 1,
        "duration_s": 60})
    assert status == 201, sale
    await sweeper_news(await server.services.inventory.get_sale(sale["id"]))
    assert announced == [sale["id"]]


async def test_a_bid_flood_is_rate_limited_like_buys(timed_server: LiveServer) -> None:
    server = timed_server
    _, room_id, auction = await start_auction(server)
    ann = await buyer(server, room_id, "Ann")
    started = time.perf_counter()  # the buckets' clock
    acks = await asyncio.gather(*(bid(ann, auction["id"], START + 1000 * n, f"f{n}")
                                  for n in range(100)))
    took_s = time.perf_counter() - started
    statuses = [a["status"] for a in acks]
    # The connection's bucket (10 at once, then 5 a second) lets a few through, the rest wait:
    # all but the burst and what refilled while the flood lasted (seconds, on a busy machine).
    assert set(statuses) <= {"leading", "already_leading", "rate_limited"}
    limited = [a for a in acks if a["status"] == "rate_limited"]
    let_through = server.settings.buy_burst + server.settings.buy_rate_per_s * took_s + 1
    assert len(limited) >= 100 - let_through, (len(limited), took_s)
    assert all(a["error"]["retry_after_ms"] > 0 for a in limited)
    _, fresh = await server.request("GET", f"/api/auctions/{auction['id']}")
    assert fresh["bids"] == 1  # one leads; the rest were refused or were the leader's own
