"""Every order object a client receives carries ``actions``, worked out by the server for whoever
receives it: the checkout answer, ``GET /api/orders``, ``GET /api/orders/{id}``, an action's
answer and the ``order`` push. Through the real server and real Socket.IO clients."""

from __future__ import annotations

import pytest

from tests.server_harness import LiveServer
from tests.test_commerce_edge import ADDRESS, shop, signed_in_buyer

DAY_MS = 86_400_000


def action_names(order: dict[str, object]) -> list[str]:
    actions = order["actions"]
    assert isinstance(actions, list)
    return [action["name"] for action in actions]


async def test_the_buyer_and_the_seller_each_get_their_actions(
    server: LiveServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    anchor, room_id, _, sale = await shop(server, category="bags")
    token, ann = await signed_in_buyer(server, room_id, user_id="u_ann")
    admin = server.token("admin", "Ada", user_id="u_ada")
    ack = await ann.call("buy", {"sale": sale["id"], "qty": 1, "request_id": "a1"})

    done = await ann.call("checkout", {"reservation": ack["reservation"]["id"],
                                       "address": ADDRESS, "payment": "cod"})
    order = done["order"]
    assert order["actions"] == [{"name": "cancel", "until": None}]
    _, mine = await server.request("GET", "/api/orders", token)
    assert mine["orders"] == [order]
    _, seen = await server.request("GET", f"/api/orders/{order['id']}", token)
    assert action_names(seen["order"]) == ["cancel"]
    for seller in (anchor, admin):
        _, seen = await server.request("GET", f"/api/orders/{order['id']}", seller)
        assert action_names(seen["order"]) == ["ship", "cancel"]

    status, shipped = await server.request("POST", f"/api/orders/{order['id']}/ship", anchor)
    assert status == 200, shipped
    assert shipped["order"]["actions"] == [{"name": "deliver", "until": None}]
    pushed = await ann.wait_for("order", lambda o: o["status"] == "shipped")
    assert pushed["actions"] == [], "the buyer's push carries the buyer's actions"

    _, delivered = await server.request("POST", f"/api/orders/{order['id']}/deliver", anchor)
    assert delivered["order"]["actions"] == []
    pushed = await ann.wait_for("order", lambda o: o["status"] == "delivered")
    when = pushed["delivered_at"]
    assert pushed["actions"] == [
        {"name": "complete", "until": None},
        {"name": "return", "until": when + 7 * DAY_MS},
        {"name": "counterfeit", "until": when + 90 * DAY_MS,
         "compensation_cents": 10 * order["total_cents"]},
    ]

    # A week and a millisecond later (the order service's clock is moved, not waited for).
    monkeypatch.setattr(server.services.orders, "now_ms", lambda: when + 7 * DAY_MS + 1)
    _, mine = await server.request("GET", "/api/orders", token)
    assert action_names(mine["orders"][0]) == ["complete", "counterfeit"]
    status, completed = await server.request("POST", f"/api/orders/{order['id']}/complete",
                                             token)
    assert status == 200, completed
    assert action_names(completed["order"]) == ["counterfeit"]


async def test_an_online_checkout_answer_offers_payment_until_its_deadline(
    server: LiveServer
) -> None:
    _, room_id, _, sale = await shop(server, category="bags")
    token, ann = await signed_in_buyer(server, room_id, user_id="u_ann")
    ack = await ann.call("buy", {"sale": sale["id"], "qty": 1, "request_id": "o1"})
    status, placed = await server.request("POST", "/api/orders", token, {
        "reservation": ack["reservation"]["id"], "address": ADDRESS,
        "payment": {"method": "online", "card": "4000000000000002"}})
    assert status == 201, placed
    order = placed["order"]
    # While the charge waits for the provider's answer only "cancel" is offered; the answer
    # may already be in by the time the checkout answer is written.
    assert action_names(order)[-1:] == ["cancel"]
    declined = await ann.wait_for("order", lambda o: o["id"] == order["id"])
    deadline = order["created_at"] + server.services.orders.payment_timeout_ms
    assert declined["actions"] == [{"name": "pay", "until": deadline - 1},
                                   {"name": "cancel", "until": None}]
