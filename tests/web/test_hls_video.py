"""LL-HLS in a real browser: the studio publishes H.264 from Chromium's fake camera, and a viewer
page forced onto HLS (``?hls=1``) plays it through hls.js."""

from __future__ import annotations

from playwright.async_api import expect

from tests.server_harness import LiveServer

from .conftest import DESKTOP, PHONE, Pages
from .helpers import open_room

PLAYING = """() => {
    const v = document.querySelector('#video');
    return v.videoWidth > 0 && v.currentTime > 1 ? v.currentTime : 0; }"""


async def test_studio_publishes_h264_and_an_hls_viewer_plays_it(
        server: LiveServer, pages: Pages) -> None:
    stage = await open_room(server)
    room_id = stage.room["id"]
    studio = await pages.open(f"{server.url}/studio/{room_id}#token={stage.anchor_token}",
                              DESKTOP)
    await studio.click("#camera")
    await expect(studio.locator("#go-live")).to_be_enabled()
    await studio.click("#go-live")
    await expect(studio.locator("#live-state")).to_have_text("LIVE", timeout=20_000)
    assert server.services.media.health(room_id)["codec"] == "video/H264"

    # The first playlist request may come before the packager's first part (404, retried), and
    # the stream is gone the moment the live ends.
    pages.allow_refusal(404)
    viewer = await pages.open(f"{server.url}/r/{room_id}?hls=1", PHONE)
    await viewer.wait_for_function(f"() => ({PLAYING})() > 0", timeout=30_000)
    first = await viewer.evaluate(PLAYING)
    await viewer.wait_for_function(f"() => ({PLAYING})() > {first} + 1", timeout=10_000)
    assert await viewer.evaluate("() => window.peerConnections === undefined")
    await expect(viewer.locator("#video-path")).to_contain_text("LL-HLS")
    await expect(viewer.locator("#video-path")).to_contain_text("s behind")
    behind = await viewer.evaluate(
        "() => parseFloat(document.querySelector('#video-path').textContent.split('·')[1])")
    print(f"hls.js latency in Chromium: {behind:.2f} s")
    await pages.shot(viewer, "viewer-hls-phone")
    await studio.click("#end-live")
    await expect(studio.locator("#live-state")).to_have_text("OFF AIR")
    pages.assert_clean()
