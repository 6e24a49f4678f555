"""After-sales policy through the real server: what a buyer sees when fake one, pay ten and the
buyback offer meet their limits, and that a refused request changed nothing."""

from __future__ import annotations

from typing import Any

import pytest

from liveroom.clock import now_ms
from tests.server_harness import LiveServer
from tests.test_commerce_edge import INSPECTION, delivered_order, shop, signed_in_buyer

DAY_MS = 86_400_000


async def detail(server: LiveServer, token: str, order_id: str) -> dict[str, Any]:
    status, body = await server.request("GET", f"/api/orders/{order_id}", token)
    assert status == 200, body
    return dict(body["order"])


async def test_a_refunded_order_is_not_paid_ten_times_as_well(server: LiveServer) -> None:
    """Refund-no-return, then a counterfeit claim upheld, paid eleven times the price."""
    anchor, room_id, _, sale = await shop(server, category="essential_oil")
    token, ann = await signed_in_buyer(server, room_id, user_id="u_ann")
    status, cert = await server.request("POST", "/api/certificates", server.token("admin"), {
        "kind": "refund_no_return", "anchor_id": "u_mei", "category": "essential_oil",
        "details": {"valid_from": now_ms() - 1000, "valid_until": now_ms() + DAY_MS}})
    assert status == 201, cert
    order = await delivered_order(server, anchor, ann, sale["id"], "oil")
    status, body = await server.request("POST", f"/api/orders/{order['id']}/refund-no-return",
                                        token, {"reason": "opened"})
    assert status == 201, body
    before = await detail(server, token, order["id"])

    status, body = await server.request("POST", f"/api/orders/{order['id']}/counterfeit", token,
                                        {"reason": "and it was fake"})
    assert (status, body["error"]["code"]) == (409, "already_refunded")
    after = await detail(server, token, order["id"])
    assert after == before
    assert [c["kind"] for c in after["claims"]] == ["refund_no_return"]
    assert after["payouts"] == []


async def test_a_counterfeit_claim_blocks_a_return_until_decided(server: LiveServer) -> None:
    anchor, room_id, _, sale = await shop(server)
    token, ann = await signed_in_buyer(server, room_id, user_id="u_ann")
    await server.request("POST", "/api/certificates", server.token("inspector"), {
        "kind": "vault", "product_id": sale["product"], "details": {
            "material": "jade", "weight_mg": 1000, "grade": "A", "appraiser": "Vault 1",
            "photo_sha256": ["cd" * 32]}})
    order = await delivered_order(server, anchor, ann, sale["id"], "jade")
    status, body = await server.request("POST", f"/api/orders/{order['id']}/counterfeit", token,
                                        {"reason": "glass"})
    assert status == 201, body
    before = await detail(server, token, order["id"])
    status, body = await server.request("POST", f"/api/orders/{order['id']}/return", token, {})
    assert (status, body["error"]["code"]) == (409, "counterfeit_claimed")
    assert await detail(server, token, order["id"]) == before


async def test_counterfeit_claims_close_90_days_after_delivery(
    server: LiveServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    anchor, room_id, _, sale = await shop(server)
    token, ann = await signed_in_buyer(server, room_id, user_id="u_ann")
    await server.request("POST", "/api/certificates", server.token("inspector"), {
        "kind": "vault", "product_id": sale["product"], "details": {
            "material": "jade", "weight_mg": 1000, "grade": "A", "appraiser": "Vault 1",
            "photo_sha256": ["cd" * 32]}})
    order = await delivered_order(server, anchor, ann, sale["id"], "jade")
    before = await detail(server, token, order["id"])

    # The order service's clock is moved, not waited for.
    closes = order["delivered_at"] + 90 * DAY_MS
    assert {"name": "counterfeit", "until": closes,
            "compensation_cents": 10 * order["total_cents"]} in before["actions"]
    monkeypatch.setattr(server.services.orders, "now_ms", lambda: closes + 1)
    status, body = await server.request("POST", f"/api/orders/{order['id']}/counterfeit", token,
                                        {"reason": "the jade is glass"})
    assert (status, body["error"]["code"]) == (409, "claim_window_closed")
    after = await detail(server, token, order["id"])
    # The order is as it was; only what the moved clock still allows changed.
    assert [a["name"] for a in after.pop("actions")] == ["complete"]
    assert after == {key: value for key, value in before.items() if key != "actions"}

    monkeypatch.setattr(server.services.orders, "now_ms", lambda: closes)
    status, body = await server.request("POST", f"/api/orders/{order['id']}/counterfeit", token,
                                        {"reason": "the jade is glass"})
    assert (status, body["claim"]["status"]) == (201, "open")


async def test_the_buyback_offer_is_never_above_the_price_paid(server: LiveServer) -> None:
    """A phone sold at 10.00 whose inspection report promises 1,800.00 back."""
    anchor, room_id, product, sale = await shop(server, category="phone_used", price_cents=1_000)
    token, ann = await signed_in_buyer(server, room_id, user_id="u_ann")
    status, cert = await server.request("POST", "/api/certificates", server.token("inspector"), {
        "kind": "inspection", "product_id": product["id"],
        "details": {**INSPECTION, "buyback_price_cents": 180_000}})
    assert status == 201, cert
    order = await delivered_order(server, anchor, ann, sale["id"], "phone")
    status, body = await server.request("GET", f"/api/orders/{order['id']}/buyback", token)
    assert status == 200, body
    quote = body["quote"]
    assert (quote["amount_cents"], quote["paid_cents"]) == (1_000, 1_000)
    assert quote["locked_cents"] == quote["current_cents"] == 180_000
