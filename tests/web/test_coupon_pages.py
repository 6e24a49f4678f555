"""A coupon drop in a real browser: dropped with the studio's button, grabbed on a phone (a
guest signs in with a phone first), shown in the wallet, and applied at checkout: the order
shows the discount and the wallet the coupon used."""

from __future__ import annotations

from playwright.async_api import expect

from tests.server_harness import LiveServer

from .conftest import DESKTOP, PHONE, Pages
from .helpers import open_room, sign_in_with_phone, start_sale


async def test_a_coupon_grabbed_on_a_phone_is_applied_at_checkout(server: LiveServer,
                                                                 pages: Pages) -> None:
    stage = await open_room(server)
    room_id = stage.room["id"]
    bangle = stage.products[0]
    studio = await pages.open(f"{server.url}/studio/{room_id}#token={stage.anchor_token}",
                              DESKTOP)
    viewer = await pages.open(f"{server.url}/r/{room_id}", PHONE)
    await expect(viewer.locator("#coupon")).to_be_hidden()

    await studio.fill("#coupon-count", "2")
    await studio.fill("#coupon-off", "50.00")
    await studio.fill("#coupon-min-spend", "100.00")
    await studio.fill("#coupon-valid", "30")
    await studio.click("#coupon-form button[type=submit]")
    await expect(studio.locator("#coupon-drop-result")).to_contain_text("Dropped 2 coupons")
    await expect(studio.locator("#coupon-drop-left")).to_have_text("2 of 2 left")

    # The viewer's card appears with the drop (the `coupon` push); a guest signs in to grab.
    await expect(viewer.locator("#coupon")).to_be_visible()
    await expect(viewer.locator("#coupon-terms")).to_have_text(
        "¥50.00 off orders of ¥100.00 or more")
    await sign_in_with_phone(viewer, "+86 138 0013 8000", via="#coupon-grab")
    await expect(viewer.locator("#coupon-result")).to_contain_text("Coupon grabbed")
    await expect(viewer.locator("#coupon-grab")).to_have_text("Grabbed")
    await expect(viewer.locator("#wallet-list li")).to_have_count(1)
    await expect(viewer.locator("#wallet-list li")).to_contain_text("valid")
    await expect(studio.locator("#coupon-drop-left")).to_have_text("1 of 2 left")
    await pages.shot(viewer, "coupon-grabbed-phone")

    await start_sale(server, stage, bangle, price_cents=99_900)
    await expect(viewer.locator("#buy")).to_be_enabled(timeout=8000)
    await viewer.click("#buy")
    await expect(viewer.locator("#checkout")).to_be_visible()
    await expect(viewer.locator("#checkout-coupon")).to_contain_text("coupon for this room")
    await viewer.fill("#ship-name", "Wang Fang")
    await viewer.fill("#ship-phone", "13800138000")
    await viewer.fill("#ship-city", "Linyi")
    await viewer.fill("#ship-line1", "12 Jade Street")
    await viewer.click("#place-order")
    await expect(viewer.locator("#buy-result")).to_contain_text(
        "Order placed: pay ¥949.00 in cash when it arrives. "
        "A coupon took ¥50.00 off ¥999.00.")
    await expect(viewer.locator("#wallet-list li")).to_contain_text("used")
    await pages.shot(viewer, "coupon-used-phone")
    pages.assert_clean()
