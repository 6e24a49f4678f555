"""After-sales on the viewer page ("My orders"): the buttons offered are the order's `actions`
as the server lists them (orders/_actions.py decides them; the page keeps no rule of its own),
with their deadlines, and each request shows its result to the buyer.

Orders are set up by REST and Socket.IO (buy, checkout, ship, deliver): only the after-sales
steps are clicked. ``buyer_order_actions`` lets one test make up the server's list.
"""

from __future__ import annotations

import pytest
from playwright.async_api import Locator, Page, expect

from liveroom.clock import now_ms
from orders import DAY_MS
from tests.server_harness import LiveServer

from .conftest import PHONE, Pages
from .helpers import (
    accept_link_sign_in,
    advance,
    buyer_order_actions,
    no_horizontal_scroll,
    open_room,
    place_order,
    start_sale,
)

INSPECTION_DETAILS = {
    "model": "iPhone 13 128GB", "imei": "490154203237518", "battery_health_pct": 88,
    "screen_condition": "light_wear", "body_condition": "flawless",
    "components": {"screen": "original", "battery": "original"},
    "tests": {"camera": "pass", "face_id": "pass"}, "buyback_price_cents": 150_000,
}


def order_item(page: Page, order: dict[str, object]) -> Locator:
    return page.locator(f'#orders li.order[data-order="{order["id"]}"]')


async def offered(page: Page, order: dict[str, object]) -> list[str]:
    actions: list[str] = await order_item(page, order).locator("button[data-action]").evaluate_all(
        "buttons => buttons.map(b => b.dataset.action)")
    return actions


async def test_after_sales_buttons_follow_the_rules_and_show_results(
        server: LiveServer, pages: Pages) -> None:
    stage = await open_room(server, title="Oils and phones", products=(
        ("Lavender essential oil 30 ml", "essential_oil", 8_900),
        ("iPhone 13 128 GB, second-hand", "phone_used", 249_900)))
    oil, phone = stage.products
    anchor_id = stage.room["anchor"]["id"]
    inspector = server.token("inspector", "Inspection box #7")
    status, body = await server.request("POST", "/api/certificates", inspector, json={
        "kind": "inspection", "product_id": phone["id"], "details": INSPECTION_DETAILS})
    assert status == 201, body
    oil_sale = await start_sale(server, stage, oil, per_user_limit=3)
    phone_sale = await start_sale(server, stage, phone)

    buyer_token = server.buyer_token("Wang Fang")
    buyer = await server.connect(buyer_token)
    refund = await place_order(server, buyer, buyer_token, oil_sale, "oil-1")
    kept = await place_order(server, buyer, buyer_token, oil_sale, "oil-2")
    shipped = await place_order(server, buyer, buyer_token, oil_sale, "oil-3")
    handset = await place_order(server, buyer, buyer_token, phone_sale, "phone-1")
    for order in (refund, kept, handset):
        await advance(server, stage.anchor_token, order["id"], "ship", "deliver")
    await advance(server, buyer_token, kept["id"], "complete")
    await advance(server, stage.anchor_token, shipped["id"], "ship")

    # Refused on purpose below: refund-no-return before the certification, a claim twice.
    pages.allow_refusal(409)
    viewer = await pages.open(f"{server.url}/r/{stage.room['id']}#token={buyer_token}", PHONE)
    await accept_link_sign_in(viewer, "Wang Fang")
    await viewer.click("#orders-card summary")
    await expect(viewer.locator("#orders li.order")).to_have_count(4)

    # What is offered in each status, as the server lists it: on its way, nothing; delivered
    # or completed, the 7-day return and the counterfeit claim; a phone, the warranty. The
    # seller is not certified for refunds without return, so that is not offered.
    await expect(order_item(viewer, shipped)).to_contain_text("Shipped")
    assert await offered(viewer, shipped) == []
    await expect(order_item(viewer, kept)).to_contain_text("Completed")
    assert await offered(viewer, kept) == ["return", "counterfeit"]
    assert await offered(viewer, refund) == ["return", "counterfeit"]
    assert await offered(viewer, handset) == ["return", "counterfeit", "warranty"]
    await pages.shot(viewer, "orders-phone")

    # Certified by an inspector: after a refresh the oils offer a refund without return, which
    # refunds at once.
    now = now_ms()
    status, body = await server.request("POST", "/api/certificates", inspector, json={
        "kind": "refund_no_return", "anchor_id": anchor_id, "category": "essential_oil",
        "details": {"valid_from": now - 1000, "valid_until": now + 30 * 86_400_000}})
    assert status == 201, body
    await viewer.click("#orders-refresh")
    await expect(order_item(viewer, refund).get_by_role(
        "button", name="Refund without return")).to_be_visible()
    assert await offered(viewer, refund) == ["return", "refund_no_return", "counterfeit"]
    item = order_item(viewer, refund)
    await item.get_by_role("button", name="Refund without return").click()
    await expect(item.locator(".result")).to_have_text(
        "Refunded ¥89.00. Keep the item: nothing to send back.")
    await expect(item).to_contain_text("Refunded ·")
    # Refunded: nothing more (a counterfeit claim would pay ten times on top of the refund).
    assert await offered(viewer, refund) == []

    # The 7-day return of a completed order: door pickup booked, the platform pays shipping.
    item = order_item(viewer, kept)
    await item.get_by_role("button", name="Return (7 days, free pickup)").click()
    await expect(item.locator(".result")).to_contain_text("Return booked: free door pickup on")
    await expect(item.locator(".result")).to_contain_text(
        "¥89.00 comes back to you when the seller receives it")
    await expect(item).to_contain_text("Return requested")
    assert await offered(viewer, kept) == []

    # Warranty and counterfeit claims need a description, typed in the order itself.
    item = order_item(viewer, handset)
    await item.get_by_role("button", name="Warranty claim").click()
    await item.get_by_label("Describe the problem").fill("The screen flickers when charging")
    await item.get_by_role("button", name="Send").click()
    await expect(item.locator(".result")).to_contain_text(
        "Warranty repair booked: free door pickup")
    await item.get_by_role("button", name="Report a counterfeit (fake one, pay ten)").click()
    await item.get_by_label("Describe the problem").fill("The camera module is not original")
    assert await no_horizontal_scroll(viewer)
    await pages.shot(viewer, "counterfeit-form-phone")
    await item.get_by_role("button", name="Send").click()
    await expect(item.locator(".result")).to_have_text(
        "Counterfeit claim filed. If the platform finds the item fake, you receive "
        "¥24,990.00 (ten times the price).")
    await expect(item).to_contain_text("Delivered")  # claims keep the status
    # One claim per order: it is not offered again.
    await expect(item.get_by_role(
        "button", name="Report a counterfeit (fake one, pay ten)")).to_have_count(0)
    assert "counterfeit" not in await offered(viewer, handset)

    # What the server recorded is what the page said.
    claims = {}
    for order in (refund, kept, handset):
        status, body = await server.request("GET", f"/api/orders/{order['id']}", buyer_token)
        assert status == 200
        claims[order["id"]] = sorted(c["kind"] for c in body["order"]["claims"])
        if order is refund:
            assert body["order"]["status"] == "refunded"
        if order is kept:
            assert body["order"]["status"] == "return_requested"
    assert claims == {refund["id"]: ["refund_no_return"], kept["id"]: ["return"],
                      handset["id"]: ["counterfeit", "warranty"]}
    await pages.shot(viewer, "after-sales-phone")
    pages.assert_clean()


async def test_a_warranty_claim_refused_at_the_deadline_names_the_orders_own_date(
        server: LiveServer, pages: Pages, monkeypatch: pytest.MonkeyPatch) -> None:
    """The page was open while the warranty ran out: the refusal gives the order's own end
    (the later of delivery + 180 days and the inspection certificate's), not "180 days"."""
    stage = await open_room(server, title="Phones", products=(
        ("iPhone 13 128 GB, second-hand", "phone_used", 249_900),))
    [phone] = stage.products
    inspector = server.token("inspector", "Inspection box #7")
    status, body = await server.request("POST", "/api/certificates", inspector, json={
        "kind": "inspection", "product_id": phone["id"], "details": INSPECTION_DETAILS})
    assert status == 201, body
    sale = await start_sale(server, stage, phone)
    buyer_token = server.buyer_token("Wang Fang")
    buyer = await server.connect(buyer_token)
    handset = await place_order(server, buyer, buyer_token, sale, "phone-1")
    await advance(server, stage.anchor_token, handset["id"], "ship", "deliver")
    status, body = await server.request("GET", f"/api/orders/{handset['id']}", buyer_token)
    assert status == 200
    ends_at = body["order"]["warranty_ends_at"]
    assert ends_at > now_ms() + 179 * DAY_MS

    pages.allow_refusal(409)
    viewer = await pages.open(f"{server.url}/r/{stage.room['id']}#token={buyer_token}", PHONE)
    await accept_link_sign_in(viewer, "Wang Fang")
    await viewer.click("#orders-card summary")
    item = order_item(viewer, handset)
    shown = await viewer.evaluate("ms => new Date(ms).toLocaleString()", ends_at)
    await expect(item).to_contain_text(f"Warranty until {shown}")
    # The deadline passes while the page is open (the order service's clock runs on).
    monkeypatch.setattr(server.services.orders, "now_ms", lambda: ends_at + 1)
    await item.get_by_role("button", name="Warranty claim").click()
    await item.get_by_label("Describe the problem").fill("The screen flickers when charging")
    await item.get_by_role("button", name="Send").click()
    await expect(item.locator(".result")).to_have_text(f"The warranty ended on {shown}.")
    status, body = await server.request("GET", f"/api/orders/{handset['id']}", buyer_token)
    assert body["order"]["claims"] == []
    pages.assert_clean()


async def test_only_the_actions_the_server_lists_are_offered_until_its_deadlines(
        server: LiveServer, pages: Pages) -> None:
    """The page decides nothing itself: an after-sales request the order's status would allow
    but the server does not list is not offered, actions this page does not present are left
    out, and every deadline (and the days left on the return button) is the server's
    ``until``."""
    stage = await open_room(server, title="Oils", products=(
        ("Lavender essential oil 30 ml", "essential_oil", 8_900),))
    [oil] = stage.products
    sale = await start_sale(server, stage, oil)
    buyer_token = server.buyer_token("Wang Fang")
    buyer = await server.connect(buyer_token)
    order = await place_order(server, buyer, buyer_token, sale, "oil-1")
    await advance(server, stage.anchor_token, order["id"], "ship", "deliver")
    # Deadlines of the server's choosing: not the windows the orders package has today.
    return_until = now_ms() + 3 * DAY_MS - 3_600_000
    refund_until = now_ms() + 2 * DAY_MS - 3_600_000

    def listed(orders: list[dict[str, object]]) -> None:
        [delivered] = orders
        delivered["actions"] = [
            {"name": "return", "until": return_until},
            {"name": "refund_no_return", "until": refund_until},
            {"name": "complete", "until": None},
            {"name": "buyback", "until": None},
        ]  # no counterfeit claim, though a delivered order allows one today

    viewer = await pages.open(f"{server.url}/r/{stage.room['id']}#token={buyer_token}", PHONE,
                              setup=buyer_order_actions(server, listed))
    await accept_link_sign_in(viewer, "Wang Fang")
    await viewer.click("#orders-card summary")
    item = order_item(viewer, order)
    await expect(item).to_contain_text("Delivered")
    assert await offered(viewer, order) == ["return", "refund_no_return"]
    await expect(item.get_by_role("button", name="Return (3 days, free pickup)")).to_be_visible()
    deadlines = item.locator(".deadlines li")
    shown = [await viewer.evaluate("ms => new Date(ms).toLocaleString()", ms)
             for ms in (return_until, refund_until)]
    await expect(deadlines).to_have_text([f"Return until {shown[0]}",
                                          f"Refund without return until {shown[1]}"])
    assert await no_horizontal_scroll(viewer)
    await pages.shot(viewer, "actions-from-the-server-phone")
    pages.assert_clean()
