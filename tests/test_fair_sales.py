"""A flash sale's per-person limit holds against one person with many sessions: guests cannot
buy at all, and a person's several accounts buying to one door get the limit once. A banned
user cannot buy, and an ended room's sales end with it."""

from __future__ import annotations

import asyncio

from tests.server_harness import LiveServer
from tests.test_commerce_edge import shop

DOOR = {"name": "Mallory", "phone": "+86 138 0013 8000", "line1": "7 Hill Road", "city": "Linyi"}


async def test_one_person_with_fifty_guests_and_ten_accounts_gets_one_unit(
        server: LiveServer) -> None:
    _, room_id, _, sale = await shop(server, stock=30, per_user_limit=1)
    # 50 guest sessions, as one client mints them (the limit per address allows 30 a minute:
    # those that are made go on to try).
    answers = await asyncio.gather(*(
        server.request("POST", "/api/session", json={"name": f"m{i}"}) for i in range(50)))
    guests = [body["token"] for status, body in answers if status == 201]
    assert guests
    guest_buys = []
    for token in guests:
        client = await server.connect(token)
        assert (await client.call("join", {"room": room_id}))["ok"]
        guest_buys.append(await client.call("buy", {"sale": sale["id"], "qty": 1,
                                                    "request_id": "g"}))
    assert {ack["status"] for ack in guest_buys} == {"verification_required"}
    assert {ack["error"]["code"] for ack in guest_buys} == {"verification_required"}

    # Ten accounts (ten phones), one door: each reserves, and checkout lets one through.
    accounts = []
    for i in range(10):
        _, sent = await server.request("POST", "/api/accounts/otp",
                                       json={"phone": f"+86139001390{i:02d}"})
        _, signed = await server.request("POST", "/api/accounts/verify", json={
            "phone": sent["phone"], "code": sent["code"]})
        accounts.append(signed["token"])
    holds = []
    for token in accounts:
        client = await server.connect(token)
        ack = await client.call("buy", {"sale": sale["id"], "qty": 1, "request_id": "a"})
        assert ack["status"] == "reserved", ack
        holds.append((token, ack["reservation"]["id"]))
    checkouts = await asyncio.gather(*(
        server.request("POST", "/api/orders", token, {
            "reservation": reservation, "address": DOOR, "payment": "cod"})
        for token, reservation in holds))
    placed = [i for i, (status, _) in enumerate(checkouts) if status == 201]
    refused = [body for status, body in checkouts if status != 201]
    assert len(placed) == 1
    assert len(refused) == 9
    assert {body["error"]["code"] for body in refused} == {"limit_reached"}
    # The nine refused holds went back to the other buyers at once.
    _, fresh = await server.request("GET", f"/api/sales/{sale['id']}")
    assert (fresh["sold"], fresh["held"], fresh["remaining"]) == (1, 0, 29)
    other = (placed[0] + 1) % len(accounts)
    token = accounts[other]
    # A refused hold is gone: not to be checked out later to another door either.
    status, body = await server.request("POST", "/api/orders", token, {
        "reservation": holds[other][1], "payment": "cod",
        "address": {**DOOR, "line1": "8 Hill Road", "phone": "13900139999"}})
    assert (status, body["error"]["code"]) == (409, "hold_expired")
    # The same phone written another way, or the door spelled another way, is the same.
    client = await server.connect(token)
    again = await client.call("buy", {"sale": sale["id"], "qty": 1, "request_id": "b"})
    assert again["status"] == "reserved", again
    for address in ({**DOOR, "phone": "13800138000", "line1": "9 Far Road"},
                    {**DOOR, "phone": "13700137000", "line1": "7, HILL road."}):
        status, body = await server.request("POST", "/api/orders", token, {
            "reservation": again["reservation"]["id"], "payment": "cod", "address": address})
        assert (status, body["error"]["code"]) == (409, "limit_reached"), address
        again = await client.call("buy", {"sale": sale["id"], "qty": 1,
                                          "request_id": f"b{address['line1']}"})
    orders = [len((await server.request("GET", "/api/orders", t))[1]["orders"])
              for t in accounts]
    assert sum(orders) == 1, "exactly one unit reached an order"
    # Another door with another phone is another person's, and goes through.
    status, body = await server.request("POST", "/api/orders", token, {
        "reservation": again["reservation"]["id"], "payment": "cod",
        "address": {"name": "Neighbour", "phone": "13900139999", "line1": "8 Hill Road",
                    "city": "Linyi"}})
    assert status == 201, body


async def test_a_banned_buyer_cannot_buy_and_an_unbanned_one_can(server: LiveServer) -> None:
    anchor_token, room_id, _, sale = await shop(server, stock=10, per_user_limit=2)
    anchor = await server.connect(anchor_token)
    assert (await anchor.call("join", {"room": room_id}))["ok"]
    token = server.buyer_token("Troll", user_id="u_troll")
    troll = await server.connect(token)
    assert (await troll.call("join", {"room": room_id}))["ok"]
    kept = await troll.call("buy", {"sale": sale["id"], "qty": 1, "request_id": "before"})
    assert kept["status"] == "reserved"

    assert (await anchor.call("mod:ban", {"room": room_id, "user": "u_troll"}))["ok"]
    # Out of the room, and not buying from outside it either (a new socket, the same account).
    outside = await server.connect(token)
    refused = await outside.call("buy", {"sale": sale["id"], "qty": 1, "request_id": "after"})
    assert (refused["status"], refused["error"]["code"]) == ("banned", "banned")
    # A retry of a buy made before the ban still gets its reservation back.
    replay = await outside.call("buy", {"sale": sale["id"], "qty": 1, "request_id": "before"})
    assert replay["reservation"] == kept["reservation"]
    # A sale opened after the ban knows it too.
    _, product = await server.request("POST", "/api/products", anchor_token, {
        "title": "Tea", "category": "tea", "price_cents": 900})
    _, later = await server.request("POST", f"/api/rooms/{room_id}/sales", anchor_token, {
        "product_id": product["id"], "stock": 5, "price_cents": 800, "per_user_limit": 1,
        "duration_s": 600})
    refused = await outside.call("buy", {"sale": later["id"], "qty": 1, "request_id": "l"})
    assert refused["status"] == "banned"
    _, fresh = await server.request("GET", f"/api/sales/{sale['id']}")
    assert fresh["held"] == 1, "refused buys took nothing"

    assert (await anchor.call("mod:unban", {"room": room_id, "user": "u_troll"}))["ok"]
    after = await outside.call("buy", {"sale": later["id"], "qty": 1, "request_id": "l"})
    assert after["status"] == "reserved", "a ban answer is not remembered"


async def test_a_ban_for_a_while_ends_by_itself(server: LiveServer) -> None:
    anchor_token, room_id, _, sale = await shop(server, stock=10, per_user_limit=2)
    anchor = await server.connect(anchor_token)
    token = server.buyer_token("Hasty", user_id="u_hasty")
    ack = await anchor.call("mod:ban", {"room": room_id, "user": "u_hasty", "duration_s": 60})
    assert ack["ok"]
    assert ack["until"] > 0
    buyer = await server.connect(token)
    assert (await buyer.call("join", {"room": room_id}))["error"]["code"] == "banned"
    # The ban's end, as the clock will reach it: written back a minute (no sleeping).
    await server.services.inventory.set_buyer_bans(sale["id"], {"u_hasty": 1})
    await server.services.redis.hset(f"{{room:{room_id}}}:bans", "u_hasty", 1)
    assert (await buyer.call("join", {"room": room_id}))["ok"]
    bought = await buyer.call("buy", {"sale": sale["id"], "qty": 1, "request_id": "x"})
    assert bought["status"] == "reserved"


async def test_ending_a_room_ends_its_sales_and_the_room_hears_it(server: LiveServer) -> None:
    anchor_token, room_id, _, sale = await shop(server, stock=10, per_user_limit=2)
    watcher = await server.connect(server.token("viewer", "Watcher"))
    assert (await watcher.call("join", {"room": room_id}))["ok"]
    buyer = await server.connect(server.buyer_token("Late"))
    status, _ = await server.request("POST", f"/api/rooms/{room_id}/end", anchor_token)
    assert status == 200
    ended = await watcher.wait_for("sale", lambda s: s["id"] == sale["id"]
                                   and s["status"] == "ended")
    assert ended["ended_reason"] == "room_ended"
    await watcher.wait_for("room", lambda r: r["status"] == "ended")
    late = await buyer.call("buy", {"sale": sale["id"], "qty": 1, "request_id": "z"})
    assert late["status"] == "ended"
    _, fresh = await server.request("GET", f"/api/sales/{sale['id']}")
    assert fresh["status"] == "ended"
