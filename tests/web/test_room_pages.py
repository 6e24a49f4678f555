"""Landing, viewer room and studio in a real browser against the real server."""

from __future__ import annotations

from playwright.async_api import expect

from tests.server_harness import LiveServer

from .conftest import DESKTOP, PHONE, Pages
from .helpers import no_horizontal_scroll, open_room

HOSTILE = '<img src=x onerror="document.title=\'pwned\'"><b>bold</b>'


async def test_first_visitor_finds_a_room_and_chats(server: LiveServer, pages: Pages) -> None:
    stage = await open_room(server)
    anchor = await server.connect(stage.anchor_token)
    assert (await anchor.call("join", {"room": stage.room["id"]}))["ok"]

    landing = await pages.open(server.url + "/", PHONE)
    card = landing.locator(f'a[data-room="{stage.room["id"]}"]')
    await expect(card).to_contain_text("Jade and phones, live")
    await expect(card).to_contain_text("with Lin the Anchor")
    await expect(card).to_contain_text("Now selling: Hetian jade bangle · ¥1,299.00")
    await expect(card.locator(".viewers")).to_have_text("1 watching")
    assert await no_horizontal_scroll(landing)
    await pages.shot(landing, "landing-phone")

    await card.click()
    room = landing
    await expect(room.locator("#room-title")).to_have_text("Jade and phones, live")
    await expect(room.locator("#product-title")).to_have_text("Hetian jade bangle")
    await expect(room.locator("#product-price")).to_have_text("¥1,299.00")
    await expect(room.locator("#badges")).to_contain_text("Fake one, pay ten")
    await expect(room.locator("#viewer-count")).to_have_text("2")  # the anchor and this guest
    token = await room.evaluate("localStorage.getItem('liveroom.token.viewer')")
    assert token, "a first-time visitor gets a guest session by itself"

    await room.fill("#chat-input", HOSTILE)
    await room.press("#chat-input", "Enter")
    line = room.locator("#chat-log .chat-line").last
    await expect(line.locator(".text")).to_have_text(HOSTILE)  # shown as text, not markup
    assert await room.locator("#chat-log img, #chat-log b").count() == 0
    heard = await anchor.wait_for("chat", lambda m: m["text"] == HOSTILE)
    assert heard["user"]["name"].startswith("Guest ")
    assert await room.title() != "pwned"

    await anchor.call("chat", {"room": stage.room["id"], "text": "Welcome! 欢迎"})
    await expect(room.locator("#chat-log .chat-line").last).to_contain_text("Welcome! 欢迎")

    # A guest session survives a reload: same person, no new session.
    await room.reload()
    await expect(room.locator("#product-title")).to_have_text("Hetian jade bangle")
    assert await room.evaluate("localStorage.getItem('liveroom.token.viewer')") == token
    assert await no_horizontal_scroll(room)
    await pages.shot(room, "room-phone")
    pages.assert_clean()


async def test_studio_pins_and_moderates_live(server: LiveServer, pages: Pages) -> None:
    stage = await open_room(server)
    room_id = stage.room["id"]
    viewer = await pages.open(f"{server.url}/r/{room_id}", PHONE)
    await expect(viewer.locator("#product-title")).to_have_text("Hetian jade bangle")

    studio = await pages.open(f"{server.url}/studio/{room_id}#token={stage.anchor_token}", DESKTOP)
    await expect(studio.locator("#room-title")).to_have_text("Jade and phones, live")
    assert "token=" not in studio.url, "the token leaves the address bar"
    phone = studio.locator(f'#products li[data-product="{stage.products[1]["id"]}"]')
    await expect(phone).to_contain_text("iPhone 13 128 GB, second-hand")
    await expect(studio.locator("#viewer-count")).to_have_text("2")

    await phone.get_by_role("button", name="Pin").click()
    await expect(phone.get_by_role("button")).to_have_text("Pinned")
    # The viewer's card follows without a reload.
    await expect(viewer.locator("#product-title")).to_have_text("iPhone 13 128 GB, second-hand")
    await expect(viewer.locator("#product-price")).to_have_text("¥2,499.00")

    await viewer.fill("#chat-input", "is the battery original?")
    await viewer.press("#chat-input", "Enter")
    line = studio.locator("#chat-log .chat-line", has_text="is the battery original?")
    await expect(line).to_be_visible()
    await line.locator('button[data-act="mute"]').click()
    await expect(viewer.locator("#banner")).to_contain_text("The host muted you")
    await expect(studio.locator("#chat-log .system").last).to_contain_text("was muted")

    await viewer.fill("#chat-input", "hello again")
    await viewer.press("#chat-input", "Enter")
    await expect(viewer.locator("#banner")).to_contain_text("muted")
    await expect(viewer.locator("#chat-input")).to_have_value("hello again")  # not lost

    # The studio remembers its token: a plain reload signs in again.
    await studio.reload()
    await expect(studio.locator("#room-title")).to_have_text("Jade and phones, live")
    await pages.shot(studio, "studio-desktop")
    await pages.shot(viewer, "viewer-muted-phone")
    pages.assert_clean()


async def test_studio_without_token_asks_for_one(server: LiveServer, pages: Pages) -> None:
    stage = await open_room(server)
    studio = await pages.open(f"{server.url}/studio/{stage.room['id']}", PHONE)
    await expect(studio.locator("#signin")).to_be_visible()
    viewer_token = server.token("viewer", "Not An Anchor")
    await studio.fill("#signin-token", viewer_token)
    await studio.click("#signin-form button")
    await expect(studio.locator("#banner")).to_contain_text("needs an anchor token")
    await studio.fill("#signin-token", stage.anchor_token)
    await studio.click("#signin-form button")
    await expect(studio.locator("#studio")).to_be_visible()
    assert await no_horizontal_scroll(studio)
    await pages.shot(studio, "studio-phone")
    pages.assert_clean()


async def test_studio_bans_and_sets_slow_mode(server: LiveServer, pages: Pages) -> None:
    stage = await open_room(server)
    room_id = stage.room["id"]
    studio = await pages.open(f"{server.url}/studio/{room_id}#token={stage.anchor_token}", DESKTOP)
    await expect(studio.locator("#room-title")).to_have_text("Jade and phones, live")
    # The live figures load at once, before any sale (nothing sold yet: zeros, not blanks).
    await expect(studio.locator("#fig-gmv")).to_have_text("¥0.00")
    await expect(studio.locator("#fig-orders")).to_have_text("0")
    await expect(studio.locator("#fig-aov")).to_have_text("¥0.00")
    fan = await pages.open(f"{server.url}/r/{room_id}", PHONE)
    troll = await pages.open(f"{server.url}/r/{room_id}", PHONE)
    await expect(studio.locator("#viewer-count")).to_have_text("3")

    # Slow mode from the studio: viewers hear of it and may chat once per interval.
    await studio.select_option("#slow-mode", "30")
    await expect(fan.locator("#chat-log .system").last).to_have_text(
        "Slow mode: one message every 30 s.")
    await expect(studio.locator("#chat-log .system").last).to_have_text(
        "Slow mode: one message every 30 s.")
    await fan.fill("#chat-input", "first question")
    await fan.press("#chat-input", "Enter")
    await expect(studio.locator("#chat-log .chat-line", has_text="first question")).to_be_visible()
    await fan.fill("#chat-input", "second question")
    await fan.press("#chat-input", "Enter")
    await expect(fan.locator("#banner")).to_contain_text("Slow mode is on: you can send again in")
    await expect(fan.locator("#chat-input")).to_have_value("second question")  # kept to resend
    await pages.shot(fan, "slow-mode-phone")
    # The host is exempt, and a next message typed while the last one is on its way is not
    # wiped when the answer comes back (both typed in one go, before any answer can arrive).
    await studio.evaluate("""() => {
        const input = document.querySelector('#chat-input');
        input.value = 'welcome everyone';
        document.querySelector('#chat-form').requestSubmit();
        input.value = 'the bangle is next'; }""")
    await expect(fan.locator("#chat-log .chat-line").last).to_contain_text("welcome everyone")
    await expect(studio.locator("#chat-log .chat-line").last).to_contain_text("welcome everyone")
    await expect(studio.locator("#chat-input")).to_have_value("the bangle is next")
    await studio.press("#chat-input", "Enter")
    await expect(fan.locator("#chat-log .chat-line").last).to_contain_text("the bangle is next")

    # Ban from the studio: the viewer is out at once and stays out after a reload.
    await troll.fill("#chat-input", "cheap fakes at my shop")
    await troll.press("#chat-input", "Enter")
    line = studio.locator("#chat-log .chat-line", has_text="cheap fakes at my shop")
    await line.locator('button[data-act="ban"]').click()
    await expect(troll.locator("#banner")).to_contain_text("The host removed you from this room")
    await expect(troll.locator("#chat-input")).to_be_disabled()
    await expect(studio.locator("#chat-log .system").last).to_contain_text(
        "was removed from the room")
    await expect(studio.locator("#viewer-count")).to_have_text("2")
    await troll.reload()
    await expect(troll.locator("#banner")).to_contain_text("The host removed you from this room")
    await expect(troll.locator("#chat-input")).to_be_disabled()
    await pages.shot(troll, "banned-phone")

    # Slow mode off: the fan's kept message goes through at once.
    await studio.select_option("#slow-mode", "0")
    await expect(fan.locator("#chat-log .system").last).to_have_text("Slow mode is off.")
    await fan.press("#chat-input", "Enter")
    await expect(studio.locator("#chat-log .chat-line", has_text="second question")).to_be_visible()
    assert await studio.locator("#chat-log .chat-line", has_text="cheap fakes").count() == 1
    await pages.shot(studio, "studio-moderation-desktop")
    pages.assert_clean()
