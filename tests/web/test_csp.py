"""Every page works under the Content-Security-Policy the server sends, and that policy does
block what it should (an inline script). Every other browser test also fails on a violation:
``Pages.open`` watches for them (``CSP_WATCH`` in conftest)."""

from __future__ import annotations

from playwright.async_api import Browser, Page, expect

from liveroom.http.transport import CONTENT_SECURITY_POLICY
from tests.server_harness import LiveServer

from .conftest import CSP_WATCH, DESKTOP, PHONE, Pages
from .helpers import QR_LOADED, open_room


async def _violations(page: Page) -> list[str]:
    return list(await page.evaluate("window.__cspViolations"))


async def test_every_page_loads_and_runs_without_a_csp_violation(server: LiveServer,
                                                                 pages: Pages) -> None:
    stage = await open_room(server)
    room_id = stage.room["id"]
    inspector = server.token("inspector", "Vault Shenzhen #3")
    status, certificate = await server.request("POST", "/api/certificates", inspector, {
        "kind": "vault", "product_id": stage.products[0]["id"], "details": {
            "material": "jade", "weight_mg": 1000, "grade": "A", "appraiser": "Vault 3",
            "photo_sha256": ["cd" * 32]}})
    assert status == 201, certificate

    landing = await pages.open(server.url + "/", PHONE)
    await expect(landing.locator(f'a[data-room="{room_id}"]')).to_be_visible()

    room = await pages.open(f"{server.url}/r/{room_id}", PHONE)
    await expect(room.locator("#product-title")).to_have_text("Hetian jade bangle")
    await room.fill("#chat-input", "hello under a strict policy")
    await room.press("#chat-input", "Enter")
    await expect(room.locator("#chat-log .chat-line").last).to_contain_text("strict policy")
    # The stock bar is sized from script (CSSOM, which the policy allows).
    badge = room.locator(f'#badges button[data-certificate="{certificate["id"]}"]')
    await badge.click()
    await expect(room.locator("#badge-dialog")).to_contain_text("Valid certificate")

    studio = await pages.open(f"{server.url}/studio/{room_id}#token={stage.anchor_token}",
                              DESKTOP)
    await expect(studio.locator("#room-title")).to_have_text("Jade and phones, live")
    # Signed-out pages show their sign-in card (it had an inline style attribute).
    for path in (f"/studio/{room_id}", "/inspect"):
        signed_out = await pages.open(server.url + path, PHONE)
        await expect(signed_out.locator("#signin")).to_be_visible()
        margin = await signed_out.eval_on_selector("#signin", "e => getComputedStyle(e).margin")
        assert margin == "11.25px", "the card keeps its margin (.75rem) from the stylesheet"

    desk = await pages.open(f"{server.url}/inspect#token={inspector}", DESKTOP)
    await expect(desk.locator("#who")).to_contain_text("Vault Shenzhen #3")

    verify = await pages.open(f"{server.url}/verify/{certificate['id']}", PHONE)
    await expect(verify.locator("#verdict")).to_have_text("✓ Valid certificate")
    await verify.wait_for_function(QR_LOADED)

    for page in (landing, room, studio, desk, verify):
        await page.wait_for_load_state("networkidle")
        assert await _violations(page) == [], page.url
    response = await verify.request.get(f"{server.url}/verify/{certificate['id']}")
    assert response.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    pages.assert_clean()


async def test_the_policy_blocks_inline_script_and_framing(server: LiveServer,
                                                           browser: Browser) -> None:
    """The watch above would see nothing if no policy were applied: an inline script is refused
    and reported, and another site cannot frame a page."""
    context = await browser.new_context()
    try:
        await context.add_init_script(CSP_WATCH)
        page = await context.new_page()
        await page.goto(server.url + "/")
        await page.evaluate("""() => {
            const script = document.createElement("script");
            script.textContent = "window.inlineRan = true";
            document.body.append(script);
        }""")
        await page.wait_for_function("() => window.__cspViolations.length > 0")
        assert await page.evaluate("window.inlineRan === undefined")
        assert any(v.startswith("script-src") for v in await _violations(page))

        framer = await context.new_page()
        await framer.set_content(f'<iframe id="f" src="{server.url}/"></iframe>')
        element = await framer.wait_for_selector("#f")
        assert element is not None
        frame = await element.content_frame()
        await framer.wait_for_timeout(500)
        # Chromium shows its own error page in place of the refused frame.
        assert frame is None or not frame.url.startswith(server.url), frame.url
    finally:
        await context.close()
