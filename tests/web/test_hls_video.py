"""LL-HLS in a real browser: the studio publishes H.264 from Chromium's fake camera; viewers get
WebRTC while the room's seats last and LL-HLS (hls.js) after, or when they ask for it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Page, expect

from tests.server_harness import LiveServer, live_server

from .conftest import DESKTOP, PHONE, Pages
from .helpers import open_room, start_sale

PLAYING = """() => {
    const v = document.querySelector('#video');
    return v.videoWidth > 0 && v.currentTime > 1 ? v.currentTime : 0; }"""
WEBRTC_FRAMES = """() => {
    const v = document.querySelector('#video');
    return v.srcObject && v.videoWidth > 0 ? v.getVideoPlaybackQuality().totalVideoFrames : 0; }"""


@pytest.fixture
async def one_seat(redis: Any, redis_url: str, data_dir: Path) -> AsyncIterator[LiveServer]:
    async with live_server(redis_url, data_dir, webrtc_seats=1) as live:
        yield live


async def plays_hls(viewer: Page) -> None:
    await viewer.wait_for_function(f"() => ({PLAYING})() > 0", timeout=30_000)
    first = await viewer.evaluate(PLAYING)
    await viewer.wait_for_function(f"() => ({PLAYING})() > {first} + 1", timeout=30_000)
    await expect(viewer.locator("#video-path")).to_contain_text("s behind")


async def replay_reaches(viewer: Page, seconds: float) -> None:
    """The replay's video plays on to ``seconds``; it fails at once when hls.js gives up (a
    fatal error: the page says the replay could not play and keeps the error in
    ``data-hls-error``)."""
    await viewer.wait_for_function(
        f"""() => {{ const v = document.querySelector('#video');
                  const o = document.querySelector('#video-overlay');
                  return (!o.hidden && o.textContent.includes('could not play'))
                      || (v.videoWidth > 0 && v.currentTime > {seconds}); }}""",
        timeout=20_000)
    state = await viewer.evaluate("""() => [document.querySelector('#video').currentTime,
                                            document.querySelector('#video').dataset.hlsError]""")
    assert state[0] > seconds, f"the replay stopped at {state[0]:.2f} s: {state[1]}"


async def test_seats_then_hls_and_low_data(one_seat: LiveServer, pages: Pages) -> None:
    server = one_seat
    stage = await open_room(server)
    room_id = stage.room["id"]
    studio = await pages.open(f"{server.url}/studio/{room_id}#token={stage.anchor_token}",
                              DESKTOP)
    await studio.click("#camera")
    await expect(studio.locator("#go-live")).to_be_enabled()
    await studio.click("#go-live")
    await expect(studio.locator("#live-state")).to_have_text("LIVE", timeout=30_000)
    # The studio prefers H.264: the server remuxes it into LL-HLS without encoding.
    assert server.services.media.health(room_id)["codec"] == "video/H264"
    # The first playlist request may come before the packager's first part (404, retried), and
    # the stream is gone the moment the live ends.
    pages.allow_refusal(404)

    # The one seat: WebRTC.
    seated = await pages.open(f"{server.url}/r/{room_id}", PHONE)
    await seated.wait_for_function(f"() => ({WEBRTC_FRAMES})() > 10", timeout=30_000)
    await expect(seated.locator("#video-path")).to_have_text("WebRTC · live")
    assert server.services.media.viewer_ids(room_id) != []

    # Seats taken: the next viewer plays LL-HLS through hls.js.
    crowd = await pages.open(f"{server.url}/r/{room_id}", PHONE)
    await plays_hls(crowd)
    await expect(crowd.locator("#video-path")).to_contain_text("LL-HLS")
    behind = await crowd.evaluate(
        "() => parseFloat(document.querySelector('#video-path').textContent.split('·')[1])")
    print(f"hls.js latency in Chromium: {behind:.2f} s")
    assert 0 < behind < 6
    # The anchor's microphone (Chromium's fake one) is heard: AAC decoded from the stream.
    await crowd.wait_for_function(
        "() => document.querySelector('#video').webkitAudioDecodedByteCount > 0",
        timeout=30_000)
    assert len(server.services.media.viewer_ids(room_id)) == 1
    await pages.shot(crowd, "viewer-hls-phone")

    # The seated viewer chooses "low data": it leaves its seat for LL-HLS.
    await seated.click("#low-data")
    await plays_hls(seated)
    await expect(seated.locator("#low-data")).to_have_text("Real-time video")

    # ?hls=1 forces LL-HLS and hides the choice.
    forced = await pages.open(f"{server.url}/r/{room_id}?hls=1", PHONE)
    await plays_hls(forced)
    await expect(forced.locator("#low-data")).to_be_hidden()

    await studio.click("#end-live")
    await expect(studio.locator("#live-state")).to_have_text("OFF AIR")
    pages.assert_clean()


async def test_after_the_show_the_room_page_plays_the_replay_and_its_chapters_seek(
        server: LiveServer, pages: Pages) -> None:
    stage = await open_room(server)
    room_id = stage.room["id"]
    studio = await pages.open(f"{server.url}/studio/{room_id}#token={stage.anchor_token}",
                              DESKTOP)
    await studio.click("#camera")
    await expect(studio.locator("#go-live")).to_be_enabled()
    await studio.click("#go-live")
    await expect(studio.locator("#live-state")).to_have_text("LIVE", timeout=30_000)
    await studio.wait_for_timeout(2500)
    jade, phone = stage.products  # the bangle was pinned before going live
    sale = await start_sale(server, stage, jade)
    await studio.wait_for_timeout(1500)
    status, _ = await server.request("POST", f"/api/rooms/{room_id}/pin", stage.anchor_token,
                                     json={"product_id": phone["id"]})
    assert status == 200
    await studio.wait_for_timeout(2500)
    status, _ = await server.request("POST", f"/api/rooms/{room_id}/end", stage.anchor_token)
    assert status == 200
    pages.allow_refusal(404)  # the replay is asked for until the packager has written it

    viewer = await pages.open(f"{server.url}/r/{room_id}", PHONE)
    await expect(viewer.locator("#room-status")).to_have_text("REPLAY", timeout=30_000)
    chapters = viewer.locator("#chapters button")
    await expect(chapters).to_have_count(3)
    await expect(chapters.nth(0)).to_have_text(f"0:00 · {jade['title']} (pinned)")
    await expect(chapters.nth(1)).to_contain_text(f"{sale['title']} (flash sale)")
    await expect(chapters.nth(2)).to_contain_text(f"{phone['title']} (pinned)")
    # It plays through: past its first segments, then from a chapter on after a seek.
    # (Before the packager wrote its own fragments, hls.js stopped ~0.7 s in on most
    # recordings: "fragParsingError", video samples lasting 0; docs/media.md "Replays".)
    await replay_reaches(viewer, 3)
    status, replay = await server.request("GET", f"/api/rooms/{room_id}/replay")
    assert status == 200
    sale_s, pin_s = (chapter["at_ms"] / 1000 for chapter in replay["chapters"][1:])
    assert sale_s >= 2  # the sale started 2.5 s into the show
    assert pin_s >= sale_s + 1
    assert replay["duration_ms"] / 1000 > pin_s + 1.5
    for chapter, at_s in ((chapters.nth(2), pin_s), (chapters.nth(1), sale_s)):
        await chapter.click()
        await viewer.wait_for_function(
            f"() => Math.abs(document.querySelector('#video').currentTime - {at_s}) < 1")
        await replay_reaches(viewer, at_s + 1)
    await pages.shot(viewer, "viewer-replay-phone")
    pages.assert_clean()
