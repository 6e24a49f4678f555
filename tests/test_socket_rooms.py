from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
import socketio

from liveroom.clock import now_ms
from liveroom.identity import Role, TokenSigner, User
from tests.server_harness import TEST_SECRET, Client, LiveServer, live_server


async def make_room(server: LiveServer) -> tuple[str, str]:
    anchor = server.token("anchor", "Mei", user_id="u_mei")
    _, room = await server.request("POST", "/api/rooms", anchor, {"title": "Jade night"})
    return anchor, room["id"]


async def joined(server: LiveServer, room_id: str, name: str, role: str = "viewer",
                 user_id: str | None = None) -> Client:
    client = await server.connect(server.token(role, name, user_id=user_id))
    answer = await client.call("join", {"room": room_id})
    assert answer["ok"], answer
    return client


async def test_two_clients_join_chat_and_see_viewer_counts(server: LiveServer) -> None:
    _, room_id = await make_room(server)
    ann = await server.connect(server.token("viewer", "Ann"))
    asked = now_ms()
    answer = await ann.call("join", {"room": room_id})
    answered = now_ms()
    assert answer["ok"] is True
    assert answer["room"]["id"] == room_id
    assert answer["room"]["title"] == "Jade night"
    # The server's clock while it answered (the same clock: the server runs in this process).
    assert asked <= answer["room"]["server_time"] <= answered

    bo = await joined(server, room_id, "Bo")
    await ann.wait_for("viewers", lambda d: d == {"room": room_id, "count": 2})

    ack = await bo.call("chat", {"room": room_id, "text": "  is the jade real?  "})
    assert ack["ok"] is True
    message = await ann.wait_for("chat")
    assert message["text"] == "is the jade real?"
    assert message["user"]["name"] == "Bo"
    assert message["room"] == room_id
    assert isinstance(message["ts"], int)

    await bo.sio.disconnect()
    await ann.wait_for("viewers", lambda d: d["count"] == 1)

    late = await joined(server, room_id, "Cy")
    history = (await late.call("join", {"room": room_id}))["room"]["chat"]
    assert [m["text"] for m in history] == ["is the jade real?"]


async def test_leave_lowers_the_count_and_stops_the_room_broadcasts(server: LiveServer) -> None:
    _, room_id = await make_room(server)
    ann = await joined(server, room_id, "Ann")
    bo = await joined(server, room_id, "Bo")
    await ann.wait_for("viewers", lambda d: d == {"room": room_id, "count": 2})
    assert (await ann.call("chat", {"room": room_id, "text": "before"}))["ok"]
    await bo.wait_for("chat", lambda m: m["text"] == "before")

    assert await bo.call("leave", {"room": room_id}) == {"ok": True}
    await ann.wait_for("viewers", lambda d: d == {"room": room_id, "count": 1})
    assert (await ann.call("chat", {"room": room_id, "text": "after"}))["ok"]
    await ann.wait_for("chat", lambda m: m["text"] == "after")
    await asyncio.sleep(0.3)  # a broadcast to bo would have arrived with ann's copy
    assert [m["text"] for m in bo.received("chat")] == ["before"]
    # Bo is out on the server too, not just unsubscribed: its chat is refused.
    refused = await bo.call("chat", {"room": room_id, "text": "hi"})
    assert refused["error"]["code"] == "not_in_room"
    assert (await bo.call("leave", {"room": room_id}))["error"]["code"] == "not_in_room"


async def test_viewer_pushes_are_coalesced(server: LiveServer) -> None:
    _, room_id = await make_room(server)
    watcher = await joined(server, room_id, "Watcher")
    others = [await server.connect(server.token("viewer", f"v{i}")) for i in range(20)]
    await asyncio.gather(*(c.call("join", {"room": room_id}) for c in others))
    await watcher.wait_for("viewers", lambda d: d["count"] == 21)
    assert len(watcher.received("viewers")) <= 3


@pytest.mark.parametrize(
    ("auth", "code"),
    [(None, "unauthorized"), ({"token": "nonsense"}, "token_malformed"),
     ({"token": "tampered"}, "token_bad_signature"), ({"token": "expired"}, "token_expired")],
)
async def test_connect_refused_with_a_reason(server: LiveServer, auth: Any, code: str) -> None:
    good = server.token("viewer")
    if auth and auth["token"] == "tampered":
        auth = {"token": good[:-3] + ("AAA" if not good.endswith("AAA") else "BBB")}
    if auth and auth["token"] == "expired":
        past = TokenSigner(TEST_SECRET.encode(), 60, lambda: now_ms() - 120_000)
        auth = {"token": past.issue(User(id="u_old", name="Old", role=Role.VIEWER))}
    sio = socketio.AsyncClient(reconnection=False)
    reasons: list[Any] = []
    sio.on("connect_error", lambda data: reasons.append(data))
    with pytest.raises(socketio.exceptions.ConnectionError):
        await sio.connect(server.url, auth=auth, transports=["websocket"])
    for _ in range(1500):  # the handler may run a moment after connect() gave up
        if reasons:
            break
        await asyncio.sleep(0.02)
    assert reasons, "no connect_error"
    assert reasons[0]["data"]["code"] == code, reasons
    assert reasons[0]["message"]


BAD_PAYLOADS: list[tuple[str, Any, str]] = [
    ("join", None, "invalid_input"),
    ("join", "r_x", "invalid_input"),
    ("join", [1, 2], "invalid_input"),
    ("join", {}, "invalid_input"),
    ("join", {"room": 5}, "invalid_input"),
    ("join", {"room": "r_unknown"}, "unknown_room"),
    ("join", {"room": "../../etc"}, "invalid_input"),
    ("leave", {"room": "r_other"}, "not_in_room"),
    ("leave", {}, "invalid_input"),
    ("chat", {"room": "ROOM"}, "invalid_input"),
    ("chat", {"room": "ROOM", "text": ""}, "invalid_input"),
    ("chat", {"room": "ROOM", "text": 42}, "invalid_input"),
    ("chat", {"room": "ROOM", "text": "x" * 501}, "text_too_long"),
    ("chat", {"room": "r_other", "text": "hi"}, "not_in_room"),
    ("chat", {"room": "ROOM", "text": "y" * 70_000}, "payload_too_large"),
    ("mod:mute", {"room": "ROOM", "user": "u_x"}, "forbidden"),
    ("mod:mute", {"room": "ROOM"}, "invalid_input"),
    ("mod:ban", {"room": "ROOM", "user": "u_x"}, "forbidden"),
    ("mod:unban", {"room": "ROOM", "user": "u_x"}, "forbidden"),
    ("mod:unmute", {"room": "ROOM", "user": "u_x"}, "forbidden"),
    ("mod:slow", {"room": "ROOM", "seconds": "10"}, "invalid_input"),
    ("mod:slow", {"room": "ROOM", "seconds": 10}, "forbidden"),
]


@pytest.mark.parametrize(("event", "payload", "code"), BAD_PAYLOADS)
async def test_bad_payloads_get_an_error_and_change_nothing(
    server: LiveServer, event: str, payload: Any, code: str
) -> None:
    _, room_id = await make_room(server)
    viewer = await joined(server, room_id, "Ann")
    before = (await viewer.call("join", {"room": room_id}))["room"]

    def fill(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: room_id if v == "ROOM" else v for k, v in value.items()}
        return value

    ack = await viewer.call(event, fill(payload))
    assert ack["ok"] is False
    assert ack["error"]["code"] == code
    assert isinstance(ack["error"]["message"], str)
    assert ack["error"]["message"]
    after = (await viewer.call("join", {"room": room_id}))["room"]
    for key in ("chat", "slow_mode_s", "title", "status", "pinned"):
        assert after[key] == before[key]
    # The connection survives: a good request still works.
    assert (await viewer.call("chat", {"room": room_id, "text": "still here"}))["ok"]


async def test_chat_cap_is_500_characters(server: LiveServer) -> None:
    _, room_id = await make_room(server)
    viewer = await joined(server, room_id, "Ann")
    assert (await viewer.call("chat", {"room": room_id, "text": "x" * 500}))["ok"]
    ack = await viewer.call("chat", {"room": room_id, "text": "x" * 501})
    assert ack["error"]["code"] == "text_too_long"


async def test_mute_blocks_chat_until_unmuted(server: LiveServer) -> None:
    anchor_token, room_id = await make_room(server)
    anchor = await server.connect(anchor_token)
    await anchor.call("join", {"room": room_id})
    troll = await joined(server, room_id, "Troll", user_id="u_troll")

    ack = await anchor.call("mod:mute", {"room": room_id, "user": "u_troll", "duration_s": 60})
    assert ack["ok"] is True
    await troll.wait_for("moderation", lambda d: d["action"] == "muted")
    ack = await troll.call("chat", {"room": room_id, "text": "spam"})
    assert ack["error"]["code"] == "muted"

    assert (await anchor.call("mod:unmute", {"room": room_id, "user": "u_troll"}))["ok"]
    assert (await troll.call("chat", {"room": room_id, "text": "sorry"}))["ok"]


async def test_ban_removes_user_and_blocks_rejoin(server: LiveServer) -> None:
    anchor_token, room_id = await make_room(server)
    anchor = await server.connect(anchor_token)
    await anchor.call("join", {"room": room_id})
    troll = await joined(server, room_id, "Troll", user_id="u_troll")

    assert (await anchor.call("mod:ban", {"room": room_id, "user": "u_troll"}))["ok"]
    await troll.wait_for("moderation", lambda d: d["action"] == "banned")
    # Removed from the room on the server: its chat is refused and it gets no broadcasts.
    for _ in range(50):
        ack = await troll.call("chat", {"room": room_id, "text": "still here?"})
        if ack["error"]["code"] != "banned":
            break
        await asyncio.sleep(0.02)
    assert ack["error"]["code"] == "not_in_room"
    assert (await troll.call("join", {"room": room_id}))["error"]["code"] == "banned"
    await anchor.call("chat", {"room": room_id, "text": "welcome all"})
    await asyncio.sleep(0.2)
    assert all(m["text"] != "welcome all" for m in troll.received("chat"))

    assert (await anchor.call("mod:unban", {"room": room_id, "user": "u_troll"}))["ok"]
    assert (await troll.call("join", {"room": room_id}))["ok"]


async def test_anchor_cannot_be_muted_and_others_cannot_moderate(server: LiveServer) -> None:
    anchor_token, room_id = await make_room(server)
    anchor = await server.connect(anchor_token)
    await anchor.call("join", {"room": room_id})
    ack = await anchor.call("mod:mute", {"room": room_id, "user": "u_mei"})
    assert ack["error"]["code"] == "forbidden"
    other_anchor = await joined(server, room_id, "Bo", role="anchor")
    ack = await other_anchor.call("mod:ban", {"room": room_id, "user": "u_someone"})
    assert ack["error"]["code"] == "forbidden"
    admin = await joined(server, room_id, "Root", role="admin")
    assert (await admin.call("mod:mute", {"room": room_id, "user": "u_someone"}))["ok"]


async def test_slow_mode_spaces_viewer_messages_but_not_the_anchor(server: LiveServer) -> None:
    anchor_token, room_id = await make_room(server)
    anchor = await server.connect(anchor_token)
    await anchor.call("join", {"room": room_id})
    viewer = await joined(server, room_id, "Ann")
    assert (await anchor.call("mod:slow", {"room": room_id, "seconds": 30}))["ok"]

    assert (await viewer.call("chat", {"room": room_id, "text": "one"}))["ok"]
    ack = await viewer.call("chat", {"room": room_id, "text": "two"})
    assert ack["error"]["code"] == "slow_mode"
    assert 25_000 < ack["error"]["retry_after_ms"] <= 30_000
    assert (await anchor.call("chat", {"room": room_id, "text": "a"}))["ok"]
    assert (await anchor.call("chat", {"room": room_id, "text": "b"}))["ok"]

    assert (await anchor.call("mod:slow", {"room": room_id, "seconds": 0}))["ok"]
    await viewer.call("chat", {"room": room_id, "text": "three"})
    state = (await viewer.call("join", {"room": room_id}))["room"]
    assert [m["text"] for m in state["chat"]] == ["one", "a", "b", "three"]


async def test_event_flood_is_rate_limited_per_connection(
        redis: aioredis.Redis, redis_url: str, data_dir: Path) -> None:
    # Flooder and calm share 127.0.0.1: the address's chat budget (tests/test_moderation.py)
    # would hold calm back too, so it is off here.
    async with live_server(redis_url, data_dir, chat_per_address_per_10s=0) as server:
        await _event_flood(server)


async def _event_flood(server: LiveServer) -> None:
    _, room_id = await make_room(server)
    flooder = await joined(server, room_id, "Flood")
    calm = await joined(server, room_id, "Calm")
    acks = await asyncio.gather(*(flooder.call("chat", {"room": room_id, "text": f"m{i}"})
                                  for i in range(300)))
    codes = {a["error"]["code"] for a in acks if not a["ok"]}
    assert "rate_limited" in codes
    assert sum(1 for a in acks if a["ok"]) <= server.settings.event_burst + 50
    assert (await calm.call("chat", {"room": room_id, "text": "unaffected"}))["ok"]


async def test_ping_returns_the_server_clock(server: LiveServer) -> None:
    client = await server.connect(server.token("viewer"))
    asked = now_ms()
    ack = await client.call("ping", {})
    answered = now_ms()
    assert ack["ok"] is True
    assert asked <= ack["server_time"] <= answered
