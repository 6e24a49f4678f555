"""Certificates issued at the inspector desk reach open viewer pages; live video end to end."""

from __future__ import annotations

import hashlib

from playwright.async_api import expect

from tests.server_harness import LiveServer

from .conftest import DESKTOP, PHONE, Pages
from .helpers import open_room

PHOTO_SHA256 = hashlib.sha256(b"bangle front photo").hexdigest()


async def test_certificate_badge_appears_live_and_verifies(server: LiveServer,
                                                           pages: Pages) -> None:
    stage = await open_room(server)
    viewer = await pages.open(f"{server.url}/r/{stage.room['id']}", PHONE)
    await expect(viewer.locator("#product-title")).to_have_text("Hetian jade bangle")
    await expect(viewer.locator("#badges")).not_to_contain_text("Vault certified")

    inspector = server.token("inspector", "Vault Shenzhen #3")
    desk = await pages.open(f"{server.url}/inspect#token={inspector}", DESKTOP)
    await expect(desk.locator("#who")).to_contain_text("Vault Shenzhen #3")
    await desk.locator("#live-products li", has_text="Hetian jade bangle").get_by_role(
        "button", name="Use").click()
    await expect(desk.locator("#product-info")).to_contain_text("Hetian jade bangle · jewelry")
    await desk.fill("#v-material", "Hetian nephrite jade")
    await desk.fill("#v-weight", "58250")
    await desk.fill("#v-grade", "A")
    await desk.fill("#v-appraiser", "Vault Shenzhen #3")
    await desk.fill("#v-hashes", PHOTO_SHA256)
    await desk.click("#issue-form button[type=submit]")
    await expect(desk.locator("#issue-result")).to_contain_text("Issued c_")
    certificate_id = (await desk.locator("#issue-result").inner_text()).split()[1].rstrip(".")
    await pages.shot(desk, "inspector-desk")

    # The open viewer page shows the badge without a reload.
    badge = viewer.locator(f'#badges button[data-certificate="{certificate_id}"]')
    await expect(badge).to_have_text("✓ Vault certified")
    await badge.click()
    dialog = viewer.locator("#badge-dialog")
    await expect(dialog).to_contain_text("Valid certificate")
    await expect(dialog).to_contain_text("Hetian nephrite jade")
    await expect(dialog).to_contain_text("58.250 g")
    await pages.shot(viewer, "badge-dialog-phone")
    await dialog.get_by_role("button", name="Close").click()

    verify = await pages.open(f"{server.url}/verify/{certificate_id}", PHONE)
    await expect(verify.locator("#verdict")).to_have_text("✓ Valid certificate")
    await expect(verify.locator("#details")).to_contain_text(PHOTO_SHA256)
    await verify.wait_for_function(
        "document.querySelector('#qr').complete && document.querySelector('#qr').naturalWidth > 0")
    await pages.shot(verify, "verify-valid-phone")

    # Revoked at the desk: the badge leaves the viewer page, the verify page says why.
    item = desk.locator(f'#certificates li[data-certificate="{certificate_id}"]')
    await item.get_by_label("Reason for revoking").fill("appraisal photo mismatch")
    await item.get_by_role("button", name="Revoke").click()
    await expect(item).to_contain_text("revoked")
    await expect(badge).to_have_count(0)
    await expect(viewer.locator("#badges")).to_contain_text("Fake one, pay ten")
    await verify.reload()
    await expect(verify.locator("#verdict")).to_have_text("✗ Not valid")
    await expect(verify.locator("#reason")).to_contain_text("revoked")
    await expect(verify.locator("#reason")).to_contain_text("appraisal photo mismatch")
    await pages.shot(verify, "verify-revoked-phone")
    pages.assert_clean()


async def test_studio_goes_live_and_viewer_plays_video(server: LiveServer, pages: Pages) -> None:
    stage = await open_room(server)
    room_id = stage.room["id"]
    studio = await pages.open(f"{server.url}/studio/{room_id}#token={stage.anchor_token}", DESKTOP)
    await expect(studio.locator("#room-title")).to_have_text("Jade and phones, live")
    await studio.click("#camera")
    await expect(studio.locator("#go-live")).to_be_enabled()
    await studio.click("#go-live")
    await expect(studio.locator("#live-state")).to_have_text("LIVE", timeout=20_000)
    bitrate_cap = await studio.evaluate("""async () => {
        const { MAX_VIDEO_BITRATE } = await import('/static/watch.js');
        return MAX_VIDEO_BITRATE; }""")
    assert bitrate_cap <= 2_000_000

    viewer = await pages.open(f"{server.url}/r/{room_id}", PHONE)
    decoded = """() => {
        const v = document.querySelector('#video');
        return v.videoWidth > 0 ? v.getVideoPlaybackQuality().totalVideoFrames : 0; }"""
    await viewer.wait_for_function(f"({decoded})() > 10", timeout=20_000)
    frames = await viewer.evaluate(decoded)
    await viewer.wait_for_timeout(1000)
    assert await viewer.evaluate(decoded) > frames, "frames keep decoding"
    await expect(viewer.locator("#video-overlay")).to_be_hidden()
    await pages.shot(viewer, "viewer-video-phone")
    await pages.shot(studio, "studio-live-desktop")

    await studio.click("#end-live")
    await expect(studio.locator("#live-state")).to_have_text("OFF AIR")
    await expect(viewer.locator("#video-overlay")).to_contain_text("stopped", timeout=10_000)
    pages.assert_clean()
