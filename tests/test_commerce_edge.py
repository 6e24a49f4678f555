"""Flash sales, buying and checkout through the real server and real Socket.IO clients."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest
import socketio

from liveroom.clock import now_ms
from tests.server_harness import PATIENCE_S, Client, LiveServer

ADDRESS = {"name": "Wang Fang", "phone": "13800138000", "line1": "12 Jade Road", "city": "Hefei"}


def address_of(name: str) -> dict[str, str]:
    """A buyer's own door and phone (a sale's per-person limit counts by door too)."""
    number = sum(map(ord, name)) % 10_000
    return {"name": name, "phone": f"1390013{number:04d}", "line1": f"{number} Tea Lane",
            "city": "Hefei"}
VAULT = {"material": "jade", "weight_mg": 1000, "grade": "A", "appraiser": "Vault 1",
         "photo_sha256": ["cd" * 32]}


async def shop(server: LiveServer, category: str = "jewelry", **sale: Any
               ) -> tuple[str, str, dict[str, Any], dict[str, Any]]:
    anchor = server.token("anchor", "Mei", user_id="u_mei")
    _, room = await server.request("POST", "/api/rooms", anchor, {"title": "Flash night"})
    _, product = await server.request("POST", "/api/products", anchor, {
        "title": "Bangle", "category": category, "price_cents": 129_900, "brand": "Hetian"})
    body = {"product_id": product["id"], "stock": 5, "price_cents": 99_900,
            "per_user_limit": 2, "starts_in_s": 0, "duration_s": 600, "hold_s": 60, **sale}
    status, created = await server.request("POST", f"/api/rooms/{room['id']}/sales", anchor, body)
    assert status == 201, created
    return anchor, room["id"], product, created


async def signed_in_buyer(server: LiveServer, room_id: str, name: str = "Ann",
                          user_id: str | None = None) -> tuple[str, Client]:
    """A buyer (a verified account) who joined ``room_id``, with the token its REST calls
    need."""
    token = server.buyer_token(name, user_id=user_id)
    client = await server.connect(token)
    assert (await client.call("join", {"room": room_id}))["ok"]
    return token, client


async def buyer(server: LiveServer, room_id: str, name: str = "Ann") -> Client:
    return (await signed_in_buyer(server, room_id, name))[1]


async def test_sale_is_announced_and_bought(server: LiveServer) -> None:
    _, room_id, product, sale = await shop(server)
    assert sale["status"] == "live"
    assert (sale["stock"], sale["remaining"], sale["held"], sale["sold"]) == (5, 5, 0, 0)
    assert sale["product"] == product["id"]
    assert sale["price_cents"] == 99_900
    assert sale["ends_at"] - sale["starts_at"] == 600_000

    ann = await buyer(server, room_id)
    state = (await ann.call("join", {"room": room_id}))["room"]
    assert state["sale"]["id"] == sale["id"]

    ack = await ann.call("buy", {"sale": sale["id"], "qty": 2, "request_id": "r1"})
    assert ack["ok"] is True
    assert ack["status"] == "reserved"
    assert ack["remaining"] == 3
    assert ack["reservation"]["qty"] == 2
    assert ack["reservation"]["price_cents"] == 99_900
    assert ack["reservation"]["id"].startswith(sale["id"] + ".")

    push = await ann.wait_for("stock", lambda d: d["sale"] == sale["id"])
    assert (push["remaining"], push["held"], push["sold"]) == (3, 2, 0)
    _, fresh = await server.request("GET", f"/api/sales/{sale['id']}")
    assert (fresh["remaining"], fresh["held"]) == (3, 2)

    again = await ann.call("buy", {"sale": sale["id"], "qty": 2, "request_id": "r1"})
    assert again == ack, "the same request id returns the first answer"
    ack = await ann.call("buy", {"sale": sale["id"], "qty": 1, "request_id": "r2"})
    assert ack["status"] == "limit_reached"
    assert ack["ok"] is False
    assert ack["error"]["code"] == "limit_reached"


@pytest.mark.parametrize(
    ("payload", "code"),
    [({"qty": 0, "request_id": "x"}, "invalid"), ({"qty": "1", "request_id": "x"}, "invalid"),
     ({"qty": True, "request_id": "x"}, "invalid"), ({"qty": 1}, "invalid"),
     ({"qty": 1, "request_id": "x" * 65}, "invalid"), ({"qty": 1, "request_id": ""}, "invalid")],
)
async def test_bad_buys_are_invalid_and_take_nothing(server: LiveServer, payload: dict[str, Any],
                                                     code: str) -> None:
    _, room_id, _, sale = await shop(server)
    ann = await buyer(server, room_id)
    ack = await ann.call("buy", {"sale": sale["id"], **payload})
    assert (ack["ok"], ack["status"], ack["error"]["code"]) == (False, "invalid", code)
    _, fresh = await server.request("GET", f"/api/sales/{sale['id']}")
    assert fresh["remaining"] == 5


async def test_unknown_sale_and_non_object(server: LiveServer) -> None:
    _, room_id, _, _ = await shop(server)
    ann = await buyer(server, room_id)
    ack = await ann.call("buy", {"sale": "s_0123456789", "qty": 1, "request_id": "a"})
    assert ack["error"]["code"] == "unknown_sale"
    ack = await ann.call("buy", ["not", "an", "object"])
    assert ack["status"] == "invalid"


async def test_not_started_and_ended(server: LiveServer) -> None:
    anchor, room_id, _, sale = await shop(server, starts_in_s=60)
    assert sale["status"] == "scheduled"
    ann = await buyer(server, room_id)
    ack = await ann.call("buy", {"sale": sale["id"], "qty": 1, "request_id": "early"})
    assert ack["status"] == "not_started"

    status, ended = await server.request("POST", f"/api/sales/{sale['id']}/end", anchor)
    assert status == 200
    assert ended["status"] == "ended"
    assert ended["ended_reason"] == "anchor"
    await ann.wait_for("sale", lambda d: d["id"] == sale["id"] and d["status"] == "ended")
    ack = await ann.call("buy", {"sale": sale["id"], "qty": 1, "request_id": "late"})
    assert ack["status"] == "ended"


async def test_sale_creation_rules(server: LiveServer) -> None:
    anchor, room_id, product, _ = await shop(server)
    base = {"product_id": product["id"], "stock": 5, "price_cents": 100, "per_user_limit": 1,
            "duration_s": 60}
    for patch in ({"stock": 0}, {"stock": 1.5}, {"price_cents": -1}, {"starts_in_s": -5},
                  {"duration_s": 0}, {"hold_s": 5}, {"per_user_limit": "2"}, {"product_id": None}):
        status, body = await server.request("POST", f"/api/rooms/{room_id}/sales", anchor,
                                            {**base, **patch})
        assert status == 400, (patch, body)
    other = server.token("anchor", "Bo")
    status, body = await server.request("POST", f"/api/rooms/{room_id}/sales", other, base)
    assert (status, body["error"]["code"]) == (403, "forbidden")
    status, body = await server.request("POST", f"/api/sales/{'s_0123456789'}/end", anchor)
    assert (status, body["error"]["code"]) == (404, "unknown_sale")
    _, listing = await server.request("GET", f"/api/rooms/{room_id}/sales")
    assert len(listing["sales"]) == 1


async def test_many_buyers_never_oversell(server: LiveServer) -> None:
    _, room_id, _, sale = await shop(server, stock=30, per_user_limit=2)
    watcher = await buyer(server, room_id, "Watcher")
    clients = [await server.connect(server.buyer_token(f"b{i}")) for i in range(60)]
    acks = await asyncio.gather(*(
        c.call("buy", {"sale": sale["id"], "qty": 2, "request_id": f"q{i}"})
        for i, c in enumerate(clients)))
    reserved = [a for a in acks if a["status"] == "reserved"]
    assert sum(a["reservation"]["qty"] for a in reserved) == 30
    assert {a["status"] for a in acks} == {"reserved", "sold_out"}
    _, fresh = await server.request("GET", f"/api/sales/{sale['id']}")
    assert (fresh["remaining"], fresh["held"], fresh["status"]) == (0, 30, "sold_out")
    await watcher.wait_for("stock", lambda d: d["remaining"] == 0)
    assert len(watcher.received("stock")) <= 6, "stock pushes are coalesced, not one per buy"


async def test_a_sell_out_reaches_the_room_as_stock_then_sale_once(server: LiveServer) -> None:
    _, room_id, _, sale = await shop(server, stock=2, per_user_limit=2)
    member = await server.raw_member(room_id, "Watcher")
    ann = await buyer(server, room_id)
    ack = await ann.call("buy", {"sale": sale["id"], "qty": 2, "request_id": "all"})
    assert ack["status"] == "reserved"
    pushes: list[tuple[str, Any]] = []

    async def read(until_silent_s: float) -> None:
        try:
            while True:
                text = await member.receive_str(timeout=until_silent_s)
                if text.startswith("42"):
                    event, data = orjson.loads(text[2:])
                    if event in ("stock", "sale"):
                        pushes.append((event, data))
                        if (event, data.get("status")) == ("sale", "sold_out"):
                            return
        except TimeoutError:
            pass

    try:
        await read(PATIENCE_S)  # up to the sold-out ``sale``, however long that takes
        await read(1.0)  # the sweeper passes every 0.25 s: a second one would show by now
    finally:
        await member.close()
    closing = [(event, data["status"]) for event, data in pushes
               if data.get("status") == "sold_out"]
    assert closing == [("stock", "sold_out"), ("sale", "sold_out")], pushes
    sold_out_sale = next(data for event, data in pushes if event == "sale")
    assert (sold_out_sale["id"], sold_out_sale["remaining"], sold_out_sale["held"]) == (
        sale["id"], 0, 2)


async def test_a_known_sell_out_is_answered_alike_and_a_winner_still_gets_their_hold(
        server: LiveServer) -> None:
    _, room_id, _, sale = await shop(server, stock=1, per_user_limit=1)
    ann, bob = await buyer(server, room_id, "Ann"), await buyer(server, room_id, "Bob")
    won = await ann.call("buy", {"sale": sale["id"], "qty": 1, "request_id": "press"})
    assert won["status"] == "reserved"
    from_the_store = await bob.call("buy", {"sale": sale["id"], "qty": 1, "request_id": "p1"})
    for _ in range(1500):  # the process marks the sale after one more Redis read
        if server.services.inventory.is_marked_sold_out(sale["id"]):
            break
        await asyncio.sleep(0.02)
    assert server.services.inventory.is_marked_sold_out(sale["id"])
    at_the_edge = await bob.call("buy", {"sale": sale["id"], "qty": 1, "request_id": "p2"})
    # The buyer cannot tell the two apart: the same ack, field for field.
    assert at_the_edge == from_the_store
    assert at_the_edge["status"] == "sold_out"
    # Ann's answer was lost on the way; her retry still finds her reservation.
    again = await ann.call("buy", {"sale": sale["id"], "qty": 1, "request_id": "press"})
    assert again == won
    # She lets it go: Bob's next press may take it.
    released = await ann.call("release", {"reservation": won["reservation"]["id"]})
    assert released["ok"]
    late = await bob.call("buy", {"sale": sale["id"], "qty": 1, "request_id": "late"})
    assert late["status"] == "reserved"


async def test_checkout_cash_on_delivery_and_visibility(server: LiveServer) -> None:
    anchor_token, room_id, _, sale = await shop(server)
    anchor_sock = await server.connect(anchor_token)
    ann = await buyer(server, room_id, "Ann")
    ack = await ann.call("buy", {"sale": sale["id"], "qty": 2, "request_id": "c1"})
    reservation = ack["reservation"]["id"]

    bo = await buyer(server, room_id, "Bo")
    refused = await bo.call("checkout", {"reservation": reservation, "address": ADDRESS,
                                         "payment": "cod"})
    assert refused["error"]["code"] == "not_reservation_holder"
    bad = await ann.call("checkout", {"reservation": reservation, "address": {"name": "x"},
                                      "payment": "cod"})
    assert bad["error"]["code"] == "invalid_checkout"

    done = await ann.call("checkout", {"reservation": reservation, "address": ADDRESS,
                                       "payment": "cod"})
    assert done["ok"] is True
    order = done["order"]
    assert order["status"] == "confirmed"
    assert order["total_cents"] == 2 * 99_900
    twice = await ann.call("checkout", {"reservation": reservation, "address": ADDRESS,
                                        "payment": "cod"})
    assert twice["order"]["id"] == order["id"]

    _, fresh = await server.request("GET", f"/api/sales/{sale['id']}")
    assert (fresh["held"], fresh["sold"]) == (0, 2)
    figures = await anchor_sock.wait_for("figures", lambda d: d["orders"] == 1)
    assert figures["gmv_cents"] == 2 * 99_900
    assert figures["room"] == room_id
    assert all(event != "figures" for event, _ in ann.events), "figures go to the anchor only"

    ann_token = server.token("viewer", "Ann-2")
    status, mine = await server.request("GET", "/api/orders", ann_token)
    assert (status, mine["orders"]) == (200, [])
    status, body = await server.request("GET", f"/api/orders/{order['id']}", ann_token)
    assert (status, body["error"]["code"]) == (404, "order_not_found")
    status, body = await server.request("GET", f"/api/orders/{order['id']}", anchor_token)
    assert status == 200
    assert body["order"]["id"] == order["id"]


async def test_vault_rule_blocks_shipping_until_certified(server: LiveServer) -> None:
    anchor, room_id, product, sale = await shop(server)
    ann = await buyer(server, room_id)
    ack = await ann.call("buy", {"sale": sale["id"], "qty": 1, "request_id": "v"})
    done = await ann.call("checkout", {"reservation": ack["reservation"]["id"],
                                       "address": ADDRESS, "payment": {"method": "cod"}})
    order_id = done["order"]["id"]
    status, body = await server.request("POST", f"/api/orders/{order_id}/ship", anchor)
    assert (status, body["error"]["code"]) == (409, "certification_required")
    await server.request("POST", "/api/certificates", server.token("inspector"), {
        "kind": "vault", "product_id": product["id"], "details": VAULT})
    status, body = await server.request("POST", f"/api/orders/{order_id}/ship", anchor)
    assert status == 200
    assert body["order"]["status"] == "shipped"
    await ann.wait_for("order", lambda d: d["status"] == "shipped")


async def test_online_payment_and_cancel_returns_stock(server: LiveServer) -> None:
    _, room_id, _, sale = await shop(server, category="essential_oil")
    ann_token, ann = await signed_in_buyer(server, room_id, user_id="u_ann")
    ack = await ann.call("buy", {"sale": sale["id"], "qty": 1, "request_id": "p"})
    done = await ann.call("checkout", {"reservation": ack["reservation"]["id"],
                                       "address": ADDRESS,
                                       "payment": {"method": "online", "card": "4242424242424242"}})
    assert done["order"]["status"] == "created"
    paid = await ann.wait_for("order", lambda d: d["status"] == "paid")
    assert paid["id"] == done["order"]["id"]
    _, fresh = await server.request("GET", f"/api/sales/{sale['id']}")
    assert (fresh["remaining"], fresh["sold"]) == (4, 1)

    status, body = await server.request("POST", f"/api/orders/{paid['id']}/cancel",
                                        server.token("viewer", "Eve"), {"reason": "mine now"})
    assert (status, body["error"]["code"]) == (404, "order_not_found")
    status, body = await server.request("POST", f"/api/orders/{paid['id']}/cancel", ann_token,
                                        {"reason": "changed my mind"})
    assert status == 200
    assert body["order"]["status"] == "cancelled"
    _, fresh = await server.request("GET", f"/api/sales/{sale['id']}")
    assert (fresh["remaining"], fresh["sold"]) == (5, 0), "a cancelled unit goes back on sale"


async def test_declined_card_leaves_the_order_unpaid(server: LiveServer) -> None:
    _, room_id, _, sale = await shop(server)
    ann = await buyer(server, room_id)
    ack = await ann.call("buy", {"sale": sale["id"], "qty": 1, "request_id": "d"})
    done = await ann.call("checkout", {"reservation": ack["reservation"]["id"],
                                       "address": ADDRESS,
                                       "payment": {"method": "online", "card": "4000000000000002"}})
    assert done["ok"] is True
    declined = await ann.wait_for("order", lambda d: d["id"] == done["order"]["id"])
    assert declined["status"] == "created"


async def test_payment_callback_refuses_a_forged_signature(server: LiveServer) -> None:
    status, body = await server.request(
        "POST", "/api/payments/callback", data=b'{"order_id": "o_x", "status": "approved"}')
    assert (status, body["error"]["code"]) == (401, "bad_signature")


@pytest.mark.parametrize("signature", [
    "é".encode(), b"\xff\xfe", "签名".encode() * 20, b"0" * 63 + "é".encode(),  # not ASCII
    b"", b"0" * 63, b"0" * 65, b"0" * 4000, b"zz" * 32, b"0" * 64,  # ASCII of any length
])
async def test_any_signature_bytes_are_refused_401_never_500(server: LiveServer,
                                                             signature: bytes) -> None:
    """A non-ASCII signature made hmac.compare_digest raise TypeError: a 500."""
    status, headers, body = await server.raw_request(
        b"POST /api/payments/callback HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b"Content-Type: application/json\r\nX-Sandbox-Signature: " + signature,
        b'{"payment_id": "pay_x", "status": "approved", "amount_cents": 100}')
    assert headers["Content-Type"].startswith("application/json")
    assert (status, orjson.loads(body)["error"]["code"]) == (401, "bad_signature")
    status, _ = await server.request("GET", "/api/time")
    assert status == 200


async def test_rest_checkout_places_the_order_once_and_only_for_the_holder(
    server: LiveServer
) -> None:
    _, room_id, product, sale = await shop(server, category="essential_oil")
    token, ann = await signed_in_buyer(server, room_id, user_id="u_ann")
    ack = await ann.call("buy", {"sale": sale["id"], "qty": 2, "request_id": "rest"})
    reservation = ack["reservation"]["id"]
    body = {"reservation": reservation, "address": ADDRESS, "payment": "cod"}
    stranger = server.token("viewer", "Eve", user_id="u_eve")

    status, refused = await server.request("POST", "/api/orders", stranger, body)
    assert (status, refused["error"]["code"]) == (403, "not_reservation_holder")
    status, bad = await server.request("POST", "/api/orders", token, {**body, "address": {}})
    assert (status, bad["error"]["code"]) == (400, "invalid_checkout")
    _, fresh = await server.request("GET", f"/api/sales/{sale['id']}")
    assert (fresh["held"], fresh["sold"]) == (2, 0), "refused checkouts sold nothing"

    status, placed = await server.request("POST", "/api/orders", token, body)
    assert status == 201
    assert placed["ok"] is True
    order = placed["order"]
    assert order["id"].startswith("o_")
    assert (order["status"], order["total_cents"], order["payment_method"]) == (
        "confirmed", 2 * 99_900, "cod")
    assert order["items"] == [{"product": product["id"], "title": "Bangle",
                               "category": "essential_oil", "brand": "Hetian", "qty": 2,
                               "unit_price_cents": 99_900}]
    assert (order["reservation"], order["sale"], order["room"], order["buyer"]) == (
        reservation, sale["id"], room_id, "u_ann")
    assert order["address"] == ADDRESS

    status, repeat = await server.request("POST", "/api/orders", token, body)
    assert (status, repeat["order"]) == (201, order), "the same reservation, the same order"
    status, refused = await server.request("POST", "/api/orders", stranger, body)
    assert (status, refused["error"]["code"]) == (403, "not_reservation_holder")
    assert order["id"] not in str(refused), "a stranger does not learn the order id"

    _, mine = await server.request("GET", "/api/orders", token)
    assert [o["id"] for o in mine["orders"]] == [order["id"]]
    _, theirs = await server.request("GET", "/api/orders", stranger)
    assert theirs["orders"] == []
    _, fresh = await server.request("GET", f"/api/sales/{sale['id']}")
    assert (fresh["held"], fresh["sold"]) == (0, 2)


async def test_upheld_counterfeit_claim_pays_ten_times_and_tells_the_buyer(
    server: LiveServer
) -> None:
    anchor, room_id, product, sale = await shop(server)
    await server.request("POST", "/api/certificates", server.token("inspector"), {
        "kind": "vault", "product_id": product["id"], "details": VAULT})
    token, ann = await signed_in_buyer(server, room_id, user_id="u_ann")
    ack = await ann.call("buy", {"sale": sale["id"], "qty": 2, "request_id": "fake"})
    done = await ann.call("checkout", {"reservation": ack["reservation"]["id"],
                                       "address": ADDRESS, "payment": "cod"})
    order_id = done["order"]["id"]
    for step in ("ship", "deliver"):
        status, _ = await server.request("POST", f"/api/orders/{order_id}/{step}", anchor)
        assert status == 200
    status, filed = await server.request("POST", f"/api/orders/{order_id}/counterfeit", token,
                                         {"reason": "the jade is glass"})
    assert status == 201
    claim = filed["claim"]
    assert (claim["order_id"], claim["status"], claim["amount_cents"]) == (order_id, "open", 0)
    # Pushes arrive in order: once "delivered" is here, the next order push is the decision.
    await ann.wait_for("order", lambda d: d["status"] == "delivered")
    pushes_before = len(ann.received("order"))

    admin = server.token("admin", "Root")
    status, decided = await server.request("POST", f"/api/claims/{claim['id']}/uphold", admin)
    assert status == 200
    assert (decided["claim"]["status"], decided["claim"]["amount_cents"]) == (
        "upheld", 10 * 2 * 99_900)
    await ann.wait_for("order", lambda d: d["id"] == order_id
                       and len(ann.received("order")) > pushes_before)
    _, detail = await server.request("GET", f"/api/orders/{order_id}", token)
    [payout] = detail["order"]["payouts"]
    assert (payout["kind"], payout["status"], payout["claim_id"], payout["amount_cents"]) == (
        "counterfeit_compensation", "paid", claim["id"], 1_998_000)
    status, again = await server.request("POST", f"/api/claims/{claim['id']}/uphold", admin)
    assert (status, again["error"]["code"]) == (409, "claim_conflict")
    _, detail = await server.request("GET", f"/api/orders/{order_id}", token)
    assert len(detail["order"]["payouts"]) == 1


INSPECTION = {"model": "iPhone 13 128GB", "imei": "490154203237518", "battery_health_pct": 88,
              "screen_condition": "light_wear", "body_condition": "flawless",
              "components": {"screen": "original"}, "tests": {"camera": "pass"},
              "buyback_price_cents": 150_000}
DAY_MS = 86_400_000


async def delivered_order(server: LiveServer, anchor: str, client: Client, sale_id: str,
                          request_id: str, qty: int = 1) -> dict[str, Any]:
    """A cash-on-delivery order of ``client`` that the anchor shipped and delivered."""
    ack = await client.call("buy", {"sale": sale_id, "qty": qty, "request_id": request_id})
    assert ack["ok"], ack
    done = await client.call("checkout", {"reservation": ack["reservation"]["id"],
                                          "address": ADDRESS, "payment": "cod"})
    assert done["ok"], done
    order_id = done["order"]["id"]
    for step in ("ship", "deliver"):
        status, body = await server.request("POST", f"/api/orders/{order_id}/{step}", anchor)
        assert status == 200, body
    return dict(body["order"])


async def test_refund_no_return_follows_the_anchors_live_certification(
    server: LiveServer
) -> None:
    anchor, room_id, _, sale = await shop(server, category="essential_oil")
    token, ann = await signed_in_buyer(server, room_id, user_id="u_ann")
    inspector = server.token("inspector", "Iris", user_id="u_iris")
    status, cert = await server.request("POST", "/api/certificates", inspector, {
        "kind": "refund_no_return", "anchor_id": "u_mei", "category": "essential_oil",
        "details": {"valid_from": now_ms() - 1000, "valid_until": now_ms() + DAY_MS}})
    assert status == 201, cert
    first = await delivered_order(server, anchor, ann, sale["id"], "oil-1")
    second = await delivered_order(server, anchor, ann, sale["id"], "oil-2")

    status, body = await server.request("POST", f"/api/orders/{first['id']}/refund-no-return",
                                        token, {"reason": "opened, smells off"})
    assert status == 201, body
    assert (body["claim"]["kind"], body["claim"]["status"], body["claim"]["amount_cents"]) == (
        "refund_no_return", "refunded", 99_900)
    assert body["claim"]["pickup_at"] is None, "nothing is sent back"
    _, detail = await server.request("GET", f"/api/orders/{first['id']}", token)
    assert detail["order"]["status"] == "refunded"

    status, revoked = await server.request("POST", f"/api/certificates/{cert['id']}/revoke",
                                           inspector, {"reason": "too many refunds"})
    assert (status, revoked["valid"]) == (200, False)
    status, body = await server.request("POST", f"/api/orders/{second['id']}/refund-no-return",
                                        token, {"reason": "opened"})
    assert (status, body["error"]["code"]) == (409, "certification_required")
    _, detail = await server.request("GET", f"/api/orders/{second['id']}", token)
    assert (detail["order"]["status"], detail["order"]["claims"]) == ("delivered", [])
    # The ordinary 7-day return (with pickup) is still there for the buyer.
    status, body = await server.request("POST", f"/api/orders/{second['id']}/return", token, {})
    assert (status, body["claim"]["return_shipping_payer"]) == (201, "platform")


async def test_warranty_and_buyback_through_the_real_inspection_certificate(
    server: LiveServer
) -> None:
    anchor, room_id, product, sale = await shop(server, category="phone_used")
    token, ann = await signed_in_buyer(server, room_id, user_id="u_ann")
    status, cert = await server.request("POST", "/api/certificates",
                                        server.token("inspector", "Iris", user_id="u_iris"),
                                        {"kind": "inspection", "product_id": product["id"],
                                         "details": INSPECTION})
    assert status == 201, cert
    cert_end = cert["details"]["warranty_ends_at"]
    assert cert_end == cert["issued_at"] + 180 * DAY_MS
    order = await delivered_order(server, anchor, ann, sale["id"], "phone", qty=2)
    # The buyer's warranty: the later of delivery + 180 days and the certificate's date.
    assert order["warranty_ends_at"] == max(order["delivered_at"] + 180 * DAY_MS, cert_end)
    assert order["warranty_ends_at"] >= cert_end

    status, body = await server.request("POST", f"/api/orders/{order['id']}/warranty", token,
                                        {"reason": "the speaker crackles"})
    assert status == 201, body
    claim = body["claim"]
    assert (claim["kind"], claim["status"], claim["return_shipping_payer"]) == (
        "warranty", "pickup_scheduled", "platform")
    assert claim["order_id"] == order["id"]
    status, body = await server.request("GET", f"/api/orders/{order['id']}/buyback", token)
    assert status == 200
    quote = body["quote"]
    # Promised 3,000.00 back, but a quote never pays more than the buyer paid (2 x 999.00).
    assert (quote["amount_cents"], quote["locked_cents"], quote["current_cents"]) == (
        199_800, 300_000, 300_000)
    assert quote["valid_until"] - quote["quoted_at"] == DAY_MS
    status, body = await server.request("GET", f"/api/orders/{order['id']}/buyback",
                                        server.token("viewer", "Eve"))
    assert (status, body["error"]["code"]) == (404, "order_not_found")


async def test_analytics_over_http_after_real_orders(server: LiveServer) -> None:
    anchor, room_id, _, sale = await shop(server, category="essential_oil", per_user_limit=3)
    clients = {}
    for name in ("Ann", "Bo", "Cy"):
        clients[name] = await server.connect(server.buyer_token(name, user_id=f"u_{name}"))
        assert (await clients[name].call("join", {"room": room_id}))["ok"]

    async def order(name: str, qty: int, request_id: str) -> str:
        ack = await clients[name].call("buy", {"sale": sale["id"], "qty": qty,
                                               "request_id": request_id})
        done = await clients[name].call("checkout", {"reservation": ack["reservation"]["id"],
                                                     "address": address_of(name),
                                                     "payment": "cod"})
        assert done["ok"], done
        return str(done["order"]["id"])

    await order("Ann", 2, "a1")
    await order("Ann", 1, "a2")  # Ann comes back: a repeat buyer
    await order("Bo", 1, "b1")
    cancelled = await order("Cy", 1, "c1")
    status, _ = await server.request("POST", f"/api/orders/{cancelled}/cancel",
                                     server.buyer_token("Cy", user_id="u_Cy"), {})
    assert status == 200

    status, report = await server.request("GET", f"/api/analytics?room={room_id}", anchor)
    assert status == 200
    [room] = report["rooms"]
    assert room == {
        "scope": "room", "key": room_id, "gmv_cents": 4 * 99_900, "orders": 3, "buyers": 2,
        "average_order_value_cents": 4 * 99_900 // 3, "viewers": 3, "conversion": 2 / 3,
        "repeat_buyers": 1, "repurchase_rate": 0.5, "coupon_cost_cents": 0,
    }
    [by_anchor] = report["anchors"]
    assert (by_anchor["key"], by_anchor["gmv_cents"], by_anchor["orders"]) == (
        "u_mei", 399_600, 3)
    [brand] = report["brands"]
    assert (brand["key"], brand["buyers"], brand["repurchase_rate"]) == ("Hetian", 2, 0.5)

    status, admin_view = await server.request("GET", "/api/analytics",
                                              server.token("admin", "Root"))
    assert (status, admin_view["rooms"]) == (200, report["rooms"])
    status, other = await server.request("GET", "/api/analytics",
                                         server.token("anchor", "Lan", user_id="u_lan"))
    assert (status, other) == (200, {"rooms": [], "anchors": [], "brands": []})
    status, body = await server.request("GET", "/api/analytics?window_days=0", anchor)
    assert (status, body["error"]["code"]) == (400, "invalid_input")


async def test_a_pending_buy_does_not_hold_up_the_buyers_other_events(
        server: LiveServer) -> None:
    _, room_id, _, sale = await shop(server)
    ann = await buyer(server, room_id)
    # Redis runs no writes until the test says so: the buy waits for its batch, the clock sync
    # of the countdown (``ping``, no Redis) must not wait behind it. (The pause is long only as
    # a backstop; it ends with UNPAUSE once the ping is answered, however slow the machine.)
    redis = server.services.inventory_redis
    await redis.execute_command("CLIENT", "PAUSE", "60000", "WRITE")
    try:
        buying = asyncio.ensure_future(
            ann.call("buy", {"sale": sale["id"], "qty": 1, "request_id": "r1"}))
        await asyncio.sleep(0.05)
        pong = await ann.call("ping", {})
        assert pong["ok"]
        assert not buying.done(), "the buy waits for Redis, the ping did not"
    finally:
        await redis.execute_command("CLIENT", "UNPAUSE")
    ack = await buying
    assert ack["status"] == "reserved"


async def test_buying_over_long_polling_gets_the_same_answers(server: LiveServer) -> None:
    """Clients that cannot open a websocket take python-socketio's own path."""
    _, room_id, _, sale = await shop(server)
    polling = socketio.AsyncClient(reconnection=False)
    await polling.connect(server.url, auth={"token": server.buyer_token("Old phone")},
                          transports=["polling"])
    try:
        assert polling.transport() == "polling"
        assert (await polling.call("join", {"room": room_id}))["ok"]
        ack = await polling.call("buy", {"sale": sale["id"], "qty": 2, "request_id": "r1"})
        assert (ack["status"], ack["remaining"], ack["reservation"]["qty"]) == ("reserved", 3, 2)
        again = await polling.call("buy", {"sale": sale["id"], "qty": 2, "request_id": "r1"})
        assert again == ack
        over = await polling.call("buy", {"sale": sale["id"], "qty": 1, "request_id": "r2"})
        assert (over["ok"], over["status"]) == (False, "limit_reached")
        bad = await polling.call("buy", {"sale": sale["id"], "qty": 0, "request_id": "r3"})
        assert (bad["status"], bad["error"]["code"]) == ("invalid", "invalid")
    finally:
        # disconnect() would wait out the pending long poll (~25 s); the server notices anyway.
        await polling.eio.disconnect(abort=True)


async def test_a_buy_that_fails_unexpectedly_is_still_answered(
        server: LiveServer, monkeypatch: pytest.MonkeyPatch) -> None:
    _, room_id, _, sale = await shop(server)
    ann = await buyer(server, room_id)

    def broken(*args: Any) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr(server.services.inventory, "buy_nowait", broken)
    ack = await ann.call("buy", {"sale": sale["id"], "qty": 1, "request_id": "r1"},
                         timeout=PATIENCE_S)
    assert ack["ok"] is False
    assert ack["error"]["code"] == "internal_error"
    _, fresh = await server.request("GET", f"/api/sales/{sale['id']}")
    assert fresh["held"] == 0
