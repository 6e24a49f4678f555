"""Who a viewer is, in a real browser: a link cannot make a browser someone else without the
person agreeing, and the chat (viewer room and studio) marks the host by role, not by a name
anyone can type."""

from __future__ import annotations

from playwright.async_api import expect

from tests.server_harness import LiveServer

from .conftest import DESKTOP, PHONE, Pages
from .helpers import open_room

TOKEN_KEY = "localStorage.getItem('liveroom.token.viewer')"


async def test_a_link_with_a_token_asks_before_it_signs_the_viewer_in(
        server: LiveServer, pages: Pages) -> None:
    stage = await open_room(server)
    room_url = f"{server.url}/r/{stage.room['id']}"
    victim = await pages.open(room_url, PHONE)
    await expect(victim.locator("#room-title")).to_have_text("Jade and phones, live")
    mine = await victim.evaluate(TOKEN_KEY)
    assert mine

    # The attacker's buyer account, in a link: the page says whose it is and what it means.
    attacker = server.buyer_token("Mallory")
    await victim.goto("about:blank")
    await victim.goto(f"{room_url}#token={attacker}")
    dialog = victim.locator("#switch-dialog")
    await expect(dialog).to_be_visible()
    await expect(victim.locator("#switch-name")).to_have_text("Mallory")
    await expect(dialog).to_contain_text("delivery addresses")
    await pages.shot(victim, "link-sign-in-asks-phone")
    assert "#token=" not in victim.url, "the token leaves the address bar at once"
    await victim.click("#switch-stay")
    await expect(dialog).to_be_hidden()
    await expect(victim.locator("#room-title")).to_have_text("Jade and phones, live")
    assert await victim.evaluate(TOKEN_KEY) == mine, "staying keeps the session"

    # Saying yes is the only way in.
    await victim.goto("about:blank")
    await victim.goto(f"{room_url}#token={attacker}")
    await expect(dialog).to_be_visible()
    await victim.click("#switch-accept")
    await expect(dialog).to_be_hidden()
    assert await victim.evaluate(TOKEN_KEY) == attacker
    pages.assert_clean()


async def test_the_host_is_marked_by_role_and_nobody_joins_under_the_hosts_name(
        server: LiveServer, pages: Pages) -> None:
    stage = await open_room(server, anchor_name="Lin the Anchor")
    room_id = stage.room["id"]
    viewer = await pages.open(f"{server.url}/r/{room_id}", PHONE)
    await expect(viewer.locator("#room-title")).to_have_text("Jade and phones, live")

    anchor = await server.connect(stage.anchor_token)
    assert (await anchor.call("join", {"room": room_id}))["ok"]
    await anchor.call("chat", {"room": room_id, "text": "Welcome, everyone"})
    # A guest with the anchor's name in other letters is turned away at the door...
    impostor = await server.connect(server.token("viewer", "LIN the\u200b Anchor"))
    refused = await impostor.call("join", {"room": room_id})
    assert refused["error"]["code"] == "name_reserved"
    # ... and one with a name merely like it is shown without the host's mark.
    lookalike = await server.connect(server.token("viewer", "Lin the Anchor's fan"))
    assert (await lookalike.call("join", {"room": room_id}))["ok"]
    await lookalike.call("chat", {"room": room_id, "text": "Buy from me instead"})

    lines = viewer.locator("#chat-log .chat-line")
    await expect(lines).to_have_count(2)
    await expect(lines.nth(0).locator(".role")).to_have_text("HOST")
    await expect(lines.nth(0).locator(".who")).to_have_text("Lin the Anchor")
    await expect(lines.nth(1).locator(".role")).to_have_count(0)
    await pages.shot(viewer, "host-marked-by-role-phone")
    pages.assert_clean()


async def test_the_studio_marks_the_host_and_staff_by_role_too(server: LiveServer,
                                                               pages: Pages) -> None:
    """The studio's chat is the room's (chat.js): the host's own lines carry the HOST mark,
    staff theirs, and only other people's lines can be muted or banned."""
    stage = await open_room(server, anchor_name="Lin the Anchor")
    room_id = stage.room["id"]
    studio = await pages.open(f"{server.url}/studio/{room_id}#token={stage.anchor_token}", DESKTOP)
    await expect(studio.locator("#room-title")).to_have_text("Jade and phones, live")
    await studio.fill("#chat-input", "Welcome to the studio")
    await studio.press("#chat-input", "Enter")
    inspector = await server.connect(server.token("inspector", "Vault Shenzhen #3"))
    assert (await inspector.call("join", {"room": room_id}))["ok"]
    await inspector.call("chat", {"room": room_id, "text": "The bangle is appraised"})
    fan = await server.connect(server.token("viewer", "Lin the Anchor's fan"))
    assert (await fan.call("join", {"room": room_id}))["ok"]
    await fan.call("chat", {"room": room_id, "text": "Hello!"})

    lines = studio.locator("#chat-log .chat-line")
    await expect(lines).to_have_count(3)
    await expect(lines.nth(0).locator(".role")).to_have_text("HOST")
    await expect(lines.nth(0).locator(".who")).to_have_text("Lin the Anchor")
    await expect(lines.nth(0).locator("button")).to_have_count(0)
    await expect(lines.nth(1).locator(".role")).to_have_text("INSPECTOR")
    await expect(lines.nth(2).locator(".role")).to_have_count(0)
    await expect(lines.nth(2).locator('button[data-act="ban"]')).to_be_visible()
    await pages.shot(studio, "studio-chat-marks-desktop")
    pages.assert_clean()
