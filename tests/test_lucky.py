"""Lucky bags against a real Redis and the real server, on a clock the tests move: announcing
with a signed commitment, entering under each condition (once, with clear refusals that change
nothing), the draw decided once among concurrent finishers, the offline check of the published
draw (and tampering caught), and the winner's zero-price order through the normal checkout."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

from liveroom import keys
from liveroom.draw import draw_winners, entries_sha256, sorted_entries
from liveroom.exceptions import Banned
from liveroom.identity import Role, User
from tests.clock import Clock
from tests.server_harness import Client, LiveServer, live_server

ROOT = Path(__file__).resolve().parent.parent
VERIFY = ROOT / "scripts" / "verify_draw.py"
ADDRESS = {"name": "Wang Fang", "phone": "13800138000", "line1": "12 Jade Road", "city": "Hefei"}
UNLIMITED: dict[str, Any] = {"event_rate_per_s": 1e9, "event_burst": 10**9,
                             "user_event_rate_per_s": 0, "address_event_rate_per_s": 0}


class Room:
    def __init__(self, server: LiveServer, clock: Clock, anchor: str, room: str,
                 product: str) -> None:
        self.server = server
        self.clock = clock
        self.anchor = anchor
        self.id = room
        self.product = product

    async def bag(self, condition: dict[str, Any], winners: int = 2,
                  draw_in_s: int = 120) -> dict[str, Any]:
        status, bag = await self.server.request(
            "POST", f"/api/rooms/{self.id}/lucky-bags", self.anchor,
            {"product_id": self.product, "winners": winners, "draw_in_s": draw_in_s,
             "condition": condition})
        assert status == 201, bag
        assert isinstance(bag, dict)
        return bag

    async def viewer(self, name: str) -> Client:
        client = await self.server.connect(self.server.buyer_token(name, user_id=f"u_{name}"))
        assert (await client.call("join", {"room": self.id}))["ok"]
        return client


@pytest.fixture
async def clock() -> Clock:
    return Clock()


@pytest.fixture
async def room(redis: aioredis.Redis, redis_url: str, data_dir: Path,
               clock: Clock) -> AsyncIterator[Room]:
    async with live_server(redis_url, data_dir, clock=clock, **UNLIMITED) as server:
        anchor = server.token("anchor", "Mei", user_id="u_mei")
        _, made = await server.request("POST", "/api/rooms", anchor, {"title": "Bags"})
        _, product = await server.request("POST", "/api/products", anchor, {
            "title": "Silk scarf", "category": "fashion", "price_cents": 19_900})
        yield Room(server, clock, anchor, made["id"], product["id"])


async def draw_now(room: Room, bag: dict[str, Any]) -> dict[str, Any]:
    room.clock.now = bag["draw_at"]
    await room.server.services.lucky.finish_due()
    status, drawn = await room.server.request("GET", f"/api/lucky-bags/{bag['id']}")
    assert status == 200, drawn
    assert isinstance(drawn, dict)
    assert drawn["status"] == "drawn", drawn
    return drawn


async def public_key_pem(server: LiveServer, tmp_path: Path) -> Path:
    _, body = await server.request("GET", "/api/certificates/keys")
    pem = tmp_path / "platform.pem"
    pem.write_text(body["keys"][0]["public_key_pem"])
    return pem


def verify(tmp_path: Path, pem: Path, published: dict[str, Any]) -> tuple[int, str]:
    path = tmp_path / "draw.json"
    path.write_text(json.dumps(published))
    done = subprocess.run([sys.executable, str(VERIFY), str(path), "--public-key", str(pem)],
                          capture_output=True, text=True, check=False)
    return done.returncode, done.stdout.strip()


async def test_a_passphrase_bag_is_drawn_verifiably_and_the_winner_orders_it_free(
        room: Room, tmp_path: Path) -> None:
    bag = await room.bag({"kind": "passphrase", "passphrase": "Lucky Cat"}, winners=2)
    commitment = bag["commitment"]
    assert commitment["format"] == "liveroom.lucky.commitment.v1"
    assert len(commitment["seed_sha256"]) == 64
    assert bag["seed"] is None
    assert "Lucky Cat" not in json.dumps(bag), "the passphrase is said in the stream"
    watcher = await room.viewer("zoe")
    viewers = [await room.viewer(name) for name in ("ann", "bob", "cai")]
    for i, viewer in enumerate(viewers):
        ack = await viewer.call("lucky:enter", {"lucky_bag": bag["id"],
                                                "passphrase": "  lucky   CAT "})
        assert ack == {"ok": True, "lucky_bag": bag["id"], "entries": i + 1}
    pushed = await watcher.wait_for("lucky", lambda d: d["entries"] == 3)
    assert pushed["status"] == "open"

    drawn = await draw_now(room, bag)
    draw = drawn["draw"]
    assert draw["entries"] == ["u_ann", "u_bob", "u_cai"]
    assert drawn["seed"] == draw["seed"]
    assert len(drawn["winners"]) == 2
    assert [w["id"] for w in drawn["winners"]] == draw_winners(
        bytes.fromhex(draw["seed"]), draw["entries"], 2)
    await watcher.wait_for("lucky", lambda d: d["status"] == "drawn")
    await room.server.services.lucky.push_changed()
    await asyncio.sleep(0.6)  # a turn of the stock pusher, which would announce a sell-out
    assert watcher.received("sale") == [], "the prize sale is not the room's sale"

    pem = await public_key_pem(room.server, tmp_path)
    code, out = verify(tmp_path, pem, drawn)
    assert code == 0, out
    assert out.startswith(f"VALID {bag['id']}"), out

    winner_id = drawn["winners"][0]["id"]
    winner = viewers[["u_ann", "u_bob", "u_cai"].index(winner_id)]
    token = room.server.buyer_token(winner_id[2:], user_id=winner_id)
    _, mine = await room.server.request("GET", f"/api/lucky-bags/{bag['id']}", token)
    assert mine["you"]["won"]
    assert mine["you"]["entered"]
    done = await winner.call("checkout", {"reservation": mine["you"]["reservation"],
                                          "address": ADDRESS, "payment": "cod"})
    assert done["ok"], done
    order = done["order"]
    assert order["total_cents"] == 0
    assert order["status"] == "confirmed"
    assert [(i["product"], i["unit_price_cents"]) for i in order["items"]] == [(room.product, 0)]
    loser = next(v for v, n in zip(viewers, ("u_ann", "u_bob", "u_cai"), strict=True)
                 if n not in {w["id"] for w in drawn["winners"]})
    refused = await loser.call("checkout", {"reservation": mine["you"]["reservation"],
                                            "address": ADDRESS, "payment": "cod"})
    assert refused["ok"] is False


async def test_tampered_seed_entries_or_winners_are_caught(room: Room, tmp_path: Path) -> None:
    bag = await room.bag({"kind": "passphrase", "passphrase": "go"}, winners=1)
    for name in ("ann", "bob", "cai", "dan"):
        viewer = await room.viewer(name)
        assert (await viewer.call("lucky:enter", {"lucky_bag": bag["id"],
                                                  "passphrase": "go"}))["ok"]
    drawn = await draw_now(room, bag)
    pem = await public_key_pem(room.server, tmp_path)
    assert verify(tmp_path, pem, drawn)[0] == 0
    sign = room.server.services.certificates.sign_statement
    draw = {k: v for k, v in drawn["draw"].items() if k not in ("signature", "key_id")}

    # Edited after signing: the signature no longer matches.
    edited = {**drawn, "draw": {**drawn["draw"], "entries": ["u_ann", "u_bob", "u_cai"]}}
    assert verify(tmp_path, pem, edited) == (1, "INVALID bad_signature")

    # Even the platform's own key cannot make a different seed, entry list or winner pass.
    other_seed = "00" * 32
    cases = {
        "seed_mismatch": {**draw, "seed": other_seed},
        "entries_mismatch": {**draw, "entries": sorted(draw["entries"])[:-1]},
        "winners_mismatch": {**draw, "winners": [
            e for e in draw["entries"] if e not in draw["winners"]][:1]},
    }
    # The winner's entry dropped, the digest made to match: the winners no longer follow.
    dropped = [e for e in draw["entries"] if e not in draw["winners"]]
    cases["winners_mismatch "] = {**draw, "entries": dropped,
                                  "entries_sha256": entries_sha256(dropped)}
    for reason, forged in cases.items():
        code, out = verify(tmp_path, pem, {**drawn, "draw": sign(forged)})
        assert (code, out) == (1, f"INVALID {reason.strip()}"), reason


async def test_entering_refusals_have_codes_and_change_nothing(room: Room,
                                                               redis: aioredis.Redis) -> None:
    bag = await room.bag({"kind": "passphrase", "passphrase": "jade"})
    ann = await room.viewer("ann")
    assert (await ann.call("lucky:enter", {"lucky_bag": bag["id"], "passphrase": "jade"}))["ok"]
    guest = await room.server.connect(room.server.token("viewer", "Guest"))
    assert (await guest.call("join", {"room": room.id}))["ok"]
    outsider = await room.server.connect(room.server.buyer_token("Out", user_id="u_out"))
    anchor = await room.server.connect(room.anchor)
    assert (await anchor.call("join", {"room": room.id}))["ok"]
    bob = await room.viewer("bob")
    before = await redis.hgetall(keys.lucky_entries(bag["id"]))
    cases = [
        (ann, {"lucky_bag": bag["id"], "passphrase": "jade"}, "already_entered"),
        (bob, {"lucky_bag": bag["id"], "passphrase": "jadeite"}, "wrong_passphrase"),
        (bob, {"lucky_bag": bag["id"]}, "wrong_passphrase"),
        (guest, {"lucky_bag": bag["id"], "passphrase": "jade"}, "verification_required"),
        (outsider, {"lucky_bag": bag["id"], "passphrase": "jade"}, "not_in_room"),
        (anchor, {"lucky_bag": bag["id"], "passphrase": "jade"}, "forbidden"),
        (bob, {"lucky_bag": "lb_nope", "passphrase": "jade"}, "unknown_lucky_bag"),
        (bob, {"lucky_bag": 7}, "invalid_input"),
        (bob, {"lucky_bag": bag["id"], "passphrase": ["jade"]}, "invalid_input"),
    ]
    for client, payload, code in cases:
        ack = await client.call("lucky:enter", payload)
        assert ack["ok"] is False, (payload, ack)
        assert ack["error"]["code"] == code, (payload, ack)
    assert await redis.hgetall(keys.lucky_entries(bag["id"])) == before

    room.clock.now = bag["draw_at"]
    late = await bob.call("lucky:enter", {"lucky_bag": bag["id"], "passphrase": "jade"})
    assert late["error"]["code"] == "lucky_closed"
    assert await redis.hgetall(keys.lucky_entries(bag["id"])) == before


async def test_announcing_is_for_the_rooms_anchor_with_valid_terms(room: Room,
                                                                   redis: aioredis.Redis) -> None:
    other = room.server.token("anchor", "Lin", user_id="u_lin")
    _, other_product = await room.server.request("POST", "/api/products", other, {
        "title": "Tea", "category": "food", "price_cents": 900})
    good = {"product_id": room.product, "winners": 1, "draw_in_s": 60,
            "condition": {"kind": "follower"}}
    cases = [
        (other, good, 403, "forbidden"),
        (room.server.buyer_token("Viewer"), good, 403, "forbidden"),
        (None, good, 401, "unauthorized"),
        (room.anchor, {**good, "product_id": other_product["id"]}, 403, "forbidden"),
        (room.anchor, {**good, "draw_in_s": 59}, 400, "invalid_input"),
        (room.anchor, {**good, "draw_in_s": 1801}, 400, "invalid_input"),
        (room.anchor, {**good, "winners": 0}, 400, "invalid_input"),
        (room.anchor, {**good, "winners": True}, 400, "invalid_input"),
        (room.anchor, {**good, "condition": {"kind": "lottery"}}, 400, "invalid_input"),
        (room.anchor, {**good, "condition": {"kind": "watched"}}, 400, "invalid_input"),
        (room.anchor, {**good, "condition": {"kind": "watched", "minutes": 0}}, 400,
         "invalid_input"),
        (room.anchor, {**good, "condition": {"kind": "passphrase", "passphrase": " "}}, 400,
         "invalid_input"),
        (room.anchor, {**good, "condition": "follower"}, 400, "invalid_input"),
    ]
    for token, body, status, code in cases:
        got, answer = await room.server.request("POST", f"/api/rooms/{room.id}/lucky-bags",
                                                token, body)
        assert (got, answer["error"]["code"]) == (status, code), (body, answer)
    assert await redis.keys("{lucky:*") == []
    assert await redis.zcard(keys.LUCKY_DUE) == 0


async def test_the_draw_is_decided_once_among_concurrent_finishers(room: Room,
                                                                  redis: aioredis.Redis) -> None:
    bag = await room.bag({"kind": "passphrase", "passphrase": "x"}, winners=3)
    names = [f"p{i:02d}" for i in range(12)]
    for name in names:
        viewer = await room.viewer(name)
        assert (await viewer.call("lucky:enter", {"lucky_bag": bag["id"],
                                                  "passphrase": "x"}))["ok"]
    room.clock.now = bag["draw_at"] + 5
    desk = room.server.services.lucky
    results = await asyncio.gather(*(desk.finish(bag["id"]) for _ in range(6)))
    assert any(results)
    stored = await desk.get(bag["id"])
    assert stored.draw is not None
    assert len(stored.prizes) == 3
    assert set(stored.prizes) == set(stored.draw["winners"])
    # One prize sale, its units all held by the winners; nobody else can take one.
    assert stored.prize_sale is not None
    sale = await room.server.services.inventory.get_sale(stored.prize_sale)
    assert (sale.stock, sale.held, sale.remaining, sale.price_cents) == (3, 3, 0, 0)
    assert sale.status == "ended"
    # Finishing again publishes nothing new.
    assert await desk.finish(bag["id"]) is False
    assert (await desk.get(bag["id"])).draw == stored.draw


async def test_a_bag_without_entries_draws_no_one(room: Room) -> None:
    bag = await room.bag({"kind": "follower"})
    drawn = await draw_now(room, bag)
    assert drawn["winners"] == []
    assert drawn["draw"]["entries"] == []


async def test_the_follower_condition(room: Room) -> None:
    bag = await room.bag({"kind": "follower"})
    ann = await room.viewer("ann")
    token = room.server.buyer_token("ann", user_id="u_ann")
    ack = await ann.call("lucky:enter", {"lucky_bag": bag["id"]})
    assert ack["error"]["code"] == "not_follower"
    status, _ = await room.server.request("POST", "/api/anchors/u_mei/follow", token)
    assert status == 200
    assert (await ann.call("lucky:enter", {"lucky_bag": bag["id"]}))["entries"] == 1


async def test_the_watched_condition_counts_server_measured_presence(room: Room) -> None:
    bag = await room.bag({"kind": "watched", "minutes": 2}, draw_in_s=1800)
    ann = await room.viewer("ann")
    meter = room.server.services.watch
    present = [(room.id, "u_ann")]
    await meter.seen(present)
    for _ in range(6):  # 60 s seen, in steps of 10 s
        room.clock.advance(10_000)
        await meter.seen(present + present)  # two sockets of one user count once
    ack = await ann.call("lucky:enter", {"lucky_bag": bag["id"]})
    assert ack["error"]["code"] == "not_watched_enough", ack
    room.clock.advance(120_000)  # away for two minutes: not credited
    await meter.seen(present)
    for _ in range(6):
        room.clock.advance(10_000)
        await meter.seen(present)
    assert await meter.watched_ms(room.id, "u_ann") == 120_000
    assert (await ann.call("lucky:enter", {"lucky_bag": bag["id"]}))["ok"]


def test_the_winner_function_is_a_fair_deterministic_partial_shuffle() -> None:
    entries = sorted_entries([f"u_{i}" for i in range(50)] + ["u_1"])
    seed = bytes(range(32))
    first = draw_winners(seed, entries, 5)
    assert first == draw_winners(seed, entries, 5)
    assert len(set(first)) == 5
    assert set(first) <= set(entries)
    assert draw_winners(seed, entries, 6)[:5] == first, "more winners extend the same order"
    assert draw_winners(seed, entries[:3], 10) == draw_winners(seed, entries[:3], 3)
    assert draw_winners(bytes(32), entries, 5) != first
    with pytest.raises(ValueError, match="sorted"):
        draw_winners(seed, list(reversed(entries)), 1)
    # Every entrant is about equally likely to win a single draw (seeds 0..1999).
    wins = dict.fromkeys(entries[:4], 0)
    for i in range(2000):
        wins[draw_winners(i.to_bytes(32, "big"), entries[:4], 1)[0]] += 1
    assert all(400 <= n <= 600 for n in wins.values()), wins


async def test_the_servers_own_loop_draws_when_the_clock_reaches_the_draw_time(
        room: Room) -> None:
    bag = await room.bag({"kind": "passphrase", "passphrase": "now"}, winners=1)
    ann = await room.viewer("ann")
    assert (await ann.call("lucky:enter", {"lucky_bag": bag["id"], "passphrase": "now"}))["ok"]
    room.clock.now = bag["draw_at"] - 1
    await asyncio.sleep(1.2)  # a few of the loop's turns: not due yet
    assert (await room.server.services.lucky.get(bag["id"])).status == "open"
    room.clock.now = bag["draw_at"]
    result = await ann.wait_for("lucky", lambda d: d["status"] == "drawn")
    assert result["winners"] == [{"id": "u_ann", "name": "ann"}]


async def test_two_servers_on_one_redis_publish_one_draw(
        room: Room, redis_url: str, data_dir: Path) -> None:
    bag = await room.bag({"kind": "passphrase", "passphrase": "w"}, winners=2)
    for name in ("ann", "bob", "cai", "dan", "eve"):
        viewer = await room.viewer(name)
        assert (await viewer.call("lucky:enter", {"lucky_bag": bag["id"],
                                                  "passphrase": "w"}))["ok"]
    async with live_server(redis_url, data_dir, clock=room.clock) as other:
        room.clock.now = bag["draw_at"]
        desks = [room.server.services.lucky, other.services.lucky]
        await asyncio.gather(*(desk.finish(bag["id"]) for desk in desks * 3))
        first, second = [await desk.get(bag["id"]) for desk in desks]
    assert first.draw == second.draw
    assert first.draw is not None
    assert first.prizes == second.prizes
    assert len(first.prizes) == 2
    sale = await room.server.services.inventory.get_sale(first.prize_sale or "")
    assert (sale.stock, sale.held) == (2, 2)


async def test_nobody_else_can_take_a_prize_and_two_winners_at_one_door_get_one(
        room: Room) -> None:
    bag = await room.bag({"kind": "passphrase", "passphrase": "d"}, winners=2)
    viewers = {name: await room.viewer(name) for name in ("ann", "bob", "cai")}
    for viewer in viewers.values():
        assert (await viewer.call("lucky:enter", {"lucky_bag": bag["id"],
                                                  "passphrase": "d"}))["ok"]
    drawn = await draw_now(room, bag)
    stored = await room.server.services.lucky.get(bag["id"])
    loser = next(n for n in viewers if f"u_{n}" not in stored.prizes)
    taken = await viewers[loser].call("buy", {"sale": stored.prize_sale, "qty": 1,
                                              "request_id": "grab"})
    assert taken["status"] == "ended", taken
    first, second = (w["id"] for w in drawn["winners"])
    done = await viewers[first[2:]].call("checkout", {
        "reservation": stored.prizes[first]["id"], "address": ADDRESS, "payment": "cod"})
    assert done["ok"], done
    again = await viewers[second[2:]].call("checkout", {
        "reservation": stored.prizes[second]["id"], "address": ADDRESS, "payment": "cod"})
    assert again["error"]["code"] == "limit_reached", again


async def test_a_banned_account_cannot_enter_and_an_ended_room_announces_nothing(
        room: Room) -> None:
    bag = await room.bag({"kind": "follower"})
    bob = await room.viewer("bob")
    await room.server.request("POST", "/api/anchors/u_mei/follow",
                              room.server.buyer_token("bob", user_id="u_bob"))
    anchor = await room.server.connect(room.anchor)
    banned = await anchor.call("mod:ban", {"room": room.id, "user": "u_bob"})
    assert banned["ok"], banned
    ack = await bob.call("lucky:enter", {"lucky_bag": bag["id"]})
    assert ack["error"]["code"] in ("not_in_room", "banned"), ack
    # Even past the room's door (another connection that had joined before), the ban holds.
    with pytest.raises(Banned):
        await room.server.services.lucky.enter(
            User(id="u_bob", name="bob", role=Role.VIEWER, phone_verified=True), bag["id"], None)
    assert await room.server.services.lucky.entries_count(bag["id"]) == 0

    await room.server.request("POST", f"/api/rooms/{room.id}/end", room.anchor)
    status, body = await room.server.request(
        "POST", f"/api/rooms/{room.id}/lucky-bags", room.anchor,
        {"product_id": room.product, "winners": 1, "draw_in_s": 60,
         "condition": {"kind": "follower"}})
    assert (status, body["error"]["code"]) == (409, "room_ended")
