"""WebRTC through the real server: aiortc broadcaster and viewers signal over Socket.IO."""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass
from pathlib import Path

import redis.asyncio as aioredis
from aiortc import RTCPeerConnection

from liveroom.media._aiortc import on_keyframe_request
from tests.media.conftest import PATIENT_S, new_pc, start_broadcaster, start_viewer, wait_until
from tests.server_harness import Client, LiveServer, live_server


@dataclass
class SocketSignal:
    """Looks like MediaService to the test helpers, but signals through Socket.IO events."""

    client: Client

    async def publish(self, room: str, _peer: str, sdp: str, kind: str) -> tuple[str, str]:
        return await self._call("rtc:publish", room, sdp, kind)

    async def watch(self, room: str, _peer: str, sdp: str, kind: str) -> tuple[str, str]:
        return await self._call("rtc:watch", room, sdp, kind)

    async def _call(self, event: str, room: str, sdp: str, kind: str) -> tuple[str, str]:
        ack = await self.client.call(event, {"room": room, "sdp": sdp, "type": kind})
        assert ack["ok"], ack
        assert ack["type"] == "answer"
        return ack["sdp"], ack["type"]


async def setup_room(server: LiveServer) -> tuple[Client, str]:
    token = server.token("anchor", "Mei", user_id="u_mei")
    _, room = await server.request("POST", "/api/rooms", token, {"title": "Live jade"})
    anchor = await server.connect(token)
    assert (await anchor.call("join", {"room": room["id"]}))["ok"]
    return anchor, room["id"]


async def viewer_client(server: LiveServer, room_id: str, name: str) -> Client:
    client = await server.connect(server.token("viewer", name))
    assert (await client.call("join", {"room": room_id}))["ok"]
    return client


async def test_broadcast_reaches_viewers_and_closes_with_their_sockets(server: LiveServer) -> None:
    anchor, room_id = await setup_room(server)
    broadcaster = await start_broadcaster(SocketSignal(anchor), room_id)  # type: ignore[arg-type]
    viewer_clients = [await viewer_client(server, room_id, f"v{i}") for i in range(3)]
    viewers = [await start_viewer(SocketSignal(c), room_id, c.sio.sid)  # type: ignore[arg-type]
               for c in viewer_clients]
    try:
        await wait_until(lambda: all(v.video_count >= 10 for v in viewers), PATIENT_S,
                         "every viewer decodes frames")
        pts = [frame.pts or 0 for frame in viewers[0].video_frames]
        assert pts == sorted(pts)

        await viewer_clients[0].wait_for("media", lambda d: d["live"] and d["fps"] > 0)
        state = (await viewer_clients[0].call("join", {"room": room_id}))["room"]
        assert state["media"]["live"] is True
        assert state["media"]["codec"].lower().endswith("vp8")
        assert state["media"]["viewers"] == 3

        late_client = await viewer_client(server, room_id, "late")
        started = time.monotonic()
        late = await start_viewer(SocketSignal(late_client), room_id,  # type: ignore[arg-type]
                                  late_client.sio.sid)
        viewers.append(late)
        await wait_until(lambda: late.first_video_at is not None, PATIENT_S,
                         "late viewer's first frame")
        assert late.first_video_at is not None
        assert late.connected_at is not None
        # Asked for at once, not the encoder's next keyframe 100 s on (a quiet machine takes
        # well under a second; a busy one only longer).
        assert late.first_video_at - late.connected_at < PATIENT_S
        assert late.first_video_at - started < PATIENT_S

        media = server.services.media
        before = media.peer_connection_count
        await viewer_clients[1].sio.disconnect()
        await wait_until(lambda: media.peer_connection_count == before - 1, PATIENT_S,
                         "the disconnected viewer's peer connection closes at once")

        ack = await anchor.call("rtc:stop", {"room": room_id})
        assert ack == {"ok": True, "stopped": True}
        await wait_until(lambda: media.peer_connection_count == 0, PATIENT_S, "every pc closed")
        await wait_until(lambda: viewers[0].pc.connectionState == "closed"
                         or viewers[0].pc.connectionState == "failed", PATIENT_S,
                         "viewers see the broadcast end")
        await viewer_clients[0].wait_for("media", lambda d: d["live"] is False)
    finally:
        for viewer in viewers:
            await viewer.close()
        await broadcaster.pc.close()


async def test_signaling_rules(server: LiveServer) -> None:
    anchor, room_id = await setup_room(server)
    viewer = await viewer_client(server, room_id, "Ann")
    outsider = await server.connect(server.token("viewer", "Out"))
    offer = {"room": room_id, "sdp": "v=0\r\n", "type": "offer"}

    ack = await viewer.call("rtc:publish", offer)
    assert ack["error"]["code"] == "forbidden"
    ack = await outsider.call("rtc:watch", offer)
    assert ack["error"]["code"] == "not_in_room"
    ack = await viewer.call("rtc:watch", offer)
    assert ack["error"]["code"] == "not_live"
    ack = await anchor.call("rtc:publish", offer)
    assert ack["error"]["code"] == "not_broadcasting"  # an offer that sends no media
    ack = await anchor.call("rtc:publish", {**offer, "sdp": "this is not sdp"})
    assert ack["error"]["code"] == "invalid_offer"
    ack = await anchor.call("rtc:publish", {**offer, "type": "answer"})
    assert ack["error"]["code"] == "invalid_input"
    ack = await anchor.call("rtc:publish", {"room": room_id, "type": "offer"})
    assert ack["error"]["code"] == "invalid_input"
    assert server.services.media.peer_connection_count == 0


async def test_ending_the_room_stops_its_broadcast_and_every_viewer(server: LiveServer) -> None:
    anchor, room_id = await setup_room(server)
    token = server.token("anchor", "Mei", user_id="u_mei")
    broadcaster = await start_broadcaster(SocketSignal(anchor), room_id)  # type: ignore[arg-type]
    viewer_clients = [await viewer_client(server, room_id, f"v{i}") for i in range(2)]
    viewers = [await start_viewer(SocketSignal(c), room_id, c.sio.sid)  # type: ignore[arg-type]
               for c in viewer_clients]
    media = server.services.media
    try:
        await wait_until(lambda: all(v.video_count >= 5 for v in viewers), PATIENT_S,
                         "media flowing")
        assert media.peer_connection_count == 3

        status, _ = await server.request("POST", f"/api/rooms/{room_id}/end", token)
        assert status == 200
        # The ended room's broadcaster and viewers are closed by the end itself, not later by
        # ICE consent expiry (which takes about 30 s).
        await wait_until(lambda: media.peer_connection_count == 0, PATIENT_S,
                         "every peer connection of the ended room closed")
        assert media.health(room_id)["live"] is False
        await viewer_clients[0].wait_for("room", lambda d: d["status"] == "ended")
        await viewer_clients[0].wait_for("media", lambda d: d["live"] is False)
        await wait_until(lambda: broadcaster.pc.connectionState in ("closed", "failed"), PATIENT_S,
                         "the broadcaster sees its ingest end")
        # An ended room cannot go live again.
        ack = await anchor.call("rtc:publish", {"room": room_id, "sdp": "v=0\r\n",
                                                "type": "offer"})
        assert ack["error"]["code"] == "room_ended"
    finally:
        for viewer in viewers:
            await viewer.close()
        await broadcaster.pc.close()


async def test_ending_a_room_that_never_broadcast(server: LiveServer) -> None:
    _, room_id = await setup_room(server)
    token = server.token("anchor", "Mei", user_id="u_mei")
    status, room = await server.request("POST", f"/api/rooms/{room_id}/end", token)
    assert status == 200
    assert room["status"] == "ended"


def viewer_sids(server: LiveServer, room_id: str) -> set[str]:
    """The socket ids whose viewer peer connections this process holds for the room."""
    return {peer.rsplit("/", 1)[1] for peer in server.services.media.viewer_ids(room_id)}


async def test_leaving_or_being_banned_closes_that_viewers_peer_connection(
    server: LiveServer,
) -> None:
    anchor, room_id = await setup_room(server)
    token = server.token("anchor", "Mei", user_id="u_mei")
    _, other_room = await server.request("POST", "/api/rooms", token, {"title": "Second"})
    broadcaster = await start_broadcaster(SocketSignal(anchor), room_id)  # type: ignore[arg-type]
    leaver, banned, stayer = [await viewer_client(server, room_id, name)
                              for name in ("Leaver", "Banned", "Stayer")]
    viewers = [await start_viewer(SocketSignal(c), room_id, c.sio.sid)  # type: ignore[arg-type]
               for c in (leaver, banned, stayer)]
    media = server.services.media
    sid = {name: server.sids_of(name)[0] for name in ("Leaver", "Banned", "Stayer")}
    try:
        await wait_until(lambda: all(v.video_count >= 5 for v in viewers), PATIENT_S,
                         "media flowing")
        assert viewer_sids(server, room_id) == set(sid.values())

        assert (await leaver.call("leave", {"room": room_id})) == {"ok": True}
        await wait_until(lambda: media.peer_connection_count == 3, PATIENT_S,
                         "the leaver's peer connection closes when it leaves")
        assert viewer_sids(server, room_id) == {sid["Banned"], sid["Stayer"]}
        await wait_until(lambda: viewers[0].pc.connectionState in ("closed", "failed"), PATIENT_S,
                         "the leaver's own pc sees the end")

        banned_user = server.services.edge.connections[sid["Banned"]].user.id
        ack = await anchor.call("mod:ban", {"room": room_id, "user": banned_user})
        assert ack == {"ok": True, "until": None}
        await wait_until(lambda: media.peer_connection_count == 2, PATIENT_S,
                         "the banned viewer's peer connection closes with the ban")
        assert viewer_sids(server, room_id) == {sid["Stayer"]}
        ack = await banned.call("rtc:watch", {"room": room_id, "sdp": "v=0\r\n",
                                              "type": "offer"})
        assert ack["error"]["code"] == "not_in_room"

        # Leaving another room leaves this room's video alone.
        assert (await stayer.call("join", {"room": other_room["id"]}))["ok"]
        assert (await stayer.call("leave", {"room": other_room["id"]})) == {"ok": True}
        assert viewer_sids(server, room_id) == {sid["Stayer"]}
        count = viewers[2].video_count
        await wait_until(lambda: viewers[2].video_count >= count + 10, PATIENT_S,
                         "the remaining viewer keeps decoding")
    finally:
        for viewer in viewers:
            await viewer.close()
        await broadcaster.pc.close()


async def test_rtc_config_gives_signed_in_pages_the_ice_servers(
    redis: aioredis.Redis, redis_url: str, data_dir: Path,
) -> None:
    async with live_server(redis_url, data_dir, ice_servers=(
            "stun:stun.example.net:3478", "turn:turn.example.net:3478?transport=udp"),
            turn_username="alice", turn_password="s3cret") as server:
        status, body = await server.request("GET", "/api/rtc/config")
        assert status == 401
        assert body["error"]["code"] == "unauthorized"

        for role in ("viewer", "anchor"):
            async with server.http.get(server.url + "/api/rtc/config", headers={
                    "Authorization": f"Bearer {server.token(role)}"}) as response:
                assert response.status == 200
                assert response.headers["Cache-Control"] == "no-store"
                assert await response.json() == {"ice_servers": [
                    {"urls": ["stun:stun.example.net:3478"]},
                    {"urls": ["turn:turn.example.net:3478?transport=udp"],
                     "username": "alice", "credential": "s3cret"},
                ]}
        # The relay's own peer connections use the same servers.
        assert [s.urls for s in server.services.media.ice_servers] == [
            "stun:stun.example.net:3478", "turn:turn.example.net:3478?transport=udp"]


async def test_rtc_config_is_empty_by_default(server: LiveServer) -> None:
    status, body = await server.request("GET", "/api/rtc/config", server.token("viewer"))
    assert (status, body) == (200, {"ice_servers": []})


QUIET_S = 1.5


async def quiet_stretch(events: list[float], quiet_s: float, within_s: float) -> int:
    """Wait for ``quiet_s`` seconds in which nothing is added to ``events``, for at most
    ``within_s`` seconds; returns how many there were then."""
    deadline = time.monotonic() + within_s
    while True:
        before = len(events)
        await asyncio.sleep(quiet_s)
        if len(events) == before:
            return before
        assert time.monotonic() < deadline, \
            f"no {quiet_s} s without a keyframe request in {within_s} s: {events}"


async def test_keyframe_request_reaches_the_broadcaster(server: LiveServer) -> None:
    anchor, room_id = await setup_room(server)
    viewer = await viewer_client(server, room_id, "Ann")
    outsider = await server.connect(server.token("viewer", "Out"))
    ack = await viewer.call("rtc:keyframe", {"room": room_id})
    assert ack["error"]["code"] == "not_live"

    broadcaster = await start_broadcaster(SocketSignal(anchor), room_id)  # type: ignore[arg-type]
    # The broadcaster's aiortc sender hears each PLI the relay sends it.
    pli: list[float] = []
    video_sender = next(t.sender for t in broadcaster.pc.getTransceivers() if t.kind == "video")

    def counted() -> None:
        pli.append(time.monotonic())
        send_keyframe()

    send_keyframe = on_keyframe_request(video_sender, counted)
    watcher = await start_viewer(SocketSignal(viewer), room_id, "ann")  # type: ignore[arg-type]
    try:
        await wait_until(lambda: watcher.video_count >= 10, PATIENT_S, "the viewer decodes")
        for _ in range(2):
            # A steady stream asks for no keyframes by itself: a quiet stretch comes soon. (On
            # a loaded machine a dropped backlog may ask once, legitimately; a stream that kept
            # asking, e.g. every second, never goes quiet this long.)
            before = await quiet_stretch(pli, QUIET_S, within_s=15)
            ack = await viewer.call("rtc:keyframe", {"room": room_id})
            assert ack == {"ok": True}
            await wait_until(lambda quiet=before: len(pli) > quiet, PATIENT_S,
                             "the broadcaster is asked for a keyframe soon after the request")
        count = watcher.video_count
        await wait_until(lambda: watcher.video_count >= count + 10, PATIENT_S, "video goes on")

        ack = await outsider.call("rtc:keyframe", {"room": room_id})
        assert ack["error"]["code"] == "not_in_room"
        ack = await viewer.call("rtc:keyframe", {"room": 5})
        assert ack["error"]["code"] == "invalid_input"
    finally:
        await watcher.close()
        await broadcaster.pc.close()


async def test_the_anchors_disconnect_ends_the_broadcast_and_closes_viewers(
    server: LiveServer,
) -> None:
    anchor, room_id = await setup_room(server)
    broadcaster = await start_broadcaster(SocketSignal(anchor), room_id)  # type: ignore[arg-type]
    viewer_clients = [await viewer_client(server, room_id, f"v{i}") for i in range(2)]
    viewers = [await start_viewer(SocketSignal(c), room_id, f"v{i}")  # type: ignore[arg-type]
               for i, c in enumerate(viewer_clients)]
    media = server.services.media
    try:
        await wait_until(lambda: all(v.video_count >= 5 for v in viewers), PATIENT_S,
                         "media flowing")
        await viewer_clients[0].wait_for("media", lambda d: d["live"])
        viewer_clients[0].events.clear()

        await anchor.sio.disconnect()
        await wait_until(lambda: media.peer_connection_count == 0, PATIENT_S,
                         "the broadcaster's and every viewer's pc close with the anchor's socket")
        await viewer_clients[0].wait_for("media", lambda d: d["live"] is False)
        await wait_until(
            lambda: all(v.pc.connectionState in ("closed", "failed") for v in viewers), 10,
            "the viewers' own pcs see the end")
        state = (await viewer_clients[1].call("join", {"room": room_id}))["room"]
        assert state["media"]["live"] is False
        ack = await viewer_clients[1].call("rtc:keyframe", {"room": room_id})
        assert ack["error"]["code"] == "not_live"
    finally:
        for viewer in viewers:
            await viewer.close()
        await broadcaster.pc.close()


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


async def test_a_viewer_that_never_finishes_ice_is_closed_and_its_ports_freed(
    redis: aioredis.Redis, redis_url: str, data_dir: Path,
) -> None:
    """``rtc:watch`` peers that never complete ICE held about 200 descriptors for 30 s and more;
    now each is closed once ``LIVEROOM_RTC_CONNECT_TIMEOUT_S`` passes (2 s here)."""
    async with live_server(redis_url, data_dir, rtc_connect_timeout_s=2.0) as server:
        anchor, room_id = await setup_room(server)
        broadcaster = await start_broadcaster(SocketSignal(anchor),  # type: ignore[arg-type]
                                              room_id)
        good_client = await viewer_client(server, room_id, "Good")
        good = await start_viewer(SocketSignal(good_client), room_id,  # type: ignore[arg-type]
                                  good_client.sio.sid)
        media = server.services.media
        stalled: list[RTCPeerConnection] = []
        try:
            await wait_until(lambda: good.video_count >= 5, PATIENT_S, "the good viewer decodes")
            # Ten viewers that make an offer and never apply the answer: no ICE ever completes.
            clients = []
            for i in range(10):
                clients.append(await viewer_client(server, room_id, f"stall{i}"))
                pc = new_pc()
                stalled.append(pc)
                pc.addTransceiver("video", direction="recvonly")
                await pc.setLocalDescription(await pc.createOffer())
            before = _open_fds()  # the stalled clients' own sockets are open from here on
            for client, pc in zip(clients, stalled, strict=True):
                ack = await client.call("rtc:watch", {
                    "room": room_id, "sdp": pc.localDescription.sdp, "type": "offer"})
                assert ack["ok"], ack
            # Each stalled peer is open or, on a machine slow enough that the ten calls took
            # longer than the deadline, already closed by it.
            assert media.peer_connection_count + media.viewers_timed_out == 12
            assert media.peer_connection_count > 2, "the last ones are still within the deadline"
            peak = _open_fds()
            assert peak > before, "each relay peer connection holds sockets"
            await wait_until(lambda: media.peer_connection_count == 2, PATIENT_S,
                             "the stalled viewers' peer connections are closed")
            assert viewer_sids(server, room_id) == set(server.sids_of("Good"))
            assert media.viewers_timed_out == 10
            # Their sockets are closed (a few descriptors of slack for anything else the
            # process may open meanwhile, such as a Redis connection).
            await wait_until(lambda: _open_fds() <= before + 3, PATIENT_S,
                             "their sockets are closed")
            count = good.video_count
            await wait_until(lambda: good.video_count >= count + 10, PATIENT_S,
                             "the connected viewer, past its own deadline, keeps decoding")
        finally:
            for pc in stalled:
                await pc.close()
            await good.close()
            await broadcaster.pc.close()
