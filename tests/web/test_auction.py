"""A live auction in a real browser: started in the studio, bid on from a phone with the next
valid amount filled in, outbid by another viewer, won, and checked out at the winning bid."""

from __future__ import annotations

from playwright.async_api import expect

from tests.server_harness import LiveServer

from .conftest import DESKTOP, PHONE, Pages
from .helpers import open_room, sign_in_with_phone


async def test_an_auction_started_in_the_studio_is_won_on_a_phone_and_checked_out(
        server: LiveServer, pages: Pages) -> None:
    stage = await open_room(server)
    room_id = stage.room["id"]
    vase = stage.products[0]
    viewer = await pages.open(f"{server.url}/r/{room_id}", PHONE)
    await expect(viewer.locator("#no-sale")).to_be_visible()
    await expect(viewer.locator("#auction")).to_be_hidden()
    studio = await pages.open(f"{server.url}/studio/{room_id}#token={stage.anchor_token}", DESKTOP)
    await expect(studio.locator("#room-title")).to_have_text("Jade and phones, live")

    await studio.select_option("#auction-product", vase["id"])
    await studio.fill("#auction-start", "100.00")
    await studio.fill("#auction-duration", "20")
    await studio.fill("#auction-extend", "5")
    await studio.click("#auction-form button[type=submit]")
    await expect(studio.locator("#auction-result")).to_have_text("Auction started.")

    # The viewer sees it at once, the starting bid filled in.
    await expect(viewer.locator("#auction-title")).to_have_text("Hetian jade bangle")
    await expect(viewer.locator("#auction-price")).to_have_text("Starts at ¥100.00")
    await expect(viewer.locator("#bid-amount")).to_have_value("100.00")
    # A guest taps Bid: a phone sign-in first (a bid binds an account), then the bid.
    await sign_in_with_phone(viewer, "+86 138 0013 8000", via="#bid")
    await expect(viewer.locator("#bid-result")).to_have_text("You are leading.")
    await expect(studio.locator("#auction-leader")).not_to_have_text("—")
    await expect(studio.locator("#auction-price")).to_have_text("¥100.00")
    # The next valid bid (the server's increment) is filled in for the next tap.
    await expect(viewer.locator("#bid-amount")).to_have_value("102.50")

    # Someone else outbids; the phone's field follows the new minimum.
    rival_token = server.buyer_token("Rival", user_id="u_rival")
    rival = await server.connect(rival_token)
    assert (await rival.call("join", {"room": room_id}))["ok"]
    outbid = await rival.call("bid", {"auction": (await studio_auction(server, room_id)),
                                      "amount_cents": 12_000, "request_id": "r1"})
    assert outbid["status"] == "leading", outbid
    await expect(viewer.locator("#auction-leader")).to_contain_text("Leading: Rival")
    await expect(viewer.locator("#bid-amount")).to_have_value("122.50")
    await viewer.fill("#bid-amount", "150")
    await viewer.click("#bid")
    await expect(viewer.locator("#bid-result")).to_have_text("You are leading.")

    # The anchor stops it: the phone's bid wins, and the lot goes to the same checkout.
    await studio.click("#stop-auction")
    await expect(studio.locator("#auction-result")).to_have_text("Auction stopped.")
    await expect(viewer.locator("#auction-state")).to_have_text("Auction ended")
    await expect(viewer.locator("#checkout")).to_be_visible()
    await expect(viewer.locator("#checkout-summary")).to_contain_text("¥150.00")
    await viewer.fill("#ship-name", "Wang Fang")
    await viewer.fill("#ship-phone", "13800138000")
    await viewer.fill("#ship-city", "Linyi")
    await viewer.fill("#ship-line1", "12 Jade Street")
    await viewer.click("#place-order")
    await expect(viewer.locator("#buy-result")).to_contain_text(
        "Order placed: pay ¥150.00 in cash when it arrives")
    await pages.shot(viewer, "auction-won-phone")


async def studio_auction(server: LiveServer, room_id: str) -> str:
    _, listed = await server.request("GET", f"/api/rooms/{room_id}/auctions")
    auction_id: str = listed["auctions"][0]["id"]
    return auction_id
