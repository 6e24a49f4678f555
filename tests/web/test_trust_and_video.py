"""Certificates issued at the inspector desk reach open viewer pages; live video end to end."""

from __future__ import annotations

import datetime
import hashlib

from playwright.async_api import BrowserContext, Route, expect

from liveroom.redis_server import free_port
from tests.server_harness import LiveServer

from .conftest import DESKTOP, PHONE, Pages
from .helpers import QR_LOADED, no_horizontal_scroll, open_room

PHOTO_SHA256 = hashlib.sha256(b"bangle front photo").hexdigest()
# Keeps every RTCPeerConnection the page makes in window.peerConnections, for inspection.
KEEP_PEER_CONNECTIONS = """(() => {
    const Native = window.RTCPeerConnection;
    window.peerConnections = [];
    window.RTCPeerConnection = class extends Native {
        constructor(...args) { super(...args); window.peerConnections.push(this); }
    };
})();"""


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
    await verify.wait_for_function(QR_LOADED)
    assert await no_horizontal_scroll(verify)
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
    assert await no_horizontal_scroll(verify)
    await pages.shot(verify, "verify-revoked-phone")
    pages.assert_clean()


LIVE_ICE_SERVERS = """() => window.peerConnections
    .filter((pc) => pc.connectionState !== "closed")
    .map((pc) => pc.getConfiguration().iceServers)"""


async def test_studio_goes_live_and_viewer_plays_video(server: LiveServer, pages: Pages) -> None:
    stage = await open_room(server)
    room_id = stage.room["id"]
    # The pages take their ICE servers from GET /api/rtc/config. The studio's browser is served
    # a deployment's TURN server (nothing listens there: a refused TCP connection, so only the
    # loopback host candidates connect); the viewer asks this server, which has none configured.
    turn = {"urls": [f"turn:127.0.0.1:{free_port()}?transport=tcp"], "username": "liveroom",
            "credential": "turn-secret"}
    asked_with: list[str | None] = []

    async def deployment_with_turn(context: BrowserContext) -> None:
        async def answer(route: Route) -> None:
            asked_with.append(route.request.headers.get("authorization"))
            await route.fulfill(json={"ice_servers": [turn]})
        await context.route("**/api/rtc/config", answer)

    studio = await pages.open(f"{server.url}/studio/{room_id}#token={stage.anchor_token}", DESKTOP,
                              init_script=KEEP_PEER_CONNECTIONS, setup=deployment_with_turn)
    await expect(studio.locator("#room-title")).to_have_text("Jade and phones, live")
    await studio.click("#camera")
    await expect(studio.locator("#go-live")).to_be_enabled()
    await studio.click("#go-live")
    await expect(studio.locator("#live-state")).to_have_text("LIVE", timeout=30_000)
    caps = await studio.evaluate("""async () => {
        const { MAX_VIDEO_BITRATE, MAX_AUDIO_BITRATE } = await import('/static/watch.js');
        return [MAX_VIDEO_BITRATE, MAX_AUDIO_BITRATE]; }""")
    assert caps[0] <= 2_000_000
    # The cap is what the browser's encoder was actually given on the live connection.
    senders = await studio.evaluate("""() => window.peerConnections
        .filter((pc) => pc.connectionState !== "closed")
        .flatMap((pc) => pc.getSenders().filter((s) => s.track))
        .map((s) => [s.track.kind, s.getParameters().encodings.map((e) => e.maxBitrate)])""")
    assert sorted(senders) == [["audio", [caps[1]]], ["video", [caps[0]]]]
    assert await studio.evaluate(LIVE_ICE_SERVERS) == [[turn]]
    assert asked_with == [f"Bearer {stage.anchor_token}"]  # TURN credentials: signed-in only

    rtc_config_answers: list[int] = []

    async def record_rtc_config(context: BrowserContext) -> None:
        context.on("response", lambda response: rtc_config_answers.append(response.status)
                   if response.url.endswith("/api/rtc/config") else None)

    viewer = await pages.open(f"{server.url}/r/{room_id}", PHONE,
                              init_script=KEEP_PEER_CONNECTIONS, setup=record_rtc_config)
    decoded = """() => {
        const v = document.querySelector('#video');
        return v.videoWidth > 0 ? v.getVideoPlaybackQuality().totalVideoFrames : 0; }"""
    # A function: Playwright eval()s an expression string in the page, which the CSP refuses.
    await viewer.wait_for_function(f"() => ({decoded})() > 10", timeout=30_000)
    frames = await viewer.evaluate(decoded)
    # Frames keep decoding (waited for, not given a second: Chromium decodes slowly on a
    # busy machine).
    await viewer.wait_for_function(f"() => ({decoded})() > {frames}", timeout=30_000)
    await expect(viewer.locator("#video-overlay")).to_be_hidden()
    assert await viewer.evaluate(LIVE_ICE_SERVERS) == [[]]
    # The real endpoint answered (the page would also fall back to [] on an error).
    assert rtc_config_answers
    assert set(rtc_config_answers) == {200}
    await pages.shot(viewer, "viewer-video-phone")
    await pages.shot(studio, "studio-live-desktop")

    await studio.click("#end-live")
    await expect(studio.locator("#live-state")).to_have_text("OFF AIR")
    await expect(viewer.locator("#video-overlay")).to_contain_text("stopped", timeout=30_000)
    pages.assert_clean()


async def test_inspection_report_and_anchor_certification_from_the_desk(
        server: LiveServer, pages: Pages) -> None:
    stage = await open_room(server, title="Phones and oils", products=(
        ("iPhone 13 128 GB, second-hand", "phone_used", 249_900),
        ("Lavender essential oil 30 ml", "essential_oil", 8_900)))
    phone, oil = stage.products
    anchor_id = stage.room["anchor"]["id"]
    viewer = await pages.open(f"{server.url}/r/{stage.room['id']}", PHONE)
    await expect(viewer.locator("#product-title")).to_have_text("iPhone 13 128 GB, second-hand")
    await expect(viewer.locator("#badges")).not_to_contain_text("Inspected")

    # The inspector works from a phone too.
    inspector = server.token("inspector", "Inspection box #7")
    desk = await pages.open(f"{server.url}/inspect#token={inspector}", PHONE)
    await expect(desk.locator("#who")).to_contain_text("Inspection box #7")
    await desk.locator("#live-products li", has_text="iPhone 13").get_by_role(
        "button", name="Use").click()
    await expect(desk.locator("#kind")).to_have_value("inspection")
    await expect(desk.locator("#product-info")).to_contain_text(
        "iPhone 13 128 GB, second-hand · phone_used")
    await desk.fill("#i-model", "iPhone 13 128GB A2633")
    await desk.fill("#i-imei", "490154203237518")
    await desk.fill("#i-battery", "88")
    await desk.select_option("#i-screen", "light_wear")
    await desk.select_option("#i-body", "flawless")
    await desk.fill("#i-buyback", "1500.00")
    assert await no_horizontal_scroll(desk)
    await desk.click("#issue-form button[type=submit]")
    await expect(desk.locator("#issue-result")).to_contain_text("Issued c_")
    report_id = (await desk.locator("#issue-result").inner_text()).split()[1].rstrip(".")
    await expect(desk.locator("#lookup")).to_have_value(phone["id"])  # its list is shown
    await expect(desk.locator(f'#certificates li[data-certificate="{report_id}"]')).to_contain_text(
        "inspection")
    await pages.shot(desk, "desk-inspection-phone")

    # The viewer's page shows the report as a badge at once, with the phone's condition.
    badge = viewer.locator(f'#badges button[data-certificate="{report_id}"]')
    await expect(badge).to_have_text("✓ Inspected")
    await badge.click()
    dialog = viewer.locator("#badge-dialog")
    await expect(dialog).to_contain_text("Valid certificate")
    await expect(dialog).to_contain_text("Inspection report")
    await expect(dialog).to_contain_text("88%")
    await expect(dialog).to_contain_text("light_wear")
    await expect(dialog).to_contain_text("¥1,500.00")
    await expect(dialog).not_to_contain_text("490154203237518")  # the IMEI is never shown
    await pages.shot(viewer, "inspection-badge-phone")
    await dialog.get_by_role("button", name="Close").click()

    verify = await pages.open(f"{server.url}/verify/{report_id}", PHONE)
    await expect(verify.locator("#verdict")).to_have_text("✓ Valid certificate")
    await expect(verify.locator("#details")).to_contain_text("iPhone 13 128GB A2633")
    assert await no_horizontal_scroll(verify)

    # Anchor certification: refund without return on the anchor's essential oils.
    status, body = await server.request("POST", f"/api/rooms/{stage.room['id']}/pin",
                                        stage.anchor_token, json={"product_id": oil["id"]})
    assert status == 200, body
    await expect(viewer.locator("#product-title")).to_have_text("Lavender essential oil 30 ml")
    await desk.select_option("#kind", "refund_no_return")
    await expect(desk.locator("#product-id")).to_be_hidden()
    await desk.fill("#r-anchor", anchor_id)
    today = datetime.date.today()
    await desk.fill("#r-from", today.isoformat())
    await desk.fill("#r-until", (today + datetime.timedelta(days=90)).isoformat())
    await desk.click("#issue-form button[type=submit]")
    await expect(desk.locator("#issue-result")).not_to_contain_text(report_id)
    await expect(desk.locator("#issue-result")).to_contain_text("Issued c_")
    certification_id = (await desk.locator("#issue-result").inner_text()).split()[1].rstrip(".")
    listed = desk.locator(f'#certificates li[data-certificate="{certification_id}"]')
    await expect(listed).to_contain_text("refund_no_return")
    await expect(listed).to_contain_text("valid")
    assert await no_horizontal_scroll(desk)
    await pages.shot(desk, "desk-certification-phone")

    badge = viewer.locator(f'#badges button[data-certificate="{certification_id}"]')
    await expect(badge).to_have_text("✓ Refund without return")
    await badge.click()
    await expect(dialog).to_contain_text("Refund-no-return certification")
    await expect(dialog).to_contain_text(anchor_id)
    await expect(dialog).to_contain_text("essential_oil")
    await pages.shot(viewer, "certified-anchor-badge-phone")
    pages.assert_clean()
