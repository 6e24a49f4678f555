"""Replays: a broadcast is recorded as it is packaged; when it ends, GET /api/rooms/{id}/replay
describes a VOD playlist of it with the products pinned and the sales run during the show as
chapters."""

from __future__ import annotations

import asyncio
import io
from typing import Any

import av

from tests.media.conftest import start_broadcaster
from tests.server_harness import LiveServer
from tests.web.helpers import Stage, open_room, start_sale


async def wait_segments(server: LiveServer, room_id: str, count: int) -> None:
    """Until the live stream has ``count`` complete segments (those that left the playlist's
    window too)."""
    for _ in range(600):  # bounds failure only: a busy machine packages slowly
        async with server.http.get(f"{server.url}/hls/{room_id}/index.m3u8") as response:
            text = await response.text()
        if response.status == 200:
            first = int(text.split("#EXT-X-MEDIA-SEQUENCE:")[1].split()[0])
            if first + text.count("#EXTINF") >= count:
                return
        await asyncio.sleep(0.1)
    raise AssertionError(f"fewer than {count} segments")


async def get(server: LiveServer, path: str) -> tuple[int, bytes, Any]:
    async with server.http.get(server.url + path) as response:
        return response.status, await response.read(), response.headers


async def pin(server: LiveServer, stage: Stage, product: dict[str, Any]) -> None:
    status, body = await server.request("POST", f"/api/rooms/{stage.room['id']}/pin",
                                        stage.anchor_token, json={"product_id": product["id"]})
    assert status == 200, body


async def test_a_recorded_show_replays_with_its_pins_and_sales_as_chapters(
        server: LiveServer) -> None:
    stage = await open_room(server)  # the bangle is pinned before the show
    jade, phone = stage.products
    room_id = stage.room["id"]
    assert stage.room["record"] is True
    status, raw, _ = await get(server, f"/api/rooms/{room_id}/replay")
    assert status == 404
    assert b"no_replay" in raw
    broadcaster = await start_broadcaster(server.services.media, room_id, codec="video/H264")
    try:
        await wait_segments(server, room_id, 2)
        sale = await start_sale(server, stage, jade)
        await wait_segments(server, room_id, 4)
        await pin(server, stage, phone)
        await pin(server, stage, phone)  # pinned again while pinned: no second chapter
        await wait_segments(server, room_id, 6)
    finally:
        await broadcaster.pc.close()
        await server.services.media.stop(room_id)
    for _ in range(600):  # the packager finishes in its own task
        status, _, _ = await get(server, f"/api/rooms/{room_id}/replay")
        if status == 200:
            break
        await asyncio.sleep(0.05)
    status, body = await server.request("GET", f"/api/rooms/{room_id}/replay")
    assert status == 200, body
    assert body["playlist"] == f"/replay/{room_id}/index.m3u8"
    assert body["duration_ms"] >= 3000
    chapters = body["chapters"]
    assert [(c["kind"], c["product"], c["title"]) for c in chapters] == [
        ("pin", jade["id"], jade["title"]),
        ("sale", jade["id"], sale["title"]),
        ("pin", phone["id"], phone["title"])]
    assert chapters[1]["sale"] == sale["id"]
    pinned_first, on_sale, pinned_then = (c["at_ms"] for c in chapters)
    assert pinned_first == 0  # pinned before the recording began: shown from its start
    assert 1000 <= on_sale < pinned_then <= body["duration_ms"]
    assert body["duration_ms"] - pinned_then >= 1000  # two more segments were recorded after

    status, playlist, headers = await get(server, body["playlist"])
    assert status == 200
    text = playlist.decode()
    assert "#EXT-X-PLAYLIST-TYPE:VOD" in text
    assert text.rstrip().endswith("#EXT-X-ENDLIST")
    assert headers["Access-Control-Allow-Origin"] == "*"
    names = [line for line in text.splitlines() if line.startswith("seg-")]
    init_name = text.split('#EXT-X-MAP:URI="')[1].split('"')[0]
    status, init, _ = await get(server, f"/replay/{room_id}/{init_name}")
    assert status == 200
    media = b""
    for name in names:
        status, data, headers = await get(server, f"/replay/{room_id}/{name}")
        assert status == 200
        assert "immutable" in headers["Cache-Control"]
        media += data
    container: Any = av.open(io.BytesIO(init + media), format="mp4")
    frames = sum(1 for _ in container.decode(video=0))
    assert abs(frames / 30 - body["duration_ms"] / 1000) < 0.5
    assert (server.settings.data_dir / "recordings" / room_id / "index.m3u8").is_file()

    for name in ("..%2F..%2Fsecret", "segments.jsonl", "index.m3u8.tmp", "seg-zz-1.m4s"):
        status, _, _ = await get(server, f"/replay/{room_id}/{name}")
        assert status in (400, 404), name
    status, raw, _ = await get(server, "/api/rooms/r_nosuchroom/replay")
    assert status == 404
    assert b"unknown_room" in raw


async def test_a_room_can_switch_recording_off(server: LiveServer) -> None:
    token = server.token("anchor", "Quiet Anchor")
    status, room = await server.request("POST", "/api/rooms", token,
                                        json={"title": "Off the record", "record": False})
    assert status == 201
    assert room["record"] is False
    status, body = await server.request("POST", "/api/rooms", token,
                                        json={"title": "Bad", "record": "no"})
    assert status == 400
    assert body["error"]["code"] == "invalid_input"
    broadcaster = await start_broadcaster(server.services.media, room["id"], codec="video/H264")
    try:
        await wait_segments(server, room["id"], 1)
    finally:
        await broadcaster.pc.close()
        await server.services.media.stop(room["id"])
    await asyncio.sleep(0.3)
    status, body = await server.request("GET", f"/api/rooms/{room['id']}/replay")
    assert status == 404
    assert body["error"]["code"] == "no_replay"
    assert not (server.settings.data_dir / "recordings" / room["id"]).exists()
